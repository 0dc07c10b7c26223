//! Inode numbers for the nodes of the tree, and how long each is kept.
//!
//! A node is named by what it is (`Node`), not by where it was found, so the same run reached by listing `runs/`
//! or by a direct lookup gets the same inode, and a file inside a version keeps its inode however its storage is
//! reached.
//!
//! A number lives as long as something holds it, as the FUSE protocol intends: each reply that hands the kernel an
//! entry (lookup, create, a readdirplus entry) takes one reference, which the kernel gives back with FORGET when it
//! drops the inode from its caches; an open directory listing holds one on each of its entries, so that `readdir`
//! and `readdirplus` can answer for them until `releasedir`. When the last reference goes, the node leaves the
//! table (never the root), so a mount that browses for weeks holds only what the kernel and open listings still
//! use. A node met again later gets a new number: numbers only grow and are never reused, so one the kernel
//! forgot can never come to mean another node (generation 0 is then enough). Taking and giving back references
//! happen under the table's write lock, so a lookup racing a FORGET of the same node either keeps the old number
//! alive or allocates a fresh one, never hands out a number that was just removed.

use std::collections::{HashMap, HashSet};

/// The table's hasher: every lookup hashes a node (a version id, a storage id and a path), and a walk of a big
/// archive does hundreds of thousands of them. foldhash is several times cheaper than the default SipHash and
/// seeded at random per process like it, so an archive cannot be built to collide in a table it cannot predict
/// (and a collision costs time, never a wrong answer).
type Fast = foldhash::fast::RandomState;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::tree::{AgentNode, ControlNode, RunNode, StorageNode, VolumeNode};

/// The root's inode number, fixed by FUSE.
pub const ROOT_INO: u64 = 1;

/// What an inode is: a namespace and the node inside it (see `tree`, where each namespace answers for its own).
/// The nested enum is the identity the table hashes: two nodes are one inode exactly when they are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    Root,
    Control(ControlNode),
    Agents(AgentNode),
    Runs(RunNode),
    /// `volumes/`, `artifacts/`, an artifact's head, pinned versions and what they hold.
    Storage(StorageNode),
    /// A volume's head: `volumes/<name>` and what it holds.
    Volume(VolumeNode),
}

struct Entry {
    node: Arc<Node>,
    /// References held: the kernel's lookup count plus one per open listing that names the node.
    refs: u64,
}

/// What a node costs here, so that a walk of a huge archive stays bounded: one `Arc<Node>` shared by both maps
/// (an archive entry's node is about 80 bytes plus its path), one slot in each map (about 40 bytes together), and
/// the storage and version ids, which are interned: one copy per version, not one per entry. About 150 bytes
/// plus the path's length per entry the kernel holds; 200,000 entries with 20-byte paths are about 35 MiB.
struct Table {
    by_ino: HashMap<u64, Entry, Fast>,
    by_node: HashMap<Arc<Node>, u64, Fast>,
    /// The storage and version ids of the archive entries held, each once.
    ids: HashSet<Arc<str>, Fast>,
    /// The next number to hand out; it only grows, so no number is ever reused.
    next: u64,
}

impl Table {
    /// `node` with its ids replaced by the copies the table holds already (or made the ones it holds).
    fn interned(&mut self, node: &Node) -> Node {
        match node {
            Node::Storage(StorageNode::Entry {
                kind,
                storage_id,
                version_id,
                path,
            }) => Node::Storage(StorageNode::Entry {
                kind: *kind,
                storage_id: self.intern(storage_id),
                version_id: self.intern(version_id),
                path: path.clone(),
            }),
            Node::Volume(VolumeNode::Entry { storage_id, path }) => {
                Node::Volume(VolumeNode::Entry {
                    storage_id: self.intern(storage_id),
                    path: path.clone(),
                })
            }
            other => other.clone(),
        }
    }

    fn intern(&mut self, id: &Arc<str>) -> Arc<str> {
        if let Some(held) = self.ids.get(id) {
            return held.clone();
        }
        self.ids.insert(id.clone());
        id.clone()
    }

