//! The API objects the tree is made of, fetched through TTL caches.
//!
//! Each method answers from its cache while the value is fresh and asks the API otherwise. Freshness follows
//! DESIGN.md: listings for `--metadata-ttl`; a run that is still moving for one second; a terminal run, its logs,
//! metrics and output forever (they cannot change any more); storage versions forever once seen, since a version
//! id is a content hash.
//!
//! When the API cannot be reached, a value seen before is served however old: from memory, or else from what was
//! saved in the cache directory by this mount or an earlier one (`saved`), so that cached archives stay reachable
//! across a remount during an outage. Since when the API has been unreachable is kept for `vm0fs status`.

use crate::sync::Locked;
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{Error, Result};
use super::runs::listing::{Runs, RunsListing};
use super::saved::Saved;
use super::ttl::{Ttl, TtlMap};
use super::waiting::may_wait;
use crate::api::models::{
    Agent, AgentVersion, Run, RunDetail, RunMetrics, SseEvent, Storage, StorageKind, StorageVersion,
};
use crate::api::{ApiError, ApiErrorKind, Vm0Api};

/// How long a run that is not terminal is believed: the issue asks for status at most a second or two stale.
const MOVING_RUN_TTL: Duration = Duration::from_secs(1);

/// `runs/` lists new runs within two seconds even with a long `--metadata-ttl`.
const RUNS_LISTING_TTL: Duration = Duration::from_secs(2);

pub struct Meta {
    api: Arc<dyn Vm0Api>,
    listing_ttl: Duration,
    agents: TtlMap<(), Vec<Agent>>,
    agent_versions: TtlMap<String, Vec<AgentVersion>>,
    runs: RunsListing,
    latest_run: TtlMap<(), Option<Run>>,
    run_details: TtlMap<String, RunDetail>,
    run_metrics: TtlMap<String, RunMetrics>,
    run_outputs: TtlMap<String, Option<String>>,
    storages: TtlMap<StorageKind, Vec<Storage>>,
    storage_versions: TtlMap<String, Vec<StorageVersion>>,
    saved: Saved,
    /// When the API last failed to answer, while it has not answered since.
    unreachable_since: Mutex<Option<SystemTime>>,
}

impl Meta {
    pub fn new(api: Arc<dyn Vm0Api>, listing_ttl: Duration, saved: Saved) -> Self {
        Meta {
            api,
            saved,
            unreachable_since: Mutex::new(None),
            listing_ttl,
            agents: TtlMap::new(),
            agent_versions: TtlMap::new(),
            runs: RunsListing::new(),
            latest_run: TtlMap::new(),
            run_details: TtlMap::new(),
            run_metrics: TtlMap::new(),
            run_outputs: TtlMap::new(),
            storages: TtlMap::new(),
            storage_versions: TtlMap::new(),
        }
    }

    pub fn api(&self) -> &Arc<dyn Vm0Api> {
        &self.api
    }

    /// Since when the API has not been reachable (`None`: it answered last time it was asked): since the client
    /// holds calls back (it could not connect), or since an answer the retries could not get (a 5xx storm).
    pub fn unreachable_since(&self) -> Option<SystemTime> {
        let failing = *self.unreachable_since.locked();
        self.api.reachability().unreachable_since.or(failing)
    }

    fn set_reachable(&self, reachable: bool) {
        let mut since = self.unreachable_since.locked();
        match (reachable, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(SystemTime::now()),
            (false, Some(_)) => {}
        }
    }

