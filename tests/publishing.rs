//! What happens to a volume's changes from the moment they are published: the published files become the new
//! version's cached archive, a `kill -9` in the middle of an upload publishes once at the next mount, tools that
//! write through temporary files and renames (rsync) publish what they wrote, and random sequences of changes
//! through a real mount publish exactly what a local directory holds after the same changes.
//!
//! Automatic publishing is off (`--commit-delay 0`) so that only the tests' own `vm0fs sync` publish.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::emulator::Emulator;
use common::mount::{Mount, ok, q, vm0fs};
use common::protocol::Protocol;
use common::volumes::{downloads_of, head, make_tree, sync, versions};
use proptest::prelude::*;
use serde_json::json;

const NO_AUTO_PUBLISH: &[&str] = &["--commit-delay", "0"];

fn emulator() -> Emulator {
    Emulator::start(&["--seed", "demo"])
}

// Adopting the published tree does not depend on how it was sent: both upload protocols (CONTRACT.md 7.1, 7.2).
both_protocols!(
    a_published_volume_is_read_back_from_its_own_files_without_a_download,
    a_put_refused_midway_publishes_nothing_and_the_next_sync_publishes_once,
);

/// Waits (bounded) until a line of the mount's volume status contains every one of `words`; returns it.
fn wait_for_volume_status(m: &Mount, words: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read(m.path(".vm0fs/status")).expect("read .vm0fs/status");
        let status: serde_json::Value = serde_json::from_slice(&text).expect("status JSON");
        let lines = status["volumes"].as_array().cloned().unwrap_or_default();
        if let Some(line) = lines
            .iter()
            .filter_map(|l| l.as_str())
            .find(|l| words.iter().all(|w| l.contains(w)))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no volume status line with {words:?} within 60 s: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn a_published_volume_is_read_back_from_its_own_files_without_a_download(protocol: Protocol) {
    let emu = protocol.emulator(&["--seed", "demo"]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 200);
    let m = Mount::start_with_cache(&emu, &cache, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/adopted");
    std::fs::create_dir(&vol).unwrap();
    ok(&format!("cp -r {}/. {}", q(src.path()), q(&vol)));
    let line = sync(&vol);
    let version = head(&emu, "adopted").expect("published");
    assert_eq!(line, format!("volumes/adopted@{}", &version[..8]));
    let storage = emu.storage_id("volumes", "adopted").unwrap();
    assert!(
        !cache.join("stage").join(&storage).exists(),
        "nothing stays staged once the files are the version's archive"
    );
    let shown = ok(&format!(
        "getfattr --only-values -n user.vm0.version {}",
        q(&vol)
    ));
    assert_eq!(shown.trim(), version);
    ok(&format!("diff -r {} {}", q(src.path()), q(&vol)));
    let pinned = m.path(&format!("volumes/adopted@{}", &version[..8]));
    ok(&format!("diff -r {} {}", q(src.path()), q(&pinned)));
    drop(m);

    // The cache outlives the mount: a remount reads the version from it too.
    let m = Mount::start_with_cache(&emu, &cache, NO_AUTO_PUBLISH);
    ok(&format!(
        "diff -r {} {}",
        q(src.path()),
        q(&m.path("volumes/adopted"))
    ));
    assert_eq!(downloads_of(&emu, &version), 0, "{}", emu.stats());
    // The counter counts: a mount with an empty cache downloads the version once.
    drop(m);
    let fresh = Mount::start(&emu, NO_AUTO_PUBLISH);
    ok(&format!(
        "diff -r {} {}",
        q(src.path()),
        q(&fresh.path("volumes/adopted"))
    ));
    assert_eq!(downloads_of(&emu, &version), 1, "{}", emu.stats());
}

/// `/v1` sends its PUTs several at a time and the push flow one archive: either way, a PUT the blob host refuses
/// (400, not retried) after others went through fails the sync, commits nothing, keeps every change staged, and
/// the next sync publishes the tree once.
fn a_put_refused_midway_publishes_nothing_and_the_next_sync_publishes_once(protocol: Protocol) {
    let emu = protocol.emulator(&["--seed", "demo"]);
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 60);
    let m = Mount::start(&emu, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/refused");
    std::fs::create_dir(&vol).unwrap();
    ok(&format!("cp -r {}/. {}", q(src.path()), q(&vol)));
    let puts = |stats: &serde_json::Value| {
        stats["requests_by_route"]["PUT /_upload/{session}/{upload_id}"]
            .as_u64()
            .unwrap_or(0)
    };
    let (puts_before, commits) = (puts(&emu.stats()), emu.stats()["commits"].as_u64().unwrap());
    let refused_put = match protocol {
        Protocol::V1 => 20,  // the 20th of 60 file PUTs, with others in flight
        Protocol::Push => 1, // the archive
    };
    emu.set_faults(
        json!({"error_count": 1, "error_status": 400, "path_prefix": "/_upload/",
                          "skip_count": refused_put - 1}),
    );
    let out = vm0fs().arg("sync").arg(&vol).output().unwrap();
    assert!(
        !out.status.success(),
        "the sync fails: {} {}",
        emu.stats(),
        m.stderr()
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("volumes/refused") && said.contains("PUT"),
        "{said}"
    );
    let stats = emu.stats();
    assert!(
        puts(&stats) >= puts_before + refused_put,
        "the refused PUT was sent: {stats}"
    );
    assert_eq!(
        stats["commits"].as_u64().unwrap(),
        commits,
        "nothing committed: {stats}"
    );
    assert!(
        versions(&emu, "refused").is_empty(),
        "no version: {:?}",
        versions(&emu, "refused")
    );
    ok(&format!("diff -r {} {}", q(src.path()), q(&vol)));

    emu.set_faults(json!({}));
    let line = sync(&vol);
    let version = head(&emu, "refused").expect("published");
    assert_eq!(line, format!("volumes/refused@{}", &version[..8]));
    assert_eq!(
        emu.stats()["commits"].as_u64().unwrap(),
        commits + 1,
        "published once"
    );
    assert_eq!(versions(&emu, "refused").len(), 1);
    assert_eq!(
        emu.stats()["upload_requests_with_token"],
        0,
        "the token never went to a presigned URL"
    );
    drop(m);
    let fresh = Mount::start(&emu, NO_AUTO_PUBLISH);
    ok(&format!(
        "diff -r {} {}",
        q(src.path()),
        q(&fresh.path("volumes/refused"))
    ));
}

#[test]
fn kill_9_during_the_upload_publishes_once_at_the_next_mount() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 40);
    let mut m = Mount::start_with_cache(&emu, &cache, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/interrupted");
    std::fs::create_dir(&vol).unwrap();
    ok(&format!("cp -r {}/. {}", q(src.path()), q(&vol)));
    // Every PUT to an upload URL stalls: the publish is held in its upload step.
    emu.set_faults(json!({"latency_ms": 600_000, "path_prefix": "/_upload/"}));
    let syncing = vm0fs()
        .arg("sync")
        .arg(&vol)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vm0fs sync");
    wait_for_volume_status(&m, &["volumes/interrupted", "publishing"]);
    // What `vm0fs sync` draws its bar from: the bytes of the upload in progress.
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.path(".vm0fs/status")).unwrap()).unwrap();
    let total: u64 = (0..40)
        .map(|i| std::fs::metadata(src.path().join(format!("d{}/e{}/f{i}.bin", i % 7, i % 3))))
        .map(|m| m.unwrap().len())
        .sum();
    assert_eq!(
        status["publishing"],
        json!([{"volume": "volumes/interrupted", "done_bytes": 0, "total_bytes": total}])
    );
    m.signal_and_wait(libc::SIGKILL);
    let out = syncing.wait_with_output().expect("vm0fs sync ends");
    assert!(
        !out.status.success(),
        "the sync said it published: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(m);
    assert_eq!(head(&emu, "interrupted"), None, "nothing was committed");
    emu.set_faults(json!({}));

    let m = Mount::start_with_cache(&emu, &cache, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/interrupted");
    ok(&format!("diff -r {} {}", q(src.path()), q(&vol)));
    let line = sync(&vol);
    let version = head(&emu, "interrupted").expect("published at the next mount");
    assert_eq!(line, format!("volumes/interrupted@{}", &version[..8]));
    assert_eq!(versions(&emu, "interrupted").len(), 1);
    assert_eq!(sync(&vol), line, "a second sync publishes nothing new");
    assert_eq!(versions(&emu, "interrupted").len(), 1);
    drop(m);
    let fresh = Mount::start(&emu, NO_AUTO_PUBLISH);
    ok(&format!(
        "diff -r {} {}",
        q(src.path()),
        q(&fresh.path("volumes/interrupted"))
    ));
}

#[test]
fn rsync_into_a_volume_is_published_and_reads_back_equal() {
    let emu = emulator();
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 100);
    let m = Mount::start(&emu, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/synced");
    std::fs::create_dir(&vol).unwrap();
    ok(&format!("rsync -a {}/ {}/", q(src.path()), q(&vol)));
    ok(&format!("diff -r {} {}", q(src.path()), q(&vol)));
    // A second run sends the changed files through temporary names renamed over the old ones.
    let changed = src.path().join("d1/e1/f1.bin");
    let mut bytes = std::fs::read(&changed).unwrap();
    bytes[1000] ^= 0xff;
    bytes.extend_from_slice(b"appended");
    std::fs::write(&changed, &bytes).unwrap();
    std::fs::remove_file(src.path().join("d2/e2/f2.bin")).unwrap();
    ok(&format!(
        "rsync -a --delete {}/ {}/",
        q(src.path()),
        q(&vol)
    ));
    ok(&format!("diff -r {} {}", q(src.path()), q(&vol)));
    sync(&vol);
    assert_eq!(versions(&emu, "synced").len(), 1);
    drop(m);
    let fresh = Mount::start(&emu, NO_AUTO_PUBLISH);
    ok(&format!(
        "diff -r {} {}",
        q(src.path()),
        q(&fresh.path("volumes/synced"))
    ));
}

/// Names the random changes use: files and directories at two depths, so renames move subtrees.
const PATHS: [&str; 6] = ["a", "b", "d", "d/a", "d/e", "d/e/a"];

#[derive(Debug, Clone)]
enum Op {
    Write { path: usize, offset: u16, len: u8 },
    Truncate { path: usize, len: u16 },
    Unlink { path: usize },
    Rename { from: usize, to: usize },
    Mkdir { path: usize },
    Rmdir { path: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        3 => (p.clone(), 0u16..3000, 1u8..200).prop_map(|(path, offset, len)| Op::Write { path, offset, len }),
        1 => (p.clone(), 0u16..4000).prop_map(|(path, len)| Op::Truncate { path, len }),
        1 => p.clone().prop_map(|path| Op::Unlink { path }),
        2 => (p.clone(), p.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        2 => p.clone().prop_map(|path| Op::Mkdir { path }),
        1 => p.clone().prop_map(|path| Op::Rmdir { path }),
    ]
}

/// Applies `op` under `root` with std::fs; the errno when it is refused.
fn apply(root: &Path, op: &Op, fill: u8) -> Result<(), i32> {
    use std::os::unix::fs::FileExt;
    let at = |i: usize| root.join(PATHS[i]);
    let result = match *op {
        Op::Write { path, offset, len } => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(at(path))
            .and_then(|f| f.write_all_at(&vec![fill; len as usize], offset as u64)),
        Op::Truncate { path, len } => std::fs::OpenOptions::new()
            .write(true)
            .open(at(path))
            .and_then(|f| f.set_len(len as u64)),
        Op::Unlink { path } => std::fs::remove_file(at(path)),
        Op::Rename { from, to } => std::fs::rename(at(from), at(to)),
        Op::Mkdir { path } => std::fs::create_dir(at(path)),
        Op::Rmdir { path } => std::fs::remove_dir(at(path)),
    };
    result.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// Every entry under `root`: a file's bytes, or `None` for a directory; directories left out with `files_only`.
fn snapshot(root: &Path, files_only: bool) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(root.join(&dir)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                if !files_only {
                    out.insert(rel.clone(), None);
                }
                dirs.push(rel);
            } else {
                out.insert(rel, Some(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    /// The same changes through a mount and in a local directory: the same answers, the same tree, and after
    /// the publish a mount on an empty cache holds the same files (empty directories are not part of a version).
    #[test]
    fn random_changes_through_a_mount_publish_what_a_local_directory_holds(
        ops in proptest::collection::vec(op(), 1..30)
    ) {
        let emu = emulator();
        let reference = tempfile::tempdir().unwrap();
        let m = Mount::start(&emu, NO_AUTO_PUBLISH);
        let vol = m.path("volumes/model");
        std::fs::create_dir(&vol).unwrap();
        // One file that no change touches, so that there is always something to publish.
        for root in [reference.path(), vol.as_path()] {
            std::fs::write(root.join("anchor"), b"anchor").unwrap();
        }
        for (i, op) in ops.iter().enumerate() {
            let fill = i as u8;
            let expected = apply(reference.path(), op, fill);
            let got = apply(&vol, op, fill);
            prop_assert_eq!(got, expected, "step {}: {:?}", i, op);
        }
        prop_assert_eq!(snapshot(&vol, false), snapshot(reference.path(), false));
        sync(&vol);
        drop(m);
        let fresh = Mount::start(&emu, NO_AUTO_PUBLISH);
        prop_assert_eq!(
            snapshot(&fresh.path("volumes/model"), true),
            snapshot(reference.path(), true)
        );
        prop_assert_eq!(versions(&emu, "model").len(), 1);
    }
}

#[test]
fn touching_a_file_never_written_copies_nothing_and_lasts() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let m = Mount::start_with_cache(&emu, &cache, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/touched");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("big"), common::noise(1 << 20, 7)).unwrap();
    sync(&vol);
    let storage = emu.storage_id("volumes", "touched").unwrap();
    // `-c`: utimensat on the path, as `os.utime` and rsync do; a plain `touch` opens the file for writing first,
    // and an open for writing copies the file up.
    ok(&format!(
        "touch -c -m -d '2001-02-03 04:05:06 UTC' {}",
        q(&vol.join("big"))
    ));
    let shown = |path: &Path| ok(&format!("stat -c %Y {}", q(path))).trim().to_string();
    assert_eq!(shown(&vol.join("big")), "981173106");
    let staged = cache.join("stage").join(&storage).join("files");
    let copies = std::fs::read_dir(&staged).map_or(0, |d| d.count());
    assert_eq!(copies, 0, "a touch copied the file into the staging area");
    drop(m);
    let m = Mount::start_with_cache(&emu, &cache, NO_AUTO_PUBLISH);
    let vol = m.path("volumes/touched");
    assert_eq!(
        shown(&vol.join("big")),
        "981173106",
        "the time survives a remount"
    );
    assert_eq!(
        std::fs::read(vol.join("big")).unwrap(),
        common::noise(1 << 20, 7)
    );
    assert_eq!(
        versions(&emu, "touched").len(),
        1,
        "a time is not published"
    );
}
