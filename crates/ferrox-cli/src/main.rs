//! `ferrox`: the command-line front end. Thin: it parses arguments and calls the library
//! crates; no decision logic lives here.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod crs;

use ferrox_cli::{access, client};

#[derive(Parser)]
#[command(name = "ferrox", version, about = "Ferrox virtualization cluster")]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

// Parsed once at start: the size of the daemon's option set does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Top {
    /// The deterministic HA simulator.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Cluster resource scheduler: balancing plans, evacuation, placement.
    Crs {
        #[command(subcommand)]
        command: crs::CrsCommand,
    },
    /// HA tools.
    Ha {
        #[command(subcommand)]
        command: HaCommand,
    },
    /// The node daemon; node power and bulk guest actions (through its API).
    Node {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Virtual machines on a node (through its API).
    Vm {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: client::VmCommand,
    },
    /// The cluster: create, join, status, remove-node (through a node's API).
    Cluster {
        #[command(subcommand)]
        command: client::ClusterCommand,
    },
    /// Tasks of a node.
    Task {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: client::TaskCommand,
    },
    /// Users and their API tokens (like pveum user).
    User {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: access::UserCommand,
    },
    /// Groups (like pveum group).
    Group {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: access::GroupCommand,
    },
    /// Roles and their privileges (like pveum role).
    Role {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: access::RoleCommand,
    },
    /// The access control list (like pveum acl).
    Acl {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: access::AclCommand,
    },
    /// Authentication realms (like pveum realm).
    Realm {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: access::RealmCommand,
    },
    /// Resource pools (like pveum pool).
    Pool {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: access::PoolCommand,
    },
    /// Raw API calls, like pvesh: `ferrox api get /nodes`.
    Api {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: client::ApiCommand,
    },
}

// Parsed once at start: the size of the daemon's option set does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum NodeCommand {
    /// Run the node daemon (HTTPS API, guests, tasks, metrics).
    #[command(args_override_self = true)]
    Serve {
        /// Where the node keeps its configuration, disks, tasks and metrics.
        #[arg(long)]
        data_dir: PathBuf,
        /// Address and port of the API.
        #[arg(long, default_value = "0.0.0.0:8006")]
        listen: std::net::SocketAddr,
        /// Node name (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// Password of root@pam, set on first start. Prefer FERROX_ROOT_PASSWORD or
        /// --root-password-file: a command line is visible to every local user in `ps`.
        #[arg(long, env = "FERROX_ROOT_PASSWORD", hide_env_values = true)]
        root_password: Option<String>,
        /// A file whose first line is root@pam's password (set on first start).
        #[arg(long, conflicts_with = "root_password")]
        root_password_file: Option<PathBuf>,
        /// Open API connections at most; more are answered 503.
        #[arg(long, default_value_t = 4096)]
        max_connections: usize,
        /// Accelerator of the guests: kvm, tcg or auto.
        #[arg(long, default_value = "auto")]
        accel: ferrox_node::AccelSetting,
        /// Delay of failed authentications in milliseconds (Proxmox VE: 3000).
        #[arg(long, default_value_t = 3000)]
        auth_failure_delay_ms: u64,
        /// Seconds between metric samples.
        #[arg(long, default_value_t = 10)]
        metrics_interval: u64,
        /// host:port other cluster nodes reach this node at (default: --listen, with
        /// 0.0.0.0 replaced by 127.0.0.1).
        #[arg(long)]
        address: Option<String>,
        /// HA loop interval in milliseconds (docs/fencing.md).
        #[arg(long, default_value_t = 2000)]
        ha_round_ms: u64,
        /// Lease of the HA locks in milliseconds.
        #[arg(long, default_value_t = 7000)]
        ha_lock_lease_ms: u64,
        /// Longest time the watchdog keeps guests alive after a feed, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        ha_watchdog_timeout_ms: u64,
        /// Seconds a node must be offline before its services are fenced.
        #[arg(long, default_value_t = 2)]
        ha_fence_delay: u64,
        /// TEST ONLY: CPU flags this node hides from the cluster (comma-separated QEMU
        /// names, e.g. avx2,aes), so that refusals can be tested on identical hosts
        /// (docs/cpu-models.md). Never set it in production.
        #[arg(long, value_delimiter = ',', value_parser = cpu_flag)]
        cpu_flag_mask: Vec<String>,
        /// Largest clock difference between nodes the fencing timing allows for, in ms.
        #[arg(long, default_value_t = 1000)]
        ha_max_clock_skew_ms: u64,
        /// The built web UI (web/dist), served at `/`; default: FERROX_WEB_DIR, else
        /// web/dist of the checkout the binary was built in, else ../share/ferrox/web
        /// beside the binary.
        #[arg(long)]
        web_dir: Option<PathBuf>,
        /// How guests' network cards connect: `bridge` (a tap device on the card's
        /// bridge; bridges come from the node's network configuration) or `user` (QEMU
        /// user-mode networking for every card, for hosts without bridges).
        #[arg(long, default_value = "bridge", value_parser = net_mode)]
        net_mode: ferrox_node::NetMode,
        /// What a node shutdown or reboot (`POST /nodes/{node}/status`) does once the
        /// guests are down: `none` ends the daemon, `system` also powers the host off or
        /// reboots it (`systemctl poweroff|reboot`).
        #[arg(long, default_value = "none", value_parser = ["none", "system"])]
        host_power: String,
    },
    /// Node power and bulk guest actions through a node's API (like `pvenode`).
    #[command(flatten)]
    Power(client::NodePowerCommand),
    /// The watchdog process (started by `node serve`): kills the node's guests when the
    /// daemon stops feeding it.
    #[command(hide = true)]
    Watchdog {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        timeout_ms: u64,
        #[arg(long)]
        run_dir: PathBuf,
    },
}

