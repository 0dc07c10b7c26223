//! The core against an in-memory `Vm0Api`: the tree, its contents and its errors, without FUSE or HTTP.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{FileKind, FsConfig, ROOT_INO, Vm0Fs};
use crate::api::models::*;
use crate::api::{ApiError, Download, Vm0Api};
use crate::cache::{ArchiveCache, CacheConfig, ExtractLimits};

const T0: &str = "2026-01-15T10:00:00.000Z";
const V1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const V2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

#[derive(Default)]
struct FakeApi {
    agents: Vec<Agent>,
    runs: Vec<RunDetail>,
    logs: Vec<LogEntry>,
    volumes: Vec<Storage>,
    versions: Vec<StorageVersion>,
    archives: HashMap<String, Vec<u8>>,
    downloads: AtomicUsize,
    offline: std::sync::atomic::AtomicBool,
    run_gets: Mutex<Vec<String>>,
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
        self.run_gets.lock().unwrap().push(id.to_string());
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
            self.volumes.clone()
        } else {
            Vec::new()
        })
    }
    fn find_storage(&self, _kind: StorageKind, name: &str) -> Result<Option<Storage>, ApiError> {
        Ok(self.volumes.iter().find(|s| s.name == name).cloned())
    }
    fn get_storage(&self, _kind: StorageKind, _id: &str) -> Result<StorageDetail, ApiError> {
        Err(not_found("volume"))
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
        let bytes = self
            .archives
            .get(version.unwrap_or(V2))
            .cloned()
            .ok_or_else(|| not_found("version"))?;
        Ok(Download::TarGz(Box::new(Cursor::new(bytes))))
    }
    fn create_storage(&self, _kind: StorageKind, _name: &str) -> Result<StorageDetail, ApiError> {
        Err(not_in_this_fake("POST /v1/volumes"))
    }
    fn upload(
        &self,
        _kind: StorageKind,
        _id: &str,
        _request: &UploadRequest,
    ) -> Result<UploadResponse, ApiError> {
        Err(not_in_this_fake("POST /v1/volumes/:id/upload"))
    }
    fn put_upload(&self, _target: &UploadTarget, _file: &std::path::Path) -> Result<(), ApiError> {
        Err(not_in_this_fake("PUT upload"))
    }
    fn commit(
        &self,
        _kind: StorageKind,
        _id: &str,
        _request: &CommitRequest,
    ) -> Result<StorageVersion, ApiError> {
        Err(not_in_this_fake("POST /v1/volumes/:id/commit"))
    }
}

fn not_in_this_fake(endpoint: &str) -> ApiError {
    ApiError::http(endpoint, 400, None, "not in this fake".into())
}

impl FakeApi {
    fn reachable(&self) -> Result<(), ApiError> {
        if self.offline.load(Ordering::SeqCst) {
            return Err(ApiError::transport(
                "GET /v1/test",
                "connection refused".into(),
            ));
        }
        Ok(())
    }
}

fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn run(id: &str, status: RunStatus) -> RunDetail {
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

fn fake() -> FakeApi {
    let storage = Storage {
        id: "vol-1".into(),
        name: "data".into(),
        current_version_id: Some(V2.into()),
        size: 10,
        file_count: 2,
        created_at: T0.into(),
        updated_at: T0.into(),
    };
    let version = |id: &str| StorageVersion {
        id: id.into(),
        volume_id: Some("vol-1".into()),
        artifact_id: None,
        size: 10,
        file_count: 2,
        message: None,
        created_by: "u".into(),
        created_at: T0.into(),
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
        volumes: vec![storage],
        versions: vec![version(V2), version(V1)],
        archives,
        ..FakeApi::default()
    }
}

struct Harness {
    fs: Vm0Fs,
    api: Arc<FakeApi>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    harness_with_ttl(Duration::from_secs(60))
}

fn harness_with_ttl(metadata_ttl: Duration) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let cache = ArchiveCache::open(CacheConfig {
        dir: dir.path().join("cache"),
        max_bytes: 1 << 30,
        limits: ExtractLimits::default(),
    })
    .unwrap();
    let api = Arc::new(fake());
    let config = FsConfig {
        metadata_ttl,
        uid: 1,
        gid: 1,
        panic_on_lookup: None,
        allow_other: false,
        mountpoint: "/mnt/vm0".into(),
        api_url: "http://fake".into(),
        commit_delay: Duration::ZERO,
        max_staged_bytes: 1 << 30,
    };
    let fs = Vm0Fs::new(api.clone(), Arc::new(cache), config);
    Harness { fs, api, _dir: dir }
}

