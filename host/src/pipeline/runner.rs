//! Drives the three tiers from a channel of envelopes, each on a task of its
//! own: the ingest tier closes a bronze batch on size, bytes or a short
//! linger, commits it and acknowledges its producers at once; the silver
//! tier (this task) takes every bronze batch committed since its last step;
//! the gold tier takes every silver step committed since its last one, once
//! a batch's worth of events waits or `gold.max_interval_ms` has passed.
//! Plugin changes are applied once silver and gold are idle and caught up.
//! When asked to stop, each tier drains what the one before it committed.
//! On a lake shared with other instances `shared.rs` drives the tiers
//! instead, with the same ingest task and refine loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::gold_tier::GoldTier;
use super::{BatchReport, Committed, IngestTier, Pipeline, SilverCommitted};
use crate::lifecycle::{Control, Lifecycle};
use crate::sources::{Envelope, RawRecord};

/// Bronze batches the ingest tier may be ahead of the gold tier, counted
/// in events as multiples of a batch: beyond this, ingest waits (and with
/// it the sources), so memory stays bounded when gold is slow.
const AHEAD_BATCHES: usize = 4;

/// Plugin changes asked of the running pipeline, and who applies them.
pub struct Controller {
    pub rx: mpsc::Receiver<Control>,
    pub lifecycle: Lifecycle,
}

/// When a bronze batch closes, and when gold takes a step.
#[derive(Debug, Clone, Copy)]
pub struct Trigger {
    pub max_events: usize,
    /// Raw bytes; one envelope larger than this is a batch of its own.
    pub max_bytes: usize,
    /// How long a batch waits for more after its first envelope (the
    /// previous commit is done by then: commits are not held back).
    pub linger: Duration,
    /// How long a committed silver step may wait for gold to take it along
    /// with later ones (gold steps sooner once `max_events` events wait).
    pub gold_interval: Duration,
}

/// A gold step running on its own task: the tier comes back with the result.
type GoldRun = JoinHandle<(GoldTier, anyhow::Result<(BatchReport, usize)>)>;

/// Silver steps committed and not yet in gold, and the gold step running.
#[derive(Default)]
struct GoldQueue {
    waiting: Vec<SilverCommitted>,
    /// Semaphore permits the waiting steps hold (released once in gold).
    permits: usize,
    events: usize,
    since: Option<Instant>,
    running: Option<GoldRun>,
}

impl GoldQueue {
    fn push(&mut self, steps: Vec<SilverCommitted>, permits: usize) {
        self.events += steps.iter().map(|s| s.report.events).sum::<usize>();
        self.permits += permits;
        self.since.get_or_insert_with(Instant::now);
        self.waiting.extend(steps);
    }

    /// Whether a gold step should start now.
    fn due(&self, trigger: Trigger, draining: bool) -> bool {
        self.running.is_none()
            && !self.waiting.is_empty()
            && (draining
                || self.events >= trigger.max_events
                || self
                    .since
                    .is_some_and(|t| t.elapsed() >= trigger.gold_interval))
    }

    /// When the oldest waiting step has waited `gold_interval`.
    fn deadline(&self, trigger: Trigger) -> Option<Instant> {
        match (&self.running, self.since) {
            (None, Some(since)) => Some(since + trigger.gold_interval),
            _ => None,
        }
    }

    fn take(&mut self) -> (Vec<SilverCommitted>, usize) {
        self.events = 0;
        self.since = None;
        (
            std::mem::take(&mut self.waiting),
            std::mem::take(&mut self.permits),
        )
    }
}

/// Processes envelopes until every sender is gone, or until `stop` turns true
/// (then what is already buffered is still processed). Calls `on_batch` after
/// each gold step.
pub async fn run(
    pipeline: &mut Pipeline,
    rx: mpsc::Receiver<Envelope>,
    trigger: Trigger,
    stop: watch::Receiver<bool>,
    mut controller: Option<Controller>,
    mut on_batch: impl FnMut(&BatchReport),
) -> anyhow::Result<()> {
    if pipeline.is_shared() {
        return super::shared::run_shared(pipeline, rx, trigger, stop, controller, on_batch).await;
    }
    let (ingest_task, bronze_rx, ahead) = spawn_ingest(pipeline, rx, trigger, stop)?;
    let refined = refine_all(
        pipeline,
        &mut controller,
        &mut on_batch,
        &ahead,
        trigger,
        bronze_rx,
    )
    .await;
    if let Err(e) = refined {
        // Like a crash of the ingest tier: what it committed is refined at
        // the next start, what it had not is not acknowledged.
        ahead.close();
        ingest_task.abort();
        return Err(e);
    }
    pipeline.put_ingest(ingest_task.await??);
    Ok(())
}