    /// `map`'s value for `key` if fresh, else the API's (saved as `kind`/`name` for later outages); when the API
    /// cannot be reached (after the client's retries), the value seen before, from memory or else as saved,
    /// however old, made fresh for another TTL. Answers the API gave (404, 401, ...) are never papered over.
    fn fetch<K, V>(
        &self,
        map: &TtlMap<K, V>,
        (kind, key, name): (&str, &K, &str),
        fetch: impl FnOnce() -> std::result::Result<V, ApiError>,
        ttl_of: impl Fn(&V) -> Ttl,
    ) -> Result<Arc<V>>
    where
        K: Eq + std::hash::Hash + Clone,
        V: Serialize + DeserializeOwned,
    {
        if let Some(fresh) = map.fresh(key) {
            return Ok(fresh);
        }
        // A value that is not fresh is fetched only where waiting is allowed (see `waiting`).
        may_wait()?;
        let fetched = Cell::new(false);
        let answer = map.get_or_fetch(
            key,
            || {
                let value = fetch();
                fetched.set(value.is_ok());
                value
            },
            &ttl_of,
        );
        match answer {
            Ok(value) => {
                if fetched.get() {
                    self.set_reachable(true);
                    self.saved.save(kind, name, &*value);
                }
                Ok(value)
            }
            Err(e) if e.is_retryable() => {
                // A client that holds calls back knows itself when the API is out of reach, and when it is back.
                if self.api.reachability().unreachable_since.is_none() {
                    self.set_reachable(false);
                }
                let stale = map.last(key).or_else(|| {
                    let saved: V = self.saved.load(kind, name)?;
                    let ttl = ttl_of(&saved);
                    Some(map.put(key.clone(), saved, ttl))
                });
                match stale {
                    Some(stale) => {
                        // Held back: the outage was announced once (`api::http::health`).
                        if e.kind == ApiErrorKind::Offline {
                            tracing::debug!("{e}; serving what was known before, for another TTL");
                        } else {
                            tracing::warn!("{e}; serving what was known before, for another TTL");
                        }
                        map.refresh(key, ttl_of(&stale));
                        Ok(stale)
                    }
                    None => Err(e.into()),
                }
            }
            Err(e) => {
                self.set_reachable(true);
                Err(e.into())
            }
        }
    }

    fn listing(&self) -> Ttl {
        Ttl::For(self.listing_ttl)
    }

    fn run_ttl(&self) -> Ttl {
        Ttl::For(MOVING_RUN_TTL.min(self.listing_ttl))
    }

    pub fn agents(&self) -> Result<Arc<Vec<Agent>>> {
        let ttl = self.listing();
        self.fetch(
            &self.agents,
            ("agents", &(), "all"),
            || self.api.list_agents(),
            |_| ttl,
        )
    }

