//! The emulator's state and its persistence.
//!
//! All state is one plain struct behind one mutex: the emulator serves a handful of test clients, so a single
//! lock is simpler than fine-grained ones and can never deadlock. After every mutation the whole state is written
//! to `<data>/state.json` through a temporary file and a rename, so a killed emulator leaves either the old or the
//! new state, never half of one, and a restarted emulator on the same directory carries on where it stopped.
//! Archive bytes are not in the JSON: they are files under `<data>/blobs/`, named by version id.
//! Records keep times as Unix milliseconds (cheap to compare and schedule on) and render ISO-8601 on the way out.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use vm0_api::{LogEntry, MetricPoint, RunStatus, StorageKind};

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct State {
    /// Set once `--seed demo` has filled this directory; seeding again does nothing.
    #[serde(default)]
    pub seeded: Option<String>,
    #[serde(default)]
    pub agents: Vec<AgentRec>,
    #[serde(default)]
    pub runs: Vec<RunRec>,
    #[serde(default)]
    pub volumes: Vec<StorageRec>,
    #[serde(default)]
    pub artifacts: Vec<StorageRec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentRec {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub versions: Vec<AgentVersionRec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentVersionRec {
    pub id: String,
    pub version_number: u64,
    pub config: Value,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunRec {
    pub id: String,
    pub agent_id: String,
    pub agent_name: String,
    pub status: RunStatus,
    pub prompt: String,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub completed_ms: Option<i64>,
    pub error: Option<String>,
    pub output: Option<String>,
    pub checkpoint_id: Option<String>,
    pub session_id: Option<String>,
    pub artifact_name: Option<String>,
    pub artifact_version: Option<String>,
    pub volumes: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Only the names of secrets are kept, as the platform does.
    #[serde(default)]
    pub secret_names: Vec<String>,
    /// The simulator's schedule for this run (milliseconds in each phase) and the end it will reach.
    pub pending_ms: u64,
    pub duration_ms: u64,
    pub outcome: RunStatus,
    /// Log entries in time order, each with its timestamp in milliseconds; timestamps are unique per run.
    #[serde(default)]
    pub logs: Vec<(i64, LogEntry)>,
    #[serde(default)]
    pub metrics: Vec<(i64, MetricPoint)>,
    /// The sequence number of the last agent event.
    #[serde(default)]
    pub last_seq: u64,
}

impl RunRec {
    /// The last time anything was logged or sampled, to schedule the next step and keep timestamps unique.
    pub fn last_log_ms(&self) -> Option<i64> {
        self.logs.last().map(|(ms, _)| *ms)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StorageRec {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub head: Option<String>,
    /// Oldest first.
    pub versions: Vec<VersionRec>,
}

impl StorageRec {
    pub fn head_version(&self) -> Option<&VersionRec> {
        let head = self.head.as_deref()?;
        self.versions.iter().find(|v| v.id == head)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VersionRec {
    pub id: String,
    pub size: u64,
    pub file_count: u64,
    pub message: Option<String>,
    pub created_by: String,
    pub created_ms: i64,
    /// The files of the version (empty for a raw archive added by the control route).
    #[serde(default)]
    pub files: Vec<FileRec>,
    /// Whether `blobs/<id>.tar.gz` exists (false for a version with no files).
    pub has_blob: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileRec {
    pub path: String,
    pub size: u64,
    pub hash: String,
}

impl State {
    pub fn storages(&self, kind: StorageKind) -> &Vec<StorageRec> {
        match kind {
            StorageKind::Volume => &self.volumes,
            StorageKind::Artifact => &self.artifacts,
        }
    }

    pub fn storages_mut(&mut self, kind: StorageKind) -> &mut Vec<StorageRec> {
        match kind {
            StorageKind::Volume => &mut self.volumes,
            StorageKind::Artifact => &mut self.artifacts,
        }
    }

    pub fn storage(&self, kind: StorageKind, id: &str) -> Option<&StorageRec> {
        self.storages(kind).iter().find(|s| s.id == id)
    }

    pub fn storage_by_name(&self, kind: StorageKind, name: &str) -> Option<&StorageRec> {
        self.storages(kind).iter().find(|s| s.name == name)
    }
}

/// The state, its lock, and where it lives on disk.
pub(crate) struct Store {
    state: Mutex<State>,
    dir: PathBuf,
}

impl Store {
    /// Opens (or creates) the data directory and loads `state.json` if there is one.
    pub fn open(dir: &Path) -> Result<Store, String> {
        fs::create_dir_all(dir.join("blobs")).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}; pass a writable --data",
                dir.display()
            )
        })?;
        let path = dir.join("state.json");
        let state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not a valid emulator state ({e}); remove it or pass another --data",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Store {
            state: Mutex::new(state),
            dir: dir.to_path_buf(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, version_id: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{version_id}.tar.gz"))
    }

    /// Writes the state atomically (temp file + rename). Call with the lock held, so writes never interleave.
    /// A failure is logged, not returned: the in-memory state stays authoritative and the next save retries.
    pub fn save(&self, state: &State) {
        let result = (|| -> std::io::Result<()> {
            let tmp = self.dir.join("state.json.tmp");
            let mut f = fs::File::create(&tmp)?;
            serde_json::to_writer(&mut f, state)?;
            f.flush()?;
            drop(f);
            fs::rename(&tmp, self.dir.join("state.json"))
        })();
        if let Err(e) = result {
            tracing::error!(
                "cannot save the emulator state under {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// ISO-8601 with milliseconds and `Z`, as `Date.toISOString()` writes it.
pub(crate) fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses an ISO-8601 timestamp into Unix milliseconds.
pub(crate) fn parse_iso(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
