//! `HttpApi`: the `Vm0Api` trait over HTTP (reqwest blocking, rustls).
//!
//! Blocking, because the filesystem core runs each FUSE request on a worker thread and waits for its answer
//! anyway; an async runtime would add nothing but a second way to block. Everything a filesystem call can wait on
//! is bounded: every request has a connect deadline, JSON requests a total deadline, streams (archives, the event
//! stream) an idle deadline instead (an archive may legitimately take minutes, but never a minute of silence), and
//! retries are few and spaced by jittered backoff. Only idempotent requests are retried; `POST`s (creating or
//! cancelling a run) are sent again only when the connection failed before a byte of the request left, because a
//! second run started by a timeout is worse than an error the user can see.
//!
//! While the API cannot be reached, calls to it are not sent but fail at once, and it is probed in the background
//! (`health`), for the mount only (`HttpOptions::probe_every`).
//!
//! Redirects are never followed by reqwest: the download route's `302` is followed here, by a request built
//! without the `Authorization` header, because the emulator's blob route shares the API's origin and reqwest would
//! then forward the token. The token lives in one sensitive `HeaderValue`, is sent only to the API base URL, and is
//! never formatted (`Debug` is written by hand; errors are built from endpoints without query strings).
//!
//! The API changed casing on 2026-01-27 (CONTRACT.md Part 1 item 1). Responses parse in both casings through the
//! models' serde aliases; the casing of what we *send* (query keys such as `version_id`, the `create_run` body) is
//! learned from the `pagination` keys of list responses and kept in an atomic.

// `ApiError` is the error type of the `Vm0Api` trait (176 bytes); boxing it inside the client only to unbox it at
// the trait boundary would buy nothing. Shrinking it (boxing `detail`) is a decision for `error.rs`.

mod fetcher;
mod health;
mod response;
mod retry;
mod sse;

use std::fmt;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::models::{
    Agent, AgentVersion, Casing, CommitRequest, CreateStorageRequest, LegacyDownload, LogEntry,
    LogQuery, Page, PushCommitRequest, PushCommitResponse, PushPrepareRequest, PushPrepareResponse,
    Run, RunDetail, RunMetrics, SseEvent, Storage, StorageDetail, StorageKind, StorageVersion,
    UploadRequest, UploadResponse, UploadTarget, recase_keys,
};
use super::{ApiError, Download, DownloadFile, Reachability, Vm0Api};
use fetcher::{Call, Fetcher, api_call};
use health::Health;
use response::{
    blob_label, decode, invalid, is_json, location, parse_base, read_json, unexpected_status,
};

/// The page size asked for when following a list to its end: the API's maximum (CONTRACT.md 1.5).
const PAGE_LIMIT: &str = "100";
/// A list longer than this many pages is taken for a server that loops its cursors.
const MAX_PAGES: usize = 10_000;
/// The largest JSON body read. The biggest real one is a page of 100 items or a run's metrics.
const MAX_JSON_BODY: u64 = 64 << 20;
/// How much of an error body is read: enough for the API's error object, or a hint of what else came back.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// How long a commit may take: the server builds the archive of the whole version before answering.
const COMMIT_DEADLINE: Duration = Duration::from_secs(600);
/// How many times a download asks the API for a fresh redirect after the blob host refused (an expired link).
const MAX_FRESH_REDIRECTS: u32 = 2;
/// How many redirects the blob host itself may add before the archive (a CDN hop); each is followed without auth.
const MAX_BLOB_HOPS: u32 = 3;

/// Timeouts and retry budget of an [`HttpApi`]. `Default` gives the documented values.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Deadline for establishing a TCP (and TLS) connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Total deadline of one JSON request, from connecting to the last byte of the body. Default 30 s.
    pub request_timeout: Duration,
    /// Archive downloads have no total deadline (they can be large): this bounds the wait for the response head
    /// and for each read of the body instead. Default 30 s.
    pub read_timeout: Duration,
    /// The same for the event stream; longer than the server's 15 s heartbeat interval. Default 45 s.
    pub sse_read_timeout: Duration,
    /// How many times an idempotent request is sent again after a retryable failure (so at most
    /// `max_retries + 1` attempts). Default 4.
    pub max_retries: u32,
    /// Ceiling of the first retry's jittered delay; it doubles per retry. Default 200 ms.
    pub base_backoff: Duration,
    /// The ceiling never exceeds this. Default 5 s.
    pub max_backoff: Duration,
    /// A server's `Retry-After` is honoured up to this. Default 10 s.
    pub max_retry_after: Duration,
    /// Once a call could not connect even after its retries, calls to the API fail at once, without being sent,
    /// and the API is asked this often in the background until it answers (`health`). Default `None`: every
    /// call is sent (the mount sets it).
    pub probe_every: Option<Duration>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            sse_read_timeout: Duration::from_secs(45),
            max_retries: 4,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(10),
            probe_every: None,
        }
    }
}

