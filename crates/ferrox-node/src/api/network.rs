//! `/nodes/{node}/network`: the node's interfaces (bridges, VLAN interfaces, ports) as
//! Proxmox VE's network API shows and edits them. Changes go to the pending
//! configuration; `PUT /nodes/{node}/network` applies them (a `srvreload` task), `DELETE`
//! drops them.

use super::*;
use crate::host::network as host;
use crate::Node;
use ferrox_api::core::local_node;
use ferrox_api::schema::{BOOL, STRING, TEXT};
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::nodes::NetworkInterface;
use ferrox_types::network::{
    parse_mtu, Iface, IfaceKind, IfaceName, Interfaces, Method as AddrMethod, VlanId, VlanRange,
};

/// A row of the listing: the configured interface with what the kernel says about it.
fn row(i: &Iface, link: Option<&host::Link>, user_mode: bool) -> NetworkInterface {
    let mut r = NetworkInterface {
        iface: i.name.to_string(),
        kind: i.kind.type_name().to_string(),
        active: Some(u8::from(link.is_some_and(|l| l.up) && !user_mode)),
        exists: Some(u8::from(link.is_some())),
        autostart: Some(u8::from(i.autostart)),
        families: vec!["inet".into()],
        method: Some(
            if i.cidr.is_some() {
                "static"
            } else {
                i.method.as_str()
            }
            .into(),
        ),
        mtu: i.mtu.map(u32::from).or(link.map(|l| l.mtu)),
        comments: i.comments.clone(),
        ..NetworkInterface::default()
    };
    if let Some(c) = i.cidr {
        r.cidr = Some(c.to_string());
        r.address = Some(c.addr().to_string());
        r.netmask = Some(c.prefix_len().to_string());
    }
    r.gateway = i.gateway.map(|g| g.to_string());
    match &i.kind {
        IfaceKind::Bridge {
            ports,
            vlan_aware,
            vids,
        } => {
            let p: Vec<&str> = ports.iter().map(|p| p.as_str()).collect();
            r.bridge_ports = Some(p.join(" "));
            r.bridge_vlan_aware = vlan_aware.then_some(1);
            if *vlan_aware && !vids.is_empty() {
                let v: Vec<String> = vids.iter().map(|v| v.to_string()).collect();
                r.bridge_vids = Some(v.join(" "));
            }
            if user_mode {
                r.net_mode = Some("user".into());
            }
        }
        IfaceKind::Vlan { raw_device, id } => {
            r.vlan_raw_device = Some(raw_device.to_string());
            r.vlan_id = Some(id.get());
        }
        IfaceKind::Eth | IfaceKind::Loopback => {}
    }
    r
}

/// `GET /nodes/{node}/network`: the configuration (pending changes included, as Proxmox
/// VE reads `interfaces.new`), and the host's ports that are not configured. Bridges only
/// for those with SDN.Audit or SDN.Use on them in the `localnetwork` zone.
fn list(ctx: &C<'_>) -> Result<Vec<NetworkInterface>, ApiError> {
    local_node(ctx)?;
    let node = ctx.state;
    let (cfg, _) = node.network_config_for_edit()?;
    let links = host::links().unwrap_or_default();
    let user_mode = node.opts.net_mode == crate::NetMode::User;
    let mut rows: Vec<NetworkInterface> = cfg
        .iter()
        .filter(|i| !matches!(i.kind, IfaceKind::Loopback))
        .map(|i| {
            let link = links.iter().find(|l| l.name == i.name.as_str());
            row(i, link, user_mode)
        })
        .collect();
    for l in links.iter().filter(|l| l.is_port()) {
        if cfg.get(&l.name).is_none() {
            let Ok(name) = IfaceName::parse(&l.name) else {
                continue;
            };
            let mut r = row(&Iface::new(name, IfaceKind::Eth), Some(l), false);
            r.autostart = Some(0);
            if let Some((ip, prefix)) = l.addresses.iter().find(|(a, _)| a.is_ipv4()) {
                r.address = Some(ip.to_string());
                r.cidr = Some(format!("{ip}/{prefix}"));
                r.netmask = Some(prefix.to_string());
                r.method = Some("static".into());
            }
            rows.push(r);
        }
    }
    let wanted = ctx.params.str(&param::TYPE);
    rows.retain(|r| match wanted {
        None | Some("include_sdn") => true,
        Some("any_bridge") | Some("any_local_bridge") => r.kind == "bridge",
        Some(kind) => r.kind == kind,
    });
    // SDN vnets of this node join the list as Proxmox VE adds them (type `vnet`), for
    // those with SDN.Audit or SDN.Use on them.
    if matches!(wanted, Some("any_bridge" | "include_sdn" | "vnet")) {
        let running = node.sdn_running()?;
        for v in running.vnets.values() {
            let on_node = running
                .zones
                .get(&v.zone)
                .is_some_and(|z| z.on_node(&node.opts.node_name));
            let path = format!("/sdn/zones/{}/{}", v.zone, v.id);
            if !on_node || !ctx.has(&path, &["SDN.Audit", "SDN.Use"], true) {
                continue;
            }
            let link = links.iter().find(|l| l.name == v.id);
            rows.push(NetworkInterface {
                iface: v.id.clone(),
                kind: "vnet".into(),
                active: Some(u8::from(link.is_some_and(|l| l.up))),
                exists: Some(u8::from(link.is_some())),
                comments: v.alias.clone(),
                ..NetworkInterface::default()
            });
        }
    }
    let root = crate::guests::perm::is_root(ctx);
    rows.retain(|r| {
        r.kind != "bridge"
            || root
            || ctx.has(
                &format!("/sdn/zones/localnetwork/{}", r.iface),
                &["SDN.Audit", "SDN.Use"],
                true,
            )
    });
    rows.sort_by(|a, b| a.iface.cmp(&b.iface));
    Ok(rows)
}

