//! `HttpApi` against real servers over loopback: the emulator (every endpoint, both casings, faults, counters) and,
//! for what the emulator cannot show (what exactly went over the wire, broken bodies), a tiny scripted HTTP server
//! in this file that records each request it receives.
//!
//! Timings are never asserted tightly: a deadline test only checks that the call returned, with the right error.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use serde_json::{Value, json};
use vm0fs::api::http::{HttpApi, HttpOptions};
use vm0fs::api::models::{Casing, LogQuery, RunStatus, SseEvent, StorageKind};
use vm0fs::api::{ApiError, ApiErrorKind, Download, Vm0Api};

/// Options for tests: the defaults, with backoff short enough that retry tests take milliseconds.
fn fast() -> HttpOptions {
    HttpOptions {
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(3),
        ..HttpOptions::default()
    }
}

fn client(emu: &Emulator) -> HttpApi {
    HttpApi::new(emu.base_url(), emu.token(), fast()).expect("client")
}

fn start(args: &[&str]) -> Emulator {
    let mut all = vec!["--seed", "demo"];
    all.extend_from_slice(args);
    Emulator::start(&all)
}

fn stat(emu: &Emulator, key: &str) -> u64 {
    let stats: Value = serde_json::to_value(emu.stats()).expect("stats as JSON");
    stats[key].as_u64().unwrap_or(0)
}

fn blob_downloads(emu: &Emulator, version: &str) -> u64 {
    let stats: Value = serde_json::to_value(emu.stats()).expect("stats as JSON");
    stats["blob_downloads"][version].as_u64().unwrap_or(0)
}

/// The faults config with every knob at rest, then `changes` applied.
fn faults(changes: Value) -> Value {
    let mut f = json!({"latency_ms":0,"path_prefix":null,"error_rate":0.0,"error_status":503,"error_count":0,
                       "retry_after_secs":null,"truncate_blobs":false,"blob_forbidden_count":0});
    for (k, v) in changes.as_object().cloned().unwrap_or_default() {
        f[k] = v;
    }
    f
}

/// The regular-file entries (path, size) of a tar.gz stream, read to its end.
fn tar_entries(body: impl Read) -> Vec<(String, u64)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(body));
    let mut out = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("entry bytes");
        assert_eq!(bytes.len() as u64, entry.header().size().expect("size"));
        out.push((path, bytes.len() as u64));
    }
    out
}

fn expect_targz(d: Download) -> Vec<(String, u64)> {
    match d {
        Download::TarGz(body) => tar_entries(body),
        Download::Files(_) => panic!("expected a tar.gz, got a file list"),
    }
}

/// A volume that has at least two versions, with its versions (newest first).
fn storage_with_history(
    api: &HttpApi,
    kind: StorageKind,
) -> Option<(vm0fs::api::models::Storage, Vec<String>)> {
    for s in api.list_storages(kind).expect("list storages") {
        let versions: Vec<String> = api
            .list_storage_versions(kind, &s.id)
            .expect("versions")
            .into_iter()
            .filter(|v| v.file_count > 0)
            .map(|v| v.id)
            .collect();
        if versions.len() >= 2 {
            return Some((s, versions));
        }
    }
    None
}

/// The error of a download expected to fail (`Download` has no `Debug`, so no `expect_err`).
fn download_err(api: &HttpApi, kind: StorageKind, id: &str, version: Option<&str>) -> ApiError {
    match api.download(kind, id, version) {
        Ok(_) => panic!("the download of {id} {version:?} succeeded"),
        Err(e) => e,
    }
}

fn assert_errno(err: &ApiError, errno: i32) {
    assert_eq!(err.errno(), errno, "wrong errno for {err}");
}

// ---------------------------------------------------------------------------------------------------------------
// Every endpoint, in both casings.

