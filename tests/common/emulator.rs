//! `Emulator`: a running `vm0-emulator` process for one test, on its own port and its own data directory.
//!
//! Every integration test talks to a real emulator over loopback, never to a mock, so this guard is the one way
//! tests start it: `Emulator::start(&["--seed", "demo"])`. The child's stdout first line is its base URL (read
//! with a bounded wait; a child that dies first fails the test with its stderr); stdout and stderr are drained
//! by threads so the child never blocks on a full pipe, and stderr is kept for diagnostics. Drop kills the child
//! by its own handle (never by name) and waits for it; the data directory is a `TempDir` removed with the guard.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The token the emulator accepts by default.
pub const TOKEN: &str = "vm0_live_demo";

/// How long the emulator may take to print its URL (it may be seeding a data directory first).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Emulator flags for runs that move quickly, so a test sees a whole life in seconds.
pub const FAST_RUNS: [&str; 6] = [
    "--run-pending-ms",
    "1500",
    "--run-duration-ms",
    "5000",
    "--log-interval-ms",
    "300",
];

pub struct Emulator {
    child: Child,
    base_url: String,
    data: tempfile::TempDir,
    args: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Emulator {
    /// Starts `vm0-emulator --listen 127.0.0.1:0 --data <fresh tempdir> <args>` and waits for its URL.
    pub fn start(args: &[&str]) -> Emulator {
        let data = tempfile::tempdir().expect("create a temp dir for the emulator's data");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, base_url, stderr) = spawn(data.path(), &args);
        Emulator {
            child,
            base_url,
            data,
            args,
            stderr,
        }
    }

    /// Stops the emulator and starts it again on the same data directory (and a new port).
    pub fn restart(&mut self) {
        self.stop();
        let (child, base_url, stderr) = spawn(self.data.path(), &self.args);
        self.child = child;
        self.base_url = base_url;
        self.stderr = stderr;
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `base_url` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn token(&self) -> &'static str {
        TOKEN
    }

    /// What the emulator wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// An HTTP client that does not follow redirects, with a generous overall timeout.
    pub fn client(&self) -> Client {
        Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("build a reqwest client")
    }

    /// `GET path` with the token; returns (status, JSON body).
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client()
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.stderr()));
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str(&resp.text().unwrap_or_default()).unwrap_or(Value::Null),
        )
    }

    /// `POST path` with a JSON body and the token; returns (status, JSON body).
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client()
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.stderr()));
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str(&resp.text().unwrap_or_default()).unwrap_or(Value::Null),
        )
    }

    /// Replaces the whole fault config (`POST /_control/faults`); unspecified keys take their defaults.
    pub fn set_faults(&self, faults: Value) {
        let resp = self
            .client()
            .post(self.url("/_control/faults"))
            .header("Content-Type", "application/json")
            .body(faults.to_string())
            .send()
            .expect("POST /_control/faults");
        assert_eq!(
            resp.status().as_u16(),
            200,
            "fault config refused: {}",
            resp.text().unwrap_or_default()
        );
    }

    /// `GET /_control/stats`.
    /// Waits (bounded, generously) until the emulator says run `id` is terminal; returns its status.
    pub fn wait_run_terminal(&self, id: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let (code, body) = self.get_json(&format!("/v1/runs/{id}"));
            assert_eq!(code, 200, "{body}");
            let status = body["status"].as_str().unwrap_or("").to_string();
            if ["completed", "failed", "timeout", "cancelled"].contains(&status.as_str()) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {id} is still {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stats(&self) -> Value {
        self.client()
            .get(self.url("/_control/stats"))
            .send()
            .and_then(|r| r.text())
            .map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))
            .expect("GET /_control/stats")
    }

    /// The id of the storage `name` of `kind` (`volumes` or `artifacts`), by listing every page.
    pub fn storage_id(&self, kind: &str, name: &str) -> Option<String> {
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut path = format!("/v1/{kind}?limit=100");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.get_json(&path);
            assert_eq!(status, 200, "listing {kind}: {page}");
            for item in page["data"].as_array().into_iter().flatten() {
                if item["name"] == name {
                    return item["id"].as_str().map(String::from);
                }
            }
            let p = &page["pagination"];
            let more = p["has_more"].as_bool().or(p["hasMore"].as_bool());
            cursor = p["next_cursor"]
                .as_str()
                .or(p["nextCursor"].as_str())
                .map(String::from);
            if more != Some(true) || cursor.is_none() {
                return None;
            }
        }
        None
    }

    /// Uploads every regular file under `dir` as a new version of storage `name` through the historic v1 flow
    /// (CONTRACT.md 7.1: create if missing, upload, PUT each file, commit). Returns the new version id.
    pub fn upload_dir(&self, kind: &str, name: &str, dir: &Path) -> String {
        let id = match self.storage_id(kind, name) {
            Some(id) => id,
            None => {
                let (status, body) = self.post_json(&format!("/v1/{kind}"), &json!({"name": name}));
                assert_eq!(status, 201, "creating {kind} {name}: {body}");
                body["id"].as_str().expect("created storage id").to_string()
            }
        };
        let mut files = Vec::new();
        walk(dir, dir, &mut files);
        let specs: Vec<Value> = files
            .iter()
            .map(|(rel, bytes)| {
                json!({"path": rel, "size": bytes.len(), "hash": hex::encode(Sha256::digest(bytes))})
            })
            .collect();
        let (status, session) = self.post_json(
            &format!("/v1/{kind}/{id}/upload"),
            &json!({"files": specs, "message": "uploaded by a test"}),
        );
        assert_eq!(status, 200, "upload: {session}");
        let targets = session["files"].as_array().expect("upload targets");
        for t in targets {
            let path = t["path"].as_str().unwrap_or_default();
            let url = t["upload_url"]
                .as_str()
                .or(t["uploadUrl"].as_str())
                .expect("upload_url");
            let bytes = &files
                .iter()
                .find(|(p, _)| p == path)
                .expect("declared file")
                .1;
            let resp = self
                .client()
                .put(url)
                .header("Content-Type", "application/octet-stream")
                .body(bytes.clone())
                .send()
                .expect("PUT upload_url");
            assert_eq!(resp.status().as_u16(), 200, "PUT {path}");
        }
        let sid = session["upload_session_id"]
            .as_str()
            .or(session["uploadSessionId"].as_str())
            .expect("upload_session_id");
        let (status, version) = self.post_json(
            &format!("/v1/{kind}/{id}/commit"),
            &json!({"upload_session_id": sid}),
        );
        assert_eq!(status, 200, "commit: {version}");
        version["id"].as_str().expect("version id").to_string()
    }

    /// Adds `bytes` (a `.tar.gz`, possibly hostile) as the head version of storage `name`; returns its id.
    pub fn add_raw_archive(&self, kind: &str, name: &str, bytes: &[u8]) -> String {
        let resp = self
            .client()
            .post(self.url(&format!("/_control/storages/{kind}/raw?name={name}")))
            .body(bytes.to_vec())
            .send()
            .expect("POST raw archive");
        assert_eq!(resp.status().as_u16(), 200, "raw archive refused");
        let v: Value = serde_json::from_str(&resp.text().expect("body")).expect("version JSON");
        v["id"].as_str().expect("version id").to_string()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every regular file under `dir`, as (relative path with `/`, bytes), sorted by path.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        if meta.is_dir() {
            walk(root, &p, out);
        } else if meta.is_file() {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, std::fs::read(&p).expect("read file")));
        }
    }
}

