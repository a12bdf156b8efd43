//! CPU models: `/cluster/qemu` (custom models in `virtual-guest/cpu-models.conf`, the CPU
//! flags of the cluster, the cluster's baseline model) and the node's view,
//! `/nodes/{node}/capabilities/qemu/{cpu,cpu-flags}`. What a node offers comes from the
//! records every node keeps in the store (`host::cpu`).

use super::*;
use crate::Node;
use ferrox_api::core::local_node;
use ferrox_api::schema::{BOOL, STRING};
use ferrox_api::{ApiError, Endpoint, Method, Param, ParamType, Permission};
use ferrox_api_types::nodes::CpuModel;
use ferrox_api_types::qemu::{CpuBaseline, CpuFlag, CustomCpuModel, NodeCpuBaseline};
use ferrox_api_types::Named;
use ferrox_types::cpu::{
    self, custom_name, vendor, CpuConf, CpuRequirement, CustomCpuModels, NodeCpu, Scope, BUILTIN,
    CPU_MODELS_CFG, LADDER, MODELS, VM_FLAGS,
};
use std::collections::BTreeMap;

const MAPPING_PRIVS: &[&str] = &["Mapping.Audit", "Mapping.Use", "Mapping.Modify"];

fn qemu_index(_: &C<'_>) -> Result<Vec<Named>, ApiError> {
    Ok(["cpu-baseline", "cpu-flags", "custom-cpu-models"]
        .iter()
        .map(|n| Named {
            name: n.to_string(),
        })
        .collect())
}

/// Whether the caller may see custom model `name` (Proxmox VE: any Mapping privilege on
/// it, or Sys.Audit on /nodes).
fn may_see_model(ctx: &C<'_>, name: &str) -> bool {
    ctx.has("/nodes", &["Sys.Audit"], false)
        || ctx.has(&format!("/mapping/cpu/{name}"), MAPPING_PRIVS, true)
}

/// The models usable on this node: QEMU's named ones, the built-in `x86-64-vN` and the
/// custom ones the caller may see. Without this node's CPU record every model is listed.
fn node_cpu_models(ctx: &C<'_>) -> Result<Vec<CpuModel>, ApiError> {
    local_node(ctx)?;
    let node = ctx.state;
    let record = node.node_cpus().remove(&node.opts.node_name);
    let usable = |need: &CpuRequirement| {
        record
            .as_ref()
            .is_none_or(|r| r.missing(need, false, None).is_empty())
    };
    let mut rows = Vec::new();
    for (name, model_vendor) in MODELS {
        if usable(&CpuRequirement::of_model(name)) {
            rows.push(CpuModel {
                name: name.to_string(),
                vendor: model_vendor.to_string(),
                custom: 0,
                is_abstract: None,
            });
        }
    }
    for (name, reported, _) in BUILTIN {
        if usable(&CpuRequirement::of_model(name)) {
            rows.push(CpuModel {
                name: name.to_string(),
                vendor: vendor(reported).unwrap_or("default").to_string(),
                custom: 0,
                is_abstract: Some(1),
            });
        }
    }
    for (name, model) in &node.custom_cpu_models()?.models {
        let guest = CpuConf {
            cputype: model.cputype.clone(),
            ..CpuConf::default()
        };
        if may_see_model(ctx, name) && usable(&CpuRequirement::of(&guest, Some(model))) {
            let reported = model.reported_model.as_deref().unwrap_or("kvm64");
            rows.push(CpuModel {
                name: model.cputype.clone(),
                vendor: vendor(reported).unwrap_or("default").to_string(),
                custom: 1,
                is_abstract: None,
            });
        }
    }
    Ok(rows)
}

/// Rows for `flags` with the nodes whose CPU has each with `accel`, the `nested-virt`
/// shorthand first and flags no node has last (Proxmox VE's order).
fn flag_rows(node: &Node, flags: Vec<(String, Option<String>)>, accel: &str) -> Vec<CpuFlag> {
    let cpus = node.node_cpus();
    let has = |record: &NodeCpu, flag: &str| {
        record.accel(accel).is_some_and(|c| {
            if flag == "nested-virt" {
                c.flags.contains("svm") || c.flags.contains("vmx")
            } else {
                c.flags.contains(flag)
            }
        })
    };
    let mut rows: Vec<CpuFlag> = flags
        .into_iter()
        .map(|(name, description)| CpuFlag {
            supported_on: cpus
                .iter()
                .filter(|(_, r)| has(r, &name))
                .map(|(n, _)| n.clone())
                .collect(),
            name,
            description,
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.name != "nested-virt")
            .cmp(&(b.name != "nested-virt"))
            .then(a.supported_on.is_empty().cmp(&b.supported_on.is_empty()))
            .then(a.name.cmp(&b.name))
    });
    rows
}

