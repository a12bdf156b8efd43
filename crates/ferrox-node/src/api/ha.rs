//! `cluster/ha/*`: HA resources (CRUD on `ha/resources.cfg`, compare-and-set through the
//! store) and the HA status views, as Proxmox VE answers them.

use crate::cluster::{store_error, Document};
use crate::ha::{CRM_COMMANDS, HISTORY, MANAGER_STATUS, RESOURCES, RULES};
use crate::Node;
use ferrox_api::schema::{int, Param, ParamType, BOOL, STRING};
use ferrox_api::{ApiError, Ctx, Endpoint, Method, Permission};

use ferrox_api_types::ha::{
    HaHistoryEntry, HaManagerStatus, HaMoveRequested, HaQuorum, HaResource as HaResourceRow,
    HaRule, HaStatusEntry,
};
use ferrox_types::rules::RuleKind;
use ferrox_types::{HaResource, HaResources, LrmStatus, ManagerStatus, RequestState, RulesConfig};
use serde_json::{json, Value};

type C<'a> = Ctx<'a, Node>;

const AUDIT: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Audit"],
    any: false,
};
const CONSOLE: Permission = Permission::Privs {
    path: "/",
    privs: &["Sys.Console"],
    any: false,
};

/// `100` and `vm:100` name the same resource (Ansible sends the bare id).
fn sid(ctx: &C<'_>) -> Result<String, ApiError> {
    normalize_sid(ctx.params.need_str(&param::SID)?, "sid")
}

fn normalize_sid(raw: &str, field: &str) -> Result<String, ApiError> {
    let (kind, id) = raw.split_once(':').unwrap_or(("vm", raw));
    if kind != "vm" || id.parse::<u32>().is_err() {
        return Err(ApiError::param(
            field,
            format!("'{raw}' is not a VM resource id (vm:<vmid>)"),
        ));
    }
    Ok(format!("vm:{id}"))
}

fn load(node: &Node) -> Result<(Document, HaResources), ApiError> {
    let doc = node.tree.load(RESOURCES);
    let cfg = HaResources::parse(&doc.text)
        .map_err(|e| ApiError::internal(format!("ha/resources.cfg: {e}")))?;
    Ok((doc, cfg))
}

fn save(node: &Node, doc: &Document, cfg: &HaResources) -> Result<(), ApiError> {
    node.tree.save(doc, &cfg.to_text()).map(drop)
}

fn entry(r: &HaResource, digest: &str) -> HaResourceRow {
    HaResourceRow {
        sid: r.sid.clone(),
        kind: r.sid.split(':').next().unwrap_or("vm").to_string(),
        state: r.state.as_str().to_string(),
        max_restart: r.max_restart,
        max_relocate: r.max_relocate,
        failback: u8::from(r.failback),
        digest: digest.to_string(),
        comment: r.comment.clone(),
        group: r.group.clone(),
    }
}

fn apply_params(ctx: &C<'_>, r: &mut HaResource) -> Result<(), ApiError> {
    if let Some(s) = ctx.params.str(&param::STATE) {
        r.state = RequestState::parse_with_alias(s)
            .ok_or_else(|| param::STATE.error(format!("unknown state '{s}'")))?;
    }
    if let Some(n) = ctx.params.int(&param::MAX_RESTART) {
        r.max_restart = n as u32;
    }
    if let Some(n) = ctx.params.int(&param::MAX_RELOCATE) {
        r.max_relocate = n as u32;
    }
    if let Some(b) = ctx.params.bool(&param::FAILBACK) {
        r.failback = b;
    }
    if let Some(c) = ctx.params.str(&param::COMMENT) {
        r.comment = (!c.is_empty()).then(|| c.to_string());
    }
    if let Some(g) = ctx.params.str(&param::GROUP) {
        r.group = (!g.is_empty()).then(|| g.to_string());
    }
    Ok(())
}

fn list(ctx: &C<'_>) -> Result<Vec<HaResourceRow>, ApiError> {
    let (text, cfg) = load(ctx.state)?;
    let digest = text.digest();
    Ok(cfg.resources.values().map(|r| entry(r, &digest)).collect())
}

