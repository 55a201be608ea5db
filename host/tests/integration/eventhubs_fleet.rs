//! The Event Hubs fleet where no hub can be had: three instances run the
//! ownership rounds `sluice run` runs (`claim_round` / `relinquish`) against
//! a real checkpoint store on Azurite, and commit what they own through real
//! ingest tiers to one lake on Azurite. An in-test partitioned log stands in
//! for the AMQP hub (the live test, `eventhubs_amqp`, reads a real one when
//! its connection string is set): what is tested is the store and the Delta
//! arbitration. Partitions move when an instance stops renewing (as after a
//! `kill -9` or a SIGSTOP) and when one hands them back (a graceful stop);
//! the stopped one, resumed, commits what it still held before it notices,
//! and Delta drops it. Every record once in bronze; silver, quarantine and
//! gold as computed once refined.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sluice::pipeline::IngestTier;
use sluice::record::RawRecord;
use sluice::sources::blob_checkpoints::BlobCheckpointStore;
use sluice::sources::eventhubs::{SOURCE, Scope, claim_round, owners, partition_name, relinquish};
use sluice::sources::shared::LakePositions;

use crate::checkpoint_store::{HUB, azurite, fresh_ownership_store};
use crate::{azurite as lake_emulator, common};

const PARTITIONS: usize = 4;
/// Records a reader takes from a partition per commit.
const CHUNK: usize = 150;
/// Ownership expiry: short, so a silent instance's partitions move soon,
/// yet well above the time an instance takes between its rounds here (a
/// few commits to Azurite), so only the silent one loses any.
const EXPIRY: Duration = Duration::from_secs(10);

/// The stand-in hub: each partition's records, sequence numbers from 0.
struct Hub {
    partitions: Vec<Vec<String>>,
}

impl Hub {
    fn records(&self, id: &str, from: i64) -> Vec<RawRecord> {
        let log = &self.partitions[id.parse::<usize>().unwrap()];
        let partition: Arc<str> = Arc::from(partition_name(HUB, id));
        (from..(from + CHUNK as i64).min(log.len() as i64))
            .map(|seq| RawRecord {
                payload: log[seq as usize].clone().into(),
                source: Arc::from(SOURCE),
                partition: partition.clone(),
                offset: seq,
            })
            .collect()
    }

    fn len(&self, id: &str) -> i64 {
        self.partitions[id.parse::<usize>().unwrap()].len() as i64
    }
}

/// One instance: its ownership id, ingest tier, the lake's positions it
/// resumes partitions from, and where it reads each partition it owns.
struct Instance {
    owner: &'static str,
    tier: IngestTier,
    positions: LakePositions,
    reading: BTreeMap<String, i64>,
}

impl Instance {
    async fn open(config: &sluice::config::Config, owner: &'static str) -> Instance {
        let mut pipeline = sluice::service::open_pipeline(config).await.unwrap();
        let bronze = pipeline.bronze_handle().await.unwrap();
        let positions = LakePositions::new(bronze, pipeline.positions());
        Instance {
            owner,
            tier: pipeline.take_ingest().unwrap(),
            positions,
            reading: BTreeMap::new(),
        }
    }

    /// One ownership round, as the source's balance loop does it: readers
    /// of lost partitions stop, new ones start after the lake's position.
    async fn claim(&mut self, store: &BlobCheckpointStore, scope: &Scope, ids: &[String]) {
        let owned = claim_round(store, scope, self.owner, ids, EXPIRY)
            .await
            .unwrap()
            .owned;
        self.reading.retain(|id, _| owned.contains(id));
        if owned.iter().all(|id| self.reading.contains_key(id)) {
            return;
        }
        self.positions.refresh().await.unwrap();
        for id in owned {
            let stored = self.positions.get(SOURCE, &partition_name(HUB, &id));
            self.reading
                .entry(id)
                .or_insert_with(|| stored.map_or(0, |s| s + 1));
        }
    }

    /// One chunk of each partition it reads, committed to bronze; how
    /// many records bronze took (the fence drops those stored already).
    async fn read(&mut self, hub: &Hub) -> usize {
        let mut stored = 0;
        for (id, next) in self.reading.iter_mut() {
            let records = hub.records(id, *next);
            if records.is_empty() {
                continue;
            }
            let committed = self.tier.commit(&records).await.unwrap();
            stored += committed.map_or(0, |c| c.rows.num_rows());
            *next += records.len() as i64;
        }
        stored
    }

