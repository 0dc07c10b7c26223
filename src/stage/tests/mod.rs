//! A reference model: random sequences of changes applied to a volume's stage (no FUSE) and to a plain temp
//! directory give the same answers (the same errno for each refusal) and the same tree after every step, across
//! remounts (the stage dropped and its journal replayed).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::{EntryKind, Stage, StageConfig, VolumeStage};
use crate::api::Vm0Api;
use crate::api::fake::FakeApi;
use crate::cache::{ArchiveCache, CacheConfig, ExtractLimits};

const PATHS: [&str; 6] = ["a", "b", "d", "d/a", "d/e", "d/e/a"];
const STORAGE: &str = "model-volume";

#[derive(Debug, Clone)]
enum Op {
    Write { path: usize, offset: u16, len: u8 },
    Truncate { path: usize, len: u16 },
    Unlink { path: usize },
    Rename { from: usize, to: usize },
    Link { from: usize, to: usize },
    Mkdir { path: usize },
    Rmdir { path: usize },
    Chmod { path: usize, mode: u32 },
    Symlink { path: usize },
    Remount,
}

/// Where every symlink of the model points: nowhere, so that following one fails the same way in a directory
/// and through the kernel (ENOENT), and never reaches outside the reference directory.
const LINK_TARGET: &str = "missing/x";

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        3 => (p.clone(), 0u16..3000, 1u8..200).prop_map(|(path, offset, len)| Op::Write { path, offset, len }),
        1 => (p.clone(), 0u16..4000).prop_map(|(path, len)| Op::Truncate { path, len }),
        1 => p.clone().prop_map(|path| Op::Unlink { path }),
        2 => (p.clone(), p.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        2 => (p.clone(), p.clone()).prop_map(|(from, to)| Op::Link { from, to }),
        2 => p.clone().prop_map(|path| Op::Mkdir { path }),
        1 => p.clone().prop_map(|path| Op::Rmdir { path }),
        1 => (p.clone(), prop_oneof![Just(0o755), Just(0o700), Just(0o644)])
            .prop_map(|(path, mode)| Op::Chmod { path, mode }),
        1 => p.clone().prop_map(|path| Op::Symlink { path }),
        1 => Just(Op::Remount),
    ]
}

/// One entry of a tree, as a user sees it: a directory or a file with its permission bits and link count, or a
/// symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(Vec<u8>, u32, u64),
    Link(String),
}

/// The entries of a tree, by path.
type Snapshot = BTreeMap<String, Entry>;

fn snapshot_dir(root: &Path) -> Snapshot {
    use std::os::unix::fs::PermissionsExt;
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
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if meta.is_dir() {
                dirs.push(rel.clone());
                Entry::Dir(mode)
            } else if meta.file_type().is_symlink() {
                let to = std::fs::read_link(e.path()).unwrap();
                Entry::Link(to.to_string_lossy().into_owned())
            } else {
                use std::os::unix::fs::MetadataExt;
                Entry::File(std::fs::read(e.path()).unwrap(), mode, meta.nlink())
            };
            out.insert(rel, entry);
        }
    }
    out
}

fn snapshot_stage(v: &VolumeStage) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        for (name, attr) in v.list(&dir).unwrap() {
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let entry = match attr.kind {
                EntryKind::Dir => {
                    dirs.push(rel.clone());
                    Entry::Dir(attr.mode)
                }
                EntryKind::Symlink(to) => Entry::Link(to),
                EntryKind::File => {
                    let bytes = std::fs::read(v.read_path(&rel).unwrap()).unwrap();
                    Entry::File(bytes, attr.mode, u64::from(attr.nlink))
                }
            };
            out.insert(rel, entry);
        }
    }
    out
}

