//! The local VM0 API emulator (binary `vm0-emulator`): a real HTTP server on loopback that follows CONTRACT.md.
//!
//! Tests, the demo and the benchmarks run vm0fs against this server instead of api.vm0.ai, so it has to behave
//! like the platform where a client can tell the difference (status codes, error bodies, pagination, casing,
//! 302 downloads to an unauthenticated blob URL, runs that progress on their own, uploads that refuse what the
//! platform refuses) and it has to be controllable where the platform is not (injected faults, counters, raw
//! archives, a head moved behind the client's back, bulk data). It serves HTTP with axum on tokio, so requests
//! are parsed the way real servers parse them, and keeps its state in SQLite.
//!
//! The modules, in layers (each depends only on those above it):
//! - the state: `store` (records, persisted row by row in SQLite), `blobs` (archives and content hashes),
//!   `faults` (the fault config), `stats` (counters), `uploads` (upload sessions), `ctx` (all of it, shared);
//! - shared helpers: `reply` (query, JSON and error responses, pagination), `presign` (blob URLs), `catalog`
//!   (storages and versions as records), `sim` (how runs are born and move);
//! - handlers, one module per resource: `agents`, `runs`, `sse`, `storage`, `blobhost`, `control`, and the
//!   middleware in `layers` (token, counters, every fault);
//! - `router`, the only module that knows every handler, and `seed` (the demo dataset).
//!
//! The emulator shares only the wire models with the client (the `vm0-api` crate).

// Handlers' helpers return the error response itself (`Result<_, Response>`): one per failed request, so its
// size does not matter, and boxing it would only add noise to every handler.
#![allow(clippy::result_large_err)]

mod agents;
mod blobhost;
mod blobs;
mod catalog;
mod control;
mod ctx;
mod faults;
mod layers;
mod presign;
mod push;
mod reply;
mod router;
mod runs;
mod seed;
mod sim;
mod sse;
mod stats;
mod storage;
mod store;
mod sync;
mod uploads;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use axum::serve::ListenerExt;
use clap::{Parser, ValueEnum};

use ctx::{Ctx, DownloadMode, Timing};
use vm0_api::Casing;

