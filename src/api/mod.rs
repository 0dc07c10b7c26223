//! The VM0 API v1 as vm0fs sees it: wire models, one error type, and the `Vm0Api` trait.
//!
//! The filesystem core depends on the trait, never on HTTP, so that it can be tested against an in-memory
//! implementation. `http::HttpApi` is the real implementation (reqwest blocking over rustls). Lists returned by
//! the trait are complete (all pages followed); the one exception is `run_logs`, which returns one page because
//! logs are followed incrementally with a timestamp cursor.

pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod http;
pub use vm0_api as models;

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use error::{ApiError, ApiErrorKind};
use models::{
    Agent, AgentVersion, CommitRequest, LogEntry, LogQuery, Page, PushCommitRequest,
    PushCommitResponse, PushPrepareRequest, PushPrepareResponse, Run, RunDetail, RunMetrics,
    SseEvent, Storage, StorageDetail, StorageKind, StorageVersion, UploadRequest, UploadResponse,
    UploadTarget,
};

/// A streaming archive download. Never holds the whole archive in memory.
pub enum Download {
    /// The body of `archive.tar.gz` (after any redirect), as it arrives from the network.
    TarGz(Box<dyn Read + Send>),
    /// The oldest download variant (CONTRACT.md 6.5): a list of files, each fetched on its own.
    Files(Vec<DownloadFile>),
}

/// One file of the `files[]` download variant; `open` fetches its bytes (without the API token).
pub struct DownloadFile {
    pub path: String,
    pub size: u64,
    pub open: Box<dyn FnOnce() -> Result<Box<dyn Read + Send>, ApiError> + Send>,
}

/// What a client knows of whether the API can be reached, and what it sent (`vm0fs status` shows it).
#[derive(Debug, Clone, Default)]
pub struct Reachability {
    /// Since when calls to the API are held back because it could not be reached; `None` while it answers.
    pub unreachable_since: Option<SystemTime>,
    pub calls: CallCounts,
}

/// The requests a client sent to the API since it was made (requests to the blob host are not counted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCounts {
    /// Requests sent to the API, each retry included; probes are not.
    pub sent: u64,
    /// Of those, the retries of a call that had failed.
    pub retried: u64,
    /// Calls not sent because the API was out of reach: they failed at once.
    pub held_back: u64,
    /// Requests sent only to learn whether the API answers again.
    pub probes: u64,
}

/// The VM0 API v1 (CONTRACT.md section 2). Every list is complete: implementations follow `next_cursor` to the end.
pub trait Vm0Api: Send + Sync {
    /// `GET /v1/agents`, all pages.
    fn list_agents(&self) -> Result<Vec<Agent>, ApiError>;
    /// `GET /v1/agents?name=`: the agent with that name, if any.
    fn find_agent(&self, name: &str) -> Result<Option<Agent>, ApiError>;
    /// `GET /v1/agents/:id`.
    fn get_agent(&self, id: &str) -> Result<Agent, ApiError>;
    /// `GET /v1/agents/:id/versions`, all pages.
    fn list_agent_versions(&self, agent_id: &str) -> Result<Vec<AgentVersion>, ApiError>;

    /// `GET /v1/runs`, all pages, newest first.
    fn list_runs(&self) -> Result<Vec<Run>, ApiError>;
    /// `GET /v1/runs` from `cursor` (the first page when `None`), the largest page size: one page, newest first.
    fn runs_page(&self, cursor: Option<&str>) -> Result<Page<Run>, ApiError>;
    /// `GET /v1/runs?limit=1`: the newest run, if any.
    fn latest_run(&self) -> Result<Option<Run>, ApiError>;
    /// `POST /v1/runs` with a request body (keys in either casing; sent in the server's). Never retried once the
    /// request may have reached the server.
    fn create_run(&self, body: &serde_json::Value) -> Result<RunDetail, ApiError>;
    /// `GET /v1/runs/:id`.
    fn get_run(&self, id: &str) -> Result<RunDetail, ApiError>;
    /// `POST /v1/runs/:id/cancel`.
    fn cancel_run(&self, id: &str) -> Result<RunDetail, ApiError>;
    /// `GET /v1/runs/:id/logs`: one page.
    fn run_logs(&self, id: &str, query: &LogQuery) -> Result<Page<LogEntry>, ApiError>;
    /// `GET /v1/runs/:id/metrics`.
    fn run_metrics(&self, id: &str) -> Result<RunMetrics, ApiError>;
    /// `GET /v1/runs/:id/events`: the SSE stream, parsed, until the server closes it.
    fn run_events(
        &self,
        id: &str,
        last_event_id: Option<u64>,
    ) -> Result<Box<dyn Iterator<Item = Result<SseEvent, ApiError>> + Send>, ApiError>;

