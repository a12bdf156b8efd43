//! Proxmox VE's SDN configuration: zones (`sdn/zones.cfg`), vnets (`sdn/vnets.cfg`) and
//! subnets (`sdn/subnets.cfg`), section-config files as Proxmox VE writes them. A `simple`
//! zone's vnets are bridges local to each node; a `vxlan` zone joins a vnet's bridges
//! across the zone's peers with a VXLAN tunnel (the vnet's `tag` is the VNI).

use crate::network::FieldError;
use crate::section_config::{self, header_line, property_line, Section, SectionConfigError};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

fn field_err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A zone or vnet id: a letter, then letters and digits, at most 8 (Proxmox VE's
/// `pve-sdn-zone-id` / `pve-sdn-vnet-id`; a vnet id becomes an interface name).
pub fn check_sdn_id(field: &str, id: &str) -> Result<(), FieldError> {
    let ok = (1..=8).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(field_err(
            field,
            format!("'{id}' is not an SDN id (a lowercase letter, then lowercase letters and digits, at most 8)"),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneType {
    Simple,
    Vxlan,
}

impl ZoneType {
    pub fn parse(text: &str) -> Result<ZoneType, String> {
        match text {
            "simple" => Ok(ZoneType::Simple),
            "vxlan" => Ok(ZoneType::Vxlan),
            "vlan" | "qinq" | "evpn" | "faucet" => Err(format!(
                "zones of type '{text}' are not supported (simple, vxlan)"
            )),
            other => Err(format!("unknown zone type '{other}'")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ZoneType::Simple => "simple",
            ZoneType::Vxlan => "vxlan",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: String,
    pub kind: ZoneType,
    /// The vxlan tunnel end points: every node's address (vxlan zones).
    pub peers: Vec<Ipv4Addr>,
    /// MTU of the vnet bridges (vxlan default 1450: 50 bytes of encapsulation).
    pub mtu: Option<u16>,
    /// Nodes the zone exists on; empty: all.
    pub nodes: BTreeSet<String>,
    /// `dnsmasq`: DHCP on the zone's subnets (simple zones).
    pub dhcp: bool,
    pub ipam: Option<String>,
}

impl Zone {
    pub fn effective_mtu(&self) -> u16 {
        self.mtu.unwrap_or(match self.kind {
            ZoneType::Simple => 1500,
            ZoneType::Vxlan => 1450,
        })
    }

    pub fn on_node(&self, node: &str) -> bool {
        self.nodes.is_empty() || self.nodes.contains(node)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vnet {
    pub id: String,
    pub zone: String,
    /// The VXLAN network identifier (vxlan zones), 1 to 16 777 215.
    pub tag: Option<u32>,
    pub alias: Option<String>,
}

/// A DHCP range of a subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub cidr: Ipv4Net,
    pub vnet: String,
    pub gateway: Option<Ipv4Addr>,
    pub snat: bool,
    pub dhcp_ranges: Vec<DhcpRange>,
    pub dhcp_dns_server: Option<Ipv4Addr>,
}

impl Subnet {
    /// Proxmox VE's subnet id: `<zone>-<network>-<prefix>`.
    pub fn id(&self, zone: &str) -> String {
        format!("{zone}-{}-{}", self.cidr.network(), self.cidr.prefix_len())
    }
}

/// The three SDN files together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdnConfig {
    pub zones: BTreeMap<String, Zone>,
    pub vnets: BTreeMap<String, Vnet>,
    /// By subnet id (`zone-10.0.0.0-24`).
    pub subnets: BTreeMap<String, Subnet>,
}

fn prop<'a>(s: &'a Section, key: &str) -> Option<&'a str> {
    s.properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn bad(s: &Section, message: String) -> SectionConfigError {
    section_config::invalid(&s.id, message)
}

impl DhcpRange {
    /// `start-address=10.0.0.100,end-address=10.0.0.200`.
    pub fn parse(text: &str) -> Result<DhcpRange, String> {
        let p = crate::PropertyString::parse(text).map_err(|e| e.to_string())?;
        let addr = |k: &str| -> Result<Ipv4Addr, String> {
            p.get(k, None)
                .ok_or_else(|| format!("'{k}' missing in '{text}'"))?
                .parse()
                .map_err(|_| format!("{k} in '{text}' is not an IPv4 address"))
        };
        let (start, end) = (addr("start-address")?, addr("end-address")?);
        if start > end {
            return Err(format!("'{text}': start-address after end-address"));
        }
        Ok(DhcpRange { start, end })
    }
}

impl std::fmt::Display for DhcpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "start-address={},end-address={}", self.start, self.end)
    }
}

impl SdnConfig {
    /// Parses the three files' texts.
    pub fn parse(zones: &str, vnets: &str, subnets: &str) -> Result<SdnConfig, SectionConfigError> {
        let mut cfg = SdnConfig::default();
        for s in section_config::parse(zones)? {
            let kind = ZoneType::parse(&s.section_type).map_err(|e| bad(&s, e))?;
            let peers = prop(&s, "peers")
                .map(|p| {
                    crate::format::split_list(p)
                        .map(|a| {
                            a.parse().map_err(|_| {
                                bad(&s, format!("peers: '{a}' is not an IPv4 address"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            let mtu = prop(&s, "mtu")
                .map(|m| m.parse().map_err(|_| bad(&s, format!("mtu: '{m}'"))))
                .transpose()?;
            let nodes = prop(&s, "nodes")
                .map(|n| crate::format::split_list(n).map(String::from).collect())
                .unwrap_or_default();
            cfg.zones.insert(
                s.id.clone(),
                Zone {
                    id: s.id.clone(),
                    kind,
                    peers,
                    mtu,
                    nodes,
                    dhcp: prop(&s, "dhcp") == Some("dnsmasq"),
                    ipam: prop(&s, "ipam").map(String::from),
                },
            );
        }
        for s in section_config::parse(vnets)? {
            let zone = prop(&s, "zone")
                .ok_or_else(|| bad(&s, "no zone".into()))?
                .to_string();
            let tag = prop(&s, "tag")
                .map(|t| t.parse().map_err(|_| bad(&s, format!("tag: '{t}'"))))
                .transpose()?;
            cfg.vnets.insert(
                s.id.clone(),
                Vnet {
                    id: s.id.clone(),
                    zone,
                    tag,
                    alias: prop(&s, "alias").map(String::from),
                },
            );
        }
        for s in section_config::parse_with_lists(subnets, &["dhcp-range"])? {
            let (zone_net, prefix) =
                s.id.rsplit_once('-')
                    .ok_or_else(|| bad(&s, "not a subnet id".into()))?;
            let (_, net) = zone_net
                .split_once('-')
                .ok_or_else(|| bad(&s, "not a subnet id".into()))?;
            let cidr: Ipv4Net = format!("{net}/{prefix}")
                .parse()
                .map_err(|_| bad(&s, "not a subnet id".into()))?;
            let gateway = prop(&s, "gateway")
                .map(|g| g.parse().map_err(|_| bad(&s, format!("gateway: '{g}'"))))
                .transpose()?;
            let dhcp_ranges = s
                .properties
                .iter()
                .filter(|(k, _)| k == "dhcp-range")
                .map(|(_, v)| DhcpRange::parse(v).map_err(|e| bad(&s, e)))
                .collect::<Result<_, _>>()?;
            cfg.subnets.insert(
                s.id.clone(),
                Subnet {
                    cidr,
                    vnet: prop(&s, "vnet")
                        .ok_or_else(|| bad(&s, "no vnet".into()))?
                        .to_string(),
                    gateway,
                    snat: prop(&s, "snat") == Some("1"),
                    dhcp_ranges,
                    dhcp_dns_server: prop(&s, "dhcp-dns-server").and_then(|d| d.parse().ok()),
                },
            );
        }
        Ok(cfg)
    }

    pub fn zones_text(&self) -> String {
        let mut out = String::new();
        for z in self.zones.values() {
            out.push_str(&header_line(z.kind.as_str(), &z.id));
            if !z.peers.is_empty() {
                let p: Vec<String> = z.peers.iter().map(|p| p.to_string()).collect();
                out.push_str(&property_line("peers", &p.join(",")));
            }
            if let Some(m) = z.mtu {
                out.push_str(&property_line("mtu", &m.to_string()));
            }
            if !z.nodes.is_empty() {
                let n: Vec<&str> = z.nodes.iter().map(String::as_str).collect();
                out.push_str(&property_line("nodes", &n.join(",")));
            }
            if z.dhcp {
                out.push_str(&property_line("dhcp", "dnsmasq"));
            }
            if let Some(i) = &z.ipam {
                out.push_str(&property_line("ipam", i));
            }
            out.push('\n');
        }
        out
    }

    pub fn vnets_text(&self) -> String {
        let mut out = String::new();
        for v in self.vnets.values() {
            out.push_str(&header_line("vnet", &v.id));
            out.push_str(&property_line("zone", &v.zone));
            if let Some(a) = &v.alias {
                out.push_str(&property_line("alias", a));
            }
            if let Some(t) = v.tag {
                out.push_str(&property_line("tag", &t.to_string()));
            }
            out.push('\n');
        }
        out
    }

    pub fn subnets_text(&self) -> String {
        let mut out = String::new();
        for (id, s) in &self.subnets {
            out.push_str(&header_line("subnet", id));
            out.push_str(&property_line("vnet", &s.vnet));
            for r in &s.dhcp_ranges {
                out.push_str(&property_line("dhcp-range", &r.to_string()));
            }
            if let Some(d) = s.dhcp_dns_server {
                out.push_str(&property_line("dhcp-dns-server", &d.to_string()));
            }
            if let Some(g) = s.gateway {
                out.push_str(&property_line("gateway", &g.to_string()));
            }
            if s.snat {
                out.push_str(&property_line("snat", "1"));
            }
            out.push('\n');
        }
        out
    }

    /// The subnets of `vnet`.
    pub fn subnets_of<'a>(
        &'a self,
        vnet: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Subnet)> {
        self.subnets.iter().filter(move |(_, s)| s.vnet == vnet)
    }

    /// Checks what the API refuses: a vnet in a zone that does not exist, a vxlan vnet
    /// without a tag or with a tag another vnet uses, a subnet on a vnet that does not
    /// exist, overlapping subnets in one zone, a gateway or DHCP range outside its subnet.
    pub fn check(&self) -> Result<(), FieldError> {
        for z in self.zones.values() {
            if z.kind == ZoneType::Vxlan && z.peers.is_empty() {
                return Err(field_err(
                    "peers",
                    format!("zone '{}': a vxlan zone needs its peers' addresses", z.id),
                ));
            }
            if z.dhcp && z.kind != ZoneType::Simple {
                return Err(field_err(
                    "dhcp",
                    format!("zone '{}': DHCP is served in simple zones only", z.id),
                ));
            }
            if let Some(m) = z.mtu {
                if !(576..=65520).contains(&m) {
                    return Err(field_err(
                        "mtu",
                        format!("'{m}' is not an MTU (576 to 65520)"),
                    ));
                }
            }
        }
        let mut tags: BTreeMap<u32, &str> = BTreeMap::new();
        for v in self.vnets.values() {
            let zone = self
                .zones
                .get(&v.zone)
                .ok_or_else(|| field_err("zone", format!("zone '{}' does not exist", v.zone)))?;
            match (zone.kind, v.tag) {
                (ZoneType::Vxlan, None) => {
                    return Err(field_err(
                        "tag",
                        format!("vnet '{}': a vxlan zone's vnet needs a tag (its VNI)", v.id),
                    ))
                }
                (ZoneType::Vxlan, Some(t)) if !(1..=16_777_215).contains(&t) => {
                    return Err(field_err(
                        "tag",
                        format!("'{t}' is not a VXLAN id (1 to 16777215)"),
                    ))
                }
                (ZoneType::Vxlan, Some(t)) => {
                    if let Some(other) = tags.insert(t, &v.id) {
                        return Err(field_err(
                            "tag",
                            format!("tag {t} is already used by vnet '{other}'"),
                        ));
                    }
                }
                (ZoneType::Simple, Some(_)) => {
                    return Err(field_err("tag", "a simple zone's vnet has no tag"))
                }
                (ZoneType::Simple, None) => {}
            }
        }
        let subnets: Vec<(&String, &Subnet)> = self.subnets.iter().collect();
        for (i, (id, s)) in subnets.iter().enumerate() {
            let vnet = self
                .vnets
                .get(&s.vnet)
                .ok_or_else(|| field_err("vnet", format!("vnet '{}' does not exist", s.vnet)))?;
            if let Some(g) = s.gateway {
                if !s.cidr.contains(&g) || g == s.cidr.network() || g == s.cidr.broadcast() {
                    return Err(field_err(
                        "gateway",
                        format!("{g} is not a host address of {}", s.cidr),
                    ));
                }
            }
            for r in &s.dhcp_ranges {
                if !s.cidr.contains(&r.start) || !s.cidr.contains(&r.end) {
                    return Err(field_err(
                        "dhcp-range",
                        format!("{r} is not inside {}", s.cidr),
                    ));
                }
            }
            for (other_id, o) in &subnets[i + 1..] {
                let same_zone = self.vnets.get(&o.vnet).map(|v| &v.zone) == Some(&vnet.zone);
                if same_zone
                    && (s.cidr.contains(&o.cidr.network()) || o.cidr.contains(&s.cidr.network()))
                {
                    return Err(field_err(
                        "subnet",
                        format!(
                            "{} overlaps {} (subnets '{id}' and '{other_id}')",
                            s.cidr, o.cidr
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONES: &str = "simple: local1\n\tdhcp dnsmasq\n\tipam pve\n\nvxlan: over\n\tpeers 10.0.0.1,10.0.0.2\n\tmtu 1450\n\n";
    const VNETS: &str = "vnet: v1\n\tzone over\n\ttag 100\n\nvnet: s1\n\tzone local1\n\n";
    const SUBNETS: &str = "subnet: local1-10.5.0.0-24\n\tvnet s1\n\tdhcp-range start-address=10.5.0.100,end-address=10.5.0.200\n\tgateway 10.5.0.1\n\n";

    #[test]
    fn parse_write_and_check() {
        let cfg = SdnConfig::parse(ZONES, VNETS, SUBNETS).unwrap();
        assert_eq!(cfg.zones["over"].peers.len(), 2);
        assert_eq!(cfg.vnets["v1"].tag, Some(100));
        let s = &cfg.subnets["local1-10.5.0.0-24"];
        assert_eq!(s.cidr.to_string(), "10.5.0.0/24");
        assert_eq!(s.dhcp_ranges.len(), 1);
        assert_eq!(s.id("local1"), "local1-10.5.0.0-24");
        cfg.check().unwrap();
        let again =
            SdnConfig::parse(&cfg.zones_text(), &cfg.vnets_text(), &cfg.subnets_text()).unwrap();
        assert_eq!(again, cfg);

        let mut bad = cfg.clone();
        bad.vnets.get_mut("s1").unwrap().zone = "nosuch".into();
        assert_eq!(bad.check().unwrap_err().field, "zone");
        let mut bad = cfg.clone();
        bad.subnets.insert(
            "local1-10.5.0.128-25".into(),
            Subnet {
                cidr: "10.5.0.128/25".parse().unwrap(),
                vnet: "s1".into(),
                gateway: None,
                snat: false,
                dhcp_ranges: vec![],
                dhcp_dns_server: None,
            },
        );
        assert_eq!(bad.check().unwrap_err().field, "subnet");
        let mut bad = cfg.clone();
        bad.vnets.get_mut("v1").unwrap().tag = None;
        assert_eq!(bad.check().unwrap_err().field, "tag");
        let mut bad = cfg;
        bad.subnets.get_mut("local1-10.5.0.0-24").unwrap().gateway =
            Some("10.6.0.1".parse().unwrap());
        assert_eq!(bad.check().unwrap_err().field, "gateway");
        assert!(check_sdn_id("vnet", "Vnet1").is_err());
        assert!(check_sdn_id("vnet", "averylongname").is_err());
        assert!(ZoneType::parse("evpn")
            .unwrap_err()
            .contains("not supported"));
    }
}
