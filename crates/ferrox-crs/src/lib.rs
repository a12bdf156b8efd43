//! Cluster Resource Scheduler: pure scheduling.
//!
//! Two layers. `usage` and `topsis` are Proxmox VE 9.2's arithmetic exactly as its HA
//! manager uses it (basic/static/dynamic usage, TOPSIS start scores, the imbalance, the
//! best single rebalancing migration). `snapshot` and `plan` are Ferrox's own scheduler on
//! a whole-cluster snapshot: multi-step plans that first repair broken strict rules and
//! capacity limits, then balance CPU and memory apart (`objective`); evacuation and
//! best-node placement, never overcommitting memory; `feasibility` refuses snapshots no
//! placement can satisfy before planning; `exact` and `generate` measure it.
//! It does no IO (snapshots arrive as text) and knows nothing of HA states: callers say
//! where each resource is placed and whether it runs.

pub mod exact;
pub mod feasibility;
pub mod generate;
pub mod objective;
pub mod plan;
pub mod snapshot;
pub mod topsis;
pub mod usage;

pub use usage::{
    Migration, MigrationCandidate, NodeStats, Placement, RebalanceChoice, ResourceStats, Usage,
    UsageError, UsageMode,
};
