//! CPU models as Proxmox VE knows them: a guest's `cpu:` (`[cputype=]<model>[,flags=+a;-b]
//! [,hidden=1][,hv-vendor-id=..][,phys-bits=..][,guest-phys-bits=..][,level=..]`), the
//! custom models of `virtual-guest/cpu-models.conf`, the QEMU models with their vendors and
//! the built-in `x86-64-vN` models (`qemu64` plus exact flag sets).
//!
//! Also what a node's CPU offers guests ([`NodeCpu`], recorded by every node) and what a
//! guest's CPU needs ([`CpuRequirement`]), so that a migration, a recovery or a plan
//! never puts a guest on a node that lacks a flag it uses. The `-cpu` argument is
//! `ferrox_qemu::cpu`'s; probing QEMU is `ferrox_qemu::capabilities`'.

use crate::property_string::PropertyString;
use crate::section_config::{self, header_line, invalid, property_line, SectionConfigError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The models Proxmox VE knows, with the vendor it passes to QEMU (`default`: none).
pub const MODELS: &[(&str, &str)] = &[
    ("486", "GenuineIntel"),
    ("pentium", "GenuineIntel"),
    ("pentium2", "GenuineIntel"),
    ("pentium3", "GenuineIntel"),
    ("coreduo", "GenuineIntel"),
    ("core2duo", "GenuineIntel"),
    ("Conroe", "GenuineIntel"),
    ("Penryn", "GenuineIntel"),
    ("Nehalem", "GenuineIntel"),
    ("Nehalem-IBRS", "GenuineIntel"),
    ("Westmere", "GenuineIntel"),
    ("Westmere-IBRS", "GenuineIntel"),
    ("SandyBridge", "GenuineIntel"),
    ("SandyBridge-IBRS", "GenuineIntel"),
    ("IvyBridge", "GenuineIntel"),
    ("IvyBridge-IBRS", "GenuineIntel"),
    ("Haswell", "GenuineIntel"),
    ("Haswell-IBRS", "GenuineIntel"),
    ("Haswell-noTSX", "GenuineIntel"),
    ("Haswell-noTSX-IBRS", "GenuineIntel"),
    ("Broadwell", "GenuineIntel"),
    ("Broadwell-IBRS", "GenuineIntel"),
    ("Broadwell-noTSX", "GenuineIntel"),
    ("Broadwell-noTSX-IBRS", "GenuineIntel"),
    ("Skylake-Client", "GenuineIntel"),
    ("Skylake-Client-IBRS", "GenuineIntel"),
    ("Skylake-Client-noTSX-IBRS", "GenuineIntel"),
    ("Skylake-Client-v4", "GenuineIntel"),
    ("Skylake-Server", "GenuineIntel"),
    ("Skylake-Server-IBRS", "GenuineIntel"),
    ("Skylake-Server-noTSX-IBRS", "GenuineIntel"),
    ("Skylake-Server-v4", "GenuineIntel"),
    ("Skylake-Server-v5", "GenuineIntel"),
    ("Cascadelake-Server", "GenuineIntel"),
    ("Cascadelake-Server-v2", "GenuineIntel"),
    ("Cascadelake-Server-noTSX", "GenuineIntel"),
    ("Cascadelake-Server-v4", "GenuineIntel"),
    ("Cascadelake-Server-v5", "GenuineIntel"),
    ("Cooperlake", "GenuineIntel"),
    ("Cooperlake-v2", "GenuineIntel"),
    ("KnightsMill", "GenuineIntel"),
    ("Icelake-Server", "GenuineIntel"),
    ("Icelake-Server-noTSX", "GenuineIntel"),
    ("Icelake-Server-v3", "GenuineIntel"),
    ("Icelake-Server-v4", "GenuineIntel"),
    ("Icelake-Server-v5", "GenuineIntel"),
    ("Icelake-Server-v6", "GenuineIntel"),
    ("Icelake-Server-v7", "GenuineIntel"),
    ("SapphireRapids", "GenuineIntel"),
    ("SapphireRapids-v2", "GenuineIntel"),
    ("SapphireRapids-v3", "GenuineIntel"),
    ("SapphireRapids-v4", "GenuineIntel"),
    ("GraniteRapids", "GenuineIntel"),
    ("GraniteRapids-v2", "GenuineIntel"),
    ("GraniteRapids-v3", "GenuineIntel"),
    ("SierraForest", "GenuineIntel"),
    ("SierraForest-v2", "GenuineIntel"),
    ("SierraForest-v3", "GenuineIntel"),
    ("ClearwaterForest", "GenuineIntel"),
    ("athlon", "AuthenticAMD"),
    ("phenom", "AuthenticAMD"),
    ("Opteron_G1", "AuthenticAMD"),
    ("Opteron_G2", "AuthenticAMD"),
    ("Opteron_G3", "AuthenticAMD"),
    ("Opteron_G4", "AuthenticAMD"),
    ("Opteron_G5", "AuthenticAMD"),
    ("EPYC", "AuthenticAMD"),
    ("EPYC-IBPB", "AuthenticAMD"),
    ("EPYC-v3", "AuthenticAMD"),
    ("EPYC-v4", "AuthenticAMD"),
    ("EPYC-v5", "AuthenticAMD"),
    ("EPYC-Rome", "AuthenticAMD"),
    ("EPYC-Rome-v2", "AuthenticAMD"),
    ("EPYC-Rome-v3", "AuthenticAMD"),
    ("EPYC-Rome-v4", "AuthenticAMD"),
    ("EPYC-Rome-v5", "AuthenticAMD"),
    ("EPYC-Milan", "AuthenticAMD"),
    ("EPYC-Milan-v2", "AuthenticAMD"),
    ("EPYC-Milan-v3", "AuthenticAMD"),
    ("EPYC-Genoa", "AuthenticAMD"),
    ("EPYC-Genoa-v2", "AuthenticAMD"),
    ("EPYC-Turin", "AuthenticAMD"),
    ("kvm32", "default"),
    ("kvm64", "default"),
    ("qemu32", "default"),
    ("qemu64", "default"),
    ("max", "default"),
    ("host", "default"),
];

/// Proxmox VE's built-in models: a reported QEMU model plus flags.
pub const BUILTIN: &[(&str, &str, &str)] = &[
    ("x86-64-v2", "qemu64", "+popcnt;+pni;+sse4.1;+sse4.2;+ssse3"),
    ("x86-64-v2-AES", "qemu64", "+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3"),
    (
        "x86-64-v3",
        "qemu64",
        "+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3;+avx;+avx2;+bmi1;+bmi2;+f16c;+fma;+abm;+movbe;+xsave",
    ),
    (
        "x86-64-v4",
        "qemu64",
        "+aes;+popcnt;+pni;+sse4.1;+sse4.2;+ssse3;+avx;+avx2;+bmi1;+bmi2;+f16c;+fma;+abm;+movbe;+xsave;+avx512f;+avx512bw;+avx512cd;+avx512dq;+avx512vl",
    ),
];

/// The flags a guest config may set itself (Proxmox VE's VM-specific whitelist), with
/// what each is for.
pub const VM_FLAGS: &[(&str, &str)] = &[
    (
        "nested-virt",
        "Nested virtualization: 'svm' on AMD hosts, 'vmx' on Intel hosts. Live migration needs the same on both sides.",
    ),
    ("md-clear", "Tells the guest whether MDS is mitigated."),
    ("pcid", "Cheaper Meltdown mitigation on Westmere, Sandy Bridge and Ivy Bridge."),
    ("spec-ctrl", "Better Spectre mitigation on Intel CPUs."),
    ("ssbd", "Speculative Store Bypass protection on Intel models."),
    ("ibpb", "Better Spectre mitigation on AMD CPUs."),
    ("virt-ssbd", "Speculative Store Bypass protection on AMD models."),
    ("amd-ssbd", "Faster Spectre mitigation on AMD CPUs, with 'virt-ssbd'."),
    ("amd-no-ssb", "Tells the guest that the AMD host is not affected by Speculative Store Bypass."),
    ("pdpe1gb", "1 GiB pages in the guest, where the host has them."),
    ("hv-tlbflush", "Faster TLB flushes in overcommitted Windows guests."),
    ("hv-evmcs", "Faster nested virtualization (Intel only)."),
    ("aes", "The AES instructions."),
];

/// The built-in models from the lowest to the highest, each containing the one before,
/// with the x86-64 microarchitecture level each stands for.
pub const LADDER: &[(&str, &str)] = &[
    ("qemu64", "x86-64-v1"),
    ("x86-64-v2", "x86-64-v2"),
    ("x86-64-v2-AES", "x86-64-v2"),
    ("x86-64-v3", "x86-64-v3"),
    ("x86-64-v4", "x86-64-v4"),
];

/// The model new guests get (Proxmox VE 8+), when every node can run it.
pub const DEFAULT_MODEL: &str = "x86-64-v2-AES";

pub fn vendor(model: &str) -> Option<&'static str> {
    MODELS.iter().find(|(m, _)| *m == model).map(|(_, v)| *v)
}

