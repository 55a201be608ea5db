//! The Kafka benchmark (ignored unless asked for): a backlog through the
//! whole pipeline, events/s and consumer lag over time, beside a plain
//! consumer reading the same backlog from the same broker, so the
//! pipeline's own share of the time is known.

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Sim, plain, shared_broker, sluice_run, terminate, unique_topic};
use crate::common;

/// Benchmark, not a check: a backlog of `SLUICE_BENCH_EVENTS` (default
/// 300,000) simulated events in a 4-partition topic drained by `sluice run`
/// through every layer into Delta. Prints events/s and the consumer lag
/// over time. Run with
/// `cargo test -p sluice --test integration kafka_benchmark -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn kafka_benchmark() {
    let Some(broker) = shared_broker() else {
        return;
    };
    let events: u64 = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let batch: usize = std::env::var("SLUICE_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("bench");
    let sim = Sim {
        seed: 77,
        events,
        faults: 0.01,
    };
    // With SLUICE_BENCH_RATE (events/s) the events are produced while the
    // pipeline runs; without, they are a backlog produced first.
    let rate: Option<f64> = std::env::var("SLUICE_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok());
    let producer = match rate {
        None => {
            let produced = Instant::now();
            sim.produce(&broker, &topic);
            println!(
                "produced {events} events to 4 partitions in {:.1} s",
                produced.elapsed().as_secs_f64()
            );
            let alone = consume_alone(&broker, &topic, events);
            println!(
                "consumer alone (librdkafka, same broker, same fetch settings): \
                 {events} events in {alone:.1} s ({:.0} events/s)",
                events as f64 / alone
            );
            None
        }
        Some(rate) => {
            // The simulator creates the topic before it produces; give it a
            // moment so the run finds all four partitions.
            let child = sim
                .command(&broker, &topic, 4)
                .args(["--rate", &rate.to_string()])
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_secs(1));
            println!("producing {events} events at {rate} events/s");
            Some(child)
        }
    };
    let lake = dir.path().join("lake");
    let mut child = sluice_run(&lake, &broker, &topic, batch)
        .env("SLUICE_LOG", "sluice=info,sluice::metrics=info")
        .env("SLUICE_KAFKA__LAG_REPORT_MS", "1000")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<(f64, String)>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send((started.elapsed().as_secs_f64(), line));
        }
    });
    let mut committed = 0u64;
    let mut first_batch = None;
    let mut lag = Vec::new();
    while committed < events {
        let (t, line) = rx
            .recv_timeout(Duration::from_secs(300))
            .expect("the run goes on");
        if line.contains("batch committed") {
            first_batch.get_or_insert(t);
            committed += field(&line, "events");
        } else if line.contains("kafka lag total") {
            lag.push((t, field(&line, "total")));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    terminate(child);
    if let Some(mut p) = producer {
        p.wait().unwrap();
    }
    let since_first = wall - first_batch.unwrap_or(0.0);
    println!(
        "drained {committed} events in {wall:.1} s from start ({:.0} events/s), \
         {since_first:.1} s from the first batch ({:.0} events/s)",
        committed as f64 / wall,
        committed as f64 / since_first
    );
    println!("| t (s) | consumer lag (events) |");
    for (t, l) in lag {
        println!("| {t:.0} | {l} |");
    }
    let bronze = common::count(&lake, "SELECT COUNT(*) FROM bronze_events").await;
    assert_eq!(bronze as u64, events);
}

/// Seconds a bare consumer takes to read `events` records of `topic` from
/// the start: what the broker and librdkafka give, with no pipeline.
fn consume_alone(broker: &str, topic: &str, events: u64) -> f64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("{topic}-alone"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..4 {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let started = Instant::now();
    let mut read = 0u64;
    while read < events {
        match consumer.poll(Duration::from_secs(30)) {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) => panic!("consumer alone: {e}"),
            None => panic!("consumer alone stalled after {read} of {events} records"),
        }
    }
    started.elapsed().as_secs_f64()
}

/// The numeric `name=` field of a log line.
fn field(line: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    plain(line)
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
