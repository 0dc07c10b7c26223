//! The namespace of `runs/`: one directory per run with its files rendered from the API, `runs/latest`, and the
//! two writable corners, `runs/new/<agent>` (write a prompt, close, a run starts; `<agent>.json` takes a request
//! body) and `runs/<id>/ctl` (see `fs::writes`). A run that is still moving is believed for a second; a terminal
//! one for good. A run is reached by its id, or by 8 or more of its first characters, as storage versions are;
//! its directory name in a listing is always the whole id.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{FIXED_TTL, MIN_VERSION_PREFIX, MOVING_TTL, Namespace, is_a_directory};
use super::{file_by_name, is_safe_name, missing, name_of_file, not_a_directory};
use super::{text_name, time_of, unique_safe_names};
use crate::api::models::{Run, RunDetail, RunStatus};
use crate::fs::error::{Error, Result};
use crate::fs::handles::Handle;
use crate::fs::inodes::Node;
use crate::fs::render;
use crate::fs::runs::NewRunWrite;
use crate::fs::{Attr, DirEntry, FileKind, Opened, Vm0Fs};

/// The suffix of the `runs/new/` file that takes a JSON request body rather than a prompt.
const JSON_SUFFIX: &str = ".json";

const RUN_FILES: [(&str, RunFile); 9] = [
    ("status", RunFile::Status),
    ("run.json", RunFile::RunJson),
    ("prompt", RunFile::Prompt),
    ("logs", RunFile::Logs),
    ("metrics.json", RunFile::MetricsJson),
    ("output", RunFile::Output),
    ("error", RunFile::Error),
    ("artifact", RunFile::Artifact),
    ("ctl", RunFile::Ctl),
];

/// The files of a run's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunFile {
    Status,
    RunJson,
    Prompt,
    Logs,
    MetricsJson,
    Output,
    /// Why a failed or timed-out run ended: the API's error text.
    Error,
    /// Symlink to the run's artifact version.
    Artifact,
    /// Write `cancel` here to cancel the run.
    Ctl,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunNode {
    /// `runs/`.
    Dir,
    /// `runs/latest`, a symlink to the newest run.
    Latest,
    /// `runs/new/`: one writable file per agent.
    New,
    /// `runs/new/<agent>`: write a prompt and close to start a run; `runs/new/<agent>.json` (`json`) takes the
    /// request body.
    NewRun {
        agent: String,
        json: bool,
    },
    Run {
        id: String,
    },
    File {
        id: String,
        file: RunFile,
    },
}

impl RunNode {
    /// The bytes of a run's file rendered from the API, its mtime and its attribute TTL.
    fn content(&self, fs: &Vm0Fs) -> Result<(Vec<u8>, SystemTime, Duration)> {
        let RunNode::File { id, file } = self else {
            return Err(is_a_directory(self));
        };
        let run = fs.meta.run(id)?;
        let mut ttl = run_ttl(&run);
        let bytes = match file {
            RunFile::Status => render::text(run.status.as_str()),
            RunFile::RunJson => render::json(&*run),
            RunFile::Prompt => render::text(&run.prompt),
            RunFile::Logs => {
                let api = fs.meta.api().as_ref();
                let (text, complete) = fs.live_logs.current(api, id, run.status.is_terminal())?;
                if !complete {
                    ttl = MOVING_TTL;
                }
                text
            }
            RunFile::Ctl => ctl_text(),
            RunFile::Error => {
                let error = run_error(&run).ok_or_else(|| Error::not_found(self.describe()))?;
                render::text(error)
            }
            RunFile::MetricsJson => render::json(&*fs.meta.run_metrics(&run)?),
            RunFile::Output => {
                let output = fs
                    .meta
                    .run_output(&run)?
                    .ok_or_else(|| Error::not_found(self.describe()))?;
                render::text(&output)
            }
            RunFile::Artifact => {
                return Err(Error::new(
                    libc::EINVAL,
                    format!("{}: a symbolic link", self.describe()),
                ));
            }
        };
        Ok((bytes, run_mtime(&run, fs.mounted_at), ttl))
    }
}

/// Whether `file` of `run` exists: `output`, `error` and `artifact` only once the run has ended with one. For a
/// run last seen moving while the API cannot be reached, whether it has ended is not known: `EIO` (not `ENOENT`,
/// which would say there is none).
fn run_file_exists(fs: &Vm0Fs, run: &RunDetail, file: RunFile) -> Result<bool> {
    let ends_with_it = matches!(file, RunFile::Output | RunFile::Artifact | RunFile::Error);
    if ends_with_it && !run.status.is_terminal() {
        if let Some(since) = fs.meta.unreachable_since() {
            return Err(not_known_offline(run, file, since));
        }
    }
    Ok(match file {
        RunFile::Output => fs.meta.run_output(run)?.is_some(),
        RunFile::Artifact => artifact_link(run).is_some(),
        RunFile::Error => run_error(run).is_some(),
        _ => true,
    })
}

