//! Role-based access control as in Proxmox VE 9: the privilege list, the built-in roles,
//! and the ACL walk (deeper entries override shallower ones, user entries beat group
//! entries, `propagate`, `NoAccess`, privilege-separated tokens).
//!
//! Pools: roles on `/pool/<pool>` apply (without propagation) to the pool's guests
//! (`/vms/<vmid>`) and storages (`/storage/<id>`), unless the regular ACL gives
//! `NoAccess` there; a `NoAccess` on the pool wins over the regular roles.

use crate::auth::Caller;
use ferrox_types::user_config::UserConfig;
use std::collections::{BTreeMap, BTreeSet};

const VM_ADMIN: &[&str] = &[
    "VM.Config.Disk",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.HWType",
    "VM.Config.Options",
    "VM.Allocate",
    "VM.Clone",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];
const VM_USER: &[&str] = &[
    "VM.Config.CDROM",
    "VM.Config.Cloudinit",
    "VM.Console",
    "VM.Backup",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.PowerMgmt",
];
const VM_AUDIT: &[&str] = &["VM.Audit", "VM.GuestAgent.Audit"];
const SYS_ROOT: &[&str] = &[
    "Sys.PowerMgmt",
    "Sys.Modify",
    "Sys.Incoming",
    "Sys.AccessNetwork",
];
const SYS_ADMIN: &[&str] = &["Sys.Console", "Sys.Syslog"];
const SYS_AUDIT: &[&str] = &["Sys.Audit"];
const DATASTORE_ADMIN: &[&str] = &["Datastore.Allocate", "Datastore.AllocateTemplate"];
const DATASTORE_USER: &[&str] = &["Datastore.AllocateSpace"];
const DATASTORE_AUDIT: &[&str] = &["Datastore.Audit"];
const SDN: &[&str] = &["SDN.Allocate", "SDN.Audit", "SDN.Use"];
const USER_ROOT: &[&str] = &["Realm.Allocate"];
const USER_ADMIN: &[&str] = &["User.Modify", "Group.Allocate", "Realm.AllocateUser"];
const POOL: &[&str] = &["Pool.Allocate", "Pool.Audit"];
const MAPPING: &[&str] = &["Mapping.Modify", "Mapping.Use", "Mapping.Audit"];
const PERMISSIONS: &[&str] = &["Permissions.Modify"];

const PRIVILEGE_GROUPS: [&[&str]; 15] = [
    VM_ADMIN,
    VM_USER,
    VM_AUDIT,
    SYS_ROOT,
    SYS_ADMIN,
    SYS_AUDIT,
    DATASTORE_ADMIN,
    DATASTORE_USER,
    DATASTORE_AUDIT,
    SDN,
    USER_ROOT,
    USER_ADMIN,
    POOL,
    MAPPING,
    PERMISSIONS,
];

fn is_privilege(name: &str) -> bool {
    PRIVILEGE_GROUPS.iter().any(|g| g.contains(&name))
}

/// Every privilege Proxmox VE 9 knows.
pub fn all_privileges() -> BTreeSet<&'static str> {
    PRIVILEGE_GROUPS.concat().into_iter().collect()
}

/// The built-in roles, in Proxmox VE's order.
pub const BUILTIN_ROLES: &[&str] = &[
    "Administrator",
    "NoAccess",
    "PVEAdmin",
    "PVEAuditor",
    "PVEDatastoreAdmin",
    "PVEDatastoreUser",
    "PVEMappingAdmin",
    "PVEMappingUser",
    "PVEPoolAdmin",
    "PVEPoolUser",
    "PVESDNAdmin",
    "PVESDNUser",
    "PVESysAdmin",
    "PVETemplateUser",
    "PVEUserAdmin",
    "PVEVMAdmin",
    "PVEVMUser",
];

