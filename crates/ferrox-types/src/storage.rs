//! `storage.cfg`: storages in Proxmox VE's section-config format. Ferrox runs `dir`
//! storages; other types are read and kept (so a copied file reads) but not usable yet.

use crate::section_config::invalid;
use crate::section_config::{self, parse_bool, SectionConfigError};
use std::collections::{BTreeMap, BTreeSet};

/// What a storage may hold.
pub const CONTENT_TYPES: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    pub id: String,
    /// `dir`, `lvmthin`, `nfs`, ...
    pub storage_type: String,
    pub path: Option<String>,
    pub content: BTreeSet<String>,
    pub shared: bool,
    pub disable: bool,
    /// Nodes the storage is available on; `None` means all.
    pub nodes: Option<BTreeSet<String>>,
    /// Properties Ferrox does not interpret, kept for writing back.
    pub other: BTreeMap<String, String>,
}

impl Storage {
    /// Enabled and (without a `nodes` list: everywhere) configured for `node`. Whether
    /// its type has a plugin is `ferrox_storage::is_usable_on`'s question.
    pub fn is_enabled_on(&self, node: &str) -> bool {
        !self.disable && self.nodes.as_ref().is_none_or(|n| n.contains(node))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageConfig {
    pub storages: BTreeMap<String, Storage>,
    /// Ids in file order, for writing back in the same order.
    pub order: Vec<String>,
    pub digest: String,
}

impl StorageConfig {
    pub fn parse(raw: &str) -> Result<StorageConfig, SectionConfigError> {
        let mut cfg = StorageConfig {
            digest: section_config::digest(raw),
            ..Default::default()
        };
        for section in section_config::parse(raw)? {
            let id = section.id.clone();
            crate::format::storage_id(&id).map_err(|e| invalid(&id, e))?;
            let mut storage = Storage {
                id: id.clone(),
                storage_type: section.section_type.clone(),
                path: None,
                content: BTreeSet::new(),
                shared: false,
                disable: false,
                nodes: None,
                other: BTreeMap::new(),
            };
            for (key, value) in &section.properties {
                match key.as_str() {
                    "path" => {
                        crate::format::absolute_path(value)
                            .map_err(|e| invalid(&id, format!("property 'path': {e}")))?;
                        storage.path = Some(value.clone());
                    }
                    "content" => {
                        for c in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                            if !CONTENT_TYPES.contains(&c) {
                                return Err(invalid(
                                    &id,
                                    format!("property 'content': unknown content type '{c}'"),
                                ));
                            }
                            storage.content.insert(c.to_string());
                        }
                    }
                    "shared" => storage.shared = parse_bool(&id, key, value)?,
                    "disable" => storage.disable = parse_bool(&id, key, value)?,
                    "nodes" => {
                        crate::format::node_list(value)
                            .map_err(|e| invalid(&id, format!("property 'nodes': {e}")))?;
                        storage.nodes = Some(
                            value
                                .split(',')
                                .map(str::trim)
                                .filter(|n| !n.is_empty())
                                .map(String::from)
                                .collect(),
                        )
                    }
                    "preallocation" if !PREALLOCATION.contains(&value.as_str()) => {
                        return Err(invalid(
                            &id,
                            format!(
                                "property 'preallocation': '{value}' is not one of {}",
                                PREALLOCATION.join(", ")
                            ),
                        ));
                    }
                    "format" if !IMAGE_FORMATS.contains(&value.as_str()) => {
                        return Err(invalid(
                            &id,
                            format!(
                                "property 'format': '{value}' is not one of {}",
                                IMAGE_FORMATS.join(", ")
                            ),
                        ));
                    }
                    "nocow" => {
                        let on = parse_bool(&id, key, value)?;
                        storage
                            .other
                            .insert(key.clone(), if on { "1" } else { "0" }.into());
                    }
                    "max-protected-backups" if value.parse::<i64>().map_or(true, |n| n < -1) => {
                        return Err(invalid(
                            &id,
                            format!("property 'max-protected-backups': '{value}' is not an integer from -1 on"),
                        ));
                    }
                    _ => {
                        storage.other.insert(key.clone(), value.clone());
                    }
                }
            }
            if ["dir", "btrfs"].contains(&storage.storage_type.as_str()) && storage.path.is_none() {
                return Err(invalid(
                    &id,
                    format!(
                        "missing property 'path' (required for {} storages)",
                        storage.storage_type
                    ),
                ));
            }
            if storage.storage_type == "btrfs"
                && storage.other.get("format").is_some_and(|f| f != "raw")
            {
                return Err(invalid(
                    &id,
                    "property 'format': btrfs storages hold raw images only".into(),
                ));
            }
            if cfg.storages.insert(id.clone(), storage).is_some() {
                return Err(invalid(&id, "storage defined twice".into()));
            }
            cfg.order.push(id);
        }
        Ok(cfg)
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for id in &self.order {
            let s = &self.storages[id];
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&section_config::header_line(&s.storage_type, &s.id));
            if let Some(p) = &s.path {
                out.push_str(&section_config::property_line("path", p));
            }
            if !s.content.is_empty() {
                out.push_str(&format!(
                    "\tcontent {}\n",
                    s.content.iter().cloned().collect::<Vec<_>>().join(",")
                ));
            }
            if s.shared {
                out.push_str("\tshared 1\n");
            }
            if s.disable {
                out.push_str("\tdisable 1\n");
            }
            if let Some(n) = &s.nodes {
                out.push_str(&section_config::property_line(
                    "nodes",
                    &n.iter().cloned().collect::<Vec<_>>().join(","),
                ));
            }
            for (k, v) in &s.other {
                out.push_str(&section_config::property_line(k, v));
            }
        }
        out
    }
}

