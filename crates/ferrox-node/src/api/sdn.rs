//! `/cluster/sdn`: software-defined networks as Proxmox VE's pve-network offers them:
//! zones (`simple`, `vxlan`), vnets and their subnets (gateway, DHCP ranges). Changes are
//! pending until `PUT /cluster/sdn` makes them the running configuration that every node
//! applies. Each object's row carries `state: new|changed` while it differs from the
//! running configuration.

use super::*;
use crate::Node;
use ferrox_api::schema::{BOOL, STRING};
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::{ConfigMap, Named};
use ferrox_types::sdn::{check_sdn_id, DhcpRange, SdnConfig, Subnet, Vnet, Zone, ZoneType};
use serde_json::json;

fn index(_: &C<'_>) -> Result<Vec<Named>, ApiError> {
    Ok(["vnets", "zones"]
        .iter()
        .map(|n| Named {
            name: n.to_string(),
        })
        .collect())
}

fn field(e: ferrox_types::network::FieldError) -> ApiError {
    ApiError::param(&e.field, e.message)
}

fn zone_row(z: &Zone) -> ConfigMap {
    let mut row = ConfigMap::new();
    row.insert("zone".into(), json!(z.id));
    row.insert("type".into(), json!(z.kind.as_str()));
    if !z.peers.is_empty() {
        let p: Vec<String> = z.peers.iter().map(|p| p.to_string()).collect();
        row.insert("peers".into(), json!(p.join(",")));
    }
    if let Some(m) = z.mtu {
        row.insert("mtu".into(), json!(m));
    }
    if !z.nodes.is_empty() {
        let n: Vec<&str> = z.nodes.iter().map(String::as_str).collect();
        row.insert("nodes".into(), json!(n.join(",")));
    }
    if z.dhcp {
        row.insert("dhcp".into(), json!("dnsmasq"));
    }
    if let Some(i) = &z.ipam {
        row.insert("ipam".into(), json!(i));
    }
    row
}

fn vnet_row(v: &Vnet) -> ConfigMap {
    let mut row = ConfigMap::new();
    row.insert("vnet".into(), json!(v.id));
    row.insert("type".into(), json!("vnet"));
    row.insert("zone".into(), json!(v.zone));
    if let Some(t) = v.tag {
        row.insert("tag".into(), json!(t));
    }
    if let Some(a) = &v.alias {
        row.insert("alias".into(), json!(a));
    }
    row
}

fn subnet_row(id: &str, s: &Subnet, zone: &str) -> ConfigMap {
    let mut row = ConfigMap::new();
    row.insert("subnet".into(), json!(id));
    row.insert("id".into(), json!(id));
    row.insert("type".into(), json!("subnet"));
    row.insert("cidr".into(), json!(s.cidr.to_string()));
    row.insert("network".into(), json!(s.cidr.network().to_string()));
    row.insert("mask".into(), json!(s.cidr.prefix_len()));
    row.insert("vnet".into(), json!(s.vnet));
    row.insert("zone".into(), json!(zone));
    if let Some(g) = s.gateway {
        row.insert("gateway".into(), json!(g.to_string()));
    }
    if s.snat {
        row.insert("snat".into(), json!(1));
    }
    if !s.dhcp_ranges.is_empty() {
        let r: Vec<String> = s.dhcp_ranges.iter().map(|r| r.to_string()).collect();
        row.insert("dhcp-range".into(), json!(r));
    }
    if let Some(d) = s.dhcp_dns_server {
        row.insert("dhcp-dns-server".into(), json!(d.to_string()));
    }
    row
}

/// The settings a request's `delete` names.
fn deletes<'a>(ctx: &'a C<'_>) -> impl Iterator<Item = &'a str> {
    ctx.params
        .str(&param::DELETE)
        .into_iter()
        .flat_map(ferrox_types::format::split_list)
}