/// A built-in model's reported QEMU model and flags.
pub fn builtin(model: &str) -> Option<(&'static str, &'static str)> {
    BUILTIN
        .iter()
        .find(|(m, _, _)| *m == model)
        .map(|(_, reported, flags)| (*reported, *flags))
}

/// A custom model's name without its `custom-` prefix (the prefix is optional where a
/// name is asked for, as in Proxmox VE).
pub fn custom_name(cputype: &str) -> &str {
    cputype.strip_prefix("custom-").unwrap_or(cputype)
}

/// QEMU's own name of a CPUID flag: QEMU and `/proc/cpuinfo` spell some flags in other
/// ways (`sse4_1`, `sse4-1` and `sse4.1`; `sse3` and `pni`; `lahf_lm` and `lahf-lm`).
pub fn normalize_flag(flag: &str) -> &str {
    match flag {
        "sse3" => "pni",
        "pclmuldq" => "pclmulqdq",
        "sse4-1" | "sse4_1" => "sse4.1",
        "sse4-2" | "sse4_2" => "sse4.2",
        "xd" => "nx",
        "ffxsr" | "fxsr_opt" => "fxsr-opt",
        "i64" => "lm",
        "ds_cpl" => "ds-cpl",
        "tsc_adjust" => "tsc-adjust",
        "lahf_lm" => "lahf-lm",
        "cmp_legacy" => "cmp-legacy",
        "nodeid_msr" => "nodeid-msr",
        "perfctr_core" => "perfctr-core",
        "perfctr_nb" => "perfctr-nb",
        "kvm_nopiodelay" => "kvm-nopiodelay",
        "kvm_mmu" => "kvm-mmu",
        "kvm_asyncpf" => "kvm-asyncpf",
        "kvm_asyncpf_int" => "kvm-asyncpf-int",
        "kvm_steal_time" => "kvm-steal-time",
        "kvm_pv_eoi" => "kvm-pv-eoi",
        "kvm_pv_unhalt" => "kvm-pv-unhalt",
        "kvm_poll_control" => "kvm-poll-control",
        "svm_lock" => "svm-lock",
        "nrip_save" => "nrip-save",
        "tsc_scale" => "tsc-scale",
        "vmcb_clean" => "vmcb-clean",
        "pause_filter" => "pause-filter",
        "hv-apicv" => "hv-avic",
        "lbr_fmt" => "lbr-fmt",
        "sha_ni" => "sha-ni",
        other => other,
    }
}

