//! Bronze as the host sees it: raw records in, the bronze plugin's rows out,
//! plus `batch_row` so a batch can be re-read from the lake in arrival order.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, BinaryArray, BinaryBuilder, Int32Array, Int64Array, Int64Builder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondArray,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::sources::RawRecord;

pub const TABLE: &str = "bronze_events";
/// Host-added column: position of the row in its micro-batch (arrival order).
pub const BATCH_ROW: &str = "batch_row";
/// Contract column: when the host received the record (raw input; the
/// default bronze plugin keeps it in `bronze_events`).
pub const INGEST_TIME: &str = "ingest_time";

/// The rows fed to the bronze plugin (schema fixed by the contract).
pub fn raw_input(records: &[RawRecord], ingest_micros: i64) -> RecordBatch {
    let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    let mut raw = BinaryBuilder::with_capacity(records.len(), bytes);
    let mut source = StringBuilder::new();
    let mut partition = StringBuilder::new();
    let mut offset = Int64Builder::with_capacity(records.len());
    for r in records {
        raw.append_value(&r.payload);
        source.append_value(&*r.source);
        partition.append_value(&*r.partition);
        offset.append_value(r.offset);
    }
    let ingest =
        TimestampMicrosecondArray::from(vec![ingest_micros; records.len()]).with_timezone("UTC");
    RecordBatch::try_new(
        sluice_plugin_sdk::schemas::raw_input(),
        vec![
            Arc::new(raw.finish()),
            Arc::new(source.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(ingest),
        ],
    )
    .expect("raw input columns match the contract schema")
}

/// Schema of `bronze_events` as stored: the plugin's plus host lineage.
pub fn stored_schema(plugin_schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = plugin_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(BATCH_ROW, DataType::Int32, false));
    super::with_lineage_fields(&Schema::new(fields))
}

/// The plugin's rows with `batch_row`, `batch_id` and `producer` added.
pub fn to_stored(rows: &RecordBatch, batch: i64, producer: &str) -> RecordBatch {
    let mut fields: Vec<Field> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(BATCH_ROW, DataType::Int32, false));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(Int32Array::from_iter_values(
        0..rows.num_rows() as i32,
    )));
    let with_row = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .expect("batch_row matches the extended schema");
    super::add_lineage(&with_row, batch, producer)
}

/// One raw record inside a batch, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RawRow<'a> {
    pub raw: &'a [u8],
    pub source: &'a str,
    pub partition: &'a str,
    pub offset: i64,
}

/// Column access to raw bytes and source positions of a raw-input or
/// `bronze_events` batch, for quarantining rows by index.
pub struct RawColumns<'a> {
    /// `None` when a custom bronze plugin did not keep `ingest_time`.
    ingest: Option<&'a TimestampMicrosecondArray>,
    raw: &'a BinaryArray,
    source: &'a StringArray,
    partition: &'a StringArray,
    offset: &'a Int64Array,
}

impl<'a> RawColumns<'a> {
    pub fn new(batch: &'a RecordBatch) -> Result<Self, String> {
        fn get<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, String> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or_else(|| format!("bronze rows lack a usable `{name}` column"))
        }
        Ok(RawColumns {
            ingest: batch
                .column_by_name(INGEST_TIME)
                .and_then(|c| c.as_any().downcast_ref()),
            raw: get(batch, "raw")?,
            source: get(batch, "source")?,
            partition: get(batch, "source_partition")?,
            offset: get(batch, "source_offset")?,
        })
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Whether the rows carry their ingest time at all.
    pub fn has_ingest_time(&self) -> bool {
        self.ingest.is_some()
    }

    /// When row `i` was received, if the rows carry it (a null counts as
    /// unknown).
    pub fn ingest_time(&self, i: usize) -> Option<i64> {
        self.ingest.filter(|c| c.is_valid(i)).map(|c| c.value(i))
    }

    pub fn row(&self, i: usize) -> RawRow<'a> {
        RawRow {
            raw: self.raw.value(i),
            source: self.source.value(i),
            partition: self.partition.value(i),
            offset: self.offset.value(i),
        }
    }
}
