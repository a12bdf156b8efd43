//! This node's guests all at once, as Proxmox VE's `pvenode startall|stopall` and its host
//! boot and shutdown do them: guests start by ascending `startup` order (then vmid), waiting
//! `up` seconds after each, and stop in the reverse, each within its `down` timeout; up to
//! `max_workers` tasks run at once. HA-managed guests are left to HA unless named.
//! `migrateall` moves them all to one node (HA's through HA).
//! Node power (shutdown, reboot) is requested here and carried out by `serve`.

use crate::Node;
use ferrox_api::{TaskError, TaskLog, TaskOutcome};
use ferrox_types::guest_config::Startup;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A guest of this node in a bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkGuest {
    pub vmid: u32,
    pub startup: Startup,
}

impl BulkGuest {
    /// Proxmox VE sorts guests without an order after every ordered one.
    fn order(&self) -> u64 {
        self.startup.order.map_or(u64::MAX, u64::from)
    }
}

/// This node's guests for a bulk action, in start order. Without `vms`, HA-managed
/// guests are left out (HA starts and stops them) and `autostart` keeps only those with
/// `onboot=1`; with `vms`, exactly those (that are on this node).
pub fn start_order(node: &Node, autostart: bool, vms: Option<&BTreeSet<u32>>) -> Vec<BulkGuest> {
    let ha_managed = crate::resources::Facts::load(node).services;
    let mut list: Vec<BulkGuest> = node
        .guests
        .listing()
        .into_iter()
        .filter_map(|(vmid, _, _)| {
            match vms {
                Some(vms) if !vms.contains(&vmid) => return None,
                None if ha_managed.contains_key(&vmid) => return None,
                _ => {}
            }
            let config = node.guests.config(vmid)?;
            if autostart
                && vms.is_none()
                && config.options.get("onboot").map(String::as_str) != Some("1")
            {
                return None;
            }
            // Written through the checked config path: a bad value is ignored here.
            let startup = config
                .options
                .get("startup")
                .and_then(|s| Startup::parse(s).ok())
                .unwrap_or_default();
            Some(BulkGuest { vmid, startup })
        })
        .collect();
    list.sort_by_key(|g| (g.order(), g.vmid));
    list
}

/// Tasks begun and not yet waited for: (vmid, UPID).
struct Running<'a> {
    node: &'a Arc<Node>,
    log: &'a TaskLog,
    tasks: Vec<(u32, String)>,
    what: &'static str,
    failed: usize,
}

