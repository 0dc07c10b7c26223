//! Writing entries into a staging tree so that a hostile archive can never write outside it.
//!
//! Three rules make that hold without trusting any name: every path comes from a validated `RelPath` (plain
//! components only); parent directories are walked one component at a time with `symlink_metadata` and only real
//! directories are entered (a symlink or a file in the way makes the entry skipped); and files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, so a symlink planted by an earlier entry is never written through. Nothing else
//! writes into the staging directory while we do (it is private, 0700, and named randomly), so the checks cannot
//! be raced.
//!
//! Readers may be served entries of the staging tree before it is complete (`Reports::partial`), so a name never
//! shows a partial entry other than the one file being written, which is reported before and after: a new file,
//! directory or symlink is created at its name; one that takes the name of an earlier file or symlink (the last
//! one wins) is made at a scratch name beside the tree and renamed over it, in one step.
//!
//! Symlinks follow the one rule of `crate::symlinks`. One whose target only descends (no `..`) is kept whatever
//! the tree holds, so it is made at once; one that climbs is kept only if it resolves inside through real
//! directories, which depends on the entries still to come, so it is held back and judged in `finish`, against
//! the finished tree, with `lstat` one component at a time. A later entry of the same name replaces a held-back
//! link, as it would a made one. Until `finish`, no reader can be served a climbing link.
//!
//! A hard link whose target is a regular file already extracted becomes a second name of that file (`link(2)`,
//! one inode, no bytes written); entries are never written in place (a file replacing another is a new inode
//! renamed over it), so a later entry of the same name as either never changes the other.
//!
//! Modes: files keep their tar permission bits minus every write bit and minus setuid/setgid/sticky, and are
//! always owner-readable; directories keep their read and search bits and are always owner-`rwx`, so that
//! eviction (`remove_dir_all`) can delete their contents (a directory only implied by a path is 0755). Times: a
//! file's and a symlink's are set when it is made, a directory's at the end, after its contents are written.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Reports;
use super::path::RelPath;
use crate::cache::error::Failure;
use crate::symlinks::symlink_kept;

/// Copy buffer size: large writes keep the extraction of big files cheap in syscalls.
const COPY_BUF: usize = 1 << 20;

/// How a file entry's bytes are read, and how a read failure is classified.
pub(crate) struct Source<'a> {
    pub reader: &'a mut dyn Read,
    /// The size the archive announced; fewer bytes means the stream was cut short.
    pub expected: Option<u64>,
    pub on_error: &'a dyn Fn(io::Error) -> Failure,
}

/// Writes entries under `root`, enforcing the byte limit on what it actually writes.
pub(crate) struct TreeWriter {
    root: PathBuf,
    /// Where an entry that replaces an earlier one of the same name is made (outside the tree), before it is
    /// renamed over it.
    scratch: PathBuf,
    archive: String,
    max_bytes: u64,
    written: u64,
    files: u64,
    buf: Vec<u8>,
    /// Directories with an entry of their own: their mode and time, applied in `finish`.
    dir_times: Vec<(PathBuf, u32, SystemTime)>,
    /// Symlinks whose target climbs with `..`, by name, judged in `finish`: the entry's name and the target.
    held_back: HashMap<Vec<OsString>, HeldBack>,
    /// Told of every byte written and every entry complete.
    reports: Reports,
}

/// A symlink held back until `finish`.
struct HeldBack {
    name: Vec<u8>,
    rel: RelPath,
    target: Vec<u8>,
    mtime: SystemTime,
}

/// Where a new non-directory is made: at its name, or at `scratch` when an earlier entry holds the name.
struct Leaf {
    path: PathBuf,
    scratch: Option<PathBuf>,
}

impl Leaf {
    fn make_at(&self) -> &Path {
        self.scratch.as_deref().unwrap_or(&self.path)
    }

    /// Puts an entry made at the scratch name in place (a no-op for one made at its name).
    fn put_in_place(&self) -> io::Result<()> {
        match &self.scratch {
            Some(scratch) => fs::rename(scratch, &self.path),
            None => Ok(()),
        }
    }
}

impl TreeWriter {
    pub(crate) fn new(
        root: PathBuf,
        scratch: PathBuf,
        archive: &str,
        max_bytes: u64,
    ) -> TreeWriter {
        TreeWriter {
            root,
            scratch,
            archive: archive.to_string(),
            max_bytes,
            written: 0,
            files: 0,
            buf: vec![0; COPY_BUF],
            dir_times: Vec::new(),
            held_back: HashMap::new(),
            reports: Reports::default(),
        }
    }

