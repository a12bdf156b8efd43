//! The cluster endpoints: `cluster/status`, `cluster/config` (create), `cluster/config/join`
//! (information and joining), `cluster/config/nodes` (list, add, remove), and the
//! cluster-wide views other endpoints need (members, guests of every node).

use crate::cluster::other_members;
use crate::{cluster, Node};
use ferrox_api::schema::{Param, ParamType, STRING};
use ferrox_api::{ApiError, Ctx, Endpoint, Method, Permission};
use ferrox_api_types::cluster::{
    ClusterLock, ClusterMember, ClusterStatusEntry, JoinGrant as Admission, JoinInfo, LockGrant,
    LockRelease, MemberAddress, Totem,
};
use ferrox_api_types::{ConfigMap, Named, Upid};
use ferrox_store::{JoinGrant, Member};
use serde_json::{json, Value};
use std::time::Duration;

type C<'a> = Ctx<'a, Node>;

const AUDIT: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Audit"],
    any: false,
};
const MODIFY: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Modify"],
    any: false,
};

/// How long a joining node waits to be replicated into the cluster.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Members and whether they answer (in parallel, each with a short timeout).
fn reachability(node: &Node) -> Vec<(Member, bool)> {
    let others = other_members(node);
    std::thread::scope(|scope| {
        let handles: Vec<_> = others
            .iter()
            .map(|m| scope.spawn(|| cluster::peer_resources(node, m, Some("node")).is_ok()))
            .collect();
        others
            .iter()
            .cloned()
            .zip(handles.into_iter().map(|h| h.join().unwrap_or(false)))
            .collect()
    })
}

fn host_of(address: &str) -> String {
    address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_else(|| address.to_string())
}

fn cluster_status(ctx: &C<'_>) -> Result<Vec<ClusterStatusEntry>, ApiError> {
    Ok(status_entries(ctx.state))
}

/// The cluster (when there is one) and each member, with whether it answers.
pub(super) fn status_entries(node: &Node) -> Vec<ClusterStatusEntry> {
    let status = node.store.status();
    let reachable = reachability(node);
    let leader_name = status
        .leader
        .and_then(|l| status.members.iter().find(|m| m.id == l))
        .map(|m| m.member.name.clone());
    let mut out = Vec::new();
    if let Some(name) = &status.name {
        out.push(ClusterStatusEntry {
            kind: "cluster".into(),
            id: "cluster".into(),
            name: name.clone(),
            nodes: Some(status.members.len()),
            quorate: Some(u8::from(status.quorate)),
            version: Some(status.term),
            leader: leader_name,
            ip: None,
            online: None,
            local: None,
            nodeid: None,
            level: None,
            voter: None,
        });
    }
    for m in &status.members {
        let local = m.member.name == node.opts.node_name;
        let online = local
            || reachable
                .iter()
                .any(|(r, up)| r.name == m.member.name && *up);
        out.push(ClusterStatusEntry {
            kind: "node".into(),
            id: format!("node/{}", m.member.name),
            name: m.member.name.clone(),
            nodes: None,
            quorate: None,
            version: None,
            leader: None,
            ip: Some(host_of(&m.member.address)),
            online: Some(u8::from(online)),
            local: Some(u8::from(local)),
            nodeid: Some(m.id),
            level: Some(String::new()),
            voter: Some(u8::from(m.voter)),
        });
    }
    out
}

fn cluster_create(ctx: &C<'_>) -> Result<Upid, ApiError> {
    let name = ctx.params.need_str(&param::CLUSTERNAME)?.to_string();
    if name.is_empty()
        || name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(param::CLUSTERNAME
            .error("value does not match the regex pattern (1-15 of A-Z a-z 0-9 - _)"));
    }
    let node = ctx.state;
    if let Some(existing) = node.store.cluster_name() {
        return Err(
            param::CLUSTERNAME.error(format!("this node is already in cluster '{existing}'"))
        );
    }
    let caller = ctx.caller()?.auth_id();
    let store = std::sync::Arc::clone(&node.store);
    let rt = node.rt.clone();
    let id = name.clone();
    let upid = node
        .tasks
        .spawn("clustercreate", &id, &caller, move |log| {
            rt.block_on(store.create_cluster(&name))
                .map_err(|e| e.to_string())?;
            log.log(format!("cluster '{name}' created"));
            Ok(())
        })?;
    Ok(Upid(upid))
}

