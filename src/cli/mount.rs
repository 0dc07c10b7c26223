//! `vm0fs mount`: check the API, mount, and serve until unmounted or signalled.
//!
//! Without `-f` the command forks before anything starts a thread (the HTTP client runs one), and the parent waits
//! on a pipe until the child reports that the mount is live (`OK`) or why it is not (`ERR <message>`); so `vm0fs
//! mount` returns with the mount usable, or fails with the real reason and a non-zero status. While the API check
//! is slow the child sends `WAIT <message>` lines, which the parent prints, so nobody stares at a silent terminal;
//! each warning logged before `OK` is also sent (`WARN <message>`) and printed, so that it is seen, not only logged.
//! The child logs to `vm0fs.log` in the cache directory. With `-f`, systemd is told `READY=1` and `STOPPING=1`
//! (see `notify.rs`). SIGINT and SIGTERM unmount cleanly; the mount asks `fusermount3` to auto-unmount, so even
//! `kill -9` leaves no dead mount behind (where `fusermount3` is missing it warns and mounts without that net).

use crate::sync::Locked;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use clap::ArgMatches;

use super::hints;
use super::notify::notify;
use super::settings::{self, Settings, TOKEN_ENV};
use super::{EXIT_USAGE, MountArgs};
use crate::api::http::{HttpApi, HttpOptions};
use crate::api::{ApiErrorKind, Vm0Api};
use crate::cache::{ArchiveCache, CacheConfig, ExtractLimits};
use crate::fs::{FsConfig, Vm0Fs};
use crate::fuse::{self, MountConfig};

const EXIT_FAILURE: i32 = 1;
const LOG_FILE: &str = "vm0fs.log";
/// How long the API check may take before the person waiting is told what it waits for, and how often after.
const FIRST_WAIT_NOTICE: Duration = Duration::from_secs(1);
const WAIT_NOTICE_EVERY: Duration = Duration::from_secs(5);
/// How long a clean unmount waits for the staged volumes to be published; what is left is published after the
/// next mount.
const UNMOUNT_PUBLISH_WAIT: Duration = Duration::from_secs(30);
/// While the API cannot be reached, calls to it fail at once and it is asked this often whether it answers again.
const PROBE_EVERY: Duration = Duration::from_secs(2);

pub fn run(args: &MountArgs, matches: &ArgMatches) -> i32 {
    let settings = match settings::resolve(args, matches) {
        Ok(settings) => settings,
        Err(message) => return usage_error(&message),
    };
    if args.print_config {
        print!("{}", settings.to_toml());
        return 0;
    }
    let token = match read_token(&settings) {
        Ok(token) => token,
        Err(message) => return usage_error(&message),
    };
    let prepared = match prepare(&settings) {
        Ok(prepared) => prepared,
        Err(message) => return usage_error(&message),
    };
    if settings.foreground {
        init_logging(settings.verbose, None, None);
        let waiting = |message: &str| eprintln!("vm0fs: {message}");
        let result = serve(&settings, &prepared, &token, &waiting, |_| {
            notify("READY=1")
        });
        notify("STOPPING=1");
        return match result {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("vm0fs: {message}");
                EXIT_FAILURE
            }
        };
    }
    daemonize(&settings, &prepared, &token)
}

fn usage_error(message: &str) -> i32 {
    eprintln!("vm0fs: {message}");
    EXIT_USAGE
}

/// The API token, from the token file or `VM0_API_KEY`. A token file that others can read is refused: the token
/// is as good as a password.
fn read_token(settings: &Settings) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let token = match &settings.token_file {
        Some(path) => {
            let shown = path.display();
            let mode = std::fs::metadata(path)
                .map_err(|e| {
                    format!(
                        "cannot read the token file {shown}: {}",
                        crate::errno::io_message(&e)
                    )
                })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "the token file {shown} is readable by others (mode {:o}); run `chmod 600 {shown}`",
                    mode & 0o777
                ));
            }
            std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "cannot read the token file {shown}: {}",
                    crate::errno::io_message(&e)
                )
            })?
        }
        None => std::env::var(TOKEN_ENV).unwrap_or_default(),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(match &settings.token_file {
            Some(path) => format!("the token file {} is empty", path.display()),
            None => format!(
                "{TOKEN_ENV} is not set. Export your VM0 API token first: export {TOKEN_ENV}=vm0_live_... \
                 (or use --token-file FILE, or token_file in the config file)"
            ),
        });
    }
    Ok(token)
}

