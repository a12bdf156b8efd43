//! `pve::single_move` makes the choice the simulator's manager makes: the worked example of
//! spec §9.4 (test-crs-static-auto-rebalance2's first move, "from 1.41 to 0.94").

use ferrox_crs::snapshot::Snapshot;
use ferrox_ha::pve::single_move;
use ferrox_types::RebalanceMethod;

const GIB: u64 = 1 << 30;

fn snapshot(ha: bool) -> Snapshot {
    let guests: Vec<String> = (101..=104)
        .map(|id| {
            format!(
                r#"{{"vmid": {id}, "node": "node1", "ha_managed": {ha}, "cores": 2, "memory": {}}}"#,
                8 * GIB
            )
        })
        .collect();
    let nodes: Vec<String> = (1..=3)
        .map(|n| {
            format!(
                r#"{{"name": "node{n}", "cores": 24, "memory": {}}}"#,
                32 * GIB
            )
        })
        .collect();
    Snapshot::from_json(&format!(
        r#"{{"nodes": [{}], "guests": [{}]}}"#,
        nodes.join(","),
        guests.join(",")
    ))
    .expect("snapshot")
}

#[test]
fn bruteforce_matches_the_simulated_manager() {
    let d = single_move(&snapshot(true), RebalanceMethod::Bruteforce).expect("decision");
    assert_eq!(format!("{:.2}", d.imbalance), "1.41");
    let c = d.choice.expect("a move");
    assert_eq!(
        (
            c.migration.sid.as_str(),
            c.migration.source.as_str(),
            c.migration.target.as_str()
        ),
        ("vm:101", "node1", "node2")
    );
    assert_eq!(format!("{:.2}", c.imbalance), "0.94");
}

#[test]
fn only_ha_managed_guests_are_candidates() {
    let d = single_move(&snapshot(false), RebalanceMethod::Topsis).expect("decision");
    assert_eq!(format!("{:.2}", d.imbalance), "1.41");
    assert!(d.choice.is_none());
}