    fn owns(&self) -> HashSet<&str> {
        self.reading.keys().map(String::as_str).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_balanced_by_the_ownership_store_store_each_event_once() {
    let Some(account) = azurite() else { return };
    if lake_emulator::service("AZURITE_BLOB_STORAGE_URL", "Azurite").is_none() {
        return;
    }
    let (store, scope) = fresh_ownership_store(account).await;
    let ids: Vec<String> = (0..PARTITIONS).map(|i| i.to_string()).collect();
    let lines = common::simulated_lines(61, 6_000, 0.02);
    let mut partitions = vec![Vec::new(); PARTITIONS];
    for (i, line) in lines.iter().enumerate() {
        partitions[i % PARTITIONS].push(line.clone());
    }
    let hub = Hub { partitions };

    let dir = tempfile::tempdir().unwrap();
    let url = lake_emulator::lake_url();
    let mut config = lake_emulator::azure_config(&url, dir.path(), Vec::new());
    config.lateness.allowed_secs = 10 * 365 * 86_400;
    let mut a = Instance::open(&config, "a").await;
    let mut b = Instance::open(&config, "b").await;
    let mut c = Instance::open(&config, "c").await;

    // Started together, they split the partitions among them.
    for _ in 0..3 {
        for i in [&mut a, &mut b, &mut c] {
            i.claim(&store, &scope, &ids).await;
            i.read(&hub).await;
        }
    }
    let (sa, sb, sc) = (a.owns(), b.owns(), c.owns());
    assert_eq!(
        sa.len() + sb.len() + sc.len(),
        PARTITIONS,
        "{sa:?} {sb:?} {sc:?}"
    );
    assert!(!sc.is_empty() && sa.is_disjoint(&sc) && sb.is_disjoint(&sc));

    // `c` goes silent (SIGSTOP): once its ownership is stale, the others
    // take its partitions and resume them where the lake has them.
    let held_by_c = c.owns().into_iter().map(String::from).collect::<Vec<_>>();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !held_by_c
        .iter()
        .all(|id| a.owns().contains(id.as_str()) || b.owns().contains(id.as_str()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "c's partitions never moved"
        );
        for i in [&mut a, &mut b] {
            i.claim(&store, &scope, &ids).await;
            i.read(&hub).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for _ in 0..2 {
        a.read(&hub).await;
        b.read(&hub).await;
    }
    // Resumed, `c` commits what it still held before its next round: the
    // new owners stored those records already, so the fence drops them.
    // Then it is killed for good.
    assert_eq!(c.read(&hub).await, 0, "a stale owner stores nothing");
    drop(c);

    // `b` stops gracefully: it hands its partitions back and `a` takes
    // them at once, then reads everything to the end.
    let held_by_b: HashSet<String> = b.owns().into_iter().map(String::from).collect();
    assert!(relinquish(&store, &scope, "b").await.unwrap() > 0);
    // What `sluice status` shows: b's partitions handed back, the rest a's.
    let view = owners(&store, &scope, EXPIRY).await.unwrap();
    assert_eq!(view.len(), PARTITIONS, "{view:?}");
    for o in &view {
        match o.owner.as_deref() {
            None => assert!(held_by_b.contains(&o.partition) && !o.live, "{o:?}"),
            Some(owner) => assert_eq!(owner, "a", "{o:?}"),
        }
    }
    while a.owns().len() < PARTITIONS {
        a.claim(&store, &scope, &ids).await;
    }
    let view = owners(&store, &scope, EXPIRY).await.unwrap();
    assert!(
        view.iter()
            .all(|o| o.owner.as_deref() == Some("a") && o.live),
        "{view:?}"
    );
    while a.reading.iter().any(|(id, next)| *next < hub.len(id)) {
        a.read(&hub).await;
    }

    let lake = sluice::service::open_lake(&config).await.unwrap();
    let stored = common::count_in(&lake, "SELECT COUNT(*) FROM bronze_events").await;
    let distinct = common::count_in(
        &lake,
        "SELECT COUNT(*) FROM (SELECT DISTINCT source_partition, source_offset FROM bronze_events)",
    )
    .await;
    assert_eq!(distinct as usize, lines.len(), "every record is in bronze");
    assert_eq!(stored, distinct, "and none twice");
    // Refined by the next instance that opens the pipeline.
    drop(sluice::service::open_pipeline(&config).await.unwrap());
    crate::kafka::assert_exactly_once_in(&lake, &lines).await;
}
