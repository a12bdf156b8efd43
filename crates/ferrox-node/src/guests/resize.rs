//! `PUT /nodes/{node}/qemu/{vmid}/resize`: growing a disk of a guest, running (QMP
//! `block_resize`) or not (the storage grows the image), then its `size=` in the config.

use crate::Node;
use ferrox_api::{ApiError, TaskError, TaskLog};
use ferrox_types::PropertyString;

/// A checked request: the disk, its volume, and its size now and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    pub disk: String,
    pub volid: String,
    pub from: u64,
    pub to: u64,
    /// The config the request was checked against.
    pub digest: String,
}

/// `size` as Proxmox VE takes it: `+<n>[KMGT]` grows by, `<n>[KMGT]` grows to.
pub fn target_size(current: u64, size: &str) -> Result<u64, String> {
    let (relative, amount) = match size.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, size),
    };
    if amount.is_empty()
        || !amount
            .trim_end_matches(['K', 'M', 'G', 'T'])
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
    {
        return Err(format!(
            "'{size}' is not a size: +<n> or <n> with K, M, G or T"
        ));
    }
    let bytes = ferrox_types::parse_size(amount)?;
    Ok(if relative { current + bytes } else { bytes })
}

/// A size as the config writes it: the largest binary unit that divides it.
pub fn size_text(bytes: u64) -> String {
    for (unit, factor) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    bytes.to_string()
}

impl Node {
    /// Checks a resize request (400s naming `disk`, `size` or `digest`) before its task.
    pub fn check_resize(
        &self,
        vmid: u32,
        disk: &str,
        size: &str,
        digest: Option<&str>,
    ) -> Result<Resize, ApiError> {
        let request = self.check_disk_request(vmid, disk, digest)?;
        let volid = format!("{}:{}", request.volume.storage, request.volume.name);
        let from = request
            .drive
            .get("size", None)
            .and_then(|s| ferrox_types::parse_size(s).ok())
            .unwrap_or(0);
        let to = target_size(from, size).map_err(|e| ApiError::param("size", e))?;
        if to < from {
            return Err(ApiError::param(
                "size",
                format!(
                    "shrinking disk size is not supported ({} is less than {})",
                    size_text(to),
                    size_text(from)
                ),
            ));
        }
        Ok(Resize {
            disk: disk.to_string(),
            volid,
            from,
            to,
            digest: request.cfg.digest.clone(),
        })
    }

    /// The worker of a `resize` task.
    pub fn resize_disk(&self, vmid: u32, r: &Resize, log: &TaskLog) -> Result<(), TaskError> {
        let lock = self.guests.lock(vmid);
        let _held = lock.hold();
        let cfg = self.guest_config(vmid)?;
        if cfg.digest != r.digest {
            return Err("the configuration changed meanwhile: nothing resized".into());
        }
        if r.to == r.from {
            log.log(format!("{}: already {}", r.disk, size_text(r.to)));
            return Ok(());
        }
        match self.guests.process(vmid) {
            Some(process) => {
                let mut qmp = process.qmp().map_err(|e| e.to_string())?;
                qmp.execute(
                    "block_resize",
                    Some(serde_json::json!({"device": format!("drive-{}", r.disk), "size": r.to})),
                )
                .map_err(|e| format!("block_resize: {e}"))?;
            }
            None => {
                let storages = self.storage_config()?;
                ferrox_storage::resize(&storages, &self.opts.node_name, &r.volid, r.to)
                    .map_err(|e| e.to_string())?;
            }
        }
        let mut next = (*cfg).clone();
        let mut p = PropertyString::parse(&cfg.options[&r.disk]).map_err(|e| e.to_string())?;
        p.set("size", &size_text(r.to));
        next.options.insert(r.disk.clone(), p.to_string());
        self.guests.write_config(vmid, &next)?;
        log.log(format!(
            "{}: resized from {} to {}",
            r.disk,
            size_text(r.from),
            size_text(r.to)
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_proxmox_ve_takes_and_writes_them() {
        assert_eq!(target_size(4 << 30, "+1G"), Ok(5 << 30));
        assert_eq!(target_size(4 << 30, "10G"), Ok(10 << 30));
        assert_eq!(target_size(0, "512M"), Ok(512 << 20));
        assert!(target_size(0, "+").is_err());
        assert!(target_size(0, "-1G").is_err());
        assert!(target_size(0, "1X").is_err());
        assert_eq!(size_text(5 << 30), "5G");
        assert_eq!(size_text(1536 << 20), "1536M");
        assert_eq!(size_text(1000), "1000");
    }
}
