//! Prints two Markdown tables about shipping a log to NATS JetStream
//! (`logbook-fleet`):
//!
//! 1. **Throughput**: records/s of `Shipper::ship` (read the log, publish,
//!    await acks in order) against a bare `async-nats` JetStream publish
//!    loop of the same messages (same subjects, headers and payloads, held
//!    in memory, the same window of acks awaited in order), each into a
//!    fresh stream of the same server, alternating, `--rounds` times
//!    (median).
//! 2. **Lag**: from a record's local fsync (the writer's `append_many`
//!    returned) to the stream's ack of it, p50/p99, under a steady writer
//!    of `--rate` events/s (default 10 000: a batch of 10 every ms) with a
//!    following shipper beside it, for `--secs` seconds, in each mode
//!    `--mode` names, one after the other on the same server: `poll`
//!    (`Shipper::new`, reading the log every `--poll-ms`, as `logbook ship
//!    --follow` does), `wal` (`Shipper::for_wal`, woken by the writer's
//!    durable watermark), `both` (the default), or `all`: both and the
//!    server's own share (`Floor`: a bare publisher of messages of the
//!    same subjects, headers and sizes at the same rate, publish→ack,
//!    beside the same writer to a log no one ships), `--lag-runs` times
//!    each (alternating; then the median of the runs' p50 and p99).
//!
//! Usage: `ship [--dir DIR] [--records N] [--rounds N] [--secs S] [--rate R] [--poll-ms MS] [--mode poll|wal|both|all] [--lag-runs N] [--store DIR] [--url nats://…]`
//! (`--rounds 0`: no throughput table).
//!
//! Without `--url` it starts its own `nats-server -js` on a free loopback
//! port with its store under `DIR` (default: a temporary directory in the
//! current one; `--store` puts it elsewhere, such as a tmpfs) and stops it
//! at the end.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use logbook_bus::SessionEvent;
use logbook_fleet::{ShipOptions, Shipper, Target};
use logbook_wal::{Lsn, Reader, Wal, WalOptions};

const WINDOW: usize = 256;

struct Args {
    dir: PathBuf,
    records: u64,
    rounds: usize,
    secs: u64,
    rate: u64,
    poll_ms: u64,
    modes: Vec<Mode>,
    lag_runs: usize,
    store: Option<PathBuf>,
    url: Option<String>,
}

/// How the lag bench's shipper follows the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    /// `Shipper::new`: polls every `--poll-ms`.
    Poll,
    /// `Shipper::for_wal`: woken by the durable watermark.
    Wal,
    /// No log, no shipper: publish to ack of the same messages.
    Floor,
}