fn iface_param(ctx: &C<'_>) -> Result<IfaceName, ApiError> {
    let text = ctx.params.need_str(&param::IFACE)?;
    IfaceName::parse(text).map_err(|e| param::IFACE.error(e))
}

/// `GET /nodes/{node}/network/{iface}`.
fn read(ctx: &C<'_>) -> Result<NetworkInterface, ApiError> {
    local_node(ctx)?;
    let name = iface_param(ctx)?;
    let (cfg, _) = ctx.state.network_config_for_edit()?;
    let i = cfg
        .get(name.as_str())
        .ok_or_else(|| param::IFACE.error("interface does not exist"))?;
    let links = host::links().unwrap_or_default();
    let user_mode = ctx.state.opts.net_mode == crate::NetMode::User;
    Ok(row(
        i,
        links.iter().find(|l| l.name == name.as_str()),
        user_mode,
    ))
}

/// Applies the request's settings to `iface` (a new one or a copy of the configured one);
/// `delete` names settings to remove. Every value is parsed here, errors name the
/// parameter.
fn apply_params(ctx: &C<'_>, iface: &mut Iface, cfg: &Interfaces) -> Result<(), ApiError> {
    let p = &ctx.params;
    for key in p.list(&param::DELETE) {
        for key in key.split(',').filter(|k| !k.is_empty()) {
            match key {
                "cidr" | "address" | "netmask" => iface.cidr = None,
                "gateway" => iface.gateway = None,
                "mtu" => iface.mtu = None,
                "comments" => iface.comments = None,
                "bridge_ports" => {
                    if let IfaceKind::Bridge { ports, .. } = &mut iface.kind {
                        ports.clear();
                    }
                }
                "bridge_vids" => {
                    if let IfaceKind::Bridge { vids, .. } = &mut iface.kind {
                        vids.clear();
                    }
                }
                other => {
                    return Err(param::DELETE.error(format!("'{other}' cannot be deleted")));
                }
            }
        }
    }
    if let Some(a) = p.bool(&param::AUTOSTART) {
        iface.autostart = a;
    }
    if let Some(c) = p.str(&param::COMMENTS) {
        iface.comments = (!c.is_empty()).then(|| c.to_string());
    }
    if let Some(m) = p.str(&param::MTU) {
        iface.mtu = Some(parse_mtu(m).map_err(|e| param::MTU.error(e))?);
    }
    let address = p.str(&param::ADDRESS);
    let netmask = p.str(&param::NETMASK);
    match (p.str(&param::CIDR), address, netmask) {
        (Some(c), _, _) => {
            let net: ipnet::Ipv4Net = c
                .parse()
                .map_err(|_| param::CIDR.error(format!("'{c}' is not an IPv4 CIDR")))?;
            if address.is_some_and(|a| a != net.addr().to_string()) {
                return Err(param::ADDRESS.error("address conflicts with cidr"));
            }
            iface.cidr = Some(net);
        }
        (None, Some(a), Some(m)) => {
            let text = format!("{a}/{m}");
            let prefix = match m.parse::<u8>() {
                Ok(p) => Some(p),
                Err(_) => m
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
                    .and_then(|m| ipnet::ipv4_mask_to_prefix(m).ok()),
            };
            let addr: std::net::Ipv4Addr = a
                .parse()
                .map_err(|_| param::ADDRESS.error(format!("'{a}' is not an IPv4 address")))?;
            iface.cidr = Some(
                prefix
                    .and_then(|p| ipnet::Ipv4Net::new(addr, p).ok())
                    .ok_or_else(|| {
                        param::NETMASK.error(format!("'{text}' has no valid netmask"))
                    })?,
            );
        }
        (None, Some(_), None) => return Err(param::NETMASK.error("needs 'address' and 'netmask'")),
        (None, None, Some(_)) => return Err(param::ADDRESS.error("needs 'address' and 'netmask'")),
        (None, None, None) => {}
    }
    if iface.cidr.is_some() {
        iface.method = AddrMethod::Static;
    }
    if let Some(g) = p.str(&param::GATEWAY) {
        let gw: std::net::Ipv4Addr = g
            .parse()
            .map_err(|_| param::GATEWAY.error(format!("'{g}' is not an IPv4 address")))?;
        if iface.cidr.is_none_or(|c| !c.contains(&gw)) {
            return Err(param::GATEWAY.error(format!(
                "gateway {gw} is not in the interface's network (set cidr first)"
            )));
        }
        iface.gateway = Some(gw);
    }
    match &mut iface.kind {
        IfaceKind::Bridge {
            ports,
            vlan_aware,
            vids,
        } => {
            if let Some(list) = p.str(&param::BRIDGE_PORTS) {
                *ports = list
                    .split([' ', ',', ';'])
                    .filter(|s| !s.is_empty())
                    .map(|s| IfaceName::parse(s).map_err(|e| param::BRIDGE_PORTS.error(e)))
                    .collect::<Result<_, _>>()?;
                for port in ports.iter() {
                    if cfg
                        .get(port.as_str())
                        .is_some_and(|i| matches!(i.kind, IfaceKind::Bridge { .. }))
                    {
                        return Err(param::BRIDGE_PORTS
                            .error(format!("{port} is a bridge: bridges are not nested")));
                    }
                }
            }
            if let Some(v) = p.bool(&param::BRIDGE_VLAN_AWARE) {
                *vlan_aware = v;
            }
            if let Some(v) = p.str(&param::BRIDGE_VIDS) {
                *vids = VlanRange::parse_list(v, &[' ', ',', ';'])
                    .map_err(|e| param::BRIDGE_VIDS.error(e))?;
            }
        }
        IfaceKind::Vlan { raw_device, id } => {
            if let Some(r) = p.str(&param::VLAN_RAW_DEVICE) {
                *raw_device = IfaceName::parse(r).map_err(|e| param::VLAN_RAW_DEVICE.error(e))?;
            }
            if let Some(v) = p.str(&param::VLAN_ID) {
                *id = VlanId::parse(v).map_err(|e| param::VLAN_ID.error(e))?;
            }
        }
        IfaceKind::Eth | IfaceKind::Loopback => {}
    }
    if p.str(&param::BRIDGE_PORTS).is_some() && !matches!(iface.kind, IfaceKind::Bridge { .. }) {
        return Err(param::BRIDGE_PORTS.error("only a bridge has ports"));
    }
    if p.str(&param::VLAN_ID).is_some() && !matches!(iface.kind, IfaceKind::Vlan { .. }) {
        return Err(param::VLAN_ID.error("only a VLAN interface has a VLAN id"));
    }
    Ok(())
}

