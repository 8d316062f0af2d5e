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
        tagged(Value::Object(rest.clone()))
    };
    attempt.map_err(|e| format!("not a {kind} event: {}", explain(kind, &rest, &e)))
}

/// What is wrong with the fields `rest` of a `kind` event, given serde's
/// `error` for them: serde's own message when it says it all (an unknown
/// kind, a missing field), else one naming the field at fault and the type
/// it takes (serde's messages for a mistyped field, or for a kind whose
/// event is one `value`, name neither the field nor the shape expected).
fn explain(kind: &str, rest: &Map<String, Value>, error: &serde_json::Error) -> String {
    let message = error.to_string();
    let tagged = |inner: Value| {
        let mut m = Map::new();
        m.insert(kind.to_owned(), inner);
        serde_json::from_value::<SessionEvent>(Value::Object(m))
    };
    if message.starts_with(&format!("unknown variant `{kind}`"))
        || message.starts_with("missing field")
    {
        return message;
    }
    let others = |allowed: &[&str]| -> Vec<String> {
        rest.keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| format!("{k:?}"))
            .collect()
    };
    // A kind without fields: `{"kind": "Done"}`.
    if serde_json::from_value::<SessionEvent>(Value::String(kind.to_owned())).is_ok() {
        return format!(
            "a {kind} event has no field but \"kind\" (it has {})",
            others(&[]).join(", ")
        );
    }
    let null = tagged(Value::Null).err().map(|e| e.to_string());
    let expected = null
        .as_deref()
        .and_then(|m| m.split_once(", expected "))
        .map(|(_, what)| what.to_owned());
    match expected {
        // A kind whose event is one value: `{"kind": "UserMessage", "value": "hi"}`.
        Some(what) if !what.starts_with("struct") && !what.contains("map") => {
            match rest.get("value") {
                None => format!("its \"value\" is missing (expected {what})"),
                Some(value) if rest.len() == 1 => match tagged(value.clone()) {
                    Err(e) => format!("\"value\": {e}"),
                    Ok(_) => message,
                },
                Some(_) => format!(
                    "a {kind} event has \"kind\" and \"value\" only (it has {} too)",
                    others(&["value"]).join(", ")
                ),
            }
        }
        // A kind with named fields: find the one serde stopped at (it
        // reads them in order and stops at the first mistyped one).
        _ => rest
            .iter()
            .find_map(|(field, value)| {
                let mut one = Map::new();
                one.insert(field.clone(), value.clone());
                match tagged(Value::Object(one)) {
                    Err(e) if !e.to_string().starts_with("missing field") => {
                        Some(format!("{field:?}: {e}"))
                    }
                    _ => None,
                }
            })
            .unwrap_or(message),
    }
}

/// One line of an export (`docs/json.md`).
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    /// The export format's version.
    v: u32,
    /// The record's LSN in the exported log (not kept by an import, which
    /// maps the LSNs inside events from it).
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
    /// The first and last LSN appended (import only; for
    /// [`import_plan`], the LSNs they would get).
    pub lsns: Option<(Lsn, Lsn)>,
    /// Whether the sessions were imported under new ids
    /// ([`ImportOptions::new_ids`]).
    pub new_ids: bool,
    /// Records of an earlier import of the same file that stopped
    /// part-way (a full disk): the file's first lines, found at the end of
    /// the log, not appended again; the import goes on after them.
    pub already_there: u64,
}

/// How [`import_with`] and [`import_plan`] import a file.
///
/// # Examples
///
/// ```
/// use logbook_replay::ImportOptions;
///
/// assert!(!ImportOptions::default().new_ids);
/// assert!(ImportOptions::default().with_new_ids().new_ids);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Import every session of the file under a new random id (a
    /// `SessionForked.from` naming a session of the file names its new
    /// id), instead of refusing a file whose sessions the log already has
    /// ([`ReplayError::SessionExists`]): a second copy, on purpose.
    pub new_ids: bool,
}

