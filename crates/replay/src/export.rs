//! Export and import of sessions as JSON Lines (`docs/json.md`): one
//! object per record, with its envelope (LSN, session, time, kind) and the
//! event in the one JSON shape every Logbook tool prints.

use std::io::{BufRead, Write};
use std::path::Path;

use logbook_bus::SessionEvent;
use logbook_wal::{Lsn, Wal};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::ReplayError;
use crate::scan::{Item, OnCorruption, Sessions, scan};

/// The version of the export format this build writes (`"v"` in each line)
/// and the newest it imports.
pub const EXPORT_VERSION: u32 = 1;

/// Records imported per append batch.
const IMPORT_BATCH: usize = 4096;

/// An event as JSON, in the one shape every Logbook JSON output uses: an
/// object whose `kind` is the variant's name (`Done`, `TokenUsage`), with
/// the variant's fields beside it; an event that is not a set of fields
/// (the text of a `UserMessage`) has it under `value`. [`event_from_json`]
/// reads it back.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{event_from_json, event_to_json};
///
/// use serde_json::json;
///
/// let hi = SessionEvent::UserMessage("hi".into());
/// assert_eq!(event_to_json(&hi), json!({"kind": "UserMessage", "value": "hi"}));
/// assert_eq!(event_to_json(&SessionEvent::Done), json!({"kind": "Done"}));
/// let resumed = SessionEvent::SessionResumed { from_lsn: 68 };
/// assert_eq!(event_to_json(&resumed), json!({"kind": "SessionResumed", "from_lsn": 68}));
/// assert_eq!(event_from_json(&event_to_json(&resumed))?, resumed);
/// # Ok::<(), String>(())
/// ```
#[must_use]
pub fn event_to_json(event: &SessionEvent) -> Value {
    let mut out = Map::new();
    match serde_json::to_value(event) {
        Ok(Value::String(kind)) => {
            out.insert("kind".to_owned(), Value::String(kind));
        }
        Ok(Value::Object(map)) if map.len() == 1 => {
            for (kind, inner) in map {
                out.insert("kind".to_owned(), Value::String(kind));
                match inner {
                    Value::Object(fields) if !fields.contains_key("kind") => out.extend(fields),
                    other => {
                        out.insert("value".to_owned(), other);
                    }
                }
            }
        }
        other => {
            out.insert("kind".to_owned(), Value::Null);
            out.insert("value".to_owned(), other.unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}

/// The event an [`event_to_json`] object describes.
///
/// # Errors
///
/// A message saying what is wrong: not an object, no `kind`, a kind this
/// build does not know, a missing or mistyped field.
pub fn event_from_json(json: &Value) -> Result<SessionEvent, String> {
    let Value::Object(fields) = json else {
        return Err("an event must be a JSON object".to_owned());
    };
    let Some(Value::String(kind)) = fields.get("kind") else {
        return Err("an event needs a \"kind\" (a string)".to_owned());
    };
    let mut rest = fields.clone();
    rest.remove("kind");
    let tagged = |inner: Value| {
        let mut m = Map::new();
        m.insert(kind.clone(), inner);
        serde_json::from_value::<SessionEvent>(Value::Object(m))
    };
    let attempt = if rest.is_empty() {
        serde_json::from_value::<SessionEvent>(Value::String(kind.clone()))
    } else if let (1, Some(value)) = (rest.len(), rest.get("value")) {
        tagged(value.clone()).or_else(|_| tagged(Value::Object(rest.clone())))
    } else {
        tagged(Value::Object(rest))
    };
    attempt.map_err(|e| format!("not a {kind} event: {e}"))
}

/// One line of an export (`docs/json.md`).
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    /// The export format's version.
    v: u32,
    /// The record's LSN in the exported log (not kept by an import).
    lsn: Lsn,
    session: Uuid,
    /// RFC 3339, UTC, to the microsecond (informational: `ts_us` is read).
    ts: String,
    ts_us: u64,
    /// The event's stable kind name (`logbook_bus::KINDS`).
    kind: String,
    event: Value,
}

/// What [`export`] keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportFilter {
    /// Only this session.
    pub session: Option<Uuid>,
    /// Only records appended at or after this time (µs since the epoch).
    pub since_us: Option<u64>,
    /// Only records appended before this time.
    pub until_us: Option<u64>,
}

impl ExportFilter {
    /// Everything.
    #[must_use]
    pub fn all() -> ExportFilter {
        ExportFilter::default()
    }

    /// Only `session`.
    #[must_use]
    pub fn session(mut self, session: Uuid) -> ExportFilter {
        self.session = Some(session);
        self
    }

    /// Only records appended in `[since_us, until_us)` (either bound
    /// optional).
    #[must_use]
    pub fn between(mut self, since_us: Option<u64>, until_us: Option<u64>) -> ExportFilter {
        self.since_us = since_us;
        self.until_us = until_us;
        self
    }

    fn keeps(&self, timestamp_us: u64) -> bool {
        self.since_us.is_none_or(|s| timestamp_us >= s)
            && self.until_us.is_none_or(|u| timestamp_us < u)
    }
}

/// What an export wrote, or an import appended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transfer {
    /// Records (events) written or appended.
    pub records: u64,
    /// Distinct sessions among them.
    pub sessions: u64,
    /// Records left out: of an event kind this build does not know (an
    /// export cannot describe them).
    pub skipped: u64,
    /// The first and last LSN appended (import only).
    pub lsns: Option<(Lsn, Lsn)>,
}

