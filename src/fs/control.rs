//! The hidden `.vm0fs/` directory: how a mount tells `vm0fs status` about itself and takes `vm0fs prefetch`.
//!
//! A directory inside the mount, rather than a socket or a state file in the cache directory, because it needs
//! no discovery (the mount point is the address), no cleanup after a crash (it vanishes with the mount), and its
//! permissions are the mount's own: whoever may use the mount may ask it, nobody else. It is reachable by name but
//! not listed in the root, so `ls -a`, `find` and `cp -r` of the mount never meet it.
//!
//! `.vm0fs/status` is JSON rendered at each open (the mount, its uptime, how many inodes it holds, its cache, the
//! downloads in flight, the FUSE requests served by opcode).
//! `.vm0fs/pins` lists the pinned version ids, and takes one command per line, `pin|unpin
//! <volumes|artifacts>/<name>[@<version>]`, acted on inside `write(2)` (an unknown archive fails the write with
//! `ENOENT`). `pin` pins the version the path shows now (the head, or the named version) without downloading it:
//! fetching is listing the archive's directory, which `vm0fs prefetch` does next. Fetching through a write would
//! serialize prefetches, because the kernel holds the file's inode lock across each `write(2)`, while listings of
//! different directories run in parallel.

use crate::sync::Locked;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Vm0Fs;
use super::error::{Error, Result};
use super::inodes::Node;
use super::tree::StorageNode;
use crate::api::CallCounts;
use crate::api::models::StorageKind;
use crate::cache::CacheStatus;
use crate::stage::{Mode, PublishError, PublishProgress, Published, VolumeStage};

/// What `.vm0fs/status` shows, and `vm0fs status` reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct MountStatus {
    pub vm0fs_version: String,
    pub pid: u32,
    pub mountpoint: String,
    pub api_url: String,
    /// RFC 3339, UTC.
    pub mounted_at: String,
    pub uptime_secs: f64,
    /// Nodes that have an inode number now: what the kernel and open listings still hold. Absent from mounts
    /// older than this field.
    #[serde(default)]
    pub inodes: Option<usize>,
    /// RFC 3339, UTC: since when the API has not answered; absent while it answers (and from older mounts).
    #[serde(default)]
    pub api_unreachable_since: Option<String>,
    /// The requests sent to the API since the mount, its retries, the calls held back (failed at once) while it
    /// could not be reached, and the probes that asked whether it answers again. Absent from older mounts.
    #[serde(default)]
    pub api_calls: Option<CallCounts>,
    pub cache: CacheStatus,
    /// Each volume with staged changes or a recent publish: one line saying where it stands.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// The volumes (`volumes/<name>`) whose changes are not all published: what the process publishes at unmount
    /// before it ends (what `vm0fs unmount` says it waits for). Absent from mounts older than this field.
    #[serde(default)]
    pub unpublished: Vec<String>,
    /// The publishes uploading now, with their bytes (what `vm0fs sync` draws its bar from). Absent from mounts
    /// older than this field.
    #[serde(default)]
    pub publishing: Vec<PublishProgress>,
    /// The FUSE requests served since the mount, by opcode (`lookup`, `getattr`, ...); opcodes never sent are
    /// left out. Absent from mounts older than this field.
    #[serde(default)]
    pub requests: Option<BTreeMap<String, RequestStats>>,
    /// Group commits of the staging area run since the mount: each took every volume's journal and written files
    /// to the disk (`stage::commit`). Absent from mounts older than this field.
    #[serde(default)]
    pub journal_flushes: Option<u64>,
}

/// How many requests of one opcode were served, and the time spent on them, split by where they were answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStats {
    pub count: u64,
    /// Answered on the thread that read them from the kernel.
    pub inline: u64,
    /// Their total time in microseconds, from the handler's start to the reply.
    pub inline_us: u64,
    /// Handed to the worker pool (work that may wait for the network).
    pub pooled: u64,
    /// Their total time in microseconds, queueing on the pool included.
    pub pooled_us: u64,
}

