//! The quarantine table: every event the pipeline could not accept, with a
//! machine-readable reason, a detail, its raw bytes and where it came from.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use deltalake::arrow::array::{
    ArrayBuilder, BinaryBuilder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::bronze::RawRow;
use crate::runtime::Layer;

pub const TABLE: &str = "quarantine";

/// The stored schema (host-owned; plugins emit only row, reason and detail).
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(
                    "quarantined_at",
                    sluice_plugin_sdk::schemas::timestamp_type(),
                    false,
                ),
                Field::new("layer", DataType::Utf8, false),
                Field::new("reason", DataType::Utf8, false),
                Field::new("detail", DataType::Utf8, false),
                Field::new("raw", DataType::Binary, false),
                Field::new("source", DataType::Utf8, false),
                Field::new("source_partition", DataType::Utf8, false),
                Field::new("source_offset", DataType::Int64, false),
                Field::new(super::BATCH_ID, DataType::Int64, false),
                Field::new(super::PRODUCER, DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// Collects quarantine rows for one batch.
pub struct QuarantineRows {
    now_micros: i64,
    batch: i64,
    at: TimestampMicrosecondBuilder,
    layer: StringBuilder,
    reason: StringBuilder,
    detail: StringBuilder,
    raw: BinaryBuilder,
    source: StringBuilder,
    partition: StringBuilder,
    offset: Int64Builder,
    batch_id: Int64Builder,
    producer: StringBuilder,
    reasons: BTreeMap<String, usize>,
}

impl QuarantineRows {
    pub fn new(batch: i64, now_micros: i64) -> Self {
        QuarantineRows {
            now_micros,
            batch,
            at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            layer: StringBuilder::new(),
            reason: StringBuilder::new(),
            detail: StringBuilder::new(),
            raw: BinaryBuilder::new(),
            source: StringBuilder::new(),
            partition: StringBuilder::new(),
            offset: Int64Builder::new(),
            batch_id: Int64Builder::new(),
            producer: StringBuilder::new(),
            reasons: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Quarantines one raw record.
    pub fn push(
        &mut self,
        layer: Layer,
        reason: &str,
        detail: &str,
        raw: RawRow<'_>,
        producer: &str,
    ) {
        self.at.append_value(self.now_micros);
        self.layer.append_value(layer.as_str());
        self.reason.append_value(reason);
        self.detail.append_value(detail);
        self.raw.append_value(raw.raw);
        self.source.append_value(raw.source);
        self.partition.append_value(raw.partition);
        self.offset.append_value(raw.offset);
        // A stored bronze row keeps its own batch, whatever step refined it.
        self.batch_id.append_value(raw.batch.unwrap_or(self.batch));
        self.producer.append_value(producer);
        *self.reasons.entry(reason.to_string()).or_default() += 1;
    }

    /// Rows so far per reason.
    pub fn reasons(&self) -> impl Iterator<Item = (String, usize)> + '_ {
        self.reasons.iter().map(|(r, n)| (r.clone(), *n))
    }

    pub fn finish(mut self) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(self.at.finish()),
                Arc::new(self.layer.finish()),
                Arc::new(self.reason.finish()),
                Arc::new(self.detail.finish()),
                Arc::new(self.raw.finish()),
                Arc::new(self.source.finish()),
                Arc::new(self.partition.finish()),
                Arc::new(self.offset.finish()),
                Arc::new(self.batch_id.finish()),
                Arc::new(self.producer.finish()),
            ],
        )
        .expect("quarantine columns match its schema")
    }
}