impl<'a> Running<'a> {
    fn new(node: &'a Arc<Node>, log: &'a TaskLog, what: &'static str) -> Running<'a> {
        Running {
            node,
            log,
            tasks: Vec::new(),
            what,
            failed: 0,
        }
    }

    /// Waits for every task; an error counting the guests that failed to `verb`.
    fn finish(mut self, verb: &str) -> Result<(), TaskError> {
        self.wait_until(0);
        match self.failed {
            0 => Ok(()),
            n => Err(TaskError(format!("{n} guest(s) failed to {verb}"))),
        }
    }

    /// Waits until at most `room` tasks are left running.
    fn wait_until(&mut self, room: usize) {
        while self.tasks.len() > room {
            let mut i = 0;
            while i < self.tasks.len() {
                let (vmid, upid) = &self.tasks[i];
                match self.node.tasks.wait(upid, Duration::from_millis(200)) {
                    Ok(None) => i += 1,
                    Ok(Some(outcome)) => {
                        // Warnings (a guest stopped hard after its timeout) are no failure.
                        if let TaskOutcome::Failed(status) = outcome {
                            self.log
                                .log(format!("{} VM {vmid} failed: {status}", self.what));
                            self.failed += 1;
                        }
                        self.tasks.remove(i);
                    }
                    Err(e) => {
                        self.log
                            .log(format!("{} VM {vmid}: {}", self.what, e.message));
                        self.failed += 1;
                        self.tasks.remove(i);
                    }
                }
            }
        }
    }
}

/// Starts `guests` (in the order given) that are not running; up to `max_workers` start
/// tasks at once, each followed by its `up` delay (3 s for a VM without one, as Proxmox
/// VE does to spread the load). An order group finishes before the next begins.
pub fn start_all(
    node: &Arc<Node>,
    guests: &[BulkGuest],
    max_workers: usize,
    log: &TaskLog,
) -> Result<(), TaskError> {
    let mut running = Running::new(node, log, "Starting");
    for (i, guest) in guests.iter().enumerate() {
        if node.guests.process(guest.vmid).is_none() {
            log.log(format!("Starting VM {}", guest.vmid));
            let worker = Arc::clone(node);
            let vmid = guest.vmid;
            let upid = node
                .tasks
                .spawn("qmstart", &vmid.to_string(), "root@pam", move |log| {
                    worker.start_guest(vmid, log)
                })
                .map_err(|e| TaskError(e.message))?;
            running.tasks.push((vmid, upid));
            let delay = guest.startup.up.unwrap_or(3);
            if guest.startup.up.is_some() && delay > 0 {
                log.log(format!("Waiting for {delay} seconds (startup delay)"));
            }
            std::thread::sleep(Duration::from_secs(delay.into()));
            running.wait_until(max_workers.saturating_sub(1));
        }
        if ends_group(guest, guests.get(i + 1)) {
            running.wait_until(0);
        }
    }
    running.finish("start")
}

/// Whether `guest` is the last of its order group (the group's tasks end before the next).
fn ends_group(guest: &BulkGuest, next: Option<&BulkGuest>) -> bool {
    next.is_none_or(|next| next.order() != guest.order())
}

/// Shuts `guests` down in the reverse of their start order, each within its `down`
/// timeout (else `timeout`), stopped hard after it when `force_stop`; the guests of one
/// order group stop concurrently (up to `max_workers`), groups one after the other.
pub fn stop_all(
    node: &Arc<Node>,
    guests: &[BulkGuest],
    timeout: Duration,
    force_stop: bool,
    max_workers: usize,
    log: &TaskLog,
) -> Result<(), TaskError> {
    let mut running = Running::new(node, log, "Stopping");
    let reversed: Vec<&BulkGuest> = guests.iter().rev().collect();
    for (i, guest) in reversed.iter().enumerate() {
        if node.guests.process(guest.vmid).is_some() {
            let timeout = guest
                .startup
                .down
                .map_or(timeout, |d| Duration::from_secs(d.into()));
            log.log(format!(
                "Stopping VM {} (timeout = {} seconds)",
                guest.vmid,
                timeout.as_secs()
            ));
            let worker = Arc::clone(node);
            let vmid = guest.vmid;
            let upid = node
                .tasks
                .spawn("qmshutdown", &vmid.to_string(), "root@pam", move |log| {
                    worker.shutdown_guest(vmid, timeout, force_stop, log)
                })
                .map_err(|e| TaskError(e.message))?;
            running.tasks.push((vmid, upid));
            running.wait_until(max_workers.saturating_sub(1));
        }
        if ends_group(guest, reversed.get(i + 1).copied()) {
            running.wait_until(0);
        }
    }
    let result = running.finish("stop");
    log.log("all VMs stopped");
    result
}

/// Migrates `vmids` (this node's guests, ascending) to `target`, as `pvenode migrateall`:
/// running guests live, stopped ones offline, up to `max_workers` at once. A guest whose
/// migration cannot work (local disks without `with_local_disks`, a storage or bridge the
/// target lacks) is skipped with the reason; HA-managed guests are handed to HA.
pub fn migrate_all(
    node: &Arc<Node>,
    vmids: &[u32],
    target: &str,
    with_local_disks: bool,
    max_workers: usize,
    log: &TaskLog,
) -> Result<(), TaskError> {
    let mut running = Running::new(node, log, "Migrating");
    let mut begun = 0;
    for &vmid in vmids {
        if crate::api::ha::is_managed(node, vmid) {
            log.log(format!(
                "Requesting HA migration for VM {vmid} to node {target}"
            ));
            match crate::api::ha::queue_crm_command(node, &format!("migrate vm:{vmid} {target}")) {
                Ok(()) => begun += 1,
                Err(e) => {
                    log.log(format!("VM {vmid}: {}", e.message));
                    running.failed += 1;
                }
            }
            continue;
        }
        let online = node.guests.process(vmid).is_some();
        let plan = match node.plan_migration(vmid, target, online, with_local_disks, None, None) {
            Ok(plan) => plan,
            Err(e) => {
                log.log(format!(
                    "skip VM {vmid} - precondition check failed: {}",
                    e.message
                ));
                continue;
            }
        };
        log.log(format!(
            "Migrating VM {vmid}{}",
            if online { " (online)" } else { "" }
        ));
        let worker = Arc::clone(node);
        let upid = node
            .tasks
            .spawn("qmigrate", &vmid.to_string(), "root@pam", move |log| {
                worker.migrate_guest(plan, log)
            })
            .map_err(|e| TaskError(e.message))?;
        running.tasks.push((vmid, upid));
        begun += 1;
        running.wait_until(max_workers.saturating_sub(1));
    }
    if begun == 0 {
        running.wait_until(0);
        return Err(TaskError("no migration was started".into()));
    }
    running.finish("migrate")?;
    log.log(format!("All jobs finished, {begun} guest(s) migrated"));
    Ok(())
}

/// How many tasks a bulk action runs at once: the request's, else datacenter.cfg's
/// `max_workers`, else the CPU threads less one, from 1 to 8 (Proxmox VE's rule).
pub fn max_workers(node: &Node, requested: Option<u32>) -> usize {
    requested
        .or_else(|| {
            node.tree
                .get("datacenter.cfg")
                .and_then(|e| ferrox_types::DatacenterConfig::parse_cfg(&e.data).ok())
                .and_then(|dc| dc.max_workers)
        })
        .map(|n| n as usize)
        .unwrap_or_else(|| crate::host::cpu_count().saturating_sub(1).clamp(1, 8))
}

/// A node power request: the daemon stops the node's guests (HA as datacenter.cfg's
/// `ha: shutdown_policy` says), then ends, and powers the host off or reboots it where the
/// daemon was started with `--host-power system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Shutdown,
    Reboot,
}

