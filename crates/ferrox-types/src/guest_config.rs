//! `qemu-server/<vmid>.conf`: a guest's configuration in Proxmox VE's format. `key: value`
//! lines, the description as leading `#` lines, then optional `[PENDING]` and
//! `[<snapshot>]` sections. Keys are checked against Proxmox VE's key set; the values of
//! the keys Ferrox acts on are checked for type.

use crate::property_string::PropertyString;
use crate::section_config::digest;
use crate::storage::{DiskSource, VolumeId};
use crate::text::{decode_text, encode_text};
use std::collections::BTreeMap;

/// Keys without an index, as Proxmox VE 9's schema names them.
const PLAIN_KEYS: &[&str] = &[
    "acpi",
    "affinity",
    "agent",
    "allow-ksm",
    "amd-sev",
    "arch",
    "args",
    "audio0",
    "autostart",
    "balloon",
    "bios",
    "boot",
    "bootdisk",
    "cdrom",
    "cicustom",
    "cipassword",
    "citype",
    "ciupgrade",
    "ciuser",
    "cores",
    "cpu",
    "cpulimit",
    "cpuunits",
    "description",
    "efidisk0",
    "freeze",
    "hookscript",
    "hotplug",
    "hugepages",
    "intel-tdx",
    "ivshmem",
    "keephugepages",
    "keyboard",
    "kvm",
    "localtime",
    "lock",
    "machine",
    "memory",
    "migrate_downtime",
    "migrate_speed",
    "name",
    "nameserver",
    "numa",
    "onboot",
    "ostype",
    "protection",
    "reboot",
    "rng0",
    "scsihw",
    "searchdomain",
    "shares",
    "smbios1",
    "smp",
    "sockets",
    "spice_enhancements",
    "sshkeys",
    "startdate",
    "startup",
    "tablet",
    "tags",
    "tdf",
    "template",
    "tpmstate0",
    "vcpus",
    "vga",
    "vmgenid",
    "vmstatestorage",
    "watchdog",
    // Snapshot and runtime metadata.
    "meta",
    "parent",
    "snaptime",
    "snapstate",
    "vmstate",
    "runningcpu",
    "runningmachine",
    "running-nets-host-mtu",
    "delete",
];

/// Indexed key families and their highest index.
const INDEXED_KEYS: &[(&str, u32)] = &[
    ("hostpci", 15),
    ("ide", 3),
    ("ipconfig", 31),
    ("net", 31),
    ("numa", 7),
    ("parallel", 2),
    ("sata", 5),
    ("scsi", 30),
    ("serial", 3),
    ("unused", 255),
    ("usb", 13),
    ("virtio", 15),
    ("virtiofs", 9),
];

/// Disk buses a guest boots and runs from.
pub const DISK_BUSES: &[&str] = &["ide", "sata", "scsi", "virtio"];