/// `+flag`/`-flag` entries of a `;`-separated list.
pub fn parse_flags(list: &str) -> Result<Vec<(char, String)>, String> {
    list.split(';')
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut chars = f.chars();
            let op = chars.next().filter(|c| *c == '+' || *c == '-');
            let name: String = chars.collect();
            match op {
                Some(op)
                    if !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    Ok((op, name))
                }
                _ => Err(format!("'{f}' is not +FLAG or -FLAG")),
            }
        })
        .collect()
}

fn print_flags(flags: &[(char, String)]) -> String {
    flags
        .iter()
        .map(|(op, f)| format!("{op}{f}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "yes" | "on" | "true" => Ok(true),
        "0" | "no" | "off" | "false" => Ok(false),
        other => Err(format!("'{other}' is not a boolean")),
    }
}

/// Where a CPU property is set: a guest's `cpu:` or a custom model of `cpu-models.conf`
/// (which may use any flag and must name the model it reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Guest,
    Custom,
}

/// The check of one property, shared by the guest config, `cpu-models.conf` and the
/// API parameters of the custom models.
pub fn check_property(scope: Scope, key: &str, value: &str) -> Result<(), String> {
    match key {
        "flags" => {
            for (_, flag) in parse_flags(value)? {
                if scope == Scope::Guest && !VM_FLAGS.iter().any(|(f, _)| *f == flag) {
                    return Err(format!(
                        "flag '{flag}' is not allowed in a guest config (allowed: {})",
                        VM_FLAGS
                            .iter()
                            .map(|(f, _)| *f)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            Ok(())
        }
        "hidden" => parse_bool(value).map(drop),
        "hv-vendor-id" => {
            let ok = !value.is_empty()
                && value.len() <= 12
                && value.chars().all(|c| c.is_ascii_alphanumeric());
            ok.then_some(())
                .ok_or_else(|| format!("hv-vendor-id '{value}': 1 to 12 letters or digits"))
        }
        "phys-bits" => {
            let ok = value == "host" || value.parse::<u8>().is_ok_and(|b| (8..=64).contains(&b));
            ok.then_some(())
                .ok_or_else(|| format!("phys-bits '{value}': 8 to 64 or 'host'"))
        }
        "guest-phys-bits" => {
            let ok = value.parse::<u8>().is_ok_and(|b| (32..=64).contains(&b));
            ok.then_some(())
                .ok_or_else(|| format!("guest-phys-bits '{value}': 32 to 64"))
        }
        "level" => value
            .parse::<u32>()
            .map(drop)
            .map_err(|_| format!("level '{value}' is not a number from 0 to 4294967295")),
        "reported-model" => match scope {
            Scope::Guest => Err("'reported-model' is only allowed in custom CPU models".into()),
            Scope::Custom if vendor(value).is_some() => Ok(()),
            Scope::Custom => Err(format!(
                "'{value}' is not a QEMU CPU model (built-in and custom models cannot be reported)"
            )),
        },
        other => Err(format!("unknown property '{other}'")),
    }
}

/// A guest's `cpu:`, or a custom model (then `cputype` is `custom-NAME` and
/// `reported_model` the QEMU model it shows the guest).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuConf {
    pub cputype: String,
    pub reported_model: Option<String>,
    pub flags: Vec<(char, String)>,
    /// `None`: not set (a guest's setting overrides its custom model's only when set).
    pub hidden: Option<bool>,
    pub hv_vendor_id: Option<String>,
    pub phys_bits: Option<String>,
    pub guest_phys_bits: Option<u8>,
    pub level: Option<u32>,
}

impl CpuConf {
    fn set(&mut self, scope: Scope, key: &str, value: &str) -> Result<(), String> {
        check_property(scope, key, value)?;
        match key {
            "flags" => self.flags = parse_flags(value)?,
            "hidden" => self.hidden = Some(parse_bool(value)?),
            "hv-vendor-id" => self.hv_vendor_id = Some(value.to_string()),
            "phys-bits" => self.phys_bits = Some(value.to_string()),
            "guest-phys-bits" => self.guest_phys_bits = value.parse().ok(),
            "level" => self.level = value.parse().ok(),
            "reported-model" => self.reported_model = Some(value.to_string()),
            _ => {}
        }
        Ok(())
    }

    /// Parses and checks a guest's `cpu:` value. A custom model `custom-NAME` is accepted
    /// here; whether it exists is `cpu-models.conf`'s question ([`CustomCpuModels::check_guest`]).
    pub fn parse(text: &str) -> Result<CpuConf, String> {
        let p = PropertyString::parse(text).map_err(|e| e.to_string())?;
        let mut conf = CpuConf::default();
        for (key, value) in &p.items {
            match key.as_deref().unwrap_or("cputype") {
                "cputype" => conf.cputype = value.clone(),
                key => conf.set(Scope::Guest, key, value)?,
            }
        }
        let known = vendor(&conf.cputype).is_some()
            || builtin(&conf.cputype).is_some()
            || conf
                .cputype
                .strip_prefix("custom-")
                .is_some_and(|n| crate::format::config_id(n).is_ok());
        if !known {
            return Err(format!(
                "unknown CPU model '{}' (a custom model is named custom-NAME)",
                conf.cputype
            ));
        }
        Ok(conf)
    }

    pub fn is_custom(&self) -> bool {
        self.cputype.starts_with("custom-")
    }
}

pub const CPU_MODELS_CFG: &str = "virtual-guest/cpu-models.conf";

/// `virtual-guest/cpu-models.conf`: `cpu-model: NAME` sections, as Proxmox VE writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomCpuModels {
    /// By name (without `custom-`); each `cputype` is `custom-NAME`.
    pub models: BTreeMap<String, CpuConf>,
    pub digest: String,
}

impl CustomCpuModels {
    pub fn parse(raw: &str) -> Result<CustomCpuModels, SectionConfigError> {
        let mut cfg = CustomCpuModels {
            digest: section_config::digest(raw),
            ..CustomCpuModels::default()
        };
        for section in section_config::parse(raw)? {
            let id = section.id.clone();
            if section.section_type != "cpu-model" {
                return Err(invalid(
                    &id,
                    format!("unknown section type '{}'", section.section_type),
                ));
            }
            crate::format::config_id(&id).map_err(|e| invalid(&id, e))?;
            let mut model = CpuConf {
                cputype: format!("custom-{id}"),
                ..CpuConf::default()
            };
            for (key, value) in &section.properties {
                model
                    .set(Scope::Custom, key, value)
                    .map_err(|e| invalid(&id, format!("property '{key}': {e}")))?;
            }
            if cfg.models.insert(id.clone(), model).is_some() {
                return Err(invalid(&id, "model defined twice".into()));
            }
        }
        Ok(cfg)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, m) in &self.models {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&header_line("cpu-model", name));
            let props = Self::properties(m);
            for key in PROPERTIES {
                if let Some(value) = props.get(key) {
                    out.push_str(&property_line(key, value));
                }
            }
        }
        out
    }

    /// The properties of a model as `key value` pairs, as the file writes them (the
    /// API's reply and the base of an update).
    pub fn properties(model: &CpuConf) -> BTreeMap<&'static str, String> {
        let flags = (!model.flags.is_empty()).then(|| print_flags(&model.flags));
        let hidden = model.hidden.map(|h| if h { "1" } else { "0" }.to_string());
        [
            // Proxmox VE always writes the reported model, kvm64 when none was given.
            (
                "reported-model",
                Some(
                    model
                        .reported_model
                        .clone()
                        .unwrap_or_else(|| "kvm64".into()),
                ),
            ),
            ("flags", flags),
            ("hidden", hidden),
            ("hv-vendor-id", model.hv_vendor_id.clone()),
            ("phys-bits", model.phys_bits.clone()),
            (
                "guest-phys-bits",
                model.guest_phys_bits.map(|b| b.to_string()),
            ),
            ("level", model.level.map(|l| l.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// A model from `properties` (each checked as the file's parser checks it).
    pub fn model_from(name: &str, properties: &BTreeMap<&str, String>) -> Result<CpuConf, String> {
        crate::format::config_id(name)?;
        let mut model = CpuConf {
            cputype: format!("custom-{name}"),
            ..CpuConf::default()
        };
        for (key, value) in properties {
            model
                .set(Scope::Custom, key, value)
                .map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(model)
    }

    /// A guest's CPU with the custom model it names, refused when that model does not
    /// exist.
    pub fn resolve<'a>(&'a self, conf: &CpuConf) -> Result<Option<&'a CpuConf>, String> {
        if !conf.is_custom() {
            return Ok(None);
        }
        self.models
            .get(custom_name(&conf.cputype))
            .map(Some)
            .ok_or_else(|| format!("custom CPU model '{}' does not exist", conf.cputype))
    }
}

/// The properties of a custom model, as `cpu-models.conf` and the API name them.
pub const PROPERTIES: &[&str] = &[
    "reported-model",
    "flags",
    "hidden",
    "hv-vendor-id",
    "phys-bits",
    "guest-phys-bits",
    "level",
];

/// What QEMU offers guests on a node with one accelerator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelCpu {
    /// The CPUID flags a guest can have (QEMU's names), from the expansion of the
    /// `host` model (KVM) or `max` (TCG).
    pub flags: BTreeSet<String>,
    /// Every QEMU model with the flags it lacks here (empty: usable).
    pub unavailable: BTreeMap<String, Vec<String>>,
}

impl AccelCpu {
    /// Removes `masked` flags, and makes every model that has one (per `model_flags`,
    /// each model's own flags) unavailable. The test-only way to make one node of a
    /// cluster of identical hosts look older.
    pub fn mask(
        &mut self,
        masked: &BTreeSet<String>,
        model_flags: &BTreeMap<String, BTreeSet<String>>,
    ) {
        self.flags.retain(|f| !masked.contains(f));
        for (model, lacking) in &mut self.unavailable {
            for flag in model_flags.get(model).into_iter().flatten() {
                if masked.contains(flag) && !lacking.contains(flag) {
                    lacking.push(flag.clone());
                }
            }
            lacking.sort();
        }
    }

    /// What this accelerator lacks for `need` (empty: it can run it).
    pub fn missing(&self, need: &CpuRequirement) -> Vec<String> {
        let mut missing: BTreeSet<String> = BTreeSet::new();
        match self.unavailable.get(&need.qemu_model) {
            Some(lacking) => missing.extend(lacking.iter().cloned()),
            None => {
                missing.insert(format!("model {}", need.qemu_model));
            }
        }
        for flag in &need.flags {
            let present = if flag == "nested-virt" {
                self.flags.contains("svm") || self.flags.contains("vmx")
            } else {
                self.flags.contains(flag)
            };
            if !present {
                missing.insert(flag.clone());
            }
        }
        missing.into_iter().collect()
    }

    /// The highest model of [`LADDER`] this accelerator runs (with all below it), and the
    /// next one with what it lacks for it.
    pub fn baseline(&self) -> (Option<&'static str>, Option<(&'static str, Vec<String>)>) {
        let mut highest = None;
        for (model, _) in LADDER {
            let need = CpuRequirement::of_model(model);
            let missing = self.missing(&need);
            if !missing.is_empty() {
                return (highest, Some((model, missing)));
            }
            highest = Some(*model);
        }
        (highest, None)
    }
}

