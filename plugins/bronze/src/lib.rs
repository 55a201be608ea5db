//! Default bronze transform: keeps every raw record as it came, adds the
//! ingest date (the partition column) and the record's size.
//!
//! Bronze is the replayable log, so this plugin never drops or rewrites a
//! record: silver and gold can always be recomputed from what it writes.

use std::sync::Arc;

use sluice_plugin_sdk::arrow_array::cast::AsArray;
use sluice_plugin_sdk::arrow_array::types::TimestampMicrosecondType;
use sluice_plugin_sdk::arrow_array::{Array, Date32Array, Int32Array, RecordBatch};
use sluice_plugin_sdk::arrow_schema::{DataType, Field, Schema};
use sluice_plugin_sdk::{Layer, Plugin, PluginInfo, TableRows, TransformError, WriteMode};

/// Name of the table this plugin writes.
pub const BRONZE_EVENTS: &str = "bronze_events";

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The default bronze plugin.
pub struct Bronze;

/// Schema of `bronze_events` rows as emitted (the host adds `batch_id` and `producer`).
pub fn bronze_schema() -> Arc<Schema> {
    let input = sluice_plugin_sdk::schemas::raw_input();
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("ingest_date", DataType::Date32, false));
    fields.push(Field::new("byte_len", DataType::Int32, false));
    Arc::new(Schema::new(fields))
}

impl Plugin for Bronze {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sluice-bronze".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            layer: Layer::Bronze,
            description: "Raw records with source position and ingest time".into(),
            outputs: vec![sluice_plugin_sdk::table(
                BRONZE_EVENTS,
                "Raw events as received, with source position and ingest time",
                &bronze_schema(),
                &["ingest_date"],
                WriteMode::Append,
            )],
            limits: sluice_plugin_sdk::ResourceLimits::HOST_DEFAULTS,
        }
    }

    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError> {
        let expected = sluice_plugin_sdk::schemas::raw_input();
        if input.schema().fields() != expected.fields() {
            return Err(TransformError::BadInput(format!(
                "bronze expects the raw record schema, got {:?}",
                input.schema()
            )));
        }
        let raw = input.column(0).as_binary::<i32>();
        let ingest = input.column(4).as_primitive::<TimestampMicrosecondType>();
        let byte_len: Int32Array = raw.iter().map(|v| v.map(|b| b.len() as i32)).collect();
        let ingest_date: Date32Array = ingest
            .iter()
            .map(|t| t.map(|micros| micros.div_euclid(MICROS_PER_DAY) as i32))
            .collect();
        let mut columns = input.columns().to_vec();
        columns.push(Arc::new(ingest_date));
        columns.push(Arc::new(byte_len));
        let rows = RecordBatch::try_new(bronze_schema(), columns)
            .map_err(|e| TransformError::Internal(e.to_string()))?;
        debug_assert_eq!(rows.num_rows(), raw.len());
        Ok(vec![(BRONZE_EVENTS.to_string(), rows)])
    }
}

#[cfg(all(target_arch = "wasm32", feature = "export"))]
sluice_plugin_sdk::export_plugin!(Bronze);
