//! `/cluster/notifications`: webhook and sendmail targets, matchers, and a test send, with
//! Proxmox VE's permissions (`Mapping.*` on `/mapping/notifications`). Every change goes
//! through `notifications.cfg`'s one parser before it is written (compare-and-set).

use super::*;
use crate::notify::{CONFIG, PRIV_CONFIG};
use crate::Node;
use ferrox_api::schema::{ParamType, BOOL, EMAIL, STRING, TEXT, USERID};
use ferrox_api::{ApiError, Endpoint, Method, Param, Permission};
use ferrox_api_types::notifications::{NotificationEntry, NotificationTarget};
use ferrox_api_types::Named;
use ferrox_types::notifications::{self as cfg, NotificationConfig};
use ferrox_types::section_config::{header_line, property_line};
use serde_json::{json, Value};

const AUDIT: Permission = Permission::Privs {
    path: "/mapping/notifications",
    privs: &["Mapping.Modify", "Mapping.Audit"],
    any: true,
};
const MODIFY: Permission = Permission::Privs {
    path: "/mapping/notifications",
    privs: &["Mapping.Modify"],
    any: false,
};
/// Creating or changing a target that reaches the network also needs one of these on `/`.
const TARGET_MODIFY: Permission = Permission::Handler(
    "Mapping.Modify on /mapping/notifications, and Sys.Audit + Sys.Modify or Sys.AccessNetwork on /",
);

fn check_target_modify(ctx: &C<'_>) -> Result<(), ApiError> {
    ctx.require("/mapping/notifications", &["Mapping.Modify"], false)?;
    if ctx.has("/", &["Sys.Audit", "Sys.Modify"], false)
        || ctx.has("/", &["Sys.AccessNetwork"], false)
    {
        Ok(())
    } else {
        Err(ApiError::forbidden("/", &["Sys.AccessNetwork"]))
    }
}

fn named(names: &[&str]) -> Vec<Named> {
    names
        .iter()
        .map(|n| Named {
            name: n.to_string(),
        })
        .collect()
}

fn index(_: &C<'_>) -> Result<Vec<Named>, ApiError> {
    Ok(named(&["endpoints", "matchers", "targets"]))
}

fn endpoints_index(_: &C<'_>) -> Result<Vec<Named>, ApiError> {
    Ok(named(&["sendmail", "webhook"]))
}

fn load(node: &Node) -> Result<(crate::cluster::Document, NotificationConfig), ApiError> {
    let doc = node.tree.load(CONFIG);
    let parsed = NotificationConfig::parse(&doc.text)
        .map_err(|e| ApiError::internal(format!("{CONFIG}: {e}")))?;
    Ok((doc, parsed))
}

fn targets(ctx: &C<'_>) -> Result<Vec<NotificationTarget>, ApiError> {
    let (_, config) = load(ctx.state)?;
    Ok(config
        .order
        .iter()
        .filter_map(|n| config.targets.get(n))
        .map(|t| NotificationTarget {
            name: t.name.clone(),
            kind: t.type_name().into(),
            comment: t.comment.clone(),
            disable: u8::from(t.disable),
            origin: "user-created".into(),
        })
        .collect())
}

fn test_target(ctx: &C<'_>) -> Result<(), ApiError> {
    let name = ctx.params.need_str(&param::NAME)?;
    ctx.state.notify_test(name).map_err(ApiError::internal)
}

/// One section of the file as `key → value` lines (a key may repeat).
fn section_lines(config: &NotificationConfig, name: &str) -> Vec<(String, String)> {
    let one = NotificationConfig {
        targets: config
            .targets
            .get(name)
            .map(|t| (name.to_string(), t.clone()))
            .into_iter()
            .collect(),
        matchers: config
            .matchers
            .get(name)
            .map(|m| (name.to_string(), m.clone()))
            .into_iter()
            .collect(),
        order: vec![name.to_string()],
        digest: String::new(),
    };
    one.to_text()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// An entry as the API shows it: its properties, lists as arrays, and the digest.
fn entry(config: &NotificationConfig, name: &str, lists: &[&str]) -> NotificationEntry {
    let mut out = NotificationEntry::new();
    out.insert("name".into(), json!(name));
    for (key, value) in section_lines(config, name) {
        if lists.contains(&key.as_str()) {
            let list = out.entry(key).or_insert_with(|| json!([]));
            if let Value::Array(items) = list {
                items.extend(value.split(',').map(|v| json!(v)));
            }
        } else if key == "disable" || key == "invert-match" {
            out.insert(key, json!(value.parse::<u8>().unwrap_or(1)));
        } else {
            out.insert(key, json!(value));
        }
    }
    out.insert("digest".into(), json!(config.digest));
    out
}

/// What a kind of entry is made of.
struct Kind {
    section: &'static str,
    params: &'static [Param],
    lists: &'static [&'static str],
}

