//! SDN on this host: each vnet of a zone this node is in becomes a bridge named after the
//! vnet; a vxlan zone's vnet adds a VXLAN interface `vxlan_<vnet>` (VNI = the vnet's tag,
//! UDP 4789, this node's address as source) on the bridge, with a flooding entry per
//! other peer, so the same vnet on every node is one layer-2 segment. A simple zone's
//! subnet gateway is the bridge's address; with `dhcp=dnsmasq` a dnsmasq per vnet serves
//! its DHCP ranges.

use super::network::{exists, ip, link, run};
use ferrox_types::sdn::{SdnConfig, ZoneType};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

/// What the host needs for one vnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnetPlan {
    pub vnet: String,
    pub mtu: u16,
    /// VNI, local address and the other peers, for a vxlan zone's vnet.
    pub vxlan: Option<(u32, Ipv4Addr, Vec<Ipv4Addr>)>,
    /// `address/prefix` of the bridge (a simple zone's subnet gateways).
    pub addresses: Vec<String>,
    /// dnsmasq arguments for the vnet's DHCP, if it serves any.
    pub dhcp: Vec<String>,
}

/// The vnets `node` hosts under `cfg`. `local` are this host's addresses, to find itself
/// among a vxlan zone's peers. A vxlan zone whose peers do not include this host is an
/// error naming the zone.
pub fn plan(
    cfg: &SdnConfig,
    node: &str,
    local: &BTreeSet<Ipv4Addr>,
) -> Result<Vec<VnetPlan>, String> {
    let mut out = Vec::new();
    for v in cfg.vnets.values() {
        let Some(zone) = cfg.zones.get(&v.zone).filter(|z| z.on_node(node)) else {
            continue;
        };
        let mut p = VnetPlan {
            vnet: v.id.clone(),
            mtu: zone.effective_mtu(),
            vxlan: None,
            addresses: Vec::new(),
            dhcp: Vec::new(),
        };
        match zone.kind {
            ZoneType::Vxlan => {
                let me = zone
                    .peers
                    .iter()
                    .find(|p| local.contains(p))
                    .ok_or_else(|| {
                        format!(
                            "zone '{}': none of its peers ({}) is an address of this node",
                            zone.id,
                            zone.peers
                                .iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                let others = zone.peers.iter().filter(|p| *p != me).copied().collect();
                p.vxlan = Some((v.tag.unwrap_or(0), *me, others));
            }
            ZoneType::Simple => {
                for (_, s) in cfg.subnets_of(&v.id) {
                    let Some(g) = s.gateway else { continue };
                    p.addresses.push(format!("{g}/{}", s.cidr.prefix_len()));
                    if zone.dhcp {
                        for r in &s.dhcp_ranges {
                            p.dhcp.push(format!(
                                "--dhcp-range={},{},{},12h",
                                r.start,
                                r.end,
                                s.cidr.netmask()
                            ));
                        }
                        if !s.dhcp_ranges.is_empty() {
                            p.dhcp.push(format!("--dhcp-option=option:router,{g}"));
                            if let Some(dns) = s.dhcp_dns_server {
                                p.dhcp
                                    .push(format!("--dhcp-option=option:dns-server,{dns}"));
                            }
                        }
                    }
                }
            }
        }
        out.push(p);
    }
    Ok(out)
}

fn vxlan_name(vnet: &str) -> String {
    format!("vxlan_{vnet}")
}

fn pid_file(run_dir: &Path, vnet: &str) -> std::path::PathBuf {
    run_dir.join(format!("dnsmasq-{vnet}.pid"))
}

/// Where the DHCP leases of `vnet` are kept.
pub fn lease_file(run_dir: &Path, vnet: &str) -> std::path::PathBuf {
    run_dir.join(format!("dnsmasq-{vnet}.leases"))
}

fn stop_dhcp(run_dir: &Path, vnet: &str) {
    let file = pid_file(run_dir, vnet);
    if let Some(pid) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::Term);
    }
    let _ = std::fs::remove_file(file);
}

/// Makes the host match `wanted`, coming from `previous` (what was applied before, in
/// this daemon's lifetime): vnets no longer wanted lose their bridge, tunnel and dnsmasq.
pub fn apply(wanted: &[VnetPlan], previous: &[VnetPlan], run_dir: &Path) -> Result<(), String> {
    for old in previous {
        if !wanted.iter().any(|w| w.vnet == old.vnet) {
            stop_dhcp(run_dir, &old.vnet);
            for name in [vxlan_name(&old.vnet), old.vnet.clone()] {
                if exists(&name) {
                    ip(&["link", "del", &name])?;
                }
            }
        }
    }
    for p in wanted {
        let br = p.vnet.as_str();
        if !exists(br) {
            ip(&["link", "add", br, "type", "bridge"])?;
        } else if link(br).is_some_and(|l| l.kind.as_deref() != Some("bridge")) {
            return Err(format!(
                "vnet '{br}': an interface of that name exists and is not a bridge"
            ));
        }
        ip(&["link", "set", br, "mtu", &p.mtu.to_string()])?;
        let vx = vxlan_name(br);
        match &p.vxlan {
            Some((vni, local, peers)) => {
                // Recreated so that a changed VNI or source address takes effect.
                if exists(&vx) {
                    ip(&["link", "del", &vx])?;
                }
                ip(&[
                    "link",
                    "add",
                    &vx,
                    "type",
                    "vxlan",
                    "id",
                    &vni.to_string(),
                    "dstport",
                    "4789",
                    "local",
                    &local.to_string(),
                    "nolearning",
                ])?;
                ip(&["link", "set", &vx, "mtu", &p.mtu.to_string()])?;
                ip(&["link", "set", &vx, "master", br])?;
                for peer in peers {
                    run(
                        "bridge",
                        &[
                            "fdb",
                            "append",
                            "00:00:00:00:00:00",
                            "dev",
                            &vx,
                            "dst",
                            &peer.to_string(),
                        ],
                    )?;
                }
                ip(&["link", "set", &vx, "up"])?;
            }
            None => {
                if exists(&vx) {
                    ip(&["link", "del", &vx])?;
                }
            }
        }
        ip(&["addr", "flush", "dev", br, "scope", "global"])?;
        for a in &p.addresses {
            ip(&["addr", "add", a, "dev", br])?;
        }
        ip(&["link", "set", br, "up"])?;
        stop_dhcp(run_dir, br);
        if !p.dhcp.is_empty() {
            let pid = pid_file(run_dir, br).display().to_string();
            let leases = lease_file(run_dir, br).display().to_string();
            let mut args: Vec<String> = vec![
                "--conf-file=/dev/null".into(),
                "--port=0".into(),
                format!("--interface={br}"),
                "--bind-interfaces".into(),
                "--except-interface=lo".into(),
                format!("--pid-file={pid}"),
                format!("--dhcp-leasefile={leases}"),
                "--dhcp-authoritative".into(),
            ];
            args.extend(p.dhcp.iter().cloned());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run("dnsmasq", &refs).map_err(|e| {
                if e.contains("No such file") {
                    format!("vnet '{br}': DHCP needs dnsmasq (apt-get install dnsmasq-base)")
                } else {
                    format!("vnet '{br}': dnsmasq: {e}")
                }
            })?;
        }
    }
    Ok(())
}