/// `state: new|changed` while an object differs from the running configuration.
fn mark(mut row: ConfigMap, running: Option<ConfigMap>) -> ConfigMap {
    match running {
        None => {
            row.insert("state".into(), json!("new"));
        }
        Some(r) if r != row => {
            row.insert("state".into(), json!("changed"));
        }
        Some(_) => {}
    }
    row
}

fn zone_allowed(ctx: &C<'_>, zone: &str) -> bool {
    ctx.has(
        &format!("/sdn/zones/{zone}"),
        &["SDN.Audit", "SDN.Allocate"],
        true,
    )
}

fn vnet_path(v: &Vnet) -> String {
    format!("/sdn/zones/{}/{}", v.zone, v.id)
}

fn list_zones(ctx: &C<'_>) -> Result<Vec<ConfigMap>, ApiError> {
    let node = ctx.state;
    let (cfg, running) = (node.sdn_config()?, node.sdn_running()?);
    let wanted = ctx.params.str(&param::ZONE_TYPE_FILTER);
    Ok(cfg
        .zones
        .values()
        .filter(|z| wanted.is_none_or(|t| t == z.kind.as_str()))
        .filter(|z| zone_allowed(ctx, &z.id))
        .map(|z| mark(zone_row(z), running.zones.get(&z.id).map(zone_row)))
        .collect())
}

fn get_zone(ctx: &C<'_>) -> Result<ConfigMap, ApiError> {
    let id = ctx.params.need_str(&param::ZONE)?;
    let cfg = ctx.state.sdn_config()?;
    cfg.zones
        .get(id)
        .map(zone_row)
        .ok_or_else(|| param::ZONE.error(format!("sdn zone '{id}' does not exist")))
}

/// The zone settings of a create or update request, applied to `z`.
fn zone_settings(ctx: &C<'_>, z: &mut Zone) -> Result<(), ApiError> {
    for key in deletes(ctx) {
        match key {
            "peers" => z.peers.clear(),
            "mtu" => z.mtu = None,
            "nodes" => z.nodes.clear(),
            "dhcp" => z.dhcp = false,
            "ipam" => z.ipam = None,
            other => return Err(param::DELETE.error(format!("'{other}' cannot be deleted"))),
        }
    }
    if let Some(p) = ctx.params.str(&param::PEERS) {
        z.peers = ferrox_types::format::split_list(p)
            .map(|a| {
                a.parse()
                    .map_err(|_| param::PEERS.error(format!("'{a}' is not an IPv4 address")))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(m) = ctx.params.int(&param::MTU) {
        z.mtu = Some(m as u16);
    }
    if let Some(n) = ctx.params.str(&param::NODES) {
        z.nodes = ferrox_types::format::split_list(n)
            .map(String::from)
            .collect();
    }
    if let Some(d) = ctx.params.str(&param::DHCP) {
        z.dhcp = d == "dnsmasq";
    }
    if let Some(i) = ctx.params.str(&param::IPAM) {
        z.ipam = Some(i.to_string());
    }
    Ok(())
}

fn create_zone(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::ZONE)?;
    check_sdn_id("zone", id).map_err(field)?;
    let kind = ZoneType::parse(ctx.params.need_str(&param::ZONE_TYPE)?)
        .map_err(|e| param::ZONE_TYPE.error(e))?;
    let mut cfg = ctx.state.sdn_config()?;
    if cfg.zones.contains_key(id) || id == "localnetwork" {
        return Err(param::ZONE.error(format!("sdn zone object ID '{id}' already defined")));
    }
    let mut z = Zone {
        id: id.to_string(),
        kind,
        peers: Vec::new(),
        mtu: None,
        nodes: Default::default(),
        dhcp: false,
        ipam: None,
    };
    zone_settings(ctx, &mut z)?;
    cfg.zones.insert(id.to_string(), z);
    ctx.state.save_sdn(&cfg)
}

fn update_zone(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::ZONE)?;
    let mut cfg = ctx.state.sdn_config()?;
    let mut z = cfg
        .zones
        .get(id)
        .cloned()
        .ok_or_else(|| param::ZONE.error(format!("sdn zone '{id}' does not exist")))?;
    zone_settings(ctx, &mut z)?;
    cfg.zones.insert(id.to_string(), z);
    ctx.state.save_sdn(&cfg)
}

fn delete_zone(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::ZONE)?;
    let mut cfg = ctx.state.sdn_config()?;
    if cfg.zones.remove(id).is_none() {
        return Err(param::ZONE.error(format!("sdn zone '{id}' does not exist")));
    }
    if let Some(v) = cfg.vnets.values().find(|v| v.zone == id) {
        return Err(param::ZONE.error(format!(
            "cannot delete zone '{id}': vnet '{}' is in it",
            v.id
        )));
    }
    ctx.state.save_sdn(&cfg)
}

