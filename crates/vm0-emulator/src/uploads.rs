//! Uploads in progress (CONTRACT.md 7.1): what `POST …/upload` declared, where the bytes PUT to its presigned
//! URLs land, and what `POST …/commit` checks them against.
//!
//! Sessions live in memory only: a restart forgets unfinished uploads, like expired presigned PUT URLs. The
//! registry is shared by the API side (`storage`: create and commit) and the blob host (`blobhost`: the PUTs),
//! which is why it is a module of its own rather than part of either.

use crate::sync::Locked;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use vm0_api::StorageKind;

/// One declared file of a session.
#[derive(Clone)]
pub(crate) struct Declared {
    pub path: String,
    pub size: u64,
    pub hash: Option<String>,
    pub upload_id: String,
}

#[derive(Clone)]
pub(crate) struct UploadSession {
    pub kind: StorageKind,
    pub storage_id: String,
    pub message: Option<String>,
    pub dir: PathBuf,
    pub files: Vec<Declared>,
}

impl UploadSession {
    /// Where the bytes of a declared file are (or will be) stored.
    pub fn staged(&self, f: &Declared) -> PathBuf {
        self.dir.join(&f.upload_id)
    }
}

#[derive(Default)]
pub(crate) struct Uploads(Mutex<HashMap<String, UploadSession>>);

impl Uploads {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, UploadSession>> {
        self.0.locked()
    }

    pub fn insert(&self, id: String, session: UploadSession) {
        self.lock().insert(id, session);
    }

    /// Where the PUT of `upload_id` in session `id` goes, if both exist.
    pub fn target(&self, id: &str, upload_id: &str) -> Option<PathBuf> {
        let sessions = self.lock();
        let s = sessions.get(id)?;
        let f = s.files.iter().find(|f| f.upload_id == upload_id)?;
        Some(s.staged(f))
    }

    /// Takes the session `id` out if it belongs to that storage (a commit in progress owns it).
    pub fn take(&self, id: &str, kind: StorageKind, storage_id: &str) -> Option<UploadSession> {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(s) if s.kind == kind && s.storage_id == storage_id => sessions.remove(id),
            _ => None,
        }
    }
}
