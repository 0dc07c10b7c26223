//! Fault injection on real mounts: the emulator misbehaves on purpose (`POST /_control/faults`, crafted archives,
//! a stopped process) while real tools (`ls`, `cat`, `diff`) use a real `vm0fs` mount.
//!
//! What every test here asserts is the user-visible contract of `docs/ROBUSTNESS.md`: a storm shorter than the
//! retry budget is invisible; past it a call fails with a clear errno (`EIO` for 5xx and the network, `EAGAIN`
//! for 429) and the next call, once the server is back, succeeds; a broken archive is never served, then or after
//! a remount; a mount never hangs. Storms use `error_count` (exactly the next N matching requests fail), never
//! `error_rate`, so that each test is deterministic. Timings are never asserted: a command either ended (inside
//! `sh`'s 60 s timeout) or it did not.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::{Mount, is_mounted, ok, q, sh, wait_unmounted};
use common::noise;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `sh`'s exit status when its 60 s `timeout` killed the command.
const TIMED_OUT: i32 = 124;

/// Runs `script`, which must fail (but not by the 60 s timeout) with `message` (a strerror text) on stderr.
fn fails_with(script: &str, message: &str) -> Output {
    let out = sh(script);
    assert_ne!(
        out.status.code(),
        Some(TIMED_OUT),
        "`{script}` hung (killed by the 60 s timeout)"
    );
    assert!(
        !out.status.success(),
        "`{script}` succeeded, expected {message:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(message),
        "`{script}`: expected {message:?} on stderr, got:\n{err}"
    );
    out
}

fn seed_volume(emulator: &Emulator) -> PathBuf {
    emulator.data_dir().join("seed-src/volumes/input-data")
}

/// `diff -r` of the mounted seed volume against its source.
fn volume_matches_source(emulator: &Emulator, mount: &Mount) {
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("volumes/input-data")),
        q(&seed_volume(emulator))
    ));
}

fn storm(emulator: &Emulator, status: u16, count: u64, retry_after: Option<u64>) {
    emulator.set_faults(json!({
        "error_status": status,
        "error_count": count,
        "retry_after_secs": retry_after,
    }));
}

/// Names of the entries of `dir`, sorted (an absent dir is empty).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every cache entry under `<cache>/archives` is complete: it has its `meta.json` and a `tree/`.
fn cache_entries_are_complete(cache: &Path) -> Vec<String> {
    let archives = cache.join("archives");
    let names = entries(&archives);
    for name in &names {
        let entry = archives.join(name);
        assert!(
            entry.join("meta.json").is_file() && entry.join("tree").is_dir(),
            "cache entry {name} is incomplete: {:?}",
            entries(&entry)
        );
    }
    names
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A tar of `files`, with modes 0644 and a fixed mtime.
fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut header, name, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

// ---------------------------------------------------------------------------------------------------------------
// Storms of 5xx and 429

#[test]
fn a_503_storm_shorter_than_the_retry_budget_is_invisible() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    // Three failures in a row, then success: inside the client's 4 retries.
    storm(&emulator, 503, 3, None);
    let runs = ok(&format!("ls {}", q(&mount.path("runs"))));
    assert!(runs.lines().count() > 30, "runs/ lists:\n{runs}");
    // The storm was used up (the next request went through), not dodged.
    assert_eq!(emulator.get_json("/_control/faults").1["error_count"], 0);
    // A cold volume: the listing and the download request are hit by the storm.
    for status in [500, 502, 503] {
        storm(&emulator, status, 3, None);
        ok(&format!("ls {}", q(&mount.path("agents"))));
    }
    storm(&emulator, 502, 3, None);
    volume_matches_source(&emulator, &mount);
    assert_eq!(emulator.get_json("/_control/faults").1["error_count"], 0);
}

#[test]
fn a_429_storm_with_retry_after_is_waited_out() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    storm(&emulator, 429, 3, Some(1));
    let volumes = ok(&format!("ls {}", q(&mount.path("volumes"))));
    assert!(volumes.contains("input-data"), "{volumes}");
    storm(&emulator, 429, 3, Some(1));
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("artifacts/report")),
        q(&emulator.data_dir().join("seed-src/artifacts/report"))
    ));
    assert_eq!(emulator.get_json("/_control/faults").1["error_count"], 0);
}