fn errno(r: std::io::Result<()>) -> Result<(), i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// `op` on a plain directory. What a mode depends on the umask for is set to what the stage uses (0644 for a new
/// file, 0755 for a new directory).
fn on_disk(root: &Path, op: &Op, fill: u8) -> Result<(), i32> {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    let at = |i: usize| root.join(PATHS[i]);
    let set_mode =
        |i: usize, mode: u32| std::fs::set_permissions(at(i), PermissionsExt::from_mode(mode));
    match *op {
        Op::Write { path, offset, len } => errno((|| {
            let new = std::fs::symlink_metadata(at(path)).is_err();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(at(path))?;
            if new {
                set_mode(path, 0o644)?;
            }
            f.write_all_at(&vec![fill; len as usize], offset as u64)
        })()),
        Op::Truncate { path, len } => errno((|| {
            let f = std::fs::OpenOptions::new().write(true).open(at(path))?;
            f.set_len(len as u64)
        })()),
        Op::Unlink { path } => errno(std::fs::remove_file(at(path))),
        Op::Rename { from, to } => errno(std::fs::rename(at(from), at(to))),
        Op::Link { from, to } => errno((|| {
            std::fs::hard_link(at(from), at(to))?;
            if at(to).symlink_metadata()?.is_symlink() {
                // The stage refuses a hard link of a symlink (it has no staged file to share); Linux makes one.
                std::fs::remove_file(at(to))?;
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        })()),
        Op::Mkdir { path } => {
            errno(std::fs::create_dir(at(path)).and_then(|()| set_mode(path, 0o755)))
        }
        Op::Rmdir { path } => errno(std::fs::remove_dir(at(path))),
        Op::Chmod { path, mode } => errno(set_mode(path, mode)),
        Op::Symlink { path } => errno(std::os::unix::fs::symlink(LINK_TARGET, at(path))),
        Op::Remount => Ok(()),
    }
}

/// Whether the kernel, resolving `path` before it asks the filesystem, meets a symlink: on a component above the
/// last, or on the last one too when the call follows it (open, truncate, chmod). Every model symlink dangles, so
/// such a call fails with ENOENT before the stage is asked.
fn resolves_through_a_symlink(v: &VolumeStage, path: &str, follows_last: bool) -> bool {
    let is_link = |p: &str| matches!(v.lookup(p).map(|a| a.kind), Some(EntryKind::Symlink(_)));
    let mut upper = path.match_indices('/').map(|(i, _)| &path[..i]);
    upper.any(is_link) || (follows_last && is_link(path))
}

/// `op` on the stage, as the kernel would ask for it.
fn on_stage(v: &Arc<VolumeStage>, op: &Op, fill: u8) -> Result<(), i32> {
    let (path, follows) = match *op {
        Op::Write { path, .. } | Op::Truncate { path, .. } | Op::Chmod { path, .. } => (path, true),
        Op::Unlink { path } | Op::Mkdir { path } | Op::Rmdir { path } | Op::Symlink { path } => {
            (path, false)
        }
        Op::Rename { from, to } | Op::Link { from, to } => {
            if resolves_through_a_symlink(v, PATHS[to], false) {
                return Err(libc::ENOENT);
            }
            (from, false)
        }
        Op::Remount => return Ok(()),
    };
    if resolves_through_a_symlink(v, PATHS[path], follows) {
        return Err(libc::ENOENT);
    }
    let result = match *op {
        Op::Write { path, offset, len } => (|| {
            let p = PATHS[path];
            let w = match v.lookup(p) {
                Some(_) => v.open_write(p, false)?,
                None => v.create(p, 0o644)?,
            };
            w.write_at(offset as u64, &vec![fill; len as usize])
                .map(drop)
        })(),
        Op::Truncate { path, len } => v.truncate(PATHS[path], len as u64),
        Op::Unlink { path } => v.unlink(PATHS[path]),
        Op::Rename { from, to } => v.rename(PATHS[from], PATHS[to], true),
        Op::Link { from, to } => v.link(PATHS[from], PATHS[to]),
        Op::Mkdir { path } => v.mkdir(PATHS[path], 0o755),
        Op::Rmdir { path } => v.rmdir(PATHS[path]),
        Op::Chmod { path, mode } => v.chmod(PATHS[path], mode),
        Op::Symlink { path } => v.symlink(PATHS[path], LINK_TARGET),
        Op::Remount => Ok(()),
    };
    result.map_err(|e| e.errno)
}

struct Mounted {
    stage: Arc<Stage>,
    volume: Arc<VolumeStage>,
}

fn mount(cache_dir: &Path) -> Mounted {
    mount_with(cache_dir, Arc::new(FakeApi::default()), None)
}

/// The archive cache in `cache_dir`. An earlier mount of it in this process may still be letting go of it (a
/// download thread of its cache ends just after its caller got the tree): its lock is waited for, a bounded time.
fn open_cache(cache_dir: &Path) -> ArchiveCache {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let opened = ArchiveCache::open(CacheConfig {
            dir: cache_dir.to_path_buf(),
            max_bytes: 1 << 30,
            limits: ExtractLimits::default(),
        });
        match opened {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other.unwrap(),
        }
    }
}