/// What is checked and made before any thread or fork: paths.
struct Prepared {
    mountpoint: PathBuf,
    cache_dir: PathBuf,
}

fn prepare(settings: &Settings) -> Result<Prepared, String> {
    hints::check_allow_other(settings.allow_other)?;
    let given = settings
        .mountpoint
        .as_deref()
        .ok_or("a mount point is needed")?;
    let mountpoint = given
        .canonicalize()
        .map_err(|e| mountpoint_error(given, &e))?;
    match std::fs::metadata(&mountpoint) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "mount point {} is not a directory",
                mountpoint.display()
            ));
        }
        Err(e) => return Err(mountpoint_error(given, &e)),
    }
    refuse_a_live_mount(&mountpoint)?;
    if !settings.nonempty {
        refuse_a_non_empty_dir(&mountpoint)?;
    }
    let cache_dir = settings.cache_dir.clone();
    refuse_a_cache_inside(&cache_dir, &mountpoint)?;
    std::fs::create_dir_all(&cache_dir).map_err(|e| {
        format!(
            "cannot create the cache directory {}: {}",
            cache_dir.display(),
            crate::errno::io_message(&e)
        )
    })?;
    // Before the API is asked: a cache in use (another mount, or one still publishing after its unmount) is the
    // first thing said, not an error after a long wait or a notice that the mount goes on from the cache.
    ArchiveCache::check_free(&cache_dir).map_err(|e| crate::errno::io_message(&e))?;
    Ok(Prepared {
        mountpoint,
        cache_dir,
    })
}

/// A directory that already is a vm0fs mount would get a second one stacked on it: refused, naming its process.
fn refuse_a_live_mount(mountpoint: &Path) -> Result<(), String> {
    let mounts = super::mounts::own_mounts().unwrap_or_default();
    if !mounts.iter().any(|m| m == mountpoint) {
        return Ok(());
    }
    let shown = mountpoint.display();
    let by = match super::mounts::probe(mountpoint) {
        super::mounts::Probe::Live(status) => format!(" by vm0fs process {}", status.pid),
        _ => String::new(),
    };
    Err(format!(
        "{shown} is already mounted{by}; use it as it is, or unmount it first with `vm0fs unmount {shown}`"
    ))
}

/// Like mount(8), a directory with files in it is not mounted over (they would be hidden) unless asked.
fn refuse_a_non_empty_dir(mountpoint: &Path) -> Result<(), String> {
    let shown = mountpoint.display();
    let mut entries = std::fs::read_dir(mountpoint)
        .map_err(|e| format!("cannot list the mount point {shown}: {e}"))?;
    match entries.next() {
        None => Ok(()),
        Some(first) => {
            let name = first.map(|e| e.file_name().to_string_lossy().into_owned());
            Err(format!(
                "mount point {shown} is not empty (it holds {}); mounting would hide its files. Use an empty \
                 directory, or pass --nonempty (fstab: nonempty) to mount over them",
                name.unwrap_or_else(|_| "entries".into())
            ))
        }
    }
}

/// A cache directory inside the mount point would be hidden by the mount and reached through it.
fn refuse_a_cache_inside(cache_dir: &Path, mountpoint: &Path) -> Result<(), String> {
    let absolute = super::mounts::absolute(cache_dir).unwrap_or_else(|_| cache_dir.to_path_buf());
    // The cache directory may not exist yet: resolve the part of it that does.
    let resolved = absolute
        .ancestors()
        .find_map(|a| {
            let real = a.canonicalize().ok()?;
            Some(real.join(absolute.strip_prefix(a).ok()?))
        })
        .unwrap_or_else(|| absolute.clone());
    if absolute.starts_with(mountpoint) || resolved.starts_with(mountpoint) {
        return Err(format!(
            "the cache directory {} is inside the mount point {}; choose one outside it (--cache-dir)",
            cache_dir.display(),
            mountpoint.display()
        ));
    }
    Ok(())
}

/// Why a mount point cannot be used, and what to do about it.
fn mountpoint_error(path: &Path, e: &std::io::Error) -> String {
    let shown = path.display();
    match e.raw_os_error() {
        Some(libc::ENOTCONN) => format!(
            "{shown} is a dead mount (its vm0fs process is gone); run `vm0fs unmount {shown}` first"
        ),
        _ => format!(
            "mount point {shown}: {}; create it with mkdir first",
            crate::errno::io_message(e)
        ),
    }
}

