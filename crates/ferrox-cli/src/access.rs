//! `ferrox user|group|role|acl|realm|pool`: access management like Proxmox VE's `pveum`, as thin
//! commands over the `/access` API (the node checks everything; options are passed on as
//! `--key value` pairs under the API's parameter names).

use crate::client::{connect, key_values, Remote};
use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Users you may see (`--full 1` with groups and tokens).
    List {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// `ferrox user add alice@pve --password ... --email ... --groups ops`
    Add {
        userid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// `ferrox user modify alice@pve --enable 0 --expire 1900000000`
    Modify {
        userid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    Delete {
        userid: String,
    },
    /// `ferrox user password alice@pve --password NEW [--confirmation-password CURRENT]`
    Password {
        userid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// API tokens of a user.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    List {
        userid: String,
    },
    /// `ferrox user token add alice@pve ci --privsep 1 --expire 0 --comment ...`
    Add {
        userid: String,
        tokenid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    Remove {
        userid: String,
        tokenid: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    List,
    Add {
        groupid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    Modify {
        groupid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    Delete {
        groupid: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    List,
    /// `ferrox role add Watcher --privs VM.Audit,Sys.Audit`
    Add {
        roleid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    Modify {
        roleid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    Delete {
        roleid: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    List,
    /// `ferrox acl modify /vms/100 --roles PVEVMUser --users alice@pve [--propagate 0]`
    Modify {
        path: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// `ferrox acl delete /vms/100 --roles PVEVMUser --users alice@pve`
    Delete {
        path: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RealmCommand {
    List,
}

#[derive(Subcommand, Debug)]
pub enum PoolCommand {
    List,
    /// `ferrox pool add web --comment ...`
    Add {
        poolid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// `ferrox pool modify web --vms 100,101 [--storage local] [--delete 1]`
    Modify {
        poolid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        options: Vec<String>,
    },
    /// A pool and its members.
    Show {
        poolid: String,
    },
    Delete {
        poolid: String,
    },
}

/// Which request a command is: method, path, parameters.
type Call = (&'static str, String, Vec<(String, String)>);

fn with(first: &[(&str, &str)], options: &[String]) -> Result<Vec<(String, String)>> {
    let mut params: Vec<(String, String)> = first
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    params.extend(key_values(options)?);
    Ok(params)
}

fn user_call(command: UserCommand) -> Result<Call> {
    Ok(match command {
        UserCommand::List { options } => ("GET", "/access/users".into(), with(&[], &options)?),
        UserCommand::Add { userid, options } => (
            "POST",
            "/access/users".into(),
            with(&[("userid", &userid)], &options)?,
        ),
        UserCommand::Modify { userid, options } => (
            "PUT",
            format!("/access/users/{userid}"),
            with(&[], &options)?,
        ),
        UserCommand::Delete { userid } => ("DELETE", format!("/access/users/{userid}"), Vec::new()),
        UserCommand::Password { userid, options } => (
            "PUT",
            "/access/password".into(),
            with(&[("userid", &userid)], &options)?,
        ),
        UserCommand::Token { command } => match command {
            TokenCommand::List { userid } => {
                ("GET", format!("/access/users/{userid}/token"), Vec::new())
            }
            TokenCommand::Add {
                userid,
                tokenid,
                options,
            } => (
                "POST",
                format!("/access/users/{userid}/token/{tokenid}"),
                with(&[], &options)?,
            ),
            TokenCommand::Remove { userid, tokenid } => (
                "DELETE",
                format!("/access/users/{userid}/token/{tokenid}"),
                Vec::new(),
            ),
        },
    })
}

fn group_call(command: GroupCommand) -> Result<Call> {
    Ok(match command {
        GroupCommand::List => ("GET", "/access/groups".into(), Vec::new()),
        GroupCommand::Add { groupid, options } => (
            "POST",
            "/access/groups".into(),
            with(&[("groupid", &groupid)], &options)?,
        ),
        GroupCommand::Modify { groupid, options } => (
            "PUT",
            format!("/access/groups/{groupid}"),
            with(&[], &options)?,
        ),
        GroupCommand::Delete { groupid } => {
            ("DELETE", format!("/access/groups/{groupid}"), Vec::new())
        }
    })
}

fn role_call(command: RoleCommand) -> Result<Call> {
    Ok(match command {
        RoleCommand::List => ("GET", "/access/roles".into(), Vec::new()),
        RoleCommand::Add { roleid, options } => (
            "POST",
            "/access/roles".into(),
            with(&[("roleid", &roleid)], &options)?,
        ),
        RoleCommand::Modify { roleid, options } => (
            "PUT",
            format!("/access/roles/{roleid}"),
            with(&[], &options)?,
        ),
        RoleCommand::Delete { roleid } => ("DELETE", format!("/access/roles/{roleid}"), Vec::new()),
    })
}

fn acl_call(command: AclCommand) -> Result<Call> {
    Ok(match command {
        AclCommand::List => ("GET", "/access/acl".into(), Vec::new()),
        AclCommand::Modify { path, options } => (
            "PUT",
            "/access/acl".into(),
            with(&[("path", &path)], &options)?,
        ),
        AclCommand::Delete { path, options } => (
            "PUT",
            "/access/acl".into(),
            with(&[("path", &path), ("delete", "1")], &options)?,
        ),
    })
}

/// A list of objects as aligned columns (the keys of the first row, in `columns` order).
fn table(rows: &[Value], columns: &[&str]) -> String {
    let cell = |row: &Value, c: &str| match &row[c] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<String>| {
        let mut l: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        if let Some(last) = l.last_mut() {
            *last = last.trim_end().to_string();
        }
        l.join("  ")
    };
    out.push_str(&line(columns.iter().map(|c| c.to_string()).collect()));
    out.push('\n');
    for r in rows {
        out.push_str(&line(columns.iter().map(|c| cell(r, c)).collect()));
        out.push('\n');
    }
    out
}

fn run(remote: &Remote, call: Call, columns: &[&str], out: &mut String) -> Result<()> {
    let (method, path, params) = call;
    let data = connect(remote)?.call(method, &path, &params)?;
    match &data {
        Value::Array(rows) if method == "GET" && !columns.is_empty() => {
            out.push_str(&table(rows, columns))
        }
        Value::Null => {}
        other => {
            out.push_str(&serde_json::to_string_pretty(other)?);
            out.push('\n');
        }
    }
    Ok(())
}

pub fn user(remote: &Remote, command: UserCommand, out: &mut String) -> Result<()> {
    let columns: &[&str] = match &command {
        UserCommand::List { .. } => &["userid", "enable", "expire", "email", "groups", "comment"],
        UserCommand::Token {
            command: TokenCommand::List { .. },
        } => &["tokenid", "privsep", "expire", "comment"],
        _ => &[],
    };
    run(remote, user_call(command)?, columns, out)
}

pub fn group(remote: &Remote, command: GroupCommand, out: &mut String) -> Result<()> {
    run(
        remote,
        group_call(command)?,
        &["groupid", "users", "comment"],
        out,
    )
}

pub fn role(remote: &Remote, command: RoleCommand, out: &mut String) -> Result<()> {
    run(
        remote,
        role_call(command)?,
        &["roleid", "special", "privs"],
        out,
    )
}

pub fn acl(remote: &Remote, command: AclCommand, out: &mut String) -> Result<()> {
    run(
        remote,
        acl_call(command)?,
        &["path", "type", "ugid", "roleid", "propagate"],
        out,
    )
}

pub fn pool(remote: &Remote, command: PoolCommand, out: &mut String) -> Result<()> {
    let call: Call = match command {
        PoolCommand::List => ("GET", "/pools".into(), Vec::new()),
        PoolCommand::Add { poolid, options } => (
            "POST",
            "/pools".into(),
            with(&[("poolid", &poolid)], &options)?,
        ),
        PoolCommand::Modify { poolid, options } => (
            "PUT",
            "/pools".into(),
            with(&[("poolid", &poolid)], &options)?,
        ),
        PoolCommand::Show { poolid } => ("GET", format!("/pools/{poolid}"), Vec::new()),
        PoolCommand::Delete { poolid } => (
            "DELETE",
            "/pools".into(),
            with(&[("poolid", &poolid)], &[])?,
        ),
    };
    run(remote, call, &["poolid", "comment"], out)
}

pub fn realm(remote: &Remote, command: RealmCommand, out: &mut String) -> Result<()> {
    match command {
        RealmCommand::List => run(
            remote,
            ("GET", "/access/domains".into(), Vec::new()),
            &["realm", "type", "comment"],
            out,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_the_access_api() {
        let (m, p, params) = acl_call(AclCommand::Delete {
            path: "/vms/100".into(),
            options: vec!["--roles".into(), "PVEVMUser".into(), "--users=a@pve".into()],
        })
        .unwrap();
        assert_eq!((m, p.as_str()), ("PUT", "/access/acl"));
        assert!(params.contains(&("delete".into(), "1".into())));
        assert!(params.contains(&("users".into(), "a@pve".into())));
        let (m, p, _) = user_call(UserCommand::Token {
            command: TokenCommand::Remove {
                userid: "a@pve".into(),
                tokenid: "ci".into(),
            },
        })
        .unwrap();
        assert_eq!((m, p.as_str()), ("DELETE", "/access/users/a@pve/token/ci"));
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            serde_json::json!({"userid": "root@pam", "enable": 1}),
            serde_json::json!({"userid": "a@pve", "enable": 0}),
        ];
        let t = table(&rows, &["userid", "enable"]);
        assert_eq!(t, "userid    enable\nroot@pam  1\na@pve     0\n");
    }
}
