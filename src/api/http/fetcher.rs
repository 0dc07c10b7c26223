//! One request as the retry loop sees it (`Call`) and the loop itself (`Fetcher`): a reqwest client that never
//! follows redirects by itself, the retry policy with its backoff, the held-back calls while the API is out of
//! reach, and the download route's `302` followed without the token.
//!
//! Apart from `HttpApi` so that the client's methods read as the API they speak and this file as how a request is
//! sent: the policy is one place, and a `files[]` download can keep a `Fetcher`, which holds no token.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Client, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url, redirect};

use super::health::Health;
use super::response::{
    blob_label, error_from_response, location, sleep_unless_caller_gives_up, transport_error,
};
use super::retry;
use super::{HttpOptions, MAX_BLOB_HOPS};
use crate::api::{ApiError, ApiErrorKind};

/// A request to `<base>/v1/<segments>?<query>` with the token (`auth`), retried if idempotent (GET), without a
/// total deadline.
pub(super) fn api_call(
    base: &Url,
    auth: &HeaderValue,
    method: Method,
    segments: &[&str],
    query: &[(&str, String)],
) -> Call {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push("v1").extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    let idempotent = method == Method::GET;
    Call {
        label: format!("{method} /v1/{}", segments.join("/")),
        method,
        url,
        auth: Some(auth.clone()),
        body: None,
        file: None,
        accept: "application/json",
        idempotent,
        total_deadline: None,
    }
}

/// One request as the retry loop sees it.
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) url: Url,
    /// `METHOD /path`, without the query string: the `endpoint` of errors and of log lines.
    pub(super) label: String,
    pub(super) auth: Option<HeaderValue>,
    pub(super) body: Option<Vec<u8>>,
    /// A file sent as the raw body (an upload PUT) with its content type, opened again for each attempt.
    pub(super) file: Option<(PathBuf, &'static str)>,
    pub(super) accept: &'static str,
    /// Whether the request may be sent again after it may have reached the server.
    pub(super) idempotent: bool,
    /// A total deadline; `None` leaves the client's idle deadline (response head, then each read).
    pub(super) total_deadline: Option<Duration>,
}

/// A reqwest client and the retry policy. Holds no token (but the probe of `health`, which never leaves it), so a
/// file of a `files[]` download can keep one.
#[derive(Clone)]
pub(super) struct Fetcher {
    pub(super) client: Client,
    pub(super) opts: HttpOptions,
    /// Whether the API can be reached; shared by every fetcher of one client.
    pub(super) health: Arc<Health>,
}

impl Fetcher {
    /// A client that never follows redirects, with `idle` as its per-read deadline.
    pub(super) fn new(
        opts: &HttpOptions,
        idle: Duration,
        health: Arc<Health>,
    ) -> Result<Fetcher, ApiError> {
        let client = Client::builder()
            .redirect(redirect::Policy::none())
            .connect_timeout(opts.connect_timeout)
            .timeout(idle)
            .user_agent(concat!("vm0fs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ApiError::transport("API client setup", format!("cannot start HTTP: {e}"))
            })?;
        Ok(Fetcher {
            client,
            opts: opts.clone(),
            health,
        })
    }

