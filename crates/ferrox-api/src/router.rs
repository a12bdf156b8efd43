//! Endpoints and request handling, independent of the HTTP library: a request comes in as
//! method, path, headers and body, and leaves as status, reason phrase and body. Each
//! endpoint declares its parameters and its permission next to its handler.

use crate::auth::{Auth, Caller};
use crate::error::ApiError;
use crate::rbac;
use crate::schema::{validate, Extra, Param, Params};
use crate::tasks::TaskStore;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn parse(text: &str) -> Option<Method> {
        match text {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "PUT" => Some(Method::Put),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }
}

/// Who may call an endpoint, read where the endpoint is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// No authentication (login).
    World,
    /// Any authenticated user; the handler filters what it returns.
    Authenticated,
    /// Privileges on an ACL path; `{param}` is replaced by the request's parameter.
    Privs {
        path: &'static str,
        privs: &'static [&'static str],
        any: bool,
    },
    /// `root@pam` only (Proxmox VE: no `permissions` declared).
    Root,
    /// Any authenticated user reaches the handler, which checks what the text says (it
    /// depends on the request's data: the user's groups, the ACL path's kind, ...).
    Handler(&'static str),
}

/// The state every API needs: authentication, tasks, the local node.
pub trait ApiState: Send + Sync + 'static {
    fn auth(&self) -> &Auth;
    fn tasks(&self) -> &Arc<TaskStore>;
    fn node_name(&self) -> &str;
    /// Proxmox VE delays every 401 by 3 s; tests set this to zero.
    fn unauthorized_delay(&self) -> Duration {
        Duration::from_secs(3)
    }
    /// Answers a request for `/nodes/{node}/...` of another node by forwarding it there
    /// unchanged (credentials included: tickets and tokens are valid cluster-wide).
    /// `None` handles it here (an unknown node gets Proxmox VE's 595).
    fn proxy(&self, _node: &str, _req: &RawRequest) -> Option<RawResponse> {
        None
    }
    /// Where the HTTP layer stores uploaded files (best on the file system of the
    /// storages, so that handlers can move them in).
    fn upload_dir(&self) -> std::path::PathBuf {
        std::env::temp_dir()
    }
}

/// A handler's result as the response writer needs it: the `data` (already serialized)
/// and, for paged lists, the `total`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub data: String,
    pub total: Option<usize>,
    /// Set by a websocket endpoint that accepted the connection.
    pub upgrade: Option<crate::websocket::ConsoleTarget>,
}

/// What a handler returns: a typed reply (from `ferrox_api_types`), `()` for `null`,
/// a `Upid`, a `String`. Its schema is the endpoint's reply schema in the OpenAPI
/// document, so the document cannot differ from what the handler sends.
pub trait ApiReply {
    fn into_reply(self) -> Result<Reply, ApiError>;
    fn reply_schema(generator: &mut SchemaGenerator) -> Schema;
}

impl<T: Serialize + JsonSchema> ApiReply for T {
    fn into_reply(self) -> Result<Reply, ApiError> {
        let data = serde_json::to_string(&self).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Reply {
            data,
            total: None,
            upgrade: None,
        })
    }
    fn reply_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<T>()
    }
}

/// A page of a longer list, with the list's full length as `total`.
pub struct Paged<T> {
    pub rows: Vec<T>,
    pub total: usize,
}

impl<T: Serialize + JsonSchema> ApiReply for Paged<T> {
    fn into_reply(self) -> Result<Reply, ApiError> {
        let mut reply = self.rows.into_reply()?;
        reply.total = Some(self.total);
        Ok(reply)
    }
    fn reply_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<Vec<T>>()
    }
}

/// A reply of type `T` already serialized (a listing of 10 000 rows that is assembled
/// from parts, some of them answered by other nodes, without parsing them again).
pub struct Serialized<T> {
    json: String,
    shape: std::marker::PhantomData<T>,
}

impl<T: Serialize> Serialized<T> {
    /// `json` must be `T` serialized; `Serialized::of` makes sure of it.
    pub fn trusted(json: String) -> Serialized<T> {
        Serialized {
            json,
            shape: std::marker::PhantomData,
        }
    }
}

