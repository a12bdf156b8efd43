//! QEMU/KVM guests: the QEMU command line built from a Proxmox-VE-format guest config, a
//! QMP client, and the process lifecycle (start, status, stop).
//!
//! It talks to QEMU and the local filesystem only; it knows nothing about the cluster, HA
//! or the API, and must not decide where guests run.

pub mod blockjob;
pub mod capabilities;
pub mod cgroup;
pub mod command;
pub mod cpu;
pub mod disk;
pub mod metrics;
pub mod migration;
pub mod nbd;
pub mod process;
pub mod qmp;

pub use command::{command_line, Accelerator, LaunchSpec, NetMode, VolumeResolver};
pub use process::{GuestProcess, RunState};
pub use qmp::{Qmp, QmpError};

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    #[error("qmp: {0}")]
    Qmp(#[from] QmpError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("qemu failed to start: {0}")]
    Start(String),
    #[error("guest {0} is not running")]
    NotRunning(u32),
}