    /// Sends `call` until it succeeds or the retry policy gives up. A 2xx or 3xx response is handed to `on_ok`,
    /// whose transport errors (a body cut off) are retried like the request's own. A call to the API (one that
    /// carries the token) is not sent while the API is known to be out of reach, and one that cannot connect after
    /// its retries marks it so (`health`).
    pub(super) fn run<T>(
        &self,
        call: &Call,
        mut on_ok: impl FnMut(Response) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let to_api = call.auth.is_some();
        if to_api && let Some(held_back) = self.health.hold_back(&call.label) {
            return Err(held_back);
        }
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            if to_api {
                self.health.sent(attempt > 0);
            }
            let sent = self.send_once(call);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let could_not_connect = sent.as_ref().is_err_and(reqwest::Error::is_connect);
            if to_api && sent.is_ok() {
                self.health.answered();
            }
            let (err, server_asked, may_retry) = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    tracing::debug!(method = %call.method, path = call.url.path(), status = status.as_u16(),
                        attempt, elapsed_ms, "vm0 api request");
                    if status.is_success() || status.is_redirection() {
                        match on_ok(resp) {
                            Ok(v) => return Ok(v),
                            Err(e) => {
                                let retry = call.idempotent && e.kind == ApiErrorKind::Transport;
                                (e, None, retry)
                            }
                        }
                    } else {
                        let asked = retry::retry_after(resp.headers(), self.opts.max_retry_after);
                        let e = error_from_response(&call.label, resp);
                        let retry = call.idempotent && e.is_retryable();
                        (e, asked, retry)
                    }
                }
                Err(e) => {
                    // A connect failure means nothing was sent, so even a POST may go again. A request that ran
                    // into its deadline is not sent again: a stalled server would otherwise hold the caller for
                    // (retries + 1) deadlines instead of one.
                    let retry = (call.idempotent && !e.is_timeout()) || e.is_connect();
                    let e = transport_error(&call.label, e);
                    tracing::debug!(method = %call.method, path = call.url.path(), attempt, elapsed_ms,
                        error = %e, "vm0 api request failed");
                    (e, None, retry)
                }
            };
            // A caller that was signalled (Ctrl-C) is not kept for retries it no longer waits for, nor one whose
            // API another call found out of reach meanwhile.
            let out_of_reach = to_api && self.health.is_down();
            if !may_retry
                || attempt >= self.opts.max_retries
                || crate::caller::gave_up()
                || out_of_reach
            {
                if to_api && could_not_connect {
                    self.health.unreachable(self, &err);
                }
                return Err(err);
            }
            let wait = retry::delay(
                attempt,
                self.opts.base_backoff,
                self.opts.max_backoff,
                server_asked,
            );
            tracing::debug!(endpoint = %call.label, attempt, wait_ms = wait.as_millis() as u64,
                "retrying after a retryable failure");
            if !sleep_unless_caller_gives_up(wait) {
                return Err(err);
            }
            attempt += 1;
        }
    }

    pub(super) fn send_once(&self, call: &Call) -> reqwest::Result<Response> {
        let mut req = self
            .client
            .request(call.method.clone(), call.url.clone())
            .header(ACCEPT, call.accept);
        if let Some(auth) = &call.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        match (&call.body, &call.file) {
            (Some(body), _) => {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            }
            (None, Some((path, content_type))) => {
                req = req
                    .header(CONTENT_TYPE, *content_type)
                    .body(file_body(path))
            }
            (None, None) if call.method == Method::POST => req = req.body(Vec::new()),
            (None, None) => {}
        }
        if let Some(deadline) = call.total_deadline {
            req = req.timeout(deadline);
        }
        req.send()
    }

    /// `GET` of an archive or file on the blob host: never with the token, retried, following the host's own
    /// redirects (also without the token), with an idle deadline. A 403 comes back as an `Http` error.
    pub(super) fn blob(&self, mut url: Url) -> Result<Response, ApiError> {
        for _ in 0..=MAX_BLOB_HOPS {
            let call = Call {
                method: Method::GET,
                label: blob_label(&url),
                url,
                auth: None,
                body: None,
                file: None,
                accept: "*/*",
                idempotent: true,
                total_deadline: None,
            };
            let resp = self.run(&call, Ok)?;
            if !resp.status().is_redirection() {
                return Ok(resp);
            }
            url = location(&call.label, &resp)?;
        }
        Err(ApiError::invalid_response(
            "GET archive",
            format!("the blob host redirected more than {MAX_BLOB_HOPS} times"),
        ))
    }
}

/// The body of an upload PUT: the file, with its length (presigned PUTs want a Content-Length). A file that cannot
/// be opened becomes a body that fails with that error, so the attempt fails as a transport error naming it.
fn file_body(path: &Path) -> Body {
    match File::open(path).and_then(|f| Ok((f.metadata()?.len(), f))) {
        Ok((len, file)) => Body::sized(file, len),
        Err(e) => Body::new(FailingReader(Some(e))),
    }
}

/// A reader that fails once with the error it holds.
struct FailingReader(Option<io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("the file to upload is gone")))
    }
}