/// Where the request counters live: the FUSE adapter counts, the core shows them in `.vm0fs/status`.
pub trait RequestCounts: Send + Sync {
    fn snapshot(&self) -> BTreeMap<String, RequestStats>;
}

/// One line written to `.vm0fs/pins`.
#[derive(Debug, PartialEq, Eq)]
struct Command<'a> {
    verb: Verb,
    kind: StorageKind,
    /// `<name>` or `<name>@<version prefix>`, as in the tree.
    name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Pin,
    Unpin,
}

impl Vm0Fs {
    /// The JSON of `.vm0fs/status`.
    pub(super) fn status_json(&self) -> Vec<u8> {
        let uptime = SystemTime::now()
            .duration_since(self.mounted_at)
            .unwrap_or_default();
        let status = MountStatus {
            vm0fs_version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            mountpoint: self.config.mountpoint.clone(),
            api_url: self.config.api_url.clone(),
            mounted_at: to_the_second(self.mounted_at),
            uptime_secs: uptime.as_secs_f64(),
            inodes: Some(self.inodes.len()),
            api_unreachable_since: self.meta.unreachable_since().map(to_the_second),
            api_calls: Some(self.meta.api().reachability().calls),
            cache: self.cache.status(),
            volumes: self.volumes.stage().map(|s| s.status()).unwrap_or_default(),
            publishing: self
                .volumes
                .stage()
                .map(|s| s.publishing())
                .unwrap_or_default(),
            requests: self.request_counts.get().map(|counts| counts.snapshot()),
            unpublished: (self.volumes.stage())
                .map(|s| s.unpublished())
                .unwrap_or_default(),
            journal_flushes: self.volumes.stage().ok().map(|s| s.commits()),
        };
        let mut json = serde_json::to_vec_pretty(&status).unwrap_or_default();
        json.push(b'\n');
        json
    }

    /// What reading `.vm0fs/pins` shows: one pinned version id per line.
    pub(super) fn pins_text(&self) -> Vec<u8> {
        self.cache
            .pinned()
            .iter()
            .flat_map(|vid| format!("{vid}\n").into_bytes())
            .collect()
    }