impl<T: JsonSchema> ApiReply for Serialized<T> {
    fn into_reply(self) -> Result<Reply, ApiError> {
        Ok(Reply {
            data: self.json,
            total: None,
            upgrade: None,
        })
    }
    fn reply_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<T>()
    }
}

pub struct Ctx<'a, S> {
    pub state: &'a Arc<S>,
    /// `None` only for `Permission::World` endpoints.
    pub caller: Option<&'a Caller>,
    pub params: Params,
    /// The client's address (login throttling), when the HTTP layer knows it.
    pub peer: Option<std::net::IpAddr>,
    /// The file of a multipart upload, received by the HTTP layer (upload endpoints).
    pub upload: Option<&'a Upload>,
}

impl<S: ApiState> Ctx<'_, S> {
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller
            .ok_or_else(|| ApiError::unauthorized("No ticket"))
    }

    pub fn has(&self, path: &str, privs: &[&str], any: bool) -> bool {
        self.caller
            .is_some_and(|c| rbac::check(&self.state.auth().user_config(), c, path, privs, any))
    }

    pub fn require(&self, path: &str, privs: &[&str], any: bool) -> Result<(), ApiError> {
        if self.has(path, privs, any) {
            Ok(())
        } else {
            Err(ApiError::forbidden(path, privs))
        }
    }
}

pub type Handler<S> = Box<dyn Fn(&Ctx<'_, S>) -> Result<Reply, ApiError> + Send + Sync>;

pub struct Endpoint<S> {
    pub method: Method,
    /// Below `/api2/json`, e.g. `/nodes/{node}/qemu/{vmid}/config`.
    pub path: &'static str,
    pub description: &'static str,
    pub params: Vec<Param>,
    pub extra: Extra,
    pub permission: Permission,
    /// The schema of the reply's `data`, from the handler's return type.
    pub reply_schema: fn(&mut SchemaGenerator) -> Schema,
    /// Proxmox VE refuses API tokens on a few endpoints (login, password change).
    pub allow_token: bool,
    /// Takes a `multipart/form-data` body with one file (`upload`).
    pub upload: bool,
    pub handler: Handler<S>,
}

impl<S: 'static> Endpoint<S> {
    pub fn new<T: ApiReply + 'static>(
        method: Method,
        path: &'static str,
        description: &'static str,
        permission: Permission,
        handler: fn(&Ctx<'_, S>) -> Result<T, ApiError>,
    ) -> Endpoint<S> {
        Endpoint {
            method,
            path,
            description,
            params: Vec::new(),
            extra: Extra::None,
            permission,
            reply_schema: T::reply_schema,
            allow_token: true,
            upload: false,
            handler: Box::new(move |ctx| handler(ctx)?.into_reply()),
        }
    }
}

impl<S> Endpoint<S> {
    pub fn params(mut self, params: Vec<Param>) -> Self {
        self.params = params;
        self
    }
    pub fn extra(mut self, extra: Extra) -> Self {
        self.extra = extra;
        self
    }
    pub fn no_token(mut self) -> Self {
        self.allow_token = false;
        self
    }
    /// Accepts a multipart body whose file the HTTP layer stores before the handler runs
    /// (the handler finds it in `Ctx::upload`).
    pub fn upload(mut self) -> Self {
        self.upload = true;
        self
    }

    /// Matches `segments` against the path template; returns the path parameters.
    fn matches(&self, segments: &[String]) -> Option<BTreeMap<String, String>> {
        let template: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        if template.len() != segments.len() {
            return None;
        }
        let mut vars = BTreeMap::new();
        for (t, s) in template.iter().zip(segments) {
            match t.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                Some(var) => {
                    if s.is_empty() {
                        return None;
                    }
                    vars.insert(var.to_string(), s.clone());
                }
                None if t == s => {}
                None => return None,
            }
        }
        Some(vars)
    }
}