    /// Tells `reports` of every byte written and every entry complete.
    pub(crate) fn with_reports(mut self, reports: Reports) -> TreeWriter {
        self.reports = reports;
        self
    }

    /// Bytes of regular file content written, and how many files.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.written, self.files)
    }

    /// Logs that an entry was skipped. The name is shown escaped (`{:?}`) so it cannot forge log lines.
    pub(crate) fn skip(&self, entry: &[u8], reason: &str) {
        tracing::warn!(
            archive = %self.archive,
            entry = ?String::from_utf8_lossy(entry),
            "skipped archive entry: {reason}"
        );
    }

    /// A regular file: last one wins over an earlier file or symlink of the same name; a directory wins over it.
    pub(crate) fn file(
        &mut self,
        name: &[u8],
        rel: &RelPath,
        mode: u32,
        mtime: SystemTime,
        src: Source<'_>,
    ) -> Result<(), Failure> {
        let Some(leaf) = self.prepare_leaf(name, rel)? else {
            return Ok(());
        };
        if let Some(partial) = &self.reports.partial {
            partial.writing(rel.parts().iter().collect());
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(leaf.make_at())
            .map_err(|e| Failure::local(format!("creating {rel}"), e))?;
        let copied = self.copy(&mut out, rel, src.reader, src.on_error)?;
        if let Some(expected) = src.expected.filter(|&n| copied < n) {
            return Err(Failure::Truncated(format!(
                "{rel} has {copied} of its {expected} bytes"
            )));
        }
        let finish = out
            .set_permissions(Permissions::from_mode(file_mode(mode)))
            .and_then(|()| out.set_modified(mtime));
        finish.map_err(|e| Failure::local(format!("setting the mode and time of {rel}"), e))?;
        drop(out);
        leaf.put_in_place()
            .map_err(|e| Failure::local(format!("replacing {rel}"), e))?;
        self.files += 1;
        self.made(rel.parts());
        Ok(())
    }

    /// A directory (and its parents). Its mode and mtime are applied at the end, after its contents are written.
    pub(crate) fn dir(
        &mut self,
        name: &[u8],
        rel: &RelPath,
        mode: u32,
        mtime: SystemTime,
    ) -> Result<(), Failure> {
        self.held_back.remove(rel.parts());
        match self.make_dirs(rel.parts())? {
            Some(path) => self.dir_times.push((path, mode, mtime)),
            None => self.skip(name, "a file of that name is already in the way"),
        }
        Ok(())
    }

    /// A symlink: made at once when its target only descends, held back until `finish` when it climbs (see the
    /// module's doc), skipped when `crate::symlinks` refuses it whatever the tree holds.
    pub(crate) fn symlink(
        &mut self,
        name: &[u8],
        rel: &RelPath,
        target: &[u8],
        mtime: SystemTime,
    ) -> Result<(), Failure> {
        let link: PathBuf = rel.parts().iter().collect();
        if !symlink_kept(&link, target, |_| true) {
            self.skip(
                name,
                "symlink target is absolute, leaves the tree, or is invalid",
            );
            return Ok(());
        }
        if target.split(|&b| b == b'/').any(|part| part == b"..") {
            if self.make_dirs(rel.parent_parts())?.is_none() {
                self.skip(name, "a parent directory is not a directory");
                return Ok(());
            }
            self.held_back.insert(
                rel.parts().to_vec(),
                HeldBack {
                    name: name.to_vec(),
                    rel: rel.clone(),
                    target: target.to_vec(),
                    mtime,
                },
            );
            return Ok(());
        }
        self.make_symlink(name, rel, target, mtime)
    }

    fn make_symlink(
        &mut self,
        name: &[u8],
        rel: &RelPath,
        target: &[u8],
        mtime: SystemTime,
    ) -> Result<(), Failure> {
        use std::os::unix::ffi::OsStrExt;
        let Some(leaf) = self.prepare_leaf(name, rel)? else {
            return Ok(());
        };
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), leaf.make_at())
            .and_then(|()| leaf.put_in_place())
            .and_then(|()| set_symlink_mtime(&leaf.path, mtime))
            .map_err(|e| Failure::local(format!("creating the symlink {rel}"), e))?;
        self.made(rel.parts());
        Ok(())
    }

    /// A hard link: a second name of its target, when the target is a regular file already extracted here.
    pub(crate) fn hardlink(
        &mut self,
        name: &[u8],
        rel: &RelPath,
        target: &RelPath,
    ) -> Result<(), Failure> {
        if rel == target {
            self.skip(name, "hardlink to itself");
            return Ok(());
        }
        let Some(target_path) = self.existing_file(target) else {
            self.skip(name, "hardlink target is not a file extracted before it");
            return Ok(());
        };
        let Some(leaf) = self.prepare_leaf(name, rel)? else {
            return Ok(());
        };
        if leaf.scratch.is_some() && same_inode(&leaf.path, &target_path) {
            return Ok(()); // already a name of that file: `rename` would leave the scratch name behind
        }
        fs::hard_link(&target_path, leaf.make_at())
            .and_then(|()| leaf.put_in_place())
            .map_err(|e| Failure::local(format!("linking {rel} to {target}"), e))?;
        self.files += 1;
        self.made(rel.parts());
        Ok(())
    }

    /// Judges the held-back symlinks against the finished tree (making the ones kept), then applies directory
    /// mtimes.
    pub(crate) fn finish(&mut self) -> Result<(), Failure> {
        let mut held_back: Vec<HeldBack> =
            std::mem::take(&mut self.held_back).into_values().collect();
        held_back.sort_by(|a, b| a.rel.parts().cmp(b.rel.parts()));
        for link in held_back {
            let path: PathBuf = link.rel.parts().iter().collect();
            let root = &self.root;
            let is_real_dir =
                |p: &Path| fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.is_dir());
            if symlink_kept(&path, &link.target, is_real_dir) {
                self.make_symlink(&link.name, &link.rel, &link.target, link.mtime)?;
            } else {
                self.skip(
                    &link.name,
                    "symlink target leaves the tree through a symlink or a missing directory",
                );
            }
        }
        self.apply_dir_times()
    }

    /// Applies directory modes and mtimes (deepest last written first does not matter: a child's time never moves
    /// its parent's).
    fn apply_dir_times(&mut self) -> Result<(), Failure> {
        for (path, mode, mtime) in self.dir_times.drain(..).rev() {
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
                .open(&path);
            // A directory replaced later in the archive is not fatal; its time is cosmetic.
            if let Ok(dir) = dir {
                dir.set_permissions(Permissions::from_mode(dir_mode(mode)))
                    .and_then(|()| dir.set_modified(mtime))
                    .map_err(|e| {
                        Failure::local(
                            format!("setting the mode and time of {}", path.display()),
                            e,
                        )
                    })?;
            }
        }
        Ok(())
    }

    /// Creates the parents of `rel` and says where to make a new non-directory for it: at its name, or at the
    /// scratch name when an earlier file or symlink holds it. `None`: skipped (and logged).
    fn prepare_leaf(&mut self, name: &[u8], rel: &RelPath) -> Result<Option<Leaf>, Failure> {
        self.held_back.remove(rel.parts());
        let Some(parent) = self.make_dirs(rel.parent_parts())? else {
            self.skip(name, "a parent directory is not a directory");
            return Ok(None);
        };
        let path = parent.join(rel.file_name());
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                self.skip(name, "a directory of that name came first");
                Ok(None)
            }
            Ok(_) => Ok(Some(Leaf {
                path,
                scratch: Some(self.scratch.clone()),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(Leaf {
                path,
                scratch: None,
            })),
            Err(e) => Err(Failure::local(format!("inspecting {rel}"), e)),
        }
    }

    /// Walks `parts` from the root, creating missing directories and entering only real ones.
    /// `None` when something that is not a directory (a file, a symlink) is in the way.
    fn make_dirs(&self, parts: &[OsString]) -> Result<Option<PathBuf>, Failure> {
        let mut path = self.root.clone();
        for (depth, part) in parts.iter().enumerate() {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    DirBuilder::new().mode(0o755).create(&path).map_err(|e| {
                        Failure::local(format!("creating the directory {}", path.display()), e)
                    })?;
                    self.made(&parts[..=depth]);
                }
                Err(e) => return Err(Failure::local(format!("inspecting {}", path.display()), e)),
            }
        }
        Ok(Some(path))
    }

    /// Tells the partial record that the entry of these components is complete.
    fn made(&self, parts: &[OsString]) {
        if let Some(partial) = &self.reports.partial {
            partial.made(&parts.iter().collect::<PathBuf>());
        }
    }

    /// The path of `rel` if it is a regular file reached through real directories only.
    fn existing_file(&self, rel: &RelPath) -> Option<PathBuf> {
        let mut path = self.root.clone();
        for part in rel.parent_parts() {
            path.push(part);
            if !fs::symlink_metadata(&path).ok()?.is_dir() {
                return None;
            }
        }
        path.push(rel.file_name());
        fs::symlink_metadata(&path).ok()?.is_file().then_some(path)
    }

    /// Copies `reader` into `out` with the big buffer, stopping at the byte limit. Returns the bytes copied.
    fn copy(
        &mut self,
        out: &mut File,
        rel: &RelPath,
        reader: &mut dyn Read,
        on_error: &dyn Fn(io::Error) -> Failure,
    ) -> Result<u64, Failure> {
        let mut copied = 0u64;
        loop {
            let n = match reader.read(&mut self.buf) {
                Ok(0) => return Ok(copied),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(on_error(e)),
            };
            if let Some(partial) = &self.reports.partial {
                if let Some(progress) = &self.reports.progress {
                    progress.set_waiting(partial.waiting());
                }
                if partial.abandoned() {
                    return Err(Failure::Unwanted);
                }
            }
            if self.written.saturating_add(n as u64) > self.max_bytes {
                return Err(Failure::TooLarge(self.max_bytes));
            }
            out.write_all(&self.buf[..n])
                .map_err(|e| Failure::local(format!("writing {rel}"), e))?;
            self.written += n as u64;
            copied += n as u64;
            if let Some(progress) = &self.reports.progress {
                progress.add(n as u64);
            }
        }
    }
}