/// A volume id `storage:name`, e.g. `local:100/vm-100-disk-0.qcow2`. Only names of a
/// known shape parse: guest images `<vmid>/(vm|base)-<vmid>-<name>.<format>` and files in
/// the content folders (`iso/x.iso`); never an absolute path, `..` or a control character,
/// so that a volume always resolves inside its storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeId {
    pub storage: String,
    pub name: String,
}

/// What a volume holds, from the shape of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// A guest disk image; `owner` is the guest it belongs to.
    Image {
        owner: u32,
    },
    Iso,
    Template,
    Backup,
    Snippet,
    Import,
}

/// `preallocation` of file-based storages, as Proxmox VE takes it (default `metadata`;
/// on raw images `metadata` means `off`).
pub const PREALLOCATION: &[&str] = &["off", "metadata", "falloc", "full"];

/// Image formats a `dir` storage holds.
pub const IMAGE_FORMATS: &[&str] = &["qcow2", "raw", "vmdk"];

fn file_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// `<vmid>/(vm|base)-<vmid>-<rest>.<format>`: the owner, and whether it is a base image.
fn image_file(dir: &str, file: &str) -> Option<(u32, bool)> {
    if !file_name_ok(file) {
        return None;
    }
    let owner: u32 = dir.parse().ok().filter(|v| *v >= 100)?;
    let (rest, is_base) = match file.strip_prefix("vm-") {
        Some(rest) => (rest, false),
        None => (file.strip_prefix("base-")?, true),
    };
    let (vmid, tail) = rest.split_once('-')?;
    let (_, format) = tail.rsplit_once('.')?;
    (vmid.parse::<u32>().ok() == Some(owner) && IMAGE_FORMATS.contains(&format))
        .then_some((owner, is_base))
}

impl VolumeId {
    /// Parses `storage:name`; `None` for anything that is not a volume id of a known shape.
    pub fn parse(text: &str) -> Option<VolumeId> {
        let (storage, name) = text.split_once(':')?;
        crate::format::storage_id(storage).ok()?;
        let vol = VolumeId {
            storage: storage.to_string(),
            name: name.to_string(),
        };
        vol.kind().map(|_| vol)
    }