/// Write the records of the log in `dir` that `filter` keeps to `out` as
/// JSON Lines (`docs/json.md`), in LSN order.
///
/// # Errors
///
/// As [`session_state`](crate::session_state) (a damaged log is an error:
/// an export never silently leaves records out), [`ReplayError::Write`]
/// if `out` fails.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{ExportFilter, export};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let dir = tempfile::tempdir()?;
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("hi".into()))?;
/// let mut out = Vec::new();
/// let done = export(dir.path(), ExportFilter::all(), &mut out)?;
/// assert_eq!(done.records, 1);
/// let line: serde_json::Value = serde_json::from_slice(&out)?;
/// assert_eq!(line["kind"], "user_message");
/// assert_eq!(line["event"]["value"], "hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export(
    dir: impl AsRef<Path>,
    filter: ExportFilter,
    out: &mut dyn Write,
) -> Result<Transfer, ReplayError> {
    let dir = dir.as_ref();
    let mut done = Transfer::default();
    let mut sessions = std::collections::HashSet::new();
    let mut failed = None;
    let selected = filter.session.map_or(Sessions::All, Sessions::One);
    scan(dir, selected, OnCorruption::Fail, |item| {
        if failed.is_some() {
            return;
        }
        let record = match item {
            Item::Event(record) => record,
            Item::Skipped { timestamp_us, .. } => {
                if filter.keeps(timestamp_us) {
                    done.skipped += 1;
                }
                return;
            }
        };
        if !filter.keeps(record.timestamp_us) {
            return;
        }
        let line = Line {
            v: EXPORT_VERSION,
            lsn: record.lsn,
            session: record.session,
            ts: rfc3339(record.timestamp_us),
            ts_us: record.timestamp_us,
            kind: record.event.kind().to_owned(),
            event: event_to_json(&record.event),
        };
        let written = serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        match written {
            Ok(()) => {
                done.records += 1;
                sessions.insert(record.session);
            }
            Err(e) => failed = Some(e),
        }
    })?;
    if let Some(source) = failed {
        return Err(ReplayError::Write { source });
    }
    out.flush()
        .map_err(|source| ReplayError::Write { source })?;
    done.sessions = sessions.len() as u64;
    Ok(done)
}

