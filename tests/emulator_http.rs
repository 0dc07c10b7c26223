//! The emulator over loopback, raw HTTP: the behaviour CONTRACT.md promises and the test knobs it adds.
//!
//! Each test starts its own emulator (own port, own data directory). Tests assert behaviour, never timings:
//! anything that waits on the run simulator polls in a bounded loop.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::time::Duration;

use common::emulator::{Emulator, TOKEN};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Polls `f` every 50 ms, at most `tries` times, until it returns `Some`.
fn wait_for<T>(what: &str, tries: u32, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..tries {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("gave up waiting for {what}");
}

fn status_of(emu: &Emulator, run: &str) -> String {
    let (code, body) = emu.get_json(&format!("/v1/runs/{run}"));
    assert_eq!(code, 200, "{body}");
    body["status"].as_str().unwrap_or_default().to_string()
}

/// Files of a tar.gz as path → bytes (regular files only).
fn untar(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        assert!(entry.header().entry_type().is_file(), "only regular files");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        assert!(!path.starts_with("./") && !path.starts_with('/'), "{path}");
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry bytes");
        out.insert(path, data);
    }
    out
}

/// CONTRACT.md 6.1.
fn content_hash(storage_id: &str, files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(p, b)| format!("{p}:{}", sha(b)))
        .collect();
    lines.sort();
    sha(format!("storage:{storage_id}\n{}", lines.join("\n")).as_bytes())
}

/// Follows a download's 302 without the token; returns (location, blob bytes).
fn download(emu: &Emulator, kind: &str, id: &str, query: &str) -> (String, Vec<u8>) {
    let c = emu.client();
    let resp = c
        .get(emu.url(&format!("/v1/{kind}/{id}/download{query}")))
        .bearer_auth(TOKEN)
        .send()
        .expect("download");
    assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text());
    let loc = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let blob = c.get(&loc).send().expect("blob");
    assert_eq!(blob.status().as_u16(), 200);
    assert_eq!(blob.headers()["content-type"], "application/gzip");
    let len: usize = blob.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = blob.bytes().expect("blob bytes").to_vec();
    assert_eq!(bytes.len(), len);
    (loc, bytes)
}

fn seed_src(emu: &Emulator, kind: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
    let root = emu.data_dir().join("seed-src").join(kind).join(name);
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn lists_paginate_and_validate_limit_and_auth() {
    let emu = Emulator::start(&["--seed", "demo"]);
    let c = emu.client();
    let resp = c
        .get(emu.url("/v1/runs"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(rid.starts_with("req_") && rid.len() == 36, "{rid}");
    assert_eq!(resp.headers()["x-api-version"], "v1");
    let page: Value = serde_json::from_str::<Value>(&resp.text().unwrap()).unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 20);
    assert_eq!(page["pagination"]["has_more"], true);

    let (code, body) = emu.get_json("/v1/runs?limit=101");
    assert_eq!(code, 400);
    assert_eq!(
        body,
        json!({"error": {"type": "invalid_request_error", "code": "invalid_parameter",
                         "message": "Number must be less than or equal to 100", "param": "limit"}})
    );
    assert_eq!(emu.get_json("/v1/runs?limit=0").0, 400);

    for auth in [Some("Bearer vm0_live_wrong"), Some("vm0_live_demo"), None] {
        let mut rq = c.get(emu.url("/v1/agents"));
        if let Some(a) = auth {
            rq = rq.header("Authorization", a);
        }
        let resp = rq.send().unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let body: Value = serde_json::from_str::<Value>(&resp.text().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"error": {"type": "authentication_error", "code": "invalid_api_key",
                             "message": "Invalid API key provided"}})
        );
    }

    // Paging to the end gives every run once, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (code, page) = emu.get_json(&format!("/v1/runs?limit=7{q}"));
        assert_eq!(code, 200, "{page}");
        for r in page["data"].as_array().unwrap() {
            seen.push((
                r["created_at"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            ));
        }
        if page["pagination"]["has_more"] == false {
            assert!(page["pagination"]["next_cursor"].is_null());
            break;
        }
        cursor = page["pagination"]["next_cursor"].as_str().map(String::from);
    }
    let unique: HashSet<_> = seen.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(unique.len(), seen.len(), "a run was repeated");
    assert!(
        seen.len() >= 30,
        "the demo seed has at least 30 runs, saw {}",
        seen.len()
    );
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");
    let (_, all) = emu.get_json("/v1/runs?limit=100");
    assert_eq!(all["data"].as_array().unwrap().len(), seen.len());

    // Every status is represented, and the filter works.
    for s in [
        "pending",
        "running",
        "completed",
        "failed",
        "timeout",
        "cancelled",
    ] {
        let (code, page) = emu.get_json(&format!("/v1/runs?status={s}&limit=100"));
        assert_eq!(code, 200);
        let data = page["data"].as_array().unwrap();
        // pending/running seeded runs may move on while the test runs; the terminal ones cannot.
        if !["pending", "running"].contains(&s) {
            assert!(!data.is_empty(), "no {s} run in the seed");
        }
        assert!(data.iter().all(|r| r["status"] == s));
    }
    assert_eq!(emu.get_json("/v1/runs?status=nope").0, 400);

    // Agents: name filter is lower-cased exact.
    let (_, agents) = emu.get_json("/v1/agents?name=CODER");
    assert_eq!(agents["data"].as_array().unwrap().len(), 1);
    let agent = &agents["data"][0];
    let (code, versions) = emu.get_json(&format!(
        "/v1/agents/{}/versions",
        agent["id"].as_str().unwrap()
    ));
    assert_eq!(code, 200);
    assert_eq!(versions["data"][0]["id"], agent["current_version_id"]);
    let (code, err) = emu.get_json("/v1/agents/nope");
    assert_eq!(code, 404);
    assert_eq!(err["error"]["message"], "No such agent: 'nope'");
}

