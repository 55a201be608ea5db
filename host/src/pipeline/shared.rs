//! One lake, several instances: every instance runs the ingest tier (bronze
//! commits are fenced by Delta app transactions, see `ingest.rs`, so they
//! need no lock), and the instance holding the refine role (its source was
//! given the partition that carries it, see `sources/shared.rs`) runs silver
//! and gold over every instance's bronze batches, following `bronze_events`
//! in the lake by batch id.
//!
//! Taking the role claims the next leader epoch in `pipeline_batches` and
//! reopens the pipeline from the lake under it (host state rebuilt, what a
//! previous leader left unrefined finished). Every refine commit carries the
//! epoch, so a replaced leader that has not noticed yet (stopped, or cut off
//! from the broker) is refused by Delta instead of folding a step twice.

use std::time::Duration;

use deltalake::datafusion::prelude::SessionContext;
use tokio::sync::{Semaphore, mpsc, watch};

use super::runner::{Controller, Trigger, next_control, refine_all, spawn_ingest};
use super::{BATCHES_TABLE, BatchReport, Committed, Pipeline, STAGE_BRONZE};
use crate::lake::{Lake, LakeError, LakeTable, Marks};
use crate::layers::bronze;
use crate::layers::silver::TimeBounds;
use crate::sources::Envelope;

/// How often the leader looks for bronze batches other instances committed.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// The pause before trying again to take the refine role after another
/// instance's claim won.
const RETAKE_AFTER: Duration = Duration::from_secs(1);
/// The app id of the refine role's epoch, claimed in `pipeline_batches`;
/// each tier's refine commits carry it as `<LEADER_APP>/<tier>`.
pub const LEADER_APP: &str = "sluice-leader";
/// The fence parts of the two refine tiers (their quarantine commits may
/// run concurrently, so they must not share an app id).
pub(super) const SILVER_PART: &str = "silver";
pub(super) const GOLD_PART: &str = "gold";

/// What a pipeline needs to share its lake.
pub struct SharedLake {
    /// The lake as every instance opens it (no epoch).
    pub lake: Lake,
    pub bounds: TimeBounds,
    /// True while this instance's source holds the refine role.
    pub lead: watch::Receiver<bool>,
    /// This instance's id: its bronze writer id, and the holder named when
    /// it claims the refine role.
    pub instance: String,
    /// Whether this instance runs silver and gold now.
    pub leading: bool,
    /// The leader epoch this instance claimed last, if any.
    pub epoch: Option<i64>,
}

/// Whether `e` says another instance took the refine role meanwhile.
fn replaced(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<LakeError>()
            .is_some_and(LakeError::is_fenced)
    })
}

/// Claims the next leader epoch and reopens `pipeline` from the lake under
/// it: tier positions, dedup, watermarks and SCD2 state as the lake holds
/// them, and a previous leader's unrefined batches refined. Keeps this
/// instance's plugin state, totals and ingest tier.
pub(super) async fn take_over(pipeline: &mut Pipeline) -> anyhow::Result<()> {
    let shared = pipeline.shared.take();
    let (lake, bounds, instance) = match &shared {
        Some(s) => (s.lake.clone(), s.bounds, s.instance.clone()),
        None => anyhow::bail!("not a shared lake"),
    };
    let taken = async {
        let fence = lake
            .claim_epoch(BATCHES_TABLE, LEADER_APP, &instance, &[GOLD_PART])
            .await?;
        tracing::info!(
            epoch = fence.epoch,
            "took the refine role: running silver and gold"
        );
        let epoch = fence.epoch;
        let fenced = lake.fenced(fence);
        let fresh = Pipeline::open_tables(&fenced, pipeline.slots.plugins(), bounds).await?;
        Ok::<_, anyhow::Error>((fresh, epoch))
    }
    .await;
    let (mut fresh, epoch) = match taken {
        Ok(taken) => taken,
        Err(e) => {
            pipeline.shared = shared;
            return Err(e);
        }
    };
    // The ingest tier (on its own task now) keeps its ids and marks.
    fresh.slots = pipeline.slots.clone();
    fresh.ingest = pipeline.ingest.take();
    fresh.totals = std::mem::take(&mut pipeline.totals);
    fresh.positions = std::mem::take(&mut pipeline.positions);
    fresh.shared = shared.map(|s| SharedLake {
        leading: true,
        epoch: Some(epoch),
        ..s
    });
    let recovered = super::recovery::recover(&mut fresh).await;
    *pipeline = fresh;
    recovered
}

