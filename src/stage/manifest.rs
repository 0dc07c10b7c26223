//! What a publish uploads: every regular file of the tree with its size and SHA-256, and the version id that
//! content will have (CONTRACT.md 6.1), computed before anything is sent.
//!
//! Knowing the id in advance is what makes a publish exactly-once without any help from the server: a head
//! equal to it means the commit already went through (its reply was lost, or vm0fs was killed before it wrote
//! `Published`), and a base equal to it means there is nothing to publish. Staged files are hashed from disk at
//! publish time, streaming, so a file changed in place after an earlier publish is never sent with a stale hash;
//! a file still read from the base version takes the hash the cache kept for it when there is one (a file of a
//! cached version is never written), so a publish after a small edit reads the edit, not the whole volume.

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

use super::overlay::{Node, Tree};

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub source: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// A file of the tree as frozen for a publish: where its bytes are, and their SHA-256 when already known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frozen {
    pub path: String,
    pub source: PathBuf,
    pub known: Option<String>,
}

/// How many threads hash at once, at most (the machine's cores permitting): SHA-256 runs at about the page
/// cache's speed on one core, so a few cores keep up with any disk.
const HASHERS: usize = 4;

/// The manifest of `files`, in path order: each file hashed, unless its hash is known. Files are hashed on up to
/// `HASHERS` threads, each taking the next file not taken; the first failure stops them.
pub fn hash_files(files: Vec<Frozen>) -> io::Result<Vec<ManifestFile>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, HASHERS)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let hashed: Vec<io::Result<Vec<ManifestFile>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| hash_some(&files, &next, &stop)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(io::Error::other("a thread hashing the files panicked"))
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(files.len());
    for part in hashed {
        out.extend(part?);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// One worker's share: the files it took, until none is left or another worker failed.
fn hash_some(
    files: &[Frozen],
    next: &AtomicUsize,
    stop: &AtomicBool,
) -> io::Result<Vec<ManifestFile>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    while !stop.load(Ordering::Relaxed) {
        let Some(file) = files.get(next.fetch_add(1, Ordering::Relaxed)) else {
            break;
        };
        match hash_one(file, &mut buf) {
            Ok(hashed) => out.push(hashed),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// One file's entry: its size now, and its hash as known or read.
fn hash_one(file: &Frozen, buf: &mut [u8]) -> io::Result<ManifestFile> {
    let Frozen {
        path,
        source,
        known,
    } = file;
    let cannot_read =
        |e: io::Error| io::Error::new(e.kind(), format!("{path}: cannot read its bytes: {e}"));
    let entry = |size, sha256| ManifestFile {
        path: path.clone(),
        source: source.clone(),
        size,
        sha256,
    };
    if let Some(sha256) = known {
        let size = std::fs::metadata(source).map_err(cannot_read)?.len();
        return Ok(entry(size, sha256.clone()));
    }
    let mut file = File::open(source).map_err(cannot_read)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(entry(size, hex::encode(hasher.finalize())))
}

/// The version id of `files` in storage `storage_id` (CONTRACT.md 6.1).
pub fn version_id(storage_id: &str, files: &[ManifestFile]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| format!("{}:{}", f.path, f.sha256))
        .collect();
    lines.sort();
    let text = format!("storage:{storage_id}\n{}", lines.join("\n"));
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What the tree holds that no version can (CONTRACT.md 6.4: a version is regular files, mode 0644): kept on
/// this machine only, and said so in `vm0fs status` and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalOnly {
    pub symlinks: usize,
    pub empty_dirs: usize,
    /// Files whose mode is not 0644 (a version gives every file 0644).
    pub modes: usize,
    /// Second names of files (a version's `/v1` upload makes each a file of its own).
    pub hard_links: usize,
}

impl LocalOnly {
    pub fn of(tree: &Tree) -> LocalOnly {
        let mut local = LocalOnly::default();
        for (path, node) in tree.entries() {
            match node {
                Node::Symlink { .. } => local.symlinks += 1,
                Node::Dir { .. } if tree.children(path).next().is_none() => local.empty_dirs += 1,
                Node::File { mode, .. } if mode & 0o777 != 0o644 => local.modes += 1,
                _ => {}
            }
            if matches!(node, Node::File { .. }) && tree.primary(path) != path {
                local.hard_links += 1;
            }
        }
        local
    }

    pub fn is_empty(&self) -> bool {
        *self == LocalOnly::default()
    }

    /// What there is, in words, leaving out what there is none of: `1 symlink, 2 empty directories`.
    pub fn counts(&self) -> String {
        let counted = |n: usize, one: &str, many: &str| match n {
            0 => None,
            1 => Some(format!("1 {one}")),
            n => Some(format!("{n} {many}")),
        };
        let kinds: Vec<String> = [
            counted(self.symlinks, "symlink", "symlinks"),
            counted(self.empty_dirs, "empty directory", "empty directories"),
            counted(
                self.modes,
                "file mode other than 0644",
                "file modes other than 0644",
            ),
            counted(self.hard_links, "hard link", "hard links"),
        ]
        .into_iter()
        .flatten()
        .collect();
        kinds.join(", ")
    }
}

impl LocalOnly {
    /// The counts as words: `3 symlinks, 1 empty directory, 1 file mode`.
    fn counted(&self) -> String {
        let count = |n: usize, one: &str, many: &str| match n {
            0 => None,
            1 => Some(format!("1 {one}")),
            n => Some(format!("{n} {many}")),
        };
        [
            count(self.symlinks, "symlink", "symlinks"),
            count(self.empty_dirs, "empty directory", "empty directories"),
            count(self.modes, "file mode", "file modes"),
            count(
                self.hard_links,
                "hard link (published as a file of its own)",
                "hard links (each published as a file of its own)",
            ),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// On a server with only the `/v1` upload: what stays on this machine, and why.
impl std::fmt::Display for LocalOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kept on this machine only: {} (the server's /v1 upload takes regular files only)",
            self.counted()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::overlay::Content;

    #[test]
    fn many_files_hashed_on_several_threads_each_get_their_own_hash_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<Frozen> = (0..64)
            .map(|i| {
                let source = dir.path().join(format!("f{i}"));
                std::fs::write(&source, vec![i as u8; i * 1000]).unwrap();
                Frozen {
                    path: format!("d/{i:03}"),
                    source,
                    known: None,
                }
            })
            .rev()
            .collect();
        let manifest = hash_files(files).unwrap();
        assert_eq!(manifest.len(), 64);
        for (i, f) in manifest.iter().enumerate() {
            assert_eq!(f.path, format!("d/{i:03}"));
            assert_eq!(f.size, i as u64 * 1000);
            assert_eq!(
                f.sha256,
                hex::encode(Sha256::digest(vec![i as u8; i * 1000]))
            );
        }
    }

    #[test]
    fn a_file_gone_before_it_is_hashed_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut files: Vec<Frozen> = (0..16)
            .map(|i| {
                let source = dir.path().join(format!("f{i}"));
                std::fs::write(&source, b"x").unwrap();
                Frozen {
                    path: format!("f{i}"),
                    source,
                    known: None,
                }
            })
            .collect();
        files[9].source = dir.path().join("gone");
        let err = hash_files(files).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string().contains("f9: cannot read its bytes"),
            "{err}"
        );
    }

    #[test]
    fn the_version_id_is_the_contract_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b"), b"beta").unwrap();
        std::fs::write(dir.path().join("a"), b"").unwrap();
        let frozen = |path: &str, file: &str| Frozen {
            path: path.into(),
            source: dir.path().join(file),
            known: None,
        };
        let files = hash_files(vec![frozen("z/b", "b"), frozen("a", "a")]).unwrap();
        assert_eq!(files[0].path, "a");
        assert_eq!(files[1].size, 4);
        let empty = hex::encode(Sha256::digest(b""));
        let beta = hex::encode(Sha256::digest(b"beta"));
        assert_eq!(files[0].sha256, empty);
        let text = format!("storage:s-1\na:{empty}\nz/b:{beta}");
        assert_eq!(
            version_id("s-1", &files),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        assert_eq!(
            version_id("s-1", &[]),
            hex::encode(Sha256::digest(b"storage:s-1\n"))
        );
        // A known hash is taken as it is; the size still comes from the file.
        let known = hash_files(vec![Frozen {
            known: Some("k".repeat(64)),
            ..frozen("z/b", "b")
        }])
        .unwrap();
        assert_eq!(
            (known[0].size, known[0].sha256.as_str()),
            (4, &*"k".repeat(64))
        );
    }

    #[test]
    fn what_a_version_cannot_hold_is_counted() {
        let mut t = Tree::from_files([("f".to_string(), 0o644)]);
        t.mkdir("empty", 0o755).unwrap();
        t.symlink("l", "f").unwrap();
        t.put_file("x", Content::Staged(1), 0o755).unwrap();
        t.link("x", "y").unwrap();
        let local = LocalOnly::of(&t);
        assert_eq!(
            local,
            LocalOnly {
                symlinks: 1,
                empty_dirs: 1,
                modes: 2,
                hard_links: 1,
            }
        );
        assert!(LocalOnly::of(&Tree::from_files([("f".to_string(), 0o644)])).is_empty());
    }

    #[test]
    fn what_stays_local_is_named_in_words() {
        let local = LocalOnly {
            symlinks: 3,
            empty_dirs: 1,
            modes: 1,
            hard_links: 1,
        };
        assert_eq!(
            local.to_string(),
            "kept on this machine only: 3 symlinks, 1 empty directory, 1 file mode, 1 hard link (published as a \
             file of its own) (the server's /v1 upload takes regular files only)"
        );
        let one = LocalOnly {
            symlinks: 0,
            empty_dirs: 2,
            modes: 0,
            hard_links: 0,
        };
        assert_eq!(one.counted(), "2 empty directories");
    }
}
