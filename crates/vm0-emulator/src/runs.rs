//! Runs: the endpoints of CONTRACT.md section 4 and the simulator that moves runs along.
//!
//! A run carries its own schedule (milliseconds pending, milliseconds running, the end it will reach), fixed when
//! it is created, and `advance` moves it one step given "now". The simulator thread calls `advance` with the wall
//! clock every 50 ms; the demo seed calls the same function with a fake clock to write plausible history. So a
//! restarted emulator simply carries on, and seeded and live runs look alike. A run's log timestamps are kept
//! strictly increasing (one millisecond apart at least), because the logs cursor is a timestamp compared with a
//! strict `>`: the emulator reproduces that API behaviour, and makes sure a careful client loses nothing by it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::http::{Request, Response};
use super::routes::{
    api_error, body_json, invalid, json, newest_first, not_found, page, parse_limit, to_value,
};
use super::store::{RunRec, State, iso, new_id, now_ms, parse_iso};
use super::{Ctx, Timing, blobs, storage};
use vm0_api::{
    Casing, LogEntry, MetricPoint, MetricsSummary, Run, RunDetail, RunMetrics, RunStatus,
    StorageKind,
};

/// Artifacts up to this size are carried into the version a run writes; a bigger one is replaced by the run's
/// files only (reading it back would stall the simulator).
const CARRY_LIMIT: u64 = 32 << 20;

pub(super) fn run_value(r: &RunRec) -> Value {
    to_value(&Run {
        id: r.id.clone(),
        agent_id: r.agent_id.clone(),
        agent_name: r.agent_name.clone(),
        status: r.status,
        prompt: r.prompt.clone(),
        created_at: iso(r.created_ms),
        started_at: r.started_ms.map(iso),
        completed_at: r.completed_ms.map(iso),
    })
}

pub(super) fn detail_value(r: &RunRec) -> Value {
    let execution_time_ms = match (r.started_ms, r.completed_ms) {
        (Some(s), Some(c)) => Some((c - s).max(0) as u64),
        _ => None,
    };
    to_value(&RunDetail {
        id: r.id.clone(),
        agent_id: r.agent_id.clone(),
        agent_name: r.agent_name.clone(),
        status: r.status,
        prompt: r.prompt.clone(),
        created_at: iso(r.created_ms),
        started_at: r.started_ms.map(iso),
        completed_at: r.completed_ms.map(iso),
        error: r.error.clone(),
        execution_time_ms,
        checkpoint_id: r.checkpoint_id.clone(),
        session_id: r.session_id.clone(),
        artifact_name: r.artifact_name.clone(),
        artifact_version: r.artifact_version.clone(),
        volumes: r.volumes.clone(),
        output: if r.status.is_terminal() {
            r.output.clone()
        } else {
            None
        },
    })
}

fn no_such_run(id: &str) -> Response {
    not_found(format!("No such run: '{id}'"))
}

pub(super) fn list(ctx: &Ctx, req: &Request) -> Response {
    let status = match req.query("status") {
        None => None,
        Some(s) => match RunStatus::parse(s) {
            Some(st) => Some(st),
            None => {
                return invalid(
                    "status",
                    format!(
                        "Invalid enum value. Expected 'pending' | 'running' | 'completed' | 'failed' | \
                         'timeout' | 'cancelled', received '{s}'"
                    ),
                );
            }
        },
    };
    let st = ctx.store.lock();
    let items = newest_first(&st.runs, |r| r.created_ms)
        .into_iter()
        .map(|i| &st.runs[i])
        .filter(|r| status.is_none_or(|s| r.status == s))
        .map(|r| (r.id.clone(), run_value(r)))
        .collect();
    page(ctx, req, items)
}

pub(super) fn get(ctx: &Ctx, id: &str) -> Response {
    let st = ctx.store.lock();
    match st.runs.iter().find(|r| r.id == id) {
        Some(r) => json(ctx, 200, detail_value(r)),
        None => no_such_run(id),
    }
}