#[test]
fn past_the_retry_budget_5xx_is_eio_and_the_next_request_succeeds() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    // `runs/` was never listed, so there is nothing stale to fall back on.
    storm(&emulator, 503, 1000, None);
    fails_with(
        &format!("ls {}", q(&mount.path("runs"))),
        "Input/output error",
    );
    emulator.set_faults(json!({}));
    let runs = ok(&format!("ls {}", q(&mount.path("runs"))));
    assert!(runs.lines().count() > 30);

    // A file: the volume is listed, then every download request fails.
    ok(&format!("ls {}", q(&mount.path("volumes"))));
    let id = emulator.storage_id("volumes", "input-data").unwrap();
    emulator.set_faults(json!({
        "error_status": 500,
        "error_count": 1000,
        "path_prefix": format!("/v1/volumes/{id}/download"),
    }));
    fails_with(
        &format!("cat {}", q(&mount.path("volumes/input-data/README.md"))),
        "Input/output error",
    );
    assert!(
        cache_entries_are_complete(mount.cache_dir()).is_empty(),
        "a failed download left a cache entry"
    );
    emulator.set_faults(json!({}));
    volume_matches_source(&emulator, &mount);
}

#[test]
fn past_the_retry_budget_429_is_eagain_and_the_next_request_succeeds() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    storm(&emulator, 429, 1000, Some(1));
    fails_with(
        &format!("ls {}", q(&mount.path("volumes"))),
        "Resource temporarily unavailable",
    );
    emulator.set_faults(json!({}));
    let volumes = ok(&format!("ls {}", q(&mount.path("volumes"))));
    assert!(volumes.contains("input-data"), "{volumes}");
}

// ---------------------------------------------------------------------------------------------------------------
// A server that stalls

/// Runs `script` in the background; the handle gives its output once it ends.
fn background(script: String) -> std::thread::JoinHandle<Output> {
    std::thread::spawn(move || sh(&script))
}

/// SIGTERM while a request waits on a stalled server: the mount is detached and the process exits within a few
/// seconds, without waiting for the stalled request (docs/ROBUSTNESS.md, gap 1).
#[test]
fn a_stalled_server_does_not_hang_unmount() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mut mount = Mount::start(&emulator, &[]);
    // Every /v1/runs request sits for two minutes: far past any deadline of the client.
    emulator.set_faults(json!({"latency_ms": 120_000, "path_prefix": "/v1/runs"}));
    let stuck = background(format!("ls {}", q(&mount.path("runs"))));
    // Give the `ls` time to reach the server (bounded; the assertion below does not depend on it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while emulator.stats()["requests"].as_u64().unwrap_or(0) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // signal_and_wait fails the test if vm0fs does not exit within 15 s of SIGTERM.
    let status = mount.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "{status}: {}", mount.stderr());
    assert!(wait_unmounted(mount.mountpoint(), Duration::from_secs(10)));
    let out = stuck.join().unwrap();
    assert_ne!(
        out.status.code(),
        Some(TIMED_OUT),
        "the `ls` stayed hung after the unmount"
    );
    // Unblock the emulator's sleeping threads quickly for the guard's kill (not needed for correctness).
    emulator.set_faults(json!({}));
}

/// A stalled server: `ls` fails with EIO after one 30 s deadline (a timed-out request is not sent again), well
/// within `sh`'s 60 s, while cached files keep reading (docs/ROBUSTNESS.md, gap 2).
#[test]
fn a_stalled_listing_returns_on_its_own_and_cached_files_keep_reading() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let cached = mount.path("volumes/input-data/README.md");
    let before = std::fs::read(&cached).unwrap();
    // Longer than the client's 30 s request deadline: each attempt must be cut by the deadline.
    emulator.set_faults(json!({"latency_ms": 45_000, "path_prefix": "/v1/runs"}));
    let stuck = background(format!("ls {}", q(&mount.path("runs"))));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read(&cached).unwrap(), before);
    let out = stuck.join().unwrap();
    assert_ne!(
        out.status.code(),
        Some(TIMED_OUT),
        "`ls runs/` on a stalled server did not return within 60 s:\n{}",
        mount.stderr()
    );
    assert!(
        !out.status.success(),
        "`ls runs/` succeeded on a stalled server"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
        "{out:?}"
    );
    emulator.set_faults(json!({}));
    ok(&format!("ls {}", q(&mount.path("runs"))));
}

// ---------------------------------------------------------------------------------------------------------------
// Broken downloads and broken archives

