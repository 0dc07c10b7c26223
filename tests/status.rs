//! `vm0fs status` and `vm0fs prefetch` against real mounts: a download in flight seen with a sensible progress
//! figure (the emulator serves the blob slowly), a prefetch that leaves nothing to download later, pins that
//! survive eviction, and clear failures.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::{Mount, ok, q, vm0fs};
use common::noise;
use serde_json::{Value, json};

/// Uploads a volume `name` holding one file `blob.bin` of `len` noise bytes.
fn noise_volume(
    emulator: &Emulator,
    name: &str,
    len: usize,
    seed: u64,
) -> (tempfile::TempDir, String) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("blob.bin"), noise(len, seed)).unwrap();
    let version = emulator.upload_dir("volumes", name, src.path());
    (src, version)
}

fn blob_downloads(emulator: &Emulator, version: &str) -> u64 {
    emulator.stats()["blob_downloads"][version]
        .as_u64()
        .unwrap_or(0)
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

fn prefetch(args: &[&str], paths: &[&Path]) -> std::process::Output {
    vm0fs()
        .arg("prefetch")
        .args(args)
        .args(paths)
        .output()
        .unwrap()
}

#[test]
fn status_shows_a_download_in_flight_with_its_progress() {
    let emulator = Emulator::start(&[]);
    const SIZE: usize = 2 << 20;
    let (_src, version) = noise_volume(&emulator, "big", SIZE, 1);
    let mount = Mount::start(&emulator, &[]);

    let idle = ok(&format!(
        "{} status {}",
        q(Path::new(env!("CARGO_BIN_EXE_vm0fs"))),
        q(mount.mountpoint())
    ));
    assert!(idle.contains("downloads  none in flight"), "{idle}");
    assert!(
        idle.contains(&format!("api        {}", emulator.base_url())),
        "{idle}"
    );
    assert!(idle.contains("0 archives"), "{idle}");

    // About 7 s for 2 MiB: long enough to be seen, and to log its progress (every 5 s).
    emulator.set_faults(json!({ "blob_bytes_per_sec": 300_000 }));
    let file = mount.path("volumes/big/blob.bin");
    let reader = std::thread::spawn(move || std::fs::read(file).map(|d| d.len()));

    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        assert!(Instant::now() < deadline, "no download seen in flight");
        let status = status_json(&mount);
        let downloads = status["cache"]["downloads"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(d) = downloads.first()
            && d["done_bytes"].as_u64().unwrap_or(0) > 0
        {
            break (status, d.clone());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, download) = seen;
    assert_eq!(download["version"], version.as_str());
    assert_eq!(download["label"], format!("volumes/big@{}", &version[..8]));
    assert_eq!(download["total_bytes"], SIZE as u64, "{status}");
    let done = download["done_bytes"].as_u64().unwrap();
    assert!(
        done > 0 && done < SIZE as u64,
        "a sensible figure: {done} of {SIZE}"
    );

    let text = ok(&format!(
        "{} status",
        q(Path::new(env!("CARGO_BIN_EXE_vm0fs")))
    ));
    assert!(
        text.contains(&format!("download   volumes/big@{}", &version[..8]))
            && text.contains("of 2.0 MiB"),
        "the text report shows the download with a bar: {text}"
    );

    assert_eq!(reader.join().unwrap().unwrap(), SIZE);
    mount.wait_for_downloads();
    let after = status_json(&mount);
    assert_eq!(after["cache"]["downloads"], json!([]));
    assert_eq!(after["cache"]["archives"], 1);
    assert_eq!(after["cache"]["used_bytes"], SIZE as u64);
    let log = mount.stderr();
    assert!(
        log.contains(&format!("downloading volumes/big@{}", &version[..8]))
            && log.contains("of 2.0 MiB"),
        "a first read of a large archive logs its progress: {log}"
    );
}

#[test]
fn status_watch_reports_again_and_again() {
    let emulator = Emulator::start(&[]);
    let mount = Mount::start(&emulator, &[]);
    let mut child = vm0fs()
        .args(["status", "--watch", "--interval", "0.2"])
        .arg(mount.mountpoint())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reports = 0;
    let shown = mount.mountpoint().display().to_string();
    // Bounded: three reports are a few dozen lines; a report without the mount point fails here, not by a hang.
    for _ in 0..200 {
        let line = lines.next().expect("status --watch ended early").unwrap();
        if line == shown {
            reports += 1;
            if reports == 3 {
                break;
            }
        }
    }
    assert_eq!(reports, 3, "three reports in 200 lines");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn status_of_something_that_is_not_a_mount_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = vm0fs().arg("status").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not inside a vm0fs mount of yours"),
        "{err}"
    );
}

#[test]
fn prefetch_fills_the_cache_so_that_later_reads_download_nothing() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let run_with_artifact = ok(&format!(
        "cd {} && for r in runs/*/; do [ -L \"$r/artifact\" ] && echo \"$r\" && break; done",
        q(mount.mountpoint())
    ));
    let artifact = mount.path(&format!("{}artifact", run_with_artifact.trim()));
    let volume = mount.path("volumes/input-data");
    // A path inside an archive stands for the whole archive.
    let inside = mount.path("artifacts/model-output/some/file/that/may/not/exist");
    let out = prefetch(&[], &[&volume, &artifact, &inside]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("volumes/input-data@") && stdout.contains(": cached"),
        "{stdout}"
    );
    let status = status_json(&mount);
    let held = status["cache"]["archives"].as_u64().unwrap();
    assert!(held >= 2, "{status}");

    let before = emulator.stats()["blob_downloads"].clone();
    ok(&format!(
        "cat $(find {} {} -type f) > /dev/null",
        q(&volume),
        q(&mount.path("artifacts/model-output"))
    ));
    ok(&format!("ls -R {}/ > /dev/null", q(&artifact)));
    assert_eq!(
        emulator.stats()["blob_downloads"],
        before,
        "every read after the prefetch comes from the cache"
    );
    // Prefetching again is quick and downloads nothing.
    assert!(prefetch(&[], &[&volume]).status.success());
    assert_eq!(emulator.stats()["blob_downloads"], before);
}

