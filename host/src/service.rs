//! Wires a running service together: plugins, lake, pipeline, the sources
//! feeding it (collector, file replay, Kafka), the admin API, the watched
//! plugin directory, the warehouse loader, table maintenance and the web
//! dashboard, with graceful stop.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::admin;
use crate::config::Config;
use crate::lake::Lake;
use crate::lifecycle::{Control, Lifecycle, Validator};
use crate::pipeline::runner::{self, Controller, Trigger};
use crate::pipeline::shared::SharedLake;
use crate::pipeline::{BatchReport, Pipeline, Plugins, Totals};
use crate::runtime::Runtime;
use crate::sinks::warehouse;
use crate::sources::shared::{LakePositions, Sharing};
use crate::sources::{Envelope, SourceContext, eventhubs, file, http, kafka};

/// Envelopes buffered between sources and the pipeline; beyond this, sources
/// wait (backpressure).
const CHANNEL_ENVELOPES: usize = 16;

/// How long the dashboard may take to finish its answers at shutdown.
const DASHBOARD_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the last warehouse load at shutdown may take.
const FINAL_LOAD_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

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
    let (mut lifecycle, validator) = open_lifecycle(config).await?;
    let pipeline = open_managed(config, &mut lifecycle).await?;
    Ok((pipeline, lifecycle, validator))
}

/// Each layer's active plugin (the registry's latest deploy, else the
/// configured one), without opening the pipeline.
pub async fn active_plugins(config: &Config) -> anyhow::Result<Plugins> {
    open_lifecycle(config).await?.0.load_plugins().await
}

async fn open_lifecycle(config: &Config) -> anyhow::Result<(Lifecycle, Validator)> {
    let runtime = Arc::new(Runtime::new(Some(config.cache_dir()))?);
    let validator = Validator::new(runtime, config);
    let lifecycle = Lifecycle::open(validator.clone(), config).await?;
    Ok((lifecycle, validator))
}

/// The pipeline with `lifecycle`'s active plugins, a pending replay finished.
async fn open_managed(config: &Config, lifecycle: &mut Lifecycle) -> anyhow::Result<Pipeline> {
    let mut pipeline = open_pipeline_with(config, lifecycle.load_plugins().await?).await?;
    pipeline.record_rollbacks_with(lifecycle.rollback_recorder());
    lifecycle.finish_pending_replay(&mut pipeline).await?;
    Ok(pipeline)
}