fn vm_flags() -> Vec<(String, Option<String>)> {
    VM_FLAGS
        .iter()
        .map(|(n, d)| (n.to_string(), Some(d.to_string())))
        .collect()
}

fn requested_accel<'a>(ctx: &'a C<'_>) -> &'a str {
    ctx.params.str(&param::ACCEL).unwrap_or("kvm")
}

fn node_cpu_flags(ctx: &C<'_>) -> Result<Vec<CpuFlag>, ApiError> {
    local_node(ctx)?;
    if ctx.params.str(&param::ARCH) == Some("aarch64") {
        return Ok(Vec::new());
    }
    Ok(flag_rows(ctx.state, vm_flags(), requested_accel(ctx)))
}

/// Every flag QEMU understands (what a custom model may use).
fn cluster_cpu_flags(ctx: &C<'_>) -> Result<Vec<CpuFlag>, ApiError> {
    if !ctx.has("/nodes", &["Sys.Audit"], false) && !ctx.has("/mapping/cpu", MAPPING_PRIVS, true) {
        return Err(ApiError::forbidden("/nodes", &["Sys.Audit"]));
    }
    if ctx.params.str(&param::ARCH) == Some("aarch64") {
        return Ok(Vec::new());
    }
    static UNDERSTOOD: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let understood = match UNDERSTOOD.get() {
        Some(flags) => flags,
        None => {
            let flags = ferrox_qemu::capabilities::recognized_flags(&ctx.state.opts.qemu_binary)
                .map_err(ApiError::internal)?;
            UNDERSTOOD.get_or_init(|| flags)
        }
    };
    let descriptions: BTreeMap<&str, &str> = VM_FLAGS.iter().copied().collect();
    let mut flags: Vec<(String, Option<String>)> = understood
        .iter()
        .map(|f| {
            (
                f.clone(),
                descriptions.get(f.as_str()).map(|d| d.to_string()),
            )
        })
        .collect();
    flags.push((
        "nested-virt".into(),
        descriptions.get("nested-virt").map(|d| d.to_string()),
    ));
    Ok(flag_rows(ctx.state, flags, requested_accel(ctx)))
}

/// The highest built-in model per node and for the cluster.
fn cpu_baseline(ctx: &C<'_>) -> Result<CpuBaseline, ApiError> {
    let node = ctx.state;
    let cpus = node.node_cpus();
    let asked = ctx.params.str(&param::ACCEL);
    let mut members: Vec<String> = crate::cluster::other_members(node)
        .into_iter()
        .map(|m| m.name)
        .collect();
    members.push(node.opts.node_name.clone());
    members.sort();
    let level_of = |model: &str| {
        LADDER
            .iter()
            .find(|(m, _)| *m == model)
            .map(|(_, l)| l.to_string())
    };
    let mut cluster_rank: Option<Option<usize>> = None;
    let mut rows = Vec::new();
    for name in members {
        let mut row = NodeCpuBaseline {
            node: name.clone(),
            vendor: String::new(),
            cpu: String::new(),
            accel: String::new(),
            model: None,
            level: None,
            next: None,
            lacks: Vec::new(),
            unknown: None,
            masked: Vec::new(),
        };
        let Some(record) = cpus.get(&name) else {
            row.unknown = Some("the node has not told its CPU yet".into());
            rows.push(row);
            continue;
        };
        row.vendor = record.vendor.clone();
        row.cpu = record.model.clone();
        row.masked = record.masked.clone();
        let accel = asked.unwrap_or(record.accel.as_str());
        row.accel = accel.to_string();
        let Some(offer) = record.accel(accel) else {
            row.unknown = Some(format!("no {accel} accelerator on this node"));
            rows.push(row);
            continue;
        };
        let (highest, next) = offer.baseline();
        row.model = highest.map(String::from);
        row.level = highest.and_then(level_of);
        if let Some((model, lacks)) = next {
            row.next = Some(model.to_string());
            row.lacks = lacks;
        }
        let rank = highest.and_then(|h| LADDER.iter().position(|(m, _)| *m == h));
        cluster_rank = Some(match cluster_rank {
            None => rank,
            Some(r) => r.min(rank),
        });
        rows.push(row);
    }
    let model = cluster_rank.flatten().map(|i| LADDER[i].0);
    Ok(CpuBaseline {
        model: model.map(String::from),
        level: model.and_then(level_of),
        nodes: rows,
    })
}

