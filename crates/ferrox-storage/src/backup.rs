//! Backup archives and their retention. An archive is
//! `dump/vzdump-qemu-<vmid>-<YYYY_MM_DD-HH_MM_SS>.tar.zst` on a storage with `backup`
//! content (volume id `<storage>:backup/<file>`, as Proxmox VE names backups): a
//! zstd-compressed tar holding the guest's config (`qemu-server.conf`), one
//! `disk-<key>.raw` per disk (the guest-visible bytes) and, last, `manifest.json` (format
//! version, guest, time, and per disk its volume, format, size and SHA-256).
//!
//! Proxmox VE's `.vma.zst` is not written: without Proxmox VE's `vma` tool here, nothing
//! could check that an archive of ours is one it reads. Ours is plain tar and zstd, so
//! `tar --zstd -x` unpacks it anywhere.
//!
//! An archive is written as `<name>.tmp` and renamed once complete and synced: an
//! interrupted backup never looks like a backup. Reading checks every disk's size and
//! hash against the manifest.

use crate::StorageError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "ferrox-vzdump";
pub const VERSION: u32 = 1;
/// The extension of archives (after `vzdump-qemu-<vmid>-<time>`).
pub const EXTENSION: &str = ".tar.zst";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub vmid: u32,
    /// Unix seconds of the backup.
    pub ctime: i64,
    pub disks: Vec<ArchivedDisk>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedDisk {
    /// `scsi0`, ...
    pub key: String,
    /// The volume it was backed up from.
    pub volid: String,
    /// The image format it had.
    pub format: String,
    /// Bytes of guest-visible data.
    pub size: u64,
    pub sha256: String,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let what = what.into();
    move |source| StorageError::Io { what, source }
}

/// `vzdump-qemu-<vmid>-<YYYY_MM_DD-HH_MM_SS>.tar.zst` for a backup at `ctime` (local time,
/// as Proxmox VE names them).
pub fn archive_name(vmid: u32, ctime: i64) -> String {
    let time = chrono::DateTime::from_timestamp(ctime, 0)
        .map(|t| t.with_timezone(&chrono::Local))
        .map(|t| t.format("%Y_%m_%d-%H_%M_%S").to_string())
        .unwrap_or_default();
    format!("vzdump-qemu-{vmid}-{time}{EXTENSION}")
}

/// The guest and time of an archive's file name.
pub fn parse_archive_name(file: &str) -> Option<(u32, i64)> {
    let rest = file.strip_prefix("vzdump-qemu-")?.strip_suffix(EXTENSION)?;
    let (vmid, time) = rest.split_once('-')?;
    let vmid = vmid.parse().ok()?;
    let local = chrono::NaiveDateTime::parse_from_str(time, "%Y_%m_%d-%H_%M_%S").ok()?;
    let ctime = local
        .and_local_timezone(chrono::Local)
        .earliest()?
        .timestamp();
    Some((vmid, ctime))
}

/// A reader that hashes what passes through.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A disk to archive: what the manifest says of it, and the raw file with its bytes.
pub struct DiskSource<'a> {
    pub key: &'a str,
    pub volid: &'a str,
    pub format: &'a str,
    pub raw: &'a Path,
}

/// Writes the archive `path` (via `<path>.tmp`, renamed when complete); returns its
/// manifest.
pub fn write_archive(
    path: &Path,
    vmid: u32,
    ctime: i64,
    config: &str,
    disks: &[DiskSource<'_>],
) -> Result<Manifest, StorageError> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let written = (|| -> Result<Manifest, StorageError> {
        let file = std::fs::File::create(&tmp).map_err(io(tmp.display().to_string()))?;
        // Level 3: zstd's default; the guest's data decides the ratio, the level little.
        let encoder = zstd::Encoder::new(file, 3).map_err(io("zstd"))?;
        let mut tar = tar::Builder::new(encoder);
        append(&mut tar, "qemu-server.conf", config.as_bytes())?;
        let mut manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            vmid,
            ctime,
            disks: Vec::new(),
        };
        for d in disks {
            let raw = std::fs::File::open(d.raw).map_err(io(d.raw.display().to_string()))?;
            let size = raw
                .metadata()
                .map_err(io(d.raw.display().to_string()))?
                .len();
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o600);
            header.set_mtime(ctime.max(0) as u64);
            let mut reader = Hashing {
                inner: raw,
                hash: Sha256::new(),
                count: 0,
            };
            tar.append_data(&mut header, format!("disk-{}.raw", d.key), &mut reader)
                .map_err(io(format!("archiving {}", d.key)))?;
            manifest.disks.push(ArchivedDisk {
                key: d.key.to_string(),
                volid: d.volid.to_string(),
                format: d.format.to_string(),
                size: reader.count,
                sha256: hex(&reader.hash.finalize()),
            });
        }
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StorageError::Invalid(e.to_string()))?;
        append(&mut tar, "manifest.json", &text)?;
        let encoder = tar.into_inner().map_err(io("tar"))?;
        let file = encoder.finish().map_err(io("zstd"))?;
        file.sync_all().map_err(io(tmp.display().to_string()))?;
        Ok(manifest)
    })();
    match written {
        Ok(manifest) => {
            std::fs::rename(&tmp, path).map_err(io(path.display().to_string()))?;
            if let Some(dir) = path.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(manifest)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> Result<(), StorageError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o600);
    tar.append_data(&mut header, name, data)
        .map_err(io(format!("archiving {name}")))
}

