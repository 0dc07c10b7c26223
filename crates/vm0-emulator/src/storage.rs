//! Volumes and artifacts: metadata, version selection, downloads, the presigned blob route, and uploads.
//!
//! The two kinds share every line of code (CONTRACT.md 5: they differ only by path and the version's id key).
//! A download never streams from the API route itself in the default mode: it answers 302 to a presigned-style
//! URL on this same server (`/_storage/...`), which needs no token and counts the requests that carry one, so
//! tests can prove the client never leaks its token to the blob host. The URL is signed and dated like an S3
//! presigned URL and expires after an hour. Archives are built outside the state lock (they may be large) and
//! registered under it; a version whose id already exists keeps its first archive, so a version id's bytes never
//! change once served.

use std::fs;
use std::io;
use std::path::PathBuf;

use flate2::Compression;
use serde_json::{Value, json};

use super::blobs::{self, Source};
use super::http::{Body, Request, Response, percent_encode_path};
use super::routes::{api_error, body_json, invalid, json, newest_first, not_found, page, to_value};
use super::store::{State, StorageRec, Store, VersionRec, iso, new_id, now_ms};
use super::{Ctx, DownloadMode};
use vm0_api::{Storage, StorageDetail, StorageKind, StorageVersion};

/// Who the emulator says created versions.
pub(super) const USER_ID: &str = "user_emulator";
/// Seconds a presigned URL stays valid, as on the platform.
const PRESIGN_SECS: i64 = 3600;

fn kind_word(kind: StorageKind) -> &'static str {
    match kind {
        StorageKind::Volume => "volume",
        StorageKind::Artifact => "artifact",
    }
}

fn kind_from_word(word: &str) -> Option<StorageKind> {
    match word {
        "volume" | "volumes" => Some(StorageKind::Volume),
        "artifact" | "artifacts" => Some(StorageKind::Artifact),
        _ => None,
    }
}

fn no_such(kind: StorageKind, id: &str) -> Response {
    not_found(format!("No such {}: '{id}'", kind_word(kind)))
}

pub(super) fn version_value(kind: StorageKind, s: &StorageRec, v: &VersionRec) -> Value {
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

fn storage_value(s: &StorageRec) -> Value {
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

fn detail_value(kind: StorageKind, s: &StorageRec) -> Value {
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

pub(super) fn list(ctx: &Ctx, req: &Request, kind: StorageKind) -> Response {
    let st = ctx.store.lock();
    let all = st.storages(kind);
    let items = newest_first(all, |s| s.created_ms)
        .into_iter()
        .map(|i| (all[i].id.clone(), storage_value(&all[i])))
        .collect();
    page(ctx, req, items)
}

pub(super) fn get(ctx: &Ctx, kind: StorageKind, id: &str) -> Response {
    let st = ctx.store.lock();
    match st.storage(kind, id) {
        Some(s) => json(ctx, 200, detail_value(kind, s)),
        None => no_such(kind, id),
    }
}

pub(super) fn versions(ctx: &Ctx, req: &Request, kind: StorageKind, id: &str) -> Response {
    let st = ctx.store.lock();
    let Some(s) = st.storage(kind, id) else {
        return no_such(kind, id);
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
    page(ctx, req, items)
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 100
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || *c == b'-')
}

/// Creates an empty storage record (no versions) and returns its index.
pub(super) fn create_record(st: &mut State, kind: StorageKind, name: &str, at_ms: i64) -> usize {
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

/// `POST /v1/{volumes|artifacts}` `{name}` → 201 (CONTRACT.md 7.1 step 1).
pub(super) fn create(ctx: &Ctx, req: &Request, kind: StorageKind) -> Response {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return invalid("name", "Required: a `name` string");
    };
    if !valid_name(name) {
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
    let i = create_record(&mut st, kind, name, now_ms());
    let value = detail_value(kind, &st.storages(kind)[i]);
    ctx.store.save(&st);
    json(ctx, 201, value)
}

/// `DELETE /v1/{volumes|artifacts}/:id` → 204. Blobs stay on disk (another storage never shares them, but a
/// presigned URL handed out earlier keeps working until it expires, as on S3 with lazy deletion).
pub(super) fn delete(ctx: &Ctx, kind: StorageKind, id: &str) -> Response {
    let mut st = ctx.store.lock();
    let list = st.storages_mut(kind);
    let Some(i) = list.iter().position(|s| s.id == id) else {
        return no_such(kind, id);
    };
    list.remove(i);
    ctx.store.save(&st);
    Response::new(204, Body::Empty)
}

/// Resolves `latest`, a full id or a ≥ 8-hex prefix (CONTRACT.md 6.2); every failure is a 404.
fn resolve<'a>(
    kind: StorageKind,
    s: &'a StorageRec,
    selector: Option<&str>,
) -> Result<&'a VersionRec, Response> {
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

/// A presigned-style URL for a blob path on this server, dated now and valid for an hour.
fn presign(ctx: &Ctx, path: &str) -> String {
    let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let sig = signature(path, &date);
    format!(
        "{}{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}&X-Amz-Expires={PRESIGN_SECS}&X-Amz-Signature={sig}",
        ctx.base_url, path
    )
}

fn signature(path: &str, date: &str) -> String {
    blobs::sha256_hex(format!("vm0-emulator\n{path}\n{date}\n{PRESIGN_SECS}").as_bytes())
}

fn archive_path(kind: StorageKind, name: &str, version: &str) -> String {
    percent_encode_path(&format!(
        "/_storage/{USER_ID}/{}/{name}/{version}/archive.tar.gz",
        kind_word(kind)
    ))
}

/// `GET /v1/{volumes|artifacts}/:id/download[?version_id=|versionId=]` (CONTRACT.md 6.3, 6.5).
pub(super) fn download(ctx: &Ctx, req: &Request, kind: StorageKind, id: &str) -> Response {
    let st = ctx.store.lock();
    let Some(s) = st.storage(kind, id) else {
        return no_such(kind, id);
    };
    let v = match resolve(kind, s, req.query_any(&["version_id", "versionId"])) {
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
            let url = presign(ctx, &archive_path(kind, &s.name, &v.id));
            Response::new(302, Body::Empty).header("Location", url)
        }
        DownloadMode::Direct => {
            let vid = v.id.clone();
            drop(st);
            serve_blob_file(ctx, &vid)
        }
        DownloadMode::Files => {
            let files: Vec<Value> = v
                .files
                .iter()
                .map(|f| {
                    let path = percent_encode_path(&format!(
                        "/_storage/{USER_ID}/{}/{}/{}/files/{}",
                        kind_word(kind),
                        s.name,
                        v.id,
                        f.path
                    ));
                    json!({"path": f.path, "size": f.size, "download_url": presign(ctx, &path)})
                })
                .collect();
            json(
                ctx,
                200,
                json!({"version_id": v.id, "files": files,
                       "expires_at": iso(now_ms() + PRESIGN_SECS * 1000)}),
            )
        }
    }
}

/// An S3-style XML error, as the blob host answers.
fn s3_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
         <RequestId>{}</RequestId></Error>",
        uuid::Uuid::new_v4().simple()
    );
    Response::new(status, Body::Bytes(body.into_bytes())).header("Content-Type", "application/xml")
}

