//! The seam between HA and the kinds of guest, as Proxmox VE's resource plugins (PVEVM,
//! PVECT): an HA resource id names its kind (`vm:100`), and everything HA does to a guest
//! — is it running, start, shut down, migrate, drop a lock, where is its config — goes
//! through that kind's implementation. QEMU guests are the one kind today; containers
//! add an implementation (and its line in `kind_of`), not changes to the HA code.

use crate::guests::migrate::MigrationPlan;
use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use std::sync::Arc;
use std::time::Duration;

/// Proxmox VE's task types of one guest kind.
#[derive(Debug, Clone, Copy)]
pub struct TaskTypes {
    pub start: &'static str,
    pub shutdown: &'static str,
    pub migrate: &'static str,
}

/// What HA needs of a kind of guest.
pub trait GuestKind: Send + Sync {
    /// The HA resource prefix (`vm`, `ct`).
    fn prefix(&self) -> &'static str;
    fn task_types(&self) -> TaskTypes;
    /// The path of a guest's config in the cluster tree, on `node`.
    fn config_path(&self, node: &str, id: u32) -> String;
    fn is_running(&self, node: &Node, id: u32) -> bool;
    fn start(&self, node: &Arc<Node>, id: u32, log: &TaskLog) -> Result<(), TaskError>;
    fn shutdown(
        &self,
        node: &Arc<Node>,
        id: u32,
        timeout: Duration,
        log: &TaskLog,
    ) -> Result<(), TaskError>;
    /// Checks a move to `target` before it starts (online: live, else with the guest off).
    fn plan_migration(
        &self,
        node: &Node,
        id: u32,
        target: &str,
        online: bool,
    ) -> Result<MigrationPlan, ApiError>;
    fn migrate(
        &self,
        node: &Arc<Node>,
        plan: MigrationPlan,
        log: &TaskLog,
    ) -> Result<(), TaskError>;
    /// Removes the guest's lock when it is one of `locks`; returns the lock removed.
    fn remove_lock(&self, node: &Node, id: u32, locks: &[&str]) -> Option<String>;
    /// The cluster node whose tree holds the guest's config.
    fn owner(&self, node: &Node, id: u32) -> Option<String>;
    /// The lock in the guest's config (held by `owner`).
    fn config_lock(&self, node: &Node, owner: &str, id: u32) -> Option<String>;
    /// Configured CPUs and memory (bytes), for static scheduling.
    fn configured_size(&self, node: &Node, owner: &str, id: u32) -> Option<(f64, f64)>;
}

/// QEMU virtual machines (`vm:<vmid>`).
pub struct QemuGuests;

impl GuestKind for QemuGuests {
    fn prefix(&self) -> &'static str {
        "vm"
    }

    fn task_types(&self) -> TaskTypes {
        TaskTypes {
            start: "qmstart",
            shutdown: "qmshutdown",
            migrate: "qmigrate",
        }
    }

    fn config_path(&self, node: &str, id: u32) -> String {
        crate::guests::config_path(node, id)
    }

    fn is_running(&self, node: &Node, id: u32) -> bool {
        node.guests.process(id).is_some()
    }

    fn start(&self, node: &Arc<Node>, id: u32, log: &TaskLog) -> Result<(), TaskError> {
        node.start_guest(id, log)
    }

    fn shutdown(
        &self,
        node: &Arc<Node>,
        id: u32,
        timeout: Duration,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        node.shutdown_guest(id, timeout, true, log)
    }

    fn plan_migration(
        &self,
        node: &Node,
        id: u32,
        target: &str,
        online: bool,
    ) -> Result<MigrationPlan, ApiError> {
        node.plan_migration(id, target, online, false, None, None)
    }

    fn migrate(
        &self,
        node: &Arc<Node>,
        plan: MigrationPlan,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        node.migrate_guest(plan, log)
    }

    fn remove_lock(&self, node: &Node, id: u32, locks: &[&str]) -> Option<String> {
        // The master calls this for a guest of any node (the fenced one's, at recovery):
        // the config is read and written where it is, not in this node's cache.
        let owner = self.owner(node, id)?;
        let path = self.config_path(&owner, id);
        let text = node.tree.get(&path)?.data;
        let mut cfg = ferrox_types::GuestConfig::parse(&text).ok()?;
        let lock = cfg.options.get("lock")?.clone();
        if !locks.contains(&lock.as_str()) {
            return None;
        }
        cfg.options.remove("lock");
        node.tree
            .put(
                &path,
                &cfg.to_text(),
                ferrox_store::Expect::Digest(ferrox_store::digest(&text)),
            )
            .ok()?;
        if owner == node.opts.node_name {
            node.guests.refresh(id);
        }
        Some(lock)
    }

    fn owner(&self, node: &Node, id: u32) -> Option<String> {
        crate::cluster::vmid_owner(node, id)
    }

    fn config_lock(&self, node: &Node, owner: &str, id: u32) -> Option<String> {
        self.parsed(node, owner, id)?.options.get("lock").cloned()
    }

    fn configured_size(&self, node: &Node, owner: &str, id: u32) -> Option<(f64, f64)> {
        let cfg = self.parsed(node, owner, id)?;
        Some((
            (cfg.sockets() * cfg.cores()) as f64,
            (cfg.memory_mib() * 1024 * 1024) as f64,
        ))
    }
}

impl QemuGuests {
    fn parsed(&self, node: &Node, owner: &str, id: u32) -> Option<ferrox_types::GuestConfig> {
        let text = node.tree.get(&self.config_path(owner, id))?.data;
        ferrox_types::GuestConfig::parse(&text).ok()
    }
}

static QEMU: QemuGuests = QemuGuests;

/// The kinds of guest this node runs.
pub fn kinds() -> [&'static dyn GuestKind; 1] {
    [&QEMU]
}

/// The kind and id of an HA resource id (`vm:100`), if this node knows the kind.
pub fn kind_of(sid: &str) -> Option<(&'static dyn GuestKind, u32)> {
    let (prefix, id) = sid.split_once(':')?;
    let kind = kinds().into_iter().find(|k| k.prefix() == prefix)?;
    Some((kind, id.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_name_their_kind() {
        let (kind, id) = kind_of("vm:100").unwrap();
        assert_eq!((kind.prefix(), id), ("vm", 100));
        assert_eq!(kind.task_types().start, "qmstart");
        assert_eq!(kind.config_path("n1", 100), "nodes/n1/qemu-server/100.conf");
        assert!(kind_of("ct:100").is_none(), "no container kind yet");
        assert!(kind_of("vm:x").is_none());
        assert!(kind_of("100").is_none());
    }
}