/// A node's CPU as it tells the cluster (`nodes/<node>/cpu_capability`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCpu {
    /// `GenuineIntel`, `AuthenticAMD`, from `/proc/cpuinfo`.
    pub vendor: String,
    pub model: String,
    /// `/proc/cpuinfo`'s flags (the kernel's names).
    pub cpuinfo_flags: Vec<String>,
    /// The accelerator the node runs guests with (`kvm` or `tcg`).
    pub accel: String,
    pub kvm: Option<AccelCpu>,
    pub tcg: Option<AccelCpu>,
    /// Flags hidden by the test-only `--cpu-flag-mask` (empty in production).
    #[serde(default)]
    pub masked: Vec<String>,
    pub qemu_version: String,
}

impl NodeCpu {
    /// What a guest gets here: the node's accelerator, or TCG when the guest says `kvm: 0`.
    pub fn for_guest(&self, kvm_off: bool) -> Option<(&'static str, &AccelCpu)> {
        if kvm_off || self.accel == "tcg" {
            self.tcg.as_ref().map(|c| ("tcg", c))
        } else {
            self.kvm.as_ref().map(|c| ("kvm", c))
        }
    }

    /// What this node lacks to run `need` (empty: it can, or nothing is known about its
    /// accelerator). A live migration from `live_from` of a `host`/`max` guest needs
    /// every flag the source gave it.
    pub fn missing(
        &self,
        need: &CpuRequirement,
        kvm_off: bool,
        live_from: Option<&NodeCpu>,
    ) -> Vec<String> {
        let Some((_, cpu)) = self.for_guest(kvm_off) else {
            return Vec::new();
        };
        let mut missing: BTreeSet<String> = cpu.missing(need).into_iter().collect();
        if need.follows_host() {
            if let Some((_, source)) = live_from.and_then(|s| s.for_guest(kvm_off)) {
                missing.extend(source.flags.difference(&cpu.flags).cloned());
            }
        }
        missing.into_iter().collect()
    }

