//! The publisher: one thread that turns a volume's staged tree into one new version (CONTRACT.md 7.1).
//!
//! One thread, so one publish runs at a time and never two of one volume. It waits on a channel with a timeout:
//! a change of a volume (re)starts its quiet period (`--commit-delay`), `vm0fs sync` publishes at once and gets the
//! result, an unmount drains until a deadline. A publish is: freeze (the file list and the generation of the
//! tree) → hash every file and compute the version id the content will have → read the head on the server
//! (equal to that id: already published, by a commit whose reply was lost; different from the version the
//! changes were based on: someone else published, so nothing is sent and the changes stay staged) → upload → PUT
//! each file (a 403 is an expired URL: start again with fresh ones) → check that nothing changed meanwhile →
//! commit, sent once; when its reply is lost the head tells whether it went through. A failure that may pass
//! (network, 5xx, 429, expired URL) is retried with backoff and never drops a change; the others are shown in
//! `vm0fs status` and answered to `vm0fs sync` until the next change or sync tries again.
//!
//! Known limit of the contract: the commit has no precondition, so a head that moves between the check and the
//! commit is overwritten (the window is one request long).

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::manifest::{self, ManifestFile};
use super::{VolumeStage, short};
use crate::api::models::{CommitRequest, StorageKind, UploadFileSpec, UploadRequest};
use crate::api::{ApiError, ApiErrorKind, Vm0Api};

/// Where a volume's publishing stands, for `vm0fs status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Nothing happened since the mount (or the changes wait for their quiet period).
    Clean,
    Publishing {
        done: u64,
        total: u64,
    },
    Published(String),
    Failed {
        step: &'static str,
        message: String,
        retrying: bool,
    },
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Clean => write!(f, "staged"),
            Phase::Publishing { done, total } => write!(f, "publishing ({done} of {total} bytes)"),
            Phase::Published(v) => write!(f, "published as {}", short(v)),
            Phase::Failed {
                step,
                message,
                retrying,
            } => {
                write!(f, "failed at {step}: {message}")?;
                if *retrying {
                    write!(f, " (retrying)")?;
                }
                Ok(())
            }
        }
    }
}

/// Why a publish did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    pub errno: i32,
    pub message: String,
    /// Whether trying again later may succeed (network, server errors, a change during the publish).
    pub retryable: bool,
    step: &'static str,
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How many times one publish asks for fresh upload URLs after a 403.
const FRESH_URLS: u32 = 3;
/// Backoff between retries of a failed publish: doubling from the first, up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How many quick retries `vm0fs sync` makes before it reports a retryable failure.
const SYNC_ATTEMPTS: u32 = 4;

enum Msg {
    Changed(Arc<VolumeStage>),
    Sync(Arc<VolumeStage>, Sender<Result<String, PublishError>>),
    Drain(Vec<Arc<VolumeStage>>, Instant, Sender<Vec<String>>),
}

/// The handle on the publisher thread; the thread ends when this is dropped.
pub struct Publisher {
    tx: Mutex<Sender<Msg>>,
}

impl Publisher {
    pub fn start(api: Arc<dyn Vm0Api>, delay: Duration) -> Publisher {
        let (tx, rx) = mpsc::channel();
        let spawned = thread::Builder::new()
            .name("vm0fs-publish".into())
            .spawn(move || run(&*api, delay, &rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the publisher thread; volumes will not be published");
        }
        Publisher { tx: Mutex::new(tx) }
    }

    fn send(&self, msg: Msg) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        tx.send(msg).is_ok()
    }

    pub fn changed(&self, volume: &Arc<VolumeStage>) {
        self.send(Msg::Changed(volume.clone()));
    }

    pub fn sync(&self, volume: &Arc<VolumeStage>) -> Result<String, PublishError> {
        let (tx, rx) = mpsc::channel();
        let gone = || PublishError {
            errno: libc::EIO,
            message: format!("{}: the publisher has stopped", volume.label()),
            retryable: false,
            step: "sync",
        };
        if !self.send(Msg::Sync(volume.clone(), tx)) {
            return Err(gone());
        }
        rx.recv().unwrap_or_else(|_| Err(gone()))
    }

    pub fn drain(&self, volumes: Vec<Arc<VolumeStage>>, within: Duration) -> Vec<String> {
        let (tx, rx) = mpsc::channel();
        let labels: Vec<String> = volumes
            .iter()
            .filter(|v| v.dirty())
            .map(|v| v.label())
            .collect();
        if !self.send(Msg::Drain(volumes, Instant::now() + within, tx)) {
            return labels;
        }
        rx.recv().unwrap_or(labels)
    }
}

