//! Guest and host networking formats: a guest's `netN` card (`virtio=MAC,bridge=vmbr0,tag=10`)
//! and a node's interface configuration, written in the `/etc/network/interfaces` syntax
//! Proxmox VE's network API reads and writes (`auto`, `iface NAME inet static|manual`,
//! `bridge-ports`, `bridge-vlan-aware`, `vlan-raw-device`, ...).
//!
//! Everything here is parsed into typed values before it reaches a command line: interface
//! names are checked against what the kernel accepts, VLAN ids against 1–4094.

use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use crate::PropertyString;

/// An error in one field of a network value: the field's name and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn field_err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A network interface name as the kernel accepts it (at most 15 bytes) and Proxmox VE's
/// `pve-iface` format allows: a letter first, then letters, digits, `_`, `.`, `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfaceName(String);

impl IfaceName {
    pub fn parse(text: &str) -> Result<IfaceName, String> {
        let ok_chars = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if text.len() < 2 || text.len() > 15 {
            return Err(format!(
                "'{text}' is not an interface name (2 to 15 characters)"
            ));
        }
        if !text.starts_with(|c: char| c.is_ascii_alphabetic()) || !ok_chars {
            return Err(format!(
                "'{text}' is not an interface name (a letter, then letters, digits, '_', '.', '-')"
            ));
        }
        Ok(IfaceName(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An 802.1Q VLAN id, 1–4094.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VlanId(u16);

impl VlanId {
    pub fn parse(text: &str) -> Result<VlanId, String> {
        match text.trim().parse::<u16>() {
            Ok(id) if (1..=4094).contains(&id) => Ok(VlanId(id)),
            _ => Err(format!("'{text}' is not a VLAN id (1 to 4094)")),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A VLAN id or an inclusive range (`100-200`), as in `trunks=` and `bridge-vids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanRange {
    pub first: VlanId,
    pub last: VlanId,
}

impl VlanRange {
    pub fn parse(text: &str) -> Result<VlanRange, String> {
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let (first, last) = (VlanId::parse(a)?, VlanId::parse(b)?);
        if first > last {
            return Err(format!("'{text}' is not a VLAN range (first > last)"));
        }
        Ok(VlanRange { first, last })
    }

    /// A list separated by `sep` (`;` in `trunks=`, spaces or commas in `bridge-vids`).
    pub fn parse_list(text: &str, seps: &[char]) -> Result<Vec<VlanRange>, String> {
        let items: Vec<&str> = text.split(seps).filter(|s| !s.is_empty()).collect();
        if items.is_empty() {
            return Err("VLAN list items are empty".into());
        }
        items.into_iter().map(VlanRange::parse).collect()
    }
}

impl fmt::Display for VlanRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A MAC address, written `BC:24:11:00:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub fn parse(text: &str) -> Result<MacAddr, String> {
        let err = || format!("'{text}' is not a MAC address (e.g. BC:24:11:00:00:01)");
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() != 6 {
            return Err(err());
        }
        let mut bytes = [0u8; 6];
        for (b, p) in bytes.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if bytes[0] & 1 == 1 {
            return Err(format!("'{text}' is a multicast MAC address"));
        }
        Ok(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Proxmox VE's network card models and the QEMU device of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    Virtio,
    E1000,
    E1000e,
    Rtl8139,
    Vmxnet3,
}

impl NicModel {
    pub const ALL: [NicModel; 5] = [
        NicModel::Virtio,
        NicModel::E1000,
        NicModel::E1000e,
        NicModel::Rtl8139,
        NicModel::Vmxnet3,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Rtl8139 => "rtl8139",
            NicModel::Vmxnet3 => "vmxnet3",
        }
    }

    pub fn from_name(name: &str) -> Option<NicModel> {
        NicModel::ALL.into_iter().find(|m| m.as_str() == name)
    }

    pub fn qemu_device(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio-net-pci",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Rtl8139 => "rtl8139",
            NicModel::Vmxnet3 => "vmxnet3",
        }
    }
}

/// A guest's `netN` card: `virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=10,rate=12.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Nic {
    pub model: NicModel,
    /// `None` until the node assigns one (`virtio,bridge=vmbr0` as a client writes it).
    pub mac: Option<MacAddr>,
    /// The bridge (or SDN vnet) the card's tap device joins; none: user-mode networking.
    pub bridge: Option<IfaceName>,
    pub tag: Option<VlanId>,
    pub trunks: Vec<VlanRange>,
    pub firewall: bool,
    pub link_down: bool,
    /// Limit in MB/s (Proxmox VE: megabytes per second, both directions).
    pub rate: Option<f64>,
    /// 1 means "the bridge's MTU" (Proxmox VE).
    pub mtu: Option<u16>,
    pub queues: Option<u8>,
}

impl Nic {
    /// Parses a `netN` value; errors name `key` (the `netN` option) and the bad item.
    pub fn parse(key: &str, text: &str) -> Result<Nic, FieldError> {
        let p = PropertyString::parse(text).map_err(|e| field_err(key, e.to_string()))?;
        let mut nic = Nic {
            model: NicModel::Virtio,
            mac: None,
            bridge: None,
            tag: None,
            trunks: Vec::new(),
            firewall: false,
            link_down: false,
            rate: None,
            mtu: None,
            queues: None,
        };
        let mut model = None;
        let bool_of = |item: &str, v: &str| match v {
            "1" | "on" | "yes" | "true" => Ok(true),
            "0" | "off" | "no" | "false" => Ok(false),
            _ => Err(field_err(key, format!("{item}: '{v}' is not a boolean"))),
        };
        for (i, (k, v)) in p.items.iter().enumerate() {
            let item = |e: String, name: &str| field_err(key, format!("{name}: {e}"));
            match (k.as_deref(), v.as_str()) {
                (None, name) if i == 0 => {
                    model = Some(NicModel::from_name(name).ok_or_else(|| {
                        field_err(key, format!("no valid network card model in '{text}'"))
                    })?);
                }
                (Some(name), mac) if i == 0 && NicModel::from_name(name).is_some() => {
                    model = NicModel::from_name(name);
                    nic.mac = Some(MacAddr::parse(mac).map_err(|e| item(e, "macaddr"))?);
                }
                (Some("model"), name) => {
                    model = Some(NicModel::from_name(name).ok_or_else(|| {
                        field_err(key, format!("model: unknown card model '{name}'"))
                    })?);
                }
                (Some("macaddr"), mac) => {
                    nic.mac = Some(MacAddr::parse(mac).map_err(|e| item(e, "macaddr"))?)
                }
                (Some("bridge"), b) => {
                    nic.bridge = Some(IfaceName::parse(b).map_err(|e| item(e, "bridge"))?)
                }
                (Some("tag"), t) => nic.tag = Some(VlanId::parse(t).map_err(|e| item(e, "tag"))?),
                (Some("trunks"), t) => {
                    nic.trunks = VlanRange::parse_list(t, &[';']).map_err(|e| item(e, "trunks"))?
                }
                (Some("firewall"), v) => nic.firewall = bool_of("firewall", v)?,
                (Some("link_down"), v) => nic.link_down = bool_of("link_down", v)?,
                (Some("rate"), r) => match r.parse::<f64>() {
                    Ok(r) if r >= 0.0 && r.is_finite() => nic.rate = (r > 0.0).then_some(r),
                    _ => return Err(item(format!("'{r}' is not a rate in MB/s"), "rate")),
                },
                (Some("mtu"), m) => match m.parse::<u16>() {
                    Ok(m) if m == 1 || (576..=65520).contains(&m) => nic.mtu = Some(m),
                    _ => {
                        return Err(item(
                            format!("'{m}' is not an MTU (1 = the bridge's, or 576 to 65520)"),
                            "mtu",
                        ))
                    }
                },
                (Some("queues"), q) => match q.parse::<u8>() {
                    Ok(q) if q <= 64 => nic.queues = (q > 0).then_some(q),
                    _ => return Err(item(format!("'{q}' is not 0 to 64"), "queues")),
                },
                (Some(other), _) => {
                    return Err(field_err(
                        key,
                        format!("unknown network card option '{other}'"),
                    ))
                }
                (None, _) => return Err(field_err(key, format!("value without key in '{text}'"))),
            }
        }
        nic.model = model.ok_or_else(|| {
            field_err(
                key,
                format!(
                    "no network card model given (one of {})",
                    NicModel::ALL.map(|m| m.as_str()).join(", ")
                ),
            )
        })?;
        if !nic.trunks.is_empty() && nic.bridge.is_none() {
            return Err(field_err(key, "trunks: needs a bridge"));
        }
        if nic.tag.is_some() && nic.bridge.is_none() {
            return Err(field_err(key, "tag: needs a bridge"));
        }
        Ok(nic)
    }

    /// The name of the card's tap device on the host: `tap<vmid>i<index>` (Proxmox VE's).
    pub fn tap_name(vmid: u32, index: u32) -> String {
        format!("tap{vmid}i{index}")
    }
}

impl fmt::Display for Nic {
    /// Proxmox VE's canonical order: model=MAC first, then the options alphabetically.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mac {
            Some(mac) => write!(f, "{}={mac}", self.model.as_str())?,
            None => write!(f, "{}", self.model.as_str())?,
        }
        if let Some(b) = &self.bridge {
            write!(f, ",bridge={b}")?;
        }
        if self.firewall {
            write!(f, ",firewall=1")?;
        }
        if self.link_down {
            write!(f, ",link_down=1")?;
        }
        if let Some(m) = self.mtu {
            write!(f, ",mtu={m}")?;
        }
        if let Some(q) = self.queues {
            write!(f, ",queues={q}")?;
        }
        if let Some(r) = self.rate {
            write!(f, ",rate={r}")?;
        }
        if let Some(t) = self.tag {
            write!(f, ",tag={t}")?;
        }
        if !self.trunks.is_empty() {
            let t: Vec<String> = self.trunks.iter().map(|t| t.to_string()).collect();
            write!(f, ",trunks={}", t.join(";"))?;
        }
        Ok(())
    }
}

/// What an interface of the node's network configuration is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfaceKind {
    /// A Linux bridge with its ports (physical interfaces, bonds, VLANs).
    Bridge {
        ports: Vec<IfaceName>,
        vlan_aware: bool,
        /// The VLANs a VLAN-aware bridge carries (default 2–4094).
        vids: Vec<VlanRange>,
    },
    /// An 802.1Q VLAN interface on `raw_device` (`eth0.10`, or any name with
    /// `vlan-raw-device` and `vlan-id`).
    Vlan {
        raw_device: IfaceName,
        id: VlanId,
    },
    /// A physical port (configured, never created or removed by Ferrox).
    Eth,
    Loopback,
}

impl IfaceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            IfaceKind::Bridge { .. } => "bridge",
            IfaceKind::Vlan { .. } => "vlan",
            IfaceKind::Eth => "eth",
            IfaceKind::Loopback => "loopback",
        }
    }
}

