//! How a volume's staged tree becomes one new version (CONTRACT.md 7.1 or 7.2); the thread that runs it is
//! `publisher`.
//!
//! One thread, so one publish runs at a time and never two of one volume. It waits on a channel with a timeout: a
//! change of a volume (re)starts its quiet period (`--commit-delay`), `vm0fs sync` publishes at once and gets the
//! result, an unmount drains until a deadline. A publish is: freeze (the file list and the generation of the tree) →
//! start the flush of the staged changes to the local disk beside what follows (`Flush`: it is waited for before
//! anything is committed or recorded) → hash every file and compute the version id the content will have → read the
//! head on the server (equal to that id: already published, by a commit whose reply was lost; different from the
//! version the changes were based on: someone else published, so the changes are rebased onto the new head when the two
//! sides changed different paths, and kept staged as a conflict otherwise, see `rebase`; gone: the volume was deleted
//! on the server, and the changes stay staged) → send the files with the mount's protocol (`push`: a session and a PUT
//! per file, or a prepare and one archive; a 403 is an expired URL: start again with fresh ones) → check that nothing
//! changed meanwhile, and read the head once more → commit, sent once; when its reply is lost the head tells whether it
//! went through. A failure that may pass (network, 5xx, 429, expired URL, a head that moved during the upload) is
//! retried with backoff and never drops a change; the others are shown in `vm0fs status` and answered to `vm0fs sync`
//! until the next change or sync tries again. `vm0fs sync --force` publishes the tree as it is over whatever the head
//! is (the earlier head stays readable as a version), and `vm0fs discard` drops the staged changes; both run on this
//! thread too, so neither overlaps a publish.
//!
//! Known limit of the contract: the commit has no precondition (no compare-and-swap on the head), so a head that
//! moves between the last check and the commit is overwritten. That window is one request long (the second head
//! check is sent right before the commit, after every upload); the version it overwrote stays readable as
//! `<name>@<version>`, and the next publish from anywhere is based on ours.

use super::error::PublishError;
use super::manifest::LocalOnly;
use super::manifest::{self, ManifestFile};
use super::rebase::Rebased;
use super::status::{Mode, Phase, ShapeNote, WAITING, short};
use super::upload::{self, Protocol};
use super::volume::{Snapshot, VolumeStage};
use crate::api::models::StorageKind;
use crate::api::{ApiErrorKind, Vm0Api};
use std::cell::{Cell, RefCell};
use std::io;
use std::thread::ScopedJoinHandle;
use std::time::Instant;

/// How many rebases one publish makes before it calls the head too busy and tries again later.
const REBASES: u32 = 3;
/// How many conflicting paths a message names.
const NAMED_PATHS: usize = 10;

/// One publish's way through: its mode, what it replaced, how many rebases it made, and the mount's upload
/// protocol (which it may switch, see `push`).
pub(super) struct Attempt<'p> {
    pub(super) mode: Mode,
    pub(super) replaced: Option<String>,
    /// What of the tree the version does not hold (see `Published::note`).
    pub(super) note: Option<String>,
    pub(super) rebases: u32,
    pub(super) protocol: &'p Cell<Protocol>,
}

impl Attempt<'_> {
    pub(super) fn new(mode: Mode, protocol: &Cell<Protocol>) -> Attempt<'_> {
        Attempt {
            mode,
            replaced: None,
            note: None,
            rebases: 0,
            protocol,
        }
    }
}

/// The head moved on the server while the view shows the staged changes over an older one: the changes are rebased
/// onto it, without publishing anything, so that the view is the head plus what is staged even when what is staged
/// is only what a version cannot hold (a mode, a symlink, an empty directory) and no publish is due. Conflicting
/// changes keep the view where it is, and say so in `vm0fs status`.
pub(super) fn follow(api: &dyn Vm0Api, volume: &VolumeStage) {
    if volume.discarded() || !volume.has_changes() {
        return;
    }
    let label = volume.label();
    let result = (|| {
        let (head, head_has_files) = upload::server_head(api, &volume.upload_target())?;
        let Snapshot {
            generation,
            base,
            files,
            ..
        } = volume.freeze();
        if head == base {
            return Ok(());
        }
        let manifest = hash(&label, files)?;
        rebase_onto(
            volume,
            (generation, &base, &manifest),
            (&head, head_has_files),
        )
    })();
    if let Err(e) = result {
        tracing::warn!(volume = %label, step = e.step, "the view stays on its version: {}", e.message);
        if e.step == CONFLICT {
            volume.set_phase(Phase::Conflict(e.message));
        } else {
            volume.follow_failed();
        }
    }
}

/// One publish of `volume`, its outcome recorded in its phase and the log.
pub(super) fn publish(
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
    let snapshot = volume.freeze();
    std::thread::scope(|scope| {
        let flush = Flush(RefCell::new(Some(scope.spawn(|| volume.commit.commit()))));
        publish_frozen(api, volume, attempt, snapshot, &flush)
    })
}

/// The flush of the staged changes to the local disk (the group commit), started once the tree is frozen and
/// running beside the hashing and the upload, which read the same bytes from the page cache. It is waited for
/// before the server's commit and before the journal records a version: what is published is on the local disk
/// first, so a power loss after the commit finds it staged.
struct Flush<'scope>(RefCell<Option<ScopedJoinHandle<'scope, io::Result<()>>>>);

impl Flush<'_> {
    fn wait(&self, label: &str) -> Result<(), PublishError> {
        let Some(running) = self.0.borrow_mut().take() else {
            return Ok(());
        };
        running
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the flushing thread panicked")))
            .map_err(|e| PublishError {
                errno: e.raw_os_error().unwrap_or(libc::EIO),
                message: format!("{label}: flushing the staged changes to disk failed: {e}"),
                retryable: true,
                step: "read",
            })
    }
}