/// A request as the HTTP layer hands it over.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    pub method: String,
    /// The path without the query string, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: Option<std::net::IpAddr>,
    /// The file part of a multipart upload, already on disk; the other parts are in
    /// `body`, form-encoded.
    pub upload: Option<Upload>,
}

/// A file a client uploaded, as the HTTP layer stored it: the handler moves it away or
/// the HTTP layer deletes it after the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The name of the form field that carried the file.
    pub field: String,
    /// The file name the client gave (unchecked: handlers parse it).
    pub file_name: String,
    /// Where it is stored, in the node's upload folder.
    pub path: std::path::PathBuf,
    pub size: u64,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    /// Wait this long before answering (Proxmox VE delays every 401); the HTTP layer
    /// waits without holding a thread.
    pub delay: Option<Duration>,
    /// The first line of the error message (Proxmox VE clients show only this).
    pub reason: Option<String>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// A websocket request accepted by its endpoint: where the HTTP layer relays it.
    pub upgrade: Option<crate::websocket::Upgrade>,
}

pub struct Api<S> {
    pub state: Arc<S>,
    pub endpoints: Vec<Endpoint<S>>,
    /// Generated once from `endpoints`.
    openapi: String,
    /// Paths outside `/api2` that answer an endpoint's text reply as a plain body.
    text_routes: Vec<TextRoute>,
}

/// `GET <path>` answers the `String` reply of the endpoint at `endpoint` (below
/// `/api2/json`) as a plain body of `content_type` (Prometheus scrapes `/metrics`).
/// Authentication and permissions are the endpoint's.
struct TextRoute {
    path: &'static str,
    endpoint: &'static str,
    content_type: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Extjs,
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn add_param(map: &mut BTreeMap<String, Value>, key: String, value: Value) {
    match map.get_mut(&key) {
        // Repeated form keys become an array.
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            map.insert(key, value);
        }
    }
}

fn form_params(text: &[u8]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(text) {
        add_param(&mut map, k.into_owned(), Value::String(v.into_owned()));
    }
    map
}

/// Extracts `KEY=value` from a cookie or authorization header (Proxmox VE's regex
/// `(?:^|\s)KEY(?:=| )([^;]*)`), percent-decoded.
fn auth_value(header: &str, key: &str) -> Option<String> {
    let mut rest = header;
    while let Some(pos) = rest.find(key) {
        let before_ok = pos == 0 || rest[..pos].ends_with([' ', ';', '\t']);
        let after = &rest[pos + key.len()..];
        if before_ok && (after.starts_with('=') || after.starts_with(' ')) {
            let value = after[1..].split(';').next().unwrap_or("");
            return Some(percent_decode(value.trim()));
        }
        rest = after;
    }
    None
}

enum Credentials {
    None,
    Ticket(String),
    Token(String),
}

impl RawResponse {
    pub fn json(status: u16, reason: Option<String>, body: String) -> RawResponse {
        RawResponse {
            status,
            delay: None,
            reason,
            content_type: "application/json;charset=UTF-8",
            body: body.into_bytes(),
            upgrade: None,
        }
    }
}

impl<S: ApiState> Api<S> {
    pub fn new(state: Arc<S>, endpoints: Vec<Endpoint<S>>) -> Api<S> {
        let openapi = crate::openapi::document(&endpoints).to_string();
        Api {
            state,
            endpoints,
            openapi,
            text_routes: Vec::new(),
        }
    }

    /// Serves the text reply of `endpoint` at `path` (see `TextRoute`).
    pub fn text_route(
        mut self,
        path: &'static str,
        endpoint: &'static str,
        content_type: &'static str,
    ) -> Self {
        self.text_routes.push(TextRoute {
            path,
            endpoint,
            content_type,
        });
        self
    }