fn read(ctx: &C<'_>) -> Result<HaResourceRow, ApiError> {
    let sid = sid(ctx)?;
    let (text, cfg) = load(ctx.state)?;
    let r = cfg
        .resources
        .get(&sid)
        .ok_or_else(|| ApiError::new(500, format!("no such resource '{sid}'")))?;
    Ok(entry(r, &text.digest()))
}

fn create(ctx: &C<'_>) -> Result<(), ApiError> {
    let sid = sid(ctx)?;
    let vmid: u32 = sid[3..].parse().unwrap_or(0);
    if crate::cluster::vmid_owner(ctx.state, vmid).is_none() {
        return Err(param::SID.error(format!("VM {vmid} does not exist")));
    }
    let (text, mut cfg) = load(ctx.state)?;
    if cfg.resources.contains_key(&sid) {
        return Err(param::SID.error(format!("resource ID '{sid}' already defined")));
    }
    let mut r = HaResource::new(&sid);
    apply_params(ctx, &mut r)?;
    cfg.resources.insert(sid, r);
    save(ctx.state, &text, &cfg)?;
    Ok(())
}

fn update(ctx: &C<'_>) -> Result<(), ApiError> {
    let sid = sid(ctx)?;
    let (text, mut cfg) = load(ctx.state)?;
    text.check_digest(ctx.params.str(&param::DIGEST))?;
    let r = cfg
        .resources
        .get_mut(&sid)
        .ok_or_else(|| param::SID.error(format!("no such resource '{sid}'")))?;
    apply_params(ctx, r)?;
    save(ctx.state, &text, &cfg)?;
    Ok(())
}

fn remove(ctx: &C<'_>) -> Result<(), ApiError> {
    let sid = sid(ctx)?;
    let (text, mut cfg) = load(ctx.state)?;
    if cfg.resources.remove(&sid).is_none() {
        return Err(param::SID.error(format!("no such resource '{sid}'")));
    }
    save(ctx.state, &text, &cfg)?;
    Ok(())
}

