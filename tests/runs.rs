//! Runs come alive through a real mount: `tail -f` on a growing log, status that moves, starting runs by writing
//! `runs/new/<agent>` with real tools, and cancelling through `ctl`.

mod common;

use std::time::{Duration, Instant};

use common::emulator::{Emulator, FAST_RUNS};
use common::mount::{Mount, ok, q, sh, tail_f};
use serde_json::Value;

fn run_detail(emulator: &Emulator, id: &str) -> Value {
    let (status, body) = emulator.get_json(&format!("/v1/runs/{id}"));
    assert_eq!(status, 200, "{body}");
    body
}

/// Every log entry of a run from the API, rendered as vm0fs renders them.
fn api_log_lines(emulator: &Emulator, id: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = emulator.get_json(&format!("/v1/runs/{id}/logs?limit=100{cursor}"));
        assert_eq!(status, 200);
        for e in page["data"].as_array().unwrap() {
            let message = e["message"]
                .as_str()
                .unwrap()
                .replace('\n', "\\n")
                .replace('\r', "\\r");
            lines.push(format!(
                "{} {} {} {}",
                e["timestamp"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
                e["level"].as_str().unwrap(),
                message
            ));
        }
        match page["pagination"]["next_cursor"].as_str() {
            Some(next) if page["pagination"]["has_more"] == true => {
                cursor = format!("&cursor={next}")
            }
            _ => return lines,
        }
    }
}

fn start_run(emulator: &Emulator, body: Value) -> String {
    let (status, run) = emulator.post_json("/v1/runs", &body);
    assert_eq!(status, 202, "{run}");
    run["id"].as_str().unwrap().to_string()
}

#[test]
fn tail_f_follows_a_running_log_to_its_end_without_loss_or_duplicates() {
    let emulator = Emulator::start(&[&["--seed", "demo"][..], &FAST_RUNS].concat());
    let mount = Mount::start(&emulator, &[]);
    let id = start_run(
        &emulator,
        serde_json::json!({"agent": "coder", "prompt": "follow me"}),
    );
    let logs = mount.path(&format!("runs/{id}/logs"));
    let (mut tail, seen) = tail_f(&logs, "0.5");
    assert_eq!(emulator.wait_run_terminal(&id), "completed");
    let expected = api_log_lines(&emulator, &id);
    assert!(
        expected.len() > 5,
        "the run wrote {} entries",
        expected.len()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().lines().count() < expected.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on the PID of our own child, not yet reaped.
    unsafe { libc::kill(tail.id() as i32, libc::SIGTERM) };
    let _ = tail.wait();
    let got: Vec<String> = seen.lock().unwrap().lines().map(str::to_string).collect();
    assert_eq!(
        got, expected,
        "tail -f must show every entry once, in order"
    );
    // Once terminal and drained, the file is fixed.
    assert_eq!(
        std::fs::read_to_string(&logs).unwrap().lines().count(),
        expected.len()
    );
}

#[test]
fn status_moves_from_pending_to_running_to_completed_and_output_appears() {
    let emulator = Emulator::start(&[&["--seed", "demo"][..], &FAST_RUNS].concat());
    let mount = Mount::start(&emulator, &[]);
    let out = sh(&format!(
        "printf 'watch the status\\n' > {}",
        q(&mount.path("runs/new/coder"))
    ));
    assert!(out.status.success(), "{out:?}");
    let id = std::fs::read_to_string(mount.path("runs/new/coder"))
        .unwrap()
        .trim()
        .to_string();
    let status_file = mount.path(&format!("runs/{id}/status"));
    assert!(
        !mount.path(&format!("runs/{id}/output")).exists(),
        "no output before the run ends"
    );
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.last().map(String::as_str) != Some("completed") {
        assert!(Instant::now() < deadline, "status stuck: {seen:?}");
        let status = std::fs::read_to_string(&status_file)
            .unwrap()
            .trim()
            .to_string();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("pending"),
        "{seen:?}"
    );
    assert!(seen.contains(&"running".to_string()), "{seen:?}");
    let order: Vec<_> = seen
        .iter()
        .map(|s| {
            ["pending", "running", "completed"]
                .iter()
                .position(|x| x == s)
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "statuses out of order: {seen:?}"
    );
    let output = std::fs::read_to_string(mount.path(&format!("runs/{id}/output"))).unwrap();
    assert!(!output.is_empty());
    assert_eq!(
        std::fs::read_link(mount.path("runs/latest"))
            .unwrap()
            .to_string_lossy(),
        id
    );
}

#[test]
fn writing_runs_new_starts_exactly_one_run_per_close() {
    let emulator = Emulator::start(&["--seed", "demo", "--max-concurrent-runs", "100"]);
    let mount = Mount::start(&emulator, &[]);
    let new_file = mount.path("runs/new/coder");
    let before = emulator.stats()["runs_created"].as_u64().unwrap();

    let out = sh(&format!("printf 'hello\\n' > {}", q(&new_file)));
    assert!(out.status.success(), "{out:?}");
    let id = std::fs::read_to_string(&new_file).unwrap();
    assert!(id.ends_with('\n'));
    let id = id.trim();
    assert_eq!(run_detail(&emulator, id)["prompt"], "hello");
    assert!(
        mount.path(&format!("runs/{id}")).is_dir(),
        "runs/<id> exists at once"
    );
    let listing = sh(&format!("ls {}", q(&mount.path("runs"))));
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains(id),
        "no stale listing hides the new run"
    );

    let out = sh(&format!("/bin/echo 'second prompt' > {}", q(&new_file)));
    assert!(out.status.success(), "{out:?}");
    let second = std::fs::read_to_string(&new_file)
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(second, id);
    assert_eq!(run_detail(&emulator, &second)["prompt"], "second prompt");

    let body = r#"{"prompt": "with a body", "variables": {"CITY": "Oslo"}, "volumes": {"input-data": "latest"}}"#;
    let json_file = mount.path("runs/new/coder.json");
    let out = sh(&format!("printf '%s' '{body}' | cat > {}", q(&json_file)));
    assert!(out.status.success(), "{out:?}");
    let third = std::fs::read_to_string(&json_file)
        .unwrap()
        .trim()
        .to_string();
    let detail = run_detail(&emulator, &third);
    assert_eq!(detail["prompt"], "with a body");
    assert_eq!(detail["agent_name"], "coder");
    assert!(detail["volumes"]["input-data"].is_string(), "{detail}");

    // Several writes before one close are one prompt, and one run.
    let out = sh(&format!(
        "(printf 'part one, '; sleep 0.2; printf 'part two') > {}",
        q(&new_file)
    ));
    assert!(out.status.success(), "{out:?}");
    let fourth = std::fs::read_to_string(&new_file)
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        run_detail(&emulator, &fourth)["prompt"],
        "part one, part two"
    );

    let after = emulator.stats()["runs_created"].as_u64().unwrap();
    assert_eq!(after - before, 4, "one run per open-write-close");
}