/// A member as Proxmox VE's corosync node list shows it.
fn cluster_member(m: &ferrox_store::MemberStatus, with_node: bool) -> ClusterMember {
    ClusterMember {
        node: with_node.then(|| m.member.name.clone()),
        name: m.member.name.clone(),
        nodeid: m.id.to_string(),
        pve_addr: host_of(&m.member.address),
        pve_fp: m.member.fingerprint.clone(),
        ring0_addr: host_of(&m.member.address),
        quorum_votes: "1".into(),
        address: m.member.address.clone(),
    }
}

fn join_info(ctx: &C<'_>) -> Result<JoinInfo, ApiError> {
    let node = ctx.state;
    let status = node.store.status();
    let name = status
        .name
        .clone()
        .ok_or_else(|| ApiError::new(400, "node is not in a cluster, no join info available!"))?;
    Ok(JoinInfo {
        nodelist: status
            .members
            .iter()
            .map(|m| cluster_member(m, false))
            .collect(),
        preferred_node: node.opts.node_name.clone(),
        totem: Totem {
            cluster_name: name,
            version: "2".into(),
        },
        config_digest: node
            .tree
            .get(ferrox_store::store::CLUSTER_FILE)
            .map(|e| ferrox_store::digest(&e.data))
            .unwrap_or_default(),
    })
}

fn list_members(ctx: &C<'_>) -> Result<Vec<ClusterMember>, ApiError> {
    let status = ctx.state.store.status();
    Ok(status
        .members
        .iter()
        .map(|m| cluster_member(m, true))
        .collect())
}

/// Membership refusals (unknown node, name taken, last member) are about the `node`.
fn member_error(e: ferrox_store::StoreError, field: &str) -> ApiError {
    match e {
        ferrox_store::StoreError::Invalid(m) => ApiError::param(field, m),
        other => cluster::store_error(other),
    }
}

fn admission(grant: JoinGrant) -> Admission {
    Admission {
        id: grant.id,
        secret: grant.secret,
        cluster_name: grant.cluster_name,
        members: grant
            .members
            .into_iter()
            .map(|m| MemberAddress {
                name: m.name,
                address: m.address,
                fingerprint: m.fingerprint,
            })
            .collect(),
    }
}

/// `POST /cluster/config/nodes/{node}`: a joining node asks to be admitted.
fn add_member(ctx: &C<'_>) -> Result<Admission, ApiError> {
    let member = Member {
        name: ctx.params.need_str(&param::MEMBER_NODE)?.to_string(),
        address: ctx.params.need_str(&param::ADDRESS)?.to_string(),
        fingerprint: ctx.params.need_str(&param::MEMBER_FINGERPRINT)?.to_string(),
    };
    ferrox_client::pinned::parse_fingerprint(&member.fingerprint)
        .map_err(|e| param::MEMBER_FINGERPRINT.error(e.to_string()))?;
    let grant = ctx
        .state
        .rt
        .block_on(ctx.state.store.add_member(member))
        .map_err(|e| member_error(e, "node"))?;
    Ok(admission(grant))
}

fn remove_member(ctx: &C<'_>) -> Result<(), ApiError> {
    let name = ctx.params.need_str(&param::REMOVED_NODE)?.to_string();
    if name == ctx.state.opts.node_name {
        return Err(param::REMOVED_NODE
            .error("cannot remove the node answering this request; ask another member"));
    }
    ctx.state
        .rt
        .block_on(ctx.state.store.remove_member(&name))
        .map_err(|e| member_error(e, "node"))?;
    Ok(())
}

