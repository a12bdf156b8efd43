//! Plans are executable and safe: an independent replay of every plan checks capacity
//! during and after each step, every strict rule, concurrency, opt-outs and cool-downs.

use ferrox_crs::generate::{generate, Shape};
use ferrox_crs::plan::{Cluster, EvacuationError, Plan};
use ferrox_crs::snapshot::{AffinityKind, Mode, Rule, Settings, Snapshot};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const GIB: u64 = 1 << 30;

/// Replays `plan` on `snapshot` and returns the first broken promise.
fn verify(
    snapshot: &Snapshot,
    plan: &Plan,
    settings: &Settings,
    evacuating: Option<&str>,
) -> Result<(), String> {
    let mut node_of: BTreeMap<String, String> = snapshot
        .guests
        .iter()
        .map(|g| (g.sid(), g.node.clone()))
        .collect();
    let initial = node_of.clone();
    let guest = |sid: &str| {
        snapshot
            .guests
            .iter()
            .find(|g| g.sid() == sid)
            .expect("guest")
    };
    let node = |name: &str| {
        snapshot
            .nodes
            .iter()
            .find(|n| n.name == name)
            .expect("node")
    };
    let cores_on = |sid: &str, n: &str| {
        let g = guest(sid);
        if g.cores == 0.0 {
            node(n).cores
        } else {
            g.cores
        }
    };
    let committed = |node_of: &BTreeMap<String, String>, n: &str| -> (u64, f64) {
        let mut mem = 0;
        let mut cores = 0.0;
        for (sid, at) in node_of {
            if at == n {
                mem += guest(sid).memory;
                cores += cores_on(sid, n);
            }
        }
        (mem, cores)
    };
    let host_mem = |n: &str| -> u64 {
        let used: f64 = snapshot
            .guests
            .iter()
            .filter(|g| g.node == n)
            .map(|g| g.memory_used.now)
            .sum();
        (node(n).memory_usage as f64 - used).max(0.0) as u64
    };
    let cooled: BTreeSet<u32> = snapshot
        .recent_moves
        .iter()
        .filter(|m| snapshot.time - m.time < settings.cooldown)
        .map(|m| m.vmid)
        .collect();
    let mut moved = BTreeSet::new();
    for (k, step) in plan.steps.iter().enumerate() {
        let mut slots: BTreeMap<&str, usize> = BTreeMap::new();
        let mut incoming: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
        for mv in &step.moves {
            if node_of[&mv.sid] != mv.from {
                return Err(format!("step {k}: {} is not on {}", mv.sid, mv.from));
            }
            if !moved.insert(mv.sid.clone()) {
                return Err(format!("{} moves twice", mv.sid));
            }
            let g = guest(&mv.sid);
            if evacuating.is_none() && (g.no_balance || cooled.contains(&g.vmid)) {
                return Err(format!("{} opted out or cooling down but moved", mv.sid));
            }
            if node(&mv.to).maintenance || Some(mv.to.as_str()) == evacuating {
                return Err(format!("{} moved to maintenance node {}", mv.sid, mv.to));
            }
            *slots.entry(&mv.from).or_default() += 1;
            *slots.entry(&mv.to).or_default() += 1;
            let e = incoming.entry(&mv.to).or_default();
            e.0 += g.memory;
            e.1 += cores_on(&mv.sid, &mv.to);
        }
        let groups = step.moves.iter().filter(|m| m.group.is_some()).count();
        for (n, count) in &slots {
            if *count > settings.max_concurrent_per_node && groups == 0 && evacuating.is_none() {
                return Err(format!("step {k}: {count} migrations on {n}"));
            }
        }
        // During the step: sources still hold the memory, targets already do.
        for (n, (mem, cores)) in &incoming {
            let (base_mem, base_cores) = committed(&node_of, n);
            if base_mem + mem + host_mem(n) > node(n).memory {
                return Err(format!(
                    "step {k}: memory of {n} overcommitted during migration"
                ));
            }
            if base_cores + cores > settings.cpu_overcommit * node(n).cores + 1e-9 {
                return Err(format!("step {k}: cpu of {n} overcommitted"));
            }
        }
        for mv in &step.moves {
            node_of.insert(mv.sid.clone(), mv.to.clone());
        }
        // After the step: strict rules hold for everything that moved.
        for rule in &snapshot.rules {
            match rule {
                Rule::NodeAffinity {
                    id,
                    resources,
                    nodes,
                    strict: true,
                } => {
                    for sid in resources {
                        if moved.contains(sid) && !nodes.contains_key(&node_of[sid]) {
                            return Err(format!("step {k}: {sid} left strict rule '{id}'"));
                        }
                    }
                }
                Rule::ResourceAffinity {
                    id,
                    resources,
                    affinity: AffinityKind::Negative,
                    strict: true,
                } => {
                    for a in resources {
                        for b in resources {
                            if a < b && node_of[a] == node_of[b] && initial[a] != initial[b] {
                                return Err(format!(
                                    "step {k}: {a} and {b} together despite '{id}'"
                                ));
                            }
                        }
                    }
                }
                Rule::ResourceAffinity {
                    id,
                    resources,
                    affinity: AffinityKind::Positive,
                    ..
                } => {
                    let was_together = resources
                        .iter()
                        .all(|r| initial[r] == initial[&resources[0]]);
                    let together = resources
                        .iter()
                        .all(|r| node_of[r] == node_of[&resources[0]]);
                    if was_together && !together {
                        return Err(format!("step {k}: positive rule '{id}' split"));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(n) = evacuating {
        if let Some((sid, _)) = node_of.iter().find(|(_, at)| *at == n) {
            return Err(format!("{sid} is still on evacuated node {n}"));
        }
    }
    Ok(())
}

fn shape() -> impl Strategy<Value = (u64, Shape, bool)> {
    (
        any::<u64>(),
        2usize..9,
        1usize..12,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(seed, nodes, per, rules, dynamic)| {
            (
                seed,
                Shape {
                    nodes,
                    guests_per_node: per,
                    rules,
                    skewed: true,
                },
                dynamic,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn plans_are_feasible_step_by_step(
        (seed, shape, dynamic) in shape(),
        concurrency in 1usize..4,
        slack in prop::option::of(prop::collection::vec(0u64..48, 8)),
    ) {
        let mut snapshot = generate(seed, &shape);
        if let Some(slack) = slack {
            // Tight nodes: little room beyond what they hold, so that memory held by
            // migrations in flight decides what fits.
            let nodes = snapshot.nodes.clone();
            for (i, node) in snapshot.nodes.iter_mut().enumerate() {
                let used: u64 = snapshot.guests.iter().filter(|g| g.node == nodes[i].name).map(|g| g.memory).sum();
                node.memory = (used + slack[i] * GIB).max(GIB);
            }
        }
        snapshot.settings.mode = if dynamic { Mode::Dynamic } else { Mode::Static };
        snapshot.settings.max_concurrent_per_node = concurrency;
        snapshot.settings.max_moves = 20;
        let plan = Cluster::new(&snapshot).plan(&snapshot.settings);
        prop_assert!(plan.imbalance_after <= plan.imbalance_before + 1e-12);
        prop_assert!(plan.moves().count() <= 20);
        if let Err(e) = verify(&snapshot, &plan, &snapshot.settings, None) {
            prop_assert!(false, "{}\n{:#?}", e, plan);
        }
    }

    #[test]
    fn evacuations_empty_the_node_or_name_the_blocker((seed, shape, _d) in shape(), victim in 0usize..8) {
        let snapshot = generate(seed, &shape);
        let node = snapshot.nodes[victim % snapshot.nodes.len()].name.clone();
        match Cluster::new(&snapshot).evacuate(&node, &snapshot.settings) {
            Ok(plan) => {
                if let Err(e) = verify(&snapshot, &plan, &snapshot.settings, Some(&node)) {
                    prop_assert!(false, "{}\n{:#?}", e, plan);
                }
            }
            Err(EvacuationError::Infeasible(inf)) => {
                prop_assert!(!inf.blockers.is_empty());
                prop_assert_eq!(inf.blockers.len(), snapshot.nodes.len());
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
    }
}

fn snapshot(json: &str) -> Snapshot {
    Snapshot::from_json(json).expect("valid snapshot")
}

const TWO_NODES: &str = r#"{
  "nodes": [
    {"name": "a", "cores": 16, "memory": 68719476736},
    {"name": "b", "cores": 16, "memory": 68719476736}
  ],
  "guests": [
    {"vmid": 100, "node": "a", "cores": 4, "memory": 17179869184},
    {"vmid": 101, "node": "a", "cores": 4, "memory": 17179869184},
    {"vmid": 102, "node": "a", "cores": 4, "memory": 17179869184}
  ]
}"#;

#[test]
fn plan_moves_one_guest_off_the_loaded_node() {
    let s = snapshot(TWO_NODES);
    let plan = Cluster::new(&s).plan(&s.settings);
    assert_eq!(plan.moves().count(), 1, "{plan:#?}");
    let mv = plan.moves().next().unwrap();
    assert_eq!((mv.from.as_str(), mv.to.as_str()), ("a", "b"));
    assert!(plan.imbalance_after < plan.imbalance_before);
    assert_eq!(mv.cost, 16 * GIB);
}

#[test]
fn memory_is_never_overcommitted() {
    // b has room for one 16 GiB guest only.
    let s = snapshot(&TWO_NODES.replace(
        r#"{"name": "b", "cores": 16, "memory": 68719476736}"#,
        r#"{"name": "b", "cores": 16, "memory": 17179869184}"#,
    ));
    let plan = Cluster::new(&s).plan(&Settings {
        max_moves: 5,
        ..s.settings.clone()
    });
    assert!(plan.moves().count() <= 1);
    let full = snapshot(&TWO_NODES.replace(
        r#"{"name": "b", "cores": 16, "memory": 68719476736}"#,
        r#"{"name": "b", "cores": 16, "memory": 8589934592}"#,
    ));
    assert_eq!(Cluster::new(&full).plan(&full.settings).moves().count(), 0);
}

#[test]
fn cooldown_and_opt_out_pin_guests() {
    let mut s = snapshot(TWO_NODES);
    s.time = 10_000;
    s.settings.cooldown = 3600;
    for g in &mut s.guests {
        g.no_balance = g.vmid == 100;
    }
    s.recent_moves = vec![
        ferrox_crs::snapshot::RecentMove {
            vmid: 101,
            from: "b".into(),
            to: "a".into(),
            time: 9_000,
        },
        ferrox_crs::snapshot::RecentMove {
            vmid: 102,
            from: "b".into(),
            to: "a".into(),
            time: 9_500,
        },
    ];
    assert_eq!(Cluster::new(&s).plan(&s.settings).moves().count(), 0);
    s.time = 20_000; // cool-down over
    let plan = Cluster::new(&s).plan(&s.settings);
    assert_eq!(plan.moves().count(), 1);
    assert_ne!(plan.moves().next().unwrap().vmid, 100);
}

#[test]
fn strict_rules_block_and_evacuation_names_them() {
    let json = TWO_NODES.replace(
        r#"  ]
}"#,
        r#"  ],
  "rules": [
    {"type": "node-affinity", "id": "pin", "resources": ["vm:100", "vm:101", "vm:102"], "nodes": {"a": 1}, "strict": true}
  ]
}"#,
    );
    let s = snapshot(&json);
    assert_eq!(Cluster::new(&s).plan(&s.settings).moves().count(), 0);
    match Cluster::new(&s).evacuate("a", &s.settings) {
        Err(EvacuationError::Infeasible(inf)) => {
            let text = inf.to_string();
            assert!(text.contains("strict node affinity rule 'pin'"), "{text}");
            assert!(text.contains("a: in maintenance"), "{text}");
        }
        other => panic!("expected infeasible, got {other:?}"),
    }
}

#[test]
fn positive_groups_move_together_and_negative_keep_apart() {
    let json = TWO_NODES.replace(
        r#"  ]
}"#,
        r#"  ],
  "rules": [
    {"type": "resource-affinity", "id": "pair", "resources": ["vm:100", "vm:101"], "affinity": "positive"}
  ]
}"#,
    );
    let s = snapshot(&json);
    let plan = Cluster::new(&s)
        .evacuate("a", &s.settings)
        .expect("evacuation");
    let to: BTreeMap<u32, String> = plan.moves().map(|m| (m.vmid, m.to.clone())).collect();
    assert_eq!(to[&100], to[&101]);
    assert_eq!(plan.moves().count(), 3);
    assert!(plan
        .moves()
        .filter(|m| m.vmid != 102)
        .all(|m| m.group.as_deref() == Some("vm:100")));
}

#[test]
fn best_node_ranks_feasible_nodes_first() {
    let s = snapshot(TWO_NODES);
    let ranking = Cluster::new(&s).best_node(2.0, 8 * GIB, None);
    assert_eq!(ranking[0].node, "b");
    let ranking = Cluster::new(&s).best_node(2.0, 60 * GIB, None);
    assert_eq!(ranking[0].node, "b");
    assert!(
        ranking[1].blocker.is_some(),
        "a has only 16 GiB free: {ranking:?}"
    );
    let none = Cluster::new(&s).best_node(2.0, 100 * GIB, None);
    assert!(none.iter().all(|c| c.imbalance_after.is_none()));
}

/// Three nodes; `b`'s CPU lacks avx2, so the x86-64-v3 guests may only go to `c`.
const CPU_NODES: &str = r#"{
  "nodes": [
    {"name": "a", "cores": 16, "memory": 68719476736,
     "cpu_capability": {"flags": ["aes", "avx", "avx2", "pni"], "unavailable": {"qemu64": []}}},
    {"name": "b", "cores": 16, "memory": 68719476736,
     "cpu_capability": {"flags": ["aes", "avx", "pni"], "unavailable": {"qemu64": []}}},
    {"name": "c", "cores": 16, "memory": 68719476736}
  ],
  "guests": [
    {"vmid": 100, "node": "a", "cores": 4, "memory": 17179869184,
     "cpu_requirement": {"cputype": "x86-64-v3", "qemu_model": "qemu64", "flags": ["avx2"]}},
    {"vmid": 101, "node": "a", "cores": 4, "memory": 17179869184,
     "cpu_requirement": {"cputype": "x86-64-v3", "qemu_model": "qemu64", "flags": ["avx2"]}},
    {"vmid": 102, "node": "a", "cores": 4, "memory": 17179869184,
     "cpu_requirement": {"cputype": "x86-64-v3", "qemu_model": "qemu64", "flags": ["avx2"]}}
  ]
}"#;

#[test]
fn guests_never_go_to_a_node_whose_cpu_lacks_their_flags() {
    let s = snapshot(CPU_NODES);
    let plan = Cluster::new(&s).plan(&Settings {
        max_moves: 5,
        ..s.settings.clone()
    });
    assert!(plan.moves().count() > 0, "{plan:#?}");
    assert!(plan.moves().all(|m| m.to == "c"), "{plan:#?}");
    let evacuation = Cluster::new(&s)
        .evacuate("a", &s.settings)
        .expect("evacuation");
    assert!(evacuation.moves().all(|m| m.to == "c"));
    assert_eq!(evacuation.moves().count(), 3);
    let ranking = Cluster::new(&s).best_node(2.0, 8 * GIB, Some("vm:100"));
    let b = ranking.iter().find(|r| r.node == "b").expect("b ranked");
    let why = b.blocker.as_ref().expect("b refused").to_string();
    assert!(why.contains("lacks avx2"), "{why}");
    // Without the requirement, b takes guests again.
    let mut free = s.clone();
    for g in &mut free.guests {
        g.cpu_requirement = None;
    }
    let plan = Cluster::new(&free).plan(&Settings {
        max_moves: 5,
        ..free.settings.clone()
    });
    assert!(plan.moves().any(|m| m.to == "b"), "{plan:#?}");
}

/// `a` is evacuated; its 12 GiB guest fits on neither `b` nor `c` (8 GiB free each) until
/// a 4 GiB resident of `b` moves to `c`.
const TIGHT: &str = r#"{
  "nodes": [
    {"name": "a", "cores": 16, "memory": 17179869184},
    {"name": "b", "cores": 16, "memory": 17179869184},
    {"name": "c", "cores": 16, "memory": 17179869184}
  ],
  "guests": [
    {"vmid": 100, "node": "a", "cores": 2, "memory": 12884901888},
    {"vmid": 200, "node": "b", "cores": 2, "memory": 4294967296},
    {"vmid": 201, "node": "b", "cores": 2, "memory": 4294967296},
    {"vmid": 300, "node": "c", "cores": 2, "memory": 8589934592}
  ]
}"#;

#[test]
fn evacuation_moves_residents_to_make_room() {
    let s = snapshot(TIGHT);
    let plan = Cluster::new(&s)
        .evacuate("a", &s.settings)
        .expect("evacuation");
    let moves: Vec<(u32, &str, &str)> = plan
        .moves()
        .map(|m| (m.vmid, m.from.as_str(), m.to.as_str()))
        .collect();
    assert_eq!(
        moves.len(),
        2,
        "one resident move, then the guest: {plan:#?}"
    );
    assert_eq!(moves[1], (100, "a", "b"));
    assert_eq!(moves[0].1, "b");
    assert_eq!(moves[0].2, "c");
    // The resident leaves before the guest arrives: two steps.
    assert_eq!(plan.steps.len(), 2, "{plan:#?}");
    verify(&s, &plan, &s.settings, Some("a")).expect("every state feasible");
    // A resident that opted out of balancing stays: then nothing makes room.
    let mut pinned = s.clone();
    for g in &mut pinned.guests {
        g.no_balance = g.vmid >= 200;
    }
    assert!(Cluster::new(&pinned)
        .evacuate("a", &pinned.settings)
        .is_err());
}
