//! Cluster Resource Scheduler: pure scheduling arithmetic.
//!
//! Usage accounting in Proxmox VE 9.2's three modes (basic, static, dynamic), TOPSIS
//! scoring of start and recovery targets, the node imbalance measure and the search for
//! the best single rebalancing migration. It does no IO and knows nothing of HA states:
//! callers say where each resource is placed and whether it runs.

pub mod exact;
pub mod generate;
pub mod plan;
pub mod snapshot;
pub mod topsis;
pub mod usage;

pub use usage::{
    Migration, MigrationCandidate, NodeStats, Placement, RebalanceChoice, ResourceStats, Usage,
    UsageError, UsageMode,
};