fn every_endpoint(casing: &str) {
    let emu = start(&["--casing", casing, "--run-pending-ms", "60000"]);
    let api = client(&emu);
    assert_eq!(api.casing(), None);

    // Agents.
    let agents = api.list_agents().expect("list agents");
    assert!(!agents.is_empty());
    let expected = if casing == "camel" {
        Casing::Camel
    } else {
        Casing::Snake
    };
    assert_eq!(api.casing(), Some(expected), "casing learned from a list");
    let agent = &agents[0];
    let found = api.find_agent(&agent.name).expect("find agent");
    assert_eq!(found.as_ref().map(|a| &a.id), Some(&agent.id));
    assert_eq!(api.find_agent("no-such-agent-here").expect("find"), None);
    assert_eq!(
        api.get_agent(&agent.id).expect("get agent").name,
        agent.name
    );
    let versions = api.list_agent_versions(&agent.id).expect("agent versions");
    assert!(versions.iter().all(|v| v.agent_id == agent.id));

    // Runs: all pages, each once, newest first.
    let runs = api.list_runs().expect("list runs");
    assert!(runs.len() >= 30, "only {} runs", runs.len());
    let ids: HashSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), runs.len(), "a run is listed twice");
    let latest = api.latest_run().expect("latest").expect("a run");
    assert_eq!(latest.id, runs[0].id);
    let terminal = runs
        .iter()
        .find(|r| r.status == RunStatus::Completed)
        .expect("a completed run");
    let detail = api.get_run(&terminal.id).expect("get run");
    assert_eq!(detail.id, terminal.id);
    let logs = api
        .run_logs(&terminal.id, &LogQuery::default())
        .expect("logs");
    assert!(!logs.data.is_empty(), "a completed demo run has logs");
    let second = api
        .run_logs(
            &terminal.id,
            &LogQuery {
                limit: Some(1),
                ..LogQuery::default()
            },
        )
        .expect("one log entry");
    assert_eq!(second.data.len(), 1);
    api.run_metrics(&terminal.id).expect("metrics");
    let events: Vec<SseEvent> = api
        .run_events(&terminal.id, None)
        .expect("events")
        .collect::<Result<_, _>>()
        .expect("event stream");
    assert!(matches!(events.first(), Some(SseEvent::Status { .. })));
    assert!(matches!(events.last(), Some(SseEvent::Complete { .. })));

    // Create, get, cancel a run; the body's keys go out in the server's casing, so the server sees them.
    let artifact = api
        .list_storages(StorageKind::Artifact)
        .expect("artifacts")
        .into_iter()
        .next()
        .expect("an artifact");
    let created = api
        .create_run(
            &json!({"agent": agent.name, "prompt": "hello", "artifact_name": artifact.name,
                            "variables": {"SNAKE_KEY": "x"}}),
        )
        .expect("create run");
    assert_eq!(created.status, RunStatus::Pending);
    assert_eq!(
        created.artifact_name.as_deref(),
        Some(artifact.name.as_str()),
        "artifact_name was not understood by the {casing} server"
    );
    assert_eq!(api.get_run(&created.id).expect("get").prompt, "hello");
    let cancelled = api.cancel_run(&created.id).expect("cancel");
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let again = api.cancel_run(&created.id).expect_err("cancel twice");
    assert_eq!(again.status, Some(400));
    assert_errno(&again, libc::EINVAL);

    // Volumes and artifacts.
    for kind in [StorageKind::Volume, StorageKind::Artifact] {
        let list = api.list_storages(kind).expect("list");
        assert!(!list.is_empty(), "the demo has {}", kind.plural());
        let s = &list[0];
        let found = api
            .find_storage(kind, &s.name)
            .expect("find")
            .expect("some");
        assert_eq!(found.id, s.id);
        assert_eq!(api.find_storage(kind, "no-such").expect("find"), None);
        let detail = api.get_storage(kind, &s.id).expect("get storage");
        assert_eq!(detail.name, s.name);
        let versions = api.list_storage_versions(kind, &s.id).expect("versions");
        assert_eq!(
            versions.first().map(|v| &v.id),
            s.current_version_id.as_ref()
        );
    }
    let (volume, versions) =
        storage_with_history(&api, StorageKind::Volume).expect("a volume with two versions");
    let head = expect_targz(
        api.download(StorageKind::Volume, &volume.id, None)
            .expect("download head"),
    );
    assert!(!head.is_empty());
    // A pinned old version, by its full id and by an 8-character prefix: the server saw the version key.
    let old = versions.last().expect("old version").clone();
    expect_targz(
        api.download(StorageKind::Volume, &volume.id, Some(&old))
            .expect("download old"),
    );
    expect_targz(
        api.download(StorageKind::Volume, &volume.id, Some(&old[..8]))
            .expect("download by prefix"),
    );
    assert_eq!(blob_downloads(&emu, &old), 2);

    // Errors keep the endpoint and the API's error object.
    let err = api.get_run("no-such-run").expect_err("404");
    assert_eq!(err.kind, ApiErrorKind::Http);
    assert_eq!(err.endpoint, "GET /v1/runs/no-such-run");
    assert_eq!(
        err.detail.as_ref().map(|d| d.code.as_str()),
        Some("resource_not_found")
    );
    assert_errno(&err, libc::ENOENT);
    let err = download_err(&api, StorageKind::Volume, &volume.id, Some("0000000000"));
    assert_errno(&err, libc::ENOENT);
    let err = api
        .create_run(&json!({"prompt": "no agent"}))
        .expect_err("400");
    assert_errno(&err, libc::EINVAL);
    assert!(
        err.to_string().starts_with("POST /v1/runs: HTTP 400"),
        "{err}"
    );
}