/// The VM0 API over HTTP. Cheap to share between threads (`&self` everywhere).
pub struct HttpApi {
    /// The base URL, with a path ending in `/`; `v1/...` is appended.
    base: Url,
    /// `Bearer <token>`, marked sensitive.
    auth: HeaderValue,
    /// Requests with a total deadline, and archive downloads with an idle one.
    fetcher: Fetcher,
    /// The event stream: an idle deadline longer than the heartbeat.
    sse_fetcher: Fetcher,
    /// 0 = not learned yet (snake_case is sent), 1 = snake_case, 2 = camelCase.
    casing: AtomicU8,
}

impl fmt::Debug for HttpApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpApi")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .field("casing", &self.casing())
            .field("options", &self.fetcher.opts)
            .finish()
    }
}

impl HttpApi {
    /// PUTs `file` to a presigned upload URL: without the token (the URL is the credential), retried like any
    /// idempotent request.
    fn put_presigned(
        &self,
        url: Url,
        file: &Path,
        content_type: &'static str,
    ) -> Result<(), ApiError> {
        let call = Call {
            method: Method::PUT,
            label: blob_label(&url).replacen("GET", "PUT", 1),
            url,
            auth: None,
            body: None,
            file: Some((file.to_path_buf(), content_type)),
            accept: "*/*",
            idempotent: true,
            total_deadline: None,
        };
        self.fetcher.run(&call, |_| Ok(()))
    }

