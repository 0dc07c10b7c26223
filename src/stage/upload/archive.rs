//! The archive the push flow sends: a gzip'd POSIX tar of the volume's tree as it is (CONTRACT.md 6.4, 7.2),
//! written by the `tar` crate. It takes a plain list of entries, so what a version may hold can grow here alone.
//!
//! Each entry keeps its mode (all of 0o7777), its modification time, and its kind: regular files, directories
//! (empty ones included, which is why every directory has an entry of its own), symlinks with their targets, and
//! hard links (a second name of a file is a tar hard link to the file's first name in the list, never its bytes
//! again).
//! Headers are ustar; a name or a target that does not fit ustar's fields gets a PAX extended header (`path`,
//! `linkpath`) before it, never a GNU extension. The order is the list's (the stage gives its tree in path order,
//! parents first) and nothing in a header depends on the machine (owner 0, no user or group names), so the same
//! tree makes the same archive.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{EntryType, Header};

/// One entry of the tree: its path in the version, mode, modification time and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub path: String,
    pub mode: u32,
    pub mtime: SystemTime,
    pub kind: TreeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeKind {
    /// A regular file: where its bytes are, and their size when they were hashed.
    File {
        source: PathBuf,
        size: u64,
    },
    Dir,
    Symlink {
        target: String,
    },
    /// A second name of the regular file at `target`, an earlier entry of the list.
    HardLink {
        target: String,
    },
}

/// A gzip'd tar of `entries` at `path`. A file whose size changed since it was hashed fails it (the publish tries
/// again). The file is not synced to disk: it is read back at once for its PUT and deleted after it, so the page
/// cache holds it for as long as it lives, and a crash loses nothing the next publish does not build again.
pub(super) fn write_archive(path: &Path, entries: &[TreeEntry]) -> io::Result<()> {
    let out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::fast()));
    for entry in entries {
        append(&mut tar, entry)?;
    }
    tar.into_inner()?.finish()?.flush()
}

fn append<W: Write>(tar: &mut tar::Builder<W>, entry: &TreeEntry) -> io::Result<()> {
    let mut header = Header::new_ustar();
    header.set_mode(entry.mode & 0o7777);
    header.set_mtime(
        entry
            .mtime
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_uid(0);
    header.set_gid(0);
    let mut pax: Vec<u8> = Vec::new();
    let (kind, size, link) = match &entry.kind {
        TreeKind::File { size, .. } => (EntryType::Regular, *size, None),
        TreeKind::Dir => (EntryType::Directory, 0, None),
        TreeKind::Symlink { target } => (EntryType::Symlink, 0, Some(target.as_str())),
        TreeKind::HardLink { target } => (EntryType::Link, 0, Some(target.as_str())),
    };
    header.set_entry_type(kind);
    header.set_size(size);
    let name = match kind {
        EntryType::Directory => format!("{}/", entry.path),
        _ => entry.path.clone(),
    };
    if header.set_path(&name).is_err() {
        pax.extend(pax_record("path", &name));
        set_raw_field(&mut header.as_ustar_mut(), Field::Name, &name);
    }
    if let Some(target) = link
        && header.set_link_name(target).is_err()
    {
        pax.extend(pax_record("linkpath", target));
        set_raw_field(&mut header.as_ustar_mut(), Field::Link, target);
    }
    if !pax.is_empty() {
        let mut extended = Header::new_ustar();
        extended.set_entry_type(EntryType::XHeader);
        extended.set_mode(0o644);
        extended.set_size(pax.len() as u64);
        set_raw_field(&mut extended.as_ustar_mut(), Field::Name, "PaxHeader");
        extended.set_cksum();
        tar.append(&extended, &pax[..])?;
    }
    header.set_cksum();
    match &entry.kind {
        TreeKind::File { source, size } => {
            let file = File::open(source)?;
            if file.metadata()?.len() != *size {
                return Err(io::Error::other(format!(
                    "{} changed while it was being published",
                    entry.path
                )));
            }
            tar.append(&header, file.take(*size))
        }
        _ => tar.append(&header, io::empty()),
    }
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}").into_bytes()
}

enum Field {
    Name,
    Link,
}