    /// Publishes each volume named in what was written to `.vm0fs/sync` (`volumes/<name>` per line) and waits;
    /// each outcome is appended to `outcome`, and the first failure fails the write with its errno.
    pub(super) fn sync_command(&self, written: &[u8], outcome: &Mutex<Vec<u8>>) -> Result<()> {
        let text = std::str::from_utf8(written)
            .map_err(|_| Error::new(libc::EINVAL, ".vm0fs/sync: write `volumes/<name>` lines"))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let result = self.sync_one(line);
            let shown = match &result {
                Ok(said) => format!("{said}\n"),
                Err(e) => format!("error: {}\n", e.message),
            };
            outcome.locked().extend_from_slice(shown.as_bytes());
            result?;
        }
        Ok(())
    }

    /// One line of `.vm0fs/sync`: `[force |discard ]volumes/<name>[ timeout=<seconds>]`; answers what to show.
    /// Without a timeout a failure that may pass is tried a few times (about 45 s); with one, until it is up.
    fn sync_one(&self, line: &str) -> Result<String> {
        let (line, timeout) = sync_timeout(line)?;
        let (verb, target) = match line.split_once(' ') {
            Some((verb @ ("force" | "discard"), rest)) => (verb, rest.trim()),
            _ => ("sync", line),
        };
        let name = target
            .strip_prefix("volumes/")
            .map(|n| n.trim_end_matches('/'))
            .filter(|n| !n.is_empty() && !n.contains('/') && !n.contains('@'))
            .ok_or_else(|| {
                Error::new(
                    libc::EINVAL,
                    format!(
                        ".vm0fs/sync: {line:?} is not `[force |discard ]volumes/<name>` (only volume heads are \
                         published)"
                    ),
                )
            })?;
        let volume = self.volume_with_changes(name)?;
        let said = match verb {
            "discard" => self.discard_volume(name, &volume)?,
            _ => {
                let mode = if verb == "force" {
                    Mode::Force
                } else {
                    Mode::Careful
                };
                let published = (self.volumes.stage()?)
                    .publish(&volume, mode, timeout)
                    .map_err(|e| self.naming_the_api(e))?;
                published_line(name, &published)
            }
        };
        self.meta.storages_changed(StorageKind::Volume);
        Ok(said)
    }

    /// A publish that did not happen; one that may pass also names the API it could not get through to, and says
    /// that nothing is lost.
    fn naming_the_api(&self, mut e: PublishError) -> PublishError {
        if e.retryable {
            e.message = format!(
                "{} [the VM0 API at {}]; the changes stay staged: `vm0fs sync` again once it answers, or they are \
                 published at unmount",
                e.message, self.config.api_url
            );
        }
        e
    }

    /// The stage of volume `name`; for a volume the server no longer lists, the one its staged changes are in.
    fn volume_with_changes(&self, name: &str) -> Result<Arc<VolumeStage>> {
        match self.volumes.by_name(name) {
            Err(e) if e.errno == libc::ENOENT => self.volumes.stage()?.staged_named(name).ok_or(e),
            other => other,
        }
    }

    /// `vm0fs discard`: drops the staged changes and says what the view shows now.
    fn discard_volume(&self, name: &str, volume: &Arc<VolumeStage>) -> Result<String> {
        let dropped = self.volumes.stage()?.discard(volume)?;
        self.meta.storages_changed(StorageKind::Volume);
        let now = match self.volumes.by_name(name).map(|v| v.head()) {
            Ok(Some(head)) => format!("it shows its head volumes/{name}@{} again", short(&head)),
            Ok(None) => "it shows its head again (the volume has no version yet)".to_string(),
            Err(e) if e.errno == libc::ENOENT => {
                "the volume no longer exists on the server".to_string()
            }
            Err(e) => format!("its head cannot be read now ({})", e.message),
        };
        let local = if dropped.local.is_empty() {
            String::new()
        } else {
            format!(
                ", and what existed on this machine only: {}",
                dropped.local.counts()
            )
        };
        Ok(if dropped.had_changes {
            format!(
                "volumes/{name}: dropped the staged changes ({} staged file{}, {} bytes{local}); {now}",
                dropped.files,
                if dropped.files == 1 { "" } else { "s" },
                dropped.bytes
            )
        } else {
            format!("volumes/{name}: nothing was staged; {now}")
        })
    }

    /// Carries out what was written to `.vm0fs/pins`, line by line; the first failure ends the write.
    pub(super) fn control_command(&self, written: &[u8]) -> Result<()> {
        let text =
            std::str::from_utf8(written).map_err(|_| usage("the command is not UTF-8 text"))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            self.run_command(parse_command(line)?)?;
        }
        Ok(())
    }

    fn run_command(&self, command: Command<'_>) -> Result<()> {
        let root = self.child(
            &Node::Storage(StorageNode::Dir(command.kind)),
            OsStr::new(command.name),
        )?;
        self.set_pin(&root, command.verb == Verb::Pin).map(|_| ())
    }

    /// Reading `user.vm0.pin` or `user.vm0.unpin` of a storage directory pins or unpins the version it shows
    /// and answers its id (empty when the storage has no version yet). A read, so that pins, which are local,
    /// work on a `--read-only` mount too, where the kernel refuses every write (`vm0fs prefetch --pin` uses it).
    /// `None` for any other attribute name.
    pub(super) fn pin_xattr(&self, node: &Node, name: &OsStr) -> Option<Result<Vec<u8>>> {
        let pinned = match name.to_str()? {
            PIN_XATTR => true,
            UNPIN_XATTR => false,
            _ => return None,
        };
        Some(self.set_pin(node, pinned).map(String::into_bytes))
    }

    /// Pins or unpins the version a storage directory shows; answers its id.
    fn set_pin(&self, root: &Node, pinned: bool) -> Result<String> {
        let path = root.namespace().describe();
        let Some(version) = self.version_of_root(root)? else {
            tracing::info!("{path} has no version yet; nothing to pin");
            return Ok(String::new());
        };
        let base = path.split('@').next().unwrap_or(&path);
        let archive = format!("{base}@{}", short(&version.id));
        self.cache
            .set_pinned(&version.id, pinned)
            .map_err(|e| Error::new(e.errno(), format!("{archive}: {e}")).caused_by(e))?;
        let done = if pinned { "pinned" } else { "unpinned" };
        tracing::info!("{archive}: {done}");
        Ok(version.id)
    }
}