#[test]
fn camel_mode_uses_camel_keys_in_bodies_and_queries() {
    let emu = Emulator::start(&["--seed", "demo", "--casing", "camel"]);
    let (_, page) = emu.get_json("/v1/runs?limit=2");
    assert_eq!(page["pagination"]["hasMore"], true);
    assert!(page["pagination"]["nextCursor"].is_string());
    let run = &page["data"][0];
    for k in [
        "createdAt",
        "agentId",
        "agentName",
        "startedAt",
        "completedAt",
    ] {
        assert!(run.get(k).is_some(), "missing {k} in {run}");
    }
    assert!(run.get("created_at").is_none());
    let id = emu.storage_id("volumes", "configs").unwrap();
    let (_, detail) = emu.get_json(&format!("/v1/volumes/{id}"));
    assert!(detail["currentVersion"]["volumeId"].is_string(), "{detail}");
    assert!(detail["fileCount"].is_number());
    let (_, versions) = emu.get_json(&format!("/v1/volumes/{id}/versions"));
    let old = versions["data"][1]["id"].as_str().unwrap();
    let (loc, _) = download(&emu, "volumes", &id, &format!("?versionId={}", &old[..8]));
    assert!(loc.contains(old));
    // Request bodies in camelCase; missing agent names the camel keys.
    let (code, err) = emu.post_json("/v1/runs", &json!({"prompt": "x"}));
    assert_eq!(code, 400);
    assert_eq!(err["error"]["code"], "missing_parameter");
    assert_eq!(
        err["error"]["message"],
        "Must provide one of: agent, agentId, sessionId, or checkpointId"
    );
    let (code, run) = emu.post_json(
        "/v1/runs",
        &json!({"agent": "coder", "prompt": "x", "artifactName": "out"}),
    );
    assert_eq!(code, 202, "{run}");
    assert_eq!(run["artifactName"], "out");
}