#[test]
fn a_pinned_archive_survives_eviction_until_unpinned() {
    let emulator = Emulator::start(&[]);
    let mut sources = Vec::new();
    let mut versions = Vec::new();
    for (i, name) in ["one", "two", "three"].iter().enumerate() {
        let (src, version) = noise_volume(&emulator, name, 300_000, i as u64 + 10);
        sources.push(src);
        versions.push(version);
    }
    let mount = Mount::start(&emulator, &["--cache-size", "700K"]);
    let out = prefetch(&["--pin"], &[&mount.path("volumes/one")]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("cached and pinned"));
    // Two more archives do not fit beside it: the LRU one that is not pinned goes.
    for name in ["two", "three", "two", "one"] {
        std::fs::read(mount.path(&format!("volumes/{name}/blob.bin"))).unwrap();
        mount.wait_for_downloads();
    }
    assert_eq!(
        blob_downloads(&emulator, &versions[0]),
        1,
        "the pinned archive stayed"
    );
    let status = status_json(&mount);
    assert_eq!(status["cache"]["pinned"], 1, "{status}");
    assert!(
        std::fs::read_to_string(mount.cache_dir().join("pinned"))
            .unwrap()
            .contains(&versions[0]),
        "pins are kept in the cache directory, across remounts"
    );

    let out = prefetch(&["--unpin"], &[&mount.path("volumes/one")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(status_json(&mount)["cache"]["pinned"], 0);
    for name in ["three", "two", "one"] {
        std::fs::read(mount.path(&format!("volumes/{name}/blob.bin"))).unwrap();
        mount.wait_for_downloads();
    }
    assert_eq!(
        blob_downloads(&emulator, &versions[0]),
        2,
        "once unpinned it is evicted like any other"
    );
}

#[test]
fn prefetch_failures_say_what_went_wrong_and_exit_non_zero() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let outside = tempfile::tempdir().unwrap();

    let out = prefetch(&[], &[outside.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not inside a vm0fs mount"));

    let out = prefetch(&[], &[&mount.path("volumes/no-such-volume")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
        "{out:?}"
    );

    let out = prefetch(&[], &[&mount.path("agents")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a volume or an artifact"));

    // A download that keeps failing: the archive is named, the error is EIO, the log is pointed at.
    emulator.set_faults(json!({ "truncate_blobs": true }));
    let out = prefetch(&[], &[&mount.path("volumes/input-data")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot fetch volumes/input-data@")
            && err.contains("Input/output error")
            && err.contains("vm0fs.log"),
        "{err}"
    );
    emulator.set_faults(json!({}));
    assert!(
        prefetch(&[], &[&mount.path("volumes/input-data")])
            .status
            .success()
    );
}

/// The troubleshooting steps of the README for a mount whose process died without unmounting (here: no
/// fusermount3 to auto-unmount, then `kill -9`).
#[test]
fn a_dead_mount_is_reported_and_cleared_with_vm0fs_unmount() {
    let emulator = Emulator::start(&[]);
    let mut mount = Mount::start_with_env(
        &emulator,
        &[],
        &[("FUSERMOUNT_PATH", "/nonexistent/fusermount3")],
    );
    // Written before the mount is live; the collector thread reads it a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !mount.stderr().contains("mounting without it") {
        assert!(std::time::Instant::now() < deadline, "{}", mount.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    mount.signal_and_wait(libc::SIGKILL);
    let mountpoint = mount.mountpoint().to_path_buf();
    assert!(
        common::mount::is_mounted(&mountpoint),
        "kill -9 leaves a dead mount without auto-unmount"
    );

    let out = std::process::Command::new("ls")
        .arg(&mountpoint)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Transport endpoint is not connected"));

    let out = vm0fs().arg("status").arg(&mountpoint).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("dead: the vm0fs process that served it is gone; run `vm0fs unmount"),
        "{out:?}"
    );

    let cache = tempfile::tempdir().unwrap();
    let out = common::mount::mount_command(&emulator, &mountpoint, cache.path(), &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a dead mount"),
        "{out:?}"
    );

    let out = vm0fs().arg("unmount").arg(&mountpoint).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!common::mount::is_mounted(&mountpoint));
}

/// One `getxattr(2)` of a name vm0fs does not serve; the kernel never caches the answer, so each call is one
/// request. Returns the errno.
fn getxattr_errno(path: &Path, name: &str) -> i32 {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and a buffer of the length given.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(n, -1, "{name:?} has no value on {path:?}");
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

#[test]
fn status_counts_the_requests_of_a_known_workload_by_opcode() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start(&emulator, &[]);
    let volume = mount.path("volumes/input-data");
    std::fs::metadata(&volume).unwrap();
    let getxattrs = |status: &Value| {
        status["requests"]["getxattr"]["count"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = status_json(&mount);
    assert!(
        before["requests"]["lookup"]["count"].as_u64().unwrap() >= 2,
        "the lookups of volumes/ and input-data were counted: {before}"
    );
    for _ in 0..7 {
        getxattr_errno(&volume, "user.other");
    }
    let after = status_json(&mount);
    assert_eq!(getxattrs(&after) - getxattrs(&before), 7, "{after}");
    let stats = &after["requests"]["getxattr"];
    assert_eq!(
        stats["inline"].as_u64().unwrap() + stats["pooled"].as_u64().unwrap(),
        stats["count"].as_u64().unwrap(),
        "{stats}"
    );
    let text = ok(&format!(
        "{} status {}",
        q(Path::new(env!("CARGO_BIN_EXE_vm0fs"))),
        q(mount.mountpoint())
    ));
    assert!(
        text.contains("  requests   ") && text.contains("getxattr "),
        "{text}"
    );
}

/// Without `fusermount3` the first mount attempt (auto-unmount) fails and a second adapter serves the mount: its
/// counters are the ones `.vm0fs/status` shows (it showed the failed attempt's, always empty).
#[test]
fn requests_are_counted_when_the_mount_falls_back_from_auto_unmount() {
    let emulator = Emulator::start(&["--seed", "demo"]);
    let mount = Mount::start_with_env(
        &emulator,
        &[],
        &[("FUSERMOUNT_PATH", "/nonexistent/fusermount3")],
    );
    std::fs::metadata(mount.path("volumes/input-data")).unwrap();
    let status = status_json(&mount);
    assert!(
        status["requests"]["lookup"]["count"].as_u64().unwrap_or(0) >= 2,
        "the lookups of volumes/ and input-data were counted: {status}"
    );
}
