//! Storage benchmarks (issue 15): live migration of a guest with a 2 GiB local disk full of
//! data between two local nodes (idle guest, a guest dirtying its RAM, a guest writing its
//! disk), snapshot
//! create and rollback (disk only, and with RAM), full clone and offline disk move, each
//! against `qemu-img convert` of the same image as this machine's limit.
//!
//! `scripts/bench-storage.sh [runs] [snapshots|migration]` (builds the release binaries
//! first).

use ferrox_e2e::*;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn summary(name: &str, mut v: Vec<f64>, unit: &str) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{name}: n={} min {:.0} {unit}, median {:.0} {unit}, mean {:.0} {unit}, max {:.0} {unit}",
        v.len(),
        v[0],
        v[v.len() / 2],
        mean,
        v[v.len() - 1]
    );
}

fn fill(image: &Path, gib: u64) {
    // Random bytes: nothing to compress and no zeroes, the worst case for every copy.
    let raw = image.with_extension("fill.raw");
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {}G /dev/urandom > '{}'",
            gib,
            raw.display()
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let ok = Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(image)
        .status()
        .unwrap()
        .success();
    assert!(ok, "filling {}", image.display());
    let _ = std::fs::remove_file(&raw);
}

fn log_lines(d: &Daemon, node: &str, upid: &str) -> Vec<String> {
    let r = d.request(
        "GET",
        &format!("/nodes/{node}/tasks/{upid}/log"),
        &d.login(),
        &[("limit", "5000")],
    );
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["t"].as_str().unwrap_or("").to_string())
        .collect()
}

fn number_after(lines: &[String], marker: &str) -> Option<f64> {
    lines.iter().find_map(|l| {
        l.split(marker)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn physical_limit(source: &Path, runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut qcow = Vec::new();
    for i in 0..runs {
        let out = dir.path().join(format!("copy{i}.qcow2"));
        let t = Instant::now();
        let ok = Command::new("qemu-img")
            .args(["convert", "-U", "-f", "qcow2", "-O", "qcow2"])
            .arg(source)
            .arg(&out)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        qcow.push(t.elapsed().as_secs_f64() * 1000.0);
        let _ = std::fs::remove_file(&out);
    }
    summary(
        "qemu-img convert of the 2 GiB image (qcow2 -> qcow2, same file system)",
        qcow,
        "ms",
    );
}

/// What the guest does while it migrates.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    Idle,
    /// The `dirty` payload rewrites its RAM.
    DirtyRam,
    /// 4 MiB writes to the disk every 100 ms (up to 40 MiB/s), issued through the guest's
    /// own QEMU block layer (HMP `qemu-io` on a second QMP monitor) while it runs: the
    /// mirror sees them as it sees a guest's writes (no guest OS here can write a disk).
    DiskWriter,
}

/// Writes to `drive-scsi0` of the QEMU behind `socket` until `stop`; the bytes written.
/// A dropped connection (the source QEMU ended) is not reconnected: the writes that count
/// are the ones during the migration.
fn disk_writer(
    socket: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let Ok(mut qmp) = ferrox_qemu::Qmp::connect(&socket, std::time::Duration::from_secs(10))
        else {
            return 0;
        };
        let mut written = 0u64;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // A guest writes only while it runs: a write through the monitor into the
            // paused source at the hand-over would hit images QEMU has deactivated, which
            // it answers with an assertion failure. (A race of a few ms remains between
            // this check and the write.)
            let running = qmp
                .execute("query-status", None)
                .map(|s| s["running"].as_bool() == Some(true));
            match running {
                Ok(true) => {}
                Ok(false) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
                Err(_) => break,
            }
            // Offsets stride through the 2 GiB disk; each write a new pattern.
            let offset = (n * 97 % 512) * (4 << 20);
            let command = format!(
                "qemu-io drive-scsi0 \"write -P {:#x} {offset} 4M\"",
                n % 251 + 1
            );
            let ok = qmp
                .execute(
                    "human-monitor-command",
                    Some(serde_json::json!({ "command-line": command })),
                )
                .map(|out| !out.as_str().unwrap_or("").contains("error"));
            match ok {
                Ok(true) => written += 4 << 20,
                Ok(false) => {}
                Err(_) => break,
            }
            n += 1;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        written
    })
}

