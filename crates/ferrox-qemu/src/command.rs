//! From a guest config to a QEMU command line.

use crate::QemuError;
use ferrox_types::guest_config::DISK_BUSES;
use ferrox_types::{GuestConfig, PropertyString};
use std::path::{Path, PathBuf};

/// How guests are accelerated on this node (a node setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    Kvm,
    Tcg,
}

impl Accelerator {
    pub fn as_str(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// Maps a volume id (`local:100/vm-100-disk-0.qcow2`) to its file and image format.
pub type VolumeResolver<'a> = &'a dyn Fn(&str) -> Result<(PathBuf, String), String>;

pub struct LaunchSpec<'a> {
    pub vmid: u32,
    pub accel: Accelerator,
    /// Where the QMP socket and pid file live.
    pub run_dir: &'a Path,
    pub resolve: VolumeResolver<'a>,
    /// For a migration target: wait for the incoming stream at this URI, paused (`-S`)
    /// until the source hands the guest over.
    pub incoming: Option<&'a str>,
    /// The cluster's custom CPU models (`cpu: custom-NAME`).
    pub cpu_models: &'a ferrox_types::cpu::CustomCpuModels,
}

impl LaunchSpec<'_> {
    pub fn qmp_socket(&self) -> PathBuf {
        self.run_dir.join(format!("{}.qmp", self.vmid))
    }
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join(format!("{}.pid", self.vmid))
    }
}