fn spawn(data: &Path, args: &[String]) -> (Child, String, Arc<Mutex<String>>) {
    spawn_listening(data, "127.0.0.1:0", args)
}

// ---- Added for the fault-injection tests (tests/faults.rs): stopping the server and bringing it back. ----

impl Emulator {
    /// Stops the emulator process (by its own handle) and leaves it stopped: the API becomes unreachable at
    /// `base_url` until `start_again`. Drop is still safe afterwards.
    pub fn stop_process(&mut self) {
        self.stop();
    }

    /// Starts the emulator again on the same data directory **and the same port** (unlike `restart`), so that a
    /// mount made against the old `base_url` can reach it again. Panics if the port cannot be bound.
    pub fn start_again(&mut self) {
        self.stop();
        let port = self
            .base_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("the base URL ends with a port");
        let (child, base_url, stderr) =
            spawn_listening(self.data.path(), &format!("127.0.0.1:{port}"), &self.args);
        assert_eq!(base_url, self.base_url, "the emulator came back elsewhere");
        self.child = child;
        self.stderr = stderr;
    }
}

/// The `vm0-emulator` binary. It belongs to another package of the workspace (the product does not depend on
/// it), so Cargo gives these tests no `CARGO_BIN_EXE_` for it: it is the sibling of `vm0fs` in the same target
/// directory, built by `cargo build --workspace` (scripts/test.sh does), or wherever `VM0_EMULATOR_BIN` says.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("VM0_EMULATOR_BIN") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_BIN_EXE_vm0fs")).with_file_name("vm0-emulator");
    assert!(
        path.exists(),
        "{} is missing: build the emulator first (cargo build --workspace, as scripts/test.sh does), \
         or set VM0_EMULATOR_BIN",
        path.display()
    );
    path
}

/// `spawn`, listening on `listen` instead of a free port.
fn spawn_listening(
    data: &Path,
    listen: &str,
    args: &[String],
) -> (Child, String, Arc<Mutex<String>>) {
    let mut child = Command::new(binary())
        .args(["--listen", listen, "--data"])
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vm0-emulator");
    let stderr = match child.stderr.take() {
        Some(pipe) => super::collect(pipe),
        None => Arc::default(),
    };
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        if let Some(Ok(first)) = lines.next() {
            let _ = tx.send(first);
        }
        for _ in lines {}
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(url) if url.starts_with("http://") => (child, url.trim().to_string(), stderr),
        other => {
            let _ = child.kill();
            let status = child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
            let err = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
            panic!(
                "vm0-emulator did not print its URL on {listen} (got {other:?}, exit {status:?}); its stderr:\n{err}"
            );
        }
    }
}
