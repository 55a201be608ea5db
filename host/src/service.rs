//! Wires a running service together: plugins, lake, pipeline, and the
//! sources feeding it (collector and file replay), with graceful stop.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::lake::Lake;
use crate::pipeline::runner::{self, Trigger};
use crate::pipeline::{BatchReport, Pipeline, Plugins, Totals};
use crate::runtime::Runtime;
use crate::sinks::warehouse;
use crate::sources::{Envelope, file, http};

/// Envelopes buffered between sources and the pipeline; beyond this, sources
/// wait (backpressure).
const CHANNEL_ENVELOPES: usize = 16;

/// How long the last warehouse load at shutdown may take.
const FINAL_LOAD_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens the lake and pipeline for `config`, recovering any unfinished batch.
pub async fn open_pipeline(config: &Config) -> anyhow::Result<Pipeline> {
    let runtime = Runtime::new(Some(config.cache_dir()))?;
    let plugins = Plugins::load(&runtime, config)?;
    let lake = open_lake(config).await?;
    let lateness = i64::try_from(config.lateness.allowed_secs)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    Pipeline::open(&lake, plugins, lateness).await
}

/// Opens the configured lake (a directory or an Azure URL).
pub async fn open_lake(config: &Config) -> anyhow::Result<Lake> {
    Lake::open_root(&config.lake, &config.lake_options)
        .await
        .with_context(|| format!("opening lake {}", config.lake.display()))
}

/// The warehouse loader `config` asks for, if any, for `meta`'s gold tables.
pub fn warehouse_loader(
    config: &Config,
    meta: &crate::runtime::contract::PluginMeta,
) -> anyhow::Result<Option<warehouse::Loader>> {
    let Some(dialect) = config.warehouse.dialect()? else {
        return Ok(None);
    };
    let connection = config.warehouse.connection()?;
    Ok(Some(warehouse::Loader::new(
        dialect,
        connection,
        warehouse::tables(meta),
    )))
}

/// Runs the service until the sources are exhausted (replay only) or `stop`
/// turns true (then buffered events are still committed). `on_ready` gets the
/// collector's bound address once it listens.
pub async fn run(
    config: &Config,
    stop: watch::Receiver<bool>,
    on_ready: impl FnOnce(Option<SocketAddr>),
    on_batch: impl FnMut(&BatchReport),
) -> anyhow::Result<Totals> {
    let mut pipeline = open_pipeline(config).await?;
    let loader = start_warehouse(config, &pipeline).await?;
    let (tx, rx) = mpsc::channel::<Envelope>(CHANNEL_ENVELOPES);
    let collector = start_collector(config, &tx, stop.clone()).await?;
    let replay = start_replay(config, &pipeline, &tx)?;
    drop(tx);
    on_ready(collector.as_ref().map(|(addr, _)| *addr));
    let trigger = Trigger {
        max_events: config.batch.max_events,
        max_wait: config.max_wait(),
    };
    runner::run(&mut pipeline, rx, trigger, stop, on_batch).await?;
    if let Some(replay) = replay {
        replay.await.context("replay thread")??;
    }
    if let Some((_, server)) = collector {
        server.await.context("collector task")??;
    }
    if let Some((done, task, lake)) = loader {
        // Last load after the last commit, so the warehouse ends level with gold.
        let _ = done.send(true);
        let mut loader = task.await.context("warehouse task")?;
        // Bounded, so a warehouse outage cannot hold up shutdown; the next
        // start loads whatever this one could not.
        let last = tokio::time::timeout(FINAL_LOAD_LIMIT, loader.load(&lake)).await;
        match last {
            Ok(result) => warehouse::log_load(result),
            Err(_) => tracing::warn!("final warehouse load timed out; the next run catches up"),
        }
    }
    Ok(pipeline.totals().clone())
}

type WarehouseTask = (
    watch::Sender<bool>,
    tokio::task::JoinHandle<warehouse::Loader>,
    Lake,
);

/// Starts loading gold into the configured warehouse every interval.
async fn start_warehouse(
    config: &Config,
    pipeline: &Pipeline,
) -> anyhow::Result<Option<WarehouseTask>> {
    let Some(loader) = warehouse_loader(config, pipeline.gold_meta())? else {
        return Ok(None);
    };
    let lake = open_lake(config).await?;
    let (done, stop) = watch::channel(false);
    let interval = std::time::Duration::from_secs(config.warehouse.interval_secs);
    let task = tokio::spawn(warehouse::run_continuously(
        loader,
        lake.clone(),
        interval,
        stop,
    ));
    Ok(Some((done, task, lake)))
}

type Collector = (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>);

async fn start_collector(
    config: &Config,
    tx: &mpsc::Sender<Envelope>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Collector>> {
    if config.collector.listen.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = config
        .collector
        .listen
        .parse()
        .context("collector.listen")?;
    let listener = http::bind(addr)
        .await
        .with_context(|| format!("binding the collector to {addr}"))?;
    let bound = listener.local_addr()?;
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(http::serve(
        listener,
        tx.clone(),
        config.collector.max_body_bytes,
        shutdown,
    ));
    Ok(Some((bound, server)))
}

fn start_replay(
    config: &Config,
    pipeline: &Pipeline,
    tx: &mpsc::Sender<Envelope>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<u64>>>> {
    if config.replay.is_empty() {
        return Ok(None);
    }
    let files = file::expand(&config.replay)?;
    let positions = pipeline.positions().clone();
    let chunk = config.batch.max_events.clamp(1, 10_000);
    let tx = tx.clone();
    Ok(Some(tokio::task::spawn_blocking(move || {
        file::replay(&files, &positions, chunk, &tx)
    })))
}

/// A stop signal that turns true on SIGINT or SIGTERM.
pub fn stop_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stopping: draining buffered events");
        let _ = tx.send(true);
    });
    rx
}
