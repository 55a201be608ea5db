//! Plugin lifecycle in a running host: validate a candidate, swap it in at a
//! batch boundary, shadow-run it, roll back, replay; and the registry that
//! makes all of it survive a restart.
//!
//! Invariant: the pipeline task is the only one that changes the active
//! plugins or writes the registry's history. The admin API and the watched
//! directory validate candidates on their own threads, then send a
//! [`Control`] that the runner applies between two batches. On a shared
//! lake the registry is the fleet's (`fleet.rs`): a change one instance
//! records reaches the others at their next step boundary.

mod fleet;
pub mod registry;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::Config;
use crate::pipeline::shadow::ShadowReport;
use crate::pipeline::{AutoRollback, Pipeline, Plugins, ReplayReport, RollbackRecorder};
use crate::plugin_test;
use crate::runtime::{Layer, Limits, LoadedPlugin, Runtime, embedded};
use fleet::Fleet;
pub use fleet::follow_fleet;
use registry::{Action, Entry, PendingReplay, Registry, Running, now_rfc3339};

/// Where an answer to a [`Control`] goes.
pub type Reply<T> = oneshot::Sender<Result<T, String>>;

/// A change asked of the running pipeline, applied between two batches.
pub enum Control {
    Deploy {
        layer: Layer,
        candidate: Candidate,
        shadow: bool,
        reply: Reply<Change>,
    },
    Rollback {
        layer: Layer,
        reply: Reply<Change>,
    },
    Promote {
        layer: Layer,
        reply: Reply<Change>,
    },
    StopShadow {
        layer: Layer,
        reply: Reply<Option<ShadowReport>>,
    },
    Status {
        reply: Reply<Status>,
    },
    Replay {
        layer: Layer,
        from: ReplayFrom,
        reply: Reply<ReplayReport>,
    },
    /// A candidate failed validation: only recorded in the history.
    Refused {
        layer: Layer,
        hash: String,
        reason: String,
    },
    /// Other instances recorded changes (`follow_fleet` read them): apply
    /// them here too.
    Follow,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayFrom {
    Batch(i64),
    /// UTC microseconds: the first batch committed at or after.
    Time(i64),
}

/// A validated component, ready to swap in.
#[derive(Clone)]
pub struct Candidate {
    pub plugin: LoadedPlugin,
    pub wasm: Arc<Vec<u8>>,
}

/// Fixture events a plugin ships and the outputs they must give.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fixtures {
    /// Raw events, one per line (the `events.ndjson` of `plugin test`).
    pub events: String,
    /// Expected outputs (`expected.ndjson`).
    pub expected: String,
}

/// What a deploy, promote or rollback did: its history entry.
pub type Change = Entry;

/// One layer as `plugin list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerStatus {
    pub layer: String,
    pub name: String,
    pub version: String,
    pub hash: String,
    pub memory_mb: u64,
    pub batch_timeout_ms: u64,
    /// Deployed versions below the active one that a rollback can return to.
    pub rollback_depth: usize,
    pub shadow: Option<ShadowReport>,
}

/// Every layer, and the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub layers: Vec<LayerStatus>,
    /// The first bronze batch the gold tier has not refined yet.
    pub next_batch: i64,
    /// The id the ingest tier gives its next bronze batch: refining has
    /// caught up with ingest when the two are equal.
    #[serde(default)]
    pub next_bronze_batch: i64,
    pub history: Vec<Entry>,
    /// On a shared lake: what each instance says it runs.
    #[serde(default)]
    pub instances: Vec<Running>,
}

/// Loads and checks candidate components; cheap to clone, used off the
/// pipeline task (admin API, watched directory).
#[derive(Clone)]
pub struct Validator {
    runtime: Arc<Runtime>,
    limits: Limits,
}

impl Validator {
    pub fn new(runtime: Arc<Runtime>, config: &Config) -> Validator {
        Validator {
            runtime,
            limits: config.plugin_limits(),
        }
    }

