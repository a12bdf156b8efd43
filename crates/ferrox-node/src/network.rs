//! The node's network configuration and guests' ports on it: the configuration lives in the
//! store (`nodes/<node>/interfaces`, changes wait in `interfaces.new` until applied, as
//! Proxmox VE keeps `/etc/network/interfaces.new`), is applied at daemon start and on
//! request with a roll-back, and every node can see which bridges the others have (a
//! migration to a node without the guest's bridge is refused before anything moves).

use crate::host::network as host;
use crate::Node;
use ferrox_api::tasks::TaskLog;
use ferrox_api::ApiError;
use ferrox_qemu::NetMode;
use ferrox_store::{Expect, Op};
use ferrox_types::network::{Interfaces, Nic};
use ferrox_types::GuestConfig;
use std::sync::Arc;
use std::time::Duration;

impl Node {
    /// `node`'s applied network configuration (a new node's default until it wrote one).
    pub fn network_config_of(&self, node: &str) -> Result<Interfaces, ApiError> {
        match self.tree.get(&host::config_path(node)) {
            Some(e) => Interfaces::parse(&e.data).map_err(|e| {
                ApiError::internal(format!("network configuration of node '{node}': {e}"))
            }),
            None => Ok(host::default_config()),
        }
    }

    /// This node's configuration as the API shows and edits it: the pending one when
    /// there are changes, else the applied one; and whether changes are pending.
    pub fn network_config_for_edit(&self) -> Result<(Interfaces, bool), ApiError> {
        let me = &self.opts.node_name;
        match self.tree.get(&host::pending_path(me)) {
            Some(e) => Interfaces::parse(&e.data)
                .map(|c| (c, true))
                .map_err(|e| ApiError::internal(format!("pending network configuration: {e}"))),
            None => Ok((self.network_config_of(me)?, false)),
        }
    }

    /// Stores `cfg` as this node's pending configuration (the caller checked it).
    pub fn save_pending_network(&self, cfg: &Interfaces) -> Result<(), ApiError> {
        cfg.check()
            .map_err(|e| ApiError::param(&e.field, e.message))?;
        self.tree
            .put(
                &host::pending_path(&self.opts.node_name),
                &cfg.to_text(),
                Expect::Any,
            )
            .map_err(crate::cluster::store_error)?;
        Ok(())
    }

    /// Drops the pending changes (`DELETE /nodes/{node}/network`).
    pub fn revert_network(&self) -> Result<(), ApiError> {
        let path = host::pending_path(&self.opts.node_name);
        if self.tree.get(&path).is_some() {
            self.tree
                .delete(&path, Expect::Any)
                .map_err(crate::cluster::store_error)?;
        }
        Ok(())
    }

    /// The worker of `PUT /nodes/{node}/network`: the pending configuration is applied
    /// over the current one; on failure (or if the node's cluster address would be gone)
    /// the current one is restored and stays the applied one.
    pub fn apply_network(&self, log: &TaskLog) -> Result<(), String> {
        let me = self.opts.node_name.clone();
        let current = self.network_config_of(&me).map_err(|e| e.message)?;
        let (pending, has_pending) = self.network_config_for_edit().map_err(|e| e.message)?;
        if !has_pending {
            log.log("no pending changes: re-applying the current configuration");
        }
        if self.opts.net_mode == NetMode::User {
            log.warn("this node runs with --net-mode user: the configuration is stored, not applied to the host");
        } else {
            let keep = self
                .opts
                .peer_address()
                .rsplit_once(':')
                .and_then(|(h, _)| h.trim_matches(['[', ']']).parse().ok());
            host::apply_or_roll_back(&pending, &current, keep)?;
        }
        let text = pending.to_text();
        let mut ops = vec![Op::Put {
            path: host::config_path(&me),
            data: text.clone(),
            expect: Expect::Any,
        }];
        if has_pending {
            ops.push(Op::Delete {
                path: host::pending_path(&me),
                expect: Expect::Any,
            });
        }
        self.tree.txn(ops).map_err(|e| e.to_string())?;
        for line in text.lines() {
            log.log(line);
        }
        log.log("network configuration applied");
        Ok(())
    }

    /// Why `cfg` cannot run on `node`: the first card whose bridge (a bridge of the node's
    /// configuration or an SDN vnet of a zone the node is in) that node lacks.
    pub fn bridge_refusal(
        &self,
        cfg: &GuestConfig,
        node: &str,
    ) -> Result<Option<String>, ApiError> {
        let cards = host::bridges_of(cfg);
        if cards.is_empty() {
            return Ok(None);
        }
        let bridges = host::bridge_names(&self.network_config_of(node)?);
        Ok(cards.into_iter().find_map(|(key, nic)| {
            let bridge = nic.bridge?.to_string();
            (!bridges.contains(&bridge) && !self.is_vnet_on(&bridge, node))
                .then(|| format!("{key}: bridge '{bridge}' does not exist on node '{node}'"))
        }))
    }

