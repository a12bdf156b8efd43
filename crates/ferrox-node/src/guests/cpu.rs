//! Where a guest's CPU can run: its `cpu:` (with the cluster's custom models) against
//! the CPU records of the nodes (`host::cpu`). Migration, HA placement and the default
//! model of new guests ask here.

use crate::host::cpu::node_cpus;
use crate::Node;
use ferrox_api::ApiError;
use ferrox_types::cpu::{
    CpuConf, CpuRequirement, CustomCpuModels, NodeCpu, CPU_MODELS_CFG, DEFAULT_MODEL, LADDER,
};
use ferrox_types::GuestConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A guest's CPU needs and whether it runs without KVM (`kvm: 0`).
pub struct GuestCpu {
    pub need: CpuRequirement,
    pub kvm_off: bool,
}

/// Why a node cannot run a guest's CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuRefusal {
    /// "node 'n2' cannot run CPU model 'x86-64-v3': it lacks avx2, bmi2"
    pub reason: String,
    /// The flags (or `model X`) the node lacks.
    pub missing: Vec<String>,
}

impl Node {
    /// `virtual-guest/cpu-models.conf` from the store.
    pub fn custom_cpu_models(&self) -> Result<CustomCpuModels, ApiError> {
        let text = self
            .tree
            .get(CPU_MODELS_CFG)
            .map(|e| e.data)
            .unwrap_or_default();
        CustomCpuModels::parse(&text)
            .map_err(|e| ApiError::internal(format!("{CPU_MODELS_CFG}: {e}")))
    }

    /// Every node's CPU record.
    pub fn node_cpus(&self) -> BTreeMap<String, Arc<NodeCpu>> {
        node_cpus(self)
    }

    /// What a guest config's CPU needs; `None` without a `cpu:` (QEMU's default model,
    /// which starts anywhere).
    pub fn guest_cpu(&self, cfg: &GuestConfig) -> Result<Option<GuestCpu>, ApiError> {
        let Some(text) = cfg.options.get("cpu") else {
            return Ok(None);
        };
        let conf = CpuConf::parse(text).map_err(|e| ApiError::param("cpu", e))?;
        let models = self.custom_cpu_models()?;
        let custom = models
            .resolve(&conf)
            .map_err(|e| ApiError::param("cpu", e))?;
        Ok(Some(GuestCpu {
            need: CpuRequirement::of(&conf, custom),
            kvm_off: cfg.options.get("kvm").is_some_and(|v| v == "0"),
        }))
    }

    /// The nodes that cannot run `cfg`'s CPU, each with why: the one place migration,
    /// HA placement and guest start ask. `live_from` is the node a live migration starts
    /// from (left out; a `host` guest needs its flags on the target). Nodes that have not
    /// told their CPU are not refused.
    pub fn cpu_refusals(
        &self,
        cfg: &GuestConfig,
        live_from: Option<&str>,
    ) -> Result<BTreeMap<String, CpuRefusal>, ApiError> {
        let Some(cpu) = self.guest_cpu(cfg)? else {
            return Ok(BTreeMap::new());
        };
        let cpus = self.node_cpus();
        let source = live_from.and_then(|n| cpus.get(n)).map(|s| &**s);
        Ok(cpus
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != live_from)
            .filter_map(|(name, record)| {
                let missing = record.missing(&cpu.need, cpu.kvm_off, source);
                (!missing.is_empty()).then(|| {
                    let reason = format!(
                        "node '{name}' cannot run CPU model '{}': it lacks {}",
                        cpu.need.cputype,
                        missing.join(", ")
                    );
                    (name.clone(), CpuRefusal { reason, missing })
                })
            })
            .collect())
    }

    /// Refuses a `cpu:` value naming a custom model that does not exist.
    pub fn check_cpu_value(&self, value: &str) -> Result<(), String> {
        let conf = CpuConf::parse(value)?;
        let models = self.custom_cpu_models().map_err(|e| e.message)?;
        models.resolve(&conf).map(drop)
    }

    /// The model a new guest gets without a `cpu:`: Proxmox VE's `x86-64-v2-AES` when every
    /// node that told its CPU can run it, else the highest built-in model they all run,
    /// else none (QEMU's default). Unknown nodes do not count.
    pub fn default_cpu_model(&self, kvm_off: bool) -> Option<&'static str> {
        let cpus = self.node_cpus();
        if cpus.is_empty() {
            return None;
        }
        let runs_everywhere = |model: &str| {
            let need = CpuRequirement::of_model(model);
            cpus.values().all(|c| {
                c.for_guest(kvm_off).is_some() && c.missing(&need, kvm_off, None).is_empty()
            })
        };
        if runs_everywhere(DEFAULT_MODEL) {
            return Some(DEFAULT_MODEL);
        }
        LADDER
            .iter()
            .map(|(model, _)| *model)
            .take_while(|m| runs_everywhere(m))
            .last()
    }
}
