//! Lateness is judged per partition: a backlog read partition by partition
//! gives what the per-partition computation gives.

use std::path::Path;
use std::time::Duration;

use super::{Sim, shared_broker, sluice_run, terminate, unique_topic, wait_for_bronze, watch};
use crate::common::{self, Expected};

/// A backlog of four partitions spanning two days of event time, read with
/// one hour of allowed lateness: each partition is judged on its own, so
/// silver and gold equal the per-partition computation however the source
/// interleaved the partitions (a single watermark would have called the
/// early events of a partition read after another "late").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_judged_late_per_partition_not_by_read_order() {
    let Some(broker) = shared_broker() else {
        return;
    };
    const HOUR_SECS: i64 = 3_600;
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_topic("watermark");
    let sim = Sim {
        seed: 21,
        events: 16_000,
        faults: 0.03,
    };
    sim.produce(&broker, &topic);
    let lines = sim.lines();
    let lake = dir.path().join("lake");
    let mut child = sluice_run(&lake, &broker, &topic, 4_000)
        .env("SLUICE_LATENESS__ALLOWED_SECS", HOUR_SECS.to_string())
        .spawn()
        .unwrap();
    let _watch = watch(&mut child, "run");
    wait_for_bronze(&lake, lines.len(), Duration::from_secs(180)).await;
    terminate(child);

    let streams = bronze_lines(
        &lake,
        "SELECT source_partition, raw FROM bronze_events ORDER BY source_partition, source_offset",
    )
    .await;
    assert_eq!(streams.len(), 4, "four partitions");
    let mut all: Vec<String> = streams.iter().flatten().cloned().collect();
    let mut produced = lines.clone();
    all.sort();
    produced.sort();
    assert_eq!(all, produced, "bronze holds exactly the produced lines");
    assert_no_id_in_two_partitions(&streams);

    let expected = Expected::compute_streams(&streams, HOUR_SECS * 1_000_000);
    assert!(
        expected.late > 0,
        "some events are late within their partition"
    );
    let silver = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(silver as usize, expected.accepted.len());
    let late = common::count(
        &lake,
        "SELECT COUNT(*) FROM quarantine WHERE layer = 'silver' AND reason = 'late'",
    )
    .await;
    assert_eq!(late as usize, expected.late);
    common::assert_gold_matches(&lake, &expected).await;
    let arrival = bronze_lines(
        &lake,
        "SELECT 'all', raw FROM bronze_events ORDER BY batch_id, batch_row",
    )
    .await;
    let single = Expected::compute_streams(&arrival, HOUR_SECS * 1_000_000);
    eprintln!(
        "late: {} judged per partition; one watermark over the read order would have said {}",
        expected.late, single.late
    );
}

/// Raw bronze lines grouped by the first column of `sql` (in query order).
async fn bronze_lines(lake: &Path, sql: &str) -> Vec<Vec<String>> {
    use deltalake::arrow::array::{Array, BinaryArray, StringArray};
    use deltalake::arrow::compute::cast;
    use deltalake::arrow::datatypes::DataType;
    let lake = sluice::lake::Lake::local(lake).unwrap();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for b in sluice::query::sql(&lake, sql).await.unwrap() {
        let keys = cast(b.column(0), &DataType::Utf8).unwrap();
        let keys = keys.as_any().downcast_ref::<StringArray>().unwrap();
        let raw = cast(b.column(1), &DataType::Binary).unwrap();
        let raw = raw.as_any().downcast_ref::<BinaryArray>().unwrap();
        for i in 0..b.num_rows() {
            let line = String::from_utf8_lossy(raw.value(i)).into_owned();
            match groups.last_mut() {
                Some((key, lines)) if key == keys.value(i) => lines.push(line),
                _ => groups.push((keys.value(i).to_string(), vec![line])),
            }
        }
    }
    groups.into_iter().map(|(_, lines)| lines).collect()
}

/// Copies of an event (the simulator's duplicates) share its user and so
/// its partition; the per-partition expectation relies on that.
fn assert_no_id_in_two_partitions(streams: &[Vec<String>]) {
    let mut partition_of = std::collections::HashMap::new();
    for (p, lines) in streams.iter().enumerate() {
        for ev in lines.iter().filter_map(|l| common::parse(l)) {
            let first = *partition_of.entry(ev.id.clone()).or_insert(p);
            assert_eq!(first, p, "event {} is in two partitions", ev.id);
        }
    }
}

/// The far-future trial on a Kafka partition: one event stamped in the year
/// 9999 among normal ones, a restart, more normal ones: every normal event
/// is accepted, the bad one quarantined as `future_timestamp` with its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_event_on_a_partition_does_not_make_later_events_late() {
    use crate::bad_input::{event, event_at};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let Some(broker) = shared_broker() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let topic = unique_topic("future");
    let config = sluice::sources::kafka::KafkaConfig {
        brokers: broker.clone(),
        topic: topic.clone(),
        ..Default::default()
    };
    sluice::sources::kafka::ensure_topic(&config, 1)
        .await
        .unwrap();
    let producer: FutureProducer = config.client_config().create().unwrap();
    let future = event_at(0, "9999-12-31T23:59:59Z");
    let rounds = [
        std::iter::once(future.clone())
            .chain((1..=10).map(event))
            .collect::<Vec<_>>(),
        (11..=20).map(event).collect(),
    ];
    let mut produced = 0;
    for lines in rounds {
        for line in &lines {
            let record = FutureRecord::<(), _>::to(&topic).payload(line.as_bytes());
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap();
        }
        produced += lines.len();
        let mut child = sluice_run(&lake, &broker, &topic, 100).spawn().unwrap();
        let _watch = watch(&mut child, "run");
        wait_for_bronze(&lake, produced, Duration::from_secs(120)).await;
        terminate(child);
    }
    let silver = common::count(&lake, "SELECT COUNT(*) FROM silver_events").await;
    assert_eq!(
        silver, 20,
        "every normal event, before and after the restart"
    );
    let quarantined = common::rows(
        &lake,
        "SELECT reason, CAST(raw AS VARCHAR) AS raw FROM quarantine",
    )
    .await;
    let expected = serde_json::json!({"reason": "future_timestamp", "raw": future});
    assert_eq!(quarantined, vec![expected.to_string()]);
}
