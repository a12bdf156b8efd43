//! `cpu:` as Proxmox VE reads it: a built-in model becomes QEMU's `-cpu` with Proxmox VE's
//! flag set (checked on a real QEMU's command line), bad models and flags are refused
//! naming `cpu`, and nothing is written.

use ferrox_e2e::*;

#[test]
fn a_built_in_model_starts_with_proxmox_ve_s_flags() {
    if !qemu_available() {
        return;
    }
    let d = start_daemon("tcg");
    let auth = d.login();
    d.task_ok(
        &auth,
        "POST",
        "/nodes/pve1/qemu",
        &[("vmid", "100"), ("memory", "64"), ("cpu", "x86-64-v2-AES")],
    );
    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/start", &[]);
    let pid = guest_pid(&d.path().join("run"), 100).expect("the guest runs");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cpu = args
        .iter()
        .position(|a| a == "-cpu")
        .map(|i| args[i + 1].clone());
    // TCG: no `enforce`, no KVM paravirt flags.
    assert_eq!(
        cpu.as_deref(),
        Some("qemu64,+aes,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3")
    );
    d.task_ok(&auth, "POST", "/nodes/pve1/qemu/100/status/stop", &[]);
}

#[test]
fn bad_cpu_models_and_flags_are_refused_naming_cpu() {
    let d = start_daemon("tcg");
    let auth = d.login();
    for value in [
        "Pentium9",
        "host,flags=+avx512f",
        "kvm64,reported-model=qemu64",
        "x86-64-v3,phys-bits=7",
    ] {
        let r = d.request(
            "POST",
            "/nodes/pve1/qemu",
            &auth,
            &[("vmid", "101"), ("memory", "64"), ("cpu", value)],
        );
        assert_eq!(r.status, 400, "{value}: {r:?}");
        assert!(r.body["errors"]["cpu"].is_string(), "{value}: {}", r.raw);
    }
    assert!(!d.etc().join("nodes/pve1/qemu-server/101.conf").exists());
}