#[test]
fn every_endpoint_snake_case() {
    every_endpoint("snake");
}

#[test]
fn every_endpoint_camel_case() {
    every_endpoint("camel");
}

#[test]
fn a_wrong_token_is_eacces_and_names_the_token() {
    let emu = start(&[]);
    let api = HttpApi::new(emu.base_url(), "vm0_live_wrong", fast()).expect("client");
    let err = api.list_agents().expect_err("401");
    assert_eq!(err.status, Some(401));
    assert_errno(&err, libc::EACCES);
    let shown = err.to_string();
    assert!(shown.contains("VM0_API_KEY"), "{shown}");
    assert!(!shown.contains("vm0_live_wrong"), "{shown}");
}

#[test]
fn lists_follow_cursors_past_the_first_page() {
    let emu = start(&[]);
    let generated = reqwest::blocking::Client::new()
        .post(format!(
            "{}/_control/generate/runs?count=150",
            emu.base_url()
        ))
        .send()
        .expect("generate runs");
    assert!(generated.status().is_success(), "{}", generated.status());
    let api = client(&emu);
    let before = stat(&emu, "requests");
    let runs = api.list_runs().expect("list runs");
    assert!(runs.len() >= 180, "only {} runs", runs.len());
    let ids: HashSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), runs.len(), "a run is listed twice");
    assert!(stat(&emu, "requests") - before >= 2, "one page only");
    assert!(
        runs.windows(2).all(|w| w[0].created_at >= w[1].created_at),
        "newest first"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Downloads.

#[test]
fn a_redirected_download_never_sends_the_token_to_the_blob_route() {
    let emu = start(&[]);
    let api = client(&emu);
    let volume = api
        .list_storages(StorageKind::Volume)
        .expect("volumes")
        .into_iter()
        .find(|s| s.file_count > 0)
        .expect("a volume with files");
    let entries = expect_targz(
        api.download(StorageKind::Volume, &volume.id, None)
            .expect("download"),
    );
    assert_eq!(entries.len() as u64, volume.file_count);
    assert_eq!(
        entries.iter().map(|e| e.1).sum::<u64>(),
        volume.size,
        "sizes"
    );
    assert!(stat(&emu, "blob_requests") >= 1);
    assert_eq!(stat(&emu, "blob_requests_with_authorization"), 0);
}

#[test]
fn a_direct_download_is_streamed() {
    let emu = start(&["--download-mode", "direct"]);
    let api = client(&emu);
    let volume = api
        .list_storages(StorageKind::Volume)
        .expect("volumes")
        .into_iter()
        .find(|s| s.file_count > 0)
        .expect("a volume with files");
    let entries = expect_targz(
        api.download(StorageKind::Volume, &volume.id, None)
            .expect("download"),
    );
    assert_eq!(entries.len() as u64, volume.file_count);
}

#[test]
fn the_files_download_variant_fetches_each_file_without_the_token() {
    let emu = start(&["--download-mode", "files"]);
    let api = client(&emu);
    let volume = api
        .list_storages(StorageKind::Volume)
        .expect("volumes")
        .into_iter()
        .find(|s| s.file_count > 0)
        .expect("a volume with files");
    let Download::Files(files) = api
        .download(StorageKind::Volume, &volume.id, None)
        .expect("download")
    else {
        panic!("expected a file list");
    };
    assert_eq!(files.len() as u64, volume.file_count);
    for f in files {
        let mut bytes = Vec::new();
        (f.open)()
            .expect("open file")
            .read_to_end(&mut bytes)
            .expect("read");
        assert_eq!(bytes.len() as u64, f.size, "{}", f.path);
    }
    assert_eq!(stat(&emu, "blob_requests_with_authorization"), 0);
}

#[test]
fn a_refused_blob_link_is_replaced_by_a_fresh_redirect() {
    let emu = start(&[]);
    let api = client(&emu);
    let volume = api
        .list_storages(StorageKind::Volume)
        .expect("volumes")
        .into_iter()
        .find(|s| s.file_count > 0)
        .expect("a volume with files");
    emu.set_faults(faults(json!({"blob_forbidden_count": 2})));
    let entries = expect_targz(
        api.download(StorageKind::Volume, &volume.id, None)
            .expect("download after two refusals"),
    );
    assert!(!entries.is_empty());
    assert_eq!(stat(&emu, "blob_requests"), 3);

    // Past the bound, the refusal is the answer.
    emu.set_faults(faults(json!({"blob_forbidden_count": 10})));
    let err = download_err(&api, StorageKind::Volume, &volume.id, None);
    assert_eq!(err.status, Some(403));
    assert_errno(&err, libc::EACCES);
    assert!(!err.endpoint.contains("X-Amz"), "{}", err.endpoint);
    assert!(!err.to_string().contains("Signature="), "{err}");
}

#[test]
fn a_truncated_archive_is_a_read_error_not_a_short_file() {
    let emu = start(&[]);
    let api = client(&emu);
    let volume = api
        .list_storages(StorageKind::Volume)
        .expect("volumes")
        .into_iter()
        .find(|s| s.file_count > 0)
        .expect("a volume with files");
    emu.set_faults(faults(json!({"truncate_blobs": true})));
    let Download::TarGz(mut body) = api
        .download(StorageKind::Volume, &volume.id, None)
        .expect("the response head arrives")
    else {
        panic!("expected a tar.gz");
    };
    let mut bytes = Vec::new();
    assert!(
        body.read_to_end(&mut bytes).is_err(),
        "a body cut short of its Content-Length read as complete ({} bytes)",
        bytes.len()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Retries and deadlines.

#[test]
fn injected_503s_are_retried_then_reported_as_eio() {
    let emu = start(&[]);
    let api = client(&emu);
    emu.set_faults(faults(
        json!({"error_count": 2, "error_status": 503, "path_prefix": "/v1/agents"}),
    ));
    let before = stat(&emu, "requests");
    api.list_agents().expect("succeeds on the third attempt");
    assert_eq!(stat(&emu, "requests") - before, 3);

    emu.set_faults(faults(
        json!({"error_count": 100, "error_status": 503, "path_prefix": "/v1/agents"}),
    ));
    let before = stat(&emu, "requests");
    let err = api.list_agents().expect_err("past the budget");
    assert_eq!(err.status, Some(503));
    assert_errno(&err, libc::EIO);
    assert_eq!(
        stat(&emu, "requests") - before,
        u64::from(fast().max_retries) + 1
    );
}

#[test]
fn retry_after_on_429_is_honoured() {
    let emu = start(&[]);
    let api = client(&emu);
    emu.set_faults(faults(
        json!({"error_count": 1, "error_status": 429, "retry_after_secs": 1,
                                 "path_prefix": "/v1/agents"}),
    ));
    let started = Instant::now();
    api.list_agents().expect("succeeds after waiting");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "did not wait for Retry-After"
    );

    emu.set_faults(faults(
        json!({"error_count": 100, "error_status": 429, "path_prefix": "/v1/agents"}),
    ));
    let err = api.list_agents().expect_err("past the budget");
    assert_errno(&err, libc::EAGAIN);
}

/// A client made with `probe_every` that cannot connect even after its retries holds the next calls back: they
/// fail at once (`Offline`, `EIO`) and are not sent, until its probe gets an answer; a client made without it
/// sends every call.
#[test]
fn a_client_that_cannot_connect_holds_calls_back_until_its_probe_gets_an_answer() {
    let mut emu = start(&[]);
    let probing = HttpOptions {
        probe_every: Some(Duration::from_millis(100)),
        ..fast()
    };
    let api = HttpApi::new(emu.base_url(), emu.token(), probing).expect("client");
    let plain = client(&emu);
    api.list_agents().expect("the API answers");
    emu.stop_process();

    let err = api.list_agents().expect_err("the API is gone");
    assert_eq!(err.kind, ApiErrorKind::Transport, "{err}");
    let down = api.reachability();
    assert!(down.unreachable_since.is_some());
    assert!(down.calls.retried > 0, "{:?}", down.calls);
    let err = api.get_run("any").expect_err("held back");
    assert_eq!(err.kind, ApiErrorKind::Offline, "{err}");
    assert_errno(&err, libc::EIO);
    assert!(err.to_string().contains("not sent"), "{err}");
    let held = api.reachability().calls;
    assert_eq!(
        (held.sent, held.retried),
        (down.calls.sent, down.calls.retried)
    );
    assert_eq!(held.held_back, down.calls.held_back + 1);

    for _ in 0..2 {
        let err = plain.list_agents().expect_err("the API is gone");
        assert_eq!(err.kind, ApiErrorKind::Transport, "{err}");
    }
    assert_eq!(plain.reachability().calls.held_back, 0);

    emu.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.reachability().unreachable_since.is_some() {
        assert!(
            Instant::now() < deadline,
            "the probe never saw the API back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(api.reachability().calls.probes > 0);
    api.list_agents().expect("sent again");
}

#[test]
fn a_stalled_server_hits_the_deadline() {
    let emu = start(&[]);
    let api = HttpApi::new(
        emu.base_url(),
        emu.token(),
        HttpOptions {
            request_timeout: Duration::from_millis(300),
            max_retries: 1,
            ..fast()
        },
    )
    .expect("client");
    emu.set_faults(faults(json!({"latency_ms": 20_000})));
    let err = api.list_agents().expect_err("deadline");
    assert_eq!(err.kind, ApiErrorKind::Transport);
    assert_errno(&err, libc::EIO);
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[test]
fn posts_are_not_retried_after_reaching_the_server() {
    let emu = start(&["--run-pending-ms", "60000"]);
    let api = client(&emu);
    let agent = api.list_agents().expect("agents").remove(0); // also learns the casing
    emu.set_faults(faults(
        json!({"error_count": 3, "error_status": 503, "path_prefix": "/v1/runs"}),
    ));
    let (requests, created) = (stat(&emu, "requests"), stat(&emu, "runs_created"));
    let err = api
        .create_run(&json!({"agent": agent.name, "prompt": "once"}))
        .expect_err("503");
    assert_eq!(err.status, Some(503));
    assert_eq!(
        stat(&emu, "requests") - requests,
        1,
        "create_run was retried"
    );
    assert_eq!(stat(&emu, "runs_created"), created);

    let err = api.cancel_run("some-run").expect_err("503");
    assert_eq!(err.status, Some(503));
    assert_eq!(
        stat(&emu, "requests") - requests,
        2,
        "cancel_run was retried"
    );
}

#[test]
fn the_concurrent_run_limit_is_eagain_and_not_retried() {
    let emu = start(&["--max-concurrent-runs", "1", "--run-pending-ms", "60000"]);
    let api = client(&emu);
    let agent = api.list_agents().expect("agents").remove(0);
    let body = json!({"agent": agent.name, "prompt": "one more"});
    // The demo seed has runs in flight already; create runs until the limit answers.
    let mut refused = None;
    for _ in 0..20 {
        let before = stat(&emu, "requests");
        if let Err(e) = api.create_run(&body) {
            refused = Some((e, stat(&emu, "requests") - before));
            break;
        }
    }
    let (err, requests) = refused.expect("never refused");
    assert_eq!(requests, 1, "the refused create_run was retried");
    assert_eq!(err.status, Some(429));
    assert_errno(&err, libc::EAGAIN);
}

#[test]
fn connection_refused_is_a_transport_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let api = HttpApi::new(
        &format!("http://127.0.0.1:{port}"),
        "vm0_live_x",
        HttpOptions {
            max_retries: 1,
            ..fast()
        },
    )
    .expect("client");
    let err = api.get_run("r").expect_err("refused");
    assert_eq!(err.kind, ApiErrorKind::Transport);
    assert_errno(&err, libc::EIO);
    assert_eq!(err.endpoint, "GET /v1/runs/r");
}

// ---------------------------------------------------------------------------------------------------------------
// The event stream of a live run.

#[test]
fn events_follow_a_live_run_to_its_end_and_resume() {
    let emu = start(&[
        "--run-pending-ms",
        "300",
        "--run-duration-ms",
        "2500",
        "--log-interval-ms",
        "200",
    ]);
    let api = client(&emu);
    let agent = api.list_agents().expect("agents").remove(0);
    let run = api
        .create_run(&json!({"agent": agent.name, "prompt": "stream me"}))
        .expect("create");
    let events: Vec<SseEvent> = api
        .run_events(&run.id, None)
        .expect("events")
        .collect::<Result<_, _>>()
        .expect("stream");
    assert!(
        matches!(events.first(), Some(SseEvent::Status { run_id, .. }) if *run_id == run.id),
        "{events:?}"
    );
    let Some(SseEvent::Complete { status, .. }) = events.last() else {
        panic!("no complete event: {events:?}");
    };
    assert!(status.is_terminal());
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            SseEvent::Output { sequence, .. } => Some(*sequence),
            _ => None,
        })
        .collect();
    if let Some(&first) = sequences.first() {
        let resumed: Vec<u64> = api
            .run_events(&run.id, Some(first))
            .expect("resume")
            .filter_map(|e| match e {
                Ok(SseEvent::Output { sequence, .. }) => Some(sequence),
                _ => None,
            })
            .collect();
        assert!(resumed.iter().all(|s| *s > first), "{resumed:?}");
    }
    assert_eq!(
        api.run_events("no-such-run", None).err().map(|e| e.errno()),
        Some(libc::ENOENT)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// A scripted server, to see exactly what goes over the wire.

/// One request as the scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Script = dyn Fn(&Seen, &str) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync;

/// A one-thread HTTP/1.1 server answering each request by `script(request, base_url)` and closing.
struct Scripted {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn start(script: Box<Script>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, url) = (seen.clone(), base.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(req) = read_request(&stream) {
                    log.lock().expect("log").push(req.clone());
                    let (status, headers, body) = script(&req, &url);
                    write_response(stream, status, &headers, &body);
                }
            }
        });
        Scripted { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn write_response(mut stream: TcpStream, status: u16, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn json_reply(v: Value) -> (u16, Vec<(String, String)>, Vec<u8>) {
    (
        200,
        vec![("Content-Type".into(), "application/json".into())],
        v.to_string().into_bytes(),
    )
}

/// A camelCase server: one agent, one volume, and a download that redirects to `/blob` on the same origin.
fn camel_script(req: &Seen, base: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let path = req.target.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "/v1/agents") => json_reply(json!({"data": [{"id":"a1","name":"coder","currentVersionId":null,
            "createdAt":"t","updatedAt":"t"}], "pagination": {"hasMore": false, "nextCursor": null}})),
        ("GET", "/v1/volumes/vol-1/download") => (
            302,
            vec![("Location".into(), format!("{base}/blob/archive.tar.gz?sig=abc"))],
            Vec::new(),
        ),
        ("GET", "/blob/archive.tar.gz") => (
            200,
            vec![("Content-Type".into(), "application/gzip".into())],
            gzip_tar_of_one_file(),
        ),
        ("POST", "/v1/runs") => (
            202,
            vec![("Content-Type".into(), "application/json".into())],
            json!({"id":"r1","status":"pending","createdAt":"t"})
                .to_string()
                .into_bytes(),
        ),
        ("GET", "/v1/runs/r1/events") => (
            200,
            vec![("Content-Type".into(), "text/event-stream".into())],
            b": hi\n\nevent: complete\ndata: {\"status\":\"completed\",\"output\":\"ok\",\"error\":null}\n\n"
                .to_vec(),
        ),
        ("GET", "/v1/runs/html") => (
            200,
            vec![("Content-Type".into(), "text/html".into())],
            b"<html>login</html>".to_vec(),
        ),
        ("GET", "/v1/runs/wrong-type") => json_reply(json!({"id": 5, "status": "running"})),
        ("GET", "/v1/runs/bad-gateway") => (502, vec![], b"<html>bad gateway</html>".to_vec()),
        _ => (404, vec![], Vec::new()),
    }
}

fn gzip_tar_of_one_file() -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let data = b"hello\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "data/hello.txt", &data[..])
        .expect("append");
    builder.into_inner().expect("tar").finish().expect("gzip")
}

#[test]
fn the_learned_casing_is_what_goes_over_the_wire() {
    let server = Scripted::start(Box::new(camel_script));
    let api = HttpApi::new(&server.base, "vm0_live_secret", fast()).expect("client");

    // Nothing learned yet: the download asks the server's casing first, then sends `versionId`.
    let entries = expect_targz(
        api.download(StorageKind::Volume, "vol-1", Some("3f2a9c1d"))
            .expect("download"),
    );
    assert_eq!(entries, vec![("data/hello.txt".to_string(), 6)]);
    api.create_run(&json!({"agent":"coder","prompt":"p","artifact_name":"out",
                           "variables":{"my_var":"v"}}))
        .expect("create");
    let events: Vec<_> = api
        .run_events("r1", Some(7))
        .expect("events")
        .collect::<Result<Vec<_>, _>>()
        .expect("stream");
    assert_eq!(events.len(), 1);

    let seen = server.seen();
    let download = seen
        .iter()
        .find(|s| s.target.starts_with("/v1/volumes/vol-1/download"))
        .expect("download request");
    assert_eq!(
        download.target,
        "/v1/volumes/vol-1/download?versionId=3f2a9c1d"
    );
    let blob = seen
        .iter()
        .find(|s| s.target.starts_with("/blob/"))
        .expect("blob request");
    assert_eq!(
        blob.header("authorization"),
        None,
        "the token went to the blob URL"
    );
    assert_eq!(
        download.header("authorization"),
        Some("Bearer vm0_live_secret")
    );
    let create = seen
        .iter()
        .find(|s| s.method == "POST")
        .expect("create request");
    let body: Value = serde_json::from_str(&create.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"agent":"coder","prompt":"p","artifactName":"out","variables":{"my_var":"v"}})
    );
    assert!(
        seen.iter()
            .any(|s| s.target == "/v1/runs/r1/events?lastEventId=7")
    );
    assert!(seen.iter().all(|s| !s.target.contains("secret")));
}

