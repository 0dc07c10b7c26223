//! `vm0fs wait RUN...`: block until runs are terminal, print `<id> <status>` for each, and say in the exit status
//! how they ended.
//!
//! Like `status` and `prefetch`, the command talks to a mount rather than to the API: it needs no token of its
//! own, asks nothing the mount does not already cache, and sees the run the way the user's other tools do. A RUN
//! is a path into a mount (`~/vm0/runs/latest`, `runs/<id>/logs`: the run is the directory after `runs/`,
//! symlinks resolved), or an id or an id prefix of at least 8 hex characters, looked up in `--mount`, else in the
//! mount holding the working directory, else in the only vm0fs mount of the user. The full id is the run
//! directory's `user.vm0.id`; its status is `runs/<id>/status`, read twice a second (the mount believes a moving
//! run's detail for one second) until it is terminal.
//!
//! Exit status: 0 when every run completed; otherwise that of the first run, in the order given, that did not:
//! 3 failed, 4 timeout, 5 cancelled. 1 when a run or a mount cannot be found or read, 2 for a usage error, 124
//! when `--timeout` passes first (as `timeout(1)` does).

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::mounts::{absolute, mount_holding, own_mounts, xattr};

/// How often a run's status file is read.
const POLL: Duration = Duration::from_millis(500);
/// Exit statuses (see the module documentation and `after_help`).
const EXIT_ERROR: i32 = 1;
const EXIT_FAILED: i32 = 3;
const EXIT_TIMEOUT: i32 = 4;
const EXIT_CANCELLED: i32 = 5;
const EXIT_TIMED_OUT_WAITING: i32 = 124;

#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 when every run completed; else that of the first run (in the order given) \
that did not: 3 failed, 4 timeout, 5 cancelled; 1 when a run or a mount cannot be found; 2 for a usage error; \
124 when --timeout passes first. Each run prints `<id> <status>` when it ends, in the order they end."
)]
pub struct WaitArgs {
    /// Runs to wait for: a run id, 8 or more hex characters of one, or a path in a mount (runs/latest, runs/<id>)
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<String>,
    /// The vm0fs mount to look ids up in [default: the one holding the working directory, else your only one]
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,
    /// Give up after this many seconds (exit status 124)
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
}

/// A run being waited for: its full id and its status file.
struct Waited {
    id: String,
    status_file: PathBuf,
    /// The terminal status, once seen.
    ended: Option<String>,
}

pub fn run(args: &WaitArgs) -> i32 {
    let deadline = match args.timeout {
        Some(secs) if secs.is_finite() && secs >= 0.0 => {
            Some(Instant::now() + Duration::from_secs_f64(secs))
        }
        Some(secs) => {
            eprintln!("vm0fs wait: --timeout {secs} is not a number of seconds");
            return super::EXIT_USAGE;
        }
        None => None,
    };
    let mut waited = Vec::new();
    for given in &args.runs {
        match resolve(given, args.mount.as_deref()) {
            Ok(run) => waited.push(run),
            Err(message) => {
                eprintln!("vm0fs wait: {message}");
                return EXIT_ERROR;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    while waited.iter().any(|w| w.ended.is_none()) {
        for run in waited.iter_mut().filter(|w| w.ended.is_none()) {
            match std::fs::read_to_string(&run.status_file) {
                Ok(text) => {
                    let status = text.trim();
                    if is_terminal(status) {
                        let _ = writeln!(out, "{} {status}", run.id);
                        let _ = out.flush();
                        run.ended = Some(status.to_string());
                    }
                }
                Err(e) => {
                    eprintln!(
                        "vm0fs wait: cannot read {}: {}",
                        run.status_file.display(),
                        crate::errno::io_message(&e)
                    );
                    return EXIT_ERROR;
                }
            }
        }
        if waited.iter().all(|w| w.ended.is_some()) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let left: Vec<&str> = waited
                .iter()
                .filter(|w| w.ended.is_none())
                .map(|w| w.id.as_str())
                .collect();
            eprintln!("vm0fs wait: timed out; still running: {}", left.join(" "));
            return EXIT_TIMED_OUT_WAITING;
        }
        std::thread::sleep(POLL);
    }
    waited
        .iter()
        .filter_map(|w| w.ended.as_deref())
        .map(exit_status)
        .find(|code| *code != 0)
        .unwrap_or(0)
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "timeout" | "cancelled")
}

fn exit_status(status: &str) -> i32 {
    match status {
        "completed" => 0,
        "failed" => EXIT_FAILED,
        "timeout" => EXIT_TIMEOUT,
        "cancelled" => EXIT_CANCELLED,
        _ => EXIT_ERROR,
    }
}

/// The run that `given` names: a path into a mount, or an id (prefix) looked up in a mount.
fn resolve(given: &str, mount: Option<&Path>) -> Result<Waited, String> {
    let as_path = Path::new(given);
    let dir = if given.contains('/') || as_path.exists() {
        run_dir_of_path(given, as_path)?
    } else {
        let mountpoint = match mount {
            Some(m) => m.to_path_buf(),
            None => default_mount()?,
        };
        mountpoint.join("runs").join(given)
    };
    let id = xattr(&dir, "user.vm0.id")
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => {
                format!("{given}: no such run ({} does not exist)", dir.display())
            }
            _ => format!(
                "{given}: cannot read {}: {}",
                dir.display(),
                crate::errno::io_message(&e)
            ),
        })?
        .ok_or_else(|| format!("{given}: {} is not a run directory", dir.display()))?;
    let status_file = dir.parent().unwrap_or(&dir).join(&id).join("status");
    Ok(Waited {
        id,
        status_file,
        ended: None,
    })
}

/// `<mount>/runs/<id>` for a path anywhere in a run's directory (or a link to it, such as `runs/latest`).
fn run_dir_of_path(given: &str, path: &Path) -> Result<PathBuf, String> {
    let real = path
        .canonicalize()
        .or_else(|_| absolute(path))
        .map_err(|e| format!("{given}: {}", crate::errno::io_message(&e)))?;
    let (mountpoint, inside) = mount_holding(&real)?;
    let mut parts = inside.components().filter_map(|c| match c {
        Component::Normal(part) => Some(part),
        _ => None,
    });
    match (parts.next(), parts.next()) {
        (Some(runs), Some(id)) if runs == "runs" && id != "new" => {
            Ok(mountpoint.join("runs").join(id))
        }
        _ => Err(format!(
            "{given} is not a run: give runs/<id>, runs/latest, a path inside a run, or an id"
        )),
    }
}

/// The mount an id is looked up in when `--mount` is not given.
fn default_mount() -> Result<PathBuf, String> {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok((mountpoint, _)) = mount_holding(&cwd)
    {
        return Ok(mountpoint);
    }
    let mounts = own_mounts().map_err(|e| {
        format!(
            "cannot read /proc/self/mountinfo: {}",
            crate::errno::io_message(&e)
        )
    })?;
    match mounts.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("no vm0fs mount of yours is mounted (see `vm0fs mount`)".into()),
        _ => Err(format!(
            "{} vm0fs mounts of yours: name one with --mount, or give a path such as ~/vm0/runs/<id>",
            mounts.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_tell_how_a_run_ended() {
        assert_eq!(exit_status("completed"), 0);
        assert_eq!(exit_status("failed"), 3);
        assert_eq!(exit_status("timeout"), 4);
        assert_eq!(exit_status("cancelled"), 5);
        assert!(is_terminal("cancelled") && !is_terminal("running"));
    }
}
