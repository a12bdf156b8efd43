//! This host's CPU as guests can see it, told to the cluster: `/proc/cpuinfo`, and QEMU's
//! view with each accelerator (`host`/`max` expansion, every model with what it lacks).
//! Every node reads the others' records from the store to decide where a guest's CPU can
//! run; a node whose record is missing is not refused (nothing is known against it).

use crate::Node;
use ferrox_qemu::capabilities::probe_cpu;
use ferrox_qemu::Accelerator;
use ferrox_types::cpu::{normalize_flag, NodeCpu};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where `node` records its CPU in the store.
pub fn record_path(node: &str) -> String {
    format!("nodes/{node}/cpu_capability")
}

/// `(vendor, model name, flags)` of `/proc/cpuinfo`'s first processor.
pub fn parse_cpuinfo(text: &str) -> (String, String, Vec<String>) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
            .unwrap_or_default()
    };
    let flags = field("flags")
        .split_whitespace()
        .map(String::from)
        .collect();
    (field("vendor_id"), field("model name"), flags)
}

/// Probes this host: `/proc/cpuinfo` and QEMU with KVM (when `/dev/kvm` opens) and TCG.
/// `masked` flags are removed everywhere (the test-only `--cpu-flag-mask`).
pub fn probe(node: &Node, masked: &BTreeSet<String>) -> NodeCpu {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let (vendor, model, flags) = parse_cpuinfo(&cpuinfo);
    let mut record = NodeCpu {
        vendor,
        model,
        cpuinfo_flags: flags
            .into_iter()
            .filter(|f| !masked.contains(normalize_flag(f)))
            .collect(),
        accel: node.accel.as_str().to_string(),
        masked: masked.iter().cloned().collect(),
        ..NodeCpu::default()
    };
    let kvm_usable = crate::AccelSetting::Auto.resolve() == Accelerator::Kvm;
    for accel in [Accelerator::Kvm, Accelerator::Tcg] {
        if accel == Accelerator::Kvm && !kvm_usable {
            continue;
        }
        match probe_cpu(&node.opts.qemu_binary, accel, &node.dirs.run, masked) {
            Ok((cpu, version)) => {
                record.qemu_version = version;
                match accel {
                    Accelerator::Kvm => record.kvm = Some(cpu),
                    Accelerator::Tcg => record.tcg = Some(cpu),
                }
            }
            Err(e) => tracing::warn!("probing QEMU's CPU models with {}: {e}", accel.as_str()),
        }
    }
    record
}

/// Writes this node's record into the store when it differs from what is there.
pub fn publish(node: &Node) -> anyhow::Result<()> {
    let Some(record) = node.cpu.get() else {
        return Ok(());
    };
    let path = record_path(&node.opts.node_name);
    let text = serde_json::to_string(record)?;
    if node.tree.get(&path).map(|e| e.data) != Some(text.clone()) {
        node.tree
            .put(&path, &text, ferrox_store::Expect::Any)
            .map_err(|e| anyhow::anyhow!("storing {path}: {e}"))?;
    }
    Ok(())
}

/// Probes in the background (QEMU starts twice) and publishes, retrying while the store
/// has no quorum.
pub fn spawn_publisher(node: Arc<Node>, masked: BTreeSet<String>) {
    std::thread::spawn(move || {
        let _ = node.cpu.set(probe(&node, &masked));
        for attempt in 0.. {
            match publish(&node) {
                Ok(()) => return,
                Err(e) if attempt % 30 == 0 => tracing::warn!("CPU capabilities: {e:#}"),
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    });
}

/// The members' records, parsed once per version (HA asks for every placement).
#[derive(Default)]
pub struct RecordCache(Mutex<BTreeMap<String, (u64, Arc<NodeCpu>)>>);

/// Every member's record, by node name (a record that does not parse is left out).
pub fn node_cpus(node: &Node) -> BTreeMap<String, Arc<NodeCpu>> {
    let members = node.store.status().members;
    let Ok(mut cache) = node.cpu_records.0.lock() else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for member in members {
        let name = member.member.name;
        let Some(entry) = node.tree.get(&record_path(&name)) else {
            continue;
        };
        match cache.get(&name) {
            Some((version, record)) if *version == entry.version => {
                out.insert(name, Arc::clone(record));
            }
            _ => match serde_json::from_str::<NodeCpu>(&entry.data) {
                Ok(record) => {
                    let record = Arc::new(record);
                    cache.insert(name.clone(), (entry.version, Arc::clone(&record)));
                    out.insert(name, record);
                }
                Err(e) => tracing::warn!("{}: {e}", record_path(&name)),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_gives_vendor_model_and_flags() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_1 pni\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n";
        assert_eq!(
            parse_cpuinfo(text),
            (
                "AuthenticAMD".to_string(),
                "AMD EPYC".to_string(),
                vec!["fpu".to_string(), "sse4_1".to_string(), "pni".to_string()]
            )
        );
    }
}
