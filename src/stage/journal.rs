//! The journal of one writable volume: every change of names, appended before the operation returns and made
//! durable by the stage's group commit (`commit`).
//!
//! File contents live in staged files; what the journal keeps is the namespace (create, unlink, rename, mkdir,
//! chmod, symlink) and the publishes, because that is where FUSE filesystems that stage on disk lose data after a
//! crash (a file whose bytes survived but whose name did not). Each record is framed as `length (u32 LE) · CRC-32
//! of the payload (u32 LE) · payload (JSON)`. A crash can leave at most a torn last record: `replay` keeps every
//! complete record before the first frame that is short or fails its CRC, and cuts the file there, so the next
//! append follows the last good record. JSON keeps the file readable by a person in an emergency. An appended
//! record is in the kernel's page cache when `append` returns, so it survives a crash of vm0fs; a power loss keeps
//! the records of the last commit.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One change. Paths are relative to the volume's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The first record: the version the changes start from (`None`: a volume with no version yet).
    Base {
        name: String,
        version: Option<String>,
    },
    /// `path` is now the staged file `file` (a create, a copy-up, a file replaced by a new one).
    Put {
        path: String,
        file: u64,
        mode: u32,
    },
    /// `path` (a file, symlink or empty directory) is gone.
    Remove {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Rename {
        from: String,
        to: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// `to` is a second name of the file at `from` (`link(2)`).
    Link {
        from: String,
        to: String,
    },
    /// `touch` of a file still read from the base version: its time, in seconds and nanoseconds since the epoch.
    Touch {
        path: String,
        secs: i64,
        nanos: u32,
    },
    /// Everything before this record is in `version`, now the volume's head.
    Published {
        version: String,
    },
}

const HEADER: usize = 8;
/// A record larger than this is taken for garbage (a path is at most a few KiB).
const MAX_RECORD: usize = 1 << 20;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

/// The frame of one record.
pub fn frame(record: &Record) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(record).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The complete records at the start of `bytes`, and how many bytes they take.
pub fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let start = at + HEADER;
        if len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32(payload) != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice(payload) else {
            break;
        };
        records.push(record);
        at = start + len;
    }
    (records, at)
}

/// An open journal, appending.
pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens (creating) the journal at `path` and returns its complete records; a torn tail is cut off.
    pub fn open(path: &Path) -> io::Result<(Journal, Vec<Record>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, good) = parse(&bytes);
        if good < bytes.len() {
            tracing::warn!(journal = %path.display(), kept = records.len(), cut_bytes = bytes.len() - good,
                "the journal ends in a torn record (a crash while writing it); it is cut there");
            file.set_len(good as u64)?;
            file.sync_data()?;
        }
        Ok((Journal { file }, records))
    }

    /// Appends `record` (one `write(2)` of its whole frame; the group commit makes it durable).
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        self.file.write_all(&frame(record)?)
    }

    /// Replaces the whole journal by `records` (after a publish, to keep it short), atomically: written beside it,
    /// fsynced, renamed over it.
    pub fn rewrite(&mut self, path: &Path, records: &[Record]) -> io::Result<()> {
        let tmp = path.with_extension("new");
        let mut bytes = Vec::new();
        for r in records {
            bytes.extend_from_slice(&frame(r)?);
        }
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        vec![
            Record::Base {
                name: "input".into(),
                version: Some("ab".repeat(32)),
            },
            Record::Mkdir {
                path: "d".into(),
                mode: 0o755,
            },
            Record::Put {
                path: "d/ünïcode file".into(),
                file: 7,
                mode: 0o644,
            },
            Record::Rename {
                from: "d".into(),
                to: "e".into(),
            },
            Record::Published {
                version: "cd".repeat(32),
            },
            Record::Remove { path: "e".into() },
        ]
    }

    #[test]
    fn every_cut_of_the_journal_replays_a_prefix() {
        let records = sample();
        let mut bytes = Vec::new();
        let mut ends = vec![0];
        for r in &records {
            bytes.extend_from_slice(&frame(r).unwrap());
            ends.push(bytes.len());
        }
        for cut in 0..=bytes.len() {
            let (got, good) = parse(&bytes[..cut]);
            let complete = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(got, records[..complete], "cut at {cut}");
            assert_eq!(good, ends[complete], "cut at {cut}");
        }
    }

    #[test]
    fn a_corrupted_byte_stops_the_replay_there() {
        let records = sample();
        let mut bytes = Vec::new();
        for r in &records {
            bytes.extend_from_slice(&frame(r).unwrap());
        }
        let second = frame(&records[0]).unwrap().len();
        bytes[second + HEADER + 2] ^= 0x40;
        let (got, good) = parse(&bytes);
        assert_eq!(got, records[..1]);
        assert_eq!(good, second);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_follow_the_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let records = sample();
        {
            let (mut j, old) = Journal::open(&path).unwrap();
            assert!(old.is_empty());
            for r in &records[..3] {
                j.append(r).unwrap();
            }
        }
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        {
            let (mut j, old) = Journal::open(&path).unwrap();
            assert_eq!(old, records[..2]);
            j.append(&records[3]).unwrap();
        }
        let (mut j, old) = Journal::open(&path).unwrap();
        assert_eq!(
            old,
            [records[0].clone(), records[1].clone(), records[3].clone()]
        );
        j.rewrite(&path, &records[4..5]).unwrap();
        j.append(&records[5]).unwrap();
        drop(j);
        assert_eq!(Journal::open(&path).unwrap().1, records[4..]);
    }
}