/// A volume waiting for its publish.
struct Due {
    volume: Arc<VolumeStage>,
    at: Instant,
    failures: u32,
}

fn run(api: &dyn Vm0Api, delay: Duration, rx: &Receiver<Msg>) {
    let mut due: HashMap<String, Due> = HashMap::new();
    loop {
        let next = due.values().map(|d| d.at).min();
        let wait = next.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(wait) {
            Ok(Msg::Changed(v)) if !delay.is_zero() => {
                let at = Instant::now() + delay;
                due.insert(
                    v.storage_id.clone(),
                    Due {
                        volume: v,
                        at,
                        failures: 0,
                    },
                );
            }
            Ok(Msg::Changed(_)) => {}
            Ok(Msg::Sync(v, reply)) => {
                let deadline = Instant::now() + RETRY_MAX;
                let result = publish_retrying(api, &v, SYNC_ATTEMPTS, deadline);
                if result.is_ok() {
                    due.remove(&v.storage_id);
                }
                let _ = reply.send(result);
            }
            Ok(Msg::Drain(vols, deadline, reply)) => {
                let mut left = Vec::new();
                for v in vols.iter().filter(|v| v.dirty()) {
                    if publish_retrying(api, v, u32::MAX, deadline).is_err() {
                        left.push(v.label());
                    }
                }
                let _ = reply.send(left);
            }
            Err(RecvTimeoutError::Timeout) => publish_due(api, delay, &mut due),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Publishes the volumes whose quiet period is over.
fn publish_due(api: &dyn Vm0Api, delay: Duration, due: &mut HashMap<String, Due>) {
    let now = Instant::now();
    let ready: Vec<String> = due
        .iter()
        .filter(|(_, d)| d.at <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for id in ready {
        let Some(mut d) = due.remove(&id) else {
            continue;
        };
        if d.volume.writing() {
            d.at = now + delay;
            due.insert(id, d);
            continue;
        }
        match publish(api, &d.volume) {
            Err(e) if e.retryable => {
                d.failures += 1;
                d.at = Instant::now() + backoff(d.failures);
                due.insert(id, d);
            }
            _ => {}
        }
    }
}

fn backoff(failures: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1 << failures.min(8))
        .min(RETRY_MAX)
}

/// Publishes, retrying what may pass up to `attempts` times or until `deadline`.
fn publish_retrying(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    attempts: u32,
    deadline: Instant,
) -> Result<String, PublishError> {
    let mut failures = 0;
    loop {
        match publish(api, volume) {
            Err(e) if e.retryable && failures + 1 < attempts => {
                failures += 1;
                let wait = backoff(failures);
                if Instant::now() + wait > deadline {
                    return Err(e);
                }
                thread::sleep(wait);
            }
            other => return other,
        }
    }
}

/// One publish of `volume`, its outcome recorded in its phase and the log.
fn publish(api: &dyn Vm0Api, volume: &VolumeStage) -> Result<String, PublishError> {
    let result = publish_once(api, volume);
    match &result {
        Ok(v) => {
            volume.set_phase(Phase::Published(v.clone()));
        }
        Err(e) => {
            tracing::warn!(volume = %volume.label(), step = e.step, retrying = e.retryable,
                "not published: {}", e.message);
            volume.set_phase(Phase::Failed {
                step: e.step,
                message: e.message.clone(),
                retrying: e.retryable,
            });
        }
    }
    result
}

fn api_failure(volume: &VolumeStage, step: &'static str, e: &ApiError) -> PublishError {
    PublishError {
        errno: e.errno(),
        message: format!("{}: {step} failed: {e}", volume.label()),
        retryable: e.is_retryable() || e.status == Some(403),
        step,
    }
}

fn publish_once(api: &dyn Vm0Api, volume: &VolumeStage) -> Result<String, PublishError> {
    let (generation, base, files, local) = volume.freeze();
    let label = volume.label();
    let manifest = manifest::hash_files(files).map_err(|e| PublishError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        message: format!("{label}: reading the staged files failed: {e}"),
        retryable: true,
        step: "read",
    })?;
    let id = manifest::version_id(&volume.storage_id, &manifest);
    if !local.is_empty() {
        tracing::warn!(volume = %label, "{local}");
    }
    let done = |v: &str| -> Result<String, PublishError> {
        volume
            .published(generation, v, &manifest)
            .map_err(|e| PublishError {
                errno: e.errno,
                message: e.message,
                retryable: true,
                step: "journal",
            })?;
        Ok(v.to_string())
    };
    if base.as_deref() == Some(id.as_str()) {
        return done(&id);
    }
    if base.is_none() && manifest.is_empty() {
        return Err(PublishError {
            errno: libc::ENODATA,
            message: format!("{label} holds no files and has no version yet: nothing to publish"),
            retryable: false,
            step: "manifest",
        });
    }
    let server = api
        .get_storage(StorageKind::Volume, &volume.storage_id)
        .map_err(|e| api_failure(volume, "head check", &e))?;
    let head = server.current_version_id;
    if head.as_deref() == Some(id.as_str()) {
        tracing::info!(volume = %label, version = short(&id), "already published (an earlier commit went through)");
        return done(&id);
    }
    if head != base {
        return Err(PublishError {
            errno: libc::ESTALE,
            message: format!(
                "{label}: the head moved on the server to {} since these changes were based on {}; \
                 not published, the changes stay staged (a later vm0fs will rebase them)",
                head.as_deref().map_or("(none)", short),
                base.as_deref().map_or("(no version)", short)
            ),
            retryable: false,
            step: "head check",
        });
    }
    let session = upload_all(api, volume, &manifest)?;
    if volume.lock().generation != generation {
        return Err(PublishError {
            errno: libc::EAGAIN,
            message: format!("{label} changed while it was being published; publishing again"),
            retryable: true,
            step: "upload",
        });
    }
    let request = CommitRequest {
        upload_session_id: session,
        message: Some(format!("vm0fs: {} file(s)", manifest.len())),
    };
    match api.commit(StorageKind::Volume, &volume.storage_id, &request) {
        Ok(version) => {
            if version.id != id {
                tracing::warn!(volume = %label, local = short(&id), server = short(&version.id),
                    "the server's version id is not the content hash computed here");
            }
            tracing::info!(volume = %label, version = short(&version.id), files = manifest.len(), "published");
            done(&version.id)
        }
        Err(e) => {
            let failure = api_failure(volume, "commit", &e);
            let lost_reply =
                e.kind == ApiErrorKind::Transport || e.status.is_some_and(|s| s >= 500);
            if lost_reply
                && let Ok(s) = api.get_storage(StorageKind::Volume, &volume.storage_id)
                && s.current_version_id.as_deref() == Some(id.as_str())
            {
                tracing::info!(volume = %label, version = short(&id), "the commit went through; its reply was lost");
                return done(&id);
            }
            Err(failure)
        }
    }
}

/// Steps 2 and 3 of the upload: a session, and every file PUT to its URL. Returns the session id.
fn upload_all(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    manifest: &[ManifestFile],
) -> Result<String, PublishError> {
    let request = UploadRequest {
        files: manifest
            .iter()
            .map(|f| UploadFileSpec {
                path: f.path.clone(),
                size: f.size,
                hash: Some(f.sha256.clone()),
            })
            .collect(),
        message: None,
    };
    let total: u64 = manifest.iter().map(|f| f.size).sum();
    let by_path: HashMap<&str, &ManifestFile> =
        manifest.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut round = 0;
    'fresh: loop {
        volume.set_phase(Phase::Publishing { done: 0, total });
        let session = api
            .upload(StorageKind::Volume, &volume.storage_id, &request)
            .map_err(|e| api_failure(volume, "upload", &e))?;
        let mut sent = 0;
        for target in &session.files {
            let Some(file) = by_path.get(target.path.as_str()) else {
                return Err(PublishError {
                    errno: libc::EIO,
                    message: format!(
                        "{}: the server gave an upload URL for {:?}, which was not declared",
                        volume.label(),
                        target.path
                    ),
                    retryable: false,
                    step: "upload",
                });
            };
            match api.put_upload(target, &file.source) {
                Ok(()) => {}
                Err(e) if e.status == Some(403) && round < FRESH_URLS => {
                    tracing::info!(volume = %volume.label(), "an upload URL was refused (expired?); asking for fresh ones");
                    round += 1;
                    continue 'fresh;
                }
                Err(e) => return Err(api_failure(volume, "PUT", &e)),
            }
            sent += file.size;
            volume.set_phase(Phase::Publishing { done: sent, total });
        }
        return Ok(session.upload_session_id);
    }
}