#[test]
fn download_redirects_to_an_unauthenticated_archive_that_hashes_to_the_version() {
    let emu = Emulator::start(&["--seed", "demo"]);
    for (kind, name) in [
        ("volumes", "input-data"),
        ("artifacts", "model-output"),
        ("volumes", "configs"),
    ] {
        let id = emu.storage_id(kind, name).unwrap();
        let (_, detail) = emu.get_json(&format!("/v1/{kind}/{id}"));
        let head = detail["current_version_id"].as_str().unwrap().to_string();
        let (loc, bytes) = download(&emu, kind, &id, "");
        assert!(
            loc.contains("/_storage/") && loc.contains("X-Amz-Expires=3600"),
            "{loc}"
        );
        let files = untar(&bytes);
        assert_eq!(content_hash(&id, &files), head, "{kind}/{name}");
        assert_eq!(
            files,
            seed_src(&emu, kind, name),
            "{kind}/{name} differs from seed-src"
        );
        assert_eq!(detail["file_count"], files.len());
        assert_eq!(
            detail["size"],
            files.values().map(|b| b.len()).sum::<usize>()
        );
    }
    let input = seed_src(&emu, "volumes", "input-data");
    assert!(input.contains_key("données/résumé.txt") && input.contains_key("日本語.md"));
    assert!(input.keys().any(|p| p.len() > 100), "a name that needs PAX");
    assert_eq!(input["empty.txt"].len(), 0);

    let stats = emu.stats();
    assert_eq!(stats["blob_requests"], 3);
    assert_eq!(stats["blob_requests_with_authorization"], 0);
    assert_eq!(stats["blob_downloads"].as_object().unwrap().len(), 3);

    // A client that leaks its token to the blob host is counted.
    let id = emu.storage_id("volumes", "configs").unwrap();
    let resp = emu
        .client()
        .get(emu.url(&format!("/v1/volumes/{id}/download")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let leaked = emu.client().get(&loc).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(leaked.status().as_u16(), 200);
    assert_eq!(emu.stats()["blob_requests_with_authorization"], 1);
    // A tampered URL is refused like a bad S3 signature.
    let bad = emu
        .client()
        .get(loc.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 403);
}

#[test]
fn version_selectors_and_their_404s() {
    let emu = Emulator::start(&["--seed", "demo"]);
    let id = emu.storage_id("volumes", "configs").unwrap();
    let (_, versions) = emu.get_json(&format!("/v1/volumes/{id}/versions"));
    let data = versions["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let (newest, oldest) = (
        data[0]["id"].as_str().unwrap(),
        data[1]["id"].as_str().unwrap(),
    );
    assert_eq!(data[0]["volume_id"], id.as_str());
    let (_, old_bytes) = download(
        &emu,
        "volumes",
        &id,
        &format!("?version_id={}", &oldest[..8]),
    );
    assert_eq!(content_hash(&id, &untar(&old_bytes)), oldest);
    let (_, new_bytes) = download(&emu, "volumes", &id, &format!("?version_id={newest}"));
    assert_ne!(untar(&old_bytes), untar(&new_bytes));
    download(&emu, "volumes", &id, "?version_id=latest");

    let expect_404 = |path: String, message: &str| {
        let (code, body) = emu.get_json(&path);
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(body["error"]["type"], "not_found_error");
        assert_eq!(body["error"]["code"], "resource_not_found");
        assert_eq!(body["error"]["message"], message, "{path}");
    };
    expect_404(
        format!("/v1/volumes/{id}/download?version_id=abc"),
        "Version prefix too short. Minimum 8 characters required.",
    );
    expect_404(
        format!("/v1/volumes/{id}/download?version_id=00000000"),
        "Version \"00000000\" not found",
    );
    expect_404("/v1/volumes/nope/download".into(), "No such volume: 'nope'");
    expect_404("/v1/artifacts/nope".into(), "No such artifact: 'nope'");
    let scratch = emu.storage_id("volumes", "scratch").unwrap();
    expect_404(
        format!("/v1/volumes/{scratch}/download"),
        "Volume 'scratch' has no versions",
    );
    let (_, detail) = emu.get_json(&format!("/v1/volumes/{scratch}"));
    assert!(detail["current_version"].is_null());

    // A committed version with no files cannot be downloaded.
    let empty = tempfile::tempdir().unwrap();
    let vid = emu.upload_dir("artifacts", "empty-one", empty.path());
    let eid = emu.storage_id("artifacts", "empty-one").unwrap();
    assert_eq!(vid, sha(format!("storage:{eid}\n").as_bytes()));
    expect_404(
        format!("/v1/artifacts/{eid}/download"),
        "Artifact 'empty-one' version has no files",
    );
}

#[test]
fn upload_flow_and_raw_archives_make_content_hashed_versions() {
    let emu = Emulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/c.txt"), "hello").unwrap();
    std::fs::write(dir.path().join("top.md"), "# top").unwrap();
    let vid = emu.upload_dir("volumes", "my-vol", dir.path());
    let id = emu.storage_id("volumes", "my-vol").unwrap();
    let (_, bytes) = download(&emu, "volumes", &id, "");
    let files = untar(&bytes);
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        vec!["a/b/c.txt", "top.md"]
    );
    assert_eq!(content_hash(&id, &files), vid);
    // Same content again: same version id, still one version.
    assert_eq!(emu.upload_dir("volumes", "my-vol", dir.path()), vid);
    let (_, versions) = emu.get_json(&format!("/v1/volumes/{id}/versions"));
    assert_eq!(versions["data"].as_array().unwrap().len(), 1);
    // Duplicate name → 409.
    let (code, err) = emu.post_json("/v1/volumes", &json!({"name": "my-vol"}));
    assert_eq!(code, 409);
    assert_eq!(err["error"]["type"], "conflict_error");

    let raw = b"\x1f\x8bnot really a tar.gz".to_vec();
    let rvid = emu.add_raw_archive("artifacts", "hostile", &raw);
    let rid = emu.storage_id("artifacts", "hostile").unwrap();
    assert_eq!(
        rvid,
        sha(format!("storage:{rid}\n{}", sha(&raw)).as_bytes())
    );
    let (_, got) = download(&emu, "artifacts", &rid, "");
    assert_eq!(got, raw);
}

#[test]
fn other_download_modes() {
    let emu = Emulator::start(&["--seed", "demo", "--download-mode", "direct"]);
    let id = emu.storage_id("volumes", "input-data").unwrap();
    let resp = emu
        .client()
        .get(emu.url(&format!("/v1/volumes/{id}/download")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/gzip");
    assert_eq!(
        untar(&resp.bytes().unwrap()),
        seed_src(&emu, "volumes", "input-data")
    );
    drop(emu);

    let emu = Emulator::start(&["--seed", "demo", "--download-mode", "files"]);
    let id = emu.storage_id("volumes", "input-data").unwrap();
    let (code, body) = emu.get_json(&format!("/v1/volumes/{id}/download"));
    assert_eq!(code, 200);
    let src = seed_src(&emu, "volumes", "input-data");
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), src.len());
    for f in files {
        let path = f["path"].as_str().unwrap();
        let bytes = emu
            .client()
            .get(f["download_url"].as_str().unwrap())
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(&bytes[..], &src[path][..], "{path}");
    }
}

#[test]
fn a_run_moves_from_pending_to_completed_with_logs_metrics_and_an_artifact() {
    let emu = Emulator::start(&[
        "--seed",
        "demo",
        "--run-pending-ms",
        "300",
        "--run-duration-ms",
        "1500",
        // About 45 entries: more than a page of 5, less than the 100 read at once below.
        "--log-interval-ms",
        "50",
    ]);
    let (code, err) = emu.post_json("/v1/runs", &json!({"prompt": "x"}));
    assert_eq!(
        (code, err["error"]["code"].as_str()),
        (400, Some("missing_parameter"))
    );
    let (code, err) = emu.post_json("/v1/runs", &json!({"agent": "ghost", "prompt": "x"}));
    assert_eq!(code, 404, "{err}");
    let (code, err) = emu.post_json("/v1/runs", &json!({"agent": "coder", "prompt": ""}));
    assert_eq!(code, 400);
    assert_eq!(err["error"]["param"], "prompt");
    let resp = emu
        .client()
        .post(emu.url("/v1/runs"))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    let (code, run) = emu.post_json(
        "/v1/runs",
        &json!({"agent": "coder", "prompt": "Write a summary", "artifact_name": "summary-out",
                "variables": {"LANG": "fr"}, "volumes": {"input-data": "latest"}}),
    );
    assert_eq!(code, 202, "{run}");
    assert_eq!(run["status"], "pending");
    assert!(run["started_at"].is_null() && run["error"].is_null());
    assert_eq!(run["volumes"]["input-data"], "latest");
    let id = run["id"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    wait_for("the run to complete", 400, || {
        let s = status_of(&emu, &id);
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        (s == "completed").then_some(())
    });
    let order = ["pending", "running", "completed"];
    assert!(
        seen.windows(2).all(|w| {
            let at = |s: &String| order.iter().position(|o| o == s);
            at(&w[0]) < at(&w[1])
        }),
        "statuses out of order: {seen:?}"
    );
    let (_, detail) = emu.get_json(&format!("/v1/runs/{id}"));
    // Whether this test looked while the run was running depends on the load; the times say it ran.
    let time = |field: &str| detail[field].as_str().unwrap().to_string();
    assert!(
        time("created_at") <= time("started_at") && time("started_at") < time("completed_at"),
        "{detail}"
    );
    assert!(
        detail["output"]
            .as_str()
            .unwrap()
            .contains("Write a summary")
    );
    assert!(detail["execution_time_ms"].as_u64().unwrap() > 0);
    assert_eq!(detail["volumes"]["input-data"].as_str().unwrap().len(), 64);
    let art_version = detail["artifact_version"].as_str().unwrap();
    let art = emu.storage_id("artifacts", "summary-out").unwrap();
    let (_, bytes) = download(&emu, "artifacts", &art, "");
    let files = untar(&bytes);
    assert!(files.contains_key("result.md"));
    assert_eq!(content_hash(&art, &files), art_version);

    // Logs: every entry once when paging by timestamp cursor, in both orders.
    let (_, all) = emu.get_json(&format!("/v1/runs/{id}/logs?limit=100"));
    let all: Vec<Value> = all["data"].as_array().unwrap().clone();
    assert!(all.len() > 10, "expected a busy log, got {}", all.len());
    let kinds: HashSet<_> = all
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains("agent") && kinds.contains("system") && kinds.contains("network"),
        "{kinds:?}"
    );
    for order in ["asc", "desc"] {
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..200 {
            let q = cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default();
            let (code, page) =
                emu.get_json(&format!("/v1/runs/{id}/logs?limit=5&order={order}{q}"));
            assert_eq!(code, 200, "{page}");
            got.extend(page["data"].as_array().unwrap().iter().cloned());
            if page["pagination"]["has_more"] == false {
                break;
            }
            cursor = page["pagination"]["next_cursor"].as_str().map(String::from);
        }
        let mut expected = all.clone();
        if order == "desc" {
            expected.reverse();
        }
        assert_eq!(got, expected, "order {order}");
    }
    let (_, agent_only) = emu.get_json(&format!("/v1/runs/{id}/logs?type=agent&limit=100"));
    let agent_only = agent_only["data"].as_array().unwrap();
    assert!(
        agent_only
            .iter()
            .all(|e| e["metadata"]["sequenceNumber"].is_u64())
    );
    assert_eq!(
        emu.get_json(&format!("/v1/runs/{id}/logs?type=bogus")).0,
        400
    );

    let (_, metrics) = emu.get_json(&format!("/v1/runs/{id}/metrics"));
    assert!(!metrics["data"].as_array().unwrap().is_empty());
    assert!(metrics.get("pagination").is_none());
    assert!(metrics["summary"]["avg_cpu_percent"].is_number());

    // [fail] ends failed with an error.
    let (_, failing) = emu.post_json(
        "/v1/runs",
        &json!({"agent": "coder", "prompt": "please [fail]"}),
    );
    let fid = failing["id"].as_str().unwrap().to_string();
    wait_for("the run to fail", 400, || {
        (status_of(&emu, &fid) == "failed").then_some(())
    });
    let (_, detail) = emu.get_json(&format!("/v1/runs/{fid}"));
    assert!(detail["error"].is_string());
}

#[test]
fn cancel_running_and_refuse_terminal() {
    let emu = Emulator::start(&["--run-pending-ms", "100", "--run-duration-ms", "600000"]);
    emu.client()
        .post(emu.url("/_control/generate/runs?count=3"))
        .send()
        .unwrap();
    let (_, run) = emu.post_json(
        "/v1/runs",
        &json!({"agent": "bench-agent", "prompt": "long"}),
    );
    let id = run["id"].as_str().unwrap().to_string();
    wait_for("running", 400, || {
        (status_of(&emu, &id) == "running").then_some(())
    });
    let (code, detail) = emu.post_json(&format!("/v1/runs/{id}/cancel"), &json!({}));
    assert_eq!(code, 200, "{detail}");
    assert_eq!(detail["status"], "cancelled");
    assert!(detail["completed_at"].is_string());
    let (code, err) = emu.post_json(&format!("/v1/runs/{id}/cancel"), &json!({}));
    assert_eq!(code, 400);
    assert_eq!(err["error"]["code"], "invalid_state");
    assert_eq!(
        err["error"]["message"],
        "Run cannot be cancelled: current status is 'cancelled'"
    );
    let (_, runs) = emu.get_json("/v1/runs?status=completed");
    let done = runs["data"][0]["id"].as_str().unwrap();
    let (code, err) = emu.post_json(&format!("/v1/runs/{done}/cancel"), &json!({}));
    assert_eq!(code, 400);
    assert_eq!(
        err["error"]["message"],
        "Run cannot be cancelled: current status is 'completed'"
    );
    assert_eq!(emu.post_json("/v1/runs/nope/cancel", &json!({})).0, 404);
}

fn read_sse(emu: &Emulator, path: &str) -> Vec<(Option<u64>, String, Value)> {
    let resp = emu
        .client()
        .get(emu.url(path))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().expect("the stream ends");
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut id = None;
            let mut event = String::new();
            let mut data = Value::Null;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).unwrap();
                }
            }
            (id, event, data)
        })
        .collect()
}

