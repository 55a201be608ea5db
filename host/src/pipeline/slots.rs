//! The plugin each layer runs, shared by the tiers: the active version, the
//! version a fresh deploy replaced (probation), a shadow candidate, and the
//! automatic rollbacks not yet recorded. Changes happen only between two
//! steps of the tier that runs the layer.
//!
//! The ingest (bronze), silver and gold tiers run on different tasks, so
//! this state sits behind one mutex that is held only for bookkeeping,
//! never across a plugin call or a commit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::bail;
use deltalake::arrow::array::RecordBatch;

use super::Pipeline;
use super::job::{LayerJob, PluginJob};
use super::plugins::{self, Plugins};
use super::shadow::ShadowReport;
use crate::layers::{bronze, silver};
use crate::runtime::{Layer, LoadedPlugin, PluginFailure, WriteMode};

/// The previous version of a layer's plugin, kept while a new one proves
/// itself on live steps.
struct Probation {
    plugin: LoadedPlugin,
    steps_left: u32,
}

/// A candidate running beside the active plugin, and what it has shown.
struct Shadow {
    plugin: LoadedPlugin,
    report: ShadowReport,
}

/// A deploy that failed a live step while on probation and was replaced by
/// the version before it (which then transformed that step).
#[derive(Clone)]
pub struct AutoRollback {
    pub layer: Layer,
    pub batch: i64,
    pub failed: LoadedPlugin,
    pub restored: LoadedPlugin,
    pub reason: String,
    /// Whether the [`RollbackRecorder`] wrote it down already.
    pub recorded: bool,
}

/// Writes an automatic rollback down durably (the registry), called before
/// the step it reruns is committed: a crash after that commit must not
/// bring the failed version back without probation.
pub type RollbackRecorder = Arc<
    dyn Fn(&AutoRollback) -> futures::future::BoxFuture<'static, anyhow::Result<()>> + Send + Sync,
>;

struct SlotState {
    plugins: Plugins,
    fallbacks: BTreeMap<Layer, Probation>,
    shadows: BTreeMap<Layer, Shadow>,
    auto_rollbacks: Vec<AutoRollback>,
    recorder: Option<RollbackRecorder>,
    /// The id the ingest tier gives its next bronze batch. Kept here so a
    /// bronze swap knows exactly from which batch it serves.
    next_bronze: i64,
}

/// Probation and shadow state set aside while a replay rewrites a layer.
pub(super) struct SetAside {
    fallbacks: BTreeMap<Layer, Probation>,
    shadows: BTreeMap<Layer, Shadow>,
}

/// Cheap to clone: every clone is the same state.
#[derive(Clone)]
pub(crate) struct Slots(Arc<Mutex<SlotState>>);

