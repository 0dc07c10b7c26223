//! The `vm0fs` command line: `mount`, `unmount`, `status` and `prefetch`.
//!
//! Flags are declared once here with clap, so `--help` is always complete and a later man page or completion
//! script can be generated from the same definitions. Each subcommand returns an exit status rather than calling
//! `exit` deep inside, so that a failure is reported in one place: usage errors exit 2 (as clap does), failures
//! of the mount itself exit 1.

mod mount;
mod mounts;
mod prefetch;
mod size;
mod status;
mod unmount;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vm0fs",
    version,
    about = "Mount the VM0 platform (agents, runs, volumes, artifacts) as a filesystem",
    long_about = "Mount the VM0 platform as files: agents, runs, volumes and artifacts become directories that \
ordinary tools (ls, cp, diff, tail -f, grep -r) work on. The API token is read from VM0_API_KEY."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the VM0 tree at MOUNTPOINT (returns once the mount is live, unless -f)
    Mount(MountArgs),
    /// Unmount a vm0fs mount
    Unmount(UnmountArgs),
    /// Show your vm0fs mounts: API, uptime, cache use, downloads in flight with their progress
    Status(StatusArgs),
    /// Download the archives behind paths of a mount into its cache now, with a progress bar each
    #[command(
        long_about = "Download the archives (volumes, artifacts) that PATHs lie in into the mount's cache now, \
so that later reads are local. A PATH may be a volume or artifact directory (volumes/<name>, \
artifacts/<name>@<version>), any path inside one, or runs/<id>/artifact. The version fetched is the one the path \
shows now. Exits with status 1 if any archive could not be fetched; the mount's log says why."
    )]
    Prefetch(PrefetchArgs),
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
    /// Paths inside a vm0fs mount: volumes/<name>, artifacts/<name>[@<version>], a path inside one, or
    /// runs/<id>/artifact
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also keep these archives out of eviction, across remounts, until `--unpin`
    #[arg(long, conflicts_with = "unpin")]
    pub pin: bool,
    /// Let pinned archives be evicted again (downloads nothing)
    #[arg(long)]
    pub unpin: bool,
}

#[derive(Args, Debug, Clone)]
pub struct MountArgs {
    /// An existing empty directory to mount on
    pub mountpoint: PathBuf,
    /// Read the API token from FILE (which must not be readable by group or others) instead of VM0_API_KEY
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Base URL of the VM0 API
    #[arg(long, env = "VM0_API_URL", default_value = "https://api.vm0.ai")]
    pub api_url: String,
    /// Where extracted archives and the background log are kept [default: $XDG_CACHE_HOME/vm0fs, else ~/.cache/vm0fs]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Most bytes of extracted archives kept on disk; least recently used ones are evicted (K, M, G, T suffixes)
    #[arg(long, value_name = "SIZE", default_value = "10G", value_parser = size::parse)]
    pub cache_size: u64,
    /// Largest total size one archive may extract to, to stop gzip bombs [default: the cache size]
    #[arg(long, value_name = "SIZE", value_parser = size::parse)]
    pub max_archive_size: Option<u64>,
    /// Most entries one archive may hold
    #[arg(long, value_name = "COUNT", default_value_t = 2_000_000)]
    pub max_archive_entries: u64,
    /// Stay in the foreground and log to stderr
    #[arg(short, long)]
    pub foreground: bool,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf when not root)
    #[arg(long)]
    pub allow_other: bool,
    /// How long listings and metadata from the API are believed before being asked again
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub metadata_ttl: f64,
    /// More logging (-v: debug, -vv: trace); VM0FS_LOG takes a tracing filter for finer control
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Args, Debug)]
pub struct UnmountArgs {
    /// The mount point of a vm0fs mount
    pub mountpoint: PathBuf,
    /// Detach the mount even while it is busy (processes inside keep their open files)
    #[arg(short, long)]
    pub lazy: bool,
}

/// Runs the command line and returns the process exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Mount(args) => mount::run(args),
        Command::Unmount(args) => unmount::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Prefetch(args) => prefetch::run(&args),
    }
}
