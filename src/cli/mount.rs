//! `vm0fs mount`: check the API, mount, and serve until unmounted or signalled.
//!
//! Without `-f` the command forks before anything starts a thread (the HTTP client runs one), and the parent waits
//! on a pipe until the child reports that the mount is live or why it is not; so `vm0fs mount` returns with the
//! mount usable, or fails with the real reason and a non-zero status. The child logs to `vm0fs.log` in the cache
//! directory. SIGINT and SIGTERM unmount cleanly; the mount asks `fusermount3` to auto-unmount, so even `kill -9`
//! leaves no dead mount behind (where `fusermount3` is missing it warns and mounts without that safety net).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::MountArgs;
use crate::api::http::{HttpApi, HttpOptions};
use crate::api::{ApiErrorKind, Vm0Api};
use crate::cache::{ArchiveCache, CacheConfig, ExtractLimits};
use crate::fs::{FsConfig, Vm0Fs};
use crate::fuse::{self, MountConfig};

/// Exit status for a usage problem found before mounting (as clap uses for bad flags).
const EXIT_USAGE: i32 = 2;
const EXIT_FAILURE: i32 = 1;
const LOG_FILE: &str = "vm0fs.log";

pub fn run(args: MountArgs) -> i32 {
    let token = match read_token(&args) {
        Ok(token) => token,
        Err(message) => {
            eprintln!("vm0fs: {message}");
            return EXIT_USAGE;
        }
    };
    let prepared = match prepare(&args) {
        Ok(prepared) => prepared,
        Err(message) => {
            eprintln!("vm0fs: {message}");
            return EXIT_USAGE;
        }
    };
    if args.foreground {
        init_logging(args.verbose, None);
        return match serve(&args, &prepared, &token, |_| {}) {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("vm0fs: {message}");
                EXIT_FAILURE
            }
        };
    }
    daemonize(&args, &prepared, &token)
}

/// The API token, from `--token-file` or `VM0_API_KEY`. A token file that others can read is refused: the token
/// is as good as a password.
fn read_token(args: &MountArgs) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let token = match &args.token_file {
        Some(path) => {
            let shown = path.display();
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("cannot read the token file {shown}: {e}"))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "the token file {shown} is readable by others (mode {:o}); run `chmod 600 {shown}`",
                    mode & 0o777
                ));
            }
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file {shown}: {e}"))?
        }
        None => std::env::var("VM0_API_KEY").unwrap_or_default(),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(match &args.token_file {
            Some(path) => format!("the token file {} is empty", path.display()),
            None => "VM0_API_KEY is not set. Export your VM0 API token first: export VM0_API_KEY=vm0_live_... \
                     (or use --token-file FILE)"
                .to_string(),
        });
    }
    Ok(token)
}

/// What is checked and made before any thread or fork: paths.
struct Prepared {
    mountpoint: PathBuf,
    cache_dir: PathBuf,
}

fn prepare(args: &MountArgs) -> Result<Prepared, String> {
    let mountpoint = args
        .mountpoint
        .canonicalize()
        .map_err(|e| mountpoint_error(&args.mountpoint, &e))?;
    match std::fs::metadata(&mountpoint) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "mount point {} is not a directory",
                mountpoint.display()
            ));
        }
        Err(e) => return Err(mountpoint_error(&args.mountpoint, &e)),
    }
    if !(args.metadata_ttl.is_finite() && args.metadata_ttl >= 0.0) {
        return Err("--metadata-ttl must be a number of seconds, 0 or more".into());
    }
    let cache_dir =
        args.cache_dir.clone().or_else(default_cache_dir).ok_or(
            "cannot tell where to keep the cache: set --cache-dir, XDG_CACHE_HOME or HOME",
        )?;
    std::fs::create_dir_all(&cache_dir).map_err(|e| {
        format!(
            "cannot create the cache directory {}: {e}",
            cache_dir.display()
        )
    })?;
    Ok(Prepared {
        mountpoint,
        cache_dir,
    })
}

