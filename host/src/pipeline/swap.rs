//! Plugin changes inside a running pipeline, always between two batches:
//! swaps, probation with automatic rollback, and shadow candidates.

use std::collections::BTreeMap;

use anyhow::bail;
use deltalake::arrow::array::RecordBatch;

use super::job::{LayerJob, PluginJob};
use super::shadow::ShadowReport;
use super::{Pipeline, plugins};
use crate::layers::gold::GoldTables;
use crate::layers::{bronze, silver};
use crate::runtime::{Layer, LoadedPlugin, PluginFailure, WriteMode};

/// The previous version of a layer's plugin, kept while a new one proves
/// itself on live batches.
pub(super) struct Probation {
    plugin: LoadedPlugin,
    batches_left: u32,
}

/// A candidate running beside the active plugin, and what it has shown.
pub(super) struct Shadow {
    plugin: LoadedPlugin,
    report: ShadowReport,
}

/// A deploy that failed a live batch while on probation and was replaced by
/// the version before it (which then transformed that batch).
#[derive(Clone)]
pub struct AutoRollback {
    pub layer: Layer,
    pub batch: i64,
    pub failed: LoadedPlugin,
    pub restored: LoadedPlugin,
    pub reason: String,
}

impl Pipeline {
    /// The active plugin of `layer`.
    pub fn active(&self, layer: Layer) -> &LoadedPlugin {
        self.plugins.get(layer)
    }

    /// The id the next batch will get: a swap now serves from this batch on.
    pub fn next_batch(&self) -> i64 {
        self.next_batch
    }

    /// Refuses a plugin that cannot replace `layer`'s active one in this
    /// lake: wrong layer, or tables whose schema differs from the live ones.
    pub fn check_fits(&self, layer: Layer, candidate: &LoadedPlugin) -> anyhow::Result<()> {
        plugins::check_layer(candidate, layer, None)?;
        let active = self.plugins.get(layer).meta();
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

    /// Makes `plugin` the active one of `layer` from the next batch on and
    /// returns the one it replaced. With `probation > 0` the replaced one
    /// stays ready: if the new one fails a batch within that many batches,
    /// the pipeline rolls back by itself and reruns the batch.
    pub async fn swap(
        &mut self,
        layer: Layer,
        plugin: LoadedPlugin,
        probation: u32,
    ) -> anyhow::Result<LoadedPlugin> {
        self.check_fits(layer, &plugin)?;
        let previous = self.plugins.get(layer).clone();
        self.plugins.set(layer, plugin);
        self.ensure_gold_tables().await?;
        if probation > 0 {
            self.fallbacks.insert(
                layer,
                Probation {
                    plugin: previous.clone(),
                    batches_left: probation,
                },
            );
        } else {
            self.fallbacks.remove(&layer);
        }
        Ok(previous)
    }

    /// Starts (or replaces) a shadow candidate for `layer`.
    pub fn start_shadow(&mut self, layer: Layer, candidate: LoadedPlugin) -> anyhow::Result<()> {
        self.check_fits(layer, &candidate)?;
        let report = ShadowReport::new(self.plugins.get(layer).meta(), candidate.meta());
        self.shadows.insert(
            layer,
            Shadow {
                plugin: candidate,
                report,
            },
        );
        Ok(())
    }

    /// Ends `layer`'s shadow run; returns the candidate and its report.
    pub fn stop_shadow(&mut self, layer: Layer) -> Option<(LoadedPlugin, ShadowReport)> {
        self.shadows.remove(&layer).map(|s| (s.plugin, s.report))
    }

    /// The shadow candidate of `layer` and its report so far.
    pub fn shadow(&self, layer: Layer) -> Option<(&LoadedPlugin, &ShadowReport)> {
        self.shadows.get(&layer).map(|s| (&s.plugin, &s.report))
    }

    /// Rollbacks the pipeline did by itself since the last call.
    pub fn take_auto_rollbacks(&mut self) -> Vec<AutoRollback> {
        std::mem::take(&mut self.auto_rollbacks)
    }

    /// Starts `layer`'s plugin (and its shadow candidate) on `input`.
    pub(super) fn start_job(&self, layer: Layer, input: RecordBatch) -> LayerJob {
        LayerJob {
            layer,
            active: PluginJob::start(self.plugins.get(layer), input.clone()),
            shadow: self
                .shadows
                .get(&layer)
                .map(|s| PluginJob::start(&s.plugin, input.clone())),
            input,
        }
    }

    /// Finishes a layer's job and applies `check` to the outputs. Feeds the
    /// shadow report; if the active plugin fails while on probation, rolls
    /// back to the previous version and reruns the batch on it.
    pub(super) async fn finish_job<T>(
        &mut self,
        batch: i64,
        job: LayerJob,
        check: impl Fn(BTreeMap<String, RecordBatch>, &LoadedPlugin) -> Result<T, PluginFailure>,
    ) -> Result<T, PluginFailure> {
        let LayerJob {
            layer,
            input,
            active,
            shadow,
        } = job;
        let plugin = self.plugins.get(layer).clone();
        let outputs = active.finish().await;
        if let Some(shadow_job) = shadow {
            let candidate = shadow_job.finish().await;
            if let Some(s) = self.shadows.get_mut(&layer) {
                s.report.observe(plugin.meta(), &outputs, &candidate);
            }
        }
        let failure = match outputs.and_then(|out| check(out, &plugin)) {
            Ok(value) => {
                self.passed_probation(layer);
                return Ok(value);
            }
            Err(failure) => failure,
        };
        let Some(probation) = self.fallbacks.remove(&layer) else {
            return Err(failure);
        };
        let restored = probation.plugin;
        tracing::error!(
            batch,
            failed = %plugin.meta().producer(),
            restored = %restored.meta().producer(),
            "{failure}; rolling back the {layer} plugin and rerunning the batch"
        );
        self.auto_rollbacks.push(AutoRollback {
            layer,
            batch,
            failed: plugin,
            restored: restored.clone(),
            reason: failure.to_string(),
        });
        self.plugins.set(layer, restored.clone());
        PluginJob::start(&restored, input)
            .finish()
            .await
            .and_then(|out| check(out, &restored))
    }

    fn passed_probation(&mut self, layer: Layer) {
        if let Some(p) = self.fallbacks.get_mut(&layer) {
            p.batches_left = p.batches_left.saturating_sub(1);
            if p.batches_left == 0 {
                self.fallbacks.remove(&layer);
            }
        }
    }

    /// Reopens the gold tables if the active gold plugin changed since.
    pub(super) async fn ensure_gold_tables(&mut self) -> anyhow::Result<()> {
        let gold = &self.plugins.gold;
        if gold.hash() != self.gold_opened_for {
            self.gold = GoldTables::open(&self.lake, gold.meta()).await?;
            self.gold_opened_for = gold.hash().to_string();
        }
        Ok(())
    }
}

fn same_mode_kind(a: &WriteMode, b: &WriteMode) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}