/// What an archive holds, read back: the config text, the manifest, and per disk key the
/// raw file it was unpacked to (below `dest`).
pub struct Unpacked {
    pub config: String,
    pub manifest: Manifest,
    pub disks: BTreeMap<String, PathBuf>,
}

/// Copies `reader` to `out`, leaving runs of zeroes as holes (the raw files of mostly
/// empty disks stay small).
fn copy_sparse(
    reader: &mut impl Read,
    out: &mut std::fs::File,
    hash: &mut Sha256,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = reader.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let chunk = &buf[..filled];
        hash.update(chunk);
        if chunk.iter().all(|b| *b == 0) {
            out.seek(SeekFrom::Current(filled as i64))?;
        } else {
            out.write_all(chunk)?;
        }
        total += filled as u64;
    }
    out.set_len(total)?;
    Ok(total)
}

/// The guest configuration an archive carries (its first entry: nothing else is read),
/// for the checks a restore makes before it starts.
pub fn archive_config(path: &Path) -> Result<String, StorageError> {
    let bad = |m: &str| StorageError::Invalid(format!("{}: {m}", path.display()));
    let file = std::fs::File::open(path).map_err(io(path.display().to_string()))?;
    let decoder = zstd::Decoder::new(file).map_err(io("zstd"))?;
    let mut tar = tar::Archive::new(decoder);
    let mut entries = tar.entries().map_err(io("tar"))?;
    let mut entry = entries
        .next()
        .ok_or_else(|| bad("empty archive"))?
        .map_err(io("tar"))?;
    if entry.path().map_err(io("tar"))?.to_string_lossy() != "qemu-server.conf" {
        return Err(bad("the first entry is not qemu-server.conf"));
    }
    let mut text = String::new();
    entry
        .read_to_string(&mut text)
        .map_err(io("qemu-server.conf"))?;
    Ok(text)
}