/// `POST /cluster/config/join`: this node joins the cluster that `hostname` belongs to.
/// Everything that can be refused is checked before this node's store is replaced; the
/// answer comes when the join is complete (the caller's ticket is this node's old one
/// and stops working with it).
fn join(ctx: &C<'_>) -> Result<Upid, ApiError> {
    let node = ctx.state;
    let hostname = ctx.params.need_str(&param::HOSTNAME)?.to_string();
    let fingerprint = ctx.params.need_str(&param::FINGERPRINT)?.to_string();
    let password = ctx.params.need_str(&param::PASSWORD)?.to_string();
    let pin = ferrox_client::pinned::parse_fingerprint(&fingerprint)
        .map_err(|e| param::FINGERPRINT.error(e.to_string()))?;
    let status = node.store.status();
    if status.members.len() > 1 || status.name.is_some() {
        return Err(ApiError::new(
            400,
            "this node is already part of a cluster (or has created one)",
        ));
    }
    if !node.guests.listing().is_empty() {
        return Err(ApiError::new(
            400,
            "this host already contains virtual guests - remove them before joining",
        ));
    }
    let address = if hostname.contains(':') && !hostname.starts_with('[') {
        hostname.clone()
    } else {
        format!("{hostname}:8006")
    };
    let agent = ferrox_client::pinned::tls_agent(Some(pin))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let remote = |e: ureq::Error| -> ApiError {
        match e {
            ureq::Error::Status(code, r) => ApiError::new(
                if code == 401 { 400 } else { code },
                format!("{hostname}: {} {}", code, r.status_text()),
            ),
            ureq::Error::Transport(t) => {
                let text = t.to_string();
                if text.contains("fingerprint") {
                    param::FINGERPRINT.error(format!(
                        "the certificate of {hostname} does not have fingerprint {fingerprint}"
                    ))
                } else {
                    param::HOSTNAME.error(format!("cannot reach {hostname}: {text}"))
                }
            }
        }
    };
    let login: Value = agent
        .post(&format!("https://{address}/api2/json/access/ticket"))
        .send_form(&[("username", "root@pam"), ("password", &password)])
        .map_err(|e| match e {
            ureq::Error::Status(401, _) => {
                param::PASSWORD.error(format!("authentication failure at {hostname}"))
            }
            other => remote(other),
        })?
        .into_json()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let ticket = login["data"]["ticket"].as_str().unwrap_or("").to_string();
    let csrf = login["data"]["CSRFPreventionToken"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let me = node.store.member().clone();
    let answer: Value = agent
        .post(&format!(
            "https://{address}/api2/json/cluster/config/nodes/{}",
            me.name
        ))
        .set("cookie", &format!("PVEAuthCookie={ticket}"))
        .set("csrfpreventiontoken", &csrf)
        .send_form(&[("address", &me.address), ("fingerprint", &me.fingerprint)])
        .map_err(|e| match e {
            ureq::Error::Status(code, r) => {
                let mut reason = r.status_text().to_string();
                // Parameter errors carry the detail in `errors` (e.g. the name is taken).
                if let Ok(body) = r.into_json::<Value>() {
                    if let Some(errors) = body["errors"].as_object() {
                        for (k, v) in errors {
                            reason.push_str(&format!(" {k}: {}", v.as_str().unwrap_or("")));
                        }
                    }
                }
                ApiError::new(code, format!("{hostname} refused the join: {reason}"))
            }
            other => remote(other),
        })?
        .into_json()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let grant: JoinGrant = serde_json::from_value(answer["data"].clone())
        .map_err(|e| ApiError::internal(format!("join grant from {hostname}: {e}")))?;
    let caller = ctx.caller()?.auth_id();
    let store = std::sync::Arc::clone(&node.store);
    let rt = node.rt.clone();
    let weak = std::sync::Arc::downgrade(node);
    let id = grant.cluster_name.clone();
    let upid = node.tasks.spawn("clusterjoin", &id, &caller, move |log| {
        log.log(format!(
            "joining cluster '{}' as node id {} through {hostname}",
            grant.cluster_name, grant.id
        ));
        rt.block_on(store.join(&grant, JOIN_TIMEOUT))
            .map_err(|e| e.to_string())?;
        log.log("replicated the cluster configuration");
        if let Some(node) = weak.upgrade() {
            node.after_join()?;
        }
        log.log("joined");
        Ok(())
    })?;
    // The join answers when it is done (Proxmox VE's join also blocks).
    match node.tasks.wait(&upid, Duration::from_secs(24 * 3600))? {
        Some(ferrox_api::TaskOutcome::Ok) => {}
        Some(other) => {
            return Err(ApiError::internal(format!("join failed: {other:?}")));
        }
        None => return Err(ApiError::internal("join failed: still running")),
    }
    Ok(Upid(upid))
}

fn list_locks(ctx: &C<'_>) -> Result<Vec<ClusterLock>, ApiError> {
    let locks = ctx.state.store.locks().into_iter();
    Ok(locks
        .map(|(name, owner, expires)| ClusterLock {
            name,
            owner,
            expires: expires / 1000,
        })
        .collect())
}

/// Takes or renews a cluster lock (a Ferrox extension; HA uses the same locks). Needs
/// quorum: a node cut off from the majority gets an error, never the lock.
fn acquire_lock(ctx: &C<'_>) -> Result<LockGrant, ApiError> {
    let node = ctx.state;
    let name = ctx.params.need_str(&param::NAME)?;
    let owner = ctx
        .params
        .str(&param::OWNER)
        .unwrap_or(&node.opts.node_name);
    let lease = Duration::from_secs(ctx.params.int(&param::LEASE).unwrap_or(120) as u64);
    let outcome = node
        .rt
        .block_on(node.store.lock(name, owner, lease))
        .map_err(cluster::store_error)?;
    Ok(match outcome {
        Ok(expires) => LockGrant {
            granted: 1,
            owner: owner.to_string(),
            expires: expires / 1000,
        },
        Err((holder, expires)) => LockGrant {
            granted: 0,
            owner: holder,
            expires: expires / 1000,
        },
    })
}

fn release_lock(ctx: &C<'_>) -> Result<LockRelease, ApiError> {
    let node = ctx.state;
    let name = ctx.params.need_str(&param::NAME)?;
    let owner = ctx
        .params
        .str(&param::OWNER)
        .unwrap_or(&node.opts.node_name);
    let released = node
        .rt
        .block_on(node.store.unlock(name, owner))
        .map_err(cluster::store_error)?;
    Ok(LockRelease {
        released: u8::from(released),
    })
}

/// Keys of `datacenter.cfg` this API changes; `crs`, `ha` and `bwlimit` are property strings.
const OPTIONS: &[Param] = &[
    param::CRS,
    param::HA,
    param::KEYBOARD,
    param::LANGUAGE,
    param::MAX_WORKERS,
    param::MIGRATION,
    param::BWLIMIT,
    param::DESCRIPTION,
];

fn read_options(node: &Node) -> (cluster::Document, Vec<(String, String)>) {
    let doc = node.tree.load("datacenter.cfg");
    let pairs = doc
        .text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty() && !k.starts_with('#'))
        .collect();
    (doc, pairs)
}

