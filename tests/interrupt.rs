//! Ctrl-C and `kill` on a process waiting for a slow archive download, on a real mount: the process returns
//! (killed, or `EINTR` when it handles the signal) while the download goes on; the download stops, leaving no
//! staging behind, once nobody waits for it, and goes on for a second reader that still waits.
//!
//! The emulator serves the blob slowly, so the download lasts seconds; each test waits (bounded) until the
//! mount's `.vm0fs/status` shows the readers waiting before it sends a signal. How long the return took is
//! printed for the record (scripts/bench.sh territory), never asserted.

mod common;

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::Mount;
use common::noise;
use serde_json::{Value, json};

/// About 10 s at the blob rate below: far longer than any wait here.
const BIG: usize = 3 << 20;
const BLOB_BYTES_PER_SEC: u64 = 300_000;
const WAIT: Duration = Duration::from_secs(60);

/// A mount with a volume `big` holding `z-big.bin`, whose blob is served slowly from now on.
fn slow_volume() -> (Emulator, Mount, tempfile::TempDir) {
    let emulator = Emulator::start(&[]);
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("z-big.bin"), noise(BIG, 5)).unwrap();
    emulator.upload_dir("volumes", "big", src.path());
    let mount = Mount::start(&emulator, &[]);
    emulator.set_faults(json!({ "blob_bytes_per_sec": BLOB_BYTES_PER_SEC }));
    (emulator, mount, src)
}

fn downloads(mount: &Mount) -> Vec<Value> {
    let text = std::fs::read(mount.path(".vm0fs/status")).unwrap();
    let status: Value = serde_json::from_slice(&text).unwrap();
    status["cache"]["downloads"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (bounded) until the one download in flight has `callers` waiting for it.
fn wait_for_waiting(mount: &Mount, callers: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = downloads(mount);
        if now.len() == 1 && now[0]["waiting"].as_u64() == Some(callers) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {callers} callers waiting: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until no download is in flight, then checks that nothing was kept: no staging, no archive.
fn assert_download_stopped_and_cleaned(mount: &Mount) {
    let deadline = Instant::now() + WAIT;
    while !downloads(mount).is_empty() {
        assert!(Instant::now() < deadline, "the download never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let staging: Vec<_> = std::fs::read_dir(mount.cache_dir().join("staging"))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
    let archives: Vec<_> = std::fs::read_dir(mount.cache_dir().join("archives"))
        .unwrap()
        .collect();
    assert!(
        archives.is_empty(),
        "a stopped download was cached: {archives:?}"
    );
}

fn spawn(program: &str, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: i32) -> Instant {
    // SAFETY: kill(2) on the PID of our own child, not reaped yet.
    unsafe { libc::kill(child.id() as i32, sig) };
    Instant::now()
}

#[test]
fn ls_killed_by_sigint_sigterm_or_sigkill_returns_and_the_download_stops() {
    let (_emulator, mount, _src) = slow_volume();
    let dir = mount.path("volumes/big");
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let mut ls = spawn("ls", &[dir.to_str().unwrap()]);
        wait_for_waiting(&mount, 1);
        let sent = signal(&ls, sig);
        let status = ls.wait().unwrap();
        eprintln!("ls returned {:?} after signal {sig}", sent.elapsed());
        assert_eq!(status.signal(), Some(sig), "{status}");
        assert_download_stopped_and_cleaned(&mount);
    }
}

#[test]
fn a_caller_that_handles_sigint_gets_eintr() {
    let (_emulator, mount, _src) = slow_volume();
    let file = mount.path("volumes/big/z-big.bin");
    let script = r#"$SIG{INT} = sub {}; print((stat($ARGV[0])) ? "found\n" : "error: $!\n")"#;
    let mut perl = spawn("perl", &["-e", script, file.to_str().unwrap()]);
    wait_for_waiting(&mount, 1);
    let sent = signal(&perl, libc::SIGINT);
    let status = perl.wait().unwrap();
    eprintln!("stat returned {:?} after SIGINT", sent.elapsed());
    let mut out = String::new();
    perl.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(out, "error: Interrupted system call\n");
    assert_download_stopped_and_cleaned(&mount);
}

#[test]
fn a_second_reader_keeps_the_download_when_the_first_is_killed() {
    let (emulator, mount, src) = slow_volume();
    // A listing and a file: two callers of one download. (Two lookups of one name would not both reach the
    // mount: the kernel lets the second wait for the first.)
    let mut first = spawn("ls", &[mount.path("volumes/big").to_str().unwrap()]);
    wait_for_waiting(&mount, 1);
    let file = mount.path("volumes/big/z-big.bin");
    let mut second = spawn("cat", &[file.to_str().unwrap()]);
    let mut second_out = second.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        second_out.read_to_end(&mut bytes).unwrap();
        bytes
    });
    wait_for_waiting(&mount, 2);
    signal(&first, libc::SIGKILL);
    assert_eq!(first.wait().unwrap().signal(), Some(libc::SIGKILL));
    let bytes = reader.join().unwrap();
    assert!(second.wait().unwrap().success());
    assert!(
        bytes == std::fs::read(src.path().join("z-big.bin")).unwrap(),
        "the second reader got {} wrong bytes",
        bytes.len()
    );
    let blobs = &emulator.stats()["blob_downloads"];
    let total: u64 = blobs
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    assert_eq!(
        total, 1,
        "the download went on for the second reader: {blobs}"
    );
}
