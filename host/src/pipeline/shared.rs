//! One lake, several instances: every instance runs the ingest tier (bronze
//! commits are fenced by Delta app transactions, see `ingest.rs`, so they
//! need no lock), and the one instance holding the cluster's refine claim
//! runs silver and gold over every instance's bronze batches, following
//! `bronze_events` in the lake by batch id. Taking the claim reopens the
//! pipeline from the lake: host state is rebuilt and what a previous
//! leader left unrefined is finished.

use std::time::Duration;

use deltalake::datafusion::prelude::SessionContext;
use tokio::sync::{Semaphore, mpsc, watch};

use super::runner::{Controller, Trigger, next_control, refine_all, spawn_ingest};
use super::{BatchReport, Committed, Pipeline, STAGE_BRONZE};
use crate::cluster::{Claim, Cluster};
use crate::lake::{Lake, LakeTable, Marks};
use crate::layers::bronze;
use crate::layers::silver::TimeBounds;
use crate::sources::Envelope;

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

/// A shared lake: the ingest tier runs on its own task as always (its
/// producers acknowledged at its bronze commits), and silver and gold run
/// only while this instance holds the cluster's refine claim, over every
/// instance's bronze batches as the lake holds them (`shared.rs`). The
/// claim is dropped only once silver and gold have stopped.
pub(super) async fn run_shared(
    pipeline: &mut Pipeline,
    rx: mpsc::Receiver<Envelope>,
    trigger: Trigger,
    stop: watch::Receiver<bool>,
    mut controller: Option<Controller>,
    mut on_batch: impl FnMut(&BatchReport),
) -> anyhow::Result<()> {
    let (ingest_task, mut bronze_rx, ahead) = spawn_ingest(pipeline, rx, trigger, stop)?;
    // The leader reads this instance's batches from the lake like any
    // other's: their permits come back at once.
    let (done_tx, ingest_done) = watch::channel(false);
    let releaser = ahead.clone();
    tokio::spawn(async move {
        while let Some((_, held)) = bronze_rx.recv().await {
            releaser.add_permits(held as usize);
        }
        let _ = done_tx.send(true);
    });
    let lead = match pipeline.shared_lead() {
        Some(claim) => Some(claim),
        None => wait_for_lead(pipeline, &mut controller, ingest_done.clone()).await?,
    };
    if let Some(claim) = lead {
        let refined = lead_refining(
            pipeline,
            &mut controller,
            &mut on_batch,
            trigger,
            ingest_done,
        )
        .await;
        drop(claim);
        if let Err(e) = refined {
            ingest_task.abort();
            return Err(e);
        }
    }
    pipeline.put_ingest(ingest_task.await??);
    Ok(())
}

/// Until this instance takes the refine claim (`Some`, with the pipeline
/// reopened from the lake) or its ingest tier is done (`None`), applies
/// plugin controls; replays are refused (only the leader refines).
async fn wait_for_lead(
    pipeline: &mut Pipeline,
    controller: &mut Option<Controller>,
    mut ingest_done: watch::Receiver<bool>,
) -> anyhow::Result<Option<Claim>> {
    loop {
        if let Some(claim) = pipeline.try_lead()? {
            tracing::info!("took the refine claim: running silver and gold");
            take_over(pipeline).await?;
            return Ok(Some(claim));
        }
        if *ingest_done.borrow_and_update() {
            return Ok(None);
        }
        tokio::select! {
            control = next_control(controller) => {
                if let Some(c) = controller.as_mut() {
                    c.lifecycle.handle(pipeline, control).await;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = ingest_done.changed() => {}
        }
    }
}

/// Silver and gold over the lake's bronze batches until the ingest tier is
/// done and they have caught up.
async fn lead_refining(
    pipeline: &mut Pipeline,
    controller: &mut Option<Controller>,
    on_batch: &mut impl FnMut(&BatchReport),
    trigger: Trigger,
    ingest_done: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (follow_tx, follow_rx) = mpsc::unbounded_channel();
    let follower = tokio::spawn(follow_bronze(
        bronze_handle(pipeline).await?,
        pipeline.silver.next_batch,
        follow_tx,
        ingest_done,
    ));
    // Bronze batches come from the lake, already acknowledged: nothing
    // to hold back.
    let unbounded = Semaphore::new(0);
    let refined = refine_all(
        pipeline, controller, on_batch, &unbounded, trigger, follow_rx,
    )
    .await;
    if refined.is_err() {
        follower.abort();
    }
    refined?;
    follower.await?
}
