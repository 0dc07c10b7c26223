//! The run simulator: how a run is born, moves from pending to its end, and writes its artifact.
//!
//! A run carries its own schedule (milliseconds pending, milliseconds running, the end it will reach), fixed when
//! it is created, and `advance` moves it one step given "now". The simulator thread calls `advance` with the wall
//! clock every 50 ms; the demo seed calls the same function with a fake clock to write plausible history. So a
//! restarted emulator simply carries on, and seeded and live runs look alike. A run's log timestamps are kept
//! strictly increasing (one millisecond apart at least), because the logs cursor is a timestamp compared with a
//! strict `>`: the emulator reproduces that API behaviour, and makes sure a careful client loses nothing by it.
//! Each tick saves only the runs it changed, in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::blobs;
use crate::catalog;
use crate::ctx::{Ctx, Timing};
use crate::store::{Row, RunRec, State, iso, new_id};
use vm0_api::{LogEntry, MetricPoint, RunStatus, StorageKind};

/// Artifacts up to this size are carried into the version a run writes; a bigger one is replaced by the run's
/// files only (reading it back would stall the simulator).
const CARRY_LIMIT: u64 = 32 << 20;

/// The optional request fields of a new run.
#[derive(Default)]
pub(crate) struct RunExtras {
    pub session_id: Option<String>,
    pub artifact_name: Option<String>,
    pub artifact_version: Option<String>,
    pub volumes: Option<BTreeMap<String, String>>,
    pub variables: BTreeMap<String, String>,
    pub secret_names: Vec<String>,
}

/// A new pending run; `[fail]` / `[timeout]` in the prompt choose how it will end.
pub(crate) fn new_run(
    agent_id: &str,
    agent_name: &str,
    prompt: String,
    at_ms: i64,
    timing: &Timing,
    extras: RunExtras,
) -> RunRec {
    let outcome = if prompt.contains("[fail]") {
        RunStatus::Failed
    } else if prompt.contains("[timeout]") {
        RunStatus::Timeout
    } else {
        RunStatus::Completed
    };
    RunRec {
        id: new_id(),
        agent_id: agent_id.to_string(),
        agent_name: agent_name.to_string(),
        status: RunStatus::Pending,
        prompt,
        created_ms: at_ms,
        started_ms: None,
        completed_ms: None,
        error: None,
        output: None,
        checkpoint_id: None,
        session_id: extras.session_id,
        artifact_name: extras.artifact_name,
        artifact_version: extras.artifact_version,
        volumes: extras.volumes,
        variables: extras.variables,
        secret_names: extras.secret_names,
        pending_ms: timing.pending_ms,
        duration_ms: timing.duration_ms,
        outcome,
        logs: Vec::new(),
        metrics: Vec::new(),
        last_seq: 0,
    }
}

pub(crate) fn cancel_now(r: &mut RunRec, now: i64) {
    let t = system(r, now, "Run cancelled by user request".into());
    r.status = RunStatus::Cancelled;
    r.completed_ms = Some(t);
}

/// What one call of `advance` did.
#[derive(PartialEq, Eq)]
pub(crate) enum Step {
    Nothing,
    Changed,
    Finished,
}

/// A timestamp for a new log entry: now, or 1 ms after the run's last entry if that is not earlier.
fn stamp(r: &RunRec, now: i64) -> i64 {
    r.last_log_ms().map_or(now, |last| now.max(last + 1))
}

fn system(r: &mut RunRec, now: i64, message: String) -> i64 {
    let t = stamp(r, now);
    r.logs.push((
        t,
        LogEntry {
            timestamp: iso(t),
            kind: "system".into(),
            level: "info".into(),
            message,
            metadata: None,
        },
    ));
    t
}

fn agent_event(r: &mut RunRec, now: i64, event_type: &str, data: Value) -> i64 {
    let t = stamp(r, now);
    r.last_seq += 1;
    r.logs.push((
        t,
        LogEntry {
            timestamp: iso(t),
            kind: "agent".into(),
            level: "info".into(),
            message: format!("[{event_type}] {data}"),
            metadata: Some(
                json!({"sequenceNumber": r.last_seq, "eventType": event_type, "eventData": data}),
            ),
        },
    ));
    t
}

fn network(r: &mut RunRec, now: i64, method: &str, url: &str, status: u16, duration: u64) {
    let t = stamp(r, now);
    r.logs.push((
        t,
        LogEntry {
            timestamp: iso(t),
            kind: "network".into(),
            level: if status >= 400 { "error" } else { "info" }.into(),
            message: format!("{method} {url} - {status} ({duration}ms)"),
            metadata: Some(
                json!({"method": method, "url": url, "status": status, "duration": duration}),
            ),
        },
    ));
}

