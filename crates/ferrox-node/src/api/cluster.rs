//! The cluster endpoints: `cluster/status`, `cluster/config` (create), `cluster/config/join`
//! (information and joining), `cluster/config/nodes` (list, add, remove), and the
//! cluster-wide views other endpoints need (members, guests of every node).

use crate::cluster::other_members;
use crate::guests::{config_dir, parse_config_path};
use crate::{cluster, Node};
use ferrox_api::schema::{Param, ParamType, STRING};
use ferrox_api::{ApiError, Ctx, Endpoint, Method, Permission, Reply, Returns};
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

/// What `/cluster/resources` shows for a node that does not answer.
pub fn offline_resources(node: &Node, name: &str) -> Vec<Value> {
    let mut out = vec![json!({
        "id": format!("node/{name}"), "type": "node", "node": name,
        "status": "offline", "level": "",
    })];
    for (path, entry) in node.tree.list(&config_dir(name)) {
        let Some((_, vmid)) = parse_config_path(&path) else {
            continue;
        };
        let Ok(cfg) = ferrox_types::GuestConfig::parse(&entry.data) else {
            continue;
        };
        let st = crate::guests::GuestStatic::of(vmid, &cfg);
        out.push(json!({
            "id": format!("qemu/{vmid}"), "type": "qemu", "vmid": vmid, "node": name,
            "status": "unknown", "name": st.name, "maxcpu": st.cpus, "maxmem": st.maxmem,
            "maxdisk": st.maxdisk, "template": u8::from(st.template),
        }));
    }
    out
}

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

fn cluster_status(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let node = ctx.state;
    let status = node.store.status();
    let reachable = reachability(node);
    let leader_name = status
        .leader
        .and_then(|l| status.members.iter().find(|m| m.id == l))
        .map(|m| m.member.name.clone());
    let mut out = Vec::new();
    if let Some(name) = &status.name {
        out.push(json!({
            "type": "cluster", "id": "cluster", "name": name,
            "nodes": status.members.len(), "quorate": u8::from(status.quorate),
            "version": status.term, "leader": leader_name,
        }));
    }
    for m in &status.members {
        let local = m.member.name == node.opts.node_name;
        let online = local
            || reachable
                .iter()
                .any(|(r, up)| r.name == m.member.name && *up);
        out.push(json!({
            "type": "node", "id": format!("node/{}", m.member.name), "name": m.member.name,
            "ip": host_of(&m.member.address), "online": u8::from(online), "local": u8::from(local),
            "nodeid": m.id, "level": "", "voter": u8::from(m.voter),
        }));
    }
    Ok(json!(out).into())
}

fn cluster_create(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let name = ctx.params.need_str("clustername")?.to_string();
    if name.is_empty()
        || name.len() > 15
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::param(
            "clustername",
            "value does not match the regex pattern (1-15 of A-Z a-z 0-9 - _)",
        ));
    }
    let node = ctx.state;
    if let Some(existing) = node.store.cluster_name() {
        return Err(ApiError::param(
            "clustername",
            format!("this node is already in cluster '{existing}'"),
        ));
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
    Ok(json!(upid).into())
}

fn join_info(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let node = ctx.state;
    let status = node.store.status();
    let name = status
        .name
        .clone()
        .ok_or_else(|| ApiError::new(400, "node is not in a cluster, no join info available!"))?;
    let nodelist: Vec<Value> = status
        .members
        .iter()
        .map(|m| {
            json!({
                "name": m.member.name, "nodeid": m.id.to_string(), "pve_addr": host_of(&m.member.address),
                "pve_fp": m.member.fingerprint, "ring0_addr": host_of(&m.member.address),
                "quorum_votes": "1", "address": m.member.address,
            })
        })
        .collect();
    Ok(json!({
        "nodelist": nodelist,
        "preferred_node": node.opts.node_name,
        "totem": {"cluster_name": name, "version": "2"},
        "config_digest": node.tree.get(ferrox_store::store::CLUSTER_FILE)
            .map(|e| ferrox_store::digest(&e.data)).unwrap_or_default(),
    })
    .into())
}