/// Why whether a run that was last seen moving has `file` cannot be told: the API is out of reach.
fn not_known_offline(run: &RunDetail, file: RunFile, since: SystemTime) -> Error {
    let since = chrono::DateTime::<chrono::Local>::from(since).format("%H:%M:%S");
    Error::new(
        libc::EIO,
        format!(
            "runs/{}/{}: not known: the run was last seen {} and the API has not been reachable since {since}; \
             try again once it answers (`vm0fs status` shows when)",
            run.id,
            name_of_file(&RUN_FILES, file),
            run.status.as_str()
        ),
    )
}

impl Namespace for RunNode {
    fn child(&self, fs: &Vm0Fs, name: &OsStr) -> Result<Node> {
        let text = text_name(self, name)?;
        Ok(Node::Runs(match self {
            RunNode::Dir if text == "new" => RunNode::New,
            RunNode::Dir if text == "latest" => {
                fs.meta.latest_run()?.ok_or_else(|| missing(self, name))?;
                RunNode::Latest
            }
            RunNode::Dir => {
                let id = if fs.meta.listed_run(text).is_some() {
                    text.to_string()
                } else if is_run_prefix(text) {
                    fs.meta.run_by_prefix(&text.to_ascii_lowercase())?
                } else {
                    fs.meta.run(text)?.id.clone()
                };
                RunNode::Run { id }
            }
            RunNode::New => {
                let (agent, json) = match text.strip_suffix(JSON_SUFFIX) {
                    Some(agent) if fs.meta.agent(text).is_err() => (agent, true),
                    _ => (text, false),
                };
                fs.meta.agent(agent)?;
                RunNode::NewRun {
                    agent: agent.to_string(),
                    json,
                }
            }
            RunNode::Run { id } => {
                let file = file_by_name(&RUN_FILES, text).ok_or_else(|| missing(self, name))?;
                let run = fs.meta.run(id)?;
                if !run_file_exists(fs, &run, file)? {
                    return Err(missing(self, name));
                }
                RunNode::File {
                    id: id.clone(),
                    file,
                }
            }
            RunNode::Latest | RunNode::NewRun { .. } | RunNode::File { .. } => {
                return Err(not_a_directory(self));
            }
        }))
    }

    fn attr(&self, fs: &Vm0Fs, ino: u64) -> Result<Attr> {
        let fixed = fs.mounted_at;
        match self {
            RunNode::Dir => Ok(fs.dir_attr(ino, fixed, fs.config.metadata_ttl.min(FIXED_TTL))),
            RunNode::New => Ok(fs.make_attr(ino, FileKind::Directory, 0, 0o755, fixed, MOVING_TTL)),
            RunNode::NewRun { agent, .. } => {
                fs.meta.agent(agent)?;
                // What a read shows depends on who reads (`fs::runs::outcomes`), which `getattr` is not told: size 0,
                // and reads (direct I/O) go by what they get. No attribute caching.
                Ok(fs.make_attr(ino, FileKind::File, 0, 0o644, fixed, Duration::ZERO))
            }
            RunNode::File {
                id,
                file: RunFile::Ctl,
            } => {
                // Readable (it shows its usage), so that `cp -r runs/<id>` works for anyone who may read the run.
                let run = fs.meta.run(id)?;
                let mtime = run_mtime(&run, fixed);
                let size = ctl_text().len() as u64;
                Ok(fs.make_attr(ino, FileKind::File, size, 0o644, mtime, MOVING_TTL))
            }
            RunNode::Run { id } => {
                // `ls -l runs/` costs the listing's pages, not one request per run: a listed run, moving or not, is
                // dated from the listing; only one that no listing holds yet asks its detail.
                let (mtime, ttl) = match fs.meta.listed_run_now(id)? {
                    Some(run) => (
                        run_times(&run.created_at, &run.started_at, &run.completed_at, fixed),
                        status_ttl(run.status),
                    ),
                    None => {
                        let run = fs.meta.run(id)?;
                        (run_mtime(&run, fixed), run_ttl(&run))
                    }
                };
                Ok(fs.dir_attr(ino, mtime, ttl))
            }
            RunNode::Latest => {
                let target = self.link_target(fs)?;
                Ok(fs.symlink_attr(ino, target.len(), fixed, MOVING_TTL))
            }
            RunNode::File {
                id,
                file: RunFile::Artifact,
            } => {
                let run = fs.meta.run(id)?;
                let target =
                    artifact_link(&run).ok_or_else(|| Error::not_found(self.describe()))?;
                Ok(fs.symlink_attr(ino, target.len(), run_mtime(&run, fixed), run_ttl(&run)))
            }
            RunNode::File { .. } => {
                let (content, mtime, ttl) = self.content(fs)?;
                Ok(fs.file_attr(ino, content.len() as u64, mtime, ttl))
            }
        }
    }

