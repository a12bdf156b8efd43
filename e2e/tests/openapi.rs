//! The OpenAPI document describes replies as well as parameters: every GET endpoint has a
//! reply schema (from its handler's return type), every `$ref` resolves, and what a
//! running daemon answers matches the schema it publishes.

use ferrox_api::router::Method;
use ferrox_e2e::*;
use serde_json::Value;

fn document() -> Value {
    ferrox_api::openapi::document(&ferrox_node::api::endpoints())
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("reference outside the components: {r}"));
            let target = &doc["components"]["schemas"][name];
            assert!(target.is_object(), "dangling reference {r}");
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Whether a schema says what a reply holds: a scalar type, null, an array of described
/// items, or an object with properties or a value schema. `{}` and a bare
/// `{"type": "object"}` say nothing.
fn describes(doc: &Value, schema: &Value) -> bool {
    let schema = resolve(doc, schema);
    if let Some(alternatives) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        return !alternatives.is_empty() && alternatives.iter().all(|s| describes(doc, s));
    }
    match schema["type"].as_str() {
        Some("array") => describes(doc, &schema["items"]),
        // Fields, or a map (a config file's keys: guest config, datacenter options).
        Some("object") => {
            schema["properties"]
                .as_object()
                .is_some_and(|p| !p.is_empty())
                || !schema["additionalProperties"].is_null()
        }
        Some(_) => true,
        None => false,
    }
}

#[test]
fn every_get_endpoint_has_a_reply_schema() {
    let doc = document();
    let endpoints = ferrox_node::api::endpoints();
    let gets: Vec<_> = endpoints
        .iter()
        .filter(|e| e.method == Method::Get)
        .collect();
    assert!(gets.len() > 40, "only {} GET endpoints", gets.len());
    let mut missing = Vec::new();
    for e in gets {
        let reply = &doc["paths"][e.path]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["properties"]["data"];
        if !describes(&doc, reply) {
            missing.push(format!("{}: {reply}", e.path));
        }
    }
    assert!(
        missing.is_empty(),
        "GET endpoints without a reply schema:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_resource_row_has_one_shape() {
    let doc = document();
    let row = |path: &str| {
        let data = &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["properties"]["data"];
        data["items"]["$ref"].as_str().map(String::from)
    };
    let resources = row("/cluster/resources").expect("a typed row");
    assert_eq!(row("/nodes").as_deref(), Some(resources.as_str()));
    let pool_members =
        &resolve(&doc, &doc["components"]["schemas"]["Pool"])["properties"]["members"];
    assert!(
        pool_members.to_string().contains(&resources),
        "{pool_members}"
    );
}

/// Checks `value` against the subset of JSON Schema the document uses; returns the
/// first mismatch with its location.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    if let Some(alternatives) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        return match alternatives
            .iter()
            .any(|s| check(doc, s, value, at).is_ok())
        {
            true => Ok(()),
            false => Err(format!("{at}: {value} matches no alternative")),
        };
    }
    let fits = match schema["type"].as_str() {
        None => true,
        Some("null") => value.is_null(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("array") => {
            let Some(items) = value.as_array() else {
                return Err(format!("{at}: expected an array, got {value}"));
            };
            for (i, item) in items.iter().enumerate() {
                check(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
            }
            true
        }
        Some("object") => {
            let Some(fields) = value.as_object() else {
                return Err(format!("{at}: expected an object, got {value}"));
            };
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !fields.contains_key(name) {
                    return Err(format!("{at}: required field '{name}' is missing"));
                }
            }
            for (name, field) in fields {
                let declared = &schema["properties"][name];
                let field_schema = if declared.is_object() {
                    declared
                } else if schema["additionalProperties"].is_object() {
                    &schema["additionalProperties"]
                } else if schema["additionalProperties"] == false {
                    return Err(format!("{at}: field '{name}' is not declared"));
                } else {
                    continue;
                };
                check(doc, field_schema, field, &format!("{at}.{name}"))?;
            }
            true
        }
        Some(other) => return Err(format!("{at}: unknown schema type {other}")),
    };
    if fits {
        Ok(())
    } else {
        Err(format!("{at}: {value} is not of type {}", schema["type"]))
    }
}

