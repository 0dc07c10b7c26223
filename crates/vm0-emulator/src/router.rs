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
use crate::{agents, blobhost, control, layers, runs, sse, storage};
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
