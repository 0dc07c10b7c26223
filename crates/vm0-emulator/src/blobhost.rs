//! The blob host: the unauthenticated, S3-like side of the server that presigned URLs point at.
//!
//! `GET /_storage/<user>/<kind>/<name>/<version>/archive.tar.gz?X-Amz-…` serves a version's archive with its
//! `Content-Length` (and `/files/<path>` one member, for the legacy per-file download); `PUT
//! /_upload/<session>/<upload id>` takes the bytes of one declared upload file. Like S3, neither wants the API
//! token: requests that carry one are served but counted, so tests can prove the client never sends it here.
//! Blob responses are marked with `BlobBody`, and the slow-blob and cut-body faults are applied to them by a
//! middleware (`layers`), not here.

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::io::AsyncReadExt;

use crate::blobs;
use crate::ctx::Ctx;
use crate::presign;
use crate::reply::{Params, blocking, s3_error};

/// Marks a response whose body is blob bytes, for the blob fault middleware.
#[derive(Clone, Copy)]
pub(crate) struct BlobBody;

fn no_such_key() -> Response {
    s3_error(404, "NoSuchKey", "The specified key does not exist.")
}

/// A version's archive from `blobs/`, streamed with its length.
pub(crate) async fn archive(ctx: &Ctx, version_id: &str) -> Response {
    let Ok(file) = tokio::fs::File::open(ctx.store.blob_path(version_id)).await else {
        return no_such_key();
    };
    let Ok(meta) = file.metadata().await else {
        return s3_error(500, "InternalError", "Cannot read the stored object.");
    };
    ctx.stats.blob_download(version_id);
    let chunks = stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, io::Error>(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut resp = (
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_LENGTH, meta.len().to_string()),
            (header::ETAG, format!("\"{version_id}\"")),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"archive.tar.gz\"".to_string(),
            ),
        ],
        Body::from_stream(chunks),
    )
        .into_response();
    resp.extensions_mut().insert(BlobBody);
    resp
}

/// `GET|HEAD /_storage/<key>?X-Amz-Date=…&X-Amz-Signature=…`, checked the way S3 checks a presigned URL.
pub(crate) async fn get(
    State(ctx): State<Arc<Ctx>>,
    uri: Uri,
    Path(key): Path<String>,
    q: Params,
) -> Response {
    if let Some((code, message)) =
        presign::check(uri.path(), q.get("X-Amz-Date"), q.get("X-Amz-Signature"))
    {
        return s3_error(403, code, message);
    }
    let segs: Vec<&str> = key.split('/').collect();
    match segs.as_slice() {
        [_user, _kind, _name, version, "archive.tar.gz"] => archive(&ctx, version).await,
        [_user, _kind, _name, version, "files", rest @ ..] => {
            let (version, member) = (version.to_string(), rest.join("/"));
            blocking(move || file_member(&ctx, &version, &member)).await
        }
        _ => no_such_key(),
    }
}

fn file_member(ctx: &Ctx, version: &str, member: &str) -> Response {
    match blobs::read_member(&ctx.store.blob_path(version), member) {
        Ok(Some(bytes)) => {
            ctx.stats.blob_download(version);
            let mut resp =
                ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
            resp.extensions_mut().insert(BlobBody);
            resp
        }
        _ => no_such_key(),
    }
}

/// `PUT /_upload/<session>/<upload id>`: the presigned PUT target. Unauthenticated, like S3; a request that
/// carries `Authorization` is served and counted (`upload_requests_with_token`). A body sent with
/// `Transfer-Encoding: chunked` (no length) is refused with 501 `NotImplemented`, as S3 refuses it.
pub(crate) async fn put(
    State(ctx): State<Arc<Ctx>>,
    Path((session, upload_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    ctx.stats
        .upload_put(headers.contains_key(header::AUTHORIZATION));
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // As S3 answers a streamed body of unknown length: a presigned PUT needs its Content-Length.
        return s3_error(
            501,
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
        );
    }
    let Some(target) = ctx.uploads.target(&session, &upload_id) else {
        return s3_error(404, "NoSuchUpload", "The specified upload does not exist.");
    };
    blocking(move || {
        if let Err(e) = std::fs::write(&target, &body) {
            return s3_error(
                500,
                "InternalError",
                &format!("Cannot store the object: {e}"),
            );
        }
        let etag = format!("\"{}\"", blobs::sha256_hex(&body));
        (StatusCode::OK, [(header::ETAG, etag)]).into_response()
    })
    .await
}

/// Any other method on the blob host.
pub(crate) async fn method_not_allowed() -> Response {
    s3_error(
        405,
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
    )
}
