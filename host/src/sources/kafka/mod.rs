//! Kafka-protocol source (Apache Kafka, the Event Hubs Kafka endpoint, tansu):
//! reads the topic's partitions from the offsets the lake holds and sends
//! what it fetches; broker offsets are committed only for lag views.
//!
//! Alone on its lake it assigns every partition by hand at the lake's
//! positions. Sharing the lake (`kafka.share_partitions`), it subscribes in
//! the consumer group and the broker spreads the partitions over the
//! instances (`group.rs`); each is still resumed at the lake's position,
//! because the lake is the source of truth for positions (see
//! `sources/mod.rs`): committed group offsets are never read back, only
//! written after each bronze commit so that the usual Kafka tools show the
//! group's lag.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, watch};

use super::shared::Sharing;
use super::{Envelope, Positions, RawRecord, SourceContext};

mod config;
mod group;

pub use config::KafkaConfig;
use group::{Flow, Group, GroupContext, admit};

pub const SOURCE: &str = "kafka";

/// How long the source waits for more messages before sending what it has.
const LINGER: Duration = Duration::from_millis(20);
/// How long a fetch waits for a first message.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// How often a sharing instance reads the lake's positions (for partitions
/// assigned to it later).
const FOLLOW_POSITIONS_EVERY: Duration = Duration::from_secs(1);

/// The consumer, with the context that handles group rebalances.
type KafkaConsumer = StreamConsumer<GroupContext>;
/// Longest pause between retries while the broker is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Creates `topic` with `partitions` partitions unless it exists already.
pub async fn ensure_topic(config: &KafkaConfig, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let topic = NewTopic::new(&config.topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Low and high watermark per partition of `config.topic` (blocking).
pub fn watermarks(config: &KafkaConfig) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    let consumer: rdkafka::consumer::BaseConsumer = config.client_config().create()?;
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(&config.topic), timeout)?;
    let mut out = BTreeMap::new();
    for topic in metadata.topics() {
        for p in topic.partitions() {
            out.insert(
                p.id(),
                consumer.fetch_watermarks(&config.topic, p.id(), timeout)?,
            );
        }
    }
    Ok(out)
}

/// Events in a partition after the committed offset `committed` (none yet:
/// all of them), given the partition's low and high watermarks.
pub fn lag(committed: Option<i64>, low: i64, high: i64) -> i64 {
    (high - committed.map_or(low, |c| (c + 1).max(low))).max(0)
}

/// Events deleted (by retention) between the lake's position `committed`
/// and the partition's low watermark: they were never read and never will
/// be. None without a position: a new consumer starting at the oldest
/// offset left has skipped nothing it was ever responsible for.
pub fn gap(committed: Option<i64>, low: i64) -> i64 {
    committed.map_or(0, |c| low.saturating_sub(c.saturating_add(1)).max(0))
}

