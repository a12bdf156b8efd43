//! `/cluster/tasks` and `/cluster/log`: the recent tasks of every member, and the cluster
//! log Proxmox VE derives from them (a line when a task starts, one when it ends).

use super::*;
use crate::peers::RECENT_TASKS;
use crate::Node;
use ferrox_api::schema::int;
use ferrox_api::{ApiError, Endpoint, Method, Param, Permission};
use ferrox_api_types::cluster::ClusterLogEntry;
use ferrox_api_types::tasks::TaskStatus;

/// The recent tasks of every member that answers, newest first.
fn cluster_tasklist(node: &Node) -> Vec<TaskStatus> {
    let mut tasks = node.tasks.recent(RECENT_TASKS);
    for (_, answer) in crate::cluster::ask_members(node, |m| {
        crate::cluster::peer_get::<Vec<TaskStatus>>(node, m, "/ferrox/local-tasks")
    }) {
        tasks.extend(answer.unwrap_or_default());
    }
    tasks.sort_by_key(|t| std::cmp::Reverse(t.starttime));
    tasks
}

fn cluster_tasks(ctx: &C<'_>) -> Result<Vec<TaskStatus>, ApiError> {
    let caller = ctx.caller()?;
    let all = ctx.has("/", &["Sys.Audit"], false);
    Ok(cluster_tasklist(ctx.state)
        .into_iter()
        .filter(|t| all || t.user == caller.userid)
        .collect())
}

fn cluster_log(ctx: &C<'_>) -> Result<Vec<ClusterLogEntry>, ApiError> {
    let caller = ctx.caller()?;
    let all = ctx.has("/", &["Sys.Syslog"], false);
    let max = ctx.params.int(&param::MAX).unwrap_or(50).max(0) as usize;
    let mut lines = Vec::new();
    for task in cluster_tasklist(ctx.state)
        .into_iter()
        .filter(|t| all || t.user == caller.userid)
    {
        let user = match &task.tokenid {
            Some(token) => format!("{}!{token}", task.user),
            None => task.user.clone(),
        };
        let line = |time: i64, pri: u8, msg: String| ClusterLogEntry {
            uid: 0,
            time,
            pri,
            tag: "pvedaemon".into(),
            pid: task.pid,
            node: task.node.clone(),
            user: user.clone(),
            msg,
        };
        if let Some(end) = task.endtime {
            let ok = task.status == "OK" || task.status.starts_with("WARNINGS");
            let pri = if ok { 6 } else { 3 };
            lines.push(line(
                end,
                pri,
                format!("end task {} {}", task.upid, task.status),
            ));
        }
        lines.push(line(
            task.starttime,
            6,
            format!("starting task {}", task.upid),
        ));
    }
    lines.sort_by_key(|l| std::cmp::Reverse(l.time));
    lines.truncate(max);
    for (n, line) in lines.iter_mut().enumerate() {
        line.uid = n as u64 + 1;
    }
    Ok(lines)
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    pub const MAX: Param = Param::optional(
        "max",
        int(Some(1), None),
        "Maximum number of entries (default 50).",
    );
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    vec![
        Endpoint::new(
            Get,
            "/cluster/tasks",
            "Recent tasks of every member (all with Sys.Audit on /, else your own).",
            Permission::Handler("any user; all tasks with Sys.Audit on /, else their own"),
            cluster_tasks,
        ),
        Endpoint::new(
            Get,
            "/cluster/log",
            "The cluster log (all entries with Sys.Syslog on /, else your own).",
            Permission::Handler("any user; all entries with Sys.Syslog on /, else their own"),
            cluster_log,
        )
        .params(vec![param::MAX]),
    ]
}