fn string_map(body: &Value, key: &str) -> Result<Option<BTreeMap<String, String>>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(invalid(
                    &format!("{key}.{k}"),
                    "Expected string, received a non-string value",
                )),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some),
        Some(_) => Err(invalid(key, "Expected object, received another type")),
    }
}

fn opt_string(body: &Value, key: &str) -> Result<Option<String>, Response> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(key, "Expected string, received another type")),
    }
}

/// `POST /v1/runs` → 202 (CONTRACT.md 4.5).
pub(super) fn create(ctx: &Ctx, req: &Request) -> Response {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let prompt = match body.get("prompt") {
        Some(Value::String(p)) if !p.is_empty() => p.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return invalid("prompt", "Prompt is required");
        }
        Some(_) => return invalid("prompt", "Expected string, received another type"),
    };
    let parsed = (|| {
        Ok::<_, Response>((
            opt_string(&body, "agent")?,
            opt_string(&body, "agent_id")?,
            opt_string(&body, "session_id")?,
            opt_string(&body, "checkpoint_id")?,
            opt_string(&body, "artifact_name")?,
            opt_string(&body, "artifact_version")?,
            string_map(&body, "variables")?,
            string_map(&body, "secrets")?,
            string_map(&body, "volumes")?,
        ))
    })();
    let (
        agent,
        agent_id,
        session_id,
        checkpoint_id,
        artifact_name,
        artifact_version,
        vars,
        secrets,
        volumes,
    ) = match parsed {
        Ok(p) => p,
        Err(r) => return r,
    };

    let mut st = ctx.store.lock();
    // Priority: checkpoint_id > session_id > agent_id > agent.
    let (agent_idx, session_id) = if let Some(cp) = &checkpoint_id {
        let Some(prev) = st
            .runs
            .iter()
            .find(|r| r.checkpoint_id.as_deref() == Some(cp))
        else {
            return not_found(format!("No such checkpoint: '{cp}'"));
        };
        let sess = prev.session_id.clone();
        match st.agents.iter().position(|a| a.id == prev.agent_id) {
            Some(i) => (i, sess),
            None => return not_found(format!("No such agent: '{}'", prev.agent_id)),
        }
    } else if let Some(sess) = &session_id {
        let Some(prev) = st
            .runs
            .iter()
            .find(|r| r.session_id.as_deref() == Some(sess))
        else {
            return not_found(format!("No such session: '{sess}'"));
        };
        match st.agents.iter().position(|a| a.id == prev.agent_id) {
            Some(i) => (i, Some(sess.clone())),
            None => return not_found(format!("No such agent: '{}'", prev.agent_id)),
        }
    } else if let Some(aid) = &agent_id {
        match st.agents.iter().position(|a| &a.id == aid) {
            Some(i) => (i, None),
            None => return not_found(format!("No such agent: '{aid}'")),
        }
    } else if let Some(name) = &agent {
        let lower = name.to_lowercase();
        match st.agents.iter().position(|a| a.name == lower) {
            Some(i) => (i, None),
            None => return not_found(format!("No such agent: '{name}'")),
        }
    } else {
        let message = match ctx.casing {
            Casing::Snake => "Must provide one of: agent, agent_id, session_id, or checkpoint_id",
            Casing::Camel => "Must provide one of: agent, agentId, sessionId, or checkpointId",
        };
        return api_error(
            400,
            "invalid_request_error",
            "missing_parameter",
            message,
            None,
        );
    };
    if st.agents[agent_idx].versions.is_empty() {
        return invalid("agent", "Agent has no versions. Create a version first.");
    }
    let active = st.runs.iter().filter(|r| !r.status.is_terminal()).count();
    if active >= ctx.max_concurrent_runs {
        let mut resp = api_error(
            429,
            "invalid_request_error",
            "concurrent_run_limit",
            format!(
                "Concurrent run limit reached: {active} runs are pending or running (limit {}). \
                 Wait for one to finish or cancel one, then try again.",
                ctx.max_concurrent_runs
            ),
            None,
        );
        resp.headers.push(("Retry-After".into(), "1".into()));
        return resp;
    }
    let agent = &st.agents[agent_idx];
    let run = new_run(
        &agent.id,
        &agent.name,
        prompt,
        now_ms(),
        &ctx.timing,
        RunExtras {
            session_id,
            artifact_name,
            artifact_version,
            volumes,
            variables: vars.unwrap_or_default(),
            secret_names: secrets.map(|s| s.into_keys().collect()).unwrap_or_default(),
        },
    );
    let value = detail_value(&run);
    st.runs.push(run);
    ctx.store.save(&st);
    drop(st);
    ctx.stats.run_created();
    json(ctx, 202, value)
}

