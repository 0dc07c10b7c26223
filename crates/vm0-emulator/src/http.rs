//! A minimal HTTP/1.1 server: one thread per connection, keep-alive, streamed bodies.
//!
//! The emulator needs three things `tiny_http` 0.12 cannot do: close a connection in the middle of a body whose
//! `Content-Length` was declared (the `truncate_blobs` fault must look like a dropped S3 connection), flush every
//! chunk of a chunked body at once (its chunk encoder buffers 8 KiB, which would hold SSE events back), and count
//! the headers of a blob request before anything is sent. The protocol subset a test client uses is small, so it
//! is implemented here directly on `std::net`: request line and headers, `Content-Length` or chunked request
//! bodies (with `Expect: 100-continue`), and responses with a fixed length, a chunked stream flushed per chunk,
//! or a deliberately cut body. Each connection runs on its own thread, so a stalled request never blocks another.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

/// Bodies larger than this are refused with 413: the emulator keeps request bodies in memory.
const MAX_BODY: u64 = 1 << 30;
/// An idle keep-alive connection is closed after this long, so abandoned connections do not pin threads.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A client that stops reading a response for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// A parsed request. Header names are lower-cased; the path is raw (not percent-decoded); query pairs are decoded.
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query value under any of `names` (e.g. `version_id` and `versionId`).
    pub fn query_any(&self, names: &[&str]) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_any(&[name])
    }
}

/// The body of a response.
pub(crate) enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// A stream of known length, sent with `Content-Length`.
    Fixed(Box<dyn Read + Send>, u64),
    /// A stream of unknown length, sent chunked; each chunk is flushed as soon as the reader yields it.
    Chunked(Box<dyn Read + Send>),
}

pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Send only this many bytes of a `Fixed` body, then close the connection (the truncation fault).
    pub cut_after: Option<u64>,
}

impl Response {
    pub fn new(status: u16, body: Body) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
            cut_after: None,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

pub(crate) type Handler = dyn Fn(Request) -> Response + Send + Sync;

/// Accepts connections forever, one thread each.
pub(crate) fn serve(listener: TcpListener, handler: Arc<Handler>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let handler = handler.clone();
        let spawned = std::thread::Builder::new()
            .name("emu-conn".into())
            .spawn(move || connection(stream, &*handler));
        if let Err(e) = spawned {
            tracing::error!("cannot spawn a connection thread: {e}");
        }
    }
}