#[test]
fn sse_streams_status_outputs_and_complete() {
    let emu = Emulator::start(&[
        "--seed",
        "demo",
        "--run-pending-ms",
        "200",
        "--run-duration-ms",
        "1200",
        "--log-interval-ms",
        "50",
    ]);
    let (_, run) = emu.post_json(
        "/v1/runs",
        &json!({"agent": "coder", "prompt": "stream me"}),
    );
    let id = run["id"].as_str().unwrap().to_string();
    let events = read_sse(&emu, &format!("/v1/runs/{id}/events"));
    assert_eq!(events[0].1, "status");
    assert_eq!(events[0].2["run_id"], id.as_str());
    let last = events.last().unwrap();
    assert_eq!(last.1, "complete");
    assert_eq!(last.2["status"], "completed");
    assert!(last.2["output"].as_str().unwrap().contains("stream me"));
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e.1 == "output")
        .map(|e| e.0.unwrap())
        .collect();
    assert!(
        seqs.len() >= 3 && seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "{seqs:?}"
    );
    // The run is terminal now: status then complete at once.
    let again = read_sse(&emu, &format!("/v1/runs/{id}/events?last_event_id=2"));
    assert_eq!(
        again.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        vec!["status", "complete"]
    );
    // Resuming a live run skips what was seen.
    let (_, run) = emu.post_json("/v1/runs", &json!({"agent": "coder", "prompt": "again"}));
    let id = run["id"].as_str().unwrap().to_string();
    let resumed = read_sse(&emu, &format!("/v1/runs/{id}/events?last_event_id=2"));
    let first_output = resumed.iter().find(|e| e.1 == "output").and_then(|e| e.0);
    assert_eq!(first_output, Some(3));
    assert_eq!(emu.get_json("/v1/runs/nope/events").0, 404);
}

