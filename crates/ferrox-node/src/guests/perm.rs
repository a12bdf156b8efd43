//! Which privileges a guest config change needs, key by key and value by value, as
//! Proxmox VE's `check_vm_modify_config_perm` and `check_storage_access` decide: CPU,
//! memory, hardware, options, network, cloud-init and disk keys each need their own
//! `VM.Config.*` privilege; every key Proxmox VE does not list (`args`, `hookscript`,
//! `lock`, ...) is for root@pam alone; a disk may only name a volume the caller may use
//! (its own guest's, or one it holds `Datastore.*` privileges for), a new disk needs
//! `Datastore.AllocateSpace` on its storage, and host paths are root@pam's.
//!
//! The endpoint's own declaration still requires one `VM.Config.*` privilege (as Proxmox
//! VE declares it); this is the check behind it.

use crate::Node;
use ferrox_api::{ApiError, Ctx, Param};
use ferrox_types::{DiskSource, GuestConfig, PropertyString, StorageConfig, VolumeKind};
use std::collections::BTreeMap;

type C<'a> = Ctx<'a, Node>;

const CPU: &[&str] = &[
    "cores",
    "cpu",
    "runningcpu",
    "cpulimit",
    "cpuunits",
    "numa",
    "smp",
    "sockets",
    "vcpus",
];
const MEMORY: &[&str] = &["memory", "balloon", "shares", "allow-ksm"];
const HWTYPE: &[&str] = &[
    "acpi",
    "hotplug",
    "kvm",
    "machine",
    "runningmachine",
    "scsihw",
    "smbios1",
    "tablet",
    "vga",
    "watchdog",
    "audio0",
    "rng0",
];
const GENERAL: &[&str] = &[
    "agent",
    "autostart",
    "bios",
    "description",
    "keyboard",
    "localtime",
    "migrate_downtime",
    "migrate_speed",
    "name",
    "onboot",
    "ostype",
    "protection",
    "reboot",
    "startdate",
    "startup",
    "tdf",
    "template",
];
const POWER: &[&str] = &["freeze"];
const DISK_OPTIONS: &[&str] = &["boot", "bootdisk", "vmstatestorage"];
const CLOUDINIT: &[&str] = &[
    "cicustom",
    "cipassword",
    "citype",
    "ciuser",
    "ciupgrade",
    "nameserver",
    "searchdomain",
    "sshkeys",
];

/// Host devices: root's unless they are virtual (a serial socket).
fn real_device(key: &str) -> ApiError {
    ApiError::new(
        403,
        format!("only root can set '{key}' config for real devices"),
    )
}

fn is_device_key(key: &str) -> bool {
    ["serial", "usb", "hostpci", "virtiofs"]
        .iter()
        .any(|f| indexed(key, f))
}

fn indexed(key: &str, family: &str) -> bool {
    key.strip_prefix(family)
        .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
}

/// root@pam itself (not one of its tokens): Proxmox VE's `$authuser eq 'root@pam'`.
pub fn is_root(ctx: &C<'_>) -> bool {
    ctx.caller
        .is_some_and(|c| c.userid == "root@pam" && c.token.is_none())
}

/// Refuses a parameter only root@pam may pass (`skiplock`, `nocheck`, ...), as Proxmox VE
/// does: 400 naming the parameter.
pub fn root_only_param(ctx: &C<'_>, param: &Param) -> Result<(), ApiError> {
    let given = ctx.params.bool(param).unwrap_or(false);
    if given && !is_root(ctx) {
        return Err(param.error("Only root may use this option."));
    }
    Ok(())
}

/// The guest a change is for, and the pool it is being created into: at creation the
/// pool's roles count as Proxmox VE's `check_vm_perm` lets them.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub vmid: u32,
    pub pool: Option<&'a str>,
}

fn vm_perm(ctx: &C<'_>, target: Target<'_>, privs: &[&str], any: bool) -> Result<(), ApiError> {
    if let Some(pool) = target.pool {
        if ctx.has(&format!("/pool/{pool}"), privs, any) {
            return Ok(());
        }
    }
    ctx.require(&format!("/vms/{}", target.vmid), privs, any)
}

fn root_only(key: &str) -> ApiError {
    ApiError::new(403, format!("only root can set '{key}' config"))
}

