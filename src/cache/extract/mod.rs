//! One download attempt: network bytes → gunzip → untar → files, in a single streaming pass.
//!
//! Nothing is held in memory beyond a 1 MiB copy buffer and one entry's headers. The stream is wrapped twice so
//! that a failure can be classified after the fact, because `flate2` and `tar` turn every problem into a plain
//! `io::Error`: `SourceReader` (around the network reader) remembers whether the network failed, and
//! `TarReader` (between gunzip and untar) remembers whether the decompressed stream ended, and refuses to let
//! the headers between two entries (PAX records, GNU long names, which `tar` reads into memory) exceed
//! `HEADER_BUDGET`. Network failures and early ends are retryable; anything else is a corrupt archive.
//!
//! Limits: `max_entries` counts every entry; `max_total_bytes` bounds both the sum of the sizes the headers
//! announce (checked before an entry's data is read, so a gzip bomb stops before it is inflated, even when the
//! entry would be skipped) and the bytes actually written (a hard link writes none: it is a second name).
//!
//! Each entry is reported to `Reports::partial` as soon as it is complete, so a reader may be served it before
//! the stream has ended and gzip has checked its CRC (the trade-off is described in the cache module's doc).

mod path;
mod write;

use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::api::{Download, DownloadFile};
use crate::cache::ExtractLimits;
use crate::cache::error::Failure;
use crate::cache::flight::Partial;
use crate::cache::progress::Transfer;
use path::RelPath;
pub(crate) use write::file_mode;
use write::{Source, TreeWriter, mtime_from_secs};

/// Most bytes of headers (PAX records, long names, padding) allowed between two entries, and after the last one.
/// Real archives use a few KiB; the cap keeps a hostile PAX header from being read into memory whole.
const HEADER_BUDGET: u64 = 1 << 20;

/// What was extracted: bytes of file content written and number of regular files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extracted {
    pub bytes: u64,
    pub files: u64,
}

/// Who is told how extraction goes: `progress` of every byte written (for `vm0fs status`), `partial` of every
/// entry complete (for readers waiting for one entry).
#[derive(Default)]
pub(crate) struct Reports {
    pub progress: Option<Arc<Transfer>>,
    pub partial: Option<Partial>,
}

/// Extracts `download` into the (empty, private) directory `tree`; `scratch` is a free name beside it, on the
/// same file system.
pub(crate) fn extract(
    download: Download,
    tree: &Path,
    scratch: &Path,
    archive: &str,
    limits: &ExtractLimits,
    reports: Reports,
) -> Result<Extracted, Failure> {
    let writer = TreeWriter::new(
        tree.to_path_buf(),
        scratch.to_path_buf(),
        archive,
        limits.max_total_bytes,
    );
    let mut writer = writer.with_reports(reports);
    match download {
        Download::TarGz(reader) => extract_tar_gz(reader, &mut writer, limits)?,
        Download::Files(files) => extract_files(files, &mut writer, limits)?,
    }
    writer.finish()?;
    let (bytes, files) = writer.totals();
    Ok(Extracted { bytes, files })
}

/// Shared between the stream wrappers and the entry loop (all on one thread).
#[derive(Default)]
struct StreamState {
    network_failed: Cell<bool>,
    tar_eof: Cell<bool>,
    headers_too_big: Cell<bool>,
    /// Position in the decompressed tar stream.
    pos: Cell<u64>,
    /// The decompressed stream may not be read past this position.
    budget_end: Cell<u64>,
}

impl StreamState {
    /// Turns an error from gunzip/untar into a `Failure`, using what the wrappers saw.
    fn classify(&self, e: io::Error) -> Failure {
        if self.network_failed.get() {
            Failure::Transport(e)
        } else if self.headers_too_big.get() {
            Failure::Corrupt(format!(
                "more than {HEADER_BUDGET} bytes of tar headers for one entry"
            ))
        } else if e.kind() == io::ErrorKind::UnexpectedEof || self.tar_eof.get() {
            Failure::Truncated(e.to_string())
        } else {
            Failure::Corrupt(e.to_string())
        }
    }
}

/// The network reader, remembering whether it failed.
struct SourceReader {
    inner: Box<dyn Read + Send>,
    state: Rc<StreamState>,
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        if matches!(&result, Err(e) if e.kind() != io::ErrorKind::Interrupted) {
            self.state.network_failed.set(true);
        }
        result
    }
}

/// The decompressed stream as `tar` reads it: tracks the position, the end, and the header budget.
struct TarReader<R> {
    inner: R,
    state: Rc<StreamState>,
}

impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let state = &self.state;
        let room = state.budget_end.get().saturating_sub(state.pos.get());
        if room == 0 && !buf.is_empty() {
            state.headers_too_big.set(true);
            return Err(io::Error::other("tar headers exceed the header budget"));
        }
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        if n == 0 && len > 0 {
            state.tar_eof.set(true);
        }
        state.pos.set(state.pos.get() + n as u64);
        Ok(n)
    }
}

