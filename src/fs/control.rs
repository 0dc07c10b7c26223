//! The hidden `.vm0fs/` directory: how a mount tells `vm0fs status` about itself and takes `vm0fs prefetch`.
//!
//! A directory inside the mount, rather than a socket or a state file in the cache directory, because it needs
//! no discovery (the mount point is the address), no cleanup after a crash (it vanishes with the mount), and its
//! permissions are the mount's own: whoever may use the mount may ask it, nobody else. It is reachable by name but
//! not listed in the root, so `ls -a`, `find` and `cp -r` of the mount never meet it.
//!
//! `.vm0fs/status` is JSON rendered at each open (the mount, its uptime, how many inodes it holds, its cache, the
//! downloads in flight).
//! `.vm0fs/pins` lists the pinned version ids, and takes one command per line, `pin|unpin
//! <volumes|artifacts>/<name>[@<version>]`, acted on inside `write(2)` (an unknown archive fails the write with
//! `ENOENT`). `pin` pins the version the path shows now (the head, or the named version) without downloading it:
//! fetching is listing the archive's directory, which `vm0fs prefetch` does next. Fetching through a write would
//! serialize prefetches, because the kernel holds the file's inode lock across each `write(2)`, while listings of
//! different directories run in parallel.

use std::ffi::OsStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::inodes::{ControlFile, Node};
use super::{DirEntry, FileKind, Vm0Fs};
use crate::api::models::StorageKind;
use crate::cache::CacheStatus;

/// The name of the control directory in the root.
pub(super) const CONTROL_DIR: &str = ".vm0fs";

pub(super) const CONTROL_FILES: [(&str, ControlFile); 2] =
    [("status", ControlFile::Status), ("pins", ControlFile::Pins)];

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
    pub cache: CacheStatus,
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
            mounted_at: chrono::DateTime::<chrono::Utc>::from(self.mounted_at).to_rfc3339(),
            uptime_secs: uptime.as_secs_f64(),
            inodes: Some(self.inodes.len()),
            api_unreachable_since: self
                .meta
                .unreachable_since()
                .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339()),
            cache: self.cache.status(),
        };
        let mut json = serde_json::to_vec_pretty(&status).unwrap_or_default();
        json.push(b'\n');
        json
    }

    /// The listing of `.vm0fs/`.
    pub(super) fn control_children(&self) -> Vec<DirEntry> {
        CONTROL_FILES
            .iter()
            .map(|(name, file)| DirEntry {
                ino: self.inodes.acquire(&Node::ControlFile(*file)),
                kind: FileKind::File,
                name: (*name).into(),
            })
            .collect()
    }

    /// What reading `.vm0fs/pins` shows: one pinned version id per line.
    pub(super) fn pins_text(&self) -> Vec<u8> {
        self.cache
            .pinned()
            .iter()
            .flat_map(|vid| format!("{vid}\n").into_bytes())
            .collect()
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
        let path = format!("{}/{}", command.kind.plural(), command.name);
        let Node::StorageRoot { kind, name, pin } =
            self.child(&Node::StorageDir(command.kind), OsStr::new(command.name))?
        else {
            return Err(Error::not_found(path));
        };
        let Some(version) = self.version(kind, &name, pin.as_deref())? else {
            tracing::info!(".vm0fs/pins: {path} has no version yet; nothing to pin");
            return Ok(());
        };
        let pinned = command.verb == Verb::Pin;
        self.cache
            .set_pinned(&version.id, pinned)
            .map_err(|e| Error::new(e.errno(), format!("{path}: {e}")))?;
        let done = if pinned { "pinned" } else { "unpinned" };
        tracing::info!("{path}: version {} {done}", version.id);
        Ok(())
    }
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