    /// Compiles and instantiates `wasm`, checks it serves `layer`, and runs
    /// its fixtures if it ships them. The pipeline still checks that its
    /// tables fit the live ones when it swaps it in.
    pub fn validate(
        &self,
        layer: Layer,
        wasm: Vec<u8>,
        fixtures: Option<&Fixtures>,
    ) -> anyhow::Result<Candidate> {
        let plugin = self.runtime.load(&wasm, self.limits)?;
        crate::pipeline::plugins::check_layer(&plugin, layer, None)?;
        if let Some(fixtures) = fixtures {
            self.check_fixtures(&plugin, fixtures)?;
        }
        Ok(Candidate {
            plugin,
            wasm: Arc::new(wasm),
        })
    }

    fn check_fixtures(&self, plugin: &LoadedPlugin, fixtures: &Fixtures) -> anyhow::Result<()> {
        let records = plugin_test::fixture_records("fixtures", fixtures.events.as_bytes());
        let actual = plugin_test::run_records(&self.runtime, plugin, &records)
            .context("running the plugin's fixtures")?;
        let expected = plugin_test::parse_expected("expected", &fixtures.expected)?;
        let diffs = plugin_test::differences(&actual, &expected);
        anyhow::ensure!(
            diffs.is_empty(),
            "its fixtures fail ({} differences), first: {}",
            diffs.len(),
            diffs.first().map(String::as_str).unwrap_or("")
        );
        Ok(())
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}

/// The pipeline task's side: applies [`Control`]s and keeps the registry.
pub struct Lifecycle {
    validator: Validator,
    /// Shared with the pipeline's rollback recorder (see `rollback_recorder`)
    /// and, on a shared lake, with `follow_fleet`.
    registry: Arc<Registry>,
    probation_batches: u32,
    /// Per layer, the configured `.wasm` (`None`: the embedded default):
    /// what is active when the registry holds no deploy for the layer.
    base: BTreeMap<Layer, Option<PathBuf>>,
    /// Set when the lake is shared: who this instance is to the others.
    fleet: Option<Fleet>,
}

impl Lifecycle {
    pub async fn open(validator: Validator, config: &Config) -> anyhow::Result<Lifecycle> {
        let registry = Registry::open(&config.registry_dir(), &config.lake_options).await?;
        let base = BTreeMap::from([
            (Layer::Bronze, config.plugins.bronze.clone()),
            (Layer::Silver, config.plugins.silver.clone()),
            (Layer::Gold, config.plugins.gold.clone()),
        ]);
        Ok(Lifecycle {
            validator,
            registry,
            probation_batches: config.plugins.probation_batches,
            base,
            fleet: None,
        })
    }

    /// Each layer's active plugin: the last one deployed, else the
    /// configured one, else the embedded default.
    pub async fn load_plugins(&self) -> anyhow::Result<Plugins> {
        Ok(Plugins {
            bronze: self.load_active(Layer::Bronze).await?,
            silver: self.load_active(Layer::Silver).await?,
            gold: self.load_active(Layer::Gold).await?,
        })
    }

    /// `layer`'s plugin as the registry's history has it now.
    async fn load_active(&self, layer: Layer) -> anyhow::Result<LoadedPlugin> {
        let plugin = match self.registry.stack(layer).pop() {
            Some(hash) => self.load_deployed(&hash).await?,
            None => self.load_base(layer)?,
        };
        crate::pipeline::plugins::check_layer(&plugin, layer, None)?;
        Ok(plugin)
    }

    async fn load_deployed(&self, hash: &str) -> anyhow::Result<LoadedPlugin> {
        let wasm = self.registry.component(hash).await?;
        let plugin = self
            .validator
            .runtime
            .load(&wasm, self.validator.limits)
            .with_context(|| format!("loading the deployed component {hash}"))?;
        // The registry is shared storage: run only what was deployed.
        anyhow::ensure!(
            plugin.hash() == hash,
            "the registry's {hash}.wasm has sha256 {}: it was altered after its deploy",
            plugin.hash()
        );
        Ok(plugin)
    }

