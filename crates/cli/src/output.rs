//! What every subcommand shares: the outcome and exit codes, stdout,
//! times, sizes, and the one-line error.

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use logbook_wal::{Lsn, WalError};

/// How a subcommand that ran to its end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing wrong was found: exit 0.
    Clean,
    /// The log has problems, each already reported: exit 1.
    Problems,
    /// A filter (a session, an LSN range, a time span, a kind, a status)
    /// matched nothing; already said on stderr: exit 1.
    NothingFound,
}

impl Outcome {
    /// `Problems` if `problems > 0`.
    pub(crate) fn from_count(problems: u64) -> Outcome {
        if problems == 0 {
            Outcome::Clean
        } else {
            Outcome::Problems
        }
    }
}

/// Exit code: success.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit code: a problem was found in the log.
pub(crate) const EXIT_PROBLEM: u8 = 1;
/// Exit code: usage or I/O error (also what clap uses for usage errors).
pub(crate) const EXIT_ERROR: u8 = 2;

/// A refusal or failure that is about the log's contents (exit 1), not
/// about the command line or the system (exit 2).
#[derive(Debug)]
pub(crate) struct LogProblem(pub(crate) String);

impl std::fmt::Display for LogProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LogProblem {}

/// The exit code for an error that ended a subcommand.
pub(crate) fn exit_code(error: &anyhow::Error) -> u8 {
    if is_broken_pipe(error) {
        return if problems_reported() > 0 {
            EXIT_PROBLEM
        } else {
            EXIT_OK
        };
    }
    for cause in error.chain() {
        if cause.downcast_ref::<LogProblem>().is_some() {
            return EXIT_PROBLEM;
        }
        if let Some(e) = cause.downcast_ref::<logbook_replay::ReplayError>() {
            return if e.is_corruption() {
                EXIT_PROBLEM
            } else {
                EXIT_ERROR
            };
        }
        if let Some(e) = cause.downcast_ref::<WalError>() {
            return if e.is_corruption() {
                EXIT_PROBLEM
            } else {
                EXIT_ERROR
            };
        }
    }
    EXIT_ERROR
}

/// Whether the error is a closed stdout (`logbook dump | head`): success.
pub(crate) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, without repeating a cause that
/// the message above it already contains.
pub(crate) fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    flatten(&line)
}

/// `text` with line breaks and tabs replaced by spaces.
pub(crate) fn flatten(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Problems reported on stderr so far: what the exit status says when a
/// closed stdout ends a command early.
static PROBLEMS_REPORTED: AtomicU64 = AtomicU64::new(0);

/// Write one diagnostic line to stderr. A stderr that cannot be written
/// (closed, a full disk, `2>&1 | head`) loses the line, never the exit
/// status: `eprintln!` would panic there (exit 101).
pub(crate) fn diag(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "{line}");
}

/// How many problems [`report_problem`] has reported.
pub(crate) fn problems_reported() -> u64 {
    PROBLEMS_REPORTED.load(Ordering::Relaxed)
}

/// Report a problem found in the log on stderr, on one line.
pub(crate) fn report_problem(text: &str) {
    PROBLEMS_REPORTED.fetch_add(1, Ordering::Relaxed);
    diag(format_args!("logbook: problem: {}", flatten(text)));
}

/// Say on stderr, on one line, that a filter matched nothing.
pub(crate) fn report_nothing_found(text: &str) {
    diag(format_args!("logbook: nothing found: {}", flatten(text)));
}

/// Report something worth knowing that is not a problem, on one line.
pub(crate) fn report_note(text: &str) {
    diag(format_args!("logbook: note: {}", flatten(text)));
}

/// Buffered, locked stdout that outlives its reader: once stdout is a
/// closed pipe (`logbook verify DIR | head -1`), what is written is
/// dropped and the command goes on to its end, so that its exit status
/// and its stderr still tell the whole truth.
pub(crate) fn stdout() -> Stdout {
    Stdout {
        inner: BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
        closed: false,
        keep_going: true,
    }
}

/// Buffered, locked stdout whose closing ends the command: for `dump`,
/// whose output is the point (and may never end, with `--follow`). The
/// exit status then says whether a problem was reported before.
pub(crate) fn stdout_until_closed() -> Stdout {
    Stdout {
        keep_going: false,
        ..stdout()
    }
}

/// Stdout, and what to do once it is closed: see [`stdout`].
pub(crate) struct Stdout {
    inner: BufWriter<io::StdoutLock<'static>>,
    closed: bool,
    keep_going: bool,
}

impl Stdout {
    /// `result`, or `Ok` if it is a closed pipe and the command keeps going.
    fn absorb<T>(&mut self, result: io::Result<T>, dropped: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe && self.keep_going => {
                self.closed = true;
                Ok(dropped)
            }
            other => other,
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        self.absorb(result, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.inner.flush();
        self.absorb(result, ())
    }
}

/// Write a JSON value as one line.
pub(crate) fn json_line(out: &mut dyn Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

/// A time in µs since the Unix epoch, as RFC 3339 in UTC with microseconds.
pub(crate) fn rfc3339(us: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(us)).to_string()
}

/// A time in µs since the Unix epoch, as RFC 3339 in UTC to the
/// millisecond.
pub(crate) fn rfc3339_millis(us: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_micros(us)).to_string()
}

