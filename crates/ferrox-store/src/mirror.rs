//! The tree as plain files under the node's `etc/` directory, as `/etc/pve` is for
//! Proxmox VE: programs and people can read the cluster configuration with ordinary
//! tools. The files are a copy; SQLite is the truth, and a mismatch left by a crash is
//! repaired at the next start (`resync`). Writes never go to these files directly.

use crate::tree::Tree;
use std::path::{Path, PathBuf};

pub struct Mirror {
    dir: PathBuf,
}

fn mode_for(path: &str) -> u32 {
    if path.starts_with("priv/") || path.ends_with(".key") {
        0o600
    } else {
        0o640
    }
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
        if let Err(e) =
            ferrox_types::fsutil::replace(&target, data.as_bytes(), mode_for(path), false)
        {
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
        let mut present = Vec::new();
        collect_files(&self.dir, "", &mut present);
        for rel in present {
            if !tree.files.contains_key(&rel) {
                self.delete(&rel);
            }
        }
        for (path, entry) in &tree.files {
            let current = std::fs::read_to_string(self.dir.join(path)).ok();
            if current.as_deref() != Some(entry.data.as_str()) {
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
