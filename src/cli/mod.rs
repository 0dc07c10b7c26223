//! The `vm0fs` command line: `mount`, `unmount`, `status`, `prefetch`, `wait`, `completions`, `man`, and the
//! `mount(8)` helper form.
//!
//! Flags are declared once here with clap, so `--help`, the man page and the completion scripts are all generated
//! from the same definitions and a new subcommand shows up in each without further work. Each subcommand returns
//! an exit status rather than calling `exit` deep inside, so that a failure is reported in one place: usage errors
//! exit 2 (as clap does), failures of the mount itself exit 1. `mount(8)` runs `vm0fs SOURCE DIR -o OPTIONS`
//! (see `fstab.rs`); that form is rewritten into `vm0fs mount` flags before clap sees it, so both forms share
//! one parser, one set of defaults and one resolution of settings (`settings.rs`).

mod discard;
mod docs;
mod fstab;
mod hints;
mod mount;
mod mounts;
mod notify;
mod prefetch;
mod publish_bar;
mod settings;
mod size;
mod status;
mod sync;
mod unmount;
mod wait;

use std::path::PathBuf;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Exit status for a usage problem (as clap uses for bad flags).
const EXIT_USAGE: i32 = 2;

#[derive(Parser)]
#[command(
    name = "vm0fs",
    version,
    about = "Mount the VM0 platform (agents, runs, volumes, artifacts) as a filesystem",
    long_about = "Mount the VM0 platform as files: agents, runs, volumes and artifacts become directories that \
ordinary tools (ls, cp, diff, tail -f, grep -r) work on. The API token is read from VM0_API_KEY or from a token \
file; other settings come from flags, the environment, and $XDG_CONFIG_HOME/vm0fs/config.toml.",
    after_help = "The tree:\n\
\x20 agents/<name>/            agent.json and versions.json\n\
\x20 runs/<id>/                one directory per run, newest first; 8 or more characters of an id reach it too:\n\
\x20                           status, run.json, prompt, logs (grows while the run runs; tail -f), metrics.json,\n\
\x20                           output, error (of a failed or timed-out run), artifact (a link to the artifact\n\
\x20                           version it produced: cp -rL to copy its files), ctl (write `cancel`)\n\
\x20 runs/latest               a link to the newest run\n\
\x20 runs/new/<agent>          write a prompt and close it to start a run; read it back for the run id (each\n\
\x20                           writer reads its own); runs/new/<agent>.json takes a JSON request body\n\
\x20 volumes/<name>/           the head version's files, writable: cp, mkdir, rm, editors; a changed volume is\n\
\x20                           published as a new version after --commit-delay of quiet, at unmount, or now with\n\
\x20                           `vm0fs sync volumes/<name>`; mkdir volumes/<name> makes a new volume\n\
\x20 artifacts/<name>/         the head version's files, read-only\n\
\x20 <name>@<8+ hex>, @latest  a pinned version, and the head, read-only (in volumes/ and artifacts/)\n\
\x20 <name>@/                  every version as a directory named by 8 hex characters of its id, newest first\n\
\x20                           (mtime: when it was made; size and message in user.vm0.size, user.vm0.message)\n\
\x20 .vm0fs/                   hidden: status (JSON for `vm0fs status`) and pins\n\n\
Extended attributes: user.vm0.id, user.vm0.version and user.vm0.size (getfattr -d). `vm0fs wait RUN` waits for \
runs to end.\n\n\
mount(8) form: vm0fs SOURCE MOUNTPOINT [-o OPTIONS] is what `mount -t fuse.vm0fs` runs: \
SOURCE is an http(s) API URL or any word (vm0); OPTIONS are the mount flags written key=value with underscores \
(api_url=, token_file=, cache_dir=, cache_size=, max_archive_size=, max_archive_entries=, metadata_ttl=, \
commit_delay=, max_staged_size=, config=, allow_other, ro, nonempty, noexec, verbose), and generic mount options \
(defaults, rw, nodev, nosuid, noatime, _netdev, nofail, noauto, user, x-*, ...) are ignored. It mounts in the \
background, like `vm0fs mount`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the VM0 tree at MOUNTPOINT (returns once the mount is live, unless -f)
    #[command(
        after_help = "Exit status: 0 once the mount is live (with -f: once it is unmounted); 1 when the API \
rejects the token or cannot be reached, or the mount fails; 2 for a usage error (no token, a bad flag or config \
file). Without -f the log is vm0fs.log in the cache directory."
    )]
    Mount(MountArgs),
    /// Unmount a vm0fs mount
    #[command(
        after_help = "Returns once the process that served the mount has ended: it first publishes the volumes \
with unpublished changes, and holds its cache directory until it ends, so `vm0fs unmount DIR && vm0fs mount DIR` \
works. On a terminal it says what it waits for; Ctrl-C stops the waiting (the process finishes in the background) \
and exits 130. --lazy does not wait. Also clears a dead mount (`Transport endpoint is not connected`). Exit status \
1 when it cannot unmount (busy: use --lazy; not a mount point)."
    )]
    Unmount(UnmountArgs),
    /// Show your vm0fs mounts: API, uptime, cache use, downloads in flight with their progress
    #[command(
        after_help = "Each mount is asked through its hidden .vm0fs/status file; one that cannot answer \
is reported as dead (its process is gone: run `vm0fs unmount`) or as not answering within 5 s. Exit status 1 when \
MOUNTPOINT is not a vm0fs mount of yours."
    )]
    Status(StatusArgs),
    /// Download the archives behind paths of a mount into its cache now, with a progress bar each
    #[command(
        long_about = "Download the archives (volumes, artifacts) that PATHs lie in into the mount's cache now, \
so that later reads are local. A PATH may be a volume or artifact directory (volumes/<name>, \
artifacts/<name>@<version>), any path inside one, runs/<id>/artifact, or volumes/ or artifacts/ for all of them. The version fetched is the one the path \
shows now. Exits with status 1 if any archive could not be fetched; the mount's log says why."
    )]
    Prefetch(PrefetchArgs),
    /// Wait until runs end; print `<id> <status>` for each; exit 0 only if all completed
    Wait(wait::WaitArgs),
    /// Publish the staged changes of volumes now, and print each new version
    #[command(
        long_about = "Publish the staged changes of the volumes that PATHs lie in (volumes/<name> or any path inside \
one) as one new version each, now, and wait until it is committed. Prints volumes/<name>@<8 hex> of each new \
version. When the head moved on the server since the changes were based on it, changes to different paths are \
rebased onto the new head and published together; when both sides changed the same paths, nothing is published, \
the command names the paths and exits with status 1, and the changes stay staged: then --force publishes the \
local tree as it is (the head it replaces stays readable as volumes/<name>@<version>), or `vm0fs discard` drops \
the changes. A volume with nothing to publish prints the head it shows (volumes/<name>@<8 hex>). Without \
this, a changed volume is published after --commit-delay of quiet and at unmount. When the API cannot be reached \
or fails, the publish is tried again a few times (about 45 s), or until --timeout; on a terminal the command says \
what failed and when the next attempt is. The message it ends with names the volume, the API and the cause; the \
changes stay staged.",
        after_help = concat!(
            "What a version holds, by how the server takes it:\n\n",
            "in the tree                   /v1 upload                 push flow\n",
            "regular files, paths, bytes   published                  published\n",
            "directories                   implied by file paths      published, modes and times\n",
            "empty directories             kept on this machine only  published\n",
            "symlinks (inside the volume)  kept on this machine only  published, with times\n",
            "modes (all of 0o7777)         kept here; files are 0644  published\n",
            "modification times            the commit time            published, to the second\n",
            "hard links (ln, rsync -H)     two files, the same bytes  published, one inode\n\n",
            "On /v1 a last line, on stderr, names what stays on this machine, e.g. `kept on this machine only: 3 symlinks, 1 \
empty directory, 1 file mode (the server's /v1 upload takes regular files only)`. On the push flow a change of \
modes, symlinks, empty directories or times alone keeps the version id (it names the files' content), so it waits \
for the next change of a file, and the last line says `waiting: ...`.\n\n",
            "Exit status: 0 when every volume named is published or had nothing to publish; 1 when any was not (a \
conflict, an API refusal or failure, a PATH outside a volume's head, a new volume holding no files); 2 for a usage \
error."
        )
    )]
    Sync(SyncArgs),
    /// Drop the staged changes of volumes: they show their head again
    #[command(
        long_about = "Drop the staged (unpublished) changes of the volumes that PATHs lie in (volumes/<name> or any \
path inside one): the volume shows its head again. Says how many staged files and bytes were dropped and which \
version the volume shows now. Nothing on the server changes. Refused while a file of the volume is open for \
writing (close it first)."
    )]
    Discard(discard::DiscardArgs),
    /// Print a shell completion script to stdout
    Completions(docs::CompletionsArgs),
    /// Print the vm0fs(1) man page (every subcommand and flag) to stdout, or write one page per command
    Man(docs::ManArgs),
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Report only this mount [default: all vm0fs mounts of yours]
    pub mountpoint: Option<PathBuf>,
    /// Redraw the report every --interval seconds until interrupted (Ctrl-C)
    #[arg(short, long)]
    pub watch: bool,
    /// Seconds between reports with --watch
    #[arg(short, long, value_name = "SECONDS", default_value_t = 1.0)]
    pub interval: f64,
    /// Print the mounts' status as JSON (an array, one object per mount) instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PrefetchArgs {
    /// Paths inside a vm0fs mount: volumes/<name>, artifacts/<name>[@<version>], a path inside one,
    /// runs/<id>/artifact, or volumes/ or artifacts/ (every storage in it)
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also keep these archives out of eviction, across remounts, until `--unpin`
    #[arg(long, conflicts_with = "unpin")]
    pub pin: bool,
    /// Let pinned archives be evicted again (downloads nothing)
    #[arg(long)]
    pub unpin: bool,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Volumes to publish: volumes/<name> of a mount, or any path inside one
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Publish the local tree as it is even when the head moved on the server and both sides changed the same
    /// paths (the head it replaces stays readable as volumes/<name>@<version>)
    #[arg(long)]
    pub force: bool,
    /// Wait at most SECONDS for the publish: failures that may pass (the API cannot be reached, a server error)
    /// are tried again until then. Without it, a few attempts over about 45 s
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: Option<f64>,
}

