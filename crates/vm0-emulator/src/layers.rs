//! The middleware: request counting, the API token check, and every injected fault.
//!
//! Faults live here and nowhere else, so a handler is written as if the network were perfect. `api_faults` wraps
//! the API and the blob host: it delays a matching request (`latency_ms`), answers for it (`bad_body`,
//! `error_count`, `error_rate`, with `Retry-After`), or lets it through. `blob_faults` wraps the blob host: it
//! counts requests and those that carry a token, refuses the next N with 403 (an expired presigned URL), and
//! reshapes blob bodies (responses marked `BlobBody`, wherever they come from) to be slow (`blob_bytes_per_sec`)
//! or cut in the middle (`truncate_blobs`: the full `Content-Length` is declared, half the bytes are sent and the
//! connection is dropped, as a broken S3 transfer looks to a client).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::{Stream, StreamExt, stream};

use crate::blobhost::BlobBody;
use crate::ctx::Ctx;
use crate::faults::Verdict;
use crate::reply::{api_error, s3_error, with_retry_after};

/// Counts every request outside `/_control/`, by its route (`GET /v1/runs/{id}`).
pub(crate) async fn count_requests(
    State(ctx): State<Arc<Ctx>>,
    route: MatchedPath,
    req: Request,
    next: Next,
) -> Response {
    ctx.stats
        .request(format!("{} {}", req.method(), route.as_str()));
    next.run(req).await
}

/// `Authorization: Bearer <token>` with one of the accepted tokens, or 401.
pub(crate) async fn require_token(
    State(ctx): State<Arc<Ctx>>,
    req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| ctx.tokens.iter().any(|known| known == t.trim())) {
        return api_error(
            401,
            "authentication_error",
            "invalid_api_key",
            "Invalid API key provided",
            None,
        );
    }
    next.run(req).await
}

/// Latency, bad bodies and injected errors for the requests the fault config matches.
pub(crate) async fn api_faults(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let (latency_ms, verdict) = ctx.faults.judge(req.uri().path());
    if let Verdict::BadBody(body) = verdict {
        let kind = if body.starts_with('<') {
            "text/html"
        } else {
            "application/json"
        };
        let mut resp = Response::new(Body::from(body));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        return resp;
    }
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    match verdict {
        Verdict::Fail {
            status,
            retry_after_secs,
        } => {
            // The request's body is read first, as a server that refuses an upload after taking it does: a client
            // still sending would otherwise meet a reset connection instead of the status (and retry it as such).
            let _ = axum::body::to_bytes(req.into_body(), usize::MAX).await;
            let resp = injected_error(status);
            match retry_after_secs {
                Some(secs) => with_retry_after(resp, secs),
                None => resp,
            }
        }
        _ => next.run(req).await,
    }
}

fn injected_error(status: u16) -> Response {
    let (kind, code, message) = match status {
        429 => (
            "invalid_request_error",
            "rate_limited",
            "Too many requests (injected by the emulator's fault config); retry later",
        ),
        s if s >= 500 => (
            "api_error",
            "internal_error",
            "Internal error (injected by the emulator's fault config); retry later",
        ),
        _ => (
            "invalid_request_error",
            "injected_fault",
            "Request rejected (injected by the emulator's fault config)",
        ),
    };
    api_error(status, kind, code, message, None)
}

/// Counts blob host requests (and those carrying a token) and refuses the next `blob_forbidden_count`.
pub(crate) async fn blob_requests(
    State(ctx): State<Arc<Ctx>>,
    req: Request,
    next: Next,
) -> Response {
    ctx.stats
        .blob_request(req.headers().contains_key(header::AUTHORIZATION));
    if ctx.faults.take_blob_forbidden() {
        return s3_error(403, "AccessDenied", "Request has expired");
    }
    next.run(req).await
}

/// Slows down and cuts the bodies of blob responses, as the fault config says.
pub(crate) async fn blob_bodies(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.extensions().get::<BlobBody>().is_none() {
        return resp;
    }
    let rate = ctx.faults.blob_rate();
    let cut = ctx.faults.truncate_blobs();
    if rate.is_none() && !cut {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let len = body_len(&parts.headers, &body);
    let mut chunks = body
        .into_data_stream()
        .map(|c| c.map_err(io::Error::other))
        .boxed();
    if let Some(rate) = rate {
        chunks = throttled(chunks, rate).boxed();
    }
    if cut {
        chunks = cut_at(chunks, len / 2).boxed();
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Response::from_parts(parts, Body::from_stream(chunks))
}

/// The length a blob response declares (its header, or its body's exact size).
fn body_len(headers: &axum::http::HeaderMap, body: &Body) -> u64 {
    use axum::body::HttpBody;
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| body.size_hint().exact())
        .unwrap_or(0)
}

type Chunks = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// At most `rate` bytes per second, in slices of a tenth of that.
fn throttled(inner: Chunks, rate: u64) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let slice = (rate / 10).max(1) as usize;
    let state = (inner, Bytes::new(), Instant::now(), 0u64);
    stream::unfold(
        state,
        move |(mut inner, mut pending, started, sent)| async move {
            if pending.is_empty() {
                match inner.next().await? {
                    Ok(b) => pending = b,
                    Err(e) => return Some((Err(e), (inner, pending, started, sent))),
                }
            }
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let piece = pending.split_to(slice.min(pending.len()));
            let sent = sent + piece.len() as u64;
            Some((Ok(piece), (inner, pending, started, sent)))
        },
    )
}

/// The first `limit` bytes, then an error: hyper drops the connection short of the declared length.
fn cut_at(inner: Chunks, limit: u64) -> impl Stream<Item = io::Result<Bytes>> + Send {
    stream::unfold((inner, 0u64), move |(mut inner, sent)| async move {
        if sent >= limit {
            if sent == u64::MAX {
                return None;
            }
            // Pending once first: hyper flushes what it holds (the head and the bytes so far) while it waits,
            // then the error makes it drop the connection.
            tokio::task::yield_now().await;
            let cut = io::Error::new(io::ErrorKind::ConnectionAborted, "truncate_blobs fault");
            return Some((Err(cut), (inner, u64::MAX)));
        }
        match inner.next().await? {
            Ok(mut b) => {
                b.truncate((limit - sent).min(b.len() as u64) as usize);
                let sent = sent + b.len() as u64;
                Some((Ok(b), (inner, sent)))
            }
            Err(e) => Some((Err(e), (inner, u64::MAX))),
        }
    })
}
