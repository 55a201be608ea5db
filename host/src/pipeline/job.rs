//! Plugin calls as background jobs, so a layer's transform overlaps the
//! commit of the layer before it.

use std::collections::BTreeMap;

use deltalake::arrow::array::RecordBatch;

use crate::runtime::{LoadedPlugin, PluginFailure};

/// A plugin call running on a blocking thread (wasm execution is CPU-bound).
/// Started as soon as its input exists, so it overlaps the commit of the
/// layer before it; its outputs are only written after that commit.
pub(super) struct PluginJob(
    tokio::task::JoinHandle<Result<BTreeMap<String, RecordBatch>, PluginFailure>>,
);

impl PluginJob {
    pub(super) fn start(plugin: &LoadedPlugin, input: RecordBatch) -> PluginJob {
        let plugin = plugin.clone();
        PluginJob(tokio::task::spawn_blocking(move || {
            plugin.transform(&input)
        }))
    }

    pub(super) async fn finish(self) -> Result<BTreeMap<String, RecordBatch>, PluginFailure> {
        self.0
            .await
            .unwrap_or_else(|e| Err(PluginFailure::Trap(format!("plugin thread panicked: {e}"))))
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