/// The privileges of a built-in role, or `None` for a role that is not built in.
pub fn builtin_role(role: &str) -> Option<BTreeSet<&'static str>> {
    let set = |groups: &[&[&'static str]]| groups.concat().into_iter().collect();
    Some(match role {
        "Administrator" => all_privileges(),
        "NoAccess" => BTreeSet::new(),
        "PVEAdmin" => {
            let mut all = all_privileges();
            for p in SYS_ROOT
                .iter()
                .chain(USER_ROOT)
                .chain(PERMISSIONS)
                .chain(&["Mapping.Modify"])
            {
                all.remove(p);
            }
            all
        }
        "PVEAuditor" => set(&[
            DATASTORE_AUDIT,
            &["Mapping.Audit", "Pool.Audit", "SDN.Audit"],
            SYS_AUDIT,
            VM_AUDIT,
        ]),
        "PVEVMAdmin" => set(&[VM_ADMIN, VM_USER, VM_AUDIT]),
        "PVEVMUser" => set(&[VM_USER, VM_AUDIT]),
        "PVEDatastoreAdmin" => set(&[DATASTORE_ADMIN, DATASTORE_USER, DATASTORE_AUDIT]),
        "PVEDatastoreUser" => set(&[DATASTORE_USER, DATASTORE_AUDIT]),
        "PVESysAdmin" => set(&[SYS_AUDIT, SYS_ADMIN]),
        "PVEUserAdmin" => set(&[USER_ADMIN]),
        "PVEPoolAdmin" => set(&[POOL]),
        "PVEPoolUser" => set(&[&["Pool.Audit"]]),
        "PVESDNAdmin" => set(&[SDN]),
        "PVESDNUser" => set(&[&["SDN.Audit", "SDN.Use"]]),
        "PVEMappingAdmin" => set(&[MAPPING]),
        "PVEMappingUser" => set(&[&["Mapping.Audit", "Mapping.Use"]]),
        "PVETemplateUser" => set(&[&["VM.Clone", "VM.Audit"]]),
        _ => return None,
    })
}

fn role_privileges(cfg: &UserConfig, role: &str) -> BTreeSet<String> {
    builtin_role(role)
        .map(|s| s.into_iter().map(String::from).collect())
        .or_else(|| cfg.roles.get(role).cloned())
        .unwrap_or_default()
}

/// The path components from `/` to `path`: `/`, `/vms`, `/vms/100`.
fn prefixes(path: &str) -> Vec<String> {
    let mut out = vec!["/".to_string()];
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur.push('/');
        cur.push_str(part);
        out.push(cur.clone());
    }
    out
}