fn migration(runs: usize) {
    let payload_dir = tempfile::tempdir().unwrap();
    let dirty = build_payload(payload_dir.path(), "dirty", DIRTY_PAYLOAD);
    let nodes = local_cluster(2, "benchdisk", "tcg", &[]);
    let root = nodes[0].login();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (i, dir) in dirs.iter().enumerate() {
        let r = nodes[0].request(
            "POST",
            "/storage",
            &root,
            &[
                ("storage", &format!("loc{}", i + 1)),
                ("type", "dir"),
                ("path", dir.path().to_str().unwrap()),
                ("content", "images"),
                ("nodes", &format!("n{}", i + 1)),
            ],
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    for (vmid, load) in [
        (200u32, Load::Idle),
        (201, Load::DirtyRam),
        (202, Load::DiskWriter),
    ] {
        let mut form = vec![
            ("vmid".to_string(), vmid.to_string()),
            ("memory".to_string(), "256".to_string()),
            ("scsi0".to_string(), "loc1:2".to_string()),
        ];
        // A second monitor for the writer: the daemon keeps the first.
        let writer_socket = payload_dir.path().join(format!("writer-{vmid}.qmp"));
        match load {
            Load::Idle => {}
            Load::DirtyRam => {
                let Some(p) = &dirty else {
                    println!("RAM-dirtying guest: SKIPPED (no binutils to build the payload)");
                    continue;
                };
                form.push(("args".into(), format!("-kernel {}", p.display())));
            }
            Load::DiskWriter => form.push((
                "args".into(),
                format!("-qmp unix:{},server=on,wait=off", writer_socket.display()),
            )),
        }
        let form_ref: Vec<(&str, &str)> =
            form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        nodes[0].task_ok(&root, "POST", "/nodes/n1/qemu", &form_ref);
        let image = dirs[0]
            .path()
            .join(format!("images/{vmid}/vm-{vmid}-disk-0.qcow2"));
        let t = Instant::now();
        fill(&image, 2);
        println!(
            "filled the 2 GiB disk of VM {vmid} in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        if load == Load::Idle {
            physical_limit(&image, runs);
        }
        nodes[0].task_ok(
            &root,
            "POST",
            &format!("/nodes/n1/qemu/{vmid}/status/start"),
            &[],
        );
        let (mut total, mut downtime, mut mirror, mut rates) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut here = 0usize;
        for _ in 0..runs {
            let (from, to) = (&nodes[here], &nodes[1 - here]);
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = (load == Load::DiskWriter)
                .then(|| disk_writer(writer_socket.clone(), std::sync::Arc::clone(&stop)));
            let t = Instant::now();
            let upid = from.task_ok(
                &root,
                "POST",
                &format!("/nodes/{}/qemu/{vmid}/migrate", from.name),
                &[
                    ("target", to.name.as_str()),
                    ("online", "1"),
                    ("with-local-disks", "1"),
                    ("targetstorage", &format!("loc{}", 2 - here)),
                ],
            );
            let secs = t.elapsed().as_secs_f64();
            total.push(secs * 1000.0);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(w) = writer {
                let bytes = w.join().unwrap_or(0);
                rates.push(bytes as f64 / f64::from(1 << 20) / secs);
            }
            let lines = log_lines(from, &from.name, &upid);
            if let Some(ms) = number_after(&lines, "disk mirrors in sync after ") {
                mirror.push(ms);
            }
            if let Some(ms) = number_after(&lines, ": downtime ") {
                downtime.push(ms);
            }
            here = 1 - here;
        }
        let label = match load {
            Load::Idle => "idle guest",
            Load::DirtyRam => "RAM-dirtying guest",
            Load::DiskWriter => "disk-writing guest",
        };
        summary(
            &format!("{label}, 256 MiB RAM, 2 GiB local disk: migrate call to task end"),
            total,
            "ms",
        );
        summary(
            &format!("{label}: disk mirrors in sync after"),
            mirror,
            "ms",
        );
        summary(
            &format!("{label}: downtime incl. hand-over"),
            downtime,
            "ms",
        );
        if !rates.is_empty() {
            summary(
                &format!("{label}: guest writes during the migration"),
                rates,
                "MiB/s",
            );
        }
        println!("bytes moved per migration: 2 GiB of disk (every byte written) + the RAM");
        let node = &nodes[here];
        node.task_ok(
            &root,
            "POST",
            &format!("/nodes/{}/qemu/{vmid}/status/stop", node.name),
            &[],
        );
    }
}

fn snapshots_and_copies(runs: usize) {
    let d = start_daemon("tcg");
    let root = d.login();
    d.task_ok(
        &root,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "300"), ("memory", "512"), ("scsi0", "local:2")],
    );
    let image = d
        .path()
        .join("storage/local/images/300/vm-300-disk-0.qcow2");
    fill(&image, 2);
    let time = |method: &str, path: &str, form: &[(&str, &str)]| {
        let t = Instant::now();
        d.task_ok(&root, method, path, form);
        t.elapsed().as_secs_f64() * 1000.0
    };
    let (mut create, mut rollback, mut delete) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("s{i}");
        create.push(time(
            "POST",
            "/nodes/pve1/qemu/300/snapshot",
            &[("snapname", &name)],
        ));
        rollback.push(time(
            "POST",
            &format!("/nodes/pve1/qemu/300/snapshot/{name}/rollback"),
            &[],
        ));
        delete.push(time(
            "DELETE",
            &format!("/nodes/pve1/qemu/300/snapshot/{name}"),
            &[],
        ));
    }
    summary(
        "stopped guest, 2 GiB qcow2 full of data: snapshot (task)",
        create,
        "ms",
    );
    summary("stopped guest: rollback (task)", rollback, "ms");
    summary("stopped guest: delete snapshot (task)", delete, "ms");

    d.task_ok(&root, "POST", "/nodes/pve1/qemu/300/status/start", &[]);
    let (mut create, mut rollback) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let name = format!("r{i}");
        create.push(time(
            "POST",
            "/nodes/pve1/qemu/300/snapshot",
            &[("snapname", &name), ("vmstate", "1")],
        ));
        rollback.push(time(
            "POST",
            &format!("/nodes/pve1/qemu/300/snapshot/{name}/rollback"),
            &[],
        ));
        time(
            "DELETE",
            &format!("/nodes/pve1/qemu/300/snapshot/{name}"),
            &[],
        );
    }
    summary(
        "running guest, 512 MiB RAM (firmware only): snapshot with RAM (task)",
        create,
        "ms",
    );
    summary(
        "running guest: rollback to it, resumed (task)",
        rollback,
        "ms",
    );
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/300/status/stop", &[]);

    let mut clone = Vec::new();
    for i in 0..runs {
        let newid = (400 + i).to_string();
        clone.push(time(
            "POST",
            "/nodes/pve1/qemu/300/clone",
            &[("newid", &newid)],
        ));
        d.task_ok(&root, "DELETE", &format!("/nodes/pve1/qemu/{newid}"), &[]);
    }
    summary(
        "full clone of the stopped guest (2 GiB, same storage)",
        clone,
        "ms",
    );
    d.task_ok(&root, "POST", "/nodes/pve1/qemu/300/status/start", &[]);
    let mut live = Vec::new();
    for i in 0..runs {
        let newid = (450 + i).to_string();
        live.push(time(
            "POST",
            "/nodes/pve1/qemu/300/clone",
            &[("newid", &newid)],
        ));
        d.task_ok(&root, "DELETE", &format!("/nodes/pve1/qemu/{newid}"), &[]);
    }
    summary("full clone of the running guest (drive-mirror)", live, "ms");

    // Backups of the 2 GiB disk (running guest, snapshot mode), then restores.
    let (mut backup, mut restore) = (Vec::new(), Vec::new());
    let mut archive = String::new();
    for _ in 0..runs {
        backup.push(time("POST", "/nodes/pve1/vzdump", &[("vmid", "300")]));
        let list = d
            .request(
                "GET",
                "/nodes/pve1/storage/local/content",
                &root,
                &[("content", "backup")],
            )
            .body["data"]
            .clone();
        let last = list.as_array().unwrap().last().unwrap().clone();
        archive = last["volid"].as_str().unwrap().to_string();
        println!(
            "archive {archive}: {:.0} MiB compressed",
            last["size"].as_u64().unwrap() as f64 / 1048576.0
        );
    }
    summary(
        "backup of the running guest, 2 GiB disk full of data (snapshot mode, task)",
        backup.clone(),
        "ms",
    );
    summary(
        "  as MiB/s of disk data",
        backup.iter().map(|ms| 2048.0 / (ms / 1000.0)).collect(),
        "MiB/s",
    );
    for i in 0..runs {
        let newid = (500 + i).to_string();
        restore.push(time(
            "POST",
            "/nodes/pve1/qemu",
            &[("vmid", &newid), ("archive", &archive)],
        ));
        d.task_ok(&root, "DELETE", &format!("/nodes/pve1/qemu/{newid}"), &[]);
    }
    summary(
        "restore of that archive to a new guest (task)",
        restore.clone(),
        "ms",
    );
    summary(
        "  as MiB/s of disk data",
        restore.iter().map(|ms| 2048.0 / (ms / 1000.0)).collect(),
        "MiB/s",
    );
    physical_limit(&image, runs);
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    // The second argument picks one part: `snapshots` or `migration` (default both).
    let part = std::env::args().nth(2).unwrap_or_default();
    if part != "migration" {
        snapshots_and_copies(runs);
    }
    if part != "snapshots" {
        migration(runs);
    }
}