fn connection(stream: TcpStream, handler: &Handler) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let request = match read_request(&mut reader, &mut writer) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err((status, message)) => {
                let body = format!(
                    "{{\"error\":{{\"type\":\"invalid_request_error\",\"code\":\"invalid_parameter\",\"message\":{}}}}}",
                    serde_json::Value::String(message)
                );
                let resp = Response::new(status, Body::Bytes(body.into_bytes()))
                    .header("Content-Type", "application/json");
                let _ = write_response(&mut writer, resp, false, true);
                break;
            }
        };
        let head = request.method == "HEAD";
        let client_close = request
            .header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        let response = match catch_unwind(AssertUnwindSafe(|| handler(request))) {
            Ok(r) => r,
            Err(_) => Response::new(
                500,
                Body::Bytes(
                    br#"{"error":{"type":"api_error","code":"internal_error","message":"The emulator failed while handling this request (a bug: see its stderr)"}}"#
                        .to_vec(),
                ),
            )
            .header("Content-Type", "application/json"),
        };
        match write_response(&mut writer, response, head, client_close) {
            Ok(false) => continue,
            _ => break,
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

type ReadError = (u16, String);

fn read_line(reader: &mut BufReader<TcpStream>) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(16 * 1024)
        .read_until(b'\n', &mut buf)
        .map_err(|_| (408, "reading the request failed or timed out".to_string()))?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err((431, "request line or header longer than 16 KiB".into()));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Option<Request>, ReadError> {
    // Tolerate stray empty lines between requests (RFC 9112 2.2).
    let line = loop {
        match read_line(reader) {
            Ok(None) => return Ok(None),
            Err(_) => return Ok(None),
            Ok(Some(l)) if l.is_empty() => continue,
            Ok(Some(l)) => break l,
        }
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err((400, format!("malformed request line: {line:?}")));
    };
    let mut headers = Vec::new();
    loop {
        let Some(h) = read_line(reader)? else {
            return Err((400, "connection closed in the middle of the headers".into()));
        };
        if h.is_empty() {
            break;
        }
        if headers.len() > 200 {
            return Err((431, "more than 200 request headers".into()));
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err((400, format!("malformed header line: {h:?}")));
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if find("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        let _ = writer.flush();
    }
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let Some(size_line) = read_line(reader)? else {
                return Err((400, "connection closed inside a chunked body".into()));
            };
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_hex, 16)
                .map_err(|_| (400, format!("bad chunk size {size_hex:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while let Some(t) = read_line(reader)? {
                    if t.is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() as u64 + size > MAX_BODY {
                return Err((413, "request body larger than 1 GiB".into()));
            }
            let start = body.len();
            body.resize(start + size as usize, 0);
            reader
                .read_exact(&mut body[start..])
                .map_err(|_| (400, "connection closed inside a chunk".to_string()))?;
            let _ = read_line(reader)?;
        }
    } else if let Some(len) = find("content-length") {
        let len: u64 = len
            .parse()
            .map_err(|_| (400, format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err((413, "request body larger than 1 GiB".into()));
        }
        body.resize(len as usize, 0);
        reader.read_exact(&mut body).map_err(|_| {
            (
                400,
                "connection closed before the whole body arrived".to_string(),
            )
        })?;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_query(q)),
        None => (target.to_string(), Vec::new()),
    };
    Ok(Some(Request {
        method: method.to_ascii_uppercase(),
        path,
        query,
        headers,
        body,
    }))
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space in query strings); invalid escapes are kept as they are.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes everything but unreserved characters and `/` (for paths inside URLs).
pub(crate) fn percent_encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes a response. Returns whether the connection must be closed afterwards.
fn write_response(w: &mut TcpStream, resp: Response, head: bool, close: bool) -> io::Result<bool> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut close = close || resp.cut_after.is_some();
    match &resp.body {
        Body::Empty => out.push_str("Content-Length: 0\r\n"),
        Body::Bytes(b) => out.push_str(&format!("Content-Length: {}\r\n", b.len())),
        Body::Fixed(_, len) => out.push_str(&format!("Content-Length: {len}\r\n")),
        Body::Chunked(_) => out.push_str("Transfer-Encoding: chunked\r\n"),
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    if head {
        w.flush()?;
        return Ok(close);
    }
    match resp.body {
        Body::Empty => {}
        Body::Bytes(b) => w.write_all(&b)?,
        Body::Fixed(reader, len) => {
            let limit = resp.cut_after.unwrap_or(len).min(len);
            let copied = io::copy(&mut reader.take(limit), w)?;
            if copied < len && resp.cut_after.is_none() {
                // The source ended early: the body is short, so the connection cannot be reused.
                close = true;
            }
        }
        Body::Chunked(mut reader) => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        // No terminating chunk: the client sees an incomplete body.
                        w.flush()?;
                        return Ok(true);
                    }
                };
                w.write_all(format!("{n:x}\r\n").as_bytes())?;
                w.write_all(&buf[..n])?;
                w.write_all(b"\r\n")?;
                w.flush()?;
            }
            w.write_all(b"0\r\n\r\n")?;
        }
    }
    w.flush()?;
    Ok(close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("a%2Fb+c", true), "a/b c");
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("%C3%A9", false), "é");
        assert_eq!(percent_encode_path("données/x y"), "donn%C3%A9es/x%20y");
    }
}