/// Why a mount point cannot be used, and what to do about it.
fn mountpoint_error(path: &Path, e: &std::io::Error) -> String {
    let shown = path.display();
    match e.raw_os_error() {
        Some(libc::ENOTCONN) => format!(
            "{shown} is a dead mount (its vm0fs process is gone); run `vm0fs unmount {shown}` first"
        ),
        _ => format!("mount point {shown}: {e}; create it with mkdir first"),
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("XDG_CACHE_HOME")
        .map(|dir| dir.join("vm0fs"))
        .or_else(|| non_empty("HOME").map(|home| home.join(".cache").join("vm0fs")))
}

fn init_logging(verbose: u8, log_file: Option<File>) {
    let default = match verbose {
        0 => "vm0fs=info,warn",
        1 => "vm0fs=debug,info",
        _ => "vm0fs=trace,debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("VM0FS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match log_file {
        Some(file) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Checks the API, opens the cache, mounts, calls `ready` once the mount is live, and serves until unmounted.
fn serve(
    args: &MountArgs,
    prepared: &Prepared,
    token: &str,
    ready: impl FnOnce(&str),
) -> Result<(), String> {
    let api = HttpApi::new(&args.api_url, token, HttpOptions::default())
        .map_err(|e| format!("cannot use the API URL {}: {e}", args.api_url))?;
    check_api(&api, &args.api_url)?;
    let cache = ArchiveCache::open(CacheConfig {
        dir: prepared.cache_dir.clone(),
        max_bytes: args.cache_size,
        limits: ExtractLimits {
            max_total_bytes: args.max_archive_size.unwrap_or(args.cache_size),
            max_entries: args.max_archive_entries,
        },
    })
    .map_err(|e| {
        format!(
            "cannot open the cache in {}: {e}",
            prepared.cache_dir.display()
        )
    })?;
    let fs_config = FsConfig {
        metadata_ttl: Duration::from_secs_f64(args.metadata_ttl),
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        panic_on_lookup: std::env::var_os("VM0FS_TEST_PANIC_ON_LOOKUP"),
        allow_other: args.allow_other,
        mountpoint: prepared.mountpoint.display().to_string(),
        api_url: args.api_url.clone(),
    };
    let api: Arc<dyn Vm0Api> = Arc::new(api);
    let cache = Arc::new(cache);
    let session = mount_with_fallback(
        &api,
        &cache,
        &fs_config,
        args.allow_other,
        &prepared.mountpoint,
    )?;
    let mountpoint = prepared.mountpoint.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!("signal {signal}: unmounting");
            // Unmounting ends the session's reads with ENODEV, so `run` returns. (fuser's own unmounter only
            // hands an auto-unmount mount to fusermount3, which leaves it mounted while we live.) A busy mount
            // is detached instead, so the signal always ends the process.
            let result = super::unmount::unmount(&mountpoint, false)
                .or_else(|_| super::unmount::unmount(&mountpoint, true));
            if result.is_ok() {
                // A request still waiting on a stalled server keeps the session open after a lazy detach;
                // exiting closes /dev/fuse, which ends those requests too. Normally `run` returns first.
                std::thread::sleep(Duration::from_secs(2));
                tracing::warn!(
                    "requests were still in flight 2 s after unmounting; exiting anyway"
                );
                std::process::exit(0);
            }
            if let Err(e) = result {
                tracing::error!(
                    "cannot unmount {} after signal {signal}: {e}",
                    mountpoint.display()
                );
                std::process::exit(EXIT_FAILURE);
            }
        }
    });
    tracing::info!(
        "mounted {} at {}",
        args.api_url,
        prepared.mountpoint.display()
    );
    ready(&prepared.mountpoint.display().to_string());
    session
        .run()
        .map_err(|e| format!("the mount ended with an error: {e}"))?;
    tracing::info!("unmounted {}", prepared.mountpoint.display());
    Ok(())
}

/// One API call before mounting, so that a wrong token or URL fails here and not as EIO inside the mount.
fn check_api(api: &HttpApi, url: &str) -> Result<(), String> {
    match api.latest_run() {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.status, Some(401 | 403)) => Err(format!(
            "the VM0 API at {url} rejected the API token ({e}). Check the token, or create a new one"
        )),
        Err(e) if e.kind == ApiErrorKind::Transport => Err(format!(
            "cannot reach the VM0 API at {url}: {e}. Check --api-url (or VM0_API_URL) and the network"
        )),
        Err(e) => Err(format!(
            "the VM0 API at {url} did not answer as expected: {e}"
        )),
    }
}

