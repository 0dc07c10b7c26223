//! A server for the stage's publish tests: one volume whose head can be moved, whose commit reply can be lost,
//! and whose head can move while an upload is under way.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use crate::api::fake::FakeApi;
use crate::api::models::*;
use crate::api::{ApiError, Download, Vm0Api};
use crate::stage::manifest::{ManifestFile, version_id};

/// The storage calls of the API in memory, for one volume: its head, the open upload session, the commits;
/// everything else is the empty fake's. A commit can be made to go through while its reply is lost.
#[derive(Default)]
pub struct Storages {
    pub(super) other: FakeApi,
    pub(super) head: std::sync::Mutex<Option<String>>,
    pub(super) session: std::sync::Mutex<Vec<crate::api::models::UploadFileSpec>>,
    pub(super) commits: std::sync::atomic::AtomicUsize,
    pub(super) lose_next_reply: std::sync::atomic::AtomicBool,
    /// A head another client publishes while the next upload is under way.
    pub(super) head_during_upload: std::sync::Mutex<Option<String>>,
    pub(super) uploads: std::sync::atomic::AtomicUsize,
    /// The files of each version with content (path → bytes), for downloads and for the model's checks.
    pub(super) versions: std::sync::Mutex<HashMap<String, Files>>,
    /// The bytes PUT in the open session, by path.
    put: std::sync::Mutex<Files>,
    /// Commits of the version that is the head already: a publish sent twice. (A version id can come back, when
    /// the content goes back to an earlier version's, and committing it then moves the head.)
    pub(super) twice: std::sync::atomic::AtomicUsize,
}

/// A version's files: path → bytes.
pub(super) type Files = BTreeMap<String, Vec<u8>>;

const T0: &str = "2026-01-15T10:00:00.000Z";

impl Storages {
    pub fn head(&self) -> Option<String> {
        self.head.lock().unwrap().clone()
    }
    pub fn set_head(&self, v: &str) {
        *self.head.lock().unwrap() = Some(v.to_string());
    }

    /// The files of the head (none without a head).
    pub fn head_files(&self) -> Files {
        let head = self.head();
        let versions = self.versions.lock().unwrap();
        head.and_then(|h| versions.get(&h).cloned())
            .unwrap_or_default()
    }

    /// Another client publishes `changes` (path → bytes, `None` deletes) over the head: its version id.
    pub fn publish_elsewhere(
        &self,
        storage_id: &str,
        changes: &[(&str, Option<Vec<u8>>)],
    ) -> String {
        let mut files = self.head_files();
        for (path, bytes) in changes {
            match bytes {
                Some(b) => files.insert(path.to_string(), b.clone()),
                None => files.remove(*path),
            };
        }
        let version = self.record(storage_id, files);
        self.set_head(&version);
        version
    }

    /// Keeps `files` as a version: its id (the content hash, as the server computes it).
    fn record(&self, storage_id: &str, files: Files) -> String {
        use sha2::{Digest, Sha256};
        let manifest: Vec<ManifestFile> = files
            .iter()
            .map(|(path, bytes)| ManifestFile {
                path: path.clone(),
                source: Default::default(),
                size: bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(bytes)),
            })
            .collect();
        let version = version_id(storage_id, &manifest);
        self.versions.lock().unwrap().insert(version.clone(), files);
        version
    }
}