    fn respond(&self, format: Format, result: Result<Reply, ApiError>) -> RawResponse {
        let extjs = format == Format::Extjs;
        match result {
            Ok(reply) => {
                let data = reply.data;
                let total = reply
                    .total
                    .map(|t| format!(",\"total\":{t}"))
                    .unwrap_or_default();
                let success = if extjs { ",\"success\":1" } else { "" };
                RawResponse {
                    upgrade: reply.upgrade.map(crate::websocket::Upgrade::Console),
                    ..RawResponse::json(200, None, format!("{{\"data\":{data}{total}{success}}}"))
                }
            }
            Err(e) => {
                let delay = (e.status == 401).then(|| self.state.unauthorized_delay());
                let reason = e.message.lines().next().map(str::to_string);
                if e.empty_body {
                    return RawResponse {
                        delay,
                        ..RawResponse::json(e.status, reason, String::new())
                    };
                }
                let mut body = json!({ "data": null, "message": e.body_message() });
                if !e.errors.is_empty() {
                    body["errors"] = json!(e.errors);
                }
                // ExtJS clients read the status from the body; authentication stays HTTP.
                if extjs && e.status != 401 {
                    body["success"] = json!(0);
                    body["status"] = json!(e.status);
                    return RawResponse::json(200, None, body.to_string());
                }
                RawResponse {
                    delay,
                    ..RawResponse::json(e.status, reason, body.to_string())
                }
            }
        }
    }

    /// Handles one request end to end. Blocking: call it off the async executor.
    pub fn handle(&self, req: &RawRequest) -> RawResponse {
        if let Some(route) = self
            .text_routes
            .iter()
            .find(|r| r.path == req.path && req.method == "GET")
        {
            return match self.dispatch(req, route.endpoint) {
                Ok(reply) => RawResponse {
                    content_type: route.content_type,
                    body: serde_json::from_str::<String>(&reply.data)
                        .unwrap_or_default()
                        .into_bytes(),
                    ..RawResponse::json(200, None, String::new())
                },
                Err(e) => self.respond(Format::Json, Err(e)),
            };
        }
        let rest = req.path.strip_prefix("/api2/").unwrap_or("");
        let (format, sub) = match rest.split_once('/') {
            Some(("json", sub)) => (Format::Json, sub),
            Some(("extjs", sub)) => (Format::Extjs, sub),
            _ => (Format::Json, ""),
        };
        if sub.is_empty() && !matches!(rest, "json" | "extjs") {
            return self.respond(format, Err(ApiError::new(501, "no such uri")));
        }
        if sub.trim_end_matches('/') == "openapi" && req.method == "GET" {
            // The API's own description; public, like Proxmox VE's apidoc.
            let reply = Reply {
                data: self.openapi.clone(),
                total: None,
                upgrade: None,
            };
            return self.respond(format, Ok(reply));
        }
        if let Some(rest) = sub.strip_prefix("nodes/") {
            let node = rest.split('/').next().unwrap_or("");
            if !node.is_empty() && node != self.state.node_name() {
                if let Some(resp) = self.state.proxy(node, req) {
                    return resp;
                }
            }
        }
        let result = self.dispatch(req, sub);
        self.respond(format, result)
    }

    /// Before the HTTP layer stores an upload: the route takes one and the caller is
    /// authenticated (so that nobody fills the node's disk anonymously). The refusal, if
    /// any; the privilege check comes with the request itself.
    pub fn refuse_upload(&self, req: &RawRequest) -> Option<RawResponse> {
        let format = if req.path.starts_with("/api2/extjs") {
            Format::Extjs
        } else {
            Format::Json
        };
        let sub = req
            .path
            .strip_prefix("/api2/json")
            .or_else(|| req.path.strip_prefix("/api2/extjs"))
            .unwrap_or("");
        let segments: Vec<String> = sub
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let shown_path = format!("/{}", segments.join("/"));
        let refusal = match self
            .endpoints
            .iter()
            .filter(|e| e.method == Method::Post && e.upload)
            .find(|e| e.matches(&segments).is_some())
        {
            None => upload_refused(&shown_path),
            Some(endpoint) => self
                .authenticate(req, Method::Post, endpoint, &shown_path)
                .err()?,
        };
        Some(self.respond(format, Err(refusal)))
    }

