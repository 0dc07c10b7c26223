//! The storage push flow of the platform's CLI (CONTRACT.md 7.2): `POST /api/storages/prepare`, a PUT of the
//! archive and of the manifest to presigned URLs, `POST /api/storages/commit`.
//!
//! Storages are addressed by name here, and created by the first prepare. The version id is computed from the
//! declared files at prepare time; a version the storage already holds answers `existing: true` and needs no
//! upload, but its commit still moves the head. The PUT targets reuse the upload registry and the blob host's
//! `/_upload/<session>/<id>` route of the `/v1` flow: one session per (storage, version), named after the
//! version, holding `archive` and `manifest`. The commit refuses what the platform refuses: a missing upload
//! (409, the session stays), and an archive whose files are not the ones declared (400).
//!
//! The archive is the client's: once its regular files (a hard link counts as a file with its target's bytes)
//! are checked against the declared ones, the uploaded bytes become the version's blob as they are, so a
//! download gives back exactly what was pushed: modes, symlinks, empty directories, times and hard links
//! included. The version id and the manifest still name the regular files only (CONTRACT.md 6.1). Bodies are camelCase in
//! every era and errors are `{"error":{"message","code"}}` with UPPERCASE codes; more than `--max-push-bytes`
//! declared (100 MiB by default, as on the platform) is 413 `PAYLOAD_TOO_LARGE`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use flate2::read::GzDecoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::blobs;
use crate::catalog;
use crate::ctx::Ctx;
use crate::presign::{USER_ID, kind_word, presign};
use crate::reply::{blocking, raw_json};
use crate::store::{FileRec, VersionRec, now_ms};
use crate::uploads::{Declared, UploadSession};
use vm0_api::StorageKind;

/// `{"error":{"message","code"}}`, the push flow's error body.
fn push_error(status: u16, code: &str, message: impl Into<String>) -> Response {
    raw_json(
        status,
        &json!({"error": {"message": message.into(), "code": code}}),
    )
}

fn bad(message: impl Into<String>) -> Response {
    push_error(400, "BAD_REQUEST", message)
}

/// The storage, kind and files of a prepare or commit body.
struct Target {
    kind: StorageKind,
    name: String,
    files: Vec<FileRec>,
}

fn parse_target(body: &Bytes) -> Result<(Target, Value), Response> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("The request body is not valid JSON: {e}")))?;
    let name = value["storageName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !catalog::valid_name(&name) {
        return Err(bad(format!(
            "Invalid storageName {name:?}: 1-100 lowercase letters, digits and hyphens, starting and ending with \
             a letter or digit"
        )));
    }
    let kind = match value["storageType"].as_str() {
        Some("volume") => StorageKind::Volume,
        Some("artifact") => StorageKind::Artifact,
        other => {
            return Err(bad(format!(
                "Invalid storageType {other:?}: volume or artifact"
            )));
        }
    };
    let mut files: Vec<FileRec> = Vec::new();
    for (i, f) in value["files"].as_array().into_iter().flatten().enumerate() {
        let path = f["path"].as_str().unwrap_or_default();
        let hash = f["hash"].as_str().unwrap_or_default().to_ascii_lowercase();
        let size = f["size"].as_u64();
        let valid_hash = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        match size {
            Some(size) if catalog::valid_rel_path(path) && valid_hash => {
                if files.iter().any(|d| d.path == path) {
                    return Err(bad(format!("files[{i}]: duplicate path {path:?}")));
                }
                files.push(FileRec {
                    path: path.to_string(),
                    size,
                    hash,
                });
            }
            _ => {
                return Err(bad(format!(
                    "files[{i}] must be {{path (relative, no '.' or '..'), hash (64 hex), size}}"
                )));
            }
        }
    }
    if !value["files"].is_array() {
        return Err(bad("files is required: an array of {path, hash, size}"));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((Target { kind, name, files }, value))
}

/// The upload session of a pushed version: one per version id (the id includes the storage's).
fn session_id(version_id: &str) -> String {
    format!("push-{version_id}")
}

