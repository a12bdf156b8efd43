//! Host networking on real bridges: three nodes, each in its own network namespace (the
//! namespaces are the hosts, joined by a switch). The network API creates bridges and VLAN
//! interfaces in the node's namespace; guests' cards become tap devices on their bridge
//! with the VLAN tag and rate limit applied; bad input and failed applies change nothing;
//! a migration to a node without the guest's bridge is refused naming the bridge; a live
//! migration re-plugs the tap on the target; Linux guests with a VLAN tag reach their VLAN
//! and not the untagged guests. Needs root and `ip netns`.

use ferrox_e2e::netns::{refused, Lab, SUBNET};
use ferrox_e2e::{build_payload, linux_args, linux_guest, ECHO_PAYLOAD};
use std::time::{Duration, Instant};

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn has_address(lab: &Lab, i: usize, dev: &str, addr: &str) -> bool {
    lab.json_in(i, "ip", &["addr", "show", "dev", dev])
        .as_array()
        .and_then(|a| a.first().cloned())
        .is_some_and(|l| {
            l["addr_info"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["local"] == addr))
        })
}

/// Whether the kernel of the test's namespaces can filter VLANs on a bridge.
fn kernel_filters_vlans(lab: &Lab) -> bool {
    let (ok, _) = lab.run_in(
        3,
        &[
            "ip",
            "link",
            "add",
            "fxprobe0",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ],
    );
    lab.run_in(3, &["ip", "link", "del", "fxprobe0"]);
    ok
}

