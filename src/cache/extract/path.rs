//! Turning an archive entry's name (raw bytes, from a hostile archive) into a safe relative path.
//!
//! A name is a list of components that must each be a plain file name: no `..`, no NUL, no empty or `.`
//! component that means something (they are dropped), nothing longer than `NAME_MAX`, and no leading `/`.
//! The result is a `Vec` of components rather than a `Path`, so that callers walk it one component at a time
//! and can check each directory they pass through. Non-UTF-8 bytes are kept as they are (`OsStr`): Linux
//! file names are bytes.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Longest file name component Linux accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Longest relative path we create: with the cache directory in front it must stay under `PATH_MAX` (4096),
/// and 3072 leaves room for any sensible cache location.
const REL_PATH_MAX: usize = 3072;

/// A validated relative path inside an extracted tree: never empty (the tree root is not a `RelPath`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelPath {
    parts: Vec<OsString>,
}

impl RelPath {
    /// Parses an entry name. `Ok(None)` is the tree root itself (`./`, `.`); `Err` says why the name is refused.
    pub(crate) fn parse(name: &[u8]) -> Result<Option<RelPath>, &'static str> {
        if name.is_empty() {
            return Err("empty name");
        }
        if name.contains(&0) {
            return Err("NUL byte in name");
        }
        if name.starts_with(b"/") {
            return Err("absolute path");
        }
        if name.len() > REL_PATH_MAX {
            return Err("path too long");
        }
        let mut parts = Vec::new();
        for part in name.split(|&b| b == b'/') {
            match part {
                b"" | b"." => continue,
                b".." => return Err("`..` component"),
                p if p.len() > NAME_MAX => return Err("name component longer than 255 bytes"),
                p => parts.push(OsStr::from_bytes(p).to_os_string()),
            }
        }
        Ok((!parts.is_empty()).then_some(RelPath { parts }))
    }

    pub(crate) fn parts(&self) -> &[OsString] {
        &self.parts
    }

    /// The parent directory's components (empty for an entry at the top of the tree).
    pub(crate) fn parent_parts(&self) -> &[OsString] {
        self.parts.split_last().map_or(&[], |(_, parent)| parent)
    }

    /// The last component.
    pub(crate) fn file_name(&self) -> &OsStr {
        self.parts
            .last()
            .map_or(OsStr::new(""), |name| name.as_os_str())
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let joined: PathBuf = self.parts.iter().collect();
        write!(f, "{}", joined.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(name: &[u8]) -> Vec<String> {
        RelPath::parse(name)
            .unwrap()
            .unwrap()
            .parts()
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn normal_names_are_split_into_components() {
        assert_eq!(parts(b"data/input.csv"), ["data", "input.csv"]);
        assert_eq!(parts(b"./a//b/./c/"), ["a", "b", "c"]);
        assert_eq!(RelPath::parse(b"./").unwrap(), None);
        assert_eq!(RelPath::parse(b".").unwrap(), None);
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            &b"../x"[..],
            b"a/../../x",
            b"/etc/passwd",
            b"",
            b"a\0b",
            b"..",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?}");
        }
        let long = vec![b'x'; 256];
        assert!(RelPath::parse(&long).is_err());
        assert!(RelPath::parse(&[b'x'; 255]).is_ok());
    }

    #[test]
    fn non_utf8_names_keep_their_bytes() {
        let p = RelPath::parse(b"caf\xe9.txt").unwrap().unwrap();
        assert_eq!(p.parts()[0].as_bytes(), b"caf\xe9.txt");
    }
}
