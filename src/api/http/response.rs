//! Reading what a server answered: base URLs normalised, blob URLs labelled without their signature, JSON bodies
//! read within a bound, and every status, transport failure or malformed reply turned into an `ApiError` that
//! names the endpoint. Pure functions over reqwest's types, kept apart from the request loop that calls them.

use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::blocking::Response;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{MAX_ERROR_BODY, MAX_JSON_BODY};
use crate::api::ApiError;
use crate::api::models::ErrorBody;

/// Parses and normalises the base URL: http(s), no query, path ending in `/`, a trailing `/v1` dropped.
pub(super) fn parse_base(base_url: &str) -> Result<Url, String> {
    let mut url = Url::parse(base_url.trim())
        .map_err(|e| format!("the API URL {base_url:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(format!("the API URL {base_url:?} is not an http(s) URL"));
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/v1").unwrap_or(path).to_string();
    url.set_path(&format!("{path}/"));
    Ok(url)
}

/// `GET scheme://host/path` of a blob URL: never its query, which holds the presigned signature.
pub(super) fn blob_label(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("GET {}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("GET {}://{host}{}", url.scheme(), url.path()),
    }
}

/// The target of a redirect, resolved against the URL that answered it.
pub(super) fn location(label: &str, resp: &Response) -> Result<Url, ApiError> {
    let value = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            invalid(
                label,
                &format!("HTTP {} without a usable Location", resp.status().as_u16()),
            )
        })?;
    let url = resp
        .url()
        .join(value)
        .map_err(|e| invalid(label, &format!("the redirect target is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(label, "the redirect target is not an http(s) URL"));
    }
    Ok(url)
}

pub(super) fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
}

pub(super) fn invalid(label: &str, what: &str) -> ApiError {
    ApiError::invalid_response(label, what.to_string())
}

pub(super) fn unexpected_status(label: &str, resp: &Response) -> ApiError {
    invalid(
        label,
        &format!("unexpected HTTP {} (a redirect?)", resp.status().as_u16()),
    )
}

/// Reads a 2xx response as JSON. A body that breaks off is a transport error (retryable); one that is not JSON
/// is an invalid response naming its content type.
pub(super) fn read_json(label: &str, resp: Response) -> Result<Value, ApiError> {
    if !resp.status().is_success() {
        return Err(unexpected_status(label, &resp));
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_string();
    let mut body = Vec::new();
    resp.take(MAX_JSON_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::transport(label, format!("reading the response failed: {e}")))?;
    if body.len() as u64 > MAX_JSON_BODY {
        return Err(invalid(
            label,
            &format!("the response is larger than {MAX_JSON_BODY} bytes"),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        invalid(
            label,
            &format!("the response is not JSON (content-type {content_type}): {e}"),
        )
    })
}

/// Decodes a JSON value as the model `T`; `what` names it in the error.
pub(super) fn decode<T: DeserializeOwned>(
    label: &str,
    value: Value,
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| invalid(label, &format!("the response is not a valid {what}: {e}")))
}

/// An `Http` error from a 4xx/5xx response, with the API's error object when the body is one.
pub(super) fn error_from_response(label: &str, resp: Response) -> ApiError {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    // A body that cannot be read leaves the status to speak for itself.
    let _ = resp.take(MAX_ERROR_BODY).read_to_end(&mut body);
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(&body) {
        let message = parsed.error.message.clone();
        return ApiError::http(label, status, Some(parsed.error), message);
    }
    let snippet: String = String::from_utf8_lossy(&body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    let message = if snippet.trim().is_empty() {
        "the server sent no error details".to_string()
    } else {
        format!("the server sent no API error object: {}", snippet.trim())
    };
    ApiError::http(label, status, None, message)
}

/// A `Transport` error from reqwest's, without the URL (a presigned URL's signature stays out of logs).
pub(super) fn transport_error(label: &str, err: reqwest::Error) -> ApiError {
    let what = if err.is_timeout() {
        "the request timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the response broke off"
    } else {
        "the request failed"
    };
    let err = err.without_url();
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::transport(label, format!("{what} ({detail})"))
}

/// Sleeps `wait`, looking at the caller every `caller::POLL`; false if it gave up meanwhile (the sleep is cut).
pub(super) fn sleep_unless_caller_gives_up(wait: Duration) -> bool {
    let end = Instant::now() + wait;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(crate::caller::POLL));
        if crate::caller::gave_up() {
            return false;
        }
    }
}