#[test]
fn concurrent_run_limit_gives_429() {
    let emu = Emulator::start(&[
        "--seed",
        "demo",
        "--max-concurrent-runs",
        "1",
        "--run-pending-ms",
        "600000",
    ]);
    // The seed leaves pending and running runs, which count towards the limit.
    let (code, err) = emu.post_json("/v1/runs", &json!({"agent": "coder", "prompt": "one"}));
    assert_eq!(code, 429, "{err}");
    assert_eq!(err["error"]["code"], "concurrent_run_limit");
    let emu = Emulator::start(&["--max-concurrent-runs", "1", "--run-pending-ms", "600000"]);
    emu.client()
        .post(emu.url("/_control/generate/runs?count=1"))
        .send()
        .unwrap();
    let (code, _) = emu.post_json(
        "/v1/runs",
        &json!({"agent": "bench-agent", "prompt": "one"}),
    );
    assert_eq!(code, 202);
    let (code, _) = emu.post_json(
        "/v1/runs",
        &json!({"agent": "bench-agent", "prompt": "two"}),
    );
    assert_eq!(code, 429);
    assert_eq!(emu.stats()["runs_created"], 1);
}

#[test]
fn state_survives_a_restart() {
    let mut emu = Emulator::start(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kept.txt"), "still here").unwrap();
    let vid = emu.upload_dir("volumes", "kept", dir.path());
    let (_, run) = emu.post_json(
        "/v1/runs",
        &json!({"agent": "coder", "prompt": "remember me"}),
    );
    let (_, before) = emu.get_json("/v1/runs?limit=100");
    let old_url = emu.base_url().to_string();
    emu.restart();
    assert_ne!(emu.base_url(), "");
    let _ = old_url;
    let (code, got) = emu.get_json(&format!("/v1/runs/{}", run["id"].as_str().unwrap()));
    assert_eq!(code, 200);
    assert_eq!(got["prompt"], "remember me");
    let (_, after) = emu.get_json("/v1/runs?limit=100");
    assert_eq!(
        before["data"].as_array().unwrap().len(),
        after["data"].as_array().unwrap().len()
    );
    let id = emu.storage_id("volumes", "kept").unwrap();
    let (_, bytes) = download(&emu, "volumes", &id, &format!("?version_id={vid}"));
    assert_eq!(untar(&bytes)["kept.txt"], b"still here");
    // Seeding again does nothing.
    let (_, agents) = emu.get_json("/v1/agents?limit=100");
    assert_eq!(agents["data"].as_array().unwrap().len(), 4);
}

#[test]
fn faults_fail_truncate_and_forbid_on_request() {
    let emu = Emulator::start(&["--seed", "demo"]);
    emu.set_faults(json!({"error_count": 2, "error_status": 503, "retry_after_secs": 2}));
    for _ in 0..2 {
        let resp = emu
            .client()
            .get(emu.url("/v1/agents"))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        assert_eq!(resp.headers()["retry-after"], "2");
        let body: Value = serde_json::from_str::<Value>(&resp.text().unwrap()).unwrap();
        assert_eq!(body["error"]["type"], "api_error");
        assert_eq!(body["error"]["code"], "internal_error");
    }
    assert_eq!(emu.get_json("/v1/agents").0, 200);
    let faults: Value = emu
        .client()
        .get(emu.url("/_control/faults"))
        .send()
        .unwrap()
        .text()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(faults["error_count"], 0);
    assert_eq!(faults["error_status"], 503);

    emu.set_faults(json!({"error_count": 1, "error_status": 429, "path_prefix": "/v1/runs"}));
    assert_eq!(emu.get_json("/v1/agents").0, 200);
    let (code, body) = emu.get_json("/v1/runs");
    assert_eq!(code, 429);
    assert_eq!(body["error"]["code"], "rate_limited");

    let id = emu.storage_id("volumes", "input-data").unwrap();
    let c = emu.client();
    let loc = c
        .get(emu.url(&format!("/v1/volumes/{id}/download")))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    emu.set_faults(json!({"truncate_blobs": true}));
    let resp = c.get(&loc).send().unwrap();
    let declared: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // reqwest may also report the early close as an error: that is fine too.
    if let Ok(b) = resp.bytes() {
        assert!(b.len() < declared, "a truncated body must be short");
    }
    emu.set_faults(json!({"blob_forbidden_count": 1}));
    let resp = c.get(&loc).send().unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.text().unwrap().contains("<Code>AccessDenied</Code>"));
    assert_eq!(c.get(&loc).send().unwrap().status().as_u16(), 200);

    let resp = c
        .post(emu.url("/_control/faults"))
        .body("{\"latency\": 1}")
        .send()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        400,
        "unknown fault keys are refused"
    );
    let (code, body) = emu.get_json("/v1/nowhere");
    assert_eq!(code, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
}

