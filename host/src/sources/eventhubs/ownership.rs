//! Partition ownership among the instances reading one hub, as the Event
//! Hubs processor keeps it in the checkpoint store: balanced claim rounds,
//! the hand-back at a graceful stop, and the view `sluice status` prints.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use azure_messaging_eventhubs::CheckpointStore;
use azure_messaging_eventhubs::models::Ownership;

use super::EventHubsConfig;
use crate::sources::blob_checkpoints::{BlobCheckpointStore, expired};

/// Clears `owner`'s ownerships (ETag-conditional, so a partition already
/// taken over is left alone); others may claim them at once. Returns how
/// many were handed back.
pub async fn relinquish(
    store: &BlobCheckpointStore,
    scope: &Scope,
    owner: &str,
) -> azure_core::Result<usize> {
    let current = store
        .list_ownerships(&scope.namespace, &scope.hub, &scope.group)
        .await?;
    let released: Vec<Ownership> = current
        .into_iter()
        .filter(|o| o.owner_id.as_deref() == Some(owner))
        .map(|o| Ownership {
            owner_id: None,
            ..o
        })
        .collect();
    Ok(store.claim_ownership(&released).await?.len())
}

/// Which hub and consumer group ownership is kept for.
pub struct Scope {
    pub namespace: String,
    pub hub: String,
    pub group: String,
}

impl Scope {
    /// The hub and consumer group `config` reads, in `namespace`.
    pub fn of(config: &EventHubsConfig, namespace: &str) -> Scope {
        Scope {
            namespace: namespace.to_string(),
            hub: config.hub.clone(),
            group: config.consumer_group.clone(),
        }
    }
}

/// The outcome of one ownership round.
pub struct Round {
    /// Partitions this instance owns now.
    pub owned: HashSet<String>,
    /// Its fair share among the live owners.
    pub share: usize,
}

/// One ownership round, the Event Hubs processor's balanced strategy: renew
/// what this `owner` holds, then claim at most one free or stale partition
/// while below the fair share (so instances starting together interleave
/// instead of the first taking everything). Live owners are never robbed.
pub async fn claim_round(
    store: &BlobCheckpointStore,
    scope: &Scope,
    owner: &str,
    ids: &[String],
    expiry: Duration,
) -> azure_core::Result<Round> {
    let current = store
        .list_ownerships(&scope.namespace, &scope.hub, &scope.group)
        .await?;
    // A handed-back ownership (no owner) is free like a stale one.
    let live: Vec<&Ownership> = current
        .iter()
        .filter(|o| o.owner_id.is_some() && !expired(o, expiry))
        .collect();
    let mut owners: HashSet<&str> = live.iter().filter_map(|o| o.owner_id.as_deref()).collect();
    owners.insert(owner);
    let share = fair_share(ids.len(), owners.len());
    let mut wanted: Vec<Ownership> = live
        .iter()
        .filter(|o| o.owner_id.as_deref() == Some(owner))
        .map(|o| (*o).clone())
        .collect();
    let taken: HashSet<&str> = live.iter().map(|o| o.partition_id.as_str()).collect();
    let free = ids.iter().find(|id| !taken.contains(id.as_str()));
    if let Some(id) = free.filter(|_| wanted.len() < share) {
        // Free (never claimed) or stale: claim with the blob's ETag, if any,
        // so that of several instances claiming it only one wins.
        let stale = current.iter().find(|o| &o.partition_id == id);
        wanted.push(Ownership {
            fully_qualified_namespace: scope.namespace.clone(),
            event_hub_name: scope.hub.clone(),
            consumer_group: scope.group.clone(),
            partition_id: id.clone(),
            owner_id: Some(owner.to_string()),
            etag: stale.and_then(|o| o.etag.clone()),
            last_modified_time: None,
        });
    }
    let claimed = store.claim_ownership(&wanted).await?;
    Ok(Round {
        owned: claimed.into_iter().map(|o| o.partition_id).collect(),
        share,
    })
}

/// How many of `partitions` one of `owners` instances should read.
fn fair_share(partitions: usize, owners: usize) -> usize {
    partitions.div_ceil(owners.max(1))
}

/// One partition's ownership, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOwner {
    pub partition: String,
    /// The owning instance (its bronze writer id, as `sluice status` lists
    /// the lake's instances); `None` once handed back.
    pub owner: Option<String>,
    /// When the owner last renewed its claim.
    pub renewed: Option<SystemTime>,
    /// Renewed within the expiry: the others leave the partition alone.
    pub live: bool,
}

/// Every partition ever claimed in `scope`, in partition order, with its
/// owner and whether the claim is live under `expiry`.
pub async fn owners(
    store: &BlobCheckpointStore,
    scope: &Scope,
    expiry: Duration,
) -> azure_core::Result<Vec<PartitionOwner>> {
    let mut owners: Vec<PartitionOwner> = store
        .list_ownerships(&scope.namespace, &scope.hub, &scope.group)
        .await?
        .into_iter()
        .map(|o| PartitionOwner {
            live: o.owner_id.is_some() && !expired(&o, expiry),
            renewed: o.last_modified_time.map(SystemTime::from),
            owner: o.owner_id,
            partition: o.partition_id,
        })
        .collect();
    // Event Hubs partition ids are numbers in practice; others sort after.
    owners.sort_by_key(|o| {
        (
            o.partition.parse::<u64>().unwrap_or(u64::MAX),
            o.partition.clone(),
        )
    });
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_owner_reads_its_share_rounded_up() {
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(fair_share(4, 1), 4);
        assert_eq!(fair_share(4, 0), 4, "alone before the first round");
    }
}
