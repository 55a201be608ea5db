//! Bronze as the host sees it: raw records in, the bronze plugin's rows out,
//! plus `batch_row` so a batch can be re-read from the lake in arrival order.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, Int32Array, Int64Array,
    Int64Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::kernels::cmp::distinct;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::datafusion::prelude::SessionContext;

use super::quarantine;
use crate::lake::Lake;
use crate::record::{Positions, RawRecord};

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

/// Raw-input columns the host owns: a bronze plugin must pass them through
/// unchanged, row for row. Positions resume from `source*` (a plugin that
/// wrote `source_offset = i64::MAX` would make a source skip everything),
/// and `raw` is what quarantine keeps and silver reads.
pub const HOST_COLUMNS: [&str; 4] = ["raw", "source", "source_partition", "source_offset"];

/// Checks that the bronze plugin's `output` has `input`'s host-owned
/// columns, equal row for row; otherwise names the column and the first row
/// that differs.
pub fn check_host_columns(input: &RecordBatch, output: &RecordBatch) -> Result<(), String> {
    if input.num_rows() != output.num_rows() {
        return Err(format!(
            "bronze output has {} rows for {} raw records",
            output.num_rows(),
            input.num_rows()
        ));
    }
    for name in HOST_COLUMNS {
        let expected = input
            .column_by_name(name)
            .ok_or_else(|| format!("raw input lacks `{name}`"))?;
        let actual = output
            .column_by_name(name)
            .ok_or_else(|| format!("bronze output lacks the host's column `{name}`"))?;
        if actual.data_type() != expected.data_type() {
            return Err(format!(
                "bronze output column `{name}` is {}, not {}",
                actual.data_type(),
                expected.data_type()
            ));
        }
        if let Some(row) = first_difference(expected, actual)? {
            return Err(format!(
                "bronze output changed the host's column `{name}` at row {row}"
            ));
        }
    }
    Ok(())
}

/// The first row where two arrays of one type differ (nulls included).
fn first_difference(a: &ArrayRef, b: &ArrayRef) -> Result<Option<usize>, String> {
    // Whole-array equality first: the common case costs one pass.
    if a.to_data() == b.to_data() {
        return Ok(None);
    }
    let differs = distinct(a, b).map_err(|e| e.to_string())?;
    Ok((0..differs.len()).find(|&i| differs.value(i)))
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
    /// The bronze batch of a stored row; `None` before bronze.
    pub batch: Option<i64>,
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
    batch: Option<&'a Int64Array>,
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
            batch: get(batch, super::BATCH_ID).ok(),
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
            batch: self.batch.map(|b| b.value(i)),
        }
    }
}

/// App transactions a bronze commit claims: `(app id, version)`.
pub type Claims = Vec<(String, i64)>;

/// The app id under which bronze commits record how far a partition is
/// stored: `<source>:<partition>`, e.g. `kafka:events/3`.
pub fn position_key(source: &str, partition: &str) -> String {
    format!("{source}:{partition}")
}

/// The app ids of `positions` (as [`position_key`] names them).
pub fn position_marks(positions: &Positions) -> crate::lake::Marks {
    positions
        .iter()
        .map(|((source, partition), offset)| (position_key(source, partition), *offset))
        .collect()
}

