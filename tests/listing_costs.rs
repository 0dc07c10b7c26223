//! What `ls -l` of each listing costs once its TTL has lapsed, counted by the emulator route by route while items of
//! the listing move: the listing's own pages, never one request per item (issue 24, item 1). `ls -l` also asks
//! every entry for its SELinux label and ACL (`getxattr`), which must not cost a request either.
//!
//! The counts are of kinds of request, not of how many pages: on a loaded machine a listing may outlive its TTL
//! while `ls` is still reading it, and then rightly costs another page; it never costs a detail per item.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::emulator::Emulator;
use common::mount::{Mount, ok, q};
use serde_json::{Value, json};

/// The emulator's requests so far, by route (`GET /v1/runs/{id}`).
fn by_route(emulator: &Emulator) -> BTreeMap<String, u64> {
    serde_json::from_value(emulator.stats()["requests_by_route"].clone())
        .expect("requests_by_route in the emulator's stats")
}

/// What `script` cost, by route; it must succeed.
fn cost_of(emulator: &Emulator, script: &str) -> BTreeMap<String, u64> {
    let before = by_route(emulator);
    ok(script);
    by_route(emulator)
        .into_iter()
        .filter_map(|(route, n)| {
            let more = n - before.get(&route).copied().unwrap_or(0);
            (more > 0).then_some((route, more))
        })
        .collect()
}

/// `ls -l` of `path` costs requests of the routes `pages` only, and some (the listing was asked again).
fn assert_pages_only(emulator: &Emulator, mount: &Mount, path: &str, pages: &[&str]) {
    let cost = cost_of(emulator, &format!("ls -l {}", q(&mount.path(path))));
    assert!(
        cost.keys().any(|route| route == pages[0]),
        "ls -l {path}: past its TTL the listing was not asked again: {cost:?}"
    );
    let others: Vec<&String> = cost
        .keys()
        .filter(|route| !pages.contains(&route.as_str()))
        .collect();
    assert!(
        others.is_empty(),
        "ls -l {path} cost more than its pages ({pages:?}): {cost:?}"
    );
}

/// Past the listing's TTL (2 s for `runs/`) and every attribute's (1 s).
fn let_the_ttl_lapse() {
    std::thread::sleep(Duration::from_millis(2100));
}

#[test]
fn ls_l_runs_past_its_ttl_costs_pages_and_not_a_request_per_moving_run() {
    let emulator = Emulator::start(&[]);
    let (status, body) =
        emulator.post_json("/_control/generate/runs?count=150&moving=30", &Value::Null);
    assert_eq!(status, 200, "{body}");
    let mount = Mount::start(&emulator, &[]);
    let listed = ok(&format!("ls -l {}", q(&mount.path("runs"))));
    assert_eq!(
        listed.lines().filter(|l| l.starts_with('d')).count(),
        151,
        "every run and new: {listed}"
    );

    let_the_ttl_lapse();
    assert_pages_only(&emulator, &mount, "runs", &["GET /v1/runs"]);
    // `ls` alone reads the attributes too (readdirplus).
    let_the_ttl_lapse();
    assert_pages_only(&emulator, &mount, "runs", &["GET /v1/runs"]);

    // A moving run's own directory: its detail, logs and metrics (and the listing that dates it), not a request
    // per file. The log poller, which follows a log looked at, asks only these too.
    let newest = ok(&format!("readlink {}", q(&mount.path("runs/latest"))));
    let run = format!("runs/{}", newest.trim());
    let status = ok(&format!("cat {}", q(&mount.path(&format!("{run}/status")))));
    assert_eq!(status, "pending\n");
    let_the_ttl_lapse();
    assert_pages_only(
        &emulator,
        &mount,
        &run,
        &[
            "GET /v1/runs/{id}",
            "GET /v1/runs",
            "GET /v1/runs/{id}/logs",
            "GET /v1/runs/{id}/metrics",
        ],
    );
}

#[test]
fn ls_l_of_agents_volumes_artifacts_and_versions_past_the_ttl_costs_their_pages() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--metadata-ttl", "1"]);
    let names = |kind: &str| -> Vec<String> {
        ok(&format!("ls {}", q(&mount.path(kind))))
            .lines()
            .map(String::from)
            .collect()
    };
    let (volumes, artifacts) = (names("volumes"), names("artifacts"));
    assert!(
        volumes.len() > 1 && !artifacts.is_empty(),
        "{volumes:?} {artifacts:?}"
    );
    let (volume, artifact) = (&volumes[0], &artifacts[0]);
    let listings = [
        "agents".to_string(),
        "volumes".to_string(),
        "artifacts".to_string(),
        format!("volumes/{volume}@"),
        format!("artifacts/{artifact}@"),
    ];
    for listing in &listings {
        ok(&format!("ls -l {}", q(&mount.path(listing))));
    }
    // Every volume and artifact moves: a new head, as if another client published it.
    for (kind, names) in [("volumes", &volumes), ("artifacts", &artifacts)] {
        for name in names {
            let (status, body) = emulator.post_json(
                &format!("/_control/storages/{kind}/{name}/head"),
                &json!({"files": {"moved.txt": "moved"}, "keep_head": true}),
            );
            assert_eq!(status, 200, "{body}");
        }
    }

    let_the_ttl_lapse();
    assert_pages_only(&emulator, &mount, "agents", &["GET /v1/agents"]);
    assert_pages_only(&emulator, &mount, "volumes", &["GET /v1/volumes"]);
    assert_pages_only(&emulator, &mount, "artifacts", &["GET /v1/artifacts"]);
    assert_pages_only(
        &emulator,
        &mount,
        &listings[3],
        &["GET /v1/volumes/{id}/versions", "GET /v1/volumes"],
    );
    assert_pages_only(
        &emulator,
        &mount,
        &listings[4],
        &["GET /v1/artifacts/{id}/versions", "GET /v1/artifacts"],
    );
}
