//! The publishing half of `FakeApi`: the `/v1` upload, PUT and commit of a volume, and the versions they made,
//! kept with their files so that a test can download them, compare a head with what a mount shows, and publish
//! "from another machine" (`FakeApi::publish_elsewhere`) over the same head.
//!
//! A version id is the content hash the server computes (CONTRACT.md 6.1), so a commit of the head's own files
//! is recognisable: it is counted in `twice`, the write path's "published exactly once" made checkable. Faults a
//! publisher must survive are switches: a commit that goes through while its reply is lost, a head that moves
//! while an upload is under way. The heads themselves live in `FakeApi::volumes`, as the listings show them.

use crate::sync::Locked;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::{FakeApi, T0};
use crate::api::models::*;
use crate::api::{ApiError, Download};

/// A version's files: path → bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// What the fake server keeps of publishing, and its fault switches.
#[derive(Default)]
pub struct Publishing {
    /// The files of each version made here (by a commit or `publish_elsewhere`), by version id.
    versions: Mutex<HashMap<String, Files>>,
    /// The files announced by the open upload session.
    session: Mutex<Vec<UploadFileSpec>>,
    /// The bytes PUT in the open session, by path.
    put: Mutex<Files>,
    /// How many commits went through.
    pub commits: AtomicUsize,
    /// How many upload sessions were opened.
    pub uploads: AtomicUsize,
    /// Commits of the version that is the head already: a publish sent twice. (A version id can come back when
    /// the content goes back to an earlier version's; committing it then moves the head, and is not counted.)
    pub twice: AtomicUsize,
    /// The next commit goes through, and its reply is lost.
    pub lose_next_reply: AtomicBool,
    /// A head another client publishes while the next upload is under way.
    pub head_during_upload: Mutex<Option<String>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.locked()
}

