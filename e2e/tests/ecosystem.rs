//! What tools written for Proxmox VE read on a fresh cluster: every GET endpoint Ferrox
//! declares, walked on a 3-node cluster with real values for its path, answers without
//! 501 or 5xx, in `/api2/json` and in the `/api2/extjs` envelope; the HA texts, the
//! `hastate` of resources, RRD pressure fields and the metrics export as Proxmox VE 9.

use ferrox_api::router::Method;
use ferrox_e2e::*;
use serde_json::Value;
use std::time::Duration;

/// A value for each path variable the GET endpoints use.
fn path_value(var: &str, upid: &str, path: &str) -> String {
    match var {
        "name" if path.contains("/sendmail/") => "walk-mail".into(),
        "name" if path.contains("/matchers/") => "walk-matcher".into(),
        "name" => "walk-hook".into(),
        "node" => "n1".into(),
        "vmid" => "100".into(),
        "storage" => "local".into(),
        "userid" => "root@pam".into(),
        "tokenid" => "walk".into(),
        "groupid" => "walkers".into(),
        "roleid" => "PVEAuditor".into(),
        "realm" => "pam".into(),
        "poolid" => "walkpool".into(),
        "sid" => "vm:100".into(),
        "rule" => "walk-rule".into(),
        "id" => "walk".into(),
        "snapname" => "walk".into(),
        "volume" => "local%3A100%2Fvm-100-disk-0.qcow2".into(),
        "cputype" => "custom-walk-cpu".into(),
        "iface" => "vmbr0".into(),
        "zone" => "walkzone".into(),
        "vnet" => "walkvnet".into(),
        "subnet" => "walkzone-10.9.9.0-24".into(),
        "upid" => upid.replace(':', "%3A"),
        other => panic!("no value for the path variable {{{other}}}: add one"),
    }
}

