//! The server going away mid-ship: a single server killed and restarted on
//! the same store, and one node of a 3-node cluster killed under an R3
//! stream. The shipper reconnects, finds in the stream what it holds and
//! finishes: nothing lost, nothing doubled.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use logbook_fleet::{Select, ShipOptions, Shipper, StreamSettings, Target, read};

mod logs;

use logs::{assert_exactly_once, local_records, write_log};

fn counting() -> (Arc<AtomicU64>, ShipOptions) {
    let acked = Arc::new(AtomicU64::new(0));
    let seen = acked.clone();
    let options = ShipOptions {
        on_ack: Some(Arc::new(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
        })),
        give_up_after: Duration::from_secs(60),
        ..ShipOptions::default()
    };
    (acked, options)
}

async fn wait_for(acked: &AtomicU64, n: u64) {
    while acked.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn the_server_killed_and_restarted_mid_ship() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    write_log(&dir, 40_000);
    let local = local_records(&dir);
    let (acked, options) = counting();
    let target = Target::parse(&server.url())
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let shipper = Shipper::new(&dir, target.clone(), options).unwrap();
    let log = shipper.log_id();
    let report = common::run(Duration::from_secs(120), async {
        let shipping = tokio::spawn(async move { shipper.ship().await });
        wait_for(&acked, 3_000).await;
        server.kill();
        let at_kill = acked.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.start();
        let report = shipping.await.unwrap().unwrap();
        assert!(at_kill < 40_000, "the kill came after the end: {at_kill}");
        let records = read(&target, Select::All).await.unwrap();
        assert_exactly_once(&records, log, &local);
        report
    });
    assert!(report.reconnects >= 1, "{report:?}");
    assert_eq!(report.shipped_through, 40_000);
    assert_eq!(
        report.shipped + report.duplicates,
        acked.load(Ordering::Relaxed)
    );
}

#[test]
fn a_node_of_a_three_node_cluster_killed_mid_ship() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut cluster = common::Cluster::start(&bin, root.path());
    let dir = root.path().join("log");
    write_log(&dir, 20_000);
    let local = local_records(&dir);
    let (acked, mut options) = counting();
    options.stream = StreamSettings {
        replicas: 3,
        ..StreamSettings::default()
    };
    let urls: Vec<String> = cluster.nodes.iter().map(common::Server::url).collect();
    // Any node will do: the shipper is given all three.
    let target = Target::parse(&urls.join(","))
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let shipper = Shipper::new(&dir, target.clone(), options).unwrap();
    let log = shipper.log_id();
    common::run(Duration::from_secs(180), async {
        // The cluster needs a moment to elect a meta leader: the shipper
        // retries through it.
        let shipping = tokio::spawn(async move { shipper.ship().await });
        wait_for(&acked, 2_000).await;
        // Kill the stream's leader: publishes fail until the survivors
        // elect another.
        let client = async_nats::connect(urls.as_slice()).await.unwrap();
        let mut stream = async_nats::jetstream::new(client)
            .get_stream("LOGBOOK")
            .await
            .unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.num_replicas, 3);
        let leader = info
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .unwrap_or_default();
        let victim = match leader.as_str() {
            "n0" => 0,
            "n1" => 1,
            "n2" => 2,
            other => panic!("no stream leader: {other:?}"),
        };
        cluster.nodes[victim].kill();
        let at_kill = acked.load(Ordering::Relaxed);
        assert!(at_kill < 20_000, "the kill came after the end: {at_kill}");
        let report = shipping.await.unwrap().unwrap();
        assert_eq!(report.shipped_through, 20_000);
        eprintln!("killed the leader n{victim} after {at_kill} acks: {report:?}");
        // Reads answered by the survivors, each of them.
        for (i, url) in urls.iter().enumerate().filter(|(i, _)| *i != victim) {
            let target = Target::parse(url).unwrap();
            let t = std::time::Instant::now();
            let records = read(&target, Select::All).await.unwrap();
            assert_exactly_once(&records, log, &local);
            eprintln!("node {i}: {} records in {:?}", records.len(), t.elapsed());
        }
    });
}

#[test]
fn following_rides_out_a_server_restart_while_a_writer_appends() {
    let Some(bin) = common::nats_server() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let mut server = common::Server::single(&bin, root.path());
    let dir = root.path().join("log");
    let wal = logbook_wal::Wal::open(&dir, logbook_wal::WalOptions::default()).unwrap();
    let (acked, mut options) = counting();
    options.poll = Duration::from_millis(5);
    let target = Target::parse(&server.url())
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    let shipper = Shipper::new(&dir, target.clone(), options).unwrap();
    let log = shipper.log_id();
    common::run(Duration::from_secs(120), async {
        let following = tokio::spawn(async move { shipper.follow(|_| {}).await });
        let writer = {
            let wal = wal.clone();
            tokio::task::spawn_blocking(move || {
                let sessions: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
                for i in 0..300u64 {
                    let batch: Vec<_> = (0..10)
                        .map(|k| {
                            (
                                sessions[((i + k) % 3) as usize],
                                logbook_bus::SessionEvent::TextChunk(format!("{i}.{k}")),
                            )
                        })
                        .collect();
                    wal.append_many(&batch).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        wait_for(&acked, 300).await;
        server.kill();
        let at_kill = acked.load(Ordering::Relaxed);
        assert!(at_kill < 3000, "the kill came after the end: {at_kill}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        server.start();
        writer.await.unwrap();
        // Until the stream has every LSN (acks of duplicates count too).
        let records = loop {
            let records = read(&target, Select::All).await.unwrap();
            let distinct: std::collections::HashSet<u64> = records.iter().map(|r| r.lsn).collect();
            if distinct.len() == 3000 {
                break records;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        following.abort();
        // (Not `acked >= 3000`: records the shipper finds already in the
        // stream after reconnecting are not acked again. The stream's
        // contents are the claim.)
        assert_exactly_once(&records, log, &local_records(&dir));
        assert_eq!(records.len(), 3000);
    });
}