/// What `GET /cluster/options` shows a user without `Sys.Audit` on `/` (Proxmox VE: what
/// the UI needs to show tags).
const PUBLIC_OPTIONS: &[&str] = &["tag-style", "user-tag-access", "registered-tags", "console"];

fn get_options(ctx: &C<'_>) -> Result<ConfigMap, ApiError> {
    let full = ctx.has("/", &["Sys.Audit"], false);
    let mut out = ConfigMap::new();
    for (k, v) in read_options(ctx.state).1 {
        if !full && !PUBLIC_OPTIONS.contains(&k.as_str()) {
            continue;
        }
        let value = if matches!(k.as_str(), "crs" | "ha" | "bwlimit") {
            match ferrox_types::PropertyString::parse(&v) {
                Ok(p) => {
                    let default_key = match k.as_str() {
                        "crs" => "ha",
                        "ha" => "shutdown_policy",
                        _ => "default",
                    };
                    let obj: serde_json::Map<String, Value> = p
                        .items
                        .into_iter()
                        .map(|(key, val)| (key.unwrap_or_else(|| default_key.into()), json!(val)))
                        .collect();
                    Value::Object(obj)
                }
                Err(_) => json!(v),
            }
        } else {
            json!(v)
        };
        out.insert(k, value);
    }
    Ok(out)
}

