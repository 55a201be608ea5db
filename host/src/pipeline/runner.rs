//! Drives a [`Pipeline`] from a channel of envelopes: closes micro-batches on
//! size or time, acknowledges producers after the bronze commit, and drains
//! what is buffered when asked to stop.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{BatchReport, Pipeline};
use crate::sources::{Envelope, RawRecord};

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
    mut on_batch: impl FnMut(&BatchReport),
) -> anyhow::Result<()> {
    loop {
        let first = tokio::select! {
            biased;
            envelope = rx.recv() => envelope,
            _ = stopped(&mut stop) => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return Ok(()) };
        let (records, acks) = collect_batch(first, &mut rx, trigger).await;
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
        on_batch(&result?);
    }
}

/// Resolves once `stop` turns true; never if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it inside this function.
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

type Acks = Vec<Option<tokio::sync::oneshot::Sender<Result<(), String>>>>;

/// Gathers envelopes until the batch is full, its time is up, or the channel
/// is empty and closed. Envelopes are never split across batches.
async fn collect_batch(
    first: Envelope,
    rx: &mut mpsc::Receiver<Envelope>,
    trigger: Trigger,
) -> (Vec<RawRecord>, Acks) {
    let deadline = Instant::now() + trigger.max_wait;
    let mut records = first.records;
    let mut acks = vec![first.ack];
    while records.len() < trigger.max_events {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(envelope)) => {
                records.extend(envelope.records);
                acks.push(envelope.ack);
            }
            Ok(None) | Err(_) => break,
        }
    }
    (records, acks)
}