/// Opens the lake and pipeline for `config` with the given plugins.
pub async fn open_pipeline_with(config: &Config, plugins: Plugins) -> anyhow::Result<Pipeline> {
    let lake = open_lake(config).await?;
    Pipeline::open(&lake, plugins, time_bounds(config)).await
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

/// What the sources of an instance sharing its lake get: positions to
/// follow, and the sender of the refine role for the one that carries it.
#[derive(Default)]
struct SourcesSharing {
    kafka: Option<Arc<Sharing>>,
    eventhubs: Option<Arc<Sharing>>,
}

/// An instance's membership in the fleet's plugin registry, for
/// `lifecycle::follow_fleet`.
struct Joined {
    registry: Arc<crate::lifecycle::registry::Registry>,
    running: watch::Receiver<Vec<crate::lifecycle::registry::RunningLayer>>,
    instance: String,
}

/// Opens the pipeline on a lake other instances share: ingesting at once,
/// refining while the source that carries the refine role says this
/// instance holds it (Kafka with `share_partitions`, else Event Hubs with a
/// checkpoint store: whoever owns the first partition).
async fn open_shared(
    config: &Config,
    lifecycle: &mut Lifecycle,
) -> anyhow::Result<(Pipeline, SourcesSharing, Option<Joined>)> {
    let lake = open_lake(config).await?;
    let mut pipeline =
        Pipeline::open_to_ingest(&lake, lifecycle.load_plugins().await?, time_bounds(config))
            .await?;
    let (lead, lead_rx) = watch::channel(false);
    // The source that does not carry the role gets a sender nobody hears.
    let (unheard, _) = watch::channel(false);
    let kafka_leads = config.kafka.enabled() && config.kafka.share_partitions;
    let hub_shares = config.eventhubs.enabled() && !config.eventhubs.checkpoint_url.is_empty();
    let mut sharing = SourcesSharing::default();
    if hub_shares {
        let role = if kafka_leads { unheard } else { lead.clone() };
        sharing.eventhubs = Some(source_sharing(&pipeline, role).await?);
    }
    if kafka_leads {
        sharing.kafka = Some(source_sharing(&pipeline, lead).await?);
    }
    let instance = pipeline.instance_id().context("the ingest tier is out")?;
    tracing::info!(lake = %lake.root(), instance, "sharing the lake with other instances");
    let (registry, running) = lifecycle.join_fleet(instance.clone(), &pipeline);
    pipeline.record_rollbacks_with(lifecycle.rollback_recorder());
    let joined = Joined {
        registry,
        running,
        instance: instance.clone(),
    };
    pipeline.share(SharedLake {
        lake,
        bounds: time_bounds(config),
        lead: lead_rx,
        instance,
        leading: false,
        epoch: None,
    });
    Ok((pipeline, sharing, Some(joined)))
}

async fn source_sharing(
    pipeline: &Pipeline,
    lead: watch::Sender<bool>,
) -> anyhow::Result<Arc<Sharing>> {
    let positions = LakePositions::new(pipeline.bronze_handle().await?, pipeline.positions());
    let instance = pipeline.instance_id().context("the ingest tier is out")?;
    Ok(Arc::new(Sharing {
        instance,
        positions,
        lead,
    }))
}

fn time_bounds(config: &Config) -> crate::layers::silver::TimeBounds {
    crate::layers::silver::TimeBounds {
        lateness_micros: config.lateness.allowed_micros(),
        max_future_micros: config.lateness.max_future_micros(),
    }
}

/// Where a started service listens.
#[derive(Debug, Clone, Copy)]
pub struct Ready {
    pub collector: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub dashboard: Option<SocketAddr>,
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
    let (metrics, metrics_handle) = start_metrics(config, stop.clone()).await?;
    let (mut lifecycle, validator) = open_lifecycle(config).await?;
    let shared = config.kafka.enabled() && config.kafka.share_partitions
        || config.eventhubs.enabled() && !config.eventhubs.checkpoint_url.is_empty();
    let (mut pipeline, sharing, joined) = if shared {
        open_shared(config, &mut lifecycle).await?
    } else {
        let pipeline = open_managed(config, &mut lifecycle).await?;
        (pipeline, SourcesSharing::default(), None)
    };
    let loader = start_warehouse(config, &pipeline).await?;
    let maintenance = start_maintenance(config, shared).await?;
    let (control_tx, control_rx) = mpsc::channel::<Control>(CHANNEL_ENVELOPES);
    let admin = start_admin(config, &control_tx, &validator, stop.clone()).await?;
    if let Some(j) = joined {
        let follow = crate::lifecycle::follow_fleet(
            j.registry,
            j.instance,
            j.running,
            control_tx.clone(),
            stop.clone(),
        );
        tokio::spawn(follow);
    }
    if let Some(dir) = &config.plugins.watch_dir {
        tokio::spawn(admin::watch::watch(
            dir.clone(),
            control_tx.clone(),
            validator.clone(),
            lifecycle.known_hashes(),
        ));
    }
    let live = crate::web::Live {
        metrics: metrics_handle,
        control: Some(control_tx.clone()),
    };
    let dashboard = start_dashboard(config, live, stop.clone()).await?;
    drop(control_tx);
    let (tx, rx) = mpsc::channel::<Envelope>(CHANNEL_ENVELOPES);
    let sources = SourceContext {
        positions: pipeline.positions().clone(),
        chunk: config.batch.max_events.clamp(1, 10_000),
        tx,
        stop: stop.clone(),
    };
    let collector = start_collector(config, &sources).await?;
    let replay = start_replay(config, &sources)?;
    let hub = start_eventhubs(config, &sources, sharing.eventhubs);
    let kafka = start_kafka(config, &sources, sharing.kafka);
    // The channel closes once every source is done with its copy.
    drop(sources);
    on_ready(Ready {
        collector: collector.as_ref().map(|(addr, _)| *addr),
        admin: admin.as_ref().map(|(addr, _)| *addr),
        metrics,
        dashboard: dashboard.as_ref().map(|d| d.addr),
    });
    let controller = Controller {
        rx: control_rx,
        lifecycle,
    };
    let trigger = Trigger {
        max_events: config.batch.max_events,
        max_bytes: config.batch.max_bytes,
        linger: config.linger(),
        gold_interval: config.gold_interval(),
    };
    runner::run(&mut pipeline, rx, trigger, stop, Some(controller), on_batch).await?;
    if let Some(replay) = replay {
        replay.await.context("replay thread")??;
    }
    if let Some((_, server)) = collector {
        server.await.context("collector task")??;
    }
    if let Some(hub) = hub {
        hub.await.context("event hubs source task")??;
    }
    if let Some(kafka) = kafka {
        kafka.await.context("kafka source task")??;
    }
    if let Some(dashboard) = dashboard {
        let _ = dashboard.done.send(true);
        // Bounded: a slow query in a browser's request must not hold up exit.
        let _ = tokio::time::timeout(DASHBOARD_STOP_LIMIT, dashboard.task).await;
    }
    if let Some((done, task)) = maintenance {
        // Stops at its next wait or between two tables of a round.
        let _ = done.send(true);
        task.await.context("maintenance task")?;
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
    let Some(loader) = warehouse_loader(config, &pipeline.gold_meta())? else {
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

/// The tables the pipeline only appends to (replays aside): compacting them
/// commutes with a running host's commits, even one in another process.
pub fn appended_tables() -> Vec<String> {
    [
        crate::layers::bronze::TABLE,
        crate::layers::silver::TABLE,
        crate::layers::quarantine::TABLE,
        crate::pipeline::BATCHES_TABLE,
    ]
    .map(String::from)
    .to_vec()
}

/// Starts maintaining the lake every `maintenance.interval_secs`, on a task
/// of its own (never the pipeline's), until the returned sender says stop.
/// With instances sharing the lake only the appended tables are compacted:
/// the layout lock that orders compaction and rewrites works within one
/// process.
async fn start_maintenance(
    config: &Config,
    shared: bool,
) -> anyhow::Result<Option<MaintenanceTask>> {
    let Some(interval) = config.maintenance.interval() else {
        return Ok(None);
    };
    let mut policy = config.maintenance.policy();
    if shared {
        policy.compact_only = Some(appended_tables());
    }
    let lake = open_lake(config).await?;
    let (done, stop) = watch::channel(false);
    let task = tokio::spawn(maintain_continuously(lake, policy, interval, stop));
    Ok(Some((done, task)))
}

type MaintenanceTask = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

/// A maintenance round every `interval` until `stop`, which is also
/// checked between tables; failures are logged and the next round tries
/// again.
async fn maintain_continuously(
    lake: Lake,
    policy: crate::lake::Policy,
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let names = match lake.table_names().await {
            Ok(names) => names,
            Err(e) => {
                tracing::error!(error = %e, "table maintenance failed; retrying next round");
                continue;
            }
        };
        for name in names {
            if *stop.borrow() {
                return;
            }
            // Logged table by table: a stop between tables ends the round.
            let mut table = crate::lake::Round::default();
            match lake.maintain_table(&name, &policy).await {
                Ok(report) => table.tables.push(report),
                Err(e) => table.failures.push(e),
            }
            log_round(&table);
        }
    }
}

/// Logs what a maintenance round did, table by table.
pub fn log_round(round: &crate::lake::Round) {
    for t in &round.tables {
        tracing::info!(
            table = %t.table,
            live_files_before = t.live_files.0,
            live_files_after = t.live_files.1,
            stored_files_before = t.before.data_files,
            stored_files_after = t.after.data_files,
            bytes_before = t.before.bytes(),
            bytes_after = t.after.bytes(),
            vacuumed = t.vacuumed,
            checkpoint = ?t.checkpoint,
            compaction = ?t.compaction,
            "table maintained"
        );
    }
    for e in &round.failures {
        tracing::error!(error = %e, "table maintenance failed; retrying next round");
    }
}

type Collector = (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>);

/// The dashboard `sluice run` serves, and how to stop it.
struct DashboardTask {
    addr: SocketAddr,
    done: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves the dashboard if `dashboard.listen` is set, until `stop` or the
/// end of the run. An address that cannot be bound (another service, a
/// second instance) is logged and the pipeline runs without it: the
/// dashboard only reads, and must never be why events are not taken.
async fn start_dashboard(
    config: &Config,
    live: crate::web::Live,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<DashboardTask>> {
    if config.dashboard.listen.is_empty() {
        return Ok(None);
    }
    let listener = match crate::web::bind(&config.dashboard.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(
                listen = %config.dashboard.listen,
                error = %e,
                "dashboard not served: cannot listen there (set dashboard.listen, \"\" turns it off)"
            );
            return Ok(None);
        }
    };
    let addr = listener.local_addr()?;
    let lake = open_lake(config).await?;
    let (done, end) = watch::channel(false);
    let shutdown = until_either(stop, end);
    let task = tokio::spawn(crate::web::serve(
        listener,
        lake,
        (config.registry_dir(), config.lake_options.clone()),
        live,
        shutdown,
    ));
    Ok(Some(DashboardTask { addr, done, task }))
}

/// Resolves once either receiver turns true (or its sender is gone).
async fn until_either(mut a: watch::Receiver<bool>, mut b: watch::Receiver<bool>) {
    tokio::select! {
        _ = a.wait_for(|s| *s) => {}
        _ = b.wait_for(|s| *s) => {}
    }
}

type MetricsHandle = metrics_exporter_prometheus::PrometheusHandle;

/// Serves `/metrics` if `metrics.listen` is set; recording starts with it.
async fn start_metrics(
    config: &Config,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(Option<SocketAddr>, Option<MetricsHandle>)> {
    if config.metrics.listen.is_empty() {
        return Ok((None, None));
    }
    let handle = crate::metrics::install()?;
    let (listener, bound) = crate::metrics::bind(&config.metrics.listen).await?;
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let served = handle.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::metrics::serve(listener, served, shutdown).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok((Some(bound), Some(handle)))
}

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
    sources: &SourceContext,
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
    let server = tokio::spawn(http::serve(
        listener,
        config.collector.clone(),
        sources.clone(),
    ));
    Ok(Some((bound, server)))
}

fn start_replay(
    config: &Config,
    sources: &SourceContext,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<u64>>>> {
    if config.replay.is_empty() {
        return Ok(None);
    }
    let files = file::expand(&config.replay)?;
    let sources = sources.clone();
    Ok(Some(tokio::task::spawn_blocking(move || {
        file::replay(&files, &sources)
    })))
}

fn start_kafka(
    config: &Config,
    sources: &SourceContext,
    sharing: Option<Arc<Sharing>>,
) -> Option<tokio::task::JoinHandle<anyhow::Result<u64>>> {
    if !config.kafka.enabled() {
        return None;
    }
    Some(tokio::spawn(kafka::run(
        config.kafka.clone(),
        sources.clone(),
        sharing,
    )))
}

/// The Event Hubs source; `sharing` (when instances share the lake) gives
/// the positions of partitions claimed later.
fn start_eventhubs(
    config: &Config,
    sources: &SourceContext,
    sharing: Option<Arc<Sharing>>,
) -> Option<tokio::task::JoinHandle<anyhow::Result<()>>> {
    if !config.eventhubs.enabled() {
        return None;
    }
    let source = eventhubs::run(config.eventhubs.clone(), sources.clone(), sharing);
    Some(tokio::spawn(async move {
        // Said at once: the service keeps running (and draining) meanwhile.
        let result = source.await;
        if let Err(e) = &result {
            tracing::error!("the event hubs source stopped: {e:#}");
        }
        result
    }))
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