fn args() -> Args {
    let mut a = Args {
        dir: PathBuf::from("."),
        records: 200_000,
        rounds: 3,
        secs: 10,
        rate: 10_000,
        poll_ms: 5,
        modes: vec![Mode::Poll, Mode::Wal],
        lag_runs: 1,
        store: None,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(value),
            "--records" => a.records = value.parse().unwrap_or(a.records),
            "--rounds" => a.rounds = value.parse().unwrap_or(a.rounds),
            "--secs" => a.secs = value.parse().unwrap_or(a.secs),
            "--rate" => a.rate = value.parse().unwrap_or(a.rate),
            "--poll-ms" => a.poll_ms = value.parse().unwrap_or(a.poll_ms),
            "--mode" => {
                a.modes = match value.as_str() {
                    "poll" => vec![Mode::Poll],
                    "wal" => vec![Mode::Wal],
                    "both" => vec![Mode::Poll, Mode::Wal],
                    "all" => vec![Mode::Poll, Mode::Wal, Mode::Floor],
                    other => {
                        eprintln!("--mode poll|wal|both|all, not {other:?}");
                        std::process::exit(2);
                    }
                }
            }
            "--lag-runs" => a.lag_runs = value.parse().unwrap_or(a.lag_runs).max(1),
            "--store" => a.store = Some(PathBuf::from(value)),
            "--url" => a.url = Some(value),
            other => {
                eprintln!("unknown flag {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

/// A `nats-server` this bench started; stopped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(store: &Path) -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let child = Command::new("nats-server")
        .args(["-js", "-sd"])
        .arg(store)
        .args(["-p", &port.to_string(), "-a", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (apt-get install nats-server)");
    let server = Server(child);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nats-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, format!("nats://127.0.0.1:{port}"))
}

fn write_log(dir: &Path, n: u64) {
    let wal = Wal::open(dir, WalOptions::default()).expect("open");
    let sessions: Vec<uuid::Uuid> = (0..8).map(|_| uuid::Uuid::new_v4()).collect();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        batch.push((
            sessions[(i % 8) as usize],
            SessionEvent::TextComplete("x".repeat(200)),
        ));
        if batch.len() == 1000 {
            wal.append_many(&batch).expect("append");
            batch.clear();
        }
    }
    wal.append_many(&batch).expect("append");
    wal.close().expect("close");
}

/// The messages the shipper would send, in memory.
fn messages(dir: &Path) -> Vec<(String, HeaderMap, Bytes)> {
    let log = logbook_wal::log_id(dir).expect("log id");
    let mut reader = Reader::open(dir).expect("reader");
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        let r = r.expect("record");
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("{log}:{}", r.lsn).as_str());
        h.insert("Logbook-Log", log.to_string().as_str());
        h.insert("Logbook-Lsn", r.lsn.to_string().as_str());
        h.insert("Logbook-Session", r.session.to_string().as_str());
        h.insert("Logbook-Kind", "text_complete");
        h.insert("Logbook-Ts", r.timestamp_us.to_string().as_str());
        h.insert("Logbook-Codec", "1");
        h.insert("Logbook-Committed", r.lsn.to_string().as_str());
        h.insert("Logbook-Scan-From", "0");
        out.push((
            format!("bare.{log}.{}", r.session),
            h,
            Bytes::copy_from_slice(r.payload),
        ));
    }
    out
}

async fn bare(url: &str, stream: &str, msgs: &[(String, HeaderMap, Bytes)]) -> f64 {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.into(),
        subjects: vec![format!("{}.>", stream.to_lowercase())],
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .expect("stream");
    let start = Instant::now();
    let mut inflight = std::collections::VecDeque::new();
    for (subject, headers, payload) in msgs {
        if inflight.len() == WINDOW {
            let ack: async_nats::jetstream::context::PublishAckFuture =
                inflight.pop_front().expect("in flight");
            ack.await.expect("ack");
        }
        let subject = subject.replacen("bare", &stream.to_lowercase(), 1);
        inflight.push_back(
            js.publish_with_headers(subject, headers.clone(), payload.clone())
                .await
                .expect("publish"),
        );
    }
    for ack in inflight {
        ack.await.expect("ack");
    }
    msgs.len() as f64 / start.elapsed().as_secs_f64()
}

async fn shipped(url: &str, stream: &str, dir: &Path) -> f64 {
    let target = Target::parse(url)
        .expect("url")
        .with_stream(stream)
        .with_prefix(stream.to_lowercase())
        .expect("prefix");
    let shipper = Shipper::new(
        dir,
        target,
        ShipOptions {
            window: WINDOW,
            ..ShipOptions::default()
        },
    )
    .expect("shipper");
    let start = Instant::now();
    let report = shipper.ship().await.expect("ship");
    report.shipped as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The server's share of the lag: a bare `async-nats` publisher of
/// messages like the shipper's (subjects, headers, sizes) at the same rate
/// (a group every millisecond), from the publish call to the ack, with no
/// log in between; beside it the same writer as in the other modes,
/// appending to a log in `dir` that no one ships (its fsyncs share the
/// disk and its thread the CPUs, as they do with a shipper).
async fn floor(url: &str, dir: &Path, args: &Args, run: usize) -> (f64, f64, f64, usize) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let name = format!("FLOOR{run}");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .expect("stream");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(
        Instant,
        async_nats::jetstream::context::PublishAckFuture,
    )>();
    let acks = tokio::spawn(async move {
        let mut lags = Vec::new();
        while let Some((sent, ack)) = rx.recv().await {
            ack.await.expect("ack");
            lags.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
        lags
    });
    let (log, session) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let payload = Bytes::from(vec![b'y'; 210]);
    let per_ms = (args.rate / 1000).max(1);
    // The same writer as beside a shipper, to a log no one ships: its
    // fsyncs on the same disk, its thread on the same CPUs.
    let wal = Wal::open(dir, WalOptions::default()).expect("open");
    let writer = spawn_writer(&wal, &Arc::default(), args);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(args.secs) {
        for _ in 0..per_ms {
            sent += 1;
            // The shipper's headers, of the same sizes.
            let mut h = HeaderMap::new();
            h.insert("Nats-Msg-Id", format!("{log}:{sent}").as_str());
            h.insert("Logbook-Log", log.to_string().as_str());
            h.insert("Logbook-Lsn", sent.to_string().as_str());
            h.insert("Logbook-Session", session.to_string().as_str());
            h.insert("Logbook-Kind", "text_complete");
            h.insert("Logbook-Ts", "1764820000000000");
            h.insert("Logbook-Codec", "1");
            h.insert("Logbook-Committed", sent.to_string().as_str());
            h.insert("Logbook-Scan-From", "0");
            let subject = format!("{}.{log}.{session}", name.to_lowercase());
            let before = Instant::now();
            let ack = js
                .publish_with_headers(subject, h, payload.clone())
                .await
                .expect("publish");
            tx.send((before, ack)).expect("acks");
        }
        let next = start + Duration::from_micros(sent * 1_000_000 / args.rate.max(1));
        tokio::time::sleep_until(next.into()).await;
    }
    drop(tx);
    tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .expect("join");
    wal.close().expect("close");
    let mut lags = acks.await.expect("acks");
    lags.sort_by(f64::total_cmp);
    let rate = sent as f64 / args.secs as f64;
    (
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        rate,
        lags.len(),
    )
}

/// The steady writer of the lag runs, on its own thread: `--rate`
/// events/s in group commits (`append_many`, fsynced), at least a
/// millisecond's worth at a time, for `--secs`; notes when each LSN's
/// `append_many` returned.
fn spawn_writer(
    wal: &Wal,
    durable: &Arc<Mutex<HashMap<Lsn, Instant>>>,
    args: &Args,
) -> std::thread::JoinHandle<()> {
    let per_ms = (args.rate / 1000).max(1) as usize;
    let (wal, durable) = (wal.clone(), durable.clone());
    let (secs, rate) = (args.secs, args.rate.max(1));
    std::thread::spawn(move || {
        let session = uuid::Uuid::new_v4();
        let start = Instant::now();
        let mut written = 0u64;
        while start.elapsed() < Duration::from_secs(secs) {
            // Whatever is due by now at `rate`, at least one ms' worth:
            // a steady rate, in group commits.
            let due =
                (start.elapsed().as_micros() as u64 * rate / 1_000_000).saturating_sub(written);
            let n = due.max(per_ms as u64) as usize;
            let batch: Vec<_> = (0..n)
                .map(|_| (session, SessionEvent::TextComplete("y".repeat(200))))
                .collect();
            let lsns = wal.append_many(&batch).expect("append");
            let now = Instant::now();
            let mut d = durable.lock().expect("lock");
            for lsn in lsns {
                d.insert(lsn, now);
            }
            drop(d);
            written += n as u64;
            let next = start + Duration::from_micros(written * 1_000_000 / rate);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

async fn lag(url: &str, dir: &Path, args: &Args, mode: Mode, run: usize) -> (f64, f64, f64, usize) {
    if mode == Mode::Floor {
        return floor(url, dir, args, run).await;
    }
    let wal = Wal::open(dir, WalOptions::default()).expect("open");
    let durable: Arc<Mutex<HashMap<Lsn, Instant>>> = Arc::default();
    let acked: Arc<Mutex<HashMap<Lsn, Instant>>> = Arc::default();
    let seen = acked.clone();
    let name = format!("{mode:?}").to_lowercase();
    let target = Target::parse(url)
        .expect("url")
        .with_stream(format!("LAG{}{run}", name.to_uppercase()))
        .with_prefix(format!("lag{name}{run}"))
        .expect("prefix");
    let options = ShipOptions {
        window: WINDOW,
        poll: Duration::from_millis(args.poll_ms),
        on_ack: Some(Arc::new(move |lsn| {
            seen.lock().expect("lock").insert(lsn, Instant::now());
        })),
        ..ShipOptions::default()
    };
    let shipper = match mode {
        Mode::Poll => Shipper::new(dir, target, options).expect("shipper"),
        Mode::Wal | Mode::Floor => Shipper::for_wal(&wal, target, options),
    };
    let follower = tokio::spawn(async move { shipper.follow(|_| {}).await });
    // The writer starts once the shipper has connected and found where to
    // resume: one record first, acked (its lag is not counted).
    let first = wal
        .append(uuid::Uuid::new_v4(), &SessionEvent::Done)
        .expect("append");
    let start = Instant::now();
    while !acked.lock().expect("lock").contains_key(&first) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the shipper did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let writer = spawn_writer(&wal, &durable, args);
    tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .expect("join");
    let written = durable.lock().expect("lock").len();
    let end = Instant::now();
    while acked.lock().expect("lock").len() <= written && end.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    follower.abort();
    let d = durable.lock().expect("lock");
    let a = acked.lock().expect("lock");
    let mut lags: Vec<f64> = d
        .iter()
        .filter_map(|(lsn, t)| {
            a.get(lsn)
                .map(|ack| ack.saturating_duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    eprintln!(
        "lag (ms): p90 {:.2} p95 {:.2} p98 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        percentile(&lags, 0.9),
        percentile(&lags, 0.95),
        percentile(&lags, 0.98),
        percentile(&lags, 0.99),
        percentile(&lags, 0.999),
        percentile(&lags, 1.0)
    );
    let rate = written as f64 / args.secs as f64;
    (
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        rate,
        lags.len(),
    )
}

fn main() {
    let args = args();
    let root = tempfile::tempdir_in(&args.dir).expect("temporary directory");
    // The server's store: under --dir, or in a temporary directory under
    // --store (another file system, so that the log's fsyncs and the
    // server's writes do not share a disk, as on separate machines).
    let store_root = args
        .store
        .as_ref()
        .map(|dir| tempfile::tempdir_in(dir).expect("temporary store directory"));
    let (_server, url) = match &args.url {
        Some(url) => (None, url.clone()),
        None => {
            let store = store_root
                .as_ref()
                .map_or_else(|| root.path().join("nats"), |d| d.path().join("nats"));
            std::fs::create_dir_all(&store).expect("store");
            let (s, u) = start_server(&store);
            (Some(s), u)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.rounds > 0 {
        throughput(&rt, &url, root.path(), &args);
    }
    lags(&rt, &url, root.path(), &args);
}

/// The throughput table (`--rounds` rounds; none with `--rounds 0`).
fn throughput(rt: &tokio::runtime::Runtime, url: &str, root: &Path, args: &Args) {
    let log = root.join("log");
    write_log(&log, args.records);
    let msgs = messages(&log);
    let (mut bare_rates, mut ship_rates) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let b = rt.block_on(bare(url, &format!("BARE{round}"), &msgs));
        let s = rt.block_on(shipped(url, &format!("SHIP{round}"), &log));
        eprintln!("round {round}: bare {b:.0}/s, ship {s:.0}/s");
        bare_rates.push(b);
        ship_rates.push(s);
    }
    let (b, s) = (median(bare_rates), median(ship_rates));
    println!(
        "| {} records of 200 B, window {WINDOW} | records/s (median of {}) |",
        args.records, args.rounds
    );
    println!("|---|---:|");
    println!("| bare async-nats publish loop | {b:.0} |");
    println!("| `Shipper::ship` (reads the log) | {s:.0} |");
    println!("| ratio | {:.2}× |", s / b);
    println!();
}

/// The lag table: each mode of `--mode`, `--lag-runs` times, alternating,
/// a fresh log and stream each time; then the median p50 and p99 of each
/// mode's runs.
fn lags(rt: &tokio::runtime::Runtime, url: &str, root: &Path, args: &Args) {
    let mut rows = Vec::new();
    let mut by_mode: HashMap<Mode, (Vec<f64>, Vec<f64>)> = HashMap::new();
    for (run, &mode) in (0..args.lag_runs).flat_map(|run| args.modes.iter().map(move |m| (run, m)))
    {
        let lag_log = root.join(format!("lag-{mode:?}-{run}"));
        let (p50, p99, rate, n) = rt.block_on(lag(url, &lag_log, args, mode, run));
        let entry = by_mode.entry(mode).or_default();
        entry.0.push(p50);
        entry.1.push(p99);
        let how = match mode {
            Mode::Poll => format!("`Shipper::new`, polling every {} ms", args.poll_ms),
            Mode::Wal => "`Shipper::for_wal`, woken by the durable watermark".to_owned(),
            Mode::Floor => "no shipper: a bare publisher beside the writer, publish→ack".to_owned(),
        };
        eprintln!("{mode:?}: p50 {p50:.2} ms, p99 {p99:.2} ms");
        rows.push(format!(
            "| {rate:.0} events/s for {} s, {how} | {n} | {p50:.2} ms | {p99:.2} ms |",
            args.secs
        ));
    }
    println!("| writer, shipper | records acked | fsync→ack p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    if args.lag_runs > 1 {
        println!();
        println!("| shipper | runs | median p50 | median p99 |");
        println!("|---|---:|---:|---:|");
        for mode in &args.modes {
            let (p50s, p99s) = by_mode.remove(mode).unwrap_or_default();
            println!(
                "| {mode:?} | {} | {:.2} ms | {:.2} ms |",
                p99s.len(),
                median(p50s),
                median(p99s)
            );
        }
    }
}
