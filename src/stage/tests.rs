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
    Mkdir { path: usize },
    Rmdir { path: usize },
    Remount,
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
        1 => Just(Op::Remount),
    ]
}

/// A file's bytes or a directory, by path.
type Snapshot = BTreeMap<String, Option<Vec<u8>>>;

fn snapshot_dir(root: &Path) -> Snapshot {
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
                out.insert(rel.clone(), None);
                dirs.push(rel);
            } else {
                out.insert(rel, Some(std::fs::read(e.path()).unwrap()));
            }
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
            match attr.kind {
                EntryKind::Dir => {
                    out.insert(rel.clone(), None);
                    dirs.push(rel);
                }
                _ => {
                    let bytes = std::fs::read(v.read_path(&rel).unwrap()).unwrap();
                    out.insert(rel, Some(bytes));
                }
            }
        }
    }
    out
}

fn errno(r: std::io::Result<()>) -> Result<(), i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn on_disk(root: &Path, op: &Op, fill: u8) -> Result<(), i32> {
    use std::os::unix::fs::FileExt;
    let at = |i: usize| root.join(PATHS[i]);
    match *op {
        Op::Write { path, offset, len } => errno((|| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(at(path))?;
            f.write_all_at(&vec![fill; len as usize], offset as u64)
        })()),
        Op::Truncate { path, len } => errno((|| {
            let f = std::fs::OpenOptions::new().write(true).open(at(path))?;
            f.set_len(len as u64)
        })()),
        Op::Unlink { path } => errno(std::fs::remove_file(at(path))),
        Op::Rename { from, to } => errno(std::fs::rename(at(from), at(to))),
        Op::Mkdir { path } => errno(std::fs::create_dir(at(path))),
        Op::Rmdir { path } => errno(std::fs::remove_dir(at(path))),
        Op::Remount => Ok(()),
    }
}

fn on_stage(v: &VolumeStage, op: &Op, fill: u8) -> Result<(), i32> {
    let result = match *op {
        Op::Write { path, offset, len } => (|| {
            let p = PATHS[path];
            let w = match v.lookup(p) {
                Some(_) => v.open_write(p, false)?,
                None => v.create(p, 0o644)?,
            };
            let r = v
                .write(&w, offset as u64, &vec![fill; len as usize])
                .map(drop);
            v.close_write();
            r
        })(),
        Op::Truncate { path, len } => v.truncate(PATHS[path], len as u64),
        Op::Unlink { path } => v.unlink(PATHS[path]),
        Op::Rename { from, to } => v.rename(PATHS[from], PATHS[to]),
        Op::Mkdir { path } => v.mkdir(PATHS[path], 0o755),
        Op::Rmdir { path } => v.rmdir(PATHS[path]),
        Op::Remount => Ok(()),
    };
    result.map_err(|e| e.errno)
}

struct Mounted {
    stage: Arc<Stage>,
    volume: Arc<VolumeStage>,
}

fn mount(cache_dir: &Path) -> Mounted {
    let api: Arc<dyn Vm0Api> = Arc::new(FakeApi::default());
    let cache = Arc::new(
        ArchiveCache::open(CacheConfig {
            dir: cache_dir.to_path_buf(),
            max_bytes: 1 << 30,
            limits: ExtractLimits::default(),
        })
        .unwrap(),
    );
    let config = StageConfig {
        cache_dir: cache_dir.to_path_buf(),
        commit_delay: Duration::ZERO,
        max_staged_bytes: 1 << 30,
    };
    let stage = Stage::open(config, api, cache).unwrap();
    let volume = stage.volume(STORAGE, "model", None, false).unwrap();
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
