//! The publisher: one thread that turns a volume's staged tree into one new version (CONTRACT.md 7.1 or 7.2).
//!
//! One thread, so one publish runs at a time and never two of one volume. It waits on a channel with a timeout:
//! a change of a volume (re)starts its quiet period (`--commit-delay`), `vm0fs sync` publishes at once and gets the
//! result, an unmount drains until a deadline. A publish is: freeze (the file list and the generation of the
//! tree) → hash every file and compute the version id the content will have → read the head on the server
//! (equal to that id: already published, by a commit whose reply was lost; different from the version the
//! changes were based on: someone else published, so the changes are rebased onto the new head when the two sides
//! changed different paths, and kept staged as a conflict otherwise, see `rebase`; gone: the volume was deleted on
//! the server, and the changes stay staged) → send the files with the mount's protocol (`push`: a session and a
//! PUT per file, or a prepare and one archive; a 403 is an expired URL: start again with fresh ones) → check that
//! nothing changed meanwhile, and read the head once more → commit, sent once; when its
//! reply is lost the head tells whether it went through. A failure that may pass (network, 5xx, 429, expired URL,
//! a head that moved during the upload) is retried with backoff and never drops a change; the others are shown in
//! `vm0fs status` and answered to `vm0fs sync` until the next change or sync tries again. `vm0fs sync --force`
//! publishes the tree as it is over whatever the head is (the earlier head stays readable as a version), and
//! `vm0fs discard` drops the staged changes; both run on this thread too, so neither overlaps a publish.
//!
//! Known limit of the contract: the commit has no precondition (no compare-and-swap on the head), so a head that
//! moves between the last check and the commit is overwritten. That window is one request long (the second head
//! check is sent right before the commit, after every upload); the version it overwrote stays readable as
//! `<name>@<version>`, and the next publish from anywhere is based on ours.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::discard::Discarded;
use super::error::{PublishError, StageError};
use super::manifest::{self, ManifestFile};
use super::rebase::{RebaseError, Rebased};
use super::status::{Mode, Phase, Published};
use super::upload::{self, Protocol};
use super::{VolumeStage, short};
use crate::api::models::StorageKind;
use crate::api::{ApiErrorKind, Vm0Api};

/// Backoff between retries of a failed publish: doubling from the first, up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How many attempts `vm0fs sync` makes before it reports a failure that may pass (about 15 s of backoff): enough
/// that a server failing one request in twenty almost never fails a sync (the soak test runs at that rate).
const SYNC_ATTEMPTS: u32 = 6;
/// How many rebases one publish makes before it calls the head too busy and tries again later.
const REBASES: u32 = 3;
/// How many conflicting paths a message names.
const NAMED_PATHS: usize = 10;

/// One publish's way through: its mode, what it replaced, how many rebases it made, and the mount's upload
/// protocol (which it may switch, see `push`).
struct Attempt<'p> {
    mode: Mode,
    replaced: Option<String>,
    rebases: u32,
    protocol: &'p Cell<Protocol>,
}

impl Attempt<'_> {
    fn new(mode: Mode, protocol: &Cell<Protocol>) -> Attempt<'_> {
        Attempt {
            mode,
            replaced: None,
            rebases: 0,
            protocol,
        }
    }
}

type Discarding = Sender<Result<Discarded, StageError>>;

enum Msg {
    Changed(Arc<VolumeStage>),
    Sync(
        Arc<VolumeStage>,
        Mode,
        Sender<Result<Published, PublishError>>,
    ),
    Discard(Arc<VolumeStage>, Discarding),
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

    pub fn sync(&self, volume: &Arc<VolumeStage>, mode: Mode) -> Result<Published, PublishError> {
        let (tx, rx) = mpsc::channel();
        let gone = || PublishError {
            errno: libc::EIO,
            message: format!("{}: the publisher has stopped", volume.label()),
            retryable: false,
            step: "sync",
        };
        if !self.send(Msg::Sync(volume.clone(), mode, tx)) {
            return Err(gone());
        }
        rx.recv().unwrap_or_else(|_| Err(gone()))
    }

