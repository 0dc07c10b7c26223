//! Archives and content hashes: how a version's `archive.tar.gz` and its id are made (CONTRACT.md 6.1, 6.4).
//!
//! Every archive is written as the platform's CLI writes it with node-tar: a gzip'd ustar stream of regular files
//! only, relative paths without `./`, mode 0644 and a real mtime, and a PAX `path` record where a name does not
//! fit ustar's fields. Archives are streamed to a temporary file and renamed to `blobs/<version id>.tar.gz`, so
//! nothing ever holds a whole archive in memory (the benchmark generator writes hundreds of MB), and the file
//! hashes that make the version id are computed on the same pass that writes the bytes.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::store::FileRec;

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The version id of a set of files in a storage (CONTRACT.md 6.1).
pub(crate) fn version_id(storage_id: &str, files: &[FileRec]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|f| format!("{}:{}", f.path, f.hash))
        .collect();
    lines.sort();
    sha256_hex(format!("storage:{storage_id}\n{}", lines.join("\n")).as_bytes())
}

/// Where the bytes of one archive member come from.
pub(crate) enum Source {
    Bytes(Vec<u8>),
    Disk(PathBuf),
    /// `len` deterministic pseudo-random bytes from `seed` (benchmarks: big, and incompressible).
    Random {
        seed: u64,
        len: u64,
    },
}

impl Source {
    fn open(&self) -> io::Result<(Box<dyn Read>, u64)> {
        Ok(match self {
            Source::Bytes(b) => (Box::new(io::Cursor::new(b.clone())), b.len() as u64),
            Source::Disk(p) => {
                let f = File::open(p)?;
                let len = f.metadata()?.len();
                (Box::new(f.take(len)), len)
            }
            Source::Random { seed, len } => (
                Box::new(PrngReader {
                    rng: fastrand::Rng::with_seed(*seed),
                    left: *len,
                }),
                *len,
            ),
        })
    }
}

struct PrngReader {
    rng: fastrand::Rng,
    left: u64,
}

impl Read for PrngReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        // Eight bytes per PRNG call: per-byte filling dominates the generator's time in debug builds.
        for chunk in buf[..n].chunks_mut(8) {
            let word = self.rng.u64(..).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes a tar.gz of `files` (in the given order) to `out`, atomically. Returns the files' records.
/// `level` is the gzip level; the benchmark generator uses the fastest.
pub(crate) fn write_archive(
    out: &Path,
    files: &[(String, Source)],
    mtime_secs: u64,
    level: Compression,
) -> io::Result<Vec<FileRec>> {
    let tmp = out.with_extension(format!("tmp{}", fastrand::u64(..)));
    let result = (|| {
        let file = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let mut builder = tar::Builder::new(GzEncoder::new(file, level));
        let mut records = Vec::with_capacity(files.len());
        for (path, source) in files {
            let (reader, len) = source.open()?;
            let mut hashing = HashingReader {
                inner: reader,
                hasher: Sha256::new(),
            };
            append_file(&mut builder, path, len, mtime_secs, &mut hashing)?;
            records.push(FileRec {
                path: path.clone(),
                size: len,
                hash: hex::encode(hashing.hasher.finalize()),
            });
        }
        let gz = builder.into_inner()?;
        let mut file = gz.finish()?;
        file.flush()?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(records)
    })();
    match result {
        Ok(records) => {
            fs::rename(&tmp, out)?;
            Ok(records)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// One regular file, ustar, with a PAX `path` record first when the name does not fit ustar (or is not ASCII,
/// as node-tar does).
fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    len: u64,
    mtime: u64,
    data: &mut dyn Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(len);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    let fits = path.is_ascii() && header.set_path(path).is_ok();
    if !fits {
        let record = pax_record("path", path);
        let mut pax = tar::Header::new_ustar();
        pax.set_size(record.len() as u64);
        pax.set_mode(0o644);
        pax.set_mtime(mtime);
        pax.set_entry_type(tar::EntryType::XHeader);
        set_raw_name(&mut pax, &format!("PaxHeader/{}", ascii_stub(path)));
        pax.set_cksum();
        builder.append(&pax, record.as_slice())?;
        set_raw_name(&mut header, &ascii_stub(path));
    }
    header.set_cksum();
    builder.append(&header, data)
}

/// `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len != body.len() + len.to_string().len() {
        len = body.len() + len.to_string().len();
    }
    format!("{len}{body}").into_bytes()
}

/// A printable ASCII stand-in for a name that only PAX can carry, for readers that ignore PAX.
fn ascii_stub(path: &str) -> String {
    let s: String = path
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '_'
            }
        })
        .collect();
    let start = s.len().saturating_sub(90);
    s[start..].to_string()
}

