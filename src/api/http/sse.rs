//! A server-sent-events reader for `GET /v1/runs/:id/events` (CONTRACT.md 4.8).
//!
//! It follows the WHATWG framing rules that matter here: a frame is a run of `field: value` lines ended by a blank
//! line; `data:` lines are joined with `\n`; lines starting with `:` are comments; one space after the colon is
//! dropped; `\r\n` and `\n` both end a line. Frames are turned into [`SseEvent`]s by `SseEvent::parse`, which knows
//! the payloads; event names this client does not know are skipped, so a newer server can add some. The iterator
//! ends after `complete` or `error` (the server closes the stream there) or at end of stream; a frame cut off by
//! the end of the stream is dropped, as the spec says. Lines and frames are bounded, so a broken server cannot
//! make the client buffer without limit.

use std::io::{BufRead, Read};

use crate::api::error::ApiError;
use crate::api::models::SseEvent;

/// The longest line accepted. Output events carry agent messages, which can be long, but not this long.
const MAX_LINE: u64 = 1 << 20;
/// The most data one frame may carry across its `data:` lines.
const MAX_FRAME: usize = 4 << 20;

/// One dispatched frame: its event name (default `message`) and its data lines joined by `\n`.
#[derive(Debug, Default, PartialEq)]
struct Frame {
    event: String,
    data: String,
}

/// Iterator of the events of one SSE response body.
pub(super) struct SseStream<R> {
    reader: R,
    endpoint: String,
    done: bool,
}

impl<R: BufRead> SseStream<R> {
    pub(super) fn new(reader: R, endpoint: String) -> Self {
        SseStream {
            reader,
            endpoint,
            done: false,
        }
    }

    /// Reads one line without its line ending; `None` at end of stream.
    fn read_line(&mut self) -> Result<Option<String>, ApiError> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(|e| {
                ApiError::transport(
                    &self.endpoint,
                    format!("reading the event stream failed: {e}"),
                )
            })?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            return Err(ApiError::invalid_response(
                &self.endpoint,
                format!("an event-stream line is longer than {MAX_LINE} bytes"),
            ));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        String::from_utf8(buf).map(Some).map_err(|_| {
            ApiError::invalid_response(&self.endpoint, "the event stream is not UTF-8".into())
        })
    }

    /// Reads lines up to the next blank line that ends a frame with data; `None` at end of stream.
    fn read_frame(&mut self) -> Result<Option<Frame>, ApiError> {
        let mut frame = Frame::default();
        let mut has_data = false;
        loop {
            let Some(line) = self.read_line()? else {
                return Ok(None);
            };
            if line.is_empty() {
                if has_data {
                    if frame.event.is_empty() {
                        frame.event = "message".into();
                    }
                    return Ok(Some(frame));
                }
                frame = Frame::default();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => frame.event = value.to_string(),
                "data" => {
                    if has_data {
                        frame.data.push('\n');
                    }
                    frame.data.push_str(value);
                    has_data = true;
                    if frame.data.len() > MAX_FRAME {
                        return Err(ApiError::invalid_response(
                            &self.endpoint,
                            format!("an event carries more than {MAX_FRAME} bytes of data"),
                        ));
                    }
                }
                // `id:` repeats the output event's `sequence`, which the payload carries too; `retry:` is for
                // browsers' automatic reconnection, which this client does not do.
                _ => {}
            }
        }
    }
}

impl<R: BufRead> Iterator for SseStream<R> {
    type Item = Result<SseEvent, ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let frame = match self.read_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            match SseEvent::parse(&frame.event, &frame.data) {
                Ok(Some(event)) => {
                    if matches!(event, SseEvent::Complete { .. } | SseEvent::Error { .. }) {
                        self.done = true;
                    }
                    return Some(Ok(event));
                }
                Ok(None) => {
                    tracing::debug!(event = %frame.event, "skipping an unknown server-sent event");
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(ApiError::invalid_response(
                        &self.endpoint,
                        format!("the data of a `{}` event does not parse: {e}", frame.event),
                    )));
                }
            }
        }
        self.done = true;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::ApiErrorKind;
    use crate::api::models::RunStatus;

    fn events(text: &str) -> Vec<Result<SseEvent, ApiError>> {
        SseStream::new(text.as_bytes(), "GET /v1/runs/r/events".into()).collect()
    }

    #[test]
    fn parses_frames_comments_crlf_and_multiline_data() {
        let text = ": hello\r\n\
            event: status\r\ndata: {\"status\":\"running\",\"run_id\":\"r\"}\r\n\r\n\
            id: 3\nevent: output\ndata: {\"sequence\":3,\"type\":\"text\",\ndata: \"data\":{\"a\":1},\"timestamp\":\"t\"}\n\n\
            event: heartbeat\ndata:{\"timestamp\":\"t\"}\n\n\
            event: complete\ndata: {\"status\":\"completed\",\"output\":\"done\",\"error\":null}\n\n\
            event: status\ndata: {\"status\":\"running\",\"run_id\":\"r\"}\n\n";
        let got: Vec<SseEvent> = events(text).into_iter().map(|e| e.unwrap()).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            SseEvent::Status {
                status: RunStatus::Running,
                run_id: "r".into()
            }
        );
        assert!(matches!(&got[1], SseEvent::Output { sequence: 3, kind, .. } if kind == "text"));
        assert!(matches!(got[2], SseEvent::Heartbeat { .. }));
        assert!(matches!(
            &got[3],
            SseEvent::Complete { status: RunStatus::Completed, output: Some(o), error: None } if o == "done"
        ));
    }

    #[test]
    fn skips_unknown_events_and_drops_a_cut_frame() {
        let text = "event: novelty\ndata: {}\n\nevent: heartbeat\ndata: {\"timestamp\":\"t\"}\n\nevent: heartbeat\ndata: {";
        let got = events(text);
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Ok(SseEvent::Heartbeat { .. })));
    }

    #[test]
    fn a_bad_payload_is_an_invalid_response_and_ends_the_stream() {
        let text = "event: status\ndata: not json\n\nevent: heartbeat\ndata: {}\n\n";
        let got = events(text);
        assert_eq!(got.len(), 1);
        let err = got.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.kind, ApiErrorKind::InvalidResponse);
        assert!(err.to_string().contains("status"), "{err}");
    }

    #[test]
    fn an_error_event_ends_the_stream() {
        let text = "event: error\ndata: {\"message\":\"Run not found\",\"code\":\"run_not_found\"}\n\nevent: heartbeat\ndata: {}\n\n";
        let got = events(text);
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Ok(SseEvent::Error { code, .. }) if code == "run_not_found"));
    }
}