fn list_vnets(ctx: &C<'_>) -> Result<Vec<ConfigMap>, ApiError> {
    let node = ctx.state;
    let (cfg, running) = (node.sdn_config()?, node.sdn_running()?);
    Ok(cfg
        .vnets
        .values()
        .filter(|v| ctx.has(&vnet_path(v), &["SDN.Audit", "SDN.Allocate"], true))
        .map(|v| mark(vnet_row(v), running.vnets.get(&v.id).map(vnet_row)))
        .collect())
}

/// The vnet of the path, after checking the caller's `privs` on it.
fn vnet_checked(ctx: &C<'_>, cfg: &SdnConfig, privs: &[&str]) -> Result<Vnet, ApiError> {
    let id = ctx.params.need_str(&param::VNET)?;
    let v = cfg
        .vnets
        .get(id)
        .cloned()
        .ok_or_else(|| param::VNET.error(format!("sdn vnet '{id}' does not exist")))?;
    ctx.require(&vnet_path(&v), privs, true)?;
    Ok(v)
}

fn get_vnet(ctx: &C<'_>) -> Result<ConfigMap, ApiError> {
    let cfg = ctx.state.sdn_config()?;
    Ok(vnet_row(&vnet_checked(
        ctx,
        &cfg,
        &["SDN.Audit", "SDN.Allocate"],
    )?))
}

fn vnet_settings(ctx: &C<'_>, v: &mut Vnet) -> Result<(), ApiError> {
    for key in deletes(ctx) {
        match key {
            "tag" => v.tag = None,
            "alias" => v.alias = None,
            other => return Err(param::DELETE.error(format!("'{other}' cannot be deleted"))),
        }
    }
    if let Some(t) = ctx.params.int(&param::TAG) {
        v.tag = Some(t as u32);
    }
    if let Some(a) = ctx.params.str(&param::ALIAS) {
        v.alias = Some(a.to_string());
    }
    Ok(())
}

/// `POST /cluster/sdn/vnets`: SDN.Allocate on the zone (the declaration's check).
fn create_vnet(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = ctx.params.need_str(&param::VNET)?;
    check_sdn_id("vnet", id).map_err(field)?;
    let zone = ctx.params.need_str(&param::ZONE)?;
    let mut cfg = ctx.state.sdn_config()?;
    if cfg.vnets.contains_key(id) {
        return Err(param::VNET.error(format!("sdn vnet object ID '{id}' already defined")));
    }
    let (local, _) = ctx.state.network_config_for_edit()?;
    if local.get(id).is_some() {
        return Err(param::VNET.error(format!(
            "'{id}' is an interface of this node's network configuration"
        )));
    }
    let mut v = Vnet {
        id: id.to_string(),
        zone: zone.to_string(),
        tag: None,
        alias: None,
    };
    vnet_settings(ctx, &mut v)?;
    cfg.vnets.insert(id.to_string(), v);
    ctx.state.save_sdn(&cfg)
}

