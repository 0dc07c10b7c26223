//! `vm0fs sync PATH...`: publish the staged changes of volumes now, and wait for the new versions.
//!
//! The command publishes nothing itself: it writes `volumes/<name>` to the mount's `.vm0fs/sync`, and the mount
//! publishes through its own staging area and publisher (the one that also publishes after `--commit-delay`), so
//! there is one path to a new version whatever asked for it. The write returns when the version is committed, or
//! fails with the errno of why not; the same open file is then read for the line to show
//! (`volumes/<name>@<8 hex>`, or `error: <reason>`), printed on stdout; a second line, what the version could not
//! hold (`kept on this machine only: …`) or that a change waits (`waiting: …`), goes to stderr. Each PATH may be
//! the volume's directory or any path inside it.
//! `--force` writes `force volumes/<name>`, and `vm0fs discard` writes `discard volumes/<name>` the same way;
//! `--timeout SECONDS` adds ` timeout=SECONDS`, and the mount retries a failure that may pass until then.
//! While it waits, a progress bar shows the upload on a terminal (`publish_bar`).

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path};

use super::SyncArgs;
use super::mounts::mount_holding;
use super::publish_bar::PublishBar;

pub fn run(args: &SyncArgs) -> i32 {
    let mut failed = false;
    let verb = if args.force { Some("force") } else { None };
    for path in &args.paths {
        match sync_one(path, verb, args.timeout) {
            Ok(said) => {
                // The version on stdout alone, so that `v=$(vm0fs sync volumes/x)` is the version; a note on what
                // the version could not hold goes to stderr.
                let (version, notes) = said.split_once('\n').unwrap_or((&said, ""));
                println!("{version}");
                for note in notes.lines().filter(|l| !l.is_empty()) {
                    eprintln!("vm0fs: {note}");
                }
            }
            Err(message) => {
                eprintln!("vm0fs: {message}");
                failed = true;
            }
        }
    }
    i32::from(failed)
}

/// `volumes/<name>` of a path inside a mount, or why it is not in a volume's head.
fn volume_of(rel: &Path) -> Option<String> {
    let mut parts = rel.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(top)), Some(Component::Normal(name)))
            if top == "volumes" && !name.to_string_lossy().contains('@') =>
        {
            Some(format!("volumes/{}", name.to_string_lossy()))
        }
        _ => None,
    }
}

/// Sends `[verb ]volumes/<name>[ timeout=<seconds>]` for the volume `path` lies in; what the mount said, or why
/// it failed.
pub(super) fn sync_one(
    path: &Path,
    verb: Option<&str>,
    timeout: Option<f64>,
) -> Result<String, String> {
    let shown = path.display();
    let (mountpoint, rel) = mount_holding(path)?;
    let volume = volume_of(&rel).ok_or_else(|| {
        format!(
            "{shown}: not inside a volume's head (volumes/<name>/...); only those are published"
        )
    })?;
    let control = mountpoint.join(".vm0fs/sync");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&control)
        .map_err(|e| {
            format!(
                "{}: {e} (is the mount older than `vm0fs sync`?)",
                control.display()
            )
        })?;
    let within = timeout.map_or_else(String::new, |s| format!(" timeout={s}"));
    let command = match verb {
        Some(verb) => format!("{verb} {volume}{within}\n"),
        None => format!("{volume}{within}\n"),
    };
    // A discard uploads nothing: no bar.
    let bar = match verb {
        Some("discard") => None,
        _ => PublishBar::start(&mountpoint, &volume),
    };
    let written = file.write_all(command.as_bytes());
    drop(bar);
    let mut outcome = String::new();
    let read = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut outcome));
    let outcome = outcome.trim().to_string();
    match (written, read) {
        (Ok(()), Ok(_)) if !outcome.is_empty() && !outcome.starts_with("error: ") => Ok(outcome),
        (_, Ok(_)) if outcome.starts_with("error: ") => Err(format!(
            "{volume} was not {}: {}",
            done_word(verb),
            &outcome["error: ".len()..]
        )),
        (Err(e), _) => Err(format!("{volume} was not {}: {e}", done_word(verb))),
        (Ok(()), _) => Err(format!(
            "{volume}: the mount did not say what became of the publish"
        )),
    }
}

fn done_word(verb: Option<&str>) -> &'static str {
    if verb == Some("discard") {
        "discarded"
    } else {
        "published"
    }
}
