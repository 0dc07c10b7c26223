//! `scripts/demo.sh` run as a user runs it without a terminal: it must end by itself, show every step as the
//! command and its output, and leave no mount behind. It uses the binaries built for these tests
//! (`VM0FS_DEMO_BIN`), so it builds nothing.

mod common;

use std::path::Path;
use std::process::Command;

use common::daemon::Daemon;
use common::mount::is_mounted;

#[test]
fn the_demo_shows_the_round_trip_and_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let mnt = demo.join("mnt");
    let _daemon = Daemon::guard(&mnt);
    let bin = Path::new(env!("CARGO_BIN_EXE_vm0fs")).parent().unwrap();
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh"))
        .arg("--no-wait")
        .env("VM0FS_DEMO_DIR", &demo)
        .env("VM0FS_DEMO_BIN", bin)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run scripts/demo.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let m = mnt.display();
    for step in [
        format!("$ mkdir {m}/volumes/demo-notes"),
        "volumes/demo-notes@".to_string(),
        format!("$ cat {m}/runs/new/coder.json"),
        "$ tail -f --pid=".to_string(),
        "$ cp -rL ".to_string(),
        "/out/artifact/result.md".to_string(),
        "## Volumes read".to_string(),
        "- volumes/demo-notes@".to_string(),
    ] {
        assert!(text.contains(&step), "{step:?} missing from:\n{text}");
    }
    // The run's id, read back, and its status once the log ended.
    let id = text
        .split(&format!("$ cat {m}/runs/new/coder.json\n"))
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 36, "a run id after the read-back:\n{text}");
    assert!(
        text.contains(&format!("$ cat {m}/runs/{id}/status\ncompleted")),
        "{text}"
    );
    let log = text
        .split("$ tail -f --pid=")
        .nth(1)
        .and_then(|rest| rest.split("\n$ ").next())
        .unwrap_or_default();
    assert!(
        log.lines().count() > 1,
        "the log followed has lines:\n{text}"
    );
    // The published note reached the run: its artifact names the volume's version.
    let copied = std::fs::read_to_string(demo.join("out/artifact/result.md")).unwrap();
    assert!(copied.contains("Summarise notes.md"), "{copied}");
    assert!(!is_mounted(&mnt), "the demo unmounts when it ends");
}