    fn load_base(&self, layer: Layer) -> anyhow::Result<LoadedPlugin> {
        let runtime = &self.validator.runtime;
        match self.base.get(&layer).cloned().flatten() {
            Some(path) => runtime.load_file(&path, self.validator.limits),
            None => runtime
                .load(embedded::default_plugin(layer), self.validator.limits)
                .with_context(|| format!("loading the embedded {layer} plugin")),
        }
    }

    /// Applies one control message to the pipeline and answers it.
    pub async fn handle(&mut self, pipeline: &mut Pipeline, control: Control) {
        match control {
            Control::Deploy {
                layer,
                candidate,
                shadow,
                reply,
            } => {
                let result = if shadow {
                    self.start_shadow(pipeline, layer, candidate.clone()).await
                } else {
                    self.activate(pipeline, layer, candidate.clone(), Action::Deploy)
                        .await
                };
                if let Err(e) = &result {
                    let reason = format!("{e:#}");
                    self.record_refusal(pipeline, layer, Some(&candidate), &reason)
                        .await;
                }
                let _ = reply.send(result.map_err(|e| format!("{e:#}")));
            }
            Control::Promote { layer, reply } => {
                let result = match pipeline.stop_shadow(layer) {
                    Some((plugin, _)) => {
                        let wasm = self.registry.component(plugin.hash()).await.map(Arc::new);
                        match wasm {
                            Ok(wasm) => {
                                let candidate = Candidate { plugin, wasm };
                                self.activate(pipeline, layer, candidate, Action::Promote)
                                    .await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    None => Err(anyhow::anyhow!("no shadow candidate runs for {layer}")),
                };
                let _ = reply.send(result.map_err(|e| format!("{e:#}")));
            }
            Control::Rollback { layer, reply } => {
                let result = self.rollback(pipeline, layer).await;
                let _ = reply.send(result.map_err(|e| format!("{e:#}")));
            }
            Control::StopShadow { layer, reply } => {
                let stopped = pipeline.stop_shadow(layer);
                if let Some((plugin, _)) = &stopped {
                    let entry = self.entry(pipeline, layer, plugin, Action::ShadowStop);
                    self.record_entry(entry).await;
                }
                let _ = reply.send(Ok(stopped.map(|(_, r)| r)));
            }
            Control::Status { reply } => {
                let _ = reply.send(Ok(self.status(pipeline).await));
            }
            Control::Replay { layer, from, reply } => {
                let result = self.replay(pipeline, layer, from).await;
                let _ = reply.send(result.map_err(|e| format!("{e:#}")));
            }
            Control::Refused {
                layer,
                hash,
                reason,
            } => {
                let entry = Entry {
                    hash,
                    ..self.refusal(pipeline, layer, None, &reason)
                };
                self.record_entry(entry).await;
            }
            Control::Follow => self.follow(pipeline).await,
        }
        self.publish(pipeline);
    }

    async fn record_refusal(
        &mut self,
        pipeline: &Pipeline,
        layer: Layer,
        candidate: Option<&Candidate>,
        reason: &str,
    ) {
        let entry = self.refusal(pipeline, layer, candidate, reason);
        self.record_entry(entry).await;
    }

    /// Records an entry nothing waits on; a failure is logged.
    async fn record_entry(&mut self, entry: Entry) {
        let action = entry.action.name();
        if let Err(e) = self.registry.record(entry).await {
            tracing::error!(action, "recording a plugin change: {e:#}");
        }
    }

    /// Swaps `candidate` in (tables checked against the live ones), keeps
    /// its component, and records the change.
    async fn activate(
        &mut self,
        pipeline: &mut Pipeline,
        layer: Layer,
        candidate: Candidate,
        action: Action,
    ) -> anyhow::Result<Change> {
        let paused = Instant::now();
        pipeline.check_fits(layer, &candidate.plugin)?;
        self.registry
            .store(candidate.plugin.hash(), &candidate.wasm)
            .await?;
        pipeline
            .swap(layer, candidate.plugin.clone(), self.probation_batches)
            .await?;
        let pause = paused.elapsed();
        self.record(pipeline, layer, &candidate.plugin, action, pause)
            .await
    }

    async fn start_shadow(
        &mut self,
        pipeline: &mut Pipeline,
        layer: Layer,
        candidate: Candidate,
    ) -> anyhow::Result<Change> {
        pipeline.start_shadow(layer, candidate.plugin.clone())?;
        self.registry
            .store(candidate.plugin.hash(), &candidate.wasm)
            .await?;
        let no_pause = std::time::Duration::ZERO;
        self.record(pipeline, layer, &candidate.plugin, Action::Shadow, no_pause)
            .await
    }

    async fn rollback(&mut self, pipeline: &mut Pipeline, layer: Layer) -> anyhow::Result<Change> {
        let stack = self.registry.stack(layer);
        anyhow::ensure!(
            !stack.is_empty(),
            "nothing to roll back to: {layer} runs its configured plugin"
        );
        let paused = Instant::now();
        let previous = match stack.len() {
            1 => self.load_base(layer)?,
            n => self.load_deployed(&stack[n - 2]).await?,
        };
        pipeline.swap(layer, previous.clone(), 0).await?;
        let pause = paused.elapsed();
        self.record(pipeline, layer, &previous, Action::Rollback, pause)
            .await
    }

    /// Records what the pipeline did by itself during the last step (an
    /// automatic rollback the recorder could not write down is written now).
    pub async fn after_batch(&mut self, pipeline: &mut Pipeline) {
        for rollback in pipeline.take_auto_rollbacks() {
            crate::metrics::record_swap(
                rollback.layer.to_string(),
                Action::AutoRollback.name(),
                std::time::Duration::ZERO,
            );
            if !rollback.recorded {
                let entry = auto_rollback_entry(&rollback, self.instance());
                self.record_entry(entry).await;
            }
        }
        self.publish(pipeline);
    }

    /// Writes an automatic rollback to the registry the moment the
    /// pipeline decides it, before the step it reruns is committed.
    pub fn rollback_recorder(&self) -> RollbackRecorder {
        let registry = self.registry.clone();
        let instance = self.instance().to_string();
        Arc::new(move |rollback: &AutoRollback| {
            let entry = auto_rollback_entry(rollback, &instance);
            let registry = registry.clone();
            Box::pin(async move { registry.record(entry).await })
        })
    }

    /// This instance's name in entries it records; empty alone on a lake.
    fn instance(&self) -> &str {
        self.fleet.as_ref().map_or("", |f| f.instance.as_str())
    }

    /// The history entry of `action` on `plugin`, as of now.
    fn entry(
        &self,
        pipeline: &Pipeline,
        layer: Layer,
        plugin: &LoadedPlugin,
        action: Action,
    ) -> Entry {
        let meta = plugin.meta();
        Entry {
            at: now_rfc3339(),
            layer: layer.to_string(),
            action,
            name: meta.name.clone(),
            version: meta.version.clone(),
            hash: plugin.hash().to_string(),
            from_batch: pipeline.next_batch_for(layer),
            pause_micros: 0,
            note: String::new(),
            instance: self.instance().to_string(),
        }
    }

    async fn record(
        &mut self,
        pipeline: &Pipeline,
        layer: Layer,
        plugin: &LoadedPlugin,
        action: Action,
        pause: std::time::Duration,
    ) -> anyhow::Result<Change> {
        let pause_micros = pause.as_micros() as u64;
        crate::metrics::record_swap(layer.to_string(), action.name(), pause);
        tracing::info!(
            %layer, ?action, plugin = %plugin.meta().producer(), from_batch = pipeline.next_batch_for(layer),
            pause_micros, "plugin change"
        );
        let entry = Entry {
            pause_micros,
            ..self.entry(pipeline, layer, plugin, action)
        };
        self.registry.record(entry.clone()).await?;
        Ok(entry)
    }

    /// sha256 of every component the history names (deployed, refused…).
    pub fn known_hashes(&self) -> std::collections::HashSet<String> {
        self.registry
            .history()
            .into_iter()
            .map(|e| e.hash)
            .collect()
    }

    pub async fn status(&self, pipeline: &Pipeline) -> Status {
        let instances = match &self.fleet {
            Some(_) => self.registry.running().await.unwrap_or_else(|e| {
                tracing::warn!("reading what the instances run: {e:#}");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let layers = Layer::ALL
            .iter()
            .map(|&layer| {
                let plugin = pipeline.active(layer);
                let limits = plugin.limits();
                LayerStatus {
                    layer: layer.to_string(),
                    name: plugin.meta().name.clone(),
                    version: plugin.meta().version.clone(),
                    hash: plugin.hash().to_string(),
                    memory_mb: (limits.memory_bytes >> 20) as u64,
                    batch_timeout_ms: limits.batch_timeout.as_millis() as u64,
                    rollback_depth: self.registry.stack(layer).len(),
                    shadow: pipeline.shadow(layer).map(|(_, r)| r),
                }
            })
            .collect();
        Status {
            layers,
            next_batch: pipeline.next_batch(),
            next_bronze_batch: pipeline.next_batch_for(Layer::Bronze),
            history: self.registry.history(),
            instances,
        }
    }
}

/// The history entry of an automatic rollback: the restored version serves
/// from the step that failed.
fn auto_rollback_entry(rollback: &AutoRollback, instance: &str) -> Entry {
    let meta = rollback.restored.meta();
    Entry {
        at: now_rfc3339(),
        layer: rollback.layer.to_string(),
        action: Action::AutoRollback,
        name: meta.name.clone(),
        version: meta.version.clone(),
        hash: rollback.restored.hash().to_string(),
        from_batch: rollback.batch,
        pause_micros: 0,
        note: format!(
            "{} failed batch {}: {}",
            rollback.failed.meta().producer(),
            rollback.batch,
            rollback.reason
        ),
        instance: instance.to_string(),
    }
}

impl Lifecycle {
    /// The history entry of a refused candidate.
    fn refusal(
        &self,
        pipeline: &Pipeline,
        layer: Layer,
        candidate: Option<&Candidate>,
        reason: &str,
    ) -> Entry {
        let (name, version, hash) = candidate
            .map(|c| {
                let meta = c.plugin.meta();
                (
                    meta.name.clone(),
                    meta.version.clone(),
                    c.plugin.hash().to_string(),
                )
            })
            .unwrap_or_default();
        Entry {
            at: now_rfc3339(),
            layer: layer.to_string(),
            action: Action::Refused,
            name,
            version,
            hash,
            from_batch: pipeline.next_batch_for(layer),
            pause_micros: 0,
            note: reason.to_string(),
            instance: self.instance().to_string(),
        }
    }

    /// Runs a replay from a batch or a time. It is marked pending in the
    /// registry until every table is replaced, so a crash in between is
    /// finished by [`Lifecycle::finish_pending_replay`] on the next start.
    pub async fn replay(
        &mut self,
        pipeline: &mut Pipeline,
        layer: Layer,
        from: ReplayFrom,
    ) -> anyhow::Result<ReplayReport> {
        let from_batch = match from {
            ReplayFrom::Batch(b) => b,
            ReplayFrom::Time(micros) => match pipeline.first_batch_since(micros).await? {
                Some(b) => b,
                None => pipeline.next_batch(),
            },
        };
        let pending = PendingReplay { layer, from_batch };
        self.registry.set_pending_replay(Some(pending)).await?;
        let report = pipeline.replay(layer, from_batch).await?;
        self.registry.set_pending_replay(None).await?;
        Ok(report)
    }

    /// Finishes a replay a previous run was interrupted in. Replays are
    /// idempotent, so it simply runs again.
    pub async fn finish_pending_replay(&mut self, pipeline: &mut Pipeline) -> anyhow::Result<()> {
        let pending = self.registry.pending_replay().await?;
        if let Some(pending) = pending {
            tracing::warn!(
                ?pending,
                "finishing a replay a previous run left unfinished"
            );
            self.replay(
                pipeline,
                pending.layer,
                ReplayFrom::Batch(pending.from_batch),
            )
            .await?;
        }
        Ok(())
    }
}