/// How an interface gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Static,
    Manual,
    Dhcp,
    Loopback,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Static => "static",
            Method::Manual => "manual",
            Method::Dhcp => "dhcp",
            Method::Loopback => "loopback",
        }
    }
}

/// One interface of the node's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: IfaceName,
    pub kind: IfaceKind,
    pub autostart: bool,
    pub method: Method,
    pub cidr: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: Option<u16>,
    pub comments: Option<String>,
    /// Options Ferrox does not interpret, kept as written (`bridge-stp off`, ...).
    pub options: Vec<(String, String)>,
}

impl Iface {
    pub fn new(name: IfaceName, kind: IfaceKind) -> Iface {
        Iface {
            name,
            kind,
            autostart: true,
            method: Method::Manual,
            cidr: None,
            gateway: None,
            mtu: None,
            comments: None,
            options: Vec::new(),
        }
    }
}

/// A node's network configuration: its interfaces in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interfaces {
    pub ifaces: BTreeMap<IfaceName, Iface>,
    /// Order of first appearance, so a written file keeps the reader's order.
    pub order: Vec<IfaceName>,
}

/// A bad line of an interfaces file: its number and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct InterfacesError {
    pub line: usize,
    pub message: String,
}

fn is_vlan_name(name: &str) -> Option<(IfaceName, VlanId)> {
    let (raw, id) = name.rsplit_once('.')?;
    Some((IfaceName::parse(raw).ok()?, VlanId::parse(id).ok()?))
}