    /// `GET /v1/{volumes|artifacts}`, all pages.
    fn list_storages(&self, kind: StorageKind) -> Result<Vec<Storage>, ApiError>;
    /// The storage with that name (by listing; the API has no name filter here).
    fn find_storage(&self, kind: StorageKind, name: &str) -> Result<Option<Storage>, ApiError>;
    /// `GET /v1/{volumes|artifacts}/:id`.
    fn get_storage(&self, kind: StorageKind, id: &str) -> Result<StorageDetail, ApiError>;
    /// `GET /v1/{volumes|artifacts}/:id/versions`, all pages, newest first.
    fn list_storage_versions(
        &self,
        kind: StorageKind,
        id: &str,
    ) -> Result<Vec<StorageVersion>, ApiError>;
    /// `GET /v1/{volumes|artifacts}/:id/download[?version_id=]`: the archive of a version (head when `None`).
    fn download(
        &self,
        kind: StorageKind,
        id: &str,
        version: Option<&str>,
    ) -> Result<Download, ApiError>;

    /// `POST /v1/{volumes|artifacts}` `{name}` (CONTRACT.md 7.1 step 1). Not sent again once it may have reached
    /// the server: after a lost reply, `find_storage` tells whether the storage exists.
    fn create_storage(&self, kind: StorageKind, name: &str) -> Result<StorageDetail, ApiError>;
    /// `POST /v1/{volumes|artifacts}/:id/upload` (step 2): an upload session with one presigned PUT URL per
    /// declared file. Retried like a read: a session that is never committed is simply forgotten by the server.
    fn upload(
        &self,
        kind: StorageKind,
        id: &str,
        request: &UploadRequest,
    ) -> Result<UploadResponse, ApiError>;
    /// `PUT <upload_url>` with the bytes of `file` (step 3), never with the API token (the URL is presigned, on
    /// another origin). Retried: putting the same bytes twice is harmless. A 403 means the URL expired: the
    /// caller starts a new upload for fresh URLs.
    fn put_upload(&self, target: &UploadTarget, file: &Path) -> Result<(), ApiError>;
    /// `POST /v1/{volumes|artifacts}/:id/commit` (step 4): the new version. Never sent again once it may have
    /// reached the server; after a lost reply the caller reads the head, which is the content hash of what it
    /// uploaded when the commit went through (CONTRACT.md 6.1).
    fn commit(
        &self,
        kind: StorageKind,
        id: &str,
        request: &CommitRequest,
    ) -> Result<StorageVersion, ApiError>;

    /// `POST /api/storages/prepare` (CONTRACT.md 7.2 step 2, the push flow of the platform's CLI): creates the
    /// storage if needed and answers the version the files make, with presigned PUT URLs for its archive and
    /// manifest unless that version exists already. Retried like a read: a prepare that is never committed is
    /// forgotten by the server.
    fn prepare_push(&self, request: &PushPrepareRequest) -> Result<PushPrepareResponse, ApiError>;
    /// `PUT <presigned URL>` of the push flow with the bytes of `file` (the archive or the manifest) as
    /// `content_type`, never with the API token. Retried; a 403 means the URL expired (prepare again).
    fn put_push(&self, url: &str, file: &Path, content_type: &'static str) -> Result<(), ApiError>;
    /// `POST /api/storages/commit` (7.2 step 5): the version becomes the head. Never sent again once it may
    /// have reached the server; after a lost reply the caller reads the head, as after a `/v1` commit.
    fn commit_push(&self, request: &PushCommitRequest) -> Result<PushCommitResponse, ApiError>;

    /// Whether the API can be reached, as far as this client knows, and what it sent. A client that never holds
    /// calls back (the in-memory fake) knows nothing.
    fn reachability(&self) -> Reachability {
        Reachability::default()
    }
}
