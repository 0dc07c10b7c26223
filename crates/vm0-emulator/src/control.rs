//! The unauthenticated `/_control/` routes: injected faults, counters, raw archives and bulk data generators.
//!
//! Tests need to make the server misbehave on purpose and to see what the client did, without restarting it:
//! the fault config is one JSON document replaced as a whole (so a test states every knob it relies on), and
//! `error_count` fails exactly the next N matching requests, which makes retry tests deterministic where
//! `error_rate` cannot be. Counters are plain numbers a test compares before and after an action. The
//! generators write benchmark-sized data quickly: one state save for N runs, and archives streamed to disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::Compression;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::blobs::{self, Source};
use super::http::{Body, Request, Response};
use super::routes::{api_error, raw_json};
use super::store::{AgentRec, AgentVersionRec, VersionRec, new_id, now_ms};
use super::{Ctx, runs, storage};
use vm0_api::{LogEntry, MetricPoint, RunStatus};

/// The whole fault configuration, as `POST /_control/faults` takes it and `GET` returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FaultConfig {
    /// Delay every matching request by this many milliseconds (a stall, when large).
    pub latency_ms: u64,
    /// Only requests whose path starts with this are delayed or failed; `null` means every `/v1/` route.
    pub path_prefix: Option<String>,
    /// Fail this random fraction of matching requests.
    pub error_rate: f64,
    /// The status of injected errors.
    pub error_status: u16,
    /// Fail exactly the next N matching requests.
    pub error_count: u64,
    /// Send `Retry-After` with injected errors.
    pub retry_after_secs: Option<u64>,
    /// Blob responses declare the full length, send about half, and close.
    pub truncate_blobs: bool,
    /// Blob bodies are sent at most this many bytes per second (a slow blob host); 0 is no limit.
    pub blob_bytes_per_sec: u64,
    /// The next N blob requests answer 403 (an expired presigned URL).
    pub blob_forbidden_count: u64,
    /// The next N matching requests answer 200 with `bad_body` instead of the real answer: HTML from a proxy,
    /// malformed JSON, JSON of the wrong shape. Sent as `text/html` when it starts with `<`, else as JSON.
    pub bad_body: Option<String>,
    pub bad_body_count: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            latency_ms: 0,
            path_prefix: None,
            error_rate: 0.0,
            error_status: 503,
            error_count: 0,
            retry_after_secs: None,
            truncate_blobs: false,
            blob_bytes_per_sec: 0,
            blob_forbidden_count: 0,
            bad_body: None,
            bad_body_count: 0,
        }
    }
}

impl FaultConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(400..=599).contains(&self.error_status) {
            return Err(format!(
                "error_status {} is not an error status: use 400..599",
                self.error_status
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate {} is not a fraction: use 0.0..1.0",
                self.error_rate
            ));
        }
        Ok(())
    }
}

pub(super) struct Faults(Mutex<FaultConfig>);