#[test]
fn replies_match_the_published_schemas() {
    let d = start_daemon("tcg");
    let auth = d.login();
    let none = Auth::default();
    let doc = d.request("GET", "/openapi", &none, &[]).body["data"].clone();
    let r = d.request(
        "POST",
        "/nodes/pve1/qemu",
        &auth,
        &[("vmid", "100"), ("name", "shape"), ("memory", "64")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let upid = r.body["data"].as_str().unwrap().to_string();
    assert_eq!(d.wait_task(&auth, &upid)["exitstatus"], "OK");
    let encoded_upid = upid.replace(':', "%3A");
    let calls = [
        ("/version", "/version".to_string()),
        ("/nodes", "/nodes".to_string()),
        ("/nodes/{node}/status", "/nodes/pve1/status".to_string()),
        ("/cluster/resources", "/cluster/resources".to_string()),
        ("/cluster/status", "/cluster/status".to_string()),
        ("/cluster/options", "/cluster/options".to_string()),
        (
            "/cluster/ha/status/current",
            "/cluster/ha/status/current".to_string(),
        ),
        ("/nodes/{node}/qemu", "/nodes/pve1/qemu".to_string()),
        (
            "/nodes/{node}/qemu/{vmid}/config",
            "/nodes/pve1/qemu/100/config".to_string(),
        ),
        (
            "/nodes/{node}/qemu/{vmid}/status/current",
            "/nodes/pve1/qemu/100/status/current".to_string(),
        ),
        (
            "/nodes/{node}/qemu/{vmid}/pending",
            "/nodes/pve1/qemu/100/pending".to_string(),
        ),
        ("/nodes/{node}/storage", "/nodes/pve1/storage".to_string()),
        ("/storage", "/storage".to_string()),
        ("/nodes/{node}/tasks", "/nodes/pve1/tasks".to_string()),
        (
            "/nodes/{node}/tasks/{upid}/status",
            format!("/nodes/pve1/tasks/{encoded_upid}/status"),
        ),
        (
            "/nodes/{node}/tasks/{upid}/log",
            format!("/nodes/pve1/tasks/{encoded_upid}/log"),
        ),
        ("/access/users", "/access/users".to_string()),
        (
            "/access/users/{userid}",
            "/access/users/root@pam".to_string(),
        ),
        ("/access/roles", "/access/roles".to_string()),
        ("/access/acl", "/access/acl".to_string()),
        ("/access/domains", "/access/domains".to_string()),
        ("/access/permissions", "/access/permissions".to_string()),
        ("/pools", "/pools".to_string()),
    ];
    for (template, path) in calls {
        let r = d.request("GET", &path, &auth, &[]);
        assert_eq!(r.status, 200, "GET {path}: {r:?}");
        let schema = &doc["paths"][template]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"]["properties"]["data"];
        assert!(schema.is_object(), "no schema for {template}");
        if let Err(mismatch) = check(&doc, schema, &r.body["data"], "data") {
            panic!(
                "GET {path} does not match its schema: {mismatch}\n{}",
                r.body["data"]
            );
        }
    }
}

#[test]
fn the_schema_check_refuses_a_wrong_reply() {
    let doc = document();
    let row = serde_json::json!({"$ref": "#/components/schemas/Resource"});
    let good = serde_json::json!({"id": "qemu/100", "type": "qemu", "vmid": 100});
    assert_eq!(check(&doc, &row, &good, "data"), Ok(()));
    let wrong_type = serde_json::json!({"id": "qemu/100", "type": "qemu", "vmid": "100"});
    assert!(check(&doc, &row, &wrong_type, "data")
        .unwrap_err()
        .contains("data.vmid"));
    let missing = serde_json::json!({"type": "qemu"});
    assert!(check(&doc, &row, &missing, "data")
        .unwrap_err()
        .contains("'id'"));
}

#[test]
fn each_parameter_is_declared_once_per_endpoint_and_path_variables_are_declared() {
    for e in ferrox_node::api::endpoints() {
        let mut seen = std::collections::BTreeSet::new();
        for p in &e.params {
            assert!(
                seen.insert(p.name),
                "{} {}: '{}' declared twice",
                e.method.as_str(),
                e.path,
                p.name
            );
        }
        for var in e
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            let declared = e.params.iter().find(|p| p.name == var);
            assert!(
                declared.is_some_and(|p| !p.optional),
                "{} {}: path variable '{var}' is not a required parameter",
                e.method.as_str(),
                e.path
            );
        }
    }
}