/// The optional request fields of a new run.
#[derive(Default)]
pub(super) struct RunExtras {
    pub session_id: Option<String>,
    pub artifact_name: Option<String>,
    pub artifact_version: Option<String>,
    pub volumes: Option<BTreeMap<String, String>>,
    pub variables: BTreeMap<String, String>,
    pub secret_names: Vec<String>,
}

/// A new pending run; `[fail]` / `[timeout]` in the prompt choose how it will end.
pub(super) fn new_run(
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

pub(super) fn cancel(ctx: &Ctx, id: &str) -> Response {
    let mut st = ctx.store.lock();
    let Some(r) = st.runs.iter_mut().find(|r| r.id == id) else {
        return no_such_run(id);
    };
    if r.status.is_terminal() {
        return api_error(
            400,
            "invalid_request_error",
            "invalid_state",
            format!(
                "Run cannot be cancelled: current status is '{}'",
                r.status.as_str()
            ),
            None,
        );
    }
    cancel_now(r, now_ms());
    let value = detail_value(r);
    ctx.store.save(&st);
    json(ctx, 200, value)
}

pub(super) fn cancel_now(r: &mut RunRec, now: i64) {
    let t = system(r, now, "Run cancelled by user request".into());
    r.status = RunStatus::Cancelled;
    r.completed_ms = Some(t);
}

/// `GET /v1/runs/:id/logs` (CONTRACT.md 4.6), with the strict timestamp cursor of the real API.
pub(super) fn logs(ctx: &Ctx, req: &Request, id: &str) -> Response {
    let kind = req.query("type").unwrap_or("all");
    if !["all", "agent", "system", "network"].contains(&kind) {
        return invalid(
            "type",
            format!(
                "Invalid enum value. Expected 'all' | 'agent' | 'system' | 'network', received '{kind}'"
            ),
        );
    }
    let order = req.query("order").unwrap_or("asc");
    if order != "asc" && order != "desc" {
        return invalid(
            "order",
            format!("Invalid enum value. Expected 'asc' | 'desc', received '{order}'"),
        );
    }
    let limit = match parse_limit(req, 20) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let time = |param: &str| -> Result<Option<i64>, Response> {
        match req.query(param).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_iso(s).map(Some).ok_or_else(|| {
                invalid(
                    param,
                    format!("Invalid datetime {s:?}: use ISO-8601, e.g. 2026-01-15T10:00:05.123Z"),
                )
            }),
        }
    };
    let (since, until, cursor) = match (time("since"), time("until"), time("cursor")) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let st = ctx.store.lock();
    let Some(r) = st.runs.iter().find(|r| r.id == id) else {
        return no_such_run(id);
    };
    let asc = order == "asc";
    let mut hits: Vec<&(i64, LogEntry)> = r
        .logs
        .iter()
        .filter(|(ms, e)| {
            (kind == "all" || e.kind == kind)
                && since.is_none_or(|s| *ms >= s)
                && until.is_none_or(|u| *ms <= u)
                && cursor.is_none_or(|c| if asc { *ms > c } else { *ms < c })
        })
        .collect();
    if !asc {
        hits.reverse();
    }
    let has_more = hits.len() > limit;
    hits.truncate(limit);
    let next_cursor = if has_more {
        hits.last().map(|(_, e)| e.timestamp.clone())
    } else {
        None
    };
    let data: Vec<Value> = hits.iter().map(|(_, e)| to_value(e)).collect();
    json(
        ctx,
        200,
        json!({"data": data, "pagination": {"has_more": has_more, "next_cursor": next_cursor}}),
    )
}