/// Command line of `vm0-emulator`.
#[derive(Debug, Parser)]
#[command(
    name = "vm0-emulator",
    version,
    about = "A local emulator of the VM0 API v1 (agents, runs, volumes, artifacts) for tests and demos",
    long_about = "A local emulator of the VM0 API v1 (agents, runs, volumes, artifacts) for tests and demos.\n\n\
        Prints its base URL (http://HOST:PORT) as the first line of stdout, then serves until killed. \
        Every /v1/ route needs `Authorization: Bearer <token>`. State is kept under --data and survives a \
        restart.\n\n\
        Unauthenticated test routes:\n  \
        GET|POST /_control/faults     the fault config (POST replaces it: latency_ms, path_prefix, error_rate,\n                                \
        error_status, error_count, retry_after_secs, truncate_blobs, blob_bytes_per_sec,\n                                \
        blob_forbidden_count, bad_body, bad_body_count)\n  \
        GET  /_control/stats          counters: requests, requests_by_route, blob_downloads per version, blob_requests,\n                                \
        blob_requests_with_authorization, upload_puts, upload_requests_with_token,\n                                commits (accepted), runs_created\n  \
        POST /_control/storages/<volumes|artifacts>/raw?name=NAME   add a raw .tar.gz body as the head version\n  \
        POST /_control/storages/<volumes|artifacts>/<name>/head     a new head, as if another client published it:\n                                \
        {\"files\": {\"path\": \"content\" | null}, \"keep_head\": false, \"message\": null} (null removes a\n                                \
        path of the kept head; the storage is created if missing)\n  \
        POST /_control/generate/runs?count=N&moving=K               add N runs, completed but the K newest\n                                \
        (pending for a day)\n  \
        POST /_control/generate/storage?kind=&name=&big_file_mb=&small_files=&small_size=   a big version\n  \
        GET  /_storage/...  PUT /_upload/...   the presigned blob URLs that downloads redirect to and uploads PUT to\n\n\
        Uploads (POST /v1/<volumes|artifacts>/<id>/upload, PUT each file, POST .../commit) are refused as the API \
        refuses them: a commit missing a declared file is 409 upload_incomplete (the session stays open), a size or \
        hash mismatch is 400; a commit of no files makes an empty version (its download is 404).\n\n\
        The push flow of the platform's CLI is served too (POST /api/storages/prepare {storageName, storageType, \
        files}, PUT the archive and the manifest to the presigned URLs, POST /api/storages/commit), with camelCase \
        bodies and {\"error\":{\"message\",\"code\"}} errors; --no-v1-upload leaves it the only way to publish."
)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port (the URL printed on stdout says which).
    #[arg(long, default_value = "127.0.0.1:0", env = "VM0_EMULATOR_LISTEN")]
    listen: String,

    /// Directory holding the state (state.sqlite), the archives (blobs/) and the seed's sources (seed-src/).
    #[arg(long, env = "VM0_EMULATOR_DATA")]
    data: PathBuf,

    /// Fill an empty data directory with a dataset; does nothing if the directory was already seeded.
    #[arg(long, value_enum)]
    seed: Option<SeedKind>,

    /// Key casing of JSON bodies and query parameters (the API was snake_case until 2026-01-27, then camelCase).
    #[arg(long, value_enum, default_value_t = CasingArg::Snake)]
    casing: CasingArg,

    /// An accepted API token (repeat for several). Giving any replaces the default.
    #[arg(long = "token", default_value = "vm0_live_demo")]
    tokens: Vec<String>,

    /// How /download answers: a 302 to a presigned blob URL, 200 with the tar.gz, or the oldest JSON files[] form.
    #[arg(long, value_enum, default_value_t = DownloadMode::Redirect)]
    download_mode: DownloadMode,

    /// Milliseconds a new run stays `pending` before it starts running.
    #[arg(long, default_value_t = 1000)]
    run_pending_ms: u64,

    /// Milliseconds a run stays `running` before it reaches its end (completed, failed or timeout).
    #[arg(long, default_value_t = 6000)]
    run_duration_ms: u64,

    /// Milliseconds between log entries (and metric samples) of a running run.
    #[arg(long, default_value_t = 500)]
    log_interval_ms: u64,

    /// POST /v1/runs answers 429 once this many runs are pending or running.
    #[arg(long, default_value_t = 10)]
    max_concurrent_runs: usize,

    /// Fault: delay every /v1/ request by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,

    /// Fault: fail this fraction (0.0..1.0) of /v1/ requests with --error-status.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,

    /// Fault: the HTTP status of injected errors (5xx gives api_error, 429 gives rate_limited).
    #[arg(long, default_value_t = 503)]
    error_status: u16,

    /// Fault: blob downloads declare the full Content-Length but send about half the bytes and close.
    #[arg(long)]
    truncate_blobs: bool,

    /// Answer 404 to the /v1 create, upload and commit routes (CONTRACT.md 7.1), as the platform did from
    /// 2026-01-10: clients must create and publish with the push flow (POST /api/storages/prepare, PUT, POST
    /// /api/storages/commit).
    #[arg(long)]
    no_v1_upload: bool,

    /// Bytes a push may declare before prepare answers 413 PAYLOAD_TOO_LARGE (the platform's limit: 100 MiB).
    #[arg(long, default_value_t = 100 << 20)]
    max_push_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SeedKind {
    /// A small realistic dataset: agents, 36 runs in every status, volumes and artifacts.
    Demo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CasingArg {
    Snake,
    Camel,
}

/// Runs the emulator: loads or seeds the state, binds, prints the base URL, and serves until the process dies.
pub fn run(args: Args) -> Result<(), String> {
    let store = store::Store::open(&args.data)?;
    if args.seed == Some(SeedKind::Demo) {
        seed::demo(&store).map_err(|e| {
            format!(
                "seeding {} failed: {e}; remove the directory and try again",
                args.data.display()
            )
        })?;
    }
    let listener = TcpListener::bind(&args.listen).map_err(|e| {
        format!(
            "cannot listen on {}: {e}; pass another --listen (port 0 picks a free one)",
            args.listen
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let base_url = format!("http://{addr}");
    let faults = faults::FaultConfig {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        error_status: args.error_status,
        truncate_blobs: args.truncate_blobs,
        ..faults::FaultConfig::default()
    };
    faults.validate()?;
    let ctx = Arc::new(Ctx {
        store,
        casing: match args.casing {
            CasingArg::Snake => Casing::Snake,
            CasingArg::Camel => Casing::Camel,
        },
        tokens: args.tokens,
        download_mode: args.download_mode,
        max_concurrent_runs: args.max_concurrent_runs,
        timing: Timing {
            pending_ms: args.run_pending_ms,
            duration_ms: args.run_duration_ms,
            log_interval_ms: args.log_interval_ms.max(1),
        },
        faults: faults::Faults::new(faults),
        stats: stats::Stats::default(),
        base_url: base_url.clone(),
        uploads: uploads::Uploads::default(),
        v1_upload: !args.no_v1_upload,
        max_push_bytes: args.max_push_bytes,
    });

    let sim_ctx = ctx.clone();
    std::thread::Builder::new()
        .name("emu-simulator".into())
        .spawn(move || sim::simulator(sim_ctx))
        .map_err(|e| format!("cannot start the run simulator thread: {e}"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("emu-http")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the listener non-blocking: {e}"))?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{base_url}")
        .and_then(|_| stdout.flush())
        .map_err(|e| format!("cannot write the base URL to stdout: {e}"))?;
    drop(stdout);
    tracing::info!(%base_url, data = %args.data.display(), "vm0-emulator serving");

    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot serve on {addr}: {e}"))?
            .tap_io(|tcp| {
                // Small responses go out at once (no Nagle delay against the client's delayed ACKs).
                let _ = tcp.set_nodelay(true);
            });
        axum::serve(listener, router::router(ctx))
            .await
            .map_err(|e| format!("serving on {addr} failed: {e}"))
    })
}