/// `POST /api/storages/prepare`.
pub(crate) async fn prepare(State(ctx): State<Arc<Ctx>>, body: Bytes) -> Response {
    let (target, value) = match parse_target(&body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let declared: u64 = target.files.iter().map(|f| f.size).sum();
    if declared > ctx.max_push_bytes {
        return push_error(
            413,
            "PAYLOAD_TOO_LARGE",
            format!(
                "Total upload size {declared} bytes exceeds the limit of {} bytes ({} MB)",
                ctx.max_push_bytes,
                ctx.max_push_bytes >> 20
            ),
        );
    }
    let (storage_id, version_id, existing) = {
        let mut st = ctx.store.lock();
        let id = catalog::ensure_storage(&ctx.store, &mut st, target.kind, &target.name);
        let version_id = blobs::version_id(&id, &target.files);
        let forced = value["force"].as_bool() == Some(true);
        let existing = st.storage(target.kind, &id).is_some_and(|s| {
            s.versions
                .iter()
                .any(|v| v.id == version_id && (v.has_blob || v.file_count == 0))
        });
        (id, version_id, existing && !forced)
    };
    if existing {
        return raw_json(200, &json!({"versionId": version_id, "existing": true}));
    }
    let session = session_id(&version_id);
    let dir = ctx.store.dir().join("uploads").join(&session);
    if let Err(e) = fs::create_dir_all(&dir) {
        return push_error(
            500,
            "INTERNAL_ERROR",
            format!("Cannot stage the upload: {e}"),
        );
    }
    let declared = |name: &str| Declared {
        path: name.to_string(),
        size: 0,
        hash: None,
        upload_id: name.to_string(),
    };
    ctx.uploads.insert(
        session.clone(),
        UploadSession {
            kind: target.kind,
            storage_id,
            message: None,
            dir,
            files: vec![declared("archive"), declared("manifest")],
        },
    );
    let key = |file: &str| {
        format!(
            "{USER_ID}/{}/{}/{version_id}/{file}",
            kind_word(target.kind),
            target.name
        )
    };
    let put = |id: &str, file: &str| json!({"key": key(file), "presignedUrl": presign(&ctx, &format!("/_upload/{session}/{id}"))});
    raw_json(
        200,
        &json!({"versionId": version_id, "existing": false,
                "uploads": {"archive": put("archive", "archive.tar.gz"),
                            "manifest": put("manifest", "manifest.json")}}),
    )
}

/// `POST /api/storages/commit`.
pub(crate) async fn commit(State(ctx): State<Arc<Ctx>>, body: Bytes) -> Response {
    let (target, value) = match parse_target(&body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(version_id) = value["versionId"].as_str().map(String::from) else {
        return bad("versionId is required: the one prepare answered");
    };
    let message = value["message"].as_str().map(String::from);
    blocking(move || commit_version(&ctx, &target, &version_id, message)).await
}

fn commit_version(
    ctx: &Ctx,
    target: &Target,
    version_id: &str,
    message: Option<String>,
) -> Response {
    let storage_id = {
        let mut st = ctx.store.lock();
        let Some(s) = st.storage_by_name(target.kind, &target.name) else {
            return push_error(
                404,
                "NOT_FOUND",
                format!("Storage \"{}\" not found", target.name),
            );
        };
        let id = s.id.clone();
        if let Some(v) = s.versions.iter().find(|v| v.id == version_id).cloned() {
            return committed(ctx, &mut st, target, &id, v, true);
        }
        id
    };
    let session_name = session_id(version_id);
    let Some(session) = ctx.uploads.take(&session_name, target.kind, &storage_id) else {
        return push_error(
            409,
            "CONFLICT",
            format!("No upload was prepared for version {version_id}; call prepare first"),
        );
    };
    let archive = session.dir.join("archive");
    let missing: Vec<&str> = [
        (
            "archive.tar.gz",
            !target.files.is_empty() && !archive.is_file(),
        ),
        ("manifest.json", !session.dir.join("manifest").is_file()),
    ]
    .into_iter()
    .filter_map(|(name, gone)| gone.then_some(name))
    .collect();
    if !missing.is_empty() {
        let message = format!(
            "Upload incomplete: {} not found in storage; PUT it to its presigned URL and commit again",
            missing.join(" and ")
        );
        ctx.uploads.insert(session_name, session);
        return push_error(409, "CONFLICT", message);
    }
    let stored = check_archive(&archive, target)
        .and_then(|()| store_archive(ctx, &archive, &storage_id, target, message));
    let _ = fs::remove_dir_all(&session.dir);
    let v = match stored {
        Ok(v) => v,
        Err(response) => return response,
    };
    if v.id != version_id {
        return bad(format!(
            "The uploaded files make version {}, not {version_id}",
            v.id
        ));
    }
    let mut st = ctx.store.lock();
    committed(ctx, &mut st, target, &storage_id, v, false)
}

/// Moves the head to `v` (registering it) and answers the commit.
fn committed(
    ctx: &Ctx,
    st: &mut crate::store::State,
    target: &Target,
    storage_id: &str,
    v: VersionRec,
    deduplicated: bool,
) -> Response {
    match catalog::publish(&ctx.store, st, target.kind, storage_id, v) {
        Some((v, _)) => {
            ctx.stats.commit();
            ctx.stats.push_commit();
            let mut answer = json!({"success": true, "versionId": v.id, "storageName": target.name,
                                    "size": v.size, "fileCount": v.file_count});
            if deduplicated {
                answer["deduplicated"] = json!(true);
            }
            raw_json(200, &answer)
        }
        None => push_error(
            404,
            "NOT_FOUND",
            format!("Storage \"{}\" not found", target.name),
        ),
    }
}

/// Keeps the pushed archive, as it is, as the blob of the version its declared files make (a blob already there
/// for that id is kept), and returns that version, not yet registered.
fn store_archive(
    ctx: &Ctx,
    archive: &Path,
    storage_id: &str,
    target: &Target,
    message: Option<String>,
) -> Result<VersionRec, Response> {
    let id = blobs::version_id(storage_id, &target.files);
    let has_blob = !target.files.is_empty();
    if has_blob {
        let dest = ctx.store.blob_path(&id);
        let kept = if dest.exists() {
            Ok(())
        } else {
            fs::rename(archive, &dest)
        };
        kept.map_err(|e| {
            push_error(
                500,
                "INTERNAL_ERROR",
                format!("Cannot store the archive: {e}"),
            )
        })?;
    }
    Ok(VersionRec {
        id,
        size: target.files.iter().map(|f| f.size).sum(),
        file_count: target.files.len() as u64,
        message,
        created_by: USER_ID.into(),
        created_ms: now_ms(),
        files: target.files.clone(),
        has_blob,
    })
}

/// Checks that the regular files of the pushed archive are the files declared (path, size and hash of each); a
/// hard link to an earlier file counts as a file with its bytes. Other entries (directories, symlinks) are the
/// client's to send.
fn check_archive(archive: &Path, target: &Target) -> Result<(), Response> {
    if target.files.is_empty() {
        return Ok(());
    }
    let found = archive_files(archive).map_err(bad)?;
    let same = found.len() == target.files.len()
        && found
            .iter()
            .zip(&target.files)
            .all(|(a, b)| a.path == b.path && a.size == b.size && a.hash == b.hash);
    if same {
        Ok(())
    } else {
        Err(bad(
            "The archive's files are not the files declared (path, size and hash of each)",
        ))
    }
}

/// The regular files of a tar.gz, sorted by path, hashed as they stream by.
fn archive_files(archive: &Path) -> Result<Vec<FileRec>, String> {
    let read = |e: io::Error| format!("The archive cannot be read as a tar.gz: {e}");
    let mut tar = tar::Archive::new(GzDecoder::new(File::open(archive).map_err(read)?));
    let mut found: BTreeMap<String, FileRec> = BTreeMap::new();
    for entry in tar.entries().map_err(read)? {
        let mut entry = entry.map_err(read)?;
        let kind = entry.header().entry_type();
        if !kind.is_file() && !kind.is_hard_link() {
            continue;
        }
        let path = entry.path().map_err(read)?.to_string_lossy().into_owned();
        if !catalog::valid_rel_path(&path) {
            return Err(format!("The archive holds an invalid path {path:?}"));
        }
        let (size, hash) = if kind.is_hard_link() {
            let link = entry.link_name().map_err(read)?.unwrap_or_default();
            let link = link.to_string_lossy().into_owned();
            let earlier = found.get(&link).ok_or_else(|| {
                format!("The archive's hard link {path:?} names {link:?}, not a file before it")
            })?;
            (earlier.size, earlier.hash.clone())
        } else {
            let mut hasher = Sha256::new();
            let size = io::copy(&mut entry, &mut hasher).map_err(read)?;
            (size, hex::encode(hasher.finalize()))
        };
        found.insert(path.clone(), FileRec { path, size, hash });
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_file_needs_a_relative_path_a_hash_and_a_size() {
        let ok = json!({"storageName": "v", "storageType": "volume",
                        "files": [{"path": "b", "hash": "a".repeat(64), "size": 1},
                                  {"path": "a", "hash": "b".repeat(64), "size": 2}]});
        let (target, _) = parse_target(&Bytes::from(ok.to_string())).unwrap();
        assert_eq!(target.files[0].path, "a");
        for bad in [
            json!({"storageName": "V", "storageType": "volume", "files": []}),
            json!({"storageName": "v", "storageType": "disk", "files": []}),
            json!({"storageName": "v", "storageType": "volume"}),
            json!({"storageName": "v", "storageType": "volume",
                   "files": [{"path": "../x", "hash": "a".repeat(64), "size": 1}]}),
            json!({"storageName": "v", "storageType": "volume",
                   "files": [{"path": "x", "hash": "abc", "size": 1}]}),
        ] {
            assert!(
                parse_target(&Bytes::from(bad.to_string())).is_err(),
                "{bad}"
            );
        }
    }
}