/// Unpacks archive `path` into `dest`, checking it: a known format and version, only the
/// entries it may have, every disk of the manifest with its size and hash.
pub fn read_archive(path: &Path, dest: &Path) -> Result<Unpacked, StorageError> {
    let bad = |m: String| StorageError::Invalid(format!("{}: {m}", path.display()));
    let file = std::fs::File::open(path).map_err(io(path.display().to_string()))?;
    let decoder = zstd::Decoder::new(file).map_err(io("zstd"))?;
    let mut tar = tar::Archive::new(decoder);
    let mut config = None;
    let mut manifest: Option<Manifest> = None;
    // Per disk key: the unpacked file, its size and SHA-256.
    let mut unpacked: BTreeMap<String, (PathBuf, u64, String)> = BTreeMap::new();
    for entry in tar.entries().map_err(io("tar"))? {
        let mut entry = entry.map_err(io("tar"))?;
        let name = entry
            .path()
            .map_err(io("tar"))?
            .to_string_lossy()
            .into_owned();
        match name.as_str() {
            "qemu-server.conf" => {
                let mut text = String::new();
                entry
                    .read_to_string(&mut text)
                    .map_err(io("qemu-server.conf"))?;
                config = Some(text);
            }
            "manifest.json" => {
                let mut text = Vec::new();
                entry.read_to_end(&mut text).map_err(io("manifest.json"))?;
                manifest =
                    Some(serde_json::from_slice(&text).map_err(|e| bad(format!("manifest: {e}")))?);
            }
            _ => {
                // Only `disk-<key>.raw` with a disk key: no entry names a path of its own.
                let key = name
                    .strip_prefix("disk-")
                    .and_then(|n| n.strip_suffix(".raw"))
                    .filter(|k| ferrox_types::guest_config::is_disk_key(k))
                    .ok_or_else(|| bad(format!("unexpected entry '{name}'")))?
                    .to_string();
                let out_path = dest.join(format!("{key}.raw"));
                let mut out =
                    std::fs::File::create(&out_path).map_err(io(out_path.display().to_string()))?;
                let mut hash = Sha256::new();
                let size = copy_sparse(&mut entry, &mut out, &mut hash)
                    .map_err(io(out_path.display().to_string()))?;
                unpacked.insert(key, (out_path, size, hex(&hash.finalize())));
            }
        }
    }
    let manifest = manifest.ok_or_else(|| bad("no manifest: not a complete archive".into()))?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(bad(format!(
            "format {} version {} is not {FORMAT} version {VERSION}",
            manifest.format, manifest.version
        )));
    }
    let config = config.ok_or_else(|| bad("no qemu-server.conf".into()))?;
    for d in &manifest.disks {
        match unpacked.get(&d.key) {
            Some((_, size, sha)) if *size == d.size && *sha == d.sha256 => {}
            Some(_) => return Err(bad(format!("{}: the data does not match its hash", d.key))),
            None => return Err(bad(format!("{}: missing from the archive", d.key))),
        }
    }
    if unpacked.len() != manifest.disks.len() {
        return Err(bad("disks the manifest does not list".into()));
    }
    Ok(Unpacked {
        config,
        manifest,
        disks: unpacked
            .into_iter()
            .map(|(key, (path, _, _))| (key, path))
            .collect(),
    })
}

pub use ferrox_types::storage::Retention;

/// A backup's notes from vzdump's `notes-template`, as Proxmox VE makes them: `\n` is a
/// newline, `\\` a backslash (any other escape is an error), and `{{name}}` of a known
/// variable its value (`cluster`, `guestname`, `node`, `vmid`); other braces stay.
pub fn notes_from_template(template: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut unescaped = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            unescaped.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => unescaped.push('\n'),
            Some('\\') => unescaped.push('\\'),
            Some(other) => return Err(format!("unexpected escape character '{other}'")),
            None => return Err("a lone '\\' at the end".into()),
        }
    }
    Ok(vars.iter().fold(unescaped, |text, (name, value)| {
        text.replace(&format!("{{{{{name}}}}}"), value)
    }))
}

/// One backup of a group (one guest's backups on one storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    pub volid: String,
    pub ctime: i64,
    pub protected: bool,
}

