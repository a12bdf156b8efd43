//! This host's network as the kernel sees it, changed with iproute2 (`ip`, `bridge`, `tc`):
//! the node's interface configuration applied (bridges, VLAN interfaces, ports, addresses)
//! and guests' tap devices plugged into bridges with their VLAN tag and rate limit.
//!
//! iproute2 is the reference tool for these changes and Proxmox VE itself runs `ip`,
//! `bridge` and `tc` for guest ports; a netlink crate would mean re-implementing the
//! bridge-VLAN and traffic-control messages those tools already get right.

use ferrox_types::network::{Iface, IfaceKind, IfaceName, Interfaces, Method, Nic, VlanId};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;

/// Where `node`'s applied interface configuration lives in the store.
pub fn config_path(node: &str) -> String {
    format!("nodes/{node}/interfaces")
}

/// Where changes wait until `PUT /nodes/{node}/network` applies them (Proxmox VE's
/// `/etc/network/interfaces.new`).
pub fn pending_path(node: &str) -> String {
    format!("nodes/{node}/interfaces.new")
}

/// A new node's configuration: `vmbr0` without ports or address, so that guests on this
/// node can reach each other and the default `bridge=vmbr0` works. Uplinks and addresses
/// are added through the network API; Ferrox never moves the host's own address.
pub fn default_config() -> Interfaces {
    let mut cfg = Interfaces::default();
    let Ok(name) = IfaceName::parse("vmbr0") else {
        return cfg;
    };
    let mut br = Iface::new(
        name,
        IfaceKind::Bridge {
            ports: Vec::new(),
            vlan_aware: false,
            vids: Vec::new(),
        },
    );
    br.comments = Some("guest bridge (add an uplink port to reach other hosts)".into());
    cfg.insert(br);
    cfg
}

pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub(crate) fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

/// One link of the kernel, as `ip -j -d addr show` tells it.
#[derive(Debug, Clone)]
pub struct Link {
    pub name: String,
    /// `bridge`, `vlan`, `tun`, `veth`, `vxlan`, ...; `None` for a physical port.
    pub kind: Option<String>,
    pub up: bool,
    pub master: Option<String>,
    pub mtu: u32,
    pub vlan_filtering: bool,
    pub addresses: Vec<(IpAddr, u8)>,
    pub loopback: bool,
}

impl Link {
    /// A port Ferrox shows as `eth`: a physical device or a veth (the host side of a
    /// container link, or a test host's "cable").
    pub fn is_port(&self) -> bool {
        !self.loopback && matches!(self.kind.as_deref(), None | Some("veth"))
    }
}

