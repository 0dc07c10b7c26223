//! In-memory stand-ins for the VM0 API, for tests of the layers above it without HTTP.
//!
//! `FakeApi` answers from vectors a test fills (`FakeApi::sample()` is a small platform: one agent, two runs with
//! logs, one volume with two versions), and counts what tests ask about (downloads, run fetches). `FailingApi`
//! wraps any `Vm0Api` and fails the Nth call of a chosen method with a chosen `ApiError`, as mountpoint-s3's
//! failure client does, so the cache, the core and the write path can test their failure handling one failure at
//! a time. Its `publishing` half (`fake/server.rs`) takes `/v1` uploads and commits and keeps each version's
//! files, so the write path is tested against a server whose head moves. Compiled for tests, and for other
//! crates' tests with the `fake` feature (off by default).

mod server;
use crate::sync::Locked;
pub use server::{Files, Publishing};

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::models::*;
use super::{ApiError, Download, Vm0Api};

/// The creation time of everything in `FakeApi::sample()`.
pub const T0: &str = "2026-01-15T10:00:00.000Z";
/// The older version of the sample volume `data` (holds `old.txt`).
pub const V1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
/// The head of the sample volume `data` (holds `dir/a.txt` and `empty`).
pub const V2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// An API held in memory. Only volumes are stored (`artifacts/` lists nothing); `create_run`, `create_storage`
/// and the push flow refuse (400).
#[derive(Default)]
pub struct FakeApi {
    pub agents: Vec<Agent>,
    pub runs: Vec<RunDetail>,
    /// The logs of every run.
    pub logs: Vec<LogEntry>,
    /// Behind a lock so that a test can move a head after the mount saw it.
    pub volumes: Mutex<Vec<Storage>>,
    /// The versions of every volume.
    pub versions: Vec<StorageVersion>,
    /// The `.tar.gz` of each version id.
    pub archives: HashMap<String, Vec<u8>>,
    /// How many downloads were started.
    pub downloads: AtomicUsize,
    /// Listings fail as a connection refused would.
    pub offline: AtomicBool,
    /// The ids of every `get_run`, in order.
    pub run_gets: Mutex<Vec<String>>,
    /// How many runs a page of `runs_page` holds (its cursor is an index); 0: one page holds them all.
    pub runs_page_size: usize,
    /// How many pages of runs were asked for.
    pub runs_pages: AtomicUsize,
    /// The versions published through this fake, and the publishing faults to inject.
    pub publishing: Publishing,
}

fn not_found(what: &str) -> ApiError {
    ApiError::http("GET /v1/test", 404, None, format!("No such {what}"))
}

fn summary(run: &RunDetail) -> Run {
    Run {
        id: run.id.clone(),
        agent_id: run.agent_id.clone(),
        agent_name: run.agent_name.clone(),
        status: run.status,
        prompt: run.prompt.clone(),
        created_at: run.created_at.clone(),
        started_at: run.started_at.clone(),
        completed_at: run.completed_at.clone(),
    }
}

impl FakeApi {
    /// One agent `coder`; runs `r2` (running) and `r1` (completed); three log entries; the volume `data`
    /// (`vol-1`) at `V2` with the older `V1`.
    pub fn sample() -> FakeApi {
        let storage = Storage {
            id: "vol-1".into(),
            name: "data".into(),
            current_version_id: Some(V2.into()),
            size: 10,
            file_count: 2,
            created_at: T0.into(),
            updated_at: T0.into(),
        };
        let log = |ts: &str, msg: &str| LogEntry {
            timestamp: ts.into(),
            kind: "system".into(),
            level: "info".into(),
            message: msg.into(),
            metadata: None,
        };
        let mut archives = HashMap::new();
        archives.insert(V1.to_string(), archive(&[("old.txt", b"old")]));
        archives.insert(
            V2.to_string(),
            archive(&[("dir/a.txt", b"hello"), ("empty", b"")]),
        );
        FakeApi {
            agents: vec![Agent {
                id: "a1".into(),
                name: "coder".into(),
                current_version_id: None,
                created_at: T0.into(),
                updated_at: T0.into(),
                config: None,
            }],
            runs: vec![
                run("r2", RunStatus::Running),
                run("r1", RunStatus::Completed),
            ],
            logs: vec![
                log("2026-01-15T10:00:01.000Z", "one"),
                log("2026-01-15T10:00:02.000Z", "two"),
                log("2026-01-15T10:00:03.000Z", "three"),
            ],
            volumes: Mutex::new(vec![storage]),
            versions: vec![volume_version(V2), volume_version(V1)],
            archives,
            ..FakeApi::default()
        }
    }

