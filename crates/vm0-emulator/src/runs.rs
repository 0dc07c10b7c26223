//! The run endpoints of CONTRACT.md section 4 (list, detail, create, cancel, logs, metrics).
//!
//! Runs are made and moved by `sim`; these handlers read them, validate requests as the API's zod schemas
//! do, and save the one run they change. The event stream of a run is `sse`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::reply::{
    Params, api_error, body_json, invalid, json, newest_first, not_found, page, parse_limit,
    to_value, with_retry_after,
};
use crate::sim::{self, RunExtras};
use crate::store::{Row, RunRec, iso, now_ms, parse_iso};
use vm0_api::{
    Casing, LogEntry, MetricPoint, MetricsSummary, Run, RunDetail, RunMetrics, RunStatus,
};

fn run_value(r: &RunRec) -> Value {
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

fn detail_value(r: &RunRec) -> Value {
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

pub(crate) async fn list(State(ctx): State<Arc<Ctx>>, q: Params) -> Response {
    let ctx: &Ctx = &ctx;
    let status = match q.get("status") {
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
    page(ctx, &q, items)
}

pub(crate) async fn get(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    let st = ctx.store.lock();
    match st.runs.iter().find(|r| r.id == id) {
        Some(r) => json(&ctx, 200, detail_value(r)),
        None => no_such_run(&id),
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
pub(crate) async fn create(State(ctx): State<Arc<Ctx>>, body: Bytes) -> Response {
    let ctx: &Ctx = &ctx;
    let body = match body_json(&body) {
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
        let resp = api_error(
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
        return with_retry_after(resp, 1);
    }
    let agent = &st.agents[agent_idx];
    let run = sim::new_run(
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
    if let Some(run) = st.runs.last() {
        ctx.store.write(&[Row::Run(run)]);
    }
    drop(st);
    ctx.stats.run_created();
    json(ctx, 202, value)
}

pub(crate) async fn cancel(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    let ctx: &Ctx = &ctx;
    let mut st = ctx.store.lock();
    let Some(r) = st.runs.iter_mut().find(|r| r.id == id) else {
        return no_such_run(&id);
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
    sim::cancel_now(r, now_ms());
    let value = detail_value(r);
    ctx.store.write(&[Row::Run(r)]);
    json(ctx, 200, value)
}

/// `GET /v1/runs/:id/logs` (CONTRACT.md 4.6), with the strict timestamp cursor of the real API.
pub(crate) async fn logs(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    q: Params,
) -> Response {
    let ctx: &Ctx = &ctx;
    let kind = q.get("type").unwrap_or("all");
    if !["all", "agent", "system", "network"].contains(&kind) {
        return invalid(
            "type",
            format!(
                "Invalid enum value. Expected 'all' | 'agent' | 'system' | 'network', received '{kind}'"
            ),
        );
    }
    let order = q.get("order").unwrap_or("asc");
    if order != "asc" && order != "desc" {
        return invalid(
            "order",
            format!("Invalid enum value. Expected 'asc' | 'desc', received '{order}'"),
        );
    }
    let limit = match parse_limit(&q, 20) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let time = |param: &str| -> Result<Option<i64>, Response> {
        match q.get(param).filter(|s| !s.is_empty()) {
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
        return no_such_run(&id);
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
pub(crate) async fn metrics(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    let ctx: &Ctx = &ctx;
    let st = ctx.store.lock();
    let Some(r) = st.runs.iter().find(|r| r.id == id) else {
        return no_such_run(&id);
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