impl Interfaces {
    /// Parses the `interfaces` syntax (the subset Proxmox VE's own writer produces).
    pub fn parse(text: &str) -> Result<Interfaces, InterfacesError> {
        struct Raw {
            method: Method,
            opts: Vec<(String, String)>,
            comments: Vec<String>,
            line: usize,
        }
        let mut raws: Vec<(IfaceName, Raw)> = Vec::new();
        let mut auto: Vec<IfaceName> = Vec::new();
        let err = |line: usize, message: String| InterfacesError { line, message };
        for (n, raw_line) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = raw_line.trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or_default();
            match first {
                "auto" | "allow-hotplug" => {
                    for w in words {
                        auto.push(IfaceName::parse(w).map_err(|e| err(line_no, e))?);
                    }
                }
                "iface" => {
                    let name = words.next().unwrap_or_default();
                    let name = IfaceName::parse(name).map_err(|e| err(line_no, e))?;
                    let family = words.next().unwrap_or_default();
                    let method = match (family, words.next().unwrap_or_default()) {
                        ("inet", "static") => Method::Static,
                        ("inet", "manual") => Method::Manual,
                        ("inet", "dhcp") => Method::Dhcp,
                        ("inet", "loopback") => Method::Loopback,
                        (f, m) => {
                            return Err(err(
                                line_no,
                                format!("unsupported address family or method '{f} {m}'"),
                            ))
                        }
                    };
                    if raws.iter().any(|(n, _)| *n == name) {
                        return Err(err(line_no, format!("interface '{name}' defined twice")));
                    }
                    raws.push((
                        name,
                        Raw {
                            method,
                            opts: Vec::new(),
                            comments: Vec::new(),
                            line: line_no,
                        },
                    ));
                }
                _ if first.starts_with('#') => {
                    if let Some((_, r)) = raws.last_mut() {
                        let c = line.trim_start_matches('#').trim_start();
                        r.comments.push(c.to_string());
                    }
                }
                key => {
                    let Some((_, r)) = raws.last_mut() else {
                        return Err(err(line_no, format!("'{key}' outside an iface stanza")));
                    };
                    let value = line[key.len()..].trim().to_string();
                    r.opts.push((key.to_string(), value));
                }
            }
        }
        let mut cfg = Interfaces::default();
        for (name, r) in raws {
            let mut ports = None;
            let mut vlan_aware = false;
            let mut vids = Vec::new();
            let mut raw_device = None;
            let mut vlan_id = None;
            let mut iface = Iface::new(name.clone(), IfaceKind::Eth);
            iface.method = r.method;
            iface.autostart = auto.contains(&name);
            iface.comments = (!r.comments.is_empty()).then(|| r.comments.join("\n"));
            let mut netmask = None;
            for (k, v) in r.opts {
                let bad = |m: String| err(r.line, format!("{name}: {k}: {m}"));
                match k.as_str() {
                    "address" => {
                        if v.contains('/') {
                            iface.cidr = Some(
                                v.parse()
                                    .map_err(|_| bad(format!("'{v}' is not an IPv4 CIDR")))?,
                            );
                        } else {
                            let a: Ipv4Addr = v
                                .parse()
                                .map_err(|_| bad(format!("'{v}' is not an IPv4 address")))?;
                            iface.cidr = Some(Ipv4Net::new(a, 32).map_err(|e| bad(e.to_string()))?);
                        }
                    }
                    "netmask" => {
                        let prefix = match v.parse::<u8>() {
                            Ok(p) if p <= 32 => p,
                            _ => {
                                let m: Ipv4Addr = v
                                    .parse()
                                    .map_err(|_| bad(format!("'{v}' is not a netmask")))?;
                                ipnet::ipv4_mask_to_prefix(m)
                                    .map_err(|_| bad(format!("'{v}' is not a netmask")))?
                            }
                        };
                        netmask = Some(prefix);
                    }
                    "gateway" => {
                        iface.gateway = Some(
                            v.parse()
                                .map_err(|_| bad(format!("'{v}' is not an IPv4 address")))?,
                        )
                    }
                    "mtu" => iface.mtu = Some(parse_mtu(&v).map_err(bad)?),
                    "bridge-ports" | "bridge_ports" => {
                        ports = Some(if v == "none" {
                            Vec::new()
                        } else {
                            v.split_whitespace()
                                .map(IfaceName::parse)
                                .collect::<Result<_, _>>()
                                .map_err(bad)?
                        })
                    }
                    "bridge-vlan-aware" | "bridge_vlan_aware" => {
                        vlan_aware = v == "yes" || v == "1"
                    }
                    "bridge-vids" | "bridge_vids" => {
                        vids = VlanRange::parse_list(&v, &[' ', ',']).map_err(bad)?
                    }
                    "vlan-raw-device" | "vlan_raw_device" => {
                        raw_device = Some(IfaceName::parse(&v).map_err(bad)?)
                    }
                    "vlan-id" => vlan_id = Some(VlanId::parse(&v).map_err(bad)?),
                    _ => iface.options.push((k, v)),
                }
            }
            if let (Some(c), Some(p)) = (iface.cidr, netmask) {
                iface.cidr =
                    Some(Ipv4Net::new(c.addr(), p).map_err(|e| err(r.line, e.to_string()))?);
            }
            iface.kind = if iface.method == Method::Loopback || name.as_str() == "lo" {
                IfaceKind::Loopback
            } else if ports.is_some() || name.as_str().starts_with("vmbr") {
                IfaceKind::Bridge {
                    ports: ports.unwrap_or_default(),
                    vlan_aware,
                    vids,
                }
            } else if let Some(raw_device) = raw_device {
                let id = vlan_id
                    .or_else(|| is_vlan_name(name.as_str()).map(|(_, id)| id))
                    .ok_or_else(|| {
                        err(r.line, format!("{name}: vlan-raw-device without vlan-id"))
                    })?;
                IfaceKind::Vlan { raw_device, id }
            } else if let Some((raw_device, id)) = is_vlan_name(name.as_str()) {
                IfaceKind::Vlan { raw_device, id }
            } else {
                IfaceKind::Eth
            };
            cfg.insert(iface);
        }
        Ok(cfg)
    }

    /// Adds or replaces an interface (a new one goes last).
    pub fn insert(&mut self, iface: Iface) {
        if !self.ifaces.contains_key(&iface.name) {
            self.order.push(iface.name.clone());
        }
        self.ifaces.insert(iface.name.clone(), iface);
    }

    pub fn remove(&mut self, name: &IfaceName) -> Option<Iface> {
        self.order.retain(|n| n != name);
        self.ifaces.remove(name)
    }

    pub fn get(&self, name: &str) -> Option<&Iface> {
        self.ifaces
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, i)| i)
    }

    /// Interfaces in the order written.
    pub fn iter(&self) -> impl Iterator<Item = &Iface> {
        self.order.iter().filter_map(|n| self.ifaces.get(n))
    }

    /// The bridge `port` is a port of, if any.
    pub fn bridge_of(&self, port: &IfaceName) -> Option<&IfaceName> {
        self.iter().find_map(|i| match &i.kind {
            IfaceKind::Bridge { ports, .. } if ports.contains(port) => Some(&i.name),
            _ => None,
        })
    }

    /// Checks what the API refuses as Proxmox VE does: a port on two bridges, two default
    /// gateways, the same address twice, VLANs on interfaces that do not exist.
    pub fn check(&self) -> Result<(), FieldError> {
        let mut ports: BTreeMap<&IfaceName, &IfaceName> = BTreeMap::new();
        let mut gateway: Option<&IfaceName> = None;
        let mut addresses: BTreeMap<Ipv4Addr, &IfaceName> = BTreeMap::new();
        for i in self.iter() {
            if let IfaceKind::Bridge { ports: p, .. } = &i.kind {
                for port in p {
                    if let Some(other) = ports.insert(port, &i.name) {
                        return Err(field_err(
                            "bridge_ports",
                            format!("{port} is already used on interface '{other}'."),
                        ));
                    }
                    if port == &i.name {
                        return Err(field_err(
                            "bridge_ports",
                            format!("{port} is the bridge itself"),
                        ));
                    }
                }
            }
            if let IfaceKind::Vlan { raw_device, .. } = &i.kind {
                if raw_device == &i.name {
                    return Err(field_err(
                        "vlan-raw-device",
                        "a VLAN cannot be its own raw device",
                    ));
                }
            }
            if i.gateway.is_some() {
                if let Some(other) = gateway.replace(&i.name) {
                    return Err(field_err(
                        "gateway",
                        format!("Default gateway already exists on interface '{other}'."),
                    ));
                }
            }
            if let Some(c) = i.cidr {
                if let Some(other) = addresses.insert(c.addr(), &i.name) {
                    return Err(field_err(
                        "cidr",
                        format!("{} already exists on interface '{other}'.", c.addr()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The file text, in the syntax `parse` reads.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for i in self.iter() {
            if i.autostart {
                out.push_str(&format!("auto {}\n", i.name));
            }
            let method = if i.cidr.is_some() && i.method == Method::Manual {
                Method::Static
            } else {
                i.method
            };
            out.push_str(&format!("iface {} inet {}\n", i.name, method.as_str()));
            if let Some(c) = i.cidr {
                out.push_str(&format!("\taddress {c}\n"));
            }
            if let Some(g) = i.gateway {
                out.push_str(&format!("\tgateway {g}\n"));
            }
            match &i.kind {
                IfaceKind::Bridge {
                    ports,
                    vlan_aware,
                    vids,
                } => {
                    let p: Vec<&str> = ports.iter().map(|p| p.as_str()).collect();
                    let p = if p.is_empty() {
                        "none".to_string()
                    } else {
                        p.join(" ")
                    };
                    out.push_str(&format!("\tbridge-ports {p}\n"));
                    if *vlan_aware {
                        out.push_str("\tbridge-vlan-aware yes\n");
                        if !vids.is_empty() {
                            let v: Vec<String> = vids.iter().map(|v| v.to_string()).collect();
                            out.push_str(&format!("\tbridge-vids {}\n", v.join(" ")));
                        }
                    }
                }
                IfaceKind::Vlan { raw_device, id } => {
                    if is_vlan_name(i.name.as_str()) != Some((raw_device.clone(), *id)) {
                        out.push_str(&format!("\tvlan-raw-device {raw_device}\n\tvlan-id {id}\n"));
                    }
                }
                IfaceKind::Eth | IfaceKind::Loopback => {}
            }
            if let Some(m) = i.mtu {
                out.push_str(&format!("\tmtu {m}\n"));
            }
            for (k, v) in &i.options {
                out.push_str(&format!("\t{k} {v}\n"));
            }
            if let Some(c) = &i.comments {
                for l in c.lines() {
                    out.push_str(&format!("#{l}\n"));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// An interface MTU: 1280 to 65520 (Proxmox VE's range).
pub fn parse_mtu(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(m) if (1280..=65520).contains(&m) => Ok(m),
        _ => Err(format!("'{text}' is not an MTU (1280 to 65520)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_round_trip_and_errors_name_the_item() {
        let n = Nic::parse(
            "net0",
            "virtio=bc:24:11:00:00:01,bridge=vmbr0,tag=10,rate=12.5,firewall=1",
        )
        .unwrap();
        assert_eq!(n.model, NicModel::Virtio);
        assert_eq!(n.tag, Some(VlanId(10)));
        assert_eq!(n.rate, Some(12.5));
        assert_eq!(
            n.to_string(),
            "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1,rate=12.5,tag=10"
        );
        let e = Nic::parse("net1", "virtio,bridge=vmbr0,tag=4095").unwrap_err();
        assert_eq!(e.field, "net1");
        assert!(e.message.starts_with("tag: '4095'"), "{e}");
        let e = Nic::parse("net0", "virtio,bridge=bad name").unwrap_err();
        assert!(e.message.starts_with("bridge:"), "{e}");
        assert!(Nic::parse("net0", "virtio,tag=5")
            .unwrap_err()
            .message
            .contains("needs a bridge"));
        assert!(Nic::parse("net0", "foo,bridge=vmbr0").is_err());
        assert!(Nic::parse("net0", "virtio=01:00:00:00:00:01")
            .unwrap_err()
            .message
            .contains("multicast"));
        assert!(Nic::parse("net0", "virtio,bridge=vmbr0,bogus=1")
            .unwrap_err()
            .message
            .contains("bogus"));
        let t = Nic::parse("net0", "e1000,bridge=vmbr1,trunks=10;20-30").unwrap();
        assert_eq!(t.trunks.len(), 2);
        assert_eq!(Nic::tap_name(100, 0), "tap100i0");
    }

    #[test]
    fn interfaces_parse_write_and_check() {
        let text = "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet manual\n\nauto vmbr0\niface vmbr0 inet static\n\taddress 10.0.0.2/24\n\tgateway 10.0.0.1\n\tbridge-ports eth0\n\tbridge-stp off\n\tbridge-fd 0\n#uplink\n\nauto vmbr1\niface vmbr1 inet manual\n\tbridge-ports none\n\tbridge-vlan-aware yes\n\tbridge-vids 2-4094\n\nauto eth0.20\niface eth0.20 inet manual\n\niface guests inet manual\n\tvlan-raw-device vmbr1\n\tvlan-id 30\n";
        let cfg = Interfaces::parse(text).unwrap();
        let br = cfg.get("vmbr0").unwrap();
        assert_eq!(br.cidr.unwrap().to_string(), "10.0.0.2/24");
        assert_eq!(br.comments.as_deref(), Some("uplink"));
        assert!(matches!(&br.kind, IfaceKind::Bridge { ports, .. } if ports.len() == 1));
        assert!(matches!(
            &cfg.get("vmbr1").unwrap().kind,
            IfaceKind::Bridge {
                vlan_aware: true,
                ..
            }
        ));
        assert!(
            matches!(&cfg.get("eth0.20").unwrap().kind, IfaceKind::Vlan { id, .. } if id.get() == 20)
        );
        assert!(
            matches!(&cfg.get("guests").unwrap().kind, IfaceKind::Vlan { id, .. } if id.get() == 30)
        );
        assert!(!cfg.get("guests").unwrap().autostart);
        assert_eq!(Interfaces::parse(&cfg.to_text()).unwrap(), cfg);
        cfg.check().unwrap();

        let mut twice = cfg.clone();
        let mut b2 = Iface::new(
            IfaceName::parse("vmbr2").unwrap(),
            IfaceKind::Bridge {
                ports: vec![IfaceName::parse("eth0").unwrap()],
                vlan_aware: false,
                vids: vec![],
            },
        );
        twice.insert(b2.clone());
        assert_eq!(twice.check().unwrap_err().field, "bridge_ports");
        b2.kind = IfaceKind::Bridge {
            ports: vec![],
            vlan_aware: false,
            vids: vec![],
        };
        b2.gateway = Some("10.0.0.1".parse().unwrap());
        twice.insert(b2);
        assert_eq!(twice.check().unwrap_err().field, "gateway");

        let e =
            Interfaces::parse("iface vmbr0 inet static\n\taddress 10.0.0.300/24\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("address"), "{e}");
        assert!(Interfaces::parse("\taddress 1.2.3.4\n").is_err());
    }

    #[test]
    fn names_and_vlans() {
        assert!(IfaceName::parse("vmbr0").is_ok());
        assert!(IfaceName::parse("0vmbr").is_err());
        assert!(IfaceName::parse("averyveryverylongname").is_err());
        assert!(IfaceName::parse("vm br").is_err());
        assert!(VlanId::parse("0").is_err());
        assert!(VlanId::parse("4094").is_ok());
        assert_eq!(
            VlanRange::parse_list("2 4 100-200", &[' ']).unwrap().len(),
            3
        );
        assert!(VlanRange::parse_list("200-100", &[' ']).is_err());
        assert!(VlanRange::parse_list(" ", &[' ']).is_err());
    }
}