fn list_members(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let status = ctx.state.store.status();
    let out: Vec<Value> = status
        .members
        .iter()
        .map(|m| {
            json!({
                "node": m.member.name, "name": m.member.name, "nodeid": m.id.to_string(),
                "pve_addr": host_of(&m.member.address), "pve_fp": m.member.fingerprint,
                "ring0_addr": host_of(&m.member.address), "quorum_votes": "1",
                "address": m.member.address,
            })
        })
        .collect();
    Ok(json!(out).into())
}

/// Membership refusals (unknown node, name taken, last member) are about the `node`.
fn member_error(e: ferrox_store::StoreError, field: &str) -> ApiError {
    match e {
        ferrox_store::StoreError::Invalid(m) => ApiError::param(field, m),
        other => cluster::store_error(other),
    }
}

/// `POST /cluster/config/nodes/{node}`: a joining node asks to be admitted.
fn add_member(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let member = Member {
        name: ctx.params.need_str("node")?.to_string(),
        address: ctx.params.need_str("address")?.to_string(),
        fingerprint: ctx.params.need_str("fingerprint")?.to_string(),
    };
    ferrox_client::pinned::parse_fingerprint(&member.fingerprint)
        .map_err(|e| ApiError::param("fingerprint", e.to_string()))?;
    let grant = ctx
        .state
        .rt
        .block_on(ctx.state.store.add_member(member))
        .map_err(|e| member_error(e, "node"))?;
    Ok(serde_json::to_value(grant)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .into())
}

fn remove_member(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let name = ctx.params.need_str("node")?.to_string();
    if name == ctx.state.opts.node_name {
        return Err(ApiError::param(
            "node",
            "cannot remove the node answering this request; ask another member",
        ));
    }
    ctx.state
        .rt
        .block_on(ctx.state.store.remove_member(&name))
        .map_err(|e| member_error(e, "node"))?;
    Ok(Value::Null.into())
}

