//! The hidden `.vm0fs/` directory: how a mount tells `vm0fs status` about itself and takes `vm0fs prefetch`.
//!
//! A directory inside the mount, rather than a socket or a state file in the cache directory, because it needs
//! no discovery (the mount point is the address), no cleanup after a crash (it vanishes with the mount), and its
//! permissions are the mount's own: whoever may use the mount may ask it, nobody else. It is reachable by name but
//! not listed in the root, so `ls -a`, `find` and `cp -r` of the mount never meet it.
//!
//! `.vm0fs/status` is JSON rendered at each open (the mount, its uptime, its cache, the downloads in flight).
//! `.vm0fs/prefetch` takes one command per line, `fetch|pin|unpin <volumes|artifacts>/<name>[@<version>]`, and
//! acts inside `write(2)`: the write returns once the archive is in the cache, or fails with the download's errno
//! (the reason is in the log), so a shell's `echo fetch volumes/x > .vm0fs/prefetch` is a blocking prefetch.
//! `pin` pins the version the path shows now (the head, or the named version) and fetches it; `unpin` only
//! releases it to the LRU.

use std::ffi::OsStr;
use std::time::SystemTime;

use serde::Serialize;

use super::error::{Error, Result};
use super::inodes::{ControlFile, Node};
use super::{DirEntry, FileKind, Vm0Fs};
use crate::api::models::StorageKind;
use crate::cache::CacheStatus;

/// The name of the control directory in the root.
pub(super) const CONTROL_DIR: &str = ".vm0fs";

pub(super) const CONTROL_FILES: [(&str, ControlFile); 2] = [
    ("status", ControlFile::Status),
    ("prefetch", ControlFile::Prefetch),
];

/// What `.vm0fs/status` shows.
#[derive(Serialize)]
struct MountStatus<'a> {
    vm0fs_version: &'static str,
    pid: u32,
    mountpoint: &'a str,
    api_url: &'a str,
    /// RFC 3339, UTC.
    mounted_at: String,
    uptime_secs: f64,
    cache: CacheStatus,
}

/// One line written to `.vm0fs/prefetch`.
#[derive(Debug, PartialEq, Eq)]
struct Command<'a> {
    verb: Verb,
    kind: StorageKind,
    /// `<name>` or `<name>@<version prefix>`, as in the tree.
    name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Fetch,
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
            vm0fs_version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            mountpoint: &self.config.mountpoint,
            api_url: &self.config.api_url,
            mounted_at: chrono::DateTime::<chrono::Utc>::from(self.mounted_at).to_rfc3339(),
            uptime_secs: uptime.as_secs_f64(),
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
                ino: self.inodes.ino(&Node::ControlFile(*file)),
                kind: FileKind::File,
                name: (*name).into(),
            })
            .collect()
    }

    /// Carries out what was written to `.vm0fs/prefetch`, line by line; the first failure ends the write.
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
            tracing::info!(".vm0fs/prefetch: {path} has no version yet; nothing to do");
            return Ok(());
        };
        let pin_error = |e: crate::cache::CacheError| Error::new(e.errno(), format!("{path}: {e}"));
        match command.verb {
            Verb::Unpin => return self.cache.set_pinned(&version.id, false).map_err(pin_error),
            Verb::Pin => self
                .cache
                .set_pinned(&version.id, true)
                .map_err(pin_error)?,
            Verb::Fetch => {}
        }
        if version.has_files {
            self.tree(kind, &version.storage.id, &version.id)?;
        }
        tracing::info!(".vm0fs/prefetch: {path} (version {}) is cached", version.id);
        Ok(())
    }
}

fn parse_command(line: &str) -> Result<Command<'_>> {
    let (verb, path) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| usage(line))?;
    let verb = match verb {
        "fetch" => Verb::Fetch,
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
            ".vm0fs/prefetch: cannot understand {what:?}; write `fetch|pin|unpin volumes/<name>` or \
             `... artifacts/<name>[@<version>]`, one per line"
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
            parse_command("fetch volumes/data").unwrap().verb,
            Verb::Fetch
        );
        for bad in [
            "fetch",
            "grab volumes/x",
            "fetch runs/x",
            "fetch volumes/",
            "fetch volumes/x/y",
        ] {
            assert_eq!(parse_command(bad).unwrap_err().errno, libc::EINVAL, "{bad}");
        }
    }
}