#[test]
fn no_read_only_endpoint_answers_501_or_5xx_on_a_three_node_cluster() {
    let nodes = local_cluster(3, "walk", "tcg", &[]);
    let d = &nodes[0];
    let auth = d.login();
    let upid = d.task_ok(
        &auth,
        "POST",
        "/nodes/n1/qemu",
        &[
            ("vmid", "100"),
            ("name", "walked"),
            ("memory", "64"),
            ("scsi0", "local:1"),
        ],
    );
    for (method, path, form) in [
        ("POST", "/access/users/root@pam/token/walk", vec![]),
        ("POST", "/access/groups", vec![("groupid", "walkers")]),
        ("POST", "/pools", vec![("poolid", "walkpool")]),
        (
            "POST",
            "/cluster/qemu/custom-cpu-models",
            vec![("cputype", "walk-cpu"), ("reported-model", "qemu64")],
        ),
        (
            "POST",
            "/cluster/notifications/endpoints/webhook",
            vec![("name", "walk-hook"), ("url", "http://127.0.0.1:9/hook")],
        ),
        (
            "POST",
            "/cluster/notifications/endpoints/sendmail",
            vec![("name", "walk-mail"), ("mailto", "root@example.com")],
        ),
        (
            "POST",
            "/cluster/notifications/matchers",
            vec![("name", "walk-matcher"), ("target", "walk-hook")],
        ),
        (
            "POST",
            "/cluster/metrics/server/walk",
            vec![
                ("type", "graphite"),
                ("server", "127.0.0.1"),
                ("port", "2003"),
            ],
        ),
        (
            "POST",
            "/cluster/backup",
            vec![("id", "walk"), ("schedule", "sat 03:00"), ("vmid", "100")],
        ),
        (
            "POST",
            "/cluster/ha/resources",
            vec![("sid", "vm:100"), ("state", "stopped")],
        ),
        (
            "POST",
            "/cluster/ha/rules",
            vec![
                ("rule", "walk-rule"),
                ("type", "node-affinity"),
                ("resources", "vm:100"),
                ("nodes", "n1"),
            ],
        ),
        (
            "POST",
            "/cluster/sdn/zones",
            vec![("zone", "walkzone"), ("type", "simple")],
        ),
        (
            "POST",
            "/cluster/sdn/vnets",
            vec![("vnet", "walkvnet"), ("zone", "walkzone")],
        ),
        (
            "POST",
            "/cluster/sdn/vnets/walkvnet/subnets",
            vec![("subnet", "10.9.9.0/24"), ("type", "subnet")],
        ),
    ] {
        let r = d.request(method, path, &auth, &form);
        assert_eq!(r.status, 200, "{method} {path}: {r:?}");
    }
    d.task_ok(
        &auth,
        "POST",
        "/nodes/n1/qemu/100/snapshot",
        &[("snapname", "walk")],
    );
    let required = [("timeframe", "hour")];
    let mut walked = 0;
    for e in ferrox_node::api::endpoints() {
        // A websocket (the console's) is no read-only endpoint: tests/console.rs has it.
        if e.method != Method::Get || e.path.ends_with("/vncwebsocket") {
            continue;
        }
        let path: String = e
            .path
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                    Some(var) => path_value(var, &upid, e.path),
                    None => s.to_string(),
                },
            )
            .collect::<Vec<_>>()
            .join("/");
        let form: Vec<(&str, &str)> = required
            .iter()
            .filter(|(name, _)| e.params.iter().any(|p| p.name == *name && !p.optional))
            .cloned()
            .collect();
        let json = d.request("GET", &path, &auth, &form);
        assert!(
            json.status != 501 && json.status < 500,
            "GET {path}: {} {}",
            json.status,
            json.raw
        );
        let extjs = d.request("GET", &format!("/api2/extjs{path}"), &auth, &form);
        assert_eq!(extjs.status, 200, "extjs GET {path}: {extjs:?}");
        assert!(
            extjs.content_type.starts_with("application/json"),
            "extjs GET {path}: {}",
            extjs.content_type
        );
        assert_eq!(extjs.body["success"], 1, "extjs GET {path}: {}", extjs.raw);
        // Live figures (disk space, CPU) move between two calls: the shapes must agree.
        assert_eq!(
            shape(&extjs.body["data"]),
            shape(&json.body["data"]),
            "extjs GET {path}"
        );
        walked += 1;
    }
    assert!(walked > 60, "walked only {walked} GET endpoints");
    // GET /metrics with an API token the way Prometheus sends it (`authorization:
    // {type: PVEAPIToken, credentials: ...}` → "PVEAPIToken <id>=<secret>").
    let token = d.request(
        "POST",
        "/access/users/root@pam/token/prom",
        &auth,
        &[("privsep", "0")],
    );
    let secret = token.body["data"]["value"].as_str().unwrap().to_string();
    // The CRM has taken vm:100 up and settled it as stopped (it passes `request_stop`).
    wait_for("the CRM settles vm:100", Duration::from_secs(60), || {
        let r = d.request("GET", "/cluster/ha/status/manager_status", &auth, &[]);
        r.body["data"]["manager_status"]["service_status"]["vm:100"]["state"] == "stopped"
    });
    let url = format!("https://{}/metrics", d.addr);
    let scrape = insecure_agent()
        .get(&url)
        .set(
            "Authorization",
            &format!("PVEAPIToken root@pam!prom={secret}"),
        )
        .call()
        .expect("scrape");
    assert!(scrape
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain")));
    let text = scrape.into_string().unwrap();
    for line in [
        "pve_up{id=\"node/n1\"} 1.0",
        "pve_up{id=\"node/n3\"} 1.0",
        "pve_up{id=\"cluster/walk\"} 1.0",
        "pve_memory_size_bytes{id=\"qemu/100\"} 67108864.0",
        "pve_ha_state{id=\"qemu/100\",state=\"stopped\"} 1.0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    assert!(
        text.contains("pve_storage_info{id=\"storage/n2/local\""),
        "{text}"
    );
    let anonymous = insecure_agent().get(&url).call();
    assert!(
        matches!(anonymous, Err(ureq::Error::Status(401, _))),
        "{anonymous:?}"
    );

    // Without Sys.Audit (tasks) or Sys.Syslog (log) on /, only one's own entries.
    d.add_user(
        &auth,
        "vmuser@pve",
        "vmusersecret1",
        &[("/vms", "PVEVMUser")],
    );
    let user = d.login_as("vmuser@pve", "vmusersecret1");
    let all = d.request("GET", "/cluster/tasks", &auth, &[]).body["data"].clone();
    assert!(all.as_array().is_some_and(|t| !t.is_empty()), "{all}");
    for path in ["/cluster/tasks", "/cluster/log"] {
        let own = d.request("GET", path, &user, &[]);
        assert_eq!(own.status, 200, "{own:?}");
        assert_eq!(
            own.body["data"],
            serde_json::json!([]),
            "{path}: {}",
            own.raw
        );
    }
    let r = d.request("GET", "/cluster/metrics/export", &user, &[]);
    assert_eq!(r.status, 403, "{r:?}");

    // The extjs envelope of an error: HTTP 200, the status and message inside.
    let err = d.request("GET", "/api2/extjs/nodes/n1/qemu/999/config", &auth, &[]);
    assert_eq!(
        (err.status, err.body["success"].clone()),
        (200, Value::from(0))
    );
    assert_eq!(err.body["status"], 500);
    assert!(err.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("does not exist")));
}