/// Puts as much of `value` as fits (on a character boundary) in a ustar field; the PAX record before the header
/// holds the whole of it.
fn set_raw_field(header: &mut Option<&mut tar::UstarHeader>, field: Field, value: &str) {
    let Some(ustar) = header else {
        return;
    };
    let slot: &mut [u8; 100] = match field {
        Field::Name => {
            ustar.prefix = [0; 155];
            &mut ustar.name
        }
        Field::Link => &mut ustar.linkname,
    };
    *slot = [0; 100];
    let mut end = value.len().min(99);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    slot[..end].copy_from_slice(&value.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn entries(dir: &Path) -> Vec<TreeEntry> {
        let script = dir.join("script");
        std::fs::write(&script, b"#!/bin/sh\n").unwrap();
        let long = format!("deep/{}/{}", "d".repeat(120), "f".repeat(60));
        std::fs::write(dir.join("long"), b"long").unwrap();
        let entry = |path: &str, mode, secs, kind| TreeEntry {
            path: path.to_string(),
            mode,
            mtime: at(secs),
            kind,
        };
        vec![
            entry("deep", 0o700, 5, TreeKind::Dir),
            entry(
                &long,
                0o4755,
                6,
                TreeKind::File {
                    source: dir.join("long"),
                    size: 4,
                },
            ),
            entry("empty", 0o750, 7, TreeKind::Dir),
            entry(
                "run.sh",
                0o755,
                1_000_000_000,
                TreeKind::File {
                    source: script,
                    size: 10,
                },
            ),
            entry("sub", 0o755, 8, TreeKind::Dir),
            entry(
                "sub/far",
                0o777,
                9,
                TreeKind::Symlink {
                    target: format!("../{long}"),
                },
            ),
            entry(
                "sub/up",
                0o777,
                10,
                TreeKind::Symlink {
                    target: "../run.sh".into(),
                },
            ),
        ]
    }

    /// An entry as read back: path, kind, mode, mtime, link, bytes.
    type ReadBack = (String, EntryType, u32, u64, Option<String>, Vec<u8>);

    /// What a tar reader (the `tar` crate, as the extractor) reads back.
    fn read_back(archive: &Path) -> Vec<ReadBack> {
        let gz = flate2::read::GzDecoder::new(File::open(archive).unwrap());
        let mut tar = tar::Archive::new(gz);
        let mut out = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let kind = header.entry_type();
            out.push((
                path,
                kind,
                header.mode().unwrap(),
                header.mtime().unwrap(),
                link,
                data,
            ));
        }
        out
    }

    #[test]
    fn the_tree_comes_back_with_modes_times_links_empty_dirs_and_long_names() {
        let tmp = tempfile::tempdir().unwrap();
        let list = entries(tmp.path());
        let archive = tmp.path().join("a.tar.gz");
        write_archive(&archive, &list).unwrap();
        let back = read_back(&archive);
        let long = &list[1].path;
        let expect: Vec<ReadBack> = vec![
            ("deep/".into(), EntryType::Directory, 0o700, 5, None, vec![]),
            (
                long.clone(),
                EntryType::Regular,
                0o4755,
                6,
                None,
                b"long".to_vec(),
            ),
            (
                "empty/".into(),
                EntryType::Directory,
                0o750,
                7,
                None,
                vec![],
            ),
            (
                "run.sh".into(),
                EntryType::Regular,
                0o755,
                1_000_000_000,
                None,
                b"#!/bin/sh\n".to_vec(),
            ),
            ("sub/".into(), EntryType::Directory, 0o755, 8, None, vec![]),
            (
                "sub/far".into(),
                EntryType::Symlink,
                0o777,
                9,
                Some(format!("../{long}")),
                vec![],
            ),
            (
                "sub/up".into(),
                EntryType::Symlink,
                0o777,
                10,
                Some("../run.sh".into()),
                vec![],
            ),
        ];
        assert_eq!(back, expect);
    }

    #[test]
    fn the_same_tree_makes_the_same_archive_with_no_gnu_extension() {
        let tmp = tempfile::tempdir().unwrap();
        let list = entries(tmp.path());
        let (a, b) = (tmp.path().join("a.tar.gz"), tmp.path().join("b.tar.gz"));
        write_archive(&a, &list).unwrap();
        write_archive(&b, &list).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(File::open(&a).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        let kinds: Vec<u8> = raw
            .chunks(512)
            .filter(|b| b[257..262] == *b"ustar")
            .map(|b| b[156])
            .collect();
        assert!(kinds.contains(&b'x'), "a PAX header for the long names");
        assert!(
            !kinds.contains(&b'L') && !kinds.contains(&b'K'),
            "no GNU long names: {kinds:?}"
        );
    }

    #[test]
    fn a_file_that_changed_size_since_it_was_hashed_fails_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let mut list = entries(tmp.path());
        list[3].kind = TreeKind::File {
            source: tmp.path().join("script"),
            size: 3,
        };
        let err = write_archive(&tmp.path().join("a.tar.gz"), &list).unwrap_err();
        assert!(err.to_string().contains("run.sh changed"), "{err}");
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("path", "a"), b"9 path=a\n");
        let long = pax_record("path", &"x".repeat(95));
        let text = String::from_utf8(long.clone()).unwrap();
        assert_eq!(
            text.split(' ').next().unwrap().parse::<usize>().unwrap(),
            long.len()
        );
    }

    #[test]
    fn a_second_name_is_a_tar_hard_link_that_unpacks_as_one_file() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = tmp.path().join("bytes");
        std::fs::write(&bytes, b"shared").unwrap();
        let entry = |path: &str, kind| TreeEntry {
            path: path.to_string(),
            mode: 0o640,
            mtime: at(3),
            kind,
        };
        let list = [
            entry(
                "a",
                TreeKind::File {
                    source: bytes,
                    size: 6,
                },
            ),
            entry("b", TreeKind::HardLink { target: "a".into() }),
        ];
        let archive = tmp.path().join("l.tar.gz");
        write_archive(&archive, &list).unwrap();
        let back = read_back(&archive);
        assert_eq!(
            (back[1].1, back[1].4.as_deref(), back[1].5.len()),
            (EntryType::Link, Some("a"), 0)
        );
        let out = tmp.path().join("out");
        let gz = flate2::read::GzDecoder::new(File::open(&archive).unwrap());
        tar::Archive::new(gz).unpack(&out).unwrap();
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (
            std::fs::metadata(out.join("a")).unwrap(),
            std::fs::metadata(out.join("b")).unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        assert_eq!(std::fs::read(out.join("b")).unwrap(), b"shared");
    }
}