impl Faults {
    pub fn new(config: FaultConfig) -> Faults {
        Faults(Mutex::new(config))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultConfig> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies latency and maybe an injected error to a request for `path`. `Some` is the error response.
    pub fn apply(&self, path: &str) -> Option<Response> {
        let (latency, fail, retry_after) = {
            let mut f = self.lock();
            let matches = match &f.path_prefix {
                Some(p) => path.starts_with(p.as_str()),
                None => path.starts_with("/v1/"),
            };
            if !matches {
                return None;
            }
            if f.bad_body_count > 0
                && let Some(body) = f.bad_body.clone()
            {
                f.bad_body_count -= 1;
                let kind = if body.starts_with('<') {
                    "text/html"
                } else {
                    "application/json"
                };
                return Some(
                    Response::new(200, Body::Bytes(body.into_bytes())).header("Content-Type", kind),
                );
            }
            let fail = if f.error_count > 0 {
                f.error_count -= 1;
                Some(f.error_status)
            } else if f.error_rate > 0.0 && fastrand::f64() < f.error_rate {
                Some(f.error_status)
            } else {
                None
            };
            (f.latency_ms, fail, f.retry_after_secs)
        };
        if latency > 0 {
            std::thread::sleep(Duration::from_millis(latency));
        }
        let status = fail?;
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
        let mut resp = api_error(status, kind, code, message, None);
        if let Some(secs) = retry_after {
            resp.headers.push(("Retry-After".into(), secs.to_string()));
        }
        Some(resp)
    }

    pub fn truncate_blobs(&self) -> bool {
        self.lock().truncate_blobs
    }

    /// The blob rate limit in bytes per second, if any.
    pub fn blob_rate(&self) -> Option<u64> {
        Some(self.lock().blob_bytes_per_sec).filter(|r| *r > 0)
    }

    /// Whether this blob request must be refused (and counts it down).
    pub fn take_blob_forbidden(&self) -> bool {
        let mut f = self.lock();
        if f.blob_forbidden_count > 0 {
            f.blob_forbidden_count -= 1;
            true
        } else {
            false
        }
    }
}

/// The counters of `GET /_control/stats`.
#[derive(Debug, Default, Serialize)]
struct StatsData {
    blob_downloads: BTreeMap<String, u64>,
    blob_requests: u64,
    blob_requests_with_authorization: u64,
    runs_created: u64,
    requests: u64,
}

#[derive(Default)]
pub(super) struct Stats(Mutex<StatsData>);

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatsData> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn request(&self) {
        self.lock().requests += 1;
    }
    pub fn blob_request(&self, with_authorization: bool) {
        let mut s = self.lock();
        s.blob_requests += 1;
        if with_authorization {
            s.blob_requests_with_authorization += 1;
        }
    }
    pub fn blob_download(&self, version_id: &str) {
        *self
            .lock()
            .blob_downloads
            .entry(version_id.to_string())
            .or_default() += 1;
    }
    pub fn run_created(&self) {
        self.lock().runs_created += 1;
    }
}

fn bad(message: impl Into<String>) -> Response {
    api_error(
        400,
        "invalid_request_error",
        "invalid_parameter",
        message,
        None,
    )
}

fn num<T: std::str::FromStr>(req: &Request, key: &str, default: T) -> Result<T, Response> {
    match req.query(key) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| bad(format!("`{key}` must be a non-negative integer, got {s:?}"))),
    }
}

pub(super) fn handle(ctx: &Arc<Ctx>, req: Request) -> Response {
    let path = req.path.trim_end_matches('/').to_string();
    match (req.method.as_str(), path.as_str()) {
        ("GET", "/_control/health") => raw_json(200, &json!({"ok": true})),
        ("GET", "/_control/faults") => {
            let f = ctx.faults.lock().clone();
            raw_json(200, &serde_json::to_value(f).unwrap_or_default())
        }
        ("POST", "/_control/faults") => {
            let parsed: Result<FaultConfig, _> = if req.body.iter().all(u8::is_ascii_whitespace) {
                Ok(FaultConfig::default())
            } else {
                serde_json::from_slice(&req.body)
            };
            let config = match parsed {
                Ok(c) => c,
                Err(e) => {
                    return bad(format!(
                        "Invalid fault config ({e}); send a JSON object with keys latency_ms, path_prefix, \
                         error_rate, error_status, error_count, retry_after_secs, truncate_blobs, \
                         blob_bytes_per_sec, blob_forbidden_count, bad_body, bad_body_count"
                    ));
                }
            };
            if let Err(e) = config.validate() {
                return bad(e);
            }
            *ctx.faults.lock() = config.clone();
            raw_json(200, &serde_json::to_value(config).unwrap_or_default())
        }
        ("GET", "/_control/stats") => {
            let s = serde_json::to_value(&*ctx.stats.lock()).unwrap_or_default();
            raw_json(200, &s)
        }
        ("POST", "/_control/generate/runs") => generate_runs(ctx, &req),
        ("POST", "/_control/generate/storage") => generate_storage(ctx, &req),
        ("POST", p) if p.starts_with("/_control/storages/") && p.ends_with("/raw") => {
            let kind_word = p
                .trim_start_matches("/_control/storages/")
                .trim_end_matches("/raw");
            raw_archive(ctx, &req, kind_word)
        }
        _ => api_error(
            404,
            "not_found_error",
            "resource_not_found",
            format!(
                "No control route {} {}: see `vm0-emulator --help`",
                req.method, req.path
            ),
            None,
        ),
    }
}