/// The backups `retention` removes, as Proxmox VE marks them: newest first, each keep
/// option in turn (last, hourly, daily, weekly, monthly, yearly) keeps the newest backup
/// of each period that no kept backup covers yet, until its count is reached; protected
/// backups are never removed.
pub fn prune(backups: &[BackupEntry], retention: &Retention) -> BTreeSet<String> {
    if retention.all {
        return BTreeSet::new();
    }
    let mut sorted: Vec<&BackupEntry> = backups.iter().collect();
    sorted.sort_by_key(|b| std::cmp::Reverse(b.ctime));
    let local = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.with_timezone(&chrono::Local))
            .unwrap_or_default()
    };
    type Period = fn(&chrono::DateTime<chrono::Local>) -> String;
    let periods: [(u32, Option<Period>); 6] = [
        (retention.last, None),
        (
            retention.hourly,
            Some(|t| t.format("%Y/%m/%d/%H").to_string()),
        ),
        (retention.daily, Some(|t| t.format("%Y/%m/%d").to_string())),
        (retention.weekly, Some(|t| t.format("%G/%V").to_string())),
        (retention.monthly, Some(|t| t.format("%Y/%m").to_string())),
        (retention.yearly, Some(|t| t.format("%Y").to_string())),
    ];
    let mut kept = vec![false; sorted.len()];
    for (count, period) in periods {
        if count == 0 {
            continue;
        }
        let id = |i: usize| match period {
            Some(f) => f(&local(sorted[i].ctime)),
            None => sorted[i].volid.clone(),
        };
        // Walked newest first: a period is covered once a kept backup of it was passed.
        let mut covered = BTreeSet::new();
        let mut newly = BTreeSet::new();
        for i in 0..sorted.len() {
            let key = id(i);
            if covered.contains(&key) {
                continue;
            }
            if kept[i] {
                covered.insert(key);
                continue;
            }
            if sorted[i].protected || newly.contains(&key) {
                continue;
            }
            if newly.len() as u32 >= count {
                break;
            }
            newly.insert(key);
            kept[i] = true;
        }
    }
    sorted
        .iter()
        .enumerate()
        .filter(|(i, b)| !kept[*i] && !b.protected)
        .map(|(_, b)| b.volid.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_templates_as_proxmox_ve() {
        let vars = [
            ("vmid", "100"),
            ("guestname", "web"),
            ("node", "n1"),
            ("cluster", "c"),
        ];
        assert_eq!(
            notes_from_template(
                "{{guestname}} ({{vmid}}) on {{node}}\\n{{other}} \\\\ {{cluster}}",
                &vars
            )
            .unwrap(),
            "web (100) on n1\n{{other}} \\ c"
        );
        assert!(notes_from_template("bad \\t", &vars)
            .unwrap_err()
            .contains("'t'"));
    }

    #[test]
    fn archives_round_trip_and_refuse_damage() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("scsi0.src");
        let mut data = vec![0u8; 3 << 20];
        data[(1 << 20)..(1 << 20) + 5].copy_from_slice(b"hello");
        std::fs::write(&raw, &data).unwrap();
        let archive = dir.path().join(archive_name(100, 1_800_000_000));
        let manifest = write_archive(
            &archive,
            100,
            1_800_000_000,
            "memory: 64\nscsi0: local:100/vm-100-disk-0.qcow2,size=3M\n",
            &[DiskSource {
                key: "scsi0",
                volid: "local:100/vm-100-disk-0.qcow2",
                format: "qcow2",
                raw: &raw,
            }],
        )
        .unwrap();
        assert_eq!(manifest.disks[0].size, 3 << 20);
        assert!(!dir
            .path()
            .join(format!("{}.tmp", archive.display()))
            .exists());
        assert!(
            std::fs::metadata(&archive).unwrap().len() < 64 << 10,
            "zeroes compress"
        );
        let out = tempfile::tempdir().unwrap();
        let back = read_archive(&archive, out.path()).unwrap();
        assert_eq!(back.manifest, manifest);
        assert!(back.config.contains("memory: 64"));
        assert_eq!(std::fs::read(&back.disks["scsi0"]).unwrap(), data);

        // A truncated archive (an interrupted copy) is refused.
        let cut = dir.path().join("cut.tar.zst");
        let bytes = std::fs::read(&archive).unwrap();
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(read_archive(&cut, out.path()).is_err());
    }

    #[test]
    fn names_carry_guest_and_time() {
        let name = archive_name(123, 1_800_000_000);
        assert!(name.starts_with("vzdump-qemu-123-") && name.ends_with(".tar.zst"));
        assert_eq!(parse_archive_name(&name), Some((123, 1_800_000_000)));
        assert_eq!(parse_archive_name("vzdump-qemu-1-x.tar.zst"), None);
        assert_eq!(parse_archive_name("other.tar.zst"), None);
    }

    #[test]
    fn retention_keeps_as_proxmox_ve() {
        let day = 86_400;
        // Three backups a day for ten days, newest last.
        let start = 1_800_000_000 - 1_800_000_000 % day + 3600 * 2;
        let backups: Vec<BackupEntry> = (0..30)
            .map(|i| BackupEntry {
                volid: format!("b{i:02}"),
                ctime: start + (i / 3) * day + (i % 3) * 3600 * 4,
                protected: i == 0,
            })
            .collect();
        let removed = prune(&backups, &Retention::parse("keep-last=2").unwrap());
        assert_eq!(
            removed.len(),
            27,
            "all but the newest two and the protected one"
        );
        assert!(!removed.contains("b29") && !removed.contains("b28") && !removed.contains("b00"));
        let removed = prune(
            &backups,
            &Retention::parse("keep-last=1,keep-daily=3").unwrap(),
        );
        // b29 (last), then the newest of each of the two days before (b26, b23): day 9 is
        // covered by b29 already.
        let kept: Vec<_> = backups
            .iter()
            .map(|b| b.volid.as_str())
            .filter(|v| !removed.contains(*v))
            .collect();
        assert_eq!(kept, vec!["b00", "b20", "b23", "b26", "b29"]);
        assert!(prune(&backups, &Retention::parse("").unwrap()).is_empty());
        assert!(Retention::parse("keep-all=1,keep-last=1").is_err());
        assert!(Retention::parse("keep-often=1").is_err());
    }
}
