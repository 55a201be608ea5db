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

use crate::pipeline::BatchReport;

/// Buckets of `sluice_batch_seconds`: a small batch to a slow lake.
const BATCH_SECONDS_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

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
        .install_recorder()
        .context("installing the Prometheus recorder")?;
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

/// One committed batch: its events by outcome and how long it took.
pub fn record_batch(report: &BatchReport) {
    counter!("sluice_batches_total").increment(1);
    counter!("sluice_events_total").increment(report.events as u64);
    counter!("sluice_events_accepted_total").increment(report.accepted as u64);
    for (reason, n) in &report.quarantined {
        counter!("sluice_events_quarantined_total", "reason" => reason.clone())
            .increment(*n as u64);
    }
    gauge!("sluice_last_batch_id").set(report.batch as f64);
    histogram!("sluice_batch_seconds").record(report.millis as f64 / 1_000.0);
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