fn serve_blob_file(ctx: &Ctx, version_id: &str) -> Response {
    let path = ctx.store.blob_path(version_id);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => return s3_error(404, "NoSuchKey", "The specified key does not exist."),
    };
    let len = match file.metadata() {
        Ok(m) => m.len(),
        Err(_) => return s3_error(500, "InternalError", "Cannot read the stored object."),
    };
    ctx.stats.blob_download(version_id);
    let body: Box<dyn io::Read + Send> = match ctx.faults.blob_rate() {
        Some(rate) => Box::new(Throttled::new(file, rate)),
        None => Box::new(file),
    };
    let mut resp = Response::new(200, Body::Fixed(body, len))
        .header("Content-Type", "application/gzip")
        .header("ETag", format!("\"{version_id}\""))
        .header(
            "Content-Disposition",
            "attachment; filename=\"archive.tar.gz\"",
        );
    if ctx.faults.truncate_blobs() {
        resp.cut_after = Some(len / 2);
    }
    resp
}

/// A reader that hands out at most `rate` bytes per second, in slices of a tenth of that.
struct Throttled<R> {
    inner: R,
    rate: u64,
    started: std::time::Instant,
    sent: u64,
}

impl<R> Throttled<R> {
    fn new(inner: R, rate: u64) -> Throttled<R> {
        Throttled {
            inner,
            rate,
            started: std::time::Instant::now(),
            sent: 0,
        }
    }
}

impl<R: io::Read> io::Read for Throttled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let due = std::time::Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
        let slice = (self.rate / 10).max(1) as usize;
        let len = buf.len().min(slice);
        let n = self.inner.read(&mut buf[..len])?;
        self.sent += n as u64;
        Ok(n)
    }
}