fn sample(r: &mut RunRec, now: i64) {
    let n = r.metrics.len() as f64;
    let wobble = ((r.last_seq * 37 + r.metrics.len() as u64 * 11) % 40) as f64;
    r.metrics.push((
        now,
        MetricPoint {
            timestamp: iso(now),
            cpu_percent: ((15.0 + wobble * 1.7) * 10.0).round() / 10.0,
            memory_used_mb: (300.0 + n * 24.0).min(1800.0),
            memory_total_mb: 2048.0,
            disk_used_mb: (120.0 + n * 3.0).min(900.0),
            disk_total_mb: 1000.0,
        },
    ));
}

/// One piece of agent activity, cycling through what a coding agent does.
fn activity(r: &mut RunRec, now: i64) {
    let step = r.last_seq;
    match step % 4 {
        0 => {
            agent_event(
                r,
                now,
                "assistant",
                json!({"text": format!("Step {}: working on the task.", step / 4 + 1)}),
            );
        }
        1 => {
            agent_event(
                r,
                now,
                "tool_use",
                json!({"id": format!("toolu_{step:04}"), "name": "Bash", "input": {"command": "ls -la /home/user/workspace"}}),
            );
        }
        2 => {
            agent_event(
                r,
                now,
                "tool_result",
                json!({"tool_use_id": format!("toolu_{:04}", step - 1), "content": "total 12\ndrwxr-xr-x 2 user user 4096 .\n", "is_error": false}),
            );
            let status = if step % 12 == 10 { 404 } else { 200 };
            network(
                r,
                now,
                "GET",
                "https://api.github.com/repos/vm0-ai/vm0",
                status,
                80 + step % 90,
            );
        }
        _ => {
            agent_event(
                r,
                now,
                "assistant",
                json!({"text": "Checked the results; moving on."}),
            );
            system(
                r,
                now,
                format!("Checkpoint saved after {} events", r.last_seq),
            );
        }
    }
    sample(r, now);
}

fn summary_of(prompt: &str) -> String {
    let mut s: String = prompt.chars().take(60).collect();
    if prompt.chars().count() > 60 {
        s.push('…');
    }
    s
}

/// Moves a run one step towards its end at time `now`.
pub(crate) fn advance(r: &mut RunRec, now: i64, log_interval_ms: u64) -> Step {
    match r.status {
        RunStatus::Pending => {
            if now < r.created_ms + r.pending_ms as i64 {
                return Step::Nothing;
            }
            let t = system(r, now, format!("Sandbox sbx-{} created", &r.id[..8]));
            r.started_ms = Some(t);
            r.status = RunStatus::Running;
            system(r, now, format!("Starting agent '{}'", r.agent_name));
            agent_event(
                r,
                now,
                "system",
                json!({"subtype": "init", "model": "claude-sonnet-4", "cwd": "/home/user/workspace"}),
            );
            sample(r, now);
            Step::Changed
        }
        RunStatus::Running => {
            let started = r.started_ms.unwrap_or(r.created_ms);
            let end = started + r.duration_ms as i64;
            let due = r.last_log_ms().unwrap_or(started) + log_interval_ms as i64;
            if due < end && now >= due {
                // Dated when it was due, not when the simulator came round: a simulator that was not scheduled
                // for a while catches up with the same entries, so a run's log does not depend on the load.
                activity(r, due);
                return Step::Changed;
            }
            if now >= end {
                finish(r, now);
                return Step::Finished;
            }
            Step::Nothing
        }
        _ => Step::Nothing,
    }
}

fn finish(r: &mut RunRec, now: i64) {
    let summary = summary_of(&r.prompt);
    match r.outcome {
        RunStatus::Failed => {
            let error =
                "Agent exited with code 1: simulated failure ([fail] in the prompt)".to_string();
            agent_event(
                r,
                now,
                "result",
                json!({"subtype": "error", "is_error": true, "result": error}),
            );
            system(r, now, format!("Run failed: {error}"));
            r.error = Some(error);
        }
        RunStatus::Timeout => {
            let secs = r.duration_ms / 1000;
            system(
                r,
                now,
                format!("Run exceeded its time limit ({secs}s) and was stopped"),
            );
            r.error = Some(format!("Run timed out after {secs}s"));
        }
        _ => {
            let output = format!(
                "Done: {summary}\nCompleted in {} agent steps; see result.md for details.",
                r.last_seq
            );
            agent_event(
                r,
                now,
                "result",
                json!({"subtype": "success", "is_error": false, "result": output}),
            );
            system(r, now, "Run completed successfully".into());
            r.output = Some(output);
            r.checkpoint_id = Some(new_id());
            if r.session_id.is_none() {
                r.session_id = Some(new_id());
            }
        }
    }
    let t = stamp(r, now);
    sample(r, t);
    r.completed_ms = Some(t);
    r.status = r.outcome;
}

