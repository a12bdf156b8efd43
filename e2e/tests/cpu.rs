//! `cpu:` as Proxmox VE reads it: a built-in model becomes QEMU's `-cpu` with Proxmox VE's
//! flag set (checked on a real QEMU's command line), bad models and flags are refused
//! naming `cpu`, and nothing is written.

use ferrox_e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn a_built_in_model_starts_with_proxmox_ve_s_flags() {
    if !qemu_available() {
        return;
    }
    let d = start_daemon("tcg");
    let auth = d.login();
    d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("memory", "64"), ("cpu", "x86-64-v2-AES")],
    );
    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/start", &[]);
    let pid = guest_pid(&d.path().join("run"), 100).expect("the guest runs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cpu = args
        .iter()
        .position(|a| a == "-cpu")
        .map(|i| args[i + 1].clone());
    // TCG: no `enforce`, no KVM paravirt flags.
    assert_eq!(
        cpu.as_deref(),
        Some("qemu64,+aes,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3")
    );
    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/stop", &[]);
}

#[test]
fn bad_cpu_models_and_flags_are_refused_naming_cpu() {
    let d = start_daemon("tcg");
    let auth = d.login();
    for value in [
        "Pentium9",
        "host,flags=+avx512f",
        "kvm64,reported-model=qemu64",
        "x86-64-v3,phys-bits=7",
    ] {
        let r = d.request(
            "POST",
            "/nodes/pve1/qemu",
            &auth,
            &[("vmid", "101"), ("memory", "64"), ("cpu", value)],
        );
        assert_eq!(r.status, 400, "{value}: {r:?}");
        assert!(r.body["errors"]["cpu"].is_string(), "{value}: {}", r.raw);
    }
    assert!(!d.etc().join("nodes/pve1/qemu-server/101.conf").exists());
}

/// Three TCG nodes on one host; n2 hides avx2 and aes (the test-only mask), so it runs
/// x86-64-v2 at most while n1 and n3 run x86-64-v3.
fn cluster_with_an_older_node() -> Vec<Daemon> {
    let nodes: Vec<Daemon> = (1..=3)
        .map(|i| {
            let mut extra: Vec<&str> = FAST_HA.to_vec();
            if i == 2 {
                extra.extend(["--cpu-flag-mask", "avx2,aes"]);
            }
            start_node_with(
                tempfile::tempdir().unwrap(),
                &format!("n{i}"),
                "127.0.0.1",
                free_port(),
                "tcg",
                &extra,
            )
        })
        .collect();
    form_cluster(&nodes, "cpus");
    let auth = nodes[0].login();
    wait_for("every node tells its CPU", Duration::from_secs(60), || {
        let r = nodes[0].request("GET", "/cluster/qemu/cpu-baseline", &auth, &[]);
        r.status == 200
            && r.body["data"]["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["unknown"].is_null()))
    });
    nodes
}

fn node_row<'a>(baseline: &'a Value, node: &str) -> &'a Value {
    baseline["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} in {baseline}"))
}