/// The kind a new interface of `type` starts as.
fn new_kind(ctx: &C<'_>, name: &IfaceName) -> Result<IfaceKind, ApiError> {
    match ctx.params.need_str(&param::TYPE_REQUIRED)? {
        "bridge" => Ok(IfaceKind::Bridge {
            ports: Vec::new(),
            vlan_aware: false,
            vids: Vec::new(),
        }),
        "vlan" => {
            let named = name
                .as_str()
                .rsplit_once('.')
                .and_then(|(raw, id)| Some((IfaceName::parse(raw).ok()?, VlanId::parse(id).ok()?)));
            let raw = ctx.params.str(&param::VLAN_RAW_DEVICE);
            let id = ctx.params.str(&param::VLAN_ID);
            match (named, raw, id) {
                (_, Some(r), Some(i)) => Ok(IfaceKind::Vlan {
                    raw_device: IfaceName::parse(r).map_err(|e| param::VLAN_RAW_DEVICE.error(e))?,
                    id: VlanId::parse(i).map_err(|e| param::VLAN_ID.error(e))?,
                }),
                (Some((raw_device, id)), None, None) => Ok(IfaceKind::Vlan { raw_device, id }),
                (_, None, _) => {
                    Err(param::VLAN_RAW_DEVICE
                        .error("needed unless the name is <device>.<vlan-id>"))
                }
                (_, _, None) => {
                    Err(param::VLAN_ID.error("needed unless the name is <device>.<vlan-id>"))
                }
            }
        }
        "eth" => Ok(IfaceKind::Eth),
        other => Err(param::TYPE_REQUIRED.error(format!(
            "interfaces of type '{other}' are not supported (bridge, vlan, eth)"
        ))),
    }
}

