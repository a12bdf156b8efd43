//! The client side of the API: HTTPS with the server certificate pinned by its SHA-256
//! fingerprint (or not checked with `--insecure`), ticket or API token login, and the
//! commands that talk to a node: `vm`, `task`, `api`.

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use ferrox_api_types::tasks::TaskStatus;
use serde_json::{json, Value};

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// host:port of a node's API.
    #[arg(
        long,
        env = "FERROX_HOST",
        default_value = "127.0.0.1:8006",
        global = true
    )]
    host: String,
    /// SHA-256 fingerprint of the node's certificate (printed by `ferrox node serve`).
    #[arg(long, env = "FERROX_FINGERPRINT", global = true)]
    fingerprint: Option<String>,
    /// Do not check the server certificate at all.
    #[arg(long, global = true)]
    insecure: bool,
    /// User for a password login.
    #[arg(long, env = "FERROX_USER", default_value = "root@pam", global = true)]
    user: String,
    /// The login password (prefer FERROX_PASSWORD: a command line is visible in `ps`).
    /// Given before the subcommand only: after it, `--password` is the API's parameter
    /// (`ferrox user add alice@pve --password ...`).
    #[arg(long, env = "FERROX_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// API token `user@realm!name=secret` (instead of a password; prefer FERROX_TOKEN).
    #[arg(long, env = "FERROX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Node to act on (default: the node answering).
    #[arg(long, global = true)]
    node: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum VmCommand {
    /// List the node's VMs.
    List,
    /// Create a VM: `ferrox vm create 100 --memory 512 --scsi0 local:1`.
    Create {
        vmid: u32,
        /// Config keys as `--key value` pairs.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// Show a VM's config.
    Config {
        vmid: u32,
    },
    /// Change config keys: `ferrox vm set 100 --cores 2 --delete net0`.
    Set {
        vmid: u32,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    Start {
        vmid: u32,
    },
    /// Hard stop.
    Stop {
        vmid: u32,
    },
    /// ACPI shutdown; stops the VM if it has not shut down after the timeout.
    Shutdown {
        vmid: u32,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Remove a stopped VM and its disks.
    Destroy {
        vmid: u32,
    },
    /// Show a VM's status.
    Status {
        vmid: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Make the node a (one-member) cluster named NAME.
    Create {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Join the node to the cluster that ADDRESS (host[:port]) belongs to. The node must
    /// have no guests; its configuration is replaced by the cluster's. The joining
    /// node's own API is pinned with FERROX_FINGERPRINT or --local-fingerprint.
    Join {
        address: String,
        /// SHA-256 fingerprint of ADDRESS's certificate.
        #[arg(long)]
        fingerprint: String,
        /// root@pam's password on ADDRESS.
        #[arg(long, env = "FERROX_JOIN_PASSWORD", hide_env_values = true)]
        join_password: String,
        #[arg(long, env = "FERROX_HOST", default_value = "127.0.0.1:8006")]
        host: String,
        /// Fingerprint of the joining node's own certificate.
        #[arg(long, env = "FERROX_FINGERPRINT")]
        local_fingerprint: Option<String>,
        #[arg(long)]
        insecure: bool,
        #[arg(long, env = "FERROX_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        #[arg(long, env = "FERROX_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Members, votes, quorum and leader.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// The highest built-in CPU model every node runs (x86-64-v1 .. v4), and per node
    /// what it lacks for the next one: guests with that model can live-migrate anywhere.
    CpuBaseline {
        /// Check the nodes for this accelerator (default: each node's own).
        #[arg(long, value_parser = ["kvm", "tcg"])]
        accel: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove a member (ask any other member).
    RemoveNode {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `ferrox ha ...` against a node's API (`ha-manager`'s verbs).
#[derive(Subcommand, Debug)]
pub enum HaRemote {
    /// Quorum, master, LRMs and services.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// Put a guest under HA: `ferrox ha add vm:100 --state started --max-restart 2`.
    Add {
        sid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Change an HA resource: `ferrox ha set vm:100 --state stopped`.
    Set {
        sid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Take a guest out of HA.
    Remove {
        sid: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Live-migrate an HA guest.
    Migrate {
        sid: String,
        node: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop, move and start an HA guest.
    Relocate {
        sid: String,
        node: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// `node-maintenance enable|disable NODE`, `disarm-ha freeze|ignore`, `arm-ha`.
    CrmCommand {
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `ferrox ha rules ...` against a node's API.
#[derive(Subcommand, Debug)]
pub enum RulesRemote {
    /// The cluster's HA rules.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// `ferrox ha rules add keep-apart --type resource-affinity --resources vm:100,vm:101 --affinity negative`
    Add {
        rule: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Change a rule: `ferrox ha rules set prefer-n1 --nodes n1:2,n2`.
    Set {
        rule: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a rule.
    Remove {
        rule: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn ha_rules(command: RulesRemote, out: &mut String) -> Result<()> {
    match command {
        RulesRemote::List { remote } => {
            let rules = connect(&remote)?.call("GET", "/cluster/ha/rules", &[])?;
            out.push_str(&pretty(&rules));
        }
        RulesRemote::Add {
            rule,
            options,
            remote,
        } => {
            let mut params = key_values(&options)?;
            params.push(("rule".into(), rule));
            connect(&remote)?.call("POST", "/cluster/ha/rules", &params)?;
        }
        RulesRemote::Set {
            rule,
            options,
            remote,
        } => {
            connect(&remote)?.call(
                "PUT",
                &format!("/cluster/ha/rules/{rule}"),
                &key_values(&options)?,
            )?;
        }
        RulesRemote::Remove { rule, remote } => {
            connect(&remote)?.call("DELETE", &format!("/cluster/ha/rules/{rule}"), &[])?;
        }
    }
    Ok(())
}

pub fn ha(command: HaRemote, out: &mut String) -> Result<()> {
    match command {
        HaRemote::Status { remote } => {
            for e in connect(&remote)?.ha_status()? {
                out.push_str(&format!("{} {}\n", e.kind, e.status));
            }
        }
        HaRemote::Add {
            sid,
            options,
            remote,
        } => {
            let mut params = key_values(&options)?;
            params.push(("sid".into(), sid));
            connect(&remote)?.call("POST", "/cluster/ha/resources", &params)?;
        }
        HaRemote::Set {
            sid,
            options,
            remote,
        } => {
            connect(&remote)?.call(
                "PUT",
                &format!("/cluster/ha/resources/{sid}"),
                &key_values(&options)?,
            )?;
        }
        HaRemote::Remove { sid, remote } => {
            connect(&remote)?.call("DELETE", &format!("/cluster/ha/resources/{sid}"), &[])?;
        }
        HaRemote::Migrate { sid, node, remote } => {
            let path = format!("/cluster/ha/resources/{sid}/migrate");
            connect(&remote)?.call("POST", &path, &[("node".into(), node)])?;
        }
        HaRemote::Relocate { sid, node, remote } => {
            let path = format!("/cluster/ha/resources/{sid}/relocate");
            connect(&remote)?.call("POST", &path, &[("node".into(), node)])?;
        }
        HaRemote::CrmCommand { words, remote } => {
            connect(&remote)?.call(
                "POST",
                "/cluster/ha/crm-command",
                &[("command".into(), words.join(" "))],
            )?;
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// Recent tasks of the node.
    List {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The log of a task.
    Log { upid: String },
}

#[derive(Subcommand, Debug)]
pub enum ApiCommand {
    /// GET PATH [--key value ...]
    Get {
        path: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        params: Vec<String>,
    },
    /// POST PATH [--key value ...]
    Create {
        path: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        params: Vec<String>,
    },
    /// PUT PATH [--key value ...]
    Set {
        path: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        params: Vec<String>,
    },
    /// DELETE PATH [--key value ...]
    Delete {
        path: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        params: Vec<String>,
    },
}

pub use ferrox_client::pinned::{parse_fingerprint, tls_agent};
pub use ferrox_client::Client;

/// Connects with the command line's options (`--host`, `--fingerprint`/`--insecure`,
/// password or token).
pub fn connect(remote: &Remote) -> Result<Client> {
    if remote.fingerprint.is_none() && !remote.insecure {
        bail!(
            "the node's certificate is self-signed: pass --fingerprint (printed by `ferrox node serve`, \
             also in GET /nodes as ssl_fingerprint) or --insecure"
        );
    }
    let credentials = match (&remote.token, &remote.password) {
        (Some(token), _) => ferrox_client::Credentials::Token(token.clone()),
        (None, Some(password)) => ferrox_client::Credentials::Password {
            user: remote.user.clone(),
            password: password.clone(),
        },
        (None, None) => {
            bail!("no credentials: set FERROX_PASSWORD (or --password) or FERROX_TOKEN")
        }
    };
    Ok(Client::connect(
        &remote.host,
        remote.fingerprint.as_deref(),
        credentials,
    )?)
}

/// The node to act on: `--node`, or the one answering.
fn node_of(client: &Client, remote: &Remote) -> Result<String> {
    match &remote.node {
        Some(n) => Ok(n.clone()),
        None => Ok(client.first_node()?),
    }
}

/// Splits `--key value` / `--key=value` pairs.
pub fn key_values(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let key = arg
            .strip_prefix("--")
            .ok_or_else(|| anyhow!("expected --key value, got '{arg}'"))?;
        match key.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => {
                let value = it.next().ok_or_else(|| anyhow!("--{key} needs a value"))?;
                out.push((key.to_string(), value.clone()));
            }
        }
    }
    Ok(out)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn run_task(
    client: &Client,
    method: &str,
    path: &str,
    params: &[(String, String)],
    out: &mut String,
) -> Result<()> {
    let upid = client.start_task(method, path, params)?;
    out.push_str(&format!("{upid}\n"));
    client.wait_task(&upid.0)?;
    out.push_str("TASK OK\n");
    Ok(())
}

pub fn cluster(command: ClusterCommand, out: &mut String) -> Result<()> {
    match command {
        ClusterCommand::Create { name, remote } => {
            let client = connect(&remote)?;
            run_task(
                &client,
                "POST",
                "/cluster/config",
                &[("clustername".into(), name)],
                out,
            )?;
        }
        ClusterCommand::Join {
            address,
            fingerprint,
            join_password,
            host,
            local_fingerprint,
            insecure,
            password,
            token,
        } => {
            let client = connect(&Remote {
                host,
                fingerprint: local_fingerprint,
                insecure,
                user: "root@pam".into(),
                password,
                token,
                node: None,
            })?;
            // The answer comes when the join is done; the task cannot be polled with
            // this node's old credentials afterwards.
            let upid = client.start_task(
                "POST",
                "/cluster/config/join",
                &[
                    ("hostname".into(), address),
                    ("fingerprint".into(), fingerprint),
                    ("password".into(), join_password),
                ],
            )?;
            out.push_str(&format!(
                "{upid}\njoined: log in again with the cluster's credentials\n"
            ));
        }
        ClusterCommand::Status { remote } => {
            let client = connect(&remote)?;
            let entries = client.cluster_status()?;
            let yes = |flag: Option<u8>| flag == Some(1);
            for e in entries.iter().filter(|e| e.kind == "cluster") {
                out.push_str(&format!(
                    "cluster {}: {} nodes, quorate {}, leader {}\n",
                    e.name,
                    e.nodes.unwrap_or(0),
                    if yes(e.quorate) { "yes" } else { "no" },
                    e.leader.as_deref().unwrap_or("-"),
                ));
            }
            if !entries.iter().any(|e| e.kind == "cluster") {
                out.push_str("not in a cluster (standalone node)\n");
            }
            out.push_str("nodeid  name              votes  online  address\n");
            for e in entries.iter().filter(|e| e.kind == "node") {
                out.push_str(&format!(
                    "{:<7} {:<17} {:<6} {:<7} {}{}\n",
                    e.nodeid.map(|n| n.to_string()).unwrap_or_default(),
                    e.name,
                    u8::from(yes(e.voter)),
                    if yes(e.online) { "yes" } else { "no" },
                    e.ip.as_deref().unwrap_or(""),
                    if yes(e.local) { " (local)" } else { "" },
                ));
            }
        }
        ClusterCommand::CpuBaseline { accel, remote } => {
            let client = connect(&remote)?;
            let baseline = client.cpu_baseline(accel.as_deref())?;
            match (&baseline.model, &baseline.level) {
                (Some(model), Some(level)) => out.push_str(&format!(
                    "cluster baseline: {model} ({level}): guests with it can run on every node\n"
                )),
                _ => out.push_str(
                    "cluster baseline: none: some node runs no built-in model (see below)\n",
                ),
            }
            out.push_str(
                "node              accel  highest         level      lacks for the next\n",
            );
            for n in &baseline.nodes {
                let lacks = match (&n.unknown, &n.next) {
                    (Some(why), _) => why.clone(),
                    (None, Some(next)) => format!("{next}: {}", n.lacks.join(" ")),
                    (None, None) => "-".into(),
                };
                let masked = if n.masked.is_empty() {
                    String::new()
                } else {
                    format!(" [test mask: {}]", n.masked.join(","))
                };
                out.push_str(&format!(
                    "{:<17} {:<6} {:<15} {:<10} {lacks}{masked}\n",
                    n.node,
                    n.accel,
                    n.model.as_deref().unwrap_or("none"),
                    n.level.as_deref().unwrap_or("-"),
                ));
            }
        }
        ClusterCommand::RemoveNode { name, remote } => {
            let client = connect(&remote)?;
            client.call("DELETE", &format!("/cluster/config/nodes/{name}"), &[])?;
            out.push_str(&format!("removed node '{name}'\n"));
        }
    }
    Ok(())
}

pub fn vm(remote: &Remote, command: VmCommand, out: &mut String) -> Result<()> {
    let client = connect(remote)?;
    let node = node_of(&client, remote)?;
    let base = format!("/nodes/{node}/qemu");
    match command {
        VmCommand::List => {
            let mut rows = client.guests(&node)?;
            out.push_str(&format!(
                "{:>6}  {:<20} {:<8} {:>8} {:>5}\n",
                "VMID", "NAME", "STATUS", "MEM(MB)", "CPUS"
            ));
            rows.sort_by_key(|v| v.vmid);
            for v in rows {
                out.push_str(&format!(
                    "{:>6}  {:<20} {:<8} {:>8} {:>5}\n",
                    v.vmid,
                    v.name,
                    v.status,
                    v.maxmem >> 20,
                    v.cpus
                ));
            }
        }
        VmCommand::Create { vmid, options } => {
            let mut params = key_values(&options)?;
            params.push(("vmid".into(), vmid.to_string()));
            run_task(&client, "POST", &base, &params, out)?;
        }
        VmCommand::Config { vmid } => {
            let cfg = client.call("GET", &format!("{base}/{vmid}/config"), &[])?;
            if let Some(map) = cfg.as_object() {
                for (k, v) in map {
                    out.push_str(&format!(
                        "{k}: {}\n",
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    ));
                }
            }
        }
        VmCommand::Set { vmid, options } => {
            client.call(
                "PUT",
                &format!("{base}/{vmid}/config"),
                &key_values(&options)?,
            )?;
        }
        VmCommand::Start { vmid } => run_task(
            &client,
            "POST",
            &format!("{base}/{vmid}/status/start"),
            &[],
            out,
        )?,
        VmCommand::Stop { vmid } => run_task(
            &client,
            "POST",
            &format!("{base}/{vmid}/status/stop"),
            &[],
            out,
        )?,
        VmCommand::Shutdown { vmid, timeout } => run_task(
            &client,
            "POST",
            &format!("{base}/{vmid}/status/shutdown"),
            &[
                ("timeout".into(), timeout.to_string()),
                ("forceStop".into(), "1".into()),
            ],
            out,
        )?,
        VmCommand::Destroy { vmid } => {
            run_task(&client, "DELETE", &format!("{base}/{vmid}"), &[], out)?
        }
        VmCommand::Status { vmid } => {
            out.push_str(&pretty(&client.call(
                "GET",
                &format!("{base}/{vmid}/status/current"),
                &[],
            )?));
        }
    }
    Ok(())
}

pub fn task(remote: &Remote, command: TaskCommand, out: &mut String) -> Result<()> {
    let client = connect(remote)?;
    match command {
        TaskCommand::List { limit } => {
            let node = node_of(&client, remote)?;
            let list: Vec<TaskStatus> = client.call_as(
                "GET",
                &format!("/nodes/{node}/tasks"),
                &[
                    ("limit".into(), limit.to_string()),
                    ("source".into(), "all".into()),
                ],
            )?;
            for t in list {
                out.push_str(&format!("{}  {}\n", t.upid, t.status));
            }
        }
        TaskCommand::Log { upid } => {
            for line in client.task_log(&upid)? {
                out.push_str(&line.t);
                out.push('\n');
            }
        }
    }
    Ok(())
}

/// Node-level power and bulk guest actions (like `pvenode`).
#[derive(Subcommand, Debug)]
pub enum NodePowerCommand {
    /// Shut the node down: HA services as datacenter.cfg's shutdown policy says, then
    /// every other guest; the daemon ends.
    Shutdown,
    /// Reboot the node (HA's `conditional` policy freezes services for a reboot).
    Reboot,
    /// Start the node's guests with onboot=1 (all with --force), by startup order.
    Startall {
        #[arg(long)]
        force: bool,
        /// Only these guests (comma-separated vmids).
        #[arg(long)]
        vms: Option<String>,
    },
    /// Shut the node's guests down in reverse startup order.
    Stopall {
        #[arg(long)]
        vms: Option<String>,
        /// Seconds each guest has to shut down (default 180).
        #[arg(long)]
        timeout: Option<u32>,
    },
    /// Migrate the node's guests to TARGET (running ones live; HA's through HA).
    Migrateall {
        target: String,
        #[arg(long)]
        vms: Option<String>,
        /// Copy local disks along.
        #[arg(long)]
        with_local_disks: bool,
        /// Migrations running at once.
        #[arg(long)]
        max_workers: Option<u32>,
    },
}

pub fn node_power(remote: &Remote, command: NodePowerCommand, out: &mut String) -> Result<()> {
    let client = connect(remote)?;
    let node = node_of(&client, remote)?;
    let mut params = Vec::new();
    let (path, command) = match command {
        NodePowerCommand::Shutdown => ("status", Some("shutdown")),
        NodePowerCommand::Reboot => ("status", Some("reboot")),
        NodePowerCommand::Startall { force, vms } => {
            if force {
                params.push(("force".to_string(), "1".to_string()));
            }
            params.extend(vms.map(|v| ("vms".to_string(), v)));
            ("startall", None)
        }
        NodePowerCommand::Stopall { vms, timeout } => {
            params.extend(vms.map(|v| ("vms".to_string(), v)));
            params.extend(timeout.map(|t| ("timeout".to_string(), t.to_string())));
            ("stopall", None)
        }
        NodePowerCommand::Migrateall {
            target,
            vms,
            with_local_disks,
            max_workers,
        } => {
            params.push(("target".to_string(), target));
            params.extend(vms.map(|v| ("vms".to_string(), v)));
            if with_local_disks {
                params.push(("with-local-disks".to_string(), "1".to_string()));
            }
            params.extend(max_workers.map(|n| ("max-workers".to_string(), n.to_string())));
            ("migrateall", None)
        }
    };
    let path = format!("/nodes/{node}/{path}");
    match command {
        Some(command) => {
            client.call(
                "POST",
                &path,
                &[("command".to_string(), command.to_string())],
            )?;
            out.push_str(&format!("node '{node}': {command} requested\n"));
            Ok(())
        }
        None => run_task(&client, "POST", &path, &params, out),
    }
}

pub fn api(remote: &Remote, command: ApiCommand, out: &mut String) -> Result<()> {
    let client = connect(remote)?;
    let (method, path, params) = match command {
        ApiCommand::Get { path, params } => ("GET", path, params),
        ApiCommand::Create { path, params } => ("POST", path, params),
        ApiCommand::Set { path, params } => ("PUT", path, params),
        ApiCommand::Delete { path, params } => ("DELETE", path, params),
    };
    let data = client.call(method, &path, &key_values(&params)?)?;
    if data != json!(null) {
        out.push_str(&pretty(&data));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_pairs() {
        let args: Vec<String> = ["--memory", "512", "--scsi0=local:1", "--name", "-x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            key_values(&args).unwrap(),
            vec![
                ("memory".into(), "512".into()),
                ("scsi0".into(), "local:1".into()),
                ("name".into(), "-x".into())
            ]
        );
        assert!(key_values(&["memory".to_string()]).is_err());
        assert!(key_values(&["--memory".to_string()]).is_err());
    }

    #[test]
    fn fingerprints_must_be_32_bytes() {
        let fp = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&fp).unwrap(), vec![0xAB; 32]);
        assert!(parse_fingerprint("AB:CD").is_err());
    }
}