/// `GET /_storage/<user>/<kind>/<name>/<version>/archive.tar.gz?X-Amz-...` (and `/files/<path>` for the legacy
/// per-file form): the unauthenticated blob host.
pub(super) fn blob_route(ctx: &Ctx, req: &Request, segs: &[&str]) -> Response {
    ctx.stats
        .blob_request(req.header("authorization").is_some());
    if req.method != "GET" && req.method != "HEAD" {
        return s3_error(
            405,
            "MethodNotAllowed",
            "Only GET and HEAD are allowed here.",
        );
    }
    if ctx.faults.take_blob_forbidden() {
        return s3_error(403, "AccessDenied", "Request has expired");
    }
    // Check the signature and expiry the way S3 would.
    let raw_path = req.path.as_str();
    let date = req.query("X-Amz-Date").unwrap_or("");
    if req.query("X-Amz-Signature") != Some(signature(raw_path, date).as_str()) {
        return s3_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    let issued = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map(|d| d.and_utc().timestamp_millis())
        .unwrap_or(0);
    if now_ms() > issued + PRESIGN_SECS * 1000 {
        return s3_error(403, "AccessDenied", "Request has expired");
    }
    match segs {
        [_user, _kind, _name, version, "archive.tar.gz"] => serve_blob_file(ctx, version),
        [_user, _kind, _name, version, "files", rest @ ..] => {
            let member = rest.join("/");
            match blobs::read_member(&ctx.store.blob_path(version), &member) {
                Ok(Some(bytes)) => {
                    ctx.stats.blob_download(version);
                    let len = bytes.len() as u64;
                    let mut resp = Response::new(200, Body::Bytes(bytes))
                        .header("Content-Type", "application/octet-stream");
                    if ctx.faults.truncate_blobs() {
                        let b = std::mem::replace(&mut resp.body, Body::Empty);
                        if let Body::Bytes(b) = b {
                            resp.body = Body::Fixed(Box::new(std::io::Cursor::new(b)), len);
                        }
                        resp.cut_after = Some(len / 2);
                    }
                    resp
                }
                _ => s3_error(404, "NoSuchKey", "The specified key does not exist."),
            }
        }
        _ => s3_error(404, "NoSuchKey", "The specified key does not exist."),
    }
}

/// An upload in progress (CONTRACT.md 7.1): the declared files and where their bytes land. Not persisted:
/// a restart forgets unfinished uploads, like expired presigned PUT URLs.
pub(super) struct UploadSession {
    kind: StorageKind,
    storage_id: String,
    message: Option<String>,
    dir: PathBuf,
    /// `(path, size, hash, upload_id)`.
    files: Vec<(String, u64, Option<String>, String)>,
}

fn valid_rel_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// `POST /v1/{volumes|artifacts}/:id/upload` `{files:[{path,size,hash?}], message?}`.
pub(super) fn upload(ctx: &Ctx, req: &Request, kind: StorageKind, id: &str) -> Response {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if ctx.store.lock().storage(kind, id).is_none() {
        return no_such(kind, id);
    }
    let Some(list) = body.get("files").and_then(Value::as_array) else {
        return invalid(
            "files",
            "Required: `files`, an array of {path, size, hash?}",
        );
    };
    let session_id = new_id();
    let mut files: Vec<(String, u64, Option<String>, String)> = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let path = f.get("path").and_then(Value::as_str).unwrap_or("");
        let Some(size) = f.get("size").and_then(Value::as_u64) else {
            return invalid(
                &format!("files.{i}.size"),
                "Expected a non-negative integer size",
            );
        };
        if !valid_rel_path(path) {
            return invalid(
                &format!("files.{i}.path"),
                format!(
                    "Invalid path {path:?}: use a relative path without '.', '..' or empty parts"
                ),
            );
        }
        if files.iter().any(|(p, ..)| p == path) {
            return invalid(
                &format!("files.{i}.path"),
                format!("Duplicate path {path:?}"),
            );
        }
        let hash = f
            .get("hash")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        files.push((path.to_string(), size, hash, new_id()));
    }
    let dir = ctx.store.dir().join("uploads").join(&session_id);
    if let Err(e) = fs::create_dir_all(&dir) {
        return api_error(
            500,
            "api_error",
            "internal_error",
            format!("Cannot stage the upload: {e}"),
            None,
        );
    }
    let targets: Vec<Value> = files
        .iter()
        .map(|(path, _, _, uid)| {
            let url = presign(ctx, &format!("/_upload/{session_id}/{uid}"));
            json!({"path": path, "upload_url": url, "upload_id": uid})
        })
        .collect();
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(String::from);
    ctx.uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            session_id.clone(),
            UploadSession {
                kind,
                storage_id: id.to_string(),
                message,
                dir,
                files,
            },
        );
    json(
        ctx,
        200,
        json!({"upload_session_id": session_id, "files": targets,
               "expires_at": iso(now_ms() + PRESIGN_SECS * 1000)}),
    )
}