impl Harness {
    fn path(&self, path: &str) -> Result<u64, i32> {
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            ino = self
                .fs
                .lookup(ino, OsStr::new(part))
                .map_err(|e| e.errno)?
                .ino;
        }
        Ok(ino)
    }

    fn names(&self, path: &str) -> Vec<String> {
        let fh = self.fs.opendir(self.path(path).unwrap()).unwrap();
        let names = self
            .fs
            .readdir(fh, 0)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.name.to_string_lossy().into_owned());
        let names = names.filter(|n| n != "." && n != "..").collect();
        self.fs.releasedir(fh);
        names
    }

    /// The names a READDIRPLUS reply with room for `room` entries takes from the start of listing `fh`.
    fn plus_names(&self, fh: u64, room: usize) -> Vec<String> {
        let mut names = Vec::new();
        self.fs
            .readdirplus(fh, 0, |_, entry, attr| {
                assert_eq!(attr.ino, entry.ino);
                if names.len() == room {
                    return true;
                }
                names.push(entry.name.to_string_lossy().into_owned());
                false
            })
            .unwrap();
        names
    }

    /// The inode number `name` in `parent` has in a listing of `parent` (without looking it up).
    fn listed_ino(&self, parent: u64, name: &str) -> u64 {
        let fh = self.fs.opendir(parent).unwrap();
        let entries = self.fs.readdir(fh, 0).unwrap();
        self.fs.releasedir(fh);
        entries
            .into_iter()
            .find(|(_, e)| e.name == name)
            .map(|(_, e)| e.ino)
            .unwrap()
    }

    fn read(&self, path: &str) -> Vec<u8> {
        let opened = self
            .fs
            .open(self.path(path).unwrap(), libc::O_RDONLY)
            .unwrap();
        let data = self.fs.read(opened.fh, 0, 1 << 20).unwrap();
        self.fs.release(opened.fh);
        data
    }
}

#[test]
fn the_root_holds_the_four_trees() {
    let h = harness();
    assert_eq!(h.names("/"), ["agents", "artifacts", "runs", "volumes"]);
    assert_eq!(h.names("agents"), ["coder"]);
    assert_eq!(h.names("agents/coder"), ["agent.json", "versions.json"]);
    assert_eq!(h.names("runs"), ["new", "latest", "r2", "r1"]);
    assert_eq!(h.names("runs/new"), ["coder"]);
}

#[test]
fn api_files_have_exact_sizes_and_contents() {
    let h = harness();
    for path in [
        "agents/coder/agent.json",
        "runs/r1/status",
        "runs/r1/run.json",
        "runs/r1/logs",
        "runs/r1/output",
    ] {
        let size = h.fs.getattr(h.path(path).unwrap()).unwrap().size;
        assert_eq!(size, h.read(path).len() as u64, "{path}");
    }
    assert_eq!(h.read("runs/r2/status"), b"running\n");
    assert_eq!(h.read("runs/r1/prompt"), b"Summarise\n");
    assert_eq!(h.read("runs/r1/output"), b"all done\n");
    let agent: serde_json::Value =
        serde_json::from_slice(&h.read("agents/coder/agent.json")).unwrap();
    assert_eq!(agent["id"], "a1");
}

#[test]
fn logs_follow_the_cursor_across_pages_without_loss() {
    let h = harness();
    let logs = String::from_utf8(h.read("runs/r1/logs")).unwrap();
    let messages: Vec<_> = logs
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(messages, ["one", "two", "three"]);
}

