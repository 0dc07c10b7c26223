//! Wire models of the VM0 API v1 (CONTRACT.md), shared by the client and the emulator.
//!
//! The API spoke snake_case until 2026-01-27 and camelCase after (CONTRACT.md Part 1 item 1, section 9), so every
//! model deserialises both: fields are snake_case in Rust and carry a serde `alias` for the camelCase name.
//! Serialisation is always snake_case; [`recase_keys`] turns a serialised value into the other casing, skipping
//! the free-form maps whose keys belong to the user (`variables`, `volumes`, `secrets`, `metadata`, `config`).
//! Unknown fields are ignored everywhere, so a newer server does not break an older client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The casing a server speaks. Learned by the client from its first list response; chosen by a flag in the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Casing {
    #[default]
    Snake,
    Camel,
}

impl Casing {
    /// The name of a snake_case key in this casing (`version_id` → `versionId` for camel).
    pub fn key(self, snake: &str) -> String {
        match self {
            Casing::Snake => snake.to_string(),
            Casing::Camel => snake_to_camel(snake),
        }
    }
}

fn snake_to_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn camel_to_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Keys whose values are maps owned by the user (volume names, variable names, agent event data): never recased.
const FREE_FORM_KEYS: &[&str] = &["variables", "volumes", "secrets", "metadata", "config"];

/// Rewrites the object keys of `value` into `casing`, recursively, except inside free-form maps.
/// The `error` object of an error body keeps its keys in both casings, as the API does.
pub fn recase_keys(value: Value, casing: Casing) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let free = FREE_FORM_KEYS.contains(&k.as_str())
                        || FREE_FORM_KEYS.contains(&camel_to_snake(&k).as_str());
                    let key = match casing {
                        Casing::Snake => camel_to_snake(&k),
                        Casing::Camel => snake_to_camel(&k),
                    };
                    let v = if free { v } else { recase_keys(v, casing) };
                    (key, v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| recase_keys(v, casing)).collect())
        }
        other => other,
    }
}

/// `pagination` of every list (CONTRACT.md 1.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pagination {
    #[serde(alias = "hasMore")]
    pub has_more: bool,
    #[serde(alias = "nextCursor", default)]
    pub next_cursor: Option<String>,
}

/// One page of a list: `{data, pagination}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub pagination: Pagination,
}

/// An agent (CONTRACT.md 3.1, 3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    pub name: String,
    #[serde(alias = "currentVersionId", default)]
    pub current_version_id: Option<String>,
    #[serde(alias = "createdAt")]
    pub created_at: String,
    #[serde(alias = "updatedAt")]
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

/// An agent version (CONTRACT.md 3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentVersion {
    pub id: String,
    #[serde(alias = "agentId")]
    pub agent_id: String,
    #[serde(alias = "versionNumber")]
    pub version_number: u64,
    #[serde(default)]
    pub config: Value,
    #[serde(alias = "createdAt")]
    pub created_at: String,
}

/// Run status (CONTRACT.md 4.1). The last four are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Timeout,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Timeout,
        RunStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Timeout => "timeout",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A run as it appears in `GET /v1/runs` (CONTRACT.md 4.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    #[serde(alias = "agentId", default)]
    pub agent_id: String,
    #[serde(alias = "agentName", default)]
    pub agent_name: String,
    pub status: RunStatus,
    #[serde(default)]
    pub prompt: String,
    #[serde(alias = "createdAt")]
    pub created_at: String,
    #[serde(alias = "startedAt", default)]
    pub started_at: Option<String>,
    #[serde(alias = "completedAt", default)]
    pub completed_at: Option<String>,
}

