//! The settings of a mount, resolved once from flags, the environment, the config file and the defaults.
//!
//! Precedence is flags > environment (`VM0_API_URL`, `VM0_API_KEY`) > config file > built-in defaults. clap
//! keeps the defaults (so `--help` shows them) and says through `ArgMatches::value_source` whether a value was
//! given or defaulted; the config file fills in only what was defaulted. Every value remembers where it came from,
//! so `--print-config` can say so line by line, and an error about a bad value can name its source. The config file
//! is TOML with the flags' names (underscores); unknown keys are refused, so a typo is not silently ignored.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use super::{MountArgs, size};

pub const API_URL_ENV: &str = "VM0_API_URL";
pub const TOKEN_ENV: &str = "VM0_API_KEY";
pub const DEFAULT_API_URL: &str = "https://api.vm0.ai";
pub const DEFAULT_CACHE_SIZE: &str = "10G";
pub const DEFAULT_MAX_ARCHIVE_ENTRIES: &str = "2000000";
pub const DEFAULT_METADATA_TTL: &str = "5";

/// The config file as written: every key optional, none unknown.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    api_url: Option<String>,
    token_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    cache_size: Option<toml::Value>,
    max_archive_size: Option<toml::Value>,
    max_archive_entries: Option<u64>,
    metadata_ttl: Option<f64>,
    commit_delay: Option<f64>,
    max_staged_size: Option<toml::Value>,
    allow_other: Option<bool>,
    read_only: Option<bool>,
}

/// Where a value came from.
#[derive(Clone, Debug)]
enum Origin {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    Default,
    /// `max_archive_size` or `max_staged_size` left out: it follows the cache size.
    CacheSize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(key) => write!(f, "from --{}", key.replace('_', "-")),
            Origin::Env(var) => write!(f, "from {var}"),
            Origin::File(path) => write!(f, "from {}", path.display()),
            Origin::Default => f.write_str("default"),
            Origin::CacheSize => f.write_str("default: the cache size"),
        }
    }
}

/// What `vm0fs mount` uses. `token_file` is `None` when the token comes from `VM0_API_KEY`.
pub struct Settings {
    pub mountpoint: Option<PathBuf>,
    pub api_url: String,
    pub token_file: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub cache_size: u64,
    pub max_archive_size: u64,
    pub max_archive_entries: u64,
    pub metadata_ttl: f64,
    /// Seconds of quiet before a changed volume is published; 0: only `vm0fs sync` and unmount publish.
    pub commit_delay: f64,
    /// Bytes of staged volume changes past which writes fail with ENOSPC.
    pub max_staged_size: u64,
    pub allow_other: bool,
    pub read_only: bool,
    /// Mount on a directory that is not empty (`--nonempty`).
    pub nonempty: bool,
    /// Programs in the mount cannot be run (`--noexec`).
    pub noexec: bool,
    pub foreground: bool,
    pub verbose: u8,
    origins: HashMap<&'static str, Origin>,
}

