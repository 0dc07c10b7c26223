//! The storage push flow (CONTRACT.md 7.2 steps 2-4). It sends one archive rather than one PUT per file: prepare
//! declares every file (path, SHA-256, size) and answers the version id; only when that version is new is the
//! archive built (`archive`) in the volume's staging directory and PUT with its `manifest.json`, both deleted
//! once sent; `existing: true` skips the PUTs, and the commit still moves the head. A push over the server's
//! limit (100 MB on the platform) is refused by prepare with 413, which reaches the user as `EFBIG` with what to
//! do.

use std::io;

use super::archive::{ArchiveEntry, write_archive};
use super::target::{FRESH_URLS, Progress, Sent, Target, push_files_of};
use crate::api::models::{PushFile, PushManifest, PushPrepareRequest, PushUploads, StorageKind};
use crate::api::{ApiError, Vm0Api};
use crate::stage::error::PublishError;
use crate::stage::manifest::ManifestFile;

/// Prepare, then the archive and manifest PUTs unless the version exists.
pub(super) fn push_files(
    api: &dyn Vm0Api,
    target: &Target,
    manifest: &[ManifestFile],
    progress: Progress,
) -> Result<Sent, PublishError> {
    let label = target.label();
    let request = PushPrepareRequest {
        storage_name: target.name.to_string(),
        storage_type: StorageKind::Volume.push_type().into(),
        files: push_files_of(manifest),
        force: None,
    };
    let total: u64 = manifest.iter().map(|f| f.size).sum();
    let mut round = 0;
    loop {
        progress(0, total);
        let prepared = api
            .prepare_push(&request)
            .map_err(|e| prepare_failure(&label, total, &e))?;
        let sent = Sent::Push {
            version_id: prepared.version_id,
        };
        if prepared.existing {
            tracing::info!(volume = %label, "the server holds this version already: committing it only");
            return Ok(sent);
        }
        let Some(uploads) = prepared.uploads else {
            return Err(failure(
                &label,
                libc::EIO,
                "the server's prepare gave no upload URLs for a new version".into(),
            ));
        };
        match put_archive_and_manifest(api, target, manifest, &request.files, &uploads) {
            Ok(()) => {
                progress(total, total);
                return Ok(sent);
            }
            Err(Put::Api(e)) if e.status == Some(403) && round < FRESH_URLS => {
                tracing::info!(volume = %label, "a presigned URL was refused (expired?); preparing again");
                round += 1;
            }
            Err(Put::Api(e)) => return Err(PublishError::api(&label, "PUT", &e)),
            Err(Put::Local(e)) => {
                return Err(PublishError {
                    errno: e.raw_os_error().unwrap_or(libc::EIO),
                    message: format!("{label}: building the archive to push failed: {e}"),
                    retryable: true,
                    step: "archive",
                });
            }
        }
    }
}

fn failure(label: &str, errno: i32, why: String) -> PublishError {
    PublishError {
        errno,
        message: format!("{label}: {why}"),
        retryable: false,
        step: "prepare",
    }
}

/// A refused prepare; over the server's size limit it says what to do.
fn prepare_failure(label: &str, total: u64, e: &ApiError) -> PublishError {
    if e.status == Some(413) {
        return failure(
            label,
            libc::EFBIG,
            format!(
                "{total} bytes are more than the server takes in one push ({e}); not published, the changes stay \
                 staged: remove or shrink files, then `vm0fs sync` again"
            ),
        );
    }
    PublishError::api(label, "prepare", e)
}

/// Why a PUT of the push failed: the server, or building what to send.
enum Put {
    Api(ApiError),
    Local(io::Error),
}

fn put_archive_and_manifest(
    api: &dyn Vm0Api,
    target: &Target,
    manifest: &[ManifestFile],
    files: &[PushFile],
    uploads: &PushUploads,
) -> Result<(), Put> {
    let staging = target.staging;
    let (archive, manifest_json) = (staging.push_archive(), staging.push_manifest());
    let result = (|| {
        staging.create().map_err(Put::Local)?;
        if !manifest.is_empty() {
            let entries: Vec<ArchiveEntry> = manifest
                .iter()
                .map(|f| ArchiveEntry {
                    path: &f.path,
                    source: &f.source,
                    size: f.size,
                })
                .collect();
            write_archive(&archive, &entries).map_err(Put::Local)?;
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
