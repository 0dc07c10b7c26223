//! The tree as the push flow's archive holds it: every entry with its kind, mode and modification time, read
//! from the stage's state under its lock (by `VolumeStage::freeze`), so the archive and the manifest describe the
//! same generation of the tree.

use std::time::SystemTime;

use super::layout::VolumeLayout;
use super::overlay::Node;
use super::state::State;
use super::upload::{TreeEntry, TreeKind};

/// What the archive needs of an entry's attributes as the volume shows them: size, mode, modification time.
pub(super) struct Shown {
    pub size: u64,
    pub mode: u32,
    pub mtime: SystemTime,
}

/// Every entry of the tree but its root, in path order (parents first). A time this mount never set nor read from
/// a staged file is the base version's (its cached tree), else now. Of the names of one file, the first in path
/// order carries its bytes and the others are hard links to it (an extractor meets the file before its links).
/// `shown` gives an entry's attributes as the volume shows them (`VolumeStage::attr`), passed in so that this
/// module needs nothing of the volume's.
pub(super) fn tree_entries(
    st: &State,
    layout: &VolumeLayout,
    shown: impl Fn(&str, &Node) -> Shown,
) -> Vec<TreeEntry> {
    let now = SystemTime::now();
    let base_time = |path: &str| {
        let root = st.base_root.as_ref()?;
        std::fs::symlink_metadata(root.join(path))
            .ok()?
            .modified()
            .ok()
    };
    st.tree
        .entries()
        .filter(|(path, _)| !path.is_empty())
        .map(|(path, node)| {
            let attr = shown(path, node);
            let mtime = match attr.mtime {
                SystemTime::UNIX_EPOCH => base_time(path).unwrap_or(now),
                known => known,
            };
            let first_name = match node {
                Node::File { .. } => st.tree.names_of(path).into_iter().min(),
                _ => None,
            };
            let kind = match node {
                Node::File { .. } if first_name.as_deref().is_some_and(|first| first != path) => {
                    TreeKind::HardLink {
                        target: first_name.unwrap_or_default(),
                    }
                }
                Node::File { content, .. } => TreeKind::File {
                    source: st.backing(layout, content),
                    size: attr.size,
                },
                Node::Dir { .. } => TreeKind::Dir,
                Node::Symlink { target } => TreeKind::Symlink {
                    target: target.clone(),
                },
            };
            TreeEntry {
                path: path.to_string(),
                mode: attr.mode,
                mtime,
                kind,
            }
        })
        .collect()
}