#[test]
fn refusals_fail_visibly() {
    let emulator = Emulator::start(&["--seed", "demo", "--max-concurrent-runs", "1"]);
    let mount = Mount::start(&emulator, &[]);
    let out = sh(&format!(
        "echo hi > {}",
        q(&mount.path("runs/new/no-such-agent"))
    ));
    assert!(!out.status.success());
    // dash says "Directory nonexistent" for ENOENT at open; bash says "No such file or directory".
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nonexistent")
            || String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{out:?}"
    );

    // The demo already has running runs, so the emulator answers 429: close(2) fails, and tee says so.
    let new_file = mount.path("runs/new/coder");
    let out = sh(&format!(
        "printf 'too many' | tee {} >/dev/null",
        q(&new_file)
    ));
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Resource temporarily unavailable"),
        "{out:?}"
    );
    let shown = std::fs::read_to_string(&new_file).unwrap();
    assert!(
        shown.starts_with("error: ") && shown.contains("429"),
        "{shown}"
    );
    let out = sh(&format!("printf 'too many' | cat > {}", q(&new_file)));
    assert!(!out.status.success(), "cat must see the error too: {out:?}");
}

#[test]
fn ctl_cancels_a_running_run_and_refuses_otherwise() {
    let emulator = Emulator::start(&[
        "--seed",
        "demo",
        "--run-pending-ms",
        "100",
        "--run-duration-ms",
        "600000",
    ]);
    let mount = Mount::start(&emulator, &[]);
    let id = start_run(
        &emulator,
        serde_json::json!({"agent": "coder", "prompt": "long"}),
    );
    let ctl = mount.path(&format!("runs/{id}/ctl"));
    let out = sh(&format!("echo cancel > {}", q(&ctl)));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(run_detail(&emulator, &id)["status"], "cancelled");
    assert_eq!(
        std::fs::read_to_string(mount.path(&format!("runs/{id}/status"))).unwrap(),
        "cancelled\n"
    );

    let out = sh(&format!("/bin/echo -n cancel > {}", q(&ctl)));
    assert!(
        !out.status.success(),
        "a cancelled run cannot be cancelled again"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such process"),
        "an ended run has an errno of its own: {out:?}"
    );

    let other = start_run(
        &emulator,
        serde_json::json!({"agent": "coder", "prompt": "other"}),
    );
    let out = sh(&format!(
        "/bin/echo stop > {}",
        q(&mount.path(&format!("runs/{other}/ctl")))
    ));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid argument"),
        "{out:?}"
    );
    assert_ne!(run_detail(&emulator, &other)["status"], "cancelled");
}

#[test]
fn a_run_that_names_an_artifact_links_to_its_version() {
    let emulator = Emulator::start(&[&["--seed", "demo"][..], &FAST_RUNS].concat());
    let mount = Mount::start(&emulator, &[]);
    let id = start_run(
        &emulator,
        serde_json::json!({"agent": "coder", "prompt": "make a report", "artifact_name": "run-output"}),
    );
    assert_eq!(emulator.wait_run_terminal(&id), "completed");
    let version = run_detail(&emulator, &id)["artifact_version"]
        .as_str()
        .unwrap()
        .to_string();
    let link = mount.path(&format!("runs/{id}/artifact"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::symlink_metadata(&link).is_err() {
        assert!(
            Instant::now() < deadline,
            "runs/{id}/artifact never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        std::fs::read_link(&link).unwrap().to_string_lossy(),
        format!("../../artifacts/run-output@{version}")
    );
    let listing = sh(&format!("ls {}/", q(&link)));
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("result.md"),
        "{listing:?}"
    );
    // The README's way out: `cp -rL` copies the files; plain `cp -r` copies the link (a dangling one outside).
    let out = tempfile::tempdir().unwrap();
    ok(&format!("cp -rL {} {}", q(&link), q(out.path())));
    let copied = out.path().join("artifact/result.md");
    assert!(
        std::fs::symlink_metadata(&copied).unwrap().is_file(),
        "{copied:?}"
    );
    assert!(
        std::fs::read_to_string(&copied)
            .unwrap()
            .contains("make a report")
    );
    ok(&format!("cp -r {} {}/plain", q(&link), q(out.path())));
    assert!(
        std::fs::symlink_metadata(out.path().join("plain"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
