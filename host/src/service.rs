//! Wires a running service together: plugins, lake, pipeline, the sources
//! feeding it (collector and file replay), the admin API and the watched
//! plugin directory, with graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::admin;
use crate::config::Config;
use crate::lake::Lake;
use crate::lifecycle::{Control, Lifecycle, Validator};
use crate::pipeline::runner::{self, Controller, Trigger};
use crate::pipeline::{BatchReport, Pipeline, Plugins, Totals};
use crate::runtime::Runtime;
use crate::sources::{Envelope, file, http};

/// Envelopes buffered between sources and the pipeline; beyond this, sources
/// wait (backpressure).
const CHANNEL_ENVELOPES: usize = 16;

/// Opens the lake and pipeline for `config`, recovering any unfinished
/// batch. The active plugins are the registry's latest deploys, else the
/// configured ones, else the embedded defaults.
pub async fn open_pipeline(config: &Config) -> anyhow::Result<Pipeline> {
    Ok(open_with_lifecycle(config).await?.0)
}

/// Opens the pipeline with the registry's plugins, and finishes a replay a
/// previous run left unfinished.
pub async fn open_with_lifecycle(
    config: &Config,
) -> anyhow::Result<(Pipeline, Lifecycle, Validator)> {
    let runtime = Arc::new(Runtime::new(Some(config.cache_dir()))?);
    let validator = Validator::new(runtime, config);
    let mut lifecycle = Lifecycle::open(validator.clone(), config)?;
    let mut pipeline = open_pipeline_with(config, lifecycle.load_plugins()?).await?;
    lifecycle.finish_pending_replay(&mut pipeline).await?;
    Ok((pipeline, lifecycle, validator))
}

/// Opens the lake and pipeline for `config` with the given plugins.
pub async fn open_pipeline_with(config: &Config, plugins: Plugins) -> anyhow::Result<Pipeline> {
    let lake = Lake::local(&config.lake)
        .with_context(|| format!("opening lake {}", config.lake.display()))?;
    let lateness = i64::try_from(config.lateness.allowed_secs)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    Pipeline::open(&lake, plugins, lateness).await
}

/// Where a started service listens.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub collector: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// Runs the service until the sources are exhausted (replay only) or `stop`
/// turns true (then buffered events are still committed). `on_ready` gets the
/// bound addresses once the service listens. The active plugins are the
/// registry's latest deploys, else the configured ones.
pub async fn run(
    config: &Config,
    stop: watch::Receiver<bool>,
    on_ready: impl FnOnce(Ready),
    on_batch: impl FnMut(&BatchReport),
) -> anyhow::Result<Totals> {
    let (mut pipeline, lifecycle, validator) = open_with_lifecycle(config).await?;
    let (control_tx, control_rx) = mpsc::channel::<Control>(CHANNEL_ENVELOPES);
    let admin = start_admin(config, &control_tx, &validator, stop.clone()).await?;
    if let Some(dir) = &config.plugins.watch_dir {
        tokio::spawn(admin::watch::watch(
            dir.clone(),
            control_tx.clone(),
            validator.clone(),
        ));
    }
    drop(control_tx);
    let (tx, rx) = mpsc::channel::<Envelope>(CHANNEL_ENVELOPES);
    let collector = start_collector(config, &tx, stop.clone()).await?;
    let replay = start_replay(config, &pipeline, &tx)?;
    drop(tx);
    on_ready(Ready {
        collector: collector.as_ref().map(|(addr, _)| *addr),
        admin: admin.as_ref().map(|(addr, _)| *addr),
    });
    let controller = Controller {
        rx: control_rx,
        lifecycle,
    };
    let trigger = Trigger {
        max_events: config.batch.max_events,
        max_wait: config.max_wait(),
    };
    runner::run(&mut pipeline, rx, trigger, stop, Some(controller), on_batch).await?;
    if let Some(replay) = replay {
        replay.await.context("replay thread")??;
    }
    if let Some((_, server)) = collector {
        server.await.context("collector task")??;
    }
    Ok(pipeline.totals().clone())
}

type Collector = (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>);

async fn start_admin(
    config: &Config,
    control: &mpsc::Sender<Control>,
    validator: &Validator,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<Collector>> {
    if config.admin.listen.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = config.admin.listen.parse().context("admin.listen")?;
    let token = config
        .admin
        .token
        .clone()
        .context("admin.listen: no admin token")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin API to {addr}"))?;
    let bound = listener.local_addr()?;
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(admin::server::serve(
        listener,
        control.clone(),
        validator.clone(),
        token,
        shutdown,
    ));
    Ok(Some((bound, server)))
}

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
