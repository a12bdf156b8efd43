//! A guest's `cpu:` as Proxmox VE reads it (`[cputype=]<model>[,flags=+a;-b][,hidden=1]
//! [,hv-vendor-id=..][,phys-bits=..][,level=..]`), the models it knows with their vendors,
//! and its built-in models (`x86-64-vN`: `qemu64` plus exact flag sets). The `-cpu`
//! argument built from it is `ferrox_qemu::cpu`'s.

use crate::property_string::PropertyString;

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

/// A built-in model's reported QEMU model and flags.
pub fn builtin(model: &str) -> Option<(&'static str, &'static str)> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