    pub fn accel(&self, accel: &str) -> Option<&AccelCpu> {
        match accel {
            "kvm" => self.kvm.as_ref(),
            "tcg" => self.tcg.as_ref(),
            _ => None,
        }
    }
}

/// What a guest's CPU needs from a node: the QEMU model it runs and the flags it adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuRequirement {
    /// The model as configured (`x86-64-v3`, `custom-web`, `Haswell`).
    pub cputype: String,
    /// The QEMU model that runs (`qemu64` for `x86-64-v3`, a custom model's reported one).
    pub qemu_model: String,
    /// Flags that must be present (QEMU's names; `nested-virt` for svm or vmx).
    pub flags: BTreeSet<String>,
}

impl CpuRequirement {
    /// A built-in or QEMU model without further flags.
    pub fn of_model(model: &str) -> CpuRequirement {
        let (qemu_model, flags) = match builtin(model) {
            Some((reported, flags)) => (reported, parse_flags(flags).unwrap_or_default()),
            None => (model, Vec::new()),
        };
        CpuRequirement {
            cputype: model.to_string(),
            qemu_model: qemu_model.to_string(),
            flags: flags
                .into_iter()
                .filter(|(op, _)| *op == '+')
                .map(|(_, f)| normalize_flag(&f).to_string())
                .collect(),
        }
    }

