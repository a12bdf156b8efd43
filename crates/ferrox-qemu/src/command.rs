//! From a guest config to a QEMU command line.

use crate::QemuError;
use ferrox_types::guest_config::DISK_BUSES;
use ferrox_types::network::{Nic, NicModel};
use ferrox_types::GuestConfig;
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
    /// Whether NICs with `bridge=` get tap devices (this node's `--net-mode`).
    pub net_mode: NetMode,
    /// Start with the CPUs stopped (`-S`), e.g. until the taps are plugged.
    pub paused: bool,
}

/// How a node connects guests' network cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// A card with `bridge=` gets a tap device on that bridge; one without gets user mode.
    Bridge,
    /// Every card gets QEMU user-mode networking (hosts without bridges).
    User,
}

impl LaunchSpec<'_> {
    pub fn qmp_socket(&self) -> PathBuf {
        self.run_dir.join(format!("{}.qmp", self.vmid))
    }
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join(format!("{}.pid", self.vmid))
    }
    pub fn vnc_socket(&self) -> PathBuf {
        vnc_socket(self.run_dir, self.vmid)
    }
}

/// Where QEMU serves a guest's display over VNC (password-protected; only `vncwebsocket`
/// connects to it, after checking the caller's one-time ticket).
pub fn vnc_socket(run_dir: &Path, vmid: u32) -> PathBuf {
    run_dir.join(format!("{vmid}.vnc"))
}

/// Where QEMU serves a guest's `serialN: socket` port.
pub fn serial_socket(run_dir: &Path, vmid: u32, index: u8) -> PathBuf {
    run_dir.join(format!("{vmid}.serial{index}"))
}

/// The display and serial port arguments: a VNC server on a unix socket, the graphics
/// card of `vga:` and a socket per `serialN: socket`.
fn console_args(cfg: &GuestConfig, spec: &LaunchSpec<'_>) -> Result<Vec<String>, QemuError> {
    use ferrox_types::console::{serial_index, SerialPort, Vga, VgaType};
    let mut args = vec![
        "-vnc".to_string(),
        format!("unix:{},password=on", spec.vnc_socket().display()),
    ];
    let vga = match cfg.options.get("vga") {
        Some(v) => Vga::parse(v).map_err(|e| config_err("vga", e))?,
        None => Vga::default(),
    };
    let device = match vga.kind {
        VgaType::Std => Some("VGA"),
        VgaType::Cirrus => Some("cirrus-vga"),
        VgaType::Vmware => Some("vmware-svga"),
        VgaType::Virtio => Some("virtio-vga"),
        VgaType::Qxl => Some("qxl-vga"),
        VgaType::None | VgaType::Serial(_) => None,
    };
    if let Some(device) = device {
        let mut d = format!("{device},id=vga");
        if let Some(mib) = vga.memory_mib {
            match vga.kind {
                VgaType::Std | VgaType::Vmware => d.push_str(&format!(",vgamem_mb={mib}")),
                VgaType::Qxl => d.push_str(&format!(",vgamem_mb={mib},ram_size_mb={}", mib * 4)),
                _ => {}
            }
        }
        args.extend(["-device".to_string(), d]);
    }
    for (key, value) in cfg
        .options
        .range("serial".to_string().."serialz".to_string())
    {
        let Some(index) = serial_index(key) else {
            continue;
        };
        match SerialPort::parse(value).map_err(|e| config_err(key, e))? {
            SerialPort::Socket => args.extend([
                "-chardev".to_string(),
                format!(
                    "socket,id=serial{index},path={},server=on,wait=off",
                    serial_socket(spec.run_dir, spec.vmid, index).display()
                ),
                "-device".to_string(),
                format!("isa-serial,chardev=serial{index}"),
            ]),
        }
    }
    Ok(args)
}

