//! `logbook stats nats://…`: the records of every log in a stream, by log
//! and by event kind (the stream's counterpart of a log's segments table).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use logbook_bus::KINDS;
use logbook_wal::Lsn;
use serde::Serialize;
use uuid::Uuid;

use crate::cmd::stats::{KindJson, StatsArgs, Totals, by_share, write_totals};
use crate::output::{self, Outcome, Table};
use crate::render;

/// Frame bytes of a record: its header in a segment plus its payload, as
/// `stats` counts them for a directory.
const FRAME_HEADER: u64 = 48;

#[derive(Debug, Serialize)]
struct LogJson {
    log: Uuid,
    records: u64,
    bytes: u64,
    first_lsn: Lsn,
    last_lsn: Lsn,
}

#[derive(Debug, Serialize)]
struct StreamStatsJson {
    url: String,
    stream: String,
    logs: Vec<LogJson>,
    records: u64,
    bytes: u64,
    first_ts: Option<String>,
    last_ts: Option<String>,
    span_us: u64,
    sessions: u64,
    durable: u64,
    by_kind: Vec<KindJson>,
    problems: u64,
}

pub(crate) fn run(args: &StatsArgs) -> anyhow::Result<Outcome> {
    let target = crate::stream::target(&args.dir, &args.stream)?;
    let records = crate::stream::records(&target, logbook_fleet::Select::All)?;
    let mut logs: Vec<LogJson> = Vec::new();
    let mut by_kind: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let mut sessions = HashSet::new();
    let (mut bytes, mut durable) = (0u64, 0u64);
    let (mut first_ts, mut last_ts) = (u64::MAX, 0u64);
    for r in &records {
        let size = FRAME_HEADER + r.payload.len() as u64;
        bytes += size;
        first_ts = first_ts.min(r.timestamp_us);
        last_ts = last_ts.max(r.timestamp_us);
        sessions.insert(r.session);
        match logs.last_mut() {
            Some(l) if l.log == r.log => {
                l.records += 1;
                l.bytes += size;
                l.last_lsn = r.lsn;
            }
            _ => logs.push(LogJson {
                log: r.log,
                records: 1,
                bytes: size,
                first_lsn: r.lsn,
                last_lsn: r.lsn,
            }),
        }
        let place = crate::stream::place(&target, r.log);
        let (kind, is_durable) = render::kind_of(&r.as_record_ref(&place));
        if is_durable {
            durable += 1;
        }
        let index = KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len());
        let entry = by_kind.entry(index).or_default();
        entry.0 += 1;
        entry.1 += size;
    }
    let count = records.len() as u64;
    let kinds = by_share(
        by_kind
            .iter()
            .map(|(&i, &(records, bytes))| KindJson {
                kind: KINDS.get(i).copied().unwrap_or("unknown").to_owned(),
                records,
                bytes,
            })
            .collect(),
    );
    let stats = StreamStatsJson {
        url: target.url().to_owned(),
        stream: target.stream().to_owned(),
        logs,
        records: count,
        bytes,
        first_ts: (count > 0).then(|| output::rfc3339(first_ts)),
        last_ts: (count > 0).then(|| output::rfc3339(last_ts)),
        span_us: last_ts.saturating_sub(first_ts),
        sessions: sessions.len() as u64,
        durable,
        by_kind: kinds,
        problems: 0,
    };
    let mut out = output::stdout();
    if args.json {
        output::json_line(&mut out, &stats)?;
    } else {
        print_text(&mut out, &stats)?;
    }
    out.flush()?;
    Ok(Outcome::Clean)
}

fn print_text(out: &mut dyn Write, s: &StreamStatsJson) -> anyhow::Result<()> {
    writeln!(out, "stream {} at {}", s.stream, s.url)?;
    writeln!(out, "logs: {}", s.logs.len())?;
    let mut table = Table::new(&["log", ">records", "LSNs", ">bytes"]);
    for l in &s.logs {
        table.row(vec![
            l.log.to_string(),
            l.records.to_string(),
            format!("{}..={}", l.first_lsn, l.last_lsn),
            output::bytes(l.bytes),
        ]);
    }
    table.write(out, "  ")?;
    writeln!(
        out,
        "records: {}, {} in frames",
        s.records,
        output::bytes(s.bytes)
    )?;
    write_totals(
        out,
        &Totals {
            records: s.records,
            bytes: s.bytes,
            durable: s.durable,
            first_ts: s.first_ts.as_deref(),
            last_ts: s.last_ts.as_deref(),
            span_us: s.span_us,
            sessions: s.sessions,
            by_kind: &s.by_kind,
            problems: s.problems,
        },
    )
}
