//! Partitions shared with other `sluice run` instances through the broker:
//! the topic is subscribed in the consumer group (`kafka.group`) with
//! cooperative-sticky assignment; a partition assigned here resumes at the
//! lake's position + 1, and one revoked is sent no further. The instance
//! assigned partition 0 holds the refine role.
//!
//! Exactly-once does not rest on the broker: bronze commits are fenced per
//! partition (`pipeline/ingest.rs`), so an owner that has not yet noticed a
//! partition moved, or a new owner starting from a position the old one
//! then moves past, still stores each record once; what was sent before a
//! revocation is committed (or dropped by the fence) as usual.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::{Durable, SOURCE, partition_id, partition_name};
use crate::sources::RawRecord;
use crate::sources::shared::Sharing;

/// The partitions whose records the fetch loop may send: those assigned to
/// this instance now. Records of a partition revoked while they waited in
/// the consumer's queue are dropped, not sent.
pub(super) type Flow = Arc<Mutex<BTreeSet<i32>>>;

/// Keeps the records of partitions in `flow`.
pub(super) fn admit(flow: &Flow, mut records: Vec<RawRecord>) -> Vec<RawRecord> {
    let open = flow.lock().expect("flow");
    records.retain(|r| open.contains(&partition_id(&r.partition)));
    records
}

/// The consumer's context: in a group, it turns assignments into lake
/// positions, open partitions and the refine role.
pub struct GroupContext {
    group: Option<Group>,
}

/// What the rebalance callbacks work with.
pub(super) struct Group {
    pub topic: String,
    pub sharing: Arc<Sharing>,
    pub flow: Flow,
    pub durable: Durable,
    /// Partitions just assigned, to look for retention gaps off the
    /// consumer's thread.
    pub assigned: mpsc::UnboundedSender<Vec<(i32, Option<i64>)>>,
}

impl GroupContext {
    /// A consumer assigned by hand: no rebalance ever reaches it.
    pub(super) fn by_hand() -> Self {
        GroupContext { group: None }
    }

    pub(super) fn in_group(group: Group) -> Self {
        GroupContext { group: Some(group) }
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let Some(group) = &self.group else { return };
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let done = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                group.assigning(tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                group.revoking(&ids_of(tpl), consumer.assignment_lost());
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::warn!(
                    topic = group.topic,
                    "kafka rebalance failed: {other:?}; giving up the assignment"
                );
                let all: Vec<i32> = group.flow.lock().expect("flow").iter().copied().collect();
                group.revoking(&all, true);
                consumer.unassign()
            }
        };
        if let Err(e) = done {
            tracing::error!(topic = group.topic, "applying a kafka rebalance: {e}");
        }
    }
}

fn ids_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl Group {
    /// Sets each newly assigned partition's offset to the lake's position
    /// + 1 (the beginning if it has none) and opens it.
    fn assigning(&self, tpl: &mut TopicPartitionList) {
        let ids = ids_of(tpl);
        if ids.is_empty() {
            // Cooperative rebalances end with an empty increment.
            return;
        }
        let mut resumed = Vec::with_capacity(ids.len());
        for &id in &ids {
            let done = self
                .sharing
                .positions
                .get(SOURCE, &partition_name(&self.topic, id));
            let offset = done.map_or(Offset::Beginning, |d| Offset::Offset(d + 1));
            if let Err(e) = tpl.set_partition_offset(&self.topic, id, offset) {
                tracing::error!(
                    topic = self.topic,
                    partition = id,
                    "setting the start offset: {e}"
                );
            }
            self.durable
                .lock()
                .expect("lag map")
                .insert(id, done.map_or(0, |d| d + 1));
            resumed.push((id, done));
        }
        let owned = {
            let mut open = self.flow.lock().expect("flow");
            open.extend(&ids);
            open.len()
        };
        if ids.contains(&0) {
            self.sharing.lead.send_replace(true);
        }
        tracing::info!(topic = self.topic, assigned = ?ids, owned, "kafka partitions assigned; resuming at the lake's positions");
        let _ = self.assigned.send(resumed);
    }

    /// Stops sending `ids`; what was sent from them is still committed.
    fn revoking(&self, ids: &[i32], lost: bool) {
        let owned = {
            let mut open = self.flow.lock().expect("flow");
            for id in ids {
                open.remove(id);
            }
            open.len()
        };
        let mut durable = self.durable.lock().expect("lag map");
        for &id in ids {
            durable.remove(&id);
            crate::metrics::forget_lag(SOURCE, &partition_name(&self.topic, id));
        }
        if ids.contains(&0) {
            self.sharing.lead.send_replace(false);
        }
        tracing::info!(topic = self.topic, revoked = ?ids, owned, lost, "kafka partitions revoked");
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
    fn only_records_of_partitions_assigned_now_are_sent() {
        let flow = Flow::default();
        flow.lock().unwrap().extend([0, 1]);
        let sent = admit(&flow, vec![record(0, 5), record(1, 9), record(2, 6)]);
        assert_eq!(sent.len(), 2, "partition 2 is not assigned here");
        flow.lock().unwrap().remove(&0);
        let sent = admit(&flow, vec![record(0, 7), record(1, 10)]);
        assert_eq!(sent.len(), 1, "partition 0 was revoked");
        assert_eq!(sent[0].offset, 10);
    }
}