fn init_logging(verbose: u8, log_file: Option<File>, to_parent: Option<WarningsToParent>) {
    use tracing_subscriber::prelude::*;
    let default = match verbose {
        0 => "vm0fs=info,warn",
        1 => "vm0fs=debug,info",
        _ => "vm0fs=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VM0FS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let registry = tracing_subscriber::registry().with(filter).with(to_parent);
    let _ = match log_file {
        Some(file) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(file)),
            )
            .try_init(),
        None => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
}

/// The pipe to the waiting parent of a background mount: `None` once the parent is gone.
type Report = Arc<std::sync::Mutex<Option<File>>>;

/// Sends one line to the parent, if it still waits. One message per line: the parent reads lines.
fn tell_parent(report: &Report, line: &str) {
    let mut report = report.locked();
    if let Some(file) = report.as_mut() {
        let _ = file.write_all(format!("{}\n", line.replace('\n', " ")).as_bytes());
    }
}

/// A logging layer that also sends each warning to the parent of a background mount (`WARN <message>`) while it
/// waits, so that a warning met while mounting (no `fusermount3`, say) reaches the terminal, not only the log.
struct WarningsToParent(Report);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarningsToParent {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        // Errors end the mount and reach the parent as `ERR`.
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        let mut message = MessageText(String::new());
        event.record(&mut message);
        tell_parent(&self.0, &format!("WARN {}", message.0));
    }
}

/// The `message` field of an event, as text.
struct MessageText(String);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Checks the API, opens the cache, mounts, calls `ready` once the mount is live, and serves until unmounted.
/// `waiting` is told, now and then, what a slow API check waits for.
fn serve(
    settings: &Settings,
    prepared: &Prepared,
    token: &str,
    waiting: &(dyn Fn(&str) + Sync),
    ready: impl FnOnce(&str),
) -> Result<(), String> {
    let options = HttpOptions {
        probe_every: Some(PROBE_EVERY),
        ..HttpOptions::default()
    };
    let api = HttpApi::new(&settings.api_url, token, options)
        .map_err(|e| format!("cannot use the API URL {}: {e}", settings.api_url))?;
    if let Err(failed) = check_api_telling(&api, &settings.api_url, waiting) {
        if !(failed.unreachable && crate::fs::Saved::holds_anything(&prepared.cache_dir)) {
            return Err(failed.message);
        }
        waiting(&format!(
            "{}. Mounting from the cache in {} anyway: what earlier mounts saw reads as before (listings, agents, \
             runs, and the volumes and artifacts in the cache); anything never seen (other archives, new runs, \
             live logs) fails with EIO, and starting or cancelling runs fails, until the API answers again \
             (`vm0fs status` shows when)",
            failed.message,
            prepared.cache_dir.display()
        ));
    }
    let cache = ArchiveCache::open(CacheConfig {
        dir: prepared.cache_dir.clone(),
        max_bytes: settings.cache_size,
        limits: ExtractLimits {
            max_total_bytes: settings.max_archive_size,
            max_entries: settings.max_archive_entries,
        },
    })
    .map_err(|e| {
        format!(
            "cannot open the cache in {}: {e}",
            prepared.cache_dir.display()
        )
    })?;
    let fs_config = FsConfig {
        metadata_ttl: Duration::from_secs_f64(settings.metadata_ttl),
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        panic_on_lookup: std::env::var_os("VM0FS_TEST_PANIC_ON_LOOKUP"),
        allow_other: settings.allow_other,
        mountpoint: prepared.mountpoint.display().to_string(),
        api_url: settings.api_url.clone(),
        commit_delay: Duration::from_secs_f64(settings.commit_delay),
        max_staged_bytes: settings.max_staged_size,
    };
    let api: Arc<dyn Vm0Api> = Arc::new(api);
    let cache = Arc::new(cache);
    cache.start_syncer();
    // Before mounting: a SIGINT or SIGTERM that comes as soon as the mount is visible must unmount it, not kill the
    // process with the default action (the signals wait in `signals` until the thread below reads them).
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| {
        format!(
            "cannot install signal handlers: {}",
            crate::errno::io_message(&e)
        )
    })?;
    let (session, fs) =
        mount_with_fallback(&api, &cache, &fs_config, settings, &prepared.mountpoint)?;
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let served_seen = served.clone();
    let mountpoint = prepared.mountpoint.clone();
    let foreground = settings.foreground;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!("signal {signal}: unmounting");
            if foreground {
                notify("STOPPING=1");
            }
            // Unmounting ends the session's reads with ENODEV, so `run` returns. (fuser's own unmounter only
            // hands an auto-unmount mount to fusermount3, which leaves it mounted while we live.) A busy mount
            // is detached instead, so the signal always ends the process.
            let result = super::unmount::unmount(&mountpoint, false)
                .or_else(|_| super::unmount::unmount(&mountpoint, true));
            if result.is_ok() {
                // A request still waiting on a stalled server keeps the session open after a lazy detach;
                // exiting closes /dev/fuse, which ends those requests too. Normally `run` returns first.
                std::thread::sleep(Duration::from_secs(2));
                if served_seen.load(std::sync::atomic::Ordering::SeqCst) {
                    // The session ended and the staged volumes are being published: let that finish.
                    return;
                }
                tracing::warn!(
                    "requests were still in flight 2 s after unmounting; exiting anyway"
                );
                std::process::exit(0);
            }
            if let Err(e) = result {
                tracing::error!(
                    "cannot unmount {} after signal {signal}: {}",
                    mountpoint.display(),
                    crate::errno::io_message(&e)
                );
                std::process::exit(EXIT_FAILURE);
            }
        }
    });
    tracing::info!(
        "mounted {} at {}",
        settings.api_url,
        prepared.mountpoint.display()
    );
    ready(&prepared.mountpoint.display().to_string());
    let ran = session.run();
    served.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!("unmounted {}", prepared.mountpoint.display());
    fs.publish_staged(UNMOUNT_PUBLISH_WAIT);
    cache.make_durable();
    ran.map_err(|e| {
        format!(
            "the mount ended with an error: {}",
            crate::errno::io_message(&e)
        )
    })
}