    fn children(&self, fs: &Vm0Fs, out: &mut Vec<DirEntry>) -> Result<()> {
        match self {
            RunNode::Dir => {
                out.push(fs.runs_new_entry());
                let runs = fs.meta.runs()?;
                out.extend(fs.run_entries(runs.all(), true));
            }
            RunNode::Run { id } => {
                let run = fs.meta.run(id)?;
                for (file_name, file) in RUN_FILES {
                    // Offline, a moving run's `output` and the like are not known: not listed.
                    let exists = match run_file_exists(fs, &run, file) {
                        Err(e) if e.errno == libc::EIO && !run.status.is_terminal() => false,
                        other => other?,
                    };
                    if exists {
                        let kind = if file == RunFile::Artifact {
                            FileKind::Symlink
                        } else {
                            FileKind::File
                        };
                        let child = Node::Runs(RunNode::File {
                            id: id.clone(),
                            file,
                        });
                        out.push(fs.entry(&child, kind, file_name));
                    }
                }
            }
            RunNode::New => {
                let agents = fs.meta.agents()?;
                for name in unique_safe_names("agent", agents.iter().map(|a| a.name.as_str())) {
                    for json in [false, true] {
                        let child = Node::Runs(RunNode::NewRun {
                            agent: name.to_string(),
                            json,
                        });
                        out.push(fs.entry(&child, FileKind::File, new_run_name(name, json)));
                    }
                }
            }
            RunNode::Latest | RunNode::NewRun { .. } | RunNode::File { .. } => {
                return Err(not_a_directory(self));
            }
        }
        Ok(())
    }

    fn open(&self, fs: &Vm0Fs) -> Result<Opened> {
        match self {
            RunNode::File {
                id,
                file: RunFile::Logs,
            } => {
                fs.live_logs.opened(id);
                Ok(fs.open_handle(Handle::Log(id.clone())))
            }
            // `Vm0Fs::open` answers a read of `runs/new/` itself: what it shows depends on who reads.
            RunNode::NewRun { .. } => Ok(fs.open_handle(Handle::Content(Arc::default()))),
            RunNode::File { .. } => {
                let (content, _, _) = self.content(fs)?;
                Ok(fs.open_handle(Handle::Content(Arc::new(content))))
            }
            RunNode::Dir | RunNode::Latest | RunNode::New | RunNode::Run { .. } => {
                Err(is_a_directory(self))
            }
        }
    }

    fn parent(&self) -> Node {
        Node::Runs(match self {
            RunNode::Dir => return Node::Root,
            RunNode::Latest | RunNode::Run { .. } | RunNode::New => RunNode::Dir,
            RunNode::NewRun { .. } => RunNode::New,
            RunNode::File { id, .. } => RunNode::Run { id: id.clone() },
        })
    }

    fn describe(&self) -> String {
        match self {
            RunNode::Dir => "runs".into(),
            RunNode::Latest => "runs/latest".into(),
            RunNode::New => "runs/new".into(),
            RunNode::NewRun { agent, json } => format!("runs/new/{}", new_run_name(agent, *json)),
            RunNode::Run { id } => format!("runs/{id}"),
            RunNode::File { id, file } => {
                format!("runs/{id}/{}", name_of_file(&RUN_FILES, *file))
            }
        }
    }

    fn link_target(&self, fs: &Vm0Fs) -> Result<Vec<u8>> {
        match self {
            RunNode::Latest => {
                let run = fs
                    .meta
                    .latest_run()?
                    .ok_or_else(|| Error::not_found("runs/latest"))?;
                Ok(run.id.into_bytes())
            }
            RunNode::File {
                id,
                file: RunFile::Artifact,
            } => {
                let run = fs.meta.run(id)?;
                artifact_link(&run)
                    .map(String::into_bytes)
                    .ok_or_else(|| Error::not_found(self.describe()))
            }
            _ => Err(Error::new(
                libc::EINVAL,
                format!("{}: not a symbolic link", self.describe()),
            )),
        }
    }

    fn xattrs(&self, _fs: &Vm0Fs) -> Result<Vec<(&'static str, String)>> {
        Ok(match self {
            // The id is the node's own: `ls -l`, which asks every entry for its ACL, asks the API nothing here.
            RunNode::Run { id } => vec![("user.vm0.id", id.clone())],
            _ => Vec::new(),
        })
    }

