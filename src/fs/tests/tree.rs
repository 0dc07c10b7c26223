//! What each namespace shows: names, contents, attributes, xattrs, refusals, the control directory.

use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Harness, harness, harness_with_ttl};
use crate::api::fake::{FakeApi, V1, V2};
use crate::api::models::*;
use crate::cache::{ArchiveCache, CacheConfig, ExtractLimits};
use crate::fs::{FileKind, FsConfig, Vm0Fs};

#[test]
fn the_root_holds_the_four_trees() {
    let h = harness();
    assert_eq!(h.names("/"), ["agents", "artifacts", "runs", "volumes"]);
    assert_eq!(h.names("agents"), ["coder"]);
    assert_eq!(h.names("agents/coder"), ["agent.json", "versions.json"]);
    assert_eq!(h.names("runs"), ["new", "latest", "r2", "r1"]);
    assert_eq!(h.names("runs/new"), ["coder", "coder.json"]);
}

#[test]
fn api_files_have_exact_sizes_and_contents() {
    let h = harness();
    for path in [
        "agents/coder/agent.json",
        "runs/r1/status",
        "runs/r1/run.json",
        "runs/r1/logs",
        "runs/r1/output",
    ] {
        let size = h.fs.getattr(h.path(path).unwrap()).unwrap().size;
        assert_eq!(size, h.read(path).len() as u64, "{path}");
    }
    assert_eq!(h.read("runs/r2/status"), b"running\n");
    assert_eq!(h.read("runs/r1/prompt"), b"Summarise\n");
    assert_eq!(h.read("runs/r1/output"), b"all done\n");
    let agent: serde_json::Value =
        serde_json::from_slice(&h.read("agents/coder/agent.json")).unwrap();
    assert_eq!(agent["id"], "a1");
}

#[test]
fn logs_follow_the_cursor_across_pages_without_loss() {
    let h = harness();
    let logs = String::from_utf8(h.read("runs/r1/logs")).unwrap();
    let messages: Vec<_> = logs
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(messages, ["one", "two", "three"]);
}

#[test]
fn output_appears_only_for_terminal_runs() {
    let h = harness();
    assert!(h.names("runs/r1").contains(&"output".to_string()));
    assert!(!h.names("runs/r2").contains(&"output".to_string()));
    assert_eq!(h.path("runs/r2/output"), Err(libc::ENOENT));
}

#[test]
fn a_run_is_reachable_without_listing_runs() {
    let h = harness();
    assert!(h.path("runs/r1/status").is_ok());
    assert_eq!(h.path("runs/nope"), Err(libc::ENOENT));
    assert_eq!(
        h.fs.readlink(h.path("runs/latest").unwrap()).unwrap(),
        b"r2"
    );
}