fn publish_frozen(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    attempt: &mut Attempt,
    snapshot: Snapshot,
    flush: &Flush,
) -> Result<String, PublishError> {
    let Snapshot {
        generation,
        base,
        files,
        local,
        tree,
    } = snapshot;
    let label = volume.label();
    let hashing = Instant::now();
    let manifest = hash(&label, files)?;
    let hash_ms = hashing.elapsed().as_millis() as u64;
    let id = manifest::version_id(&volume.storage_id, &manifest);
    let done = |v: &str| -> Result<String, PublishError> {
        flush.wait(&label)?;
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
    // Asked even when the tree is its base's content: what `vm0fs sync` prints must be the server's head.
    let (head, head_has_files) = upload::server_head(api, &volume.upload_target())?;
    let nothing_to_send = base.as_deref() == Some(id.as_str());
    // The tree changed, its content did not: what changed is modes, links or times.
    let unsent = nothing_to_send && volume.dirty();
    if base.is_none() && head.is_none() && manifest.is_empty() {
        return Err(PublishError {
            errno: libc::ENODATA,
            message: format!("{label} holds no files and has no version yet: nothing to publish"),
            retryable: false,
            step: "manifest",
        });
    }
    if head.as_deref() == Some(id.as_str()) {
        if !nothing_to_send {
            tracing::info!(volume = %label, version = short(&id), "already published (an earlier commit went through)");
        }
        note_shape(volume, attempt, &local, unsent);
        return done(&id);
    }
    if head != base && !volume.has_changes() {
        // Nothing staged: the view follows the head by itself (the stage is made again over the listed head).
        (volume.heads_moved)();
        return head.ok_or_else(|| PublishError {
            errno: libc::ENODATA,
            message: format!("{label} has no version on the server any more"),
            retryable: false,
            step: "head check",
        });
    }
    if head != base {
        if attempt.mode == Mode::Careful {
            let frozen = (generation, &base, manifest.as_slice());
            return rebase_and_publish(api, volume, attempt, frozen, (&head, head_has_files));
        }
        tracing::warn!(volume = %label, head = head.as_deref().map_or("(none)", short),
            "--force: publishing the local tree over a head that moved (it stays readable as a version)");
        attempt.replaced = head;
    } else if nothing_to_send {
        note_shape(volume, attempt, &local, unsent);
        return done(&id);
    }
    let progress = |done, total| volume.set_phase(Phase::Publishing { done, total });
    let target = volume.upload_target();
    let sending = Instant::now();
    let sent = upload::send(api, &target, &manifest, &tree, attempt.protocol, &progress)?;
    let upload_ms = sending.elapsed().as_millis() as u64;
    note_shape(volume, attempt, &local, false);
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
    flush.wait(&label)?;
    let committing = Instant::now();
    match upload::commit(api, &target, sent, &manifest, message) {
        Ok(version) => {
            if version != id {
                tracing::warn!(volume = %label, local = short(&id), server = short(&version),
                    "the server's version id is not the content hash computed here");
            }
            tracing::info!(volume = %label, version = short(&version), files = manifest.len(), hash_ms,
                upload_ms, commit_ms = committing.elapsed().as_millis() as u64, "published");
            if let Some(note) = &attempt.note {
                tracing::warn!(volume = %label, version = short(&version), "{note}");
            }
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

/// The manifest of the frozen files.
fn hash(label: &str, files: Vec<manifest::Frozen>) -> Result<Vec<ManifestFile>, PublishError> {
    manifest::hash_files(files).map_err(|e| PublishError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        message: format!("{label}: reading the staged files failed: {e}"),
        retryable: true,
        step: "read",
    })
}

/// Says what of the tree the version does not hold: on `/v1`, what stays on this machine; on the push flow,
/// nothing, unless the content did not change while the tree did (`unsent`): then its modes, links or times wait.
fn note_shape(volume: &VolumeStage, attempt: &mut Attempt, local: &LocalOnly, unsent: bool) {
    let (shape, note) = match attempt.protocol.get() {
        Protocol::V1 => (
            ShapeNote::Local,
            (!local.is_empty()).then(|| local.to_string()),
        ),
        Protocol::Push if unsent => (ShapeNote::Waiting, Some(WAITING.to_string())),
        Protocol::Push => (ShapeNote::Published, None),
    };
    if unsent && let Some(note) = &note {
        tracing::warn!(volume = %volume.label(), "{note}");
    }
    volume.set_shape_note(shape);
    attempt.note = note;
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
    if attempt.rebases >= REBASES {
        let label = volume.label();
        return Err(PublishError {
            errno: libc::EAGAIN,
            message: format!("{label}: the head keeps moving on the server; trying again later"),
            retryable: true,
            step: "rebase",
        });
    }
    attempt.rebases += 1;
    rebase_onto(volume, (generation, base, manifest), (head, head_has_files))?;
    publish_once(api, volume, attempt)
}

/// Rebases the frozen tree onto `head`, or reports the conflicts.
fn rebase_onto(
    volume: &VolumeStage,
    (generation, base, manifest): (u64, &Option<String>, &[ManifestFile]),
    (head, head_has_files): (&Option<String>, bool),
) -> Result<(), PublishError> {
    let label = volume.label();
    let (head_short, base_short) = (
        head.as_deref().map_or("(none)", short),
        base.as_deref().map_or("(no version)", short),
    );
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
            Ok(())
        }
        Ok(Rebased::Conflicts(paths)) => Err(PublishError {
            errno: libc::ESTALE,
            message: conflict_message(&label, head_short, base_short, &paths),
            retryable: false,
            step: CONFLICT,
        }),
        Err(e) => Err(e.into()),
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
