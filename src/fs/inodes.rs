//! Inode numbers for the nodes of the tree.
//!
//! A node is named by what it is (`Node`), not by where it was found, so the same run reached by listing `runs/`
//! or by a direct lookup gets the same inode, and a file inside a version keeps its inode however its storage is
//! reached. Numbers are handed out once and kept for the life of the mount (the kernel may ask for any number it
//! was ever given, and the table is small next to the data it describes: one entry per path that was looked up).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use crate::api::models::StorageKind;

/// The root's inode number, fixed by FUSE.
pub const ROOT_INO: u64 = 1;

/// The files of an agent's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentFile {
    AgentJson,
    VersionsJson,
}

/// The files of a run's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunFile {
    Status,
    RunJson,
    Prompt,
    Logs,
    MetricsJson,
    Output,
    /// Symlink to the run's artifact version.
    Artifact,
    /// Write `cancel` here to cancel the run.
    Ctl,
}

/// The files of the hidden `.vm0fs/` directory, where the mount tells about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlFile {
    /// JSON: the mount, its cache, the downloads in flight (`vm0fs status`).
    Status,
    /// The pinned versions; write `pin|unpin <kind>/<name>[@<version>]` to change them (`vm0fs prefetch`).
    Pins,
}

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    Root,
    /// `.vm0fs/`, reachable by name but not listed in the root.
    ControlDir,
    ControlFile(ControlFile),
    AgentsDir,
    Agent {
        name: String,
    },
    AgentFile {
        name: String,
        file: AgentFile,
    },
    RunsDir,
    /// `runs/latest`, a symlink to the newest run.
    RunsLatest,
    /// `runs/new/`: one writable file per agent.
    RunsNew,
    /// `runs/new/<agent>`: write a prompt and close to start a run.
    NewRun {
        agent: String,
    },
    Run {
        id: String,
    },
    RunFile {
        id: String,
        file: RunFile,
    },
    /// `volumes/` or `artifacts/`.
    StorageDir(StorageKind),
    /// `volumes/<name>` (head, `pin: None`) or `volumes/<name>@<prefix>` (pinned to a full version id).
    StorageRoot {
        kind: StorageKind,
        name: String,
        pin: Option<String>,
    },
    /// A file or directory inside an extracted version; `path` is relative to the version's root and not empty.
    ArchiveEntry {
        kind: StorageKind,
        storage_id: String,
        version_id: String,
        path: PathBuf,
    },
}

#[derive(Default)]
struct Table {
    by_ino: HashMap<u64, Node>,
    by_node: HashMap<Node, u64>,
    next: u64,
}

pub struct InodeTable {
    table: RwLock<Table>,
}

impl InodeTable {
    pub fn new() -> Self {
        let mut table = Table {
            next: ROOT_INO + 1,
            ..Table::default()
        };
        table.by_ino.insert(ROOT_INO, Node::Root);
        table.by_node.insert(Node::Root, ROOT_INO);
        InodeTable {
            table: RwLock::new(table),
        }
    }

    /// The inode number of `node`, allocating one the first time.
    pub fn ino(&self, node: &Node) -> u64 {
        if let Some(ino) = self.read().by_node.get(node) {
            return *ino;
        }
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if let Some(ino) = table.by_node.get(node) {
            return *ino;
        }
        let ino = table.next;
        table.next += 1;
        table.by_ino.insert(ino, node.clone());
        table.by_node.insert(node.clone(), ino);
        ino
    }

    /// The node of an inode number the kernel was given.
    pub fn node(&self, ino: u64) -> Option<Node> {
        self.read().by_ino.get(&ino).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }
}
