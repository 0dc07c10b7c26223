//! A model of the stage against a server whose head moves: random local changes, publishes from another client,
//! syncs, discards and remounts, checked after every step. The view is the head the stage is based on plus what
//! is staged (here: the reference directory's changes, and the other client's files as of the last time the view
//! took the head); a sync that succeeds returns the server's head, and the server's head then holds the view's
//! files; nothing staged is lost across remounts; no version is committed twice.
//!
//! The other client writes only `r0` and `r1`, which no local change touches, so no step conflicts: the merge
//! rules themselves are `rebase`'s unit tests. The view is asked for as the filesystem asks for it, with the
//! head the server lists, after every step (a stage without changes follows the listed head at once).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use proptest::prelude::*;

use super::{
    Mounted, Op, STORAGE, mount_with, on_disk, on_stage, op, snapshot_dir, snapshot_stage,
};
use crate::api::fake::{FakeApi, Files};

#[derive(Debug, Clone)]
enum Step {
    Local(Op),
    Elsewhere { path: usize, bytes: Option<u8> },
    Sync,
    Discard,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => op().prop_map(Step::Local),
        2 => (0..2usize, proptest::option::of(any::<u8>()))
            .prop_map(|(path, bytes)| Step::Elsewhere { path, bytes }),
        2 => Just(Step::Sync),
        1 => Just(Step::Discard),
    ]
}

/// The other client's files of `files`.
fn theirs(files: &Files) -> Files {
    files
        .iter()
        .filter(|(p, _)| p.starts_with('r'))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

/// The stage as the filesystem sees it: asked for with the head the server lists.
fn view(cache: &std::path::Path, api: &Arc<FakeApi>, m: Option<Mounted>) -> Mounted {
    let head = api.head(STORAGE);
    let has_files = !api.head_files(STORAGE).is_empty();
    match m {
        None => mount_with(cache, api.clone(), head.as_deref()),
        Some(m) => {
            let volume = m
                .stage
                .volume(STORAGE, "model", head.as_deref(), has_files)
                .unwrap();
            Mounted {
                stage: m.stage,
                volume,
            }
        }
    }
}

/// Makes the reference directory the head's files, but the other client's.
fn reset_reference(root: &std::path::Path, head: &Files) {
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(e.path()).unwrap();
        } else {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    for (path, bytes) in head.iter().filter(|(p, _)| !p.starts_with('r')) {
        let at = root.join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, bytes).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_view_is_the_head_plus_what_is_staged(steps in proptest::collection::vec(step(), 1..30)) {
        let reference = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let api = Arc::new(FakeApi::with_volume(STORAGE, "model"));
        let mut m = view(cache.path(), &api, None);
        // The other client's files the view shows.
        let mut seen = Files::new();
        for (i, s) in steps.iter().enumerate() {
            let mut synced = false;
            match s {
                Step::Local(Op::Remount) => {
                    drop(m);
                    m = view(cache.path(), &api, None);
                }
                Step::Local(op) => {
                    let expected = on_disk(reference.path(), op, i as u8);
                    let got = on_stage(&m.volume, op, i as u8);
                    prop_assert_eq!(got, expected, "step {}: {:?}", i, s);
                }
                Step::Elsewhere { path, bytes } => {
                    let content = bytes.map(|b| vec![b; 3]);
                    api.publish_elsewhere(STORAGE, &[(["r0", "r1"][*path], content)]);
                }
                Step::Sync => match m.stage.sync(&m.volume) {
                    Ok(version) => {
                        prop_assert_eq!(Some(version), api.head(STORAGE), "step {}: sync returned another head", i);
                        synced = true;
                        seen = theirs(&api.head_files(STORAGE));
                    }
                    Err(e) => {
                        prop_assert_eq!(e.errno, libc::ENODATA, "step {}: {}", i, e);
                        prop_assert!(api.head(STORAGE).is_none());
                    }
                },
                Step::Discard => {
                    m.stage.discard(&m.volume).unwrap();
                    reset_reference(reference.path(), &api.head_files(STORAGE));
                }
            }
            let clean = m.stage.changed(STORAGE).is_none();
            m = view(cache.path(), &api, Some(m));
            if clean || m.stage.changed(STORAGE).is_none() {
                seen = theirs(&api.head_files(STORAGE));
            }
            let mut expected = snapshot_dir(reference.path());
            expected.extend(seen.iter().map(|(p, b)| (p.clone(), Some(b.clone()))));
            let shown = snapshot_stage(&m.volume);
            prop_assert_eq!(&shown, &expected, "after step {}: {:?}", i, s);
            if synced {
                let files: Files = shown.into_iter().filter_map(|(p, b)| b.map(|b| (p, b))).collect();
                prop_assert_eq!(files, api.head_files(STORAGE), "step {}: the synced head is not the view's files", i);
            }
            prop_assert_eq!(api.publishing.twice.load(Ordering::SeqCst), 0, "a version was committed twice");
        }
    }
}