    fn reachable(&self) -> Result<(), ApiError> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(ApiError::transport(
                "GET /v1/test",
                "connection refused".into(),
            ));
        }
        Ok(())
    }

    fn volumes(&self) -> Vec<Storage> {
        self.volumes.locked().clone()
    }
}

/// A version of the sample volume `vol-1`, with two files.
pub fn volume_version(id: &str) -> StorageVersion {
    StorageVersion {
        id: id.into(),
        volume_id: Some("vol-1".into()),
        artifact_id: None,
        size: 10,
        file_count: 2,
        message: None,
        created_by: "u".into(),
        created_at: T0.into(),
    }
}

/// A run of the agent `coder` with the prompt `Summarise`.
pub fn run(id: &str, status: RunStatus) -> RunDetail {
    RunDetail {
        id: id.into(),
        agent_id: "a1".into(),
        agent_name: "coder".into(),
        status,
        prompt: "Summarise".into(),
        created_at: T0.into(),
        started_at: None,
        completed_at: None,
        error: None,
        execution_time_ms: None,
        checkpoint_id: None,
        session_id: None,
        artifact_name: None,
        artifact_version: None,
        volumes: None,
        output: None,
    }
}

/// A `.tar.gz` of regular files, mode 0644, all dated 2023-11-14 (1 700 000 000).
pub fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        let appended = builder.append_data(&mut header, path, *data);
        assert!(
            appended.is_ok(),
            "building an archive in memory: {appended:?}"
        );
    }
    let gz = builder.into_inner().and_then(|gz| gz.finish());
    gz.unwrap_or_else(|e| panic!("building an archive in memory: {e}"))
}