#[test]
fn a_stalled_request_does_not_block_others() {
    let emu = Emulator::start(&["--seed", "demo"]);
    emu.set_faults(json!({"latency_ms": 30000, "path_prefix": "/v1/agents"}));
    let url = emu.url("/v1/agents");
    let stalled = std::thread::spawn(move || {
        let c = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        c.get(url).bearer_auth(TOKEN).send().is_err()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(emu.get_json("/v1/runs?limit=1").0, 200);
    assert!(
        stalled.join().unwrap(),
        "the stalled request should time out on the client"
    );
}

/// `POST …/upload` for `files` (path → bytes) on a new volume; returns (volume id, session id, path → PUT URL).
fn start_upload(
    emu: &Emulator,
    name: &str,
    files: &[(&str, &[u8])],
) -> (String, String, BTreeMap<String, String>) {
    let (code, created) = emu.post_json("/v1/volumes", &json!({"name": name}));
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let specs: Vec<Value> = files
        .iter()
        .map(|(p, b)| json!({"path": p, "size": b.len(), "hash": sha(b)}))
        .collect();
    let (code, session) = emu.post_json(
        &format!("/v1/volumes/{id}/upload"),
        &json!({"files": specs}),
    );
    assert_eq!(code, 200, "{session}");
    let urls = session["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["path"].as_str().unwrap().to_string(),
                t["upload_url"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let sid = session["upload_session_id"].as_str().unwrap().to_string();
    (id, sid, urls)
}

fn put_bytes(emu: &Emulator, url: &str, bytes: &[u8], token: bool) -> u16 {
    let mut req = emu
        .client()
        .put(url)
        .header("Content-Type", "application/octet-stream")
        .body(bytes.to_vec());
    if token {
        req = req.bearer_auth(TOKEN);
    }
    req.send().expect("PUT").status().as_u16()
}

#[test]
fn a_commit_missing_a_declared_file_is_409_until_the_file_is_put() {
    let emu = Emulator::start(&[]);
    let files: [(&str, &[u8]); 2] = [("a.txt", b"alpha"), ("dir/b.txt", b"beta")];
    let (id, sid, urls) = start_upload(&emu, "half-done", &files);
    assert_eq!(put_bytes(&emu, &urls["a.txt"], b"alpha", false), 200);
    let commit = format!("/v1/volumes/{id}/commit");
    let (code, err) = emu.post_json(&commit, &json!({"upload_session_id": sid}));
    assert_eq!(code, 409, "{err}");
    assert_eq!(err["error"]["type"], "conflict_error");
    assert_eq!(err["error"]["code"], "upload_incomplete");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("dir/b.txt") && !message.contains("a.txt,"),
        "{message}"
    );
    let (_, detail) = emu.get_json(&format!("/v1/volumes/{id}"));
    assert_eq!(detail["current_version_id"], Value::Null, "no version yet");

    // The session stays open: PUT what is missing, commit again.
    assert_eq!(put_bytes(&emu, &urls["dir/b.txt"], b"beta", false), 200);
    let (code, version) = emu.post_json(&commit, &json!({"upload_session_id": sid}));
    assert_eq!(code, 200, "{version}");
    let expected: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    assert_eq!(version["id"], content_hash(&id, &expected));
    let stats = emu.stats();
    assert_eq!(stats["upload_puts"], 2);
    assert_eq!(stats["commits"], 1, "the refused commit is not counted");
    assert_eq!(stats["upload_requests_with_token"], 0);
    // The session is used up.
    let (code, _) = emu.post_json(&commit, &json!({"upload_session_id": sid}));
    assert_eq!(code, 404);
}

#[test]
fn an_upload_put_that_carries_the_token_is_served_and_counted() {
    let emu = Emulator::start(&[]);
    let (id, sid, urls) = start_upload(&emu, "leaky", &[("x.bin", b"xx")]);
    assert_eq!(put_bytes(&emu, &urls["x.bin"], b"xx", true), 200);
    let (code, v) = emu.post_json(
        &format!("/v1/volumes/{id}/commit"),
        &json!({"upload_session_id": sid}),
    );
    assert_eq!(code, 200, "{v}");
    let stats = emu.stats();
    assert_eq!(stats["upload_requests_with_token"], 1);
    assert_eq!(stats["upload_puts"], 1);
    assert_eq!(stats["blob_requests_with_authorization"], 0);
}

#[test]
fn volume_names_follow_the_contract() {
    let emu = Emulator::start(&[]);
    let long_ok = "a".repeat(100);
    for good in ["a", "7", "a-b", "data-2026", long_ok.as_str()] {
        let (code, body) = emu.post_json("/v1/volumes", &json!({"name": good}));
        assert_eq!(code, 201, "{good}: {body}");
        assert_eq!(body["name"], good);
        assert_eq!(body["current_version_id"], Value::Null);
    }
    let too_long = "a".repeat(101);
    for bad in [
        "",
        "A",
        "-a",
        "a-",
        "a_b",
        "a.b",
        "a b",
        "é",
        too_long.as_str(),
    ] {
        let (code, body) = emu.post_json("/v1/volumes", &json!({"name": bad}));
        assert_eq!(code, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["param"], "name", "{bad:?}");
    }
    let (code, body) = emu.post_json("/v1/volumes", &json!({}));
    assert_eq!((code, body["error"]["param"].clone()), (400, json!("name")));
}

#[test]
fn a_commit_of_no_files_makes_an_empty_version_that_cannot_be_downloaded() {
    let emu = Emulator::start(&[]);
    let (id, sid, urls) = start_upload(&emu, "empty-one", &[]);
    assert!(urls.is_empty());
    let (code, version) = emu.post_json(
        &format!("/v1/volumes/{id}/commit"),
        &json!({"upload_session_id": sid}),
    );
    assert_eq!(code, 200, "{version}");
    assert_eq!(version["file_count"], 0);
    assert_eq!(version["id"], content_hash(&id, &BTreeMap::new()));
    let (_, detail) = emu.get_json(&format!("/v1/volumes/{id}"));
    assert_eq!(detail["current_version_id"], version["id"]);
    let (code, err) = emu.get_json(&format!("/v1/volumes/{id}/download"));
    assert_eq!(code, 404);
    assert_eq!(
        err["error"]["message"],
        "Volume 'empty-one' version has no files"
    );
}

#[test]
fn the_control_route_moves_a_head_behind_the_clients_back() {
    let emu = Emulator::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "kept").unwrap();
    std::fs::write(dir.path().join("gone.txt"), "gone").unwrap();
    let first = emu.upload_dir("volumes", "shared", dir.path());
    let id = emu.storage_id("volumes", "shared").unwrap();

    let (code, moved) = emu.post_json(
        "/_control/storages/volumes/shared/head",
        &json!({"files": {"new.txt": "from elsewhere", "gone.txt": null}, "keep_head": true}),
    );
    assert_eq!(code, 200, "{moved}");
    let expected: BTreeMap<String, Vec<u8>> = [
        ("keep.txt".to_string(), b"kept".to_vec()),
        ("new.txt".to_string(), b"from elsewhere".to_vec()),
    ]
    .into_iter()
    .collect();
    assert_eq!(moved["id"], content_hash(&id, &expected));
    assert_ne!(moved["id"], first.as_str());
    let (_, detail) = emu.get_json(&format!("/v1/volumes/{id}"));
    assert_eq!(detail["current_version_id"], moved["id"]);
    let (_, bytes) = download(&emu, "volumes", &id, "");
    assert_eq!(untar(&bytes), expected);
    let (_, versions) = emu.get_json(&format!("/v1/volumes/{id}/versions"));
    assert_eq!(versions["data"].as_array().unwrap().len(), 2);

    // Without keep_head the files are the whole new version; an unknown storage is created.
    let (code, fresh) = emu.post_json(
        "/_control/storages/artifacts/elsewhere/head",
        &json!({"files": {"only.txt": "one"}}),
    );
    assert_eq!(code, 200, "{fresh}");
    assert_eq!(fresh["file_count"], 1);
    assert!(emu.storage_id("artifacts", "elsewhere").is_some());
    // Bad requests say what is wrong.
    let (code, _) = emu.post_json("/_control/storages/disks/x/head", &json!({"files": {}}));
    assert_eq!(code, 400);
    let (code, _) = emu.post_json(
        "/_control/storages/volumes/shared/head",
        &json!({"files": {"../escape": "x"}}),
    );
    assert_eq!(code, 400);
    let (code, _) = emu.post_json(
        "/_control/storages/volumes/Bad_Name/head",
        &json!({"files": {}}),
    );
    assert_eq!(code, 400);
}

/// A tar.gz with every kind of entry the push flow carries: modes, a symlink climbing with `..`, an empty
/// directory, old mtimes and a hard link. Returns the archive and its regular files (the hard link's included).
fn every_kind_of_entry(b_is: &str) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let header = |kind: tar::EntryType, mode: u32, mtime: u64, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_size(size);
        h
    };
    let script = b"#!/bin/sh\necho hi\n";
    let mut h = header(
        tar::EntryType::Regular,
        0o755,
        1_000_000_000,
        script.len() as u64,
    );
    tar.append_data(&mut h, "run.sh", &script[..]).unwrap();
    let mut h = header(tar::EntryType::Directory, 0o750, 1_100_000_000, 0);
    tar.append_data(&mut h, "empty/", &b""[..]).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o600, 1_200_000_000, 4);
    tar.append_data(&mut h, "sub/a", &b"data"[..]).unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 1_300_000_000, 0);
    tar.append_link(&mut h, "sub/up", "../run.sh").unwrap();
    let mut h = header(tar::EntryType::Link, 0o600, 1_200_000_000, 0);
    tar.append_link(&mut h, "b", b_is).unwrap();
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    let files = BTreeMap::from([
        ("b".to_string(), b"data".to_vec()),
        ("run.sh".to_string(), script.to_vec()),
        ("sub/a".to_string(), b"data".to_vec()),
    ]);
    (bytes, files)
}