const WEBHOOK: Kind = Kind {
    section: "webhook",
    params: &[
        param::URL,
        param::METHOD,
        param::HEADER,
        param::BODY,
        param::COMMENT,
        param::DISABLE,
    ],
    lists: &["header"],
};
const SENDMAIL: Kind = Kind {
    section: "sendmail",
    params: &[
        param::MAILTO,
        param::MAILTO_USER,
        param::FROM_ADDRESS,
        param::AUTHOR,
        param::COMMENT,
        param::DISABLE,
    ],
    lists: &["mailto", "mailto-user"],
};
const MATCHER: Kind = Kind {
    section: "matcher",
    params: &[
        param::TARGET,
        param::MATCH_SEVERITY,
        param::MATCH_FIELD,
        param::MODE,
        param::INVERT_MATCH,
        param::COMMENT,
        param::DISABLE,
    ],
    lists: &["target", "match-severity", "match-field"],
};

fn find(ctx: &C<'_>, kind: &Kind) -> Result<NotificationEntry, ApiError> {
    let name = ctx.params.need_str(&param::NAME)?;
    let (_, config) = load(ctx.state)?;
    let exists = match kind.section {
        "matcher" => config.matchers.contains_key(name),
        section => config
            .targets
            .get(name)
            .is_some_and(|t| t.type_name() == section),
    };
    if !exists {
        return Err(ApiError::internal(format!(
            "{} '{name}' does not exist",
            kind.section
        )));
    }
    Ok(entry(&config, name, kind.lists))
}

fn list(ctx: &C<'_>, kind: &Kind) -> Result<Vec<NotificationEntry>, ApiError> {
    let (_, config) = load(ctx.state)?;
    Ok(config
        .order
        .iter()
        .filter(|n| match kind.section {
            "matcher" => config.matchers.contains_key(*n),
            section => config
                .targets
                .get(*n)
                .is_some_and(|t| t.type_name() == section),
        })
        .map(|n| entry(&config, n, kind.lists))
        .collect())
}

/// Creates (`current` empty) or changes an entry: the request's values over the current
/// lines, `delete` removes, the whole section is parsed by the file's parser, then written.
fn store(ctx: &C<'_>, kind: &Kind, create: bool) -> Result<(), ApiError> {
    let name = ctx.params.need_str(&param::NAME)?;
    let (doc, mut config) = load(ctx.state)?;
    let exists = config.order.iter().any(|n| n == name);
    if create && exists {
        return Err(param::NAME.error(format!("'{name}' already exists")));
    }
    if !create {
        doc.check_digest(ctx.params.str(&param::DIGEST))?;
        find(ctx, kind)?;
    }
    let mut lines = if create {
        Vec::new()
    } else {
        section_lines(&config, name)
    };
    for key in ferrox_types::format::split_list(ctx.params.str(&param::DELETE).unwrap_or("")) {
        if !kind.params.iter().any(|p| p.name == key) {
            return Err(param::DELETE.error(format!("unknown property '{key}'")));
        }
        lines.retain(|(k, _)| k != key);
    }
    for p in kind.params {
        let values: Vec<String> = match &p.ty {
            ParamType::List(_) => ctx.params.list(p),
            ParamType::Boolean => ctx
                .params
                .bool(p)
                .map(|b| u8::from(b).to_string())
                .into_iter()
                .collect(),
            _ => ctx.params.str(p).map(String::from).into_iter().collect(),
        };
        if values.is_empty() {
            continue;
        }
        lines.retain(|(k, _)| k != p.name);
        lines.extend(values.into_iter().map(|v| (p.name.to_string(), v)));
    }
    let mut section = header_line(kind.section, name);
    for (key, value) in &lines {
        section.push_str(&property_line(key, value));
    }
    let parsed = NotificationConfig::parse(&section).map_err(|e| {
        // Name the parameter the parser refused.
        let text = e.to_string();
        let field = kind
            .params
            .iter()
            .find(|p| text.contains(&format!("'{}'", p.name)))
            .map_or("name", |p| p.name);
        ApiError::param(field, text)
    })?;
    match parsed.targets.get(name) {
        Some(t) => {
            config.targets.insert(name.to_string(), t.clone());
        }
        None => {
            let m = parsed.matchers.get(name).cloned().unwrap_or_default();
            for target in &m.targets {
                if !config.targets.contains_key(target) {
                    return Err(param::TARGET.error(format!("target '{target}' does not exist")));
                }
            }
            config.matchers.insert(name.to_string(), m);
        }
    }
    if !exists {
        config.order.push(name.to_string());
    }
    ctx.state.tree.save(&doc, &config.to_text())?;
    Ok(())
}

