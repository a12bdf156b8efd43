//! This node's QEMU guests: their configs (in the cluster store, cached here), their
//! running processes, and the operations the API starts as tasks.

pub mod access;
pub mod backup;
pub mod clone;
pub mod cpu;
pub mod kind;
pub mod migrate;
pub mod perm;
pub mod resize;
pub mod snapshot;

use crate::cluster::{store_error, ConfigTree};
use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use ferrox_api_types::qemu::GuestStatus;
use ferrox_qemu::metrics::GuestCounters;
use ferrox_qemu::process::pid_alive;
use ferrox_qemu::{Accelerator, GuestProcess, LaunchSpec};
use ferrox_store::Expect;
use ferrox_types::guest_config::DISK_BUSES;
use ferrox_types::network::{MacAddr, Nic};
use ferrox_types::{GuestConfig, PropertyString, VolumeId};
use rand::Rng;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Where guest `vmid` of `node` keeps its config in the store (Proxmox VE's layout).
pub fn config_path(node: &str, vmid: u32) -> String {
    format!("nodes/{node}/qemu-server/{vmid}.conf")
}

/// The store directory of `node`'s guest configs.
pub fn config_dir(node: &str) -> String {
    format!("nodes/{node}/qemu-server")
}

/// `(node, vmid)` of a guest config path; `None` for any other path.
pub fn parse_config_path(path: &str) -> Option<(&str, u32)> {
    let rest = path.strip_prefix("nodes/")?;
    let (node, file) = rest.split_once("/qemu-server/")?;
    if node.contains('/') || file.contains('/') {
        return None;
    }
    Some((node, file.strip_suffix(".conf")?.parse().ok()?))
}

/// A checked request on one disk of a guest (`Node::check_disk_request`).
pub struct DiskRequest {
    pub cfg: Arc<GuestConfig>,
    /// The disk's settings (`size`, `cache`, ...).
    pub drive: PropertyString,
    pub volume: VolumeId,
}

/// One guest's in-process lock: state-changing workers of a guest run one at a time.
pub struct GuestLock(Arc<Mutex<()>>);

impl GuestLock {
    /// Waits for the lock; held until the guard drops. It guards no data, so a worker
    /// that panicked while holding it (poisoning it) leaves nothing inconsistent behind.
    pub fn hold(&self) -> std::sync::MutexGuard<'_, ()> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What is known about a running guest, refreshed by the metrics collector.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub pid: u32,
    /// Unix seconds.
    pub started: i64,
    /// Fraction of the guest's vCPUs in use.
    pub cpu: f64,
    pub mem: u64,
    pub diskread: u64,
    pub diskwrite: u64,
    pub qmpstatus: String,
    pub accel: Option<Accelerator>,
    pub last: Option<(Instant, GuestCounters)>,
    /// The guest cgroup's pressure stall figures at the last sample.
    pub pressure: Option<ferrox_qemu::cgroup::Pressure>,
}

/// The parts of a config that listings show, computed once per config write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestStatic {
    pub name: String,
    pub cpus: u64,
    pub maxmem: u64,
    pub maxdisk: u64,
    pub tags: Option<String>,
    pub lock: Option<String>,
    pub template: bool,
}

impl GuestStatic {
    pub fn of(vmid: u32, cfg: &GuestConfig) -> GuestStatic {
        GuestStatic {
            name: cfg
                .name()
                .map(String::from)
                .unwrap_or_else(|| format!("VM {vmid}")),
            cpus: (cfg.sockets() * cfg.cores()).max(1),
            maxmem: cfg.memory_mib() * 1024 * 1024,
            maxdisk: boot_disk_size(cfg),
            tags: cfg.options.get("tags").cloned(),
            lock: cfg.options.get("lock").cloned(),
            template: cfg.options.get("template").map(String::as_str) == Some("1"),
        }
    }
}

#[derive(Debug, Clone)]
struct GuestEntry {
    config: Arc<GuestConfig>,
    fixed: Arc<GuestStatic>,
}

impl GuestEntry {
    fn new(vmid: u32, config: GuestConfig) -> GuestEntry {
        GuestEntry {
            fixed: Arc::new(GuestStatic::of(vmid, &config)),
            config: Arc::new(config),
        }
    }
}

/// An incoming migration as the target watches it: where the guest comes from, and the
/// images made here for its local disks (freed when the guest does not arrive).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct IncomingRecord {
    pub source: String,
    pub volumes: Vec<String>,
}

