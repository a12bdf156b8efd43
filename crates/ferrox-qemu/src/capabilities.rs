//! What the installed QEMU offers: the CPUID flags it understands and its machine types,
//! read from `-cpu help` and `-machine help`; and what it offers guests on this host with one accelerator, asked
//! over QMP from a paused QEMU without a machine (`query-cpu-model-expansion` of `host` or
//! `max`, `query-cpu-definitions` with their unavailable features).

use crate::command::Accelerator;
use crate::qmp::Qmp;
use crate::QemuError;
use ferrox_types::cpu::{normalize_flag, AccelCpu};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineType {
    /// `pc-i440fx-7.2`, `pc-q35-7.2`.
    pub id: String,
    /// `i440fx` or `q35`.
    pub kind: String,
    pub version: String,
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

/// The machine types of the QEMU at `binary`.
pub fn machine_types(binary: &Path) -> Result<Vec<MachineType>, String> {
    help(binary, "-machine").map(|t| parse_machine_help(&t))
}

/// The CPUID flags QEMU understands, from the end of `-cpu help` (QEMU's names).
pub fn parse_recognized_flags(text: &str) -> Vec<String> {
    let Some((_, rest)) = text.split_once("Recognized CPUID flags:") else {
        return Vec::new();
    };
    let flags: BTreeSet<String> = rest
        .split_whitespace()
        .map(|f| normalize_flag(f).to_string())
        .collect();
    flags.into_iter().collect()
}

/// The CPUID flags the QEMU at `binary` understands.
pub fn recognized_flags(binary: &Path) -> Result<Vec<String>, String> {
    help(binary, "-cpu").map(|t| parse_recognized_flags(&t))
}

/// The flags set in a `query-cpu-model-expansion` answer, in QEMU's own names.
fn expanded_flags(answer: &Value) -> BTreeSet<String> {
    answer["model"]["props"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_bool() == Some(true))
        .map(|(k, _)| normalize_flag(k).to_string())
        .collect()
}

/// A paused QEMU without a machine, killed when dropped.
struct ProbeProcess(std::process::Child);

impl Drop for ProbeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A daemon killed while it probed leaves its paused probe QEMU behind (the drop that
/// kills it never ran): the next probe on the same socket ends it.
fn kill_stale_probes(socket: &Path) {
    let needle = socket.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::Kill);
            }
        }
    }
}

/// What guests get on this host from the QEMU at `binary` with `accel`: the flags of
/// the `host` (KVM) or `max` (TCG) model, and every QEMU model with what it lacks.
/// With `masked` flags (the test-only mask), each model's own flags are expanded too, so
/// that a model using a masked flag becomes unavailable.
pub fn probe_cpu(
    binary: &Path,
    accel: Accelerator,
    run_dir: &Path,
    masked: &BTreeSet<String>,
) -> Result<(AccelCpu, String), QemuError> {
    let socket = run_dir.join(format!("cpu-probe-{}.qmp", accel.as_str()));
    kill_stale_probes(&socket);
    let _ = std::fs::remove_file(&socket);
    let child = Command::new(binary)
        .args(["-machine", &format!("none,accel={}", accel.as_str())])
        .args(["-display", "none", "-nodefaults", "-S"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", socket.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| QemuError::Io {
            what: binary.display().to_string(),
            source,
        })?;
    let mut process = ProbeProcess(child);
    let connected = Qmp::connect(&socket, Duration::from_secs(10));
    let _ = std::fs::remove_file(&socket);
    let mut qmp = match connected {
        Ok(q) => q,
        Err(e) => {
            let _ = process.0.kill();
            let mut stderr = String::new();
            if let Some(mut err) = process.0.stderr.take() {
                use std::io::Read;
                let _ = err.read_to_string(&mut stderr);
            }
            return Err(QemuError::Start(format!("{e}: {}", stderr.trim())));
        }
    };
    let version = qmp.execute("query-version", None)?;
    let version = format!(
        "{}.{}.{}",
        version["qemu"]["major"], version["qemu"]["minor"], version["qemu"]["micro"]
    );
    let model = match accel {
        Accelerator::Kvm => json!({"name": "host", "props": {"hv-passthrough": true}}),
        Accelerator::Tcg => json!({"name": "max"}),
    };
    let expansion = qmp.execute(
        "query-cpu-model-expansion",
        Some(json!({"type": "full", "model": model})),
    )?;
    let mut cpu = AccelCpu {
        flags: expanded_flags(&expansion),
        unavailable: BTreeMap::new(),
    };
    let definitions = qmp.execute("query-cpu-definitions", None)?;
    for def in definitions.as_array().into_iter().flatten() {
        let Some(name) = def["name"].as_str() else {
            continue;
        };
        let mut lacking: Vec<String> = def["unavailable-features"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|f| normalize_flag(f).to_string())
            .collect();
        lacking.sort();
        lacking.dedup();
        cpu.unavailable.insert(name.to_string(), lacking);
    }
    if !masked.is_empty() {
        let mut model_flags = BTreeMap::new();
        for name in cpu.unavailable.keys() {
            let answer = qmp.execute(
                "query-cpu-model-expansion",
                Some(json!({"type": "full", "model": {"name": name}})),
            )?;
            model_flags.insert(name.clone(), expanded_flags(&answer));
        }
        cpu.mask(masked, &model_flags);
    }
    drop(process);
    Ok((cpu, version))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn recognized_flags_are_the_words_after_the_models() {
        let text = "Available CPUs:\nx86 qemu64                QEMU Virtual CPU version 2.5+\n\nRecognized CPUID flags:\n  3dnow 3dnowext sse4_1 sse4.1\n  pni avx2\n";
        assert_eq!(
            parse_recognized_flags(text),
            ["3dnow", "3dnowext", "avx2", "pni", "sse4.1"]
        );
    }
}
