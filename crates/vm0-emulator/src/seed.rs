//! `--seed demo`: a small, realistic dataset for the demo and the tests.
//!
//! Runs are not written by hand: each is created with `sim::new_run` and moved along by the simulator's own
//! `advance` with a fake clock, so seeded logs, metrics and timestamps have exactly the shapes and invariants
//! (unique, increasing log timestamps; sequence numbers) of live ones. A few runs are left pending or running
//! so that something progresses as soon as the server runs. Storages hold the awkward cases a filesystem
//! must get right (nested directories, non-ASCII names, an empty file, a name only PAX can carry, a few hundred
//! KB of data, a storage with two versions, one with none), and the head version of each is also written under
//! `<data>/seed-src/<volumes|artifacts>/<name>/`, so a test can `diff -r` a mounted storage against it.

use std::fs;
use std::path::Path;

use flate2::Compression;
use serde_json::json;

use crate::blobs::{self, Source};
use crate::catalog;
use crate::ctx::Timing;
use crate::sim::{self, RunExtras};
use crate::store::{AgentRec, AgentVersionRec, RunRec, State, Store, iso, new_id, now_ms};
use vm0_api::{RunStatus, StorageKind};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

type Files = Vec<(String, Vec<u8>)>;

/// Seeds `store` unless it already holds anything.
pub(crate) fn demo(store: &Store) -> Result<(), String> {
    let mut st = store.lock();
    if st.seeded.is_some()
        || !st.agents.is_empty()
        || !st.runs.is_empty()
        || !st.volumes.is_empty()
        || !st.artifacts.is_empty()
    {
        return Ok(());
    }
    let now = now_ms();
    let mut rng = fastrand::Rng::with_seed(20260115);
    seed_agents(&mut st, now);
    seed_storages(store, &mut st, now, &mut rng).map_err(|e| e.to_string())?;
    seed_runs(&mut st, now, &mut rng);
    st.seeded = Some(iso(now));
    store.write_all(&st);
    Ok(())
}