/// A `.vm0fs/sync` line without its ` timeout=<seconds>`, and that timeout.
fn sync_timeout(line: &str) -> Result<(&str, Option<Duration>)> {
    let Some((rest, seconds)) = line.rsplit_once(" timeout=") else {
        return Ok((line, None));
    };
    let timeout = (seconds.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            Error::new(
                libc::EINVAL,
                format!(".vm0fs/sync: {line:?}: the timeout is not a number of seconds"),
            )
        })?;
    Ok((rest.trim_end(), Some(timeout)))
}

/// The attribute names whose reading pins and unpins a storage directory's version.
pub const PIN_XATTR: &str = "user.vm0.pin";
pub const UNPIN_XATTR: &str = "user.vm0.unpin";

/// What `vm0fs sync` prints for a published volume: `volumes/<name>@<8 hex>`, what `--force` replaced, and a last
/// line naming what the version does not hold (kept on this machine, or waiting for a change of content).
fn published_line(name: &str, published: &Published) -> String {
    let line = format!("volumes/{name}@{}", short(&published.version));
    let line = match &published.replaced {
        Some(old) => format!(
            "{line} (forced: the local tree as it is replaced the head volumes/{name}@{old8}, which stays \
             readable under that name)",
            old8 = short(old)
        ),
        None => line,
    };
    match &published.note {
        Some(note) => format!("{line}\n{note}"),
        None => line,
    }
}

/// The first 8 characters of a version id: how messages name a version (`volumes/<name>@<8 hex>`).
pub(super) fn short(version_id: &str) -> &str {
    version_id.get(..8).unwrap_or(version_id)
}

fn parse_command(line: &str) -> Result<Command<'_>> {
    let (verb, path) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| usage(line))?;
    let verb = match verb {
        "pin" => Verb::Pin,
        "unpin" => Verb::Unpin,
        _ => return Err(usage(line)),
    };
    let path = path.trim().trim_end_matches('/');
    let (kind, name) = path.split_once('/').ok_or_else(|| usage(line))?;
    let kind = match kind {
        "volumes" => StorageKind::Volume,
        "artifacts" => StorageKind::Artifact,
        _ => return Err(usage(line)),
    };
    if name.is_empty() || name.contains('/') {
        return Err(usage(line));
    }
    Ok(Command { verb, kind, name })
}

fn usage(what: &str) -> Error {
    Error::new(
        libc::EINVAL,
        format!(
            ".vm0fs/pins: cannot understand {what:?}; write `pin volumes/<name>`, \
             `unpin artifacts/<name>[@<version>]`, one per line"
        ),
    )
}

/// A time as people read it in a status: RFC 3339, UTC, to the second (`2026-12-07T20:41:22Z`).
fn to_the_second(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_a_verb_and_an_archive() {
        assert_eq!(
            parse_command("pin artifacts/out@1a2b3c4d/").unwrap(),
            Command {
                verb: Verb::Pin,
                kind: StorageKind::Artifact,
                name: "out@1a2b3c4d"
            }
        );
        assert_eq!(
            parse_command("unpin volumes/data").unwrap().verb,
            Verb::Unpin
        );
        for bad in [
            "pin",
            "fetch volumes/x",
            "pin runs/x",
            "pin volumes/",
            "pin volumes/x/y",
        ] {
            assert_eq!(parse_command(bad).unwrap_err().errno, libc::EINVAL, "{bad}");
        }
    }
}