    pub fn agent(&self, name: &str) -> Result<Agent> {
        self.agents()?
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("agents/{name}")))
    }

    pub fn agent_versions(&self, agent_id: &str) -> Result<Arc<Vec<AgentVersion>>> {
        let ttl = self.listing();
        self.fetch(
            &self.agent_versions,
            ("agent_versions", &agent_id.to_string(), agent_id),
            || self.api.list_agent_versions(agent_id),
            |_| ttl,
        )
    }

    fn runs_ttl(&self) -> Duration {
        self.listing_ttl.min(RUNS_LISTING_TTL)
    }

    /// Every run, newest first (see `runs::listing`).
    pub fn runs(&self) -> Result<Arc<Runs>> {
        self.runs_streamed(&mut |_| {})
    }

    /// Whether a first listing of every run went through (later ones only refresh from the top).
    pub fn runs_listed(&self) -> bool {
        self.runs.is_complete()
    }

    /// `runs`, handing each page of a first listing to `on_page` as it arrives.
    pub fn runs_streamed(&self, on_page: &mut dyn FnMut(&[Run])) -> Result<Arc<Runs>> {
        if let Some(runs) = self.runs.fresh(self.runs_ttl()) {
            return Ok(runs);
        }
        may_wait()?;
        Ok(self
            .runs
            .current(self.api.as_ref(), self.runs_ttl(), on_page)?)
    }

    /// The run as the last listing of `runs/` saw it, however old, without asking the API: enough to know that a
    /// run exists (runs are not deleted).
    pub fn listed_run(&self, id: &str) -> Option<Run> {
        self.runs.last().get(id).cloned()
    }

    /// The run as a listing of `runs/` shows it now, to date its directory: `ls -l runs/` costs the listing's
    /// pages, not one request per run. A run that had ended when listed cannot change; any other comes from a
    /// listing younger than its TTL (a page of a first listing too), else from a refresh of the listing (which meets
    /// every moving run again, see `runs::listing`). `None` when no listing holds the run, or while a first listing
    /// that stopped halfway is all there is: its files' detail says then.
    pub fn listed_run_now(&self, id: &str) -> Result<Option<Run>> {
        match self.runs.last().get(id) {
            None => return Ok(None),
            Some(run) if run.status.is_terminal() => return Ok(Some(run.clone())),
            Some(_) => {}
        }
        if let Some(recent) = self.runs.recent(self.runs_ttl()) {
            return Ok(recent.get(id).cloned());
        }
        if !self.runs.is_complete() {
            return Ok(None);
        }
        Ok(self.runs()?.get(id).cloned())
    }

    /// The one run whose id starts with `prefix`, from the listing (refreshed once when it names none); `ENOENT`
    /// when none or several do.
    pub fn run_by_prefix(&self, prefix: &str) -> Result<String> {
        let what = format!("runs/{prefix}");
        for refresh in [false, true] {
            let runs = if refresh {
                self.runs()?
            } else {
                self.runs.last()
            };
            let mut found = runs.with_prefix(prefix);
            match (found.next(), found.next()) {
                (Some(one), None) => return Ok(one.id.clone()),
                (Some(_), Some(_)) => {
                    return Err(Error::not_found(format!(
                        "{what}: the prefix names several runs; use more characters"
                    )));
                }
                (None, _) => {}
            }
        }
        Err(Error::not_found(what))
    }

    /// The newest run: from the listing while it is fresh, else `GET /v1/runs?limit=1`.
    pub fn latest_run(&self) -> Result<Option<Run>> {
        if let Some(runs) = self.runs.fresh(self.runs_ttl()) {
            return Ok(runs.all().first().cloned());
        }
        let ttl = self.run_ttl();
        let latest = self.fetch(
            &self.latest_run,
            ("latest_run", &(), "all"),
            || self.api.latest_run(),
            |_| ttl,
        )?;
        Ok((*latest).clone())
    }

    pub fn run(&self, id: &str) -> Result<Arc<RunDetail>> {
        let moving = self.run_ttl();
        self.fetch(
            &self.run_details,
            ("run_details", &id.to_string(), id),
            || self.api.get_run(id),
            |run| terminal_or(run, moving),
        )
    }

    /// Keeps a run detail the API just sent (a create or cancel answer), and lets `runs/` and `runs/latest` show
    /// a new run at once.
    pub fn remember_run(&self, run: RunDetail) {
        let ttl = terminal_or(&run, self.run_ttl());
        self.run_details.put(run.id.clone(), run, ttl);
        self.runs.invalidate();
        self.latest_run.invalidate(&());
    }

    /// Drops what is known of a run's detail, so that the next look asks the API (a cancel the API refused).
    pub fn forget_run(&self, id: &str) {
        self.run_details.invalidate(&id.to_string());
    }

    pub fn run_metrics(&self, run: &RunDetail) -> Result<Arc<RunMetrics>> {
        let ttl = terminal_or(run, self.run_ttl());
        self.fetch(
            &self.run_metrics,
            ("run_metrics", &run.id, &run.id),
            || self.api.run_metrics(&run.id),
            |_| ttl,
        )
    }

    /// The final output of a terminal run: the detail's `output` when the server sends one, else the SSE
    /// `complete` event's (CONTRACT.md Part 1 item 6). `None` for a run that is not terminal or has none.
    pub fn run_output(&self, run: &RunDetail) -> Result<Option<String>> {
        if !run.status.is_terminal() {
            return Ok(None);
        }
        if run.output.is_some() {
            return Ok(run.output.clone());
        }
        let output = self.fetch(
            &self.run_outputs,
            ("run_outputs", &run.id, &run.id),
            || self.output_from_events(&run.id),
            |_| Ttl::Forever,
        )?;
        Ok((*output).clone())
    }

    fn output_from_events(&self, id: &str) -> std::result::Result<Option<String>, ApiError> {
        for event in self.api.run_events(id, None)? {
            if let SseEvent::Complete { output, .. } = event? {
                return Ok(output);
            }
        }
        Ok(None)
    }

    pub fn storages(&self, kind: StorageKind) -> Result<Arc<Vec<Storage>>> {
        let ttl = self.listing();
        self.fetch(
            &self.storages,
            ("storages", &kind, kind.plural()),
            || self.api.list_storages(kind),
            |_| ttl,
        )
    }

    /// Forgets the listing of `kind`, after a change made here (a volume created, a version published).
    pub fn storages_changed(&self, kind: StorageKind) {
        self.storages.invalidate(&kind);
    }

    pub fn storage(&self, kind: StorageKind, name: &str) -> Result<Storage> {
        self.storages(kind)?
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("{}/{name}", kind.plural())))
    }

    /// The versions of a storage. `refresh` asks the API again even when a list is cached (a prefix that matched
    /// nothing may name a version pushed since).
    pub fn storage_versions(
        &self,
        kind: StorageKind,
        storage_id: &str,
        refresh: bool,
    ) -> Result<Arc<Vec<StorageVersion>>> {
        let key = storage_id.to_string();
        if refresh {
            self.storage_versions.invalidate(&key);
        }
        let ttl = self.listing();
        self.fetch(
            &self.storage_versions,
            ("storage_versions", &key, storage_id),
            || self.api.list_storage_versions(kind, storage_id),
            |_| ttl,
        )
    }
}

fn terminal_or(run: &RunDetail, moving: Ttl) -> Ttl {
    if run.status.is_terminal() {
        Ttl::Forever
    } else {
        moving
    }
}