/// The version id of `files` in storage `storage_id`, as the server computes it (CONTRACT.md 6.1).
fn version_id<'a>(storage_id: &str, files: impl Iterator<Item = (&'a str, String)>) -> String {
    let mut lines: Vec<String> = files.map(|(p, sha)| format!("{p}:{sha}")).collect();
    lines.sort();
    let text = format!("storage:{storage_id}\n{}", lines.join("\n"));
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Publishing {
    /// The paths of the files announced by the last upload session.
    pub fn session_paths(&self) -> Vec<String> {
        locked(&self.session)
            .iter()
            .map(|f| f.path.clone())
            .collect()
    }

    /// The files of `version`, when it was made here.
    pub fn files(&self, version: &str) -> Option<Files> {
        locked(&self.versions).get(version).cloned()
    }

    /// Keeps `files` as a version of `storage_id`: its id.
    fn record(&self, storage_id: &str, files: Files) -> String {
        let hashes = files
            .iter()
            .map(|(p, b)| (p.as_str(), hex::encode(Sha256::digest(b))));
        let version = version_id(storage_id, hashes);
        locked(&self.versions).insert(version.clone(), files);
        version
    }
}

impl FakeApi {
    /// An API with one empty volume `name` (id `storage_id`) that has no version yet.
    pub fn with_volume(storage_id: &str, name: &str) -> FakeApi {
        let volume = Storage {
            id: storage_id.into(),
            name: name.into(),
            current_version_id: None,
            size: 0,
            file_count: 0,
            created_at: T0.into(),
            updated_at: T0.into(),
        };
        FakeApi {
            volumes: Mutex::new(vec![volume]),
            ..FakeApi::default()
        }
    }

    /// The head of volume `storage_id` (none without a version, or without such a volume).
    pub fn head(&self, storage_id: &str) -> Option<String> {
        let volumes = locked(&self.volumes);
        let volume = volumes.iter().find(|s| s.id == storage_id)?;
        volume.current_version_id.clone()
    }

    /// Moves the head of volume `storage_id` to `version` (a version not made here counts as one without files).
    pub fn set_head(&self, storage_id: &str, version: &str) {
        let file_count = self.publishing.files(version).map_or(0, |f| f.len() as u64);
        let mut volumes = locked(&self.volumes);
        if let Some(volume) = volumes.iter_mut().find(|s| s.id == storage_id) {
            volume.current_version_id = Some(version.to_string());
            volume.file_count = file_count;
        }
    }

    /// The files of the head of `storage_id` (none without a head, or for a head not made here).
    pub fn head_files(&self, storage_id: &str) -> Files {
        let head = self.head(storage_id);
        head.and_then(|h| self.publishing.files(&h))
            .unwrap_or_default()
    }

    /// Another client publishes `changes` (path → bytes, `None` deletes) over the head of `storage_id`: the new
    /// head's id. A file put where a directory of the head was (or below a file of it) replaces it.
    pub fn publish_elsewhere(
        &self,
        storage_id: &str,
        changes: &[(&str, Option<Vec<u8>>)],
    ) -> String {
        let mut files = self.head_files(storage_id);
        for (path, bytes) in changes {
            match bytes {
                Some(b) => {
                    // As in the other client's directory: a file replaces what was in its way.
                    let below = format!("{path}/");
                    files.retain(|p, _| {
                        !p.starts_with(&below) && !path.starts_with(&format!("{p}/"))
                    });
                    files.insert(path.to_string(), b.clone())
                }
                None => files.remove(*path),
            };
        }
        let version = self.publishing.record(storage_id, files);
        self.set_head(storage_id, &version);
        version
    }

    /// `get_storage`: the volume as listed, with its head.
    pub(super) fn storage_detail(&self, storage_id: &str) -> Option<StorageDetail> {
        let volumes = locked(&self.volumes);
        let s = volumes.iter().find(|s| s.id == storage_id)?;
        Some(StorageDetail {
            id: s.id.clone(),
            name: s.name.clone(),
            current_version_id: s.current_version_id.clone(),
            size: s.size,
            file_count: s.file_count,
            created_at: s.created_at.clone(),
            updated_at: s.updated_at.clone(),
            current_version: None,
        })
    }

    /// `download` of a version made here, as a `.tar.gz` (a version without files has no archive).
    pub(super) fn published_archive(&self, version: &str) -> Option<Download> {
        let files = self.publishing.files(version).filter(|f| !f.is_empty())?;
        let entries: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        let bytes = super::archive(&entries);
        Some(Download::TarGz(Box::new(std::io::Cursor::new(bytes))))
    }

    /// `upload`: opens a session for the announced files.
    pub(super) fn open_session(&self, storage_id: &str, request: &UploadRequest) -> UploadResponse {
        let p = &self.publishing;
        *locked(&p.session) = request.files.clone();
        locked(&p.put).clear();
        p.uploads.fetch_add(1, Ordering::SeqCst);
        if let Some(theirs) = locked(&p.head_during_upload).take() {
            self.set_head(storage_id, &theirs);
        }
        let files = request
            .files
            .iter()
            .map(|f| UploadTarget {
                path: f.path.clone(),
                upload_url: format!("http://blob/{}", f.path),
                upload_id: f.path.clone(),
            })
            .collect();
        UploadResponse {
            upload_session_id: "s".into(),
            files,
            expires_at: T0.into(),
        }
    }

    /// `put_upload`: keeps the file's bytes in the open session.
    pub(super) fn put_bytes(
        &self,
        target: &UploadTarget,
        file: &std::path::Path,
    ) -> Result<(), ApiError> {
        let bytes = std::fs::read(file).map_err(|e| ApiError::transport("PUT", e.to_string()))?;
        locked(&self.publishing.put).insert(target.path.clone(), bytes);
        Ok(())
    }

    /// `commit`: the session's files become the head of `storage_id`.
    pub(super) fn commit_session(&self, storage_id: &str) -> Result<StorageVersion, ApiError> {
        let p = &self.publishing;
        let session = locked(&p.session).clone();
        let hashes = session
            .iter()
            .map(|f| (f.path.as_str(), f.hash.clone().unwrap_or_default()));
        let version = version_id(storage_id, hashes);
        if self.head(storage_id).as_deref() == Some(version.as_str()) {
            p.twice.fetch_add(1, Ordering::SeqCst);
        }
        let put = std::mem::take(&mut *locked(&p.put));
        if put.len() == session.len() {
            p.record(storage_id, put);
        }
        self.set_head(storage_id, &version);
        p.commits.fetch_add(1, Ordering::SeqCst);
        if p.lose_next_reply.swap(false, Ordering::SeqCst) {
            return Err(ApiError::transport(
                "POST commit",
                "the reply was lost".into(),
            ));
        }
        Ok(StorageVersion {
            id: version,
            volume_id: Some(storage_id.to_string()),
            artifact_id: None,
            size: 0,
            file_count: session.len() as u64,
            message: None,
            created_by: "test".into(),
            created_at: T0.into(),
        })
    }
}
