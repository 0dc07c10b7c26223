//! The volume and artifact routes (CONTRACT.md 5, 6, 7.1): lists, detail, versions, create, delete, download,
//! and the three-step upload.
//!
//! One handler serves both kinds: the router gives each kind's routes an `Extension<StorageKind>`. A download
//! never streams from the API route itself in the default mode: it answers 302 to a presigned URL on the blob
//! host (`blobhost`), which needs no token, so tests can prove the client never leaks its token there. A commit
//! refuses what a real server refuses: a declared file whose bytes were never PUT (409, and the session stays
//! open so the client can PUT what is missing and commit again), a size or hash that does not match (400). A
//! commit of no files at all makes an empty version: the API accepted it (it has a `version has no files` 404
//! for its download), so the emulator does too.

use std::fs;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use serde_json::{Value, json};

use crate::blobhost;
use crate::blobs::{self, Source};
use crate::catalog::{self, detail_value, storage_value, version_value};
use crate::ctx::{Ctx, DownloadMode};
use crate::presign::{PRESIGN_SECS, archive_path, kind_word, member_path, presign};
use crate::reply::{
    Params, api_error, blocking, body_json, internal, invalid, json, newest_first, not_found, page,
};
use crate::store::{Row, iso, new_id, now_ms};
use crate::uploads::{Declared, UploadSession};
use vm0_api::StorageKind;

type Ext = Extension<StorageKind>;

fn no_such(kind: StorageKind, id: &str) -> Response {
    not_found(format!("No such {}: '{id}'", kind_word(kind)))
}

pub(crate) async fn list(State(ctx): State<Arc<Ctx>>, Extension(kind): Ext, q: Params) -> Response {
    let st = ctx.store.lock();
    let all = st.storages(kind);
    let items = newest_first(all, |s| s.created_ms)
        .into_iter()
        .map(|i| (all[i].id.clone(), storage_value(&all[i])))
        .collect();
    page(&ctx, &q, items)
}

pub(crate) async fn get(
    State(ctx): State<Arc<Ctx>>,
    Extension(kind): Ext,
    Path(id): Path<String>,
) -> Response {
    let st = ctx.store.lock();
    match st.storage(kind, &id) {
        Some(s) => json(&ctx, 200, detail_value(kind, s)),
        None => no_such(kind, &id),
    }
}

pub(crate) async fn versions(
    State(ctx): State<Arc<Ctx>>,
    Extension(kind): Ext,
    Path(id): Path<String>,
    q: Params,
) -> Response {
    let st = ctx.store.lock();
    let Some(s) = st.storage(kind, &id) else {
        return no_such(kind, &id);
    };
    let items = newest_first(&s.versions, |v| v.created_ms)
        .into_iter()
        .map(|i| {
            (
                s.versions[i].id.clone(),
                version_value(kind, s, &s.versions[i]),
            )
        })
        .collect();
    page(&ctx, &q, items)
}

/// `POST /v1/{volumes|artifacts}` `{name}` → 201 (CONTRACT.md 7.1 step 1).
pub(crate) async fn create(
    State(ctx): State<Arc<Ctx>>,
    Extension(kind): Ext,
    body: Bytes,
) -> Response {
    if !ctx.v1_upload {
        return no_v1_upload(&ctx, kind, "", "");
    }
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return invalid("name", "Required: a `name` string");
    };
    if !catalog::valid_name(name) {
        return invalid(
            "name",
            "Name must be 1-100 characters of lowercase letters, digits and hyphens, \
             starting and ending with a letter or digit",
        );
    }
    let mut st = ctx.store.lock();
    if st.storage_by_name(kind, name).is_some() {
        return api_error(
            409,
            "conflict_error",
            "resource_already_exists",
            format!("{} '{name}' already exists", kind.title()),
            None,
        );
    }
    let i = catalog::create_record(&mut st, kind, name, now_ms());
    let s = &st.storages(kind)[i];
    ctx.store.write(&[Row::Storage(kind, s)]);
    json(&ctx, 201, detail_value(kind, s))
}