/// The pending power request of this node, and a wake-up for `serve`.
#[derive(Default)]
pub struct PowerRequest {
    requested: AtomicU8,
    notify: tokio::sync::Notify,
}

impl PowerRequest {
    pub fn request(&self, power: Power) {
        let code = match power {
            Power::Shutdown => 1,
            Power::Reboot => 2,
        };
        // The first request wins: a shutdown under way does not become a reboot.
        let _ = self
            .requested
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.notify.notify_one();
    }

    pub fn get(&self) -> Option<Power> {
        match self.requested.load(Ordering::SeqCst) {
            1 => Some(Power::Shutdown),
            2 => Some(Power::Reboot),
            _ => None,
        }
    }

    /// Resolves once a power request was made.
    pub async fn requested(&self) {
        loop {
            let notified = self.notify.notified();
            if self.get().is_some() {
                return;
            }
            notified.await;
        }
    }
}

/// The guests with `onboot=1` start once per host boot, as Proxmox VE's `pve-guests`
/// service starts them: when this daemon starts on a host whose boot id differs from the
/// one it last recorded (a daemon restart leaves guests as they are). Waits for quorum.
pub fn spawn_boot_start(node: &Arc<Node>) {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string();
    let record = node.dirs.run.join("boot_id");
    let last = std::fs::read_to_string(&record).unwrap_or_default();
    if !boot_id.is_empty() && last.trim() == boot_id {
        return;
    }
    if let Err(e) = ferrox_api::fsutil::write_atomic(&record, boot_id.as_bytes(), 0o600) {
        println!(
            "WARNING: recording the boot id in {}: {e}",
            record.display()
        );
    }
    let node = Arc::clone(node);
    let _ = std::thread::Builder::new()
        .name("boot-start".into())
        .spawn(move || {
            while !node.store.status().quorate {
                std::thread::sleep(Duration::from_secs(1));
            }
            let guests = start_order(&node, true, None);
            if guests.is_empty() {
                return;
            }
            let workers = max_workers(&node, None);
            let worker = Arc::clone(&node);
            let _ = node.tasks.spawn("startall", "", "root@pam", move |log| {
                start_all(&worker, &guests, workers, log)
            });
        });
}

/// A node shutdown's last step: every guest still running on this node (HA's have been
/// handled by its shutdown policy by now) shuts down, as a `stopall` task.
pub fn stop_for_power(node: &Arc<Node>) {
    let all: BTreeSet<u32> = node.guests.running_vmids().into_iter().collect();
    if all.is_empty() {
        return;
    }
    let guests = start_order(node, false, Some(&all));
    let workers = max_workers(node, None);
    let worker = Arc::clone(node);
    let spawned = node.tasks.spawn("stopall", "", "root@pam", move |log| {
        stop_all(
            &worker,
            &guests,
            Duration::from_secs(180),
            true,
            workers,
            log,
        )
    });
    match spawned {
        Ok(upid) => while let Ok(None) = node.tasks.wait(&upid, Duration::from_secs(1)) {},
        Err(e) => println!("stopping the guests: {}", e.message),
    }
}
