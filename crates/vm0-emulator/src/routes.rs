//! Request dispatch, authentication, the JSON and error helpers every route shares, and the agent routes.
//!
//! Responses are built from the shared wire models, serialised snake_case and recased once at the edge
//! (`json`), so each handler is written once for both casings; error bodies are never recased (the API kept
//! their keys in both eras). Paths are matched as percent-decoded segments with a plain `match`, which keeps
//! the whole route table readable in one place. Every failure a client can cause is an API error body with a
//! status, never a panic.

use std::sync::Arc;

use serde_json::{Value, json};

use super::http::{Body, Request, Response, percent_decode};
use super::store::{AgentRec, iso};
use super::{Ctx, control, runs, storage};
use vm0_api::{Agent, AgentVersion, Casing, StorageKind, recase_keys};

/// The one entry point of every request.
pub(super) fn handle(ctx: &Arc<Ctx>, req: Request) -> Response {
    tracing::debug!(method = %req.method, path = %req.path, "request");
    if req.path.starts_with("/_control/") {
        return control::handle(ctx, req);
    }
    ctx.stats.request();
    if let Some(resp) = ctx.faults.apply(&req.path) {
        return resp;
    }
    let segs: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.first() {
        Some(&"_storage") => return storage::blob_route(ctx, &req, &segs[1..]),
        Some(&"_upload") => return storage::upload_put(ctx, &req, &segs[1..]),
        Some(&"v1") => {}
        _ => return route_not_found(&req),
    }
    if !authorized(ctx, &req) {
        return api_error(
            401,
            "authentication_error",
            "invalid_api_key",
            "Invalid API key provided",
            None,
        );
    }
    let m = req.method.as_str();
    let kind = |s: &str| match s {
        "volumes" => Some(StorageKind::Volume),
        "artifacts" => Some(StorageKind::Artifact),
        _ => None,
    };
    match (m, &segs[1..]) {
        ("GET", ["agents"]) => list_agents(ctx, &req),
        ("GET", ["agents", id]) => get_agent(ctx, id),
        ("GET", ["agents", id, "versions"]) => list_agent_versions(ctx, &req, id),
        ("GET", ["runs"]) => runs::list(ctx, &req),
        ("POST", ["runs"]) => runs::create(ctx, &req),
        ("GET", ["runs", id]) => runs::get(ctx, id),
        ("POST", ["runs", id, "cancel"]) => runs::cancel(ctx, id),
        ("GET", ["runs", id, "logs"]) => runs::logs(ctx, &req, id),
        ("GET", ["runs", id, "metrics"]) => runs::metrics(ctx, id),
        ("GET", ["runs", id, "events"]) => super::sse::events(ctx, &req, id),
        (_, [k, rest @ ..]) if kind(k).is_some() => {
            let k = kind(k).unwrap_or(StorageKind::Volume);
            match (m, rest) {
                ("GET", []) => storage::list(ctx, &req, k),
                ("POST", []) => storage::create(ctx, &req, k),
                ("GET", [id]) => storage::get(ctx, k, id),
                ("DELETE", [id]) => storage::delete(ctx, k, id),
                ("GET", [id, "versions"]) => storage::versions(ctx, &req, k, id),
                ("GET", [id, "download"]) => storage::download(ctx, &req, k, id),
                ("POST", [id, "upload"]) => storage::upload(ctx, &req, k, id),
                ("POST", [id, "commit"]) => storage::commit(ctx, &req, k, id),
                _ => route_not_found(&req),
            }
        }
        _ => route_not_found(&req),
    }
}

fn authorized(ctx: &Ctx, req: &Request) -> bool {
    let Some(value) = req.header("authorization") else {
        return false;
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return false;
    };
    ctx.tokens.iter().any(|t| t == token.trim())
}

fn route_not_found(req: &Request) -> Response {
    api_error(
        404,
        "not_found_error",
        "resource_not_found",
        format!(
            "No route for {} {}: see CONTRACT.md section 2 for the endpoints",
            req.method, req.path
        ),
        None,
    )
}

/// A JSON response in the server's casing, with the headers the ts-rest handler adds (CONTRACT.md 1.3).
pub(super) fn json(ctx: &Ctx, status: u16, value: Value) -> Response {
    let value = match ctx.casing {
        Casing::Snake => value,
        Casing::Camel => recase_keys(value, Casing::Camel),
    };
    raw_json(status, &value)
}

/// A JSON response exactly as given (no recasing), with `X-Request-Id` and `X-API-Version`.
pub(super) fn raw_json(status: u16, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::new(status, Body::Bytes(body))
        .header("Content-Type", "application/json")
        .header(
            "X-Request-Id",
            format!("req_{}", uuid::Uuid::new_v4().simple()),
        )
        .header("X-API-Version", "v1")
}

/// `{"error":{"type","code","message","param?"}}` (CONTRACT.md 1.4).
pub(super) fn api_error(
    status: u16,
    kind: &str,
    code: &str,
    message: impl Into<String>,
    param: Option<&str>,
) -> Response {
    let mut error = json!({"type": kind, "code": code, "message": message.into()});
    if let Some(p) = param {
        error["param"] = json!(p);
    }
    raw_json(status, &json!({ "error": error }))
}