    /// A client of the API at `base_url` (e.g. `https://api.vm0.ai`; a trailing `/v1` is accepted) that
    /// authenticates with `token`. Fails when the URL is not http(s), the token is empty or not a valid header
    /// value, or the TLS stack cannot start. Nothing is sent until the first call.
    pub fn new(base_url: &str, token: &str, options: HttpOptions) -> Result<HttpApi, ApiError> {
        const SETUP: &str = "API client setup";
        let base = parse_base(base_url).map_err(|m| ApiError::transport(SETUP, m))?;
        if token.trim().is_empty() {
            return Err(ApiError::transport(
                SETUP,
                "no API token given (set VM0_API_KEY)".into(),
            ));
        }
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                ApiError::transport(
                    SETUP,
                    "the API token contains characters that cannot be sent in a header".into(),
                )
            })?;
        auth.set_sensitive(true);
        // The probe: the smallest authenticated request, within the connect deadline.
        let mut probe = api_call(
            &base,
            &auth,
            Method::GET,
            &["agents"],
            &[("limit", "1".into())],
        );
        probe.total_deadline = Some(options.connect_timeout);
        let health = Arc::new(Health::new(options.probe_every, probe));
        let fetcher = Fetcher::new(&options, options.read_timeout, health.clone())?;
        let sse_fetcher = Fetcher::new(&options, options.sse_read_timeout, health)?;
        Ok(HttpApi {
            base,
            auth,
            fetcher,
            sse_fetcher,
            casing: AtomicU8::new(0),
        })
    }

    /// The casing learned from the server, or `None` before the first list response.
    pub fn casing(&self) -> Option<Casing> {
        match self.casing.load(Ordering::Relaxed) {
            1 => Some(Casing::Snake),
            2 => Some(Casing::Camel),
            _ => None,
        }
    }

    /// Remembers the casing a list response shows (`has_more` or `hasMore`).
    fn learn_casing(&self, page: &Value) {
        let Some(p) = page.get("pagination").and_then(Value::as_object) else {
            return;
        };
        let code = if p.contains_key("hasMore") || p.contains_key("nextCursor") {
            2
        } else if p.contains_key("has_more") || p.contains_key("next_cursor") {
            1
        } else {
            return;
        };
        if self.casing.swap(code, Ordering::Relaxed) != code {
            tracing::debug!(camel = code == 2, "learned the API's casing");
        }
    }

    /// The casing to send keys in. Before anything is learned, one cheap list request asks the server, because a
    /// key in the wrong casing is silently ignored (a pinned download would fetch the head). If that fails, the
    /// documented default, snake_case, is used and the real request reports the failure.
    fn send_casing(&self) -> Casing {
        if let Some(c) = self.casing() {
            return c;
        }
        let probe = self.call(Method::GET, &["agents"], &[("limit", "1".into())]);
        if let Err(e) = self.json(&probe).map(|v| self.learn_casing(&v)) {
            tracing::debug!(error = %e, "could not learn the API's casing; sending snake_case");
        }
        self.casing().unwrap_or_default()
    }

    /// A request to `/v1/<segments>?<query>` with the token, retried if idempotent (GET).
    fn call(&self, method: Method, segments: &[&str], query: &[(&str, String)]) -> Call {
        let mut call = api_call(&self.base, &self.auth, method, segments, query);
        call.total_deadline = Some(self.fetcher.opts.request_timeout);
        call
    }

    /// Sends `call` and returns its JSON body.
    fn json(&self, call: &Call) -> Result<Value, ApiError> {
        self.fetcher.run(call, |resp| read_json(&call.label, resp))
    }

    /// `GET /v1/<segments>` decoded as `T`.
    fn get<T: DeserializeOwned>(&self, segments: &[&str], what: &str) -> Result<T, ApiError> {
        let call = self.call(Method::GET, segments, &[]);
        decode(&call.label, self.json(&call)?, what)
    }

    /// One page of a list, learning the casing from it.
    fn page<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<(Page<T>, String), ApiError> {
        let call = self.call(Method::GET, segments, query);
        let value = self.json(&call)?;
        self.learn_casing(&value);
        Ok((decode(&call.label, value, "page of a list")?, call.label))
    }

    /// Every item of a list, following `next_cursor` with the largest page size.
    fn list_all<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q: Vec<(&str, String)> = query.to_vec();
            q.push(("limit", PAGE_LIMIT.into()));
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let (page, label) = self.page::<T>(segments, &q)?;
            items.extend(page.data);
            if !page.pagination.has_more {
                return Ok(items);
            }
            match page.pagination.next_cursor {
                Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
                Some(_) => return Err(invalid(&label, "the list repeats its cursor")),
                None => return Err(invalid(&label, "has_more is true without a next_cursor")),
            }
        }
        let label = format!("GET /v1/{}", segments.join("/"));
        Err(invalid(
            &label,
            &format!("the list has more than {MAX_PAGES} pages"),
        ))
    }

    /// A `POST` that answers with a run detail. Never retried once it may have reached the server.
    fn post_run(&self, segments: &[&str], body: Option<&Value>) -> Result<RunDetail, ApiError> {
        let mut call = self.call(Method::POST, segments, &[]);
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).map_err(|e| {
                ApiError::invalid_response(&call.label, format!("the request body: {e}"))
            })?;
            call.body = Some(bytes);
        }
        decode(&call.label, self.json(&call)?, "run detail")
    }

    /// A `POST` of a JSON body to `/v1/<segments>`, decoded as `T`; `idempotent` says whether it may be sent again
    /// after it may have reached the server.
    fn post_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &impl serde::Serialize,
        idempotent: bool,
        what: &str,
    ) -> Result<T, ApiError> {
        let mut call = self.call(Method::POST, segments, &[]);
        call.idempotent = idempotent;
        if segments.last() == Some(&"commit") {
            // The server builds the version's archive before it answers: minutes for a large one.
            call.total_deadline = Some(COMMIT_DEADLINE);
        }
        let value = serde_json::to_value(body).map_err(|e| {
            ApiError::invalid_response(&call.label, format!("the request body: {e}"))
        })?;
        let value = recase_keys(value, self.send_casing());
        call.body = Some(value.to_string().into_bytes());
        decode(&call.label, self.json(&call)?, what)
    }

    /// The download route's call, with the version key in the server's casing.
    fn download_call(&self, kind: StorageKind, id: &str, version: Option<&str>) -> Call {
        let query: Vec<(&str, String)> = match version {
            Some(v) => match self.send_casing() {
                Casing::Snake => vec![("version_id", v.to_string())],
                Casing::Camel => vec![("versionId", v.to_string())],
            },
            None => Vec::new(),
        };
        let mut call = self.call(Method::GET, &[kind.plural(), id, "download"], &query);
        // The answer is a redirect or an archive: an idle deadline, not a total one.
        call.total_deadline = None;
        call.accept = "application/gzip, application/json";
        call
    }

    /// One round of a download: the API's answer, and the archive it leads to. `Ok(Err(e))` is a refusal by the
    /// blob host that a fresh redirect may cure.
    fn download_once(&self, call: &Call) -> Result<Result<Download, ApiError>, ApiError> {
        let resp = self.fetcher.run(call, Ok)?;
        let status = resp.status();
        if status.is_redirection() {
            let target = location(&call.label, &resp)?;
            return match self.fetcher.blob(target) {
                Ok(body) => Ok(Ok(Download::TarGz(Box::new(body)))),
                Err(e) if e.status == Some(403) => Ok(Err(e)),
                Err(e) => Err(e),
            };
        }
        if is_json(&resp) {
            let value = read_json(&call.label, resp)?;
            let legacy: LegacyDownload = decode(&call.label, value, "download file list")?;
            return self.legacy_files(&call.url, legacy).map(Ok);
        }
        Ok(Ok(Download::TarGz(Box::new(resp))))
    }

    /// The `files[]` variant: each file is fetched on its own, without the token, when it is opened.
    fn legacy_files(&self, api_url: &Url, legacy: LegacyDownload) -> Result<Download, ApiError> {
        let mut files = Vec::with_capacity(legacy.files.len());
        for f in legacy.files {
            let url = api_url.join(&f.download_url).map_err(|e| {
                invalid(
                    &format!("GET {}", api_url.path()),
                    &format!("bad download_url for {:?}: {e}", f.path),
                )
            })?;
            let fetcher = self.fetcher.clone();
            files.push(DownloadFile {
                path: f.path,
                size: f.size,
                open: Box::new(move || {
                    fetcher
                        .blob(url)
                        .map(|r| Box::new(r) as Box<dyn Read + Send>)
                }),
            });
        }
        Ok(Download::Files(files))
    }
}

