//! Presigned-style URLs for the blob host on this same server: signed and dated like S3's, valid for an hour.
//!
//! `storage` hands them out (downloads, uploads) and `blobhost` checks them, so both depend on this module and
//! not on each other. The signature binds the path and the date, so a test cannot reuse one URL for another
//! object, and an old date expires exactly as on S3.

use crate::ctx::Ctx;
use crate::reply::percent_encode_path;
use crate::store::now_ms;
use vm0_api::StorageKind;

/// Who the emulator says created versions (and the first part of every blob key).
pub(crate) const USER_ID: &str = "user_emulator";
/// Seconds a presigned URL stays valid, as on the platform.
pub(crate) const PRESIGN_SECS: i64 = 3600;

pub(crate) fn kind_word(kind: StorageKind) -> &'static str {
    match kind {
        StorageKind::Volume => "volume",
        StorageKind::Artifact => "artifact",
    }
}

/// A presigned-style URL for a (percent-encoded) blob path on this server, dated now and valid for an hour.
pub(crate) fn presign(ctx: &Ctx, path: &str) -> String {
    let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let sig = signature(path, &date);
    format!(
        "{}{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}&X-Amz-Expires={PRESIGN_SECS}&X-Amz-Signature={sig}",
        ctx.base_url, path
    )
}

fn signature(path: &str, date: &str) -> String {
    crate::blobs::sha256_hex(format!("vm0-emulator\n{path}\n{date}\n{PRESIGN_SECS}").as_bytes())
}

/// Why a presigned URL is refused, as S3's error code and message; `None` when it is valid now.
pub(crate) fn check(
    raw_path: &str,
    date: Option<&str>,
    sig: Option<&str>,
) -> Option<(&'static str, &'static str)> {
    let date = date.unwrap_or("");
    if sig != Some(signature(raw_path, date).as_str()) {
        return Some((
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    let issued = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map(|d| d.and_utc().timestamp_millis())
        .unwrap_or(0);
    (now_ms() > issued + PRESIGN_SECS * 1000).then_some(("AccessDenied", "Request has expired"))
}

/// The blob path of a version's archive.
pub(crate) fn archive_path(kind: StorageKind, name: &str, version: &str) -> String {
    percent_encode_path(&format!(
        "/_storage/{USER_ID}/{}/{name}/{version}/archive.tar.gz",
        kind_word(kind)
    ))
}

/// The blob path of one file of a version (the legacy per-file download).
pub(crate) fn member_path(kind: StorageKind, name: &str, version: &str, file: &str) -> String {
    percent_encode_path(&format!(
        "/_storage/{USER_ID}/{}/{name}/{version}/files/{file}",
        kind_word(kind)
    ))
}