#[test]
fn bridges_vlans_and_taps_in_network_namespaces() {
    let Some(mut lab) = Lab::new() else {
        return;
    };
    let payload_dir = tempfile::tempdir().unwrap();
    let Some(echo) = build_payload(payload_dir.path(), "echo", ECHO_PAYLOAD) else {
        eprintln!("SKIPPED: building the echo guest needs binutils (as, ld)");
        return;
    };
    for i in 1..=3 {
        lab.start(i, &[]);
    }
    lab.form_cluster("net");
    let uplink = lab.uplink(1);

    // A new node has vmbr0 (no ports, no address), created at start; its port is listed.
    eventually("vmbr0 on n1", Duration::from_secs(10), || {
        lab.link(1, "vmbr0").is_some()
    });
    let list = lab.api(1, &["get", "/nodes/n1/network"]).unwrap();
    let rows = list.as_array().unwrap();
    let vmbr0 = rows.iter().find(|r| r["iface"] == "vmbr0").expect("vmbr0");
    assert_eq!(vmbr0["type"], "bridge", "{vmbr0}");
    assert_eq!(vmbr0["exists"], 1, "{vmbr0}");
    let port = rows
        .iter()
        .find(|r| r["iface"] == uplink.as_str())
        .expect("the uplink is listed");
    assert_eq!(port["type"], "eth");
    assert_eq!(port["cidr"], format!("{SUBNET}.1/24"));

    // Bad input: each refused naming the parameter, nothing pending afterwards.
    refused(
        lab.api(
            1,
            &[
                "create",
                "/nodes/n1/network",
                "--iface",
                "vmbr0",
                "--type",
                "bridge",
            ],
        ),
        "iface",
        "already exists",
    );
    refused(
        lab.api(
            1,
            &[
                "create",
                "/nodes/n1/network",
                "--iface",
                "vlan9",
                "--type",
                "vlan",
                "--vlan-raw-device",
                "vmbr0",
                "--vlan-id",
                "4095",
            ],
        ),
        "vlan-id",
        "1 to 4094",
    );
    refused(
        lab.api(
            1,
            &[
                "create",
                "/nodes/n1/network",
                "--iface",
                "bond0",
                "--type",
                "bond",
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
                "/nodes/n1/network",
                "--iface",
                "vmbr5",
                "--type",
                "bridge",
                "--bridge_vids",
                "5-2",
                "--bridge_vlan_aware",
                "1",
            ],
        ),
        "bridge_vids",
        "first > last",
    );
    refused(
        lab.api(
            1,
            &[
                "create",
                "/nodes/n1/network",
                "--iface",
                "vmbr5",
                "--type",
                "bridge",
                "--cidr",
                "10.9.0.1/33",
            ],
        ),
        "cidr",
        "not an IPv4 CIDR",
    );
    let pending = lab.api(1, &["get", "/nodes/n1/network/vmbr0"]).unwrap();
    assert_eq!(pending["iface"], "vmbr0");

    // A failed apply (a port that does not exist) rolls back: no vmbr6 in the kernel.
    lab.api(
        1,
        &[
            "create",
            "/nodes/n1/network",
            "--iface",
            "vmbr6",
            "--type",
            "bridge",
            "--bridge_ports",
            "nosuchport0",
        ],
    )
    .unwrap();
    let upid = lab.api(1, &["set", "/nodes/n1/network"]).unwrap();
    let log = lab.task_log(1, &upid);
    assert!(
        log.contains("nosuchport0") && log.contains("previous configuration is back"),
        "{log}"
    );
    assert!(lab.link(1, "vmbr6").is_none(), "vmbr6 was rolled back");
    lab.api(1, &["delete", "/nodes/n1/network"]).unwrap();
    let listed = lab.api(1, &["get", "/nodes/n1/network"]).unwrap();
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["iface"] == "vmbr6"),
        "reverted: {listed}"
    );

    // The node's cluster address is never dropped: configure it on the uplink, then try
    // to remove it.
    lab.api(
        1,
        &[
            "create",
            "/nodes/n1/network",
            "--iface",
            &uplink,
            "--type",
            "eth",
            "--cidr",
            &format!("{SUBNET}.1/24"),
        ],
    )
    .unwrap();
    let upid = lab.api(1, &["set", "/nodes/n1/network"]).unwrap();
    let log = lab.task_log(1, &upid);
    assert!(log.starts_with("\"OK\""), "{log}");
    lab.api(
        1,
        &[
            "set",
            &format!("/nodes/n1/network/{uplink}"),
            "--type",
            "eth",
            "--delete",
            "cidr",
        ],
    )
    .unwrap();
    let upid = lab.api(1, &["set", "/nodes/n1/network"]).unwrap();
    let log = lab.task_log(1, &upid);
    assert!(log.contains("cluster address"), "{log}");
    assert!(has_address(&lab, 1, &uplink, &format!("{SUBNET}.1")));
    lab.api(1, &["delete", "/nodes/n1/network"]).unwrap();

    // A VLAN-aware bridge where the kernel filters VLANs; where it cannot (no
    // CONFIG_BRIDGE_VLAN_FILTERING, as on the Firecracker machines), the apply says so and
    // rolls back.
    lab.api(
        1,
        &[
            "create",
            "/nodes/n1/network",
            "--iface",
            "vmbr2",
            "--type",
            "bridge",
            "--bridge_vlan_aware",
            "1",
        ],
    )
    .unwrap();
    let upid = lab.api(1, &["set", "/nodes/n1/network"]).unwrap();
    let log = lab.task_log(1, &upid);
    let vlan_filtering = kernel_filters_vlans(&lab);
    if vlan_filtering {
        assert!(log.starts_with("\"OK\""), "{log}");
        let vmbr2 = lab.link(1, "vmbr2").expect("vmbr2 exists");
        assert_eq!(
            vmbr2["linkinfo"]["info_data"]["vlan_filtering"], 1,
            "{vmbr2}"
        );
    } else {
        eprintln!("NOTE: this kernel has no bridge VLAN filtering: checking the refusal instead");
        assert!(log.contains("bridge_vlan_aware"), "{log}");
        assert!(lab.link(1, "vmbr2").is_none(), "rolled back");
        lab.api(1, &["delete", "/nodes/n1/network"]).unwrap();
    }

    // A second plain bridge on n1 only.
    lab.api(
        1,
        &[
            "create",
            "/nodes/n1/network",
            "--iface",
            "vmbr1",
            "--type",
            "bridge",
            "--comments",
            "guests",
        ],
    )
    .unwrap();
    let upid = lab.api(1, &["set", "/nodes/n1/network"]).unwrap();
    let log = lab.task_log(1, &upid);
    assert!(log.starts_with("\"OK\""), "{log}");
    assert!(lab.link(1, "vmbr1").is_some());

    // Guests: tagged cards on plain bridges (Proxmox VE's <bridge>v<tag> bridges), a rate
    // limit.
    let shared = tempfile::tempdir().unwrap();
    lab.shared_storage(1, shared.path());
    let args = format!("-kernel {}", echo.display());
    // A card's bad VLAN tag or bridge name is refused naming the card, nothing created.
    refused(
        lab.api(
            1,
            &[
                "create",
                "/nodes/n1/qemu",
                "--vmid",
                "109",
                "--memory",
                "64",
                "--net0",
                "virtio,bridge=vmbr0,tag=4095",
            ],
        ),
        "net0",
        "tag: '4095' is not a VLAN id",
    );
    refused(
        lab.api(
            1,
            &[
                "create",
                "/nodes/n1/qemu",
                "--vmid",
                "109",
                "--memory",
                "64",
                "--net0",
                "virtio,bridge=vm br0",
            ],
        ),
        "net0",
        "bridge:",
    );
    assert!(
        lab.api(1, &["get", "/nodes/n1/qemu/109/config"]).is_err(),
        "no guest 109"
    );
    for (vmid, net) in [
        ("100", "virtio,bridge=vmbr0,tag=10,rate=5"),
        ("101", "e1000,bridge=vmbr1,tag=20"),
    ] {
        let log = lab.start_guest(1, vmid, "64", net, &args);
        // A kernel without traffic classifiers limits only one direction: a warning.
        assert!(
            log.starts_with("\"OK\"") || log.contains("WARN: net0: rate limits only"),
            "{log}"
        );
        assert!(
            log.contains(&format!("net0: tap{vmid}i0 on bridge")),
            "{log}"
        );
    }
    let tap = lab.link(1, "tap100i0").expect("tap100i0");
    assert_eq!(tap["master"], "vmbr0v10", "{tap}");
    let qdiscs = lab.json_in(1, "tc", &["qdisc", "show", "dev", "tap100i0"]);
    assert!(
        qdiscs
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["kind"] == "htb"),
        "rate limit: {qdiscs}"
    );
    let tap = lab.link(1, "tap101i0").expect("tap101i0");
    assert_eq!(tap["master"], "vmbr1v20", "{tap}");
    // The two VLANs are separate bridges: nothing connects vmbr0v10 and vmbr1v20.
    let members = |bridge: &str| -> Vec<String> {
        lab.json_in(1, "ip", &["link", "show", "master", bridge])
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| l["ifname"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(members("vmbr0v10"), vec!["tap100i0".to_string()]);
    assert_eq!(members("vmbr1v20"), vec!["tap101i0".to_string()]);

    // n2 has no vmbr1: the migration is refused naming it, before anything moves.
    let pre = lab
        .api(1, &["get", "/nodes/n1/qemu/101/migrate", "--target", "n2"])
        .unwrap();
    let reason = pre["not_allowed_nodes"]["n2"]["reason"].to_string();
    assert!(reason.contains("bridge 'vmbr1'"), "{pre}");
    refused(
        lab.api(
            1,
            &[
                "create",
                "/nodes/n1/qemu/101/migrate",
                "--target",
                "n2",
                "--online",
                "1",
            ],
        ),
        "target",
        "bridge 'vmbr1' does not exist on node 'n2'",
    );

    // A live migration of 100 re-plugs its tap on n2 (vmbr0v10 there), and n1's is gone.
    let upid = lab
        .api(
            1,
            &[
                "create",
                "/nodes/n1/qemu/100/migrate",
                "--target",
                "n2",
                "--online",
                "1",
            ],
        )
        .unwrap();
    let log = lab.task_log(1, &upid);
    assert!(log.starts_with("\"OK\""), "{log}");
    let tap = lab.link(2, "tap100i0").expect("tap100i0 on n2");
    assert_eq!(tap["master"], "vmbr0v10", "{tap}");
    eventually("n1's tap is gone", Duration::from_secs(10), || {
        lab.link(1, "tap100i0").is_none()
    });

    // Removing vmbr1 from n1's configuration removes it from the host.
    let upid = lab
        .api(1, &["create", "/nodes/n1/qemu/101/status/stop"])
        .unwrap();
    lab.task_log(1, &upid);
    lab.api(1, &["delete", "/nodes/n1/network/vmbr1"]).unwrap();
    let upid = lab.api(1, &["set", "/nodes/n1/network"]).unwrap();
    let log = lab.task_log(1, &upid);
    assert!(log.starts_with("\"OK\""), "{log}");
    assert!(lab.link(1, "vmbr1").is_none());

    // Traffic: on n3, two Linux guests with tag 10 and one untagged guest, all on vmbr0
    // with addresses of one subnet. A tagged guest reaches the other one of its VLAN, not
    // the untagged one (its tcp/12 service pings what it is asked to).
    let Some(linux) = linux_guest() else {
        return;
    };
    for (vmid, net, ip) in [
        ("110", "virtio,bridge=vmbr0,tag=10", "10.66.0.10"),
        ("111", "virtio,bridge=vmbr0,tag=10", "10.66.0.11"),
        ("112", "virtio,bridge=vmbr0", "10.66.0.12"),
    ] {
        let args = linux_args(&linux, &format!("fxip={ip}/24"));
        lab.start_guest(3, vmid, "128", net, &args);
    }
    // The test reaches VLAN 10 through an address on n3's vmbr0v10.
    assert!(
        lab.run_in(
            3,
            &["ip", "addr", "add", "10.66.0.250/24", "dev", "vmbr0v10"]
        )
        .0
    );
    // The guest's address comes up before its services listen: wait for the echo
    // service rather than for a ping answer.
    eventually("110 answers in VLAN 10", Duration::from_secs(90), || {
        let (_, echo) = lab.run_in(3, &["sh", "-c", "echo up | busybox nc -w 2 10.66.0.10 7"]);
        echo.lines().any(|line| line.trim() == "up")
    });
    let ask_ping = |target: &str| {
        let cmd = format!("echo {target} | busybox nc -w 20 10.66.0.10 12");
        lab.run_in(3, &["sh", "-c", &cmd]).1
    };
    let same_vlan = ask_ping("10.66.0.11");
    assert!(
        same_vlan.contains("20 packets received"),
        "110 -> 111: {same_vlan}"
    );
    let untagged = ask_ping("10.66.0.12");
    assert!(
        untagged.contains(" 0 packets received"),
        "110 -> 112: {untagged}"
    );
}