/// `scsi0`, `virtio1`, `ide2`, ...: a disk (or CD drive) of the guest.
pub fn is_disk_key(key: &str) -> bool {
    DISK_BUSES.iter().any(|b| {
        key.strip_prefix(b)
            .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct GuestConfigError {
    /// The offending key (or `line N` for a malformed line).
    pub key: String,
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> GuestConfigError {
    GuestConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// Whether `key` is a guest config key Proxmox VE knows.
pub fn is_known_key(key: &str) -> bool {
    if PLAIN_KEYS.contains(&key) {
        return true;
    }
    INDEXED_KEYS.iter().any(|(family, max)| {
        key.strip_prefix(family)
            .filter(|idx| !idx.is_empty() && idx.chars().all(|c| c.is_ascii_digit()))
            .and_then(|idx| idx.parse::<u32>().ok())
            .is_some_and(|i| i <= *max)
    })
}

fn check_uint(key: &str, value: &str, min: u64) -> Result<u64, GuestConfigError> {
    let n: u64 = value
        .parse()
        .map_err(|_| err(key, format!("'{value}' is not a whole number")))?;
    if n < min {
        return Err(err(key, format!("must be at least {min}")));
    }
    Ok(n)
}

fn check_bool(key: &str, value: &str) -> Result<(), GuestConfigError> {
    match value {
        "0" | "1" => Ok(()),
        _ => Err(err(key, format!("'{value}' is not 0 or 1"))),
    }
}

/// A guest's `startup` option (Proxmox VE's `pve-startup-order`):
/// `[order=]N[,up=SECONDS][,down=SECONDS]`. Guests start by ascending order (those without
/// one last) and stop in the reverse; `up` is the wait after starting it, `down` the
/// timeout of its shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Startup {
    pub order: Option<u32>,
    pub up: Option<u32>,
    pub down: Option<u32>,
}

impl Startup {
    pub fn parse(value: &str) -> Result<Startup, String> {
        let p = PropertyString::parse(value).map_err(|e| e.to_string())?;
        let mut startup = Startup::default();
        for (key, v) in &p.items {
            let key = key.as_deref().unwrap_or("order");
            let number = || {
                v.parse::<u32>()
                    .map_err(|_| format!("{key}: '{v}' is not a non-negative integer"))
            };
            match key {
                "order" => startup.order = Some(number()?),
                "up" => startup.up = Some(number()?),
                "down" => startup.down = Some(number()?),
                other => return Err(format!("unknown property '{other}'")),
            }
        }
        Ok(startup)
    }
}

/// Checks the value of one key, for the keys whose type Ferrox relies on.
pub fn check_value(key: &str, value: &str) -> Result<(), GuestConfigError> {
    if !is_known_key(key) {
        return Err(err(key, "unknown configuration key"));
    }
    // A newline would end the `key: value` line and start another key; the description
    // is the exception, written as encoded `#` lines.
    if key == "description" {
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(err(key, "value must not contain control characters"));
        }
        return Ok(());
    }
    crate::text::check_single_line(value).map_err(|e| err(key, e))?;
    match key {
        "tags" => crate::format::tag_list(value).map_err(|e| err(key, e)),
        "cpu" => crate::cpu::CpuConf::parse(value)
            .map(drop)
            .map_err(|e| err(key, e)),
        "cores" | "sockets" | "vcpus" => check_uint(key, value, 1).map(drop),
        "vga" => crate::console::Vga::parse(value)
            .map(drop)
            .map_err(|e| err(key, e)),
        k if crate::console::serial_index(k).is_some() => crate::console::SerialPort::parse(value)
            .map(drop)
            .map_err(|e| err(key, e)),
        "balloon" | "cpuunits" => check_uint(key, value, 0).map(drop),
        "memory" => {
            let p = PropertyString::parse(value).map_err(|e| err(key, e.to_string()))?;
            let current = p
                .get("current", Some("current"))
                .ok_or_else(|| err(key, "no memory size given"))?;
            check_uint(key, current, 16).map(drop)
        }
        "onboot" | "template" | "protection" | "acpi" | "kvm" | "tablet" | "numa" | "reboot"
        | "localtime" => check_bool(key, value),
        "name" => crate::format::dns_name(value).map_err(|e| err(key, e)),
        "startup" => Startup::parse(value).map(drop).map_err(|e| err(key, e)),
        _ if key.starts_with("net") && key[3..].chars().all(|c| c.is_ascii_digit()) => {
            PropertyString::parse(value)
                .map(drop)
                .map_err(|e| err(key, e.to_string()))
        }
        _ if is_disk_key(key) => {
            let disk = PropertyString::parse(value).map_err(|e| err(key, e.to_string()))?;
            let file = disk
                .get("file", Some("file"))
                .ok_or_else(|| err(key, "no volume given"))?;
            DiskSource::parse(file).map(drop).map_err(|e| err(key, e))
        }
        _ if key.starts_with("unused") => {
            let disk = PropertyString::parse(value).map_err(|e| err(key, e.to_string()))?;
            let file = disk.get("file", Some("file")).unwrap_or("");
            match VolumeId::parse(file) {
                Some(_) => Ok(()),
                None => Err(err(key, format!("'{file}' is not a volume id"))),
            }
        }
        _ => Ok(()),
    }
}

/// Keys of a config that belong to snapshot handling rather than to the guest: never
/// copied into or out of a snapshot.
fn is_snapshot_bookkeeping(key: &str) -> bool {
    matches!(
        key,
        "snapstate"
            | "snaptime"
            | "vmstate"
            | "lock"
            | "description"
            | "runningmachine"
            | "runningcpu"
    ) || key.starts_with("unused")
}

/// A snapshot name as Proxmox VE's `pve-snapshot-name` takes it: a letter, then letters,
/// digits, `_` or `-`, 2 to 40 characters; `current` and `pending` are reserved.
pub fn check_snapshot_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let shape = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && (2..=40).contains(&name.len());
    if !shape {
        return Err(format!(
            "'{name}' is not a snapshot name: a letter, then 1 to 39 letters, digits, '_' or '-'"
        ));
    }
    if name == "current" || name.eq_ignore_ascii_case("pending") {
        return Err(format!(
            "unable to use snapshot name '{name}' (reserved name)"
        ));
    }
    Ok(())
}

/// A parsed guest configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestConfig {
    pub description: Option<String>,
    pub options: BTreeMap<String, String>,
    pub pending: BTreeMap<String, String>,
    pub snapshots: BTreeMap<String, BTreeMap<String, String>>,
    /// SHA-1 of the text it was read from (for `digest` compare-and-set).
    pub digest: String,
}

impl GuestConfig {
    pub fn parse(raw: &str) -> Result<GuestConfig, GuestConfigError> {
        let mut cfg = GuestConfig {
            digest: digest(raw),
            ..Default::default()
        };
        let mut description = Vec::new();
        let mut section: Option<String> = None;
        for (index, line) in raw.lines().enumerate() {
            let line_no = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(text) = line.strip_prefix('#') {
                match section.as_deref() {
                    None => description.push(decode_text(text)),
                    // A snapshot's description, as Proxmox VE writes it: comment lines
                    // at the top of its section.
                    Some("PENDING") => {}
                    Some(name) => {
                        let snap = cfg.snapshots.entry(name.to_string()).or_default();
                        let line = decode_text(text);
                        match snap.get_mut("description") {
                            Some(d) => {
                                d.push('\n');
                                d.push_str(&line);
                            }
                            None => {
                                snap.insert("description".into(), line);
                            }
                        }
                    }
                }
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(err(
                        format!("line {line_no}"),
                        format!("bad section header '{line}'"),
                    ));
                }
                section = Some(name.to_string());
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(err(
                    format!("line {line_no}"),
                    format!("expected 'key: value', got '{line}'"),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            check_value(key, value)?;
            let target = match section.as_deref() {
                None => &mut cfg.options,
                Some("PENDING") => &mut cfg.pending,
                Some(name) => cfg.snapshots.entry(name.to_string()).or_default(),
            };
            if target.insert(key.to_string(), value.to_string()).is_some() {
                return Err(err(key, format!("given twice (line {line_no})")));
            }
        }
        if !description.is_empty() {
            cfg.description = Some(description.join("\n"));
        }
        Ok(cfg)
    }

    /// The file text: description, keys sorted, then pending changes and snapshots.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Each description line encoded as Proxmox VE does, so no text can leave the
        // comment.
        let comment = |out: &mut String, text: &str| {
            for line in text.split('\n') {
                out.push('#');
                out.push_str(&encode_text(line));
                out.push('\n');
            }
        };
        if let Some(d) = &self.description {
            comment(&mut out, d);
        }
        let section = |out: &mut String, map: &BTreeMap<String, String>| {
            for (k, v) in map {
                // Values are checked when set; one with a control character that got
                // into the map directly is encoded rather than allowed to add a key.
                let v = if v.chars().any(char::is_control) {
                    encode_text(v)
                } else {
                    v.clone()
                };
                out.push_str(&format!("{k}: {v}\n"));
            }
        };
        section(&mut out, &self.options);
        if !self.pending.is_empty() {
            out.push_str("\n[PENDING]\n");
            section(&mut out, &self.pending);
        }
        for (name, snap) in &self.snapshots {
            out.push_str(&format!("\n[{name}]\n"));
            let mut keys = snap.clone();
            if let Some(d) = keys.remove("description") {
                comment(&mut out, &d);
            }
            section(&mut out, &keys);
        }
        out
    }

    /// What a new snapshot keeps of the current config: every key but the snapshot
    /// bookkeeping, the lock, the description and unused disks (as Proxmox VE copies it;
    /// `parent` is kept, so snapshots form a chain).
    pub fn snapshot_section(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .filter(|(k, _)| !is_snapshot_bookkeeping(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The config after a rollback to snapshot `name`: the snapshot's keys, with the
    /// current description, unused disks and snapshot list; `parent` is `name`. Pending
    /// changes are dropped. `None` when there is no such snapshot.
    pub fn rolled_back(&self, name: &str) -> Option<GuestConfig> {
        let snap = self.snapshots.get(name)?;
        let mut options: BTreeMap<String, String> = self
            .options
            .iter()
            .filter(|(k, _)| k.starts_with("unused"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        options.extend(
            snap.iter()
                .filter(|(k, _)| !is_snapshot_bookkeeping(k))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        options.insert("parent".into(), name.to_string());
        Some(GuestConfig {
            description: self.description.clone(),
            options,
            pending: BTreeMap::new(),
            snapshots: self.snapshots.clone(),
            digest: self.digest.clone(),
        })
    }

    /// The snapshots whose parent is `name`.
    pub fn snapshot_children(&self, name: &str) -> Vec<&str> {
        self.snapshots
            .iter()
            .filter(|(_, s)| s.get("parent").map(String::as_str) == Some(name))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Removes snapshot `name` from the config; whatever had it as parent (other
    /// snapshots, the current state) gets its parent instead.
    pub fn remove_snapshot(&mut self, name: &str) {
        let Some(snap) = self.snapshots.remove(name) else {
            return;
        };
        let grandparent = snap.get("parent").cloned();
        let relink = |map: &mut BTreeMap<String, String>| {
            if map.get("parent").map(String::as_str) == Some(name) {
                match &grandparent {
                    Some(g) => map.insert("parent".into(), g.clone()),
                    None => map.remove("parent"),
                };
            }
        };
        relink(&mut self.options);
        for other in self.snapshots.values_mut() {
            relink(other);
        }
    }

    /// Sets a key after checking its value; the previous config is kept on error.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), GuestConfigError> {
        check_value(key, value)?;
        self.options.insert(key.to_string(), value.to_string());
        Ok(())
    }

    pub fn name(&self) -> Option<&str> {
        self.options.get("name").map(String::as_str)
    }

    /// Memory in MiB (Proxmox VE's default: 512).
    pub fn memory_mib(&self) -> u64 {
        self.options
            .get("memory")
            .and_then(|v| PropertyString::parse(v).ok())
            .and_then(|p| {
                p.get("current", Some("current"))
                    .and_then(|c| c.parse().ok())
            })
            .unwrap_or(512)
    }

    pub fn cores(&self) -> u64 {
        self.options
            .get("cores")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    pub fn sockets(&self) -> u64 {
        self.options
            .get("sockets")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    /// Keeps volume `volid` as the next free `unusedN` (Proxmox VE has 256 of them); the
    /// key, or `None` when all are taken.
    pub fn add_unused(&mut self, volid: &str) -> Option<String> {
        let key = (0..256)
            .map(|n| format!("unused{n}"))
            .find(|k| !self.options.contains_key(k))?;
        self.options.insert(key.clone(), volid.to_string());
        Some(key)
    }

    /// Where the guest refers to volume `volid`: a disk, an unused disk or a RAM state,
    /// now (`scsi0`) or in a snapshot (`snapshot 'before' scsi0`).
    pub fn volume_reference(&self, volid: &str) -> Option<String> {
        let find = |section: &BTreeMap<String, String>| {
            section.iter().find_map(|(k, v)| {
                let holds_volume = is_disk_key(k) || k.starts_with("unused") || k == "vmstate";
                let file = v.split(',').next().unwrap_or("");
                let file = file.strip_prefix("file=").unwrap_or(file);
                (holds_volume && file == volid).then(|| k.clone())
            })
        };
        if let Some(key) = find(&self.options) {
            return Some(key);
        }
        self.snapshots
            .iter()
            .find_map(|(name, section)| find(section).map(|key| format!("snapshot '{name}' {key}")))
    }

    /// Disks by key (`scsi0`, `virtio1`, ...), in key order, with their property strings.
    pub fn disks(&self) -> Vec<(&str, PropertyString)> {
        self.options
            .iter()
            .filter(|(k, _)| is_disk_key(k))
            .filter_map(|(k, v)| PropertyString::parse(v).ok().map(|p| (k.as_str(), p)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "#small test guest\n#second line\nboot: order=scsi0;net0\ncores: 2\nmemory: 2048\nname: demo-1\nnet0: virtio=BC:24:11:00:00:01,bridge=vmbr0\nscsi0: local:100/vm-100-disk-0.qcow2,size=4G\nsockets: 1\n\n[PENDING]\nmemory: 4096\n\n[before-upgrade]\ncores: 1\nsnaptime: 1800000000\n";

    #[test]
    fn startup_orders_parse_as_proxmox_ve_writes_them() {
        let s = Startup::parse("order=2,up=30,down=60").unwrap();
        assert_eq!((s.order, s.up, s.down), (Some(2), Some(30), Some(60)));
        assert_eq!(Startup::parse("3").unwrap().order, Some(3));
        assert_eq!(Startup::parse("up=5").unwrap().order, None);
        for bad in ["order=-1", "up=soon", "late=1"] {
            assert!(Startup::parse(bad).is_err(), "{bad}");
        }
        let e = check_value("startup", "order=x").unwrap_err().to_string();
        assert!(e.contains("startup") && e.contains("order"), "{e}");
    }

    #[test]
    fn unused_disks_take_the_first_free_slot() {
        let mut cfg = GuestConfig::parse(
            "unused0: local:100/vm-100-disk-0.raw\nunused2: local:100/vm-100-disk-2.raw\n",
        )
        .unwrap();
        assert_eq!(
            cfg.add_unused("local:100/vm-100-disk-1.raw").as_deref(),
            Some("unused1")
        );
        assert_eq!(
            cfg.add_unused("local:100/vm-100-disk-3.raw").as_deref(),
            Some("unused3")
        );
        assert_eq!(cfg.options["unused1"], "local:100/vm-100-disk-1.raw");
        for n in 4..256 {
            cfg.options.insert(format!("unused{n}"), "x".into());
        }
        assert_eq!(cfg.add_unused("local:100/vm-100-disk-4.raw"), None);
    }

    #[test]
    fn volume_references_are_found_now_and_in_snapshots() {
        let cfg = GuestConfig::parse(
            "scsi0: local:100/vm-100-disk-0.qcow2,size=4G\nunused0: local:100/vm-100-disk-1.raw\n\n[s1]\nvirtio1: file=local:100/vm-100-disk-2.raw,size=1G\nvmstate: local:100/vm-100-state-s1.raw\n",
        )
        .unwrap();
        let at = |v: &str| cfg.volume_reference(v);
        assert_eq!(
            at("local:100/vm-100-disk-0.qcow2").as_deref(),
            Some("scsi0")
        );
        assert_eq!(
            at("local:100/vm-100-disk-1.raw").as_deref(),
            Some("unused0")
        );
        assert_eq!(
            at("local:100/vm-100-disk-2.raw").as_deref(),
            Some("snapshot 's1' virtio1")
        );
        assert_eq!(
            at("local:100/vm-100-state-s1.raw").as_deref(),
            Some("snapshot 's1' vmstate")
        );
        assert_eq!(at("local:100/vm-100-disk-9.raw"), None);
        assert_eq!(at("local:100"), None);
    }

    #[test]
    fn parses_and_writes_back() {
        let cfg = GuestConfig::parse(SAMPLE).unwrap();
        assert_eq!(
            cfg.description.as_deref(),
            Some("small test guest\nsecond line")
        );
        assert_eq!(cfg.memory_mib(), 2048);
        assert_eq!(cfg.cores(), 2);
        assert_eq!(cfg.name(), Some("demo-1"));
        assert_eq!(cfg.pending["memory"], "4096");
        assert_eq!(cfg.snapshots["before-upgrade"]["cores"], "1");
        let disks = cfg.disks();
        assert_eq!(disks.len(), 1);
        assert_eq!(
            disks[0].1.get("file", Some("file")),
            Some("local:100/vm-100-disk-0.qcow2")
        );
        assert_eq!(cfg.to_text(), SAMPLE);
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(GuestConfig::parse("cores: 0\n").unwrap_err().key, "cores");
        assert_eq!(
            GuestConfig::parse("memory: lots\n").unwrap_err().key,
            "memory"
        );
        assert_eq!(
            GuestConfig::parse("colour: red\n").unwrap_err().key,
            "colour"
        );
        assert_eq!(
            GuestConfig::parse("scsi31: local:1\n").unwrap_err().key,
            "scsi31"
        );
        assert_eq!(GuestConfig::parse("name: -bad\n").unwrap_err().key, "name");
        assert_eq!(GuestConfig::parse("cores 2\n").unwrap_err().key, "line 1");
        assert_eq!(
            GuestConfig::parse("cores: 2\ncores: 3\n").unwrap_err().key,
            "cores"
        );
    }

    #[test]
    fn values_cannot_add_lines_and_disks_are_typed() {
        let mut cfg = GuestConfig::parse(SAMPLE).unwrap();
        assert_eq!(cfg.set("tags", "x\nonboot: 1").unwrap_err().key, "tags");
        assert_eq!(
            cfg.set("scsi1", "local:/etc/shadow").unwrap_err().key,
            "scsi1"
        );
        assert!(
            cfg.set("scsi1", "/etc/shadow").is_ok(),
            "a path parses (root only)"
        );
        assert!(cfg.set("scsi2", "local:../../..").is_err());
        assert!(cfg.set("tags", "web;prod").is_ok());
        cfg.description = Some("line one\nonboot: 1\n[PENDING]".into());
        let again = GuestConfig::parse(&cfg.to_text()).unwrap();
        assert_eq!(again.description, cfg.description);
        assert!(!again.options.contains_key("onboot"));
        assert_eq!(again.pending, cfg.pending);
    }

    #[test]
    fn set_keeps_previous_state_on_error() {
        let mut cfg = GuestConfig::parse(SAMPLE).unwrap();
        let before = cfg.clone();
        assert!(cfg.set("sockets", "zero").is_err());
        assert_eq!(cfg, before);
        cfg.set("memory", "current=1024").unwrap();
        assert_eq!(cfg.memory_mib(), 1024);
    }

    #[test]
    fn snapshots_copy_roll_back_and_unlink_as_proxmox_ve_does() {
        let mut cfg = GuestConfig::parse(
            "#mine\ncores: 2\nlock: snapshot\nparent: first\nscsi0: local:100/vm-100-disk-0.qcow2,size=4G\nunused0: local:100/vm-100-disk-1.qcow2\n\n[first]\n#before the upgrade\n#second line\ncores: 1\nscsi0: local:100/vm-100-disk-0.qcow2,size=4G\nsnaptime: 1800000000\n",
        )
        .unwrap();
        assert_eq!(
            cfg.snapshots["first"]["description"],
            "before the upgrade\nsecond line"
        );
        assert_eq!(
            GuestConfig::parse(&cfg.to_text()).unwrap().snapshots,
            cfg.snapshots,
            "a snapshot's description survives a write as comment lines"
        );
        let section = cfg.snapshot_section();
        assert_eq!(section["parent"], "first");
        assert_eq!(section["cores"], "2");
        assert!(!section.contains_key("lock") && !section.contains_key("unused0"));
        cfg.snapshots.insert("second".into(), section);
        cfg.options.insert("parent".into(), "second".into());
        assert_eq!(cfg.snapshot_children("first"), vec!["second"]);

        let back = cfg.rolled_back("first").unwrap();
        assert_eq!(back.options["cores"], "1");
        assert_eq!(back.options["parent"], "first");
        assert_eq!(back.options["unused0"], cfg.options["unused0"]);
        assert_eq!(back.description.as_deref(), Some("mine"));
        assert!(!back.options.contains_key("snaptime") && !back.options.contains_key("lock"));
        assert!(cfg.rolled_back("nope").is_none());

        cfg.remove_snapshot("first");
        assert!(!cfg.snapshots.contains_key("first"));
        assert!(!cfg.snapshots["second"].contains_key("parent"));
        assert_eq!(cfg.options["parent"], "second");
        cfg.remove_snapshot("second");
        assert!(!cfg.options.contains_key("parent"));
    }

    #[test]
    fn snapshot_names_follow_proxmox_ve() {
        for good in ["s1", "before-upgrade", "a_b", &"x".repeat(40)] {
            assert!(check_snapshot_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "1abc",
            "a b",
            "a/b",
            "../x",
            "current",
            "PENDING",
            &"x".repeat(41),
        ] {
            assert!(check_snapshot_name(bad).is_err(), "{bad}");
        }
    }
}