// ---- custom models -------------------------------------------------------------------

fn custom_row(model: &CpuConf, digest: &str) -> CustomCpuModel {
    let props = CustomCpuModels::properties(model);
    CustomCpuModel {
        cputype: model.cputype.clone(),
        reported_model: props.get("reported-model").cloned().unwrap_or_default(),
        flags: props.get("flags").cloned(),
        hidden: model.hidden.map(u8::from),
        hv_vendor_id: model.hv_vendor_id.clone(),
        phys_bits: model.phys_bits.clone(),
        guest_phys_bits: model.guest_phys_bits,
        level: model.level,
        digest: digest.to_string(),
    }
}

fn load_models(node: &Node) -> Result<(crate::cluster::Document, CustomCpuModels), ApiError> {
    let doc = node.tree.load(CPU_MODELS_CFG);
    let cfg = CustomCpuModels::parse(&doc.text)
        .map_err(|e| ApiError::internal(format!("{CPU_MODELS_CFG}: {e}")))?;
    Ok((doc, cfg))
}

fn list_custom(ctx: &C<'_>) -> Result<Vec<CustomCpuModel>, ApiError> {
    let (_, cfg) = load_models(ctx.state)?;
    Ok(cfg
        .models
        .iter()
        .filter(|(name, _)| ctx.has(&format!("/mapping/cpu/{name}"), MAPPING_PRIVS, true))
        .map(|(_, m)| custom_row(m, &cfg.digest))
        .collect())
}

fn model_name<'a>(ctx: &'a C<'_>) -> Result<&'a str, ApiError> {
    let name = custom_name(ctx.params.need_str(&param::CPUTYPE)?);
    ferrox_types::format::config_id(name).map_err(|e| param::CPUTYPE.error(e))?;
    Ok(name)
}

fn read_custom(ctx: &C<'_>) -> Result<CustomCpuModel, ApiError> {
    let name = model_name(ctx)?;
    let (_, cfg) = load_models(ctx.state)?;
    let model = cfg
        .models
        .get(name)
        .ok_or_else(|| ApiError::internal(format!("Custom cputype '{name}' not found")))?;
    Ok(custom_row(model, &cfg.digest))
}