    fn credentials(&self, req: &RawRequest) -> Credentials {
        if let Some(t) = req
            .header("cookie")
            .and_then(|c| auth_value(c, "PVEAuthCookie"))
        {
            return Credentials::Ticket(t);
        }
        if let Some(auth) = req.header("authorization") {
            if let Some(t) = auth_value(auth, "PVEAuthCookie") {
                return Credentials::Ticket(t);
            }
            if let Some(t) = auth.trim().strip_prefix("PVEAPIToken") {
                return Credentials::Token(t[1.min(t.len())..].to_string());
            }
        }
        Credentials::None
    }

    fn authenticate(
        &self,
        req: &RawRequest,
        method: Method,
        endpoint: &Endpoint<S>,
        shown_path: &str,
    ) -> Result<Option<Caller>, ApiError> {
        let auth = self.state.auth();
        let creds = self.credentials(req);
        if endpoint.permission == Permission::World {
            if matches!(creds, Credentials::Token(_)) && !endpoint.allow_token {
                return Err(token_refused(shown_path));
            }
            return Ok(match creds {
                Credentials::Ticket(t) => auth.verify_ticket(&t).map(|userid| Caller {
                    userid,
                    token: None,
                }),
                Credentials::Token(t) => auth.verify_token(&t),
                Credentials::None => None,
            });
        }
        match creds {
            Credentials::None => Err(ApiError::unauthorized("No ticket")),
            Credentials::Ticket(ticket) => {
                let userid = auth
                    .verify_ticket(&ticket)
                    .ok_or_else(|| ApiError::unauthorized("Authentication failed!"))?;
                if method != Method::Get {
                    let csrf = req.header("csrfpreventiontoken").unwrap_or("");
                    if !auth.verify_csrf(&userid, csrf) {
                        return Err(ApiError::unauthorized(
                            "Permission denied - invalid csrf token",
                        ));
                    }
                }
                Ok(Some(Caller {
                    userid,
                    token: None,
                }))
            }
            Credentials::Token(value) => {
                let caller = auth
                    .verify_token(&value)
                    .ok_or_else(|| ApiError::unauthorized("Authentication failed!"))?;
                if !endpoint.allow_token {
                    return Err(token_refused(shown_path));
                }
                Ok(Some(caller))
            }
        }
    }

    fn raw_params(
        &self,
        req: &RawRequest,
        method: Method,
    ) -> Result<BTreeMap<String, Value>, ApiError> {
        let mut params = BTreeMap::new();
        if !req.body.is_empty() {
            if matches!(method, Method::Get | Method::Delete) {
                return Err(ApiError::new(
                    501,
                    format!("Unexpected content for method '{}'", method.as_str()),
                ));
            }
            let ctype = req
                .header("content-type")
                .unwrap_or("application/x-www-form-urlencoded");
            let base = ctype.split(';').next().unwrap_or("").trim();
            match base {
                "application/x-www-form-urlencoded" | "" => params = form_params(&req.body),
                "application/json" => {
                    let value: Value = serde_json::from_slice(&req.body).map_err(|e| {
                        ApiError::new(400, format!("unable to parse JSON body: {e}"))
                    })?;
                    match value {
                        Value::Object(map) => params.extend(map),
                        Value::Null => {}
                        _ => return Err(ApiError::new(400, "JSON body must be an object")),
                    }
                }
                other => {
                    return Err(ApiError::new(
                        506,
                        format!("unsupported content type '{other}'"),
                    ))
                }
            }
        }
        // The query string wins over the body.
        if let Some(q) = &req.query {
            for (k, v) in form_params(q.as_bytes()) {
                params.insert(k, v);
            }
        }
        params.remove("_dc");
        // Null values are "not given" (JSON clients send them for unset options).
        params.retain(|_, v| !v.is_null());
        Ok(params)
    }