/// Append the events of an export (`docs/json.md`) read from `input` to
/// `wal`: each keeps its session and its time (`ts_us`), in the order of
/// the lines; LSNs are new. Every line is read and checked first: if any
/// is not a valid export line, nothing is appended. Returns once what was
/// appended is durable.
///
/// # Errors
///
/// [`ReplayError::BadImportLine`] naming the first bad line (1-based) and
/// what is wrong with it; [`ReplayError::Read`] if `input` fails;
/// [`ReplayError::Wal`] if appending or syncing fails (a crash or error
/// then can leave a prefix of the import, as for any append not yet
/// acknowledged).
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{ExportFilter, export, import, session_state};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let (from, to) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// let wal = Wal::open(from.path(), WalOptions::default())?;
/// let id = uuid::Uuid::new_v4();
/// wal.append(id, &SessionEvent::UserMessage("hi".into()))?;
/// let mut lines = Vec::new();
/// export(from.path(), ExportFilter::all(), &mut lines)?;
///
/// let other = Wal::open(to.path(), WalOptions::default())?;
/// let done = import(&other, &lines[..])?;
/// assert_eq!((done.records, done.sessions), (1, 1));
/// assert_eq!(session_state(to.path(), id)?.transcript()[0].text, "hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn import(wal: &Wal, input: impl BufRead) -> Result<Transfer, ReplayError> {
    let events = parse_all(input)?;
    let dir = wal.dir();
    let mut done = Transfer::default();
    let mut sessions = std::collections::HashSet::new();
    for chunk in events.chunks(IMPORT_BATCH) {
        let lsns = wal
            .append_many_at(chunk)
            .map_err(|e| ReplayError::wal("importing into", dir, e))?;
        if let (Some(&first), Some(&last)) = (lsns.first(), lsns.last()) {
            done.lsns = Some((done.lsns.map_or(first, |(f, _)| f), last));
        }
        done.records += chunk.len() as u64;
        sessions.extend(chunk.iter().map(|(s, _, _)| *s));
    }
    wal.sync()
        .map_err(|e| ReplayError::wal("syncing an import in", dir, e))?;
    done.sessions = sessions.len() as u64;
    Ok(done)
}

/// Check an export as [`import`] does before appending anything, without
/// a log: how many events it holds.
///
/// # Errors
///
/// As [`import`]'s checks: [`ReplayError::BadImportLine`],
/// [`ReplayError::Read`].
///
/// # Examples
///
/// ```
/// use logbook_replay::{ReplayError, import_check};
///
/// let bad = "{\"v\":1}\n";
/// assert!(matches!(import_check(bad.as_bytes()), Err(ReplayError::BadImportLine { line: 1, .. })));
/// ```
pub fn import_check(input: impl BufRead) -> Result<u64, ReplayError> {
    parse_all(input).map(|events| events.len() as u64)
}

/// Every line of an export, checked, as (session, time, event).
fn parse_all(input: impl BufRead) -> Result<Vec<(Uuid, u64, SessionEvent)>, ReplayError> {
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let number = i + 1;
        let line = line.map_err(|source| ReplayError::Read {
            line: number,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        events.push(
            parse_line(&line).map_err(|reason| ReplayError::BadImportLine {
                line: number,
                reason,
            })?,
        );
    }
    Ok(events)
}

/// One export line as (session, time, event), or what is wrong with it.
fn parse_line(text: &str) -> Result<(Uuid, u64, SessionEvent), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let line: Line =
        serde_json::from_value(value).map_err(|e| format!("not an export line: {e}"))?;
    if line.v == 0 || line.v > EXPORT_VERSION {
        return Err(format!(
            "export format version {} (this build reads 1 to {EXPORT_VERSION})",
            line.v
        ));
    }
    let event = event_from_json(&line.event)?;
    if event.kind() != line.kind {
        return Err(format!(
            "\"kind\" says {} but the event is a {}",
            line.kind,
            event.kind()
        ));
    }
    Ok((line.session, line.ts_us, event))
}