/// `POST /nodes/{node}/network`: a new interface in the pending configuration.
fn create(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    let name = iface_param(ctx)?;
    let node = ctx.state;
    let (mut cfg, _) = node.network_config_for_edit()?;
    if cfg.get(name.as_str()).is_some() {
        return Err(param::IFACE.error("interface already exists"));
    }
    let kind = new_kind(ctx, &name)?;
    let links = host::links().unwrap_or_default();
    let in_kernel = links.iter().find(|l| l.name == name.as_str());
    match (&kind, in_kernel) {
        (IfaceKind::Eth, None) => {
            return Err(param::IFACE.error(format!("no port '{name}' on this host")))
        }
        (IfaceKind::Bridge { .. } | IfaceKind::Vlan { .. }, Some(_)) => {
            return Err(
                param::IFACE.error(format!("an interface '{name}' already exists on this host"))
            )
        }
        _ => {}
    }
    if let IfaceKind::Vlan { raw_device, .. } = &kind {
        if cfg.get(raw_device.as_str()).is_none()
            && !links.iter().any(|l| l.name == raw_device.as_str())
        {
            return Err(
                param::VLAN_RAW_DEVICE.error(format!("interface '{raw_device}' does not exist"))
            );
        }
    }
    let mut iface = Iface::new(name, kind);
    apply_params(ctx, &mut iface, &cfg)?;
    cfg.insert(iface);
    node.save_pending_network(&cfg)
}

/// `PUT /nodes/{node}/network/{iface}`.
fn update(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    let name = iface_param(ctx)?;
    let node = ctx.state;
    let (mut cfg, _) = node.network_config_for_edit()?;
    let mut iface = cfg
        .get(name.as_str())
        .cloned()
        .ok_or_else(|| param::IFACE.error("interface does not exist"))?;
    let wanted = ctx.params.need_str(&param::TYPE_REQUIRED)?;
    if wanted != iface.kind.type_name() {
        return Err(param::TYPE_REQUIRED.error(format!(
            "'{name}' is a '{}' interface",
            iface.kind.type_name()
        )));
    }
    apply_params(ctx, &mut iface, &cfg)?;
    cfg.insert(iface);
    node.save_pending_network(&cfg)
}

/// `DELETE /nodes/{node}/network/{iface}` (pending). A VLAN's raw device stays while the
/// VLAN is configured. As in Proxmox VE, a bridge guests use may go: they then cannot
/// start here, and migrations here are refused naming it.
fn delete(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    let name = iface_param(ctx)?;
    let node = ctx.state;
    let (mut cfg, _) = node.network_config_for_edit()?;
    if cfg.get(name.as_str()).is_none() {
        return Err(param::IFACE.error("interface does not exist"));
    }
    if let Some(user) = cfg
        .iter()
        .find(|i| matches!(&i.kind, IfaceKind::Vlan { raw_device, .. } if *raw_device == name))
    {
        return Err(param::IFACE.error(format!(
            "interface '{name}' is the raw device of VLAN '{}'",
            user.name
        )));
    }
    cfg.remove(&name);
    node.save_pending_network(&cfg)
}

/// `PUT /nodes/{node}/network`: applies the pending configuration (task `srvreload`).
fn reload(ctx: &C<'_>) -> Result<ferrox_api_types::Upid, ApiError> {
    local_node(ctx)?;
    let worker = std::sync::Arc::clone(ctx.state);
    let upid = ctx
        .state
        .tasks
        .spawn("srvreload", "networking", &auth_id(ctx)?, move |log| {
            Ok(worker.apply_network(log)?)
        })?;
    Ok(ferrox_api_types::Upid(upid))
}