/// `POST /_control/storages/<kind>/raw?name=NAME` with a raw `.tar.gz` body: a version whose blob is exactly
/// those bytes (possibly hostile), as head.
fn raw_archive(ctx: &Ctx, req: &Request, kind_word: &str) -> Response {
    let Some(kind) = storage::parse_kind(kind_word) else {
        return bad(format!(
            "Unknown storage kind {kind_word:?}: use volumes or artifacts"
        ));
    };
    let Some(name) = req
        .query("name")
        .filter(|n| !n.is_empty() && !n.contains('/'))
    else {
        return bad("`name` is required (a storage name without '/')");
    };
    let mut st = ctx.store.lock();
    let sid = storage::ensure_storage(&mut st, kind, name);
    let id =
        blobs::sha256_hex(format!("storage:{sid}\n{}", blobs::sha256_hex(&req.body)).as_bytes());
    let dest = ctx.store.blob_path(&id);
    let tmp = dest.with_extension("raw-tmp");
    if let Err(e) = std::fs::write(&tmp, &req.body).and_then(|_| std::fs::rename(&tmp, &dest)) {
        return api_error(
            500,
            "api_error",
            "internal_error",
            format!("Cannot store the archive: {e}"),
            None,
        );
    }
    let v = VersionRec {
        id,
        size: req.body.len() as u64,
        file_count: blobs::count_files(&req.body).unwrap_or(1).max(1),
        message: Some("raw archive (control route)".into()),
        created_by: storage::USER_ID.into(),
        created_ms: now_ms(),
        files: Vec::new(),
        has_blob: true,
    };
    let Some(v) = storage::register_version(&mut st, kind, &sid, v) else {
        return bad("the storage vanished while adding the version");
    };
    let value = st
        .storage(kind, &sid)
        .map(|s| storage::version_value(kind, s, &v))
        .unwrap_or_default();
    ctx.store.save(&st);
    raw_json(200, &value)
}

/// `POST /_control/generate/runs?count=N`: N completed runs with a few logs and metrics, one state save.
fn generate_runs(ctx: &Ctx, req: &Request) -> Response {
    let count: usize = match num(req, "count", 100) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if count > 200_000 {
        return bad("`count` is at most 200000");
    }
    let mut st = ctx.store.lock();
    if st.agents.iter().all(|a| a.versions.is_empty()) {
        let now = now_ms();
        st.agents.push(AgentRec {
            id: new_id(),
            name: "bench-agent".into(),
            created_ms: now,
            updated_ms: now,
            versions: vec![AgentVersionRec {
                id: blobs::sha256_hex(b"bench-agent v1"),
                version_number: 1,
                config: json!({"model": "claude-sonnet-4"}),
                created_ms: now,
            }],
        });
    }
    let Some(agent) = st.agents.iter().find(|a| !a.versions.is_empty()).cloned() else {
        return bad("no agent with a version");
    };
    let now = now_ms();
    for i in 0..count {
        let created = now - ((count - i) as i64) * 1000;
        let mut r = runs::new_run(
            &agent.id,
            &agent.name,
            format!("Benchmark task #{i}"),
            created,
            &ctx.timing,
            runs::RunExtras::default(),
        );
        let started = created + 200;
        let done = started + 800;
        let log = |ms: i64, kind: &str, message: String, metadata: Option<Value>| {
            (
                ms,
                LogEntry {
                    timestamp: super::store::iso(ms),
                    kind: kind.into(),
                    level: "info".into(),
                    message,
                    metadata,
                },
            )
        };
        let data = json!({"subtype": "success", "is_error": false, "result": "done"});
        r.logs = vec![
            log(started, "system", "Sandbox created".into(), None),
            log(
                started + 400,
                "agent",
                format!("[result] {data}"),
                Some(json!({"sequenceNumber": 1, "eventType": "result", "eventData": data})),
            ),
            log(done, "system", "Run completed successfully".into(), None),
        ];
        r.metrics = [started, done]
            .iter()
            .map(|&ms| {
                (
                    ms,
                    MetricPoint {
                        timestamp: super::store::iso(ms),
                        cpu_percent: 20.0,
                        memory_used_mb: 256.0,
                        memory_total_mb: 2048.0,
                        disk_used_mb: 100.0,
                        disk_total_mb: 1000.0,
                    },
                )
            })
            .collect();
        r.last_seq = 1;
        r.started_ms = Some(started);
        r.completed_ms = Some(done);
        r.status = RunStatus::Completed;
        r.output = Some("done".into());
        st.runs.push(r);
    }
    ctx.store.save(&st);
    raw_json(200, &json!({"created": count, "total_runs": st.runs.len()}))
}