fn update_vnet(ctx: &C<'_>) -> Result<(), ApiError> {
    let mut cfg = ctx.state.sdn_config()?;
    let mut v = vnet_checked(ctx, &cfg, &["SDN.Allocate"])?;
    vnet_settings(ctx, &mut v)?;
    cfg.vnets.insert(v.id.clone(), v);
    ctx.state.save_sdn(&cfg)
}

fn delete_vnet(ctx: &C<'_>) -> Result<(), ApiError> {
    let mut cfg = ctx.state.sdn_config()?;
    let v = vnet_checked(ctx, &cfg, &["SDN.Allocate"])?;
    if let Some((id, _)) = cfg.subnets_of(&v.id).next() {
        return Err(param::VNET.error(format!(
            "cannot delete vnet '{}': subnet '{id}' is in it",
            v.id
        )));
    }
    cfg.vnets.remove(&v.id);
    ctx.state.save_sdn(&cfg)
}

fn list_subnets(ctx: &C<'_>) -> Result<Vec<ConfigMap>, ApiError> {
    let node = ctx.state;
    let (cfg, running) = (node.sdn_config()?, node.sdn_running()?);
    let v = vnet_checked(ctx, &cfg, &["SDN.Audit", "SDN.Allocate"])?;
    Ok(cfg
        .subnets_of(&v.id)
        .map(|(id, s)| {
            mark(
                subnet_row(id, s, &v.zone),
                running.subnets.get(id).map(|r| subnet_row(id, r, &v.zone)),
            )
        })
        .collect())
}

/// The subnet id of the path: Proxmox VE's `zone-10.0.0.0-24`, or the CIDR itself.
fn subnet_id(ctx: &C<'_>, v: &Vnet) -> Result<String, ApiError> {
    let given = ctx.params.need_str(&param::SUBNET)?;
    if let Ok(net) = given.parse::<ipnet::Ipv4Net>() {
        return Ok(format!("{}-{}-{}", v.zone, net.network(), net.prefix_len()));
    }
    Ok(given.to_string())
}

fn get_subnet(ctx: &C<'_>) -> Result<ConfigMap, ApiError> {
    let cfg = ctx.state.sdn_config()?;
    let v = vnet_checked(ctx, &cfg, &["SDN.Audit", "SDN.Allocate"])?;
    let id = subnet_id(ctx, &v)?;
    cfg.subnets
        .get(&id)
        .filter(|s| s.vnet == v.id)
        .map(|s| subnet_row(&id, s, &v.zone))
        .ok_or_else(|| param::SUBNET.error(format!("subnet '{id}' does not exist")))
}

fn subnet_settings(ctx: &C<'_>, s: &mut Subnet) -> Result<(), ApiError> {
    for key in deletes(ctx) {
        match key {
            "gateway" => s.gateway = None,
            "snat" => s.snat = false,
            "dhcp-range" => s.dhcp_ranges.clear(),
            "dhcp-dns-server" => s.dhcp_dns_server = None,
            other => return Err(param::DELETE.error(format!("'{other}' cannot be deleted"))),
        }
    }
    if let Some(g) = ctx.params.str(&param::GATEWAY) {
        s.gateway = Some(
            g.parse()
                .map_err(|_| param::GATEWAY.error(format!("'{g}' is not an IPv4 address")))?,
        );
    }
    if let Some(v) = ctx.params.bool(&param::SNAT) {
        s.snat = v;
    }
    let ranges = ctx.params.list(&param::DHCP_RANGE);
    if !ranges.is_empty() {
        s.dhcp_ranges = ranges
            .iter()
            .map(|r| DhcpRange::parse(r).map_err(|e| param::DHCP_RANGE.error(e)))
            .collect::<Result<_, _>>()?;
    }
    if let Some(d) = ctx.params.str(&param::DHCP_DNS_SERVER) {
        s.dhcp_dns_server =
            Some(d.parse().map_err(|_| {
                param::DHCP_DNS_SERVER.error(format!("'{d}' is not an IPv4 address"))
            })?);
    }
    Ok(())
}