fn config_err(key: &str, message: impl Into<String>) -> QemuError {
    QemuError::Config {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Proxmox VE card models and their QEMU devices.
const NIC_MODELS: &[(&str, &str)] = &[
    ("virtio", "virtio-net-pci"),
    ("e1000", "e1000"),
    ("e1000e", "e1000e"),
    ("rtl8139", "rtl8139"),
    ("vmxnet3", "vmxnet3"),
];

/// The arguments after `qemu-system-x86_64`. The process daemonizes once QMP is listening.
pub fn command_line(cfg: &GuestConfig, spec: &LaunchSpec<'_>) -> Result<Vec<String>, QemuError> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    let name = cfg
        .name()
        .map(String::from)
        .unwrap_or_else(|| format!("vm{}", spec.vmid));
    push(&["-name", &format!("{name},debug-threads=on")]);
    push(&["-nodefaults", "-display", "none", "-daemonize"]);
    push(&["-accel", spec.accel.as_str()]);
    push(&["-m", &cfg.memory_mib().to_string()]);
    let (sockets, cores) = (cfg.sockets(), cfg.cores());
    push(&[
        "-smp",
        &format!(
            "{},sockets={sockets},cores={cores},maxcpus={}",
            sockets * cores,
            sockets * cores
        ),
    ]);
    if let Some(cpu) = cfg.options.get("cpu") {
        let conf = ferrox_types::cpu::CpuConf::parse(cpu).map_err(|e| config_err("cpu", e))?;
        if conf.cputype == "host" && spec.accel == Accelerator::Tcg {
            return Err(config_err(
                "cpu",
                "cpu type 'host' needs the kvm accelerator",
            ));
        }
        let host_flags = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("flags")
                    .map(|f| f.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_default();
        let custom = spec
            .cpu_models
            .resolve(&conf)
            .map_err(|e| config_err("cpu", e))?;
        let arg = crate::cpu::cpu_arg(&conf, custom, spec.accel == Accelerator::Kvm, &host_flags)
            .map_err(|e| config_err("cpu", e))?;
        push(&["-cpu", &arg]);
    }
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", spec.qmp_socket().display()),
    ]);
    push(&["-pidfile", &spec.pid_file().display().to_string()]);
    if let Some(uri) = spec.incoming {
        push(&["-incoming", uri, "-S"]);
    }
    if cfg.options.get("balloon").is_none_or(|b| b != "0") {
        push(&["-device", "virtio-balloon-pci,id=balloon0"]);
    }
    let mut scsi_controller = false;
    for (key, disk) in cfg.disks() {
        let file = disk
            .get("file", Some("file"))
            .ok_or_else(|| config_err(key, "no volume given"))?;
        if disk.get("media", None) == Some("cdrom") || file == "none" {
            continue;
        }
        let (path, format) = (spec.resolve)(file).map_err(|e| config_err(key, e))?;
        let drive = format!(
            "file={},if=none,id=drive-{key},format={format},cache=none,aio=threads",
            path.display()
        );
        args.extend(["-drive".to_string(), drive]);
        let bus = DISK_BUSES
            .iter()
            .find(|b| key.starts_with(**b))
            .copied()
            .unwrap_or("scsi");
        let device = match bus {
            "virtio" => format!("virtio-blk-pci,drive=drive-{key},id={key}"),
            "scsi" => {
                if !scsi_controller {
                    args.extend([
                        "-device".to_string(),
                        "virtio-scsi-pci,id=scsihw0".to_string(),
                    ]);
                    scsi_controller = true;
                }
                format!("scsi-hd,bus=scsihw0.0,drive=drive-{key},id={key}")
            }
            "sata" | "ide" => format!("ide-hd,drive=drive-{key},id={key}"),
            _ => unreachable!("disk buses are the four above"),
        };
        args.extend(["-device".to_string(), device]);
    }
    for (key, value) in cfg.options.range("net".to_string().."neu".to_string()) {
        let Some(index) = key
            .strip_prefix("net")
            .filter(|i| i.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        let p = PropertyString::parse(value).map_err(|e| config_err(key, e.to_string()))?;
        let (model, mac) = p
            .items
            .iter()
            .find_map(|(k, v)| {
                let k = k.as_deref()?;
                NIC_MODELS
                    .iter()
                    .find(|(m, _)| *m == k)
                    .map(|(_, dev)| (*dev, v.clone()))
            })
            .ok_or_else(|| {
                config_err(
                    key,
                    "no network card model given (virtio=MAC, e1000=MAC, ...)",
                )
            })?;
        if p.get("link_down", None) == Some("1") {
            continue;
        }
        // No host bridges exist on these machines: every card gets user-mode networking
        // (outbound NAT), whatever `bridge=` says.
        args.extend([
            "-netdev".to_string(),
            format!("user,id=net{index}"),
            "-device".to_string(),
            format!("{model},netdev=net{index},mac={mac},id={key}"),
        ]);
    }
    if let Some(extra) = cfg.options.get("args") {
        // Raw arguments, as Proxmox VE's `args:` (used for direct kernel boot of test guests).
        args.extend(extra.split_whitespace().map(String::from));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(volid: &str) -> Result<(PathBuf, String), String> {
        match volid.split_once(':') {
            Some(("local", name)) => Ok((
                PathBuf::from("/var/lib/vz/images").join(name),
                "qcow2".into(),
            )),
            _ => Err(format!(
                "storage of '{volid}' is not available on this node"
            )),
        }
    }

    #[test]
    fn builds_a_command_line() {
        let cfg = GuestConfig::parse(
            "cores: 2\nmemory: 1024\nname: demo\nscsi0: local:100/vm-100-disk-0.qcow2,size=4G\nvirtio1: local:100/vm-100-disk-1.qcow2\nide2: none,media=cdrom\n",
        )
        .unwrap();
        let run = PathBuf::from("/run/ferrox");
        let spec = LaunchSpec {
            cpu_models: &Default::default(),
            vmid: 100,
            accel: Accelerator::Tcg,
            run_dir: &run,
            resolve: &resolve,
            incoming: None,
        };
        let args = command_line(&cfg, &spec).unwrap().join(" ");
        assert!(args.contains("-accel tcg"), "{args}");
        assert!(args.contains("-m 1024"));
        assert!(args.contains("-smp 2,sockets=1,cores=2,maxcpus=2"));
        assert!(args.contains("-qmp unix:/run/ferrox/100.qmp,server=on,wait=off"));
        assert!(args.contains(
            "file=/var/lib/vz/images/100/vm-100-disk-0.qcow2,if=none,id=drive-scsi0,format=qcow2"
        ));
        assert!(args.contains("scsi-hd,bus=scsihw0.0,drive=drive-scsi0,id=scsi0"));
        assert!(args.contains("virtio-blk-pci,drive=drive-virtio1,id=virtio1"));
        assert!(!args.contains("ide2"));
    }

    #[test]
    fn unavailable_storage_names_the_disk() {
        let cfg = GuestConfig::parse("scsi0: nfs:100/vm-100-disk-0.raw\n").unwrap();
        let run = PathBuf::from("/run");
        let spec = LaunchSpec {
            cpu_models: &Default::default(),
            vmid: 100,
            accel: Accelerator::Kvm,
            run_dir: &run,
            resolve: &resolve,
            incoming: None,
        };
        match command_line(&cfg, &spec) {
            Err(QemuError::Config { key, message }) => {
                assert_eq!(key, "scsi0");
                assert!(message.contains("not available"));
            }
            other => panic!("{other:?}"),
        }
    }
}
