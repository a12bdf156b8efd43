//! The manager's node state machine and fencing (spec §5).

use crate::env::{HaEnv, LogLevel, NodeInfo};
use ferrox_types::{LrmMode, NodeState};
use std::collections::BTreeMap;

pub const FENCE_DELAY: i64 = 60;
const GONE_DELETE_DELAY: i64 = 3600;

#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    pub status: BTreeMap<String, NodeState>,
    /// When each node was last seen online; in memory only, so a new master waits a
    /// full fence delay of its own before fencing.
    last_online: BTreeMap<String, i64>,
}

impl NodeStatus {
    pub fn new(status: BTreeMap<String, NodeState>) -> Self {
        NodeStatus {
            status,
            last_online: BTreeMap::new(),
        }
    }

    pub fn get(&self, node: &str) -> NodeState {
        self.status.get(node).copied().unwrap_or(NodeState::Unknown)
    }

    pub fn list_nodes(&self) -> Vec<String> {
        self.status.keys().cloned().collect()
    }

    pub fn list_online_nodes(&self) -> Vec<String> {
        self.status
            .iter()
            .filter(|(_, s)| **s == NodeState::Online)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn is_online(&self, node: &str) -> bool {
        self.get(node) == NodeState::Online
    }

    pub fn is_operational(&self, node: &str) -> bool {
        matches!(self.get(node), NodeState::Online | NodeState::Maintenance)
    }

    fn set(&mut self, env: &mut dyn HaEnv, node: &str, state: NodeState) {
        let old = self.get(node);
        if old == state {
            return;
        }
        self.status.insert(node.to_string(), state);
        env.log(
            LogLevel::Info,
            &format!("node '{node}': state changed from '{old}' => '{state}'"),
        );
        env.record_state_change(crate::env::StateChange {
            subject: node.to_string(),
            from: old.to_string(),
            to: state.to_string(),
            node: None,
        });
    }

    pub fn update(
        &mut self,
        env: &mut dyn HaEnv,
        node_info: &BTreeMap<String, NodeInfo>,
        lrm_modes: &BTreeMap<String, LrmMode>,
    ) {
        let now = env.get_time();
        let in_maintenance = |node: &str| lrm_modes.get(node) == Some(&LrmMode::Maintenance);
        for (node, info) in node_info {
            if !info.online {
                continue;
            }
            self.last_online.insert(node.clone(), now);
            match self.get(node) {
                NodeState::Online if in_maintenance(node) => {
                    self.set(env, node, NodeState::Maintenance)
                }
                NodeState::Unknown | NodeState::Gone => self.set(env, node, NodeState::Online),
                NodeState::Maintenance if !in_maintenance(node) => {
                    self.set(env, node, NodeState::Online)
                }
                _ => {}
            }
        }
        for node in self.list_nodes() {
            let info = node_info.get(&node);
            if info.is_some_and(|i| i.online) {
                continue;
            }
            match self.get(&node) {
                NodeState::Online => self.set(env, &node, NodeState::Unknown),
                NodeState::Maintenance if !in_maintenance(&node) => {
                    self.set(env, &node, NodeState::Unknown)
                }
                NodeState::Unknown if info.is_none() => self.set(env, &node, NodeState::Gone),
                NodeState::Gone if self.is_offline_delayed(env, &node, GONE_DELETE_DELAY) => {
                    env.log(
                        LogLevel::Notice,
                        &format!("deleting gone node '{node}', not a cluster member anymore."),
                    );
                    self.status.remove(&node);
                }
                _ => {}
            }
        }
    }

    pub fn is_offline_delayed(&mut self, env: &dyn HaEnv, node: &str, delay: i64) -> bool {
        if self.is_online(node) {
            return false;
        }
        let now = env.get_time();
        match self.last_online.get(node) {
            None => {
                self.last_online.insert(node.to_string(), now);
                false
            }
            Some(last) => now - last >= delay,
        }
    }

    /// Marks the node for fencing and tries to acknowledge the fence by taking its agent
    /// lock, which is only possible once its LRM is gone for good.
    pub fn fence_node(&mut self, env: &mut dyn HaEnv, node: &str) -> bool {
        if self.get(node) != NodeState::Fence {
            self.set(env, node, NodeState::Fence);
            env.send_notification("FENCE", &format!("Try to fence node '{node}'"));
        }
        let acquired = env.get_ha_agent_lock(node);
        if acquired {
            let msg = format!("fencing: acknowledged - got agent lock for node '{node}'");
            env.log(LogLevel::Info, &msg);
            self.set(env, node, NodeState::Unknown);
            env.send_notification("SUCCEED", &msg);
        }
        acquired
    }
}
