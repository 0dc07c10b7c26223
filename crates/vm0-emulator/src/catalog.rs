//! Volumes and artifacts as records: their JSON views, name rules, version selection, and how a new version is
//! built and becomes the head. No HTTP here.
//!
//! The two kinds share every line of code (CONTRACT.md 5: they differ only by path and the version's id key).
//! Archives are built outside the state lock (they may be large) and registered under it; a version whose id
//! already exists keeps its first archive, so a version id's bytes never change once served. The API handlers
//! (`storage`), the control routes, the run simulator and the seed all make versions through these functions.

use std::fs;

use flate2::Compression;
use serde_json::Value;

use crate::blobs::{self, Source};
use crate::presign::USER_ID;
use crate::reply::{not_found, to_value};
use crate::store::{Row, State, StorageRec, Store, VersionRec, iso, new_id, now_ms};
use vm0_api::{Storage, StorageDetail, StorageKind, StorageVersion};

/// Parses `volumes|artifacts` (or the singular) from a path.
pub(crate) fn parse_kind(word: &str) -> Option<StorageKind> {
    match word {
        "volume" | "volumes" => Some(StorageKind::Volume),
        "artifact" | "artifacts" => Some(StorageKind::Artifact),
        _ => None,
    }
}

pub(crate) fn version_value(kind: StorageKind, s: &StorageRec, v: &VersionRec) -> Value {
    to_value(&StorageVersion {
        id: v.id.clone(),
        volume_id: (kind == StorageKind::Volume).then(|| s.id.clone()),
        artifact_id: (kind == StorageKind::Artifact).then(|| s.id.clone()),
        size: v.size,
        file_count: v.file_count,
        message: v.message.clone(),
        created_by: v.created_by.clone(),
        created_at: iso(v.created_ms),
    })
}

pub(crate) fn storage_value(s: &StorageRec) -> Value {
    let head = s.head_version();
    to_value(&Storage {
        id: s.id.clone(),
        name: s.name.clone(),
        current_version_id: s.head.clone(),
        size: head.map_or(0, |v| v.size),
        file_count: head.map_or(0, |v| v.file_count),
        created_at: iso(s.created_ms),
        updated_at: iso(s.updated_ms),
    })
}

pub(crate) fn detail_value(kind: StorageKind, s: &StorageRec) -> Value {
    let head = s.head_version();
    to_value(&StorageDetail {
        id: s.id.clone(),
        name: s.name.clone(),
        current_version_id: s.head.clone(),
        size: head.map_or(0, |v| v.size),
        file_count: head.map_or(0, |v| v.file_count),
        created_at: iso(s.created_ms),
        updated_at: iso(s.updated_ms),
        current_version: head
            .map(|v| serde_json::from_value(version_value(kind, s, v)).ok())
            .unwrap_or(None),
    })
}

/// CONTRACT.md 7.1: `^[a-z0-9][a-z0-9-]*[a-z0-9]$|^[a-z0-9]$`, at most 100 characters.
pub(crate) fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 100
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || *c == b'-')
}

/// A relative path inside a storage: no leading `/`, no `.`, `..` or empty parts, no `\` or NUL.
pub(crate) fn valid_rel_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Creates an empty storage record (no versions) in memory and returns its index.
pub(crate) fn create_record(st: &mut State, kind: StorageKind, name: &str, at_ms: i64) -> usize {
    let list = st.storages_mut(kind);
    list.push(StorageRec {
        id: new_id(),
        name: name.to_string(),
        created_ms: at_ms,
        updated_ms: at_ms,
        head: None,
        versions: Vec::new(),
    });
    list.len() - 1
}

/// The storage id for `name`, creating (and saving) the storage if it does not exist.
pub(crate) fn ensure_storage(
    store: &Store,
    st: &mut State,
    kind: StorageKind,
    name: &str,
) -> String {
    if let Some(s) = st.storage_by_name(kind, name) {
        return s.id.clone();
    }
    let i = create_record(st, kind, name, now_ms());
    let s = &st.storages(kind)[i];
    store.write(&[Row::Storage(kind, s)]);
    s.id.clone()
}

