//! The listing of `runs/`: every run, newest first, fetched once and then refreshed from the top.
//!
//! A user may have thousands of runs, and the listing is believed for only two seconds, so paging through all of
//! them at each refresh made `ls runs` cost one request per hundred runs (10 s for 3,000 runs at 300 ms a
//! request). Run ids never change and runs are not deleted, so a refresh reads from the newest page down until it
//! meets an id it already holds and has met again every run it held as still moving (pending or running): one
//! request when nothing is new and the moving runs are among the newest hundred, as they usually are. The runs it
//! met again are updated from those pages; the older ones had ended already and cannot change. So every run of a
//! listing is as current as the listing, and `ls -l runs` dates every run from it, moving or not, instead of
//! asking each moving run's detail (which cost one request per moving run: 10.7 s for 30 of them at 300 ms).
//!
//! The first listing pages through everything, handing each page to the caller as it arrives, so that a listing
//! of `runs/` can stream its entries to `readdir` (`ls -f`, `find`) before the last page is in. One refresh at
//! a time: callers that find the listing stale while another refreshes it wait for that refresh and share it.

use crate::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::models::Run;
use crate::api::{ApiError, ApiErrorKind, Vm0Api};

/// The runs, newest first, with an index by id.
#[derive(Default)]
pub struct Runs {
    list: Vec<Run>,
    by_id: HashMap<String, usize>,
}

impl Runs {
    fn new(list: Vec<Run>) -> Runs {
        let by_id = list
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        Runs { list, by_id }
    }

    pub fn all(&self) -> &[Run] {
        &self.list
    }

    pub fn get(&self, id: &str) -> Option<&Run> {
        self.by_id.get(id).map(|&i| &self.list[i])
    }

    /// The runs whose id starts with `prefix`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Run> + 'a {
        self.list.iter().filter(move |r| r.id.starts_with(prefix))
    }
}

struct Held {
    runs: Arc<Runs>,
    /// `runs` holds every run (a first listing went through): later ones only refresh from the top.
    complete: bool,
    /// When the listing was last current; `None` before the first and after `invalidate`.
    fetched: Option<Instant>,
    /// When `runs` last took in a page (of a first listing too, where `fetched` stays `None` until the end);
    /// `None` before the first and after `invalidate`.
    updated: Option<Instant>,
}

pub struct RunsListing {
    held: Mutex<Held>,
    /// Held while a refresh runs, so that there is one at a time.
    refreshing: Mutex<()>,
}

