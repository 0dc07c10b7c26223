//! The unauthenticated `/_control/` routes: the fault config, counters, raw archives, a head moved behind the
//! client's back, and bulk data generators.
//!
//! These are the test's hands on the server: they change what the API serves without going through it, so a
//! test can set up states a client must survive (a hostile archive, a version another client published) and see
//! what the client did (the counters). The generators write benchmark-sized data quickly: one transaction for
//! N runs, and archives streamed to disk. Slow work runs off the async workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use flate2::Compression;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::blobs::{self, Source};
use crate::catalog;
use crate::ctx::Ctx;
use crate::faults::FaultConfig;
use crate::presign::USER_ID;
use crate::reply::{Params, api_error, blocking, internal, raw_json};
use crate::sim;
use crate::store::{AgentRec, AgentVersionRec, Row, VersionRec, iso, new_id, now_ms};
use vm0_api::{LogEntry, MetricPoint, RunStatus, StorageKind};

fn bad(message: impl Into<String>) -> Response {
    api_error(
        400,
        "invalid_request_error",
        "invalid_parameter",
        message,
        None,
    )
}

fn num<T: std::str::FromStr>(q: &Params, key: &str, default: T) -> Result<T, Response> {
    match q.get(key) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| bad(format!("`{key}` must be a non-negative integer, got {s:?}"))),
    }
}

fn parse_kind(word: &str) -> Result<StorageKind, Response> {
    catalog::parse_kind(word).ok_or_else(|| {
        bad(format!(
            "Unknown storage kind {word:?}: use volumes or artifacts"
        ))
    })
}

pub(crate) async fn health() -> Response {
    raw_json(200, &json!({"ok": true}))
}

pub(crate) async fn faults(State(ctx): State<Arc<Ctx>>) -> Response {
    let f = ctx.faults.lock().clone();
    raw_json(200, &serde_json::to_value(f).unwrap_or_default())
}

/// `POST /_control/faults`: replaces the whole config (an empty body resets it).
pub(crate) async fn set_faults(State(ctx): State<Arc<Ctx>>, body: Bytes) -> Response {
    let parsed: Result<FaultConfig, _> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(FaultConfig::default())
    } else {
        serde_json::from_slice(&body)
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

pub(crate) async fn stats(State(ctx): State<Arc<Ctx>>) -> Response {
    raw_json(200, &ctx.stats.snapshot().into_json())
}

/// A storage name from a control route: required, without '/'.
fn storage_name(name: Option<&str>) -> Result<String, Response> {
    name.filter(|n| !n.is_empty() && !n.contains('/'))
        .map(String::from)
        .ok_or_else(|| bad("`name` is required (a storage name without '/')"))
}

pub(crate) async fn raw_archive(
    State(ctx): State<Arc<Ctx>>,
    Path(kind): Path<String>,
    q: Params,
    body: Bytes,
) -> Response {
    let kind = match parse_kind(&kind) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let name = match storage_name(q.get("name")) {
        Ok(n) => n,
        Err(r) => return r,
    };
    blocking(move || add_raw_archive(&ctx, kind, &name, &body)).await
}

/// The body of `POST /_control/storages/<kind>/<name>/head`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewHead {
    /// Path → UTF-8 content; `null` removes the path (with `keep_head`).
    files: BTreeMap<String, Option<String>>,
    /// Start from the current head's files instead of from nothing.
    #[serde(default)]
    keep_head: bool,
    #[serde(default)]
    message: Option<String>,
}

/// `POST /_control/storages/<kind>/<name>/head` `{"files": {"path": "content", …}, "keep_head"?, "message"?}`:
/// a new version made as if another client had published it, which becomes the head. The storage is created
/// if it does not exist. Answers the version, as a commit would.
pub(crate) async fn move_head(
    State(ctx): State<Arc<Ctx>>,
    Path((kind, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let kind = match parse_kind(&kind) {
        Ok(k) => k,
        Err(r) => return r,
    };
    if !catalog::valid_name(&name) {
        return bad(format!("Invalid storage name {name:?} (CONTRACT.md 7.1)"));
    }
    let new: NewHead = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return bad(format!(
                "Invalid head ({e}); send {{\"files\": {{\"path\": \"content\"}}, \"keep_head\": false, \
                 \"message\": null}}"
            ));
        }
    };
    if let Some(p) = new.files.keys().find(|p| !catalog::valid_rel_path(p)) {
        return bad(format!(
            "Invalid path {p:?}: use a relative path without '.', '..' or empty parts"
        ));
    }
    blocking(move || publish_head(&ctx, kind, &name, new)).await
}