/// What a bronze commit may still add to the table by `marks`: the rows
/// of ordered-log partitions past their mark (every writer sees the same
/// broker offsets there, so a row at or below the mark is stored already,
/// by this writer or another), every row of other sources (files and
/// collectors number their own records), and the position each ordered
/// partition reaches with them. `None` if no row is left.
pub fn ahead_of_marks(
    rows: &RecordBatch,
    marks: &crate::lake::Marks,
) -> Result<Option<(RecordBatch, Claims)>, String> {
    /// One ordered partition of the rows: its app id, its mark, the last
    /// offset kept.
    struct Partition {
        key: String,
        mark: Option<i64>,
        last_kept: Option<i64>,
    }
    let columns = RawColumns::new(rows)?;
    let mut partitions: HashMap<(&str, &str), Partition> = HashMap::new();
    let mut keep = Vec::with_capacity(columns.len());
    for i in 0..columns.len() {
        let row = columns.row(i);
        if !crate::record::is_ordered_log(row.source) {
            keep.push(true);
            continue;
        }
        let partition = partitions
            .entry((row.source, row.partition))
            .or_insert_with(|| {
                let key = position_key(row.source, row.partition);
                let mark = marks.get(&key).copied();
                Partition {
                    key,
                    mark,
                    last_kept: None,
                }
            });
        let ahead = partition.mark.is_none_or(|m| row.offset > m);
        if ahead {
            partition.last_kept = partition.last_kept.max(Some(row.offset));
        }
        keep.push(ahead);
    }
    let claims = partitions
        .into_values()
        .filter_map(|p| Some((p.key, p.last_kept?)))
        .collect();
    let kept = if keep.iter().all(|k| *k) {
        rows.clone()
    } else {
        filter_record_batch(rows, &BooleanArray::from(keep)).map_err(|e| e.to_string())?
    };
    Ok((kept.num_rows() > 0).then_some((kept, claims)))
}

/// Committed positions as the lake holds them now: sources resume after
/// them (and a partition an instance has just claimed does too).
pub async fn committed_positions(lake: &Lake) -> anyhow::Result<Positions> {
    let ctx = SessionContext::new();
    let (Some(b), Some(q)) = (lake.open(TABLE).await?, lake.open(quarantine::TABLE).await?) else {
        return Ok(Positions::new());
    };
    crate::lake::register(&ctx, TABLE, &b).await?;
    crate::lake::register(&ctx, quarantine::TABLE, &q).await?;
    positions_in(&ctx).await
}

/// Max committed offset per (source, partition), from bronze and from
/// records quarantined at bronze, both registered in `ctx`.
pub async fn positions_in(ctx: &SessionContext) -> anyhow::Result<Positions> {
    let rows = sql(
        ctx,
        "SELECT source, source_partition, MAX(source_offset) AS o FROM ( \
           SELECT source, source_partition, source_offset FROM bronze_events \
           UNION ALL SELECT source, source_partition, source_offset FROM quarantine WHERE layer = 'bronze') \
         GROUP BY source, source_partition",
    )
    .await?;
    let mut positions = Positions::new();
    for b in &rows {
        let source = cast(b.column(0), &DataType::Utf8)?;
        let partition = cast(b.column(1), &DataType::Utf8)?;
        let source = source
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to utf8");
        let partition = partition
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("cast to utf8");
        let offset = b
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("offsets are int64");
        for i in 0..b.num_rows() {
            positions.insert(
                (source.value(i).to_string(), partition.value(i).to_string()),
                offset.value(i),
            );
        }
    }
    Ok(positions)
}

