//! Azure Event Hubs source over AMQP (`azure_messaging_eventhubs`): reads
//! partitions from the lake's positions, sends what arrives, and writes blob
//! checkpoints after each bronze commit; ownership is shared through blobs.
//!
//! As with the Kafka source, the lake is the source of truth: a partition is
//! (re)opened after the sequence number bronze holds for `<hub>/<id>`, and
//! the checkpoint blobs are written only after the bronze commit, so the
//! Event Hubs tools see the group's progress. With a checkpoint store,
//! instances balance partitions as the Event Hubs processor does: ownership
//! blobs claimed with ETag-conditional writes, renewed, and taken over once
//! stale; each receiver opens with an owner level (epoch), so the hub itself
//! disconnects an older reader of a partition that changed hands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azure_messaging_eventhubs::models::{Checkpoint, ReceivedEventData};
use azure_messaging_eventhubs::{
    CheckpointStore, ConsumerClient, OpenReceiverOptions, StartLocation, StartPosition,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use super::blob_checkpoints::BlobCheckpointStore;
use super::shared::Sharing;
use super::{Envelope, Positions, RawRecord, SourceContext};

mod config;
mod lag;
mod ownership;

pub use config::{Auth, EventHubsConfig, namespace_of};
pub use lag::{PartitionLag, partition_lags};
pub use ownership::{PartitionOwner, Scope, claim_round, owners, relinquish};

pub const SOURCE: &str = "eventhubs";

/// How long a partition waits for more events before sending what it has.
const LINGER: Duration = Duration::from_millis(20);
/// Pause between ownership rounds while below the fair share.
const CLAIM_AGAIN: Duration = Duration::from_secs(1);
/// Longest pause between retries while the hub is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Picks rustls' crypto provider for the process. Needed because the build
/// enables both `ring` (reqwest, object_store) and `aws-lc-rs` (the AMQP
/// stack's rustls defaults), and rustls then refuses to guess, panicking on
/// the first TLS connection. Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The lake's partition name of partition `id` of `hub`.
pub fn partition_name(hub: &str, id: &str) -> String {
    format!("{hub}/{id}")
}

/// Where to open partition `id`: after the lake's sequence number, or at
/// the earliest event the hub retains.
pub fn start_position(hub: &str, id: &str, positions: &Positions) -> StartPosition {
    start_after(
        positions
            .get(&(SOURCE.to_string(), partition_name(hub, id)))
            .copied(),
    )
}

/// Where to open a partition whose last sequence number in the lake is
/// `done` (none: at the earliest event the hub retains).
fn start_after(done: Option<i64>) -> StartPosition {
    match done {
        Some(done) => StartPosition {
            location: StartLocation::SequenceNumber(done),
            inclusive: false,
        },
        None => StartPosition {
            location: StartLocation::Earliest,
            inclusive: false,
        },
    }
}

/// The shared state of one running source.
struct Ctx {
    config: EventHubsConfig,
    namespace: String,
    client: ConsumerClient,
    store: Option<BlobCheckpointStore>,
    chunk: usize,
    tx: mpsc::Sender<Envelope>,
    stop: watch::Receiver<bool>,
    /// Last sequence number durable in bronze, per partition read here.
    durable: lag::Durable,
    /// Tasks waiting for a bronze commit, so ownership is handed back only
    /// once nothing this instance sent can still be committed.
    unacked: tokio_util::task::TaskTracker,
}

/// Consumes the hub until `stop`: every partition from `positions` without a
/// checkpoint store; with one, the partitions this instance owns, each from
/// the lake's position at claim time (followed through `sharing`, if the
/// lake is shared; its owner of the first partition holds the refine role).
pub async fn run(
    config: EventHubsConfig,
    ctx: SourceContext,
    sharing: Option<Arc<Sharing>>,
) -> anyhow::Result<()> {
    let SourceContext {
        positions,
        chunk,
        tx,
        stop,
    } = ctx;
    install_tls_provider();
    let namespace = config.namespace()?;
    let store = match config.store_location() {
        Some(location) => {
            BlobCheckpointStore::ensure_container(&location).await?;
            Some(BlobCheckpointStore::new(&location)?)
        }
        None => None,
    };
    let client = config.consumer().await?;
    let ids = client
        .get_eventhub_properties()
        .await
        .map_err(|e| anyhow::anyhow!("reading Event Hub {}: {e}", config.hub))?
        .partition_ids;
    let ctx = Arc::new(Ctx {
        config,
        namespace,
        client,
        store,
        chunk,
        tx,
        stop,
        durable: Default::default(),
        unacked: Default::default(),
    });
    tokio::spawn(lag::report(ctx.clone()));
    tracing::info!(
        hub = ctx.config.hub,
        partitions = ids.len(),
        "event hubs source"
    );
    if ctx.store.is_none() {
        let tasks: Vec<_> = ids
            .iter()
            .map(|id| {
                let start = start_position(&ctx.config.hub, id, &positions);
                tokio::spawn(read_partition(ctx.clone(), id.clone(), start, None))
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        return Ok(());
    }
    balance(ctx, ids, positions, sharing).await
}

/// The ownership loop: renews this instance's claims, claims free or stale
/// partitions up to a fair share, and stops readers of partitions it lost.
async fn balance(
    ctx: Arc<Ctx>,
    ids: Vec<String>,
    positions: Positions,
    sharing: Option<Arc<Sharing>>,
) -> anyhow::Result<()> {
    let store = ctx.store.clone().expect("a checkpoint store");
    let owner = sharing.as_ref().map_or_else(
        || uuid::Uuid::new_v4().simple().to_string(),
        |s| s.instance.clone(),
    );
    let expiry = Duration::from_secs(ctx.config.ownership_expiry_secs);
    let mut readers: BTreeMap<String, (watch::Sender<bool>, tokio::task::JoinHandle<_>)> =
        BTreeMap::new();
    let scope = Scope::of(&ctx.config, &ctx.namespace);
    let mut stop = ctx.stop.clone();
    loop {
        let (owned, share) = match claim_round(&store, &scope, &owner, &ids, expiry).await {
            Ok(round) => (round.owned, round.share),
            Err(e) => {
                tracing::warn!("event hubs ownership round failed ({e}); retrying");
                (readers.keys().cloned().collect(), 0)
            }
        };
        readers.retain(|id, (lost, _)| {
            let keep = owned.contains(id);
            if !keep {
                tracing::info!(partition = id, "ownership lost; stopping its reader");
                let _ = lost.send(true);
            }
            keep
        });
        if let (Some(sharing), Some(first)) = (&sharing, ids.first()) {
            let leads = owned.contains(first);
            sharing
                .lead
                .send_if_modified(|held| std::mem::replace(held, leads) != leads);
        }
        if !owned.iter().all(|id| readers.contains_key(id))
            && let Some(sharing) = &sharing
            && let Err(e) = sharing.positions.refresh().await
        {
            tracing::warn!("reading the lake's positions failed ({e:#}); resuming from older ones");
        }
        let new: Vec<String> = owned
            .iter()
            .filter(|id| !readers.contains_key(*id))
            .cloned()
            .collect();
        for id in &new {
            let start = match &sharing {
                Some(sharing) => start_after(
                    sharing
                        .positions
                        .get(SOURCE, &partition_name(&ctx.config.hub, id)),
                ),
                None => start_position(&ctx.config.hub, id, &positions),
            };
            let (lost_tx, lost_rx) = watch::channel(false);
            let task = tokio::spawn(read_partition(
                ctx.clone(),
                id.clone(),
                start,
                Some(lost_rx),
            ));
            readers.insert(id.clone(), (lost_tx, task));
        }
        tokio::select! {
            _ = stopped(&mut stop) => break,
            // Below its share an instance looks again soon; else it renews.
            _ = tokio::time::sleep(if readers.len() < share {
                CLAIM_AGAIN
            } else {
                expiry / 3
            }) => {}
        }
    }
    if let Some(sharing) = &sharing {
        sharing.lead.send_replace(false);
    }
    for (_, (_, task)) in readers {
        task.await??;
    }
    // The pipeline commits or drops what is buffered as it stops; after
    // that nothing read here can reach bronze, and another instance may
    // resume the partitions from the lake at once.
    ctx.unacked.close();
    ctx.unacked.wait().await;
    match relinquish(&store, &scope, &owner).await {
        Ok(n) => tracing::info!(partitions = n, "event hubs ownership handed back"),
        Err(e) => tracing::warn!("handing back event hubs ownership ({e}); others wait for expiry"),
    }
    Ok(())
}

/// Reads partition `id` from `start` until `stop` or `lost`, reconnecting
/// with backoff after errors (from the last event sent, so nothing is skipped
/// or repeated).
async fn read_partition(
    ctx: Arc<Ctx>,
    id: String,
    mut start: StartPosition,
    mut lost: Option<watch::Receiver<bool>>,
) -> anyhow::Result<()> {
    let source: Arc<str> = Arc::from(SOURCE);
    let name: Arc<str> = Arc::from(partition_name(&ctx.config.hub, &id).as_str());
    let mut stop = ctx.stop.clone();
    let mut backoff = Duration::from_millis(100);
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    loop {
        let options = OpenReceiverOptions {
            // A newer owner's epoch makes the hub drop an older reader.
            owner_level: lost.as_ref().map(|_| epoch),
            start_position: Some(start.clone()),
            receive_timeout: None,
            prefetch: Some((ctx.chunk as u32).clamp(100, 2_000)),
        };
        let result = async {
            let receiver = ctx
                .client
                .open_receiver_on_partition(id.clone(), Some(options))
                .await?;
            let mut events = Box::pin(receiver.stream_events());
            loop {
                let first = tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => return Ok(true),
                    _ = lost_signal(&mut lost) => return Ok(true),
                    first = events.next() => first,
                };
                let Some(first) = first else { return Ok(false) };
                let mut batch = vec![first?];
                while batch.len() < ctx.chunk {
                    match tokio::time::timeout(LINGER, events.next()).await {
                        Ok(Some(Ok(event))) => batch.push(event),
                        _ => break,
                    }
                }
                backoff = Duration::from_millis(100);
                let Some(last) = send(&ctx, &id, &source, &name, batch).await else {
                    return Ok(true);
                };
                start = StartPosition {
                    location: StartLocation::SequenceNumber(last),
                    inclusive: false,
                };
            }
        }
        .await;
        match result {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                let e: azure_messaging_eventhubs::EventHubsError = e;
                tracing::warn!(partition = id, "event hubs receive failed ({e}); retrying");
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => return Ok(()),
            _ = lost_signal(&mut lost) => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sends `events` as one envelope and checkpoints once bronze holds them.
/// Returns the last sequence number sent, or `None` if the pipeline is gone.
async fn send(
    ctx: &Arc<Ctx>,
    id: &str,
    source: &Arc<str>,
    name: &Arc<str>,
    events: Vec<ReceivedEventData>,
) -> Option<i64> {
    let records: Vec<RawRecord> = events
        .iter()
        .map(|e| RawRecord {
            // An empty body still goes to bronze and on to quarantine.
            payload: Bytes::copy_from_slice(e.event_data().body().unwrap_or_default()),
            source: source.clone(),
            partition: name.clone(),
            offset: e.sequence_number().unwrap_or_default(),
        })
        .collect();
    let last = records.iter().map(|r| r.offset).max()?;
    let last_offset = events.last().and_then(|e| e.offset().clone());
    let (ack, acked) = oneshot::channel();
    let envelope = Envelope {
        records,
        ack: Some(ack),
    };
    ctx.tx.send(envelope).await.ok()?;
    let checkpoint = Checkpoint {
        fully_qualified_namespace: ctx.namespace.clone(),
        event_hub_name: ctx.config.hub.clone(),
        consumer_group: ctx.config.consumer_group.clone(),
        partition_id: id.to_string(),
        offset: last_offset,
        sequence_number: Some(last),
    };
    ctx.unacked
        .spawn(when_durable(ctx.clone(), checkpoint, acked));
    Some(last)
}

/// After the bronze commit: notes the partition's durable position (for
/// lag) and writes the checkpoint blob, if there is a store. Checkpoint
/// failures only make the hub's lag view stale: logged, not fatal.
async fn when_durable(
    ctx: Arc<Ctx>,
    checkpoint: Checkpoint,
    acked: oneshot::Receiver<Result<(), String>>,
) {
    let Ok(Ok(())) = acked.await else { return };
    if let Some(seq) = checkpoint.sequence_number {
        ctx.durable
            .lock()
            .expect("lag map")
            .insert(checkpoint.partition_id.clone(), seq);
    }
    let Some(store) = &ctx.store else { return };
    if let Err(e) = store.update_checkpoint(checkpoint).await {
        tracing::debug!("writing an event hubs checkpoint for lag visibility: {e}");
    }
}

/// Resolves once `stop` turns true; never if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once the partition's ownership is lost; never without sharing.
async fn lost_signal(lost: &mut Option<watch::Receiver<bool>>) {
    match lost {
        Some(lost) => stopped(lost).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_after_the_lake_position_or_from_the_earliest() {
        let mut positions = Positions::new();
        positions.insert((SOURCE.into(), partition_name("h", "1")), 41);
        let p1 = start_position("h", "1", &positions);
        assert!(matches!(p1.location, StartLocation::SequenceNumber(41)));
        assert!(!p1.inclusive, "after the committed event");
        let p0 = start_position("h", "0", &positions);
        assert!(matches!(p0.location, StartLocation::Earliest));
        assert_eq!(
            namespace_of("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=x").as_deref(),
            Some("ns.servicebus.windows.net")
        );
        assert_eq!(namespace_of("SharedAccessKey=x"), None);
    }
}