/// The privilege check of one key that is not a disk (disks depend on their value).
fn check_key(ctx: &C<'_>, target: Target<'_>, key: &str) -> Result<(), ApiError> {
    if CPU.contains(&key) || indexed(key, "numa") {
        vm_perm(ctx, target, &["VM.Config.CPU"], false)
    } else if MEMORY.contains(&key) {
        vm_perm(ctx, target, &["VM.Config.Memory"], false)
    } else if HWTYPE.contains(&key) {
        vm_perm(ctx, target, &["VM.Config.HWType"], false)
    } else if GENERAL.contains(&key) || key == "tags" {
        vm_perm(ctx, target, &["VM.Config.Options"], false)?;
        if key == "startup" {
            // It changes how the host boots its guests.
            ctx.require("/", &["Sys.Modify"], false)?;
        }
        Ok(())
    } else if POWER.contains(&key) {
        vm_perm(ctx, target, &["VM.PowerMgmt"], false)
    } else if DISK_OPTIONS.contains(&key) {
        vm_perm(ctx, target, &["VM.Config.Disk"], false)
    } else if indexed(key, "net") || key == "running-nets-host-mtu" {
        vm_perm(ctx, target, &["VM.Config.Network"], false)
    } else if CLOUDINIT.contains(&key) || indexed(key, "ipconfig") {
        vm_perm(
            ctx,
            target,
            &["VM.Config.Cloudinit", "VM.Config.Network"],
            true,
        )
    } else if key == "vmstate" {
        vm_perm(ctx, target, &["VM.Config.Disk", "VM.PowerMgmt"], false)
    } else {
        // args, hookscript, lock, affinity, ... and every key added later.
        Err(root_only(key))
    }
}

fn disk_file(value: &str) -> Option<(String, bool)> {
    let p = PropertyString::parse(value).ok()?;
    let file = p.get("file", Some("file"))?.to_string();
    let cdrom = p.get("media", None) == Some("cdrom") || file == "cdrom";
    Some((file, cdrom))
}

/// Whether the caller may point a disk of `vmid` at `source` (Proxmox VE's
/// `check_storage_access` and `PVE::Storage::check_volume_access`).
fn check_disk_source(
    ctx: &C<'_>,
    vmid: u32,
    key: &str,
    source: &DiskSource,
    storages: &StorageConfig,
) -> Result<(), ApiError> {
    let storage_exists = |sid: &str| {
        if storages.storages.contains_key(sid) {
            Ok(())
        } else {
            Err(ApiError::param(
                key,
                format!("storage '{sid}' does not exist"),
            ))
        }
    };
    match source {
        DiskSource::None => Ok(()),
        DiskSource::PhysicalCdrom => ctx.require("/", &["Sys.Console"], false),
        DiskSource::New { storage, .. } => {
            storage_exists(storage)?;
            ctx.require(
                &format!("/storage/{storage}"),
                &["Datastore.AllocateSpace"],
                false,
            )
        }
        DiskSource::Path(_) => {
            if is_root(ctx) {
                Ok(())
            } else {
                Err(ApiError::new(
                    403,
                    "Only root can pass arbitrary filesystem paths.",
                ))
            }
        }
        DiskSource::Volume(volume) => {
            storage_exists(&volume.storage)?;
            let storage_path = format!("/storage/{}", volume.storage);
            if ctx.has(&storage_path, &["Datastore.Allocate"], false) {
                return Ok(());
            }
            match volume.kind() {
                Some(VolumeKind::Iso) | Some(VolumeKind::Template) | Some(VolumeKind::Import) => {
                    ctx.require(
                        &storage_path,
                        &["Datastore.AllocateSpace", "Datastore.Audit"],
                        true,
                    )
                }
                Some(VolumeKind::Image { owner }) if owner == vmid => Ok(()),
                Some(VolumeKind::Image { owner }) => {
                    ctx.require(&storage_path, &["Datastore.Audit"], false)?;
                    ctx.require(&format!("/vms/{owner}"), &["VM.Config.Disk"], false)
                }
                _ => Err(ApiError::new(
                    403,
                    format!(
                        "missing privileges to access {}:{}",
                        volume.storage, volume.name
                    ),
                )),
            }
        }
    }
}

/// Choosing a custom CPU model needs Mapping.Use on `/mapping/cpu/<name>`; changing other
/// settings of the same model does not (Proxmox VE's `check_cpu_model_access`).
fn check_custom_cpu_use(
    ctx: &C<'_>,
    current: Option<&GuestConfig>,
    value: &str,
) -> Result<(), ApiError> {
    let cputype = |text: &str| {
        ferrox_types::cpu::CpuConf::parse(text)
            .ok()
            .map(|c| c.cputype)
    };
    let Some(new) = cputype(value).filter(|t| t.starts_with("custom-")) else {
        return Ok(());
    };
    if current
        .and_then(|c| c.options.get("cpu"))
        .and_then(|v| cputype(v))
        == Some(new.clone())
    {
        return Ok(());
    }
    let name = ferrox_types::cpu::custom_name(&new);
    ctx.require(&format!("/mapping/cpu/{name}"), &["Mapping.Use"], false)
}