#[test]
fn volumes_show_the_head_and_pinned_versions() {
    let h = harness();
    assert_eq!(h.names("volumes"), ["data"]);
    assert_eq!(h.names("volumes/data"), ["dir", "empty"]);
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello");
    assert_eq!(h.names("volumes/data@11111111"), ["old.txt"]);
    assert_eq!(h.read("volumes/data@1111111111/old.txt"), b"old");
    assert_eq!(
        h.path("volumes/data@1111"),
        Err(libc::ENOENT),
        "prefix too short"
    );
    assert_eq!(h.path("volumes/data@33333333"), Err(libc::ENOENT));
    let attr =
        h.fs.getattr(h.path("volumes/data/dir/a.txt").unwrap())
            .unwrap();
    // A volume's head is writable: its files show the owner's write bit; a pinned version's do not.
    assert_eq!(
        (attr.kind, attr.size, attr.perm),
        (FileKind::File, 5, 0o644)
    );
    let pinned =
        h.fs.getattr(h.path("volumes/data@22222222/dir/a.txt").unwrap())
            .unwrap();
    assert_eq!(pinned.perm, 0o444);
    assert_eq!(
        attr.mtime,
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
}

#[test]
fn an_archive_is_downloaded_once() {
    let h = harness();
    h.read("volumes/data/dir/a.txt");
    h.names("volumes/data/dir");
    h.read("volumes/data/empty");
    assert_eq!(h.api.downloads.load(Ordering::SeqCst), 1);
}

#[test]
fn xattrs_give_the_ids() {
    let h = harness();
    let ino = h.path("volumes/data").unwrap();
    assert_eq!(
        h.fs.getxattr(ino, OsStr::new("user.vm0.id")).unwrap(),
        b"vol-1"
    );
    assert_eq!(
        h.fs.getxattr(ino, OsStr::new("user.vm0.version")).unwrap(),
        V2.as_bytes()
    );
    assert_eq!(
        h.fs.getxattr(ino, OsStr::new("user.vm0.size")).unwrap(),
        b"10"
    );
    assert_eq!(
        h.fs.listxattr(ino).unwrap(),
        b"user.vm0.id\0user.vm0.version\0user.vm0.size\0"
    );
    let run = h.path("runs/r1").unwrap();
    assert_eq!(
        h.fs.getxattr(run, OsStr::new("user.vm0.id")).unwrap(),
        b"r1"
    );
    assert_eq!(
        h.fs.getxattr(run, OsStr::new("user.other"))
            .unwrap_err()
            .errno,
        libc::ENODATA
    );
}

#[test]
fn writing_is_refused() {
    let h = harness();
    let ino = h.path("runs/r1/status").unwrap();
    assert_eq!(
        h.fs.open(ino, libc::O_WRONLY, std::process::id())
            .unwrap_err()
            .errno,
        libc::EACCES
    );
    assert_eq!(h.fs.refuse_change(ino).errno, libc::EROFS);
}

#[test]
fn names_that_cannot_be_file_names_are_skipped() {
    let mut api = FakeApi::sample();
    let bad = api.agents[0].clone();
    for name in ["", ".", "..", "a/b", "x\0y", "coder"] {
        api.agents.push(Agent {
            name: name.into(),
            ..bad.clone()
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = ArchiveCache::open(CacheConfig {
        dir: dir.path().into(),
        max_bytes: 1 << 20,
        limits: ExtractLimits::default(),
    })
    .unwrap();
    let config = FsConfig {
        metadata_ttl: Duration::from_secs(60),
        uid: 1,
        gid: 1,
        panic_on_lookup: None,
        allow_other: false,
        mountpoint: "/mnt/vm0".into(),
        api_url: "http://fake".into(),
        commit_delay: Duration::ZERO,
        max_staged_bytes: 1 << 30,
    };
    let h = Harness {
        fs: Arc::new(Vm0Fs::new(Arc::new(api), Arc::new(cache), config)),
        api: Arc::new(FakeApi::sample()),
        _dir: dir,
    };
    assert_eq!(h.names("agents"), ["coder"]);
}

#[test]
fn listing_runs_does_not_fetch_each_run() {
    let h = harness();
    let fh = h.fs.opendir(h.path("runs").unwrap()).unwrap();
    assert_eq!(
        h.plus_names(fh, usize::MAX),
        [".", "..", "new", "latest", "r2", "r1"]
    );
    let gets = h.api.run_gets.lock().unwrap().clone();
    assert_eq!(
        gets,
        Vec::<String>::new(),
        "the listing answers for every run, the running r2 too"
    );
}

#[test]
fn an_unreachable_api_leaves_what_was_seen_readable() {
    // A zero TTL: every listing is asked again, so only the stale fallback can answer offline.
    let h = harness_with_ttl(Duration::ZERO);
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello");
    assert_eq!(h.names("agents"), ["coder"]);
    h.api.offline.store(true, Ordering::SeqCst);
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello");
    assert_eq!(h.names("agents"), ["coder"]);
    assert_eq!(h.path("volumes/data@22222222/empty").map(|_| ()), Ok(()));
}

#[test]
fn api_answers_are_not_replaced_by_stale_values() {
    let h = harness();
    assert_eq!(h.path("runs/nope"), Err(libc::ENOENT));
    assert_eq!(h.path("agents/nope"), Err(libc::ENOENT));
}

#[test]
fn the_control_directory_is_hidden_and_tells_about_the_mount() {
    let h = harness();
    assert!(!h.names("").contains(&".vm0fs".to_string()));
    let status: serde_json::Value = serde_json::from_slice(&h.read(".vm0fs/status")).unwrap();
    assert_eq!(status["mountpoint"], "/mnt/vm0");
    assert_eq!(status["api_url"], "http://fake");
    assert_eq!(status["cache"]["archives"], 0);
    assert_eq!(
        status["cache"]["downloads"].as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn pins_are_set_and_shown_through_the_control_file() {
    let h = harness();
    assert_eq!(h.names(".vm0fs"), ["status", "pins", "sync"]);
    let pins = h.path(".vm0fs/pins").unwrap();
    let opened = h.fs.open(pins, libc::O_WRONLY, std::process::id()).unwrap();
    let write = |text: &str| h.fs.write(opened.fh, 0, text.as_bytes(), 1);
    assert_eq!(write("pin volumes/data\n").unwrap(), 17);
    write("pin volumes/data@11111111\n").unwrap();
    assert_eq!(
        h.api.downloads.load(Ordering::SeqCst),
        0,
        "pinning downloads nothing"
    );
    assert_eq!(h.read(".vm0fs/pins"), format!("{V1}\n{V2}\n").into_bytes());
    write("unpin volumes/data\n").unwrap();
    assert_eq!(h.read(".vm0fs/pins"), format!("{V1}\n").into_bytes());
    let status: serde_json::Value = serde_json::from_slice(&h.read(".vm0fs/status")).unwrap();
    assert_eq!(status["cache"]["pinned"], 0, "pinned and cached: none yet");
    assert_eq!(write("pin volumes/nope").unwrap_err().errno, libc::ENOENT);
    assert_eq!(write("get volumes/data").unwrap_err().errno, libc::EINVAL);
    h.fs.release(opened.fh).unwrap();
}

/// A volume whose stage is open is created in, stat'ed and changed on the thread that read the request, with no
/// worker (`waiting`); while a step holds the stage's lock over its whole tree (a publish's snapshot, an adoption),
/// the same requests give up at once with nothing done, to be run on a worker instead.
#[test]
fn volume_requests_are_answered_inline_unless_a_long_step_holds_the_stage() {
    let h = harness();
    let dir = h.path("volumes/data/dir").unwrap();
    // The first change opens the stage (which may download the base version): where waiting is allowed.
    let (_, opened) = h.fs.create(dir, OsStr::new("first.txt"), 0o644).unwrap();
    h.fs.release(opened.fh).unwrap();

    let created =
        h.fs.without_waiting(|fs| fs.create(dir, OsStr::new("second.txt"), 0o644));
    let (second, opened) = created.expect("a create is answered inline").unwrap();
    let released = h.fs.without_waiting(|fs| fs.release(opened.fh));
    assert!(
        matches!(released, Some(Ok(()))),
        "a release is answered inline"
    );
    let chmod = |fs: &Vm0Fs| fs.setattr(second.ino, Some(0o600), (None, None), None, (None, None));
    let changed =
        h.fs.without_waiting(chmod)
            .expect("a chmod is answered inline");
    assert_eq!(changed.unwrap().perm, 0o600);

    let volume = h.fs.volumes.by_name("data").unwrap();
    let long = volume.long_step();
    assert!(h.fs.without_waiting(|fs| fs.getattr(second.ino)).is_none());
    assert!(
        h.fs.without_waiting(|fs| fs.lookup(dir, OsStr::new("second.txt")))
            .is_none()
    );
    let third = |fs: &Vm0Fs| fs.create(dir, OsStr::new("third.txt"), 0o644);
    assert!(h.fs.without_waiting(third).is_none());
    drop(long);
    assert_eq!(
        h.fs.lookup(dir, OsStr::new("third.txt")).unwrap_err().errno,
        libc::ENOENT,
        "a create that gave up made nothing"
    );
    assert!(h.fs.without_waiting(|fs| fs.getattr(second.ino)).is_some());
}
