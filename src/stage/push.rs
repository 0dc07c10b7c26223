//! The two ways a version is sent: the `/v1` three-step upload (CONTRACT.md 7.1) and the storage push flow of the
//! platform's own CLI (7.2), and the choice between them.
//!
//! A mount starts with `/v1`, the API the seed documents. A server that answers its upload call with 404, for a
//! volume whose head it has just shown, has no such route (the platform removed it on 2026-01-10): the mount
//! switches to the push flow and keeps it for its lifetime (`Protocol`, owned by the publisher thread). When the
//! volume itself is gone, that 404 is the deletion, and nothing is switched or pushed: a push would create the
//! volume again under its name. The push sends one archive rather than one PUT per file: prepare declares every
//! file (path, SHA-256, size) and answers the version id; only when that version is new is the archive built (a
//! gzip'd tar of regular files, mode 0644, as the platform's CLI writes it) in the volume's staging directory and
//! PUT with its `manifest.json`, both deleted once sent; `existing: true` skips the PUTs, and the commit still
//! moves the head. A push over the server's limit (100 MB on the platform) is refused by prepare with 413, which
//! reaches the user as `EFBIG` with what to do.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::VolumeStage;
use super::manifest::ManifestFile;
use super::publish::{Phase, PublishError, api_failure, server_head, upload_all};
use crate::api::models::{
    CommitRequest, PushCommitRequest, PushFile, PushManifest, PushPrepareRequest, PushUploads,
    StorageKind,
};
use crate::api::{ApiError, Vm0Api};

/// How many times one push prepares again for fresh URLs after a 403 from a PUT.
const FRESH_URLS: u32 = 3;

/// The upload protocol a mount speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `POST …/upload`, a PUT per file, `POST …/commit` (CONTRACT.md 7.1).
    #[default]
    V1,
    /// `POST /api/storages/prepare`, PUT the archive and the manifest, `POST /api/storages/commit` (7.2).
    Push,
}

/// What was sent, for the commit that follows.
pub enum Sent {
    V1 { session: String },
    Push { version_id: String },
}

/// Sends the files of `manifest` with the mount's protocol, switching to the push flow for good when the server
/// has no `/v1` upload.
pub(super) fn send(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    manifest: &[ManifestFile],
    protocol: &Cell<Protocol>,
) -> Result<Sent, PublishError> {
    if protocol.get() == Protocol::V1 {
        match upload_all(api, volume, manifest) {
            Err(e) if e.errno == libc::ENOENT && e.step == "upload" => {
                server_head(api, volume)?;
                tracing::info!(volume = %volume.label(),
                    "the server has no /v1 upload (404): this mount publishes with the storage push flow from now on");
                protocol.set(Protocol::Push);
            }
            other => return other.map(|session| Sent::V1 { session }),
        }
    }
    push_files(api, volume, manifest)
}

/// Commits what was sent: the new version's id.
pub(super) fn commit(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    sent: Sent,
    manifest: &[ManifestFile],
    message: String,
) -> Result<String, ApiError> {
    match sent {
        Sent::V1 { session } => {
            let request = CommitRequest {
                upload_session_id: session,
                message: Some(message),
            };
            api.commit(StorageKind::Volume, volume.storage_id(), &request)
                .map(|v| v.id)
        }
        Sent::Push { version_id } => {
            let request = PushCommitRequest {
                storage_name: volume.name.clone(),
                storage_type: StorageKind::Volume.push_type().into(),
                version_id,
                files: push_files_of(manifest),
                message: Some(message),
            };
            api.commit_push(&request).map(|c| c.version_id)
        }
    }
}

fn push_files_of(manifest: &[ManifestFile]) -> Vec<PushFile> {
    manifest
        .iter()
        .map(|f| PushFile {
            path: f.path.clone(),
            hash: f.sha256.clone(),
            size: f.size,
        })
        .collect()
}