/// `GET /v1/runs/:id/metrics` (CONTRACT.md 4.7): not paginated.
pub(super) fn metrics(ctx: &Ctx, id: &str) -> Response {
    let st = ctx.store.lock();
    let Some(r) = st.runs.iter().find(|r| r.id == id) else {
        return no_such_run(id);
    };
    let data: Vec<MetricPoint> = r.metrics.iter().map(|(_, m)| m.clone()).collect();
    let summary = if data.is_empty() {
        MetricsSummary {
            avg_cpu_percent: 0.0,
            max_memory_used_mb: 0.0,
            total_duration_ms: None,
        }
    } else {
        let avg = data.iter().map(|m| m.cpu_percent).sum::<f64>() / data.len() as f64;
        let total = if r.metrics.len() >= 2 {
            Some((r.metrics[r.metrics.len() - 1].0 - r.metrics[0].0).max(0) as u64)
        } else {
            match (r.started_ms, r.completed_ms) {
                (Some(s), Some(c)) => Some((c - s).max(0) as u64),
                _ => None,
            }
        };
        MetricsSummary {
            avg_cpu_percent: (avg * 100.0).round() / 100.0,
            max_memory_used_mb: data.iter().map(|m| m.memory_used_mb).fold(0.0, f64::max),
            total_duration_ms: total,
        }
    };
    json(ctx, 200, to_value(&RunMetrics { data, summary }))
}

// ---------------------------------------------------------------------------------------------------------------
// The simulator.

/// What one call of `advance` did.
#[derive(PartialEq, Eq)]
pub(super) enum Step {
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
pub(super) fn advance(r: &mut RunRec, now: i64, log_interval_ms: u64) -> Step {
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
            if now >= started + r.duration_ms as i64 {
                finish(r, now);
                return Step::Finished;
            }
            if now >= r.last_log_ms().unwrap_or(started) + log_interval_ms as i64 {
                activity(r, now);
                return Step::Changed;
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
pub(super) fn simulator(ctx: Arc<Ctx>) {
    loop {
        std::thread::sleep(Duration::from_millis(50));
        tick(&ctx);
    }
}

fn tick(ctx: &Ctx) {
    let now = now_ms();
    let mut st = ctx.store.lock();
    let mut changed = false;
    let mut finished = Vec::new();
    let mut started = Vec::new();
    for (i, r) in st.runs.iter_mut().enumerate() {
        if r.status.is_terminal() {
            continue;
        }
        let was_pending = r.status == RunStatus::Pending;
        match advance(r, now, ctx.timing.log_interval_ms) {
            Step::Nothing => {}
            Step::Changed => changed = true,
            Step::Finished => {
                changed = true;
                finished.push(i);
            }
        }
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
    if changed {
        ctx.store.save(&st);
    }
}

/// A completed run that names an artifact writes a new version of it: the previous head's files (when small)
/// plus `result.md`. The artifact is created if missing.
fn write_run_artifact(ctx: &Ctx, st: &mut State, i: usize) {
    let Some(name) = st.runs[i].artifact_name.clone() else {
        return;
    };
    let sid = storage::ensure_storage(st, StorageKind::Artifact, &name);
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
    let result = format!(
        "# Result of run {}\n\nAgent: {}\n\n## Prompt\n\n{}\n\n## Output\n\n{}\n",
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
    match storage::build_version(
        &ctx.store,
        &sid,
        &files,
        message,
        flate2::Compression::default(),
    ) {
        Ok(v) => {
            if let Some(v) = storage::register_version(st, StorageKind::Artifact, &sid, v) {
                st.runs[i].artifact_version = Some(v.id);
            }
        }
        Err(e) => tracing::error!(
            "cannot write artifact '{name}' for run {}: {e}",
            st.runs[i].id
        ),
    }
}
