//! Schemas fixed by the contract: what the host feeds each layer and the shape
//! of a plugin's `quarantine` rows. Plugins' own output schemas live with them.

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use std::sync::{Arc, OnceLock};

/// Name of the table every layer may send rejected input rows to.
pub const QUARANTINE: &str = "quarantine";
/// Column naming the input row an output row came from (silver outputs).
pub const INPUT_ROW: &str = "input_row";

/// Event-time timestamps: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// What the host feeds a bronze plugin: one row per raw record from a source.
pub fn raw_input() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("raw", DataType::Binary, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("source_partition", DataType::Utf8, false),
                Field::new("source_offset", DataType::Int64, false),
                Field::new("ingest_time", timestamp_type(), false),
            ]))
        })
        .clone()
}

/// Rows a plugin emits to `quarantine`: which input row, a machine-readable
/// reason (snake_case, e.g. `invalid_json`) and a human-readable detail. The
/// host adds the raw bytes and source position.
pub fn quarantine_output() -> Arc<Schema> {
    static SCHEMA: OnceLock<Arc<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(INPUT_ROW, DataType::UInt32, false),
                Field::new("reason", DataType::Utf8, false),
                Field::new("detail", DataType::Utf8, false),
            ]))
        })
        .clone()
}