pub struct Guests {
    tree: Arc<ConfigTree>,
    /// This node: its guest configs live in `config_dir(node)`.
    node: String,
    pub run_dir: PathBuf,
    /// Each config with its listing fields, derived once per write.
    configs: RwLock<BTreeMap<u32, GuestEntry>>,
    running: RwLock<BTreeMap<u32, RunInfo>>,
    locks: Mutex<HashMap<u32, Arc<Mutex<()>>>>,
    /// Incoming migrations prepared here that their source has not concluded (resumed or
    /// aborted) yet: vmid → the number of that migration (`migrate::watch_incoming`).
    incoming: Mutex<(u64, HashMap<u32, u64>)>,
}

fn now() -> i64 {
    ferrox_api::auth::now()
}

impl Guests {
    /// Loads this node's guest configs from the store and finds the QEMU processes that
    /// still run.
    pub fn open(tree: Arc<ConfigTree>, node: &str, run_dir: &Path) -> anyhow::Result<Guests> {
        let guests = Guests {
            tree,
            node: node.to_string(),
            run_dir: run_dir.to_path_buf(),
            configs: RwLock::new(BTreeMap::new()),
            running: RwLock::new(BTreeMap::new()),
            locks: Mutex::new(HashMap::new()),
            incoming: Mutex::default(),
        };
        guests.refresh_all();
        Ok(guests)
    }

    fn config_path(&self, vmid: u32) -> String {
        config_path(&self.node, vmid)
    }

    fn load(&self, vmid: u32) -> Option<GuestEntry> {
        let entry = self.tree.get(&self.config_path(vmid))?;
        match GuestConfig::parse(&entry.data) {
            Ok(cfg) => Some(GuestEntry::new(vmid, cfg)),
            Err(e) => {
                tracing::warn!("skipping {}: {e}", self.config_path(vmid));
                None
            }
        }
    }

    /// Re-reads one guest's config after the store changed it (another node wrote it,
    /// a migration handed it over or took it away).
    pub fn refresh(&self, vmid: u32) {
        let entry = self.load(vmid);
        let process = GuestProcess::find(vmid, &self.run_dir);
        if let Ok(mut c) = self.configs.write() {
            match entry {
                Some(e) => c.insert(vmid, e),
                None => c.remove(&vmid),
            };
        }
        if let Ok(mut r) = self.running.write() {
            match process {
                Some(p) if r.get(&vmid).is_none_or(|i| i.pid != p.pid) => {
                    r.insert(vmid, RunInfo::new(p.pid, now()));
                }
                Some(_) => {}
                None => {
                    r.remove(&vmid);
                }
            }
        }
    }

    pub fn refresh_all(&self) {
        let mut vmids: Vec<u32> = self
            .tree
            .list(&config_dir(&self.node))
            .iter()
            .filter_map(|(path, _)| parse_config_path(path).map(|(_, vmid)| vmid))
            .collect();
        if let Ok(c) = self.configs.read() {
            vmids.extend(c.keys());
        }
        vmids.sort_unstable();
        vmids.dedup();
        for vmid in vmids {
            self.refresh(vmid);
        }
    }

    pub fn config(&self, vmid: u32) -> Option<Arc<GuestConfig>> {
        Some(Arc::clone(&self.configs.read().ok()?.get(&vmid)?.config))
    }

    /// The listing fields of one guest.
    pub fn fixed(&self, vmid: u32) -> Option<Arc<GuestStatic>> {
        Some(Arc::clone(&self.configs.read().ok()?.get(&vmid)?.fixed))
    }

    /// Every guest's listing fields and run state.
    pub fn listing(&self) -> Vec<(u32, Arc<GuestStatic>, Option<RunInfo>)> {
        let Ok(configs) = self.configs.read() else {
            return Vec::new();
        };
        let running = self.running.read().ok();
        configs
            .iter()
            .map(|(vmid, entry)| {
                let info = running
                    .as_ref()
                    .and_then(|r| r.get(vmid).cloned())
                    .filter(|i| pid_alive(i.pid));
                (*vmid, Arc::clone(&entry.fixed), info)
            })
            .collect()
    }

    pub fn exists(&self, vmid: u32) -> bool {
        self.configs.read().is_ok_and(|c| c.contains_key(&vmid))
    }

