//! Partitions shared with other `sluice run` instances on the same lake:
//! each instance claims its fair share (file-lock claims from
//! `crate::cluster`) and assigns them at the lake's positions; when more
//! instances are live than when it claimed, it hands the excess over.
//!
//! The hand-over keeps exactly-once: the fetch loop stops sending the
//! partition's records (the [`Flow`] gate), the consumer unassigns it, and the
//! claim is released only once everything already sent from it is durable in
//! bronze. The next owner then resumes from the lake's position, which
//! nothing of the old owner's can move any more.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::{Durable, SOURCE, assignment, partition_id, partition_name, stopped};
use crate::sources::RawRecord;

/// How often a sharing instance looks at its share (and how long a fetch
/// waits for a first message).
pub(super) const REBALANCE_EVERY: Duration = Duration::from_secs(1);

/// What the fetch loop has sent per partition, and which partitions it must
/// no longer send because they are being handed over.
#[derive(Debug, Default)]
pub(super) struct Flow {
    /// Offset after the last record sent, per partition id.
    sent: BTreeMap<i32, i64>,
    closed: BTreeSet<i32>,
}

pub(super) type SharedFlow = Arc<Mutex<Flow>>;

/// Drops records of partitions being handed over and notes how far each
/// partition has been sent; atomically, so a hand-over sees every record
/// that may still reach bronze.
pub(super) fn admit(flow: &SharedFlow, mut records: Vec<RawRecord>) -> Vec<RawRecord> {
    let mut flow = flow.lock().expect("flow");
    let Flow { sent, closed } = &mut *flow;
    records.retain(|r| {
        let id = partition_id(&r.partition);
        if closed.contains(&id) {
            return false;
        }
        let next = sent.entry(id).or_default();
        *next = (*next).max(r.offset + 1);
        true
    });
    records
}

/// This instance's claims on the topic's partitions.
pub struct Sharing {
    pub cluster: crate::cluster::Cluster,
    pub lake: crate::lake::Lake,
    claims: BTreeMap<i32, crate::cluster::Claim>,
    /// Partitions being handed over: the offset after the last record sent
    /// (`None`: nothing was sent), which must be durable before release.
    handing_over: BTreeMap<i32, Option<i64>>,
}

impl Sharing {
    pub fn new(cluster: crate::cluster::Cluster, lake: crate::lake::Lake) -> Self {
        Sharing {
            cluster,
            lake,
            claims: BTreeMap::new(),
            handing_over: BTreeMap::new(),
        }
    }

    /// One look: releases finished hand-overs, then moves toward the fair
    /// share, by starting hand-overs of the excess or by claiming free
    /// partitions at the lake's positions.
    async fn rebalance(&mut self, ctx: &Ctx) -> anyhow::Result<()> {
        self.release_handed_over(ctx);
        let members = self.cluster.live_members()?;
        let share = crate::cluster::fair_share(ctx.ids.len(), members);
        let active = self.claims.len() - self.handing_over.len();
        if active > share {
            return self.hand_over(ctx, active - share, members);
        }
        self.claim(ctx, share - active, members).await
    }

    async fn claim(&mut self, ctx: &Ctx, wanted: usize, members: usize) -> anyhow::Result<()> {
        let mut new_claims = BTreeMap::new();
        for &id in &ctx.ids {
            if new_claims.len() >= wanted {
                break;
            }
            if self.claims.contains_key(&id) {
                continue;
            }
            let name = format!("kafka-{}", partition_name(&ctx.topic, id));
            if let Some(claim) = self.cluster.try_claim(&name)? {
                new_claims.insert(id, claim);
            }
        }
        if new_claims.is_empty() {
            return Ok(());
        }
        // On an error the new claims are dropped (released), so the next
        // look tries again instead of holding partitions nobody reads.
        let claimed: Vec<i32> = new_claims.keys().copied().collect();
        let positions = crate::layers::bronze::committed_positions(&self.lake).await?;
        super::report_gaps(&ctx.consumer, &ctx.topic, &claimed, &positions).await;
        ctx.consumer
            .incremental_assign(&assignment(&ctx.topic, &claimed, &positions)?)?;
        self.claims.extend(new_claims);
        tracing::info!(
            topic = ctx.topic,
            ?claimed,
            owned = self.claims.len() - self.handing_over.len(),
            members,
            "claimed partitions"
        );
        Ok(())
    }