#[test]
fn broken_bodies_are_invalid_responses_naming_the_endpoint() {
    let server = Scripted::start(Box::new(camel_script));
    let api = HttpApi::new(&server.base, "vm0_live_secret", fast()).expect("client");

    let err = api.get_run("html").expect_err("HTML");
    assert_eq!(err.kind, ApiErrorKind::InvalidResponse);
    assert_eq!(err.endpoint, "GET /v1/runs/html");
    assert!(err.to_string().contains("text/html"), "{err}");
    assert_errno(&err, libc::EIO);

    let err = api.get_run("wrong-type").expect_err("wrong type");
    assert_eq!(err.kind, ApiErrorKind::InvalidResponse);
    assert!(err.to_string().contains("run detail"), "{err}");

    let err = api.get_run("bad-gateway").expect_err("502");
    assert_eq!(err.status, Some(502));
    assert!(err.to_string().contains("bad gateway"), "{err}");
    let attempts = server
        .seen()
        .iter()
        .filter(|s| s.target == "/v1/runs/bad-gateway")
        .count();
    assert_eq!(attempts as u32, fast().max_retries + 1);
    assert!(!err.to_string().contains("secret"));
    assert!(!format!("{err:?}").contains("secret"));
}

// ---------------------------------------------------------------------------------------------------------------
// The three-step upload (CONTRACT.md 7.1) and the version id it makes (6.1).

