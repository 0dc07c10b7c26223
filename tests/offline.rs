//! An API outage across a remount, on real mounts: what a first mount saw (a volume, a pinned version, a terminal
//! run's files) reads the same from a second mount made on the same cache while the API is down; such a mount
//! says what will and will not work, and `vm0fs status` says the API is unreachable. With an empty cache, or a
//! rejected token, an unreachable API still fails the mount. During an outage of a live mount, nothing waits for
//! the API once it is known to be out of reach, which the mount's own request counters show (not timings), and
//! the mount carries on by itself when the API is back.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::{Mount, ok, q, sh, vm0fs};
use serde_json::{Value, json};

fn write_files(dir: &std::path::Path, files: &[(&str, &[u8])]) {
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn a_remount_with_the_api_down_reads_what_was_cached() {
    let mut emulator = Emulator::start(&["--seed", "demo"]);
    let src = tempfile::tempdir().unwrap();
    let (v1_dir, v2_dir) = (src.path().join("v1"), src.path().join("v2"));
    write_files(&v1_dir, &[("a.txt", b"first"), ("sub/b.txt", b"bee")]);
    write_files(&v2_dir, &[("a.txt", b"second")]);
    let v1 = emulator.upload_dir("volumes", "pinned", &v1_dir);
    emulator.upload_dir("volumes", "pinned", &v2_dir);
    let seed = emulator.data_dir().join("seed-src/volumes/input-data");
    let cache = tempfile::tempdir().unwrap();
    let pinned = format!("volumes/pinned@{}", &v1[..8]);

    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    let diff_all = |mount: &Mount| {
        ok(&format!(
            "diff -r {} {}",
            q(&mount.path("volumes/input-data")),
            q(&seed)
        ));
        ok(&format!(
            "diff -r {} {}",
            q(&mount.path(&pinned)),
            q(&v1_dir)
        ));
    };
    diff_all(&mount);
    let run = std::fs::read_dir(mount.path("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .find(|name| {
            std::fs::read(mount.path("runs").join(name).join("status"))
                .is_ok_and(|status| status == b"completed\n")
        })
        .expect("a completed run in the demo data");
    let run_dir = mount.path("runs").join(&run);
    let run_files = |dir: &std::path::Path| {
        ["status", "prompt", "run.json", "logs"].map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    assert_eq!(run_files(&run_dir)[0], b"completed\n", "a terminal run");
    let before = run_files(&run_dir);
    mount.unmount();

    emulator.stop_process();
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    // The warning is on stderr before the mount is live; the collector thread reads it a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !mount.stderr().contains("Mounting from the cache") {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning: {}",
            mount.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    diff_all(&mount);
    assert_eq!(run_files(&mount.path("runs").join(&run)), before);
    let status = ok(&format!(
        "{} status {}",
        q(std::path::Path::new(env!("CARGO_BIN_EXE_vm0fs"))),
        q(mount.mountpoint())
    ));
    assert!(status.contains("UNREACHABLE since"), "{status}");
}

#[test]
fn a_rejected_token_or_an_empty_cache_still_fails_the_mount() {
    let mut emulator = Emulator::start(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let url = emulator.base_url().to_string();
    let mount_with = |cache: &std::path::Path, token: &str| {
        vm0fs()
            .args([
                "mount",
                mnt.to_str().unwrap(),
                "--api-url",
                &url,
                "--cache-dir",
            ])
            .arg(cache)
            .env("VM0_API_KEY", token)
            .env_remove("VM0_API_URL")
            .output()
            .unwrap()
    };

    // A cache that holds saved metadata does not excuse a rejected token.
    let full = dir.path().join("full");
    std::fs::create_dir_all(full.join("meta/agents")).unwrap();
    std::fs::write(full.join("meta/agents/616c6c.json"), b"[]").unwrap();
    let out = mount_with(&full, "vm0_live_wrong");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejected the API token"));

    // An empty cache has nothing to offer while the API is down.
    emulator.stop_process();
    let out = mount_with(&dir.path().join("empty"), emulator.token());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the VM0 API"), "{err}");
    assert!(!err.contains("Mounting from the cache"), "{err}");
    assert!(!common::mount::is_mounted(&mnt));
}

fn status_json(mount: &Mount) -> Value {
    let out = vm0fs()
        .args(["status", "--json"])
        .arg(mount.mountpoint())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all[0].clone()
}

/// Polls `vm0fs status --json` (bounded) until `pred` holds of it; returns it.
fn wait_for_status(mount: &Mount, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_json(mount);
        if pred(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {status}\n{}",
            mount.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Past every TTL of the mount (`--metadata-ttl 1`; `runs/` 2 s): what is read next is asked of the API again.
fn let_the_ttls_lapse() {
    std::thread::sleep(Duration::from_millis(2100));
}

fn fails_with_eio(script: &str) {
    let out = sh(script);
    assert!(!out.status.success(), "{script} worked offline: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Input/output error"), "{script}: {err}");
}

#[test]
fn an_outage_costs_no_waiting_and_the_mount_recovers_by_itself() {
    let mut emulator = Emulator::start(&[
        "--seed",
        "demo",
        "--run-pending-ms",
        "0",
        "--run-duration-ms",
        "3600000",
    ]);
    let (code, body) = emulator.post_json(
        "/v1/runs",
        &json!({"agent": "coder", "prompt": "keep going for an hour"}),
    );
    assert!(code < 300, "{body}");
    let running = body["id"].as_str().unwrap().to_string();
    let (_, page) = emulator.get_json("/v1/runs?limit=100");
    let ended = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "completed")
        .and_then(|r| r["id"].as_str())
        .expect("a completed run in the demo data")
        .to_string();
    let mount = Mount::start(&emulator, &["--metadata-ttl", "1"]);
    let read = |rel: &str| std::fs::read(mount.path(rel));
    let cat = |rel: &str| format!("cat {}", q(&mount.path(rel)));

    // What the mount sees before the outage: the runs, an ended run's whole log, a running run, a volume file.
    let runs = ok(&format!("ls {}", q(&mount.path("runs"))));
    let agents = ok(&format!("ls {}", q(&mount.path("agents"))));
    let log = read(&format!("runs/{ended}/logs")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read(&format!("runs/{running}/status")).unwrap() != b"running\n" {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let readme = Path::new("volumes/input-data/README.md");
    let seed_readme = std::fs::read(emulator.data_dir().join("seed-src").join(readme)).unwrap();
    assert_eq!(read(readme.to_str().unwrap()).unwrap(), seed_readme);

    // The API goes away. The first request past the TTL tries, retries, and finds it out of reach.
    emulator.stop_process();
    let_the_ttls_lapse();
    assert_eq!(ok(&format!("ls {}", q(&mount.path("runs")))), runs);
    let down = wait_for_status(&mount, "the API is not seen out of reach", |s| {
        s["api_unreachable_since"].is_string()
    });
    let before = down["api_calls"].clone();
    assert!(before["sent"].as_u64().unwrap() > 0, "{down}");

    // From now on nothing waits for it: what was seen is served, and what needs the API fails at once, with EIO.
    let_the_ttls_lapse();
    assert_eq!(ok(&format!("ls {}", q(&mount.path("runs")))), runs);
    assert_eq!(read(&format!("runs/{ended}/logs")).unwrap(), log);
    assert_eq!(
        read(&format!("runs/{running}/status")).unwrap(),
        b"running\n"
    );
    assert_eq!(read(readme.to_str().unwrap()).unwrap(), seed_readme);
    assert_eq!(ok(&format!("ls {}", q(&mount.path("agents")))), agents);
    // Whether a run last seen running has an output is not known (not "there is none").
    fails_with_eio(&cat(&format!("runs/{running}/output")));
    fails_with_eio(&format!("mkdir {}", q(&mount.path("volumes/made-offline"))));
    let after = status_json(&mount)["api_calls"].clone();
    assert_eq!(after["sent"], before["sent"], "requests sent: {after}");
    assert_eq!(after["retried"], before["retried"], "retries: {after}");
    assert!(
        after["held_back"].as_u64() > before["held_back"].as_u64(),
        "calls held back: {before} then {after}"
    );
    assert!(mount.logged("not sent: the API has not been reachable since"));

    // The API is back: the mount notices by itself (its probe), and what failed works.
    emulator.start_again();
    wait_for_status(&mount, "the mount did not notice the API is back", |s| {
        s["api_unreachable_since"].is_null()
    });
    assert!(mount.logged("the VM0 API answers again"));
    ok(&format!("mkdir {}", q(&mount.path("volumes/made-offline"))));
    assert!(emulator.storage_id("volumes", "made-offline").is_some());
    assert_no_output_yet(&mount, &running);
}

/// Online again, a running run has no `output` yet: `ENOENT`, as before the outage.
fn assert_no_output_yet(mount: &Mount, run: &str) {
    let out = sh(&format!(
        "cat {}",
        q(&mount.path(&format!("runs/{run}/output")))
    ));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{out:?}"
    );
}