    /// Stops fetching and sending `excess` partitions (the highest ids).
    fn hand_over(&mut self, ctx: &Ctx, excess: usize, members: usize) -> anyhow::Result<()> {
        let chosen: Vec<i32> = self
            .claims
            .keys()
            .rev()
            .filter(|id| !self.handing_over.contains_key(id))
            .take(excess)
            .copied()
            .collect();
        let mut list = TopicPartitionList::new();
        for &id in &chosen {
            let sent = {
                let mut flow = ctx.flow.lock().expect("flow");
                flow.closed.insert(id);
                flow.sent.get(&id).copied()
            };
            self.handing_over.insert(id, sent);
            list.add_partition_offset(&ctx.topic, id, Offset::Invalid)?;
        }
        ctx.consumer.incremental_unassign(&list)?;
        tracing::info!(
            topic = ctx.topic,
            ?chosen,
            members,
            "handing partitions over"
        );
        Ok(())
    }

    /// Releases the claims of handed-over partitions whose sent records are
    /// all durable in bronze.
    fn release_handed_over(&mut self, ctx: &Ctx) {
        let durable = ctx.durable.lock().expect("lag map").clone();
        let done: Vec<i32> = self
            .handing_over
            .iter()
            .filter(|(id, sent)| sent.is_none_or(|s| durable.get(id).is_some_and(|d| *d >= s)))
            .map(|(id, _)| *id)
            .collect();
        if done.is_empty() {
            return;
        }
        for id in &done {
            self.handing_over.remove(id);
            self.claims.remove(id);
            let mut flow = ctx.flow.lock().expect("flow");
            flow.closed.remove(id);
            flow.sent.remove(id);
            ctx.durable.lock().expect("lag map").remove(id);
            crate::metrics::forget_lag(SOURCE, &partition_name(&ctx.topic, *id));
        }
        tracing::info!(
            topic = ctx.topic,
            released = ?done,
            owned = self.claims.len() - self.handing_over.len(),
            "handed partitions over"
        );
    }
}

/// What the rebalance loop works with.
pub(super) struct Ctx {
    pub consumer: Arc<StreamConsumer>,
    pub topic: String,
    pub ids: Vec<i32>,
    pub flow: SharedFlow,
    pub durable: Durable,
}

/// Looks at the share every [`REBALANCE_EVERY`] until `stop`, on its own
/// task so that a source blocked by backpressure still takes over a dead
/// instance's partitions at once. Returns the sharing state (with its claims).
pub(super) async fn rebalance_loop(
    mut sharing: Sharing,
    ctx: Ctx,
    mut stop: watch::Receiver<bool>,
) -> Sharing {
    // The first look waits a moment so instances started together all
    // count each other before claiming.
    let mut pause = 2 * REBALANCE_EVERY;
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return sharing,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = REBALANCE_EVERY;
        if let Err(e) = sharing.rebalance(&ctx).await {
            tracing::warn!("rebalancing partitions failed ({e:#}); retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> RawRecord {
        RawRecord {
            payload: bytes::Bytes::new(),
            source: SOURCE.into(),
            partition: partition_name("t", partition).into(),
            offset,
        }
    }

    #[test]
    fn a_closed_partition_sends_nothing_more_and_sent_offsets_are_kept() {
        let flow = SharedFlow::default();
        let sent = admit(&flow, vec![record(0, 5), record(1, 9), record(0, 6)]);
        assert_eq!(sent.len(), 3);
        flow.lock().unwrap().closed.insert(0);
        let sent = admit(&flow, vec![record(0, 7), record(1, 10)]);
        assert_eq!(sent.len(), 1, "partition 0 is being handed over");
        let flow = flow.lock().unwrap();
        assert_eq!(flow.sent.get(&0), Some(&7), "after offset 6");
        assert_eq!(flow.sent.get(&1), Some(&11));
    }
}