/// Prepare, then the archive and manifest PUTs unless the version exists (7.2 steps 2-4).
fn push_files(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    manifest: &[ManifestFile],
) -> Result<Sent, PublishError> {
    let request = PushPrepareRequest {
        storage_name: volume.name.clone(),
        storage_type: StorageKind::Volume.push_type().into(),
        files: push_files_of(manifest),
        force: None,
    };
    let total: u64 = manifest.iter().map(|f| f.size).sum();
    let mut round = 0;
    loop {
        volume.set_phase(Phase::Publishing { done: 0, total });
        let prepared = api
            .prepare_push(&request)
            .map_err(|e| prepare_failure(volume, total, &e))?;
        let sent = Sent::Push {
            version_id: prepared.version_id,
        };
        if prepared.existing {
            tracing::info!(volume = %volume.label(), "the server holds this version already: committing it only");
            return Ok(sent);
        }
        let Some(uploads) = prepared.uploads else {
            return Err(failure(
                volume,
                libc::EIO,
                "the server's prepare gave no upload URLs for a new version".into(),
            ));
        };
        match put_archive_and_manifest(api, volume, manifest, &request.files, &uploads) {
            Ok(()) => {
                volume.set_phase(Phase::Publishing { done: total, total });
                return Ok(sent);
            }
            Err(Put::Api(e)) if e.status == Some(403) && round < FRESH_URLS => {
                tracing::info!(volume = %volume.label(), "a presigned URL was refused (expired?); preparing again");
                round += 1;
            }
            Err(Put::Api(e)) => return Err(api_failure(volume, "PUT", &e)),
            Err(Put::Local(e)) => {
                return Err(PublishError {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    message: format!(
                        "{}: building the archive to push failed: {e}",
                        volume.label()
                    ),
                    retryable: true,
                    step: "archive",
                });
            }
        }
    }
}

fn failure(volume: &VolumeStage, errno: i32, why: String) -> PublishError {
    PublishError {
        errno,
        message: format!("{}: {why}", volume.label()),
        retryable: false,
        step: "prepare",
    }
}

/// A refused prepare; over the server's size limit it says what to do.
fn prepare_failure(volume: &VolumeStage, total: u64, e: &ApiError) -> PublishError {
    if e.status == Some(413) {
        return failure(
            volume,
            libc::EFBIG,
            format!(
                "{total} bytes are more than the server takes in one push ({e}); not published, the changes stay \
                 staged: remove or shrink files, then `vm0fs sync` again"
            ),
        );
    }
    api_failure(volume, "prepare", e)
}

/// Why a PUT of the push failed: the server, or building what to send.
enum Put {
    Api(ApiError),
    Local(io::Error),
}

fn put_archive_and_manifest(
    api: &dyn Vm0Api,
    volume: &VolumeStage,
    manifest: &[ManifestFile],
    files: &[PushFile],
    uploads: &PushUploads,
) -> Result<(), Put> {
    let (archive, manifest_json) = (volume.layout.push_archive(), volume.layout.push_manifest());
    let result = (|| {
        volume.layout.create().map_err(Put::Local)?;
        if !manifest.is_empty() {
            write_archive(&archive, manifest).map_err(Put::Local)?;
            api.put_push(&uploads.archive.presigned_url, &archive, "application/gzip")
                .map_err(Put::Api)?;
        }
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let body = PushManifest {
            version: 1,
            files: files.to_vec(),
            created_at,
        };
        let json = serde_json::to_vec_pretty(&body).map_err(|e| Put::Local(io::Error::other(e)))?;
        std::fs::write(&manifest_json, json).map_err(Put::Local)?;
        api.put_push(
            &uploads.manifest.presigned_url,
            &manifest_json,
            "application/json",
        )
        .map_err(Put::Api)
    })();
    let _ = std::fs::remove_file(&archive);
    let _ = std::fs::remove_file(&manifest_json);
    result
}

/// A gzip'd tar of `files` at `path`: regular files, relative paths, mode 0644, as the platform's CLI writes
/// (CONTRACT.md 6.4). A file whose size changed since it was hashed fails it (the publish tries again).
fn write_archive(path: &Path, files: &[ManifestFile]) -> io::Result<()> {
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::fast()));
    for f in files {
        let source = File::open(&f.source)?;
        if source.metadata()?.len() != f.size {
            return Err(io::Error::other(format!(
                "{} changed while it was being published",
                f.path
            )));
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(f.size);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        tar.append_data(&mut header, &f.path, source.take(f.size))?;
    }
    let mut out = tar.into_inner()?.finish()?;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}