fn config_err(key: &str, message: impl Into<String>) -> QemuError {
    QemuError::Config {
        key: key.to_string(),
        message: message.into(),
    }
}

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
    } else if spec.paused {
        push(&["-S"]);
    }
    if cfg.options.get("balloon").is_none_or(|b| b != "0") {
        push(&["-device", "virtio-balloon-pci,id=balloon0"]);
    }
    args.extend(console_args(cfg, spec)?);
    let mut scsi_controller = false;
    for (key, disk) in cfg.disks() {
        let file = disk
            .get("file", Some("file"))
            .ok_or_else(|| config_err(key, "no volume given"))?;
        let bus = DISK_BUSES
            .iter()
            .find(|b| key.starts_with(**b))
            .copied()
            .unwrap_or("scsi");
        // IDE drives sit where Proxmox VE puts them (ide0/1 on the first channel, ide2/3
        // on the second), so a guest sees the same devices on every node.
        let ide_slot = key
            .strip_prefix("ide")
            .and_then(|i| i.parse::<u32>().ok())
            .map(|i| format!(",bus=ide.{},unit={}", i / 2, i % 2))
            .unwrap_or_default();
        if disk.get("media", None) == Some("cdrom") {
            // An empty drive (`none`, or the host's drive, which guests do not get) or an
            // ISO image, read-only.
            let drive = match file {
                "none" | "cdrom" => format!("if=none,id=drive-{key},media=cdrom"),
                _ => {
                    let (path, _) = (spec.resolve)(file).map_err(|e| config_err(key, e))?;
                    format!(
                        "file={},if=none,id=drive-{key},media=cdrom,format=raw,readonly=on,aio=threads",
                        path.display()
                    )
                }
            };
            args.extend(["-drive".to_string(), drive]);
            let device = match bus {
                "scsi" => {
                    if !scsi_controller {
                        args.extend([
                            "-device".to_string(),
                            "virtio-scsi-pci,id=scsihw0".to_string(),
                        ]);
                        scsi_controller = true;
                    }
                    format!("scsi-cd,bus=scsihw0.0,drive=drive-{key},id={key}")
                }
                "virtio" => {
                    return Err(config_err(
                        key,
                        "a CD drive cannot be a virtio disk: use ide, sata or scsi",
                    ))
                }
                _ => format!("ide-cd{ide_slot},drive=drive-{key},id={key}"),
            };
            args.extend(["-device".to_string(), device]);
            continue;
        }
        if file == "none" {
            continue;
        }
        let (path, format) = (spec.resolve)(file).map_err(|e| config_err(key, e))?;
        let drive = format!(
            "file={},if=none,id=drive-{key},format={format},cache=none,aio=threads",
            path.display()
        );
        args.extend(["-drive".to_string(), drive]);
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
            "sata" | "ide" => format!("ide-hd{ide_slot},drive=drive-{key},id={key}"),
            _ => unreachable!("disk buses are the four above"),
        };
        args.extend(["-device".to_string(), device]);
    }
    for (key, value) in cfg.options.range("net".to_string().."neu".to_string()) {
        let Some(index) = key.strip_prefix("net").and_then(|i| i.parse::<u32>().ok()) else {
            continue;
        };
        let nic = Nic::parse(key, value).map_err(|e| config_err(key, e.message))?;
        let mac = nic
            .mac
            .ok_or_else(|| config_err(key, "no MAC address assigned"))?;
        let netdev = match (&nic.bridge, spec.net_mode) {
            (Some(_), NetMode::Bridge) => {
                // The daemon plugs the tap into its bridge (with VLAN and rate) while the
                // guest is still paused; QEMU removes it when it exits.
                let mut n = format!(
                    "tap,id=net{index},ifname={},script=no,downscript=no",
                    Nic::tap_name(spec.vmid, index)
                );
                if let Some(q) = nic.queues.filter(|q| *q > 1) {
                    n.push_str(&format!(",queues={q}"));
                }
                n
            }
            // Outbound NAT only: the guest reaches out, nothing reaches in.
            _ => format!("user,id=net{index}"),
        };
        let mut device = format!(
            "{},netdev=net{index},mac={mac},id={key}",
            nic.model.qemu_device()
        );
        if let Some(mtu) = nic.mtu.filter(|m| *m > 1 && nic.model == NicModel::Virtio) {
            device.push_str(&format!(",host_mtu={mtu}"));
        }
        args.extend(["-netdev".to_string(), netdev, "-device".to_string(), device]);
    }
    if let Some(extra) = cfg.options.get("args") {
        // Raw arguments, as Proxmox VE's `args:` (used for direct kernel boot of test
        // guests), split as a shell would: `-append "console=ttyS0 quiet"` is one value.
        let words = shlex::split(extra)
            .ok_or_else(|| config_err("args", "unbalanced quotes".to_string()))?;
        args.extend(words);
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
            net_mode: crate::NetMode::Bridge,
            paused: false,
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
        // An empty CD drive where Proxmox VE puts ide2: second channel, first unit.
        assert!(
            args.contains("-drive if=none,id=drive-ide2,media=cdrom "),
            "{args}"
        );
        assert!(
            args.contains("ide-cd,bus=ide.1,unit=0,drive=drive-ide2,id=ide2"),
            "{args}"
        );
        let iso = GuestConfig::parse(
            "ide0: local:iso/debian.iso,media=cdrom
scsi3: local:iso/x.iso,media=cdrom
",
        )
        .unwrap();
        let args = command_line(&iso, &spec).unwrap().join(" ");
        assert!(
            args.contains("media=cdrom,format=raw,readonly=on"),
            "{args}"
        );
        assert!(
            args.contains("ide-cd,bus=ide.0,unit=0,drive=drive-ide0,id=ide0"),
            "{args}"
        );
        assert!(
            args.contains("scsi-cd,bus=scsihw0.0,drive=drive-scsi3,id=scsi3"),
            "{args}"
        );
        let bad = GuestConfig::parse(
            "virtio2: local:iso/x.iso,media=cdrom
",
        )
        .unwrap();
        assert!(
            matches!(command_line(&bad, &spec), Err(QemuError::Config { key, .. }) if key == "virtio2")
        );
        let args = command_line(&cfg, &spec).unwrap().join(" ");
        // Every guest has a VNC display on a unix socket and Proxmox VE's default card.
        assert!(
            args.contains("-vnc unix:/run/ferrox/100.vnc,password=on"),
            "{args}"
        );
        assert!(args.contains("-device VGA,id=vga"), "{args}");
        assert!(!args.contains("isa-serial"), "{args}");
    }

    #[test]
    fn network_cards_get_taps_on_bridges_or_user_mode() {
        let run = PathBuf::from("/run/ferrox");
        let mut spec = LaunchSpec {
            cpu_models: &Default::default(),
            vmid: 102,
            accel: Accelerator::Tcg,
            run_dir: &run,
            resolve: &resolve,
            incoming: None,
            net_mode: crate::NetMode::Bridge,
            paused: true,
        };
        let cfg = GuestConfig::parse(
            "net0: virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=10,mtu=1400,queues=2\nnet1: e1000=BC:24:11:00:00:02\n",
        )
        .unwrap();
        let args = command_line(&cfg, &spec).unwrap().join(" ");
        assert!(args.contains(" -S"), "{args}");
        assert!(args.contains(
            "-netdev tap,id=net0,ifname=tap102i0,script=no,downscript=no,queues=2 -device virtio-net-pci,netdev=net0,mac=BC:24:11:00:00:01,id=net0,host_mtu=1400"
        ), "{args}");
        assert!(
            args.contains(
                "-netdev user,id=net1 -device e1000,netdev=net1,mac=BC:24:11:00:00:02,id=net1"
            ),
            "{args}"
        );
        spec.net_mode = crate::NetMode::User;
        let args = command_line(&cfg, &spec).unwrap().join(" ");
        assert!(args.contains("-netdev user,id=net0 "), "{args}");
        assert!(!args.contains("tap"), "{args}");
        let bad =
            GuestConfig::parse("net0: virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=0\n").unwrap();
        match command_line(&bad, &spec) {
            Err(QemuError::Config { key, message }) => {
                assert_eq!(key, "net0");
                assert!(message.starts_with("tag:"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn display_and_serial_ports() {
        let run = PathBuf::from("/run/ferrox");
        let spec = LaunchSpec {
            cpu_models: &Default::default(),
            vmid: 101,
            accel: Accelerator::Tcg,
            run_dir: &run,
            resolve: &resolve,
            incoming: None,
            net_mode: crate::NetMode::Bridge,
            paused: false,
        };
        let cfg = GuestConfig::parse("vga: serial0\nserial0: socket\nserial2: socket\n").unwrap();
        let args = command_line(&cfg, &spec).unwrap().join(" ");
        assert!(!args.contains("id=vga"), "{args}");
        assert!(args.contains(
            "-chardev socket,id=serial0,path=/run/ferrox/101.serial0,server=on,wait=off -device isa-serial,chardev=serial0"
        ), "{args}");
        assert!(args.contains("path=/run/ferrox/101.serial2,"), "{args}");
        let cfg = GuestConfig::parse("vga: virtio,memory=64\n").unwrap();
        let args = command_line(&cfg, &spec).unwrap().join(" ");
        assert!(args.contains("-device virtio-vga,id=vga"), "{args}");
        let mut cfg = GuestConfig::default();
        cfg.options.insert("vga".into(), "fancy".into());
        match command_line(&cfg, &spec) {
            Err(QemuError::Config { key, message }) => {
                assert_eq!(key, "vga");
                assert!(message.contains("fancy"), "{message}");
            }
            other => panic!("{other:?}"),
        }
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
            net_mode: crate::NetMode::Bridge,
            paused: false,
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