/// Prepares and PUTs a push of `archive` declaring `files`; returns the commit's status and body.
fn push(
    emu: &Emulator,
    name: &str,
    archive: &[u8],
    files: &BTreeMap<String, Vec<u8>>,
) -> (u16, Value) {
    let declared: Vec<Value> = files
        .iter()
        .map(|(p, b)| json!({"path": p, "hash": sha(b), "size": b.len()}))
        .collect();
    let body = json!({"storageName": name, "storageType": "volume", "files": declared});
    let (code, prepared) = emu.post_json("/api/storages/prepare", &body);
    assert_eq!(code, 200, "{prepared}");
    let url = |what: &str| {
        prepared["uploads"][what]["presignedUrl"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(put_bytes(emu, &url("archive"), archive, false), 200);
    assert_eq!(put_bytes(emu, &url("manifest"), b"{}", false), 200);
    let mut commit = body.clone();
    commit["versionId"] = prepared["versionId"].clone();
    emu.post_json("/api/storages/commit", &commit)
}

#[test]
fn a_push_is_stored_and_served_as_the_client_archived_it() {
    let emu = Emulator::start(&[]);
    let (archive, files) = every_kind_of_entry("sub/a");
    let (code, committed) = push(&emu, "every-kind", &archive, &files);
    assert_eq!(code, 200, "{committed}");
    let id = emu.storage_id("volumes", "every-kind").unwrap();
    let version = committed["versionId"].as_str().unwrap();
    assert_eq!(
        version,
        content_hash(&id, &files),
        "the id names the regular files only"
    );
    assert_eq!(committed["fileCount"], 3);
    let (_, served) = download(&emu, "volumes", &id, "");
    assert_eq!(
        served, archive,
        "the download is the pushed archive, byte for byte"
    );

    // A hard link to a file that is not before it, or whose bytes are not the declared ones, is refused.
    let (archive, files) = every_kind_of_entry("nowhere");
    let (code, refused) = push(&emu, "bad-link", &archive, &files);
    assert_eq!(code, 400, "{refused}");
    assert!(refused.to_string().contains("hard link"), "{refused}");
    let (archive, mut files) = every_kind_of_entry("run.sh");
    files.insert("b".into(), b"data".to_vec());
    let (code, refused) = push(&emu, "bad-bytes", &archive, &files);
    assert_eq!(code, 400, "{refused}");
}

#[test]
fn a_streamed_put_of_unknown_length_is_refused_as_s3_refuses_it() {
    let emu = Emulator::start(&[]);
    let files: [(&str, &[u8]); 1] = [("a.txt", b"alpha")];
    let (id, sid, urls) = start_upload(&emu, "streamed", &files);
    let streamed = emu
        .client()
        .put(&urls["a.txt"])
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            b"alpha".to_vec(),
        )))
        .send()
        .expect("PUT");
    assert_eq!(streamed.status().as_u16(), 501);
    assert!(streamed.text().unwrap().contains("NotImplemented"));
    assert_eq!(put_bytes(&emu, &urls["a.txt"], b"alpha", false), 200);
    let (code, version) = emu.post_json(
        &format!("/v1/volumes/{id}/commit"),
        &json!({"upload_session_id": sid}),
    );
    assert_eq!(code, 200, "{version}");
}
