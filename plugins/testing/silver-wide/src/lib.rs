//! Declares `silver_events` with one more column than the default plugin,
//! which no live lake's silver table has: a deploy must refuse it.

use std::sync::Arc;

use sluice_plugin_sdk::arrow_array::{Int64Array, RecordBatch};
use sluice_plugin_sdk::arrow_schema::{DataType, Field, Schema};
use sluice_plugin_sdk::{Plugin, PluginInfo, TableRows, TransformError, WriteMode};
use sluice_plugin_silver::{SILVER_EVENTS, Silver, silver_events_schema};

pub struct SilverWide;

fn wide_schema() -> Schema {
    let mut fields: Vec<Field> = silver_events_schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("score", DataType::Int64, true));
    Schema::new(fields)
}

impl Plugin for SilverWide {
    fn info() -> PluginInfo {
        let mut info = Silver::info();
        info.version = "0.5.0-wide".into();
        for table in &mut info.outputs {
            if table.name == SILVER_EVENTS {
                *table = sluice_plugin_sdk::table(
                    SILVER_EVENTS,
                    &table.description,
                    &wide_schema(),
                    &["event_date"],
                    WriteMode::Append,
                );
            }
        }
        info
    }

    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError> {
        let mut outputs = Silver::transform(input)?;
        for (table, rows) in &mut outputs {
            if table == SILVER_EVENTS {
                let mut columns = rows.columns().to_vec();
                columns.push(Arc::new(Int64Array::new_null(rows.num_rows())));
                *rows = RecordBatch::try_new(Arc::new(wide_schema()), columns)
                    .map_err(|e| TransformError::Internal(e.to_string()))?;
            }
        }
        Ok(outputs)
    }
}

#[cfg(target_arch = "wasm32")]
sluice_plugin_sdk::export_plugin!(SilverWide);