/// `DELETE /v1/{volumes|artifacts}/:id` → 204. Blobs stay on disk (another storage never shares them, but a
/// presigned URL handed out earlier keeps working until it expires, as on S3 with lazy deletion).
pub(crate) async fn delete(
    State(ctx): State<Arc<Ctx>>,
    Extension(kind): Ext,
    Path(id): Path<String>,
) -> Response {
    let mut st = ctx.store.lock();
    let list = st.storages_mut(kind);
    let Some(i) = list.iter().position(|s| s.id == id) else {
        return no_such(kind, &id);
    };
    list.remove(i);
    ctx.store.write(&[Row::DeletedStorage(&id)]);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /v1/{volumes|artifacts}/:id/download[?version_id=|versionId=]` (CONTRACT.md 6.3, 6.5).
pub(crate) async fn download(
    State(ctx): State<Arc<Ctx>>,
    Extension(kind): Ext,
    Path(id): Path<String>,
    q: Params,
) -> Response {
    let version_id = {
        let st = ctx.store.lock();
        let Some(s) = st.storage(kind, &id) else {
            return no_such(kind, &id);
        };
        let v = match catalog::resolve(kind, s, q.get_any(&["version_id", "versionId"])) {
            Ok(v) => v,
            Err(r) => return r,
        };
        if v.file_count == 0 || !v.has_blob {
            return not_found(format!(
                "{} '{}' version has no files",
                kind.title(),
                s.name
            ));
        }
        match ctx.download_mode {
            DownloadMode::Redirect => {
                let url = presign(&ctx, &archive_path(kind, &s.name, &v.id));
                return (StatusCode::FOUND, [(header::LOCATION, url)]).into_response();
            }
            DownloadMode::Files => {
                let files: Vec<Value> = v
                    .files
                    .iter()
                    .map(|f| {
                        let url = presign(&ctx, &member_path(kind, &s.name, &v.id, &f.path));
                        json!({"path": f.path, "size": f.size, "download_url": url})
                    })
                    .collect();
                return json(
                    &ctx,
                    200,
                    json!({"version_id": v.id, "files": files,
                           "expires_at": iso(now_ms() + PRESIGN_SECS * 1000)}),
                );
            }
            DownloadMode::Direct => v.id.clone(),
        }
    };
    blobhost::archive(&ctx, &version_id).await
}

/// `POST /v1/{volumes|artifacts}/:id/upload` `{files:[{path,size,hash?}], message?}`.
/// The 404 of a server without the `/v1` upload routes (`--no-v1-upload`), as the router answers unknown routes.
fn no_v1_upload(ctx: &Ctx, kind: StorageKind, id: &str, step: &str) -> Response {
    ctx.stats.v1_upload_refused();
    let path = [kind.plural(), id, step]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    not_found(format!(
        "No route for POST /v1/{path}: see CONTRACT.md section 2 for the endpoints"
    ))
}

pub(crate) async fn upload(
    State(ctx): State<Arc<Ctx>>,
    Extension(kind): Ext,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !ctx.v1_upload {
        return no_v1_upload(&ctx, kind, &id, "upload");
    }
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if ctx.store.lock().storage(kind, &id).is_none() {
        return no_such(kind, &id);
    }
    let Some(list) = body.get("files").and_then(Value::as_array) else {
        return invalid(
            "files",
            "Required: `files`, an array of {path, size, hash?}",
        );
    };
    let mut files: Vec<Declared> = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let path = f.get("path").and_then(Value::as_str).unwrap_or("");
        let Some(size) = f.get("size").and_then(Value::as_u64) else {
            return invalid(
                &format!("files.{i}.size"),
                "Expected a non-negative integer size",
            );
        };
        if !catalog::valid_rel_path(path) {
            return invalid(
                &format!("files.{i}.path"),
                format!(
                    "Invalid path {path:?}: use a relative path without '.', '..' or empty parts"
                ),
            );
        }
        if files.iter().any(|d| d.path == path) {
            return invalid(
                &format!("files.{i}.path"),
                format!("Duplicate path {path:?}"),
            );
        }
        let hash = f
            .get("hash")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        files.push(Declared {
            path: path.to_string(),
            size,
            hash,
            upload_id: new_id(),
        });
    }
    let session_id = new_id();
    let dir = ctx.store.dir().join("uploads").join(&session_id);
    if let Err(e) = fs::create_dir_all(&dir) {
        return internal(format!("Cannot stage the upload: {e}"));
    }
    let targets: Vec<Value> = files
        .iter()
        .map(|d| {
            let url = presign(&ctx, &format!("/_upload/{session_id}/{}", d.upload_id));
            json!({"path": d.path, "upload_url": url, "upload_id": d.upload_id})
        })
        .collect();
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(String::from);
    ctx.uploads.insert(
        session_id.clone(),
        UploadSession {
            kind,
            storage_id: id,
            message,
            dir,
            files,
        },
    );
    json(
        &ctx,
        200,
        json!({"upload_session_id": session_id, "files": targets,
               "expires_at": iso(now_ms() + PRESIGN_SECS * 1000)}),
    )
}

/// `POST /v1/{volumes|artifacts}/:id/commit` `{upload_session_id, message?}` → the new version.
pub(crate) async fn commit(
    State(ctx): State<Arc<Ctx>>,
    Extension(kind): Ext,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if !ctx.v1_upload {
        return no_v1_upload(&ctx, kind, &id, "commit");
    }
    let body = match body_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    blocking(move || commit_session(&ctx, kind, &id, &body)).await
}

fn commit_session(ctx: &Ctx, kind: StorageKind, id: &str, body: &Value) -> Response {
    let Some(sid) = body.get("upload_session_id").and_then(Value::as_str) else {
        return invalid(
            "upload_session_id",
            "Required: `upload_session_id` from the upload call",
        );
    };
    let Some(session) = ctx.uploads.take(sid, kind, id) else {
        return not_found(format!(
            "No such upload session: '{sid}' for {} '{id}'; start again with /upload",
            kind_word(kind)
        ));
    };
    let sources = match staged_sources(&session) {
        Ok(s) => s,
        Err(Refusal::Missing(missing)) => {
            // Keep the session so the client can upload what is missing and commit again.
            let message = format!(
                "Upload incomplete: no bytes were PUT for {} of the {} declared files ({}); PUT them to \
                 their upload URLs and commit again",
                missing.len(),
                session.files.len(),
                missing.join(", ")
            );
            ctx.uploads.insert(sid.to_string(), session);
            return api_error(409, "conflict_error", "upload_incomplete", message, None);
        }
        Err(Refusal::Mismatch(message)) => return invalid("files", message),
    };
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(String::from)
        .or(session.message.clone());
    let result = catalog::build_version(&ctx.store, id, &sources, message, Compression::default());
    let _ = fs::remove_dir_all(&session.dir);
    let v = match result {
        Ok(v) => v,
        Err(e) => return internal(format!("Cannot build the archive: {e}")),
    };
    let mut st = ctx.store.lock();
    match catalog::publish(&ctx.store, &mut st, kind, id, v) {
        Some((_, value)) => {
            ctx.stats.commit();
            json(ctx, 200, value)
        }
        None => no_such(kind, id),
    }
}

/// Why the staged bytes of a session cannot be committed.
enum Refusal {
    /// Declared files that were never PUT (the paths).
    Missing(Vec<String>),
    /// A file whose size or hash is not what was declared.
    Mismatch(String),
}

/// The session's files as archive sources, sorted by path, once every declared file is there as declared.
fn staged_sources(session: &UploadSession) -> Result<Vec<(String, Source)>, Refusal> {
    let mut sources = Vec::new();
    let mut missing = Vec::new();
    for f in &session.files {
        let p = session.staged(f);
        match fs::metadata(&p) {
            Ok(m) if m.len() == f.size => {}
            Ok(m) => {
                return Err(Refusal::Mismatch(format!(
                    "File {:?} was declared with size {} but {} bytes were uploaded",
                    f.path,
                    f.size,
                    m.len()
                )));
            }
            Err(_) => {
                missing.push(f.path.clone());
                continue;
            }
        }
        if let Some(h) = &f.hash {
            let actual = fs::read(&p)
                .map(|b| blobs::sha256_hex(&b))
                .unwrap_or_default();
            if &actual != h {
                return Err(Refusal::Mismatch(format!(
                    "File {:?} does not match its declared hash",
                    f.path
                )));
            }
        }
        sources.push((f.path.clone(), Source::Disk(p)));
    }
    if !missing.is_empty() {
        return Err(Refusal::Missing(missing));
    }
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(sources)
}
