//! The context every handler shares: the state, the server's settings, the fault config, the counters and the
//! uploads in progress.
//!
//! It is one value behind an `Arc`, handed to axum as the router's state and to the simulator thread. It depends
//! only on the modules that own its parts (`store`, `faults`, `stats`, `uploads`), never on handlers, so every
//! handler module can depend on it without a cycle.

use clap::ValueEnum;

use crate::faults::Faults;
use crate::stats::Stats;
use crate::store::Store;
use crate::uploads::Uploads;
use vm0_api::Casing;

/// How `/download` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DownloadMode {
    /// 302 to a presigned URL serving archive.tar.gz (the final API).
    Redirect,
    /// 200 with the gzip body directly.
    Direct,
    /// 200 JSON {version_id, files:[{path,size,download_url}], expires_at} (the API of 2026-01-09..10).
    Files,
}

/// Run schedule settings for new runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub pending_ms: u64,
    pub duration_ms: u64,
    pub log_interval_ms: u64,
}

/// Everything a request handler needs. One per process.
pub(crate) struct Ctx {
    pub store: Store,
    pub casing: Casing,
    pub tokens: Vec<String>,
    pub download_mode: DownloadMode,
    pub max_concurrent_runs: usize,
    pub timing: Timing,
    pub faults: Faults,
    pub stats: Stats,
    pub base_url: String,
    pub uploads: Uploads,
    /// Whether the `/v1` create, upload and commit routes exist (CONTRACT.md 7.1); without them only the push
    /// flow (7.2) creates storages and publishes versions, as on the platform after 2026-01-10.
    pub v1_upload: bool,
    /// Bytes a push may declare; more is 413 `PAYLOAD_TOO_LARGE` (CONTRACT.md 7.2).
    pub max_push_bytes: u64,
}