/// Before partitions are read from the lake's positions (`resumed`: id and
/// position): logs an error with the gap and counts it in
/// `sluice_source_gap_events` for each partition whose next offset
/// retention has deleted. The consumer then resumes at the low watermark
/// (`auto.offset.reset=earliest`): the deleted events are lost either way,
/// and stopping would only stall the ones still there.
async fn report_gaps(consumer: &Arc<KafkaConsumer>, topic: &str, resumed: &[(i32, Option<i64>)]) {
    let (c, t, wanted) = (consumer.clone(), topic.to_string(), resumed.to_vec());
    let lows = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .map(|(p, committed)| {
                (
                    p,
                    committed,
                    c.fetch_watermarks(&t, p, Duration::from_secs(5)),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (partition, committed, marks) in lows {
        let low = match marks {
            Ok((low, _)) => low,
            Err(e) => {
                tracing::warn!(topic, partition, "cannot check for a retention gap: {e}");
                continue;
            }
        };
        let missing = gap(committed, low);
        if missing > 0 {
            tracing::error!(
                topic,
                partition,
                committed,
                low_watermark = low,
                gap = missing,
                "events after the lake's position were deleted by retention before they were \
                 read; resuming at the oldest offset left"
            );
            crate::metrics::record_source_gap(SOURCE, &partition_name(topic, partition), missing);
        }
    }
}

/// Reports the gaps of partitions as the group assigns them.
async fn report_gaps_as_assigned(
    consumer: Arc<KafkaConsumer>,
    topic: String,
    mut assigned: mpsc::UnboundedReceiver<Vec<(i32, Option<i64>)>>,
) {
    while let Some(resumed) = assigned.recv().await {
        report_gaps(&consumer, &topic, &resumed).await;
    }
}

/// Keeps `sharing`'s lake positions fresh until `stop`.
async fn follow_positions(sharing: Arc<Sharing>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(FOLLOW_POSITIONS_EVERY) => {}
        }
        if let Err(e) = sharing.positions.refresh().await {
            tracing::warn!("reading the lake's positions failed ({e:#}); retrying");
        }
    }
}

/// The partition name stored in bronze for a topic partition.
pub fn partition_name(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// Partition ids of `topic`, waiting (with backoff) while the broker or the
/// topic is not there yet. `None` if asked to stop first.
async fn partitions(
    consumer: &Arc<KafkaConsumer>,
    topic: &str,
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<i32>> {
    let mut backoff = Backoff::new();
    loop {
        let c = consumer.clone();
        let t = topic.to_string();
        let found = tokio::task::spawn_blocking(move || {
            c.fetch_metadata(Some(&t), Duration::from_secs(5))
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    let topic = m.topics().first().ok_or("no topic in metadata")?;
                    if let Some(e) = topic.error() {
                        return Err(format!("{e:?}"));
                    }
                    Ok(topic
                        .partitions()
                        .iter()
                        .map(|p| p.id())
                        .collect::<Vec<_>>())
                })
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match found {
            Ok(ids) if !ids.is_empty() => return Some(ids),
            Ok(_) => tracing::warn!(topic, "topic has no partitions yet; retrying"),
            Err(e) => tracing::warn!(topic, "cannot read topic metadata ({e}); retrying"),
        }
        if !backoff.sleep(stop).await {
            return None;
        }
    }
}

/// The assignment that resumes each partition after the lake's position.
fn assignment(
    topic: &str,
    ids: &[i32],
    positions: &Positions,
) -> anyhow::Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for &id in ids {
        let key = (SOURCE.to_string(), partition_name(topic, id));
        let offset = match positions.get(&key) {
            Some(&done) => Offset::Offset(done + 1),
            None => Offset::Beginning,
        };
        list.add_partition_offset(topic, id, offset)?;
    }
    Ok(list)
}

/// Consumes `config.topic` until `stop`, sending envelopes of up to `chunk`
/// records into `tx`: every partition from the lake's `positions`, or, with
/// `sharing`, those the consumer group assigns to this instance. Returns
/// the records sent.
pub async fn run(
    config: KafkaConfig,
    ctx: SourceContext,
    sharing: Option<Arc<Sharing>>,
) -> anyhow::Result<u64> {
    let SourceContext {
        positions,
        chunk,
        tx,
        mut stop,
    } = ctx;
    let topic = config.topic.clone();
    let progress = Progress {
        lag_every: Duration::from_millis(config.lag_report_ms),
        durable: Durable::default(),
        flow: Flow::default(),
    };
    let (assigned_tx, assigned_rx) = mpsc::unbounded_channel();
    let context = match &sharing {
        Some(sharing) => GroupContext::in_group(Group {
            topic: topic.clone(),
            sharing: sharing.clone(),
            flow: progress.flow.clone(),
            durable: progress.durable.clone(),
            assigned: assigned_tx,
        }),
        None => GroupContext::by_hand(),
    };
    let consumer = Arc::new(config.consumer(context, sharing.is_some())?);
    let Some(ids) = partitions(&consumer, &topic, &mut stop).await else {
        return Ok(0);
    };
    let mut follower = None;
    match sharing {
        Some(sharing) => {
            follower = Some(tokio::spawn(follow_positions(sharing, stop.clone())));
            tokio::spawn(report_gaps_as_assigned(
                consumer.clone(),
                topic.clone(),
                assigned_rx,
            ));
            consumer.subscribe(&[&topic])?;
            tracing::info!(
                topic,
                group = config.group,
                "kafka source joined its consumer group"
            );
        }
        None => {
            let resumed: Vec<(i32, Option<i64>)> = ids
                .iter()
                .map(|&id| {
                    (
                        id,
                        positions
                            .get(&(SOURCE.to_string(), partition_name(&topic, id)))
                            .copied(),
                    )
                })
                .collect();
            report_gaps(&consumer, &topic, &resumed).await;
            consumer.assign(&assignment(&topic, &ids, &positions)?)?;
            progress.flow.lock().expect("flow").extend(&ids);
            // Report every partition from the start, not only after its first commit.
            let mut durable = progress.durable.lock().expect("lag map");
            for (id, done) in resumed {
                durable.insert(id, done.map_or(0, |d| d + 1));
            }
            tracing::info!(topic, partitions = ids.len(), "kafka source assigned");
        }
    }
    let sent = consume(consumer, &topic, &ids, progress, chunk, tx, stop).await;
    if let Some(follower) = follower {
        // Ended before the runtime may shut down: a lake read cut off by
        // the shutdown panics inside delta-rs' kernel executor.
        follower.abort();
        let _ = follower.await;
    }
    sent
}

/// The fetch loop: envelopes into `tx` until `stop` or the pipeline is gone.
async fn consume(
    consumer: Arc<KafkaConsumer>,
    topic: &str,
    ids: &[i32],
    progress: Progress,
    chunk: usize,
    tx: mpsc::Sender<Envelope>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let source: Arc<str> = Arc::from(SOURCE);
    let names: BTreeMap<i32, Arc<str>> = ids
        .iter()
        .map(|&id| (id, Arc::from(partition_name(topic, id).as_str())))
        .collect();
    let mut sent = 0u64;
    let mut backoff = Backoff::new();
    let Progress {
        lag_every,
        durable,
        flow,
    } = progress;
    tokio::spawn(report_lag(
        consumer.clone(),
        topic.to_string(),
        durable.clone(),
        lag_every,
        stop.clone(),
    ));
    loop {
        let records = tokio::select! {
            biased;
            _ = stopped(&mut stop) => return Ok(sent),
            r = fetch(&consumer, &source, &names, chunk, FETCH_WAIT) => r,
        };
        let records = match records {
            Ok(records) if records.is_empty() => continue,
            Ok(records) => {
                backoff.reset();
                match admit(&flow, records) {
                    admitted if admitted.is_empty() => continue,
                    admitted => admitted,
                }
            }
            Err(e) => {
                tracing::warn!("kafka fetch failed ({e}); retrying");
                if !backoff.sleep(&mut stop).await {
                    return Ok(sent);
                }
                continue;
            }
        };
        let commit = offsets_to_commit(topic, &records)?;
        let (ack, acked) = oneshot::channel();
        sent += records.len() as u64;
        let envelope = Envelope {
            records,
            ack: Some(ack),
        };
        if tx.send(envelope).await.is_err() {
            return Ok(sent);
        }
        tokio::spawn(commit_when_durable(
            consumer.clone(),
            commit,
            acked,
            durable.clone(),
        ));
    }
}

/// The first message within `wait` (none: an empty batch), then whatever
/// else arrives within [`LINGER`], up to `chunk`.
async fn fetch(
    consumer: &KafkaConsumer,
    source: &Arc<str>,
    names: &BTreeMap<i32, Arc<str>>,
    chunk: usize,
    wait: Duration,
) -> Result<Vec<RawRecord>, rdkafka::error::KafkaError> {
    let mut records = Vec::new();
    let first = match tokio::time::timeout(wait, consumer.recv()).await {
        Err(_) => return Ok(records),
        Ok(first) => first?,
    };
    records.push(record(&first, source, names));
    drop(first);
    while records.len() < chunk {
        match tokio::time::timeout(LINGER, consumer.recv()).await {
            Ok(Ok(m)) => records.push(record(&m, source, names)),
            // An error after some records: send those; the next fetch sees it.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok(records)
}

/// The partition number of a `<topic>/<n>` partition name.
fn partition_id(name: &str) -> i32 {
    name.rsplit_once('/')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_default()
}

/// Next offset per partition that this instance has made durable in bronze.
type Durable = Arc<std::sync::Mutex<BTreeMap<i32, i64>>>;

/// What the fetch loop keeps per partition: which ones it may send
/// (`flow`), how far what it sent is durable, and how often the lag is
/// reported.
struct Progress {
    lag_every: Duration,
    durable: Durable,
    flow: Flow,
}

/// Logs the lag of every partition this instance committed from, as the
/// `kafka lag` metric line (target `sluice::metrics`): events in the broker
/// after what is durable in bronze.
async fn report_lag(
    consumer: Arc<KafkaConsumer>,
    topic: String,
    durable: Durable,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(every) => {}
        }
        let next: Vec<(i32, i64)> = durable
            .lock()
            .expect("lag map")
            .iter()
            .map(|(p, o)| (*p, *o))
            .collect();
        let c = consumer.clone();
        let t = topic.clone();
        let marks = tokio::task::spawn_blocking(move || {
            next.into_iter()
                .filter_map(|(p, o)| {
                    let (low, high) = c.fetch_watermarks(&t, p, Duration::from_secs(2)).ok()?;
                    Some((p, lag(Some(o - 1), low, high)))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let total: i64 = marks.iter().map(|(_, l)| l).sum();
        for (partition, lag) in marks {
            crate::metrics::record_lag(SOURCE, &partition_name(&topic, partition), lag);
            tracing::info!(target: "sluice::metrics", topic, partition, lag, "kafka lag");
        }
        tracing::info!(target: "sluice::metrics", topic, total, "kafka lag total");
    }
}

fn record(
    m: &rdkafka::message::BorrowedMessage<'_>,
    source: &Arc<str>,
    names: &BTreeMap<i32, Arc<str>>,
) -> RawRecord {
    let partition = names
        .get(&m.partition())
        .cloned()
        .unwrap_or_else(|| Arc::from(partition_name(m.topic(), m.partition()).as_str()));
    RawRecord {
        // An empty or missing payload still goes to bronze, and on to
        // quarantine as malformed: nothing is dropped silently.
        payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
        source: source.clone(),
        partition,
        offset: m.offset(),
    }
}

/// The next offset to read per partition after `records`.
fn offsets_to_commit(topic: &str, records: &[RawRecord]) -> anyhow::Result<TopicPartitionList> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for r in records {
        let e = next
            .entry(partition_id(&r.partition))
            .or_insert(r.offset + 1);
        *e = (*e).max(r.offset + 1);
    }
    let mut list = TopicPartitionList::new();
    for (id, offset) in next {
        list.add_partition_offset(topic, id, Offset::Offset(offset))?;
    }
    Ok(list)
}

/// Commits broker offsets once the records are durable in bronze. Failures
/// only make the broker's lag view stale, so they are logged, not fatal.
async fn commit_when_durable(
    consumer: Arc<KafkaConsumer>,
    offsets: TopicPartitionList,
    acked: oneshot::Receiver<Result<(), String>>,
    durable: Durable,
) {
    let Ok(Ok(())) = acked.await else { return };
    {
        let mut next = durable.lock().expect("lag map");
        for e in offsets.elements() {
            if let Offset::Offset(o) = e.offset() {
                let n = next.entry(e.partition()).or_insert(o);
                *n = (*n).max(o);
            }
        }
    }
    if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
        tracing::debug!("committing broker offsets for lag visibility: {e}");
    }
}

/// Resolves once `stop` turns true; never if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it inside this function.
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Exponential backoff from 100 ms to [`MAX_BACKOFF`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }

    /// Sleeps; false if `stop` turned true meanwhile.
    async fn sleep(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        let pause = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        tokio::select! {
            _ = stopped(stop) => false,
            _ = tokio::time::sleep(pause) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_after_the_lake_position_or_from_the_beginning() {
        let mut positions = Positions::new();
        positions.insert((SOURCE.into(), partition_name("t", 1)), 41);
        let list = assignment("t", &[0, 1], &positions).unwrap();
        let offsets = list.to_topic_map();
        assert_eq!(offsets[&("t".to_string(), 0)], Offset::Beginning);
        assert_eq!(offsets[&("t".to_string(), 1)], Offset::Offset(42));
    }

    #[test]
    fn the_gap_is_what_retention_deleted_after_the_lake_position() {
        assert_eq!(gap(Some(41), 42), 0, "the next offset is the oldest left");
        assert_eq!(gap(Some(41), 0), 0, "nothing deleted");
        assert_eq!(gap(Some(41), 100), 58, "offsets 42..=99 are gone");
        assert_eq!(gap(None, 100), 0, "no position: nothing was skipped");
        assert_eq!(gap(Some(-1), 10), 10);
        assert_eq!(gap(Some(i64::MAX), i64::MIN), 0, "no overflow");
        assert_eq!(gap(Some(i64::MIN), i64::MAX), i64::MAX, "saturates");
    }
}