impl ImportOptions {
    /// [`ImportOptions::new_ids`] on.
    #[must_use]
    pub fn with_new_ids(mut self) -> ImportOptions {
        self.new_ids = true;
        self
    }
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
    let log_start = crate::scan::log_start(dir)?;
    // Each session's truncation mark to write before its first line, until
    // that line is written: the export never holds a truncated session's
    // beginning, so it says so (`docs/json.md`, "Truncated sessions").
    let mut marks: std::collections::HashMap<Uuid, Option<String>> =
        std::collections::HashMap::new();
    scan(dir, selected, OnCorruption::Fail, |item| {
        if failed.is_some() {
            return;
        }
        let (session, lsn) = match &item {
            Item::Event(record) => (record.session, record.lsn),
            Item::Skipped { session, lsn, .. } => (*session, *lsn),
        };
        // At the session's first record: is it truncated in this log (the
        // rule of `SessionState::truncated`)?
        let mark = marks.entry(session).or_insert_with(|| match &item {
            Item::Event(record) => match &record.event {
                SessionEvent::SessionTruncated { reason } => Some(reason.clone()),
                event if crate::state::cut_short(log_start, lsn, event.is_beginning()) => {
                    Some(retained(log_start))
                }
                _ => None,
            },
            Item::Skipped { .. } => (log_start > 1).then(|| retained(log_start)),
        });
        let record = match item {
            Item::Event(record) => record,
            Item::Skipped { timestamp_us, .. } => {
                if filter.keeps(timestamp_us) {
                    done.skipped += 1;
                }
                // Its first line will not be the session's first record.
                if sessions.contains(&session) {
                    return;
                }
                mark.get_or_insert_with(|| format!("exported without its record at LSN {lsn}"));
                return;
            }
        };
        // Deleted records are left out by the scan; tombstones too: their
        // LSNs name records of this log, which an import renumbers. A
        // truncation mark is written only before the first line.
        if record.event.is_tombstone() || record.event.is_truncation_mark() {
            return;
        }
        if !filter.keeps(record.timestamp_us) {
            // A session whose first records the filter leaves out does not
            // begin where its export does.
            if !sessions.contains(&session) {
                mark.get_or_insert_with(|| {
                    format!("exported from LSN {lsn} on, without its earlier records")
                });
            }
            return;
        }
        let mut lines = Vec::with_capacity(2);
        if !sessions.contains(&session) {
            lines.extend(
                mark.take()
                    .map(|reason| SessionEvent::SessionTruncated { reason }),
            );
        }
        let marked = lines.len() as u64;
        lines.push(record.event);
        let mut written = Ok(());
        for event in &lines {
            let line = Line {
                v: EXPORT_VERSION,
                lsn: record.lsn,
                session,
                ts: rfc3339(record.timestamp_us),
                ts_us: record.timestamp_us,
                kind: event.kind().to_owned(),
                event: event_to_json(event),
            };
            written = written.and_then(|()| {
                serde_json::to_writer(&mut *out, &line)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
            });
        }
        match written {
            Ok(()) => {
                done.records += 1 + marked;
                sessions.insert(session);
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

/// The reason a truncation mark gives for a session whose beginning was
/// retained away from the log it is exported from.
fn retained(log_start: Lsn) -> String {
    format!("its beginning was retained away (the exported log starts at LSN {log_start})")
}

/// Append the events of an export (`docs/json.md`) read from `input` to
/// `wal`: each keeps its session and its time (`ts_us`), in the order of
/// the lines; LSNs are new. [`import_with`] with the default options: a
/// file whose sessions the log already has is refused.
///
/// # Errors
///
/// As [`import_with`].
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
/// assert!(import(&other, &lines[..]).is_err(), "the same file twice");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn import(wal: &Wal, input: impl BufRead) -> Result<Transfer, ReplayError> {
    import_with(wal, input, ImportOptions::default())
}

/// Append the events of an export (`docs/json.md`) read from `input` to
/// `wal`: each keeps its session (or gets a new id, with
/// [`ImportOptions::new_ids`]) and its time (`ts_us`), in the order of the
/// lines; LSNs are new. Returns once what was appended is durable.
///
/// LSNs inside events are remapped, so that they name the same records as
/// in the exported log: a `SessionForked { from, at_lsn }` gets the new
/// LSN of the file's last record at or before `at_lsn` (of any session;
/// `from` must have a record there, its history up to the fork point),
/// and a `SessionResumed { from_lsn }` the new LSN of its session's last
/// record at or before `from_lsn`. Such a reference must resolve to a
/// record of the file (exported with it).
///
/// Nothing is appended unless every line is a valid export line, every
/// reference resolves, and (without `new_ids`) no session of the file is
/// in the log already: importing the same file twice would double its
/// sessions.
///
/// # Errors
///
/// [`ReplayError::BadImportLine`] naming the first bad line (1-based) and
/// what is wrong with it, a reference to a record not in the file
/// included; [`ReplayError::Read`] if `input` fails;
/// [`ReplayError::SessionExists`] if the log already has a session of
/// the file; [`ReplayError::Wal`] if reading, appending or syncing fails
/// (a crash or error while appending can leave a prefix of the import,
/// as for any append not yet acknowledged).
pub fn import_with(
    wal: &Wal,
    input: impl BufRead,
    options: ImportOptions,
) -> Result<Transfer, ReplayError> {
    let events = parse_all(input)?;
    let dir = wal.dir();
    // Readers see durable records only: make this writer's appends durable
    // before looking for the file's sessions in the log.
    wal.sync()
        .map_err(|e| ReplayError::wal("syncing before an import in", dir, e))?;
    let there = if options.new_ids {
        Vec::new()
    } else {
        refuse_existing(dir, &events)?.unwrap_or_default()
    };
    let ids: std::collections::HashMap<Uuid, Uuid> = if options.new_ids {
        sessions_of(&events)
            .into_iter()
            .map(|s| (s, Uuid::new_v4()))
            .collect()
    } else {
        std::collections::HashMap::new()
    };
    let id = |s: Uuid| ids.get(&s).copied().unwrap_or(s);
    let mut done = Transfer {
        new_ids: options.new_ids,
        sessions: sessions_of(&events).len() as u64,
        ..Transfer::default()
    };
    done.already_there = there.len() as u64;
    // The new LSN of each line appended so far, by line index (the lines
    // an earlier import left have theirs).
    let skip = there.len();
    let mut new_lsns: Vec<Lsn> = there;
    new_lsns.reserve(events.len());
    let mut pending: Vec<(Uuid, u64, SessionEvent)> = Vec::new();
    let mut flush = |pending: &mut Vec<(Uuid, u64, SessionEvent)>,
                     new_lsns: &mut Vec<Lsn>|
     -> Result<(), ReplayError> {
        if pending.is_empty() {
            return Ok(());
        }
        let lsns = wal
            .append_many_at(pending)
            .map_err(|e| ReplayError::wal("importing into", dir, e))?;
        if let (Some(&first), Some(&last)) = (lsns.first(), lsns.last()) {
            done.lsns = Some((done.lsns.map_or(first, |(f, _)| f), last));
        }
        done.records += lsns.len() as u64;
        new_lsns.extend(lsns);
        pending.clear();
        Ok(())
    };
    for parsed in events.into_iter().skip(skip) {
        let mut event = parsed.event;
        if let Some(target) = parsed.refers_to {
            // The record referred to must have its LSN: append what is
            // pending first.
            if target >= new_lsns.len() {
                flush(&mut pending, &mut new_lsns)?;
            }
            let at = new_lsns[target];
            match &mut event {
                SessionEvent::SessionForked { from, at_lsn } => {
                    *from = id(*from);
                    *at_lsn = at;
                }
                SessionEvent::SessionResumed { from_lsn } => *from_lsn = at,
                _ => {}
            }
        }
        pending.push((id(parsed.session), parsed.ts_us, event));
        if pending.len() >= IMPORT_BATCH {
            flush(&mut pending, &mut new_lsns)?;
        }
    }
    flush(&mut pending, &mut new_lsns)?;
    wal.sync()
        .map_err(|e| ReplayError::wal("syncing an import in", dir, e))?;
    Ok(done)
}

/// What [`import_with`] would do with `input` in the log in `dir`,
/// without writing anything (a dry run): every check it makes first
/// (lines, references, sessions already in the log), then how many
/// records and sessions it would append and the LSNs they would get. A
/// directory with no log yet is a new log (LSNs from 1).
///
/// # Errors
///
/// As [`import_with`]'s checks; [`ReplayError::Wal`] if the log cannot
/// be read.
///
/// # Examples
///
/// ```
/// use logbook_bus::SessionEvent;
/// use logbook_replay::{ExportFilter, ImportOptions, export, import_plan};
/// use logbook_wal::{Wal, WalOptions};
///
/// # let (from, to) = (tempfile::tempdir()?, tempfile::tempdir()?);
/// let wal = Wal::open(from.path(), WalOptions::default())?;
/// wal.append(uuid::Uuid::new_v4(), &SessionEvent::UserMessage("hi".into()))?;
/// let mut lines = Vec::new();
/// export(from.path(), ExportFilter::all(), &mut lines)?;
/// let plan = import_plan(to.path(), &lines[..], ImportOptions::default())?;
/// assert_eq!((plan.records, plan.sessions, plan.lsns), (1, 1, Some((1, 1))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn import_plan(
    dir: impl AsRef<Path>,
    input: impl BufRead,
    options: ImportOptions,
) -> Result<Transfer, ReplayError> {
    let dir = dir.as_ref();
    let events = parse_all(input)?;
    let mut there = 0;
    let next = match crate::scan::last_lsn(dir) {
        Ok(last) => {
            if !options.new_ids {
                there = refuse_existing(dir, &events)?.map_or(0, |p| p.len() as u64);
            }
            last + 1
        }
        Err(ReplayError::NoLog { .. }) => 1,
        Err(e) => return Err(e),
    };
    let records = events.len() as u64 - there;
    Ok(Transfer {
        records,
        sessions: sessions_of(&events).len() as u64,
        skipped: 0,
        lsns: (records > 0).then(|| (next, next + records - 1)),
        new_ids: options.new_ids,
        already_there: there,
    })
}

/// Check an export as [`import`] does before appending anything, without
/// a log: how many events it holds.
///
/// # Errors
///
/// As [`import`]'s checks of the file: [`ReplayError::BadImportLine`],
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

/// One checked line of an export.
struct Parsed {
    session: Uuid,
    ts_us: u64,
    event: SessionEvent,
    /// The index of the line whose record an LSN in the event names
    /// (`SessionForked.at_lsn`, `SessionResumed.from_lsn`).
    refers_to: Option<usize>,
}

/// The sessions of the lines, in order of their first line.
fn sessions_of(events: &[Parsed]) -> Vec<Uuid> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .map(|p| p.session)
        .filter(|s| seen.insert(*s))
        .collect()
}

/// Every line of an export, checked, with the references in its events
/// resolved to lines of the file.
fn parse_all(input: impl BufRead) -> Result<Vec<Parsed>, ReplayError> {
    let mut events = Vec::new();
    // Each session's lines so far: (LSN in the exported log, line index).
    let mut lines_of: std::collections::HashMap<Uuid, Vec<(Lsn, usize)>> =
        std::collections::HashMap::new();
    // Every line's LSN in the exported log, and whether they rise so far
    // (one export; a concatenation of several may not).
    let mut all_lsns: Vec<Lsn> = Vec::new();
    let mut rising = true;
    for (i, line) in input.lines().enumerate() {
        let number = i + 1;
        let line = line.map_err(|source| ReplayError::Read {
            line: number,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason| ReplayError::BadImportLine {
            line: number,
            reason,
        };
        let (session, ts_us, lsn, event) = parse_line(&line).map_err(bad)?;
        // The last line of `of` at or before `lsn` in the exported log.
        let find = |of: &Uuid, lsn: Lsn| {
            lines_of
                .get(of)?
                .iter()
                .rev()
                .find(|(l, _)| *l <= lsn)
                .map(|(_, index)| *index)
        };
        // The last line of all at or before `lsn`.
        let last_at = |lsn: Lsn| {
            if rising {
                all_lsns.partition_point(|l| *l <= lsn).checked_sub(1)
            } else {
                all_lsns.iter().rposition(|l| *l <= lsn)
            }
        };
        let refers_to = match &event {
            SessionEvent::SessionForked { from, at_lsn } => {
                // The fork's history is its original's records up to the
                // point: the original must have one there. The point is
                // kept as exact as the file allows: the last line at or
                // before it, whichever session's (the same LSN when the
                // record is in the file).
                let of_from = find(from, *at_lsn).ok_or_else(|| {
                    bad(format!(
                        "session_forked refers to LSN {at_lsn} of session {from}, which is not in \
                         the file: a fork is imported with the records of the session it was \
                         forked from up to its fork point (export that session too)"
                    ))
                })?;
                Some(last_at(*at_lsn).map_or(of_from, |any| any.max(of_from)))
            }
            SessionEvent::SessionResumed { from_lsn } => {
                Some(find(&session, *from_lsn).ok_or_else(|| {
                    bad(format!(
                        "session_resumed refers to LSN {from_lsn} of its session {session}, which \
                         is not in the file: a resumption is imported with the records before it \
                         (export the whole session)"
                    ))
                })?)
            }
            _ => None,
        };
        lines_of
            .entry(session)
            .or_default()
            .push((lsn, events.len()));
        // A truncation mark has the LSN of its session's first line.
        rising &= all_lsns.last().is_none_or(|last| *last <= lsn);
        all_lsns.push(lsn);
        events.push(Parsed {
            session,
            ts_us,
            event,
            refers_to,
        });
    }
    Ok(events)
}

/// Refuse an import whose sessions the log in `dir` already has.
/// Refuse a file whose sessions the log already has, with one exception:
/// an earlier import of this very file that stopped part-way (a full
/// disk). Its records are the file's first lines, in order, at the end of
/// the log (an import appends in file order, and what a failure keeps is a
/// prefix); then the LSNs they have are returned and the import goes on
/// after them. `None`: none of the file's sessions is in the log.
fn refuse_existing(dir: &Path, events: &[Parsed]) -> Result<Option<Vec<Lsn>>, ReplayError> {
    let wanted: std::collections::HashSet<Uuid> = events.iter().map(|p| p.session).collect();
    // The log's records of those sessions: (time, event as JSON text).
    let mut found: std::collections::HashMap<Uuid, Vec<(u64, String)>> =
        std::collections::HashMap::new();
    // The same, in log order, with their LSNs.
    let mut in_order: Vec<(Lsn, Uuid, u64, Value)> = Vec::new();
    let mut last_lsn = 0;
    let matching = |id: &Uuid| wanted.contains(id);
    scan(
        dir,
        Sessions::Matching(&matching),
        OnCorruption::Fail,
        |item| match item {
            Item::Event(record) => {
                let value = event_to_json(&record.event);
                found
                    .entry(record.session)
                    .or_default()
                    .push((record.timestamp_us, value.to_string()));
                in_order.push((record.lsn, record.session, record.timestamp_us, value));
            }
            Item::Skipped {
                session,
                timestamp_us,
                ..
            } => found
                .entry(session)
                .or_default()
                .push((timestamp_us, String::new())),
        },
    )?;
    if !in_order.is_empty() {
        last_lsn = crate::scan::last_lsn(dir)?;
    }
    let Some(session) = sessions_of(events)
        .into_iter()
        .find(|s| found.contains_key(s))
    else {
        return Ok(None);
    };
    let skipped_any = found.values().flatten().count() != in_order.len();
    let prefix = in_order.len() < events.len()
        && !skipped_any
        && in_order.windows(2).all(|w| w[1].0 == w[0].0 + 1)
        && in_order.last().is_some_and(|l| l.0 == last_lsn)
        && in_order.iter().zip(events).all(|((_, s, t, e), p)| {
            *s == p.session && *t == p.ts_us && *e == event_to_json(&p.event)
        });
    if prefix {
        return Ok(Some(in_order.iter().map(|r| r.0).collect()));
    }
    let theirs = &found[&session];
    let have: std::collections::HashSet<(u64, &str)> =
        theirs.iter().map(|(t, e)| (*t, e.as_str())).collect();
    let ours: Vec<(u64, String)> = events
        .iter()
        .filter(|p| p.session == session)
        .map(|p| (p.ts_us, event_to_json(&p.event).to_string()))
        .collect();
    Err(ReplayError::SessionExists {
        session,
        existing: theirs.len() as u64,
        same: ours.iter().all(|(t, e)| have.contains(&(*t, e.as_str()))),
        sessions: found.len() as u64,
    })
}

/// One export line as (session, time, LSN in the exported log, event), or
/// what is wrong with it.
fn parse_line(text: &str) -> Result<(Uuid, u64, Lsn, SessionEvent), String> {
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
    if event.is_tombstone() {
        return Err(
            "a session_deleted line cannot be imported: its LSNs name records of the exported \
             log (an export leaves deleted records and tombstones out)"
                .to_owned(),
        );
    }
    Ok((line.session, line.ts_us, line.lsn, event))
}

/// RFC 3339, UTC, to the microsecond.
fn rfc3339(us: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{event, pooled_event, small_log};
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

    /// A malformed event's error names the field at fault and the type
    /// it takes.
    #[test]
    fn a_malformed_event_names_its_field() {
        let error = |json: Value| event_from_json(&json).unwrap_err();
        assert_eq!(
            error(serde_json::json!({"kind": "UserMessage", "value": 5})),
            "not a UserMessage event: \"value\": invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            error(serde_json::json!({"kind": "UserMessage"})),
            "not a UserMessage event: its \"value\" is missing (expected a string)"
        );
        assert_eq!(
            error(serde_json::json!({"kind": "UserMessage", "value": "x", "extra": 1})),
            "not a UserMessage event: a UserMessage event has \"kind\" and \"value\" only (it has \"extra\" too)"
        );
        assert_eq!(
            error(serde_json::json!({"kind": "Done", "extra": 1})),
            "not a Done event: a Done event has no field but \"kind\" (it has \"extra\")"
        );
        let mistyped = error(serde_json::json!({
            "kind": "TokenUsage", "completion_tokens": "5", "duration_ms": 7,
            "model": "m", "prompt_tokens": 10, "source": "Root",
        }));
        assert!(
            mistyped.starts_with(
                "not a TokenUsage event: \"completion_tokens\": invalid type: string \"5\""
            ),
            "{mistyped}"
        );
        assert!(
            error(serde_json::json!({"kind": "TokenUsage", "model": "m"}))
                .contains("missing field"),
        );
        assert!(error(serde_json::json!({"kind": "Nope"})).contains("unknown variant `Nope`"));
        let source = error(serde_json::json!({
            "kind": "TokenUsage", "completion_tokens": 5, "duration_ms": 7,
            "model": "m", "prompt_tokens": 10, "source": "root",
        }));
        assert!(
            source.starts_with("not a TokenUsage event: \"source\": unknown variant `root`"),
            "{source}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Every event (any kind, any field values) survives its JSON.
        #[test]
        fn every_event_reads_back_from_its_json(e in event()) {
            prop_assert_eq!(event_from_json(&event_to_json(&e)), Ok(e));
        }

        /// export → import into another log → export gives the same lines
        /// (sessions, order, times, events), LSNs aside. (Events that name
        /// LSNs are remapped: `references_name_the_same_records_after_an_import`.)
        #[test]
        fn export_import_export_round_trips(
            // Tombstones delete records and are not exported: `tests/delete.rs`;
            // nor is a truncation mark but as a session's first line
            // (`a_truncated_session_is_exported_with_one_mark_first`).
            events in prop::collection::vec((event().prop_filter("a tombstone or a mark", |e| !e.is_tombstone() && !e.is_truncation_mark()).prop_map(without_lsns_inside), 0u8..4), 1..80),
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        /// Forks and resumptions of a log, imported into a log that
        /// already holds records: each `SessionForked` names its
        /// original's record that it named in the exported log, under its
        /// new LSN (the original as it was there is the fork's history),
        /// and each `SessionResumed` its session's last record before it.
        #[test]
        fn references_name_the_same_records_after_an_import(
            events in prop::collection::vec((pooled_event().prop_map(without_lsns_inside), 0u8..3), 1..40),
            forks in prop::collection::vec((0u8..3, any::<prop::sample::Index>()), 0..4),
            resumes in prop::collection::vec(0u8..3, 0..3),
            before in 0usize..20,
            new_ids in any::<bool>(),
        ) {
            let session = |s: u8| Uuid::from_u128(u128::from(s) + 1);
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let wal = small_log(a.path());
            let mut lsns: std::collections::HashMap<Uuid, Vec<Lsn>> = Default::default();
            for (e, s) in &events {
                let lsn = wal.append(session(*s), e).unwrap();
                lsns.entry(session(*s)).or_default().push(lsn);
            }
            for (s, at) in &forks {
                if let Some(mine) = lsns.get(&session(*s)) {
                    // Any point from its first record to the log's end.
                    let (first, last) = (mine[0], wal.last_lsn());
                    let at_lsn = first + at.index((last - first + 1) as usize) as Lsn;
                    crate::fork::fork(&wal, session(*s), at_lsn).unwrap();
                }
            }
            for s in &resumes {
                if lsns.contains_key(&session(*s)) {
                    let _ = crate::resume::resume(&wal, session(*s));
                }
            }
            wal.close().unwrap();
            let mut lines = Vec::new();
            export(a.path(), ExportFilter::all(), &mut lines).unwrap();
            let target = small_log(b.path());
            for i in 0..before {
                target.append(Uuid::from_u128(99), &SessionEvent::UserMessage(format!("b{i}"))).unwrap();
            }
            let options = if new_ids { ImportOptions::default().with_new_ids() } else { ImportOptions::default() };
            let done = import_with(&target, &lines[..], options).unwrap();
            target.close().unwrap();
            // The sessions of a and b, paired in order of their first record.
            let source = crate::list::list_sessions(a.path()).unwrap().sessions;
            let copied: Vec<_> = crate::list::list_sessions(b.path())
                .unwrap()
                .sessions
                .into_iter()
                .filter(|s| s.session != Uuid::from_u128(99))
                .collect();
            prop_assert_eq!(source.len(), copied.len());
            prop_assert_eq!(done.sessions, source.len() as u64);
            let shift = before as Lsn;
            let new_id: std::collections::HashMap<Uuid, Uuid> =
                source.iter().zip(&copied).map(|(s, c)| (s.session, c.session)).collect();
            for (s, c) in source.iter().zip(&copied) {
                prop_assert_eq!(new_ids, s.session != c.session);
                prop_assert_eq!(c.first_lsn, s.first_lsn + shift);
                let (then, now) = (
                    crate::rebuild::session_state(a.path(), s.session).unwrap(),
                    crate::rebuild::session_state(b.path(), c.session).unwrap(),
                );
                let resumed_from = |st: &crate::state::SessionState| st.resumptions().iter().map(|r| r.from_lsn).collect::<Vec<_>>();
                prop_assert_eq!(
                    resumed_from(&then).iter().map(|l| l + shift).collect::<Vec<_>>(),
                    resumed_from(&now)
                );
                if let Some((from, at)) = s.forked_from {
                    let (from_now, at_now) = c.forked_from.unwrap();
                    prop_assert_eq!(from_now, new_id[&from]);
                    // The fork point names the same record (every record
                    // of a is in the file).
                    prop_assert_eq!(at_now, at + shift);
                    let history = |dir: &Path, id, at| crate::rebuild::session_state_at(dir, id, at).unwrap().transcript().to_vec();
                    let texts = |t: Vec<crate::state::TranscriptEntry>| t.into_iter().map(|e| e.text).collect::<Vec<_>>();
                    prop_assert_eq!(texts(history(a.path(), from, at)), texts(history(b.path(), from_now, at_now)));
                }
            }
        }
    }

    /// Events whose LSNs an import remaps, made plain (the round trip
    /// compares events as they were).
    fn without_lsns_inside(e: SessionEvent) -> SessionEvent {
        match e {
            SessionEvent::SessionForked { .. } | SessionEvent::SessionResumed { .. } => {
                SessionEvent::UserMessage("was a reference".into())
            }
            e => e,
        }
    }

    /// An import that stopped part-way (a full disk keeps what it wrote
    /// before failing: the file's first lines) is completed by importing
    /// the file again: the lines already there are not appended twice, and
    /// the log ends as one whole import leaves it. A log that holds
    /// something else of those sessions is still refused.
    #[test]
    fn an_import_cut_short_is_completed_by_running_it_again() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let wal = small_log(a.path());
        for i in 0..9u128 {
            let id = Uuid::from_u128(i % 3 + 1);
            wal.append(id, &SessionEvent::UserMessage(format!("line {i}")))
                .unwrap();
        }
        wal.close().unwrap();
        let mut lines = Vec::new();
        export(a.path(), ExportFilter::all(), &mut lines).unwrap();
        let text = String::from_utf8(lines.clone()).unwrap();
        let first: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
        // What the failed import left: its first four lines.
        let cut = small_log(b.path());
        import(&cut, first.as_bytes()).unwrap();
        let plan = import_plan(b.path(), &lines[..], ImportOptions::default()).unwrap();
        assert_eq!((plan.records, plan.already_there), (5, 4));
        let done = import(&cut, &lines[..]).unwrap();
        assert_eq!((done.records, done.already_there), (5, 4));
        assert_eq!(done.lsns, Some((5, 9)));
        cut.close().unwrap();
        let whole = small_log(c.path());
        import(&whole, &lines[..]).unwrap();
        whole.close().unwrap();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        export(b.path(), ExportFilter::all(), &mut x).unwrap();
        export(c.path(), ExportFilter::all(), &mut y).unwrap();
        assert_eq!(x, y, "as one whole import");
        // Done: a third run is refused as a duplicate.
        let again = small_log(b.path());
        assert!(matches!(
            import(&again, &lines[..]),
            Err(ReplayError::SessionExists { same: true, .. })
        ));
    }

    /// The same file twice would double its sessions: refused, nothing
    /// appended; with new ids, a second copy; a dry run says the same.
    #[test]
    fn the_same_file_twice_is_refused_unless_new_ids() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let wal = small_log(a.path());
        let id = Uuid::from_u128(5);
        wal.append(id, &SessionEvent::UserMessage("one".into()))
            .unwrap();
        wal.append(id, &SessionEvent::Done).unwrap();
        wal.close().unwrap();
        let mut lines = Vec::new();
        export(a.path(), ExportFilter::all(), &mut lines).unwrap();
        let target = small_log(b.path());
        let plan = import_plan(b.path(), &lines[..], ImportOptions::default()).unwrap();
        assert_eq!((plan.records, plan.lsns), (2, Some((1, 2))));
        import(&target, &lines[..]).unwrap();
        for refused in [
            import(&target, &lines[..]).map(|_| ()),
            import_plan(b.path(), &lines[..], ImportOptions::default()).map(|_| ()),
        ] {
            match refused {
                Err(
                    e @ ReplayError::SessionExists {
                        same: true,
                        existing: 2,
                        ..
                    },
                ) => {
                    assert!(e.to_string().contains("imported before"), "{e}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(target.last_lsn(), 2, "nothing appended");
        let again =
            import_with(&target, &lines[..], ImportOptions::default().with_new_ids()).unwrap();
        assert!(again.new_ids);
        assert_eq!(again.lsns, Some((3, 4)));
        target.close().unwrap();
        let listed = crate::list::list_sessions(b.path()).unwrap();
        assert_eq!(listed.sessions.len(), 2);
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
                .map(|v| match v["event"]["value"].as_str() {
                    Some(text) => text.to_owned(),
                    None => v["kind"].as_str().unwrap().to_owned(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lines(ExportFilter::all().session(x)),
            ["m0", "m2", "m4", "m6", "m8"]
        );
        // Both sessions begin before the span: each is marked truncated.
        assert_eq!(
            lines(ExportFilter::all().between(Some(t0 + 3), Some(t0 + 6))),
            ["session_truncated", "m3", "session_truncated", "m4", "m5"]
        );
        assert_eq!(
            lines(ExportFilter::all().between(Some(t0), Some(t0 + 3))),
            ["m0", "m1", "m2"]
        );
    }

    /// A session whose beginning is not in the export (retained away, or
    /// left out by a time filter) gets one `session_truncated` line before
    /// its first one, with that line's LSN and time; an import appends it
    /// as the session's first record, and the session is truncated there
    /// although that log starts at LSN 1 (`docs/format.md`, "Truncation
    /// marks"). Exported again, it has one mark, not two.
    #[test]
    fn a_truncated_session_is_exported_with_one_mark_first() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let wal = small_log(a.path());
        let (x, y) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t0 = 1_700_000_000_000_000;
        let started = SessionEvent::SessionStarted {
            model: "m".into(),
            cwd: "/".into(),
            title: None,
        };
        let batch = vec![
            (x, t0, started.clone()),
            (y, t0 + 1, started),
            (x, t0 + 2, SessionEvent::UserMessage("x1".into())),
            (y, t0 + 3, SessionEvent::UserMessage("y1".into())),
        ];
        wal.append_many_at(&batch).unwrap();
        wal.close().unwrap();
        let mut out = Vec::new();
        let done = export(
            a.path(),
            ExportFilter::all().between(Some(t0 + 1), None),
            &mut out,
        )
        .unwrap();
        assert_eq!(done.records, 4, "three records and x's mark");
        let lines: Vec<Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["kind"], "session_started");
        assert_eq!(
            (&lines[1]["kind"], &lines[1]["lsn"], &lines[1]["ts_us"]),
            (
                &Value::from("session_truncated"),
                &lines[2]["lsn"],
                &lines[2]["ts_us"]
            )
        );
        let other = small_log(b.path());
        import(&other, &out[..]).unwrap();
        other.close().unwrap();
        let listed = crate::list_sessions(b.path()).unwrap();
        assert!(listed.session(x).unwrap().truncated);
        assert!(!listed.session(y).unwrap().truncated);
        assert!(crate::session_state(b.path(), x).unwrap().truncated());
        assert!(!crate::session_state(b.path(), y).unwrap().truncated());
        let mut again = Vec::new();
        export(b.path(), ExportFilter::all(), &mut again).unwrap();
        assert_eq!(without_lsns(&out), without_lsns(&again));
    }
}
