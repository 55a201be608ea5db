//! Plugin calls as background jobs, so a layer's transform overlaps the
//! commit of the layer before it.

use std::collections::BTreeMap;

use deltalake::arrow::array::RecordBatch;

use crate::runtime::{LoadedPlugin, PluginFailure};

/// A plugin call running on a blocking thread (wasm execution is CPU-bound).
/// Started as soon as its input exists, so it overlaps the commit of the
/// layer before it; its outputs are only written after that commit.
pub(super) struct PluginJob {
    task: tokio::task::JoinHandle<Result<BTreeMap<String, RecordBatch>, PluginFailure>>,
    budget: std::time::Duration,
}

impl PluginJob {
    pub(super) fn start(plugin: &LoadedPlugin, input: RecordBatch) -> PluginJob {
        let budget = plugin.limits().batch_timeout;
        let plugin = plugin.clone();
        PluginJob {
            task: tokio::task::spawn_blocking(move || plugin.transform(&input)),
            budget,
        }
    }

    /// The plugin's outputs. Epoch interruption stops a plugin that computes
    /// past its budget, but not one blocked inside a host call (a WASI
    /// sleep): the pipeline stops waiting after the budget of both tries
    /// and a grace second, and counts it a timeout; the thread is left to
    /// end on its own.
    pub(super) async fn finish(self) -> Result<BTreeMap<String, RecordBatch>, PluginFailure> {
        let deadline = self.budget * 2 + std::time::Duration::from_secs(1);
        match tokio::time::timeout(deadline, self.task).await {
            Ok(joined) => joined.unwrap_or_else(|e| {
                Err(PluginFailure::Trap(format!("plugin thread panicked: {e}")))
            }),
            Err(_) => Err(PluginFailure::Timeout(self.budget)),
        }
    }
}

/// One layer's plugin call on one input: the active plugin's job and, while
/// a shadow candidate runs, the candidate's job on the same input.
pub(super) struct LayerJob {
    pub(super) layer: crate::runtime::Layer,
    pub(super) input: RecordBatch,
    /// The version the active job runs: the producer of its rows.
    pub(super) plugin: LoadedPlugin,
    pub(super) active: PluginJob,
    pub(super) shadow: Option<PluginJob>,
}