/// The run detail of `GET /v1/runs/:id`, the 202 of `POST /v1/runs` and the 200 of cancel (CONTRACT.md 4.3).
/// `output` is not in the real contract; a server that sends it is believed (CONTRACT.md Part 1 item 6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub id: String,
    #[serde(alias = "agentId", default)]
    pub agent_id: String,
    #[serde(alias = "agentName", default)]
    pub agent_name: String,
    pub status: RunStatus,
    #[serde(default)]
    pub prompt: String,
    #[serde(alias = "createdAt")]
    pub created_at: String,
    #[serde(alias = "startedAt", default)]
    pub started_at: Option<String>,
    #[serde(alias = "completedAt", default)]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(alias = "executionTimeMs", default)]
    pub execution_time_ms: Option<u64>,
    #[serde(alias = "checkpointId", default)]
    pub checkpoint_id: Option<String>,
    #[serde(alias = "sessionId", default)]
    pub session_id: Option<String>,
    #[serde(alias = "artifactName", default)]
    pub artifact_name: Option<String>,
    #[serde(alias = "artifactVersion", default)]
    pub artifact_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// One log entry (CONTRACT.md 4.6). `type` is `agent|system|network`, `level` is `debug|info|warn|error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub level: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Query of `GET /v1/runs/:id/logs`. Every field is optional; names are the same in both casings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    /// `all` (default), `agent`, `system` or `network`.
    pub kind: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    pub limit: Option<u32>,
    /// The timestamp of the last entry already received.
    pub cursor: Option<String>,
}

/// One metrics sample (CONTRACT.md 4.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub timestamp: String,
    #[serde(alias = "cpuPercent")]
    pub cpu_percent: f64,
    #[serde(alias = "memoryUsedMb")]
    pub memory_used_mb: f64,
    #[serde(alias = "memoryTotalMb")]
    pub memory_total_mb: f64,
    #[serde(alias = "diskUsedMb")]
    pub disk_used_mb: f64,
    #[serde(alias = "diskTotalMb")]
    pub disk_total_mb: f64,
}

/// The metrics summary (CONTRACT.md 4.7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSummary {
    #[serde(alias = "avgCpuPercent", default)]
    pub avg_cpu_percent: f64,
    #[serde(alias = "maxMemoryUsedMb", default)]
    pub max_memory_used_mb: f64,
    #[serde(alias = "totalDurationMs", default)]
    pub total_duration_ms: Option<u64>,
}

/// `GET /v1/runs/:id/metrics`: not paginated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub data: Vec<MetricPoint>,
    #[serde(default)]
    pub summary: MetricsSummary,
}

/// Volumes or artifacts: the two storage kinds, identical but for their paths and the version's id key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageKind {
    Volume,
    Artifact,
}

impl StorageKind {
    /// The path segment of the API and of the filesystem: `volumes` or `artifacts`.
    pub fn plural(self) -> &'static str {
        match self {
            StorageKind::Volume => "volumes",
            StorageKind::Artifact => "artifacts",
        }
    }

    /// The word used in the API's messages: `Volume` or `Artifact`.
    pub fn title(self) -> &'static str {
        match self {
            StorageKind::Volume => "Volume",
            StorageKind::Artifact => "Artifact",
        }
    }

    /// The `storageType` of the push flow (CONTRACT.md 7.2): `volume` or `artifact`.
    pub fn push_type(self) -> &'static str {
        match self {
            StorageKind::Volume => "volume",
            StorageKind::Artifact => "artifact",
        }
    }
}

/// A volume or an artifact (CONTRACT.md 5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    pub id: String,
    pub name: String,
    #[serde(alias = "currentVersionId", default)]
    pub current_version_id: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(alias = "fileCount", default)]
    pub file_count: u64,
    #[serde(alias = "createdAt")]
    pub created_at: String,
    #[serde(alias = "updatedAt")]
    pub updated_at: String,
}

