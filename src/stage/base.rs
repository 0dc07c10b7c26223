//! The tree of a version as the stage reads it: its extracted archive in the cache (downloaded if missing), and
//! the entries in it (files, directories and symlinks).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::StageError;
use super::overlay::{Content, Node, Tree};
use super::status::short;
use crate::api::Vm0Api;
use crate::api::models::StorageKind;
use crate::cache::{ArchiveCache, ArchiveInfo, version_source};

/// The extracted tree of `version` of the volume `storage_id` (`label`: `volumes/<name>`) in the archive cache,
/// downloaded if missing. A version without files has no archive (CONTRACT.md 6.3): that is `ENOENT`.
pub(super) fn version_tree(
    cache: &Arc<ArchiveCache>,
    api: &Arc<dyn Vm0Api>,
    storage_id: &str,
    label: &str,
    version: &str,
) -> Result<PathBuf, StageError> {
    let label = format!("{label}@{}", short(version));
    let info = ArchiveInfo {
        label: label.clone(),
        size: None,
    };
    let source = version_source(api.clone(), StorageKind::Volume, storage_id, version);
    cache
        .tree(version, &info, source)
        .map_err(|e| StageError::new(e.errno(), format!("{label}: {e}")))
}

/// The entries of an extracted base tree: files and directories with their modes (a cached entry has no write
/// bits, the volume shows the owner's), and symlinks, so that a version made on the push flow keeps them all once
/// its volume has changes, and hard links (the names of one extracted file read as one file, its first name's).
/// Names and targets that are not UTF-8 are left out (the stage names entries by text).
pub(super) fn walk_base(root: &Path) -> io::Result<Tree> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut entries = Vec::new();
    // A file with several names in the tree (a hard link of the version's archive) is read as one: its first name.
    let mut first_names: std::collections::HashMap<(u64, u64), String> = Default::default();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            let path = rel.join(&name);
            let meta = entry.metadata()?;
            let mode = (meta.permissions().mode() & 0o7777) | 0o200;
            let node = if meta.is_dir() {
                dirs.push(path.clone());
                Node::Dir { mode }
            } else if meta.is_file() {
                let mut rel = path.to_string_lossy().into_owned();
                if meta.nlink() > 1 {
                    rel = first_names
                        .entry((meta.dev(), meta.ino()))
                        .or_insert(rel)
                        .clone();
                }
                let content = Content::Base(rel);
                Node::File {
                    content,
                    mode,
                    mtime: None,
                }
            } else if meta.file_type().is_symlink() {
                match std::fs::read_link(root.join(&path))?
                    .into_os_string()
                    .into_string()
                {
                    Ok(target) => Node::Symlink { target },
                    Err(_) => continue,
                }
            } else {
                continue;
            };
            entries.push((path.to_string_lossy().into_owned(), node));
        }
    }
    Ok(Tree::from_base(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_of_one_extracted_file_are_read_as_one_file() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        std::fs::write(root.path().join("a"), b"x").unwrap();
        std::fs::hard_link(root.path().join("a"), root.path().join("d/b")).unwrap();
        std::fs::write(root.path().join("c"), b"x").unwrap();
        let tree = walk_base(root.path()).unwrap();
        let mut names = tree.names_of("d/b");
        names.sort();
        assert_eq!(names, ["a", "d/b"]);
        assert_eq!(tree.names_of("c"), ["c"]);
    }
}
