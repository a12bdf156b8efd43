//! A real network partition: three daemons, each in its own network namespace, joined by
//! a bridge; one node is cut off. The minority side keeps serving reads, refuses writes,
//! cannot renew or take locks; the majority goes on and takes the lock once its lease
//! ran out; after healing the cut-off node catches up. Needs root and `ip netns`.

use ferrox_e2e::netns::Lab;
use std::time::{Duration, Instant};

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_minority_side_of_a_partition_refuses_writes_and_locks() {
    let Some(mut lab) = Lab::new() else {
        return;
    };
    for i in 1..=3 {
        lab.start(i, &[]);
    }
    lab.form_cluster("part");
    let (ok, out) = lab.cli(3, &["cluster", "status"]);
    assert!(ok && out.contains("3 nodes, quorate yes"), "{out}");

    // n3 holds a lock with a short lease, then is cut off.
    let lock = lab
        .api(
            3,
            &["create", "/cluster/locks/partition-test", "--lease", "20"],
        )
        .unwrap();
    assert_eq!(lock["granted"], 1, "{lock}");
    lab.set_link(3, false);

    // Majority side: still quorate, still writing; the lock is n3's until it expires,
    // then the majority takes it.
    eventually("n1 sees n3 gone", Duration::from_secs(20), || {
        let (_, out) = lab.cli(1, &["cluster", "status"]);
        out.contains("quorate yes") && out.lines().any(|l| l.contains("n3") && l.contains(" no "))
    });
    let held = lab
        .api(1, &["create", "/cluster/locks/partition-test"])
        .unwrap();

    assert_eq!(held["granted"], 0, "{held}");
    assert_eq!(held["owner"], "n3");
    eventually("the lease runs out", Duration::from_secs(40), || {
        lab.api(1, &["create", "/cluster/locks/partition-test"])
            .is_ok_and(|v| v["granted"] == 1)
    });
    let (ok, out) = lab.cli(1, &["vm", "create", "400", "--memory", "64"]);
    assert!(ok, "majority write: {out}");

    // Minority side: not quorate, refuses writes and locks, still answers reads.
    eventually("n3 notices", Duration::from_secs(20), || {
        let (_, out) = lab.cli(3, &["cluster", "status"]);
        out.contains("quorate no")
    });
    let err = lab
        .api(3, &["create", "/cluster/locks/partition-test"])
        .unwrap_err();
    assert!(err.contains("cluster not ready"), "{err}");
    let (ok, out) = lab.cli(3, &["vm", "create", "401", "--memory", "64"]);
    assert!(
        !ok && out.contains("cluster not ready"),
        "minority write: {out}"
    );
    let storage = lab.api(3, &["get", "/storage"]).unwrap();
    assert!(
        storage.as_array().is_some_and(|s| !s.is_empty()),
        "{storage}"
    );

    // Heal: n3 catches up with what the majority wrote, and its refused write never
    // appears anywhere.
    lab.set_link(3, true);
    // n3's own store (not the aggregated view) has the majority's guest and lock holder.
    eventually("n3 catches up", Duration::from_secs(30), || {
        let taken = lab
            .api(3, &["get", "/cluster/nextid", "--vmid", "400"])
            .is_err();
        let locks = lab.api(3, &["get", "/cluster/locks"]).unwrap_or_default();
        taken && locks.to_string().contains("\"owner\":\"n1\"")
    });
    let vms = lab
        .api(3, &["get", "/cluster/resources", "--type", "vm"])
        .unwrap();
    assert!(vms.to_string().contains("\"vmid\":400"), "{vms}");
    assert!(!vms.to_string().contains("\"vmid\":401"), "{vms}");
}
