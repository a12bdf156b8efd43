//! The QEMU `-cpu` argument qemu-server builds from a guest's `cpu:`: Proxmox VE's own
//! flags (`+lahf_lm`, `+sep`, `+kvm_pv_unhalt`, ...), a built-in model's flag set,
//! the guest's flags, `enforce` under KVM for every model but `host`, `kvm=off` when
//! hidden, the vendor of the model.

use ferrox_types::cpu::{builtin, parse_flags, vendor, CpuConf};
use std::collections::BTreeMap;

/// QEMU's `-cpu` value as qemu-server builds it for a built-in or named model.
/// `host_flags` are the host's `/proc/cpuinfo` flags (for `nested-virt`).
pub fn cpu_arg(conf: &CpuConf, kvm: bool, host_flags: &str) -> Result<String, String> {
    if conf.cputype.starts_with("custom-") {
        return Err(format!(
            "custom CPU model '{}' is not supported yet",
            conf.cputype
        ));
    }
    let (model, builtin_flags) = match builtin(&conf.cputype) {
        Some((reported, flags)) => (reported, parse_flags(flags)?),
        None => (conf.cputype.as_str(), Vec::new()),
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
    for (op, name) in &conf.flags {
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
    if conf.hidden {
        set("kvm", "", Some("off"));
    }
    if let Some(v) = vendor(model).filter(|v| *v != "default") {
        set("vendor", "", Some(v));
    }
    let mut arg = model.to_string();
    if let Some(level) = conf.level {
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
    if let Some(id) = &conf.hv_vendor_id {
        arg.push_str(&format!(",hv-vendor-id={id}"));
    }
    match conf.phys_bits.as_deref() {
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
            cpu_arg(&conf, true, "").unwrap(),
            "qemu64,+aes,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3"
        );
        assert_eq!(
            cpu_arg(&conf, false, "").unwrap(),
            "qemu64,+aes,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3"
        );
    }

    #[test]
    fn named_models_get_vendor_guest_flags_and_hidden() {
        let conf =
            CpuConf::parse("cputype=Haswell,flags=+pcid;-md-clear;+nested-virt,hidden=1").unwrap();
        assert_eq!(
            cpu_arg(&conf, true, "fpu vme vmx sse").unwrap(),
            "Haswell,enforce,kvm=off,+kvm_pv_eoi,+kvm_pv_unhalt,-md-clear,+pcid,vendor=GenuineIntel,+vmx"
        );
        assert_eq!(
            cpu_arg(&CpuConf::parse("kvm64").unwrap(), true, "").unwrap(),
            "kvm64,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+lahf_lm,+sep"
        );
        assert_eq!(
            cpu_arg(&CpuConf::parse("host").unwrap(), true, "").unwrap(),
            "host,+kvm_pv_eoi,+kvm_pv_unhalt"
        );
    }
}