/// Resolves `latest`, a full id or a ≥ 8-hex prefix (CONTRACT.md 6.2); every failure is a 404.
pub(crate) fn resolve<'a>(
    kind: StorageKind,
    s: &'a StorageRec,
    selector: Option<&str>,
) -> Result<&'a VersionRec, axum::response::Response> {
    let selector = selector.map(str::trim).filter(|x| !x.is_empty());
    match selector {
        None | Some("latest") => s
            .head_version()
            .ok_or_else(|| not_found(format!("{} '{}' has no versions", kind.title(), s.name))),
        Some(x) => {
            if x.len() < 8 {
                return Err(not_found(
                    "Version prefix too short. Minimum 8 characters required.",
                ));
            }
            let x = x.to_ascii_lowercase();
            let hits: Vec<&VersionRec> =
                s.versions.iter().filter(|v| v.id.starts_with(&x)).collect();
            match hits.as_slice() {
                [v] => Ok(v),
                [] => Err(not_found(format!("Version \"{x}\" not found"))),
                _ => Err(not_found(format!(
                    "Ambiguous version prefix \"{x}\". Please use more characters."
                ))),
            }
        }
    }
}

/// Writes the archive of `files` (in this order) for a storage and returns the version it makes, not yet
/// registered. A blob that already exists for that id is kept as it is. No files make an empty version
/// (no archive; the API accepts it and its download answers 404, CONTRACT.md 6.3).
pub(crate) fn build_version(
    store: &Store,
    storage_id: &str,
    files: &[(String, Source)],
    message: Option<String>,
    level: Compression,
) -> std::io::Result<VersionRec> {
    let now = now_ms();
    if files.is_empty() {
        return Ok(VersionRec {
            id: blobs::version_id(storage_id, &[]),
            size: 0,
            file_count: 0,
            message,
            created_by: USER_ID.into(),
            created_ms: now,
            files: Vec::new(),
            has_blob: false,
        });
    }
    let tmp = store
        .dir()
        .join("blobs")
        .join(format!("building-{}.tar.gz", new_id()));
    let records = blobs::write_archive(&tmp, files, (now / 1000) as u64, level)?;
    let id = blobs::version_id(storage_id, &records);
    let dest = store.blob_path(&id);
    if dest.exists() {
        let _ = fs::remove_file(&tmp);
    } else {
        fs::rename(&tmp, &dest)?;
    }
    Ok(VersionRec {
        id,
        size: records.iter().map(|f| f.size).sum(),
        file_count: records.len() as u64,
        message,
        created_by: USER_ID.into(),
        created_ms: now,
        files: records,
        has_blob: true,
    })
}

/// Adds a version to a storage in memory and makes it the head; an existing version with the same id
/// (identical content) becomes the head instead (deduplication). `None` if the storage is gone.
pub(crate) fn register(
    st: &mut State,
    kind: StorageKind,
    storage_id: &str,
    v: VersionRec,
) -> Option<VersionRec> {
    let s = st
        .storages_mut(kind)
        .iter_mut()
        .find(|s| s.id == storage_id)?;
    let now = v.created_ms.max(s.updated_ms);
    let v = match s.versions.iter().find(|x| x.id == v.id) {
        Some(existing) => existing.clone(),
        None => {
            s.versions.push(v.clone());
            v
        }
    };
    s.head = Some(v.id.clone());
    s.updated_ms = now;
    Some(v)
}

/// `register`, then saves the storage and the version, and returns the version's JSON view.
pub(crate) fn publish(
    store: &Store,
    st: &mut State,
    kind: StorageKind,
    storage_id: &str,
    v: VersionRec,
) -> Option<(VersionRec, Value)> {
    let v = register(st, kind, storage_id, v)?;
    let s = st.storage(kind, storage_id)?;
    store.write(&[Row::Storage(kind, s), Row::Version(&s.id, &v)]);
    let value = version_value(kind, s, &v);
    Some((v, value))
}