fn seed_agents(st: &mut State, now: i64) {
    let specs: [(&str, &[&str]); 4] = [
        (
            "coder",
            &[
                "You are a careful software engineer.",
                "You are a careful software engineer. Run the tests before you finish.",
                "You are a careful software engineer. Run the tests, and write a summary to result.md.",
            ],
        ),
        (
            "researcher",
            &[
                "Find sources and summarise them.",
                "Find primary sources, cite them, and summarise.",
            ],
        ),
        (
            "data-analyst",
            &["Analyse CSV data with pandas and report findings."],
        ),
        (
            "reviewer",
            &[
                "Review pull requests.",
                "Review pull requests; be specific and kind.",
            ],
        ),
    ];
    for (i, (name, instructions)) in specs.iter().enumerate() {
        let created = now - (30 - i as i64 * 3) * DAY;
        let versions: Vec<AgentVersionRec> = instructions
            .iter()
            .enumerate()
            .map(|(k, text)| {
                let config = json!({
                    "version": "1.0",
                    "agents": {name.to_string(): {
                        "provider": "claude-code",
                        "model": if k == 0 { "claude-sonnet-4" } else { "claude-sonnet-4-5" },
                        "instructions": text,
                        "image": "vm0/claude-code:latest",
                    }}
                });
                AgentVersionRec {
                    id: blobs::sha256_hex(format!("{name}\n{config}").as_bytes()),
                    version_number: k as u64 + 1,
                    config,
                    created_ms: created + k as i64 * 2 * DAY,
                }
            })
            .collect();
        let updated = versions.last().map_or(created, |v| v.created_ms);
        st.agents.push(AgentRec {
            id: new_id(),
            name: name.to_string(),
            created_ms: created,
            updated_ms: updated,
            versions,
        });
    }
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn csv(rng: &mut fastrand::Rng, target: usize) -> Vec<u8> {
    let cats = ["alpha", "beta", "gamma", "delta"];
    let mut out = String::from("id,city,temperature_c,humidity,category\n");
    let cities = ["Paris", "Tokyo", "Lagos", "Lima", "Oslo", "Pune", "Quito"];
    let mut i = 0;
    while out.len() < target {
        out.push_str(&format!(
            "{i},{},{:.1},{},{}\n",
            cities[rng.usize(..cities.len())],
            rng.f64() * 40.0 - 5.0,
            rng.u8(10..100),
            cats[rng.usize(..cats.len())]
        ));
        i += 1;
    }
    out.into_bytes()
}

fn seed_storages(
    store: &Store,
    st: &mut State,
    now: i64,
    rng: &mut fastrand::Rng,
) -> std::io::Result<()> {
    let long_name = format!(
        "docs/{}.md",
        "a-very-long-file-name-that-only-a-pax-header-can-carry-because-ustar-names-stop-at-one-hundred-bytes-long"
    );
    let input: Files = vec![
        (
            "README.md".into(),
            text("# input-data\n\nSample inputs for the demo agents.\n"),
        ),
        ("data/input.csv".into(), csv(rng, 300 * 1024)),
        (
            "data/nested/deep/notes.txt".into(),
            text("Notes three directories down.\n"),
        ),
        (
            "données/résumé.txt".into(),
            text("Résumé des données : températures et humidité.\n"),
        ),
        (
            "日本語.md".into(),
            text("# 日本語\n\nこれはテストファイルです。\n"),
        ),
        ("empty.txt".into(), Vec::new()),
        (
            long_name,
            text("This file's name is longer than 100 bytes.\n"),
        ),
        (
            "scripts/run.sh".into(),
            text("#!/bin/sh\nset -eu\npython3 analyse.py data/input.csv\n"),
        ),
    ];
    seed_storage(
        store,
        st,
        StorageKind::Volume,
        "input-data",
        now - 20 * DAY,
        vec![(input, "Initial import", now - 20 * DAY)],
    )?;

    let configs_v1: Files = vec![
        (
            "app.yaml".into(),
            text("name: demo\nreplicas: 1\nlog_level: info\n"),
        ),
        (
            "env/prod.env".into(),
            text("API_URL=https://api.example.com\n"),
        ),
    ];
    let configs_v2: Files = vec![
        (
            "app.yaml".into(),
            text("name: demo\nreplicas: 3\nlog_level: debug\nfeatures:\n  - sse\n  - pagination\n"),
        ),
        (
            "env/prod.env".into(),
            text("API_URL=https://api.example.com\n"),
        ),
        (
            "env/staging.env".into(),
            text("API_URL=https://staging.example.com\n"),
        ),
    ];
    seed_storage(
        store,
        st,
        StorageKind::Volume,
        "configs",
        now - 15 * DAY,
        vec![
            (configs_v1, "First configuration", now - 15 * DAY),
            (
                configs_v2,
                "Scale to 3 replicas, add staging",
                now - 2 * DAY,
            ),
        ],
    )?;
    seed_storage(
        store,
        st,
        StorageKind::Volume,
        "scratch",
        now - 5 * DAY,
        Vec::new(),
    )?;

    let report: Files = vec![
        (
            "report.md".into(),
            text("# Weekly report\n\n- Temperatures rose by 1.2 °C.\n- Humidity is stable.\n"),
        ),
        (
            "figures/summary.txt".into(),
            text("mean=18.4\nmedian=18.1\nstdev=7.9\n"),
        ),
        (
            "data/results.json".into(),
            text("{\n  \"rows\": 10234,\n  \"outliers\": 17\n}\n"),
        ),
    ];
    seed_storage(
        store,
        st,
        StorageKind::Artifact,
        "report",
        now - 10 * DAY,
        vec![(report, "Report from run", now - 10 * DAY)],
    )?;

    let mut weights = vec![0u8; 128 * 1024];
    rng.fill(&mut weights);
    let model: Files = vec![
        ("weights/layer-0.bin".into(), weights),
        (
            "metrics.json".into(),
            text("{\"loss\": 0.231, \"accuracy\": 0.912}\n"),
        ),
        (
            "logs/train.log".into(),
            (1..=200)
                .map(|e| format!("epoch {e}: loss={:.4}\n", 2.0 / e as f64))
                .collect::<String>()
                .into_bytes(),
        ),
        ("checkpoints/epoch-1/.keep".into(), Vec::new()),
    ];
    seed_storage(
        store,
        st,
        StorageKind::Artifact,
        "model-output",
        now - 8 * DAY,
        vec![(model, "Training output", now - 8 * DAY)],
    )?;
    Ok(())
}

/// A storage with the given versions (oldest first; the last is head), and its head under `seed-src/`.
fn seed_storage(
    store: &Store,
    st: &mut State,
    kind: StorageKind,
    name: &str,
    created: i64,
    versions: Vec<(Files, &str, i64)>,
) -> std::io::Result<()> {
    let i = catalog::create_record(st, kind, name, created);
    let sid = st.storages(kind)[i].id.clone();
    let src = store.dir().join("seed-src").join(kind.plural()).join(name);
    fs::create_dir_all(&src)?;
    let n = versions.len();
    for (k, (mut files, message, at)) in versions.into_iter().enumerate() {
        files.sort_by(|a, b| a.0.cmp(&b.0));
        if k + 1 == n {
            write_tree(&src, &files)?;
        }
        let sources: Vec<(String, Source)> = files
            .into_iter()
            .map(|(p, b)| (p, Source::Bytes(b)))
            .collect();
        let mut v = catalog::build_version(
            store,
            &sid,
            &sources,
            Some(message.to_string()),
            Compression::default(),
        )?;
        v.created_ms = at;
        catalog::register(st, kind, &sid, v);
    }
    Ok(())
}

fn write_tree(root: &Path, files: &Files) -> std::io::Result<()> {
    for (path, bytes) in files {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(p, bytes)?;
    }
    Ok(())
}

const PROMPTS: &[&str] = &[
    "Summarise data/input.csv and write the findings to result.md",
    "Fix the failing test in src/parser.rs",
    "Find three recent papers on retrieval-augmented generation and summarise them",
    "Review PR #42 and list the risky changes",
    "Plot the temperature distribution per city",
    "Upgrade the dependencies and run the test suite",
    "Write a README section about configuration",
    "Translate résumé.txt into English",
    "Find outliers in the humidity column",
    "Explain what scripts/run.sh does",
    "Refactor the HTTP client to use retries with backoff",
    "Compare the prod and staging configurations",
];

/// 36 runs: history in every terminal status, two running and two pending that move on when the server runs.
fn seed_runs(st: &mut State, now: i64, rng: &mut fastrand::Rng) {
    let agents: Vec<(String, String)> = st
        .agents
        .iter()
        .map(|a| (a.id.clone(), a.name.clone()))
        .collect();
    let report_head = st
        .storage_by_name(StorageKind::Artifact, "report")
        .and_then(|s| s.head.clone());
    let input_head = st
        .storage_by_name(StorageKind::Volume, "input-data")
        .and_then(|s| s.head.clone());
    let history = 32;
    let mut runs: Vec<RunRec> = Vec::new();
    for i in 0..history {
        let (agent_id, agent_name) = &agents[i % agents.len()];
        let created = now - 3 * DAY + i as i64 * 2 * HOUR + rng.i64(0..10 * MINUTE);
        let duration = 20_000 + rng.u64(0..240_000);
        let timing = Timing {
            pending_ms: 500 + rng.u64(0..3000),
            duration_ms: duration,
            log_interval_ms: (duration / 14).max(1000),
        };
        let mut extras = RunExtras::default();
        if i % 5 == 0 {
            extras.artifact_name = Some("report".into());
            extras.artifact_version = report_head.clone();
        }
        if i % 3 == 0 {
            extras.volumes = input_head.as_ref().map(|h| {
                [("input-data".to_string(), h.clone())]
                    .into_iter()
                    .collect()
            });
        }
        let mut r = sim::new_run(
            agent_id,
            agent_name,
            PROMPTS[i % PROMPTS.len()].to_string(),
            created,
            &timing,
            extras,
        );
        r.outcome = match i % 8 {
            3 => RunStatus::Failed,
            5 if i % 16 == 5 => RunStatus::Timeout,
            6 => RunStatus::Cancelled,
            _ => RunStatus::Completed,
        };
        let cancel_at =
            (r.outcome == RunStatus::Cancelled).then_some(created + duration as i64 / 2);
        if r.outcome == RunStatus::Cancelled {
            r.outcome = RunStatus::Completed;
        }
        let until = created + (timing.pending_ms + duration + 2 * timing.log_interval_ms) as i64;
        simulate(&mut r, timing.log_interval_ms, until, cancel_at);
        runs.push(r);
    }
    // Two running (started a few seconds ago, finishing within two minutes) and two pending.
    for k in 0..4 {
        let (agent_id, agent_name) = &agents[k % agents.len()];
        let created = now - if k < 2 { 15_000 } else { 100 } + k as i64;
        let timing = Timing {
            pending_ms: if k < 2 { 1000 } else { 3000 + 2000 * k as u64 },
            duration_ms: 60_000 + 30_000 * k as u64,
            log_interval_ms: 1000,
        };
        let mut r = sim::new_run(
            agent_id,
            agent_name,
            PROMPTS[(history + k) % PROMPTS.len()].to_string(),
            created,
            &timing,
            RunExtras::default(),
        );
        if k < 2 {
            simulate(&mut r, timing.log_interval_ms, now, None);
        }
        runs.push(r);
    }
    st.runs.extend(runs);
}

/// Moves a run along with a fake clock up to `until` (cancelling it at `cancel_at`).
fn simulate(r: &mut RunRec, interval: u64, until: i64, cancel_at: Option<i64>) {
    let mut t = r.created_ms;
    for _ in 0..10_000 {
        if r.status.is_terminal() || t > until {
            break;
        }
        if cancel_at.is_some_and(|c| t >= c) {
            sim::cancel_now(r, t);
            break;
        }
        sim::advance(r, t, interval);
        t += (interval as i64 / 2).max(1);
    }
}