#[test]
fn a_truncated_download_is_never_served_then_or_after_a_remount() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let cache = tempfile::tempdir().unwrap();
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    emulator.set_faults(json!({"truncate_blobs": true}));
    fails_with(
        &format!("ls {}", q(&mount.path("volumes/input-data"))),
        "Input/output error",
    );
    let version = emulator.get_json("/v1/volumes?limit=100").1["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "input-data")
        .unwrap()["current_version_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The cache retried the cut stream (3 attempts) before giving up.
    assert!(
        emulator.stats()["blob_downloads"][&version]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "the truncated download was not retried: {}",
        emulator.stats()
    );
    assert!(cache_entries_are_complete(cache.path()).is_empty());
    mount.unmount();
    // The remount sees nothing half-extracted; with the server healed, the volume is whole.
    emulator.set_faults(json!({}));
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    assert!(entries(&cache.path().join("staging")).is_empty());
    assert!(cache_entries_are_complete(cache.path()).is_empty());
    volume_matches_source(&emulator, &mount);
    assert_eq!(cache_entries_are_complete(cache.path()), [version]);
}

#[test]
fn an_expired_presigned_url_is_fetched_again_and_past_that_fails_cleanly() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let cache = tempfile::tempdir().unwrap();
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    // Two refusals of the blob host: a fresh redirect is asked for, the third try goes through.
    emulator.set_faults(json!({"blob_forbidden_count": 2}));
    volume_matches_source(&emulator, &mount);
    assert_eq!(
        emulator.get_json("/_control/faults").1["blob_forbidden_count"],
        0
    );
    // Refused every time: a clean error, nothing cached, and the next request after the fix succeeds.
    emulator.set_faults(json!({"blob_forbidden_count": 1000}));
    let out = sh(&format!("ls {}", q(&mount.path("artifacts/report"))));
    assert!(!out.status.success(), "{out:?}");
    assert_ne!(out.status.code(), Some(TIMED_OUT));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Input/output error") || err.contains("Permission denied"),
        "{err}"
    );
    assert_eq!(cache_entries_are_complete(cache.path()).len(), 1);
    emulator.set_faults(json!({}));
    mount.unmount();
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("artifacts/report")),
        q(&emulator.data_dir().join("seed-src/artifacts/report"))
    ));
}

#[test]
fn corrupt_and_cut_archives_fail_with_eio_and_the_mount_goes_on() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let good_tar = tar_of(&[
        ("a.txt", b"alpha\n".to_vec()),
        ("big.bin", noise(200_000, 1)),
        ("z.txt", b"zulu\n".to_vec()),
    ]);
    let good = gzip(&good_tar);

    // Deflate data overwritten in the middle: the gzip CRC (or the inflater) rejects it.
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 64] {
        *b ^= 0xa5;
    }
    // A gzip stream cut in half (no trailer).
    let cut_gzip = good[..good.len() / 2].to_vec();
    // A well-formed gzip of a tar that stops in the middle of big.bin's data.
    let short_tar = gzip(&good_tar[..512 + 1024 + 512 + 100_000]);
    // Not gzip at all.
    let not_gzip = b"<html><body>Service Unavailable</body></html>".to_vec();

    let cases = [
        ("corrupt-gzip", corrupt),
        ("cut-gzip", cut_gzip),
        ("short-tar", short_tar),
        ("not-gzip", not_gzip),
    ];
    for (name, bytes) in &cases {
        emulator.add_raw_archive("artifacts", name, bytes);
    }
    emulator.add_raw_archive("artifacts", "good", &good);

    let mount = Mount::start(&emulator, &[]);
    for (name, _) in &cases {
        fails_with(
            &format!("ls {}", q(&mount.path(&format!("artifacts/{name}")))),
            "Input/output error",
        );
        // Asked again: the same clean error, never a partial tree.
        fails_with(
            &format!("cat {}", q(&mount.path(&format!("artifacts/{name}/a.txt")))),
            "Input/output error",
        );
    }
    assert!(entries(&mount.cache_dir().join("staging")).is_empty());
    assert!(cache_entries_are_complete(mount.cache_dir()).is_empty());
    // The mount goes on: the good archive and the seed volume read whole.
    assert_eq!(
        ok(&format!("ls {}", q(&mount.path("artifacts/good")))),
        "a.txt\nbig.bin\nz.txt\n"
    );
    assert_eq!(
        std::fs::read(mount.path("artifacts/good/big.bin")).unwrap(),
        noise(200_000, 1)
    );
    volume_matches_source(&emulator, &mount);
}

// ---------------------------------------------------------------------------------------------------------------
// The API unreachable after mount