/// A stage on `cache_dir` over `api`, with the volume `model` at `head` (when it has one).
fn mount_with(cache_dir: &Path, api: Arc<dyn Vm0Api>, head: Option<&str>) -> Mounted {
    let cache = Arc::new(open_cache(cache_dir));
    let config = StageConfig {
        cache_dir: cache_dir.to_path_buf(),
        commit_delay: Duration::ZERO,
        max_staged_bytes: 1 << 30,
    };
    let stage = Stage::open(config, api, cache, Arc::new(|| {})).unwrap();
    let volume = stage
        .volume(STORAGE, "model", head, head.is_some())
        .unwrap();
    Mounted { stage, volume }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_stage_behaves_like_a_local_directory(ops in proptest::collection::vec(op(), 1..40)) {
        let reference = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mut m = Some(mount(cache.path()));
        for (i, op) in ops.iter().enumerate() {
            let fill = i as u8;
            if let Op::Remount = op {
                drop(m.take());
                m = Some(mount(cache.path()));
                continue;
            }
            let Some(mounted) = m.as_ref() else { unreachable!() };
            let expected = on_disk(reference.path(), op, fill);
            let got = on_stage(&mounted.volume, op, fill);
            prop_assert_eq!(got, expected, "step {}: {:?}", i, op);
            prop_assert_eq!(snapshot_stage(&mounted.volume), snapshot_dir(reference.path()), "after step {}: {:?}", i, op);
        }
        let Some(mounted) = m.as_ref() else { unreachable!() };
        prop_assert!(mounted.stage.loaded(STORAGE).is_some());
    }
}

mod moving_head;

fn mount_on(cache_dir: &Path, api: Arc<FakeApi>) -> Mounted {
    let head = api.head(STORAGE);
    mount_with(cache_dir, api, head.as_deref())
}

fn write_file(v: &Arc<VolumeStage>, path: &str, bytes: &[u8]) {
    let w = v.create(path, 0o644).unwrap();
    w.write_at(0, bytes).unwrap();
    w.sync().unwrap();
}

