//! Every route of the emulator in one place, with the middleware around each group.
//!
//! This is the only module that knows all the handlers. The groups, from the outside in:
//! `/_control/…` (the test's hands: no token, no faults, not counted); the API `/v1/…` (counted, faults, then the
//! token check); the blob host `/_storage/…` and `/_upload/…` (counted, faults, blob counters and the blob body
//! faults, no token). Volumes and artifacts share their handlers: each kind's routes carry the kind as an
//! `Extension`. Anything unmatched is the API's 404 error body, including a known path with another method,
//! as the platform's catch-all route answers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension};
use axum::http::{Method, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{get, post, put};

use crate::ctx::Ctx;
use crate::reply::api_error;
use crate::{agents, blobhost, control, layers, push, runs, sse, storage};
use vm0_api::StorageKind;

/// Request bodies up to 1 GiB (uploads and raw archives are held in memory).
const MAX_BODY: usize = 1 << 30;

pub(crate) fn router(ctx: Arc<Ctx>) -> Router {
    let api = Router::new()
        .route("/v1/agents", get(agents::list))
        .route("/v1/agents/{id}", get(agents::get))
        .route("/v1/agents/{id}/versions", get(agents::versions))
        .route("/v1/runs", get(runs::list).post(runs::create))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/logs", get(runs::logs))
        .route("/v1/runs/{id}/metrics", get(runs::metrics))
        .route("/v1/runs/{id}/events", get(sse::events))
        .merge(storage_routes(StorageKind::Volume))
        .merge(storage_routes(StorageKind::Artifact))
        .route("/api/storages/prepare", post(push::prepare))
        .route("/api/storages/commit", post(push::commit))
        .route_layer(from_fn_with_state(ctx.clone(), layers::require_token));
    let blob_host = Router::new()
        .route(
            "/_storage/{*key}",
            get(blobhost::get).fallback(blobhost::method_not_allowed),
        )
        .route_layer(from_fn_with_state(ctx.clone(), layers::blob_bodies))
        .route_layer(from_fn_with_state(ctx.clone(), layers::blob_requests))
        .route(
            "/_upload/{session}/{upload_id}",
            put(blobhost::put).fallback(blobhost::method_not_allowed),
        );
    let served = api
        .merge(blob_host)
        .route_layer(from_fn_with_state(ctx.clone(), layers::api_faults))
        .route_layer(from_fn_with_state(ctx.clone(), layers::count_requests));
    let control = Router::new()
        .route("/_control/health", get(control::health))
        .route(
            "/_control/faults",
            get(control::faults).post(control::set_faults),
        )
        .route("/_control/stats", get(control::stats))
        .route("/_control/generate/runs", post(control::generate_runs))
        .route(
            "/_control/generate/storage",
            post(control::generate_storage),
        )
        .route("/_control/storages/{kind}/raw", post(control::raw_archive))
        .route(
            "/_control/storages/{kind}/{name}/head",
            post(control::move_head),
        );
    served
        .merge(control)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// The routes of one storage kind (CONTRACT.md 5, 6, 7.1).
fn storage_routes(kind: StorageKind) -> Router<Arc<Ctx>> {
    let base = format!("/v1/{}", kind.plural());
    Router::new()
        .route(&base, get(storage::list).post(storage::create))
        .route(
            &format!("{base}/{{id}}"),
            get(storage::get).delete(storage::delete),
        )
        .route(&format!("{base}/{{id}}/versions"), get(storage::versions))
        .route(&format!("{base}/{{id}}/download"), get(storage::download))
        .route(&format!("{base}/{{id}}/upload"), post(storage::upload))
        .route(&format!("{base}/{{id}}/commit"), post(storage::commit))
        .layer(Extension(kind))
}

async fn no_route(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let message = if path.starts_with("/_control/") {
        format!("No control route {method} {path}: see `vm0-emulator --help`")
    } else {
        format!("No route for {method} {path}: see CONTRACT.md section 2 for the endpoints")
    };
    api_error(404, "not_found_error", "resource_not_found", message, None)
}

/// The router without a socket: requests go through `oneshot`, so these check routing and the middleware alone.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{DownloadMode, Timing};
    use crate::faults::{FaultConfig, Faults};
    use crate::stats::Stats;
    use crate::store::Store;
    use crate::uploads::Uploads;
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode, header};
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use vm0_api::Casing;

    const TOKEN: &str = "t0ken";

    fn app(dir: &std::path::Path) -> (Router, Arc<Ctx>) {
        let ctx = Arc::new(Ctx {
            store: Store::open(dir).unwrap(),
            casing: Casing::Snake,
            tokens: vec![TOKEN.into()],
            download_mode: DownloadMode::Redirect,
            max_concurrent_runs: 10,
            timing: Timing {
                pending_ms: 1000,
                duration_ms: 1000,
                log_interval_ms: 100,
            },
            faults: Faults::new(FaultConfig::default()),
            stats: Stats::default(),
            base_url: "http://emulator.test".into(),
            uploads: Uploads::default(),
            v1_upload: true,
            max_push_bytes: 100 << 20,
        });
        (router(ctx.clone()), ctx)
    }

    async fn send(
        app: &Router,
        method: &str,
        uri: &str,
        token: bool,
        body: &str,
    ) -> axum::response::Response {
        let mut req = Request::builder().method(method).uri(uri);
        if token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        app.clone().oneshot(req).await.unwrap()
    }

    async fn json_of(resp: axum::response::Response) -> Value {
        serde_json::from_slice(&to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_are_json_404s() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = app(dir.path());
        for (method, uri) in [
            ("GET", "/v1/nowhere"),
            ("DELETE", "/v1/runs"),
            ("GET", "/_control/nothing"),
        ] {
            let resp = send(&app, method, uri, true, "").await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {uri}");
            let body = json_of(resp).await;
            assert_eq!(body["error"]["type"], "not_found_error");
            assert!(body["error"]["message"].as_str().unwrap().contains(uri));
        }
    }

    #[tokio::test]
    async fn the_api_wants_the_token_and_the_control_routes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (app, ctx) = app(dir.path());
        let resp = send(&app, "GET", "/v1/volumes", false, "").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(resp).await["error"]["code"], "invalid_api_key");
        let resp = send(&app, "GET", "/v1/volumes", true, "").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = send(&app, "GET", "/_control/stats", false, "").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            json_of(resp).await["requests"],
            2,
            "control routes are not counted"
        );
        let stats = ctx.stats.snapshot().into_json();
        assert_eq!(stats["requests"], 2);
        assert_eq!(
            stats["requests_by_route"],
            json!({"GET /v1/volumes": 2}),
            "counted by route"
        );
    }

    #[tokio::test]
    async fn injected_errors_carry_retry_after_and_count_down() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = app(dir.path());
        let faults = json!({"error_count": 1, "error_status": 503, "retry_after_secs": 7});
        let resp = send(&app, "POST", "/_control/faults", false, &faults.to_string()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = send(&app, "GET", "/v1/agents", true, "").await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        assert_eq!(json_of(resp).await["error"]["type"], "api_error");
        let resp = send(&app, "GET", "/v1/agents", true, "").await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_bad_body_replaces_the_answer_of_a_matching_route_only() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = app(dir.path());
        let faults = json!({"bad_body": "<html>proxy</html>", "bad_body_count": 1,
                            "path_prefix": "/v1/runs"});
        send(&app, "POST", "/_control/faults", false, &faults.to_string()).await;
        let resp = send(&app, "GET", "/v1/agents", true, "").await;
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let resp = send(&app, "GET", "/v1/runs", true, "").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/html");
        let resp = send(&app, "GET", "/v1/runs", true, "").await;
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
    }

    /// The archive URL a download of volume `name` redirects to, as a path and query on this router.
    async fn blob_path(app: &Router, name: &str) -> String {
        let head = json!({"files": {"a.txt": "x".repeat(10_000)}});
        let uri = format!("/_control/storages/volumes/{name}/head");
        let resp = send(app, "POST", &uri, false, &head.to_string()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let list = json_of(send(app, "GET", "/v1/volumes", true, "").await).await;
        let id = list["data"][0]["id"].as_str().unwrap().to_string();
        let resp = send(app, "GET", &format!("/v1/volumes/{id}/download"), true, "").await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = resp.headers()[header::LOCATION].to_str().unwrap();
        location
            .strip_prefix("http://emulator.test")
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn blobs_declare_their_length_and_a_cut_body_ends_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (app, ctx) = app(dir.path());
        let path = blob_path(&app, "cut").await;
        let resp = send(&app, "GET", &path, false, "").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let declared: usize = resp.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            to_bytes(resp.into_body(), usize::MAX).await.unwrap().len(),
            declared
        );

        ctx.faults.lock().truncate_blobs = true;
        let resp = send(&app, "GET", &path, false, "").await;
        assert_eq!(
            resp.headers()[header::CONTENT_LENGTH],
            declared.to_string().as_str()
        );
        assert!(to_bytes(resp.into_body(), usize::MAX).await.is_err());

        ctx.faults.lock().blob_forbidden_count = 1;
        let resp = send(&app, "GET", &path, true, "").await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let stats = ctx.stats.snapshot().into_json();
        assert_eq!(stats["blob_requests"], 3);
        assert_eq!(stats["blob_requests_with_authorization"], 1);
    }

    #[tokio::test]
    async fn the_push_flow_wants_its_uploads_and_answers_uppercase_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (app, ctx) = app(dir.path());
        let files = json!([{"path": "a.txt", "hash": "ab".repeat(32), "size": 3}]);
        let prepare = json!({"storageName": "pushed", "storageType": "volume", "files": files});
        let resp = send(
            &app,
            "POST",
            "/api/storages/prepare",
            true,
            &prepare.to_string(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let prepared = json_of(resp).await;
        assert_eq!(prepared["existing"], false);
        assert!(prepared["uploads"]["archive"]["presignedUrl"].is_string());
        assert_eq!(
            ctx.store.lock().storages(StorageKind::Volume).len(),
            1,
            "created by prepare"
        );
        let commit = json!({"storageName": "pushed", "storageType": "volume", "files": files,
                            "versionId": prepared["versionId"]});
        let resp = send(
            &app,
            "POST",
            "/api/storages/commit",
            true,
            &commit.to_string(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        let body = json_of(resp).await;
        assert_eq!(body["error"]["code"], "CONFLICT");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("archive.tar.gz")
        );
        let big = json!({"storageName": "pushed", "storageType": "volume",
                         "files": [{"path": "b", "hash": "cd".repeat(32), "size": 200u64 << 20}]});
        let resp = send(
            &app,
            "POST",
            "/api/storages/prepare",
            true,
            &big.to_string(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(json_of(resp).await["error"]["code"], "PAYLOAD_TOO_LARGE");
    }

    #[tokio::test]
    async fn a_blob_url_with_another_signature_or_method_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = app(dir.path());
        let path = blob_path(&app, "signed").await;
        let forged = format!("{}0", path);
        let resp = send(&app, "GET", &forged, false, "").await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let resp = send(&app, "DELETE", &path, false, "").await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