fn set_raw_name(header: &mut tar::Header, name: &str) {
    if let Some(ustar) = header.as_ustar_mut() {
        ustar.name = [0; 100];
        ustar.prefix = [0; 155];
        let bytes = name.as_bytes();
        let n = bytes.len().min(99);
        ustar.name[..n].copy_from_slice(&bytes[..n]);
    }
}

/// The regular files of a tar.gz held in memory (a hard link counts as one), or `None` if it does not parse.
pub(crate) fn count_files(bytes: &[u8]) -> Option<u64> {
    let mut archive = tar::Archive::new(GzDecoder::new(bytes));
    let mut n = 0;
    for entry in archive.entries().ok()? {
        let kind = entry.ok()?.header().entry_type();
        if kind.is_file() || kind.is_hard_link() {
            n += 1;
        }
    }
    Some(n)
}

/// Every regular file of an archive on disk, with its bytes, in archive order; a hard link to an earlier file is
/// a file with that file's bytes (archives pushed by a client hold them). Only for small archives (the caller
/// checks the size first).
pub(crate) fn read_all(blob: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut archive = tar::Archive::new(GzDecoder::new(File::open(blob)?));
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        let path = entry.path()?.to_string_lossy().into_owned();
        let data = if kind.is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            data
        } else if kind.is_hard_link() {
            let target = entry.link_name()?.unwrap_or_default();
            let target = target.to_string_lossy();
            match out.iter().rev().find(|(p, _)| *p == target) {
                Some((_, data)) => data.clone(),
                None => continue,
            }
        } else {
            continue;
        };
        out.push((path, data));
    }
    Ok(out)
}

/// The bytes of one member of an archive on disk (the legacy per-file download), streaming through it; a hard
/// link is served with its target's bytes.
pub(crate) fn read_member(blob: &Path, wanted: &str) -> io::Result<Option<Vec<u8>>> {
    read_member_via_links(blob, wanted, 8)
}

/// `read_member`, following at most `links` hard links (a hostile raw archive may link two names to each other).
fn read_member_via_links(blob: &Path, wanted: &str, links: u32) -> io::Result<Option<Vec<u8>>> {
    let mut archive = tar::Archive::new(GzDecoder::new(File::open(blob)?));
    let mut link_to = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy() != wanted {
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            link_to = entry.link_name()?.map(|t| t.to_string_lossy().into_owned());
            break;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        return Ok(Some(data));
    }
    match link_to {
        Some(target) if links > 0 => read_member_via_links(blob, &target, links - 1),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", "a");
        assert_eq!(r, b"9 path=a\n");
        let long = "x".repeat(95);
        let r = pax_record("path", &long);
        let s = String::from_utf8(r.clone()).unwrap();
        let n: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(n, r.len());
    }

    #[test]
    fn archive_round_trips_long_and_unicode_names() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a.tar.gz");
        let long = format!("deep/{}.txt", "n".repeat(120));
        let files = vec![
            (
                "données/résumé.txt".to_string(),
                Source::Bytes(b"bonjour".to_vec()),
            ),
            (long.clone(), Source::Bytes(b"long".to_vec())),
            ("empty".to_string(), Source::Bytes(Vec::new())),
        ];
        let recs = write_archive(&out, &files, 1_700_000_000, Compression::default()).unwrap();
        assert_eq!(recs[0].hash, sha256_hex(b"bonjour"));
        let back = read_all(&out).unwrap();
        let names: Vec<_> = back.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, vec!["données/résumé.txt", long.as_str(), "empty"]);
        assert_eq!(back[1].1, b"long");
    }
}
