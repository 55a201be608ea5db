//! One lake, several instances: each batch is committed under the cluster's
//! writer lock, and a pipeline whose lake moved on (another instance
//! committed) is reopened first, which rebuilds its host state from the lake
//! and finishes any batch a dead instance left half-committed.

use std::path::PathBuf;

use super::{BATCHES_TABLE, IngestTier, Pipeline, STAGE_BRONZE, STAGE_DONE};
use crate::cluster::{Cluster, WriterGuard};
use crate::lake::Lake;
use crate::layers::{bronze, quarantine};

/// What a pipeline needs to reopen itself on a shared lake.
#[derive(Clone)]
pub struct SharedLake {
    pub lake: Lake,
    pub root: PathBuf,
    pub bounds: crate::layers::silver::TimeBounds,
}

/// The highest batch id any instance has started committing to the lake.
async fn last_batch(lake: &Lake) -> anyhow::Result<i64> {
    let mut last = 0;
    for (table, stage) in [
        (BATCHES_TABLE, STAGE_DONE),
        (bronze::TABLE, STAGE_BRONZE),
        (quarantine::TABLE, STAGE_BRONZE),
    ] {
        if let Some(t) = lake.open(table).await? {
            let version = t
                .snapshot()?
                .transaction_version(t.log_store().as_ref(), stage)
                .await?;
            last = last.max(version.unwrap_or(0));
        }
    }
    Ok(last)
}

/// Takes the writer lock; reopens `pipeline` if another instance committed
/// since its last batch. Hold the guard until the batch is done.
pub(super) async fn take_writer(pipeline: &mut Pipeline) -> anyhow::Result<Option<WriterGuard>> {
    let Some(shared) = pipeline.shared.clone() else {
        return Ok(None);
    };
    let guard = Cluster::writer(&shared.root).await?;
    if last_batch(&shared.lake).await? != pipeline.slots.next_bronze() - 1 {
        tracing::debug!("another instance committed: reloading state from the lake");
        let mut fresh =
            Pipeline::open(&shared.lake, pipeline.slots.plugins(), shared.bounds).await?;
        fresh.totals = std::mem::take(&mut pipeline.totals);
        // Plugin lifecycle state belongs to this instance, not to the lake;
        // the ids of new bronze batches follow the lake.
        pipeline.slots.set_next_bronze(fresh.slots.next_bronze());
        fresh.slots = pipeline.slots.clone();
        fresh.ingest = Some(IngestTier::new(
            shared.lake.reopen(&fresh.silver.bronze).await?,
            shared.lake.reopen(&fresh.silver.quarantine).await?,
            fresh.slots.clone(),
        ));
        fresh.shared = Some(shared);
        *pipeline = fresh;
    }
    Ok(Some(guard))
}
