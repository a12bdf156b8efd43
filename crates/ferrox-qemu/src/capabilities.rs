//! What the installed QEMU offers: its CPU models (with the vendor whose CPUs they model)
//! and its machine types, read from `-cpu help` and `-machine help`.

use std::path::Path;
use std::process::Command;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuModel {
    pub name: String,
    /// `GenuineIntel`, `AuthenticAMD`, `HygonGenuine`, or `default` for generic models.
    pub vendor: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineType {
    /// `pc-i440fx-7.2`, `pc-q35-7.2`.
    pub id: String,
    /// `i440fx` or `q35`.
    pub kind: String,
    pub version: String,
}

fn vendor_of(description: &str) -> Option<&'static str> {
    let d = description.to_ascii_lowercase();
    if d.contains("intel") {
        Some("GenuineIntel")
    } else if ["amd", "epyc", "opteron", "phenom", "athlon"]
        .iter()
        .any(|k| d.contains(k))
    {
        Some("AuthenticAMD")
    } else if d.contains("hygon") {
        Some("HygonGenuine")
    } else {
        None
    }
}

/// Parses `qemu-system-x86_64 -cpu help`. An alias takes the vendor of the model it
/// names; models of no particular vendor (`qemu64`, `max`, `x86-64-v2`) are `default`.
pub fn parse_cpu_help(text: &str) -> Vec<CpuModel> {
    let rows: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("x86 "))
        .filter_map(|l| {
            let l = l.trim();
            let (name, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (!name.is_empty()).then_some((name, rest.trim()))
        })
        .collect();
    let own_vendor = |name: &str| {
        rows.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, d)| vendor_of(d))
    };
    let mut models: Vec<CpuModel> = rows
        .iter()
        .map(|(name, description)| {
            let target = description
                .strip_prefix("(alias of ")
                .and_then(|t| t.strip_suffix(')'));
            // An alias "configured by machine type" names the model's `-v1`.
            let versioned = format!("{name}-v1");
            let vendor = vendor_of(description)
                .or_else(|| target.and_then(own_vendor))
                .or_else(|| own_vendor(&versioned))
                .unwrap_or("default");
            CpuModel {
                name: name.to_string(),
                vendor: vendor.to_string(),
            }
        })
        .collect();
    if !models.iter().any(|m| m.name == "host") {
        models.push(CpuModel {
            name: "host".into(),
            vendor: "default".into(),
        });
    }
    models
}

/// Parses `qemu-system-x86_64 -machine help`: the versioned i440fx and q35 types.
pub fn parse_machine_help(text: &str) -> Vec<MachineType> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|id| {
            let (kind, version) = if let Some(v) = id.strip_prefix("pc-i440fx-") {
                ("i440fx", v)
            } else if let Some(v) = id.strip_prefix("pc-q35-") {
                ("q35", v)
            } else {
                return None;
            };
            Some(MachineType {
                id: id.to_string(),
                kind: kind.to_string(),
                version: version.to_string(),
            })
        })
        .collect()
}

fn help(binary: &Path, what: &str) -> Result<String, String> {
    let out = Command::new(binary)
        .args([what, "help"])
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!("{} {what} help failed", binary.display()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The CPU models of the QEMU at `binary`.
pub fn cpu_models(binary: &Path) -> Result<Vec<CpuModel>, String> {
    help(binary, "-cpu").map(|t| parse_cpu_help(&t))
}

/// The machine types of the QEMU at `binary`.
pub fn machine_types(binary: &Path) -> Result<Vec<MachineType>, String> {
    help(binary, "-machine").map(|t| parse_machine_help(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_models_get_their_vendor_and_aliases_the_vendor_of_their_target() {
        let text = "Available CPUs:\nx86 Broadwell             (alias configured by machine type)\nx86 Broadwell-IBRS        (alias of Broadwell-v3)\nx86 Broadwell-v1          Intel Core Processor (Broadwell)\nx86 Broadwell-v3          Intel Core Processor (Broadwell, IBRS)\nx86 EPYC-v1               AMD EPYC Processor\nx86 qemu64                QEMU Virtual CPU version 2.5+\n\nRecognized CPUID flags:\n  3dnow\n";
        let models = parse_cpu_help(text);
        let vendor = |n: &str| models.iter().find(|m| m.name == n).unwrap().vendor.clone();
        assert_eq!(vendor("Broadwell"), "GenuineIntel");
        assert_eq!(vendor("Broadwell-IBRS"), "GenuineIntel");
        assert_eq!(vendor("EPYC-v1"), "AuthenticAMD");
        assert_eq!(vendor("qemu64"), "default");
        assert_eq!(vendor("host"), "default");
        assert!(!models.iter().any(|m| m.name == "3dnow"));
    }

    #[test]
    fn machine_types_are_the_versioned_pc_and_q35_ones() {
        let text = "Supported machines are:\nmicrovm              microvm (i386)\npc                   Standard PC (alias of pc-i440fx-7.2)\npc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)\nq35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)\npc-q35-7.2           Standard PC (Q35 + ICH9, 2009)\n";
        let types = parse_machine_help(text);
        assert_eq!(
            types
                .iter()
                .map(|t| (t.id.as_str(), t.kind.as_str(), t.version.as_str()))
                .collect::<Vec<_>>(),
            [
                ("pc-i440fx-7.2", "i440fx", "7.2"),
                ("pc-q35-7.2", "q35", "7.2")
            ]
        );
    }
}
