//! The two writable corners of the tree: `runs/new/<agent>` starts a run, `runs/<id>/ctl` cancels one.
//!
//! `runs/new/<agent>`: what a handle accumulates between `open` and `close` is the request, sent once when the
//! writer closes the file: the first `flush` by the thread that wrote last (as mountpoint-s3 does, closes by other
//! processes holding a copy of the descriptor, such as a `sleep` forked by the writing shell, are not the end of
//! the writing). Later flushes of the same handle return the same outcome, so one open-write-close never starts
//! two runs; a handle closed without such a flush starts its run at release, where an error can only be logged.
//! The text is the prompt with one trailing newline removed, whatever it looks like (code that starts with `{` is
//! a prompt). `runs/new/<agent>.json` takes the request body instead (`prompt`, `variables`, `volumes`,
//! `artifact_name`, ... in either casing; the client sends them in the server's), with `agent` filled in from the
//! file name unless the body names an agent, session or checkpoint; a body that is not a JSON object is
//! `EINVAL`, never a prompt. A file kept separate for bodies, rather than guessing from the first character, so
//! that neither kind is ever taken for the other. Blank text starts nothing. Because the run is created at
//! `close(2)`, tools that check close (`cat`, `tee`, `/bin/echo`, Python) see an API refusal as an error; bash's
//! builtin `echo` ignores errors from close. Reading the file afterwards gives the writer its own run id, or the
//! error (see `outcomes`).
//!
//! `runs/<id>/ctl`: writing `cancel` (any case, surrounding whitespace ignored) cancels the run at once, inside
//! `write(2)`, so even bash's builtin `echo` sees a refusal; anything else written is `EINVAL`, and a run that has
//! already ended is `ESRCH`. Reading it shows this usage.

use serde_json::{Map, Value};

use super::error::{Error, Result};

/// Keys that say which agent a run is for; without one, the file's agent is used.
const AGENT_KEYS: [&str; 7] = [
    "agent",
    "agent_id",
    "agentId",
    "session_id",
    "sessionId",
    "checkpoint_id",
    "checkpointId",
];

/// The body of `POST /v1/runs` for what was written to `runs/new/<agent>` (text: the prompt) or
/// `runs/new/<agent>.json` (`json`: the request body, a JSON object). `None` for blank text: nothing to start.
pub fn run_request(agent: &str, written: &[u8], json: bool) -> Result<Option<Value>> {
    let file = if json {
        format!("runs/new/{agent}.json")
    } else {
        format!("runs/new/{agent}")
    };
    let text = std::str::from_utf8(written)
        .map_err(|_| Error::new(libc::EINVAL, format!("{file}: the text is not UTF-8")))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    if json {
        let mut body: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
            Error::new(
                libc::EINVAL,
                format!(
                    "{file}: the request is not a JSON object ({e}); write a plain-text prompt to runs/new/{agent}"
                ),
            )
        })?;
        if !AGENT_KEYS.iter().any(|k| body.contains_key(*k)) {
            body.insert("agent".into(), Value::String(agent.to_string()));
        }
        return Ok(Some(Value::Object(body)));
    }
    let prompt = text.strip_suffix('\n').unwrap_or(text);
    let prompt = prompt.strip_suffix('\r').unwrap_or(prompt);
    Ok(Some(
        serde_json::json!({ "agent": agent, "prompt": prompt }),
    ))
}

/// What reading `ctl` shows, and what a command it does not understand is told.
pub const CTL_USAGE: &str =
    "write `cancel` to this file to cancel the run (case and surrounding spaces do not matter)";

/// Checks what was written to `ctl`: only `cancel` is understood, in any case, with any surrounding whitespace.
pub fn ctl_command(run_id: &str, written: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(written);
    let command = text.trim();
    if command.eq_ignore_ascii_case("cancel") {
        Ok(())
    } else {
        Err(Error::new(
            libc::EINVAL,
            format!("runs/{run_id}/ctl: {command:?} is not a command; {CTL_USAGE}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_prompt_without_one_trailing_newline_even_when_it_starts_with_a_brace() {
        let body = run_request("coder", b"hello\n\n", false).unwrap();
        assert_eq!(
            body,
            Some(serde_json::json!({"agent": "coder", "prompt": "hello\n"}))
        );
        let body = run_request("coder", b"{ fn main() }\n", false)
            .unwrap()
            .unwrap();
        assert_eq!(body["prompt"], "{ fn main() }");
        assert_eq!(run_request("coder", b"\n", false).unwrap(), None);
        assert_eq!(run_request("coder", b"  \n", true).unwrap(), None);
    }

    #[test]
    fn a_json_file_takes_a_body_that_keeps_its_own_agent() {
        let body = run_request("coder", br#"{"prompt":"p","variables":{"A":"1"}}"#, true)
            .unwrap()
            .unwrap();
        assert_eq!(body["agent"], "coder");
        assert_eq!(body["variables"]["A"], "1");
        let body = run_request("coder", br#"{"prompt":"p","sessionId":"s1"}"#, true)
            .unwrap()
            .unwrap();
        assert!(body.get("agent").is_none());
        for bad in [&b"{not json"[..], b"plain text", b"[1]"] {
            assert_eq!(
                run_request("coder", bad, true).unwrap_err().errno,
                libc::EINVAL
            );
        }
    }

    #[test]
    fn ctl_forgives_case_and_whitespace() {
        for ok in [&b"cancel"[..], b"cancel\n", b"  Cancel \r\n", b"CANCEL"] {
            assert!(ctl_command("r", ok).is_ok());
        }
        assert_eq!(ctl_command("r", b"stop\n").unwrap_err().errno, libc::EINVAL);
    }
}