    /// Writes a config through the store, provided nobody changed it since we cached it,
    /// and caches it (with its new digest).
    pub fn write_config(&self, vmid: u32, cfg: &GuestConfig) -> Result<Arc<GuestConfig>, ApiError> {
        let text = cfg.to_text();
        let expect = match self.config(vmid) {
            Some(current) => Expect::Digest(current.digest.clone()),
            None => Expect::Absent,
        };
        self.tree
            .put(&self.config_path(vmid), &text, expect)
            .map_err(store_error)?;
        // Re-read from the written text: the digest is that of the file.
        let entry = GuestEntry::new(
            vmid,
            GuestConfig::parse(&text).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        let stored = Arc::clone(&entry.config);
        if let Ok(mut c) = self.configs.write() {
            c.insert(vmid, entry);
        }
        Ok(stored)
    }

    pub fn remove_config(&self, vmid: u32) -> Result<(), ApiError> {
        self.tree
            .delete(&self.config_path(vmid), Expect::Any)
            .map_err(store_error)?;
        if let Ok(mut c) = self.configs.write() {
            c.remove(&vmid);
        }
        Ok(())
    }

    /// The per-guest lock every state-changing worker holds (`lock(vmid).hold()`).
    pub fn lock(&self, vmid: u32) -> GuestLock {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        GuestLock(Arc::clone(locks.entry(vmid).or_default()))
    }

    /// Registers an incoming migration of `vmid` from `source`; returns its number. The
    /// record is also kept beside the guest's QEMU, so that a daemon started again goes on
    /// watching it (`incoming_left`).
    pub(crate) fn incoming_begins(&self, vmid: u32, record: &IncomingRecord) -> u64 {
        let mut incoming = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        incoming.0 += 1;
        let number = incoming.0;
        incoming.1.insert(vmid, number);
        let path = self.incoming_path(vmid);
        let tmp = path.with_extension("incoming.tmp");
        let written = serde_json::to_vec(record)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!("VM {vmid}: cannot record the incoming migration: {e}");
        }
        number
    }

    /// Concludes the incoming migration of `vmid` (`number`: only that one; `None`: any).
    /// Returns whether it was still open.
    pub(crate) fn incoming_ends(&self, vmid: u32, number: Option<u64>) -> bool {
        let mut incoming = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        match incoming.1.get(&vmid) {
            Some(open) if number.is_none_or(|n| n == *open) => {
                incoming.1.remove(&vmid);
                let _ = std::fs::remove_file(self.incoming_path(vmid));
                true
            }
            _ => false,
        }
    }

    fn incoming_path(&self, vmid: u32) -> PathBuf {
        self.run_dir.join(format!("{vmid}.incoming"))
    }