    /// The kind of volume, or `None` when the name has no shape Ferrox knows.
    pub fn kind(&self) -> Option<VolumeKind> {
        let (dir, file) = self.name.split_once('/')?;
        // A linked clone, named as Proxmox VE names it: its base image, then its own file
        // (`100/base-100-disk-0.qcow2/101/vm-101-disk-0.qcow2`).
        if let Some((base_file, own)) = file.split_once('/') {
            let (own_dir, own_file) = own.split_once('/')?;
            let (_, base_is_base) = image_file(dir, base_file)?;
            let (owner, own_is_base) = image_file(own_dir, own_file)?;
            return (base_is_base && !own_is_base).then_some(VolumeKind::Image { owner });
        }
        if !file_name_ok(file) {
            return None;
        }
        let ends = |exts: &[&str]| {
            exts.iter()
                .any(|e| file.ends_with(e) && file.len() > e.len())
        };
        match dir {
            "iso" if ends(&[".iso", ".img"]) => Some(VolumeKind::Iso),
            "vztmpl" if ends(&[".tar.gz", ".tar.xz", ".tar.zst"]) => Some(VolumeKind::Template),
            // Proxmox VE's name for the files in a storage's `dump/` folder.
            "backup" => Some(VolumeKind::Backup),
            "snippets" => Some(VolumeKind::Snippet),
            "import" => Some(VolumeKind::Import),
            _ => image_file(dir, file).map(|(owner, _)| VolumeKind::Image { owner }),
        }
    }

    /// An image's own file below the storage's `images/` (for a linked clone, the part
    /// after its base): `101/vm-101-disk-0.qcow2`.
    pub fn own_file(&self) -> &str {
        match self.base() {
            Some(base) => &self.name[base.len() + 1..],
            None => &self.name,
        }
    }

    /// The base image a linked clone builds on: `100/base-100-disk-0.qcow2`.
    pub fn base(&self) -> Option<&str> {
        let first = self.name.find('/')?;
        let second = first + 1 + self.name[first + 1..].find('/')?;
        Some(&self.name[..second])
    }

    /// A base image (of a template), which linked clones may build on.
    pub fn is_base(&self) -> bool {
        self.base().is_none()
            && self
                .name
                .split_once('/')
                .is_some_and(|(_, f)| f.starts_with("base-"))
    }

    /// The owning vmid of an image volume (`100/vm-100-disk-0.qcow2` → 100).
    pub fn owner(&self) -> Option<u32> {
        match self.kind()? {
            VolumeKind::Image { owner } => Some(owner),
            _ => None,
        }
    }

    /// The image format from the file name (`raw` for files without a known one).
    pub fn format(&self) -> &str {
        self.name
            .rsplit_once('.')
            .map(|(_, ext)| ext)
            .filter(|ext| IMAGE_FORMATS.contains(ext))
            .unwrap_or("raw")
    }
}

/// Proxmox VE's `storage-pair-list` (`targetstorage`): `src:dst` pairs, or one storage
/// id for all sources, or `1` for each source to itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageMap {
    /// Where sources without a pair go; `None`: to themselves.
    pub default: Option<String>,
    pub pairs: BTreeMap<String, String>,
}

impl StorageMap {
    pub fn parse(text: &str) -> Result<StorageMap, String> {
        let mut map = StorageMap::default();
        for item in text.split([',', ';', ' ']).filter(|i| !i.is_empty()) {
            match item.split_once(':') {
                Some((src, dst)) => {
                    crate::format::storage_id(src)?;
                    crate::format::storage_id(dst)?;
                    if map.pairs.insert(src.to_string(), dst.to_string()).is_some() {
                        return Err(format!("storage '{src}' is mapped twice"));
                    }
                }
                None if item == "1" => {}
                None => {
                    crate::format::storage_id(item)?;
                    if map.default.replace(item.to_string()).is_some() {
                        return Err("more than one storage without a source".into());
                    }
                }
            }
        }
        Ok(map)
    }

    /// The target storage of source storage `source`.
    pub fn target<'a>(&'a self, source: &'a str) -> &'a str {
        self.pairs
            .get(source)
            .or(self.default.as_ref())
            .map(String::as_str)
            .unwrap_or(source)
    }
}

/// Proxmox VE's `prune-backups`: how many backups to keep, overall and per period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    /// `keep-all=1`, or no option at all: nothing is pruned.
    pub all: bool,
}

