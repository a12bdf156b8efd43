//! Snapshots no plan can satisfy are recognised before planning, naming what conflicts;
//! a satisfiable one passes.

use ferrox_crs::feasibility::{check, Conflict};
use ferrox_crs::snapshot::Snapshot;

const G16: &str = "17179869184";

fn snapshot(nodes: &[(&str, &str)], guests: &[(u32, &str, &str)], rules: &str) -> Snapshot {
    let nodes: Vec<String> = nodes
        .iter()
        .map(|(n, mem)| format!(r#"{{"name": "{n}", "cores": 16, "memory": {mem}}}"#))
        .collect();
    let guests: Vec<String> = guests
        .iter()
        .map(|(vmid, node, mem)| {
            format!(r#"{{"vmid": {vmid}, "node": "{node}", "cores": 2, "memory": {mem}}}"#)
        })
        .collect();
    let json = format!(
        r#"{{"nodes": [{}], "guests": [{}], "rules": [{rules}]}}"#,
        nodes.join(","),
        guests.join(",")
    );
    Snapshot::from_json(&json).expect("valid snapshot")
}

fn texts(conflicts: &[Conflict]) -> String {
    conflicts.iter().map(|c| format!("{c}\n")).collect()
}

const TWO: &[(&str, &str)] = &[("a", "68719476736"), ("b", "68719476736")];

#[test]
fn a_satisfiable_snapshot_has_no_conflict() {
    let s = snapshot(
        TWO,
        &[(100, "a", G16), (101, "a", G16)],
        r#"{"type": "resource-affinity", "id": "apart", "resources": ["vm:100", "vm:101"], "affinity": "negative"}"#,
    );
    assert_eq!(check(&s, None), []);
}

#[test]
fn contradictory_rules_are_named() {
    let s = snapshot(
        TWO,
        &[(100, "a", G16), (101, "a", G16), (102, "b", G16)],
        r#"{"type": "resource-affinity", "id": "pair", "resources": ["vm:100", "vm:101"], "affinity": "positive"},
           {"type": "resource-affinity", "id": "chain", "resources": ["vm:101", "vm:102"], "affinity": "positive"},
           {"type": "resource-affinity", "id": "split", "resources": ["vm:100", "vm:102"], "affinity": "negative"}"#,
    );
    let text = texts(&check(&s, None));
    assert!(
        text.contains("vm:100 and vm:102 are kept together by rule(s) 'chain', 'pair' and apart by rule 'split'"),
        "{text}"
    );

    let s = snapshot(
        TWO,
        &[(100, "a", G16), (101, "b", G16)],
        r#"{"type": "resource-affinity", "id": "pair", "resources": ["vm:100", "vm:101"], "affinity": "positive"},
           {"type": "node-affinity", "id": "on-a", "resources": ["vm:100"], "nodes": {"a": 1}, "strict": true},
           {"type": "node-affinity", "id": "on-b", "resources": ["vm:101"], "nodes": {"b": 1}, "strict": true}"#,
    );
    let text = texts(&check(&s, None));
    assert!(text.contains("'on-a', 'on-b' share no node"), "{text}");

    let s = snapshot(
        TWO,
        &[(100, "a", G16), (101, "a", G16), (102, "b", G16)],
        r#"{"type": "resource-affinity", "id": "three", "resources": ["vm:100", "vm:101", "vm:102"], "affinity": "negative"}"#,
    );
    let text = texts(&check(&s, None));
    assert!(
        text.contains("rule 'three' keeps 3 guests (or groups) apart, but only 2 nodes"),
        "{text}"
    );
    // A soft negative rule is no contradiction.
    let s = snapshot(
        TWO,
        &[(100, "a", G16), (101, "a", G16), (102, "b", G16)],
        r#"{"type": "resource-affinity", "id": "three", "resources": ["vm:100", "vm:101", "vm:102"], "affinity": "negative", "strict": false}"#,
    );
    assert_eq!(check(&s, None), []);
}

#[test]
fn capacity_the_guests_cannot_fit_in_is_named() {
    let small = &[("a", G16), ("b", G16)];
    let s = snapshot(
        small,
        &[(100, "a", G16), (101, "a", G16), (102, "b", G16)],
        "",
    );
    let text = texts(&check(&s, None));
    assert!(
        text.contains("the guests need 48.0 GiB of memory, the nodes taking guests have 32.0 GiB"),
        "{text}"
    );

    let s = snapshot(small, &[(100, "a", "34359738368")], "");
    let text = texts(&check(&s, None));
    assert!(text.contains("vm:100 need 32.0 GiB of memory together, more than the largest node they may use (16.0 GiB)"), "{text}");

    // Evacuating a node a guest is pinned to: nowhere to go.
    let s = snapshot(
        TWO,
        &[(100, "a", G16)],
        r#"{"type": "node-affinity", "id": "home", "resources": ["vm:100"], "nodes": {"a": 1}, "strict": true}"#,
    );
    assert_eq!(check(&s, None), []);
    let text = texts(&check(&s, Some("a")));
    assert!(
        text.contains("vm:100 may only run on a (strict node affinity rule 'home')"),
        "{text}"
    );
}
