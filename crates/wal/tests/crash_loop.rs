//! The crash loop: a child process appends through `SessionBus` +
//! `WalSink` (`SyncPolicy::Always`) from several threads and prints every
//! acknowledged LSN; the parent `SIGKILL`s it at a random moment, reopens
//! the log and checks that every acknowledged record is present and intact
//! and that LSNs stay gapless. 30 cycles by default;
//! `LOGBOOK_CRASH_CYCLES=N` for more. The same loop runs with a child that
//! emits through `SessionBus::emit_async` from 64 tasks on a 2-worker tokio
//! runtime, and with encryption at rest on.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{assert_gapless, read_all, session, small};
use logbook_bus::{DurableSink, SessionBus, SessionEvent};
use logbook_wal::{EventRecord, Key, KeyRing, Reader, Wal, WalOptions, WalSink};

/// The log's options: small segments, so that kills land during rolls
/// too; encrypted at rest if asked.
fn options(encrypted: bool) -> WalOptions {
    WalOptions {
        encryption: encrypted.then(|| Arc::new(KeyRing::new(Key::new([0xc7; 32])))),
        ..small(32 * 1024)
    }
}

/// Every record, decrypted if `encrypted`.
fn read_back(dir: &Path, encrypted: bool) -> Vec<(u64, uuid::Uuid, SessionEvent)> {
    let Some(ring) = options(encrypted).encryption else {
        return read_all(dir);
    };
    let mut reader = Reader::open(dir).unwrap().with_keys(ring);
    let mut out = Vec::new();
    while let Some(r) = reader.next_ref() {
        let r = r.unwrap_or_else(|e| panic!("reading the log: {e}"));
        assert!(r.key_id.is_none(), "decrypted");
        let e = EventRecord::decode(&r).unwrap();
        out.push((e.lsn, e.session, e.event));
    }
    out
}

const CHILD_ENV: &str = "LOGBOOK_CRASH_CHILD";
const THREADS: u64 = 4;

/// A sink that prints the LSN of every record once the log acknowledged it.
struct Printing {
    inner: WalSink,
    thread: u64,
}

impl DurableSink for Printing {
    fn write(&self, event: &SessionEvent) -> std::io::Result<()> {
        let lsn = self.inner.wal().append(self.inner.session(), event)?;
        let SessionEvent::UserMessage(text) = event else {
            unreachable!()
        };
        // One `println!` is one write of a whole line.
        println!("ACK {lsn} {} {text}", self.thread);
        Ok(())
    }
}

/// The async child's sink: prints the LSN once `append_async` resolved.
struct PrintingAsync {
    inner: WalSink,
    thread: u64,
}

impl DurableSink for PrintingAsync {
    fn write(&self, _: &SessionEvent) -> std::io::Result<()> {
        unreachable!("the async child only calls emit_async")
    }

    fn write_async(self: Arc<Self>, event: SessionEvent) -> logbook_bus::WriteFuture {
        Box::pin(async move {
            let lsn = self
                .inner
                .wal()
                .append_async(self.inner.session(), &event)
                .await?;
            let SessionEvent::UserMessage(text) = &event else {
                unreachable!()
            };
            println!("ACK {lsn} {} {text}", self.thread);
            Ok(())
        })
    }
}

const TASKS: u64 = 64;

fn async_child(dir: &Path) {
    let wal = Wal::open(dir, small(32 * 1024)).unwrap();
    let run = std::process::id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let sink = PrintingAsync {
                    inner: wal.sink(session(t)),
                    thread: t,
                };
                let bus = SessionBus::new(16).with_durable_sink(Arc::new(sink));
                tokio::spawn(async move {
                    for seq in 0u64.. {
                        let pad = "p".repeat((seq % 200) as usize);
                        bus.emit_async(SessionEvent::UserMessage(format!("{run}/{t}/{seq}/{pad}")))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn child(dir: &Path, encrypted: bool) {
    let wal = Wal::open(dir, options(encrypted)).unwrap();
    let run = std::process::id();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let wal = wal.clone();
            s.spawn(move || {
                let sink = Printing {
                    inner: wal.sink(session(t)),
                    thread: t,
                };
                let bus = SessionBus::new(16).with_durable_sink(Arc::new(sink));
                for seq in 0u64.. {
                    let pad = "p".repeat((seq % 200) as usize);
                    bus.try_emit(SessionEvent::UserMessage(format!("{run}/{t}/{seq}/{pad}")))
                        .unwrap();
                }
            });
        }
    });
}

#[test]
fn sigkill_loop_loses_no_acknowledged_record() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir), false);
        return;
    }
    crash_loop("sigkill_loop_loses_no_acknowledged_record", false);
}

#[test]
fn sigkill_loop_encrypted_loses_no_acknowledged_record() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir), true);
        return;
    }
    crash_loop("sigkill_loop_encrypted_loses_no_acknowledged_record", true);
}

#[test]
fn sigkill_loop_through_emit_async_from_many_tasks() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        async_child(Path::new(&dir));
        return;
    }
    crash_loop("sigkill_loop_through_emit_async_from_many_tasks", false);
}

/// Run the child test `name` and `SIGKILL` it, again and again.
fn crash_loop(name: &str, encrypted: bool) {
    let cycles: u64 = std::env::var("LOGBOOK_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("crash loop: {cycles} cycles, seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let dir = tempfile::tempdir().unwrap();
    // Every acknowledged record: LSN -> (thread, text).
    let mut acked: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut total_cut = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Wait for the first acknowledgement, then kill at a random moment.
        let mut first = String::new();
        let started = Instant::now();
        while !first.starts_with("ACK") {
            first.clear();
            assert!(
                out.read_line(&mut first).unwrap() > 0,
                "child exited before writing (cycle {cycle})"
            );
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "child never acknowledged a record"
            );
        }
        std::thread::sleep(Duration::from_micros(next() % 60_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        for line in std::iter::once(first.as_str()).chain(rest.split_inclusive('\n')) {
            // A line cut by the kill has no newline: it was not printed whole.
            let Some(line) = line.strip_suffix('\n') else {
                continue;
            };
            let mut parts = line.splitn(4, ' ');
            let (Some("ACK"), Some(lsn), Some(t), Some(text)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let old = acked.insert(lsn.parse().unwrap(), (t.parse().unwrap(), text.to_owned()));
            assert!(old.is_none(), "LSN {lsn} acknowledged twice");
        }

        // Reopen: recovery must keep every acknowledged record.
        let wal = Wal::open(dir.path(), options(encrypted)).unwrap();
        if wal.recovery().cut.is_some() {
            total_cut += 1;
        }
        drop(wal);
        let records = read_back(dir.path(), encrypted);
        assert_gapless(&records);
        let by_lsn: BTreeMap<_, _> = records.iter().map(|(l, s, e)| (*l, (*s, e))).collect();
        for (lsn, (t, text)) in &acked {
            let Some((s, e)) = by_lsn.get(lsn) else {
                panic!("cycle {cycle}: acknowledged LSN {lsn} lost (seed {seed})")
            };
            assert_eq!(*s, session(*t), "LSN {lsn}: wrong session");
            assert_eq!(
                *e,
                &SessionEvent::UserMessage(text.clone()),
                "LSN {lsn}: wrong event"
            );
        }
    }
    println!(
        "crash loop: {} acknowledged records checked, {total_cut} torn tails cut",
        acked.len()
    );
    assert!(
        acked.len() as u64 >= cycles,
        "every cycle acknowledged at least one record"
    );
}
