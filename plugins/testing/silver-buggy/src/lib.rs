//! The default silver rules with a deliberate bug: feature names come out
//! upper-cased, so gold counts them under new names. For replay tests.

use std::sync::Arc;

use sluice_plugin_sdk::arrow_array::cast::AsArray;
use sluice_plugin_sdk::arrow_array::{RecordBatch, StringArray};
use sluice_plugin_sdk::{Plugin, PluginInfo, TableRows, TransformError};
use sluice_plugin_silver::{SILVER_EVENTS, Silver};

pub struct SilverBuggy;

pub const VERSION: &str = "0.4.0-buggy";

impl Plugin for SilverBuggy {
    fn info() -> PluginInfo {
        let mut info = Silver::info();
        info.version = VERSION.into();
        info
    }

    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError> {
        let mut outputs = Silver::transform(input)?;
        for (table, rows) in &mut outputs {
            if table != SILVER_EVENTS {
                continue;
            }
            let at = rows
                .schema()
                .index_of("feature")
                .map_err(|e| TransformError::Internal(e.to_string()))?;
            let upper: StringArray = rows
                .column(at)
                .as_string::<i32>()
                .iter()
                .map(|f| f.map(str::to_uppercase))
                .collect();
            let mut columns = rows.columns().to_vec();
            columns[at] = Arc::new(upper);
            *rows = RecordBatch::try_new(rows.schema(), columns)
                .map_err(|e| TransformError::Internal(e.to_string()))?;
        }
        Ok(outputs)
    }
}

#[cfg(target_arch = "wasm32")]
sluice_plugin_sdk::export_plugin!(SilverBuggy);