/// Silver and gold over the bronze batches `bronze_rx` brings, until it
/// closes and both have taken everything; gold steps give `ahead` back
/// the permits their batches held.
pub(super) async fn refine_all(
    pipeline: &mut Pipeline,
    controller: &mut Option<Controller>,
    on_batch: &mut impl FnMut(&BatchReport),
    ahead: &Semaphore,
    trigger: Trigger,
    bronze_rx: mpsc::UnboundedReceiver<(Committed, u32)>,
) -> anyhow::Result<()> {
    let mut refine = Refine {
        pipeline,
        controller,
        on_batch,
        ahead,
        gold: GoldQueue::default(),
        trigger,
    };
    refine.run(bronze_rx).await?;
    refine.settle().await
}

/// The ingest tier's task, the bronze batches it commits, and the
/// semaphore that bounds its lead over gold.
pub(super) type IngestRun = (
    JoinHandle<anyhow::Result<IngestTier>>,
    mpsc::UnboundedReceiver<(Committed, u32)>,
    Arc<Semaphore>,
);

/// Moves the ingest tier to a task of its own, fed by `rx`.
pub(super) fn spawn_ingest(
    pipeline: &mut Pipeline,
    rx: mpsc::Receiver<Envelope>,
    trigger: Trigger,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<IngestRun> {
    let Some(ingest) = pipeline.take_ingest() else {
        anyhow::bail!("the ingest tier is already running");
    };
    let ahead = Arc::new(Semaphore::new(trigger.max_events.max(1) * AHEAD_BATCHES));
    let (bronze_tx, bronze_rx) = mpsc::unbounded_channel::<(Committed, u32)>();
    let task = tokio::spawn(ingest_loop(
        ingest,
        rx,
        trigger,
        stop,
        bronze_tx,
        ahead.clone(),
    ));
    Ok((task, bronze_rx, ahead))
}

/// The silver tier's loop (on the runner's task) and the gold steps it
/// starts on tasks of their own.
struct Refine<'a, F: FnMut(&BatchReport)> {
    pipeline: &'a mut Pipeline,
    controller: &'a mut Option<Controller>,
    on_batch: &'a mut F,
    ahead: &'a Semaphore,
    gold: GoldQueue,
    trigger: Trigger,
}

impl<F: FnMut(&BatchReport)> Refine<'_, F> {
    /// Until the ingest tier is done: silver steps as bronze batches come,
    /// gold steps when due, plugin changes when asked.
    async fn run(
        &mut self,
        mut bronze_rx: mpsc::UnboundedReceiver<(Committed, u32)>,
    ) -> anyhow::Result<()> {
        let mut bronze_open = true;
        while bronze_open || !self.gold.waiting.is_empty() || self.gold.running.is_some() {
            let deadline = self.gold.deadline(self.trigger);
            // Controls first: a change waiting at a boundary is applied
            // before the next step starts, even under continuous load.
            tokio::select! {
                biased;
                control = next_control(self.controller) => {
                    self.settle().await?;
                    if let Some(c) = self.controller.as_mut() {
                        c.lifecycle.handle(self.pipeline, control).await;
                    }
                }
                done = join_gold(&mut self.gold.running) => {
                    self.gold.running = None;
                    self.gold_done(done).await?;
                }
                committed = bronze_rx.recv(), if bronze_open => match committed {
                    Some(first) => {
                        let (step, permits) = take_step(first, &mut bronze_rx);
                        let done = self.pipeline.refine_silver(step).await?;
                        self.gold.push(done, permits);
                    }
                    None => bronze_open = false,
                },
                _ = sleep_until(deadline) => {}
            }
            if self.gold.due(self.trigger, !bronze_open) {
                self.start_gold();
            }
        }
        Ok(())
    }

    /// Starts a gold step over every silver step waiting, on a task of its own.
    fn start_gold(&mut self) {
        let Some(mut gold) = self.pipeline.take_gold() else {
            return;
        };
        let slots = self.pipeline.slots.clone();
        let (steps, permits) = self.gold.take();
        self.gold.running = Some(tokio::spawn(async move {
            let result = gold.step(&slots, steps).await;
            (gold, result.map(|report| (report, permits)))
        }));
    }

    /// Waits for the gold step running, then takes every waiting silver
    /// step into gold: silver and gold are idle and at the same batch.
    async fn settle(&mut self) -> anyhow::Result<()> {
        if let Some(running) = self.gold.running.take() {
            self.gold_done(running.await).await?;
        }
        if !self.gold.waiting.is_empty() {
            let (steps, permits) = self.gold.take();
            let slots = self.pipeline.slots.clone();
            let report = self.pipeline.gold_mut()?.step(&slots, steps).await?;
            self.after_gold(&report, permits).await;
        }
        Ok(())
    }

    async fn gold_done(
        &mut self,
        done: Result<(GoldTier, anyhow::Result<(BatchReport, usize)>), tokio::task::JoinError>,
    ) -> anyhow::Result<()> {
        let (tier, result) = done?;
        self.pipeline.put_gold(tier);
        let (report, permits) = result?;
        self.after_gold(&report, permits).await;
        Ok(())
    }

    async fn after_gold(&mut self, report: &BatchReport, permits: usize) {
        self.ahead.add_permits(permits);
        self.pipeline.count(report);
        if let Some(c) = self.controller.as_mut() {
            c.lifecycle.after_batch(self.pipeline).await;
        }
        (self.on_batch)(report);
    }
}

