//! Downloads in flight, for the people waiting on them: how far each has got, and a log line now and then.
//!
//! The extracting thread adds the bytes it writes to an atomic counter (no lock on the hot path); `vm0fs status`
//! and `vm0fs prefetch` read a snapshot of all counters through the mount's `.vm0fs/status` file. Progress is
//! counted in bytes of extracted file content, the unit of the API's version `size`, so "done of total" compares
//! like with like (the compressed length is unknown before a redirect is followed, and absent for the per-file
//! download form). A download that runs longer than `LOG_EVERY` logs its progress at that interval, so a first
//! read of a large archive shows in the log while a small one stays quiet.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often a long download logs its progress.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// What is known of an archive before it is downloaded: a name for people, and its size if the API gave one.
#[derive(Debug, Clone)]
pub struct ArchiveInfo {
    /// Shown in logs and status, e.g. `volumes/input-data@1a2b3c4d`.
    pub label: String,
    /// Bytes of file content once extracted (the API's version `size`), if known.
    pub size: Option<u64>,
}

/// One download in flight.
pub(crate) struct Transfer {
    info: ArchiveInfo,
    started: Instant,
    written: AtomicU64,
    attempt: AtomicU32,
    /// Callers waiting for it, as the extractor last saw.
    waiting: AtomicU32,
    /// Milliseconds after `started` of the last progress line.
    logged_at_ms: AtomicU64,
}

impl Transfer {
    /// Counts `n` more bytes extracted, and logs progress when it is time.
    pub(crate) fn add(&self, n: u64) {
        let written = self.written.fetch_add(n, Ordering::Relaxed) + n;
        let elapsed_ms = self.started.elapsed().as_millis() as u64;
        let last = self.logged_at_ms.load(Ordering::Relaxed);
        if elapsed_ms.saturating_sub(last) < LOG_EVERY.as_millis() as u64 {
            return;
        }
        let claimed = self.logged_at_ms.compare_exchange(
            last,
            elapsed_ms,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if claimed.is_ok() {
            tracing::info!(
                "downloading {}: {}",
                self.info.label,
                self.describe(written)
            );
        }
    }

    /// How many callers wait for the download now.
    pub(crate) fn set_waiting(&self, callers: usize) {
        self.waiting.store(
            u32::try_from(callers).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
    }

    /// A new attempt starts from nothing.
    fn restart(&self, attempt: u32) {
        self.written.store(0, Ordering::Relaxed);
        self.attempt.store(attempt, Ordering::Relaxed);
    }

    /// `120.0 MiB of 547.0 MiB (23%), 40.2 MiB/s, about 11 s left`.
    fn describe(&self, written: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            written as f64 / secs
        } else {
            0.0
        };
        let mut text = format!("{}", Bytes(written));
        if let Some(total) = self.info.size.filter(|t| *t > 0) {
            let percent = (written as f64 * 100.0 / total as f64).min(100.0);
            text.push_str(&format!(" of {} ({percent:.0}%)", Bytes(total)));
            if rate > 0.0 {
                let left = total.saturating_sub(written) as f64 / rate;
                text.push_str(&format!(
                    ", {}/s, about {left:.0} s left",
                    Bytes(rate as u64)
                ));
            }
        } else if rate > 0.0 {
            text.push_str(&format!(", {}/s", Bytes(rate as u64)));
        }
        text
    }

    fn snapshot(&self, version: &str) -> TransferStatus {
        TransferStatus {
            label: self.info.label.clone(),
            version: version.to_string(),
            done_bytes: self.written.load(Ordering::Relaxed),
            total_bytes: self.info.size,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            attempt: self.attempt.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// A download in flight as `vm0fs status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferStatus {
    pub label: String,
    pub version: String,
    /// Bytes of file content extracted so far in this attempt.
    pub done_bytes: u64,
    /// The archive's extracted size, when the API told it.
    pub total_bytes: Option<u64>,
    pub elapsed_secs: f64,
    /// 1 for the first attempt; a retried download starts again from 0 bytes.
    pub attempt: u32,
    /// Callers (processes reading through the mount, `vm0fs prefetch`) waiting for it; when the last one gives
    /// up (Ctrl-C), the download stops.
    #[serde(default)]
    pub waiting: u32,
}

/// The downloads in flight, by version id.
#[derive(Default)]
pub(crate) struct Transfers {
    map: Mutex<HashMap<String, Arc<Transfer>>>,
}

impl Transfers {
    /// Registers a download of `version`; it is listed until the returned guard is dropped.
    pub(crate) fn start(&self, version: &str, info: &ArchiveInfo) -> TransferGuard<'_> {
        let transfer = Arc::new(Transfer {
            info: info.clone(),
            started: Instant::now(),
            written: AtomicU64::new(0),
            attempt: AtomicU32::new(1),
            waiting: AtomicU32::new(0),
            logged_at_ms: AtomicU64::new(0),
        });
        self.lock().insert(version.to_string(), transfer.clone());
        TransferGuard {
            transfers: self,
            version: version.to_string(),
            transfer,
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<TransferStatus> {
        let mut all: Vec<TransferStatus> = self
            .lock()
            .iter()
            .map(|(version, t)| t.snapshot(version))
            .collect();
        all.sort_by(|a, b| a.label.cmp(&b.label));
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Transfer>>> {
        self.map.locked()
    }
}

/// Keeps a download listed while it runs; logs how it went when it took long enough to have logged progress.
pub(crate) struct TransferGuard<'a> {
    transfers: &'a Transfers,
    version: String,
    transfer: Arc<Transfer>,
}

impl TransferGuard<'_> {
    pub(crate) fn transfer(&self) -> Arc<Transfer> {
        self.transfer.clone()
    }

    pub(crate) fn restart(&self, attempt: u32) {
        self.transfer.restart(attempt);
    }
}

impl Drop for TransferGuard<'_> {
    fn drop(&mut self) {
        self.transfers.lock().remove(&self.version);
        let elapsed = self.transfer.started.elapsed();
        if elapsed >= LOG_EVERY {
            let written = self.transfer.written.load(Ordering::Relaxed);
            tracing::info!(
                "download of {} ended after {:.1} s: {}",
                self.transfer.info.label,
                elapsed.as_secs_f64(),
                self.transfer.describe(written)
            );
        }
    }
}

/// A byte count for people: `512 B`, `3.0 KiB`, `547.0 MiB`.
pub struct Bytes(pub u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(3 * 1024).to_string(), "3.0 KiB");
        assert_eq!(Bytes(547 << 20).to_string(), "547.0 MiB");
        assert_eq!(Bytes(3 << 40).to_string(), "3.0 TiB");
    }

    #[test]
    fn a_download_is_listed_while_it_runs_and_restarts_from_zero() {
        let transfers = Transfers::default();
        let info = ArchiveInfo {
            label: "volumes/v@1a2b3c4d".into(),
            size: Some(100),
        };
        {
            let guard = transfers.start("vid", &info);
            guard.transfer().add(40);
            let shown = transfers.snapshot();
            assert_eq!(shown.len(), 1);
            assert_eq!(shown[0].done_bytes, 40);
            assert_eq!(shown[0].total_bytes, Some(100));
            guard.restart(2);
            let shown = transfers.snapshot();
            assert_eq!((shown[0].done_bytes, shown[0].attempt), (0, 2));
        }
        assert!(transfers.snapshot().is_empty());
    }
}
