//! The archive the push flow sends: a gzip'd tar of the version's files, as the platform's CLI writes it
//! (CONTRACT.md 6.4). It takes a plain list of entries, so what a version may hold can grow here alone.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;

/// One file of the archive: its path in the version, where its bytes are, and their size when they were hashed.
pub(super) struct ArchiveEntry<'a> {
    pub path: &'a str,
    pub source: &'a Path,
    pub size: u64,
}

/// A gzip'd tar of `entries` at `path`: regular files, relative paths, mode 0644. A file whose size changed since
/// it was hashed fails it (the publish tries again).
pub(super) fn write_archive(path: &Path, entries: &[ArchiveEntry]) -> io::Result<()> {
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::fast()));
    for entry in entries {
        let source = File::open(entry.source)?;
        if source.metadata()?.len() != entry.size {
            return Err(io::Error::other(format!(
                "{} changed while it was being published",
                entry.path
            )));
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(entry.size);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        tar.append_data(&mut header, entry.path, source.take(entry.size))?;
    }
    let mut out = tar.into_inner()?.finish()?;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}