/// `PUT /cluster/options`: the new `datacenter.cfg` is checked by the one parser HA uses
/// (a bad `crs` value names its key) and written with compare-and-set.
fn set_options(ctx: &C<'_>) -> Result<(), ApiError> {
    let node = ctx.state;
    let (old, mut pairs) = read_options(node);
    let deletes: Vec<String> = ctx
        .params
        .str(&param::DELETE)
        .map(|d| {
            d.split([',', ' ', ';'])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    for key in &deletes {
        if !OPTIONS.iter().any(|o| o.name == key) {
            return Err(param::DELETE.error(format!("unknown option '{key}'")));
        }
        pairs.retain(|(k, _)| k != key);
    }
    for option in OPTIONS {
        if let Some(v) = ctx.params.str(option) {
            match pairs.iter_mut().find(|(k, _)| k == option.name) {
                Some(p) => p.1 = v.to_string(),
                None => pairs.push((option.name.to_string(), v.to_string())),
            }
        }
    }
    let text: String = pairs.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    ferrox_types::DatacenterConfig::parse_cfg(&text).map_err(|e| {
        let key = e.field.split('.').next().unwrap_or("crs").to_string();
        ApiError::param(&key, e.to_string())
    })?;
    node.tree.save(&old, &text)?;
    Ok(())
}

fn cluster_index(_: &C<'_>) -> Result<Vec<Named>, ApiError> {
    let dirs = [
        "log",
        "options",
        "resources",
        "status",
        "tasks",
        "nextid",
        "ha",
        "config",
        "backup",
        "backup-info",
        "replication",
        "metrics",
        "sdn",
    ];
    Ok(dirs
        .iter()
        .map(|d| Named {
            name: d.to_string(),
        })
        .collect())
}

/// No QDevice can be configured: Proxmox VE answers an empty object then.
fn qdevice(_: &C<'_>) -> Result<ConfigMap, ApiError> {
    Ok(ConfigMap::new())
}

/// Storage replication needs ZFS; no job can exist.
fn replication(_: &C<'_>) -> Result<Vec<ferrox_api_types::nodes::ReplicationJob>, ApiError> {
    Ok(Vec::new())
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const NAME: Param = Param::required("name", STRING, "Lock name.");
    pub const OWNER: Param = Param::optional("owner", STRING, "Holder (default: this node).");
    pub const CRS: Param = Param::optional(
        "crs", STRING, "Cluster resource scheduling: ha=basic|static|dynamic, ha-rebalance-on-start, ha-auto-rebalance[-threshold|-method|-hold-duration|-margin]; Ferrox: balance, balance-threshold, balance-interval (automatic balancing of guests HA does not manage).");
    pub const HA: Param = Param::optional(
        "ha",
        STRING,
        "shutdown_policy=conditional|freeze|failover|migrate.",
    );
    pub const KEYBOARD: Param = Param::optional("keyboard", STRING, "Default keyboard layout.");
    pub const LANGUAGE: Param = Param::optional("language", STRING, "Default GUI language.");
    pub const MAX_WORKERS: Param = Param::optional(
        "max_workers",
        ferrox_api::schema::int(Some(1), Some(64)),
        "How many service actions an HA LRM (and a bulk action) runs at once (default 4).",
    );
    pub const MIGRATION: Param = Param::optional("migration", STRING, "Migration settings.");
    pub const BWLIMIT: Param = Param::optional(
        "bwlimit",
        STRING,
        "Bandwidth limits in KiB/s: default, migration (used by migrations that name none, HA's too), clone, move, restore.",
    );
    pub const DESCRIPTION: Param =
        Param::optional("description", STRING, "Datacenter description.");
    pub const DELETE: Param = Param::optional("delete", STRING, "Options to delete.");
    pub const LEASE: Param = Param::optional(
        "lease",
        ferrox_api::schema::int(Some(1), Some(86400)),
        "Lease in seconds (default 120).",
    );
    pub const CLUSTERNAME: Param =
        Param::required("clustername", STRING, "The name of the cluster.");
    pub const LINK0: Param =
        Param::optional("link0", STRING, "Address for cluster traffic (ignored).");
    pub const JOIN_NODE: Param = Param::optional(
        "node",
        ParamType::Node,
        "Node to describe (default: this one).",
    );
    pub const MEMBER_NODE: Param =
        Param::required("node", ParamType::Node, "The joining node's name.");
    pub const REMOVED_NODE: Param = Param::required("node", ParamType::Node, "The node to remove.");
    pub const HOSTNAME: Param = Param::required(
        "hostname",
        STRING,
        "Address (host or host:port) of a cluster member.",
    );
    pub const FINGERPRINT: Param = Param::required(
        "fingerprint",
        STRING,
        "SHA-256 fingerprint of that member's certificate.",
    );
    pub const MEMBER_FINGERPRINT: Param =
        Param::required("fingerprint", STRING, "Its certificate's fingerprint.");
    pub const PASSWORD: Param =
        Param::required("password", STRING, "root@pam's password on that member.");
    pub const FORCE: Param = Param::optional("force", ferrox_api::schema::BOOL, "Ignored.");
    pub const ADDRESS: Param = Param::required("address", STRING, "host:port its API listens on.");
}

pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let lock_params = || vec![param::NAME, param::OWNER];
    vec![
        Endpoint::new(
            Get,
            "/cluster",
            "Cluster index.",
            Permission::Authenticated,
            cluster_index,
        ),
        Endpoint::new(
            Get,
            "/cluster/config/qdevice",
            "QDevice status (none configured).",
            AUDIT,
            qdevice,
        ),
        Endpoint::new(
            Get,
            "/cluster/replication",
            "Storage replication jobs.",
            Permission::Handler("any user; only jobs of guests with VM.Audit"),
            replication,
        ),
        Endpoint::new(
            Get,
            "/cluster/options",
            "Datacenter options (datacenter.cfg); all of them with Sys.Audit on /, else the tag settings only.",
            Permission::Handler("any user; the full set with Sys.Audit on /"),
            get_options,
        ),
        Endpoint::new(
            Put,
            "/cluster/options",
            "Change datacenter options, e.g. crs 'ha=dynamic,ha-auto-rebalance=1'.",
            MODIFY,
            set_options,
        )
        .params([OPTIONS, &[param::DELETE]].concat()),
        Endpoint::new(
            Get,
            "/cluster/locks",
            "Cluster locks held now (Ferrox extension).",
            AUDIT,
            list_locks,
        ),
        Endpoint::new(
            Post,
            "/cluster/locks/{name}",
            "Take or renew a cluster lock (Ferrox extension).",
            Permission::Root,
            acquire_lock,
        )
        .params(
            [
                lock_params(),
                vec![param::LEASE],
            ]
            .concat(),
        ),
        Endpoint::new(
            Delete,
            "/cluster/locks/{name}",
            "Release a cluster lock held by owner (Ferrox extension).",
            Permission::Root,
            release_lock,
        )
        .params(lock_params()),
        Endpoint::new(
            Get,
            "/cluster/status",
            "Cluster and node status.",
            AUDIT,
            cluster_status,
        ),
        Endpoint::new(
            Post,
            "/cluster/config",
            "Create a cluster from this node.",
            Permission::Root,
            cluster_create,
        )
        .params(vec![
            param::CLUSTERNAME,
            param::LINK0,
        ]),
        Endpoint::new(
            Get,
            "/cluster/config/join",
            "Information another node needs to join this cluster.",
            AUDIT,
            join_info,
        )
        .params(vec![param::JOIN_NODE]),
        Endpoint::new(
            Post,
            "/cluster/config/join",
            "Join this node to an existing cluster.",
            Permission::Root,
            join,
        )
        .params(vec![
            param::HOSTNAME,
            param::FINGERPRINT,
            param::PASSWORD,
            param::LINK0,
            param::FORCE,
        ]),
        Endpoint::new(
            Get,
            "/cluster/config/nodes",
            "Cluster members.",
            AUDIT,
            list_members,
        ),
        Endpoint::new(
            Post,
            "/cluster/config/nodes/{node}",
            "Admit a node (called by the joining node).",
            Permission::Root,
            add_member,
        )
        .params(vec![
            param::MEMBER_NODE,
            param::ADDRESS,
            param::MEMBER_FINGERPRINT,
        ]),
        Endpoint::new(
            Delete,
            "/cluster/config/nodes/{node}",
            "Remove a node from the cluster.",
            Permission::Root,
            remove_member,
        )
        .params(vec![param::REMOVED_NODE]),
    ]
}
