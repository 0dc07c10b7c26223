//! `GET /v1/runs/:id/events`: the run's server-sent event stream (CONTRACT.md 4.8).
//!
//! The stream is a `Read` implementation handed to the HTTP layer as a chunked body: every `read` either returns
//! frames already prepared or polls the run (every 250 ms, four times as often as the platform, so tests are
//! quick) and prepares the next frames. The HTTP layer flushes each chunk as soon as it is read, so a client sees
//! each event when it happens. Frames are written by the shared `SseEvent::to_frame`, so the emulator and the
//! client agree on the format by construction. Payload keys never change with the casing (`run_id` included).

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Ctx;
use super::http::{Body, Request, Response};
use super::routes::not_found;
use super::store::{iso, now_ms};
use vm0_api::{RunStatus, SseEvent};

const POLL: Duration = Duration::from_millis(250);
const HEARTBEAT: Duration = Duration::from_secs(15);

pub(super) fn events(ctx: &Arc<Ctx>, req: &Request, id: &str) -> Response {
    if !ctx.store.lock().runs.iter().any(|r| r.id == id) {
        return not_found(format!("No such run: '{id}'"));
    }
    let last_seq = req
        .query_any(&["last_event_id", "lastEventId"])
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let stream = EventStream {
        ctx: ctx.clone(),
        run_id: id.to_string(),
        last_status: None,
        last_seq,
        last_beat: Instant::now(),
        buf: Vec::new(),
        pos: 0,
        done: false,
    };
    Response::new(200, Body::Chunked(Box::new(stream)))
        .header("Content-Type", "text/event-stream")
        .header("Cache-Control", "no-cache")
        .header("Connection", "keep-alive")
}

struct EventStream {
    ctx: Arc<Ctx>,
    run_id: String,
    last_status: Option<RunStatus>,
    last_seq: u64,
    last_beat: Instant,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl EventStream {
    fn push(&mut self, event: SseEvent) {
        self.buf.extend_from_slice(event.to_frame().as_bytes());
    }

    /// Prepares the frames due now (possibly none).
    fn poll(&mut self) {
        let st = self.ctx.store.lock();
        let Some(run) = st.runs.iter().find(|r| r.id == self.run_id) else {
            drop(st);
            self.push(SseEvent::Error {
                message: "Run not found".into(),
                code: "run_not_found".into(),
            });
            self.done = true;
            return;
        };
        let status = run.status;
        let complete = SseEvent::Complete {
            status,
            output: run.output.clone(),
            error: run.error.clone(),
        };
        let first = self.last_status.is_none();
        let outputs: Vec<SseEvent> = if first && status.is_terminal() {
            Vec::new()
        } else {
            run.logs
                .iter()
                .filter_map(|(_, e)| {
                    let meta = e.metadata.as_ref()?;
                    let seq = meta.get("sequenceNumber")?.as_u64()?;
                    (e.kind == "agent" && seq > self.last_seq).then(|| SseEvent::Output {
                        sequence: seq,
                        kind: meta
                            .get("eventType")
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                            .to_string(),
                        data: meta.get("eventData").cloned().unwrap_or_default(),
                        timestamp: e.timestamp.clone(),
                    })
                })
                .collect()
        };
        drop(st);
        let run_id = self.run_id.clone();
        if first {
            self.push(SseEvent::Status { status, run_id });
            self.last_status = Some(status);
            if status.is_terminal() {
                self.push(complete);
                self.done = true;
                return;
            }
        }
        if self.last_status != Some(status) {
            self.push(SseEvent::Status {
                status,
                run_id: self.run_id.clone(),
            });
            self.last_status = Some(status);
        }
        for o in outputs {
            if let SseEvent::Output { sequence, .. } = &o {
                self.last_seq = self.last_seq.max(*sequence);
            }
            self.push(o);
        }
        if status.is_terminal() {
            self.push(complete);
            self.done = true;
            return;
        }
        if self.buf.is_empty() && self.last_beat.elapsed() >= HEARTBEAT {
            self.push(SseEvent::Heartbeat {
                timestamp: iso(now_ms()),
            });
        }
        if !self.buf.is_empty() {
            self.last_beat = Instant::now();
        }
    }
}

impl Read for EventStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            let first = self.last_status.is_none();
            if !first {
                std::thread::sleep(POLL);
            }
            self.poll();
        }
    }
}
