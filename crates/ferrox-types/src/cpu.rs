//! A guest's `cpu:` as Proxmox VE reads it (`[cputype=]<model>[,flags=+a;-b][,hidden=1]
//! [,hv-vendor-id=..][,phys-bits=..][,level=..]`) and the QEMU `-cpu` argument qemu-server
//! builds from it: the x86-64-vN models are `qemu64` plus Proxmox VE's exact flag sets,
//! Proxmox VE adds its own flags (`+lahf_lm`, `+sep`, `+kvm_pv_unhalt`, ...), `enforce`
//! under KVM for every model but `host`, `kvm=off` when hidden, the vendor of the model.

use crate::property_string::PropertyString;
use std::collections::BTreeMap;

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

/// The flags a guest config may set itself (Proxmox VE's VM-specific whitelist).
pub const VM_FLAGS: &[&str] = &[
    "nested-virt",
    "md-clear",
    "pcid",
    "spec-ctrl",
    "ssbd",
    "ibpb",
    "virt-ssbd",
    "amd-ssbd",
    "amd-no-ssb",
    "pdpe1gb",
    "hv-tlbflush",
    "hv-evmcs",
    "aes",
];

pub fn vendor(model: &str) -> Option<&'static str> {
    MODELS.iter().find(|(m, _)| *m == model).map(|(_, v)| *v)
}