/// `PUT /_upload/<session>/<upload id>`: the presigned PUT target. Unauthenticated, like S3.
pub(super) fn upload_put(ctx: &Ctx, req: &Request, segs: &[&str]) -> Response {
    if req.method != "PUT" {
        return s3_error(405, "MethodNotAllowed", "Only PUT is allowed here.");
    }
    let [session, upload_id] = segs else {
        return s3_error(404, "NoSuchUpload", "The specified upload does not exist.");
    };
    let dir = {
        let uploads = ctx.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match uploads.get(*session) {
            Some(s) if s.files.iter().any(|f| f.3 == *upload_id) => s.dir.clone(),
            _ => return s3_error(404, "NoSuchUpload", "The specified upload does not exist."),
        }
    };
    if let Err(e) = fs::write(dir.join(upload_id), &req.body) {
        return s3_error(
            500,
            "InternalError",
            &format!("Cannot store the object: {e}"),
        );
    }
    Response::new(200, Body::Empty).header("ETag", format!("\"{}\"", blobs::sha256_hex(&req.body)))
}

/// `POST /v1/{volumes|artifacts}/:id/commit` `{upload_session_id, message?}` → the new version.
pub(super) fn commit(ctx: &Ctx, req: &Request, kind: StorageKind, id: &str) -> Response {
    let body = match body_json(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(sid) = body.get("upload_session_id").and_then(Value::as_str) else {
        return invalid(
            "upload_session_id",
            "Required: `upload_session_id` from the upload call",
        );
    };
    let session = {
        let mut uploads = ctx.uploads.lock().unwrap_or_else(|e| e.into_inner());
        match uploads.get(sid) {
            Some(s) if s.kind == kind && s.storage_id == id => uploads.remove(sid),
            _ => None,
        }
    };
    let Some(session) = session else {
        return not_found(format!(
            "No such upload session: '{sid}' for {} '{id}'; start again with /upload",
            kind_word(kind)
        ));
    };
    let mut sources = Vec::new();
    let mut missing = Vec::new();
    for (path, size, hash, uid) in &session.files {
        let p = session.dir.join(uid);
        match fs::metadata(&p) {
            Ok(m) if m.len() == *size => {}
            Ok(m) => {
                return invalid(
                    "files",
                    format!(
                        "File {path:?} was declared with size {size} but {} bytes were uploaded",
                        m.len()
                    ),
                );
            }
            Err(_) => {
                missing.push(path.clone());
                continue;
            }
        }
        if let Some(h) = hash {
            let actual = fs::read(&p)
                .map(|b| blobs::sha256_hex(&b))
                .unwrap_or_default();
            if &actual != h {
                return invalid(
                    "files",
                    format!("File {path:?} does not match its declared hash"),
                );
            }
        }
        sources.push((path.clone(), Source::Disk(p)));
    }
    if !missing.is_empty() {
        // Keep the session so the client can upload what is missing and commit again.
        let message = format!("Upload incomplete: no bytes were PUT for {missing:?}");
        ctx.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sid.to_string(), session);
        return api_error(409, "conflict_error", "upload_incomplete", message, None);
    }
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(String::from)
        .or(session.message.clone());
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    let result = build_version(&ctx.store, id, &sources, message, Compression::default());
    let _ = fs::remove_dir_all(&session.dir);
    let v = match result {
        Ok(v) => v,
        Err(e) => {
            return api_error(
                500,
                "api_error",
                "internal_error",
                format!("Cannot build the archive: {e}"),
                None,
            );
        }
    };
    let mut st = ctx.store.lock();
    let Some(v) = register_version(&mut st, kind, id, v) else {
        return no_such(kind, id);
    };
    let Some(s) = st.storage(kind, id) else {
        return no_such(kind, id);
    };
    let value = version_value(kind, s, &v);
    ctx.store.save(&st);
    json(ctx, 200, value)
}

/// Writes the archive of `files` (in this order) for a storage and returns the version it makes, not yet
/// registered. A blob that already exists for that id is kept as it is.
pub(super) fn build_version(
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

/// Adds a version to a storage and makes it the head; an existing version with the same id (identical content)
/// becomes the head instead (deduplication). `None` if the storage is gone.
pub(super) fn register_version(
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

/// The storage id for `name`, creating the storage if it does not exist.
pub(super) fn ensure_storage(st: &mut State, kind: StorageKind, name: &str) -> String {
    if let Some(s) = st.storage_by_name(kind, name) {
        return s.id.clone();
    }
    let i = create_record(st, kind, name, now_ms());
    st.storages(kind)[i].id.clone()
}

/// Parses `volumes|artifacts` (or the singular) from a control route.
pub(super) fn parse_kind(word: &str) -> Option<StorageKind> {
    kind_from_word(word)
}
