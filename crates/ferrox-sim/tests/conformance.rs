//! Proxmox VE 9.2's HA regression scenarios and rules-file checks, compared byte for byte.
//! The data lives in `shared/conformance/pve-ha` beside the project checkout.

use std::path::{Path, PathBuf};

fn conformance_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/pve-ha");
    assert!(
        dir.is_dir(),
        "conformance data missing at {} (the checkout needs ../shared beside it)",
        dir.display()
    );
    dir
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    entries
}

/// The first lines where `actual` departs from `expected`, with a little context.
fn short_diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let first = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = first.saturating_sub(2);
    let mut out = format!("  first difference at line {}\n", first + 1);
    for i in from..(first + 4) {
        if let Some(line) = e.get(i) {
            out.push_str(&format!("  -{line}\n"));
        }
        if let Some(line) = a.get(i) {
            out.push_str(&format!("  +{line}\n"));
        }
    }
    out
}

#[test]
fn every_shipped_scenario_reproduces_its_log() {
    let mut failures = Vec::new();
    let scenarios = sorted_entries(&conformance_dir().join("scenarios"));
    assert!(
        scenarios.len() >= 100,
        "expected the shipped scenarios, found {}",
        scenarios.len()
    );
    for dir in &scenarios {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let expected = std::fs::read_to_string(dir.join("log.expect"))
            .unwrap_or_else(|e| panic!("{name}/log.expect: {e}"));
        match ferrox_sim::run_dir(dir) {
            Err(err) => failures.push(format!("{name}: {err}")),
            Ok(actual) if actual != expected => {
                failures.push(format!("{name}:\n{}", short_diff(&expected, &actual)))
            }
            Ok(_) => {}
        }
    }
    println!(
        "{} of {} scenarios match",
        scenarios.len() - failures.len(),
        scenarios.len()
    );
    assert!(
        failures.is_empty(),
        "{} scenario(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_rules_file_check_reproduces_its_report() {
    let nodes: Vec<String> = ["node1", "node2", "node3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut failures = Vec::new();
    let mut count = 0;
    for file in sorted_entries(&conformance_dir().join("rules_cfgs")) {
        if file.extension().and_then(|e| e.to_str()) != Some("cfg") {
            continue;
        }
        count += 1;
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let raw = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = std::fs::read_to_string(file.with_extension("cfg.expect"))
            .unwrap_or_else(|e| panic!("{name}.expect: {e}"));
        match ferrox_ha::rules::check_report(&raw, &nodes) {
            Err(err) => failures.push(format!("{name}: {err}")),
            Ok(actual) if actual != expected => {
                failures.push(format!("{name}:\n{}", short_diff(&expected, &actual)))
            }
            Ok(_) => {}
        }
    }
    assert_eq!(count, 12, "expected the 12 shipped rules checks");
    assert!(
        failures.is_empty(),
        "{} rules check(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