    /// The incoming migrations a previous daemon process was watching when it ended. A
    /// record that does not parse (or names no node) is dropped with a warning.
    pub(crate) fn incoming_left(&self) -> Vec<(u32, IncomingRecord)> {
        let mut left = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return left;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(vmid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".incoming"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let record = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<IncomingRecord>(&bytes).map_err(|e| e.to_string())
                })
                .and_then(|r| {
                    ferrox_types::format::node_name(&r.source)
                        .map(|_| r)
                        .map_err(|e| format!("source: {e}"))
                });
            match record {
                Ok(record) => left.push((vmid, record)),
                Err(e) => {
                    tracing::warn!("{}: dropped: {e}", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        left
    }

    pub(crate) fn incoming_open(&self, vmid: u32, number: u64) -> bool {
        let incoming = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        incoming.1.get(&vmid) == Some(&number)
    }

    pub fn process(&self, vmid: u32) -> Option<GuestProcess> {
        GuestProcess::find(vmid, &self.run_dir)
    }

    /// Run state of a guest whose QEMU process is alive.
    pub fn run_info(&self, vmid: u32) -> Option<RunInfo> {
        self.running
            .read()
            .ok()?
            .get(&vmid)
            .filter(|i| pid_alive(i.pid))
            .cloned()
    }

    pub fn running_vmids(&self) -> Vec<u32> {
        self.running
            .read()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }

    pub(crate) fn mark_running(&self, vmid: u32, pid: u32, accel: Accelerator, qmpstatus: &str) {
        if let Ok(mut r) = self.running.write() {
            let mut info = RunInfo::new(pid, now());
            info.accel = Some(accel);
            info.qmpstatus = qmpstatus.to_string();
            r.insert(vmid, info);
        }
    }

    pub(crate) fn mark_stopped(&self, vmid: u32) {
        if let Ok(mut r) = self.running.write() {
            r.remove(&vmid);
        }
        ferrox_qemu::cgroup::remove(vmid);
    }

    fn set_qmpstatus(&self, vmid: u32, status: &str) {
        if let Ok(mut r) = self.running.write() {
            if let Some(info) = r.get_mut(&vmid) {
                info.qmpstatus = status.to_string();
            }
        }
    }

    /// Refreshes the usage of every running guest; forgets guests whose process ended.
    pub fn sample(&self, ticks_per_second: f64) {
        let Ok(mut running) = self.running.write() else {
            return;
        };
        let vcpus: BTreeMap<u32, f64> = self
            .configs
            .read()
            .map(|c| c.iter().map(|(k, e)| (*k, e.fixed.cpus as f64)).collect())
            .unwrap_or_default();
        running.retain(|_, info| pid_alive(info.pid));
        for (vmid, info) in running.iter_mut() {
            let Some(counters) = ferrox_qemu::metrics::read_counters(info.pid) else {
                continue;
            };
            let at = Instant::now();
            if let Some((then, before)) = info.last {
                let elapsed = at.duration_since(then).as_secs_f64();
                if elapsed > 0.0 {
                    let used = counters.vcpu_ticks.saturating_sub(before.vcpu_ticks) as f64
                        / ticks_per_second;
                    let cpus = vcpus.get(vmid).copied().unwrap_or(1.0);
                    info.cpu = (used / elapsed / cpus).clamp(0.0, 1.0);
                }
            }
            info.mem = counters.rss;
            info.diskread = counters.read_bytes;
            info.diskwrite = counters.write_bytes;
            info.last = Some((at, counters));
            info.pressure = ferrox_qemu::cgroup::guest_pressure(*vmid);
        }
    }
}

impl RunInfo {
    fn new(pid: u32, started: i64) -> RunInfo {
        RunInfo {
            pid,
            started,
            cpu: 0.0,
            mem: 0,
            diskread: 0,
            diskwrite: 0,
            qmpstatus: "running".into(),
            accel: None,
            last: None,
            pressure: None,
        }
    }
}

pub(crate) fn is_disk_key(key: &str) -> bool {
    DISK_BUSES.iter().any(|b| {
        key.strip_prefix(b)
            .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
    })
}

pub(crate) fn is_net_key(key: &str) -> bool {
    key.strip_prefix("net")
        .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
}

/// A `netN` value parsed into its typed form (the error names the key and the bad item),
/// with a MAC address of Proxmox VE's prefix when it has none:
/// `virtio,bridge=vmbr0` → `virtio=BC:24:11:xx:xx:xx,bridge=vmbr0`.
fn assign_mac(key: &str, value: &str) -> Result<String, ApiError> {
    let mut nic = Nic::parse(key, value).map_err(|e| ApiError::param(key, e.message))?;
    if nic.mac.is_none() {
        nic.mac = Some(random_mac());
    }
    Ok(nic.to_string())
}

/// ACPI shutdown of a guest's QEMU with a timeout; then a hard stop if `force`, else an
/// error.
pub(crate) fn shutdown_process(
    p: &GuestProcess,
    timeout: Duration,
    force: bool,
    log: &TaskLog,
) -> Result<(), TaskError> {
    log.log(format!(
        "requesting ACPI shutdown (timeout {}s)",
        timeout.as_secs()
    ));
    p.qmp()
        .and_then(|mut q| Ok(q.execute("system_powerdown", None)?))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && pid_alive(p.pid) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if pid_alive(p.pid) {
        if !force {
            return Err("VM quit/powerdown failed".into());
        }
        log.warn(format!(
            "no shutdown within {}s: stopping",
            timeout.as_secs()
        ));
        p.stop().map_err(|e| e.to_string())?;
    } else {
        log.log("shut down");
    }
    let _ = std::fs::remove_file(&p.qmp_socket);
    Ok(())
}

/// A MAC address with Proxmox VE's prefix.
fn random_mac() -> MacAddr {
    let mut rng = rand::thread_rng();
    MacAddr([0xBC, 0x24, 0x11, rng.gen(), rng.gen(), rng.gen()])
}

/// A NIC with a new MAC address (for a clone: the copy must not share the source's).
pub(crate) fn fresh_mac(key: &str, value: &str) -> Result<String, ApiError> {
    let mut nic = Nic::parse(key, value).map_err(|e| ApiError::param(key, e.message))?;
    nic.mac = Some(random_mac());
    Ok(nic.to_string())
}

/// Sets `sets` on `cfg` (new NICs get a MAC); collects one error per bad key.
fn set_options(
    cfg: &mut GuestConfig,
    sets: &BTreeMap<String, String>,
    errors: &mut BTreeMap<String, String>,
) {
    for (key, value) in sets {
        let value = if is_net_key(key) {
            match assign_mac(key, value) {
                Ok(v) => v,
                Err(e) => {
                    errors.extend(e.errors);
                    continue;
                }
            }
        } else {
            value.clone()
        };
        if key == "description" {
            cfg.description = Some(value);
        } else if let Err(e) = cfg.set(key, &value) {
            errors.insert(key.clone(), e.message);
        }
    }
}

/// Bytes of the first disk (the one Proxmox VE reports as `maxdisk`).
fn boot_disk_size(cfg: &GuestConfig) -> u64 {
    cfg.disks()
        .into_iter()
        .filter(|(_, d)| d.get("media", None) != Some("cdrom"))
        .find_map(|(_, d)| {
            d.get("size", None)
                .and_then(|s| ferrox_types::parse_size(s).ok())
        })
        .unwrap_or(0)
}

/// The volumes guest `vmid` owns: its disks, unused disks and the RAM states of its
/// snapshots.
fn volumes_of(cfg: &GuestConfig, vmid: u32) -> Vec<String> {
    let states = cfg.snapshots.values().filter_map(|s| s.get("vmstate"));
    cfg.options
        .iter()
        .filter(|(k, _)| is_disk_key(k) || k.starts_with("unused"))
        .map(|(_, v)| v)
        .chain(states)
        .filter_map(|v| {
            let p = PropertyString::parse(v).ok()?;
            let file = p.get("file", Some("file"))?.to_string();
            let owner = VolumeId::parse(&file)?.owner();
            (owner == Some(vmid)).then_some(file)
        })
        .collect()
}

impl Node {
    pub fn no_such_guest(&self, vmid: u32) -> ApiError {
        ApiError::internal(format!(
            "Configuration file '{}' does not exist",
            config_path(&self.opts.node_name, vmid)
        ))
    }

    pub fn guest_config(&self, vmid: u32) -> Result<Arc<GuestConfig>, ApiError> {
        self.guests
            .config(vmid)
            .ok_or_else(|| self.no_such_guest(vmid))
    }

    /// The row `GET /nodes/{node}/qemu` and `status/current` show, with Proxmox VE's
    /// names and types.
    pub fn guest_summary(vmid: u32, fixed: &GuestStatic, info: Option<&RunInfo>) -> GuestStatus {
        let mut row = GuestStatus {
            vmid,
            name: fixed.name.clone(),
            status: if info.is_some() { "running" } else { "stopped" }.into(),
            qmpstatus: "stopped".into(),
            cpus: fixed.cpus,
            maxmem: fixed.maxmem,
            maxdisk: fixed.maxdisk,
            tags: fixed.tags.clone(),
            lock: fixed.lock.clone(),
            template: fixed.template.then_some(1),
            ..GuestStatus::default()
        };
        if let Some(i) = info {
            row.pid = Some(i.pid);
            row.qmpstatus = i.qmpstatus.clone();
            row.cpu = i.cpu;
            row.mem = i.mem;
            row.memhost = i.mem;
            row.diskread = i.diskread;
            row.diskwrite = i.diskwrite;
            row.uptime = (now() - i.started).max(0);
            row.accel = i.accel.map(|a| a.as_str().to_string());
        }
        row
    }

    /// The accelerator a guest runs with: the node's, unless its config says `kvm: 0`.
    pub fn guest_accel(&self, cfg: &GuestConfig) -> Accelerator {
        if cfg.options.get("kvm").map(String::as_str) == Some("0") {
            Accelerator::Tcg
        } else {
            self.accel
        }
    }

    /// Validates and applies `sets` and `deletes` to a copy of `cfg`, allocating new disks.
    /// On error nothing is allocated and `cfg` is untouched.
    pub fn apply_config_changes(
        &self,
        vmid: u32,
        cfg: &GuestConfig,
        sets: &BTreeMap<String, String>,
        deletes: &[String],
    ) -> Result<GuestConfig, ApiError> {
        let mut next = cfg.clone();
        let mut errors = BTreeMap::new();
        for key in deletes {
            if !ferrox_types::guest_config::is_known_key(key) {
                errors.insert("delete".to_string(), format!("invalid key '{key}'"));
                continue;
            }
            if sets.contains_key(key) {
                errors.insert(
                    key.clone(),
                    "conflicts with the 'delete' of the same key".into(),
                );
            }
            if let Some(old) = next.options.remove(key) {
                // A removed disk stays on its storage as `unusedN`, as in Proxmox VE.
                if is_disk_key(key) {
                    let volume = PropertyString::parse(&old)
                        .ok()
                        .and_then(|p| p.get("file", Some("file")).map(String::from));
                    if let Some(volid) =
                        volume.filter(|v| VolumeId::parse(v).and_then(|v| v.owner()) == Some(vmid))
                    {
                        if next.add_unused(&volid).is_none() {
                            errors.insert(key.clone(), "no free unusedN slot for the disk".into());
                        }
                    }
                }
            }
        }
        set_options(&mut next, sets, &mut errors);
        self.check_custom_cpu(sets, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::params(errors));
        }
        let storages = self.storage_config()?;
        ferrox_qemu::disk::allocate_new_disks(&mut next, &storages, &self.opts.node_name, vmid)
            .map_err(|e| match e {
                ferrox_qemu::QemuError::Config { key, message } => ApiError::param(&key, message),
                other => ApiError::internal(other.to_string()),
            })?;
        Ok(next)
    }

    /// A `cpu:` naming a custom model that does not exist is refused under `cpu`.
    fn check_custom_cpu(
        &self,
        sets: &BTreeMap<String, String>,
        errors: &mut BTreeMap<String, String>,
    ) {
        if let Some(value) = sets.get("cpu").filter(|_| !errors.contains_key("cpu")) {
            if let Err(e) = self.check_cpu_value(value) {
                errors.insert("cpu".into(), e);
            }
        }
    }

    /// The config and the storage volume of disk `disk` of guest `vmid`, for a request on
    /// that disk (resize, move): 400 naming `digest` when the config changed meanwhile,
    /// `disk` when it is no image of a storage (a CD drive, a host path); refused while the
    /// guest is locked.
    pub fn check_disk_request(
        &self,
        vmid: u32,
        disk: &str,
        digest: Option<&str>,
    ) -> Result<DiskRequest, ApiError> {
        let cfg = self.guest_config(vmid)?;
        if digest.is_some_and(|d| d != cfg.digest) {
            return Err(ApiError::param(
                "digest",
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
        if let Some(lock) = cfg.options.get("lock") {
            return Err(ApiError::internal(format!("VM is locked ({lock})")));
        }
        let value = cfg
            .options
            .get(disk)
            .filter(|_| ferrox_types::guest_config::is_disk_key(disk))
            .ok_or_else(|| ApiError::param("disk", format!("no disk '{disk}' in the config")))?;
        let drive =
            PropertyString::parse(value).map_err(|e| ApiError::param("disk", e.to_string()))?;
        let volid = drive.get("file", Some("file")).unwrap_or("");
        let volume = VolumeId::parse(volid)
            .filter(|_| drive.get("media", None) != Some("cdrom"))
            .ok_or_else(|| {
                ApiError::param("disk", format!("'{disk}' is not a disk image of a storage"))
            })?;
        Ok(DiskRequest { cfg, drive, volume })
    }

    /// Starts a guest's QEMU; the worker of `qmstart`.
    pub fn start_guest(&self, vmid: u32, log: &TaskLog) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let cfg = self.guest_config(vmid)?;
        if let Some(lock) = cfg.options.get("lock") {
            return Err(format!("VM is locked ({lock})").into());
        }
        if self.guests.process(vmid).is_some() {
            return Err(format!("VM {vmid} already running").into());
        }
        if cfg.options.get("template").map(String::as_str) == Some("1") {
            return Err("you can't start a vm if it's a template".into());
        }
        self.launch_guest(vmid, &cfg, None, log)
    }

    /// Launches QEMU for `cfg`; the caller holds the guest's lock and checked that it is
    /// not running. With `state` (a snapshot's RAM), the guest resumes from it instead of
    /// booting.
    pub(crate) fn launch_guest(
        &self,
        vmid: u32,
        cfg: &GuestConfig,
        state: Option<&std::fs::File>,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        // Without `enforce` (TCG) QEMU would drop what the host lacks and the guest would
        // see another CPU than its model; with it, QEMU's error is less clear than this.
        if let Some(refusal) = self.cpu_refusals(cfg, None)?.remove(&self.opts.node_name) {
            return Err(refusal.reason.into());
        }
        let storages = self.storage_config()?;
        let node = self.opts.node_name.clone();
        let resolve = move |volid: &str| {
            ferrox_storage::resolve(&storages, &node, volid).map_err(|e| e.to_string())
        };
        let accel = self.guest_accel(cfg);
        let cpu_models = self.custom_cpu_models()?;
        let spec = LaunchSpec {
            vmid,
            accel,
            run_dir: &self.guests.run_dir,
            resolve: &resolve,
            incoming: state.map(|_| "defer"),
            cpu_models: &cpu_models,
            net_mode: self.opts.net_mode,
            // The guest's CPUs wait until its taps are on their bridges.
            paused: true,
        };
        let args = ferrox_qemu::command_line(&self.with_bridge_mtus(cfg), &spec)
            .map_err(|e| e.to_string())?;
        log.log(format!(
            "starting VM {vmid} ({} accelerator)",
            accel.as_str()
        ));
        let process = GuestProcess::start(&self.opts.qemu_binary, &args, &spec)
            .map_err(|e| format!("start failed: {e}"))?;
        let resumed = process
            .qmp()
            .map_err(|e| e.to_string())
            .and_then(|mut qmp| {
                self.plug_guest_taps(vmid, cfg, &mut qmp, Some(log))?;
                if let Some(state) = state {
                    ferrox_qemu::migration::load_state(&mut qmp, state)
                        .map_err(|e| format!("loading the saved RAM state failed: {e}"))?;
                    log.log(format!("VM {vmid} resumed from its saved RAM state"));
                }
                qmp.execute("cont", None).map_err(|e| e.to_string())
            });
        if let Err(e) = resumed {
            let _ = process.stop();
            return Err(format!("start failed: {e}").into());
        }
        let state = process.status().map_err(|e| format!("start failed: {e}"))?;
        let actual = if state.kvm {
            Accelerator::Kvm
        } else {
            Accelerator::Tcg
        };
        if actual != accel {
            let _ = process.stop();
            return Err(format!(
                "start failed: QEMU reports accelerator '{}' but '{}' was requested",
                actual.as_str(),
                accel.as_str()
            )
            .into());
        }
        self.guests
            .mark_running(vmid, process.pid, actual, &state.status);
        log.log(format!(
            "VM {vmid} started (pid {}, qmp status '{}')",
            process.pid, state.status
        ));
        Ok(())
    }

    /// Hard stop; the worker of `qmstop`.
    pub fn stop_guest(&self, vmid: u32, log: &TaskLog) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.guest_config(vmid)?;
        match self.guests.process(vmid) {
            None => log.log(format!("VM {vmid} is not running")),
            Some(p) => {
                p.stop().map_err(|e| e.to_string())?;
                log.log(format!("VM {vmid} stopped"));
            }
        }
        self.guests.mark_stopped(vmid);
        Ok(())
    }

    /// ACPI shutdown with a timeout; then a hard stop if `force`, else an error.
    pub fn shutdown_guest(
        &self,
        vmid: u32,
        timeout: Duration,
        force: bool,
        log: &TaskLog,
    ) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.guest_config(vmid)?;
        let Some(p) = self.guests.process(vmid) else {
            log.log(format!("VM {vmid} is not running"));
            self.guests.mark_stopped(vmid);
            return Ok(());
        };
        shutdown_process(&p, timeout, force, log)?;
        self.guests.mark_stopped(vmid);
        Ok(())
    }

    /// Pauses (`suspend`) or resumes a running guest.
    pub fn pause_guest(&self, vmid: u32, pause: bool, log: &TaskLog) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        self.guest_config(vmid)?;
        let p = self
            .guests
            .process(vmid)
            .ok_or_else(|| format!("VM {vmid} not running"))?;
        if pause {
            p.suspend().map_err(|e| e.to_string())?;
        } else {
            p.resume().map_err(|e| e.to_string())?;
        }
        let status = p.status().map_err(|e| e.to_string())?;
        self.guests.set_qmpstatus(vmid, &status.status);
        log.log(format!("VM {vmid} is now '{}'", status.status));
        Ok(())
    }

