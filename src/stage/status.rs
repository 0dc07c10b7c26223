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
}

/// One publish uploading its files: `volumes/<name>`, and its bytes sent of all it sends (`vm0fs status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishProgress {
    pub volume: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
}
