//! The three medallion layers as the host sees them: the rows it feeds each
//! plugin, the columns it adds, and the host-owned state between them
//! (deduplication and watermark in silver; merge, SCD2 and derived tables in
//! gold). Plugins transform; these modules keep the numbers right.

pub mod bronze;
pub mod gold;
pub mod quarantine;
pub mod silver;

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Host-added column: the micro-batch that wrote the row.
pub const BATCH_ID: &str = "batch_id";
/// Host-added column: `plugin@version` that produced the row.
pub const PRODUCER: &str = "producer";

/// `schema` plus the host's lineage columns.
pub fn with_lineage_fields(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(BATCH_ID, DataType::Int64, false));
    fields.push(Field::new(PRODUCER, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Appends `batch_id` and `producer` columns to `rows`.
pub fn add_lineage(rows: &RecordBatch, batch: i64, producer: &str) -> RecordBatch {
    let n = rows.num_rows();
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(vec![batch; n])));
    columns.push(Arc::new(StringArray::from(vec![producer; n])));
    RecordBatch::try_new(with_lineage_fields(&rows.schema()), columns)
        .expect("lineage columns match the extended schema")
}
