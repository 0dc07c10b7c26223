//! Where the staging area keeps its files: the only code that names paths under `<cache dir>/stage/`.
//!
//! `<cache dir>/stage/<storage id>/journal` and `.../files/<file id>`. The staging area sits in the cache
//! directory so that a copy-up (base file → staged file) stays on one filesystem, and a storage id (a UUID, never a
//! name) keys it, so that a volume renamed or recreated on the server never mixes its changes with another's.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The staging directory of one volume.
#[derive(Debug, Clone)]
pub struct VolumeLayout {
    dir: PathBuf,
}

/// Whether `id` can name a directory: a storage id is a UUID, but it comes from the network.
pub fn valid_storage_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl VolumeLayout {
    pub fn new(stage_root: &Path, storage_id: &str) -> VolumeLayout {
        VolumeLayout {
            dir: stage_root.join(storage_id),
        }
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal")
    }

    pub fn files(&self) -> PathBuf {
        self.dir.join("files")
    }

    pub fn file(&self, id: u64) -> PathBuf {
        self.files().join(id.to_string())
    }

    /// The archive a push builds and sends (CONTRACT.md 7.2), deleted once sent.
    pub fn push_archive(&self) -> PathBuf {
        self.dir.join("push.tar.gz")
    }

    /// The `manifest.json` a push sends beside its archive.
    pub fn push_manifest(&self) -> PathBuf {
        self.dir.join("push-manifest.json")
    }

    /// Creates the directories (mode 0700: the volume's content is the user's).
    pub fn create(&self) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.files())
    }

    /// Deletes the volume's staging directory: renamed aside at once (a name no storage id has, unique, so that
    /// nothing replays it and a new stage of the volume starts empty), its files then deleted on a thread of their
    /// own, so that a publish or a discard does not wait for the unlinking of a whole tree (a gigabyte of staged
    /// files takes seconds) while it holds the volume. A crash or an unmount before they are gone leaves the
    /// `.discarded` directory, which the next mount deletes (`remove_discarded`).
    pub fn remove(&self) -> io::Result<()> {
        static ASIDE: AtomicU64 = AtomicU64::new(0);
        let mut aside = self.dir.clone().into_os_string();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        aside.push(format!(
            ".{}-{nanos}-{}.discarded",
            std::process::id(),
            ASIDE.fetch_add(1, Ordering::Relaxed)
        ));
        let aside = PathBuf::from(aside);
        match std::fs::rename(&self.dir, &aside) {
            Ok(()) => {
                let deleting = aside.clone();
                let spawned = std::thread::Builder::new()
                    .name("vm0fs-unstage".into())
                    .spawn(move || {
                        if let Err(e) = std::fs::remove_dir_all(&deleting) {
                            tracing::warn!(dir = %deleting.display(), error = %e,
                                "could not delete a removed staging directory; the next mount does");
                        }
                    });
                match spawned {
                    Ok(_) => Ok(()),
                    Err(_) => std::fs::remove_dir_all(&aside),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The staged file ids present on disk.
    pub fn file_ids(&self) -> io::Result<Vec<u64>> {
        let mut ids = Vec::new();
        match std::fs::read_dir(self.files()) {
            Ok(entries) => {
                for e in entries {
                    if let Some(id) = e?.file_name().to_str().and_then(|n| n.parse().ok()) {
                        ids.push(id);
                    }
                }
                Ok(ids)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ids),
            Err(e) => Err(e),
        }
    }
}

/// Deletes, on a thread of its own, the staging directories a removal renamed aside and did not delete (a crash,
/// or an unmount before its thread was done): nothing of them replays, and a mount does not wait for a gigabyte
/// of unlinking before it answers.
pub fn remove_discarded(stage_root: &Path) {
    let Ok(entries) = std::fs::read_dir(stage_root) else {
        return;
    };
    let aside: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".discarded"))
        .map(|e| e.path())
        .collect();
    if aside.is_empty() {
        return;
    }
    let deleting = move || {
        for dir in &aside {
            let _ = std::fs::remove_dir_all(dir);
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("vm0fs-unstage".into())
        .spawn(deleting)
    {
        tracing::warn!(error = %e, "could not start deleting removed staging directories; the next mount does");
    }
}

/// The storage ids that have a journal under `stage_root`.
pub fn staged_volumes(stage_root: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(stage_root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        if let Some(name) = e.file_name().to_str()
            && valid_storage_id(name)
            && e.path().join("journal").is_file()
        {
            out.push(name.to_string());
        }
    }
    out.sort();
    Ok(out)
}