#[test]
fn a_commit_whose_reply_is_lost_is_not_sent_again() {
    use std::sync::atomic::Ordering;
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    write_file(&m.volume, "f", b"bytes");
    api.publishing.lose_next_reply.store(true, Ordering::SeqCst);
    let version = m
        .stage
        .sync(&m.volume)
        .expect("published despite the lost reply");
    assert_eq!(api.head(STORAGE).as_deref(), Some(version.as_str()));
    assert_eq!(api.publishing.commits.load(Ordering::SeqCst), 1);
    // Published is journaled: after a remount, nothing is sent again.
    drop(m);
    let m = mount_on(cache.path(), api.clone());
    assert_eq!(m.stage.sync(&m.volume).unwrap(), version);
    assert_eq!(api.publishing.commits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_head_moved_elsewhere_is_rebased_onto_never_overwritten() {
    use std::sync::atomic::Ordering;
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    write_file(&m.volume, "f", b"mine");
    // Someone else published an empty version meanwhile (the fake's heads have no files): disjoint changes.
    let theirs = "e".repeat(64);
    api.set_head(STORAGE, &theirs);
    let published = m.stage.sync(&m.volume).unwrap();
    assert_ne!(published, theirs);
    assert_eq!(api.publishing.commits.load(Ordering::SeqCst), 1);
    assert_eq!(api.head(STORAGE), Some(published.clone()));
    assert_eq!(api.publishing.session_paths(), ["f"]);
    assert_eq!(m.volume.head(), Some(published));
    assert!(m.volume.lookup("f").is_some());
}

#[test]
fn a_head_that_moves_during_the_upload_is_seen_before_the_commit_and_rebased_onto() {
    use std::sync::atomic::Ordering;
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    write_file(&m.volume, "f", b"mine");
    let theirs = "d".repeat(64);
    *api.publishing.head_during_upload.lock().unwrap() = Some(theirs.clone());
    let published = m.stage.sync(&m.volume).unwrap();
    // The first upload was not committed: the head check right before the commit saw theirs, and the retry
    // rebased onto it (an empty version in this fake), uploaded again and committed once.
    assert_eq!(api.publishing.uploads.load(Ordering::SeqCst), 2);
    assert_eq!(api.publishing.commits.load(Ordering::SeqCst), 1);
    assert_ne!(published, theirs);
    assert_eq!(api.head(STORAGE), Some(published));
}

#[test]
fn discard_waits_for_writers_then_drops_everything_staged() {
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    write_file(&m.volume, "kept-until-discard", b"bytes");
    let open = m.volume.open_write("kept-until-discard", false).unwrap();
    let busy = m.stage.discard(&m.volume).unwrap_err();
    assert_eq!(busy.errno, libc::EBUSY, "{busy}");
    assert!(busy.message.contains("open for writing"), "{busy}");
    drop(open);
    let dropped = m.stage.discard(&m.volume).unwrap();
    assert!(dropped.had_changes);
    assert_eq!((dropped.files, dropped.bytes), (1, 5));
    assert!(m.stage.loaded(m.volume.storage_id()).is_none());
    assert!(
        !cache
            .path()
            .join("stage")
            .join(m.volume.storage_id())
            .exists(),
        "the staging directory is gone"
    );
    // The old stage refuses changes; nothing of it is published.
    assert_eq!(m.volume.mkdir("d", 0o755).unwrap_err().errno, libc::ESTALE);
    assert!(m.stage.sync(&m.volume).is_err());
    assert_eq!(
        api.publishing
            .commits
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn a_published_tree_becomes_the_cached_archive_and_leaves_the_stage() {
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    m.volume.mkdir("d", 0o755).unwrap();
    write_file(&m.volume, "d/f", b"first");
    write_file(&m.volume, "g", b"second");
    let version = m.stage.sync(&m.volume).unwrap();
    assert!(
        m.stage.changed(STORAGE).is_none(),
        "nothing is staged any more"
    );
    let stage_dir = cache.path().join("stage").join(STORAGE);
    assert!(
        !stage_dir.exists(),
        "the staged files and the journal are gone"
    );
    let cached = cache.path().join("archives").join(&version).join("tree");
    assert_eq!(std::fs::read(cached.join("d/f")).unwrap(), b"first");
    assert_eq!(
        std::fs::read(m.volume.read_path("g").unwrap()).unwrap(),
        b"second"
    );
    assert_eq!(m.volume.lookup("g").unwrap().mode, 0o644);
    // A change after the adoption copies the file up again and leaves the cached archive as it was.
    let w = m.volume.open_write("g", true).unwrap();
    w.write_at(0, b"changed").unwrap();
    drop(w);
    assert_eq!(std::fs::read(cached.join("g")).unwrap(), b"second");
    drop(m);
    // The next mount reads the head from the cache: the fake API serves no download.
    let m = mount_on(cache.path(), api.clone());
    assert_eq!(
        std::fs::read(m.volume.read_path("g").unwrap()).unwrap(),
        b"changed"
    );
    assert_eq!(
        std::fs::read(m.volume.read_path("d/f").unwrap()).unwrap(),
        b"first"
    );
}

#[test]
fn what_a_version_cannot_hold_stays_staged_over_the_adopted_version() {
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    write_file(&m.volume, "run.sh", b"#!/bin/sh");
    m.volume.chmod("run.sh", 0o755).unwrap();
    m.volume.mkdir("empty", 0o700).unwrap();
    m.volume.symlink("link", "run.sh").unwrap();
    m.stage.sync(&m.volume).unwrap();
    let staged = cache.path().join("stage").join(STORAGE).join("files");
    assert_eq!(
        std::fs::read_dir(&staged).unwrap().count(),
        0,
        "no staged bytes"
    );
    drop(m);
    let m = mount_on(cache.path(), api.clone());
    let v = m
        .stage
        .changed(STORAGE)
        .expect("the local-only changes are journaled");
    assert_eq!(v.lookup("run.sh").unwrap().mode, 0o755);
    assert_eq!(v.lookup("empty").unwrap().mode, 0o700);
    assert_eq!(
        v.lookup("link").unwrap().kind,
        EntryKind::Symlink("run.sh".into())
    );
    assert_eq!(
        std::fs::read(v.read_path("run.sh").unwrap()).unwrap(),
        b"#!/bin/sh"
    );
}

#[test]
fn a_publish_after_an_edit_hashes_only_the_edited_file() {
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    write_file(&m.volume, "a", b"first a");
    write_file(&m.volume, "b", b"first b");
    m.stage.sync(&m.volume).unwrap();
    let w = m.volume.open_write("a", false).unwrap();
    w.write_at(0, b"FIRST").unwrap();
    drop(w);
    let known = |v: &VolumeStage| -> Vec<(String, bool)> {
        let files = v.freeze().files;
        files
            .into_iter()
            .map(|f| (f.path, f.known.is_some()))
            .collect()
    };
    assert_eq!(known(&m.volume), [("a".into(), false), ("b".into(), true)]);
    let second = m.stage.sync(&m.volume).unwrap();
    assert_eq!(api.head(STORAGE).as_deref(), Some(second.as_str()));
    drop(m);
    // The hashes are kept with the cached archive, across mounts.
    let m = mount_on(cache.path(), api.clone());
    assert_eq!(known(&m.volume), [("a".into(), true), ("b".into(), true)]);
    assert_eq!(m.stage.sync(&m.volume).unwrap(), second);
}

#[test]
fn journaled_times_read_back_to_the_nanosecond_before_and_after_the_epoch() {
    use super::journal::Record;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    for t in [
        UNIX_EPOCH + Duration::new(981_173_106, 123_456_789),
        UNIX_EPOCH - Duration::new(10, 250_000_000),
        UNIX_EPOCH - Duration::from_secs(3),
        UNIX_EPOCH,
    ] {
        let Record::Touch { secs, nanos, .. } = super::records::touch_record("f", t) else {
            panic!("not a Touch record");
        };
        assert_eq!(super::records::from_unix(secs, nanos), t, "{t:?}");
        let _: SystemTime = t;
    }
}

/// Issue 21, defect 2: the filesystem can fail after the stage counted a writer (`Vm0Fs::create` failing on the
/// new entry's attributes when a concurrent unlink removed it) and drop the writer without any close. The count
/// comes back with the writer: the volume is not "being written" any more and a discard is not refused.
#[test]
fn a_writer_dropped_without_a_close_gives_its_count_back() {
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    let created = m.volume.create("raced", 0o644).unwrap();
    m.volume.unlink("raced").unwrap();
    assert!(m.volume.writing());
    drop(created);
    assert!(!m.volume.writing(), "the dropped writer still counts");
    let opened = m.volume.open_write("kept", true);
    assert!(opened.is_err(), "no such file");
    write_file(&m.volume, "kept", b"bytes");
    let dropped = m.stage.discard(&m.volume).unwrap();
    assert!(dropped.had_changes);
}

/// The staged-bytes budget is given back by every way a staged byte goes: a shrink, a truncating open, an unlink
/// and a discard; a write past the limit is refused with ENOSPC naming the limit.
#[test]
fn the_budget_is_given_back_by_every_way_a_staged_byte_goes() {
    let cache = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let cache_dir = cache.path();
    let archives = Arc::new(
        ArchiveCache::open(CacheConfig {
            dir: cache_dir.to_path_buf(),
            max_bytes: 1 << 30,
            limits: ExtractLimits::default(),
        })
        .unwrap(),
    );
    let config = StageConfig {
        cache_dir: store.path().to_path_buf(),
        commit_delay: Duration::ZERO,
        max_staged_bytes: 100,
    };
    let stage = Stage::open(
        config,
        Arc::new(FakeApi::default()),
        archives,
        Arc::new(|| {}),
    )
    .unwrap();
    let v = stage.volume(STORAGE, "model", None, false).unwrap();
    let w = v.create("a", 0o644).unwrap();
    w.write_at(0, &[1; 100]).unwrap();
    let full = w.write_at(100, &[1]).unwrap_err();
    assert_eq!(full.errno, libc::ENOSPC);
    assert!(full.message.contains("--max-staged-size 100"), "{full}");
    w.set_len(40).unwrap();
    w.write_at(40, &[2; 60]).unwrap();
    drop(w);
    drop(v.open_write("a", true).unwrap());
    let w = v.create("b", 0o644).unwrap();
    w.write_at(0, &[3; 100]).unwrap();
    drop(w);
    v.unlink("b").unwrap();
    let w = v.create("c", 0o644).unwrap();
    w.write_at(0, &[4; 100]).unwrap();
    drop(w);
    stage.discard(&v).unwrap();
    let v = stage.volume(STORAGE, "model", None, false).unwrap();
    let w = v.create("d", 0o644).unwrap();
    w.write_at(0, &[5; 100]).unwrap();
}

/// `link` of a file still read from the base version copies it up once for both names: a write through one name
/// is read through the other, the budget counts the bytes once, an unlink of one name keeps the other, and a
/// remount (journal replay) keeps the pair.
#[test]
fn a_link_to_a_base_file_is_one_staged_file_under_two_names() {
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    write_file(&m.volume, "a", b"base bytes");
    m.stage.sync(&m.volume).unwrap();
    drop(m);
    let m = mount_on(cache.path(), api.clone());
    let v = &m.volume;
    assert_eq!(v.lookup("a").unwrap().nlink, 1);
    v.link("a", "b").unwrap();
    assert_eq!(v.link("a", "b").unwrap_err().errno, libc::EEXIST);
    assert_eq!(v.link("nope", "c").unwrap_err().errno, libc::ENOENT);
    assert_eq!(
        (v.lookup("a").unwrap().nlink, v.lookup("b").unwrap().nlink),
        (2, 2)
    );
    assert_eq!(v.names_of("b"), ["a", "b"]);
    let w = v.open_write("b", false).unwrap();
    w.write_at(0, b"BASE").unwrap();
    drop(w);
    assert_eq!(
        std::fs::read(v.read_path("a").unwrap()).unwrap(),
        b"BASE bytes"
    );
    assert_eq!(
        v.lock().staged_bytes(&v.layout),
        10,
        "one staged file, counted once"
    );
    v.chmod("a", 0o755).unwrap();
    assert_eq!(v.lookup("b").unwrap().mode, 0o755);
    v.rename("b", "a", true).unwrap();
    assert!(
        v.lookup("b").is_some(),
        "a rename between two names of one file changes nothing"
    );
    v.rename("a", "z", true).unwrap();
    // The push flow's archive: the first name in path order has the bytes, the other links to it.
    use super::upload::TreeKind;
    let kinds: Vec<(String, TreeKind)> = v
        .freeze()
        .tree
        .into_iter()
        .map(|e| (e.path, e.kind))
        .filter(|(p, _)| p != "b")
        .collect();
    assert_eq!(
        kinds,
        [("z".to_string(), TreeKind::HardLink { target: "b".into() })]
    );
    v.rename("z", "a", true).unwrap();
    drop(m);
    let m = mount_on(cache.path(), api.clone());
    let v = &m.volume;
    assert_eq!(
        (v.lookup("a").unwrap().nlink, v.lookup("b").unwrap().mode),
        (2, 0o755)
    );
    v.unlink("a").unwrap();
    assert_eq!(v.lookup("b").unwrap().nlink, 1);
    assert_eq!(
        std::fs::read(v.read_path("b").unwrap()).unwrap(),
        b"BASE bytes"
    );
}

/// A publish that rebases over a version made elsewhere keeps a staged hard link one file: a write through one
/// name is read through the other afterwards.
#[test]
fn a_link_is_kept_through_a_rebase() {
    let cache = tempfile::tempdir().unwrap();
    let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
    let m = mount_on(cache.path(), api.clone());
    write_file(&m.volume, "a", b"ours");
    m.volume.link("a", "b").unwrap();
    api.publish_elsewhere(STORAGE, &[("c", Some(b"theirs".to_vec()))]);
    m.stage.sync(&m.volume).unwrap();
    let v = &m.volume;
    assert_eq!(v.lookup("c").map(|a| a.kind), Some(EntryKind::File));
    assert_eq!(v.lookup("b").unwrap().nlink, 2);
    let w = v.open_write("a", false).unwrap();
    w.write_at(0, b"OURS").unwrap();
    drop(w);
    assert_eq!(std::fs::read(v.read_path("b").unwrap()).unwrap(), b"OURS");
}

/// The steps of `tests/hard_links.rs` with a publish after any one of them, then a remount: the pair is one file.
#[test]
fn a_pair_survives_a_publish_at_any_point_and_a_remount() {
    type Step = fn(&Arc<VolumeStage>);
    let steps: [Step; 6] = [
        |v| {
            v.mkdir("sub", 0o755).unwrap();
            write_file(v, "a", b"first");
        },
        |v| v.link("a", "sub/b").unwrap(),
        |v| v.rename("a", "c", true).unwrap(),
        |v| v.rename("c", "sub/b", true).unwrap(),
        |v| v.unlink("c").unwrap(),
        |v| v.link("sub/b", "a").unwrap(),
    ];
    for publish_after in 0..steps.len() {
        let cache = tempfile::tempdir().unwrap();
        let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
        let m = mount_on(cache.path(), api.clone());
        for (i, step) in steps.iter().enumerate() {
            step(&m.volume);
            if i == publish_after {
                m.stage.sync(&m.volume).unwrap();
            }
        }
        drop(m);
        let m = mount_on(cache.path(), api.clone());
        let nlinks = (
            m.volume.lookup("a").map(|a| a.nlink),
            m.volume.lookup("sub/b").map(|a| a.nlink),
        );
        assert_eq!(
            nlinks,
            (Some(2), Some(2)),
            "published after step {publish_after}"
        );
    }
}
