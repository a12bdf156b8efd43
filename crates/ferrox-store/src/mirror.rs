//! The tree as plain files under the node's `etc/` directory, as `/etc/pve` is for
//! Proxmox VE: programs and people can read the cluster configuration with ordinary
//! tools. The files are a copy; SQLite is the truth, and a mismatch left by a crash is
//! repaired at the next start (`resync`). Writes never go to these files directly.

use crate::tree::Tree;
use std::path::{Path, PathBuf};

pub struct Mirror {
    dir: PathBuf,
}

impl Mirror {
    pub fn new(dir: &Path) -> Mirror {
        Mirror {
            dir: dir.to_path_buf(),
        }
    }

    pub fn put(&self, path: &str, data: &str) {
        let target = self.dir.join(path);
        // No fsync: SQLite is the durable copy and `resync` repairs the files at start.
        if let Err(e) = ferrox_types::fsutil::replace(
            &target,
            data.as_bytes(),
            ferrox_types::fsutil::config_file_mode(path),
            false,
        ) {
            tracing::warn!("mirroring {}: {e}", target.display());
        }
    }

    pub fn delete(&self, path: &str) {
        let target = self.dir.join(path);
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("removing mirrored {}: {e}", target.display()),
        }
    }

    /// Makes the directory hold exactly the tree's files (directories are kept).
    pub fn resync(&self, tree: &Tree) {
        self.resync_keeping(tree, None);
    }

    /// As `resync`, at a start: a file that differs from the tree was edited by hand (or
    /// left by a crash). It is not silently lost: the local copy is moved below `keep`
    /// and a warning names both, then the cluster's version is restored.
    pub fn resync_at_start(&self, tree: &Tree) {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let keep = self
            .dir
            .parent()
            .unwrap_or(&self.dir)
            .join("etc-local-edits")
            .join(stamp.to_string());
        self.resync_keeping(tree, Some(&keep));
    }

    fn resync_keeping(&self, tree: &Tree, keep: Option<&Path>) {
        let mut present = Vec::new();
        collect_files(&self.dir, "", &mut present);
        let keep_local = |rel: &str, what: &str| {
            let Some(keep) = keep else { return };
            let target = keep.join(rel);
            let moved = target
                .parent()
                .map(std::fs::create_dir_all)
                .transpose()
                .and_then(|_| std::fs::copy(self.dir.join(rel), &target));
            match moved {
                Ok(_) => tracing::warn!(
                    "{}: {what} (edited by hand, or left by a crash); the cluster's version \
                     is restored and the local copy kept at {} - change the configuration \
                     through the API",
                    self.dir.join(rel).display(),
                    target.display()
                ),
                Err(e) => tracing::warn!("keeping {}: {e}", self.dir.join(rel).display()),
            }
        };
        for rel in present {
            if !tree.files.contains_key(&rel) {
                keep_local(&rel, "not in the cluster configuration");
                self.delete(&rel);
            }
        }
        for (path, entry) in &tree.files {
            let current = std::fs::read_to_string(self.dir.join(path)).ok();
            if current.as_deref() != Some(entry.data.as_str()) {
                if current.is_some() {
                    keep_local(path, "differs from the cluster configuration");
                }
                self.put(path, &entry.data);
            }
        }
    }

    /// Files present in the directory, for importing a node's configuration made before
    /// the store existed.
    pub fn existing_files(&self) -> Vec<(String, String)> {
        let mut present = Vec::new();
        collect_files(&self.dir, "", &mut present);
        present
            .into_iter()
            .filter_map(|rel| {
                let data = std::fs::read_to_string(self.dir.join(&rel)).ok()?;
                Some((rel, data))
            })
            .collect()
    }
}

fn collect_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Temporary files of an interrupted atomic write.
        if name.starts_with('.') {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(&entry.path(), &rel, out),
            Ok(t) if t.is_file() => out.push(rel),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Entry;

    #[test]
    fn hand_edits_found_at_start_are_kept_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("storage.cfg"), "edited by hand\n").unwrap();
        std::fs::write(etc.join("extra.cfg"), "made by hand\n").unwrap();
        let mut tree = Tree::default();
        tree.files.insert(
            "storage.cfg".into(),
            Entry {
                data: "cluster\n".into(),
                version: 1,
            },
        );
        Mirror::new(&etc).resync_at_start(&tree);
        assert_eq!(
            std::fs::read_to_string(etc.join("storage.cfg")).unwrap(),
            "cluster\n"
        );
        assert!(!etc.join("extra.cfg").exists());
        let kept: Vec<_> = std::fs::read_dir(dir.path().join("etc-local-edits"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(kept.len(), 1);
        let copy = kept[0].path();
        assert_eq!(
            std::fs::read_to_string(copy.join("storage.cfg")).unwrap(),
            "edited by hand\n"
        );
        assert_eq!(
            std::fs::read_to_string(copy.join("extra.cfg")).unwrap(),
            "made by hand\n"
        );
    }
}