    /// Removes a stopped guest: its disks, its config, its metrics.
    pub fn destroy_guest(&self, vmid: u32, log: &TaskLog) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let cfg = self.guest_config(vmid)?;
        if self.guests.process(vmid).is_some() {
            return Err(format!("VM {vmid} is running - destroy failed").into());
        }
        let storages = self.storage_config()?;
        // A template whose base images have linked clones stays whole.
        for volid in volumes_of(&cfg, vmid) {
            if let Ok((storage, volume)) =
                ferrox_storage::open_volume(&storages, &self.opts.node_name, &volid)
            {
                storage.check_free(&volume).map_err(|e| e.to_string())?;
            }
        }
        for volid in volumes_of(&cfg, vmid) {
            match ferrox_storage::free(&storages, &self.opts.node_name, &volid) {
                Ok(()) => log.log(format!("removed volume '{volid}'")),
                Err(e) => log.warn(format!("could not remove '{volid}': {e}")),
            }
        }
        self.guests.remove_config(vmid)?;
        self.metrics.forget(&format!("qemu/{vmid}"));
        if let Err(e) = crate::guests::access::forget_guest(self, vmid) {
            log.warn(format!(
                "could not remove VM {vmid} from its pool and ACL: {}",
                e.message
            ));
        }
        log.log(format!("VM {vmid} destroyed"));
        Ok(())
    }

    /// Reserves `vmid` with a `lock: create` config, then allocates disks and writes the
    /// final config in the worker. A failure removes everything the worker created.
    pub fn create_guest(
        self: &Arc<Self>,
        vmid: u32,
        sets: BTreeMap<String, String>,
        pool: Option<String>,
        start: bool,
        auth_id: &str,
    ) -> Result<String, ApiError> {
        let lock = self.guests.lock(vmid);
        let held = lock.hold();
        if let Some(owner) = crate::cluster::vmid_owner(self, vmid) {
            let on = if owner == self.opts.node_name {
                String::new()
            } else {
                format!(" on node '{owner}'")
            };
            return Err(ApiError::param(
                "vmid",
                format!("VM {vmid} already exists{on}"),
            ));
        }
        // Validate everything but disk allocation before anything is written.
        let mut errors = BTreeMap::new();
        set_options(&mut GuestConfig::default(), &sets, &mut errors);
        self.check_custom_cpu(&sets, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::params(errors));
        }
        let mut reserved = GuestConfig::default();
        reserved.options.insert("lock".into(), "create".into());
        self.guests.write_config(vmid, &reserved)?;
        drop(held);
        let node = Arc::clone(self);
        let result = self
            .tasks
            .spawn("qmcreate", &vmid.to_string(), auth_id, move |log| {
                let lock = node.guests.lock(vmid);
                let outcome = (|| -> Result<(), TaskError> {
                    let _held = lock.hold();
                    let mut base = GuestConfig::default();
                    if !sets.contains_key("memory") {
                        base.options.insert("memory".into(), "512".into());
                    }
                    let kvm_off = sets.get("kvm").is_some_and(|v| v == "0");
                    if let Some(model) = node
                        .default_cpu_model(kvm_off)
                        .filter(|_| !sets.contains_key("cpu"))
                    {
                        log.log(format!("cpu: {model} (the default every node can run)"));
                        base.options.insert("cpu".into(), model.into());
                    }
                    let cfg = node.apply_config_changes(vmid, &base, &sets, &[])?;
                    for (key, value) in &cfg.options {
                        if is_disk_key(key) {
                            log.log(format!("{key}: {value}"));
                        }
                    }
                    node.guests.write_config(vmid, &cfg)?;
                    Ok(())
                })();
                if let Err(e) = outcome {
                    let _ = node.guests.remove_config(vmid);
                    return Err(format!("unable to create VM {vmid} - {e}").into());
                }
                log.log(format!("VM {vmid} created"));
                if let Some(pool) = &pool {
                    crate::guests::access::add_guest(&node, pool, vmid)
                        .map_err(|e| format!("adding VM {vmid} to pool '{pool}': {}", e.message))?;
                    log.log(format!("VM {vmid} added to pool '{pool}'"));
                }
                if start {
                    node.start_guest(vmid, log)?;
                }
                Ok(())
            });
        if result.is_err() {
            let _ = self.guests.remove_config(vmid);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_models_get_a_mac_with_the_proxmox_prefix() {
        let v = assign_mac("net0", "virtio,bridge=vmbr0").unwrap();
        assert!(v.starts_with("virtio=BC:24:11:"), "{v}");
        assert!(v.ends_with(",bridge=vmbr0"));
        assert_eq!(
            assign_mac("net0", "e1000=AA:BB:CC:DD:EE:FF").unwrap(),
            "e1000=AA:BB:CC:DD:EE:FF"
        );
        let err = assign_mac("net1", "bridge=vmbr0").unwrap_err();
        assert!(err.errors.contains_key("net1"));
    }

    #[test]
    fn config_paths_round_trip_and_other_paths_are_not_configs() {
        assert_eq!(
            parse_config_path(&config_path("n1", 100)),
            Some(("n1", 100))
        );
        for other in [
            "nodes/n1/lrm_status",
            "nodes/n1/qemu-server/x.conf",
            "nodes/n1/qemu-server/100.conf.tmp",
            "nodes/a/b/qemu-server/100.conf",
            "storage.cfg",
        ] {
            assert_eq!(parse_config_path(other), None, "{other}");
        }
    }

    #[test]
    fn volumes_of_a_guest_are_its_own_disks_only() {
        let cfg = GuestConfig::parse(
            "scsi0: local:100/vm-100-disk-0.qcow2,size=4G\nide2: none,media=cdrom\nunused0: local:100/vm-100-disk-1.qcow2\nvirtio1: local:101/vm-101-disk-0.qcow2\n",
        )
        .unwrap();
        assert_eq!(
            volumes_of(&cfg, 100),
            vec![
                "local:100/vm-100-disk-0.qcow2",
                "local:100/vm-100-disk-1.qcow2"
            ]
        );
        assert_eq!(boot_disk_size(&cfg), 4 << 30);
    }
}
