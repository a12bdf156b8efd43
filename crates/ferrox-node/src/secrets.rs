//! Parts of the data directory hold the cluster's secrets: the store's SQLite files carry
//! the ticket key, password and token hashes and TLS keys, `etc/priv/` and the node keys
//! are their mirror, `run/` has the guests' QMP sockets. Those are for root alone: a new
//! data directory is created `0700` (and the daemon runs with umask `077`), and a daemon
//! refuses to start when other local users can read any of them, naming the path.

use anyhow::bail;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Paths below the data directory that must not be reachable by other users, checked
/// recursively where they exist.
const PRIVATE: &[&str] = &["store", "etc/priv", "run"];

/// Creates the data directory (mode 0700) or checks an existing one.
pub fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    if !data_dir.exists() {
        std::fs::create_dir_all(data_dir)?;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    for sub in PRIVATE {
        let path = data_dir.join(sub);
        if path.exists() {
            check_private(&path, true)?;
        }
    }
    let nodes = data_dir.join("etc/nodes");
    if let Ok(entries) = std::fs::read_dir(&nodes) {
        for entry in entries.flatten() {
            let key = entry.path().join("pve-ssl.key");
            if key.exists() {
                check_private(&key, false)?;
            }
        }
    }
    Ok(())
}

fn check_private(path: &Path, recursive: bool) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let fix = if meta.is_dir() { "700" } else { "600" };
        bail!(
            "refusing to start: {} is accessible by other users (mode {mode:04o}); it holds \
             cluster secrets: chmod {fix} {}",
            path.display(),
            path.display()
        );
    }
    if recursive && meta.is_dir() {
        for entry in std::fs::read_dir(path)?.flatten() {
            let file_type = entry.file_type()?;
            // Sockets get their mode from the umask; links are not followed.
            if file_type.is_dir() || file_type.is_file() {
                check_private(&entry.path(), true)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_modes_are_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        prepare_data_dir(&data).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let store = data.join("store/gen-1");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::set_permissions(data.join("store"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
        let db = store.join("state.db");
        std::fs::write(&db, "x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = prepare_data_dir(&data).unwrap_err().to_string();
        assert!(err.contains("state.db") && err.contains("0644"), "{err}");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
        prepare_data_dir(&data).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare_data_dir(&data).unwrap_err().to_string();
        assert!(err.contains("gen-1") && err.contains("chmod 700"), "{err}");
    }
}