impl Retention {
    /// `keep-last=3,keep-daily=7,...` (a property string).
    pub fn parse(text: &str) -> Result<Retention, String> {
        let mut r = Retention::default();
        for item in text.split(',').filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not key=value"))?;
            let n: u32 = value
                .parse()
                .map_err(|_| format!("{key}: '{value}' is not a number"))?;
            match key {
                "keep-all" => r.all = n == 1,
                "keep-last" => r.last = n,
                "keep-hourly" => r.hourly = n,
                "keep-daily" => r.daily = n,
                "keep-weekly" => r.weekly = n,
                "keep-monthly" => r.monthly = n,
                "keep-yearly" => r.yearly = n,
                other => return Err(format!("unknown option '{other}'")),
            }
        }
        let any = [r.last, r.hourly, r.daily, r.weekly, r.monthly, r.yearly]
            .iter()
            .any(|n| *n > 0);
        if r.all && any {
            return Err("keep-all cannot be combined with other keep options".into());
        }
        if !any {
            r.all = true;
        }
        Ok(r)
    }
}

/// Where a guest disk's data comes from: the `file` of a disk property string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// `none`: an empty drive.
    None,
    /// `cdrom`: the host's physical CD drive.
    PhysicalCdrom,
    /// `storage:size`: a new image of `size_gib` GiB to allocate (creation syntax).
    New {
        storage: String,
        size_gib: u64,
    },
    Volume(VolumeId),
    /// An absolute path on the host (root only).
    Path(String),
}