fn link_from(r: &Value) -> Link {
    let info = &r["linkinfo"];
    Link {
        name: r["ifname"].as_str().unwrap_or_default().to_string(),
        kind: info["info_kind"].as_str().map(String::from),
        up: r["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
        master: r["master"].as_str().map(String::from),
        mtu: r["mtu"].as_u64().unwrap_or(0) as u32,
        vlan_filtering: info["info_data"]["vlan_filtering"].as_u64() == Some(1),
        addresses: r["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| {
                        let ip: IpAddr = x["local"].as_str()?.parse().ok()?;
                        Some((ip, x["prefixlen"].as_u64()? as u8))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        loopback: r["link_type"] == "loopback",
    }
}

fn read_links(args: &[&str]) -> Result<Vec<Link>, String> {
    let text = ip(args)?;
    let rows: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    Ok(rows.iter().map(link_from).collect())
}

/// Every link of this host (of the daemon's network namespace).
pub fn links() -> Result<Vec<Link>, String> {
    read_links(&["-j", "-d", "addr", "show"])
}

pub(crate) fn link(name: &str) -> Option<Link> {
    read_links(&["-j", "-d", "addr", "show", "dev", name])
        .ok()?
        .into_iter()
        .next()
}

/// Whether `name` is a Linux bridge on this host.
pub fn is_bridge(name: &str) -> bool {
    link(name).is_some_and(|l| l.kind.as_deref() == Some("bridge"))
}

pub(crate) fn exists(name: &str) -> bool {
    link(name).is_some()
}

/// Makes the kernel match `new`, coming from `old` (what was applied before): bridges and
/// VLAN interfaces that `old` had and `new` has not are removed, the rest is created or
/// changed. Physical ports are only configured, never created or removed.
fn apply(new: &Interfaces, old: &Interfaces) -> Result<(), String> {
    for o in old.iter() {
        let kept = new.get(o.name.as_str());
        let created = matches!(o.kind, IfaceKind::Bridge { .. } | IfaceKind::Vlan { .. });
        if created && kept.is_none_or(|n| n.kind.type_name() != o.kind.type_name()) {
            if exists(o.name.as_str()) {
                ip(&["link", "del", o.name.as_str()])?;
            }
            continue;
        }
        if let Some(c) = o.cidr {
            if kept.and_then(|n| n.cidr) != Some(c) && exists(o.name.as_str()) {
                let _ = ip(&["addr", "del", &c.to_string(), "dev", o.name.as_str()]);
            }
        }
        if let IfaceKind::Bridge { ports, .. } = &o.kind {
            for p in ports {
                if new.bridge_of(p) != Some(&o.name) && exists(p.as_str()) {
                    let _ = ip(&["link", "set", p.as_str(), "nomaster"]);
                }
            }
        }
    }
    // Bridges first (VLANs may sit on them), then VLANs, then ports and addresses.
    for i in new.iter() {
        if let IfaceKind::Bridge { vlan_aware, .. } = &i.kind {
            let name = i.name.as_str();
            if !exists(name) {
                ip(&["link", "add", name, "type", "bridge"])?;
            }
            // Only touched when it must change: kernels without bridge VLAN filtering
            // refuse even setting it to 0.
            let filtering = link(name).is_some_and(|l| l.vlan_filtering);
            if filtering != *vlan_aware {
                let value = if *vlan_aware { "1" } else { "0" };
                ip(&["link", "set", name, "type", "bridge", "vlan_filtering", value])
                    .map_err(|e| {
                        format!("bridge_vlan_aware: {name}: {e} (this host's kernel may lack bridge VLAN filtering)")
                    })?;
            }
        }
    }
    for i in new.iter() {
        if let IfaceKind::Vlan { raw_device, id } = &i.kind {
            let name = i.name.as_str();
            if !exists(raw_device.as_str()) {
                return Err(format!(
                    "vlan-raw-device: interface '{raw_device}' of '{name}' does not exist"
                ));
            }
            if !exists(name) {
                add_vlan(raw_device.as_str(), name, *id)?;
            }
        }
    }
    for i in new.iter() {
        let name = i.name.as_str();
        if matches!(i.kind, IfaceKind::Loopback) {
            continue;
        }
        if !exists(name) {
            if matches!(i.kind, IfaceKind::Eth) {
                // A configured port this host lacks (Proxmox VE lists it as not existing).
                continue;
            }
            return Err(format!("interface '{name}' could not be created"));
        }
        if let IfaceKind::Bridge {
            ports,
            vlan_aware,
            vids,
        } = &i.kind
        {
            for p in ports {
                if !exists(p.as_str()) {
                    return Err(format!(
                        "bridge_ports: interface '{p}' of bridge '{name}' does not exist"
                    ));
                }
                ip(&["link", "set", p.as_str(), "master", name])?;
                ip(&["link", "set", p.as_str(), "up"])?;
                if *vlan_aware {
                    let list: Vec<String> = if vids.is_empty() {
                        vec!["2-4094".into()]
                    } else {
                        vids.iter().map(|v| v.to_string()).collect()
                    };
                    for v in list {
                        run("bridge", &["vlan", "add", "dev", p.as_str(), "vid", &v])?;
                    }
                }
            }
        }
        if let Some(mtu) = i.mtu {
            ip(&["link", "set", name, "mtu", &mtu.to_string()])?;
        }
        if let Some(c) = i.cidr {
            ip(&["addr", "replace", &c.to_string(), "dev", name])?;
        }
        if i.autostart || i.method == Method::Static {
            ip(&["link", "set", name, "up"])?;
        }
        if let Some(g) = i.gateway {
            ip(&[
                "route",
                "replace",
                "default",
                "via",
                &g.to_string(),
                "dev",
                name,
            ])?;
        }
    }
    Ok(())
}

/// Applies `new` over `old`; when that fails, or when `keep` (the address other nodes
/// reach this one at) would be gone, puts `old` back and says why. No node is left
/// without its management address.
pub fn apply_or_roll_back(
    new: &Interfaces,
    old: &Interfaces,
    keep: Option<IpAddr>,
) -> Result<(), String> {
    let result = apply(new, old).and_then(|()| match keep {
        Some(addr) if !addr.is_loopback() && !addr.is_unspecified() => {
            let present = links()?
                .iter()
                .any(|l| l.addresses.iter().any(|(a, _)| *a == addr));
            if present {
                Ok(())
            } else {
                Err(format!(
                    "the node's cluster address {addr} would be gone with this configuration"
                ))
            }
        }
        _ => Ok(()),
    });
    if let Err(e) = result {
        let restored = apply(old, new);
        return Err(match restored {
            Ok(()) => format!("{e}; the previous configuration is back in place"),
            Err(r) => format!("{e}; restoring the previous configuration failed too: {r}"),
        });
    }
    Ok(())
}

/// The bridge a card's tap joins: itself, or for a tag on a bridge that is not VLAN-aware
/// Proxmox VE's `<bridge>v<tag>`, a bridge of the `<port>.<tag>` VLAN interfaces of the
/// bridge's physical ports (none on a port-less bridge: then the tag separates this node's
/// guests only).
fn vlan_bridge(bridge: &str, tag: VlanId) -> Result<String, String> {
    let name = format!("{bridge}v{tag}");
    if !exists(&name) {
        ip(&["link", "add", &name, "type", "bridge"])?;
    }
    let Some(br) = link(bridge) else {
        return Err(format!("bridge '{bridge}' does not exist"));
    };
    ip(&["link", "set", &name, "mtu", &br.mtu.to_string()])?;
    for port in links()?
        .iter()
        .filter(|l| l.master.as_deref() == Some(bridge) && l.is_port())
    {
        let sub = format!("{}.{tag}", port.name);
        if sub.len() > 15 {
            return Err(format!("VLAN interface name '{sub}' is too long"));
        }
        if !exists(&sub) {
            add_vlan(&port.name, &sub, tag)?;
        }
        ip(&["link", "set", &sub, "master", &name])?;
        ip(&["link", "set", &sub, "up"])?;
    }
    ip(&["link", "set", &name, "up"])?;
    Ok(name)
}

/// An 802.1Q interface `name` on `raw`.
fn add_vlan(raw: &str, name: &str, id: VlanId) -> Result<(), String> {
    let id = id.to_string();
    ip(&[
        "link", "add", "link", raw, "name", name, "type", "vlan", "id", &id,
    ])
    .map_err(|e| {
        if e.contains("Unknown device type") {
            format!("{name}: this host's kernel has no 802.1Q VLAN support (8021q)")
        } else {
            e
        }
    })?;
    Ok(())
}

/// Plugs a guest's tap device (created by QEMU) into the card's bridge, with its VLAN
/// tag or trunks, MTU and rate limit, as Proxmox VE's `tap_plug` does. Returns what the
/// host could not do in full (a warning), if anything.
pub fn plug_tap(tap: &str, nic: &Nic) -> Result<Option<String>, String> {
    let Some(bridge) = &nic.bridge else {
        return Ok(None);
    };
    let Some(br) = link(bridge.as_str()).filter(|l| l.kind.as_deref() == Some("bridge")) else {
        return Err(format!("bridge '{bridge}' does not exist"));
    };
    let mut target = bridge.to_string();
    if !br.vlan_filtering {
        if !nic.trunks.is_empty() {
            return Err(format!(
                "trunks: bridge '{bridge}' is not VLAN-aware (bridge_vlan_aware)"
            ));
        }
        if let Some(tag) = nic.tag {
            target = vlan_bridge(bridge.as_str(), tag)?;
        }
    }
    let mtu = match nic.mtu {
        Some(m) if m > 1 => u32::from(m).min(br.mtu),
        _ => br.mtu,
    };
    ip(&["link", "set", tap, "mtu", &mtu.to_string()])?;
    ip(&["link", "set", tap, "master", &target])?;
    if br.vlan_filtering {
        run("bridge", &["vlan", "del", "dev", tap, "vid", "1-4094"])?;
        for t in &nic.trunks {
            run(
                "bridge",
                &["vlan", "add", "dev", tap, "vid", &t.to_string()],
            )?;
        }
        if nic.trunks.is_empty() && nic.tag.is_none() {
            run("bridge", &["vlan", "add", "dev", tap, "vid", "2-4094"])?;
        }
        let pvid = nic.tag.map(|t| t.to_string()).unwrap_or_else(|| "1".into());
        run(
            "bridge",
            &["vlan", "add", "dev", tap, "vid", &pvid, "pvid", "untagged"],
        )?;
    }
    let warning = match nic.rate {
        Some(rate) => rate_limit(tap, rate)?,
        None => None,
    };
    ip(&["link", "set", tap, "up"])?;
    Ok(warning)
}

/// Limits a tap to `mb_per_s` in both directions: htb on what the guest receives,
/// ingress policing on what it sends (the `tc` setup Proxmox VE uses). A kernel without
/// traffic classifiers cannot police the sending direction: that is returned as a warning,
/// the receiving limit still holds.
fn rate_limit(tap: &str, mb_per_s: f64) -> Result<Option<String>, String> {
    let rate = format!("{}bps", (mb_per_s * 1024.0 * 1024.0) as u64);
    let burst = format!("{}b", 1024 * 1024);
    run(
        "tc",
        &[
            "qdisc", "add", "dev", tap, "root", "handle", "1:", "htb", "default", "1",
        ],
    )?;
    run(
        "tc",
        &[
            "class", "add", "dev", tap, "parent", "1:", "classid", "1:1", "htb", "rate", &rate,
            "burst", &burst,
        ],
    )?;
    run(
        "tc",
        &["qdisc", "add", "dev", tap, "handle", "ffff:", "ingress"],
    )?;
    let policed = run(
        "tc",
        &[
            "filter", "add", "dev", tap, "parent", "ffff:", "prio", "50", "basic", "police",
            "rate", &rate, "burst", &burst, "mtu", "64kb", "drop",
        ],
    );
    match policed {
        Ok(_) => Ok(None),
        Err(e) if e.contains("classifier not found") => {
            let _ = run("tc", &["qdisc", "del", "dev", tap, "ingress"]);
            Ok(Some(
                "rate limits only what the guest receives: this host's kernel has no traffic classifier to police what it sends".into(),
            ))
        }
        Err(e) => Err(e),
    }
}

/// The bridges a guest needs (`bridge=` of its cards), by card.
pub fn bridges_of(cfg: &ferrox_types::GuestConfig) -> Vec<(String, Nic)> {
    cfg.options
        .iter()
        .filter(|(k, _)| crate::guests::is_net_key(k))
        .filter_map(|(k, v)| Some((k.clone(), Nic::parse(k, v).ok()?)))
        .filter(|(_, n)| n.bridge.is_some())
        .collect()
}

/// Names of the bridges in a node's configuration.
pub fn bridge_names(cfg: &Interfaces) -> BTreeSet<String> {
    cfg.iter()
        .filter(|i| matches!(i.kind, IfaceKind::Bridge { .. }))
        .map(|i| i.name.to_string())
        .collect()
}