impl Vm0Api for HttpApi {
    fn list_agents(&self) -> Result<Vec<Agent>, ApiError> {
        self.list_all(&["agents"], &[])
    }

    fn find_agent(&self, name: &str) -> Result<Option<Agent>, ApiError> {
        let agents: Vec<Agent> = self.list_all(&["agents"], &[("name", name.to_string())])?;
        // The server matches the lower-cased name; prefer an exact match when there is one.
        let exact = agents.iter().position(|a| a.name == name);
        let loose = agents
            .iter()
            .position(|a| a.name.eq_ignore_ascii_case(name));
        Ok(exact.or(loose).map(|i| agents[i].clone()))
    }

    fn get_agent(&self, id: &str) -> Result<Agent, ApiError> {
        self.get(&["agents", id], "agent")
    }

    fn list_agent_versions(&self, agent_id: &str) -> Result<Vec<AgentVersion>, ApiError> {
        self.list_all(&["agents", agent_id, "versions"], &[])
    }

    fn list_runs(&self) -> Result<Vec<Run>, ApiError> {
        self.list_all(&["runs"], &[])
    }

    fn runs_page(&self, cursor: Option<&str>) -> Result<Page<Run>, ApiError> {
        let mut query = vec![("limit", PAGE_LIMIT.into())];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor.to_string()));
        }
        self.page(&["runs"], &query).map(|(page, _)| page)
    }

    fn latest_run(&self) -> Result<Option<Run>, ApiError> {
        let (page, _) = self.page::<Run>(&["runs"], &[("limit", "1".into())])?;
        Ok(page.data.into_iter().next())
    }

    fn create_run(&self, body: &serde_json::Value) -> Result<RunDetail, ApiError> {
        let body = recase_keys(body.clone(), self.send_casing());
        self.post_run(&["runs"], Some(&body))
    }

    fn get_run(&self, id: &str) -> Result<RunDetail, ApiError> {
        self.get(&["runs", id], "run detail")
    }

    fn cancel_run(&self, id: &str) -> Result<RunDetail, ApiError> {
        self.post_run(&["runs", id, "cancel"], None)
    }

    fn run_logs(&self, id: &str, query: &LogQuery) -> Result<Page<LogEntry>, ApiError> {
        let q: Vec<(&str, String)> = [
            ("type", query.kind.clone()),
            ("since", query.since.clone()),
            ("until", query.until.clone()),
            ("order", query.order.clone()),
            ("limit", query.limit.map(|l| l.to_string())),
            ("cursor", query.cursor.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        self.page(&["runs", id, "logs"], &q).map(|(page, _)| page)
    }

    fn run_metrics(&self, id: &str) -> Result<RunMetrics, ApiError> {
        self.get(&["runs", id, "metrics"], "run metrics")
    }

    fn run_events(
        &self,
        id: &str,
        last_event_id: Option<u64>,
    ) -> Result<Box<dyn Iterator<Item = Result<SseEvent, ApiError>> + Send>, ApiError> {
        let query: Vec<(&str, String)> = match last_event_id {
            Some(n) => match self.send_casing() {
                Casing::Snake => vec![("last_event_id", n.to_string())],
                Casing::Camel => vec![("lastEventId", n.to_string())],
            },
            None => Vec::new(),
        };
        let mut call = self.call(Method::GET, &["runs", id, "events"], &query);
        call.total_deadline = None;
        call.accept = "text/event-stream";
        let resp = self.sse_fetcher.run(&call, |resp| {
            if resp.status().is_success() {
                Ok(resp)
            } else {
                Err(unexpected_status(&call.label, &resp))
            }
        })?;
        Ok(Box::new(sse::SseStream::new(
            BufReader::new(resp),
            call.label,
        )))
    }

    fn list_storages(&self, kind: StorageKind) -> Result<Vec<Storage>, ApiError> {
        self.list_all(&[kind.plural()], &[])
    }

    fn find_storage(&self, kind: StorageKind, name: &str) -> Result<Option<Storage>, ApiError> {
        Ok(self
            .list_storages(kind)?
            .into_iter()
            .find(|s| s.name == name))
    }

    fn get_storage(&self, kind: StorageKind, id: &str) -> Result<StorageDetail, ApiError> {
        self.get(&[kind.plural(), id], kind.title())
    }

    fn list_storage_versions(
        &self,
        kind: StorageKind,
        id: &str,
    ) -> Result<Vec<StorageVersion>, ApiError> {
        self.list_all(&[kind.plural(), id, "versions"], &[])
    }

    fn download(
        &self,
        kind: StorageKind,
        id: &str,
        version: Option<&str>,
    ) -> Result<Download, ApiError> {
        let call = self.download_call(kind, id, version);
        let mut round = 0;
        loop {
            match self.download_once(&call)? {
                Ok(download) => return Ok(download),
                Err(refused) if round < MAX_FRESH_REDIRECTS => {
                    tracing::debug!(endpoint = %call.label, error = %refused,
                        "the blob host refused the link; asking the API for a fresh one");
                    round += 1;
                }
                Err(refused) => return Err(refused),
            }
        }
    }

    fn create_storage(&self, kind: StorageKind, name: &str) -> Result<StorageDetail, ApiError> {
        let body = CreateStorageRequest {
            name: name.to_string(),
        };
        self.post_json(&[kind.plural()], &body, false, kind.title())
    }

    fn upload(
        &self,
        kind: StorageKind,
        id: &str,
        request: &UploadRequest,
    ) -> Result<UploadResponse, ApiError> {
        self.post_json(
            &[kind.plural(), id, "upload"],
            request,
            true,
            "upload session",
        )
    }

    fn put_upload(&self, target: &UploadTarget, file: &Path) -> Result<(), ApiError> {
        let url = self.base.join(&target.upload_url).map_err(|e| {
            invalid(
                "POST upload",
                &format!("bad upload_url for {:?}: {e}", target.path),
            )
        })?;
        self.put_presigned(url, file, "application/octet-stream")
    }

    fn commit(
        &self,
        kind: StorageKind,
        id: &str,
        request: &CommitRequest,
    ) -> Result<StorageVersion, ApiError> {
        self.post_json(&[kind.plural(), id, "commit"], request, false, "version")
    }

    fn prepare_push(&self, request: &PushPrepareRequest) -> Result<PushPrepareResponse, ApiError> {
        self.post_storages("prepare", request, true, "push preparation")
    }

    fn put_push(&self, url: &str, file: &Path, content_type: &'static str) -> Result<(), ApiError> {
        let url = self.base.join(url).map_err(|e| {
            invalid(
                "POST /api/storages/prepare",
                &format!("bad presigned URL: {e}"),
            )
        })?;
        self.put_presigned(url, file, content_type)
    }

    fn commit_push(&self, request: &PushCommitRequest) -> Result<PushCommitResponse, ApiError> {
        self.post_storages("commit", request, false, "push commit")
    }

    fn reachability(&self) -> Reachability {
        self.fetcher.health.report()
    }
}

impl HttpApi {
    /// A `POST` of a JSON body to `/api/storages/<step>`, the push flow (CONTRACT.md 7.2): camelCase in every era,
    /// not recased; with the token; `idempotent` as in `post_json`.
    fn post_storages<T: DeserializeOwned>(
        &self,
        step: &str,
        body: &impl serde::Serialize,
        idempotent: bool,
        what: &str,
    ) -> Result<T, ApiError> {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "storages", step]);
        }
        let body = serde_json::to_vec(body).map_err(|e| {
            ApiError::invalid_response("POST /api/storages", format!("the request body: {e}"))
        })?;
        let call = Call {
            label: format!("POST /api/storages/{step}"),
            method: Method::POST,
            url,
            auth: Some(self.auth.clone()),
            body: Some(body),
            file: None,
            accept: "application/json",
            idempotent,
            // The commit checks the uploads and builds the version before it answers.
            total_deadline: Some(if step == "commit" {
                COMMIT_DEADLINE
            } else {
                self.fetcher.opts.request_timeout
            }),
        };
        decode(&call.label, self.json(&call)?, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised() {
        let ok = |s: &str| parse_base(s).map(|u| u.to_string());
        assert_eq!(
            ok("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(ok("https://api.vm0.ai/v1/").unwrap(), "https://api.vm0.ai/");
        assert_eq!(ok("https://h/prefix/v1").unwrap(), "https://h/prefix/");
        assert!(parse_base("ftp://h").is_err());
        assert!(parse_base("not a url").is_err());
    }

    #[test]
    fn paths_are_escaped_and_labels_have_no_query() {
        let api = HttpApi::new(
            "http://127.0.0.1:1/",
            "vm0_live_secret",
            HttpOptions::default(),
        )
        .unwrap();
        let call = api.call(
            Method::GET,
            &["runs", "a/b?c", "logs"],
            &[("cursor", "x&y".into())],
        );
        assert_eq!(
            call.url.as_str(),
            "http://127.0.0.1:1/v1/runs/a%2Fb%3Fc/logs?cursor=x%26y"
        );
        assert_eq!(call.label, "GET /v1/runs/a/b?c/logs");
    }

    #[test]
    fn debug_hides_the_token() {
        let api = HttpApi::new(
            "http://127.0.0.1:1",
            "vm0_live_secret",
            HttpOptions::default(),
        )
        .unwrap();
        let shown = format!("{api:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn bad_tokens_are_refused_without_echoing_them() {
        let err = HttpApi::new("http://h", "vm0_live_\nx", HttpOptions::default()).unwrap_err();
        assert!(!err.to_string().contains("vm0_live"), "{err}");
        assert!(HttpApi::new("http://h", " ", HttpOptions::default()).is_err());
    }

    #[test]
    fn casing_is_learned_from_pagination_keys() {
        let api = HttpApi::new("http://h", "t", HttpOptions::default()).unwrap();
        assert_eq!(api.casing(), None);
        api.learn_casing(&serde_json::json!({"data": [], "pagination": {"hasMore": false}}));
        assert_eq!(api.casing(), Some(Casing::Camel));
        api.learn_casing(&serde_json::json!({"data": []}));
        assert_eq!(api.casing(), Some(Casing::Camel));
        api.learn_casing(&serde_json::json!({"pagination": {"has_more": false}}));
        assert_eq!(api.casing(), Some(Casing::Snake));
    }
}