fn builtin(model: &str) -> Option<(&'static str, &'static str)> {
    BUILTIN
        .iter()
        .find(|(m, _, _)| *m == model)
        .map(|(_, reported, flags)| (*reported, *flags))
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

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuConf {
    pub cputype: String,
    pub flags: Vec<(char, String)>,
    pub hidden: bool,
    pub hv_vendor_id: Option<String>,
    pub phys_bits: Option<String>,
    pub level: Option<u32>,
}

impl CpuConf {
    /// Parses and checks a guest's `cpu:` value (a custom model `custom-NAME` is accepted
    /// here; whether it exists is the cluster's question).
    pub fn parse(text: &str) -> Result<CpuConf, String> {
        let p = PropertyString::parse(text).map_err(|e| e.to_string())?;
        let mut conf = CpuConf::default();
        for (key, value) in &p.items {
            match key.as_deref().unwrap_or("cputype") {
                "cputype" => conf.cputype = value.clone(),
                "flags" => {
                    conf.flags = parse_flags(value)?;
                    if let Some((_, bad)) = conf
                        .flags
                        .iter()
                        .find(|(_, f)| !VM_FLAGS.contains(&f.as_str()))
                    {
                        return Err(format!(
                            "flag '{bad}' is not allowed in a guest config (allowed: {})",
                            VM_FLAGS.join(", ")
                        ));
                    }
                }
                "hidden" => conf.hidden = matches!(value.as_str(), "1" | "yes" | "on" | "true"),
                "hv-vendor-id" => {
                    if value.is_empty()
                        || value.len() > 12
                        || !value.chars().all(|c| c.is_ascii_alphanumeric())
                    {
                        return Err(format!("hv-vendor-id '{value}': 1 to 12 letters or digits"));
                    }
                    conf.hv_vendor_id = Some(value.clone());
                }
                "phys-bits" => {
                    let ok =
                        value == "host" || value.parse::<u8>().is_ok_and(|b| (8..=64).contains(&b));
                    if !ok {
                        return Err(format!("phys-bits '{value}': 8 to 64 or 'host'"));
                    }
                    conf.phys_bits = Some(value.clone());
                }
                "level" => {
                    conf.level = Some(
                        value
                            .parse()
                            .map_err(|_| format!("level '{value}' is not a number"))?,
                    )
                }
                "reported-model" => {
                    return Err("'reported-model' is only allowed in custom CPU models".into())
                }
                other => return Err(format!("unknown property '{other}'")),
            }
        }
        let known = vendor(&conf.cputype).is_some()
            || builtin(&conf.cputype).is_some()
            || conf
                .cputype
                .strip_prefix("custom-")
                .is_some_and(|n| !n.is_empty());
        if !known {
            return Err(format!("unknown CPU model '{}'", conf.cputype));
        }
        Ok(conf)
    }

    /// QEMU's `-cpu` value as qemu-server builds it for a built-in or named model.
    /// `host_flags` are the host's `/proc/cpuinfo` flags (for `nested-virt`).
    pub fn qemu_arg(&self, kvm: bool, host_flags: &str) -> Result<String, String> {
        if self.cputype.starts_with("custom-") {
            return Err(format!(
                "custom CPU model '{}' is not supported yet",
                self.cputype
            ));
        }
        let (model, builtin_flags) = match builtin(&self.cputype) {
            Some((reported, flags)) => (reported, parse_flags(flags)?),
            None => (self.cputype.as_str(), Vec::new()),
        };
        // (op, value) per flag name; later sets override earlier ones, as qemu-server's
        // resolve order: PVE's own, the built-in model's, the guest's, the forced ones.
        let mut flags: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
        let mut set = |name: &str, op: &str, value: Option<&str>| {
            flags.insert(name.to_string(), (op.to_string(), value.map(String::from)));
        };
        if model == "kvm64" {
            set("lahf_lm", "+", None);
        }
        if model == "kvm64" || model == "kvm32" {
            set("sep", "+", None);
        }
        if model.starts_with("Opteron") {
            set("rdtscp", "-", None);
        }
        if kvm {
            set("kvm_pv_unhalt", "+", None);
            set("kvm_pv_eoi", "+", None);
        }
        for (op, name) in &builtin_flags {
            set(name, &op.to_string(), None);
        }
        for (op, name) in &self.flags {
            let name = if name == "nested-virt" {
                let words: Vec<&str> = host_flags.split_whitespace().collect();
                match ["svm", "vmx"].into_iter().find(|f| words.contains(f)) {
                    Some(f) => f,
                    None => continue,
                }
            } else {
                name.as_str()
            };
            set(name, &op.to_string(), None);
        }
        if model != "host" && kvm {
            set("enforce", "", None);
        }
        if self.hidden {
            set("kvm", "", Some("off"));
        }
        if let Some(v) = vendor(model).filter(|v| *v != "default") {
            set("vendor", "", Some(v));
        }
        let mut arg = model.to_string();
        if let Some(level) = self.level {
            arg.push_str(&format!(",level={level}"));
        }
        for (name, (op, value)) in &flags {
            arg.push(',');
            arg.push_str(op);
            arg.push_str(name);
            if let Some(v) = value {
                arg.push('=');
                arg.push_str(v);
            }
        }
        if let Some(id) = &self.hv_vendor_id {
            arg.push_str(&format!(",hv-vendor-id={id}"));
        }
        match self.phys_bits.as_deref() {
            Some("host") => arg.push_str(",host-phys-bits=true"),
            Some(bits) => arg.push_str(&format!(",phys-bits={bits}")),
            None => {}
        }
        Ok(arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_models_are_qemu64_with_proxmox_ve_s_flags() {
        let conf = CpuConf::parse("x86-64-v2-AES").unwrap();
        assert_eq!(
            conf.qemu_arg(true, "").unwrap(),
            "qemu64,+aes,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3"
        );
        assert_eq!(
            conf.qemu_arg(false, "").unwrap(),
            "qemu64,+aes,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3"
        );
    }

    #[test]
    fn named_models_get_vendor_guest_flags_and_hidden() {
        let conf =
            CpuConf::parse("cputype=Haswell,flags=+pcid;-md-clear;+nested-virt,hidden=1").unwrap();
        assert_eq!(
            conf.qemu_arg(true, "fpu vme vmx sse").unwrap(),
            "Haswell,enforce,kvm=off,+kvm_pv_eoi,+kvm_pv_unhalt,-md-clear,+pcid,vendor=GenuineIntel,+vmx"
        );
        assert_eq!(
            CpuConf::parse("kvm64").unwrap().qemu_arg(true, "").unwrap(),
            "kvm64,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+lahf_lm,+sep"
        );
        assert_eq!(
            CpuConf::parse("host").unwrap().qemu_arg(true, "").unwrap(),
            "host,+kvm_pv_eoi,+kvm_pv_unhalt"
        );
    }

    #[test]
    fn bad_cpu_values_say_what_is_wrong() {
        for (text, what) in [
            ("Pentium9", "unknown CPU model"),
            ("host,flags=+avx512f", "not allowed"),
            ("host,reported-model=kvm64", "reported-model"),
            ("host,flags=pcid", "+FLAG"),
            ("host,phys-bits=99", "phys-bits"),
        ] {
            let err = CpuConf::parse(text).unwrap_err();
            assert!(err.contains(what), "{text}: {err}");
        }
    }
}