/// The running gold step's end; never resolves while none runs.
async fn join_gold(
    running: &mut Option<GoldRun>,
) -> Result<(GoldTier, anyhow::Result<(BatchReport, usize)>), tokio::task::JoinError> {
    match running {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`; never resolves without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Every bronze batch committed so far, in order, and the permits they hold.
fn take_step(
    first: (Committed, u32),
    rx: &mut mpsc::UnboundedReceiver<(Committed, u32)>,
) -> (Vec<Committed>, usize) {
    let mut permits = first.1 as usize;
    let mut step = vec![first.0];
    while let Ok((committed, held)) = rx.try_recv() {
        permits += held as usize;
        step.push(committed);
    }
    (step, permits)
}

/// The ingest tier's task: commits bronze batches and acknowledges them
/// until the sources are done or `stop` has drained them.
async fn ingest_loop(
    mut ingest: IngestTier,
    mut rx: mpsc::Receiver<Envelope>,
    trigger: Trigger,
    mut stop: watch::Receiver<bool>,
    bronze_tx: mpsc::UnboundedSender<(Committed, u32)>,
    ahead: Arc<Semaphore>,
) -> anyhow::Result<IngestTier> {
    let mut carry = None;
    while let Some(first) = next_envelope(&mut rx, &mut stop, &mut carry).await {
        let (records, acks) = collect_batch(first, &mut rx, trigger, &mut stop, &mut carry).await;
        let held = held_permits(records.len(), trigger);
        // Bounded lead over the gold tier (closed only if it is gone).
        let Ok(permit) = ahead.acquire_many(held).await else {
            break;
        };
        permit.forget();
        let committed = ingest.commit(&records).await;
        answer(
            acks,
            committed.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")),
        );
        let Some(committed) = committed? else {
            // Other writers had stored it all: nothing for silver.
            ahead.add_permits(held as usize);
            continue;
        };
        tracing::debug!(
            batch = committed.batch,
            events = committed.events,
            "bronze batch committed"
        );
        if bronze_tx.send((committed, held)).is_err() {
            break;
        }
    }
    Ok(ingest)
}

/// Permits a batch holds: its events, at most all there are.
fn held_permits(events: usize, trigger: Trigger) -> u32 {
    let all = trigger.max_events.max(1) * AHEAD_BATCHES;
    events.clamp(1, all) as u32
}

/// The next envelope: the rest of one the last batch split, else the
/// channel's next; once `stop` turns true, only what is buffered.
async fn next_envelope(
    rx: &mut mpsc::Receiver<Envelope>,
    stop: &mut watch::Receiver<bool>,
    carry: &mut Option<Envelope>,
) -> Option<Envelope> {
    if let Some(rest) = carry.take() {
        return Some(rest);
    }
    tokio::select! {
        biased;
        envelope = rx.recv() => envelope,
        _ = stopped(stop) => {
            rx.close();
            rx.recv().await
        }
    }
}

/// Tells every producer of a batch how its commit went.
fn answer(acks: Acks, result: Result<(), String>) {
    for ack in acks.into_iter().flatten() {
        let _ = ack.send(result.clone());
    }
}

/// The next control message; never resolves without a controller or once
/// its senders are gone.
pub(super) async fn next_control(controller: &mut Option<Controller>) -> Control {
    if let Some(c) = controller
        && let Some(control) = c.rx.recv().await
    {
        return control;
    }
    std::future::pending().await
}

/// Resolves once `stop` turns true; never if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it inside this function.
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

type Acks = Vec<Option<tokio::sync::oneshot::Sender<Result<(), String>>>>;

/// Gathers envelopes until the batch is full (events or bytes), its linger
/// is up, the channel is empty and closed, or a stop is requested (which
/// closes the batch now, so a drain does not wait out the linger). An
/// envelope that does not fit the bytes left is split: what fits joins this
/// batch, the rest (with the producer's ack, answered when the last part is
/// committed) goes to `carry` and opens the next one.
async fn collect_batch(
    first: Envelope,
    rx: &mut mpsc::Receiver<Envelope>,
    trigger: Trigger,
    stop: &mut watch::Receiver<bool>,
    carry: &mut Option<Envelope>,
) -> (Vec<RawRecord>, Acks) {
    let deadline = Instant::now() + trigger.linger;
    let (mut records, mut acks, mut bytes) = (Vec::new(), Vec::new(), 0);
    let mut next = Some(first);
    while let Some(envelope) = next.take() {
        let room = trigger.max_bytes.saturating_sub(bytes);
        let (fits, rest) = split_at_bytes(envelope, room, records.is_empty());
        bytes += payload_bytes(&fits.records);
        records.extend(fits.records);
        acks.push(fits.ack);
        if rest.is_some() {
            *carry = rest;
            break;
        }
        if records.len() >= trigger.max_events || bytes >= trigger.max_bytes {
            break;
        }
        next = tokio::select! {
            biased;
            _ = stopped(stop) => {
                rx.close();
                rx.try_recv().ok()
            }
            next = tokio::time::timeout_at(deadline, rx.recv()) => next.ok().flatten(),
        };
    }
    (records, acks)
}

/// Splits `envelope` after the records that fit in `room` bytes (at least
/// one if `must_take`: a record larger than a batch is a batch alone). The
/// first part has no ack; the rest keeps it.
fn split_at_bytes(
    mut envelope: Envelope,
    room: usize,
    must_take: bool,
) -> (Envelope, Option<Envelope>) {
    if payload_bytes(&envelope.records) <= room {
        return (envelope, None);
    }
    let mut used = 0;
    let mut fit = envelope
        .records
        .iter()
        .take_while(|r| {
            used += r.payload.len();
            used <= room
        })
        .count();
    if fit == 0 && must_take {
        fit = 1;
    }
    let rest = envelope.records.split_off(fit);
    let part = Envelope {
        records: envelope.records,
        ack: None,
    };
    (
        part,
        Some(Envelope {
            records: rest,
            ack: envelope.ack,
        }),
    )
}

fn payload_bytes(records: &[RawRecord]) -> usize {
    records.iter().map(|r| r.payload.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sizes: &[usize]) -> Envelope {
        let records = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| RawRecord {
                payload: bytes::Bytes::from(vec![b'x'; n]),
                source: "test".into(),
                partition: "p".into(),
                offset: i as i64,
            })
            .collect();
        let (ack, _) = tokio::sync::oneshot::channel();
        Envelope {
            records,
            ack: Some(ack),
        }
    }

    #[test]
    fn an_envelope_larger_than_the_room_left_is_split_and_the_rest_keeps_the_ack() {
        let (part, rest) = split_at_bytes(envelope(&[4, 4, 4]), 9, false);
        let rest = rest.expect("split");
        assert_eq!((part.records.len(), rest.records.len()), (2, 1));
        assert!(part.ack.is_none() && rest.ack.is_some());
        assert_eq!(rest.records[0].offset, 2, "the rest goes on in order");

        let (part, rest) = split_at_bytes(envelope(&[4, 4]), 8, false);
        assert!(rest.is_none() && part.ack.is_some(), "it fits whole");

        let (part, rest) = split_at_bytes(envelope(&[20, 1]), 8, true);
        assert_eq!(part.records.len(), 1, "an empty batch takes one record");
        assert_eq!(rest.unwrap().records.len(), 1);

        let (part, rest) = split_at_bytes(envelope(&[20, 1]), 8, false);
        assert!(part.records.is_empty(), "a started batch takes none");
        assert_eq!(rest.unwrap().records.len(), 2);
    }
}