    fn dispatch(&self, req: &RawRequest, sub: &str) -> Result<Reply, ApiError> {
        let Some(method) = Method::parse(&req.method) else {
            return Err(ApiError::new(
                501,
                format!("method '{}' not available", req.method),
            ));
        };
        let segments: Vec<String> = sub
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let shown_path = format!("/{}", segments.join("/"));
        let (endpoint, path_vars) = self
            .endpoints
            .iter()
            .filter(|e| e.method == method)
            .find_map(|e| e.matches(&segments).map(|vars| (e, vars)))
            .ok_or_else(|| ApiError::not_implemented(method.as_str(), &shown_path))?;
        let caller = self.authenticate(req, method, endpoint, &shown_path)?;
        let mut raw = self.raw_params(req, method)?;
        for (name, value) in path_vars {
            if let Some(given) = raw.get(&name) {
                let same = match given {
                    Value::String(s) => *s == value,
                    other => {
                        other.as_i64().map(|n| n.to_string()).as_deref() == Some(value.as_str())
                    }
                };
                if !same {
                    return Err(ApiError::param(
                        &name,
                        "duplicate parameter (already defined in URI) with conflicting values!",
                    ));
                }
            }
            raw.insert(name, Value::String(value));
        }
        let params = validate(&endpoint.params, endpoint.extra, &raw)?;
        match &endpoint.permission {
            Permission::World | Permission::Authenticated | Permission::Handler(_) => {}
            Permission::Root => {
                let is_root = caller
                    .as_ref()
                    .is_some_and(|c| c.userid == "root@pam" && c.token.is_none());
                if !is_root {
                    return Err(ApiError::new(
                        403,
                        "Permission check failed (user != root@pam)",
                    ));
                }
            }
            Permission::Privs { path, privs, any } => {
                let acl_path = substitute(path, &params);
                let allowed = caller.as_ref().is_some_and(|c| {
                    rbac::check(&self.state.auth().user_config(), c, &acl_path, privs, *any)
                });
                if !allowed {
                    return Err(ApiError::forbidden(&acl_path, privs));
                }
            }
        }
        if req.upload.is_some() && !endpoint.upload {
            return Err(upload_refused(&shown_path));
        }
        let ctx = Ctx {
            state: &self.state,
            caller: caller.as_ref(),
            params,
            peer: req.peer,
            upload: req.upload.as_ref(),
        };
        (endpoint.handler)(&ctx)
    }
}

fn upload_refused(path: &str) -> ApiError {
    ApiError::new(
        415,
        format!("URI '{path}' does not take a file upload (multipart/form-data)"),
    )
}

fn token_refused(path: &str) -> ApiError {
    ApiError::new(
        403,
        format!("URI '{path}' not available with API token, need proper ticket."),
    )
}

/// `/vms/{vmid}` with the request's `vmid`.
fn substitute(template: &str, params: &Params) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + end];
        match params.0.get(name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => {}
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// `{"key": value}` without the keys whose value is null (Proxmox VE omits unset fields).
pub fn compact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TestState {
        auth: Auth,
        tasks: Arc<TaskStore>,
        _dir: tempfile::TempDir,
    }

    impl ApiState for TestState {
        fn auth(&self) -> &Auth {
            &self.auth
        }
        fn tasks(&self) -> &Arc<TaskStore> {
            &self.tasks
        }
        fn node_name(&self) -> &str {
            "pve1"
        }
    }

    fn api() -> Api<TestState> {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::open(dir.path()).unwrap();
        let tasks = TaskStore::open(&dir.path().join("tasks"), "pve1").unwrap();
        let state = TestState {
            auth,
            tasks,
            _dir: dir,
        };
        Api::new(Arc::new(state), crate::core::endpoints())
    }

    #[test]
    fn a_failed_authentication_is_delayed_by_the_caller_not_by_this_thread() {
        let api = api();
        let req = RawRequest {
            method: "GET".into(),
            path: "/api2/json/version".into(),
            ..RawRequest::default()
        };
        // The 3 s are the HTTP layer's to wait, on a timer: the answer says so.
        let resp = api.handle(&req);
        assert_eq!(
            (resp.status, resp.delay),
            (401, Some(Duration::from_secs(3)))
        );
        let ok = api.handle(&RawRequest {
            method: "GET".into(),
            path: "/api2/json/access/domains".into(),
            ..RawRequest::default()
        });
        assert_eq!((ok.status, ok.delay), (200, None));
    }
}
