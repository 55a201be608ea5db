//! One lake, several instances: every instance runs the ingest tier (bronze
//! commits are fenced by Delta app transactions, see `ingest.rs`, so they
//! need no lock), and the one instance holding the cluster's refine claim
//! runs silver and gold over every instance's bronze batches, following
//! `bronze_events` in the lake by batch id. Taking the claim reopens the
//! pipeline from the lake: host state is rebuilt and what a previous
//! leader left unrefined is finished.

use std::time::Duration;

use deltalake::datafusion::prelude::SessionContext;
use tokio::sync::{mpsc, watch};

use super::{Committed, Pipeline, STAGE_BRONZE};
use crate::cluster::{Claim, Cluster};
use crate::lake::{Lake, LakeTable, Marks};
use crate::layers::bronze;
use crate::layers::silver::TimeBounds;

/// How often the leader looks for bronze batches other instances committed.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// What a pipeline needs to share its lake.
pub struct SharedLake {
    pub lake: Lake,
    pub bounds: TimeBounds,
    pub cluster: Cluster,
    /// The refine claim, if this instance took it when it opened the
    /// pipeline (which then recovered the lake already).
    pub lead: Option<Claim>,
    /// Whether this instance holds the refine claim.
    pub leading: bool,
}

/// Reopens `pipeline` from the lake as the new leader: tier positions,
/// dedup, watermarks and SCD2 state as the lake holds them, and a previous
/// leader's unrefined batches refined. Keeps this instance's plugin state,
/// totals and ingest tier.
pub(super) async fn take_over(pipeline: &mut Pipeline) -> anyhow::Result<()> {
    let shared = pipeline.shared.take();
    let (lake, bounds) = match &shared {
        Some(s) => (s.lake.clone(), s.bounds),
        None => anyhow::bail!("not a shared lake"),
    };
    let mut fresh = Pipeline::open_tables(&lake, pipeline.slots.plugins(), bounds).await?;
    // The ingest tier (on its own task now) keeps its ids and marks.
    fresh.slots = pipeline.slots.clone();
    fresh.ingest = pipeline.ingest.take();
    fresh.totals = std::mem::take(&mut pipeline.totals);
    fresh.positions = std::mem::take(&mut pipeline.positions);
    fresh.shared = shared.map(|s| SharedLake { leading: true, ..s });
    super::recovery::recover(&mut fresh).await?;
    *pipeline = fresh;
    Ok(())
}

/// Sends every bronze batch committed from `next` on (by any instance), one
/// `Committed` per batch id, gaps included (a batch quarantined whole, or
/// an id given back), polling every [`FOLLOW_EVERY`]; after `ingest_done`
/// turns true, once more, then returns.
pub(super) async fn follow_bronze(
    mut bronze: LakeTable,
    mut next: i64,
    tx: mpsc::UnboundedSender<(Committed, u32)>,
    mut ingest_done: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut marks = Marks::new();
    marks.insert(
        STAGE_BRONZE.to_string(),
        bronze.committed(STAGE_BRONZE).await?.unwrap_or(0),
    );
    loop {
        let last_poll = *ingest_done.borrow_and_update();
        bronze.catch_up(&mut marks).await?;
        let last = marks.get(STAGE_BRONZE).copied().unwrap_or(0);
        if last >= next {
            for committed in batches(&bronze, next, last).await? {
                if tx.send((committed, 0)).is_err() {
                    return Ok(());
                }
            }
            next = last + 1;
        }
        if last_poll {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = ingest_done.changed() => {}
        }
    }
}

/// Bronze batches `first..=last` read from the lake, one per id.
async fn batches(bronze: &LakeTable, first: i64, last: i64) -> anyhow::Result<Vec<Committed>> {
    let ctx = SessionContext::new();
    crate::lake::register(&ctx, bronze::TABLE, bronze.delta()).await?;
    let rows = super::recovery::bronze_batches(&ctx, first, last, bronze.schema()).await?;
    let now = crate::time::now_micros();
    let mut out = Vec::with_capacity((last - first + 1) as usize);
    for batch in first..=last {
        let rows = super::recovery::rows_between(&rows, batch, batch)?;
        let ingest_micros = bronze::RawColumns::new(&rows)
            .ok()
            .and_then(|c| (0..c.len()).filter_map(|i| c.ingest_time(i)).min())
            .unwrap_or(now);
        out.push(Committed {
            batch,
            events: rows.num_rows(),
            rows,
            bronze_failure: None,
            ingest_micros,
        });
    }
    Ok(out)
}

/// A fresh handle on bronze for the follower.
pub(super) async fn bronze_handle(pipeline: &Pipeline) -> anyhow::Result<LakeTable> {
    Ok(pipeline.lake.reopen(&pipeline.silver.bronze).await?)
}
