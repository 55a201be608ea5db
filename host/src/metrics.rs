//! Prometheus metrics: the figures Sluice records (batches, events by
//! outcome, source lag, plugin swaps, storage retries) and the `/metrics`
//! endpoint that serves them. Recording is a no-op until [`install`] ran.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Buckets of `sluice_batch_seconds`: a small batch to a slow lake.
const BATCH_SECONDS_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of `sluice_event_to_gold_seconds`: a quiet pipeline to a backlog.
const EVENT_TO_GOLD_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("sluice_batch_seconds".into()),
            &BATCH_SECONDS_BUCKETS,
        )
        .context("histogram buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("sluice_event_to_gold_seconds".into()),
            &EVENT_TO_GOLD_BUCKETS,
        )
        .context("histogram buckets")?
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    sluice_lake::on_retry(record_storage_retry);
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Binds `addr` and serves `GET /metrics` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the metrics listener for `addr` (`host:port`).
pub async fn bind(addr: &str) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let addr: SocketAddr = addr.parse().context("metrics.listen")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// What one committed refine step did.
pub struct StepFigures<'a> {
    /// The step's id: its last bronze batch.
    pub batch: i64,
    pub events: usize,
    pub accepted: usize,
    pub quarantined: &'a std::collections::BTreeMap<String, usize>,
    pub millis: u128,
}

/// One committed refine step: its events by outcome and how long it took.
pub fn record_batch(step: StepFigures<'_>) {
    counter!("sluice_batches_total").increment(1);
    counter!("sluice_events_total").increment(step.events as u64);
    counter!("sluice_events_accepted_total").increment(step.accepted as u64);
    for (reason, n) in step.quarantined {
        counter!("sluice_events_quarantined_total", "reason" => reason.clone())
            .increment(*n as u64);
    }
    gauge!("sluice_last_batch_id").set(step.batch as f64);
    histogram!("sluice_batch_seconds").record(step.millis as f64 / 1_000.0);
}

/// The last batch a tier (`bronze`, `silver`, `gold`) committed; the lag
/// between two tiers is the difference of their positions.
pub fn record_tier_position(tier: &'static str, batch: i64) {
    gauge!("sluice_tier_position", "tier" => tier).set(batch as f64);
}

/// From a bronze batch's arrival to the gold commit that includes it; one
/// sample per bronze batch (its events share that arrival time).
pub fn record_event_to_gold(micros: i64) {
    histogram!("sluice_event_to_gold_seconds").record(micros as f64 / 1e6);
}

/// Events in a source partition after what is durable in bronze.
pub fn record_lag(source: &'static str, partition: &str, lag: i64) {
    gauge!("sluice_source_lag_events", "source" => source, "partition" => partition.to_string())
        .set(lag as f64);
}

/// Events a source partition lost before they were read (Kafka offsets
/// deleted by retention after the lake's position), counted when found.
pub fn record_source_gap(source: &'static str, partition: &str, events: i64) {
    counter!("sluice_source_gap_events", "source" => source, "partition" => partition.to_string())
        .increment(events.max(0) as u64);
}

/// A partition this instance no longer reads: its lag is reported by the
/// instance that took it over, so here it reads 0 (sums stay right).
pub fn forget_lag(source: &'static str, partition: &str) {
    record_lag(source, partition, 0);
}

/// A plugin change applied between two batches, and the pause it cost.
pub fn record_swap(layer: String, action: &'static str, pause: Duration) {
    counter!("sluice_plugin_changes_total", "layer" => layer.clone(), "action" => action)
        .increment(1);
    histogram!("sluice_plugin_swap_pause_seconds", "layer" => layer).record(pause.as_secs_f64());
}

/// A lake call that failed because storage was unreachable and is retried.
pub fn record_storage_retry(table: &str) {
    counter!("sluice_storage_retries_total", "table" => table.to_string()).increment(1);
}
