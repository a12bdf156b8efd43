//! What a guest's life changes in the accounts: a guest created into a pool joins it; a
//! destroyed guest leaves its pool and its ACL entries (Proxmox VE's `remove_vm_access`).

use crate::Node;
use ferrox_api::ApiError;

/// Adds a new guest to its pool (creation with `pool`).
pub fn add_guest(node: &Node, pool: &str, vmid: u32) -> Result<(), ApiError> {
    node.auth.modify(|docs| {
        let entry = docs
            .users
            .pools
            .get_mut(pool)
            .ok_or_else(|| ApiError::param("pool", format!("pool '{pool}' does not exist")))?;
        entry.1.insert(vmid.to_string());
        Ok(())
    })
}

/// A destroyed guest leaves its pool and its ACL entries (Proxmox VE's `remove_vm_access`).
pub fn forget_guest(node: &Node, vmid: u32) -> Result<(), ApiError> {
    let id = vmid.to_string();
    let path = format!("/vms/{vmid}");
    node.auth.modify(|docs| {
        for (_, members, _) in docs.users.pools.values_mut() {
            members.remove(&id);
        }
        docs.users.acls.retain(|a| a.path != path);
        Ok(())
    })
}