impl Slots {
    pub(super) fn new(plugins: Plugins, next_bronze: i64) -> Slots {
        Slots(Arc::new(Mutex::new(SlotState {
            plugins,
            fallbacks: BTreeMap::new(),
            shadows: BTreeMap::new(),
            auto_rollbacks: Vec::new(),
            recorder: None,
            next_bronze,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic while holding the lock leaves plain data behind: go on.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The active plugin of `layer`.
    pub(crate) fn active(&self, layer: Layer) -> LoadedPlugin {
        self.lock().plugins.get(layer).clone()
    }

    /// Every layer's active plugin.
    pub(super) fn plugins(&self) -> Plugins {
        self.lock().plugins.clone()
    }

    pub(super) fn next_bronze(&self) -> i64 {
        self.lock().next_bronze
    }

    pub(super) fn set_next_bronze(&self, batch: i64) {
        self.lock().next_bronze = batch;
    }

    /// Refuses a plugin that cannot replace `layer`'s active one in this
    /// lake: wrong layer, or tables whose schema differs from the live ones.
    pub(super) fn check_fits(&self, layer: Layer, candidate: &LoadedPlugin) -> anyhow::Result<()> {
        plugins::check_layer(candidate, layer, None)?;
        let active = self.active(layer);
        let active = active.meta();
        let host_tables: &[&str] = match layer {
            Layer::Bronze => &[bronze::TABLE],
            Layer::Silver => &[silver::TABLE],
            Layer::Gold => &[],
        };
        for decl in &candidate.meta().outputs {
            // A table the active plugin lacks is new: created on swap.
            let Some(live) = active.output(&decl.name) else {
                continue;
            };
            let must_match = layer == Layer::Gold || host_tables.contains(&decl.name.as_str());
            if must_match && decl.schema.fields() != live.schema.fields() {
                bail!(
                    "table `{}`: the candidate's schema differs from the live table's \
                     (a schema change needs a new table, not a swap)",
                    decl.name
                );
            }
            if layer == Layer::Gold && !same_mode_kind(&decl.mode, &live.mode) {
                bail!(
                    "table `{}`: the candidate changes its write mode",
                    decl.name
                );
            }
        }
        Ok(())
    }

    /// Makes `plugin` active for `layer`; returns the one it replaced. With
    /// `probation > 0` the replaced one stays ready for an automatic rollback.
    pub(super) fn swap(&self, layer: Layer, plugin: LoadedPlugin, probation: u32) -> LoadedPlugin {
        let mut state = self.lock();
        let previous = state.plugins.get(layer).clone();
        state.plugins.set(layer, plugin);
        if probation > 0 {
            let plugin = previous.clone();
            let steps_left = probation;
            state
                .fallbacks
                .insert(layer, Probation { plugin, steps_left });
        } else {
            state.fallbacks.remove(&layer);
        }
        previous
    }

    pub(super) fn start_shadow(&self, layer: Layer, candidate: LoadedPlugin) {
        let mut state = self.lock();
        let report = ShadowReport::new(state.plugins.get(layer).meta(), candidate.meta());
        let plugin = candidate;
        state.shadows.insert(layer, Shadow { plugin, report });
    }

    pub(super) fn stop_shadow(&self, layer: Layer) -> Option<(LoadedPlugin, ShadowReport)> {
        self.lock()
            .shadows
            .remove(&layer)
            .map(|s| (s.plugin, s.report))
    }

    pub(super) fn shadow(&self, layer: Layer) -> Option<(LoadedPlugin, ShadowReport)> {
        self.lock()
            .shadows
            .get(&layer)
            .map(|s| (s.plugin.clone(), s.report.clone()))
    }

    pub(super) fn set_recorder(&self, recorder: RollbackRecorder) {
        self.lock().recorder = Some(recorder);
    }

    pub(super) fn take_auto_rollbacks(&self) -> Vec<AutoRollback> {
        std::mem::take(&mut self.lock().auto_rollbacks)
    }

    /// Probation and shadows of silver and gold, set aside (a replay is
    /// not a live step); bronze's stay, as the ingest tier keeps running.
    pub(super) fn set_aside(&self) -> SetAside {
        let mut state = self.lock();
        let mut aside = SetAside {
            fallbacks: BTreeMap::new(),
            shadows: BTreeMap::new(),
        };
        for layer in [Layer::Silver, Layer::Gold] {
            if let Some(p) = state.fallbacks.remove(&layer) {
                aside.fallbacks.insert(layer, p);
            }
            if let Some(s) = state.shadows.remove(&layer) {
                aside.shadows.insert(layer, s);
            }
        }
        aside
    }

    pub(super) fn restore(&self, aside: SetAside) {
        let mut state = self.lock();
        state.fallbacks.extend(aside.fallbacks);
        state.shadows.extend(aside.shadows);
    }

    /// Starts `layer`'s plugin (and its shadow candidate) on `input`.
    pub(super) fn start_job(&self, layer: Layer, input: RecordBatch) -> LayerJob {
        let state = self.lock();
        start_in(&state, layer, input)
    }

    /// Gives the next bronze batch its id and starts the bronze plugin on
    /// it, atomically with respect to swaps.
    pub(super) fn start_bronze(&self, input: RecordBatch) -> (i64, LayerJob) {
        let mut state = self.lock();
        let batch = state.next_bronze;
        state.next_bronze += 1;
        (batch, start_in(&state, Layer::Bronze, input))
    }

    /// Finishes a layer's job and applies `check` to its outputs. Feeds the
    /// shadow report; if the plugin fails while on probation, rolls back to
    /// the previous version and reruns the step on it. Returns the outputs
    /// and the plugin that produced them.
    pub(super) async fn finish_job<T>(
        &self,
        batch: i64,
        job: LayerJob,
        check: impl Fn(BTreeMap<String, RecordBatch>, &LoadedPlugin) -> Result<T, PluginFailure>,
    ) -> Result<(T, LoadedPlugin), PluginFailure> {
        let LayerJob {
            layer,
            input,
            plugin,
            active,
            shadow,
        } = job;
        let outputs = active.finish().await;
        if let Some(shadow_job) = shadow {
            let candidate = shadow_job.finish().await;
            if let Some(s) = self.lock().shadows.get_mut(&layer) {
                s.report.observe(plugin.meta(), &outputs, &candidate);
            }
        }
        let failure = match outputs.and_then(|out| check(out, &plugin)) {
            Ok(value) => {
                self.passed_probation(layer, &plugin);
                return Ok((value, plugin));
            }
            Err(failure) => failure,
        };
        let Some(restored) = self.roll_back(layer, batch, &plugin, &failure).await else {
            return Err(failure);
        };
        PluginJob::start(&restored, input)
            .finish()
            .await
            .and_then(|out| check(out, &restored))
            .map(|value| (value, restored))
    }

    /// If `failed` is `layer`'s active plugin and on probation, restores
    /// the version it replaced and records the rollback (durably first, if
    /// a recorder is set).
    async fn roll_back(
        &self,
        layer: Layer,
        batch: i64,
        failed: &LoadedPlugin,
        failure: &PluginFailure,
    ) -> Option<LoadedPlugin> {
        let (mut rollback, recorder) = {
            let mut state = self.lock();
            if state.plugins.get(layer).hash() != failed.hash() {
                return None;
            }
            let restored = state.fallbacks.remove(&layer)?.plugin;
            state.plugins.set(layer, restored.clone());
            let rollback = AutoRollback {
                layer,
                batch,
                failed: failed.clone(),
                restored,
                reason: failure.to_string(),
                recorded: false,
            };
            (rollback, state.recorder.clone())
        };
        tracing::error!(
            batch,
            failed = %failed.meta().producer(),
            restored = %rollback.restored.meta().producer(),
            "{failure}; rolling back the {layer} plugin and rerunning the step"
        );
        if let Some(record) = recorder {
            match record(&rollback).await {
                Ok(()) => rollback.recorded = true,
                Err(e) => tracing::error!("recording the automatic rollback: {e:#}"),
            }
        }
        let restored = rollback.restored.clone();
        self.lock().auto_rollbacks.push(rollback);
        Some(restored)
    }

    fn passed_probation(&self, layer: Layer, plugin: &LoadedPlugin) {
        let mut state = self.lock();
        if state.plugins.get(layer).hash() != plugin.hash() {
            return;
        }
        if let Some(p) = state.fallbacks.get_mut(&layer) {
            p.steps_left = p.steps_left.saturating_sub(1);
            if p.steps_left == 0 {
                state.fallbacks.remove(&layer);
            }
        }
    }
}

/// The lifecycle's view: plugin changes asked of the running pipeline. The
/// runner applies them once silver and gold are idle and caught up; bronze
/// changes take effect at the ingest tier's next batch.
impl Pipeline {
    /// The active plugin of `layer`.
    pub fn active(&self, layer: Layer) -> LoadedPlugin {
        self.slots.active(layer)
    }

    /// The first bronze batch not yet refined (in gold).
    pub fn next_batch(&self) -> i64 {
        self.next_batch_for(Layer::Gold)
    }

    /// The first batch a change of `layer`'s plugin made now serves.
    pub fn next_batch_for(&self, layer: Layer) -> i64 {
        match (layer, &self.gold) {
            (Layer::Bronze, _) => self.slots.next_bronze(),
            (Layer::Gold, Some(gold)) => gold.next_batch,
            // While a gold step runs, changes wait for it and for the
            // silver steps before them.
            (Layer::Silver | Layer::Gold, _) => self.silver.next_batch,
        }
    }

    /// Refuses a plugin that cannot replace `layer`'s active one here.
    pub fn check_fits(&self, layer: Layer, candidate: &LoadedPlugin) -> anyhow::Result<()> {
        self.slots.check_fits(layer, candidate)
    }

    /// Makes `plugin` the active one of `layer` from the next step on and
    /// returns the one it replaced. With `probation > 0` the replaced one
    /// stays ready: if the new one fails a step within that many steps, the
    /// pipeline rolls back by itself and reruns the step.
    pub async fn swap(
        &mut self,
        layer: Layer,
        plugin: LoadedPlugin,
        probation: u32,
    ) -> anyhow::Result<LoadedPlugin> {
        self.slots.check_fits(layer, &plugin)?;
        if layer == Layer::Gold {
            crate::layers::gold::check_derived(plugin.meta())
                .await
                .map_err(anyhow::Error::msg)?;
        }
        let previous = self.slots.swap(layer, plugin, probation);
        let slots = self.slots.clone();
        self.gold_mut()?.ensure_tables(&slots).await?;
        Ok(previous)
    }

    /// Starts (or replaces) a shadow candidate for `layer`.
    pub fn start_shadow(&mut self, layer: Layer, candidate: LoadedPlugin) -> anyhow::Result<()> {
        self.slots.check_fits(layer, &candidate)?;
        self.slots.start_shadow(layer, candidate);
        Ok(())
    }

    /// Ends `layer`'s shadow run; returns the candidate and its report.
    pub fn stop_shadow(&mut self, layer: Layer) -> Option<(LoadedPlugin, ShadowReport)> {
        self.slots.stop_shadow(layer)
    }

    /// The shadow candidate of `layer` and its report so far.
    pub fn shadow(&self, layer: Layer) -> Option<(LoadedPlugin, ShadowReport)> {
        self.slots.shadow(layer)
    }

    /// From now on, each automatic rollback is written down by `recorder`
    /// before the step it reruns commits.
    pub fn record_rollbacks_with(&self, recorder: RollbackRecorder) {
        self.slots.set_recorder(recorder);
    }

    /// Rollbacks the pipeline did by itself since the last call.
    pub fn take_auto_rollbacks(&mut self) -> Vec<AutoRollback> {
        self.slots.take_auto_rollbacks()
    }
}

fn start_in(state: &SlotState, layer: Layer, input: RecordBatch) -> LayerJob {
    let plugin = state.plugins.get(layer).clone();
    LayerJob {
        layer,
        active: PluginJob::start(&plugin, input.clone()),
        shadow: state
            .shadows
            .get(&layer)
            .map(|s| PluginJob::start(&s.plugin, input.clone())),
        plugin,
        input,
    }
}

fn same_mode_kind(a: &WriteMode, b: &WriteMode) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}
