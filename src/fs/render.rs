//! How API objects read as files.
//!
//! JSON files are the API object re-serialised as pretty JSON (2-space indent, snake_case keys whatever casing the
//! server speaks, a final newline), so scripts see one stable shape. Text files end with a newline. A log is one
//! line per entry, oldest first:
//!
//! ```text
//! 2026-01-15T10:00:10.000Z agent info [tool_use] {"name":"bash"}
//! ```
//!
//! that is `<timestamp> <type> <level> <message>`, with any newline or carriage return inside the message written
//! as `\n` / `\r` so that one entry is always one line.

use serde::Serialize;

use crate::api::models::LogEntry;

/// Pretty JSON with a final newline.
pub fn json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
        // Serialising our own models cannot fail; if it ever did, say so in the file rather than panic.
        format!("{{\"error\": \"vm0fs could not render this object: {e}\"}}").into_bytes()
    });
    out.push(b'\n');
    out
}

/// Text with exactly one final newline added when it has none (an empty text stays empty).
pub fn text(s: &str) -> Vec<u8> {
    let mut out = s.as_bytes().to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// One log line, newline included.
pub fn log_line(entry: &LogEntry) -> String {
    let message = entry.message.replace('\n', "\\n").replace('\r', "\\r");
    format!(
        "{} {} {} {}\n",
        entry.timestamp, entry.kind, entry.level, message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_entry_is_one_line() {
        let entry = LogEntry {
            timestamp: "2026-01-15T10:00:10.000Z".into(),
            kind: "agent".into(),
            level: "info".into(),
            message: "two\nlines".into(),
            metadata: None,
        };
        assert_eq!(
            log_line(&entry),
            "2026-01-15T10:00:10.000Z agent info two\\nlines\n"
        );
    }

    #[test]
    fn text_gets_one_final_newline() {
        assert_eq!(text("a"), b"a\n");
        assert_eq!(text("a\n"), b"a\n");
        assert_eq!(text(""), b"");
    }
}
