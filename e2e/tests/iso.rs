//! ISO images: `download-url` into a storage (checksum checked, nothing left behind on a
//! mismatch), listed as `iso` content, and a guest booting with the image in its CD drive.

use ferrox_e2e::*;
use sha2::Digest;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Serves `body` to every GET on 127.0.0.1 (HTTP/1.0, one request per connection).
fn serve(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut req = [0u8; 2048];
            let _ = conn.read(&mut req);
            let head = format!(
                "HTTP/1.0 200 OK\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    format!("http://{addr}/image.iso")
}

#[test]
fn iso_images_download_list_and_boot() {
    if !qemu_available() {
        return;
    }
    let body: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect();
    let sha256: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = serve(body.clone());
    let d = start_daemon("tcg");
    let root = d.login();
    let iso_dir = d.path().join("storage/local/template/iso");

    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/storage/local/download-url",
        &[
            ("content", "iso"),
            ("filename", "test.iso"),
            ("url", &url),
            ("checksum", &sha256),
            ("checksum-algorithm", "sha256"),
        ],
    );
    assert_eq!(std::fs::read(iso_dir.join("test.iso")).unwrap(), body);
    let content = d
        .request(
            "GET",
            "/nodes/pve1/storage/local/content",
            &root,
            &[("content", "iso")],
        )
        .body["data"]
        .clone();
    assert_eq!(content[0]["volid"], "local:iso/test.iso", "{content}");
    assert_eq!(content[0]["size"], body.len());

    // a wrong checksum: the task fails and leaves nothing
    let r = d.request(
        "POST",
        "/nodes/pve1/storage/local/download-url",
        &root,
        &[
            ("content", "iso"),
            ("filename", "bad.iso"),
            ("url", &url),
            ("checksum", &"0".repeat(64)),
            ("checksum-algorithm", "sha256"),
        ],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let status = d.wait_task(&root, r.body["data"].as_str().unwrap());
    assert!(
        status["exitstatus"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{status}"
    );
    let files: Vec<String> = std::fs::read_dir(&iso_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec!["test.iso"]);

    // refusals name the parameter
    let before = config_snapshot(&d.etc());
    for (form, field) in [
        (
            vec![
                ("content", "iso"),
                ("filename", "../x.iso"),
                ("url", url.as_str()),
            ],
            "filename",
        ),
        (
            vec![
                ("content", "iso"),
                ("filename", "x.txt"),
                ("url", url.as_str()),
            ],
            "filename",
        ),
        (
            vec![
                ("content", "iso"),
                ("filename", "test.iso"),
                ("url", url.as_str()),
            ],
            "filename",
        ),
        (
            vec![
                ("content", "iso"),
                ("filename", "y.iso"),
                ("url", "file:///etc/shadow"),
            ],
            "url",
        ),
        (
            vec![
                ("content", "vztmpl"),
                ("filename", "y.tar.zst"),
                ("url", url.as_str()),
            ],
            "content",
        ),
        (
            vec![
                ("content", "iso"),
                ("filename", "y.iso"),
                ("url", url.as_str()),
                ("checksum", "abc"),
            ],
            "checksum-algorithm",
        ),
    ] {
        let r = d.request(
            "POST",
            "/nodes/pve1/storage/local/download-url",
            &root,
            &form,
        );
        assert_eq!(r.status, 400, "{form:?}: {r:?}");
        assert!(r.body["errors"][field].is_string(), "{form:?}: {}", r.raw);
    }
    // Datastore.AllocateTemplate alone is not enough: the node fetches the URL
    d.add_user(
        &root,
        "ds@pve",
        "datastore1",
        &[("/storage/local", "PVEDatastoreAdmin")],
    );
    let ds = d.login_as("ds@pve", "datastore1");
    let r = d.request(
        "POST",
        "/nodes/pve1/storage/local/download-url",
        &ds,
        &[
            ("content", "iso"),
            ("filename", "z.iso"),
            ("url", url.as_str()),
        ],
    );
    assert_eq!(r.status, 403, "{r:?}");
    let after: Vec<_> = config_snapshot(&d.etc())
        .into_iter()
        .filter(|(p, _)| !p.ends_with("user.cfg") && !p.ends_with("shadow.cfg"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _)| !p.ends_with("user.cfg") && !p.ends_with("shadow.cfg"))
        .collect();
    assert_eq!(after, before);

    // a guest with the image in its CD drive
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[
            ("vmid", "100"),
            ("memory", "64"),
            ("ide2", "local:iso/test.iso,media=cdrom"),
            ("start", "1"),
        ],
    );
    let mut qmp =
        ferrox_qemu::Qmp::connect(&d.path().join("run/100.qmp"), Duration::from_secs(10)).unwrap();
    let blocks = qmp.execute("query-block", None).unwrap();
    let cd = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "drive-ide2")
        .cloned()
        .unwrap();
    assert_eq!(cd["removable"], true, "{cd}");
    assert_eq!(
        cd["inserted"]["file"],
        iso_dir.join("test.iso").to_str().unwrap(),
        "{cd}"
    );
    assert_eq!(cd["inserted"]["ro"], true, "{cd}");
}
