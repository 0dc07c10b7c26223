//! Directories: `opendir` takes a snapshot, `readdir` and `readdirplus` read it from an offset, `releasedir` gives
//! it back.
//!
//! A snapshot (a `Listing`) keeps offsets valid however the API changes meanwhile, and holds a reference on each
//! entry's inode number until it is closed; `readdirplus` hands the kernel a reference per entry it answers. The
//! counting is the whole difficulty of directories, so it lives in one file, apart from the dispatch in `mod.rs`.

use std::sync::Arc;
use std::time::Duration;

use super::error::Result;
use super::handles::Handle;
use super::inodes::Node;
use super::listing::Listing;
use super::tree::{self, RunNode, StorageNode};
use super::{Attr, DirEntry, FileKind, Vm0Fs};

impl Vm0Fs {
    /// Takes a snapshot of the directory, so that `readdir` offsets stay valid however the API changes meanwhile.
    /// The snapshot holds a reference on the number of each of its entries until `releasedir`. The first listing
    /// of `runs/` grows instead, page by page, as the API's pages arrive (see `listing`).
    pub fn opendir(self: &Arc<Self>, ino: u64) -> Result<u64> {
        let node = self.node(ino)?;
        let mut entries = vec![
            DirEntry {
                ino: self.inodes.acquire(&node),
                kind: FileKind::Directory,
                name: ".".into(),
                attr: None,
            },
            DirEntry {
                ino: self.inodes.acquire(&tree::parent_of(&node)),
                kind: FileKind::Directory,
                name: "..".into(),
                attr: None,
            },
        ];
        if node == Node::Runs(RunNode::Dir) && !self.meta.runs_listed() {
            return Ok(self.open_growing_runs(entries));
        }
        if let Node::Storage(storage) = &node
            && listing_is_immutable(&node)
        {
            if let Err(e) = storage.fetch_version(self) {
                self.release_entries(&entries);
                return Err(e);
            }
            return Ok(self
                .handles
                .insert(Handle::Dir(Arc::new(Listing::deferred(node, entries)))));
        }
        if let Err(e) = self.children(&node, &mut entries) {
            self.release_entries(&entries);
            return Err(e);
        }
        Ok(self
            .handles
            .insert(Handle::Dir(Arc::new(Listing::complete(entries)))))
    }

    /// Whether the listing of directory `ino` can never change, so the kernel may keep it for good: a directory
    /// inside a storage version, or a storage pinned to a version (`volumes/<name>@<version>`). A storage's head,
    /// `runs/` and the rest of the API tree can change at any time.
    pub fn listing_is_immutable(&self, ino: u64) -> bool {
        self.inodes
            .node(ino)
            .is_some_and(|n| listing_is_immutable(&n))
    }

    pub(in crate::fs) fn release_entries(&self, entries: &[DirEntry]) {
        self.inodes.release(entries.iter().map(|e| (e.ino, 1)));
    }

    /// The entries of an open directory from `offset` on; each comes with the offset of the next one. Waits
    /// while a growing listing has nothing past `offset` yet.
    pub fn readdir(&self, fh: u64, offset: u64) -> Result<Vec<(u64, DirEntry)>> {
        let listing = self.handles.dir(fh)?;
        if let Some(dir) = listing.unlisted() {
            let mut entries = Vec::new();
            if let Err(e) = self.children(&dir, &mut entries) {
                self.release_entries(&entries);
                return Err(e);
            }
            self.release_entries(&listing.fill(entries));
        }
        listing.from(offset)
    }

    /// Like `readdir`, with each entry's attributes (for READDIRPLUS). `.` and `..` are listed too (so that
    /// `ls -a` shows them) but take no reference: the kernel does not count them as lookups.
    /// Each entry, with the offset of the next, goes to `add` until it answers true (the reply is full); every
    /// other entry it takes gives the kernel a reference, counted here, so the reply must be sent after this returns.
    /// An error after some entries ends the reply early: the kernel asks again from there and meets it then.
    pub fn readdirplus(
        &self,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, &DirEntry, &Attr) -> bool,
    ) -> Result<()> {
        let mut added = false;
        for (next, entry) in self.readdir(fh, offset)? {
            if entry.name == "." || entry.name == ".." {
                let attr = self.dot_attr(entry.ino);
                if add(next, &entry, &attr) {
                    break;
                }
                // Added: a later entry that cannot be answered here ends this reply rather than failing it, so
                // that a retry elsewhere (see `waiting`) never lists the dots twice.
                added = true;
                continue;
            }
            let known = entry.attr.clone().map(Ok);
            let attr = match known
                .unwrap_or_else(|| self.node(entry.ino).and_then(|n| self.attr(entry.ino, &n)))
            {
                Ok(attr) => attr,
                Err(e) if e.errno == libc::ENOENT => continue,
                Err(_) if added => break,
                Err(e) => return Err(e),
            };
            if add(next, &entry, &attr) {
                break;
            }
            self.inodes.retain(entry.ino);
            added = true;
        }
        Ok(())
    }

    /// The attributes of `.` or `..` in a listing: a directory, with no time to live, so that the kernel (which
    /// takes no reference on them) keeps nothing of them.
    fn dot_attr(&self, ino: u64) -> Attr {
        Attr {
            ino,
            kind: FileKind::Directory,
            size: 0,
            perm: 0o555,
            nlink: 2,
            mtime: self.mounted_at,
            atime: self.mounted_at,
            ctime: self.mounted_at,
            uid: self.config.uid,
            gid: self.config.gid,
            ttl: Duration::ZERO,
        }
    }

    /// Closes a listing, giving back the references its snapshot held.
    pub fn releasedir(&self, fh: u64) {
        if let Some(Handle::Dir(listing)) = self.handles.remove(fh) {
            self.release_entries(&listing.close());
        }
    }
}

/// Whether a directory's listing can never change: inside a storage version (see `listing` on deferred listings).
fn listing_is_immutable(node: &Node) -> bool {
    matches!(
        node,
        Node::Storage(StorageNode::Entry { .. } | StorageNode::Root { pin: Some(_), .. })
    )
}