/// Appends a command to `ha/crm_commands` for the master's next round (compare-and-set,
/// retried when another command arrived meanwhile).
pub fn queue_crm_command(node: &Node, command: &str) -> Result<(), ApiError> {
    for _ in 0..10 {
        let doc = node.tree.load(CRM_COMMANDS);
        let next = format!("{}{command}\n", doc.text);
        match node.tree.put(CRM_COMMANDS, &next, doc.expect()) {
            Ok(_) => return Ok(()),
            Err(ferrox_store::StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(ApiError::internal(
        "ha/crm_commands kept changing; try again",
    ))
}

/// Whether guest `vmid` is HA-managed.
pub fn is_managed(node: &Node, vmid: u32) -> bool {
    load(node).is_ok_and(|(_, cfg)| cfg.resources.contains_key(&format!("vm:{vmid}")))
}

/// Sets the request state of an HA-managed guest (`hastart`/`hastop`).
pub fn request_state(node: &Node, vmid: u32, state: RequestState) -> Result<(), ApiError> {
    let sid = format!("vm:{vmid}");
    let (text, mut cfg) = load(node)?;
    let r = cfg
        .resources
        .get_mut(&sid)
        .ok_or_else(|| ApiError::new(500, format!("no such resource '{sid}'")))?;
    r.state = state;
    save(node, &text, &cfg)
}

fn member(ctx: &C<'_>, name: &str) -> Result<(), ApiError> {
    if ctx.state.store.status().member_named(name).is_none() {
        return Err(param::TARGET_NODE.error(format!("no such cluster node '{name}'")));
    }
    Ok(())
}

fn move_resource(ctx: &C<'_>, task: &str) -> Result<HaMoveRequested, ApiError> {
    let sid = sid(ctx)?;
    let target = ctx.params.need_str(&param::TARGET_NODE)?;
    member(ctx, target)?;
    let (_, cfg) = load(ctx.state)?;
    if !cfg.resources.contains_key(&sid) {
        return Err(param::SID.error(format!("no such resource '{sid}'")));
    }
    if let Some(reason) = cpu_refusal(ctx.state, &sid, target, task == "migrate")? {
        return Err(param::TARGET_NODE.error(reason));
    }
    queue_crm_command(ctx.state, &format!("{task} {sid} {target}"))?;
    Ok(HaMoveRequested {
        sid,
        requested_node: target.to_string(),
    })
}

/// Why `target` cannot run the CPU model of guest `sid` (the CRM would refuse the move
/// too; answering now spares the caller a command that only shows in the HA log). A live
/// migration starts from the node that owns the guest.
fn cpu_refusal(
    node: &Node,
    sid: &str,
    target: &str,
    live: bool,
) -> Result<Option<String>, ApiError> {
    let Some(vmid) = sid.strip_prefix("vm:").and_then(|v| v.parse().ok()) else {
        return Ok(None);
    };
    let Some(owner) = crate::cluster::vmid_owner(node, vmid) else {
        return Ok(None);
    };
    let Some(entry) = node.tree.get(&crate::guests::config_path(&owner, vmid)) else {
        return Ok(None);
    };
    let Ok(config) = ferrox_types::GuestConfig::parse(&entry.data) else {
        return Ok(None);
    };
    let live_from = live.then_some(owner.as_str());
    Ok(node
        .cpu_refusals(&config, live_from)?
        .remove(target)
        .map(|r| r.reason))
}

fn migrate(ctx: &C<'_>) -> Result<HaMoveRequested, ApiError> {
    move_resource(ctx, "migrate")
}

fn relocate(ctx: &C<'_>) -> Result<HaMoveRequested, ApiError> {
    move_resource(ctx, "relocate")
}

/// `ha-manager crm-command ...` as an API call (a Ferrox extension): node maintenance,
/// disarm/arm, stop with timeout; the words are those of the CLI.
fn crm_command(ctx: &C<'_>) -> Result<(), ApiError> {
    let text = ctx.params.need_str(&param::COMMAND)?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let queued = match words.as_slice() {
        ["node-maintenance", action @ ("enable" | "disable"), node] => {
            member(ctx, node)?;
            format!("{action}-node-maintenance {node}")
        }
        ["disarm-ha", mode @ ("freeze" | "ignore")] => format!("disarm-ha {mode}"),
        ["arm-ha"] => "arm-ha".to_string(),
        [task @ ("migrate" | "relocate"), sid, node] => {
            member(ctx, node)?;
            format!("{task} {} {node}", normalize_sid(sid, "command")?)
        }
        ["stop", sid, timeout] if timeout.parse::<u32>().is_ok() => {
            format!("stop {} {timeout}", normalize_sid(sid, "command")?)
        }
        _ => {
            return Err(param::COMMAND.error(format!(
                    "'{text}' is not one of: node-maintenance enable|disable NODE, disarm-ha freeze|ignore, arm-ha, migrate|relocate SID NODE, stop SID TIMEOUT"
                ),
            ))
        }
    };
    queue_crm_command(ctx.state, &queued)?;
    Ok(())
}

// ---- rules ------------------------------------------------------------------------

fn load_rules(node: &Node) -> Result<(Document, RulesConfig), ApiError> {
    let doc = node.tree.load(RULES);
    let cfg = RulesConfig::parse(&doc.text)
        .map_err(|e| ApiError::internal(format!("ha/rules.cfg: {e}")))?;
    Ok((doc, cfg))
}

/// The section of one rule from the request parameters (`existing` for an update).
fn rule_section(
    ctx: &C<'_>,
    id: &str,
    existing: Option<&ferrox_types::Rule>,
) -> Result<String, ApiError> {
    let kind = match (ctx.params.str(&param::RULE_TYPE), existing) {
        (Some(t), _) => t.to_string(),
        (None, Some(r)) => r.type_name().to_string(),
        (None, None) => {
            return Err(param::RULE_TYPE.error("property is missing and it is not optional"))
        }
    };
    let prior = existing.map(|r| r.to_json()).unwrap_or(Value::Null);
    let list = |v: &Value| -> Option<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
    };
    let resources = match ctx.params.str(&param::RESOURCES) {
        Some(r) => r.to_string(),
        None => list(&prior["resources"])
            .ok_or_else(|| param::RESOURCES.error("property is missing and it is not optional"))?,
    };
    let mut text = format!("{kind}: {id}\n\tresources {resources}\n");
    match kind.as_str() {
        "node-affinity" => {
            let nodes = match ctx.params.str(&param::NODES) {
                Some(n) => n.to_string(),
                None => existing
                    .and_then(|r| r.node_priorities())
                    .map(ferrox_types::rules::node_list)
                    .ok_or_else(|| {
                        param::NODES.error("property is missing and it is not optional")
                    })?,
            };
            let members = ctx.state.store.status();
            for n in nodes
                .split(',')
                .map(|n| n.split(':').next().unwrap_or("").trim())
            {
                if !n.is_empty() && members.member_named(n).is_none() {
                    return Err(param::NODES.error(format!("no such cluster node '{n}'")));
                }
            }
            text.push_str(&format!("\tnodes {nodes}\n"));
            match ctx.params.bool(&param::STRICT) {
                Some(s) => text.push_str(&format!("\tstrict {}\n", u8::from(s))),
                None => {
                    if let Some(s) = prior["strict"].as_u64() {
                        text.push_str(&format!("\tstrict {s}\n"));
                    }
                }
            }
        }
        "resource-affinity" => {
            let affinity = ctx
                .params
                .str(&param::AFFINITY)
                .map(String::from)
                .or_else(|| prior["affinity"].as_str().map(String::from))
                .ok_or_else(|| {
                    param::AFFINITY.error("property is missing and it is not optional")
                })?;
            text.push_str(&format!("\taffinity {affinity}\n"));
        }
        other => return Err(param::RULE_TYPE.error(format!("unknown rule type '{other}'"))),
    }
    let disable = ctx
        .params
        .bool(&param::DISABLE)
        .or_else(|| prior["disable"].as_u64().map(|d| d != 0));
    if disable == Some(true) {
        text.push_str("\tdisable 1\n");
    }
    let comment = ctx
        .params
        .str(&param::COMMENT)
        .map(String::from)
        .or_else(|| prior["comment"].as_str().map(String::from));
    if let Some(c) = comment.filter(|c| !c.is_empty()) {
        let encoded = ferrox_types::text::encode_text(&c);
        text.push_str(&format!("\tcomment {encoded}\n"));
    }
    Ok(text)
}

/// Parses the whole new rules file with the one rules parser and checks it like the
/// manager will: a rule the manager would drop is refused here, with its reason.
fn store_rules(ctx: &C<'_>, old: &Document, new_text: &str, id: &str) -> Result<(), ApiError> {
    let cfg = RulesConfig::parse(new_text).map_err(|e| {
        let msg = e.to_string();
        let field = [
            "resources",
            "nodes",
            "strict",
            "affinity",
            "disable",
            "comment",
        ]
        .into_iter()
        .find(|f| msg.contains(&format!("'{f}'")))
        .unwrap_or("rule");
        ApiError::param(field, msg)
    })?;
    let nodes: Vec<String> = ctx
        .state
        .store
        .status()
        .members
        .into_iter()
        .map(|m| m.member.name)
        .collect();
    if let Some(msgs) = ferrox_ha::rules::check(&cfg, &nodes).get(id) {
        return Err(param::RULE.error(msgs.join("; ")));
    }
    ctx.state.tree.save(old, &cfg.to_section_text()).map(drop)
}

fn rule_id(ctx: &C<'_>) -> Result<String, ApiError> {
    let id = ctx.params.need_str(&param::RULE)?;
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(param::RULE.error(format!("invalid rule id '{id}'")));
    }
    Ok(id.to_string())
}

fn rule_entry(rule: &ferrox_types::Rule, digest: &str) -> HaRule {
    let (nodes, strict, affinity) = match &rule.kind {
        RuleKind::NodeAffinity { nodes, strict } => (
            Some(ferrox_types::rules::node_list(nodes)),
            strict.map(u8::from),
            None,
        ),
        RuleKind::ResourceAffinity { affinity } => {
            (None, None, Some(affinity.as_str().to_string()))
        }
    };
    HaRule {
        rule: rule.id.clone(),
        kind: rule.type_name().to_string(),
        digest: digest.to_string(),
        order: rule.order as u64,
        resources: rule.resources.iter().cloned().collect::<Vec<_>>().join(","),
        nodes,
        strict,
        affinity,
        disable: rule.disable.map(u8::from),
        comment: rule.comment.clone(),
    }
}

fn rules_list(ctx: &C<'_>) -> Result<Vec<HaRule>, ApiError> {
    let (text, cfg) = load_rules(ctx.state)?;
    let digest = text.digest();
    let kind = ctx.params.str(&param::RULE_TYPE_FILTER);
    Ok(cfg
        .ordered()
        .into_iter()
        .filter(|r| kind.is_none_or(|k| k == r.type_name()))
        .map(|r| rule_entry(r, &digest))
        .collect())
}

fn rules_read(ctx: &C<'_>) -> Result<HaRule, ApiError> {
    let id = rule_id(ctx)?;
    let (text, cfg) = load_rules(ctx.state)?;
    let rule = cfg
        .rules
        .get(&id)
        .ok_or_else(|| ApiError::new(500, format!("no such rule '{id}'")))?;
    Ok(rule_entry(rule, &text.digest()))
}

fn rules_create(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = rule_id(ctx)?;
    let (text, cfg) = load_rules(ctx.state)?;
    if cfg.rules.contains_key(&id) {
        return Err(param::RULE.error(format!("rule '{id}' already defined")));
    }
    let section = rule_section(ctx, &id, None)?;
    let new_text = format!("{}\n{section}", cfg.to_section_text());
    store_rules(ctx, &text, &new_text, &id)?;
    Ok(())
}

fn rules_update(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = rule_id(ctx)?;
    let (text, mut cfg) = load_rules(ctx.state)?;
    let existing = cfg
        .rules
        .remove(&id)
        .ok_or_else(|| param::RULE.error(format!("no such rule '{id}'")))?;
    text.check_digest(ctx.params.str(&param::DIGEST))?;
    let section = rule_section(ctx, &id, Some(&existing))?;
    let new_text = format!("{}\n{section}", cfg.to_section_text());
    store_rules(ctx, &text, &new_text, &id)?;
    Ok(())
}

fn rules_delete(ctx: &C<'_>) -> Result<(), ApiError> {
    let id = rule_id(ctx)?;
    let (text, mut cfg) = load_rules(ctx.state)?;
    if cfg.rules.remove(&id).is_none() {
        return Err(param::RULE.error(format!("no such rule '{id}'")));
    }
    ctx.state.tree.save(&text, &cfg.to_section_text())?;
    Ok(())
}

fn manager_status(node: &Node) -> ManagerStatus {
    node.tree
        .get(MANAGER_STATUS)
        .and_then(|e| serde_json::from_str(&e.data).ok())
        .unwrap_or_default()
}

fn status_manager(ctx: &C<'_>) -> Result<HaManagerStatus, ApiError> {
    let ms = manager_status(ctx.state);
    let mut lrm = std::collections::BTreeMap::new();
    for name in ms.node_status.keys() {
        let status: Option<LrmStatus> = ctx
            .state
            .tree
            .get(&format!("nodes/{name}/lrm_status"))
            .and_then(|e| serde_json::from_str(&e.data).ok());
        lrm.insert(name.clone(), json!(status.unwrap_or_default()));
    }
    Ok(HaManagerStatus {
        manager_status: json!(ms),
        lrm_status: lrm,
        quorum: HaQuorum {
            node: ctx.state.opts.node_name.clone(),
            quorate: u8::from(ctx.state.store.status().quorate),
        },
    })
}

/// The master's node and service state changes, oldest first.
fn history(ctx: &C<'_>) -> Result<Vec<HaHistoryEntry>, ApiError> {
    Ok(ctx
        .state
        .tree
        .get(HISTORY)
        .and_then(|e| serde_json::from_str(&e.data).ok())
        .unwrap_or_default())
}

fn status_current(ctx: &C<'_>) -> Result<Vec<HaStatusEntry>, ApiError> {
    let node = ctx.state;
    let manager = manager_status(node);
    let (_, resources) = load(node)?;
    let lrm = manager
        .node_status
        .keys()
        .filter_map(|name| {
            let entry = node.tree.get(&format!("nodes/{name}/lrm_status"))?;
            let status: LrmStatus = serde_json::from_str(&entry.data).ok()?;
            Some((name.clone(), status))
        })
        .collect();
    let datacenter = node
        .tree
        .get("datacenter.cfg")
        .and_then(|e| ferrox_types::DatacenterConfig::parse_cfg(&e.data).ok())
        .unwrap_or_default();
    let guest_node = |sid: &str| {
        let vmid = sid.split_once(':')?.1.parse().ok()?;
        crate::cluster::vmid_owner(node, vmid)
    };
    Ok(crate::ha::status::current(&crate::ha::status::Inputs {
        now: ferrox_api::auth::now(),
        local_node: &node.opts.node_name,
        quorate: node.store.status().quorate,
        manager: &manager,
        resources: &resources,
        lrm: &lrm,
        crs_mode: Some(datacenter.crs.ha.as_str()),
        guest_node: &guest_node,
    }))
}

fn rule_params(create: bool) -> Vec<Param> {
    vec![
        param::RULE,
        if create {
            param::RULE_TYPE
        } else {
            param::RULE_TYPE_UPDATE
        },
        param::RESOURCES,
        param::NODES,
        param::STRICT,
        param::AFFINITY,
        param::DISABLE,
        param::COMMENT,
    ]
}

fn resource_params() -> Vec<Param> {
    vec![
        param::STATE,
        param::MAX_RESTART,
        param::MAX_RELOCATE,
        param::FAILBACK,
        param::COMMENT,
        param::GROUP,
    ]
}

fn ha_index(_: &C<'_>) -> Result<Vec<ferrox_api_types::Named>, ApiError> {
    Ok(named(&["status", "resources", "rules", "history"]))
}

fn status_index(_: &C<'_>) -> Result<Vec<ferrox_api_types::Named>, ApiError> {
    Ok(named(&["current", "manager_status"]))
}

fn named(names: &[&str]) -> Vec<ferrox_api_types::Named> {
    names
        .iter()
        .map(|n| ferrox_api_types::Named {
            name: n.to_string(),
        })
        .collect()
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const RULE: Param = Param::required("rule", STRING, "Rule id.");
    const KINDS: ParamType = ParamType::Enum(&["node-affinity", "resource-affinity"]);
    pub const RULE_TYPE: Param = Param::required("type", KINDS, "Rule type.");
    pub const RULE_TYPE_UPDATE: Param = Param::optional("type", KINDS, "Rule type.");
    pub const RESOURCE_TYPE_FILTER: Param =
        Param::optional("type", ParamType::Enum(&["vm", "ct"]), "Only this type.");
    pub const RESOURCE_TYPE: Param =
        Param::optional("type", ParamType::Enum(&["vm", "ct"]), "Resource type.");
    pub const RULE_TYPE_FILTER: Param = Param::optional(
        "type",
        ParamType::Enum(&["node-affinity", "resource-affinity"]),
        "Only this type.",
    );
    pub const RESOURCES: Param =
        Param::optional("resources", STRING, "HA resources (comma separated).");
    pub const NODES: Param =
        Param::optional("nodes", STRING, "Nodes with optional priorities: n1:2,n2.");
    pub const STRICT: Param = Param::optional("strict", BOOL, "Only the listed nodes.");
    pub const AFFINITY: Param = Param::optional(
        "affinity",
        ParamType::Enum(&["positive", "negative"]),
        "Keep together or apart.",
    );
    pub const DISABLE: Param = Param::optional("disable", BOOL, "Disable the rule.");
    pub const COMMENT: Param = Param::optional("comment", STRING, "Description.");
    pub const STATE: Param = Param::optional(
        "state",
        ParamType::Enum(&["started", "stopped", "enabled", "disabled", "ignored"]),
        "Requested state.",
    );
    pub const MAX_RESTART: Param = Param::optional(
        "max_restart",
        int(Some(0), Some(10)),
        "Restart tries on the same node.",
    );
    pub const MAX_RELOCATE: Param =
        Param::optional("max_relocate", int(Some(0), Some(10)), "Relocation tries.");
    pub const FAILBACK: Param =
        Param::optional("failback", BOOL, "Move back to the preferred node.");
    pub const GROUP: Param = Param::optional("group", STRING, "HA group (deprecated by rules).");
    pub const SID: Param = Param::required("sid", STRING, "HA resource id (vm:<vmid> or <vmid>).");
    pub const DIGEST: Param = Param::optional(
        "digest",
        STRING,
        "Prevent changes if the file changed meanwhile.",
    );
    pub const TARGET_NODE: Param = Param::required("node", ParamType::Node, "Target node.");
    pub const COMMAND: Param = Param::required(
        "command", STRING, "'node-maintenance enable|disable NODE', 'disarm-ha freeze|ignore', 'arm-ha', 'migrate|relocate SID NODE', 'stop SID TIMEOUT'.");
}

pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    vec![
        Endpoint::new(
            Get,
            "/cluster/ha",
            "HA index.",
            Permission::Authenticated,
            ha_index,
        ),
        Endpoint::new(
            Get,
            "/cluster/ha/status",
            "HA status index.",
            Permission::Authenticated,
            status_index,
        ),
        Endpoint::new(Get, "/cluster/ha/resources", "HA resources.", AUDIT, list)
            .params(vec![param::RESOURCE_TYPE_FILTER]),
        Endpoint::new(
            Post,
            "/cluster/ha/resources",
            "Put a guest under HA.",
            CONSOLE,
            create,
        )
        .params([vec![param::SID, param::RESOURCE_TYPE], resource_params()].concat()),
        Endpoint::new(
            Get,
            "/cluster/ha/resources/{sid}",
            "One HA resource.",
            AUDIT,
            read,
        )
        .params(vec![param::SID]),
        Endpoint::new(
            Put,
            "/cluster/ha/resources/{sid}",
            "Change an HA resource.",
            CONSOLE,
            update,
        )
        .params([vec![param::SID, param::DIGEST], resource_params()].concat()),
        Endpoint::new(
            Delete,
            "/cluster/ha/resources/{sid}",
            "Take a guest out of HA.",
            CONSOLE,
            remove,
        )
        .params(vec![param::SID]),
        Endpoint::new(
            Post,
            "/cluster/ha/resources/{sid}/migrate",
            "Request live migration of an HA resource.",
            CONSOLE,
            migrate,
        )
        .params(vec![param::SID, param::TARGET_NODE]),
        Endpoint::new(
            Post,
            "/cluster/ha/resources/{sid}/relocate",
            "Request relocation (stop, move, start) of an HA resource.",
            CONSOLE,
            relocate,
        )
        .params(vec![param::SID, param::TARGET_NODE]),
        Endpoint::new(
            Post,
            "/cluster/ha/crm-command",
            "Queue a CRM command (Ferrox extension: ha-manager crm-command).",
            CONSOLE,
            crm_command,
        )
        .params(vec![param::COMMAND]),
        Endpoint::new(Get, "/cluster/ha/rules", "HA rules.", AUDIT, rules_list)
            .params(vec![param::RULE_TYPE_FILTER]),
        Endpoint::new(
            Post,
            "/cluster/ha/rules",
            "Create an HA rule.",
            CONSOLE,
            rules_create,
        )
        .params(rule_params(true)),
        Endpoint::new(
            Get,
            "/cluster/ha/rules/{rule}",
            "One HA rule.",
            AUDIT,
            rules_read,
        )
        .params(vec![param::RULE]),
        Endpoint::new(
            Put,
            "/cluster/ha/rules/{rule}",
            "Change an HA rule.",
            CONSOLE,
            rules_update,
        )
        .params([rule_params(false), vec![param::DIGEST]].concat()),
        Endpoint::new(
            Delete,
            "/cluster/ha/rules/{rule}",
            "Delete an HA rule.",
            CONSOLE,
            rules_delete,
        )
        .params(vec![param::RULE]),
        Endpoint::new(
            Get,
            "/cluster/ha/status/current",
            "HA status.",
            AUDIT,
            status_current,
        ),
        Endpoint::new(
            Get,
            "/cluster/ha/status/manager_status",
            "The CRM's status document.",
            AUDIT,
            status_manager,
        ),
        Endpoint::new(
            Get,
            "/cluster/ha/history",
            "Node and service state changes of the HA manager, oldest first: fence events and recovery timelines (Ferrox extension).",
            AUDIT,
            history,
        ),
    ]
}
