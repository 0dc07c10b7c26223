//! Where a volume's publishing stands and how a publish is asked for: the values `vm0fs status` and `vm0fs sync`
//! show, apart from the code that produces them, so that every part of the stage can name them without importing
//! the publisher.

/// The first 8 hex of a version id, the form people see.
pub fn short(version: &str) -> &str {
    version.get(..8).unwrap_or(version)
}

/// Where a volume's publishing stands, for `vm0fs status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Nothing happened since the mount (or the changes wait for their quiet period).
    Clean,
    Publishing {
        done: u64,
        total: u64,
    },
    Published(String),
    /// The head moved and both sides changed the same paths: what happened and what to do (see `rebase`).
    Conflict(String),
    Failed {
        step: &'static str,
        message: String,
        retrying: bool,
    },
    /// `vm0fs sync`'s publish failed in a way that may pass and waits to try again.
    Retrying(RetryNote),
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Clean => write!(f, "staged"),
            Phase::Publishing { done, total } => write!(f, "publishing ({done} of {total} bytes)"),
            Phase::Published(v) => write!(f, "published as {}", short(v)),
            Phase::Conflict(why) => write!(f, "NOT PUBLISHED: {why}"),
            Phase::Failed {
                step,
                message,
                retrying,
            } => {
                write!(f, "failed at {step}: {message}")?;
                if *retrying {
                    write!(f, " (retrying)")?;
                }
                Ok(())
            }
            Phase::Retrying(note) => write!(
                f,
                "attempt {} failed: {}; trying again",
                note.failed_attempts, note.cause
            ),
        }
    }
}

/// How a publish treats a head that moved on the server since the changes were based on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Rebase onto it, or keep the changes staged when both sides changed the same paths.
    Careful,
    /// Publish the tree as it is over it (`vm0fs sync --force`).
    Force,
}

/// What a published version replaced, for `vm0fs sync --force` to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub version: String,
    /// The head that was not the base and is no longer the head (its version stays readable).
    pub replaced: Option<String>,
    /// What of the tree the version does not hold, when something: kept on this machine (`/v1`), or waiting
    /// for the next change of content (push flow).
    pub note: Option<String>,
}

/// One publish uploading its files: `volumes/<name>`, and its bytes sent of all it sends (`vm0fs status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishProgress {
    pub volume: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Set while `vm0fs sync`'s publish waits to try again; absent otherwise (and from mounts older than this
    /// field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryNote>,
}

/// A publish waiting to try again: how many attempts failed, why the last one did, and when the next starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryNote {
    pub failed_attempts: u32,
    pub cause: String,
    /// When the next attempt starts, in milliseconds since the Unix epoch.
    pub next_attempt_unix_ms: u64,
}

/// Where the modes, symlinks, empty directories and times of a volume stand after its last publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum ShapeNote {
    /// Not published yet, or on the `/v1` flow: they stay on this machine (`LocalOnly` says which).
    #[default]
    Local,
    /// On the push flow, in the version.
    Published,
    /// On the push flow, changed without a change of content: the version id is the same, so they wait for the
    /// next change of a file.
    Waiting,
}

/// What `vm0fs status`, `vm0fs sync` and the log say of changes that wait for a change of content.
pub(super) const WAITING: &str = "waiting: changes of modes, symlinks, empty directories or times alone make no new \
                                  version (a version's id names its files' content); they are published with the \
                                  next change of a file";
