//! Trees and journal records: the records that make a published tree again over its version (`over_version`),
//! those between two trees (`records_between`, for a rebase), and the time records.

use std::time::{Duration, SystemTime};

use super::journal::Record;
use super::overlay::{Content, Node, Tree};

/// The mode of every file of a version (CONTRACT.md 6.4), as the volume shows it.
const VERSION_FILE_MODE: u32 = 0o644;

/// `tree` just published: the tree of its version (its files at the version's mode, each read from the version's
/// cached tree) and the records that make `tree` from it again, the things a version cannot hold (a second name of
/// a file, a version's file of its own, is made a link again).
pub(super) fn over_version(tree: &Tree) -> (Tree, Vec<Record>) {
    let files = tree
        .files()
        .map(|(p, _)| (p.to_string(), VERSION_FILE_MODE));
    let mut version = Tree::from_files(files);
    let mut local = Vec::new();
    for (path, node) in tree.entries() {
        let path = path.to_string();
        let mut records = Vec::new();
        match (node, version.get(&path)) {
            (Node::Dir { mode }, None) => records.push(Record::Mkdir {
                path: path.clone(),
                mode: *mode,
            }),
            (Node::Symlink { target }, _) => records.push(Record::Symlink {
                path: path.clone(),
                target: target.clone(),
            }),
            (
                Node::Dir { mode } | Node::File { mode, .. },
                Some(Node::Dir { mode: m } | Node::File { mode: m, .. }),
            ) if m != mode => records.push(Record::Chmod {
                path: path.clone(),
                mode: *mode,
            }),
            _ => {}
        }
        if let Node::File { .. } = node
            && let primary = tree.primary(&path)
            && primary != path
        {
            // A second name of a file: a version holds it as a file of its own; here it is a link again.
            records.push(Record::Remove { path: path.clone() });
            records.push(Record::Link {
                from: primary.to_string(),
                to: path.clone(),
            });
        }
        if let Node::File {
            mtime: Some(mtime), ..
        } = node
        {
            records.push(touch_record(&path, *mtime));
        }
        for record in records {
            let applied = match &record {
                Record::Mkdir { path, mode } => version.mkdir(path, *mode),
                Record::Symlink { path, target } => version.symlink(path, target),
                Record::Remove { path } => version.unlink(path).map(drop),
                Record::Link { from, to } => version.link(from, to),
                Record::Chmod { path, mode } => version.chmod(path, *mode),
                Record::Touch { path, secs, nanos } => {
                    version.touch(path, from_unix(*secs, *nanos))
                }
                _ => Ok(()),
            };
            if applied.is_ok() {
                local.push(record);
            }
        }
    }
    (version, local)
}

/// The journal record of `touch` of `path` to `mtime`.
pub(super) fn touch_record(path: &str, mtime: SystemTime) -> Record {
    let (secs, nanos) = match mtime.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, 1_000_000_000 - n),
            }
        }
    };
    Record::Touch {
        path: path.to_string(),
        secs,
        nanos,
    }
}

/// The time `secs` seconds and `nanos` nanoseconds after the epoch (`secs` may be negative).
pub(super) fn from_unix(secs: i64, nanos: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    match u64::try_from(secs) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s) + nanos,
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos,
    }
}

/// The records that turn `from` into `to` (after a `Base` record naming `from`'s version): removals deepest first,
/// then additions and changes parents first.
pub(super) fn records_between(from: &Tree, to: &Tree) -> Vec<Record> {
    let same_kind = |a: &Node, b: &Node| {
        matches!(
            (a, b),
            (Node::Dir { .. }, Node::Dir { .. })
                | (Node::File { .. }, Node::File { .. })
                | (Node::Symlink { .. }, Node::Symlink { .. })
        )
    };
    let mut records = Vec::new();
    let gone: Vec<&str> = from
        .entries()
        .filter(|(p, n)| !to.get(p).is_some_and(|m| same_kind(n, m)))
        .map(|(p, _)| p)
        .collect();
    for path in gone.into_iter().rev() {
        records.push(Record::Remove {
            path: path.to_string(),
        });
    }
    for (path, node) in to.entries() {
        let path = path.to_string();
        if matches!(node, Node::File { .. }) && to.primary(&path) != path {
            continue; // A second name of a file: linked below, once its first name is there.
        }
        let old = from.get(&path).filter(|old| same_kind(old, node));
        match (node, old) {
            (n, Some(o)) if n == o => {}
            (Node::Dir { mode }, Some(_)) => records.push(Record::Chmod {
                path: path.clone(),
                mode: *mode,
            }),
            (Node::Dir { mode }, None) => records.push(Record::Mkdir {
                path: path.clone(),
                mode: *mode,
            }),
            (Node::Symlink { target }, _) => {
                if old.is_some() {
                    records.push(Record::Remove { path: path.clone() });
                }
                records.push(Record::Symlink {
                    path: path.clone(),
                    target: target.clone(),
                })
            }
            (
                Node::File {
                    content: Content::Staged(file),
                    mode,
                    ..
                },
                _,
            ) => records.push(Record::Put {
                path: path.clone(),
                file: *file,
                mode: *mode,
            }),
            (Node::File { mode, .. }, _) => records.push(Record::Chmod {
                path: path.clone(),
                mode: *mode,
            }),
        }
        // A time set on a file read from a version is journaled; a staged file keeps its own.
        if let Node::File {
            content: Content::Base(_),
            mtime: Some(mtime),
            ..
        } = node
            && old != Some(node)
        {
            records.push(touch_record(&path, *mtime));
        }
    }
    for (path, _) in to.files() {
        let names = to.names_of(path);
        if names.len() < 2 || names[0] != path {
            continue;
        }
        for name in &names[1..] {
            if matches!(from.get(name), Some(Node::File { .. })) {
                records.push(Record::Remove { path: name.clone() });
            }
            records.push(Record::Link {
                from: path.to_string(),
                to: name.clone(),
            });
        }
    }
    records
}