fn names(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn log_of(nodes: &[Daemon]) -> String {
    nodes
        .iter()
        .map(|d| std::fs::read_to_string(d.path().join("daemon.log")).unwrap_or_default())
        .collect()
}

#[test]
fn an_older_node_lowers_the_baseline_and_refuses_guests_it_cannot_run() {
    if !qemu_available() {
        return;
    }
    let nodes = cluster_with_an_older_node();
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let root = n1.login();

    // The baseline: the highest built-in model of each node and of the cluster.
    let baseline = n1
        .request("GET", "/cluster/qemu/cpu-baseline", &root, &[])
        .body["data"]
        .clone();
    assert_eq!(baseline["model"], "x86-64-v2", "{baseline}");
    assert_eq!(baseline["level"], "x86-64-v2");
    let older = node_row(&baseline, "n2");
    assert_eq!(older["model"], "x86-64-v2", "{older}");
    assert_eq!(older["next"], "x86-64-v2-AES");
    assert_eq!(older["lacks"], json!(["aes"]));
    assert_eq!(older["masked"], json!(["aes", "avx2"]));
    assert_eq!(older["accel"], "tcg");
    let newer = node_row(&baseline, "n1");
    assert_eq!(newer["model"], "x86-64-v3", "{newer}");
    assert_eq!(newer["next"], "x86-64-v4");
    assert!(newer["lacks"]
        .as_array()
        .unwrap()
        .contains(&json!("avx512f")));
    let out = std::process::Command::new(ferrox_binary())
        .args(["cluster", "cpu-baseline"])
        .env("FERROX_HOST", &n1.addr)
        .env("FERROX_FINGERPRINT", n1.fingerprint().unwrap())
        .env("FERROX_PASSWORD", "secret1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("cluster baseline: x86-64-v2 (x86-64-v2)"),
        "{text}"
    );
    assert!(
        text.contains("x86-64-v2-AES: aes [test mask: aes,avx2]"),
        "{text}"
    );

    // What each node offers.
    let models = |d: &Daemon| {
        names(
            &d.request(
                "GET",
                &format!("/nodes/{}/capabilities/qemu/cpu", d.name),
                &root,
                &[],
            )
            .body["data"],
        )
    };
    assert!(models(n2).contains(&"x86-64-v2".to_string()));
    assert!(!models(n2).contains(&"x86-64-v2-AES".to_string()));
    assert!(models(n1).contains(&"x86-64-v3".to_string()));
    let flags = n1.request(
        "GET",
        "/nodes/n1/capabilities/qemu/cpu-flags",
        &root,
        &[("accel", "tcg")],
    );
    let aes = flags.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "aes")
        .cloned()
        .expect("aes listed");
    assert_eq!(aes["supported-on"], json!(["n1", "n3"]), "{}", flags.raw);
    let all = n1.request("GET", "/cluster/qemu/cpu-flags", &root, &[("accel", "tcg")]);
    assert_eq!(all.body["data"][0]["name"], "nested-virt", "{}", all.raw);
    let avx2 = all.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "avx2")
        .cloned()
        .expect("avx2 listed");
    assert_eq!(avx2["supported-on"], json!(["n1", "n3"]));

    // Custom models: bad input names the parameter and writes nothing.
    let models_cfg = n1.etc().join("virtual-guest/cpu-models.conf");
    for (form, field) in [
        (
            vec![("cputype", "web"), ("reported-model", "x86-64-v3")],
            "reported-model",
        ),
        (
            vec![("cputype", "web"), ("reported-model", "Pentium9")],
            "reported-model",
        ),
        (vec![("cputype", "web"), ("flags", "avx2")], "flags"),
        (vec![("cputype", "1web")], "cputype"),
        (vec![("cputype", "web"), ("phys-bits", "99")], "phys-bits"),
    ] {
        let r = n1.request("POST", "/cluster/qemu/custom-cpu-models", &root, &form);
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {}", r.raw);
    }
    assert!(!models_cfg.exists());
    let r = n1.request(
        "POST",
        "/cluster/qemu/custom-cpu-models",
        &root,
        &[
            ("cputype", "custom-web"),
            ("reported-model", "qemu64"),
            ("flags", "+avx2;+sse4_1"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Every node reads it (once the write has reached it).
    let mut model = n2.request("GET", "/cluster/qemu/custom-cpu-models/web", &root, &[]);
    wait_for("n2 has the model", Duration::from_secs(10), || {
        model = n2.request("GET", "/cluster/qemu/custom-cpu-models/web", &root, &[]);
        model.status == 200
    });
    assert_eq!(model.body["data"]["cputype"], "custom-web", "{}", model.raw);
    assert_eq!(model.body["data"]["flags"], "+avx2;+sse4_1");
    let r = n1.request(
        "PUT",
        "/cluster/qemu/custom-cpu-models/web",
        &root,
        &[("digest", "0000"), ("hidden", "1")],
    );
    assert_eq!(r.status, 400, "a stale digest is refused: {r:?}");
    let digest = model.body["data"]["digest"].as_str().unwrap().to_string();
    let r = n1.request(
        "PUT",
        "/cluster/qemu/custom-cpu-models/web",
        &root,
        &[("digest", &digest), ("hidden", "1")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    wait_for(
        "the file reaches n1's mirror",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&models_cfg).unwrap_or_default()
                == "cpu-model: web\n\treported-model qemu64\n\tflags +avx2;+sse4_1\n\thidden 1\n"
        },
    );
    assert!(models(n1).contains(&"custom-web".to_string()));
    assert!(!models(n2).contains(&"custom-web".to_string()));

    // Guests: the default model is the highest every node runs; a custom model must
    // exist; guest configs take only the whitelisted flags.
    n1.task_ok(
        &root,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "100"), ("memory", "64"), ("cpu", "x86-64-v3")],
    );
    n1.task_ok(
        &root,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "101"), ("memory", "64")],
    );
    n1.task_ok(
        &root,
        "POST",
        "/nodes/n1/qemu",
        &[("vmid", "102"), ("memory", "64"), ("cpu", "custom-web")],
    );
    let config = n1.request("GET", "/nodes/n1/qemu/101/config", &root, &[]);
    assert_eq!(config.body["data"]["cpu"], "x86-64-v2", "{}", config.raw);
    for value in ["custom-nope", "x86-64-v3,flags=+avx2"] {
        let r = n1.request(
            "POST",
            "/nodes/n1/qemu",
            &root,
            &[("vmid", "103"), ("memory", "64"), ("cpu", value)],
        );
        assert_eq!(r.status, 400, "{value}: {r:?}");
        assert!(r.body["errors"]["cpu"].is_string(), "{value}: {}", r.raw);
    }
    let r = n1.request("DELETE", "/cluster/qemu/custom-cpu-models/web", &root, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = n1.request(
        "POST",
        "/cluster/qemu/custom-cpu-models",
        &root,
        &[
            ("cputype", "web"),
            ("reported-model", "qemu64"),
            ("flags", "+avx2"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");

    // Migration: n2 is refused with what it lacks, n3 is allowed.
    for vmid in ["100", "102"] {
        let pre = n1.request("GET", &format!("/nodes/n1/qemu/{vmid}/migrate"), &root, &[]);
        let data = &pre.body["data"];
        assert_eq!(data["allowed_nodes"], json!(["n3"]), "{vmid}: {}", pre.raw);
        let refused = &data["not_allowed_nodes"]["n2"];
        assert!(
            refused["missing-cpu-flags"]
                .as_array()
                .unwrap()
                .contains(&json!("avx2")),
            "{}",
            pre.raw
        );
        assert!(
            refused["reason"].as_str().unwrap().contains("lacks"),
            "{}",
            pre.raw
        );
    }
    let r = n1.request(
        "POST",
        "/nodes/n1/qemu/100/migrate",
        &root,
        &[("target", "n2")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body["errors"]["target"]
            .as_str()
            .unwrap()
            .contains("avx2"),
        "{}",
        r.raw
    );
    assert!(n1.etc().join("nodes/n1/qemu-server/100.conf").exists());
    // A node does not start a guest whose CPU model it cannot run (TCG would silently
    // drop the flags).
    n2.task_ok(
        &root,
        "POST",
        "/nodes/n2/qemu",
        &[("vmid", "105"), ("memory", "64"), ("cpu", "x86-64-v3")],
    );
    let r = n2.request("POST", "/nodes/n2/qemu/105/status/start", &root, &[]);
    let status = n2.wait_task(&root, r.body["data"].as_str().expect("upid"));
    let exit = status["exitstatus"].as_str().unwrap_or_default();
    assert!(
        exit.contains("node 'n2' cannot run CPU model 'x86-64-v3': it lacks aes, avx2"),
        "{status}"
    );
    assert!(!guest_running(&n2.path().join("run"), 105));
    let pre = n1.request("GET", "/nodes/n1/qemu/101/migrate", &root, &[]);
    assert_eq!(
        pre.body["data"]["allowed_nodes"],
        json!(["n2", "n3"]),
        "{}",
        pre.raw
    );

    // Privileges: custom models are Mapping.Modify's; choosing one needs Mapping.Use.
    n1.add_user(&root, "vmadmin@pve", "secret99", &[("/", "PVEVMAdmin")]);
    let user = n1.login_as("vmadmin@pve", "secret99");
    let r = n1.request(
        "POST",
        "/cluster/qemu/custom-cpu-models",
        &user,
        &[("cputype", "mine")],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = n1.request("DELETE", "/cluster/qemu/custom-cpu-models/web", &user, &[]);
    assert_eq!(r.status, 403, "{r:?}");
    let listed = n1.request("GET", "/cluster/qemu/custom-cpu-models", &user, &[]);
    assert_eq!(listed.body["data"], json!([]), "{}", listed.raw);
    // Every flag QEMU knows is for those who audit nodes or manage CPU mappings.
    let r = n1.request("GET", "/cluster/qemu/cpu-flags", &user, &[]);
    assert_eq!(r.status, 403, "{r:?}");
    let form = [("vmid", "104"), ("memory", "64"), ("cpu", "custom-web")];
    let r = n1.request("POST", "/nodes/n1/qemu", &user, &form);
    assert_eq!(r.status, 403, "{r:?}");
    let r = n1.request(
        "PUT",
        "/access/acl",
        &root,
        &[
            ("path", "/mapping/cpu/web"),
            ("roles", "PVEMappingUser"),
            ("users", "vmadmin@pve"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    n1.task_ok(&user, "POST", "/nodes/n1/qemu", &form);
    let listed = n1.request("GET", "/cluster/qemu/custom-cpu-models", &user, &[]);
    assert_eq!(
        names_of(&listed.body["data"]),
        ["custom-web"],
        "{}",
        listed.raw
    );

    // HA: a maintenance evacuation skips n2 (alphabetically first, but its CPU lacks
    // avx2), and a manual migration there is refused and logged.
    let r = n1.request("POST", "/cluster/ha/resources", &root, &[("sid", "vm:100")]);
    assert_eq!(r.status, 200, "{r:?}");
    let running_on = |vmid: u32| {
        nodes
            .iter()
            .find(|d| guest_running(&d.path().join("run"), vmid))
            .map(|d| d.name.clone())
    };
    wait_for("HA starts vm:100 on n1", Duration::from_secs(60), || {
        running_on(100).as_deref() == Some("n1")
    });
    // The API refuses the move at once, naming the node; the raw CRM command is refused
    // (and logged) by the CRM.
    let r = n1.request(
        "POST",
        "/cluster/ha/resources/vm:100/migrate",
        &root,
        &[("node", "n2")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body["errors"]["node"]
            .as_str()
            .unwrap_or_default()
            .contains("lacks aes, avx2"),
        "{}",
        r.raw
    );
    let r = n1.request(
        "POST",
        "/cluster/ha/crm-command",
        &root,
        &[("command", "migrate vm:100 n2")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    wait_for(
        "the CRM refuses to move vm:100 to n2",
        Duration::from_secs(30),
        || {
            log_of(&nodes).contains("crm command error - node 'n2' cannot run CPU model 'x86-64-v3': it lacks aes, avx2")
        },
    );
    let r = n1.request(
        "POST",
        "/cluster/ha/crm-command",
        &root,
        &[("command", "node-maintenance enable n1")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    wait_for("vm:100 leaves n1", Duration::from_secs(90), || {
        let on = running_on(100);
        assert_ne!(
            on.as_deref(),
            Some("n2"),
            "vm:100 went to a node that lacks avx2"
        );
        on.as_deref() == Some("n3")
    });
    assert!(
        log_of(&nodes).contains(
            "service 'vm:100': node skipped - node 'n2' cannot run CPU model 'x86-64-v3'"
        ),
        "the HA log says why n2 was skipped"
    );
}

fn names_of(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["cputype"].as_str().unwrap().to_string())
        .collect()
}

/// Whether `/dev/kvm` can be opened (the KVM half of the model test needs it).
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The flags the first vCPU of a running guest has, asked over its QMP socket.
fn guest_flags(run_dir: &std::path::Path, vmid: u32, flags: &[&str]) -> Vec<(String, bool)> {
    let socket = run_dir.join(format!("{vmid}.qmp"));
    let mut qmp = ferrox_qemu::Qmp::connect(&socket, Duration::from_secs(10)).expect("QMP");
    let cpus = qmp
        .execute("query-cpus-fast", None)
        .expect("query-cpus-fast");
    let path = cpus[0]["qom-path"].as_str().expect("qom-path").to_string();
    flags
        .iter()
        .map(|flag| {
            let value = qmp
                .execute("qom-get", Some(json!({"path": path, "property": flag})))
                .unwrap_or_else(|e| panic!("qom-get {flag}: {e}"));
            (flag.to_string(), value.as_bool() == Some(true))
        })
        .collect()
}

/// Every built-in model the node says it runs starts in a real QEMU, and the guest's
/// vCPU has exactly the model's flags on top of qemu64 (AVX2 only from x86-64-v3 on).
#[test]
fn every_built_in_model_the_host_runs_starts_with_its_flags() {
    if !qemu_available() {
        return;
    }
    let mut accels = vec!["tcg"];
    if kvm_usable() {
        accels.push("kvm");
    } else {
        eprintln!("SKIPPED (KVM half): /dev/kvm cannot be opened");
    }
    for accel in accels {
        let d = start_daemon(accel);
        let root = d.login();
        let mut runs = Vec::new();
        wait_for("the node tells its CPU", Duration::from_secs(30), || {
            let r = d.request("GET", "/cluster/qemu/cpu-baseline", &root, &[]);
            let row = &r.body["data"]["nodes"][0];
            if !row.is_object() || !row["unknown"].is_null() {
                return false;
            }
            runs = names(
                &d.request("GET", "/nodes/pve1/capabilities/qemu/cpu", &root, &[])
                    .body["data"],
            );
            true
        });
        let built_in: Vec<&str> = ["x86-64-v2", "x86-64-v2-AES", "x86-64-v3", "x86-64-v4"]
            .into_iter()
            .filter(|m| runs.iter().any(|r| r == m))
            .collect();
        if built_in.is_empty() {
            // This host's KVM lacks pni (SSE3): even qemu64 does not start with `enforce`.
            eprintln!("SKIPPED ({accel}): this host runs no built-in CPU model with {accel}");
            continue;
        }
        for (i, model) in built_in.iter().enumerate() {
            let vmid = (200 + i).to_string();
            d.task_ok(
                &root,
                "POST",
                "/nodes/pve1/qemu",
                &[("vmid", &vmid), ("memory", "64"), ("cpu", model)],
            );
            d.task_ok(
                &root,
                "POST",
                &format!("/nodes/pve1/qemu/{vmid}/status/start"),
                &[],
            );
            let (_, flags) = ferrox_types::cpu::builtin(model).unwrap();
            let mut expected: Vec<&str> = flags.split(';').map(|f| &f[1..]).collect();
            expected.sort();
            let seen = guest_flags(&d.path().join("run"), 200 + i as u32, &expected);
            assert!(seen.iter().all(|(_, on)| *on), "{accel} {model}: {seen:?}");
            let avx2 = guest_flags(&d.path().join("run"), 200 + i as u32, &["avx2"]);
            assert_eq!(
                avx2[0].1,
                model.starts_with("x86-64-v3") || model.starts_with("x86-64-v4"),
                "{accel} {model}"
            );
            let aes = guest_flags(&d.path().join("run"), 200 + i as u32, &["aes"]);
            assert_eq!(aes[0].1, *model != "x86-64-v2", "{accel} {model}");
            d.task_ok(
                &root,
                "POST",
                &format!("/nodes/pve1/qemu/{vmid}/status/stop"),
                &[],
            );
        }
        eprintln!("{accel}: started {built_in:?}");
    }
}