fn extract_tar_gz(
    reader: Box<dyn Read + Send>,
    writer: &mut TreeWriter,
    limits: &ExtractLimits,
) -> Result<(), Failure> {
    let state = Rc::new(StreamState::default());
    state.budget_end.set(HEADER_BUDGET);
    let source = SourceReader {
        inner: reader,
        state: state.clone(),
    };
    let tar_reader = TarReader {
        inner: MultiGzDecoder::new(source),
        state: state.clone(),
    };
    let mut archive = tar::Archive::new(tar_reader);
    let mut counter = Counter::new(limits);
    let entries = archive.entries().map_err(|e| state.classify(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| state.classify(e))?;
        counter.add(entry.size())?;
        let data_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
        state.budget_end.set(data_end.saturating_add(HEADER_BUDGET));
        tar_entry(&mut entry, writer, &state)?;
    }
    drain_trailer(archive.into_inner(), &state)
}

/// Reads what follows the end-of-archive blocks (padding, the gzip trailer) so that gzip verifies its CRC and
/// a stream cut after the last entry is still noticed. At most `HEADER_BUDGET` more bytes are accepted.
fn drain_trailer<R: Read>(mut rest: TarReader<R>, state: &StreamState) -> Result<(), Failure> {
    state
        .budget_end
        .set(state.pos.get().saturating_add(HEADER_BUDGET));
    io::copy(&mut rest, &mut io::sink()).map_err(|e| {
        if state.headers_too_big.get() {
            Failure::Corrupt(format!(
                "more than {HEADER_BUDGET} bytes after the end of the tar archive"
            ))
        } else {
            state.classify(e)
        }
    })?;
    Ok(())
}

/// Writes (or skips, with a warning) one tar entry.
fn tar_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    writer: &mut TreeWriter,
    state: &StreamState,
) -> Result<(), Failure> {
    let name = entry.path_bytes().into_owned();
    let mut kind = entry.header().entry_type();
    if kind == EntryType::Regular && name.ends_with(b"/") {
        kind = EntryType::Directory; // pre-POSIX tars mark directories only by the trailing slash
    }
    if kind == EntryType::XGlobalHeader {
        return Ok(()); // pax global header (e.g. `git archive`'s comment): metadata only
    }
    let rel = match RelPath::parse(&name) {
        Ok(Some(rel)) => rel,
        Ok(None) if kind == EntryType::Directory => return Ok(()), // `./`: the tree root itself
        Ok(None) => {
            writer.skip(&name, "empty name");
            return Ok(());
        }
        Err(reason) => {
            writer.skip(&name, reason);
            return Ok(());
        }
    };
    let mode = entry.header().mode().unwrap_or(0o644);
    let mtime = mtime_from_secs(entry.header().mtime().unwrap_or(0));
    let link = entry.link_name_bytes().map(|l| l.into_owned());
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            let expected = entry.size();
            let on_error = |e| state.classify(e);
            let src = Source {
                reader: entry,
                expected: Some(expected),
                on_error: &on_error,
            };
            writer.file(&name, &rel, mode, mtime, src)
        }
        EntryType::Directory => writer.dir(&name, &rel, mode, mtime),
        EntryType::Symlink => match link {
            Some(target) => writer.symlink(&name, &rel, &target, mtime),
            None => {
                writer.skip(&name, "symlink without a target");
                Ok(())
            }
        },
        EntryType::Link => match link.as_deref().map(RelPath::parse) {
            Some(Ok(Some(target))) => writer.hardlink(&name, &rel, &target),
            _ => {
                writer.skip(&name, "hardlink target is outside the archive or invalid");
                Ok(())
            }
        },
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            writer.skip(&name, "device nodes and FIFOs are not extracted");
            Ok(())
        }
        _ => {
            writer.skip(&name, "unsupported entry type");
            Ok(())
        }
    }
}

/// The historic `files[]` download: each file fetched on its own, written at its sanitised path.
fn extract_files(
    files: Vec<DownloadFile>,
    writer: &mut TreeWriter,
    limits: &ExtractLimits,
) -> Result<(), Failure> {
    let mut counter = Counter::new(limits);
    let now = SystemTime::now();
    for file in files {
        counter.add(file.size)?;
        let rel = match RelPath::parse(file.path.as_bytes()) {
            Ok(Some(rel)) => rel,
            Ok(None) => {
                writer.skip(file.path.as_bytes(), "empty name");
                continue;
            }
            Err(reason) => {
                writer.skip(file.path.as_bytes(), reason);
                continue;
            }
        };
        let mut reader = (file.open)().map_err(|e| Failure::Api(Box::new(e)))?;
        let on_error = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => Failure::Truncated(e.to_string()),
            _ => Failure::Transport(e),
        };
        let src = Source {
            reader: &mut reader,
            expected: Some(file.size),
            on_error: &on_error,
        };
        writer.file(file.path.as_bytes(), &rel, file_mode(0o444), now, src)?;
    }
    Ok(())
}

/// Counts entries and announced bytes against the limits.
struct Counter {
    entries: u64,
    bytes: u64,
    limits: ExtractLimits,
}

impl Counter {
    fn new(limits: &ExtractLimits) -> Counter {
        Counter {
            entries: 0,
            bytes: 0,
            limits: limits.clone(),
        }
    }

    fn add(&mut self, size: u64) -> Result<(), Failure> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(Failure::TooManyEntries(self.limits.max_entries));
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_total_bytes {
            return Err(Failure::TooLarge(self.limits.max_total_bytes));
        }
        Ok(())
    }
}