/// RFC 3339, UTC, to the microsecond.
fn rfc3339(us: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{event, small_log};
    use proptest::prelude::*;

    /// The lines of an export, without the LSNs (which an import renews).
    fn without_lsns(export: &[u8]) -> Vec<Value> {
        export
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut v: Value = serde_json::from_slice(l).unwrap();
                v.as_object_mut().unwrap().remove("lsn");
                v
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Every event (any kind, any field values) survives its JSON.
        #[test]
        fn every_event_reads_back_from_its_json(e in event()) {
            prop_assert_eq!(event_from_json(&event_to_json(&e)), Ok(e));
        }

        /// export → import into another log → export gives the same lines
        /// (sessions, order, times, events), LSNs aside.
        #[test]
        fn export_import_export_round_trips(
            events in prop::collection::vec((event(), 0u8..4), 1..80),
        ) {
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let wal = small_log(a.path());
            for (e, s) in &events {
                wal.append(Uuid::from_u128(u128::from(*s) + 1), e).unwrap();
            }
            wal.close().unwrap();
            let mut first = Vec::new();
            let done = export(a.path(), ExportFilter::all(), &mut first).unwrap();
            prop_assert_eq!(done.records, events.len() as u64);
            let other = small_log(b.path());
            let imported = import(&other, &first[..]).unwrap();
            prop_assert_eq!(imported.records, events.len() as u64);
            prop_assert_eq!(imported.lsns, Some((1, events.len() as u64)));
            other.close().unwrap();
            let mut second = Vec::new();
            export(b.path(), ExportFilter::all(), &mut second).unwrap();
            prop_assert_eq!(without_lsns(&first), without_lsns(&second));
        }
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_is_imported() {
        let a = tempfile::tempdir().unwrap();
        let wal = small_log(a.path());
        let id = Uuid::from_u128(5);
        wal.append(id, &SessionEvent::UserMessage("one".into()))
            .unwrap();
        wal.append(id, &SessionEvent::Done).unwrap();
        let mut good = Vec::new();
        export(a.path(), ExportFilter::all(), &mut good).unwrap();
        let good = String::from_utf8(good).unwrap();
        let first = good.lines().next().unwrap().to_owned();
        let cases = [
            ("{not json", "not JSON"),
            (r#"{"v":1}"#, "not an export line"),
            (
                &first.replace(r#""v":1"#, r#""v":9"#),
                "export format version 9",
            ),
            (
                &first.replace(r#""kind":"UserMessage""#, r#""kind":"NoSuchKind""#),
                "not a NoSuchKind event",
            ),
            (
                &first.replace(r#""kind":"user_message""#, r#""kind":"done""#),
                "\"kind\" says done",
            ),
        ];
        let b = tempfile::tempdir().unwrap();
        let other = small_log(b.path());
        for (bad, says) in cases {
            let input = format!("{good}\n{bad}\n{good}");
            match import(&other, input.as_bytes()) {
                Err(ReplayError::BadImportLine { line, reason }) => {
                    assert_eq!(line, 4, "{bad}");
                    assert!(reason.contains(says), "{reason}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert_eq!(other.last_lsn(), 0, "nothing imported");
    }

    #[test]
    fn a_filter_keeps_one_session_and_a_time_span() {
        let a = tempfile::tempdir().unwrap();
        let wal = small_log(a.path());
        let (x, y) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t0 = 1_700_000_000_000_000;
        let batch: Vec<(Uuid, u64, SessionEvent)> = (0..10u64)
            .map(|i| {
                let who = if i % 2 == 0 { x } else { y };
                (who, t0 + i, SessionEvent::UserMessage(format!("m{i}")))
            })
            .collect();
        wal.append_many_at(&batch).unwrap();
        let lines = |filter| {
            let mut out = Vec::new();
            export(a.path(), filter, &mut out).unwrap();
            without_lsns(&out)
                .into_iter()
                .map(|v| v["event"]["value"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(ExportFilter::all().session(x)),
            ["m0", "m2", "m4", "m6", "m8"]
        );
        assert_eq!(
            lines(ExportFilter::all().between(Some(t0 + 3), Some(t0 + 6))),
            ["m3", "m4", "m5"]
        );
    }
}
