//! SDN with real Linux guests: three nodes in network namespaces (the hosts), a `vxlan`
//! zone joining each vnet's bridges across the nodes, a `simple` zone with DHCP. Guests on
//! the same vnet reach each other across nodes (ping, TCP); a guest on another vnet does
//! not; a TCP stream from one guest to another runs through a live migration of the
//! sender without losing a byte, and the migrated guest keeps its address; after its node
//! is cut off, an HA guest answers at the same address from another node; a guest on the
//! simple zone gets its address from dnsmasq. Needs root and `ip netns`.

use ferrox_e2e::netns::{refused, Lab, SUBNET};
use ferrox_e2e::{linux_args, linux_guest, FAST_HA};
use serde_json::Value;
use std::time::{Duration, Instant};

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() > deadline {
            return Err(format!("timed out: {what}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

fn ok(log: &str) {
    assert!(log.starts_with("\"OK\""), "{log}");
}

/// One ping from node `i`'s namespace.
fn ping(lab: &Lab, i: usize, addr: &str) -> bool {
    lab.run_in(i, &["busybox", "ping", "-c", "1", "-W", "1", addr])
        .0
}

/// What a guest's tcp/10 says (the byte count of its last finished sink connection).
fn sink_report(lab: &Lab, i: usize, addr: &str) -> String {
    let (_, out) = lab.run_in(i, &["busybox", "nc", "-w", "2", addr, "10"]);
    out.trim().to_string()
}

#[test]
fn vxlan_vnets_connect_guests_across_nodes_and_keep_streams_through_migration() {
    let Some(mut lab) = Lab::new() else {
        return;
    };
    let Some(guest) = linux_guest() else {
        return;
    };
    for i in 1..=3 {
        lab.start(i, FAST_HA);
    }
    lab.form_cluster("sdn");
    let peers = format!("{SUBNET}.1,{SUBNET}.2,{SUBNET}.3");
    // Each guest's serial console goes to a file, printed when a check fails.
    let consoles = tempfile::tempdir().unwrap();
    let console = |vmid: &str| {
        format!(
            " -chardev file,id=dbg,append=on,path={}/{vmid}.log -serial chardev:dbg",
            consoles.path().display()
        )
    };
    let dump = || {
        for vmid in ["201", "202", "203", "204"] {
            let log = std::fs::read_to_string(consoles.path().join(format!("{vmid}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- console of {vmid} (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    };

    // Bad input: refused naming the parameter, the configuration unchanged.
    refused(
        lab.api(
            1,
            &[
                "create",
                "/cluster/sdn/zones",
                "--zone",
                "ev",
                "--type",
                "evpn",
            ],
        ),
        "type",
        "not supported",
    );
    refused(
        lab.api(
            1,
            &[
                "create",
                "/cluster/sdn/zones",
                "--zone",
                "Bad-Zone",
                "--type",
                "simple",
            ],
        ),
        "zone",
        "not an SDN id",
    );
    refused(
        lab.api(
            1,
            &[
                "create",
                "/cluster/sdn/vnets",
                "--vnet",
                "v9",
                "--zone",
                "nosuch",
            ],
        ),
        "zone",
        "does not exist",
    );
    lab.api(
        1,
        &[
            "create",
            "/cluster/sdn/zones",
            "--zone",
            "ovl",
            "--type",
            "vxlan",
            "--peers",
            &peers,
        ],
    )
    .unwrap();
    refused(
        lab.api(
            1,
            &[
                "create",
                "/cluster/sdn/vnets",
                "--vnet",
                "v1",
                "--zone",
                "ovl",
            ],
        ),
        "tag",
        "needs a tag",
    );
    for (vnet, tag, subnet) in [("v1", "100", "10.77.1.0/24"), ("v2", "200", "10.77.2.0/24")] {
        lab.api(
            1,
            &[
                "create",
                "/cluster/sdn/vnets",
                "--vnet",
                vnet,
                "--zone",
                "ovl",
                "--tag",
                tag,
            ],
        )
        .unwrap();
        lab.api(
            1,
            &[
                "create",
                &format!("/cluster/sdn/vnets/{vnet}/subnets"),
                "--subnet",
                subnet,
                "--type",
                "subnet",
            ],
        )
        .unwrap();
    }
    refused(
        lab.api(
            1,
            &[
                "create",
                "/cluster/sdn/vnets/v1/subnets",
                "--subnet",
                "10.77.1.128/25",
                "--type",
                "subnet",
            ],
        ),
        "subnet",
        "overlaps",
    );
    refused(
        lab.api(
            1,
            &[
                "create",
                "/cluster/sdn/vnets",
                "--vnet",
                "v3",
                "--zone",
                "ovl",
                "--tag",
                "100",
            ],
        ),
        "tag",
        "already used",
    );
    let vnets = lab.api(2, &["get", "/cluster/sdn/vnets"]).unwrap();
    assert_eq!(vnets.as_array().unwrap().len(), 2, "{vnets}");
    assert_eq!(vnets[0]["state"], "new", "pending until applied: {vnets}");

    // Apply: every node has the vnets' bridges with a VXLAN port (VNI = tag).
    let upid = lab.api(1, &["set", "/cluster/sdn"]).unwrap();
    let log = lab.task_log(1, &upid);
    ok(&log);
    for i in 1..=3 {
        assert!(log.contains(&format!("n{i}: applied")), "{log}");
        let vx = lab.link(i, "vxlan_v1").expect("vxlan_v1");
        assert_eq!(vx["master"], "v1", "{vx}");
        assert_eq!(vx["linkinfo"]["info_data"]["id"], 100, "{vx}");
        assert_eq!(vx["mtu"], 1450, "{vx}");
    }
    let vnets = lab.api(2, &["get", "/cluster/sdn/vnets"]).unwrap();
    assert!(vnets[0].get("state").is_none(), "running now: {vnets}");
    let bridges = lab
        .api(1, &["get", "/nodes/n1/network", "--type", "any_bridge"])
        .unwrap();
    assert!(
        bridges
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["iface"] == "v1" && b["type"] == "vnet" && b["active"] == 1),
        "vnets are bridges for guests: {bridges}"
    );

    // Guests: 201 on n1 and 202 on n2 on v1; 203 on n2 on v2 with an address of v1's
    // subnet (only the vnet separates it). 201 streams 10 KiB blocks to 202's sink.
    let blocks = 1500;
    lab.start_guest(
        2,
        "202",
        "128",
        "virtio,bridge=v1",
        &(linux_args(&guest, "fxip=10.77.1.12/24 fxname=g202") + &console("202")),
    );
    lab.start_guest(
        2,
        "203",
        "128",
        "virtio,bridge=v2",
        &(linux_args(&guest, "fxip=10.77.1.13/24 fxname=g203") + &console("203")),
    );
    // Test probes: n3 joins v1 as 10.77.1.250, n1 joins v2 as 10.77.1.252.
    assert!(
        lab.run_in(3, &["ip", "addr", "add", "10.77.1.250/24", "dev", "v1"])
            .0
    );
    assert!(
        lab.run_in(1, &["ip", "addr", "add", "10.77.1.252/24", "dev", "v2"])
            .0
    );
    eventually("202 answers on v1 from n3", Duration::from_secs(90), || {
        ping(&lab, 3, "10.77.1.12")
    });
    eventually("203 answers on v2 from n1", Duration::from_secs(90), || {
        ping(&lab, 1, "10.77.1.13")
    });
    lab.start_guest(
        1,
        "201",
        "128",
        "virtio,bridge=v1",
        &(linux_args(
            &guest,
            &format!("fxip=10.77.1.11/24 fxname=g201 fxstream=10.77.1.12:9:{blocks}:20"),
        ) + &console("201")),
    );
    eventually("201 answers on v1 from n3", Duration::from_secs(90), || {
        ping(&lab, 3, "10.77.1.11")
    });
    // Another vnet is another network: v1's probe cannot reach 203, v2's cannot reach 201.
    assert!(!ping(&lab, 3, "10.77.1.13"), "v1 reaches a guest on v2");
    assert!(!ping(&lab, 1, "10.77.1.11"), "v2 reaches a guest on v1");
    let (echoed, out) = lab.run_in(
        3,
        &[
            "sh",
            "-c",
            "echo across-nodes | busybox nc -w 2 10.77.1.12 7",
        ],
    );
    assert!(
        echoed && out.contains("across-nodes"),
        "echo from 202: {out}"
    );

    // While 201 streams to 202, 201 moves live from n1 to n2.
    assert_eq!(
        sink_report(&lab, 3, "10.77.1.12"),
        "none",
        "the stream is still running"
    );
    let upid = lab
        .api(
            1,
            &[
                "create",
                "/nodes/n1/qemu/201/migrate",
                "--target",
                "n2",
                "--online",
                "1",
            ],
        )
        .unwrap();
    let log = lab.task_log(1, &upid);
    ok(&log);
    assert!(lab.link(2, "tap201i0").is_some(), "201's tap on n2");
    assert_eq!(
        sink_report(&lab, 3, "10.77.1.12"),
        "none",
        "the migration ended before the stream: make the stream longer"
    );
    let mut report = String::new();
    let ended = wait_for("the stream ends", Duration::from_secs(360), || {
        report = sink_report(&lab, 3, "10.77.1.12");
        report != "none" && !report.is_empty()
    });
    if ended.is_err() {
        dump();
        eprintln!("ping 201 from n3: {}", ping(&lab, 3, "10.77.1.11"));
        eprintln!("ping 202 from n3: {}", ping(&lab, 3, "10.77.1.12"));
        let (_, echo) = lab.run_in(3, &["sh", "-c", "echo hi | busybox nc -w 2 10.77.1.11 7"]);
        eprintln!("echo from 201: {echo:?}");
        eprintln!(
            "201 on n2: {:?}",
            lab.api(2, &["get", "/nodes/n2/qemu/201/status/current"])
        );
        eprintln!(
            "n2 fdb: {}",
            lab.run_in(2, &["bridge", "fdb", "show", "br", "v1"]).1
        );
        panic!("the stream did not end: sink says '{report}'");
    }
    let sent = blocks * 10240;
    assert_eq!(report, sent.to_string(), "bytes lost in the migration");
    assert!(ping(&lab, 3, "10.77.1.11"), "201 keeps its address on n2");
    let cfg: Value = lab.api(2, &["get", "/nodes/n2/qemu/201/config"]).unwrap();
    assert!(cfg["net0"]
        .as_str()
        .unwrap()
        .starts_with("virtio=BC:24:11:"));

    // HA: 201 under HA on n2; n2 is cut off; 201 comes back on another node of the vnet
    // and answers at the same address.
    lab.api(2, &["create", "/cluster/ha/resources", "--sid", "vm:201"])
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    lab.set_link(2, false);
    eventually(
        "201 answers again after n2 was cut off",
        Duration::from_secs(120),
        || {
            (lab.link(1, "tap201i0").is_some() || lab.link(3, "tap201i0").is_some())
                && ping(&lab, 3, "10.77.1.11")
        },
    );
    lab.set_link(2, true);
    eventually("n2 is back in the cluster", Duration::from_secs(60), || {
        let (_, out) = lab.cli(2, &["cluster", "status"]);
        out.contains("quorate yes")
    });

    // A migration to a node outside the vnet's zone is refused naming the bridge.
    lab.api(1, &["set", "/cluster/sdn/zones/ovl", "--nodes", "n1,n2"])
        .unwrap();
    let upid = lab.api(1, &["set", "/cluster/sdn"]).unwrap();
    ok(&lab.task_log(1, &upid));
    eventually("v1 is gone from n3", Duration::from_secs(20), || {
        lab.link(3, "v1").is_none()
    });
    refused(
        lab.api(
            2,
            &[
                "create",
                "/nodes/n2/qemu/202/migrate",
                "--target",
                "n3",
                "--online",
                "1",
            ],
        ),
        "target",
        "bridge 'v1' does not exist on node 'n3'",
    );

    // A simple zone with DHCP: the guest's address comes from dnsmasq on its node.
    lab.api(
        1,
        &[
            "create",
            "/cluster/sdn/zones",
            "--zone",
            "loc",
            "--type",
            "simple",
            "--dhcp",
            "dnsmasq",
        ],
    )
    .unwrap();
    lab.api(
        1,
        &[
            "create",
            "/cluster/sdn/vnets",
            "--vnet",
            "s1",
            "--zone",
            "loc",
        ],
    )
    .unwrap();
    lab.api(
        1,
        &[
            "create",
            "/cluster/sdn/vnets/s1/subnets",
            "--subnet",
            "10.78.0.0/24",
            "--type",
            "subnet",
            "--gateway",
            "10.78.0.1",
            "--dhcp-range",
            "start-address=10.78.0.100,end-address=10.78.0.150",
        ],
    )
    .unwrap();
    let upid = lab.api(1, &["set", "/cluster/sdn"]).unwrap();
    ok(&lab.task_log(1, &upid));
    lab.start_guest(
        1,
        "204",
        "128",
        "virtio,bridge=s1",
        &(linux_args(&guest, "fxname=g204") + &console("204")),
    );
    let leases = lab.dir(1).join("run/dnsmasq-s1.leases");
    let mut leased = String::new();
    eventually("204 gets a DHCP lease", Duration::from_secs(90), || {
        leased = std::fs::read_to_string(&leases)
            .unwrap_or_default()
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string();
        !leased.is_empty()
    });
    assert!(leased.starts_with("10.78.0."), "{leased}");
    eventually(
        "204 answers at its leased address",
        Duration::from_secs(30),
        || ping(&lab, 1, &leased),
    );
}
