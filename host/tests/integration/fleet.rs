//! Several writers on one lake with no lock between them: bronze commits
//! are fenced by Delta app transactions (a batch id, each ordered
//! partition's last offset), so two ingest tiers handed the same partition
//! store each record once, on a local lake and on Azurite.

use std::collections::BTreeSet;
use std::sync::Arc;

use sluice::config::Config;
use sluice::pipeline::IngestTier;
use sluice::record::RawRecord;

use crate::{azurite, common};

/// Records `offsets` of Kafka partition `partition`, with simulated events.
fn records(lines: &[String], partition: &str, offsets: std::ops::Range<i64>) -> Vec<RawRecord> {
    let partition: Arc<str> = Arc::from(partition);
    offsets
        .map(|offset| RawRecord {
            payload: lines[offset as usize % lines.len()].clone().into(),
            source: Arc::from("kafka"),
            partition: partition.clone(),
            offset,
        })
        .collect()
}

/// Commits `records` in batches of 100; the batch ids committed.
async fn commit_all(ingest: &mut IngestTier, records: &[RawRecord]) -> Vec<(i64, usize)> {
    let mut committed = Vec::new();
    for batch in records.chunks(100) {
        if let Some(c) = ingest.commit(batch).await.unwrap() {
            committed.push((c.batch, c.rows.num_rows()));
        }
    }
    committed
}

async fn two_writers_on_one_partition_store_each_record_once(config: Config) {
    let lines = common::simulated_lines(7, 400, 0.0);
    let mut a = sluice::service::open_pipeline(&config).await.unwrap();
    let mut tier_a = a.take_ingest().unwrap();
    let early = commit_all(&mut tier_a, &records(&lines, "events/0", 0..300)).await;
    // b takes events/0 over where the lake has it, as a new owner does,
    // while a still holds records it read before (a stale owner).
    let mut b = sluice::service::open_pipeline(&config).await.unwrap();
    let resume = b
        .positions()
        .get(&("kafka".into(), "events/0".into()))
        .copied();
    assert_eq!(resume, Some(299), "b resumes after a's last commit");
    let mut tier_b = b.take_ingest().unwrap();
    let a_records = records(&lines, "events/0", 300..600);
    let mut b_records = records(&lines, "events/0", 300..900);
    b_records.extend(records(&lines, "events/1", 0..200));
    let (late, by_b) = tokio::join!(
        commit_all(&mut tier_a, &a_records),
        commit_all(&mut tier_b, &b_records)
    );
    let by_a: Vec<(i64, usize)> = early.into_iter().chain(late).collect();
    let lake = sluice::service::open_lake(&config).await.unwrap();
    let stored = common::count_in(&lake, "SELECT COUNT(*) FROM bronze_events").await;
    assert_eq!(stored, 900 + 200, "every record of both partitions");
    for partition in ["events/0", "events/1"] {
        let distinct = common::count_in(
            &lake,
            &format!(
                "SELECT COUNT(DISTINCT source_offset) FROM bronze_events \
                 WHERE source_partition = '{partition}'"
            ),
        )
        .await;
        let rows = common::count_in(
            &lake,
            &format!("SELECT COUNT(*) FROM bronze_events WHERE source_partition = '{partition}'"),
        )
        .await;
        assert_eq!(rows, distinct, "{partition}: no record twice");
    }
    // Each commit took its own batch id, and the table holds what each
    // writer was told it committed under it.
    let ids: BTreeSet<i64> = by_a.iter().chain(&by_b).map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), by_a.len() + by_b.len(), "{by_a:?} {by_b:?}");
    for (id, rows) in by_a.iter().chain(&by_b) {
        let held = common::count_in(
            &lake,
            &format!("SELECT COUNT(*) FROM bronze_events WHERE batch_id = {id}"),
        )
        .await;
        assert_eq!(held as usize, *rows, "batch {id}");
    }
    // A writer opened now resumes after what both stored.
    assert_eq!(resumes_after(&config).await, (Some(899), Some(199)));
}

/// Where a writer opened now resumes `events/0` and `events/1`.
async fn resumes_after(config: &Config) -> (Option<i64>, Option<i64>) {
    let reopened = sluice::service::open_pipeline(config).await.unwrap();
    let position = |p: &str| {
        reopened
            .positions()
            .get(&("kafka".to_string(), p.to_string()))
            .copied()
    };
    (position("events/0"), position("events/1"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_partition_of_a_local_lake_store_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::replay_config(&dir.path().join("lake"), Vec::new(), 100);
    two_writers_on_one_partition_store_each_record_once(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_partition_of_an_azure_lake_store_each_record_once() {
    if azurite::service("AZURITE_BLOB_STORAGE_URL", "Azurite").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = azurite::azure_config(&azurite::lake_url(), dir.path(), Vec::new());
    two_writers_on_one_partition_store_each_record_once(config).await;
}

/// Two writers whose bronze plugin fails a batch each, both under the same
/// tentative batch id (each started from the same lake): both batches land
/// in quarantine, under different ids. The plugin fails for want of memory:
/// each batch is larger than the 16 MiB its instance may grow to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_whose_bronze_plugin_fails_quarantine_both_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::replay_config(&dir.path().join("lake"), Vec::new(), 100);
    config.plugins.memory_mb = 16;
    let big = |partition: &str| -> Vec<RawRecord> {
        let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(1 << 20));
        let lines = vec![payload; 24];
        records(&lines, partition, 0..24)
    };
    let mut a = sluice::service::open_pipeline(&config).await.unwrap();
    let mut b = sluice::service::open_pipeline(&config).await.unwrap();
    let (mut tier_a, mut tier_b) = (a.take_ingest().unwrap(), b.take_ingest().unwrap());
    let by_a = tier_a.commit(&big("events/0")).await.unwrap().unwrap();
    let by_b = tier_b.commit(&big("events/1")).await.unwrap().unwrap();
    assert!(
        by_a.bronze_failure.is_some() && by_b.bronze_failure.is_some(),
        "the bronze plugin fails both batches"
    );
    assert_ne!(by_a.batch, by_b.batch, "each failed batch has its own id");

    let lake = sluice::service::open_lake(&config).await.unwrap();
    for (partition, batch) in [("events/0", by_a.batch), ("events/1", by_b.batch)] {
        let held = common::count_in(
            &lake,
            &format!(
                "SELECT COUNT(DISTINCT source_offset) FROM quarantine \
                 WHERE source_partition = '{partition}' AND batch_id = {batch}"
            ),
        )
        .await;
        assert_eq!(held, 24, "{partition}: every record quarantined");
    }
    assert_eq!(
        resumes_after(&config).await,
        (Some(23), Some(23)),
        "a writer opened now resumes after both"
    );
}
