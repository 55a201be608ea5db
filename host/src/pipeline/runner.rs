//! Drives a [`Pipeline`] from a channel of envelopes: closes micro-batches on
//! size or time, acknowledges producers after the bronze commit, applies
//! plugin changes between batches, and drains what is buffered when asked
//! to stop.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{BatchReport, Pipeline};
use crate::lifecycle::{Control, Lifecycle};
use crate::sources::{Envelope, RawRecord};

/// Plugin changes asked of the running pipeline, and who applies them.
pub struct Controller {
    pub rx: mpsc::Receiver<Control>,
    pub lifecycle: Lifecycle,
}

/// What the loop waits for between batches.
enum Next {
    Control(Control),
    Envelope(Option<Envelope>),
}

/// When a batch closes.
#[derive(Debug, Clone, Copy)]
pub struct Trigger {
    pub max_events: usize,
    pub max_wait: Duration,
}

/// Processes envelopes until every sender is gone, or until `stop` turns true
/// (then what is already buffered is still processed). Calls `on_batch` after
/// each batch.
pub async fn run(
    pipeline: &mut Pipeline,
    mut rx: mpsc::Receiver<Envelope>,
    trigger: Trigger,
    mut stop: watch::Receiver<bool>,
    mut controller: Option<Controller>,
    mut on_batch: impl FnMut(&BatchReport),
) -> anyhow::Result<()> {
    loop {
        // Controls first: a change waiting at a boundary is applied before
        // the next batch starts, even under continuous load.
        let next = tokio::select! {
            biased;
            control = next_control(&mut controller) => Next::Control(control),
            envelope = rx.recv() => Next::Envelope(envelope),
            _ = stopped(&mut stop) => {
                rx.close();
                Next::Envelope(rx.recv().await)
            }
        };
        let first = match next {
            Next::Control(control) => {
                if let Some(c) = controller.as_mut() {
                    c.lifecycle.handle(pipeline, control).await;
                }
                continue;
            }
            Next::Envelope(envelope) => envelope,
        };
        let Some(first) = first else { return Ok(()) };
        let (records, acks) = collect_batch(first, &mut rx, trigger, &mut stop).await;
        let mut pending = Some(acks);
        let result = pipeline
            .process(records, || {
                // Durable in bronze: producers may forget these events now.
                for ack in pending.take().into_iter().flatten().flatten() {
                    let _ = ack.send(Ok(()));
                }
            })
            .await;
        for ack in pending.into_iter().flatten().flatten() {
            let _ = ack.send(Err("the pipeline failed to commit the batch".into()));
        }
        let report = result?;
        if let Some(c) = controller.as_mut() {
            c.lifecycle.after_batch(pipeline);
        }
        on_batch(&report);
    }
}

/// The next control message; never resolves without a controller or once
/// its senders are gone.
async fn next_control(controller: &mut Option<Controller>) -> Control {
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

/// Gathers envelopes until the batch is full, its time is up, the channel is
/// empty and closed, or a stop is requested (which closes the batch now, so
/// a drain does not wait out the batch window). Envelopes are never split.
async fn collect_batch(
    first: Envelope,
    rx: &mut mpsc::Receiver<Envelope>,
    trigger: Trigger,
    stop: &mut watch::Receiver<bool>,
) -> (Vec<RawRecord>, Acks) {
    let deadline = Instant::now() + trigger.max_wait;
    let mut records = first.records;
    let mut acks = vec![first.ack];
    while records.len() < trigger.max_events {
        let next = tokio::select! {
            biased;
            _ = stopped(stop) => {
                rx.close();
                rx.try_recv().ok()
            }
            next = tokio::time::timeout_at(deadline, rx.recv()) => next.ok().flatten(),
        };
        let Some(envelope) = next else { break };
        records.extend(envelope.records);
        acks.push(envelope.ack);
    }
    (records, acks)
}
