//! The fault configuration: what the emulator breaks on purpose, and the countdowns that say how often.
//!
//! Tests need to make the server misbehave without restarting it: the config is one JSON document replaced as a
//! whole (so a test states every knob it relies on), and the `*_count` knobs fail exactly the next N matching
//! requests, which makes retry tests deterministic where `error_rate` cannot be. This module only holds the
//! config and decides; `layers` applies the decisions to requests and responses as middleware.

use crate::sync::Locked;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The whole fault configuration, as `POST /_control/faults` takes it and `GET` returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FaultConfig {
    /// Delay every matching request by this many milliseconds (a stall, when large).
    pub latency_ms: u64,
    /// Only requests whose path starts with this are delayed or failed; `null` means every `/v1/` route.
    pub path_prefix: Option<String>,
    /// Fail this random fraction of matching requests.
    pub error_rate: f64,
    /// The status of injected errors.
    pub error_status: u16,
    /// Fail exactly the next N matching requests (after `skip_count`).
    pub error_count: u64,
    /// Let this many matching requests through before `error_count` starts failing them: a failure midway
    /// through a series (the 20th PUT of an upload).
    pub skip_count: u64,
    /// Send `Retry-After` with injected errors.
    pub retry_after_secs: Option<u64>,
    /// Blob responses declare the full length, send about half, and close.
    pub truncate_blobs: bool,
    /// Blob bodies are sent at most this many bytes per second (a slow blob host); 0 is no limit.
    pub blob_bytes_per_sec: u64,
    /// The next N blob requests answer 403 (an expired presigned URL).
    pub blob_forbidden_count: u64,
    /// The next N matching requests answer 200 with `bad_body` instead of the real answer: HTML from a proxy,
    /// malformed JSON, JSON of the wrong shape. Sent as `text/html` when it starts with `<`, else as JSON.
    pub bad_body: Option<String>,
    pub bad_body_count: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            latency_ms: 0,
            path_prefix: None,
            error_rate: 0.0,
            error_status: 503,
            error_count: 0,
            skip_count: 0,
            retry_after_secs: None,
            truncate_blobs: false,
            blob_bytes_per_sec: 0,
            blob_forbidden_count: 0,
            bad_body: None,
            bad_body_count: 0,
        }
    }
}

impl FaultConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(400..=599).contains(&self.error_status) {
            return Err(format!(
                "error_status {} is not an error status: use 400..599",
                self.error_status
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate {} is not a fraction: use 0.0..1.0",
                self.error_rate
            ));
        }
        Ok(())
    }
}

pub(crate) struct Faults(Mutex<FaultConfig>);

/// What the fault config decides for one request to the API or the blob host.
pub(crate) enum Verdict {
    /// Answer 200 with this body instead of the real answer.
    BadBody(String),
    /// Answer with this injected error status (and `Retry-After` when set).
    Fail {
        status: u16,
        retry_after_secs: Option<u64>,
    },
    Pass,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Faults {
        Faults(Mutex::new(config))
    }

    pub fn lock(&self) -> MutexGuard<'_, FaultConfig> {
        self.0.locked()
    }

    /// The delay and the verdict for a request to `path` (counting down `bad_body_count`, `skip_count` and
    /// `error_count`).
    /// Requests the config does not match get no delay and pass.
    pub fn judge(&self, path: &str) -> (u64, Verdict) {
        let mut f = self.lock();
        let matches = match &f.path_prefix {
            Some(p) => path.starts_with(p.as_str()),
            None => path.starts_with("/v1/"),
        };
        if !matches {
            return (0, Verdict::Pass);
        }
        if f.bad_body_count > 0
            && let Some(body) = f.bad_body.clone()
        {
            f.bad_body_count -= 1;
            return (0, Verdict::BadBody(body));
        }
        let fail = if f.error_count > 0 && f.skip_count > 0 {
            f.skip_count -= 1;
            false
        } else if f.error_count > 0 {
            f.error_count -= 1;
            true
        } else {
            f.error_rate > 0.0 && fastrand::f64() < f.error_rate
        };
        let verdict = if fail {
            Verdict::Fail {
                status: f.error_status,
                retry_after_secs: f.retry_after_secs,
            }
        } else {
            Verdict::Pass
        };
        (f.latency_ms, verdict)
    }

    pub fn truncate_blobs(&self) -> bool {
        self.lock().truncate_blobs
    }

    /// The blob rate limit in bytes per second, if any.
    pub fn blob_rate(&self) -> Option<u64> {
        Some(self.lock().blob_bytes_per_sec).filter(|r| *r > 0)
    }

    /// Whether this blob request must be refused (and counts it down).
    pub fn take_blob_forbidden(&self) -> bool {
        let mut f = self.lock();
        if f.blob_forbidden_count > 0 {
            f.blob_forbidden_count -= 1;
            true
        } else {
            false
        }
    }
}
