//! What the commands that wait on a mount's process do while it works: `vm0fs unmount` returns once the process
//! has published and ended (so a mount right after works), says on a terminal what it waits for, and leaves the
//! process to finish on Ctrl-C; a second mount on a cache in use says so before anything else.
//!
//! Automatic publishing is off (`--commit-delay 0`), so what is staged is published at unmount; the emulator
//! delays every API request so that this publish outlasts the unmount itself.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::{Mount, is_mounted, mount_command_at, q, vm0fs};
use common::volumes::head;
use serde_json::json;

const NO_AUTO_PUBLISH: &[&str] = &["--commit-delay", "0"];

/// A mount with a new volume `later` holding one staged file, and an emulator that now takes a second per request.
fn staged_and_slow() -> (Emulator, Mount) {
    let emu = Emulator::start(&["--seed", "demo"]);
    let m = Mount::start(&emu, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/later");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("a.txt"), "written before the unmount\n").unwrap();
    emu.set_faults(json!({"latency_ms": 1000}));
    (emu, m)
}

/// Waits (bounded) until the mount's process has ended.
fn wait_exited(m: &mut Mount) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while m.exited().is_none() {
        assert!(
            Instant::now() < deadline,
            "the mount's process did not end within 60 s:\n{}",
            m.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unmount_returns_once_the_process_has_published_and_ended_so_a_mount_right_after_works() {
    let (emu, mut m) = staged_and_slow();
    let out = vm0fs().arg("unmount").arg(m.mountpoint()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        m.exited().is_some(),
        "vm0fs unmount returned while the mount's process still ran:\n{}",
        m.stderr()
    );
    emu.set_faults(json!({}));
    assert!(
        head(&emu, "later").is_some(),
        "the staged file was published before the process ended"
    );
    let again = Mount::start_with_cache(&emu, m.cache_dir(), NO_AUTO_PUBLISH);
    assert_eq!(
        std::fs::read_to_string(again.path("volumes/later/a.txt")).unwrap(),
        "written before the unmount\n"
    );
}

#[test]
fn unmount_on_a_terminal_says_what_it_waits_for_and_ctrl_c_leaves_the_process_to_finish() {
    let (emu, mut m) = staged_and_slow();
    // script(1) gives the command a terminal; a ^C written to it is the terminal's Ctrl-C.
    let command = format!(
        "{} unmount {}",
        env!("CARGO_BIN_EXE_vm0fs"),
        q(m.mountpoint())
    );
    let mut script = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script(1)");
    let shown = common::collect(script.stdout.take().unwrap());
    let said = format!(
        "waiting for vm0fs process {} to end: it publishes volumes/later first",
        m.pid()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shown.lock().unwrap().contains(&said) {
        assert!(
            Instant::now() < deadline,
            "no {said:?} on the terminal: {:?}",
            shown.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!is_mounted(m.mountpoint()), "unmounted before it waits");
    script.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let status = script.wait().unwrap();
    let text = shown.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(
        text.contains(&format!(
            "stopped waiting; vm0fs process {} finishes in the background",
            m.pid()
        )),
        "{text}"
    );
    wait_exited(&mut m);
    emu.set_faults(json!({}));
    assert!(
        head(&emu, "later").is_some(),
        "the process published after the command stopped waiting"
    );
}

#[test]
fn a_mount_on_a_cache_in_use_says_so_before_anything_else() {
    let emu = Emulator::start(&["--seed", "demo"]);
    let first = Mount::start(&emu, &[]);
    // Something to read from the cache if the API is down, so that a mount would go on from it.
    assert!(std::fs::read_dir(first.path("agents")).unwrap().count() > 0);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // An API that cannot be reached: before the fix, the mount first said it goes on from the cache.
    let out = mount_command_at(
        "http://127.0.0.1:9",
        emu.token(),
        &mnt,
        first.cache_dir(),
        &["-f"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let first_line = err.lines().next().unwrap_or_default();
    assert!(
        first_line.contains(&format!(
            "is in use by vm0fs process {} (a mount, or one still publishing after its unmount)",
            first.pid()
        )),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
}

/// Runs `command` (a shell command line) on a terminal of its own (script(1)); returns its exit code and what it
/// showed. Its input stays open until it has ended.
fn on_a_terminal(command: &str) -> (Option<i32>, String) {
    let mut script = Command::new("script")
        .args(["-qfec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run script(1)");
    let shown = common::collect(script.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = script.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = script.kill();
            panic!(
                "`{command}` did not end within 120 s: {:?}",
                shown.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The drain thread may still hold the last bytes: wait (bounded) until the output stops growing.
    let mut seen = usize::MAX;
    while seen != shown.lock().unwrap().len() {
        seen = shown.lock().unwrap().len();
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = shown.lock().unwrap().clone();
    (status.code(), text)
}

#[test]
fn sync_with_the_api_down_says_what_it_retries_and_gives_up_at_its_timeout_naming_volume_api_and_cause()
 {
    let mut emu = Emulator::start(&["--seed", "demo"]);
    let m = Mount::start(&emu, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/later");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("a.txt"), "staged while the API is down\n").unwrap();
    emu.stop_process();
    let (code, shown) = on_a_terminal(&format!(
        "{} sync --timeout 10 {}",
        env!("CARGO_BIN_EXE_vm0fs"),
        q(&vol)
    ));
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("attempt 1 failed: volumes/later: ") && shown.contains("next attempt in"),
        "on a terminal it says what it retries and when: {shown}"
    );
    let last = shown
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    for said in [
        "vm0fs: volumes/later was not published: volumes/later: ",
        " failed: ",
        "gave up after",
        &format!("[the VM0 API at {}]", emu.base_url()),
        "the changes stay staged",
    ] {
        assert!(
            last.contains(said),
            "{said:?} is not in the last line: {shown}"
        );
    }
    emu.start_again();
    let published = common::volumes::sync(&vol);
    assert_eq!(
        published,
        format!("volumes/later@{}", &head(&emu, "later").unwrap()[..8]),
        "nothing was lost"
    );
}
