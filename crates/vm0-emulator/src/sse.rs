//! `GET /v1/runs/:id/events`: the run's server-sent event stream (CONTRACT.md 4.8).
//!
//! The stream is an async stream of frames handed to axum as a streamed body: each item is the frames prepared
//! by one poll of the run (every 250 ms, four times as often as the platform, so tests are quick), and hyper
//! writes each item as one chunk as soon as it is yielded, so a client sees each event when it happens. The
//! body is built from frames rather than with axum's `Sse` type so that the bytes come from the shared
//! `SseEvent::to_frame`. Frames are written by the shared `SseEvent::to_frame`, so the emulator and the
//! client agree on the format by construction. Payload keys never change with the casing (`run_id` included).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use crate::ctx::Ctx;
use crate::reply::{Params, not_found};
use crate::store::{iso, now_ms};
use vm0_api::{RunStatus, SseEvent};

const POLL: Duration = Duration::from_millis(250);
const HEARTBEAT: Duration = Duration::from_secs(15);

pub(crate) async fn events(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    q: Params,
) -> Response {
    if !ctx.store.lock().runs.iter().any(|r| r.id == id) {
        return not_found(format!("No such run: '{id}'"));
    }
    let last_seq = q
        .get_any(&["last_event_id", "lastEventId"])
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let events = EventStream {
        ctx,
        run_id: id,
        last_status: None,
        last_seq,
        last_beat: Instant::now(),
        buf: Vec::new(),
        done: false,
    };
    let frames = stream::unfold(events, |mut events| async move {
        let frames = events.next_frames().await?;
        Some((Ok::<_, Infallible>(Bytes::from(frames)), events))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

struct EventStream {
    ctx: Arc<Ctx>,
    run_id: String,
    last_status: Option<RunStatus>,
    last_seq: u64,
    last_beat: Instant,
    buf: Vec<u8>,
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

impl EventStream {
    /// The next frames to send, waiting for them; `None` once the stream has ended.
    async fn next_frames(&mut self) -> Option<Vec<u8>> {
        loop {
            if !self.buf.is_empty() {
                return Some(std::mem::take(&mut self.buf));
            }
            if self.done {
                return None;
            }
            if self.last_status.is_some() {
                tokio::time::sleep(POLL).await;
            }
            self.poll();
        }
    }
}
