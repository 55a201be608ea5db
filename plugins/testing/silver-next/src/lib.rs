//! The default silver rules released as version 0.2.0, asking for a smaller
//! memory and time budget in its manifest: what a routine upgrade looks like.

use sluice_plugin_sdk::arrow_array::RecordBatch;
use sluice_plugin_sdk::{Plugin, PluginInfo, ResourceLimits, TableRows, TransformError};
use sluice_plugin_silver::Silver;

pub struct SilverNext;

/// Version every row this plugin produces records.
pub const VERSION: &str = "0.2.0";

impl Plugin for SilverNext {
    fn info() -> PluginInfo {
        let mut info = Silver::info();
        info.version = VERSION.into();
        info.limits = ResourceLimits {
            memory_mb: Some(256),
            batch_timeout_ms: Some(20_000),
        };
        info
    }

    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError> {
        Silver::transform(input)
    }
}

#[cfg(target_arch = "wasm32")]
sluice_plugin_sdk::export_plugin!(SilverNext);