fn mount_with_fallback(
    api: &Arc<dyn Vm0Api>,
    cache: &Arc<ArchiveCache>,
    fs_config: &FsConfig,
    allow_other: bool,
    mountpoint: &Path,
) -> Result<fuser::Session<fuse::FuseAdapter>, String> {
    let safe = MountConfig {
        allow_other,
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
                allow_other,
                auto_unmount: false,
            };
            fuse::mount(fs.clone(), mountpoint, &plain).map_err(|e| {
                format!(
                    "cannot mount on {}: {e} (auto-unmount attempt: {first})",
                    mountpoint.display()
                )
            })?
        }
    };
    fs.set_invalidator(Box::new(fuse::KernelInvalidator(session.notifier())));
    fs.start_log_poller();
    Ok(session)
}

/// Forks: the child serves the mount in a new session, logging to the cache dir; the parent waits for its word.
fn daemonize(args: &MountArgs, prepared: &Prepared, token: &str) -> i32 {
    let log_path = prepared.cache_dir.join(LOG_FILE);
    let log = match OpenOptions::new().create(true).append(true).open(&log_path) {
        Ok(log) => log,
        Err(e) => {
            eprintln!(
                "vm0fs: cannot open the log file {}: {e}",
                log_path.display()
            );
            return EXIT_FAILURE;
        }
    };
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        eprintln!(
            "vm0fs: cannot create a pipe: {}",
            std::io::Error::last_os_error()
        );
        return EXIT_FAILURE;
    }
    // SAFETY: pipe(2) succeeded, so both descriptors are open and owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no thread has been started yet (clap parsing and path checks are single-threaded), so the child may
    // go on running Rust code after fork.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("vm0fs: cannot fork: {}", std::io::Error::last_os_error());
            EXIT_FAILURE
        }
        0 => {
            drop(read_end);
            run_child(args, prepared, token, File::from(write_end), log)
        }
        _ => {
            drop(write_end);
            wait_for_child(File::from(read_end), &log_path)
        }
    }
}

fn run_child(
    args: &MountArgs,
    prepared: &Prepared,
    token: &str,
    mut report: File,
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
    init_logging(args.verbose, Some(log));
    let mut report_ready = Some(report.try_clone());
    let result = serve(args, prepared, token, |_| {
        if let Some(Ok(mut file)) = report_ready.take() {
            let _ = file.write_all(b"OK\n");
        }
    });
    match result {
        Ok(()) => 0,
        Err(message) => {
            tracing::error!("{message}");
            let _ = report.write_all(format!("ERR {message}\n").as_bytes());
            EXIT_FAILURE
        }
    }
}

fn wait_for_child(mut from_child: File, log_path: &Path) -> i32 {
    let mut word = String::new();
    let mut buf = [0u8; 4096];
    // Reads until the child says OK (the mount is live) or ERR, or closes the pipe by dying.
    loop {
        match from_child.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                word.push_str(&String::from_utf8_lossy(&buf[..n]));
                if word.contains('\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if word.starts_with("OK") {
        0
    } else if let Some(message) = word.strip_prefix("ERR ") {
        eprintln!("vm0fs: {}", message.trim_end());
        EXIT_FAILURE
    } else {
        eprintln!(
            "vm0fs: the mount process ended before the mount was live; see {}",
            log_path.display()
        );
        EXIT_FAILURE
    }
}