/// Sends every bronze batch committed from `next` on (by any instance), one
/// `Committed` per batch id, gaps included (a batch quarantined whole, or
/// an id given back), polling every [`FOLLOW_EVERY`]; after `ingest_done`
/// turns true, once more, then returns. Returns at once when the refine
/// role moves away (`lead` false) before `stop`: after `stop`, the role is
/// given up as the source closes, and the batches of the drain are still
/// refined here.
pub(super) async fn follow_bronze(
    mut bronze: LakeTable,
    mut next: i64,
    tx: mpsc::UnboundedSender<(Committed, u32)>,
    mut ingest_done: watch::Receiver<bool>,
    (mut lead, stop): (watch::Receiver<bool>, watch::Receiver<bool>),
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
        if last_poll || !*lead.borrow_and_update() && !*stop.borrow() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = ingest_done.changed() => {}
            _ = changed(&mut lead) => {}
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

/// Resolves when `rx` changes; never if its sender is gone.
async fn changed(rx: &mut watch::Receiver<bool>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A shared lake: the ingest tier runs on its own task as always (its
/// producers acknowledged at its bronze commits), and silver and gold run
/// only while this instance holds the refine role, over every instance's
/// bronze batches as the lake holds them; as often as the role comes back.
pub(super) async fn run_shared(
    pipeline: &mut Pipeline,
    rx: mpsc::Receiver<Envelope>,
    trigger: Trigger,
    stop: watch::Receiver<bool>,
    mut controller: Option<Controller>,
    mut on_batch: impl FnMut(&BatchReport),
) -> anyhow::Result<()> {
    let (ingest_task, mut bronze_rx, ahead) = spawn_ingest(pipeline, rx, trigger, stop.clone())?;
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
    let mut retake = false;
    loop {
        let lead = retake || wait_for_lead(pipeline, &mut controller, ingest_done.clone()).await?;
        // Done without the role: yet if this instance's epoch is still the
        // newest (the commit it lost was a stale leader's, and the role
        // went with its closing source), nobody else will refine the
        // drain, so it takes the role once more for that.
        if !lead && !holds_newest_epoch(pipeline).await? {
            break;
        }
        let refined = async {
            take_over(pipeline).await?;
            // A replay this instance's registry says a crash cut short is
            // finished by its next leadership, as by a single instance's
            // next start.
            if let Some(c) = controller.as_mut() {
                c.lifecycle.finish_pending_replay(pipeline).await?;
            }
            let signals = (ingest_done.clone(), stop.clone());
            lead_refining(pipeline, &mut controller, &mut on_batch, trigger, signals).await
        }
        .await;
        pipeline.stop_leading();
        retake = false;
        match refined {
            Ok(()) => tracing::info!("silver and gold stopped here"),
            Err(e) if replaced(&e) => {
                tracing::warn!("another instance took the refine role: {e:#}");
                // While stopping, the role goes with the closing source: if
                // the commit that won was a stale leader's, take it again.
                retake = *stop.borrow() && holds_newest_epoch(pipeline).await?;
                tokio::time::sleep(RETAKE_AFTER).await;
            }
            Err(e) => {
                ingest_task.abort();
                return Err(e);
            }
        }
        if *ingest_done.borrow() && !retake {
            break;
        }
    }
    pipeline.put_ingest(ingest_task.await??);
    Ok(())
}

/// Whether the newest leader epoch claimed on the lake is this instance's.
async fn holds_newest_epoch(pipeline: &Pipeline) -> anyhow::Result<bool> {
    let Some(shared) = &pipeline.shared else {
        return Ok(false);
    };
    let newest = shared.lake.claimed_epoch(BATCHES_TABLE, LEADER_APP).await?;
    Ok(shared.epoch == Some(newest))
}

/// Waits until this instance holds the refine role (true) or its ingest
/// tier is done (false), applying plugin controls meanwhile; replays are
/// refused (only the leader refines).
async fn wait_for_lead(
    pipeline: &mut Pipeline,
    controller: &mut Option<Controller>,
    mut ingest_done: watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let mut lead = pipeline.lead_signal()?;
    loop {
        if *lead.borrow_and_update() {
            return Ok(true);
        }
        if *ingest_done.borrow_and_update() {
            return Ok(false);
        }
        tokio::select! {
            control = next_control(controller) => {
                if let Some(c) = controller.as_mut() {
                    c.lifecycle.handle(pipeline, control).await;
                }
            }
            _ = changed(&mut lead) => {}
            _ = ingest_done.changed() => {}
        }
    }
}

/// Silver and gold over the lake's bronze batches until the ingest tier is
/// done and they have caught up, or the refine role moves away.
async fn lead_refining(
    pipeline: &mut Pipeline,
    controller: &mut Option<Controller>,
    on_batch: &mut impl FnMut(&BatchReport),
    trigger: Trigger,
    (ingest_done, stop): (watch::Receiver<bool>, watch::Receiver<bool>),
) -> anyhow::Result<()> {
    let (follow_tx, follow_rx) = mpsc::unbounded_channel();
    let follower = tokio::spawn(follow_bronze(
        pipeline.bronze_handle().await?,
        pipeline.silver.next_batch,
        follow_tx,
        ingest_done,
        (pipeline.lead_signal()?, stop),
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