    fn open_write(&self, fs: &Vm0Fs) -> Result<Option<Handle>> {
        Ok(match self {
            RunNode::NewRun { agent, json } => {
                fs.meta.agent(agent)?;
                Some(Handle::NewRun(Arc::new(Mutex::new(NewRunWrite {
                    agent: agent.clone(),
                    written: Vec::new(),
                    dirty: false,
                    writer_pid: None,
                    writer: None,
                    json: *json,
                    outcome: None,
                    shown: None,
                }))))
            }
            RunNode::File {
                id,
                file: RunFile::Ctl,
            } => Some(Handle::Ctl(id.clone())),
            _ => None,
        })
    }

    /// `runs/new/<agent>` may be created (an existing agent's file); nothing else can.
    fn create(&self, fs: &Vm0Fs, name: &OsStr, _mode: u32) -> Result<(Node, Handle)> {
        if *self != RunNode::New {
            return Err(Error::read_only(self.describe()));
        }
        let node = fs.child(&Node::Runs(RunNode::New), name)?;
        let handle = node
            .namespace()
            .open_write(fs)?
            .ok_or_else(|| Error::read_only(node.namespace().describe()))?;
        Ok((node, handle))
    }

    /// Truncation to zero, as `open(O_TRUNC)` asks, is accepted on the writable files.
    fn truncate(&self, _fs: &Vm0Fs, size: u64) -> Result<()> {
        let writable = matches!(
            self,
            RunNode::NewRun { .. }
                | RunNode::File {
                    file: RunFile::Ctl,
                    ..
                }
        );
        if writable && size == 0 {
            Ok(())
        } else {
            Err(Error::read_only(self.describe()))
        }
    }
}

impl Vm0Fs {
    /// The `new` entry of `runs/`.
    pub(in crate::fs) fn runs_new_entry(&self) -> DirEntry {
        self.entry(&Node::Runs(RunNode::New), FileKind::Directory, "new")
    }

    /// Entries of `runs/` for `runs`, newest first, headed by `latest` when `first` (the newest are among them).
    pub(in crate::fs) fn run_entries(&self, runs: &[Run], first: bool) -> Vec<DirEntry> {
        let mut out = Vec::with_capacity(runs.len() + 1);
        if first && !runs.is_empty() {
            out.push(self.entry(&Node::Runs(RunNode::Latest), FileKind::Symlink, "latest"));
        }
        for id in unique_safe_names("run", runs.iter().map(|r| r.id.as_str())) {
            let child = Node::Runs(RunNode::Run { id: id.to_string() });
            out.push(self.entry(&child, FileKind::Directory, id));
        }
        out
    }
}

/// The name of a `runs/new/` file.
fn new_run_name(agent: &str, json: bool) -> String {
    if json {
        format!("{agent}{JSON_SUFFIX}")
    } else {
        agent.to_string()
    }
}

/// Whether a name in `runs/` is an id prefix (8 or more characters of a run id, short of a whole one), which
/// names the one run whose id starts with it, as `<name>@<prefix>` names a storage version.
fn is_run_prefix(name: &str) -> bool {
    (MIN_VERSION_PREFIX..36).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// What reading `runs/<id>/ctl` shows: how to use it.
fn ctl_text() -> Vec<u8> {
    render::text(crate::fs::writes::CTL_USAGE)
}

/// The API's error text of a run that failed or timed out.
fn run_error(run: &RunDetail) -> Option<&str> {
    let ended_badly = matches!(run.status, RunStatus::Failed | RunStatus::Timeout);
    run.error
        .as_deref()
        .filter(|e| ended_badly && !e.is_empty())
}

/// `runs/<id>/artifact` → `../../artifacts/<name>@<version>`, when the run produced one.
fn artifact_link(run: &RunDetail) -> Option<String> {
    let name = run.artifact_name.as_deref()?;
    let version = run.artifact_version.as_deref()?;
    let valid = is_safe_name(name)
        && version.len() >= MIN_VERSION_PREFIX
        && version.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| format!("../../artifacts/{name}@{version}"))
}

fn run_ttl(run: &RunDetail) -> Duration {
    status_ttl(run.status)
}

/// The attribute TTL of a run with this status: short while it moves, long once it has ended.
fn status_ttl(status: RunStatus) -> Duration {
    if status.is_terminal() {
        FIXED_TTL
    } else {
        MOVING_TTL
    }
}

fn run_mtime(run: &RunDetail, fallback: SystemTime) -> SystemTime {
    run_times(
        &run.created_at,
        &run.started_at,
        &run.completed_at,
        fallback,
    )
}

/// A run changes when it is created, starts and ends: its mtime is the latest of these.
fn run_times(
    created: &str,
    started: &Option<String>,
    completed: &Option<String>,
    fallback: SystemTime,
) -> SystemTime {
    let latest = completed
        .as_deref()
        .or(started.as_deref())
        .unwrap_or(created);
    time_of(latest, fallback)
}