/// `check_api`, telling `waiting` what it waits for once it has waited a second, and every few seconds after.
/// The timer is a scoped thread started here, after any fork.
fn check_api_telling(
    api: &HttpApi,
    url: &str,
    waiting: &(dyn Fn(&str) + Sync),
) -> Result<(), CheckFailed> {
    let (done, finished) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let start = Instant::now();
            let mut wait = FIRST_WAIT_NOTICE;
            while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(wait) {
                waiting(&format!(
                    "waiting for the VM0 API at {url} to answer (GET /v1/runs): {} s so far",
                    start.elapsed().as_secs()
                ));
                wait = WAIT_NOTICE_EVERY;
            }
        });
        let result = check_api(api, url);
        drop(done);
        result
    })
}

/// One API call before mounting, so that a wrong token or URL fails here and not as EIO inside the mount.
/// Why the first API call failed, and whether that was the API being out of reach (not a refusal).
struct CheckFailed {
    message: String,
    unreachable: bool,
}

fn check_api(api: &HttpApi, url: &str) -> Result<(), CheckFailed> {
    let refused = |message| CheckFailed {
        message,
        unreachable: false,
    };
    match api.latest_run() {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.status, Some(401 | 403)) => Err(refused(format!(
            "the VM0 API at {url} rejected the API token ({e}). Check the token, or create a new one"
        ))),
        Err(e) if e.kind == ApiErrorKind::Transport => Err(CheckFailed {
            message: format!(
                "cannot reach the VM0 API at {url}: {e}. Check --api-url (or VM0_API_URL, or api_url in the config \
                 file) and the network{}",
                hints::proxy_hint(url)
            ),
            unreachable: true,
        }),
        Err(e) => Err(refused(format!(
            "the VM0 API at {url} did not answer as expected: {e}"
        ))),
    }
}