    /// `cfg` as QEMU starts it: a virtio card without `mtu=` on a bridge whose MTU is below
    /// 1500 (a vxlan vnet: 1450) gets the bridge's MTU as `host_mtu`, so that the guest
    /// never sends frames the bridge would drop (full-size segments between two guests
    /// would vanish and a TCP connection could stall for good). Source and target of a
    /// migration compute the same value (the vnet's zone MTU).
    pub(crate) fn with_bridge_mtus(&self, cfg: &GuestConfig) -> GuestConfig {
        let mut out = cfg.clone();
        if self.opts.net_mode == NetMode::User {
            return out;
        }
        let running = self.sdn_running().ok();
        for (key, mut nic) in host::bridges_of(cfg) {
            if nic.mtu.is_some() || nic.model != ferrox_types::network::NicModel::Virtio {
                continue;
            }
            let Some(bridge) = nic.bridge.as_ref().map(|b| b.to_string()) else {
                continue;
            };
            let vnet_mtu = running.as_ref().and_then(|r| {
                let v = r.vnets.get(&bridge)?;
                Some(r.zones.get(&v.zone)?.effective_mtu())
            });
            let mtu =
                vnet_mtu.or_else(|| host::link(&bridge).and_then(|l| u16::try_from(l.mtu).ok()));
            if let Some(m) = mtu.filter(|m| (576..1500).contains(m)) {
                nic.mtu = Some(m);
                out.options.insert(key, nic.to_string());
            }
        }
        out
    }

    /// Plugs the taps QEMU made for `cfg`'s bridged cards (the guest is still paused) and
    /// takes down the links of cards with `link_down=1`. What it did goes to `log`, with
    /// the task's log where there is one.
    pub(crate) fn plug_guest_taps(
        &self,
        vmid: u32,
        cfg: &GuestConfig,
        qmp: &mut ferrox_qemu::Qmp,
        log: Option<&TaskLog>,
    ) -> Result<(), String> {
        let info = |line: String| match log {
            Some(l) => l.log(line),
            None => tracing::info!("VM {vmid}: {line}"),
        };
        let warn = |line: String| match log {
            Some(l) => l.warn(line),
            None => tracing::warn!("VM {vmid}: {line}"),
        };
        for (key, value) in cfg
            .options
            .iter()
            .filter(|(k, _)| crate::guests::is_net_key(k))
        {
            let nic = Nic::parse(key, value).map_err(|e| e.to_string())?;
            let index: u32 = key
                .strip_prefix("net")
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            match (&nic.bridge, self.opts.net_mode) {
                (Some(bridge), NetMode::Bridge) => {
                    let tap = Nic::tap_name(vmid, index);
                    if let Some(w) =
                        host::plug_tap(&tap, &nic).map_err(|e| format!("{key}: {e}"))?
                    {
                        warn(format!("{key}: {w}"));
                    }
                    let tag = nic.tag.map(|t| format!(", VLAN {t}")).unwrap_or_default();
                    info(format!("{key}: {tap} on bridge {bridge}{tag}"));
                    if nic.firewall {
                        warn(format!(
                            "{key}: firewall=1 is kept in the configuration but not enforced"
                        ));
                    }
                }
                (Some(_), NetMode::User) => info(format!(
                    "{key}: user-mode networking (this node runs with --net-mode user)"
                )),
                (None, _) => info(format!("{key}: user-mode networking (no bridge)")),
            }
            if nic.link_down {
                qmp.execute(
                    "set_link",
                    Some(serde_json::json!({"name": key, "up": false})),
                )
                .map_err(|e| format!("{key}: link_down: {e}"))?;
            }
        }
        Ok(())
    }
}

/// At daemon start: this node's configuration (the defaults if it has none yet) is
/// applied before any guest starts (in bridge mode), and the defaults are written to the
/// store once it can be written.
pub fn setup(node: &Arc<Node>) {
    let me = node.opts.node_name.clone();
    if node.opts.net_mode == NetMode::Bridge {
        match node.network_config_of(&me) {
            Ok(cfg) => {
                if let Err(e) = host::apply_or_roll_back(&cfg, &cfg, None) {
                    tracing::warn!("network: applying this node's configuration: {e}");
                }
            }
            Err(e) => tracing::warn!("network: {}", e.message),
        }
    }
    let path = host::config_path(&me);
    if node.tree.get(&path).is_some() {
        return;
    }
    let node = Arc::clone(node);
    std::thread::spawn(move || {
        let text = host::default_config().to_text();
        while node.tree.get(&path).is_none() {
            if let Err(e) = node.tree.put(&path, &text, Expect::Absent) {
                tracing::info!("network: storing the default configuration: {e}; retrying");
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    });
}
