//! The emulator's state and its persistence in SQLite.
//!
//! All state is one plain struct behind one mutex: the emulator serves a handful of test clients, so a single
//! lock is simpler than fine-grained ones and can never deadlock, and every read is served from memory. Each
//! change is written through at once as the one row it touched (a run, an agent, a storage, a version) to
//! `<data>/state.sqlite` in WAL mode, so a change costs one small write however many runs and versions exist, a
//! batch (the generators, the seed) is one transaction, and a killed emulator leaves every committed row behind:
//! a restart on the same directory loads them and carries on. Rows hold the records as JSON (the records are the
//! schema; nothing queries inside them) and load in insertion order, which the lists' tie-breaks rely on.
//! Archive bytes are not in the database: they are files under `<data>/blobs/`, named by version id.
//! Records keep times as Unix milliseconds (cheap to compare and schedule on) and render ISO-8601 on the way out.
//! Lock order: the state, then the database.

use crate::sync::Locked;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
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

/// The state, its lock, and the database it is written through to.
pub(crate) struct Store {
    state: Mutex<State>,
    db: Mutex<Connection>,
    dir: PathBuf,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS storages (id TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS versions (
        storage_id TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (storage_id, id));
";

/// A storage row: the record without its versions (they have rows of their own).
#[derive(Serialize, Deserialize)]
struct StorageRow {
    id: String,
    name: String,
    created_ms: i64,
    updated_ms: i64,
    head: Option<String>,
}

fn kind_key(kind: StorageKind) -> &'static str {
    kind.plural()
}

impl Store {
    /// Opens (or creates) the data directory and its database, and loads every row.
    pub fn open(dir: &Path) -> Result<Store, String> {
        fs::create_dir_all(dir.join("blobs")).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}; pass a writable --data",
                dir.display()
            )
        })?;
        if dir.join("state.json").exists() && !dir.join("state.sqlite").exists() {
            tracing::warn!(
                "{} holds state.json, the state of an older emulator, which this one does not read: \
                 starting empty (remove the directory to silence this)",
                dir.display()
            );
        }
        let path = dir.join("state.sqlite");
        let unusable = |e: rusqlite::Error| {
            format!(
                "{} is not a usable emulator database ({e}); remove it or pass another --data",
                path.display()
            )
        };
        let db = Connection::open(&path).map_err(unusable)?;
        db.execute_batch(SCHEMA).map_err(unusable)?;
        let state = load(&db).map_err(unusable)?;
        Ok(Store {
            state: Mutex::new(state),
            db: Mutex::new(db),
            dir: dir.to_path_buf(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, version_id: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{version_id}.tar.gz"))
    }

    /// Writes rows in one transaction. Call with the state lock held, so writes follow the order of changes.
    /// A failure is logged, not returned: the in-memory state stays authoritative for this process.
    pub fn write(&self, rows: &[Row<'_>]) {
        let mut db = self.db.locked();
        let result = (|| -> rusqlite::Result<()> {
            let tx = db.transaction()?;
            for row in rows {
                write_row(&tx, row)?;
            }
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::error!(
                "cannot save the emulator state under {}: {e}",
                self.dir.display()
            );
        }
    }

    /// Writes the whole state in one transaction (the seed).
    pub fn write_all(&self, st: &State) {
        let mut rows: Vec<Row<'_>> = Vec::new();
        if let Some(at) = &st.seeded {
            rows.push(Row::Seeded(at));
        }
        rows.extend(st.agents.iter().map(Row::Agent));
        rows.extend(st.runs.iter().map(Row::Run));
        for kind in [StorageKind::Volume, StorageKind::Artifact] {
            for s in st.storages(kind) {
                rows.push(Row::Storage(kind, s));
                rows.extend(s.versions.iter().map(|v| Row::Version(&s.id, v)));
            }
        }
        self.write(&rows);
    }
}

/// One row to write: a record that was added or changed, or a storage that was deleted.
pub(crate) enum Row<'a> {
    Seeded(&'a str),
    Agent(&'a AgentRec),
    Run(&'a RunRec),
    /// The storage itself (name, head, times), not its versions.
    Storage(StorageKind, &'a StorageRec),
    Version(&'a str, &'a VersionRec),
    DeletedStorage(&'a str),
}

fn body<T: Serialize>(record: &T) -> rusqlite::Result<String> {
    serde_json::to_string(record).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn write_row(tx: &rusqlite::Transaction<'_>, row: &Row<'_>) -> rusqlite::Result<()> {
    // `ON CONFLICT DO UPDATE` keeps the rowid, so a changed record keeps its place in the load order.
    match row {
        Row::Seeded(at) => tx.execute(
            "INSERT INTO meta (key, value) VALUES ('seeded', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![at],
        ),
        Row::Agent(a) => tx.execute(
            "INSERT INTO agents (id, body) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            params![a.id, body(a)?],
        ),
        Row::Run(r) => tx.execute(
            "INSERT INTO runs (id, body) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            params![r.id, body(r)?],
        ),
        Row::Storage(kind, s) => {
            let row = StorageRow {
                id: s.id.clone(),
                name: s.name.clone(),
                created_ms: s.created_ms,
                updated_ms: s.updated_ms,
                head: s.head.clone(),
            };
            tx.execute(
                "INSERT INTO storages (id, kind, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                params![s.id, kind_key(*kind), body(&row)?],
            )
        }
        Row::Version(storage_id, v) => tx.execute(
            "INSERT INTO versions (storage_id, id, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (storage_id, id) DO UPDATE SET body = excluded.body",
            params![storage_id, v.id, body(v)?],
        ),
        Row::DeletedStorage(id) => {
            tx.execute("DELETE FROM versions WHERE storage_id = ?1", params![id])?;
            tx.execute("DELETE FROM storages WHERE id = ?1", params![id])
        }
    }
    .map(|_| ())
}

fn rows<T: for<'de> Deserialize<'de>>(
    db: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = db.prepare(sql)?;
    let texts = stmt
        .query_map(args, |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    texts
        .iter()
        .map(|t| {
            serde_json::from_str(t).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
        })
        .collect()
}

fn load(db: &Connection) -> rusqlite::Result<State> {
    let seeded = db
        .query_row("SELECT value FROM meta WHERE key = 'seeded'", [], |r| {
            r.get::<_, String>(0)
        })
        .optional()?;
    let mut st = State {
        seeded,
        agents: rows(db, "SELECT body FROM agents ORDER BY rowid", [])?,
        runs: rows(db, "SELECT body FROM runs ORDER BY rowid", [])?,
        ..State::default()
    };
    for kind in [StorageKind::Volume, StorageKind::Artifact] {
        let storages: Vec<StorageRow> = rows(
            db,
            "SELECT body FROM storages WHERE kind = ?1 ORDER BY rowid",
            params![kind_key(kind)],
        )?;
        for s in storages {
            let versions = rows(
                db,
                "SELECT body FROM versions WHERE storage_id = ?1 ORDER BY rowid",
                params![s.id],
            )?;
            st.storages_mut(kind).push(StorageRec {
                id: s.id,
                name: s.name,
                created_ms: s.created_ms,
                updated_ms: s.updated_ms,
                head: s.head,
                versions,
            });
        }
    }
    Ok(st)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(name: &str) -> StorageRec {
        StorageRec {
            id: new_id(),
            name: name.into(),
            created_ms: 1,
            updated_ms: 1,
            head: None,
            versions: Vec::new(),
        }
    }

    fn version(id: &str) -> VersionRec {
        VersionRec {
            id: id.into(),
            size: 0,
            file_count: 0,
            message: None,
            created_by: "u".into(),
            created_ms: 2,
            files: Vec::new(),
            has_blob: false,
        }
    }

    #[test]
    fn rows_written_one_by_one_come_back_in_insertion_order_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut b, c) = (storage("a"), storage("b"), storage("c"));
        {
            let store = Store::open(dir.path()).unwrap();
            for s in [&a, &b, &c] {
                store.write(&[Row::Storage(StorageKind::Volume, s)]);
            }
            let (v1, v2) = (version("v1"), version("v2"));
            store.write(&[Row::Version(&b.id, &v1), Row::Version(&b.id, &v2)]);
            // A change rewrites the row in place: `b` keeps its position.
            b.head = Some("v2".into());
            store.write(&[Row::Storage(StorageKind::Volume, &b)]);
            store.write(&[Row::DeletedStorage(&a.id)]);
        }
        let store = Store::open(dir.path()).unwrap();
        let st = store.lock();
        let names: Vec<&str> = st.volumes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
        assert!(st.artifacts.is_empty());
        let b = &st.volumes[0];
        assert_eq!(b.head.as_deref(), Some("v2"));
        let ids: Vec<&str> = b.versions.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["v1", "v2"]);
    }
}