#[test]
fn output_appears_only_for_terminal_runs() {
    let h = harness();
    assert!(h.names("runs/r1").contains(&"output".to_string()));
    assert!(!h.names("runs/r2").contains(&"output".to_string()));
    assert_eq!(h.path("runs/r2/output"), Err(libc::ENOENT));
}

#[test]
fn a_run_is_reachable_without_listing_runs() {
    let h = harness();
    assert!(h.path("runs/r1/status").is_ok());
    assert_eq!(h.path("runs/nope"), Err(libc::ENOENT));
    assert_eq!(
        h.fs.readlink(h.path("runs/latest").unwrap()).unwrap(),
        b"r2"
    );
}

#[test]
fn volumes_show_the_head_and_pinned_versions() {
    let h = harness();
    assert_eq!(h.names("volumes"), ["data"]);
    assert_eq!(h.names("volumes/data"), ["dir", "empty"]);
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello");
    assert_eq!(h.names("volumes/data@11111111"), ["old.txt"]);
    assert_eq!(h.read("volumes/data@1111111111/old.txt"), b"old");
    assert_eq!(
        h.path("volumes/data@1111"),
        Err(libc::ENOENT),
        "prefix too short"
    );
    assert_eq!(h.path("volumes/data@33333333"), Err(libc::ENOENT));
    let attr =
        h.fs.getattr(h.path("volumes/data/dir/a.txt").unwrap())
            .unwrap();
    assert_eq!(
        (attr.kind, attr.size, attr.perm),
        (FileKind::File, 5, 0o444)
    );
    assert_eq!(
        attr.mtime,
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );
}

#[test]
fn an_archive_is_downloaded_once() {
    let h = harness();
    h.read("volumes/data/dir/a.txt");
    h.names("volumes/data/dir");
    h.read("volumes/data/empty");
    assert_eq!(h.api.downloads.load(Ordering::SeqCst), 1);
}

#[test]
fn xattrs_give_the_ids() {
    let h = harness();
    let ino = h.path("volumes/data").unwrap();
    assert_eq!(
        h.fs.getxattr(ino, OsStr::new("user.vm0.id")).unwrap(),
        b"vol-1"
    );
    assert_eq!(
        h.fs.getxattr(ino, OsStr::new("user.vm0.version")).unwrap(),
        V2.as_bytes()
    );
    assert_eq!(
        h.fs.getxattr(ino, OsStr::new("user.vm0.size")).unwrap(),
        b"10"
    );
    assert_eq!(
        h.fs.listxattr(ino).unwrap(),
        b"user.vm0.id\0user.vm0.version\0user.vm0.size\0"
    );
    let run = h.path("runs/r1").unwrap();
    assert_eq!(
        h.fs.getxattr(run, OsStr::new("user.vm0.id")).unwrap(),
        b"r1"
    );
    assert_eq!(
        h.fs.getxattr(run, OsStr::new("user.other"))
            .unwrap_err()
            .errno,
        libc::ENODATA
    );
}

#[test]
fn writing_is_refused() {
    let h = harness();
    let ino = h.path("runs/r1/status").unwrap();
    assert_eq!(
        h.fs.open(ino, libc::O_WRONLY).unwrap_err().errno,
        libc::EACCES
    );
    assert_eq!(h.fs.refuse_change(ino).errno, libc::EROFS);
}

