//! What every handler shares: the query extractor, JSON and error responses, request bodies, pagination.
//!
//! Responses are built from the shared wire models, serialised snake_case and recased once at the edge
//! (`json`), so each handler is written once for both casings; error bodies are never recased (the API kept
//! their keys in both eras). Every failure a client can cause is an API error body with a status, never a
//! panic: helpers that can fail return `Result<_, Response>` and the handler returns the error arm as it is.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ctx::Ctx;
use vm0_api::{Casing, recase_keys};

/// The decoded query pairs of a request (the first value wins when a key repeats).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// The first value under any of `names` (e.g. `version_id` and `versionId`).
    pub fn get_any(&self, names: &[&str]) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_any(&[name])
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        Ok(Params(pairs))
    }
}

/// Decodes `%XX` escapes (and `+` as a space in query strings); invalid escapes are kept as they are.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes everything but unreserved characters and `/` (for paths inside URLs).
pub(crate) fn percent_encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A JSON response in the server's casing, with the headers the ts-rest handler adds (CONTRACT.md 1.3).
pub(crate) fn json(ctx: &Ctx, code: u16, value: Value) -> Response {
    let value = match ctx.casing {
        Casing::Snake => value,
        Casing::Camel => recase_keys(value, Casing::Camel),
    };
    raw_json(code, &value)
}

/// A JSON response exactly as given (no recasing), with `X-Request-Id` and `X-API-Version`.
pub(crate) fn raw_json(code: u16, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let request_id = format!("req_{}", uuid::Uuid::new_v4().simple());
    (
        status(code),
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::HeaderName::from_static("x-api-version"), "v1"),
            (header::HeaderName::from_static("x-request-id"), &request_id),
        ],
        body,
    )
        .into_response()
}

/// `{"error":{"type","code","message","param?"}}` (CONTRACT.md 1.4).
pub(crate) fn api_error(
    code: u16,
    kind: &str,
    error_code: &str,
    message: impl Into<String>,
    param: Option<&str>,
) -> Response {
    let mut error = json!({"type": kind, "code": error_code, "message": message.into()});
    if let Some(p) = param {
        error["param"] = json!(p);
    }
    raw_json(code, &json!({ "error": error }))
}

pub(crate) fn not_found(message: impl Into<String>) -> Response {
    api_error(404, "not_found_error", "resource_not_found", message, None)
}

pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Response {
    api_error(
        400,
        "invalid_request_error",
        "invalid_parameter",
        message,
        Some(param),
    )
}

pub(crate) fn internal(message: impl Into<String>) -> Response {
    api_error(500, "api_error", "internal_error", message, None)
}

/// Adds `Retry-After: secs` to a response.
pub(crate) fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// An S3-style XML error, as the blob host answers.
pub(crate) fn s3_error(code: u16, s3_code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{s3_code}</Code><Message>{message}</Message>\
         <RequestId>{}</RequestId></Error>",
        uuid::Uuid::new_v4().simple()
    );
    (
        status(code),
        [(header::CONTENT_TYPE, "application/xml")],
        body,
    )
        .into_response()
}

/// The request body as JSON with snake_case keys (both casings are accepted), or a 400.
pub(crate) fn body_json(body: &[u8]) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
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
pub(crate) fn parse_limit(q: &Params, default: usize) -> Result<usize, Response> {
    let Some(raw) = q.get("limit") else {
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
pub(crate) fn newest_first<T>(items: &[T], created: impl Fn(&T) -> i64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    idx.sort_by_key(|&i| std::cmp::Reverse((created(&items[i]), i)));
    idx
}

/// One page of `items` (already newest first, as `(id, json)`), with the id of the last item as the cursor.
/// The cursor is keyset: the page resumes after the item that has that id.
pub(crate) fn page(ctx: &Ctx, q: &Params, items: Vec<(String, Value)>) -> Response {
    let limit = match parse_limit(q, 20) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let start = match q.get("cursor").filter(|c| !c.is_empty()) {
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

pub(crate) fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Runs slow synchronous work (archives, bulk writes, big files) off the async workers.
pub(crate) async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        internal(format!(
            "The emulator failed while handling this request ({e}): a bug, see its stderr"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("%C3%A9", false), "é");
        assert_eq!(percent_encode_path("données/x y"), "donn%C3%A9es/x%20y");
    }
}