/// Resolves the run's `volumes` selectors (`latest`, prefixes) to version ids, as GET shows them once started.
fn resolve_volumes(st: &State, r: &RunRec) -> Option<BTreeMap<String, String>> {
    let vols = r.volumes.as_ref()?;
    Some(
        vols.iter()
            .map(|(name, sel)| {
                let resolved = st
                    .storage_by_name(StorageKind::Volume, name)
                    .and_then(|s| {
                        if sel == "latest" {
                            s.head.clone()
                        } else {
                            let hits: Vec<_> = s
                                .versions
                                .iter()
                                .filter(|v| v.id.starts_with(sel.as_str()))
                                .collect();
                            (hits.len() == 1).then(|| hits[0].id.clone())
                        }
                    })
                    .unwrap_or_else(|| sel.clone());
                (name.clone(), resolved)
            })
            .collect(),
    )
}

/// The simulator thread: advances every live run every 50 ms, saving once per tick when something changed.
pub(crate) fn simulator(ctx: Arc<Ctx>) {
    loop {
        std::thread::sleep(Duration::from_millis(50));
        tick(&ctx);
    }
}

/// Advances a run as far as `now` allows (bounded): every log entry that fell due since the last tick.
fn catch_up(r: &mut RunRec, now: i64, log_interval_ms: u64) -> Step {
    let mut done = Step::Nothing;
    for _ in 0..10_000 {
        match advance(r, now, log_interval_ms) {
            Step::Nothing => break,
            Step::Changed => done = Step::Changed,
            Step::Finished => return Step::Finished,
        }
    }
    done
}

fn tick(ctx: &Ctx) {
    let now = crate::store::now_ms();
    let mut st = ctx.store.lock();
    let mut changed = Vec::new();
    let mut finished = Vec::new();
    let mut started = Vec::new();
    for (i, r) in st.runs.iter_mut().enumerate() {
        if r.status.is_terminal() {
            continue;
        }
        let was_pending = r.status == RunStatus::Pending;
        match catch_up(r, now, ctx.timing.log_interval_ms) {
            Step::Nothing => continue,
            Step::Changed => {}
            Step::Finished => finished.push(i),
        }
        changed.push(i);
        if was_pending && r.status == RunStatus::Running {
            started.push(i);
        }
    }
    for i in started {
        let vols = resolve_volumes(&st, &st.runs[i]);
        if vols.is_some() {
            st.runs[i].volumes = vols;
        }
    }
    for i in finished {
        if st.runs[i].status == RunStatus::Completed && st.runs[i].artifact_name.is_some() {
            write_run_artifact(ctx, &mut st, i);
        }
    }
    if !changed.is_empty() {
        let rows: Vec<Row<'_>> = changed.iter().map(|&i| Row::Run(&st.runs[i])).collect();
        ctx.store.write(&rows);
    }
}

/// A completed run that names an artifact writes a new version of it: the previous head's files (when small)
/// plus `result.md`. The artifact is created if missing.
fn write_run_artifact(ctx: &Ctx, st: &mut State, i: usize) {
    let Some(name) = st.runs[i].artifact_name.clone() else {
        return;
    };
    let sid = catalog::ensure_storage(&ctx.store, st, StorageKind::Artifact, &name);
    let mut files: BTreeMap<String, blobs::Source> = BTreeMap::new();
    let head = st
        .storage(StorageKind::Artifact, &sid)
        .and_then(|s| s.head_version())
        .filter(|h| h.has_blob && h.size <= CARRY_LIMIT);
    if let Some(head) = head {
        match blobs::read_all(&ctx.store.blob_path(&head.id)) {
            Ok(entries) => {
                for (p, bytes) in entries {
                    files.insert(p, blobs::Source::Bytes(bytes));
                }
            }
            Err(e) => tracing::warn!("cannot read the head of artifact '{name}': {e}"),
        }
    }
    let r = &st.runs[i];
    // The volumes the run was given, as resolved when it started: what a round trip put in shows in what came out.
    let volumes: String = r
        .volumes
        .iter()
        .flatten()
        .map(|(name, version)| format!("- volumes/{name}@{}\n", &version[..version.len().min(8)]))
        .collect();
    let volumes = if volumes.is_empty() {
        String::new()
    } else {
        format!("\n## Volumes read\n\n{volumes}")
    };
    let result = format!(
        "# Result of run {}\n\nAgent: {}\n\n## Prompt\n\n{}\n{volumes}\n## Output\n\n{}\n",
        r.id,
        r.agent_name,
        r.prompt,
        r.output.clone().unwrap_or_default()
    );
    files.insert(
        "result.md".into(),
        blobs::Source::Bytes(result.into_bytes()),
    );
    let files: Vec<(String, blobs::Source)> = files.into_iter().collect();
    let message = Some(format!("Written by run {}", r.id));
    match catalog::build_version(
        &ctx.store,
        &sid,
        &files,
        message,
        flate2::Compression::default(),
    ) {
        Ok(v) => {
            if let Some((v, _)) = catalog::publish(&ctx.store, st, StorageKind::Artifact, &sid, v) {
                st.runs[i].artifact_version = Some(v.id);
            }
        }
        Err(e) => tracing::error!(
            "cannot write artifact '{name}' for run {}: {e}",
            st.runs[i].id
        ),
    }
}