/// `GET /v1/{volumes|artifacts}/:id`: the object plus its head version (CONTRACT.md 5.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageDetail {
    pub id: String,
    pub name: String,
    #[serde(alias = "currentVersionId", default)]
    pub current_version_id: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(alias = "fileCount", default)]
    pub file_count: u64,
    #[serde(alias = "createdAt")]
    pub created_at: String,
    #[serde(alias = "updatedAt")]
    pub updated_at: String,
    #[serde(alias = "currentVersion", default)]
    pub current_version: Option<StorageVersion>,
}

/// A version of a volume or artifact (CONTRACT.md 5.4). Its id is a content hash (64 hex), so it never changes.
/// Exactly one of `volume_id` / `artifact_id` is set, by the storage kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageVersion {
    pub id: String,
    #[serde(alias = "volumeId", default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    #[serde(alias = "artifactId", default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(alias = "fileCount", default)]
    pub file_count: u64,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(alias = "createdBy", default)]
    pub created_by: String,
    #[serde(alias = "createdAt")]
    pub created_at: String,
}

/// The oldest download variant (CONTRACT.md 6.5): `200` JSON with one presigned URL per file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyDownload {
    #[serde(alias = "versionId")]
    pub version_id: String,
    pub files: Vec<LegacyDownloadFile>,
    #[serde(alias = "expiresAt", default)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyDownloadFile {
    pub path: String,
    #[serde(default)]
    pub size: u64,
    #[serde(alias = "downloadUrl")]
    pub download_url: String,
}

/// `{"error": {...}}`, the body of every API error (CONTRACT.md 1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Absent from the push flow's errors (CONTRACT.md 7.2), which carry only `message` and `code`.
    #[serde(rename = "type", default)]
    pub kind: String,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
}

/// `POST /v1/{volumes|artifacts}` (CONTRACT.md 7.1, step 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateStorageRequest {
    pub name: String,
}

/// One file of a push (CONTRACT.md 7.2), and of its `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushFile {
    pub path: String,
    /// SHA-256 of the content, 64 lowercase hex.
    pub hash: String,
    pub size: u64,
}

/// `POST /api/storages/prepare` (CONTRACT.md 7.2). The push flow is camelCase in every era.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushPrepareRequest {
    pub storage_name: String,
    /// `volume` or `artifact` (`StorageKind::push_type`).
    pub storage_type: String,
    pub files: Vec<PushFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// The answer to a prepare: the version the files make, and where to PUT them unless it exists already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushPrepareResponse {
    pub version_id: String,
    pub existing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploads: Option<PushUploads>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushUploads {
    pub archive: PresignedPut,
    pub manifest: PresignedPut,
}

/// A presigned PUT URL (an hour) and the object key it writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresignedPut {
    pub key: String,
    pub presigned_url: String,
}

/// `manifest.json`, stored next to a version's archive (CONTRACT.md 6.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushManifest {
    pub version: u32,
    pub files: Vec<PushFile>,
    pub created_at: String,
}

/// `POST /api/storages/commit` (CONTRACT.md 7.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushCommitRequest {
    pub storage_name: String,
    pub storage_type: String,
    pub version_id: String,
    pub files: Vec<PushFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushCommitResponse {
    pub success: bool,
    pub version_id: String,
    pub storage_name: String,
    pub size: u64,
    pub file_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<bool>,
}