impl Vm0Api for Storages {
    fn list_agents(&self) -> Result<Vec<Agent>, ApiError> {
        self.other.list_agents()
    }
    fn find_agent(&self, name: &str) -> Result<Option<Agent>, ApiError> {
        self.other.find_agent(name)
    }
    fn get_agent(&self, id: &str) -> Result<Agent, ApiError> {
        self.other.get_agent(id)
    }
    fn list_agent_versions(&self, id: &str) -> Result<Vec<AgentVersion>, ApiError> {
        self.other.list_agent_versions(id)
    }
    fn list_runs(&self) -> Result<Vec<Run>, ApiError> {
        self.other.list_runs()
    }
    fn runs_page(&self, cursor: Option<&str>) -> Result<Page<Run>, ApiError> {
        self.other.runs_page(cursor)
    }
    fn latest_run(&self) -> Result<Option<Run>, ApiError> {
        self.other.latest_run()
    }
    fn create_run(&self, body: &serde_json::Value) -> Result<RunDetail, ApiError> {
        self.other.create_run(body)
    }
    fn get_run(&self, id: &str) -> Result<RunDetail, ApiError> {
        self.other.get_run(id)
    }
    fn cancel_run(&self, id: &str) -> Result<RunDetail, ApiError> {
        self.other.cancel_run(id)
    }
    fn run_logs(&self, id: &str, q: &LogQuery) -> Result<Page<LogEntry>, ApiError> {
        self.other.run_logs(id, q)
    }
    fn run_metrics(&self, id: &str) -> Result<RunMetrics, ApiError> {
        self.other.run_metrics(id)
    }
    fn run_events(
        &self,
        id: &str,
        last: Option<u64>,
    ) -> Result<Box<dyn Iterator<Item = Result<SseEvent, ApiError>> + Send>, ApiError> {
        self.other.run_events(id, last)
    }
    fn list_storages(&self, kind: StorageKind) -> Result<Vec<Storage>, ApiError> {
        self.other.list_storages(kind)
    }
    fn find_storage(&self, kind: StorageKind, name: &str) -> Result<Option<Storage>, ApiError> {
        self.other.find_storage(kind, name)
    }
    fn get_storage(&self, _kind: StorageKind, id: &str) -> Result<StorageDetail, ApiError> {
        Ok(StorageDetail {
            id: id.to_string(),
            name: "model".into(),
            current_version_id: self.head(),
            size: 0,
            file_count: self.head_files().len() as u64,
            created_at: T0.into(),
            updated_at: T0.into(),
            current_version: None,
        })
    }
    fn list_storage_versions(
        &self,
        kind: StorageKind,
        id: &str,
    ) -> Result<Vec<StorageVersion>, ApiError> {
        self.other.list_storage_versions(kind, id)
    }
    fn download(
        &self,
        kind: StorageKind,
        id: &str,
        version: Option<&str>,
    ) -> Result<Download, ApiError> {
        let files = version.and_then(|v| self.versions.lock().unwrap().get(v).cloned());
        match files {
            Some(files) if !files.is_empty() => {
                let entries: Vec<(&str, &[u8])> = files
                    .iter()
                    .map(|(p, b)| (p.as_str(), b.as_slice()))
                    .collect();
                Ok(Download::TarGz(Box::new(std::io::Cursor::new(
                    crate::api::fake::archive(&entries),
                ))))
            }
            _ => self.other.download(kind, id, version),
        }
    }
    fn create_storage(&self, kind: StorageKind, name: &str) -> Result<StorageDetail, ApiError> {
        self.other.create_storage(kind, name)
    }
    fn upload(
        &self,
        _kind: StorageKind,
        _id: &str,
        request: &UploadRequest,
    ) -> Result<UploadResponse, ApiError> {
        *self.session.lock().unwrap() = request.files.clone();
        self.put.lock().unwrap().clear();
        self.uploads.fetch_add(1, Ordering::SeqCst);
        if let Some(theirs) = self.head_during_upload.lock().unwrap().take() {
            self.set_head(&theirs);
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
        Ok(UploadResponse {
            upload_session_id: "s".into(),
            files,
            expires_at: T0.into(),
        })
    }
    fn put_upload(&self, t: &UploadTarget, file: &std::path::Path) -> Result<(), ApiError> {
        let bytes = std::fs::read(file).map_err(|e| ApiError::transport("PUT", e.to_string()))?;
        self.put.lock().unwrap().insert(t.path.clone(), bytes);
        Ok(())
    }
    fn commit(
        &self,
        _kind: StorageKind,
        id: &str,
        _request: &CommitRequest,
    ) -> Result<StorageVersion, ApiError> {
        let files: Vec<ManifestFile> = self
            .session
            .lock()
            .unwrap()
            .iter()
            .map(|f| ManifestFile {
                path: f.path.clone(),
                source: Default::default(),
                size: f.size,
                sha256: f.hash.clone().unwrap_or_default(),
            })
            .collect();
        let version = version_id(id, &files);
        if self.head().as_deref() == Some(version.as_str()) {
            self.twice.fetch_add(1, Ordering::SeqCst);
        }
        let put = std::mem::take(&mut *self.put.lock().unwrap());
        if put.len() == files.len() {
            self.record(id, put);
        }
        self.set_head(&version);
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.lose_next_reply.swap(false, Ordering::SeqCst) {
            return Err(ApiError::transport(
                "POST commit",
                "the reply was lost".into(),
            ));
        }
        Ok(StorageVersion {
            id: version,
            volume_id: Some(id.to_string()),
            artifact_id: None,
            size: 0,
            file_count: files.len() as u64,
            message: None,
            created_by: "test".into(),
            created_at: T0.into(),
        })
    }
    fn prepare_push(&self, request: &PushPrepareRequest) -> Result<PushPrepareResponse, ApiError> {
        self.other.prepare_push(request)
    }
    fn put_push(
        &self,
        url: &str,
        file: &std::path::Path,
        content_type: &'static str,
    ) -> Result<(), ApiError> {
        self.other.put_push(url, file, content_type)
    }
    fn commit_push(&self, request: &PushCommitRequest) -> Result<PushCommitResponse, ApiError> {
        self.other.commit_push(request)
    }
}