#[test]
fn an_unreachable_api_keeps_cached_files_readable_and_listings_recover() {
    let mut emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--metadata-ttl", "1"]);
    volume_matches_source(&emulator, &mount);
    ok(&format!("ls {}", q(&mount.path("agents"))));

    emulator.stop_process();
    // Past the metadata TTL every lookup asks the API again, which fails: what was seen before is served.
    std::thread::sleep(Duration::from_millis(1500));
    for file in ["README.md", "data/input.csv"] {
        assert_eq!(
            ok(&format!(
                "cat {}",
                q(&mount.path(&format!("volumes/input-data/{file}")))
            ))
            .as_bytes(),
            std::fs::read(seed_volume(&emulator).join(file)).unwrap(),
            "{file} read offline"
        );
    }
    // Never listed: nothing to fall back on.
    fails_with(
        &format!("ls {}", q(&mount.path("runs"))),
        "Input/output error",
    );
    fails_with(
        &format!("ls {}", q(&mount.path("artifacts/report"))),
        "Input/output error",
    );

    // Back on the same port: once the mount's probe has seen it (every 2 s), everything comes through again.
    emulator.start_again();
    assert!(
        wait_for(Duration::from_secs(60), || {
            let status = std::fs::read(mount.path(".vm0fs/status")).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&status)
                .is_ok_and(|s| s["api_unreachable_since"].is_null())
        }),
        "the mount did not notice the API is back"
    );
    let runs = ok(&format!("ls {}", q(&mount.path("runs"))));
    assert!(runs.lines().count() > 30);
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("artifacts/report")),
        q(&emulator.data_dir().join("seed-src/artifacts/report"))
    ));
}

/// Offline, a stale value served once is fresh again for its TTL, so a whole cached volume diffs within `sh`'s
/// timeout instead of each lookup waiting out the client's retries (docs/ROBUSTNESS.md, gap 3).
#[test]
fn an_unreachable_api_still_lets_a_whole_cached_volume_be_diffed() {
    let mut emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--metadata-ttl", "1"]);
    volume_matches_source(&emulator, &mount);
    emulator.stop_process();
    std::thread::sleep(Duration::from_millis(1500));
    volume_matches_source(&emulator, &mount);
}

// ---------------------------------------------------------------------------------------------------------------
// kill -9 during a download and during an extraction

/// Polls (bounded) until `pred` holds; returns whether it did.
fn wait_for(within: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kill_9_during_a_download_then_a_remount_reads_the_whole_volume() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let cache = tempfile::tempdir().unwrap();
    let mut mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    // The blob host answers only after 20 s: the kill lands while the download is in flight.
    emulator.set_faults(json!({"latency_ms": 20_000, "path_prefix": "/_storage"}));
    let reader = background(format!(
        "cat {}",
        q(&mount.path("volumes/input-data/README.md"))
    ));
    let staging = cache.path().join("staging");
    assert!(
        wait_for(Duration::from_secs(20), || !entries(&staging).is_empty()),
        "the download never started:\n{}",
        mount.stderr()
    );
    mount.signal_and_wait(libc::SIGKILL);
    assert!(wait_unmounted(mount.mountpoint(), Duration::from_secs(10)));
    let out = reader.join().unwrap();
    assert!(
        !out.status.success(),
        "the reader of a killed mount succeeded"
    );
    assert!(cache_entries_are_complete(cache.path()).is_empty());
    drop(mount);

    emulator.set_faults(json!({}));
    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    assert!(
        entries(&staging).is_empty(),
        "staging leftovers survived the remount"
    );
    volume_matches_source(&emulator, &mount);
    assert_eq!(cache_entries_are_complete(cache.path()).len(), 1);
}

/// sha256 of every regular file of a `.tar.gz`, by path.
fn tar_gz_hashes(path: &Path) -> Vec<(String, String)> {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = entry.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        out.push((name, hex::encode(hasher.finalize())));
    }
    out.sort();
    out
}

fn sha256_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

