//! How records look: a readable one-line summary of each event kind, and
//! the JSON object of a record.

use logbook_bus::{KINDS, SessionEvent};
use logbook_wal::{EventRecord, Lsn, RecordRef};
use serde::Serialize;
use uuid::Uuid;

use crate::output::rfc3339;

/// Characters of a text field shown without `--full`.
const SHORT_TEXT: usize = 72;

/// The kind name of a record's event and whether that kind is durable,
/// read from its tag without decoding it (`("unknown", false)` for a kind
/// or codec this build does not know).
pub(crate) fn kind_of(record: &RecordRef<'_>) -> (&'static str, bool) {
    EventRecord::peek_kind(record)
        .ok()
        .flatten()
        .unwrap_or(("unknown", false))
}

/// Whether events of the kind named `kind` are durable (meant for the log)
/// rather than ephemeral progress signals (`false` for `"unknown"`).
pub(crate) fn kind_is_durable(kind: &str) -> bool {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .and_then(SessionEvent::tag_is_durable)
        .unwrap_or(false)
}

/// A string for a one-line view: escaped, quoted, shortened unless `full`.
pub(crate) fn quote(text: &str, full: bool) -> String {
    let count = text.chars().count();
    if full || count <= SHORT_TEXT {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(SHORT_TEXT).collect();
    format!("{head:?}… (+{} chars)", count - SHORT_TEXT)
}

fn trace(id: &Uuid) -> String {
    crate::output::short_id(id)
}

/// The readable summary of one event, on one line.
pub(crate) fn summary(event: &SessionEvent, full: bool) -> String {
    let q = |s: &str| quote(s, full);
    match event {
        SessionEvent::Thinking => String::new(),
        SessionEvent::TextChunk(s)
        | SessionEvent::TextComplete(s)
        | SessionEvent::ThinkingComplete(s)
        | SessionEvent::UserMessage(s)
        | SessionEvent::Error(s) => q(s),
        SessionEvent::ToolHeartbeat {
            tool_call_id,
            name,
            elapsed_secs,
        } => format!("{name} [{tool_call_id}] running for {elapsed_secs} s"),
        SessionEvent::ToolOutputChunk {
            tool_call_id,
            name,
            stream,
            chunk,
        } => {
            let stream = match stream {
                logbook_bus::ToolStream::Stdout => "stdout",
                logbook_bus::ToolStream::Stderr => "stderr",
            };
            format!("{name} [{tool_call_id}] {stream} {}", q(chunk))
        }
        SessionEvent::StreamRetry {
            attempt,
            max_restarts,
            reason,
        } => format!("attempt {attempt} of {max_restarts}: {}", q(reason)),
        SessionEvent::TokenEstimate(e) => format!(
            "{}: about {} of {} tokens ({:.0}%)",
            e.model,
            e.request_tokens,
            e.budget,
            e.fraction() * 100.0
        ),
        SessionEvent::RlmProgress {
            trace_id,
            iteration,
            max_iterations,
            status,
        } => format!(
            "rlm {} iteration {iteration} of {max_iterations}: {}",
            trace(trace_id),
            q(status)
        ),
        SessionEvent::TokenUsage(d) => format!(
            "{} {}: {} in + {} out = {} tokens, {} ms",
            d.source,
            d.model,
            d.prompt_tokens,
            d.completion_tokens,
            d.total(),
            d.duration_ms
        ),
        SessionEvent::ToolCallStart {
            tool_call_id,
            name,
            arguments,
        } => format!("{name} [{tool_call_id}] {}", q(arguments)),
        SessionEvent::ToolCallComplete {
            tool_call_id,
            name,
            output,
            success,
            duration_ms,
        } => format!(
            "{name} [{tool_call_id}] {} in {duration_ms} ms: {}",
            if *success { "ok" } else { "FAILED" },
            q(output)
        ),
        SessionEvent::ToolCallMetadata {
            tool_call_id,
            name,
            metadata_json,
        } => format!("{name} [{tool_call_id}] {}", q(metadata_json)),
        SessionEvent::ApprovalRequest {
            approval_id,
            tool_call_id,
            tool,
            action,
            resource,
            reason,
        } => format!(
            "{tool} [{tool_call_id}] asks to {action} {}: {} (approval {approval_id})",
            q(resource),
            q(reason)
        ),
        SessionEvent::UsageReport {
            prompt_tokens,
            completion_tokens,
            duration_ms,
            model,
        } => format!("{model}: {prompt_tokens} in + {completion_tokens} out, {duration_ms} ms"),
        SessionEvent::Done => "session finished".to_owned(),
        SessionEvent::RlmComplete {
            trace_id,
            outcome,
            iterations,
            subcalls,
            input_tokens,
            output_tokens,
            elapsed_ms,
            reason,
            root_model,
            subcall_model_used,
        } => {
            let mut s = format!(
                "rlm {} {} after {iterations} iterations and {subcalls} sub-calls, \
                 {input_tokens} in + {output_tokens} out, {elapsed_ms} ms, root model {root_model}",
                trace(trace_id),
                outcome.as_str()
            );
            if let Some(m) = subcall_model_used {
                s.push_str(&format!(", sub-calls on {m}"));
            }
            if let Some(r) = reason {
                s.push_str(&format!(": {}", q(r)));
            }
            s
        }
        SessionEvent::CompactionStarted {
            trace_id,
            reason,
            before_tokens,
            budget,
        } => format!(
            "compaction {}: {before_tokens} tokens, budget {budget}: {}",
            trace(trace_id),
            q(reason)
        ),
        SessionEvent::CompactionCompleted {
            trace_id,
            strategy,
            before_tokens,
            after_tokens,
            kept_messages,
        } => format!(
            "compaction {} by {strategy}: {before_tokens} -> {after_tokens} tokens, \
             {kept_messages} messages kept",
            trace(trace_id)
        ),
        SessionEvent::CompactionFailed {
            trace_id,
            fell_back_to,
            reason,
            after_tokens,
            budget,
        } => format!(
            "compaction {} failed: {}; fell back to {}, {after_tokens} tokens (budget {budget})",
            trace(trace_id),
            q(reason),
            fell_back_to.as_deref().unwrap_or("nothing")
        ),
        SessionEvent::ContextTruncated {
            trace_id,
            dropped_tokens,
            kept_messages,
            archive_ref,
        } => {
            let mut s = format!(
                "truncation {}: {dropped_tokens} tokens dropped, {kept_messages} messages kept",
                trace(trace_id)
            );
            if let Some(r) = archive_ref {
                s.push_str(&format!(", archived at {}", q(r)));
            }
            s
        }
        SessionEvent::RlmSubcallFallback {
            requested_model,
            fallback_model,
            reason,
        } => format!("{requested_model} -> {fallback_model}: {}", q(reason)),
        SessionEvent::SessionStarted { model, cwd, title } => {
            let mut s = format!("model {model} in {}", q(cwd));
            if let Some(t) = title {
                s.push_str(&format!(": {}", q(t)));
            }
            s
        }
        SessionEvent::SessionResumed { from_lsn } => format!("resumed after LSN {from_lsn}"),
        SessionEvent::SessionForked { from, at_lsn } => {
            format!("forked from {from} at LSN {at_lsn}")
        }
        SessionEvent::SessionDeleted {
            after_lsn,
            ranges,
            reason,
        } => {
            let mut parts = Vec::new();
            match after_lsn {
                Some(0) => parts.push("the whole session".to_owned()),
                Some(after) => parts.push(format!("after LSN {after}")),
                None => {}
            }
            if !ranges.is_empty() {
                let shown: Vec<String> = ranges
                    .iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                parts.push(format!("LSN {}", shown.join(",")));
            }
            let mut s = format!("deletes {}", parts.join(" and "));
            if !reason.is_empty() {
                s.push_str(&format!(" ({})", q(reason)));
            }
            s
        }
        SessionEvent::SessionTruncated { reason } if reason.is_empty() => {
            "the session's beginning is not here (truncated)".to_owned()
        }
        SessionEvent::SessionTruncated { reason } => {
            format!(
                "the session's beginning is not here (truncated): {}",
                q(reason)
            )
        }
        // A kind added to logbook-bus after this renderer was written.
        other => format!("{other:?}"),
    }
}

/// The text line of one record: LSN, time, session, kind, summary.
pub(crate) fn text_line(
    record: &RecordRef<'_>,
    decoded: &Result<SessionEvent, String>,
    full: bool,
    physical: Option<&Physical>,
) -> String {
    let session = if full {
        record.session.to_string()
    } else {
        crate::output::short_id(&record.session)
    };
    let (kind, text) = match decoded {
        Ok(event) => (event.kind(), summary(event, full)),
        Err(e) => (kind_of(record).0, format!("(undecodable: {e})")),
    };
    let place = physical.map_or_else(String::new, |p| format!("{}  ", p.text()));
    let line = format!(
        "{:>8}  {place}{}  {session}  {kind:<20}  {text}",
        record.lsn,
        rfc3339(record.timestamp_us)
    );
    line.trim_end().to_owned()
}

/// Where a record is and its frame, for `dump --physical`: the segment
/// file's name, the frame's offset in it, its length in bytes (header and
/// payload) and its CRC.
#[derive(Debug, Serialize)]
pub(crate) struct Physical {
    pub(crate) segment: String,
    pub(crate) offset: u64,
    pub(crate) frame_len: u64,
    pub(crate) crc: u32,
}

impl Physical {
    pub(crate) fn of(record: &RecordRef<'_>) -> Physical {
        Physical {
            segment: record
                .segment
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            offset: record.offset,
            frame_len: record.end_offset() - record.offset,
            crc: record.crc(),
        }
    }

    /// `00000000000000000001.wal  offset 64  len 95  crc 0x1a2b3c4d`.
    pub(crate) fn text(&self) -> String {
        format!(
            "{}  offset {:>8}  len {:>6}  crc {:#010x}",
            self.segment, self.offset, self.frame_len, self.crc
        )
    }
}

/// An event as JSON, in the one shape every JSON output uses
/// (`logbook_replay::event_to_json`, `docs/json.md`):
/// `{"kind":"Done"}`, `{"kind":"UserMessage","value":"hi"}`,
/// `{"kind":"SessionResumed","from_lsn":68}`.
pub(crate) fn event_json(event: &SessionEvent) -> serde_json::Value {
    logbook_replay::event_to_json(event)
}

/// The `event` of a record whose payload does not decode: no kind.
fn no_event() -> serde_json::Value {
    serde_json::json!({ "kind": null })
}

/// The JSON object of one record (`logbook dump --json`). Field names are
/// stable: `lsn`, `ts`, `session`, `kind`, `durable`, `event` (see
/// [`event_json`]; `{"kind":null}` for a record whose payload does not
/// decode), and `error` only for such a record.
#[derive(Debug, Serialize)]
pub(crate) struct JsonRecord {
    /// The record's log, for records read from a stream of many logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) log: Option<Uuid>,
    pub(crate) lsn: Lsn,
    pub(crate) ts: String,
    pub(crate) session: Uuid,
    pub(crate) kind: &'static str,
    pub(crate) durable: bool,
    pub(crate) event: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// With `--include-deleted`: a tombstone deletes this record.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) deleted: bool,
    /// With `--physical`: the frame's segment, offset, length and CRC.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) physical: Option<Physical>,
}

impl JsonRecord {
    pub(crate) fn new(
        record: &RecordRef<'_>,
        decoded: &Result<SessionEvent, String>,
    ) -> JsonRecord {
        let (kind, durable, event, error) = match decoded {
            Ok(event) => (event.kind(), event.is_durable(), event_json(event), None),
            Err(e) => {
                let (kind, durable) = kind_of(record);
                (kind, durable, no_event(), Some(e.clone()))
            }
        };
        JsonRecord {
            deleted: false,
            log: None,
            lsn: record.lsn,
            ts: rfc3339(record.timestamp_us),
            session: record.session,
            kind,
            durable,
            event,
            error,
            physical: None,
        }
    }
}

/// Decode a record's payload (refusing a segment of another codec); the
/// error as text.
pub(crate) fn decode(record: &RecordRef<'_>) -> Result<SessionEvent, String> {
    EventRecord::decode(record)
        .map(|r| r.event)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use logbook_bus::codec;
    use logbook_bus::{TokenDelta, TokenSource};

    #[test]
    fn durable_kinds_match_the_bus() {
        let samples = [
            (SessionEvent::Thinking, "thinking"),
            (SessionEvent::TextChunk("x".into()), "text_chunk"),
            (
                SessionEvent::TokenUsage(TokenDelta {
                    source: TokenSource::Root,
                    model: "m".into(),
                    prompt_tokens: 1,
                    completion_tokens: 2,
                    duration_ms: 3,
                }),
                "token_usage",
            ),
            (SessionEvent::Done, "done"),
            (
                SessionEvent::SessionResumed { from_lsn: 1 },
                "session_resumed",
            ),
        ];
        fn record(payload: &[u8]) -> RecordRef<'_> {
            RecordRef {
                lsn: 1,
                timestamp_us: 0,
                sync_mark: 0,
                session: Uuid::nil(),
                payload,
                codec_id: codec::CODEC_ID,
                segment: std::path::Path::new("x.wal"),
                offset: 40,
                frame_crc: 0,
                key_id: None,
            }
        }
        for (event, kind) in samples {
            assert_eq!(event.kind(), kind);
            assert_eq!(kind_is_durable(kind), event.is_durable(), "{kind}");
            let bytes = codec::encode(&event).unwrap();
            assert_eq!(kind_of(&record(&bytes)), (kind, event.is_durable()));
            assert!(!summary(&event, false).contains('\n'));
        }
        assert!(!kind_is_durable("unknown"));
        assert_eq!(kind_of(&record(&[200])), ("unknown", false));
        assert_eq!(kind_of(&record(&[])), ("unknown", false));
        let foreign = RecordRef {
            codec_id: codec::CODEC_ID + 1,
            ..record(&[0])
        };
        assert_eq!(kind_of(&foreign), ("unknown", false));
    }

    #[test]
    fn long_text_is_shortened_unless_full() {
        let text = "a\n".repeat(100);
        let short = quote(&text, false);
        assert!(short.contains("(+128 chars)"), "{short}");
        assert!(!short.contains('\n'));
        assert_eq!(quote(&text, true), format!("{text:?}"));
    }
}