/// Resolves the settings of `vm0fs mount`; an error is a usage error, worded for the person who typed it.
pub fn resolve(args: &MountArgs, matches: &ArgMatches) -> Result<Settings, String> {
    let (file, path) = load_config(args.config.as_deref())?;
    let mut r = Resolver {
        matches,
        path: path.unwrap_or_default(),
        origins: HashMap::new(),
    };
    let api_url = r.pick("api_url", file.api_url, &args.api_url);
    let token_file = r.token_file(args, file.token_file);
    let file_cache_dir = file.cache_dir.map(|dir| r.relative(dir));
    let cache_dir = match r.pick_opt("cache_dir", file_cache_dir, &args.cache_dir) {
        Some(dir) => dir,
        None => default_cache_dir().ok_or(
            "cannot tell where to keep the cache: set --cache-dir, cache_dir in the config file, XDG_CACHE_HOME or HOME",
        )?,
    };
    let file_cache_size = r.size("cache_size", file.cache_size)?;
    let cache_size = r.pick("cache_size", file_cache_size, &args.cache_size);
    let file_max_archive_size = r.size("max_archive_size", file.max_archive_size)?;
    let max_archive_size = r.pick_opt(
        "max_archive_size",
        file_max_archive_size,
        &args.max_archive_size,
    );
    let max_archive_size = max_archive_size.unwrap_or_else(|| {
        r.origins.insert("max_archive_size", Origin::CacheSize);
        cache_size
    });
    let metadata_ttl = r.pick("metadata_ttl", file.metadata_ttl, &args.metadata_ttl);
    if !(metadata_ttl.is_finite() && metadata_ttl >= 0.0) {
        return Err(format!(
            "metadata_ttl ({}) must be a number of seconds, 0 or more",
            r.origins["metadata_ttl"]
        ));
    }
    let commit_delay = r.pick("commit_delay", file.commit_delay, &args.commit_delay);
    if !(commit_delay.is_finite() && commit_delay >= 0.0) {
        return Err(format!(
            "commit_delay ({}) must be a number of seconds, 0 or more (0 publishes only on `vm0fs sync` and at unmount)",
            r.origins["commit_delay"]
        ));
    }
    let file_max_staged_size = r.size("max_staged_size", file.max_staged_size)?;
    let max_staged_size = r
        .pick_opt(
            "max_staged_size",
            file_max_staged_size,
            &args.max_staged_size,
        )
        .unwrap_or_else(|| {
            r.origins.insert("max_staged_size", Origin::CacheSize);
            cache_size
        });
    Ok(Settings {
        mountpoint: args.mountpoint.clone(),
        api_url,
        token_file,
        cache_dir,
        cache_size,
        max_archive_size,
        max_archive_entries: r.pick(
            "max_archive_entries",
            file.max_archive_entries,
            &args.max_archive_entries,
        ),
        metadata_ttl,
        commit_delay,
        max_staged_size,
        allow_other: r.pick("allow_other", file.allow_other, &args.allow_other),
        read_only: r.pick("read_only", file.read_only, &args.read_only),
        nonempty: args.nonempty,
        noexec: args.noexec,
        foreground: args.foreground,
        verbose: args.verbose,
        origins: r.origins,
    })
}