    /// Drops the staged changes of `volume`, between publishes.
    pub fn discard(&self, volume: &Arc<VolumeStage>) -> Result<Discarded, StageError> {
        let (tx, rx) = mpsc::channel();
        let gone = || {
            StageError::new(
                libc::EIO,
                format!("{}: the publisher has stopped", volume.label()),
            )
        };
        if !self.send(Msg::Discard(volume.clone(), tx)) {
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
    let protocol = Cell::new(Protocol::default());
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
            Ok(Msg::Sync(v, mode, reply)) => {
                let deadline = Instant::now() + RETRY_MAX;
                let attempt = Attempt::new(mode, &protocol);
                let result = publish_retrying(api, &v, attempt, SYNC_ATTEMPTS, deadline);
                if result.is_ok() {
                    due.remove(&v.storage_id);
                }
                let _ = reply.send(result);
            }
            Ok(Msg::Discard(v, reply)) => {
                let result = v.discard_changes();
                if result.is_ok() {
                    due.remove(&v.storage_id);
                }
                let _ = reply.send(result);
            }
            Ok(Msg::Drain(vols, deadline, reply)) => {
                let mut left = Vec::new();
                for v in vols.iter().filter(|v| v.dirty()) {
                    let attempt = Attempt::new(Mode::Careful, &protocol);
                    if publish_retrying(api, v, attempt, u32::MAX, deadline).is_err() {
                        left.push(v.label());
                    }
                }
                let _ = reply.send(left);
            }
            Err(RecvTimeoutError::Timeout) => publish_due(api, delay, &mut due, &protocol),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Publishes the volumes whose quiet period is over.
fn publish_due(
    api: &dyn Vm0Api,
    delay: Duration,
    due: &mut HashMap<String, Due>,
    protocol: &Cell<Protocol>,
) {
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
        match publish(api, &d.volume, &mut Attempt::new(Mode::Careful, protocol)) {
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
    first: Attempt<'_>,
    attempts: u32,
    deadline: Instant,
) -> Result<Published, PublishError> {
    let mut failures = 0;
    loop {
        let mut attempt = Attempt::new(first.mode, first.protocol);
        let result = publish(api, volume, &mut attempt).map(|version| Published {
            version,
            replaced: attempt.replaced,
        });
        match result {
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
fn publish(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    attempt: &mut Attempt,
) -> Result<String, PublishError> {
    let result = publish_once(api, volume, attempt);
    match &result {
        Ok(v) => {
            volume.set_phase(Phase::Published(v.clone()));
        }
        Err(e) => {
            tracing::warn!(volume = %volume.label(), step = e.step, retrying = e.retryable,
                "not published: {}", e.message);
            let phase = match e.step {
                CONFLICT => Phase::Conflict(e.message.clone()),
                _ => Phase::Failed {
                    step: e.step,
                    message: e.message.clone(),
                    retrying: e.retryable,
                },
            };
            volume.set_phase(phase);
        }
    }
    result
}

fn publish_once(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    attempt: &mut Attempt,
) -> Result<String, PublishError> {
    if volume.discarded() {
        return Err(PublishError {
            errno: libc::ESTALE,
            message: format!("{}: its staged changes were discarded", volume.label()),
            retryable: false,
            step: "discard",
        });
    }
    // What is published is on the local disk first: a power loss after the commit on the server finds it staged.
    volume.commit.commit().map_err(|e| PublishError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        message: format!(
            "{}: flushing the staged changes to disk failed: {e}",
            volume.label()
        ),
        retryable: true,
        step: "read",
    })?;
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
    let (head, head_has_files) = upload::server_head(api, &volume.upload_target())?;
    if head.as_deref() == Some(id.as_str()) {
        tracing::info!(volume = %label, version = short(&id), "already published (an earlier commit went through)");
        return done(&id);
    }
    if head != base {
        if attempt.mode == Mode::Careful {
            let frozen = (generation, &base, manifest.as_slice());
            return rebase_and_publish(api, volume, attempt, frozen, (&head, head_has_files));
        }
        tracing::warn!(volume = %label, head = head.as_deref().map_or("(none)", short),
            "--force: publishing the local tree over a head that moved (it stays readable as a version)");
        attempt.replaced = head;
    }
    let progress = |done, total| volume.set_phase(Phase::Publishing { done, total });
    let target = volume.upload_target();
    let sent = upload::send(api, &target, &manifest, attempt.protocol, &progress)?;
    if volume.lock().generation != generation {
        return Err(PublishError {
            errno: libc::EAGAIN,
            message: format!("{label} changed while it was being published; publishing again"),
            retryable: true,
            step: "upload",
        });
    }
    if attempt.mode == Mode::Careful {
        let (now, _) = upload::server_head(api, &volume.upload_target())?;
        if now != base {
            return Err(PublishError {
                errno: libc::EAGAIN,
                message: format!(
                    "{label}: the head moved on the server to {} during the upload; rebasing onto it",
                    now.as_deref().map_or("(none)", short)
                ),
                retryable: true,
                step: "head check",
            });
        }
    }
    let message = format!("vm0fs: {} file(s)", manifest.len());
    match upload::commit(api, &target, sent, &manifest, message) {
        Ok(version) => {
            if version != id {
                tracing::warn!(volume = %label, local = short(&id), server = short(&version),
                    "the server's version id is not the content hash computed here");
            }
            tracing::info!(volume = %label, version = short(&version), files = manifest.len(), "published");
            done(&version)
        }
        Err(e) => {
            let failure = PublishError::api(&label, "commit", &e);
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

/// The step of a publish that found conflicts.
const CONFLICT: &str = "conflict";

/// The head moved: rebase the frozen tree onto it and publish again, or report the conflicts.
fn rebase_and_publish(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    attempt: &mut Attempt,
    (generation, base, manifest): (u64, &Option<String>, &[ManifestFile]),
    (head, head_has_files): (&Option<String>, bool),
) -> Result<String, PublishError> {
    let label = volume.label();
    let (head_short, base_short) = (
        head.as_deref().map_or("(none)", short),
        base.as_deref().map_or("(no version)", short),
    );
    if attempt.rebases >= REBASES {
        return Err(PublishError {
            errno: libc::EAGAIN,
            message: format!("{label}: the head keeps moving on the server; trying again later"),
            retryable: true,
            step: "rebase",
        });
    }
    attempt.rebases += 1;
    let head_files = head.as_deref().filter(|_| head_has_files);
    match volume.rebase(
        generation,
        base.as_deref(),
        manifest,
        head.as_deref(),
        head_files,
    ) {
        Ok(Rebased::Onto { ours }) => {
            tracing::info!(volume = %label, from = base_short, onto = head_short, our_files = ours,
                "the head moved on the server and the two sides changed different paths: rebased the staged \
                 changes onto it");
            publish_once(api, volume, attempt)
        }
        Ok(Rebased::Conflicts(paths)) => Err(PublishError {
            errno: libc::ESTALE,
            message: conflict_message(&label, head_short, base_short, &paths),
            retryable: false,
            step: CONFLICT,
        }),
        Err(RebaseError { error, retryable }) => Err(PublishError {
            errno: error.errno,
            message: error.message,
            retryable,
            step: "rebase",
        }),
    }
}

/// What a conflict says, naming the paths and both ways out.
fn conflict_message(label: &str, head: &str, base: &str, paths: &[String]) -> String {
    let mut named = paths
        .iter()
        .take(NAMED_PATHS)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > NAMED_PATHS {
        named.push_str(&format!(" and {} more", paths.len() - NAMED_PATHS));
    }
    format!(
        "the head of {label} moved on the server to {head} since these changes were based on \
         {base}, and both sides changed {count} path(s): {named}. Not published; the changes stay staged. \
         `vm0fs sync --force PATH` publishes this tree as it is ({label}@{head} stays readable), \
         `vm0fs discard PATH` drops the staged changes and shows the head",
        count = paths.len()
    )
}
