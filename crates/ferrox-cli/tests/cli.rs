//! The `ferrox` binary end to end: output on good input, named errors on bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ferrox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrox"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrox-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ha-failover")
}

fn copy_example(name: &str) -> PathBuf {
    let dir = scratch(name);
    for entry in std::fs::read_dir(example()).expect("example dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    dir
}

#[test]
fn sim_run_prints_the_event_log_of_the_bundled_example() {
    let out = ferrox()
        .args(["sim", "run"])
        .arg(example())
        .output()
        .expect("run ferrox");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8(out.stdout).expect("utf8");
    assert!(log.starts_with("info      0     hardware: starting simulation\n"));
    assert!(log.contains("node1/crm: recover service 'vm:103' from fenced node 'node3' to node"));
    assert!(log.contains("node1/crm: got crm command: migrate vm:101 node3"));
    assert!(log.ends_with("hardware: exit simulation - done\n"));
}

fn expect_error(dir: &Path, needles: &[&str]) {
    let out = ferrox()
        .args(["sim", "run"])
        .arg(dir)
        .output()
        .expect("run ferrox");
    assert!(!out.status.success(), "bad input was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in needles {
        assert!(
            err.contains(needle),
            "error '{err}' does not mention '{needle}'"
        );
    }
    assert!(out.stdout.is_empty(), "no log may be printed for bad input");
}

#[test]
fn missing_cmdlist_names_the_file() {
    let dir = copy_example("no-cmdlist");
    std::fs::remove_file(dir.join("cmdlist")).expect("rm");
    expect_error(&dir, &["cmdlist", "missing"]);
}

#[test]
fn malformed_service_config_names_file_and_field() {
    let dir = copy_example("bad-service");
    std::fs::write(
        dir.join("service_config"),
        r#"{ "vm:101": { "node": "node1", "max_restart": "many" } }"#,
    )
    .expect("write");
    expect_error(&dir, &["service_config", "vm:101.max_restart"]);
    std::fs::write(
        dir.join("service_config"),
        r#"{ "vm:101": { "node": "node9" } }"#,
    )
    .expect("write");
    expect_error(&dir, &["service_config", "vm:101.node", "node9"]);
}

#[test]
fn bad_command_names_its_position() {
    let dir = copy_example("bad-cmd");
    std::fs::write(
        dir.join("cmdlist"),
        r#"[["power node1 on"], ["power node7 on"]]"#,
    )
    .expect("write");
    expect_error(&dir, &["cmdlist", "[1][0]", "node7"]);
}

#[test]
fn bad_datacenter_key_is_named() {
    let dir = copy_example("bad-dc");
    std::fs::write(
        dir.join("datacenter.cfg"),
        r#"{ "crs": { "ha-auto-rebalance-method": "random" } }"#,
    )
    .expect("write");
    expect_error(&dir, &["datacenter.cfg", "crs.ha-auto-rebalance-method"]);
}

#[test]
fn invalid_json_is_reported_with_file() {
    let dir = copy_example("bad-json");
    std::fs::write(dir.join("hardware_status"), "{ not json").expect("write");
    expect_error(&dir, &["hardware_status", "invalid JSON"]);
}

#[test]
fn rules_check_reports_drops_and_compiles() {
    let dir = scratch("rules");
    let file = dir.join("rules.cfg");
    std::fs::write(
        &file,
        "resource-affinity: lonely\n\tresources vm:101\n\taffinity negative\n\nnode-affinity: pin\n\tresources vm:102\n\tnodes node2:2,node3\n\tstrict 1\n",
    )
    .expect("write");
    let out = ferrox()
        .args(["ha", "rules", "check"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(text.contains(
        "Drop rule 'lonely', because rule is ineffective as there are less than two resources."
    ));
    assert!(text.contains("--- Compiled Config ---"));
    assert!(text.contains("\"node2\" : {\n               \"priority\" : 2"));
}

#[test]
fn rules_check_names_the_bad_property() {
    let dir = scratch("bad-rules");
    let file = dir.join("rules.cfg");
    std::fs::write(
        &file,
        "node-affinity: pin\n\tresources vm:102\n\tnodes node2:high\n",
    )
    .expect("write");
    let out = ferrox()
        .args(["ha", "rules", "check"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.cfg") && err.contains("'pin'") && err.contains("nodes"),
        "{err}"
    );
}

fn crs_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/crs/small-cluster.json")
}

fn run_ok(args: &[&str], file: &Path) -> String {
    let out = ferrox().args(args).arg(file).output().expect("run ferrox");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

#[test]
fn crs_plan_prints_table_and_json() {
    let table = run_ok(&["crs", "plan"], &crs_example());
    assert!(table.contains("step  guest"), "{table}");
    assert!(table.contains("vm:101"), "{table}");
    let json = run_ok(&["crs", "plan", "--json"], &crs_example());
    assert!(json.contains("\"imbalance_after\""));
    assert!(json.contains("\"steps\""));
    // The opted-out container and the guest in its cool-down never move.
    assert!(
        !table.contains("ct:104") && !table.contains("vm:201"),
        "{table}"
    );
}

#[test]
fn crs_pve_method_gives_one_move() {
    let out = run_ok(
        &["crs", "plan", "--method", "pve-bruteforce"],
        &crs_example(),
    );
    assert!(out.starts_with("migrate "), "{out}");
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn crs_evacuate_infeasible_exits_2_and_names_the_rule() {
    let dir = scratch("evac");
    let file = dir.join("s.json");
    let text = std::fs::read_to_string(crs_example())
        .expect("example")
        .replace(
            r#""nodes": { "pve1": 2, "pve2": 1 }"#,
            r#""nodes": { "pve1": 2 }"#,
        );
    std::fs::write(&file, text).expect("write");
    let out = ferrox()
        .args(["crs", "evacuate"])
        .arg(&file)
        .arg("pve1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vm:100") && err.contains("strict node affinity rule 'big-vm-home'"),
        "{err}"
    );
}

#[test]
fn crs_best_node_and_capacity_errors() {
    let out = run_ok(
        &["crs", "best-node", "--cores", "2", "--memory", "8G"],
        &crs_example(),
    );
    assert!(
        out.lines().next().unwrap_or("").contains("imbalance after"),
        "{out}"
    );
    let out = ferrox()
        .args(["crs", "best-node", "--cores", "2", "--memory", "2T"])
        .arg(crs_example())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not enough memory"));
    let out = ferrox()
        .args(["crs", "best-node", "--cores", "2", "--memory", "lots"])
        .arg(crs_example())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--memory"));
}

#[test]
fn crs_host_memory_reserve_is_parsed_and_checked() {
    // Not a size, and larger than a node: exit 1 naming the option or the field.
    for (reserve, names) in [
        ("lots", "--host-memory-reserve"),
        ("4T", "settings.host_memory_reserve"),
    ] {
        let out = ferrox()
            .args(["crs", "plan", "--host-memory-reserve", reserve])
            .arg(crs_example())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{reserve}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(names), "{reserve}: {err}");
    }
    let out = run_ok(
        &["crs", "plan", "--host-memory-reserve", "1G", "--json"],
        &crs_example(),
    );
    assert!(out.contains("imbalance_after"), "{out}");
}

#[test]
fn crs_malformed_snapshot_names_the_field() {
    let dir = scratch("bad-snapshot");
    let file = dir.join("s.json");
    let text = std::fs::read_to_string(crs_example())
        .expect("example")
        .replacen(r#""node": "pve1""#, r#""node": "pve9""#, 1);
    std::fs::write(&file, text).expect("write");
    let out = ferrox()
        .args(["crs", "plan"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("guests[0].node") && err.contains("pve9"),
        "{err}"
    );
    std::fs::write(
        &file,
        r#"{"nodes": [{"name": "a", "cores": 4, "memory": "lots"}]}"#,
    )
    .expect("write");
    let out = ferrox()
        .args(["crs", "plan"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nodes[0].memory"));
}

#[test]
fn crs_generate_round_trips() {
    let out = ferrox()
        .args([
            "crs",
            "generate",
            "--nodes",
            "4",
            "--guests-per-node",
            "3",
            "--rules",
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
    let dir = scratch("gen");
    let file = dir.join("s.json");
    std::fs::write(&file, &out.stdout).expect("write");
    run_ok(&["crs", "plan"], &file);
}

#[test]
fn crs_plan_refuses_a_snapshot_no_plan_can_satisfy() {
    let dir = scratch("conflict");
    let file = dir.join("s.json");
    std::fs::write(
        &file,
        r#"{"nodes": [{"name": "a", "cores": 8, "memory": 17179869184}, {"name": "b", "cores": 8, "memory": 17179869184}],
            "guests": [{"vmid": 100, "node": "a", "cores": 2, "memory": 4294967296},
                       {"vmid": 101, "node": "a", "cores": 2, "memory": 4294967296}],
            "rules": [{"type": "resource-affinity", "id": "pair", "resources": ["vm:100", "vm:101"], "affinity": "positive"},
                      {"type": "resource-affinity", "id": "split", "resources": ["vm:100", "vm:101"], "affinity": "negative"}]}"#,
    )
    .expect("write");
    let out = ferrox()
        .args(["crs", "plan"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no valid placement exists")
            && err.contains("kept together by rule(s) 'pair' and apart by rule 'split'"),
        "{err}"
    );
}

#[test]
fn node_serve_refuses_a_bad_cpu_flag_mask_naming_the_option() {
    let dir = scratch("mask");
    let out = ferrox()
        .args(["node", "serve", "--data-dir"])
        .arg(&dir)
        .args(["--cpu-flag-mask", "avx2,bad flag"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cpu-flag-mask") && err.contains("'bad flag' is not a CPU flag name"),
        "{err}"
    );
    assert!(!dir.join("store").exists(), "nothing was created");
}
