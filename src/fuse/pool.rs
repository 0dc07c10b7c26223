//! The worker threads that run filesystem requests.
//!
//! fuser's event loop reads a request and calls the adapter on the same thread; a request that waits for the
//! network there would hold up every other one. So the adapter only moves the request and its reply onto this
//! pool and returns. The pool grows a thread whenever work is queued and no worker is idle, up to a bound (the
//! kernel itself keeps at most `max_background` requests in flight), so a slow listing never blocks a cached
//! `stat`. A job that panics is caught: its reply is dropped, which fuser answers with `EIO`, and the worker lives
//! on.

use crate::sync::Locked;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_threads: usize,
}

pub struct WorkerPool {
    shared: Arc<Shared>,
}

impl WorkerPool {
    pub fn new(max_threads: usize) -> Self {
        WorkerPool {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    idle: 0,
                    threads: 0,
                }),
                ready: Condvar::new(),
                max_threads: max_threads.max(1),
            }),
        }
    }

    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let mut queue = self.shared.lock();
        queue.jobs.push_back(Box::new(job));
        let spawn = queue.jobs.len() > queue.idle && queue.threads < self.shared.max_threads;
        if spawn {
            queue.threads += 1;
        }
        drop(queue);
        if spawn {
            let shared = self.shared.clone();
            let started = std::thread::Builder::new()
                .name("vm0fs-worker".into())
                .spawn(move || worker(&shared));
            if let Err(e) = started {
                tracing::error!(
                    "cannot start a worker thread ({e}); requests wait for the running ones"
                );
                self.shared.lock().threads -= 1;
            }
        }
        self.shared.ready.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.locked()
    }
}

fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut queue = shared.lock();
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                queue.idle += 1;
                queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                queue.idle -= 1;
            }
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!(
                "a filesystem request panicked; it was answered with EIO and the mount goes on"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_blocked_job_does_not_hold_up_the_next() {
        let pool = WorkerPool::new(4);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel();
        pool.run(move || {
            let _ = release_rx.recv();
        });
        pool.run(move || {
            let _ = done_tx.send(());
        });
        assert!(done_rx.recv_timeout(Duration::from_secs(10)).is_ok());
        let _ = release_tx.send(());
    }

    #[test]
    fn a_panicking_job_leaves_the_pool_working() {
        let pool = WorkerPool::new(1);
        pool.run(|| panic!("test panic"));
        let (tx, rx) = mpsc::channel();
        pool.run(move || {
            let _ = tx.send(7);
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(7));
    }
}