fn net_mode(text: &str) -> Result<ferrox_node::NetMode, String> {
    match text {
        "bridge" => Ok(ferrox_node::NetMode::Bridge),
        "user" => Ok(ferrox_node::NetMode::User),
        other => Err(format!("'{other}' is not a network mode (bridge or user)")),
    }
}

fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // Node names are DNS labels (UPIDs and ACL paths rely on it).
    let name: String = raw
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "ferrox".into()
    } else {
        name
    }
}

#[derive(Subcommand)]
enum SimCommand {
    /// Run a scenario directory and print its event log.
    Run {
        /// Directory with cmdlist, hardware_status, service_config, ...
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum HaCommand {
    /// HA rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    #[command(flatten)]
    Remote(client::HaRemote),
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Check a rules file: print dropped rules, the canonical config and the compiled rules.
    Check {
        file: PathBuf,
        /// Cluster nodes the rules are checked against (comma separated).
        #[arg(long, default_value = "node1,node2,node3", value_delimiter = ',')]
        nodes: Vec<String>,
    },
    #[command(flatten)]
    Remote(client::RulesRemote),
}

/// Writes the report; a closed pipe (`ferrox ... | head`) is not an error.
fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn main() -> ExitCode {
    let mut out = String::new();
    let result = run(Cli::parse(), &mut out);
    emit(&out);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ferrox: {err:#}");
            if err.downcast_ref::<crs::Infeasible>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli, out: &mut String) -> Result<()> {
    match cli.command {
        Top::Node {
            remote: _,
            command:
                NodeCommand::Serve {
                    data_dir,
                    listen,
                    name,
                    root_password,
                    root_password_file,
                    max_connections,
                    accel,
                    auth_failure_delay_ms,
                    metrics_interval,
                    address,
                    ha_round_ms,
                    ha_lock_lease_ms,
                    ha_watchdog_timeout_ms,
                    ha_fence_delay,
                    ha_max_clock_skew_ms,
                    cpu_flag_mask,
                    web_dir,
                    net_mode,
                    host_power,
                },
        } => {
            // Library warnings (store, proxy, mirror) to stderr; FERROX_LOG=info for more.
            let filter = tracing_subscriber::EnvFilter::try_from_env("FERROX_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=off"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .try_init();
            let mut opts =
                ferrox_node::NodeOptions::new(&data_dir, &name.unwrap_or_else(host_name));
            opts.listen = listen;
            opts.root_password = match root_password_file {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                ),
                None => root_password,
            };
            opts.limits.max_connections = max_connections.max(1);
            opts.accel = accel;
            opts.unauthorized_delay = std::time::Duration::from_millis(auth_failure_delay_ms);
            opts.metrics_interval = std::time::Duration::from_secs(metrics_interval.max(1));
            opts.address = address;
            opts.ha.round = std::time::Duration::from_millis(ha_round_ms);
            opts.ha.lock_lease = std::time::Duration::from_millis(ha_lock_lease_ms);
            opts.ha.watchdog_timeout = std::time::Duration::from_millis(ha_watchdog_timeout_ms);
            opts.ha.fence_delay = std::time::Duration::from_secs(ha_fence_delay);
            opts.ha.max_clock_skew = std::time::Duration::from_millis(ha_max_clock_skew_ms);
            opts.cpu_flag_mask = cpu_flag_mask
                .iter()
                .map(|f| ferrox_types::cpu::normalize_flag(f).to_string())
                .collect();
            opts.web_dir = web_dir.or_else(ferrox_node::web::default_dir);
            opts.net_mode = net_mode;
            opts.host_power = host_power == "system";
            ferrox_node::serve(opts)?;
        }
        Top::Node {
            command: NodeCommand::Power(command),
            remote,
        } => client::node_power(&remote, command, out)?,
        Top::Node {
            remote: _,
            command:
                NodeCommand::Watchdog {
                    socket,
                    timeout_ms,
                    run_dir,
                },
        } => ferrox_node::ha::watchdog::run(
            &socket,
            std::time::Duration::from_millis(timeout_ms),
            &run_dir,
        )?,
        Top::Vm { remote, command } => client::vm(&remote, command, out)?,
        Top::Task { remote, command } => client::task(&remote, command, out)?,
        Top::Cluster { command } => client::cluster(command, out)?,
        Top::Api { remote, command } => client::api(&remote, command, out)?,
        Top::User { remote, command } => access::user(&remote, command, out)?,
        Top::Group { remote, command } => access::group(&remote, command, out)?,
        Top::Role { remote, command } => access::role(&remote, command, out)?,
        Top::Acl { remote, command } => access::acl(&remote, command, out)?,
        Top::Realm { remote, command } => access::realm(&remote, command, out)?,
        Top::Pool { remote, command } => access::pool(&remote, command, out)?,
        Top::Crs { command } => crs::run(command, out)?,
        Top::Sim {
            command: SimCommand::Run { dir },
        } => {
            out.push_str(&ferrox_sim::run_dir(&dir)?);
        }
        Top::Ha {
            command:
                HaCommand::Rules {
                    command: RulesCommand::Check { file, nodes },
                },
        } => {
            let raw =
                std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
            let report = ferrox_ha::rules::check_report(&raw, &nodes)
                .with_context(|| format!("{}", file.display()))?;
            out.push_str(&report);
        }
        Top::Ha {
            command: HaCommand::Remote(command),
        } => client::ha(command, out)?,
        Top::Ha {
            command:
                HaCommand::Rules {
                    command: RulesCommand::Remote(command),
                },
        } => client::ha_rules(command, out)?,
    }
    Ok(())
}

/// A CPU flag name as QEMU spells them (`--cpu-flag-mask`).
fn cpu_flag(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("'{value}' is not a CPU flag name"))
    }
}