/// Roles of one ACL subject (user, token or group list) on `path`, with their propagate flag.
fn roles_for(cfg: &UserConfig, subjects: &[String], path: &str) -> BTreeMap<String, bool> {
    let mut current: BTreeMap<String, bool> = BTreeMap::new();
    let all = prefixes(path);
    for (depth, prefix) in all.iter().enumerate() {
        let last = depth + 1 == all.len();
        // At each level the most specific subject kind that has an entry wins.
        for subject_kind in subjects {
            let entries: Vec<_> = cfg
                .acls
                .iter()
                .filter(|acl| acl.path == *prefix && (last || acl.propagate))
                .filter(|acl| {
                    subject_kind
                        .split('|')
                        .any(|s| acl.ugids.iter().any(|u| u == s))
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            current.clear();
            for acl in entries {
                for role in &acl.roles {
                    current.insert(role.clone(), acl.propagate);
                }
            }
            break;
        }
    }
    if current.contains_key("NoAccess") {
        return BTreeMap::from([("NoAccess".to_string(), false)]);
    }
    current
}

/// The pool a guest or storage path belongs to (`/vms/100` → its pool).
fn pool_of(cfg: &UserConfig, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let find = |member: &str, vms: bool| {
        cfg.pools
            .iter()
            .find(|(_, (_, v, s))| {
                if vms {
                    v.contains(member)
                } else {
                    s.contains(member)
                }
            })
            .map(|(p, _)| p.clone())
    };
    match parts.as_slice() {
        ["vms", vmid] => find(vmid, true),
        ["storage", id] => find(id, false),
        _ => None,
    }
}

/// The roles of `subjects` on `path`, with those its pool adds (Proxmox VE's rules).
fn effective_roles(cfg: &UserConfig, subjects: &[String], path: &str) -> BTreeMap<String, bool> {
    let regular = roles_for(cfg, subjects, path);
    let Some(pool) = pool_of(cfg, path) else {
        return regular;
    };
    if regular.contains_key("NoAccess") {
        return regular;
    }
    let from_pool = roles_for(cfg, subjects, &format!("/pool/{pool}"));
    if from_pool.contains_key("NoAccess") {
        return from_pool;
    }
    let mut out = regular;
    for role in from_pool.into_keys() {
        out.entry(role).or_insert(false);
    }
    out
}

fn privileges_of_roles(cfg: &UserConfig, roles: &BTreeMap<String, bool>) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for (role, propagate) in roles {
        for p in role_privileges(cfg, role) {
            let entry = out.entry(p).or_insert(false);
            *entry |= *propagate;
        }
    }
    out
}

/// root@pam holds every privilege everywhere, and so do its tokens without privilege
/// separation.
fn unrestricted(cfg: &UserConfig, caller: &Caller) -> bool {
    caller.userid == "root@pam"
        && caller.token.as_ref().is_none_or(|t| {
            cfg.tokens
                .get(&format!("root@pam!{t}"))
                .is_some_and(|t| !t.privsep)
        })
}

/// Privileges (with their propagate flag) of `caller` on `path`.
pub fn privileges(cfg: &UserConfig, caller: &Caller, path: &str) -> BTreeMap<String, bool> {
    if unrestricted(cfg, caller) {
        return all_privileges()
            .into_iter()
            .map(|p| (p.to_string(), true))
            .collect();
    }
    let user_privs = if caller.userid == "root@pam" {
        all_privileges()
            .into_iter()
            .map(|p| (p.to_string(), true))
            .collect()
    } else {
        let groups: Vec<String> = cfg
            .groups
            .iter()
            .filter(|(_, (members, _))| members.contains(&caller.userid))
            .map(|(g, _)| format!("@{g}"))
            .collect();
        let subjects = vec![caller.userid.clone(), groups.join("|")];
        privileges_of_roles(cfg, &effective_roles(cfg, &subjects, path))
    };
    let Some(token) = &caller.token else {
        return user_privs;
    };
    let full = format!("{}!{token}", caller.userid);
    match cfg.tokens.get(&full) {
        None => BTreeMap::new(),
        Some(t) if !t.privsep => user_privs,
        Some(_) => {
            let token_privs = privileges_of_roles(cfg, &effective_roles(cfg, &[full], path));
            token_privs
                .into_iter()
                .filter_map(|(p, prop)| user_privs.get(&p).map(|up| (p, prop && *up)))
                .collect()
        }
    }
}

/// Whether `caller` has all (or, with `any`, one) of `privs` on `path`.
pub fn check(cfg: &UserConfig, caller: &Caller, path: &str, privs: &[&str], any: bool) -> bool {
    // Listings call this once per guest: the unrestricted case needs no ACL walk.
    if unrestricted(cfg, caller) {
        return if any {
            privs.iter().any(|p| is_privilege(p))
        } else {
            privs.iter().all(|p| is_privilege(p))
        };
    }
    let have = privileges(cfg, caller, path);
    if any {
        privs.iter().any(|p| have.contains_key(*p))
    } else {
        privs.iter().all(|p| have.contains_key(*p))
    }
}

/// `GET /access/permissions`: privileges on the standard paths and every ACL path.
pub fn permission_map(
    cfg: &UserConfig,
    caller: &Caller,
    only: Option<&str>,
) -> BTreeMap<String, BTreeMap<String, u8>> {
    let mut paths: BTreeSet<String> = match only {
        Some(p) => BTreeSet::from([p.to_string()]),
        None => [
            "/",
            "/access",
            "/access/groups",
            "/nodes",
            "/pool",
            "/sdn",
            "/storage",
            "/vms",
            "/mapping",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(cfg.acls.iter().map(|a| a.path.clone()))
        .collect(),
    };
    paths.retain(|p| !p.is_empty());
    paths
        .into_iter()
        .filter_map(|path| {
            let privs: BTreeMap<String, u8> = privileges(cfg, caller, &path)
                .into_iter()
                .map(|(p, prop)| (p, u8::from(prop)))
                .collect();
            (!privs.is_empty()).then_some((path, privs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> UserConfig {
        UserConfig::parse(text).unwrap()
    }

    fn user(id: &str) -> Caller {
        Caller {
            userid: id.into(),
            token: None,
        }
    }

    #[test]
    fn builtin_roles_have_the_documented_sizes() {
        assert_eq!(all_privileges().len(), 47);
        assert_eq!(builtin_role("PVEAdmin").unwrap().len(), 40);
        assert_eq!(builtin_role("PVEAuditor").unwrap().len(), 7);
        assert_eq!(builtin_role("PVEVMAdmin").unwrap().len(), 23);
        assert_eq!(builtin_role("PVEVMUser").unwrap().len(), 10);
    }

    #[test]
    fn deeper_entries_override_and_noaccess_masks() {
        let c = cfg("user:alice@pve:1:0::::::\ngroup:ops:alice@pve::\n\
             acl:1:/:@ops:PVEAuditor:\nacl:1:/vms:alice@pve:PVEVMUser:\nacl:0:/vms/200:alice@pve:NoAccess:\n");
        let alice = user("alice@pve");
        assert!(check(&c, &alice, "/nodes/n1", &["Sys.Audit"], false));
        // user entry on /vms replaces the group's auditor role there
        assert!(check(&c, &alice, "/vms/100", &["VM.PowerMgmt"], false));
        assert!(!check(&c, &alice, "/vms/100", &["Sys.Audit"], false));
        assert!(privileges(&c, &alice, "/vms/200").is_empty());
        // propagate=0 applies only on the exact path
        assert!(check(&c, &alice, "/vms/200/x", &["VM.PowerMgmt"], false));
        assert!(check(
            &c,
            &user("root@pam"),
            "/vms/200",
            &["VM.Allocate"],
            false
        ));
        assert!(!check(&c, &user("bob@pve"), "/", &["Sys.Audit"], false));
    }

    #[test]
    fn pool_roles_reach_the_pool_members() {
        let c = cfg("user:alice@pve:1:0::::::\npool:web::100,101:local:\n\
             acl:1:/pool/web:alice@pve:PVEVMUser:\nacl:0:/vms/101:alice@pve:NoAccess:\n");
        let alice = user("alice@pve");
        assert!(check(&c, &alice, "/vms/100", &["VM.PowerMgmt"], false));
        assert!(
            !check(&c, &alice, "/vms/102", &["VM.PowerMgmt"], false),
            "not a member"
        );
        assert!(
            privileges(&c, &alice, "/vms/101").is_empty(),
            "regular NoAccess wins"
        );
        let c = cfg("user:alice@pve:1:0::::::\npool:web::100::\n\
             acl:1:/:alice@pve:PVEVMAdmin:\nacl:1:/pool/web:alice@pve:NoAccess:\n");
        assert!(
            privileges(&c, &alice, "/vms/100").is_empty(),
            "pool NoAccess wins"
        );
        assert!(check(&c, &alice, "/vms/200", &["VM.Allocate"], false));
    }

    #[test]
    fn privsep_tokens_get_the_intersection() {
        let c = cfg(
            "user:alice@pve:1:0::::::\ntoken:alice@pve!ro:0:1::\ntoken:alice@pve!full:0:0::\n\
             acl:1:/:alice@pve:PVEVMAdmin:\nacl:1:/:alice@pve!ro:PVEAuditor:\n",
        );
        let ro = Caller {
            userid: "alice@pve".into(),
            token: Some("ro".into()),
        };
        let full = Caller {
            userid: "alice@pve".into(),
            token: Some("full".into()),
        };
        assert!(check(&c, &ro, "/vms/1", &["VM.Audit"], false));
        assert!(!check(&c, &ro, "/vms/1", &["VM.PowerMgmt"], false));
        assert!(!check(&c, &ro, "/", &["Sys.Audit"], false), "user lacks it");
        assert!(check(&c, &full, "/vms/1", &["VM.PowerMgmt"], false));
    }
}