    /// Drops the interned ids that only `node` (just removed) still used: the interner and the node are the
    /// last two holders then.
    fn forget_ids(&mut self, node: &Node) {
        let ids = match node {
            Node::Storage(StorageNode::Entry {
                storage_id,
                version_id,
                ..
            }) => vec![storage_id, version_id],
            Node::Volume(VolumeNode::Entry { storage_id, .. }) => vec![storage_id],
            _ => return,
        };
        for id in ids {
            if Arc::strong_count(id) <= 2 {
                self.ids.remove(id);
            }
        }
    }
}

pub struct InodeTable {
    table: RwLock<Table>,
}

impl InodeTable {
    pub fn new() -> Self {
        let root = Entry {
            node: Arc::new(Node::Root),
            refs: 1,
        };
        let table = Table {
            by_node: HashMap::from_iter([(root.node.clone(), ROOT_INO)]),
            by_ino: HashMap::from_iter([(ROOT_INO, root)]),
            ids: HashSet::default(),
            next: ROOT_INO + 1,
        };
        InodeTable {
            table: RwLock::new(table),
        }
    }

    /// The inode number of `node`, taking one reference on it; a node without a number gets a new one.
    pub fn acquire(&self, node: &Node) -> u64 {
        let mut table = self.write();
        if let Some(&ino) = table.by_node.get(node) {
            if let Some(entry) = table.by_ino.get_mut(&ino) {
                entry.refs += 1;
            }
            return ino;
        }
        let ino = table.next;
        table.next += 1;
        let node = Arc::new(table.interned(node));
        table.by_node.insert(node.clone(), ino);
        table.by_ino.insert(ino, Entry { node, refs: 1 });
        ino
    }

    /// Takes one more reference on a number already held (by the listing a readdirplus entry comes from).
    pub fn retain(&self, ino: u64) {
        if let Some(entry) = self.write().by_ino.get_mut(&ino) {
            entry.refs += 1;
        }
    }

    /// Gives back `count` references on each number (FORGET, BATCH_FORGET, a closed listing); a node left with
    /// none leaves the table, except the root. Numbers the table does not know are ignored.
    pub fn release(&self, releases: impl IntoIterator<Item = (u64, u64)>) {
        let mut table = self.write();
        for (ino, count) in releases {
            if ino == ROOT_INO {
                continue;
            }
            let Some(entry) = table.by_ino.get_mut(&ino) else {
                continue;
            };
            entry.refs = entry.refs.saturating_sub(count);
            if entry.refs == 0
                && let Some(entry) = table.by_ino.remove(&ino)
            {
                table.by_node.remove(&entry.node);
                table.forget_ids(&entry.node);
            }
        }
    }

    /// A change of names in volume `storage_id`: the nodes at or below `from` now live at `to` (a rename), or
    /// nowhere (`None`: unlinked, removed, or replaced by a rename). Their numbers stay and follow the change, as
    /// the kernel's dentries do; a node that lives nowhere gets a path no file can have, so it answers ENOENT.
    pub fn move_volume_paths(&self, storage_id: &str, from: &Path, to: Option<&Path>) {
        let mut table = self.write();
        let Table {
            by_ino, by_node, ..
        } = &mut *table;
        for (ino, entry) in by_ino.iter_mut() {
            let Node::Volume(VolumeNode::Entry {
                storage_id: sid,
                path,
            }) = &*entry.node
            else {
                continue;
            };
            let Ok(rest) = path.strip_prefix(from) else {
                continue;
            };
            if **sid != *storage_id {
                continue;
            }
            let new_path = match to {
                Some(to) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Some(to) => to.join(rest),
                None => PathBuf::from(format!("\0gone-{ino}")),
            };
            let node = Arc::new(Node::Volume(VolumeNode::Entry {
                storage_id: sid.clone(),
                path: new_path,
            }));
            let old = std::mem::replace(&mut entry.node, node.clone());
            if by_node.get(&old) == Some(ino) {
                by_node.remove(&old);
            }
            by_node.insert(node, *ino);
        }
    }