#[test]
fn ha_texts_hastate_pressure_and_metrics_read_as_proxmox_ve_writes_them() {
    if !qemu_available() {
        return;
    }
    let nodes = local_cluster(3, "texts", "tcg", FAST_HA);
    let d = &nodes[0];
    let auth = d.login();
    d.task_ok(
        &auth,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "100"), ("name", "ha"), ("memory", "64")],
    );
    let r = d.request(
        "POST",
        "/cluster/ha/resources",
        &auth,
        &[("sid", "vm:100"), ("state", "started")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let resources = || d.request("GET", "/cluster/resources", &auth, &[]).body["data"].clone();
    wait_for("the HA guest runs", Duration::from_secs(90), || {
        resources()
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "qemu/100" && e["status"] == "running" && e["hastate"] == "started")
    });
    let all = resources();
    let node_row = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "node/n2")
        .unwrap();
    assert_eq!(node_row["hastate"], "online", "{node_row}");

    // Node maintenance reads as "maintenance mode" in the LRM's line.
    let r = d.request(
        "POST",
        "/cluster/ha/crm-command",
        &auth,
        &[("command", "node-maintenance enable n3")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let line = |id: &str| {
        let status = d.request("GET", "/cluster/ha/status/current", &auth, &[]);
        status.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .and_then(|e| e["status"].as_str().map(String::from))
            .unwrap_or_default()
    };
    wait_for("n3 in maintenance mode", Duration::from_secs(60), || {
        line("lrm:n3").starts_with("n3 (maintenance mode, ")
    });
    let master = line("master");
    assert!(
        master.starts_with("n") && master.contains(" (active, "),
        "{master}"
    );
    assert!(
        regex_like_localtime(&master),
        "the master's time is not in Proxmox VE's format: {master}"
    );
    assert!(
        line("lrm:n1").contains("watchdog active"),
        "{}",
        line("lrm:n1")
    );
    assert_eq!(line("service:vm:100"), "vm:100 (n1, started)");
    assert_eq!(line("fencing"), "armed (CRM watchdog active)");

    // Pressure-stall fields in the node's and the guest's RRD rows.
    wait_for(
        "pressure in the node's rrddata",
        Duration::from_secs(30),
        || {
            let rows = d.request("GET", "/nodes/n1/rrddata", &auth, &[("timeframe", "hour")]);
            rows.body["data"]
                .as_array()
                .is_some_and(|r| r.iter().any(|row| row.get("pressurecpusome").is_some()))
        },
    );
    // The guest's cgroup pressure in its /cluster/resources row (the CRS's dynamic mode
    // balances it), where the guest runs in its own cgroup.
    let has_cgroup = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .any(|root| {
            std::path::Path::new(&format!("{root}/qemu.slice/100.scope/cpu.pressure")).exists()
        });
    if has_cgroup {
        wait_for(
            "pressure in the guest's /cluster/resources row",
            Duration::from_secs(30),
            || {
                let rows = d.request("GET", "/cluster/resources", &auth, &[("type", "vm")]);
                rows.body["data"].as_array().is_some_and(|r| {
                    r.iter().any(|row| {
                        row["vmid"] == 100
                            && row["pressurecpusome"].is_number()
                            && row["pressureiosome"].is_number()
                    })
                })
            },
        );
    } else {
        eprintln!("SKIPPED: guest 100 has no cgroup with pressure files here; the resources row carries none");
    }
    wait_for(
        "pressure in the guest's rrddata",
        Duration::from_secs(30),
        || {
            let rows = d.request(
                "GET",
                "/nodes/n1/qemu/100/rrddata",
                &auth,
                &[("timeframe", "hour")],
            );
            rows.body["data"]
                .as_array()
                .is_some_and(|r| r.iter().any(|row| row.get("pressurememoryfull").is_some()))
        },
    );

    // The metrics export covers every node, the guest and the storages.
    let export = d.request("GET", "/cluster/metrics/export", &auth, &[]);
    assert_eq!(export.status, 200, "{export:?}");
    let data = export.body["data"]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = |id: &str, metric: &str| data.iter().any(|m| m["id"] == id && m["metric"] == metric);
    for n in ["n1", "n2", "n3"] {
        assert!(has(&format!("node/{n}"), "cpu_current"), "node/{n} missing");
        assert!(
            has(&format!("storage/{n}/local"), "disk_total"),
            "storage of {n} missing"
        );
    }
    let mem = data
        .iter()
        .find(|m| m["id"] == "qemu/100" && m["metric"] == "mem_total")
        .map(|m| m["value"].clone());
    assert_eq!(mem, Some(Value::from((64u64 << 20) as f64)));
    let local = d.request(
        "GET",
        "/cluster/metrics/export",
        &auth,
        &[("local-only", "1")],
    );
    let local = local.body["data"]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        local.iter().all(|m| m["id"] != "node/n2"),
        "local-only has n2"
    );
    let bad = d.request(
        "GET",
        "/cluster/metrics/export",
        &auth,
        &[("node-list", "n1,nosuch")],
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body["errors"]["node-list"]
        .as_str()
        .is_some_and(|m| m.contains("nosuch")));
}

/// The JSON types and object keys of a value, without the values.
fn shape(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
        other => other.clone(),
    }
}

/// `Thu Dec  3 08:22:37 2026` somewhere in the text (Perl's `localtime`).
fn regex_like_localtime(text: &str) -> bool {
    text.split(", ").any(|part| {
        let part = part.trim_end_matches(')');
        let words: Vec<&str> = part.split_whitespace().collect();
        words.len() == 5
            && words[0].len() == 3
            && words[1].len() == 3
            && words[2].parse::<u8>().is_ok()
            && words[3].len() == 8
            && words[3].matches(':').count() == 2
            && words[4].parse::<u16>().is_ok()
    })
}
