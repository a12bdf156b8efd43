//! The node daemon: serves the Proxmox-VE-compatible API over HTTPS and runs this node's
//! QEMU guests, storage, tasks and metrics. It wires the libraries together; decisions
//! about where guests run (HA, CRS) belong in their own crates, not here.
//!
//! Data directory layout (`--data-dir`), mirroring `/etc/pve` and `/var/lib/vz`:
//! `etc/` (user.cfg, storage.cfg, priv/, nodes/<node>/qemu-server/<vmid>.conf,
//! nodes/<node>/pve-ssl.{pem,key}), `run/` (QMP sockets, pid files), `tasks/`, `rrd/`,
//! `storage/local/` (the default `local` dir storage), `uploads/` (files clients upload,
//! until their request takes them).
//!
//! Rooms: `api/` (one file per area of the API), `guests/` (configs, QEMU lifecycle,
//! migration, per-key privileges, the guest-type seam), `ha/` (the daemon's HA
//! environment and watchdog), `cluster` (the store's transport, proxying, the watch,
//! compare-and-set documents), `host/` (host readers, metrics, RRD), `storage/` (files
//! into storages: downloads, uploads), `secrets` (data-dir modes), `tls`.

pub mod api;
pub mod backup_jobs;
pub mod balance;
pub mod bulk;
pub mod cluster;
pub mod console;
pub mod guests;
pub mod ha;
pub mod host;
pub mod metric_push;
pub mod network;
pub mod notify;
pub mod peers;
pub mod prometheus;
pub mod resources;
pub mod sdn;
pub mod secrets;
pub mod storage;
pub mod tls;
pub mod web;

pub use ferrox_qemu::NetMode;

use anyhow::Context;
use ferrox_api::{Auth, TaskStore};
use ferrox_qemu::Accelerator;
use ferrox_types::StorageConfig;
use ha::watchdog;
use host::metrics;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The node's accelerator setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelSetting {
    Kvm,
    Tcg,
    /// KVM when `/dev/kvm` can be opened, TCG otherwise.
    Auto,
}

impl std::str::FromStr for AccelSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kvm" => Ok(AccelSetting::Kvm),
            "tcg" => Ok(AccelSetting::Tcg),
            "auto" => Ok(AccelSetting::Auto),
            other => Err(format!(
                "accelerator '{other}' is not one of kvm, tcg, auto"
            )),
        }
    }
}

