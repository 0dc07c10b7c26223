//! The counters of `GET /_control/stats`: what the client did, as plain numbers a test compares before and
//! after an action (requests, also by route, blob downloads per version, uploads, commits, and the requests that
//! carried the API token to the blob host, which must stay at 0). Requests by route (`GET /v1/runs/{id}`) let a
//! test say which requests an action cost, not only how many: a listing that must cost its pages and nothing else.

use crate::sync::Locked;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Counters {
    blob_downloads: BTreeMap<String, u64>,
    blob_requests: u64,
    blob_requests_with_authorization: u64,
    upload_puts: u64,
    upload_requests_with_token: u64,
    commits: u64,
    /// Commits of the push flow (CONTRACT.md 7.2), also counted in `commits`.
    push_commits: u64,
    /// `/v1` create, upload or commit calls answered 404 because the server runs with `--no-v1-upload`.
    v1_upload_refusals: u64,
    runs_created: u64,
    requests: u64,
    /// `METHOD /route/{param}` → requests, for every counted request.
    requests_by_route: BTreeMap<String, u64>,
}

impl Counters {
    pub fn into_json(self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[derive(Default)]
pub(crate) struct Stats(Mutex<Counters>);

impl Stats {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.0.locked()
    }

    pub fn snapshot(&self) -> Counters {
        self.lock().clone()
    }

    /// One request to `route` (`GET /v1/runs/{id}`).
    pub fn request(&self, route: String) {
        let mut s = self.lock();
        s.requests += 1;
        *s.requests_by_route.entry(route).or_default() += 1;
    }

    pub fn blob_request(&self, with_authorization: bool) {
        let mut s = self.lock();
        s.blob_requests += 1;
        if with_authorization {
            s.blob_requests_with_authorization += 1;
        }
    }

    pub fn upload_put(&self, with_authorization: bool) {
        let mut s = self.lock();
        s.upload_puts += 1;
        if with_authorization {
            s.upload_requests_with_token += 1;
        }
    }

    pub fn commit(&self) {
        self.lock().commits += 1;
    }

    pub fn push_commit(&self) {
        self.lock().push_commits += 1;
    }

    pub fn v1_upload_refused(&self) {
        self.lock().v1_upload_refusals += 1;
    }

    pub fn blob_download(&self, version_id: &str) {
        *self
            .lock()
            .blob_downloads
            .entry(version_id.to_string())
            .or_default() += 1;
    }

    pub fn run_created(&self) {
        self.lock().runs_created += 1;
    }
}