fn remove(ctx: &C<'_>, kind: &Kind) -> Result<(), ApiError> {
    let name = ctx.params.need_str(&param::NAME)?;
    find(ctx, kind)?;
    let (doc, mut config) = load(ctx.state)?;
    if kind.section != "matcher"
        && config
            .matchers
            .values()
            .any(|m| m.targets.iter().any(|t| t == name))
    {
        return Err(param::NAME.error(format!("target '{name}' is used by a matcher")));
    }
    config.targets.remove(name);
    config.matchers.remove(name);
    config.order.retain(|n| n != name);
    ctx.state.tree.save(&doc, &config.to_text())?;
    Ok(())
}

/// Webhook secrets go to `priv/notifications.cfg`, never into the public file; `None`
/// removes the target's secrets.
fn write_secrets(
    node: &Node,
    name: &str,
    pairs: Option<Vec<(String, String)>>,
) -> Result<(), ApiError> {
    let doc = node.tree.load(PRIV_CONFIG);
    let mut secrets = cfg::Secrets::parse(&doc.text)
        .map_err(|e| ApiError::internal(format!("{PRIV_CONFIG}: {e}")))?;
    match pairs {
        Some(p) => secrets.by_target.insert(name.to_string(), p),
        None => secrets.by_target.remove(name),
    };
    node.tree.save(&doc, &secrets.to_text())?;
    Ok(())
}