fn publish_head(ctx: &Ctx, kind: StorageKind, name: &str, new: NewHead) -> Response {
    let (sid, head) = {
        let mut st = ctx.store.lock();
        let sid = catalog::ensure_storage(&ctx.store, &mut st, kind, name);
        let head = st
            .storage(kind, &sid)
            .and_then(|s| s.head_version())
            .filter(|v| v.has_blob)
            .map(|v| v.id.clone());
        (sid, head)
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    if let (true, Some(head)) = (new.keep_head, head) {
        match blobs::read_all(&ctx.store.blob_path(&head)) {
            Ok(entries) => files.extend(entries),
            Err(e) => return internal(format!("Cannot read the head {head}: {e}")),
        }
    }
    for (path, content) in new.files {
        match content {
            Some(text) => files.insert(path, text.into_bytes()),
            None => files.remove(&path),
        };
    }
    let sources: Vec<(String, Source)> = files
        .into_iter()
        .map(|(p, b)| (p, Source::Bytes(b)))
        .collect();
    let message = new
        .message
        .or_else(|| Some("published by another client (control route)".into()));
    let v =
        match catalog::build_version(&ctx.store, &sid, &sources, message, Compression::default()) {
            Ok(v) => v,
            Err(e) => return internal(format!("Cannot write the archive: {e}")),
        };
    let mut st = ctx.store.lock();
    match catalog::publish(&ctx.store, &mut st, kind, &sid, v) {
        Some((_, value)) => raw_json(200, &value),
        None => bad("the storage vanished while its head was moved"),
    }
}

/// `POST /_control/storages/<kind>/raw?name=NAME` with a raw `.tar.gz` body: a version whose blob is exactly
/// those bytes (possibly hostile), as head.
fn add_raw_archive(ctx: &Ctx, kind: StorageKind, name: &str, body: &[u8]) -> Response {
    let mut st = ctx.store.lock();
    let sid = catalog::ensure_storage(&ctx.store, &mut st, kind, name);
    let id = blobs::sha256_hex(format!("storage:{sid}\n{}", blobs::sha256_hex(body)).as_bytes());
    let dest = ctx.store.blob_path(&id);
    let tmp = dest.with_extension("raw-tmp");
    if let Err(e) = std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, &dest)) {
        return internal(format!("Cannot store the archive: {e}"));
    }
    let v = VersionRec {
        id,
        size: body.len() as u64,
        file_count: blobs::count_files(body).unwrap_or(1).max(1),
        message: Some("raw archive (control route)".into()),
        created_by: USER_ID.into(),
        created_ms: now_ms(),
        files: Vec::new(),
        has_blob: true,
    };
    match catalog::publish(&ctx.store, &mut st, kind, &sid, v) {
        Some((_, value)) => raw_json(200, &value),
        None => bad("the storage vanished while adding the version"),
    }
}

/// `POST /_control/generate/runs?count=N&moving=K`: N runs with a few logs and metrics, one state save; all
/// completed but the K newest, which stay pending for a day (runs that are still moving, whose status a client
/// must keep asking about).
pub(crate) async fn generate_runs(State(ctx): State<Arc<Ctx>>, q: Params) -> Response {
    let (count, moving): (usize, usize) = match (num(&q, "count", 100), num(&q, "moving", 0)) {
        (Ok(c), Ok(m)) => (c, m),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if count > 200_000 {
        return bad("`count` is at most 200000");
    }
    if moving > count {
        return bad("`moving` is at most `count`");
    }
    blocking(move || add_runs(&ctx, count, moving)).await
}

/// How long a generated moving run stays pending.
const MOVING_PENDING_MS: u64 = 24 * 3600 * 1000;

fn add_runs(ctx: &Ctx, count: usize, moving: usize) -> Response {
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
        if let Some(a) = st.agents.last() {
            ctx.store.write(&[Row::Agent(a)]);
        }
    }
    let Some(agent) = st.agents.iter().find(|a| !a.versions.is_empty()).cloned() else {
        return bad("no agent with a version");
    };
    let now = now_ms();
    for i in 0..count {
        let created = now - ((count - i) as i64) * 1000;
        let mut r = sim::new_run(
            &agent.id,
            &agent.name,
            format!("Benchmark task #{i}"),
            created,
            &ctx.timing,
            sim::RunExtras::default(),
        );
        if i >= count - moving {
            r.pending_ms = MOVING_PENDING_MS;
            st.runs.push(r);
            continue;
        }
        let started = created + 200;
        let done = started + 800;
        let log = |ms: i64, kind: &str, message: String, metadata: Option<Value>| {
            (
                ms,
                LogEntry {
                    timestamp: iso(ms),
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
                        timestamp: iso(ms),
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
    let first = st.runs.len() - count;
    let rows: Vec<Row<'_>> = st.runs[first..].iter().map(Row::Run).collect();
    ctx.store.write(&rows);
    raw_json(
        200,
        &json!({"created": count, "moving": moving, "total_runs": st.runs.len()}),
    )
}

/// `POST /_control/generate/storage?kind=artifacts&name=NAME&big_file_mb=512&small_files=20000&small_size=1024`:
/// a version with the small files first and one big pseudo-random file last, streamed to disk.
pub(crate) async fn generate_storage(State(ctx): State<Arc<Ctx>>, q: Params) -> Response {
    let Some(kind) = catalog::parse_kind(q.get("kind").unwrap_or("artifacts")) else {
        return bad("`kind` must be volumes or artifacts");
    };
    let name = match storage_name(q.get("name")) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let (big_mb, small_files, small_size) = match (
        num::<u64>(&q, "big_file_mb", 0),
        num::<u64>(&q, "small_files", 0),
        num::<u64>(&q, "small_size", 1024),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    if small_files > 1_000_000 || small_size > (16 << 20) || big_mb > 64 * 1024 {
        return bad("at most 1000000 small files of 16 MiB each, and a big file of 65536 MB");
    }
    blocking(move || add_storage(&ctx, kind, &name, big_mb, small_files, small_size)).await
}

fn add_storage(
    ctx: &Ctx,
    kind: StorageKind,
    name: &str,
    big_mb: u64,
    small_files: u64,
    small_size: u64,
) -> Response {
    let sid = {
        let mut st = ctx.store.lock();
        catalog::ensure_storage(&ctx.store, &mut st, kind, name)
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
    let v = match catalog::build_version(&ctx.store, &sid, &files, message, Compression::fast()) {
        Ok(v) => v,
        Err(e) => return internal(format!("Cannot write the archive: {e}")),
    };
    let mut st = ctx.store.lock();
    match catalog::publish(&ctx.store, &mut st, kind, &sid, v) {
        Some((_, value)) => raw_json(200, &value),
        None => bad("the storage vanished while generating"),
    }
}