/// The version id of CONTRACT.md 6.1 for `files` (path, bytes) of storage `storage_id`.
fn content_hash(storage_id: &str, files: &[(&str, &[u8])]) -> String {
    use sha2::{Digest, Sha256};
    let mut lines: Vec<String> = files
        .iter()
        .map(|(p, b)| format!("{p}:{}", hex::encode(Sha256::digest(b))))
        .collect();
    lines.sort();
    let text = format!("storage:{storage_id}\n{}", lines.join("\n"));
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Uploads `files` to a storage through the three steps and returns the committed version.
fn upload_files(
    api: &HttpApi,
    id: &str,
    files: &[(&str, &[u8])],
) -> Result<vm0fs::api::models::StorageVersion, ApiError> {
    use sha2::{Digest, Sha256};
    use vm0fs::api::models::{CommitRequest, UploadFileSpec, UploadRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let request = UploadRequest {
        files: files
            .iter()
            .map(|(p, b)| UploadFileSpec {
                path: p.to_string(),
                size: b.len() as u64,
                hash: Some(hex::encode(Sha256::digest(b))),
            })
            .collect(),
        message: Some("from the test".into()),
    };
    let session = api.upload(StorageKind::Volume, id, &request)?;
    assert_eq!(session.files.len(), files.len());
    for target in &session.files {
        let (_, bytes) = files
            .iter()
            .find(|(p, _)| *p == target.path)
            .expect("a target for a declared path");
        let local = dir.path().join(&target.upload_id);
        std::fs::write(&local, bytes).expect("write");
        api.put_upload(target, &local)?;
    }
    api.commit(
        StorageKind::Volume,
        id,
        &CommitRequest {
            upload_session_id: session.upload_session_id,
            message: None,
        },
    )
}

#[test]
fn the_three_step_upload_makes_the_content_hash_version() {
    let emu = start(&[]);
    let api = client(&emu);
    let created = api
        .create_storage(StorageKind::Volume, "fresh-input")
        .expect("create");
    assert_eq!(created.name, "fresh-input");
    assert_eq!(created.current_version_id, None);
    let files: [(&str, &[u8]); 3] = [
        ("a.txt", b"alpha\n"),
        ("deep/dir/b.bin", &[0u8, 1, 2, 255]),
        ("empty", b""),
    ];
    let version = upload_files(&api, &created.id, &files).expect("upload");
    assert_eq!(version.id, content_hash(&created.id, &files));
    assert_eq!(version.file_count, 3);
    let head = api
        .get_storage(StorageKind::Volume, &created.id)
        .expect("get");
    assert_eq!(
        head.current_version_id.as_deref(),
        Some(version.id.as_str())
    );
    let mut entries = expect_targz(
        api.download(StorageKind::Volume, &created.id, None)
            .expect("download"),
    );
    entries.sort();
    assert_eq!(
        entries,
        vec![
            ("a.txt".to_string(), 6),
            ("deep/dir/b.bin".to_string(), 4),
            ("empty".to_string(), 0)
        ]
    );
    // The same content again is the same version (deduplication), not a second one.
    let again = upload_files(&api, &created.id, &files).expect("upload again");
    assert_eq!(again.id, version.id);
    let versions = api
        .list_storage_versions(StorageKind::Volume, &created.id)
        .expect("versions");
    assert_eq!(versions.len(), 1);
    // The token never reached the blob host, downloads included.
    assert!(stat(&emu, "blob_requests") > 0);
    assert_eq!(stat(&emu, "blob_requests_with_authorization"), 0);
}

#[test]
fn an_empty_upload_is_an_empty_version() {
    let emu = start(&[]);
    let api = client(&emu);
    let created = api
        .create_storage(StorageKind::Volume, "will-be-empty")
        .expect("create");
    let version = upload_files(&api, &created.id, &[]).expect("empty upload");
    assert_eq!(version.id, content_hash(&created.id, &[]));
    assert_eq!(version.file_count, 0);
}

#[test]
fn creating_a_storage_refuses_duplicates_and_bad_names() {
    let emu = start(&[]);
    let api = client(&emu);
    api.create_storage(StorageKind::Volume, "twice")
        .expect("first");
    let err = api
        .create_storage(StorageKind::Volume, "twice")
        .expect_err("duplicate");
    assert_errno(&err, libc::EEXIST);
    let err = api
        .create_storage(StorageKind::Volume, "Not_Valid")
        .expect_err("bad name");
    assert_errno(&err, libc::EINVAL);
    assert!(err.user_message().contains("lowercase"), "{err}");
}

#[test]
fn a_commit_with_a_file_not_put_is_refused() {
    use vm0fs::api::models::{CommitRequest, UploadFileSpec, UploadRequest};
    let emu = start(&[]);
    let api = client(&emu);
    let created = api
        .create_storage(StorageKind::Volume, "half-done")
        .expect("create");
    let request = UploadRequest {
        files: vec![UploadFileSpec {
            path: "never-put".into(),
            size: 3,
            hash: None,
        }],
        message: None,
    };
    let session = api
        .upload(StorageKind::Volume, &created.id, &request)
        .expect("upload");
    let err = api
        .commit(
            StorageKind::Volume,
            &created.id,
            &CommitRequest {
                upload_session_id: session.upload_session_id,
                message: None,
            },
        )
        .expect_err("commit without the bytes");
    assert_eq!(err.status, Some(409), "{err}");
    let head = api
        .get_storage(StorageKind::Volume, &created.id)
        .expect("get");
    assert_eq!(head.current_version_id, None);
}

/// A server for the upload flow: the upload answers with a PUT URL on the same origin; the commit always fails
/// with 503 (so a blind retry would show as a second commit request).
fn upload_script(req: &Seen, base: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let path = req.target.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "/v1/agents") => json_reply(json!({"data": [], "pagination": {"has_more": false}})),
        ("POST", "/v1/volumes/v1d/upload") => json_reply(json!({"upload_session_id": "s1",
            "files": [{"path": "x", "upload_url": format!("{base}/put/x?X-Amz-Signature=sig"),
                       "upload_id": "u1"}], "expires_at": "t"})),
        ("PUT", "/put/x") => (200, vec![], Vec::new()),
        ("POST", "/v1/volumes/v1d/commit") => (503, vec![], b"busy".to_vec()),
        _ => (404, vec![], Vec::new()),
    }
}