impl Vm0Api for FakeApi {
    fn list_agents(&self) -> Result<Vec<Agent>, ApiError> {
        self.reachable()?;
        Ok(self.agents.clone())
    }
    fn find_agent(&self, name: &str) -> Result<Option<Agent>, ApiError> {
        Ok(self.agents.iter().find(|a| a.name == name).cloned())
    }
    fn get_agent(&self, id: &str) -> Result<Agent, ApiError> {
        self.agents
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| not_found("agent"))
    }
    fn list_agent_versions(&self, agent_id: &str) -> Result<Vec<AgentVersion>, ApiError> {
        Ok(vec![AgentVersion {
            id: "av1".into(),
            agent_id: agent_id.into(),
            version_number: 1,
            config: serde_json::json!({"model": "x"}),
            created_at: T0.into(),
        }])
    }
    fn list_runs(&self) -> Result<Vec<Run>, ApiError> {
        Ok(self.runs.iter().map(summary).collect())
    }
    fn runs_page(&self, cursor: Option<&str>) -> Result<Page<Run>, ApiError> {
        self.runs_pages.fetch_add(1, Ordering::SeqCst);
        let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        let size = match self.runs_page_size {
            0 => self.runs.len(),
            n => n,
        };
        let end = start.saturating_add(size).min(self.runs.len());
        let has_more = end < self.runs.len();
        Ok(Page {
            data: self.runs[start.min(end)..end].iter().map(summary).collect(),
            pagination: Pagination {
                has_more,
                next_cursor: has_more.then(|| end.to_string()),
            },
        })
    }
    fn latest_run(&self) -> Result<Option<Run>, ApiError> {
        Ok(self.runs.first().map(summary))
    }
    fn create_run(&self, _body: &serde_json::Value) -> Result<RunDetail, ApiError> {
        Err(ApiError::http(
            "POST /v1/runs",
            400,
            None,
            "not in this fake".into(),
        ))
    }
    fn get_run(&self, id: &str) -> Result<RunDetail, ApiError> {
        self.run_gets.locked().push(id.to_string());
        self.runs
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| not_found("run"))
    }
    fn cancel_run(&self, _id: &str) -> Result<RunDetail, ApiError> {
        Err(not_found("run"))
    }
    fn run_logs(&self, _id: &str, query: &LogQuery) -> Result<Page<LogEntry>, ApiError> {
        self.reachable()?;
        // Two entries a page, with the timestamp cursor of CONTRACT.md 4.6.
        let rest: Vec<_> = self
            .logs
            .iter()
            .filter(|e| query.cursor.as_ref().is_none_or(|c| e.timestamp > *c))
            .cloned()
            .collect();
        let has_more = rest.len() > 2;
        let data: Vec<_> = rest.into_iter().take(2).collect();
        let next_cursor = data.last().map(|e| e.timestamp.clone());
        Ok(Page {
            data,
            pagination: Pagination {
                has_more,
                next_cursor,
            },
        })
    }
    fn run_metrics(&self, _id: &str) -> Result<RunMetrics, ApiError> {
        Ok(RunMetrics::default())
    }
    fn run_events(
        &self,
        _id: &str,
        _last: Option<u64>,
    ) -> Result<Box<dyn Iterator<Item = Result<SseEvent, ApiError>> + Send>, ApiError> {
        let events = vec![Ok(SseEvent::Complete {
            status: RunStatus::Completed,
            output: Some("all done".into()),
            error: None,
        })];
        Ok(Box::new(events.into_iter()))
    }
    fn list_storages(&self, kind: StorageKind) -> Result<Vec<Storage>, ApiError> {
        self.reachable()?;
        Ok(if kind == StorageKind::Volume {
            self.volumes()
        } else {
            Vec::new()
        })
    }
    fn find_storage(&self, _kind: StorageKind, name: &str) -> Result<Option<Storage>, ApiError> {
        Ok(self.volumes().into_iter().find(|s| s.name == name))
    }
    fn get_storage(&self, _kind: StorageKind, id: &str) -> Result<StorageDetail, ApiError> {
        self.storage_detail(id).ok_or_else(|| not_found("volume"))
    }
    fn list_storage_versions(
        &self,
        _kind: StorageKind,
        _id: &str,
    ) -> Result<Vec<StorageVersion>, ApiError> {
        self.reachable()?;
        Ok(self.versions.clone())
    }
    fn download(
        &self,
        _kind: StorageKind,
        _id: &str,
        version: Option<&str>,
    ) -> Result<Download, ApiError> {
        self.downloads.fetch_add(1, Ordering::SeqCst);
        let version = version.unwrap_or(V2);
        if let Some(bytes) = self.archives.get(version) {
            return Ok(Download::TarGz(Box::new(Cursor::new(bytes.clone()))));
        }
        self.published_archive(version)
            .ok_or_else(|| not_found("version"))
    }
    fn create_storage(&self, _kind: StorageKind, _name: &str) -> Result<StorageDetail, ApiError> {
        Err(not_in_this_fake("POST /v1/volumes"))
    }
    fn upload(
        &self,
        _kind: StorageKind,
        id: &str,
        request: &UploadRequest,
    ) -> Result<UploadResponse, ApiError> {
        Ok(self.open_session(id, request))
    }
    fn put_upload(&self, target: &UploadTarget, file: &std::path::Path) -> Result<(), ApiError> {
        self.put_bytes(target, file)
    }
    fn commit(
        &self,
        _kind: StorageKind,
        id: &str,
        _request: &CommitRequest,
    ) -> Result<StorageVersion, ApiError> {
        self.commit_session(id)
    }
    fn prepare_push(&self, _request: &PushPrepareRequest) -> Result<PushPrepareResponse, ApiError> {
        Err(not_in_this_fake("POST /api/storages/prepare"))
    }
    fn put_push(
        &self,
        _url: &str,
        _file: &std::path::Path,
        _content_type: &'static str,
    ) -> Result<(), ApiError> {
        Err(not_in_this_fake("PUT push"))
    }
    fn commit_push(&self, _request: &PushCommitRequest) -> Result<PushCommitResponse, ApiError> {
        Err(not_in_this_fake("POST /api/storages/commit"))
    }
}