impl DiskSource {
    /// Parses the `file` of a disk; the error says what is wrong with it.
    pub fn parse(file: &str) -> Result<DiskSource, String> {
        crate::text::check_single_line(file)?;
        match file {
            "none" => return Ok(DiskSource::None),
            "cdrom" => return Ok(DiskSource::PhysicalCdrom),
            _ => {}
        }
        if file.starts_with('/') {
            crate::format::absolute_path(file)?;
            return Ok(DiskSource::Path(file.to_string()));
        }
        let Some((storage, rest)) = file.split_once(':') else {
            return Err(format!(
                "'{file}' is not a volume id (storage:name), a new disk (storage:size) or a path"
            ));
        };
        crate::format::storage_id(storage)?;
        if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()) {
            let size_gib = rest
                .parse()
                .map_err(|_| format!("disk size '{rest}' is too large"))?;
            return Ok(DiskSource::New {
                storage: storage.to_string(),
                size_gib,
            });
        }
        VolumeId::parse(file)
            .map(DiskSource::Volume)
            .ok_or_else(|| {
                format!(
                    "'{file}' is not a volume of a known shape \
                 (<vmid>/vm-<vmid>-<name>.<qcow2|raw|vmdk>, iso/<name>.iso, ...)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "dir: local\n\tpath /var/lib/vz\n\tcontent backup,iso,vztmpl\n\nlvmthin: local-lvm\n\tcontent images,rootdir\n\tthinpool data\n\tvgname pve\n\ndir: shared-nfs\n\tpath /mnt/pve/shared\n\tcontent images\n\tshared 1\n\tnodes pve1,pve2\n";

    #[test]
    fn parses_and_round_trips() {
        let cfg = StorageConfig::parse(SAMPLE).unwrap();
        assert_eq!(cfg.order, ["local", "local-lvm", "shared-nfs"]);
        let local = &cfg.storages["local"];
        assert!(local.content.contains("iso") && local.is_enabled_on("anynode"));
        let shared = &cfg.storages["shared-nfs"];
        assert!(shared.shared && shared.is_enabled_on("pve2") && !shared.is_enabled_on("pve3"));
        assert_eq!(cfg.storages["local-lvm"].other["vgname"], "pve");
        assert_eq!(cfg.to_text(), SAMPLE);
    }

    #[test]
    fn errors_name_storage_and_property() {
        let e = StorageConfig::parse("dir: local\n\tcontent images\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'local'") && e.contains("path"), "{e}");
        let e = StorageConfig::parse("dir: local\n\tpath /x\n\tcontent movies\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("content") && e.contains("movies"), "{e}");
        let e = StorageConfig::parse("dir: local\n\tpath relative\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("path"), "{e}");
    }

    #[test]
    fn file_storage_options_are_checked() {
        let ok = StorageConfig::parse(
            "dir: data\n\tpath /srv/d\n\tpreallocation full\n\tmax-protected-backups 3\n",
        )
        .unwrap();
        assert_eq!(ok.storages["data"].other["preallocation"], "full");
        let btrfs = StorageConfig::parse("btrfs: fast\n\tpath /srv/b\n\tnocow yes\n").unwrap();
        assert_eq!(btrfs.storages["fast"].other["nocow"], "1");
        for (bad, key) in [
            (
                "dir: data\n\tpath /srv/d\n\tpreallocation lots\n",
                "preallocation",
            ),
            (
                "dir: data\n\tpath /srv/d\n\tmax-protected-backups -2\n",
                "max-protected-backups",
            ),
            ("dir: data\n\tpath /srv/d\n\tformat qed\n", "format"),
            ("btrfs: data\n\tpath /srv/d\n\tformat qcow2\n", "format"),
            ("btrfs: data\n\tpath /srv/d\n\tnocow maybe\n", "nocow"),
            ("btrfs: data\n\tcontent images\n", "path"),
        ] {
            let e = StorageConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn storage_maps_as_proxmox_ve_takes_them() {
        let m = StorageMap::parse("local:fast,slow:big").unwrap();
        assert_eq!(m.target("local"), "fast");
        assert_eq!(m.target("other"), "other");
        assert_eq!(StorageMap::parse("fast").unwrap().target("local"), "fast");
        assert_eq!(StorageMap::parse("1").unwrap().target("local"), "local");
        assert!(StorageMap::parse("a:b,a:c").is_err());
        assert!(StorageMap::parse("a/b").is_err());
        assert!(StorageMap::parse("x,y").is_err());
    }

    #[test]
    fn volume_ids() {
        let v = VolumeId::parse("local:100/vm-100-disk-0.qcow2").unwrap();
        assert_eq!(v.storage, "local");
        assert_eq!(v.owner(), Some(100));
        assert_eq!(v.format(), "qcow2");
        assert!(VolumeId::parse("nocolon").is_none());
        for escape in [
            "local:/etc/shadow",
            "local:../../..",
            "local:100/../../x.qcow2",
            "local:100/vm-101-disk-0.qcow2",
            "local:100/vm-100-disk-0.sh",
            "local:iso/../x.iso",
            "local\n:iso/x.iso",
            "local:100/vm-100-disk-0.qcow2/101/vm-101-disk-0.qcow2",
            "local:100/base-100-disk-0.qcow2/101/base-101-disk-0.qcow2",
            "local:100/base-100-disk-0.qcow2/../../x/vm-101-disk-0.qcow2",
            "local:100/base-100-disk-0.qcow2/101/vm-101-disk-0.qcow2/x",
        ] {
            assert!(VolumeId::parse(escape).is_none(), "{escape}");
        }
        assert_eq!(v.own_file(), "100/vm-100-disk-0.qcow2");
        assert!(v.base().is_none() && !v.is_base());
        let base = VolumeId::parse("local:100/base-100-disk-0.qcow2").unwrap();
        assert!(base.is_base());
        let linked =
            VolumeId::parse("local:100/base-100-disk-0.qcow2/101/vm-101-disk-0.qcow2").unwrap();
        assert_eq!(linked.owner(), Some(101));
        assert_eq!(linked.base(), Some("100/base-100-disk-0.qcow2"));
        assert_eq!(linked.own_file(), "101/vm-101-disk-0.qcow2");
        assert!(!linked.is_base());
        assert_eq!(
            VolumeId::parse("local:iso/debian.iso").unwrap().kind(),
            Some(VolumeKind::Iso)
        );
    }

    #[test]
    fn disk_sources() {
        assert_eq!(
            DiskSource::parse("local:4"),
            Ok(DiskSource::New {
                storage: "local".into(),
                size_gib: 4
            })
        );
        assert_eq!(DiskSource::parse("none"), Ok(DiskSource::None));
        assert_eq!(
            DiskSource::parse("/dev/sda"),
            Ok(DiskSource::Path("/dev/sda".into()))
        );
        assert!(matches!(
            DiskSource::parse("local:100/vm-100-disk-0.qcow2"),
            Ok(DiskSource::Volume(_))
        ));
        assert!(DiskSource::parse("local:/abs").is_err());
        assert!(DiskSource::parse("shadow").is_err());
        assert!(DiskSource::parse("/x/../etc").is_err());
    }
}
