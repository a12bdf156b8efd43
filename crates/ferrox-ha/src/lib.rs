//! Ferrox's HA manager: the Proxmox VE 9.2 semantics of the CRM (cluster resource manager,
//! one master per cluster), the LRM (one per node), the service state machine, rules,
//! fencing decisions and arm/disarm.
//!
//! Everything here is pure and synchronous: the world is reached only through [`HaEnv`],
//! so the same code runs in the simulator, in tests and in the node daemon. This crate must
//! not do IO, spawn threads or depend on an async runtime.

pub mod crm;
pub mod env;
pub mod lrm;
pub mod manager;
pub mod node_status;
pub mod placement;
pub mod pve;
pub mod rules;
pub mod version;

pub use crm::{Crm, CrmState};
pub use env::{
    EnvError, EnvResult, HaEnv, LogLevel, NodeInfo, ResourceChange, ServiceAction, StateChange,
    WatchdogHandle,
};
pub use lrm::{Lrm, LrmState};
pub use manager::Manager;

use ferrox_types::{ServiceState, ServiceStatus};
use std::collections::BTreeMap;

/// Services that keep a node's LRM busy: placed on it or moving to it, and neither
/// stopped, frozen, failed nor merely waiting to start.
pub fn count_active_services(ss: &BTreeMap<String, ServiceStatus>, node: &str) -> usize {
    ss.values()
        .filter(|sd| sd.node == node || sd.target.as_deref() == Some(node))
        .filter(|sd| {
            !matches!(
                sd.state,
                ServiceState::Stopped
                    | ServiceState::Freeze
                    | ServiceState::Error
                    | ServiceState::RequestStart
            )
        })
        .count()
}

/// Services on `node` waiting for the node to be fenced.
pub fn count_fenced_services(ss: &BTreeMap<String, ServiceStatus>, node: &str) -> usize {
    ss.values()
        .filter(|sd| sd.node == node && sd.state == ServiceState::Fence)
        .count()
}