/// A `--timeout`: a number of seconds, zero or more.
fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds),
        _ => Err(format!("{text:?} is not a number of seconds")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// An existing empty directory to mount on (may be left out with --print-config)
    #[arg(required_unless_present = "print_config")]
    pub mountpoint: Option<PathBuf>,
    /// Read settings from FILE [default: $XDG_CONFIG_HOME/vm0fs/config.toml, else ~/.config/vm0fs/config.toml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the settings the mount would use, as TOML saying where each comes from, and exit without mounting
    #[arg(long)]
    pub print_config: bool,
    /// Read the API token from FILE (which must not be readable by group or others) instead of VM0_API_KEY
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Base URL of the VM0 API
    #[arg(long, value_name = "URL", env = settings::API_URL_ENV, default_value = settings::DEFAULT_API_URL)]
    pub api_url: String,
    /// Where extracted archives and the background log are kept [default: $XDG_CACHE_HOME/vm0fs, else ~/.cache/vm0fs]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of extracted archives kept on disk; least recently used ones are evicted (K, M, G, T suffixes)
    #[arg(long, value_name = "SIZE", default_value = settings::DEFAULT_CACHE_SIZE, value_parser = size::parse)]
    pub cache_size: u64,
    /// Largest total size one archive may extract to, to stop gzip bombs [default: the cache size]
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    pub max_archive_size: Option<u64>,
    /// Most entries one archive may hold
    #[arg(long, value_name = "COUNT", default_value = settings::DEFAULT_MAX_ARCHIVE_ENTRIES)]
    pub max_archive_entries: u64,
    /// How long listings and metadata from the API are believed before being asked again
    #[arg(long, value_name = "SECONDS", default_value = settings::DEFAULT_METADATA_TTL)]
    pub metadata_ttl: f64,
    /// Seconds without a change (and without a file open for writing) before a volume's changes are published
    /// as a new version; 0 publishes only on `vm0fs sync` and at unmount
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = non_negative_seconds)]
    pub commit_delay: f64,
    /// Most bytes of volume changes staged on local disk before writes fail with ENOSPC [default: the cache size]
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    pub max_staged_size: Option<u64>,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf when not root)
    #[arg(long)]
    pub allow_other: bool,
    /// Mount read-only: starting runs (runs/new) and cancelling them (ctl) fail with EROFS
    #[arg(long)]
    pub read_only: bool,
    /// Mount even on a directory that is not empty (its files are hidden while mounted)
    #[arg(long)]
    pub nonempty: bool,
    /// Programs in the mount cannot be run (mount(8)'s noexec, which a `user` fstab line implies)
    #[arg(long)]
    pub noexec: bool,
    /// Stay in the foreground and log to stderr (tells systemd when ready if NOTIFY_SOCKET is set)
    #[arg(short, long)]
    pub foreground: bool,
    /// More logging (-v: debug, -vv: trace); VM0FS_LOG takes a tracing filter for finer control
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Args, Debug)]
pub struct UnmountArgs {
    /// The mount point of a vm0fs mount, or any path inside one
    pub mountpoint: PathBuf,
    /// Detach the mount even while it is busy (processes inside keep their open files); does not wait for its
    /// process to end
    #[arg(short, long)]
    pub lazy: bool,
}

/// Runs the command line and returns the process exit status.
pub fn main() -> i32 {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv = match fstab::rewrite(&argv, &Cli::command()) {
        Ok(Some(rewritten)) => rewritten,
        Ok(None) => argv,
        Err(message) => {
            eprintln!("vm0fs: {message}");
            return EXIT_USAGE;
        }
    };
    let matches = Cli::command().get_matches_from(argv);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Mount(args) => mount::run(&args, subcommand_matches(&matches)),
        Command::Unmount(args) => unmount::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Prefetch(args) => prefetch::run(&args),
        Command::Wait(args) => wait::run(&args),
        Command::Sync(args) => sync::run(&args),
        Command::Discard(args) => discard::run(&args),
        Command::Completions(args) => docs::completions(&args, Cli::command()),
        Command::Man(args) => docs::man(&args, Cli::command()),
    }
}

/// The matches of the subcommand that ran: they tell whether a flag was given or took its default.
fn subcommand_matches(matches: &ArgMatches) -> &ArgMatches {
    matches.subcommand().map_or(matches, |(_, sub)| sub)
}

/// A number of seconds, 0 or more.
fn non_negative_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err(format!("{text:?} is not a number of seconds (0 or more)")),
    }
}