fn mount_with_fallback(
    api: &Arc<dyn Vm0Api>,
    cache: &Arc<ArchiveCache>,
    fs_config: &FsConfig,
    settings: &Settings,
    mountpoint: &Path,
) -> Result<(fuser::Session<fuse::FuseAdapter>, Arc<Vm0Fs>), String> {
    let safe = MountConfig {
        allow_other: settings.allow_other,
        read_only: settings.read_only,
        noexec: settings.noexec,
        auto_unmount: true,
    };
    let fs = Arc::new(Vm0Fs::new(api.clone(), cache.clone(), fs_config.clone()));
    let session = match fuse::mount(fs.clone(), mountpoint, &safe) {
        Ok(session) => session,
        Err(first) => {
            tracing::warn!(
                "mounting with auto-unmount failed ({first}); mounting without it: if vm0fs is killed, run \
                 `vm0fs unmount {}`. Install fuse3 (fusermount3) to get auto-unmount",
                mountpoint.display()
            );
            let plain = MountConfig {
                auto_unmount: false,
                ..safe
            };
            fuse::mount(fs.clone(), mountpoint, &plain).map_err(|e| {
                format!(
                    "cannot mount on {}: {} (auto-unmount attempt: {first})",
                    mountpoint.display(),
                    crate::errno::io_message(&e)
                )
            })?
        }
    };
    fs.set_invalidator(Box::new(fuse::KernelInvalidator(session.notifier())));
    fs.start_log_poller();
    Ok((session, fs))
}

/// Forks: the child serves the mount in a new session, logging to the cache dir; the parent waits for its word.
fn daemonize(settings: &Settings, prepared: &Prepared, token: &str) -> i32 {
    let log_path = prepared.cache_dir.join(LOG_FILE);
    let log = match OpenOptions::new().create(true).append(true).open(&log_path) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "vm0fs: cannot open the log file {}: {}",
                log_path.display(),
                crate::errno::io_message(&e)
            );
            return EXIT_FAILURE;
        }
    };
    let mut fds = [0; 2];
    // Close-on-exec: `fusermount3`, started by the child to mount, must not inherit the write end, or the parent
    // would wait for it (it lives as long as the mount) when the child dies before saying OK.
    // SAFETY: `fds` is a valid array of two ints for pipe2(2) to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        eprintln!(
            "vm0fs: cannot create a pipe: {}",
            std::io::Error::last_os_error()
        );
        return EXIT_FAILURE;
    }
    // SAFETY: pipe(2) succeeded, so both descriptors are open and owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no thread has been started yet (clap parsing, the config file and path checks are single-threaded),
    // so the child may go on running Rust code after fork.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("vm0fs: cannot fork: {}", std::io::Error::last_os_error());
            EXIT_FAILURE
        }
        0 => {
            drop(read_end);
            run_child(settings, prepared, token, File::from(write_end), log)
        }
        _ => {
            drop(write_end);
            wait_for_child(File::from(read_end), &log_path)
        }
    }
}

/// Serves in the child, telling the parent over `report`: `WAIT` and `WARN` lines, then `OK` or `ERR <message>`.
fn run_child(
    settings: &Settings,
    prepared: &Prepared,
    token: &str,
    report: File,
    log: File,
) -> i32 {
    // SAFETY: setsid and dup2 on descriptors we own; they touch no Rust-managed memory.
    unsafe {
        libc::setsid();
        if let Ok(null) = File::open("/dev/null") {
            libc::dup2(null.as_raw_fd(), 0);
        }
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    let report: Report = Arc::new(std::sync::Mutex::new(Some(report)));
    init_logging(
        settings.verbose,
        Some(log),
        Some(WarningsToParent(report.clone())),
    );
    let say = |line: &str| tell_parent(&report, line);
    let waiting = |message: &str| {
        tracing::info!("{message}");
        say(&format!("WAIT {message}"));
    };
    let result = serve(settings, prepared, token, &waiting, |_| {
        say("OK");
        // The parent is gone after OK; nothing more is said.
        report.locked().take();
    });
    match result {
        Ok(()) => 0,
        Err(message) => {
            tracing::error!("{message}");
            say(&format!("ERR {message}"));
            EXIT_FAILURE
        }
    }
}

/// Prints the child's `WAIT` and `WARN` lines until it says `OK` (the mount is live) or `ERR`, or dies.
fn wait_for_child(from_child: File, log_path: &Path) -> i32 {
    for line in BufReader::new(from_child).lines() {
        let Ok(line) = line else { break };
        if line == "OK" {
            return 0;
        } else if let Some(message) = line.strip_prefix("ERR ") {
            eprintln!("vm0fs: {message}");
            return EXIT_FAILURE;
        } else if let Some(message) = line.strip_prefix("WAIT ") {
            eprintln!("vm0fs: {message}");
        } else if let Some(message) = line.strip_prefix("WARN ") {
            eprintln!("vm0fs: warning: {message}");
        }
    }
    eprintln!(
        "vm0fs: the mount process ended before the mount was live; see {}",
        log_path.display()
    );
    EXIT_FAILURE
}