/// `text` flattened to one line, at most `max` characters: a longer one is
/// cut and ends with `…`.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let flat = flatten(text);
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A time in µs since the Unix epoch, as RFC 3339 in UTC to the second.
pub(crate) fn rfc3339_seconds(us: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_micros(us)).to_string()
}

/// The one rule for LSNs and times on the command line (README,
/// `docs/operations.md`): a bare whole number is an LSN; a time is written
/// so that it cannot be taken for one. An option takes an LSN
/// ([`parse_lsn`]), a time ([`parse_time`]) or either (`replay --at`), and
/// refuses the other kind, saying how to write what was meant.
const TIME_FORMS: &str = "RFC 3339 (2024-05-01T10:00:00Z), a date (2024-05-01), \
     @epoch-seconds (@1764410000 or @1764410000.5) or a duration back from now (15m, 2h)";

/// Parse a point in time given on the command line, to µs since the
/// epoch: RFC 3339 (`2024-05-01T10:00:00Z`, `2024-05-01T12:00:00+02:00`,
/// a space for the `T`, any fraction of a second; no zone means UTC), a
/// date (`2024-05-01`, midnight UTC), seconds since the Unix epoch after
/// an `@` with an optional fraction (`@1764410000`, `@1764410000.5`, as
/// `date -d @…` reads), or a duration back from now (`15m`, `2h 30m`,
/// `3days`). A bare number is refused: it is an LSN ([`TIME_FORMS`]).
pub(crate) fn parse_time(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let bad = || format!("`{text}` is not a time: use {TIME_FORMS}");
    if let Some(epoch) = s.strip_prefix('@').and_then(parse_epoch) {
        return epoch.ok_or_else(bad);
    }
    if parse_epoch(s).is_some() {
        return Err(format!(
            "`{s}` is a bare number, which on the command line is an LSN, and this option takes \
             a time: for seconds since the Unix epoch write @{s}; other forms: {TIME_FORMS}"
        ));
    }
    let time = if let Ok(ago) = humantime::parse_duration(s) {
        SystemTime::now().checked_sub(ago).ok_or_else(bad)?
    } else if s.len() == "2024-05-01".len() {
        humantime::parse_rfc3339_weak(&format!("{s}T00:00:00Z")).map_err(|_| bad())?
    } else {
        let (base, offset_secs) = split_offset(s);
        let t = humantime::parse_rfc3339_weak(base).map_err(|_| bad())?;
        if offset_secs >= 0 {
            t.checked_sub(Duration::from_secs(offset_secs.unsigned_abs()))
        } else {
            t.checked_add(Duration::from_secs(offset_secs.unsigned_abs()))
        }
        .ok_or_else(bad)?
    };
    let us = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| format!("`{text}` is before 1970"))?
        .as_micros();
    u64::try_from(us).map_err(|_| bad())
}

/// Seconds since the Unix epoch (`1764410000`, `1764410000.5`; the `@`
/// already taken off) to µs: `None` if `s` is not of that form,
/// `Some(None)` if it is but does not fit (a fraction finer than a µs is
/// cut).
fn parse_epoch(digits: &str) -> Option<Option<u64>> {
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let micros: String = fraction.chars().chain("000000".chars()).take(6).collect();
    Some(
        whole
            .parse::<u64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1_000_000))
            .and_then(|us| us.checked_add(micros.parse::<u64>().ok()?)),
    )
}

/// Parse an LSN given on the command line: a bare whole number (the one
/// rule: [`TIME_FORMS`]). A time, or anything else, is refused, saying
/// that the option takes an LSN.
pub(crate) fn parse_lsn(text: &str) -> Result<Lsn, String> {
    let s = text.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map_err(|_| format!("`{s}` is too large for an LSN (at most {})", Lsn::MAX));
    }
    if parse_time(s).is_ok() || s.starts_with('@') {
        return Err(format!(
            "`{s}` is a time, and this option takes an LSN (a whole number such as 57): find the \
             LSN of a point in time with `logbook replay DIR SESSION --at TIME` or `logbook dump \
             DIR --since TIME`"
        ));
    }
    Err(format!(
        "`{s}` is not an LSN: this option takes an LSN (a whole number such as 57)"
    ))
}

/// Split a trailing `+HH:MM` / `-HH:MM` zone off an RFC 3339 time.
fn split_offset(s: &str) -> (&str, i64) {
    let b = s.as_bytes();
    let n = b.len();
    if n > 19 && (b[n - 6] == b'+' || b[n - 6] == b'-') && b[n - 3] == b':' {
        let digits = |r: std::ops::Range<usize>| s.get(r).and_then(|d| d.parse::<i64>().ok());
        if let (Some(h), Some(m)) = (digits(n - 5..n - 3), digits(n - 2..n)) {
            let secs = h * 3600 + m * 60;
            let sign = if b[n - 6] == b'-' { -1 } else { 1 };
            if let Some(base) = s.get(..n - 6) {
                return (base, sign * secs);
            }
        }
    }
    (s, 0)
}