/// The request's secrets, checked before anything is written.
fn requested_secrets(ctx: &C<'_>) -> Result<Option<Vec<(String, String)>>, ApiError> {
    let given = ctx.params.list(&param::SECRET);
    if given.is_empty() {
        return Ok(None);
    }
    given
        .iter()
        .map(|s| cfg::name_value(s).map_err(|e| param::SECRET.error(e)))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Creates or changes a webhook, its secrets with it.
fn store_webhook(ctx: &C<'_>, create: bool) -> Result<(), ApiError> {
    check_target_modify(ctx)?;
    let secrets = requested_secrets(ctx)?;
    store(ctx, &WEBHOOK, create)?;
    match secrets {
        Some(pairs) => write_secrets(ctx.state, ctx.params.need_str(&param::NAME)?, Some(pairs)),
        None => Ok(()),
    }
}

fn webhooks(ctx: &C<'_>) -> Result<Vec<NotificationEntry>, ApiError> {
    let mut rows = list(ctx, &WEBHOOK)?;
    for row in &mut rows {
        let name = row["name"].as_str().unwrap_or_default().to_string();
        let names: Vec<Value> = crate::notify::secrets(ctx.state, &name)
            .into_keys()
            .map(|n| json!(format!("name={n}")))
            .collect();
        if !names.is_empty() {
            row.insert("secret".into(), Value::Array(names));
        }
    }
    Ok(rows)
}
fn webhook(ctx: &C<'_>) -> Result<NotificationEntry, ApiError> {
    find(ctx, &WEBHOOK)
}
fn create_webhook(ctx: &C<'_>) -> Result<(), ApiError> {
    store_webhook(ctx, true)
}
fn update_webhook(ctx: &C<'_>) -> Result<(), ApiError> {
    store_webhook(ctx, false)
}
fn delete_webhook(ctx: &C<'_>) -> Result<(), ApiError> {
    remove(ctx, &WEBHOOK)?;
    write_secrets(ctx.state, ctx.params.need_str(&param::NAME)?, None)
}
fn sendmails(ctx: &C<'_>) -> Result<Vec<NotificationEntry>, ApiError> {
    list(ctx, &SENDMAIL)
}
fn sendmail(ctx: &C<'_>) -> Result<NotificationEntry, ApiError> {
    find(ctx, &SENDMAIL)
}
fn create_sendmail(ctx: &C<'_>) -> Result<(), ApiError> {
    check_target_modify(ctx)?;
    store(ctx, &SENDMAIL, true)
}
fn update_sendmail(ctx: &C<'_>) -> Result<(), ApiError> {
    check_target_modify(ctx)?;
    store(ctx, &SENDMAIL, false)
}
fn delete_sendmail(ctx: &C<'_>) -> Result<(), ApiError> {
    remove(ctx, &SENDMAIL)
}
fn matchers(ctx: &C<'_>) -> Result<Vec<NotificationEntry>, ApiError> {
    list(ctx, &MATCHER)
}
fn matcher(ctx: &C<'_>) -> Result<NotificationEntry, ApiError> {
    find(ctx, &MATCHER)
}
fn create_matcher(ctx: &C<'_>) -> Result<(), ApiError> {
    store(ctx, &MATCHER, true)
}
fn update_matcher(ctx: &C<'_>) -> Result<(), ApiError> {
    store(ctx, &MATCHER, false)
}
fn delete_matcher(ctx: &C<'_>) -> Result<(), ApiError> {
    remove(ctx, &MATCHER)
}

/// The parameters of this file's endpoints, each declared once.
pub(crate) mod param {
    use super::*;

    const CHECKED_URL: ParamType = ParamType::Format {
        name: "http-url",
        check: cfg::check_url,
    };
    pub const NAME: Param = Param::required(
        "name",
        ParamType::Format {
            name: "pve-configid",
            check: cfg::entry_name,
        },
        "Name of the target or matcher.",
    );
    pub const URL: Param = Param::optional("url", CHECKED_URL, "Webhook: the URL (a template).");
    pub const METHOD: Param = Param::optional(
        "method",
        ParamType::Enum(&["post", "put", "get"]),
        "Webhook: the HTTP method.",
    );
    pub const HEADER: Param = Param::optional(
        "header",
        ParamType::List(&STRING),
        "Webhook: headers, each name=<name>,value=<base64 template>.",
    );
    pub const BODY: Param = Param::optional(
        "body",
        STRING,
        "Webhook: the body template, base64-encoded.",
    );
    pub const SECRET: Param = Param::optional(
        "secret",
        ParamType::List(&STRING),
        "Webhook: secrets for the templates, each name=<name>,value=<base64>.",
    );
    pub const MAILTO: Param = Param::optional(
        "mailto",
        ParamType::List(&EMAIL),
        "Sendmail: recipient addresses.",
    );
    pub const MAILTO_USER: Param = Param::optional(
        "mailto-user",
        ParamType::List(&USERID),
        "Sendmail: users whose e-mail address receives it.",
    );
    pub const FROM_ADDRESS: Param = Param::optional("from-address", EMAIL, "Sendmail: the sender.");
    pub const AUTHOR: Param = Param::optional("author", STRING, "Sendmail: the sender's name.");
    pub const TARGET: Param = Param::optional(
        "target",
        ParamType::List(&ParamType::Format {
            name: "pve-configid",
            check: cfg::entry_name,
        }),
        "Matcher: the targets it sends to.",
    );
    pub const MATCH_SEVERITY: Param = Param::optional(
        "match-severity",
        ParamType::List(&ParamType::Enum(cfg::SEVERITIES)),
        "Matcher: these severities.",
    );
    pub const MATCH_FIELD: Param = Param::optional(
        "match-field",
        ParamType::List(&ParamType::Format {
            name: "notification-field-match",
            check: cfg::FieldMatch::check,
        }),
        "Matcher: exact:FIELD=VALUE[,VALUE] or regex:FIELD=REGEX.",
    );
    pub const MODE: Param = Param::optional(
        "mode",
        ParamType::Enum(&["all", "any"]),
        "Matcher: all conditions (default) or any.",
    );
    pub const INVERT_MATCH: Param =
        Param::optional("invert-match", BOOL, "Matcher: invert the result.");
    pub const COMMENT: Param = Param::optional("comment", TEXT, "Free text.");
    pub const DISABLE: Param = Param::optional("disable", BOOL, "Disable it.");
    pub const DELETE: Param =
        Param::optional("delete", STRING, "Properties to remove (comma-separated).");
    pub const DIGEST: Param = Param::optional(
        "digest",
        STRING,
        "Refuse the change if notifications.cfg changed since this digest.",
    );
}

/// The endpoints of this file.
pub fn endpoints() -> Vec<Endpoint<Node>> {
    use Method::*;
    let change = |extra: &[Param], kind: &Kind, create: bool| -> Vec<Param> {
        let mut params = vec![param::NAME];
        params.extend(kind.params.iter().cloned());
        params.extend(extra.iter().cloned());
        if !create {
            params.extend([param::DELETE, param::DIGEST]);
        }
        params
    };
    vec![
        Endpoint::new(
            Get,
            "/cluster/notifications",
            "Notifications index.",
            Permission::Authenticated,
            index,
        ),
        Endpoint::new(
            Get,
            "/cluster/notifications/endpoints",
            "Endpoint types.",
            Permission::Authenticated,
            endpoints_index,
        ),
        Endpoint::new(
            Get,
            "/cluster/notifications/targets",
            "All targets.",
            AUDIT,
            targets,
        ),
        Endpoint::new(
            Post,
            "/cluster/notifications/targets/{name}/test",
            "Send a test notification to a target.",
            Permission::Privs {
                path: "/mapping/notifications",
                privs: &["Mapping.Modify", "Mapping.Audit", "Mapping.Use"],
                any: true,
            },
            test_target,
        )
        .params(vec![param::NAME]),
        Endpoint::new(
            Get,
            "/cluster/notifications/endpoints/webhook",
            "Webhook targets.",
            AUDIT,
            webhooks,
        ),
        Endpoint::new(
            Post,
            "/cluster/notifications/endpoints/webhook",
            "Add a webhook target.",
            TARGET_MODIFY,
            create_webhook,
        )
        .params(change(&[param::SECRET], &WEBHOOK, true)),
        Endpoint::new(
            Get,
            "/cluster/notifications/endpoints/webhook/{name}",
            "A webhook target.",
            AUDIT,
            webhook,
        )
        .params(vec![param::NAME]),
        Endpoint::new(
            Put,
            "/cluster/notifications/endpoints/webhook/{name}",
            "Change a webhook target.",
            TARGET_MODIFY,
            update_webhook,
        )
        .params(change(&[param::SECRET], &WEBHOOK, false)),
        Endpoint::new(
            Delete,
            "/cluster/notifications/endpoints/webhook/{name}",
            "Remove a webhook target.",
            MODIFY,
            delete_webhook,
        )
        .params(vec![param::NAME]),
        Endpoint::new(
            Get,
            "/cluster/notifications/endpoints/sendmail",
            "Sendmail targets.",
            AUDIT,
            sendmails,
        ),
        Endpoint::new(
            Post,
            "/cluster/notifications/endpoints/sendmail",
            "Add a sendmail target.",
            TARGET_MODIFY,
            create_sendmail,
        )
        .params(change(&[], &SENDMAIL, true)),
        Endpoint::new(
            Get,
            "/cluster/notifications/endpoints/sendmail/{name}",
            "A sendmail target.",
            AUDIT,
            sendmail,
        )
        .params(vec![param::NAME]),
        Endpoint::new(
            Put,
            "/cluster/notifications/endpoints/sendmail/{name}",
            "Change a sendmail target.",
            TARGET_MODIFY,
            update_sendmail,
        )
        .params(change(&[], &SENDMAIL, false)),
        Endpoint::new(
            Delete,
            "/cluster/notifications/endpoints/sendmail/{name}",
            "Remove a sendmail target.",
            MODIFY,
            delete_sendmail,
        )
        .params(vec![param::NAME]),
        Endpoint::new(
            Get,
            "/cluster/notifications/matchers",
            "Matchers.",
            AUDIT,
            matchers,
        ),
        Endpoint::new(
            Post,
            "/cluster/notifications/matchers",
            "Add a matcher.",
            MODIFY,
            create_matcher,
        )
        .params(change(&[], &MATCHER, true)),
        Endpoint::new(
            Get,
            "/cluster/notifications/matchers/{name}",
            "A matcher.",
            AUDIT,
            matcher,
        )
        .params(vec![param::NAME]),
        Endpoint::new(
            Put,
            "/cluster/notifications/matchers/{name}",
            "Change a matcher.",
            MODIFY,
            update_matcher,
        )
        .params(change(&[], &MATCHER, false)),
        Endpoint::new(
            Delete,
            "/cluster/notifications/matchers/{name}",
            "Remove a matcher.",
            MODIFY,
            delete_matcher,
        )
        .params(vec![param::NAME]),
    ]
}