    /// What a guest's `cpu:` needs; `custom` is its custom model, if it names one.
    pub fn of(conf: &CpuConf, custom: Option<&CpuConf>) -> CpuRequirement {
        let base = match custom {
            Some(c) => c.reported_model.as_deref().unwrap_or("kvm64"),
            None => conf.cputype.as_str(),
        };
        let mut need = CpuRequirement::of_model(base);
        need.cputype = conf.cputype.clone();
        // Later lists win, as in the -cpu argument: the custom model's, then the guest's.
        for (op, flag) in custom.into_iter().flat_map(|c| &c.flags).chain(&conf.flags) {
            let flag = normalize_flag(flag).to_string();
            if *op == '+' {
                need.flags.insert(flag);
            } else {
                need.flags.remove(&flag);
            }
        }
        need
    }

    /// `host` and `max` are whatever the node has: a live migration needs every flag of
    /// the source on the target.
    pub fn follows_host(&self) -> bool {
        matches!(self.qemu_model.as_str(), "host" | "max")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_cpu_values_say_what_is_wrong() {
        for (text, what) in [
            ("Pentium9", "unknown CPU model"),
            ("custom-", "unknown CPU model"),
            ("host,flags=+avx512f", "not allowed"),
            ("host,reported-model=kvm64", "reported-model"),
            ("host,flags=pcid", "+FLAG"),
            ("host,phys-bits=99", "phys-bits"),
            ("host,guest-phys-bits=12", "guest-phys-bits"),
            ("host,hidden=maybe", "boolean"),
        ] {
            let err = CpuConf::parse(text).unwrap_err();
            assert!(err.contains(what), "{text}: {err}");
        }
    }

    #[test]
    fn custom_models_read_and_write_as_proxmox_ve_does() {
        let text = "cpu-model: web\n\treported-model Haswell\n\tflags +avx2;-pcid\n\thidden 1\n\tphys-bits host\n\nCPU-model: x\n";
        let err = CustomCpuModels::parse(text).unwrap_err().to_string();
        assert!(err.contains("unknown section type"), "{err}");
        let cfg = CustomCpuModels::parse(&text[..text.find("\nCPU").unwrap() + 1]).unwrap();
        let web = &cfg.models["web"];
        assert_eq!(web.cputype, "custom-web");
        assert_eq!(web.reported_model.as_deref(), Some("Haswell"));
        assert_eq!(web.hidden, Some(true));
        assert_eq!(
            cfg.to_text(),
            "cpu-model: web\n\treported-model Haswell\n\tflags +avx2;-pcid\n\thidden 1\n\tphys-bits host\n"
        );
        // A model without a reported model reports kvm64, written out as Proxmox VE does.
        let bare = CustomCpuModels::parse("cpu-model: bare\n").unwrap();
        assert_eq!(bare.to_text(), "cpu-model: bare\n\treported-model kvm64\n");
        for (bad, what) in [
            (
                "cpu-model: a\n\treported-model x86-64-v3\n",
                "not a QEMU CPU model",
            ),
            (
                "cpu-model: a\n\treported-model custom-b\n",
                "not a QEMU CPU model",
            ),
            ("cpu-model: a\n\tflags avx\n", "+FLAG"),
            ("cpu-model: 1a\n", "invalid configuration ID"),
        ] {
            let err = CustomCpuModels::parse(bad).unwrap_err().to_string();
            assert!(err.contains(what), "{bad}: {err}");
        }
    }

    #[test]
    fn requirements_follow_the_models_and_the_guest_flags() {
        let custom = CustomCpuModels::parse(
            "cpu-model: web\n\treported-model EPYC\n\tflags +avx2;+sse4_1\n",
        )
        .unwrap();
        let conf = CpuConf::parse("custom-web,flags=+aes;+nested-virt").unwrap();
        let need = CpuRequirement::of(&conf, custom.resolve(&conf).unwrap());
        assert_eq!(need.qemu_model, "EPYC");
        assert_eq!(
            need.flags.iter().map(String::as_str).collect::<Vec<_>>(),
            ["aes", "avx2", "nested-virt", "sse4.1"]
        );
        let err = custom
            .resolve(&CpuConf::parse("custom-nope").unwrap())
            .unwrap_err();
        assert!(err.contains("does not exist"), "{err}");

        let v3 = CpuRequirement::of(&CpuConf::parse("x86-64-v3").unwrap(), None);
        assert_eq!(v3.qemu_model, "qemu64");
        assert!(v3.flags.contains("avx2") && v3.flags.contains("sse4.1"));
        let no_aes = CpuRequirement::of(&CpuConf::parse("x86-64-v2-AES,flags=-aes").unwrap(), None);
        assert!(!no_aes.flags.contains("aes"));
    }

    fn accel(flags: &str, unavailable: &[(&str, &str)]) -> AccelCpu {
        AccelCpu {
            flags: flags.split_whitespace().map(String::from).collect(),
            unavailable: unavailable
                .iter()
                .map(|(m, l)| {
                    (
                        m.to_string(),
                        l.split_whitespace().map(String::from).collect(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_node_lacks_what_the_model_and_flags_need() {
        let v2 = "pni popcnt sse4.1 sse4.2 ssse3";
        let node = accel(
            &format!("{v2} aes svm"),
            &[("qemu64", ""), ("Haswell", "avx2 fma"), ("host", "")],
        );
        let v3 = CpuRequirement::of_model("x86-64-v3");
        assert_eq!(
            node.missing(&v3),
            ["abm", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave"]
        );
        assert_eq!(
            node.missing(&CpuRequirement::of_model("Haswell")),
            ["avx2", "fma"]
        );
        assert_eq!(
            node.missing(&CpuRequirement::of_model("Opteron_G9")),
            ["model Opteron_G9"]
        );
        let nested = CpuRequirement::of(&CpuConf::parse("host,flags=+nested-virt").unwrap(), None);
        assert!(node.missing(&nested).is_empty());
        assert_eq!(accel("", &[("host", "")]).missing(&nested), ["nested-virt"]);
        assert_eq!(
            node.baseline(),
            (
                Some("x86-64-v2-AES"),
                Some(("x86-64-v3", node.missing(&v3)))
            )
        );

        // Masking aes takes the flag away and every model that has it.
        let mut masked = node.clone();
        let model_flags =
            BTreeMap::from([("Haswell".to_string(), BTreeSet::from(["aes".to_string()]))]);
        masked.mask(&BTreeSet::from(["aes".to_string()]), &model_flags);
        assert_eq!(masked.baseline().0, Some("x86-64-v2"));
        assert_eq!(masked.unavailable["Haswell"], ["aes", "avx2", "fma"]);
        assert_eq!(masked.unavailable["qemu64"], Vec::<String>::new());
    }
}
