//! The one rule for which symlinks a version holds, shared by the stage (which refuses the others with `EPERM`)
//! and the cache's extractor (which skips them), so that a link published from a volume is the link every reader
//! gets back.
//!
//! A link is kept when its target is relative and resolves inside the version's root through real directories
//! only. Resolution starts at the link's own directory and is followed component by component: a name is
//! entered, a `..` climbs one level and may never climb above the root, and a `..` is allowed only where every
//! name entered so far is a real directory of the tree. That last clause is what makes the rule hold against
//! chains: `d/l1 -> ..` and `d/e/l2 -> ../l1/..` each stay inside when read as text, yet `l2` resolves above the
//! root once the kernel follows `l1`. Through real directories, the kernel's resolution and the text's are the
//! same walk, so the text's answer is the true one. A name that is not there yet counts as "not a real
//! directory", so a link cannot be kept on the promise of a directory that may later be a symlink.
//!
//! The rule asks the caller about the tree (`is_real_dir`, given a path relative to the root) rather than reading
//! a disk itself: the stage answers from its tree, the extractor with `lstat` on the extracted tree, after the
//! last entry, when nothing can change under it any more. It is asked only about paths whose every prefix it has
//! already seen to be a real directory, so an `lstat` of the whole path checks one component at a time.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest file name component Linux accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Longest target kept: a tree's relative paths stay under 3072 bytes (see the extractor), and so do its links.
const TARGET_MAX: usize = 3072;

/// Whether the symlink at `link` (a path relative to the root, its last component the link's name) with the
/// target `target` is kept: see the module's doc. `is_real_dir(p)` says whether `p` (relative to the root) is a
/// directory of the tree reached without following a symlink.
pub(crate) fn symlink_kept(
    link: &Path,
    target: &[u8],
    mut is_real_dir: impl FnMut(&Path) -> bool,
) -> bool {
    if target.is_empty()
        || target.contains(&0)
        || target.starts_with(b"/")
        || target.len() > TARGET_MAX
    {
        return false;
    }
    let mut at: PathBuf = link.parent().map(Path::to_path_buf).unwrap_or_default();
    let parts: Vec<&[u8]> = target
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
    // Every name entered so far is a real directory (the link's own directory is one: it holds the link).
    let mut through_real_dirs = true;
    for (i, part) in parts.iter().enumerate() {
        if *part == b".." {
            if !through_real_dirs || !at.pop() {
                return false;
            }
            continue;
        }
        if part.len() > NAME_MAX {
            return false;
        }
        at.push(OsStr::from_bytes(part));
        let more = i + 1 < parts.len();
        if more && through_real_dirs && !is_real_dir(&at) {
            through_real_dirs = false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kept` against a tree of real directories `dirs`; every other name is a file, a symlink or missing.
    fn kept(dirs: &[&str], link: &str, target: &str) -> bool {
        symlink_kept(Path::new(link), target.as_bytes(), |p| {
            dirs.iter().any(|d| Path::new(d) == p)
        })
    }

    #[test]
    fn relative_targets_inside_the_root_are_kept() {
        assert!(kept(&[], "link", "file.txt"));
        assert!(kept(&["sub"], "sub/up", "../run.sh"));
        assert!(kept(&["a", "a/b"], "a/b/link", "../../c/d"));
        assert!(kept(&["a", "c"], "a/link", "../c/../d"));
        assert!(kept(&["sub"], "link", "./sub/./x/"));
        assert!(kept(&[], "link", "."));
        assert!(kept(&["sub"], "sub/link", ".."));
    }

    #[test]
    fn absolute_or_climbing_targets_are_refused() {
        assert!(!kept(&[], "link", "/etc/passwd"));
        assert!(!kept(&[], "link", "../outside"));
        assert!(!kept(&[], "link", ".."));
        assert!(!kept(&["a"], "a/link", "../../x"));
        assert!(!kept(&["sub"], "link", "sub/../../x"));
        assert!(!kept(&[], "link", ""));
        assert!(!kept(&[], "link", "a\0b"));
        assert!(!kept(&[], "link", &"x".repeat(256)));
        assert!(!kept(&[], "link", &"x/".repeat(2000)));
    }

    /// `d/l1 -> ..` and `d/e/l2 -> ../l1/..`: `l2` reads as inside, but the kernel follows `l1` to the root and
    /// its `..` leaves it. A `..` after anything but real directories is refused, whatever it is.
    #[test]
    fn a_dot_dot_after_a_symlink_a_file_or_a_missing_name_is_refused() {
        let dirs = ["d", "d/e"];
        assert!(kept(&dirs, "d/l1", ".."));
        assert!(!kept(&dirs, "d/e/l2", "../l1/.."));
        assert!(!kept(&dirs, "d/e/l3", "../l1/x/.."));
        assert!(!kept(&dirs, "x", "missing/../y"));
        // Through a symlink without climbing afterwards: it descends from where a kept link leads.
        assert!(kept(&dirs, "d/e/l4", "../l1/file"));
    }

    #[test]
    fn only_names_followed_by_more_components_are_asked_about() {
        let mut asked = Vec::new();
        let kept = symlink_kept(Path::new("a/link"), b"../b/c/../d", |p| {
            asked.push(p.to_path_buf());
            true
        });
        assert!(kept);
        assert_eq!(asked, [PathBuf::from("b"), PathBuf::from("b/c")]);
    }
}