/// Reads the config file: `--config FILE` must exist; the default one may not.
fn load_config(given: Option<&Path>) -> Result<(FileConfig, Option<PathBuf>), String> {
    let (path, required) = match given {
        Some(path) => (path.to_path_buf(), true),
        None => match default_config_path() {
            Some(path) => (path, false),
            None => return Ok((FileConfig::default(), None)),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((FileConfig::default(), None));
        }
        Err(e) => {
            return Err(format!(
                "cannot read the config file {}: {}; fix the path or the file's permissions{}",
                path.display(),
                crate::errno::io_message(&e),
                if required {
                    " (given by --config or config=)"
                } else {
                    ""
                }
            ));
        }
    };
    let config = toml::from_str(&text).map_err(|e| {
        format!(
            "the config file {} is not valid: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    Ok((config, Some(path)))
}

/// `$XDG_CONFIG_HOME/vm0fs/config.toml`, else `~/.config/vm0fs/config.toml`.
fn default_config_path() -> Option<PathBuf> {
    non_empty_env("XDG_CONFIG_HOME")
        .or_else(|| home_dir().map(|home| home.join(".config")))
        .map(|dir| dir.join("vm0fs").join("config.toml"))
}

/// `$XDG_CACHE_HOME/vm0fs`, else `~/.cache/vm0fs`.
fn default_cache_dir() -> Option<PathBuf> {
    non_empty_env("XDG_CACHE_HOME")
        .map(|dir| dir.join("vm0fs"))
        .or_else(|| home_dir().map(|home| home.join(".cache").join("vm0fs")))
}

/// The caller's home: `$HOME` when it is the caller's own directory, else the one the password database gives.
/// mount(8) runs the helper of a `user` fstab line as that user but with root's `HOME`, which the user can
/// neither read nor write.
fn home_dir() -> Option<PathBuf> {
    // SAFETY: getuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let home = non_empty_env("HOME");
    if let Some(home) = &home
        && std::fs::metadata(home).is_ok_and(|m| m.uid() == uid)
    {
        return Some(home.clone());
    }
    passwd_home(uid).or(home)
}

/// The home directory of `uid` in the password database.
fn passwd_home(uid: libc::uid_t) -> Option<PathBuf> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: `passwd` is plain data; all-zero is a valid value that getpwuid_r overwrites.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf.len()` is the buffer's size; the strings it fills in
    // point into `buf`, which outlives their use below.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so `pw_dir` is a NUL-terminated string inside `buf`.
    let dir = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}

fn non_empty_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

struct Resolver<'a> {
    matches: &'a ArgMatches,
    /// The config file read, or empty when there is none.
    path: PathBuf,
    origins: HashMap<&'static str, Origin>,
}

impl Resolver<'_> {
    /// A value clap gives (from a flag, the environment or its default) unless the file has one and clap's
    /// is only the default.
    fn pick<T: Clone>(&mut self, key: &'static str, from_file: Option<T>, from_clap: &T) -> T {
        self.pick_opt(key, from_file, &Some(from_clap.clone()))
            .unwrap_or_else(|| from_clap.clone())
    }

    fn pick_opt<T: Clone>(
        &mut self,
        key: &'static str,
        from_file: Option<T>,
        from_clap: &Option<T>,
    ) -> Option<T> {
        let origin = match self.matches.value_source(key) {
            Some(ValueSource::CommandLine) => Origin::Flag(key),
            // Only --api-url reads the environment.
            Some(ValueSource::EnvVariable) => Origin::Env(API_URL_ENV),
            _ if from_file.is_some() => {
                self.origins.insert(key, Origin::File(self.path.clone()));
                return from_file;
            }
            _ => Origin::Default,
        };
        self.origins.insert(key, origin);
        from_clap.clone()
    }

    /// `--token-file`, else `VM0_API_KEY` (then `None`), else the config file's `token_file`.
    fn token_file(&mut self, args: &MountArgs, from_file: Option<PathBuf>) -> Option<PathBuf> {
        let (origin, path) = if args.token_file.is_some() {
            (Origin::Flag("token_file"), args.token_file.clone())
        } else if std::env::var_os(TOKEN_ENV).is_some_and(|v| !v.is_empty()) {
            (Origin::Env(TOKEN_ENV), None)
        } else if let Some(path) = from_file {
            (Origin::File(self.path.clone()), Some(self.relative(path)))
        } else {
            (Origin::Default, None)
        };
        self.origins.insert("token_file", origin);
        path
    }

    /// A size in the config file: a string such as "10G", or bytes.
    fn size(&self, key: &str, from_file: Option<toml::Value>) -> Result<Option<u64>, String> {
        Ok(match from_file {
            Some(toml::Value::Integer(bytes)) if bytes >= 0 => Some(bytes as u64),
            Some(toml::Value::String(text)) => {
                Some(size::parse(&text).map_err(|e| {
                    format!("{key} in the config file {}: {e}", self.path.display())
                })?)
            }
            Some(other) => {
                return Err(format!(
                    "{key} in the config file {}: {other} is not a size: write a string such as \"10G\" or a \
                     number of bytes",
                    self.path.display()
                ));
            }
            None => None,
        })
    }

    /// A path from the config file, relative to the file's directory.
    fn relative(&self, path: PathBuf) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }
}

impl Settings {
    /// The settings as a config file, each line saying where its value came from; never the token itself.
    pub fn to_toml(&self) -> String {
        let origin = |key: &str| self.origins.get(key).cloned().unwrap_or(Origin::Default);
        let mut out = String::from(
            "# vm0fs mount settings (a valid config file; each comment says where the value comes from)\n",
        );
        if let Some(mountpoint) = &self.mountpoint {
            out.push_str(&format!("# mountpoint: {}\n", mountpoint.display()));
        }
        let mut line = |key: &str, value: toml::Value| {
            out.push_str(&format!("{key} = {value}  # {}\n", origin(key)));
        };
        line("api_url", self.api_url.clone().into());
        if let Some(path) = &self.token_file {
            line("token_file", path_value(path));
        }
        line("cache_dir", path_value(&self.cache_dir));
        line("cache_size", size_value(self.cache_size));
        line("max_archive_size", size_value(self.max_archive_size));
        line("max_archive_entries", int_value(self.max_archive_entries));
        line("metadata_ttl", self.metadata_ttl.into());
        line("commit_delay", self.commit_delay.into());
        line("max_staged_size", size_value(self.max_staged_size));
        line("allow_other", self.allow_other.into());
        line("read_only", self.read_only.into());
        if self.token_file.is_none() {
            out.push_str(&match origin("token_file") {
                Origin::Env(var) => format!("# token: from {var}\n"),
                _ => format!("# token: none: set {TOKEN_ENV}, --token-file or token_file\n"),
            });
        }
        out
    }
}

fn path_value(path: &Path) -> toml::Value {
    path.to_string_lossy().into_owned().into()
}

fn int_value(n: u64) -> toml::Value {
    i64::try_from(n).map_or_else(|_| n.to_string().into(), toml::Value::Integer)
}

/// "10G" when the size is a whole number of a binary unit, else bytes.
fn size_value(bytes: u64) -> toml::Value {
    match size::format_exact(bytes) {
        Some(text) => text.into(),
        None => int_value(bytes),
    }
}