#[test]
fn names_that_cannot_be_file_names_are_skipped() {
    let mut api = fake();
    let bad = api.agents[0].clone();
    for name in ["", ".", "..", "a/b", "x\0y", "coder"] {
        api.agents.push(Agent {
            name: name.into(),
            ..bad.clone()
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = ArchiveCache::open(CacheConfig {
        dir: dir.path().into(),
        max_bytes: 1 << 20,
        limits: ExtractLimits::default(),
    })
    .unwrap();
    let config = FsConfig {
        metadata_ttl: Duration::from_secs(60),
        uid: 1,
        gid: 1,
        panic_on_lookup: None,
        allow_other: false,
        mountpoint: "/mnt/vm0".into(),
        api_url: "http://fake".into(),
        commit_delay: Duration::ZERO,
        max_staged_bytes: 1 << 30,
    };
    let h = Harness {
        fs: Vm0Fs::new(Arc::new(api), Arc::new(cache), config),
        api: Arc::new(fake()),
        _dir: dir,
    };
    assert_eq!(h.names("agents"), ["coder"]);
}

#[test]
fn listing_runs_does_not_fetch_each_run() {
    let h = harness();
    let fh = h.fs.opendir(h.path("runs").unwrap()).unwrap();
    assert_eq!(h.plus_names(fh, usize::MAX), ["new", "latest", "r2", "r1"]);
    let gets = h.api.run_gets.lock().unwrap().clone();
    assert!(
        gets.is_empty(),
        "the listing answers for every run: {gets:?}"
    );
}

#[test]
fn an_unreachable_api_leaves_what_was_seen_readable() {
    // A zero TTL: every listing is asked again, so only the stale fallback can answer offline.
    let h = harness_with_ttl(Duration::ZERO);
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello");
    assert_eq!(h.names("agents"), ["coder"]);
    h.api.offline.store(true, Ordering::SeqCst);
    assert_eq!(h.read("volumes/data/dir/a.txt"), b"hello");
    assert_eq!(h.names("agents"), ["coder"]);
    assert_eq!(h.path("volumes/data@22222222/empty").map(|_| ()), Ok(()));
}

#[test]
fn api_answers_are_not_replaced_by_stale_values() {
    let h = harness();
    assert_eq!(h.path("runs/nope"), Err(libc::ENOENT));
    assert_eq!(h.path("agents/nope"), Err(libc::ENOENT));
}

#[test]
fn the_control_directory_is_hidden_and_tells_about_the_mount() {
    let h = harness();
    assert!(!h.names("").contains(&".vm0fs".to_string()));
    let status: serde_json::Value = serde_json::from_slice(&h.read(".vm0fs/status")).unwrap();
    assert_eq!(status["mountpoint"], "/mnt/vm0");
    assert_eq!(status["api_url"], "http://fake");
    assert_eq!(status["cache"]["archives"], 0);
    assert_eq!(
        status["cache"]["downloads"].as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn pins_are_set_and_shown_through_the_control_file() {
    let h = harness();
    assert_eq!(h.names(".vm0fs"), ["status", "pins", "sync"]);
    let pins = h.path(".vm0fs/pins").unwrap();
    let opened = h.fs.open(pins, libc::O_WRONLY).unwrap();
    let write = |text: &str| h.fs.write(opened.fh, 0, text.as_bytes(), 1);
    assert_eq!(write("pin volumes/data\n").unwrap(), 17);
    write("pin volumes/data@11111111\n").unwrap();
    assert_eq!(
        h.api.downloads.load(Ordering::SeqCst),
        0,
        "pinning downloads nothing"
    );
    assert_eq!(h.read(".vm0fs/pins"), format!("{V1}\n{V2}\n").into_bytes());
    write("unpin volumes/data\n").unwrap();
    assert_eq!(h.read(".vm0fs/pins"), format!("{V1}\n").into_bytes());
    let status: serde_json::Value = serde_json::from_slice(&h.read(".vm0fs/status")).unwrap();
    assert_eq!(status["cache"]["pinned"], 0, "pinned and cached: none yet");
    assert_eq!(write("pin volumes/nope").unwrap_err().errno, libc::ENOENT);
    assert_eq!(write("get volumes/data").unwrap_err().errno, libc::EINVAL);
    h.fs.release(opened.fh);
}

#[test]
fn an_inode_is_kept_until_the_kernel_forgets_every_lookup() {
    let h = harness();
    let agents = h.path("agents").unwrap();
    assert_eq!(
        h.path("agents"),
        Ok(agents),
        "the same node, the same number"
    );
    h.fs.forget(agents, 1);
    assert_eq!(h.fs.getattr(agents).unwrap().ino, agents, "one lookup left");
    h.fs.forget(agents, 1);
    assert_eq!(h.fs.getattr(agents).unwrap_err().errno, libc::ESTALE);
    assert_eq!(h.fs.opendir(agents).unwrap_err().errno, libc::ESTALE);
    let again = h.path("agents").unwrap();
    assert!(again > agents, "a new number, never a reused one");
    assert_eq!(h.names("agents"), ["coder"]);
}

#[test]
fn forgetting_everything_leaves_only_the_root() {
    let h = harness();
    let before = h.fs.inodes.len();
    let coder = h.path("agents/coder/agent.json").unwrap();
    let agents = h.path("agents").unwrap();
    let agent = h.fs.lookup(agents, OsStr::new("coder")).unwrap().ino;
    assert_eq!(h.fs.inodes.len(), before + 3);
    // agents: looked up twice; agents/coder: twice; agent.json once.
    for (ino, lookups) in [(agents, 2), (agent, 2), (coder, 1), (ROOT_INO, 5)] {
        h.fs.forget(ino, lookups);
    }
    assert_eq!(
        h.fs.inodes.len(),
        1,
        "only the root, which is never forgotten"
    );
    assert_eq!(h.fs.getattr(ROOT_INO).unwrap().ino, ROOT_INO);
    assert_eq!(h.names("/"), ["agents", "artifacts", "runs", "volumes"]);
}

#[test]
fn a_listing_holds_its_entries_until_it_is_closed() {
    let h = harness();
    let runs = h.path("runs").unwrap();
    let baseline = h.fs.inodes.len();
    let r1 = h.listed_ino(runs, "r1");
    assert_eq!(
        h.fs.inodes.len(),
        baseline,
        "closed: the listing gave its entries back"
    );
    assert_eq!(h.fs.getattr(r1).unwrap_err().errno, libc::ESTALE);

    let fh = h.fs.opendir(runs).unwrap();
    assert_eq!(h.fs.inodes.len(), baseline + 4, "new, latest, r2, r1");
    assert_eq!(
        h.plus_names(fh, 2),
        ["new", "latest"],
        "a reply with room for two"
    );
    h.fs.releasedir(fh);
    assert_eq!(
        h.fs.inodes.len(),
        baseline + 2,
        "the two entries the kernel was given stay; the others go"
    );
    let new = h.fs.lookup(runs, OsStr::new("new")).unwrap().ino;
    h.fs.forget(new, 2);
    assert_eq!(h.fs.getattr(new).unwrap_err().errno, libc::ESTALE);
    assert_eq!(h.fs.inodes.len(), baseline + 1, "latest is still held");
}

#[test]
fn a_failed_lookup_or_create_holds_nothing() {
    let h = harness();
    let baseline = h.fs.inodes.len();
    assert_eq!(h.path("runs/r2/output"), Err(libc::ENOENT));
    let runs_new = h.path("runs/new").unwrap();
    let refused = h.fs.create(h.path("runs").unwrap(), OsStr::new("x"), 0o644);
    assert_eq!(refused.unwrap_err().errno, libc::EROFS);
    assert_eq!(
        h.fs.create(runs_new, OsStr::new("nope"), 0o644)
            .unwrap_err()
            .errno,
        libc::ENOENT
    );
    assert_eq!(
        h.fs.inodes.len(),
        baseline + 3,
        "runs, runs/r2 and runs/new: what was found"
    );
}

#[derive(Default)]
struct Recorder(Arc<Mutex<Vec<u64>>>);

impl super::Invalidator for Recorder {
    fn attributes_changed(&self, ino: u64) {
        self.0.lock().unwrap().push(ino);
    }
}

#[test]
fn a_log_that_grows_is_invalidated_only_while_its_inode_is_held() {
    let h = harness();
    let told = Arc::new(Mutex::new(Vec::new()));
    h.fs.set_invalidator(Box::new(Recorder(told.clone())));
    let logs = h.path("runs/r2/logs").unwrap();
    h.fs.logs_changed("r2");
    assert_eq!(*told.lock().unwrap(), [logs]);
    h.fs.forget(logs, 1);
    let held = h.fs.inodes.len();
    h.fs.logs_changed("r2");
    assert_eq!(
        *told.lock().unwrap(),
        [logs],
        "nothing to tell about a forgotten inode"
    );
    assert_eq!(h.fs.inodes.len(), held, "and no number allocated for it");
}