impl RunsListing {
    pub fn new() -> Self {
        RunsListing {
            held: Mutex::new(Held {
                runs: Arc::default(),
                complete: false,
                fetched: None,
                updated: None,
            }),
            refreshing: Mutex::new(()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.locked()
    }

    /// The listing if it is younger than `ttl`.
    pub fn fresh(&self, ttl: Duration) -> Option<Arc<Runs>> {
        let held = self.held();
        held.fetched
            .filter(|t| t.elapsed() < ttl)
            .map(|_| held.runs.clone())
    }

    /// The runs listed so far if they took in a page within `ttl`, even while a first listing is still paging:
    /// the runs a page just brought are current.
    pub fn recent(&self, ttl: Duration) -> Option<Arc<Runs>> {
        let held = self.held();
        held.updated
            .filter(|t| t.elapsed() < ttl)
            .map(|_| held.runs.clone())
    }

    pub fn is_complete(&self) -> bool {
        self.held().complete
    }

    /// The last listing, however old (empty before the first).
    pub fn last(&self) -> Arc<Runs> {
        self.held().runs.clone()
    }

    /// Makes the next `current` ask the API (a run was just created or cancelled here).
    pub fn invalidate(&self) {
        let mut held = self.held();
        held.fetched = None;
        held.updated = None;
    }

    /// The listing, refreshed when older than `ttl`. A first listing hands each page to `on_page` as it arrives;
    /// a refresh hands nothing (the caller takes the result). When the API cannot be reached and a listing is
    /// held, that listing is served and believed for another `ttl`.
    pub fn current(
        &self,
        api: &dyn Vm0Api,
        ttl: Duration,
        on_page: &mut dyn FnMut(&[Run]),
    ) -> Result<Arc<Runs>, ApiError> {
        if let Some(runs) = self.fresh(ttl) {
            return Ok(runs);
        }
        let _one_at_a_time = self.refreshing.locked();
        if let Some(runs) = self.fresh(ttl) {
            return Ok(runs);
        }
        let (known, complete) = {
            let held = self.held();
            (held.runs.clone(), held.complete)
        };
        let listed = if complete {
            refresh(api, &known)
        } else {
            // The runs of each page are known at once (not complete, not fresh), so that the attributes of a run
            // a streamed listing just showed come from it rather than from one request per run.
            let mut so_far: Vec<Run> = Vec::new();
            everything(api, &mut |page| {
                so_far.extend_from_slice(page);
                let mut held = self.held();
                held.runs = Arc::new(Runs::new(so_far.clone()));
                held.updated = Some(Instant::now());
                drop(held);
                on_page(page);
            })
        };
        let runs = match listed {
            Ok(list) => Arc::new(Runs::new(list)),
            Err(e) if e.is_retryable() && complete => {
                // Held back: the outage was announced once (`api::http::health`).
                if e.kind == ApiErrorKind::Offline {
                    tracing::debug!("{e}; serving the runs known before, for another TTL");
                } else {
                    tracing::warn!("{e}; serving the runs known before, for another TTL");
                }
                known
            }
            Err(e) => return Err(e),
        };
        let mut held = self.held();
        held.runs = runs.clone();
        held.complete = true;
        held.fetched = Some(Instant::now());
        held.updated = held.fetched;
        Ok(runs)
    }
}

/// Every run, page by page.
fn everything(api: &dyn Vm0Api, on_page: &mut dyn FnMut(&[Run])) -> Result<Vec<Run>, ApiError> {
    let mut all = Vec::new();
    let mut pages = Pages::new();
    while let Some(page) = pages.next(api)? {
        on_page(&page);
        all.extend(page);
    }
    Ok(all)
}

/// The runs newer than the newest of `known`, read from the first page down until a known id appears and every run
/// `known` holds as moving has appeared again, followed by `known` with the runs met again updated.
fn refresh(api: &dyn Vm0Api, known: &Runs) -> Result<Vec<Run>, ApiError> {
    let mut moving: HashSet<&str> = known
        .all()
        .iter()
        .filter(|r| !r.status.is_terminal())
        .map(|r| r.id.as_str())
        .collect();
    let mut new = Vec::new();
    let mut updated: HashMap<String, Run> = HashMap::new();
    let mut met_known = false;
    let mut pages = Pages::new();
    while let Some(page) = pages.next(api)? {
        for run in page {
            if known.get(&run.id).is_some() {
                met_known = true;
                moving.remove(run.id.as_str());
                updated.insert(run.id.clone(), run);
            } else if !met_known {
                new.push(run);
            }
        }
        if met_known && moving.is_empty() {
            break;
        }
    }
    let mut seen: HashSet<String> = new.iter().map(|r| r.id.clone()).collect();
    let mut list = new;
    for run in known.all() {
        if seen.insert(run.id.clone()) {
            list.push(updated.remove(&run.id).unwrap_or_else(|| run.clone()));
        }
    }
    Ok(list)
}

/// Walks `GET /v1/runs` page by page, refusing a server that repeats its cursor.
struct Pages {
    cursor: Option<String>,
    done: bool,
}

impl Pages {
    fn new() -> Pages {
        Pages {
            cursor: None,
            done: false,
        }
    }

    fn next(&mut self, api: &dyn Vm0Api) -> Result<Option<Vec<Run>>, ApiError> {
        if self.done {
            return Ok(None);
        }
        let page = api.runs_page(self.cursor.as_deref())?;
        match page.pagination.next_cursor {
            Some(next) if page.pagination.has_more => {
                if self.cursor.as_deref() == Some(next.as_str()) {
                    return Err(ApiError::invalid_response(
                        "GET /v1/runs",
                        "GET /v1/runs: the list repeats its cursor".into(),
                    ));
                }
                self.cursor = Some(next);
            }
            _ => self.done = true,
        }
        Ok(Some(page.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fake::{FakeApi, run};
    use crate::api::models::RunStatus;
    use std::sync::atomic::Ordering;

    /// 250 runs, 100 a page, all ended but `r180` (on the second page), which is `deep`.
    fn platform(deep: RunStatus) -> FakeApi {
        let runs = (0..250)
            .map(|i| {
                let status = if i == 180 { deep } else { RunStatus::Completed };
                run(&format!("r{i}"), status)
            })
            .collect();
        FakeApi {
            runs,
            runs_page_size: 100,
            ..FakeApi::default()
        }
    }

    #[test]
    fn a_refresh_reads_down_to_the_oldest_moving_run_and_no_further() {
        let listing = RunsListing::new();
        let before = platform(RunStatus::Running);
        let first = listing
            .current(&before, Duration::ZERO, &mut |_| {})
            .unwrap();
        assert_eq!(first.all().len(), 250);
        assert_eq!(before.runs_pages.load(Ordering::SeqCst), 3);

        // The run ended since: the refresh meets it again on the second page, and stops there.
        let after = platform(RunStatus::Completed);
        let refreshed = listing
            .current(&after, Duration::ZERO, &mut |_| {})
            .unwrap();
        assert_eq!(refreshed.get("r180").unwrap().status, RunStatus::Completed);
        assert_eq!(after.runs_pages.load(Ordering::SeqCst), 2, "pages read");

        // Nothing moves any more: one page.
        let still = platform(RunStatus::Completed);
        listing
            .current(&still, Duration::ZERO, &mut |_| {})
            .unwrap();
        assert_eq!(still.runs_pages.load(Ordering::SeqCst), 1, "pages read");
    }
}
