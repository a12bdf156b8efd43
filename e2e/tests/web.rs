//! The web UI in a real browser (Debian's Chromium driven by playwright-core, see
//! `web/tests/browser.mjs`) against a real 3-node cluster with a running echo guest on
//! each node and two more on n1, so that the balancing plan has something to move.
//! Skips loudly without Chromium, Node.js or the built UI (scripts/test.sh provides
//! all three). `FERROX_UPDATE_SCREENSHOTS=1` saves the screenshots into `docs/ui/`.

use ferrox_e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn web_ui_in_a_browser() {
    if !qemu_available() {
        return;
    }
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    for (what, path) in [
        (
            "Chromium (apt-get install chromium)",
            Path::new(&chromium).to_path_buf(),
        ),
        (
            "the built UI (npm run build in web/)",
            web.join("dist/index.html"),
        ),
        (
            "playwright-core (npm ci in web/)",
            web.join("node_modules/playwright-core"),
        ),
    ] {
        if !path.exists() {
            eprintln!(
                "SKIPPED: the browser tests need {what}: {} is missing",
                path.display()
            );
            return;
        }
    }
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIPPED: the browser tests need Node.js");
        return;
    }
    let payload_dir = tempfile::tempdir().unwrap();
    let Some(echo) = build_payload(payload_dir.path(), "echo", ECHO_PAYLOAD) else {
        eprintln!("SKIPPED: building the echo guest needs binutils (as, ld)");
        return;
    };
    let nodes = local_cluster(3, "web", "tcg", &[]);
    let root = nodes[0].login();
    let args = format!("-kernel {}", echo.display());
    for (node, vmid) in [
        ("n1", "100"),
        ("n2", "101"),
        ("n3", "102"),
        ("n1", "103"),
        ("n1", "104"),
    ] {
        nodes[0].task_ok(
            &root,
            "POST",
            &format!("/nodes/{node}/qemu"),
            &[
                ("vmid", vmid),
                ("name", &format!("echo{vmid}")),
                ("memory", "64"),
                ("serial0", "socket"),
                ("args", &args),
                ("start", "1"),
            ],
        );
    }
    wait_for("the echo guests run", Duration::from_secs(60), || {
        let r = nodes[0].request("GET", "/cluster/resources", &root, &[("type", "vm")]);
        r.body["data"]
            .as_array()
            .is_some_and(|rows| rows.iter().filter(|g| g["status"] == "running").count() == 5)
    });
    // A user with a TOTP second factor, for the two-step login.
    const TOTP_URL: &str =
        "otpauth://totp/Ferrox:alice@pve?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Ferrox";
    nodes[0].add_user(&root, "alice@pve", "alice-secret1", &[("/", "PVEAuditor")]);
    let alice = nodes[0].login_as("alice@pve", "alice-secret1");
    let code = totp_rs::Totp::from_url_unchecked(TOTP_URL)
        .unwrap()
        .generate(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .to_string();
    let r = nodes[0].request(
        "POST",
        "/access/tfa/alice@pve",
        &alice,
        &[
            ("type", "totp"),
            ("totp", TOTP_URL),
            ("value", code.as_str()),
            ("password", "alice-secret1"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    std::fs::create_dir_all(payload_dir.path().join("webdir")).unwrap();
    let shots = if let Some(dir) = std::env::var_os("FERROX_SHOTS") {
        std::path::PathBuf::from(dir)
    } else if std::env::var_os("FERROX_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ui")
    } else {
        payload_dir.path().join("shots")
    };
    let status = Command::new("node")
        .arg("tests/browser.mjs")
        .current_dir(&web)
        .env("FERROX_URL", format!("https://{}/", nodes[0].addr))
        .env("FERROX_PASSWORD", "secret1")
        .env("FERROX_GUESTS", r#"{"n1": 100, "n2": 101, "n3": 102}"#)
        .env("FERROX_SHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("FERROX_STORAGE_DIR", payload_dir.path().join("webdir"))
        .env("FERROX_TFA_USER", "alice@pve")
        .env("FERROX_TFA_PASSWORD", "alice-secret1")
        .env("FERROX_TFA_SECRET", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
        .status()
        .expect("running node");
    assert!(status.success(), "the browser tests failed (see above)");
}
