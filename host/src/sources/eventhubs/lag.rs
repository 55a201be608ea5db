//! Event Hubs lag: events a partition holds after what is durable in bronze,
//! from the hub's partition properties. Reported by a running source (metric
//! and log line) and by `sluice status`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_messaging_eventhubs::ConsumerClient;
use azure_messaging_eventhubs::models::EventHubPartitionProperties;

use super::{Ctx, SOURCE, partition_name, stopped};
use crate::sources::Positions;

/// Last durable sequence number per partition id, kept by the readers.
pub(super) type Durable = Arc<Mutex<BTreeMap<String, i64>>>;

/// One partition's position in the lake against the hub's newest event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub id: String,
    /// Sequence number of the last event durable in bronze.
    pub committed: Option<i64>,
    /// Sequence number of the newest event the hub holds.
    pub last_enqueued: i64,
    pub lag: i64,
}

/// Events after `committed` (or all retained ones, with nothing committed).
pub fn lag(committed: Option<i64>, props: &EventHubPartitionProperties) -> i64 {
    if props.is_empty {
        return 0;
    }
    let first = committed.map_or(props.beginning_sequence_number, |c| c + 1);
    (props.last_enqueued_sequence_number - first + 1).max(0)
}

/// The lag of every partition of the hub, given the lake's positions.
pub async fn partition_lags(
    client: &ConsumerClient,
    hub: &str,
    positions: &Positions,
) -> anyhow::Result<Vec<PartitionLag>> {
    let ids = client
        .get_eventhub_properties()
        .await
        .map_err(|e| anyhow::anyhow!("reading Event Hub {hub}: {e}"))?
        .partition_ids;
    let mut lags = Vec::with_capacity(ids.len());
    for id in ids {
        let props = client
            .get_partition_properties(&id)
            .await
            .map_err(|e| anyhow::anyhow!("reading partition {id} of {hub}: {e}"))?;
        let committed = positions
            .get(&(SOURCE.to_string(), partition_name(hub, &id)))
            .copied();
        lags.push(PartitionLag {
            lag: lag(committed, &props),
            committed,
            last_enqueued: props.last_enqueued_sequence_number,
            id,
        });
    }
    Ok(lags)
}

/// Every `every`, measures the lag of the partitions this instance has
/// committed from: the `sluice_source_lag_events` gauge and an
/// `event hubs lag` line (target `sluice::metrics`).
pub(super) async fn report(ctx: Arc<Ctx>) {
    let hub = ctx.config.hub.clone();
    let every = Duration::from_millis(ctx.config.lag_report_ms);
    let mut stop = ctx.stop.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(every) => {}
        }
        let owned: Vec<(String, i64)> = ctx
            .durable
            .lock()
            .expect("lag map")
            .iter()
            .map(|(id, seq)| (id.clone(), *seq))
            .collect();
        let mut total = 0;
        for (id, seq) in owned {
            match ctx.client.get_partition_properties(&id).await {
                Ok(props) => {
                    let lag = lag(Some(seq), &props);
                    total += lag;
                    crate::metrics::record_lag(SOURCE, &partition_name(&hub, &id), lag);
                    tracing::info!(target: "sluice::metrics", hub, partition = id, lag, "event hubs lag");
                }
                Err(e) => tracing::debug!(partition = id, "measuring event hubs lag: {e}"),
            }
        }
        tracing::info!(target: "sluice::metrics", hub, total, "event hubs lag total");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(begin: i64, last: i64, is_empty: bool) -> EventHubPartitionProperties {
        EventHubPartitionProperties {
            id: "0".into(),
            eventhub: "h".into(),
            beginning_sequence_number: begin,
            last_enqueued_sequence_number: last,
            last_enqueued_offset: String::new(),
            last_enqueued_time_utc: None,
            is_empty,
        }
    }

    #[test]
    fn lag_counts_events_after_the_committed_one() {
        assert_eq!(lag(Some(41), &props(0, 50, false)), 9);
        assert_eq!(lag(Some(50), &props(0, 50, false)), 0);
        assert_eq!(lag(None, &props(10, 19, false)), 10, "all retained");
        assert_eq!(lag(None, &props(0, -1, true)), 0, "empty partition");
        assert_eq!(lag(Some(60), &props(0, 50, false)), 0, "never negative");
    }
}
