//! The OpenAPI 3 document, generated from the same declarations that validate requests.

use crate::router::{Endpoint, Method, Permission};
use crate::schema::{json_schema, Extra};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

/// The permission of an endpoint in words (the OpenAPI document and docs/security.md).
pub fn permission_text(p: &Permission) -> String {
    match p {
        Permission::World => "none (no authentication)".into(),
        Permission::Authenticated => "any authenticated user (results filtered)".into(),
        Permission::Root => "root@pam only".into(),
        Permission::Handler(text) => format!("checked by the handler: {text}"),
        Permission::Privs { path, privs, any } => format!(
            "{} {} on {path}",
            if *any { "any of" } else { "all of" },
            privs.join(", ")
        ),
    }
}

/// The privilege table of docs/security.md: one row per endpoint, from its declaration.
pub fn permission_table<S>(endpoints: &[Endpoint<S>]) -> String {
    let mut rows: Vec<(&str, &str, String, bool)> = endpoints
        .iter()
        .map(|e| {
            (
                e.path,
                e.method.as_str(),
                permission_text(&e.permission),
                e.allow_token,
            )
        })
        .collect();
    rows.sort();
    let mut out =
        String::from("| endpoint | method | required | API tokens |\n|---|---|---|---|\n");
    for (path, method, perm, token) in rows {
        out.push_str(&format!(
            "| `{path}` | {method} | {} | {} |\n",
            perm.replace('|', "\\|"),
            if token { "yes" } else { "no" }
        ));
    }
    out
}

/// The document: paths with parameters and reply schemas; the reply types are shared
/// under `components/schemas`.
pub fn document<S>(endpoints: &[Endpoint<S>]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for e in endpoints {
        let path_vars: Vec<&str> = e
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let mut parameters = Vec::new();
        let mut body_props = Map::new();
        let mut required = Vec::new();
        for p in &e.params {
            let schema = json_schema(&p.ty);
            if path_vars.contains(&p.name) {
                parameters.push(json!({"name": p.name, "in": "path", "required": true,
                    "description": p.description, "schema": schema}));
            } else if matches!(e.method, Method::Get | Method::Delete) {
                parameters.push(
                    json!({"name": p.name, "in": "query", "required": !p.optional,
                    "description": p.description, "schema": schema}),
                );
            } else {
                let mut s = schema;
                s["description"] = json!(p.description);
                body_props.insert(p.name.to_string(), s);
                if !p.optional {
                    required.push(p.name);
                }
            }
        }
        let data_schema = (e.reply_schema)(&mut generator).to_value();
        let mut op = json!({
            "summary": e.description,
            "description": format!("Permission: {}.", permission_text(&e.permission)),
            "parameters": parameters,
            "responses": {
                "200": {"description": "success", "content": {"application/json": {"schema":
                    {"type": "object", "properties": {"data": data_schema}}}}},
                "400": {"description": "Parameter verification failed (see `errors`)"},
                "401": {"description": "Authentication failed"},
                "403": {"description": "Permission check failed"},
            },
        });
        if e.permission == Permission::World {
            op["security"] = json!([]);
        }
        if matches!(e.method, Method::Post | Method::Put) {
            let mut schema = json!({"type": "object", "properties": body_props,
                "additionalProperties": e.extra == Extra::GuestConfigKeys});
            if !required.is_empty() {
                schema["required"] = json!(required);
            }
            op["requestBody"] = json!({"content": {
                "application/x-www-form-urlencoded": {"schema": schema},
                "application/json": {"schema": schema},
            }});
        }
        let entry = paths.entry(e.path.to_string()).or_insert_with(|| json!({}));
        entry[e.method.as_str().to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Ferrox API (Proxmox VE compatible)", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/api2/json"}],
        "components": {"schemas": generator.take_definitions(true), "securitySchemes": {
            "ticket": {"type": "apiKey", "in": "cookie", "name": "PVEAuthCookie"},
            "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                      "description": "PVEAPIToken=USER@REALM!TOKENID=SECRET"},
        }},
        "security": [{"ticket": []}, {"token": []}],
        "paths": paths,
    })
}