fn create_subnet(ctx: &C<'_>) -> Result<(), ApiError> {
    let mut cfg = ctx.state.sdn_config()?;
    let v = vnet_checked(ctx, &cfg, &["SDN.Allocate"])?;
    let given = ctx.params.need_str(&param::SUBNET)?;
    let cidr: ipnet::Ipv4Net = given
        .parse()
        .map_err(|_| param::SUBNET.error(format!("'{given}' is not an IPv4 CIDR")))?;
    let cidr = ipnet::Ipv4Net::new(cidr.network(), cidr.prefix_len())
        .map_err(|e| param::SUBNET.error(e.to_string()))?;
    let mut s = Subnet {
        cidr,
        vnet: v.id.clone(),
        gateway: None,
        snat: false,
        dhcp_ranges: Vec::new(),
        dhcp_dns_server: None,
    };
    let id = s.id(&v.zone);
    if cfg.subnets.contains_key(&id) {
        return Err(param::SUBNET.error(format!("subnet '{id}' already defined")));
    }
    subnet_settings(ctx, &mut s)?;
    cfg.subnets.insert(id, s);
    ctx.state.save_sdn(&cfg)
}

fn update_subnet(ctx: &C<'_>) -> Result<(), ApiError> {
    let mut cfg = ctx.state.sdn_config()?;
    let v = vnet_checked(ctx, &cfg, &["SDN.Allocate"])?;
    let id = subnet_id(ctx, &v)?;
    let mut s = cfg
        .subnets
        .get(&id)
        .filter(|s| s.vnet == v.id)
        .cloned()
        .ok_or_else(|| param::SUBNET.error(format!("subnet '{id}' does not exist")))?;
    subnet_settings(ctx, &mut s)?;
    cfg.subnets.insert(id, s);
    ctx.state.save_sdn(&cfg)
}

fn delete_subnet(ctx: &C<'_>) -> Result<(), ApiError> {
    let mut cfg = ctx.state.sdn_config()?;
    let v = vnet_checked(ctx, &cfg, &["SDN.Allocate"])?;
    let id = subnet_id(ctx, &v)?;
    if cfg.subnets.get(&id).is_none_or(|s| s.vnet != v.id) {
        return Err(param::SUBNET.error(format!("subnet '{id}' does not exist")));
    }
    cfg.subnets.remove(&id);
    ctx.state.save_sdn(&cfg)
}