/// Bytes for people: `512 B`, `16.0 KiB`, `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "a display value with one decimal"
    )]
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in µs for people: `850 ms`, `12.3 s`, `4m 10s`.
pub(crate) fn span(us: u64) -> String {
    if us < 1_000_000 {
        return format!("{} ms", us / 1000);
    }
    if us < 60_000_000 {
        #[expect(clippy::cast_precision_loss, reason = "a display value")]
        let secs = us as f64 / 1e6;
        return format!("{secs:.1} s");
    }
    humantime::format_duration(Duration::from_secs(us / 1_000_000)).to_string()
}

/// The first 8 characters of a session id, as tables show it.
pub(crate) fn short_id(id: &uuid::Uuid) -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    let s = id.hyphenated().encode_lower(&mut buf);
    s.get(..8).unwrap_or(s).to_owned()
}

/// A table printed with columns padded to their widest cell.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    /// A table with these column headers; a header starting with `>` is
    /// right-aligned (the `>` is not printed).
    pub(crate) fn new(headers: &[&str]) -> Table {
        Table {
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            rows: vec![
                headers
                    .iter()
                    .map(|h| h.trim_start_matches('>').to_owned())
                    .collect(),
            ],
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn write(&self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        let columns = self.right.len();
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &self.rows {
            let mut line = String::from(indent);
            for (i, cell) in row.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let last = i + 1 == row.len();
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right.get(i).copied().unwrap_or(false) {
                    line.push_str(&format!("{cell:>w$}"));
                } else if last {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}"));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `first..=last`, or `-` for a segment without records.
pub(crate) fn lsn_range(first: Option<Lsn>, last: Option<Lsn>) -> String {
    match (first, last) {
        (Some(a), Some(b)) => format!("{a}..={b}"),
        _ => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let us = parse_time("2024-05-01T10:00:00.25Z").unwrap();
        assert_eq!(rfc3339(us), "2024-05-01T10:00:00.250000Z");
        assert_eq!(parse_time("2024-05-01T12:00:00.25+02:00").unwrap(), us);
        assert_eq!(parse_time("2024-05-01 10:00:00.25").unwrap(), us);
        assert_eq!(
            rfc3339(parse_time("2024-05-01").unwrap()),
            "2024-05-01T00:00:00.000000Z"
        );
        assert!(parse_time("10m").unwrap() < parse_time("1m").unwrap());
        assert!(parse_time("yesterday-ish").is_err());
        assert!(parse_time("2024-13-01T00:00:00Z").is_err());
        assert!(parse_time("é").is_err());
    }

    #[test]
    fn epoch_times() {
        assert_eq!(parse_time("@1764410000").unwrap(), 1_764_410_000_000_000);
        assert_eq!(parse_time("@1764410000.5").unwrap(), 1_764_410_000_500_000);
        assert_eq!(parse_time("@0.000001").unwrap(), 1);
        assert_eq!(parse_time("@1.1234567").unwrap(), 1_123_456);
        assert_eq!(
            parse_time("@1764410000").unwrap(),
            parse_time("2025-11-29T09:53:20Z").unwrap()
        );
        for bad in [
            "@",
            "@x",
            "@1.2.3",
            "-5",
            "@99999999999999999999",
            ".5",
            "@ 1",
            "@@1",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    /// The one rule: a bare number is an LSN, never a time; a time is
    /// never an LSN.
    #[test]
    fn a_bare_number_is_an_lsn_and_only_an_lsn() {
        for bare in ["1764410000", "1764410000.5", "57"] {
            let e = parse_time(bare).unwrap_err();
            assert!(e.contains(&format!("write @{bare}")), "{e}");
        }
        assert_eq!(parse_lsn("57"), Ok(57));
        assert_eq!(parse_lsn(" 57 "), Ok(57));
        for time in ["@57", "2024-05-01", "2024-05-01T10:00:00Z", "15m"] {
            let e = parse_lsn(time).unwrap_err();
            assert!(e.contains("is a time, and this option takes an LSN"), "{e}");
        }
        for bad in ["", "-1", "5x", "1.5", "99999999999999999999"] {
            assert!(parse_lsn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_spans() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(16 * 1024), "16.0 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(span(850_000), "850 ms");
        assert_eq!(span(12_300_000), "12.3 s");
        assert_eq!(span(250_000_000), "4m 10s");
    }

    #[test]
    fn one_line_drops_repeated_causes() {
        let e = anyhow::anyhow!("inner").context("outer: inner");
        assert_eq!(one_line(&e), "outer: inner");
        let e = anyhow::anyhow!("a\nb").context("c");
        assert_eq!(one_line(&e), "c: a b");
    }
}