pub(super) fn not_found(message: impl Into<String>) -> Response {
    api_error(404, "not_found_error", "resource_not_found", message, None)
}

pub(super) fn invalid(param: &str, message: impl Into<String>) -> Response {
    api_error(
        400,
        "invalid_request_error",
        "invalid_parameter",
        message,
        Some(param),
    )
}

/// The request body as JSON with snake_case keys (both casings are accepted), or a 400.
pub(super) fn body_json(req: &Request) -> Result<Value, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(&req.body).map_err(|e| {
        api_error(
            400,
            "invalid_request_error",
            "invalid_parameter",
            format!("The request body is not valid JSON ({e}); send a JSON object"),
            None,
        )
    })?;
    if !value.is_object() {
        return Err(api_error(
            400,
            "invalid_request_error",
            "invalid_parameter",
            "The request body must be a JSON object",
            None,
        ));
    }
    Ok(recase_keys(value, Casing::Snake))
}

/// `limit` as zod's `z.coerce.number().int().min(1).max(100).default(default)` validates it.
pub(super) fn parse_limit(req: &Request, default: usize) -> Result<usize, Response> {
    let Some(raw) = req.query("limit") else {
        return Ok(default);
    };
    let n: f64 = raw
        .trim()
        .parse()
        .map_err(|_| invalid("limit", "Expected number, received nan"))?;
    if n.fract() != 0.0 {
        return Err(invalid("limit", "Expected integer, received float"));
    }
    if n < 1.0 {
        return Err(invalid(
            "limit",
            "Number must be greater than or equal to 1",
        ));
    }
    if n > 100.0 {
        return Err(invalid("limit", "Number must be less than or equal to 100"));
    }
    Ok(n as usize)
}

/// Indices of `items` newest first (created DESC, later insertion first on a tie).
pub(super) fn newest_first<T>(items: &[T], created: impl Fn(&T) -> i64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    idx.sort_by_key(|&i| std::cmp::Reverse((created(&items[i]), i)));
    idx
}

/// One page of `items` (already newest first, as `(id, json)`), with the id of the last item as the cursor.
/// The cursor is keyset: the page resumes after the item that has that id.
pub(super) fn page(ctx: &Ctx, req: &Request, items: Vec<(String, Value)>) -> Response {
    let limit = match parse_limit(req, 20) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let start = match req.query("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match items.iter().position(|(id, _)| id == c) {
            Some(p) => p + 1,
            None => {
                return invalid(
                    "cursor",
                    format!(
                        "Invalid cursor '{c}': it is not the id of an item of this list; \
                         start again without a cursor"
                    ),
                );
            }
        },
    };
    let rest = items.len().saturating_sub(start);
    let has_more = rest > limit;
    let data: Vec<(String, Value)> = items.into_iter().skip(start).take(limit).collect();
    let next_cursor = if has_more {
        data.last().map(|(id, _)| id.clone())
    } else {
        None
    };
    let data: Vec<Value> = data.into_iter().map(|(_, v)| v).collect();
    json(
        ctx,
        200,
        json!({"data": data, "pagination": {"has_more": has_more, "next_cursor": next_cursor}}),
    )
}

pub(super) fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn agent_value(a: &AgentRec) -> Value {
    to_value(&Agent {
        id: a.id.clone(),
        name: a.name.clone(),
        current_version_id: a.versions.last().map(|v| v.id.clone()),
        created_at: iso(a.created_ms),
        updated_at: iso(a.updated_ms),
        config: None,
    })
}

fn list_agents(ctx: &Ctx, req: &Request) -> Response {
    let st = ctx.store.lock();
    let name = req.query("name").map(str::to_lowercase);
    let items = newest_first(&st.agents, |a| a.created_ms)
        .into_iter()
        .map(|i| &st.agents[i])
        .filter(|a| name.as_ref().is_none_or(|n| &a.name == n))
        .map(|a| (a.id.clone(), agent_value(a)))
        .collect();
    page(ctx, req, items)
}

fn get_agent(ctx: &Ctx, id: &str) -> Response {
    let st = ctx.store.lock();
    match st.agents.iter().find(|a| a.id == id) {
        Some(a) => json(ctx, 200, agent_value(a)),
        None => not_found(format!("No such agent: '{id}'")),
    }
}

fn list_agent_versions(ctx: &Ctx, req: &Request, id: &str) -> Response {
    let st = ctx.store.lock();
    let Some(a) = st.agents.iter().find(|a| a.id == id) else {
        return not_found(format!("No such agent: '{id}'"));
    };
    let items = newest_first(&a.versions, |v| v.created_ms)
        .into_iter()
        .map(|i| &a.versions[i])
        .map(|v| {
            let value = to_value(&AgentVersion {
                id: v.id.clone(),
                agent_id: a.id.clone(),
                version_number: v.version_number,
                config: v.config.clone(),
                created_at: iso(v.created_ms),
            });
            (v.id.clone(), value)
        })
        .collect();
    page(ctx, req, items)
}