/// `DELETE /nodes/{node}/network`: drops the pending changes.
fn revert(ctx: &C<'_>) -> Result<(), ApiError> {
    local_node(ctx)?;
    ctx.state.revert_network()
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    /// The interface types pve-manager's network API knows, then `extra` values.
    macro_rules! iface_types {
        ($($extra:literal),*) => {
            ParamType::Enum(&[
                "bridge",
                "bond",
                "eth",
                "alias",
                "vlan",
                "fabric",
                "OVSBridge",
                "OVSBond",
                "OVSPort",
                "OVSIntPort",
                "vnet",
                $($extra),*
            ])
        };
    }

    pub const TYPE: Param = Param::optional(
        "type",
        iface_types!("any_bridge", "any_local_bridge", "include_sdn"),
        "Only this interface type.",
    );
    pub const TYPE_REQUIRED: Param = Param::required(
        "type",
        iface_types!(),
        "Network interface type (bridge, vlan and eth are supported).",
    );
    pub const IFACE: Param = Param::required("iface", STRING, "Network interface name.");
    pub const AUTOSTART: Param =
        Param::optional("autostart", BOOL, "Automatically start interface on boot.");
    pub const BRIDGE_PORTS: Param = Param::optional(
        "bridge_ports",
        STRING,
        "Specify the interfaces you want to add to your bridge.",
    );
    pub const BRIDGE_VLAN_AWARE: Param =
        Param::optional("bridge_vlan_aware", BOOL, "Enable bridge vlan support.");
    pub const BRIDGE_VIDS: Param = Param::optional(
        "bridge_vids",
        STRING,
        "The allowed VLANs ('2 4 100-200'), for a VLAN-aware bridge.",
    );
    pub const CIDR: Param = Param::optional("cidr", STRING, "IPv4 CIDR.");
    pub const ADDRESS: Param = Param::optional("address", STRING, "IP address.");
    pub const NETMASK: Param = Param::optional("netmask", STRING, "Network mask.");
    pub const GATEWAY: Param = Param::optional("gateway", STRING, "Default gateway address.");
    pub const MTU: Param = Param::optional("mtu", STRING, "MTU (1280 to 65520).");
    pub const COMMENTS: Param = Param::optional("comments", TEXT, "Comments");
    pub const VLAN_ID: Param = Param::optional(
        "vlan-id",
        STRING,
        "vlan-id for a custom named vlan interface.",
    );
    pub const VLAN_RAW_DEVICE: Param = Param::optional(
        "vlan-raw-device",
        STRING,
        "Specify the raw interface for the vlan interface.",
    );
    pub const DELETE: Param = Param::optional("delete", STRING, "Settings to delete.");
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let settings = || {
        vec![
            NODE,
            param::IFACE,
            param::TYPE_REQUIRED,
            param::AUTOSTART,
            param::BRIDGE_PORTS,
            param::BRIDGE_VLAN_AWARE,
            param::BRIDGE_VIDS,
            param::CIDR,
            param::ADDRESS,
            param::NETMASK,
            param::GATEWAY,
            param::MTU,
            param::COMMENTS,
            param::VLAN_ID,
            param::VLAN_RAW_DEVICE,
        ]
    };
    vec![
        Endpoint::new(
            Get,
            "/nodes/{node}/network",
            "Network interfaces (bridges only with SDN.Audit or SDN.Use on them).",
            Permission::Authenticated,
            list,
        )
        .params(vec![NODE, param::TYPE]),
        Endpoint::new(
            Post,
            "/nodes/{node}/network",
            "Create a network interface (pending until applied).",
            NODE_MODIFY,
            create,
        )
        .params(settings()),
        Endpoint::new(
            Put,
            "/nodes/{node}/network",
            "Apply the pending network configuration.",
            NODE_MODIFY,
            reload,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Delete,
            "/nodes/{node}/network",
            "Revert the pending network configuration changes.",
            NODE_MODIFY,
            revert,
        )
        .params(vec![NODE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/network/{iface}",
            "Read a network interface's configuration.",
            NODE_AUDIT,
            read,
        )
        .params(vec![NODE, param::IFACE]),
        Endpoint::new(
            Put,
            "/nodes/{node}/network/{iface}",
            "Update a network interface (pending until applied).",
            NODE_MODIFY,
            update,
        )
        .params([settings(), vec![param::DELETE]].concat()),
        Endpoint::new(
            Delete,
            "/nodes/{node}/network/{iface}",
            "Delete a network interface (pending until applied).",
            NODE_MODIFY,
            delete,
        )
        .params(vec![NODE, param::IFACE]),
    ]
}
