//! The agent routes (CONTRACT.md 3): list, detail and versions. Agents are read-only through the API; the seed
//! and the run generator make them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::reply::{Params, json, newest_first, not_found, page, to_value};
use crate::store::{AgentRec, iso};
use vm0_api::{Agent, AgentVersion};

fn agent_value(a: &AgentRec) -> Value {
    to_value(&Agent {
        id: a.id.clone(),
        name: a.name.clone(),
        current_version_id: a.versions.last().map(|v| v.id.clone()),
        created_at: iso(a.created_ms),
        updated_at: iso(a.updated_ms),
        config: None,
    })
}

pub(crate) async fn list(State(ctx): State<Arc<Ctx>>, q: Params) -> Response {
    let st = ctx.store.lock();
    let name = q.get("name").map(str::to_lowercase);
    let items = newest_first(&st.agents, |a| a.created_ms)
        .into_iter()
        .map(|i| &st.agents[i])
        .filter(|a| name.as_ref().is_none_or(|n| &a.name == n))
        .map(|a| (a.id.clone(), agent_value(a)))
        .collect();
    page(&ctx, &q, items)
}

pub(crate) async fn get(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Response {
    let st = ctx.store.lock();
    match st.agents.iter().find(|a| a.id == id) {
        Some(a) => json(&ctx, 200, agent_value(a)),
        None => not_found(format!("No such agent: '{id}'")),
    }
}

pub(crate) async fn versions(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    q: Params,
) -> Response {
    let st = ctx.store.lock();
    let Some(a) = st.agents.iter().find(|a| a.id == id) else {
        return not_found(format!("No such agent: '{id}'"));
    };
    let items = newest_first(&a.versions, |v| v.created_ms)
        .into_iter()
        .map(|i| &a.versions[i])
        .map(|v| {
            let value = to_value(&AgentVersion {
                id: v.id.clone(),
                agent_id: a.id.clone(),
                version_number: v.version_number,
                config: v.config.clone(),
                created_at: iso(v.created_ms),
            });
            (v.id.clone(), value)
        })
        .collect();
    page(&ctx, &q, items)
}