/// `PUT /cluster/sdn`: the pending configuration becomes the running one on every node.
fn reload(ctx: &C<'_>) -> Result<ferrox_api_types::Upid, ApiError> {
    ctx.state.sdn_config()?.check().map_err(field)?;
    let worker = std::sync::Arc::clone(ctx.state);
    let upid = ctx
        .state
        .tasks
        .spawn("reloadnetworkall", "", &auth_id(ctx)?, move |log| {
            Ok(worker.apply_sdn(log)?)
        })?;
    Ok(ferrox_api_types::Upid(upid))
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const ZONE: Param = Param::required("zone", STRING, "The SDN zone object identifier.");
    pub const ZONE_TYPE: Param = Param::required(
        "type",
        ParamType::Enum(&["evpn", "faucet", "qinq", "simple", "vlan", "vxlan"]),
        "Plugin type (simple and vxlan are supported).",
    );
    pub const ZONE_TYPE_FILTER: Param = Param::optional(
        "type",
        ParamType::Enum(&["evpn", "faucet", "qinq", "simple", "vlan", "vxlan"]),
        "Only list SDN zones of specific type",
    );
    pub const PEERS: Param = Param::optional(
        "peers",
        STRING,
        "Peers address list (vxlan: every node's address).",
    );
    pub const MTU: Param = Param::optional(
        "mtu",
        ParamType::Integer {
            min: Some(576),
            max: Some(65520),
        },
        "MTU of the zone, used for the created VNet bridges.",
    );
    pub const NODES: Param =
        Param::optional("nodes", STRING, "Nodes where this zone should be created.");
    pub const DHCP: Param = Param::optional(
        "dhcp",
        ParamType::Enum(&["dnsmasq"]),
        "Name of DHCP server backend for this zone.",
    );
    pub const IPAM: Param = Param::optional("ipam", STRING, "ID of the IPAM for this zone.");
    pub const VNET: Param = Param::required("vnet", STRING, "The SDN vnet object identifier.");
    pub const TAG: Param = Param::optional(
        "tag",
        ParamType::Integer {
            min: Some(1),
            max: Some(16_777_215),
        },
        "VLAN tag or VXLAN id.",
    );
    pub const ALIAS: Param = Param::optional("alias", STRING, "Alias name of the VNet.");
    pub const SUBNET: Param = Param::required("subnet", STRING, "The SDN subnet (CIDR or id).");
    pub const SUBNET_TYPE: Param =
        Param::optional("type", ParamType::Enum(&["subnet"]), "Subnet type.");
    pub const GATEWAY: Param = Param::optional("gateway", STRING, "Subnet Gateway.");
    pub const SNAT: Param = Param::optional("snat", BOOL, "Enable Source NAT (stored only).");
    pub const DHCP_RANGE: Param = Param::optional(
        "dhcp-range",
        ParamType::List(&STRING),
        "A list of DHCP ranges (start-address=..,end-address=..).",
    );
    pub const DHCP_DNS_SERVER: Param =
        Param::optional("dhcp-dns-server", STRING, "IP address for the DNS server.");
    pub const DELETE: Param = Param::optional("delete", STRING, "Settings to delete.");
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let filtered =
        || Permission::Handler("any user; only entries with SDN.Audit or SDN.Allocate on them");
    let on_vnet = |what: &'static str| Permission::Handler(what);
    let zone_settings = || {
        vec![
            param::PEERS,
            param::MTU,
            param::NODES,
            param::DHCP,
            param::IPAM,
        ]
    };
    let subnet_settings = || {
        vec![
            param::GATEWAY,
            param::SNAT,
            param::DHCP_RANGE,
            param::DHCP_DNS_SERVER,
        ]
    };
    vec![
        Endpoint::new(
            Get,
            "/cluster/sdn",
            "SDN index.",
            Permission::Privs {
                path: "/sdn",
                privs: &["SDN.Audit"],
                any: false,
            },
            index,
        ),
        Endpoint::new(
            Put,
            "/cluster/sdn",
            "Apply the pending SDN configuration on every node (task reloadnetworkall).",
            Permission::Privs {
                path: "/sdn",
                privs: &["SDN.Allocate"],
                any: false,
            },
            reload,
        ),
        Endpoint::new(
            Get,
            "/cluster/sdn/zones",
            "SDN zones.",
            filtered(),
            list_zones,
        )
        .params(vec![param::ZONE_TYPE_FILTER]),
        Endpoint::new(
            Post,
            "/cluster/sdn/zones",
            "Create an SDN zone (pending until applied).",
            Permission::Privs {
                path: "/sdn/zones",
                privs: &["SDN.Allocate"],
                any: false,
            },
            create_zone,
        )
        .params([vec![param::ZONE, param::ZONE_TYPE], zone_settings()].concat()),
        Endpoint::new(
            Get,
            "/cluster/sdn/zones/{zone}",
            "Read an SDN zone.",
            Permission::Privs {
                path: "/sdn/zones/{zone}",
                privs: &["SDN.Allocate"],
                any: false,
            },
            get_zone,
        )
        .params(vec![param::ZONE]),
        Endpoint::new(
            Put,
            "/cluster/sdn/zones/{zone}",
            "Update an SDN zone (pending until applied).",
            Permission::Privs {
                path: "/sdn/zones/{zone}",
                privs: &["SDN.Allocate"],
                any: false,
            },
            update_zone,
        )
        .params([vec![param::ZONE, param::DELETE], zone_settings()].concat()),
        Endpoint::new(
            Delete,
            "/cluster/sdn/zones/{zone}",
            "Delete an SDN zone (pending until applied).",
            Permission::Privs {
                path: "/sdn/zones/{zone}",
                privs: &["SDN.Allocate"],
                any: false,
            },
            delete_zone,
        )
        .params(vec![param::ZONE]),
        Endpoint::new(
            Get,
            "/cluster/sdn/vnets",
            "SDN VNets.",
            filtered(),
            list_vnets,
        ),
        Endpoint::new(
            Post,
            "/cluster/sdn/vnets",
            "Create an SDN vnet (pending until applied).",
            Permission::Privs {
                path: "/sdn/zones/{zone}",
                privs: &["SDN.Allocate"],
                any: false,
            },
            create_vnet,
        )
        .params(vec![param::VNET, param::ZONE, param::TAG, param::ALIAS]),
        Endpoint::new(
            Get,
            "/cluster/sdn/vnets/{vnet}",
            "Read an SDN vnet.",
            on_vnet("SDN.Audit or SDN.Allocate on /sdn/zones/<zone>/<vnet>"),
            get_vnet,
        )
        .params(vec![param::VNET]),
        Endpoint::new(
            Put,
            "/cluster/sdn/vnets/{vnet}",
            "Update an SDN vnet (pending until applied).",
            on_vnet("SDN.Allocate on /sdn/zones/<zone>/<vnet>"),
            update_vnet,
        )
        .params(vec![param::VNET, param::TAG, param::ALIAS, param::DELETE]),
        Endpoint::new(
            Delete,
            "/cluster/sdn/vnets/{vnet}",
            "Delete an SDN vnet (pending until applied).",
            on_vnet("SDN.Allocate on /sdn/zones/<zone>/<vnet>"),
            delete_vnet,
        )
        .params(vec![param::VNET]),
        Endpoint::new(
            Get,
            "/cluster/sdn/vnets/{vnet}/subnets",
            "The subnets of an SDN vnet.",
            on_vnet("SDN.Audit or SDN.Allocate on /sdn/zones/<zone>/<vnet>"),
            list_subnets,
        )
        .params(vec![param::VNET]),
        Endpoint::new(
            Post,
            "/cluster/sdn/vnets/{vnet}/subnets",
            "Create a subnet (pending until applied).",
            on_vnet("SDN.Allocate on /sdn/zones/<zone>/<vnet>"),
            create_subnet,
        )
        .params(
            [
                vec![param::VNET, param::SUBNET, param::SUBNET_TYPE],
                subnet_settings(),
            ]
            .concat(),
        ),
        Endpoint::new(
            Get,
            "/cluster/sdn/vnets/{vnet}/subnets/{subnet}",
            "Read a subnet.",
            on_vnet("SDN.Audit or SDN.Allocate on /sdn/zones/<zone>/<vnet>"),
            get_subnet,
        )
        .params(vec![param::VNET, param::SUBNET]),
        Endpoint::new(
            Put,
            "/cluster/sdn/vnets/{vnet}/subnets/{subnet}",
            "Update a subnet (pending until applied).",
            on_vnet("SDN.Allocate on /sdn/zones/<zone>/<vnet>"),
            update_subnet,
        )
        .params(
            [
                vec![param::VNET, param::SUBNET, param::DELETE],
                subnet_settings(),
            ]
            .concat(),
        ),
        Endpoint::new(
            Delete,
            "/cluster/sdn/vnets/{vnet}/subnets/{subnet}",
            "Delete a subnet (pending until applied).",
            on_vnet("SDN.Allocate on /sdn/zones/<zone>/<vnet>"),
            delete_subnet,
        )
        .params(vec![param::VNET, param::SUBNET]),
    ]
}