/// `POST /cluster/config/join`: this node joins the cluster that `hostname` belongs to.
/// Everything that can be refused is checked before this node's store is replaced; the
/// answer comes when the join is complete (the caller's ticket is this node's old one
/// and stops working with it).
fn join(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let node = ctx.state;
    let hostname = ctx.params.need_str("hostname")?.to_string();
    let fingerprint = ctx.params.need_str("fingerprint")?.to_string();
    let password = ctx.params.need_str("password")?.to_string();
    let pin = ferrox_client::pinned::parse_fingerprint(&fingerprint)
        .map_err(|e| ApiError::param("fingerprint", e.to_string()))?;
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
                    ApiError::param(
                        "fingerprint",
                        format!(
                            "the certificate of {hostname} does not have fingerprint {fingerprint}"
                        ),
                    )
                } else {
                    ApiError::param("hostname", format!("cannot reach {hostname}: {text}"))
                }
            }
        }
    };
    let login: Value = agent
        .post(&format!("https://{address}/api2/json/access/ticket"))
        .send_form(&[("username", "root@pam"), ("password", &password)])
        .map_err(|e| match e {
            ureq::Error::Status(401, _) => {
                ApiError::param("password", format!("authentication failure at {hostname}"))
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
    Ok(json!(upid).into())
}

fn list_locks(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let locks: Vec<Value> = ctx
        .state
        .store
        .locks()
        .into_iter()
        .map(|(name, owner, expires)| json!({"name": name, "owner": owner, "expires": expires / 1000}))
        .collect();
    Ok(json!(locks).into())
}

/// Takes or renews a cluster lock (a Ferrox extension; HA uses the same locks). Needs
/// quorum: a node cut off from the majority gets an error, never the lock.
fn acquire_lock(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let node = ctx.state;
    let name = ctx.params.need_str("name")?;
    let owner = ctx.params.str("owner").unwrap_or(&node.opts.node_name);
    let lease = Duration::from_secs(ctx.params.int("lease").unwrap_or(120) as u64);
    let outcome = node
        .rt
        .block_on(node.store.lock(name, owner, lease))
        .map_err(cluster::store_error)?;
    Ok(match outcome {
        Ok(expires) => json!({"granted": 1, "owner": owner, "expires": expires / 1000}),
        Err((holder, expires)) => json!({"granted": 0, "owner": holder, "expires": expires / 1000}),
    }
    .into())
}

fn release_lock(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let node = ctx.state;
    let name = ctx.params.need_str("name")?;
    let owner = ctx.params.str("owner").unwrap_or(&node.opts.node_name);
    let released = node
        .rt
        .block_on(node.store.unlock(name, owner))
        .map_err(cluster::store_error)?;
    Ok(json!({"released": u8::from(released)}).into())
}

/// Keys of `datacenter.cfg` this API changes; `crs` and `ha` are property strings.
const OPTIONS: &[&str] = &[
    "crs",
    "ha",
    "keyboard",
    "language",
    "migration",
    "bwlimit",
    "description",
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

fn get_options(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let full = ctx.has("/", &["Sys.Audit"], false);
    let mut out = serde_json::Map::new();
    for (k, v) in read_options(ctx.state).1 {
        if !full && !PUBLIC_OPTIONS.contains(&k.as_str()) {
            continue;
        }
        let value = if matches!(k.as_str(), "crs" | "ha") {
            match ferrox_types::PropertyString::parse(&v) {
                Ok(p) => {
                    let default_key = if k == "crs" { "ha" } else { "shutdown_policy" };
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
    Ok(Value::Object(out).into())
}

/// `PUT /cluster/options`: the new `datacenter.cfg` is checked by the one parser HA uses
/// (a bad `crs` value names its key) and written with compare-and-set.
fn set_options(ctx: &C<'_>) -> Result<Reply, ApiError> {
    let node = ctx.state;
    let (old, mut pairs) = read_options(node);
    let deletes: Vec<String> = ctx
        .params
        .str("delete")
        .map(|d| {
            d.split([',', ' ', ';'])
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    for key in &deletes {
        if !OPTIONS.contains(&key.as_str()) {
            return Err(ApiError::param("delete", format!("unknown option '{key}'")));
        }
        pairs.retain(|(k, _)| k != key);
    }
    for key in OPTIONS {
        if let Some(v) = ctx.params.str(key) {
            match pairs.iter_mut().find(|(k, _)| k == key) {
                Some(p) => p.1 = v.to_string(),
                None => pairs.push((key.to_string(), v.to_string())),
            }
        }
    }
    let text: String = pairs.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    ferrox_types::DatacenterConfig::parse_cfg(&text).map_err(|e| {
        let key = e.field.split('.').next().unwrap_or("crs").to_string();
        ApiError::param(&key, e.to_string())
    })?;
    node.tree.save(&old, &text)?;
    Ok(Value::Null.into())
}

pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let lock_params = || {
        vec![
            Param::required("name", STRING, "Lock name."),
            Param::optional("owner", STRING, "Holder (default: this node)."),
        ]
    };
    vec![
        Endpoint::new(
            Get,
            "/cluster/options",
            "Datacenter options (datacenter.cfg); all of them with Sys.Audit on /, else the tag settings only.",
            Permission::Handler("any user; the full set with Sys.Audit on /"),
            Returns::Object,
            get_options,
        ),
        Endpoint::new(
            Put,
            "/cluster/options",
            "Change datacenter options, e.g. crs 'ha=dynamic,ha-auto-rebalance=1'.",
            MODIFY,
            Returns::Null,
            set_options,
        )
        .params(vec![
            Param::optional("crs", STRING, "Cluster resource scheduling: ha=basic|static|dynamic, ha-rebalance-on-start, ha-auto-rebalance[-threshold|-method|-hold-duration|-margin]."),
            Param::optional("ha", STRING, "shutdown_policy=conditional|freeze|failover|migrate."),
            Param::optional("keyboard", STRING, "Default keyboard layout."),
            Param::optional("language", STRING, "Default GUI language."),
            Param::optional("migration", STRING, "Migration settings."),
            Param::optional("bwlimit", STRING, "Bandwidth limits."),
            Param::optional("description", STRING, "Datacenter description."),
            Param::optional("delete", STRING, "Options to delete."),
        ]),
        Endpoint::new(
            Get,
            "/cluster/locks",
            "Cluster locks held now (Ferrox extension).",
            AUDIT,
            Returns::Array,
            list_locks,
        ),
        Endpoint::new(
            Post,
            "/cluster/locks/{name}",
            "Take or renew a cluster lock (Ferrox extension).",
            Permission::Root,
            Returns::Object,
            acquire_lock,
        )
        .params(
            [
                lock_params(),
                vec![Param::optional(
                    "lease",
                    ferrox_api::schema::int(Some(1), Some(86400)),
                    "Lease in seconds (default 120).",
                )],
            ]
            .concat(),
        ),
        Endpoint::new(
            Delete,
            "/cluster/locks/{name}",
            "Release a cluster lock held by owner (Ferrox extension).",
            Permission::Root,
            Returns::Object,
            release_lock,
        )
        .params(lock_params()),
        Endpoint::new(
            Get,
            "/cluster/status",
            "Cluster and node status.",
            AUDIT,
            Returns::Array,
            cluster_status,
        ),
        Endpoint::new(
            Post,
            "/cluster/config",
            "Create a cluster from this node.",
            Permission::Root,
            Returns::Task,
            cluster_create,
        )
        .params(vec![
            Param::required("clustername", STRING, "The name of the cluster."),
            Param::optional("link0", STRING, "Address for cluster traffic (ignored)."),
        ]),
        Endpoint::new(
            Get,
            "/cluster/config/join",
            "Information another node needs to join this cluster.",
            AUDIT,
            Returns::Object,
            join_info,
        )
        .params(vec![Param::optional(
            "node",
            ParamType::Node,
            "Node to describe (default: this one).",
        )]),
        Endpoint::new(
            Post,
            "/cluster/config/join",
            "Join this node to an existing cluster.",
            Permission::Root,
            Returns::Task,
            join,
        )
        .params(vec![
            Param::required(
                "hostname",
                STRING,
                "Address (host or host:port) of a cluster member.",
            ),
            Param::required(
                "fingerprint",
                STRING,
                "SHA-256 fingerprint of that member's certificate.",
            ),
            Param::required("password", STRING, "root@pam's password on that member."),
            Param::optional("link0", STRING, "Address for cluster traffic (ignored)."),
            Param::optional("force", ferrox_api::schema::BOOL, "Ignored."),
        ]),
        Endpoint::new(
            Get,
            "/cluster/config/nodes",
            "Cluster members.",
            AUDIT,
            Returns::Array,
            list_members,
        ),
        Endpoint::new(
            Post,
            "/cluster/config/nodes/{node}",
            "Admit a node (called by the joining node).",
            Permission::Root,
            Returns::Object,
            add_member,
        )
        .params(vec![
            Param::required("node", ParamType::Node, "The joining node's name."),
            Param::required("address", STRING, "host:port its API listens on."),
            Param::required("fingerprint", STRING, "Its certificate's fingerprint."),
        ]),
        Endpoint::new(
            Delete,
            "/cluster/config/nodes/{node}",
            "Remove a node from the cluster.",
            Permission::Root,
            Returns::Null,
            remove_member,
        )
        .params(vec![Param::required(
            "node",
            ParamType::Node,
            "The node to remove.",
        )]),
    ]
}