/// The properties a request gives, each checked by `cpu-models.conf`'s own rules and
/// named by its parameter when refused.
fn requested_properties(ctx: &C<'_>) -> Result<BTreeMap<&'static str, String>, ApiError> {
    let mut out = BTreeMap::new();
    for p in PROPERTIES {
        let value = match &p.ty {
            ParamType::Boolean => ctx.params.bool(p).map(|b| u8::from(b).to_string()),
            ParamType::Integer { .. } => ctx.params.int(p).map(|v| v.to_string()),
            _ => ctx.params.str(p).map(String::from),
        };
        if let Some(value) = value {
            cpu::check_property(Scope::Custom, p.name, &value).map_err(|e| p.error(e))?;
            out.insert(p.name, value);
        }
    }
    Ok(out)
}

/// Writes `cfg` with model `name` built from `props` (compare-and-set on the file).
fn store_model(
    node: &Node,
    doc: &crate::cluster::Document,
    mut cfg: CustomCpuModels,
    name: &str,
    props: &BTreeMap<&'static str, String>,
) -> Result<(), ApiError> {
    let model = CustomCpuModels::model_from(name, props).map_err(|e| param::CPUTYPE.error(e))?;
    cfg.models.insert(name.to_string(), model);
    node.tree.save(doc, &cfg.to_text())?;
    Ok(())
}

fn create_custom(ctx: &C<'_>) -> Result<(), ApiError> {
    let name = model_name(ctx)?;
    let props = requested_properties(ctx)?;
    let (doc, cfg) = load_models(ctx.state)?;
    if cfg.models.contains_key(name) {
        return Err(param::CPUTYPE.error(format!("custom CPU model '{name}' already exists")));
    }
    store_model(ctx.state, &doc, cfg, name, &props)
}

fn update_custom(ctx: &C<'_>) -> Result<(), ApiError> {
    let name = model_name(ctx)?;
    let (doc, cfg) = load_models(ctx.state)?;
    doc.check_digest(ctx.params.str(&param::DIGEST))?;
    let current = cfg
        .models
        .get(name)
        .ok_or_else(|| ApiError::internal(format!("custom CPU model '{name}' does not exist")))?;
    let mut props = CustomCpuModels::properties(current);
    if let Some(deleted) = ctx.params.str(&param::DELETE) {
        for key in ferrox_types::format::split_list(deleted) {
            if matches!(key, "cputype" | "reported-model") {
                return Err(param::DELETE.error(format!("cannot delete '{key}'")));
            }
            if !cpu::PROPERTIES.contains(&key) {
                return Err(param::DELETE.error(format!("unknown property '{key}'")));
            }
            props.remove(key);
        }
    }
    props.extend(requested_properties(ctx)?);
    store_model(ctx.state, &doc, cfg.clone(), name, &props)
}

fn delete_custom(ctx: &C<'_>) -> Result<(), ApiError> {
    let name = model_name(ctx)?;
    let (doc, mut cfg) = load_models(ctx.state)?;
    if cfg.models.remove(name).is_none() {
        return Err(ApiError::internal(format!(
            "custom CPU model '{name}' does not exist"
        )));
    }
    ctx.state.tree.save(&doc, &cfg.to_text())?;
    Ok(())
}

/// The check of a custom model's `key` for the parameter declarations.
macro_rules! custom_check {
    ($name:ident, $key:literal) => {
        fn $name(value: &str) -> Result<(), String> {
            cpu::check_property(Scope::Custom, $key, value)
        }
    };
}
custom_check!(check_reported_model, "reported-model");
custom_check!(check_flags, "flags");
custom_check!(check_hv_vendor_id, "hv-vendor-id");
custom_check!(check_phys_bits, "phys-bits");

/// The properties of a custom model a request may give (`cpu-models.conf`'s keys).
const PROPERTIES: &[Param] = &[
    param::REPORTED_MODEL,
    param::FLAGS,
    param::HIDDEN,
    param::HV_VENDOR_ID,
    param::PHYS_BITS,
    param::GUEST_PHYS_BITS,
    param::LEVEL,
];

pub(crate) mod param {
    use super::*;
    use ferrox_api::schema::int;

    pub const ARCH: Param = Param::optional(
        "arch",
        ParamType::Enum(&["x86_64", "aarch64"]),
        "Virtual processor architecture (default: the host's).",
    );
    pub const ACCEL: Param = Param::optional(
        "accel",
        ParamType::Enum(&["kvm", "tcg"]),
        "Accelerator to check the nodes for (default kvm; the baseline: each node's own).",
    );
    pub const CPUTYPE: Param = Param::required(
        "cputype",
        ParamType::String { max_len: Some(48) },
        "Name of the custom CPU model; the 'custom-' prefix is optional.",
    );
    pub const REPORTED_MODEL: Param = Param::optional(
        "reported-model",
        ParamType::Format {
            name: "pve-qm-cpu-model",
            check: check_reported_model,
        },
        "The QEMU CPU model and vendor the guest sees (default kvm64).",
    );
    pub const FLAGS: Param = Param::optional(
        "flags",
        ParamType::Format {
            name: "pve-cpu-flags",
            check: check_flags,
        },
        "CPU flags separated by ';': +FLAG to enable, -FLAG to disable; any flag QEMU knows.",
    );
    pub const HIDDEN: Param =
        Param::optional("hidden", BOOL, "Do not identify as a KVM virtual machine.");
    pub const HV_VENDOR_ID: Param = Param::optional(
        "hv-vendor-id",
        ParamType::Format {
            name: "hv-vendor-id",
            check: check_hv_vendor_id,
        },
        "The Hyper-V vendor ID (1 to 12 letters or digits).",
    );
    pub const PHYS_BITS: Param = Param::optional(
        "phys-bits",
        ParamType::Format {
            name: "pve-phys-bits",
            check: check_phys_bits,
        },
        "Physical address bits the guest sees: 8 to 64, or 'host'.",
    );
    pub const GUEST_PHYS_BITS: Param = Param::optional(
        "guest-phys-bits",
        int(Some(32), Some(64)),
        "Physical address bits available to the guest.",
    );
    pub const LEVEL: Param = Param::optional(
        "level",
        int(Some(0), Some(4_294_967_295)),
        "The highest basic CPUID leaf the guest can query.",
    );
    pub const DELETE: Param =
        Param::optional("delete", STRING, "Properties to remove (comma-separated).");
    pub const DIGEST: Param = Param::optional(
        "digest",
        STRING,
        "Refuse the change if cpu-models.conf changed since this digest.",
    );
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let modify = |path| Permission::Privs {
        path,
        privs: &["Mapping.Modify"],
        any: false,
    };
    vec![
        Endpoint::new(
            Get,
            "/cluster/qemu",
            "Cluster-wide QEMU index.",
            Permission::Authenticated,
            qemu_index,
        ),
        Endpoint::new(
            Get,
            "/cluster/qemu/cpu-flags",
            "Every CPU flag QEMU understands, with the nodes that have it.",
            Permission::Handler(
                "Sys.Audit on /nodes, or any of Mapping.Audit, Mapping.Use, Mapping.Modify on /mapping/cpu",
            ),
            cluster_cpu_flags,
        )
        .params(vec![param::ARCH, param::ACCEL]),
        Endpoint::new(
            Get,
            "/cluster/qemu/cpu-baseline",
            "The highest built-in CPU model every node runs, and per node what it lacks for the next (a Ferrox extension).",
            Permission::Authenticated,
            cpu_baseline,
        )
        .params(vec![param::ACCEL]),
        Endpoint::new(
            Get,
            "/cluster/qemu/custom-cpu-models",
            "Custom CPU models the user may see (any Mapping privilege on /mapping/cpu/<name>).",
            Permission::Authenticated,
            list_custom,
        ),
        Endpoint::new(
            Post,
            "/cluster/qemu/custom-cpu-models",
            "Add a custom CPU model.",
            modify("/mapping/cpu"),
            create_custom,
        )
        .params([vec![param::CPUTYPE], PROPERTIES.to_vec()].concat()),
        Endpoint::new(
            Get,
            "/cluster/qemu/custom-cpu-models/{cputype}",
            "One custom CPU model.",
            Permission::Privs {
                path: "/mapping/cpu/{cputype}",
                privs: MAPPING_PRIVS,
                any: true,
            },
            read_custom,
        )
        .params(vec![param::CPUTYPE]),
        Endpoint::new(
            Put,
            "/cluster/qemu/custom-cpu-models/{cputype}",
            "Change a custom CPU model.",
            modify("/mapping/cpu/{cputype}"),
            update_custom,
        )
        .params(
            [
                vec![param::CPUTYPE, param::DELETE, param::DIGEST],
                PROPERTIES.to_vec(),
            ]
            .concat(),
        ),
        Endpoint::new(
            Delete,
            "/cluster/qemu/custom-cpu-models/{cputype}",
            "Remove a custom CPU model.",
            modify("/mapping/cpu/{cputype}"),
            delete_custom,
        )
        .params(vec![param::CPUTYPE]),
        Endpoint::new(
            Get,
            "/nodes/{node}/capabilities/qemu/cpu",
            "CPU models guests can use on this node (QEMU's, the built-in x86-64-vN, and the custom ones the user may see).",
            Permission::Authenticated,
            node_cpu_models,
        )
        .params(vec![NODE, param::ARCH]),
        Endpoint::new(
            Get,
            "/nodes/{node}/capabilities/qemu/cpu-flags",
            "The CPU flags a guest config may set, with the nodes that have them.",
            Permission::Authenticated,
            node_cpu_flags,
        )
        .params(vec![NODE, param::ARCH, param::ACCEL]),
    ]
}