impl AccelSetting {
    pub fn resolve(self) -> Accelerator {
        match self {
            AccelSetting::Kvm => Accelerator::Kvm,
            AccelSetting::Tcg => Accelerator::Tcg,
            AccelSetting::Auto => {
                let usable = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/kvm")
                    .is_ok();
                if usable {
                    Accelerator::Kvm
                } else {
                    Accelerator::Tcg
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    pub node_name: String,
    pub listen: SocketAddr,
    /// Sets root@pam's password on first start (when none is set yet).
    pub root_password: Option<String>,
    pub accel: AccelSetting,
    pub unauthorized_delay: Duration,
    pub qemu_binary: PathBuf,
    pub metrics_interval: Duration,
    /// host:port other nodes use to reach this one (default: the listen address, with
    /// an unspecified IP replaced by 127.0.0.1).
    pub address: Option<String>,
    pub ha: ha::HaSettings,
    /// Connection limit and timeouts of the API listener.
    pub limits: ferrox_api::http::ServerLimits,
    /// CPU flags this node hides from the cluster, for tests on identical hosts
    /// (`--cpu-flag-mask`, docs/cpu-models.md); empty in production.
    pub cpu_flag_mask: std::collections::BTreeSet<String>,
    /// The built web UI, served at `/` (`web`); `None`: a page saying how to build it.
    pub web_dir: Option<PathBuf>,
    /// Tap devices on bridges (`bridge`) or user-mode networking for every card (`user`,
    /// for hosts where the daemon cannot create bridges).
    pub net_mode: ferrox_qemu::NetMode,
    /// Whether a node shutdown or reboot (`POST /nodes/{node}/status`) also powers the
    /// host off or reboots it (`systemctl poweroff|reboot`) once the guests are down;
    /// otherwise the daemon just ends.
    pub host_power: bool,
}

impl NodeOptions {
    pub fn peer_address(&self) -> String {
        match &self.address {
            Some(a) => a.clone(),
            None if self.listen.ip().is_unspecified() => {
                format!("127.0.0.1:{}", self.listen.port())
            }
            None => self.listen.to_string(),
        }
    }

    pub fn new(data_dir: &Path, node_name: &str) -> NodeOptions {
        NodeOptions {
            data_dir: data_dir.to_path_buf(),
            node_name: node_name.to_string(),
            listen: SocketAddr::from(([0, 0, 0, 0], 8006)),
            root_password: None,
            accel: AccelSetting::Auto,
            unauthorized_delay: Duration::from_secs(3),
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            metrics_interval: Duration::from_secs(10),
            address: None,
            ha: ha::HaSettings::default(),
            limits: ferrox_api::http::ServerLimits::default(),
            cpu_flag_mask: Default::default(),
            web_dir: None,
            net_mode: ferrox_qemu::NetMode::Bridge,
            host_power: false,
        }
    }
}

/// Paths below the data directory.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub etc: PathBuf,
    pub node_etc: PathBuf,
    pub run: PathBuf,
    pub tasks: PathBuf,
    pub rrd: PathBuf,
    pub local_storage: PathBuf,
    /// Files clients upload, until their request takes them (emptied at start).
    pub uploads: PathBuf,
}

impl Dirs {
    fn new(data: &Path, node: &str) -> Dirs {
        let etc = data.join("etc");
        let node_etc = etc.join("nodes").join(node);
        Dirs {
            node_etc,
            etc,
            run: data.join("run"),
            tasks: data.join("tasks"),
            rrd: data.join("rrd"),
            local_storage: data.join("storage").join("local"),
            uploads: data.join("uploads"),
        }
    }
}

pub struct Node {
    pub opts: NodeOptions,
    pub dirs: Dirs,
    pub store: Arc<ferrox_store::Store>,
    /// The store for blocking code.
    pub tree: Arc<cluster::ConfigTree>,
    pub peers: Arc<cluster::Peers>,
    pub rt: tokio::runtime::Handle,
    pub auth: Auth,
    pub tasks: Arc<TaskStore>,
    pub guests: guests::Guests,
    pub metrics: metrics::Metrics,
    /// Where notifications are delivered from (`notify`).
    pub notifier: notify::Notifier,
    pub accel: Accelerator,
    pub tls: tls::Identity,
    /// What this host's CPU offers guests, once probed (`host::cpu`).
    pub cpu: std::sync::OnceLock<ferrox_types::cpu::NodeCpu>,
    pub cpu_records: host::cpu::RecordCache,
    /// Console sessions opened by `vncproxy`/`termproxy`, waiting for their websocket.
    pub consoles: console::Consoles,
    /// A node shutdown or reboot asked for through the API.
    pub power: bulk::PowerRequest,
}

impl ferrox_api::ApiState for Node {
    fn auth(&self) -> &Auth {
        &self.auth
    }
    fn tasks(&self) -> &Arc<TaskStore> {
        &self.tasks
    }
    fn node_name(&self) -> &str {
        &self.opts.node_name
    }
    fn unauthorized_delay(&self) -> Duration {
        self.opts.unauthorized_delay
    }
    fn proxy(
        &self,
        node: &str,
        req: &ferrox_api::router::RawRequest,
    ) -> Option<ferrox_api::router::RawResponse> {
        cluster::proxy(self, node, req)
    }
    fn upload_dir(&self) -> PathBuf {
        self.dirs.uploads.clone()
    }
}

impl Node {
    /// Opens the data directory, initialising it on first start, and starts the cluster
    /// store on `rt`. Call it outside the runtime (it blocks on the store).
    pub fn open(opts: NodeOptions, rt: tokio::runtime::Handle) -> anyhow::Result<Arc<Node>> {
        secrets::prepare_data_dir(&opts.data_dir)?;
        let dirs = Dirs::new(&opts.data_dir, &opts.node_name);
        // Uploads of requests that never finished (the daemon stopped meanwhile).
        let _ = std::fs::remove_dir_all(&dirs.uploads);
        for dir in [&dirs.run, &dirs.tasks, &dirs.rrd, &dirs.local_storage] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tls = tls::Identity::load_or_create(&dirs.node_etc, &opts.node_name)?;
        let member = ferrox_store::Member {
            name: opts.node_name.clone(),
            address: opts.peer_address(),
            fingerprint: tls.fingerprint.clone(),
        };
        let mut store_opts = ferrox_store::StoreOptions::new(&opts.data_dir.join("store"), member);
        store_opts.mirror = Some(dirs.etc.clone());
        let peers = Arc::new(cluster::Peers::default());
        let transport = Arc::new(cluster::PeerTransport(Arc::clone(&peers)));
        let store = Arc::new(
            rt.block_on(ferrox_store::Store::open(store_opts, transport))
                .context("opening the cluster store")?,
        );
        peers.attach(&store);
        let tree = Arc::new(cluster::ConfigTree {
            store: Arc::clone(&store),
            rt: rt.clone(),
        });
        Node::publish_identity(&tree, &opts.node_name, &tls)?;
        if tree.get("storage.cfg").is_none() {
            let text = format!(
                "dir: local\n\tpath {}\n\tcontent iso,vztmpl,backup,images,rootdir\n\tshared 0\n",
                dirs.local_storage.display()
            );
            tree.put("storage.cfg", &text, ferrox_store::Expect::Absent)
                .context("writing storage.cfg")?;
        }
        let auth = Auth::open_with(Arc::clone(&tree) as Arc<dyn ferrox_api::auth::AccountFiles>)?;
        if !auth.has_password("root@pam") {
            if let Some(pw) = &opts.root_password {
                auth.set_password("root@pam", pw)
                    .map_err(|e| anyhow::anyhow!("root password: {}", e.body_message().trim()))?;
            }
        }
        let tasks = TaskStore::open(&dirs.tasks, &opts.node_name)
            .with_context(|| format!("opening {}", dirs.tasks.display()))?;
        let guests = guests::Guests::open(Arc::clone(&tree), &opts.node_name, &dirs.run)?;
        let metrics = metrics::Metrics::open(&dirs.rrd);
        let accel = opts.accel.resolve();
        let node = Arc::new(Node {
            opts,
            dirs,
            store,
            tree,
            peers,
            rt,
            auth,
            tasks,
            guests,
            metrics,
            notifier: notify::Notifier::default(),
            accel,
            tls,
            cpu: std::sync::OnceLock::new(),
            cpu_records: Default::default(),
            consoles: Default::default(),
            power: Default::default(),
        });
        cluster::spawn_watch(&node);
        notify_failed_tasks(&node);
        node.settle_interrupted_migrations();
        Ok(node)
    }

    /// Puts this node's certificate into the store (the tree is the truth for
    /// `etc/nodes/<node>/pve-ssl.*`; a join replaces the whole tree).
    fn publish_identity(
        tree: &cluster::ConfigTree,
        node: &str,
        tls: &tls::Identity,
    ) -> anyhow::Result<()> {
        let mut ops = Vec::new();
        for (file, data) in [
            ("pve-ssl.pem", &tls.cert_pem),
            ("pve-ssl.key", &tls.key_pem),
        ] {
            let path = format!("nodes/{node}/{file}");
            if tree.get(&path).map(|e| e.data) != Some(data.clone()) {
                ops.push(ferrox_store::Op::Put {
                    path,
                    data: data.clone(),
                    expect: ferrox_store::Expect::Any,
                });
            }
        }
        if !ops.is_empty() {
            tree.txn(ops).context("storing the node certificate")?;
        }
        Ok(())
    }

    /// After joining a cluster: this node's certificate goes into the cluster's tree,
    /// and the caches take the cluster's configuration.
    pub fn after_join(&self) -> anyhow::Result<()> {
        // Right after the join this node may not know the leader yet: retry for a while
        // (the write is idempotent).
        let mut tries = 0;
        while let Err(e) = Node::publish_identity(&self.tree, &self.opts.node_name, &self.tls) {
            tries += 1;
            if tries >= 20 {
                return Err(e);
            }
            tracing::info!("after join: {e:#}; retrying");
            std::thread::sleep(Duration::from_millis(500));
        }
        self.auth.reload()?;
        self.guests.refresh_all();
        host::cpu::publish(self)?;
        Ok(())
    }

    /// storage.cfg from the store (the mirrored file is a copy for people, not a source).
    pub fn storage_config(&self) -> Result<StorageConfig, ferrox_api::ApiError> {
        let text = self.tree.load("storage.cfg").text;
        StorageConfig::parse(&text)
            .map_err(|e| ferrox_api::ApiError::internal(format!("storage.cfg: {e}")))
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handling the daemon runs until killed.
        _ => std::future::pending().await,
    }
}

/// Runs the daemon until the process is stopped: the API, the cluster store and the
/// metrics collector.
pub fn serve(opts: NodeOptions) -> anyhow::Result<()> {
    opts.ha.check().map_err(|e| anyhow::anyhow!(e))?;
    // Everything the daemon creates (store, keys, sockets, disks) is for root alone unless
    // a file is explicitly given another mode.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let open_files = ferrox_api::http::raise_open_file_limit();
    if (open_files as usize) < opts.limits.max_connections + 256 {
        println!(
            "WARNING: {open_files} open files allowed: the connection limit ({}) may not be reached",
            opts.limits.max_connections
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Bind first: the store's peers must be able to reach us as soon as Raft runs.
    let listener = std::net::TcpListener::bind(opts.listen)
        .with_context(|| format!("listening on {}", opts.listen))?;
    let node = Node::open(opts, runtime.handle().clone())?;
    let addr = listener.local_addr()?;
    println!(
        "ferrox node '{}' listening on https://{addr}/",
        node.opts.node_name
    );
    println!("ssl_fingerprint {}", node.tls.fingerprint);
    println!("accelerator {}", node.accel.as_str());
    if !node.auth.has_password("root@pam") {
        println!("WARNING: root@pam has no password yet: start once with --root-password or FERROX_ROOT_PASSWORD");
    }
    metrics::spawn_collector(Arc::clone(&node)).context("starting the metrics collector")?;
    host::cpu::spawn_publisher(Arc::clone(&node), node.opts.cpu_flag_mask.clone());
    network::setup(&node);
    sdn::spawn_applier(Arc::clone(&node));
    balance::spawn_auto_balancer(Arc::clone(&node));
    backup_jobs::spawn_scheduler(Arc::clone(&node));
    let watchdog_socket = node.dirs.run.join("watchdog.sock");
    let watchdog = watchdog::WatchdogClient::start(
        &watchdog_socket,
        node.opts.ha.watchdog_timeout,
        &node.dirs.run,
    )
    .context("starting the watchdog")?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ha_threads = ha::spawn(
        &node,
        node.opts.ha.clone(),
        Arc::new(watchdog),
        Arc::clone(&stop),
    );
    let api = Arc::new(
        ferrox_api::Api::new(Arc::clone(&node), api::endpoints()).text_route(
            "/metrics",
            "cluster/metrics/prometheus",
            "text/plain; version=0.0.4; charset=utf-8",
        ),
    );
    let identity = ferrox_api::http::TlsIdentity {
        cert_pem: node.tls.cert_pem.clone().into_bytes(),
        key_pem: node.tls.key_pem.clone().into_bytes(),
    };
    let peer_routes =
        peers::peer_router(Arc::clone(&node)).merge(web::router(node.opts.web_dir.as_deref()));
    let limits = node.opts.limits;
    bulk::spawn_boot_start(&node);
    // The API keeps serving while a node shutdown stops the guests (HA's last rounds and
    // the stop tasks need the store and the peers); it ends with the daemon.
    let mut server = runtime.spawn(ferrox_api::http::serve(
        api,
        listener,
        identity,
        peer_routes,
        limits,
    ));
    let power = runtime.block_on(async {
        tokio::select! {
            served = &mut server => match served {
                Ok(Ok(())) => Err(anyhow::anyhow!("the API server ended")),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(e.into()),
            },
            _ = stop_signal() => Ok(None),
            _ = node.power.requested() => Ok(node.power.get()),
        }
    })?;
    match power {
        None => {
            // HA first: its last rounds still need the store (the runtime keeps running).
            println!("stopping: HA services are frozen and keep running, the watchdog is released");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for t in ha_threads {
                let _ = t.join();
            }
        }
        Some(power) => {
            let policy = ferrox_types::DatacenterConfig::parse_cfg(
                &node
                    .tree
                    .get("datacenter.cfg")
                    .map(|e| e.data)
                    .unwrap_or_default(),
            )
            .ok()
            .and_then(|dc| dc.shutdown_policy)
            .unwrap_or_else(|| "conditional".into());
            println!("node {power:?}: HA services as the shutdown policy '{policy}' says, then every other guest");
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for t in ha_threads {
                let _ = t.join();
            }
            bulk::stop_for_power(&node);
            if node.opts.host_power {
                let verb = match power {
                    bulk::Power::Shutdown => "poweroff",
                    bulk::Power::Reboot => "reboot",
                };
                println!("host {verb}");
                if let Err(e) = std::process::Command::new("systemctl").arg(verb).status() {
                    println!("systemctl {verb}: {e}");
                }
            }
        }
    }
    server.abort();
    println!("stopped");
    Ok(())
}

/// Failed tasks become notifications (`type=migrate` for a failed migration, else
/// `type=task`), as Proxmox VE notifies failed jobs.
fn notify_failed_tasks(node: &Arc<Node>) {
    let weak = Arc::downgrade(node);
    node.tasks.on_end(Box::new(move |task| {
        let exit = task.exitstatus.as_deref().unwrap_or("");
        if exit == "OK" || exit.starts_with("WARNINGS") {
            return;
        }
        let Some(node) = weak.upgrade() else {
            return;
        };
        let (kind, title) = if task.kind == "qmigrate" {
            (
                "migrate",
                format!("Migration of VM {} from '{}' failed", task.id, task.node),
            )
        } else {
            (
                "task",
                format!(
                    "Task {} of '{}' failed on node '{}'",
                    task.kind, task.id, task.node
                ),
            )
        };
        node.notify(
            notify::Notification::new("error", kind, title, format!("{}: {exit}", task.upid))
                .field("task-type", task.kind.clone())
                .field("upid", task.upid.clone())
                .field("id", task.id.clone()),
        );
    }));
}