/// `POST /v1/{volumes|artifacts}/:id/upload` (CONTRACT.md 7.1, step 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRequest {
    pub files: Vec<UploadFileSpec>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadFileSpec {
    pub path: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadResponse {
    #[serde(alias = "uploadSessionId")]
    pub upload_session_id: String,
    pub files: Vec<UploadTarget>,
    #[serde(alias = "expiresAt")]
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadTarget {
    pub path: String,
    #[serde(alias = "uploadUrl")]
    pub upload_url: String,
    #[serde(alias = "uploadId")]
    pub upload_id: String,
}

/// `POST /v1/{volumes|artifacts}/:id/commit` (CONTRACT.md 7.1, step 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRequest {
    #[serde(alias = "uploadSessionId")]
    pub upload_session_id: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// One event of `GET /v1/runs/:id/events` (CONTRACT.md 4.8). The payload keys are the same in both casings.
#[derive(Debug, Clone, PartialEq)]
pub enum SseEvent {
    /// `event: status`, `{"status", "run_id"}`.
    Status { status: RunStatus, run_id: String },
    /// `id: <seq>`, `event: output`, `{"sequence", "type", "data", "timestamp"}`.
    Output {
        sequence: u64,
        kind: String,
        data: Value,
        timestamp: String,
    },
    /// `event: heartbeat`, `{"timestamp"}`.
    Heartbeat { timestamp: String },
    /// `event: complete`, `{"status", "output", "error"}`; the stream ends after it.
    Complete {
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
    },
    /// `event: error`, `{"message", "code"}`; the stream ends after it.
    Error { message: String, code: String },
}

#[derive(Deserialize)]
struct StatusPayload {
    status: RunStatus,
    #[serde(alias = "runId", default)]
    run_id: String,
}

#[derive(Deserialize)]
struct OutputPayload {
    sequence: u64,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    timestamp: String,
}

#[derive(Deserialize)]
struct HeartbeatPayload {
    #[serde(default)]
    timestamp: String,
}

#[derive(Deserialize)]
struct CompletePayload {
    status: RunStatus,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ErrorPayload {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: String,
}

impl SseEvent {
    /// Parses one SSE frame from its `event:` name and `data:` text. `None` for an event name this client does
    /// not know (a newer server may add some); an error for a known event whose data does not parse.
    pub fn parse(event: &str, data: &str) -> Result<Option<SseEvent>, serde_json::Error> {
        Ok(Some(match event {
            "status" => {
                let p: StatusPayload = serde_json::from_str(data)?;
                SseEvent::Status {
                    status: p.status,
                    run_id: p.run_id,
                }
            }
            "output" => {
                let p: OutputPayload = serde_json::from_str(data)?;
                SseEvent::Output {
                    sequence: p.sequence,
                    kind: p.kind,
                    data: p.data,
                    timestamp: p.timestamp,
                }
            }
            "heartbeat" => {
                let p: HeartbeatPayload = serde_json::from_str(data)?;
                SseEvent::Heartbeat {
                    timestamp: p.timestamp,
                }
            }
            "complete" => {
                let p: CompletePayload = serde_json::from_str(data)?;
                SseEvent::Complete {
                    status: p.status,
                    output: p.output,
                    error: p.error,
                }
            }
            "error" => {
                let p: ErrorPayload = serde_json::from_str(data)?;
                SseEvent::Error {
                    message: p.message,
                    code: p.code,
                }
            }
            _ => return Ok(None),
        }))
    }

    /// The SSE frame of this event, as the server writes it (`id:` only on output events).
    pub fn to_frame(&self) -> String {
        let (name, data, id) = match self {
            SseEvent::Status { status, run_id } => (
                "status",
                serde_json::json!({"status": status, "run_id": run_id}),
                None,
            ),
            SseEvent::Output {
                sequence,
                kind,
                data,
                timestamp,
            } => (
                "output",
                serde_json::json!({"sequence": sequence, "type": kind, "data": data, "timestamp": timestamp}),
                Some(*sequence),
            ),
            SseEvent::Heartbeat { timestamp } => (
                "heartbeat",
                serde_json::json!({"timestamp": timestamp}),
                None,
            ),
            SseEvent::Complete {
                status,
                output,
                error,
            } => (
                "complete",
                serde_json::json!({"status": status, "output": output, "error": error}),
                None,
            ),
            SseEvent::Error { message, code } => (
                "error",
                serde_json::json!({"message": message, "code": code}),
                None,
            ),
        };
        let id_line = id.map(|n| format!("id: {n}\n")).unwrap_or_default();
        format!("{id_line}event: {name}\ndata: {data}\n\n")
    }
}
