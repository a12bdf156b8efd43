//! Notifications (`/cluster/notifications`): a matcher routes failed tasks to a webhook
//! target, whose templated body reaches an HTTP listener started by the test; the test
//! send; bad targets and matchers are refused naming the parameter.

use base64::Engine;
use ferrox_e2e::*;
use std::time::Duration;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn failed_tasks_reach_a_webhook_through_a_matcher() {
    let d = start_daemon("tcg");
    let auth = d.login();
    let (url, bodies) = http_receiver();
    let body = r#"{"title":"{{ escape title }}","severity":"{{ severity }}","type":"{{ fields.type }}","host":"{{ fields.hostname }}","token":"{{ secrets.token }}"}"#;
    let r = d.request(
        "POST",
        "/cluster/notifications/endpoints/webhook",
        &auth,
        &[
            ("name", "hook"),
            ("url", &url),
            ("method", "post"),
            (
                "header",
                &format!("name=Content-Type,value={}", b64("application/json")),
            ),
            ("body", &b64(body)),
            ("secret", &format!("name=token,value={}", b64("s3cret"))),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // The secret is kept apart and never shown.
    let listed = d.request(
        "GET",
        "/cluster/notifications/endpoints/webhook",
        &auth,
        &[],
    );
    assert!(
        !listed.raw.contains("s3cret") && !listed.raw.contains(&b64("s3cret")),
        "{}",
        listed.raw
    );
    assert!(!std::fs::read_to_string(d.etc().join("notifications.cfg"))
        .unwrap()
        .contains(&b64("s3cret")));

    // The test send goes out at once.
    let r = d.request(
        "POST",
        "/cluster/notifications/targets/hook/test",
        &auth,
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let test: serde_json::Value =
        serde_json::from_str(&bodies.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(test["title"], "Test notification");
    assert_eq!(test["token"], "s3cret");

    let r = d.request(
        "POST",
        "/cluster/notifications/matchers",
        &auth,
        &[
            ("name", "failures"),
            ("target", "hook"),
            ("match-severity", "error"),
            ("match-field", "exact:type=task,migrate"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("name", "n"), ("memory", "64")],
    );
    // Suspending a guest that does not run fails as a task.
    let r = d.request("POST", "/nodes/pve1/qemu/100/status/suspend", &auth, &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let upid = r.body["data"].as_str().unwrap().to_string();
    assert_ne!(d.wait_task(&auth, &upid)["exitstatus"], "OK");
    let sent: serde_json::Value =
        serde_json::from_str(&bodies.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(sent["severity"], "error", "{sent}");
    assert_eq!(sent["type"], "task", "{sent}");
    assert_eq!(sent["host"], "pve1", "{sent}");
    assert!(
        sent["title"].as_str().unwrap().contains("qmsuspend"),
        "{sent}"
    );
    // A successful task sends nothing.
    d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu/100/config",
        &[("description", "x")],
    );
    assert!(bodies.recv_timeout(Duration::from_secs(2)).is_err());
}

#[test]
fn bad_targets_and_matchers_are_refused_naming_the_parameter() {
    let d = start_daemon("tcg");
    let auth = d.login();
    let before = std::fs::read_to_string(d.etc().join("notifications.cfg")).unwrap_or_default();
    for (path, form, field) in [
        (
            "/cluster/notifications/endpoints/webhook",
            vec![("name", "h"), ("url", "ftp://x/y")],
            "url",
        ),
        (
            "/cluster/notifications/endpoints/webhook",
            vec![("name", "h")],
            "url",
        ),
        (
            "/cluster/notifications/endpoints/sendmail",
            vec![("name", "m"), ("mailto", "nobody")],
            "mailto",
        ),
        (
            "/cluster/notifications/matchers",
            vec![("name", "x"), ("match-severity", "fatal")],
            "match-severity",
        ),
        (
            "/cluster/notifications/matchers",
            vec![("name", "x"), ("match-field", "fuzzy:type=a")],
            "match-field",
        ),
        (
            "/cluster/notifications/matchers",
            vec![("name", "x"), ("target", "nosuch")],
            "target",
        ),
        (
            "/cluster/notifications/matchers",
            vec![("name", "1x")],
            "name",
        ),
    ] {
        let r = d.request("POST", path, &auth, &form);
        assert_eq!(r.status, 400, "{path} {form:?}: {r:?}");
        assert!(
            r.body["errors"][field].is_string(),
            "{path} {form:?}: {}",
            r.raw
        );
    }
    let after = std::fs::read_to_string(d.etc().join("notifications.cfg")).unwrap_or_default();
    assert_eq!(before, after);
}

#[test]
fn creating_a_webhook_needs_mapping_modify_and_network_rights_and_secrets_go_with_it() {
    let d = start_daemon("tcg");
    let root = d.login();
    // Mapping.Modify alone is not enough: a webhook reaches the network.
    d.add_user(
        &root,
        "mapper@pve",
        "mappersecret1",
        &[("/mapping/notifications", "PVEMappingAdmin")],
    );
    d.add_user(
        &root,
        "auditor@pve",
        "auditorsecret1",
        &[("/", "PVEAuditor")],
    );
    let form = [("name", "hook"), ("url", "http://127.0.0.1:9/h")];
    for (user, password) in [
        ("mapper@pve", "mappersecret1"),
        ("auditor@pve", "auditorsecret1"),
    ] {
        let auth = d.login_as(user, password);
        let r = d.request(
            "POST",
            "/cluster/notifications/endpoints/webhook",
            &auth,
            &form,
        );
        assert_eq!(r.status, 403, "{user}: {r:?}");
    }
    assert!(
        !d.etc().join("notifications.cfg").exists()
            || !std::fs::read_to_string(d.etc().join("notifications.cfg"))
                .unwrap()
                .contains("hook")
    );

    // A secret that is not name=...,value=<base64> is refused naming `secret`.
    let r = d.request(
        "POST",
        "/cluster/notifications/endpoints/webhook",
        &root,
        &[
            ("name", "hook"),
            ("url", "http://127.0.0.1:9/h"),
            ("secret", "name=t,value=%%%"),
        ],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body["errors"]["secret"].is_string(), "{}", r.raw);

    let r = d.request(
        "POST",
        "/cluster/notifications/endpoints/webhook",
        &root,
        &[
            ("name", "hook"),
            ("url", "http://127.0.0.1:9/h"),
            ("secret", &format!("name=t,value={}", b64("x"))),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let secrets =
        || std::fs::read_to_string(d.etc().join("priv/notifications.cfg")).unwrap_or_default();
    assert!(secrets().contains("webhook: hook"));
    let r = d.request(
        "DELETE",
        "/cluster/notifications/endpoints/webhook/hook",
        &root,
        &[],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        !secrets().contains("hook"),
        "secrets left behind: {}",
        secrets()
    );
}