/// A card on a bridge needs SDN.Use on it in its zone (`localnetwork` for a bridge of the
/// node, the vnet's zone for an SDN vnet), or on its VLAN for a tagged card (Proxmox VE's
/// `check_vnet_access`); root@pam is not asked.
pub fn check_bridge_access(ctx: &C<'_>, key: &str, value: &str) -> Result<(), ApiError> {
    if is_root(ctx) {
        return Ok(());
    }
    let nic = ferrox_types::network::Nic::parse(key, value)
        .map_err(|e| ApiError::param(key, e.message))?;
    let Some(bridge) = nic.bridge else {
        return Ok(());
    };
    let zone = format!(
        "/sdn/zones/{}/{bridge}",
        ctx.state.zone_of_bridge(bridge.as_str())
    );
    // Trunks reach every VLAN they list: for them the bridge itself must be allowed.
    let path = match nic.tag {
        Some(tag) => format!("{zone}/{tag}"),
        None => zone,
    };
    ctx.require(&path, &["SDN.Use"], false)
}

/// `check_bridge_access` for every card of the options a clone copies.
pub fn check_bridges_of(ctx: &C<'_>, options: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in options.iter().filter(|(k, _)| indexed(k, "net")) {
        check_bridge_access(ctx, key, value)?;
    }
    Ok(())
}

/// Checks a config change (or, with `current` = `None`, a new guest's config) key by key.
/// `sets` are the new values, `deletes` the keys to remove.
pub fn check_config_change(
    ctx: &C<'_>,
    target: Target<'_>,
    current: Option<&GuestConfig>,
    sets: &BTreeMap<String, String>,
    deletes: &[String],
) -> Result<(), ApiError> {
    let root = is_root(ctx);
    let storages = ctx.state.storage_config()?;
    let disk_privilege = |cdrom: bool| {
        if cdrom {
            "VM.Config.CDROM"
        } else {
            "VM.Config.Disk"
        }
    };
    for (key, value) in sets {
        if ferrox_types::guest_config::is_disk_key(key) {
            let Some((file, cdrom)) = disk_file(value) else {
                continue; // the config format reports the bad value
            };
            if !root {
                vm_perm(ctx, target, &[disk_privilege(cdrom)], false)?;
            }
            let source = DiskSource::parse(&file).map_err(|e| ApiError::param(key, e))?;
            check_disk_source(ctx, target.vmid, key, &source, &storages)?;
        } else if indexed(key, "unused") {
            if !root {
                vm_perm(ctx, target, &["VM.Config.Disk"], false)?;
            }
            let source = DiskSource::parse(value).map_err(|e| ApiError::param(key, e))?;
            check_disk_source(ctx, target.vmid, key, &source, &storages)?;
        } else if root {
            continue;
        } else if is_device_key(key) {
            // A serial socket is virtual hardware; host devices (and device mappings,
            // which Ferrox does not have yet) are root's.
            if indexed(key, "serial") && value == "socket" {
                vm_perm(ctx, target, &["VM.Config.HWType"], false)?;
            } else {
                return Err(real_device(key));
            }
        } else {
            check_key(ctx, target, key)?;
            if key == "cpu" {
                check_custom_cpu_use(ctx, current, value)?;
            }
            if indexed(key, "net") {
                check_bridge_access(ctx, key, value)?;
            }
        }
    }
    if root {
        return Ok(());
    }
    for key in deletes {
        if ferrox_types::guest_config::is_disk_key(key) {
            let cdrom = current
                .and_then(|c| c.options.get(key))
                .and_then(|v| disk_file(v))
                .is_some_and(|(_, cdrom)| cdrom);
            vm_perm(ctx, target, &[disk_privilege(cdrom)], false)?;
        } else if indexed(key, "unused") {
            vm_perm(ctx, target, &["VM.Config.Disk"], false)?;
        } else if is_device_key(key) {
            let socket = current
                .and_then(|c| c.options.get(key))
                .is_some_and(|v| v == "socket");
            if socket {
                vm_perm(ctx, target, &["VM.Config.HWType"], false)?;
            } else {
                return Err(real_device(key));
            }
        } else {
            check_key(ctx, target, key)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key a table above gives to a privilege.
    fn listed_keys() -> impl Iterator<Item = &'static &'static str> {
        CPU.iter()
            .chain(MEMORY)
            .chain(HWTYPE)
            .chain(GENERAL)
            .chain(POWER)
            .chain(DISK_OPTIONS)
            .chain(CLOUDINIT)
    }

    #[test]
    fn every_known_key_has_a_rule_or_is_root_only() {
        // The tables name only keys the config format knows.
        for key in listed_keys() {
            assert!(
                ferrox_types::guest_config::is_known_key(key),
                "{key} is not a guest config key"
            );
        }
        for root_only in ["args", "hookscript", "lock", "affinity"] {
            assert!(!listed_keys().any(|k| k == &root_only));
        }
    }
}