/// Whether two paths name one inode (neither followed if a symlink).
fn same_inode(a: &Path, b: &Path) -> bool {
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// The mode an extracted directory gets: its read and search bits, and always owner-`rwx`.
fn dir_mode(tar_mode: u32) -> u32 {
    (tar_mode & 0o555) | 0o700
}

/// Sets a symlink's own modification time (`utimensat` with `AT_SYMLINK_NOFOLLOW`; std has no `lutimes`).
fn set_symlink_mtime(path: &Path, mtime: SystemTime) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
    let at = libc::timespec {
        tv_sec: libc::time_t::try_from(since.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: since.subsec_nanos().into(),
    };
    let times = [at, at];
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `path` is a NUL-terminated string and `times` two timespecs, both alive for the call.
    let done = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The mode an extracted file gets: no write bits, no setuid/setgid/sticky, always owner-readable.
pub(crate) fn file_mode(tar_mode: u32) -> u32 {
    (tar_mode & 0o555) | 0o400
}

/// A tar header's mtime (Unix seconds) as a `SystemTime`; an absurd value (hostile or corrupt) becomes the epoch
/// rather than an overflow.
pub(crate) fn mtime_from_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(name: &str) -> RelPath {
        RelPath::parse(name.as_bytes()).unwrap().unwrap()
    }

    fn put(w: &mut TreeWriter, name: &str, data: &[u8]) -> Result<(), Failure> {
        let on_error = |e| Failure::local("test", e);
        let src = Source {
            reader: &mut &data[..],
            expected: Some(data.len() as u64),
            on_error: &on_error,
        };
        w.file(name.as_bytes(), &rel(name), 0o644, UNIX_EPOCH, src)
    }

    /// Even with symlinks to the outside already in the tree (which `extract` never creates), nothing is written
    /// through them: parents must be real directories and leaves are replaced, not followed.
    #[test]
    fn planted_symlinks_are_never_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, outside) = (tmp.path().join("tree"), tmp.path().join("outside"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), b"victim").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dir-link")).unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("file-link")).unwrap();
        std::os::unix::fs::symlink(outside.join("new"), root.join("dangling")).unwrap();

        let mut w = TreeWriter::new(root.clone(), tmp.path().join("scratch"), "test", 1 << 20);
        put(&mut w, "dir-link/evil", b"evil").unwrap();
        put(&mut w, "dir-link/sub/evil", b"evil").unwrap();
        put(&mut w, "file-link", b"evil").unwrap();
        put(&mut w, "dangling", b"evil").unwrap();
        w.dir(b"dir-link/d", &rel("dir-link/d"), 0o755, UNIX_EPOCH)
            .unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("again")).unwrap();
        w.hardlink(b"copy", &rel("copy"), &rel("again")).unwrap();
        w.finish().unwrap();

        let mut names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["victim"]);
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"victim");
        assert!(
            fs::symlink_metadata(root.join("file-link"))
                .unwrap()
                .is_file()
        );
        assert!(
            fs::symlink_metadata(root.join("dangling"))
                .unwrap()
                .is_file()
        );
        assert!(!root.join("copy").exists());
        assert_eq!(w.totals(), (8, 2));
    }

    #[test]
    fn modes_drop_write_and_special_bits_but_stay_owner_readable() {
        assert_eq!(file_mode(0o644), 0o444);
        assert_eq!(file_mode(0o4755), 0o555);
        assert_eq!(file_mode(0o1777), 0o555);
        assert_eq!(file_mode(0o000), 0o400);
        assert_eq!(file_mode(0o222), 0o400);
    }
}