/// The push flow and new volumes are tested against the emulator (tests/api_client.rs, tests/writes.rs).
fn not_in_this_fake(endpoint: &str) -> ApiError {
    ApiError::http(endpoint, 400, None, "not in this fake".into())
}

/// A method of `Vm0Api`, to choose which calls `FailingApi` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    ListAgents,
    FindAgent,
    GetAgent,
    ListAgentVersions,
    ListRuns,
    LatestRun,
    CreateRun,
    GetRun,
    CancelRun,
    RunLogs,
    RunMetrics,
    RunEvents,
    ListStorages,
    FindStorage,
    GetStorage,
    ListStorageVersions,
    Download,
    CreateStorage,
    Upload,
    PutUpload,
    Commit,
    PreparePush,
    PutPush,
    CommitPush,
}

/// One planned failure: the `nth` call (from 1) of `method` returns `error`.
struct Planned {
    method: Method,
    nth: usize,
    error: ApiError,
}

/// Any `Vm0Api`, with chosen calls failing. Calls that no plan names go through to the inner API.
pub struct FailingApi {
    inner: Arc<dyn Vm0Api>,
    planned: Mutex<Vec<Planned>>,
    calls: Mutex<HashMap<Method, usize>>,
}

impl FailingApi {
    pub fn new(inner: Arc<dyn Vm0Api>) -> Self {
        FailingApi {
            inner,
            planned: Mutex::new(Vec::new()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the `nth` call (counting from 1, calls already made included) of `method` fail with `error`.
    pub fn fail(self, method: Method, nth: usize, error: ApiError) -> Self {
        self.planned.locked().push(Planned { method, nth, error });
        self
    }

    /// How many times `method` was called so far.
    pub fn calls(&self, method: Method) -> usize {
        let calls = self.calls.locked();
        calls.get(&method).copied().unwrap_or(0)
    }

    /// Counts a call of `method` and gives the planned error for it, if any.
    fn call(&self, method: Method) -> Result<(), ApiError> {
        let nth = {
            let mut calls = self.calls.locked();
            let count = calls.entry(method).or_insert(0);
            *count += 1;
            *count
        };
        let planned = self.planned.locked();
        match planned.iter().find(|p| p.method == method && p.nth == nth) {
            Some(p) => Err(p.error.clone()),
            None => Ok(()),
        }
    }
}

impl Vm0Api for FailingApi {
    fn list_agents(&self) -> Result<Vec<Agent>, ApiError> {
        self.call(Method::ListAgents)?;
        self.inner.list_agents()
    }
    fn find_agent(&self, name: &str) -> Result<Option<Agent>, ApiError> {
        self.call(Method::FindAgent)?;
        self.inner.find_agent(name)
    }
    fn get_agent(&self, id: &str) -> Result<Agent, ApiError> {
        self.call(Method::GetAgent)?;
        self.inner.get_agent(id)
    }
    fn list_agent_versions(&self, agent_id: &str) -> Result<Vec<AgentVersion>, ApiError> {
        self.call(Method::ListAgentVersions)?;
        self.inner.list_agent_versions(agent_id)
    }
    fn list_runs(&self) -> Result<Vec<Run>, ApiError> {
        self.call(Method::ListRuns)?;
        self.inner.list_runs()
    }
    fn runs_page(&self, cursor: Option<&str>) -> Result<Page<Run>, ApiError> {
        self.call(Method::ListRuns)?;
        self.inner.runs_page(cursor)
    }
    fn latest_run(&self) -> Result<Option<Run>, ApiError> {
        self.call(Method::LatestRun)?;
        self.inner.latest_run()
    }
    fn create_run(&self, body: &serde_json::Value) -> Result<RunDetail, ApiError> {
        self.call(Method::CreateRun)?;
        self.inner.create_run(body)
    }
    fn get_run(&self, id: &str) -> Result<RunDetail, ApiError> {
        self.call(Method::GetRun)?;
        self.inner.get_run(id)
    }
    fn cancel_run(&self, id: &str) -> Result<RunDetail, ApiError> {
        self.call(Method::CancelRun)?;
        self.inner.cancel_run(id)
    }
    fn run_logs(&self, id: &str, query: &LogQuery) -> Result<Page<LogEntry>, ApiError> {
        self.call(Method::RunLogs)?;
        self.inner.run_logs(id, query)
    }
    fn run_metrics(&self, id: &str) -> Result<RunMetrics, ApiError> {
        self.call(Method::RunMetrics)?;
        self.inner.run_metrics(id)
    }
    fn run_events(
        &self,
        id: &str,
        last_event_id: Option<u64>,
    ) -> Result<Box<dyn Iterator<Item = Result<SseEvent, ApiError>> + Send>, ApiError> {
        self.call(Method::RunEvents)?;
        self.inner.run_events(id, last_event_id)
    }
    fn list_storages(&self, kind: StorageKind) -> Result<Vec<Storage>, ApiError> {
        self.call(Method::ListStorages)?;
        self.inner.list_storages(kind)
    }
    fn find_storage(&self, kind: StorageKind, name: &str) -> Result<Option<Storage>, ApiError> {
        self.call(Method::FindStorage)?;
        self.inner.find_storage(kind, name)
    }
    fn get_storage(&self, kind: StorageKind, id: &str) -> Result<StorageDetail, ApiError> {
        self.call(Method::GetStorage)?;
        self.inner.get_storage(kind, id)
    }
    fn list_storage_versions(
        &self,
        kind: StorageKind,
        id: &str,
    ) -> Result<Vec<StorageVersion>, ApiError> {
        self.call(Method::ListStorageVersions)?;
        self.inner.list_storage_versions(kind, id)
    }
    fn download(
        &self,
        kind: StorageKind,
        id: &str,
        version: Option<&str>,
    ) -> Result<Download, ApiError> {
        self.call(Method::Download)?;
        self.inner.download(kind, id, version)
    }
    fn create_storage(&self, kind: StorageKind, name: &str) -> Result<StorageDetail, ApiError> {
        self.call(Method::CreateStorage)?;
        self.inner.create_storage(kind, name)
    }
    fn upload(
        &self,
        kind: StorageKind,
        id: &str,
        request: &UploadRequest,
    ) -> Result<UploadResponse, ApiError> {
        self.call(Method::Upload)?;
        self.inner.upload(kind, id, request)
    }
    fn put_upload(&self, target: &UploadTarget, file: &std::path::Path) -> Result<(), ApiError> {
        self.call(Method::PutUpload)?;
        self.inner.put_upload(target, file)
    }
    fn commit(
        &self,
        kind: StorageKind,
        id: &str,
        request: &CommitRequest,
    ) -> Result<StorageVersion, ApiError> {
        self.call(Method::Commit)?;
        self.inner.commit(kind, id, request)
    }
    fn prepare_push(&self, request: &PushPrepareRequest) -> Result<PushPrepareResponse, ApiError> {
        self.call(Method::PreparePush)?;
        self.inner.prepare_push(request)
    }
    fn put_push(
        &self,
        url: &str,
        file: &std::path::Path,
        content_type: &'static str,
    ) -> Result<(), ApiError> {
        self.call(Method::PutPush)?;
        self.inner.put_push(url, file, content_type)
    }
    fn commit_push(&self, request: &PushCommitRequest) -> Result<PushCommitResponse, ApiError> {
        self.call(Method::CommitPush)?;
        self.inner.commit_push(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_planned_call_fails() {
        let refused = ApiError::http("GET /v1/agents", 403, None, "no".into());
        let api = FailingApi::new(Arc::new(FakeApi::sample())).fail(Method::ListAgents, 2, refused);
        assert!(api.list_agents().is_ok());
        assert_eq!(api.list_agents().unwrap_err().status, Some(403));
        assert!(api.list_agents().is_ok());
        assert!(api.list_runs().is_ok());
        assert_eq!(api.calls(Method::ListAgents), 3);
        assert_eq!(api.calls(Method::GetRun), 0);
    }
}