    /// The number `node` has now, if any, without taking a reference or allocating one.
    pub fn known_ino(&self, node: &Node) -> Option<u64> {
        self.read().by_node.get(node).copied()
    }

    /// The node of an inode number the kernel holds.
    pub fn node(&self, ino: u64) -> Option<Node> {
        self.read().by_ino.get(&ino).map(|e| Node::clone(&e.node))
    }

    /// How many nodes have a number now (the root included).
    pub fn len(&self) -> usize {
        self.read().by_ino.len()
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::models::StorageKind;

    fn run(id: &str) -> Node {
        Node::Runs(RunNode::Run { id: id.into() })
    }

    #[test]
    fn a_node_stays_until_every_reference_is_given_back() {
        let table = InodeTable::new();
        let ino = table.acquire(&run("r1"));
        assert_eq!(table.acquire(&run("r1")), ino);
        table.retain(ino);
        table.release([(ino, 2)]);
        assert_eq!(table.node(ino), Some(run("r1")));
        assert_eq!(table.known_ino(&run("r1")), Some(ino));
        table.release([(ino, 1)]);
        assert_eq!(table.node(ino), None);
        assert_eq!(table.known_ino(&run("r1")), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn archive_entries_of_one_version_share_its_ids() {
        let table = InodeTable::new();
        let entry = |path: &str| {
            Node::Storage(StorageNode::Entry {
                kind: StorageKind::Artifact,
                storage_id: "s1".into(),
                version_id: "v1".into(),
                path: path.into(),
            })
        };
        let a = table.acquire(&entry("a"));
        let b = table.acquire(&entry("b"));
        let version_of = |ino| match &*table.read().by_ino[&ino].node {
            Node::Storage(StorageNode::Entry { version_id, .. }) => version_id.clone(),
            _ => unreachable!(),
        };
        assert!(Arc::ptr_eq(&version_of(a), &version_of(b)));
        assert_eq!(table.read().ids.len(), 2, "one storage id, one version id");
        table.release([(a, 1)]);
        assert_eq!(table.read().ids.len(), 2, "still used by b");
        table.release([(b, 1)]);
        assert!(table.read().ids.is_empty(), "gone with the last entry");
    }

    #[test]
    fn the_root_is_never_removed() {
        let table = InodeTable::new();
        table.release([(ROOT_INO, 1), (ROOT_INO, u64::MAX)]);
        assert_eq!(table.node(ROOT_INO), Some(Node::Root));
        assert_eq!(table.acquire(&Node::Root), ROOT_INO);
    }

    #[test]
    fn numbers_are_never_reused() {
        let table = InodeTable::new();
        let first = table.acquire(&run("r1"));
        table.release([(first, 1)]);
        let second = table.acquire(&run("r1"));
        let other = table.acquire(&run("r2"));
        assert!(first < second && second < other, "{first} {second} {other}");
        assert_eq!(table.node(first), None, "the old number means nothing now");
    }

    #[test]
    fn unknown_numbers_and_extra_releases_are_harmless() {
        let table = InodeTable::new();
        let ino = table.acquire(&run("r1"));
        table.release([(999, 1), (ino, 5)]);
        table.retain(ino);
        assert_eq!(table.node(ino), None, "retain does not bring a number back");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn concurrent_lookups_and_forgets_never_lose_a_held_node() {
        let table = InodeTable::new();
        let held = table.acquire(&run("held"));
        std::thread::scope(|s| {
            for t in 0..8 {
                let table = &table;
                s.spawn(move || {
                    for i in 0..5_000 {
                        let node = if (t + i) % 2 == 0 {
                            run("held")
                        } else {
                            run("churn")
                        };
                        let ino = table.acquire(&node);
                        assert_eq!(table.node(ino).as_ref(), Some(&node));
                        table.release([(ino, 1)]);
                    }
                });
            }
        });
        assert_eq!(table.known_ino(&run("held")), Some(held));
        assert_eq!(table.node(held), Some(run("held")));
        assert_eq!(table.known_ino(&run("churn")), None);
        assert_eq!(table.len(), 2, "the root and the held node");
    }
}