#[test]
fn upload_puts_carry_no_token_and_commits_are_never_resent() {
    use vm0fs::api::models::{CommitRequest, UploadFileSpec, UploadRequest};
    let server = Scripted::start(Box::new(upload_script));
    let api = HttpApi::new(&server.base, "vm0_live_secret", fast()).expect("client");
    let request = UploadRequest {
        files: vec![UploadFileSpec {
            path: "x".into(),
            size: 5,
            hash: None,
        }],
        message: None,
    };
    let session = api
        .upload(StorageKind::Volume, "v1d", &request)
        .expect("upload");
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("x");
    std::fs::write(&local, b"bytes").expect("write");
    api.put_upload(&session.files[0], &local).expect("put");
    let err = api
        .commit(
            StorageKind::Volume,
            "v1d",
            &CommitRequest {
                upload_session_id: "s1".into(),
                message: None,
            },
        )
        .expect_err("503");
    assert_eq!(err.status, Some(503));

    let seen = server.seen();
    let put = seen.iter().find(|s| s.method == "PUT").expect("the PUT");
    assert_eq!(
        put.header("authorization"),
        None,
        "the token went to the upload URL"
    );
    assert_eq!(put.body, "bytes");
    assert_eq!(put.header("content-length"), Some("5"));
    let upload = seen
        .iter()
        .find(|s| s.target == "/v1/volumes/v1d/upload")
        .expect("the upload");
    assert_eq!(
        upload.header("authorization"),
        Some("Bearer vm0_live_secret")
    );
    let commits = seen
        .iter()
        .filter(|s| s.target == "/v1/volumes/v1d/commit")
        .count();
    assert_eq!(
        commits, 1,
        "a commit was sent again after it reached the server"
    );
    // A missing local file fails the PUT with an error naming the upload, not a panic.
    let err = api
        .put_upload(&session.files[0], &dir.path().join("gone"))
        .expect_err("no such file");
    assert_eq!(err.kind, ApiErrorKind::Transport, "{err}");
}