/// `POST /_control/generate/storage?kind=artifacts&name=NAME&big_file_mb=512&small_files=20000&small_size=1024`:
/// a version with the small files first and one big pseudo-random file last, streamed to disk.
fn generate_storage(ctx: &Ctx, req: &Request) -> Response {
    let Some(kind) = storage::parse_kind(req.query("kind").unwrap_or("artifacts")) else {
        return bad("`kind` must be volumes or artifacts");
    };
    let Some(name) = req
        .query("name")
        .filter(|n| !n.is_empty() && !n.contains('/'))
    else {
        return bad("`name` is required (a storage name without '/')");
    };
    let (big_mb, small_files, small_size) = match (
        num::<u64>(req, "big_file_mb", 0),
        num::<u64>(req, "small_files", 0),
        num::<u64>(req, "small_size", 1024),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    if small_files > 1_000_000 || small_size > (16 << 20) || big_mb > 64 * 1024 {
        return bad("at most 1000000 small files of 16 MiB each, and a big file of 65536 MB");
    }
    let sid = {
        let mut st = ctx.store.lock();
        let sid = storage::ensure_storage(&mut st, kind, name);
        ctx.store.save(&st);
        sid
    };
    let mut files: Vec<(String, Source)> = (0..small_files)
        .map(|i| {
            let line = format!("small file {i:06} of {name}\n");
            let mut content = line.repeat((small_size as usize / line.len()) + 1);
            content.truncate(small_size as usize);
            (
                format!("small/{:03}/{i:06}.txt", i / 1000),
                Source::Bytes(content.into_bytes()),
            )
        })
        .collect();
    if big_mb > 0 {
        files.push((
            "big.bin".into(),
            Source::Random {
                seed: 0x5eed_0000 + big_mb,
                len: big_mb << 20,
            },
        ));
    }
    let message = Some(format!(
        "generated: {small_files} small files, {big_mb} MB big file"
    ));
    let v = match storage::build_version(&ctx.store, &sid, &files, message, Compression::fast()) {
        Ok(v) => v,
        Err(e) => {
            return api_error(
                500,
                "api_error",
                "internal_error",
                format!("Cannot write the archive: {e}"),
                None,
            );
        }
    };
    let mut st = ctx.store.lock();
    let Some(v) = storage::register_version(&mut st, kind, &sid, v) else {
        return bad("the storage vanished while generating");
    };
    let value = st
        .storage(kind, &sid)
        .map(|s| storage::version_value(kind, s, &v))
        .unwrap_or_default();
    ctx.store.save(&st);
    raw_json(200, &value)
}