#[test]
fn kill_9_during_an_extraction_then_a_remount_reads_every_file_right() {
    let emulator = Emulator::start(&[]);
    let resp = emulator
        .client()
        .post(emulator.url(
            "/_control/generate/storage?kind=volumes&name=big&big_file_mb=4&small_files=300&small_size=2000",
        ))
        .timeout(Duration::from_secs(120))
        .send()
        .expect("generate a big volume");
    assert_eq!(resp.status().as_u16(), 200);
    let version: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
    let vid = version["id"].as_str().unwrap().to_string();
    let expected = tar_gz_hashes(&emulator.data_dir().join(format!("blobs/{vid}.tar.gz")));
    assert_eq!(expected.len(), 301);
    // The big file (last in the archive) takes about 16 s to arrive: the kill below finds it half extracted
    // however slowly this test is scheduled, rather than racing a download that could finish between two looks.
    emulator.set_faults(json!({ "blob_bytes_per_sec": 256_000 }));

    let cache = tempfile::tempdir().unwrap();
    let mut mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    let reader = background(format!(
        "cat {} >/dev/null",
        q(&mount.path("volumes/big/big.bin"))
    ));
    // Kill once the big file (last in the archive) has started to land in a staging tree.
    let staging = cache.path().join("staging");
    let mid_extraction = wait_for(Duration::from_secs(50), || {
        entries(&staging).iter().any(|s| {
            std::fs::metadata(staging.join(s).join("tree/big.bin"))
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        })
    });
    mount.signal_and_wait(libc::SIGKILL);
    assert!(
        mid_extraction,
        "the extraction was never caught in progress (staging: {:?}, archives: {:?})",
        entries(&staging),
        entries(&cache.path().join("archives"))
    );
    assert!(wait_unmounted(mount.mountpoint(), Duration::from_secs(10)));
    let _ = reader.join().unwrap();
    drop(mount);
    assert!(
        cache_entries_are_complete(cache.path()).is_empty(),
        "a half extraction was published"
    );
    emulator.set_faults(json!({}));

    let mount = Mount::start_with_cache(&emulator, cache.path(), &[]);
    assert!(entries(&staging).is_empty(), "staging leftovers survived");
    for (path, hash) in &expected {
        assert_eq!(
            &sha256_file(&mount.path(&format!("volumes/big/{path}"))),
            hash,
            "{path}"
        );
    }
    // A file is served as soon as it is extracted; the archive is published into the cache once the whole
    // download has been made durable, a moment after the last byte was read.
    let published = wait_for(Duration::from_secs(60), || {
        cache_entries_are_complete(cache.path()) == [vid.clone()]
    });
    assert!(
        published,
        "the archive was not published: {:?}",
        cache_entries_are_complete(cache.path())
    );
    assert!(is_mounted(mount.mountpoint()));
}

#[test]
fn malformed_answers_are_clear_errors_naming_the_endpoint_and_the_mount_goes_on() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &["--metadata-ttl", "0"]);
    let agents = mount.path("agents");
    let bodies = [
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        "{\"data\": [{\"id\": \"a\", \"na",
        "{\"data\":[{\"id\":5,\"name\":true}],\"pagination\":{\"has_more\":false}}",
        "{\"unexpected\": 1}",
    ];
    for body in bodies {
        emulator.set_faults(
            json!({"path_prefix": "/v1/agents", "bad_body": body, "bad_body_count": 1000}),
        );
        let out = sh(&format!("ls {}", q(&agents)));
        assert!(!out.status.success(), "{body}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Input/output error"),
            "{body}: {out:?}"
        );
        emulator.set_faults(json!({}));
        assert!(
            ok(&format!("ls {}", q(&agents))).contains("coder"),
            "{body}: the next request succeeds"
        );
    }
    assert!(
        mount.logged("GET /v1/agents"),
        "the error names the endpoint:\n{}",
        mount.stderr()
    );
}

/// A small tmpfs, unmounted (lazily, as a last resort) when the test ends.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_while_extracting_is_enospc_and_other_cached_data_still_reads() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let (status, version) = emulator.post_json(
        "/_control/generate/storage?kind=artifacts&name=too-big&big_file_mb=3&small_files=1&small_size=10",
        &json!({}),
    );
    assert_eq!(status, 200, "{version}");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&cache)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a 1 MiB tmpfs (the test runs as root)"
    );
    let _tmpfs = Tmpfs(cache.clone());
    let mount = Mount::start_with_cache(&emulator, &cache, &[]);
    let source = emulator.data_dir().join("seed-src/volumes/input-data");
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("volumes/input-data")),
        q(&source)
    ));
    let out = sh(&format!(
        "cat {} > /dev/null",
        q(&mount.path("artifacts/too-big/big.bin"))
    ));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left on device"),
        "{out:?}"
    );
    ok(&format!(
        "diff -r {} {}",
        q(&mount.path("volumes/input-data")),
        q(&source)
    ));
    ok(&format!("ls {}", q(&mount.path("agents"))));
    let leftovers = ok(&format!(
        "find {} -type f -path '*staging*' | wc -l",
        q(&cache)
    ));
    assert_eq!(
        leftovers.trim(),
        "0",
        "the failed extraction was cleaned up"
    );
}
