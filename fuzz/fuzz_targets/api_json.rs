//! Hostile bytes as an API response body: every wire model of `vm0fs::api::models` and every SSE event kind must
//! answer `Ok` or `Err`, never panic (a malformed body, wrong types, missing or unknown fields, HTML...).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use vm0fs::api::models::*;

fn parse<T: DeserializeOwned>(data: &[u8]) {
    let _ = serde_json::from_slice::<T>(data);
}

fuzz_target!(|data: &[u8]| {
    parse::<Pagination>(data);
    parse::<Page<Agent>>(data);
    parse::<Page<AgentVersion>>(data);
    parse::<Page<Run>>(data);
    parse::<Page<LogEntry>>(data);
    parse::<Page<Storage>>(data);
    parse::<Page<StorageVersion>>(data);
    parse::<Agent>(data);
    parse::<AgentVersion>(data);
    parse::<RunStatus>(data);
    parse::<Run>(data);
    parse::<RunDetail>(data);
    parse::<LogEntry>(data);
    parse::<MetricPoint>(data);
    parse::<MetricsSummary>(data);
    parse::<RunMetrics>(data);
    parse::<Storage>(data);
    parse::<StorageDetail>(data);
    parse::<StorageVersion>(data);
    parse::<LegacyDownload>(data);
    parse::<LegacyDownloadFile>(data);
    parse::<ErrorBody>(data);
    parse::<ErrorDetail>(data);
    parse::<CreateStorageRequest>(data);
    parse::<UploadRequest>(data);
    parse::<UploadFileSpec>(data);
    parse::<UploadResponse>(data);
    parse::<UploadTarget>(data);
    parse::<CommitRequest>(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        // Whatever parses as JSON is also recased both ways without a panic.
        let _ = recase_keys(value.clone(), Casing::Camel);
        let _ = recase_keys(value, Casing::Snake);
    }

    // SSE: the first line is the event name, the rest its data.
    let text = String::from_utf8_lossy(data);
    let (event, body) = text.split_once('\n').unwrap_or((&text, ""));
    for name in [event, "status", "output", "complete", "error", "heartbeat"] {
        if let Ok(Some(ev)) = SseEvent::parse(name, body) {
            // A parsed event serialises back to a frame without a panic.
            let _ = ev.to_frame();
        }
    }
});
