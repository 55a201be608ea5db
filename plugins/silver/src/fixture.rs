//! Native-only helpers that run plugins on fixture files the way the host's
//! `sluice plugin test` does (host/src/plugin_test.rs), and render rows in its
//! expectation format: one `{"table": …, "row": {…}}` JSON object per output
//! row, tables in name order, columns in schema order, nulls written out,
//! timestamps as integer microseconds since the epoch, dates as integer days.
//!
//! Gold's tests use them too, since gold's fixture input is silver's output.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sluice_plugin_sdk::arrow_array::cast::AsArray;
use sluice_plugin_sdk::arrow_array::types::{
    Date32Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt32Type,
};
use sluice_plugin_sdk::arrow_array::{
    Array, ArrayRef, BinaryArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use sluice_plugin_sdk::arrow_schema::{DataType, Field, Schema, TimeUnit};
use sluice_plugin_sdk::schemas::{INPUT_ROW, timestamp_type};
use sluice_plugin_sdk::{Plugin, TableRows};

use crate::{SILVER_EVENTS, Silver};

/// Ingest time given to fixture records: 2026-01-01T00:00:00Z.
const FIXTURE_INGEST_MICROS: i64 = 1_767_225_600_000_000;

/// Allowed lateness when the host builds gold's fixture input.
const FIXTURE_LATENESS_MICROS: i64 = 3_600 * 1_000_000;

/// The records of a fixture file: one per line, split on `\n` only. Like the
/// host, blank (all-whitespace) lines are skipped, so a fixture cannot hold
/// an `empty_record`.
pub fn records(file: &[u8]) -> Vec<&[u8]> {
    file.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .collect()
}

/// `bronze_events` rows for `records`, as the host feeds them to silver: the
/// bronze plugin's columns plus the host's `batch_row`, `batch_id` and
/// `producer`.
pub fn bronze_rows(records: &[&[u8]]) -> RecordBatch {
    let n = records.len();
    let schema = Schema::new(vec![
        Field::new("raw", DataType::Binary, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("source_partition", DataType::Utf8, false),
        Field::new("source_offset", DataType::Int64, false),
        Field::new("ingest_time", timestamp_type(), false),
        Field::new("ingest_date", DataType::Date32, false),
        Field::new("byte_len", DataType::Int32, false),
        Field::new("batch_row", DataType::Int32, false),
        Field::new("batch_id", DataType::Int64, false),
        Field::new("producer", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from_iter_values(records)),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            "fixture", n,
        ))),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n("0", n))),
        Arc::new(Int64Array::from_iter_values(0..n as i64)),
        Arc::new(
            TimestampMicrosecondArray::from(vec![FIXTURE_INGEST_MICROS; n]).with_timezone("UTC"),
        ),
        Arc::new(Date32Array::from(vec![
            (FIXTURE_INGEST_MICROS / 86_400_000_000)
                as i32;
            n
        ])),
        Arc::new(Int32Array::from_iter_values(
            records.iter().map(|r| r.len() as i32),
        )),
        Arc::new(Int32Array::from_iter_values(0..n as i32)),
        Arc::new(Int64Array::from(vec![1; n])),
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            "bronze-fixture",
            n,
        ))),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("fixture bronze rows")
}

/// Runs silver on the records of a fixture file.
pub fn run_silver(file: &[u8]) -> Vec<TableRows> {
    Silver::transform(&bronze_rows(&records(file))).expect("silver accepts bronze rows")
}

/// What the host feeds gold for a silver output: `silver_events` rows that
/// pass its dedup (first `event_id` wins) and lateness check (watermark =
/// newest accepted event time − 1 h), in arrival order, without `input_row`,
/// plus `batch_id` and `producer`.
pub fn gold_input(silver_outputs: &[TableRows]) -> RecordBatch {
    let (_, events) = silver_outputs
        .iter()
        .find(|(table, _)| table == SILVER_EVENTS)
        .expect("silver emits silver_events");
    let accepted = accept_like_host(events);
    let n = accepted.num_rows();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in accepted.schema().fields().iter().zip(accepted.columns()) {
        if field.name() != INPUT_ROW {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    fields.push(Field::new("batch_id", DataType::Int64, false));
    columns.push(Arc::new(Int64Array::from(vec![1; n])));
    fields.push(Field::new("producer", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from_iter_values(
        std::iter::repeat_n("silver-fixture", n),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("gold input rows")
}

/// The host's dedup and lateness verdicts, event by event in arrival order.
fn accept_like_host(events: &RecordBatch) -> RecordBatch {
    let column = |name: &str| events.column_by_name(name).expect(name).clone();
    let (ids, times) = (column("event_id"), column("event_time"));
    let (ids, times) = (
        ids.as_string::<i32>(),
        times.as_primitive::<TimestampMicrosecondType>(),
    );
    let mut seen = HashSet::new();
    let mut newest: Option<i64> = None;
    let keep: Vec<bool> = (0..events.num_rows())
        .map(|i| {
            let late = newest.is_some_and(|n| times.value(i) < n - FIXTURE_LATENESS_MICROS);
            let accept = !late && seen.insert(ids.value(i));
            if accept {
                newest = Some(newest.map_or(times.value(i), |n| n.max(times.value(i))));
            }
            accept
        })
        .collect();
    let keep = sluice_plugin_sdk::arrow_array::BooleanArray::from(keep);
    let columns = events
        .columns()
        .iter()
        .map(|c| arrow_select::filter::filter(c.as_ref(), &keep))
        .collect::<Result<Vec<_>, _>>()
        .expect("filter accepted rows");
    RecordBatch::try_new(events.schema(), columns).expect("accepted rows")
}

/// Every output row in the expectation format, tables in name order (as
/// `sluice plugin test --bless` writes them).
pub fn expected_file(outputs: &[TableRows]) -> String {
    let by_name: BTreeMap<&str, &RecordBatch> =
        outputs.iter().map(|(t, b)| (t.as_str(), b)).collect();
    let mut out = String::new();
    for (table, batch) in by_name {
        for row in 0..batch.num_rows() {
            out.push_str(&render_row(table, batch, row));
            out.push('\n');
        }
    }
    out
}

/// One row as `{"table":"…","row":{…}}`, columns in schema order.
pub fn render_row(table: &str, batch: &RecordBatch, row: usize) -> String {
    let schema = batch.schema();
    let cells: Vec<String> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| format!("{}:{}", json_string(field.name()), cell(column, row)))
        .collect();
    format!(
        "{{\"table\":{},\"row\":{{{}}}}}",
        json_string(table),
        cells.join(",")
    )
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serialises")
}

/// One value as JSON text, per the expectation format.
fn cell(column: &ArrayRef, row: usize) -> String {
    if column.is_null(row) {
        return "null".into();
    }
    match column.data_type() {
        DataType::Utf8 => json_string(column.as_string::<i32>().value(row)),
        DataType::Binary => json_string(&String::from_utf8_lossy(
            column.as_binary::<i32>().value(row),
        )),
        DataType::Boolean => column.as_boolean().value(row).to_string(),
        DataType::UInt32 => column.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::Int32 => column.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::Date32 => column.as_primitive::<Date32Type>().value(row).to_string(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => column
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .to_string(),
        other => panic!("no fixture rendering for {other}"),
    }
}
