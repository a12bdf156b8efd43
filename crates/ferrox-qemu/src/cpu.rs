//! The QEMU `-cpu` argument qemu-server builds from a guest's `cpu:`: Proxmox VE's own
//! flags (`+lahf_lm`, `+sep`, `+kvm_pv_unhalt`, ...), a built-in or custom model's flag
//! set, the guest's flags, `enforce` under KVM for every model but `host`, `kvm=off` when
//! hidden, the vendor of the model.

use ferrox_types::cpu::{builtin, parse_flags, vendor, CpuConf};
use std::collections::BTreeMap;

/// QEMU's `-cpu` value as qemu-server builds it for a built-in, named or custom model;
/// `custom` is the custom model a `custom-NAME` guest names. `host_flags` are the host's
/// `/proc/cpuinfo` flags (for `nested-virt`).
pub fn cpu_arg(
    conf: &CpuConf,
    custom: Option<&CpuConf>,
    kvm: bool,
    host_flags: &str,
) -> Result<String, String> {
    let (model, builtin_flags) = match (builtin(&conf.cputype), custom) {
        (Some((reported, flags)), _) => (reported, parse_flags(flags)?),
        (None, Some(c)) => (c.reported_model.as_deref().unwrap_or("kvm64"), Vec::new()),
        (None, None) if conf.is_custom() => {
            return Err(format!(
                "custom CPU model '{}' does not exist",
                conf.cputype
            ))
        }
        (None, None) => (conf.cputype.as_str(), Vec::new()),
    };
    // The guest's own setting wins over its custom model's.
    let hidden = conf
        .hidden
        .or(custom.and_then(|c| c.hidden))
        .unwrap_or(false);
    let hv_vendor_id = conf
        .hv_vendor_id
        .as_ref()
        .or(custom.and_then(|c| c.hv_vendor_id.as_ref()));
    let level = conf.level.or(custom.and_then(|c| c.level));
    // (op, value) per flag name; later sets override earlier ones, as qemu-server's
    // resolve order: PVE's own, the built-in model's, the custom model's, the guest's,
    // the forced ones.
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
    let custom_flags = custom.map(|c| c.flags.as_slice()).unwrap_or_default();
    for (op, name) in builtin_flags.iter().chain(custom_flags).chain(&conf.flags) {
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
    if hidden {
        set("kvm", "", Some("off"));
    }
    if let Some(v) = vendor(model).filter(|v| *v != "default") {
        set("vendor", "", Some(v));
    }
    let mut arg = model.to_string();
    if let Some(level) = level {
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
    if let Some(id) = hv_vendor_id {
        arg.push_str(&format!(",hv-vendor-id={id}"));
    }
    // guest-phys-bits, then phys-bits; the guest's value over its custom model's.
    let guest_phys_bits = conf
        .guest_phys_bits
        .or(custom.and_then(|c| c.guest_phys_bits));
    if let Some(bits) = guest_phys_bits {
        arg.push_str(&format!(",guest-phys-bits={bits}"));
    }
    match conf
        .phys_bits
        .as_deref()
        .or(custom.and_then(|c| c.phys_bits.as_deref()))
    {
        Some("host") => arg.push_str(",host-phys-bits=true"),
        Some(bits) => arg.push_str(&format!(",phys-bits={bits}")),
        None => {}
    }
    Ok(arg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_models_are_qemu64_with_proxmox_ve_s_flags() {
        let conf = CpuConf::parse("x86-64-v2-AES").unwrap();
        assert_eq!(
            cpu_arg(&conf, None, true, "").unwrap(),
            "qemu64,+aes,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3"
        );
        assert_eq!(
            cpu_arg(&conf, None, false, "").unwrap(),
            "qemu64,+aes,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3"
        );
    }

    #[test]
    fn named_models_get_vendor_guest_flags_and_hidden() {
        let conf =
            CpuConf::parse("cputype=Haswell,flags=+pcid;-md-clear;+nested-virt,hidden=1").unwrap();
        assert_eq!(
            cpu_arg(&conf, None, true, "fpu vme vmx sse").unwrap(),
            "Haswell,enforce,kvm=off,+kvm_pv_eoi,+kvm_pv_unhalt,-md-clear,+pcid,vendor=GenuineIntel,+vmx"
        );
        assert_eq!(
            cpu_arg(&CpuConf::parse("kvm64").unwrap(), None, true, "").unwrap(),
            "kvm64,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+lahf_lm,+sep"
        );
        assert_eq!(
            cpu_arg(&CpuConf::parse("host").unwrap(), None, true, "").unwrap(),
            "host,+kvm_pv_eoi,+kvm_pv_unhalt"
        );
    }

    #[test]
    fn custom_models_report_their_model_and_the_guest_overrides_them() {
        let models = ferrox_types::cpu::CustomCpuModels::parse(
            "cpu-model: web\n\treported-model EPYC\n\tflags +avx2;-pcid\n\thidden 1\n\tphys-bits 40\n\tlevel 13\n",
        )
        .unwrap();
        let conf = CpuConf::parse("custom-web,flags=+pcid,hidden=0").unwrap();
        let custom = models.resolve(&conf).unwrap();
        assert_eq!(
            cpu_arg(&conf, custom, true, "").unwrap(),
            "EPYC,level=13,+avx2,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+pcid,vendor=AuthenticAMD,phys-bits=40"
        );
        let conf = CpuConf::parse("custom-web").unwrap();
        assert!(cpu_arg(&conf, models.resolve(&conf).unwrap(), false, "")
            .unwrap()
            .contains("kvm=off"));
        let err = cpu_arg(&CpuConf::parse("custom-gone").unwrap(), None, true, "").unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }
}