async fn sql(ctx: &SessionContext, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-06-01T00:00:00Z.
    const NOW: i64 = 1_780_272_000_000_000;

    fn input() -> RecordBatch {
        let records: Vec<RawRecord> = (0..3)
            .map(|i| RawRecord {
                payload: bytes::Bytes::from(format!("{{\"n\":{i}}}")),
                source: "kafka".into(),
                partition: "t/0".into(),
                offset: 10 + i,
            })
            .collect();
        raw_input(&records, NOW)
    }

    /// `batch` with column `name` replaced.
    fn with_column(batch: &RecordBatch, name: &str, column: ArrayRef) -> RecordBatch {
        let i = batch.schema().index_of(name).unwrap();
        let mut columns = batch.columns().to_vec();
        columns[i] = column;
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[i] = Field::new(name, columns[i].data_type().clone(), false);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    /// Raw input of `(source, partition, offset)` records.
    fn raw(records: &[(&str, &str, i64)]) -> RecordBatch {
        let records: Vec<RawRecord> = records
            .iter()
            .map(|(source, partition, offset)| RawRecord {
                payload: bytes::Bytes::from_static(b"{}"),
                source: (*source).into(),
                partition: (*partition).into(),
                offset: *offset,
            })
            .collect();
        raw_input(&records, NOW)
    }

    #[test]
    fn rows_at_or_below_a_partitions_mark_are_dropped_and_claims_name_the_rest() {
        let rows = raw(&[
            ("kafka", "t/0", 5),
            ("kafka", "t/0", 6),
            ("kafka", "t/1", 3),
            ("http", "collector", 1),
            ("kafka", "t/0", 7),
        ]);
        let marks = crate::lake::Marks::from([
            (position_key("kafka", "t/0"), 5),
            (position_key("http", "collector"), 9),
        ]);
        let (kept, mut claims) = ahead_of_marks(&rows, &marks).unwrap().expect("rows left");
        claims.sort();
        assert_eq!(
            claims,
            vec![("kafka:t/0".to_string(), 7), ("kafka:t/1".to_string(), 3)],
            "the last offset kept per ordered partition; none for the collector"
        );
        let offsets = RawColumns::new(&kept).unwrap();
        let kept: Vec<i64> = (0..offsets.len()).map(|i| offsets.row(i).offset).collect();
        assert_eq!(
            kept,
            vec![6, 3, 1, 7],
            "offset 5 of t/0 is stored; the collector numbers its own"
        );
        let all_stored = crate::lake::Marks::from([
            (position_key("kafka", "t/0"), 7),
            (position_key("kafka", "t/1"), 3),
        ]);
        let only_kafka = raw(&[("kafka", "t/0", 7), ("kafka", "t/1", 2)]);
        assert!(ahead_of_marks(&only_kafka, &all_stored).unwrap().is_none());
    }

    #[test]
    fn unchanged_host_columns_pass_with_extra_columns() {
        let input = input();
        assert_eq!(check_host_columns(&input, &input), Ok(()));
        let extra = with_column(
            &input,
            "ingest_time",
            Arc::new(Int64Array::from(vec![0; 3])),
        );
        assert_eq!(
            check_host_columns(&input, &extra),
            Ok(()),
            "other columns are the plugin's"
        );
    }

    #[test]
    fn a_changed_position_names_the_column_and_row() {
        let input = input();
        let forged = Arc::new(Int64Array::from(vec![10, i64::MAX, 12]));
        let err =
            check_host_columns(&input, &with_column(&input, "source_offset", forged)).unwrap_err();
        assert_eq!(
            err,
            "bronze output changed the host's column `source_offset` at row 1"
        );
        let moved = Arc::new(StringArray::from(vec!["t/0", "t/0", "t/9"]));
        let err = check_host_columns(&input, &with_column(&input, "source_partition", moved))
            .unwrap_err();
        assert!(err.contains("`source_partition` at row 2"), "{err}");
        let raw = Arc::new(BinaryArray::from_vec(vec![
            b"x".as_slice(),
            br#"{"n":1}"#.as_slice(),
            br#"{"n":2}"#.as_slice(),
        ]));
        let err = check_host_columns(&input, &with_column(&input, "raw", raw)).unwrap_err();
        assert!(err.contains("`raw` at row 0"), "{err}");
    }

    #[test]
    fn a_missing_retyped_or_short_host_column_is_refused() {
        let input = input();
        let keep: Vec<usize> = (0..input.num_columns()).filter(|&i| i != 1).collect();
        let err = check_host_columns(&input, &input.project(&keep).unwrap()).unwrap_err();
        assert!(err.contains("`source`"), "{err}");
        let retyped = Arc::new(StringArray::from(vec!["10", "11", "12"]));
        let err =
            check_host_columns(&input, &with_column(&input, "source_offset", retyped)).unwrap_err();
        assert!(err.contains("`source_offset` is Utf8"), "{err}");
        let err = check_host_columns(&input, &input.slice(0, 2)).unwrap_err();
        assert!(err.contains("2 rows for 3"), "{err}");
    }
}
