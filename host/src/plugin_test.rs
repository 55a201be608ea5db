//! `sluice plugin test`: runs one plugin in isolation on fixture events and
//! compares its outputs, row by row, with an expectation file.
//!
//! Fixtures are raw event lines for every layer; the host builds the layer's
//! input the way the pipeline would (embedded upstream plugins, host dedup),
//! with a fixed ingest time so outputs are reproducible.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use deltalake::arrow::array::{
    Array, BinaryArray, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use serde_json::{Map, Value, json};

use crate::layers::bronze::{self, RawColumns};
use crate::layers::silver::{self, DedupState};
use crate::runtime::{Layer, Limits, LoadedPlugin, Runtime, embedded};
use crate::sources::RawRecord;

/// Ingest time given to fixture records: 2026-01-01T00:00:00Z.
pub const FIXTURE_INGEST_MICROS: i64 = 1_767_225_600_000_000;
/// Lateness used when building gold inputs from fixtures.
const FIXTURE_LATENESS_MICROS: i64 = 3_600 * 1_000_000;

/// Reads fixture lines (non-blank) as raw records.
pub fn read_fixtures(path: &Path) -> anyhow::Result<Vec<RawRecord>> {
    let text =
        std::fs::read(path).with_context(|| format!("reading fixtures {}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("fixtures");
    Ok(fixture_records(name, &text))
}

/// Fixture text (one raw event per non-blank line) as raw records.
pub fn fixture_records(name: &str, text: &[u8]) -> Vec<RawRecord> {
    let name: Arc<str> = Arc::from(name);
    let source: Arc<str> = Arc::from("fixture");
    text.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| RawRecord {
            payload: Bytes::copy_from_slice(line),
            source: source.clone(),
            partition: name.clone(),
            offset: i as i64 + 1,
        })
        .collect()
}

/// Builds what `layer`'s plugin would receive for these records.
pub fn layer_input(
    runtime: &Runtime,
    layer: Layer,
    records: &[RawRecord],
) -> anyhow::Result<RecordBatch> {
    let raw = bronze::raw_input(records, FIXTURE_INGEST_MICROS);
    if layer == Layer::Bronze {
        return Ok(raw);
    }
    let upstream = |l: Layer| runtime.load(embedded::default_plugin(l), Limits::default());
    let bronze_plugin = upstream(Layer::Bronze)?;
    let mut out = bronze_plugin.transform(&raw)?;
    let rows = out
        .remove(bronze::TABLE)
        .context("bronze plugin emitted no bronze_events")?;
    let bronze_rows = bronze::to_stored(&rows, 1, &bronze_plugin.meta().producer());
    if layer == Layer::Silver {
        return Ok(bronze_rows);
    }
    let silver_plugin = upstream(Layer::Silver)?;
    let mut out = silver_plugin.transform(&bronze_rows)?;
    let silver_rows = out
        .remove(silver::TABLE)
        .context("silver plugin emitted no silver_events")?;
    // Fixture event times are unrelated to the fixed ingest time: no bound.
    let mut dedup = DedupState::new(FIXTURE_LATENESS_MICROS, i64::MAX);
    let input = RawColumns::new(&bronze_rows).map_err(anyhow::Error::msg)?;
    let (accepted, _) =
        silver::deduplicate(&mut dedup, &silver_rows, &input).map_err(anyhow::Error::msg)?;
    silver::to_stored(&accepted, &bronze_rows, &silver_plugin.meta().producer())
        .map_err(anyhow::Error::msg)
}

/// Runs the plugin on the fixtures; returns its outputs as expectation rows.
pub fn run(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    fixtures: &Path,
) -> anyhow::Result<Vec<Value>> {
    run_records(runtime, plugin, &read_fixtures(fixtures)?)
}

/// Runs the plugin on fixture records; returns its outputs as expectation rows.
pub fn run_records(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    records: &[RawRecord],
) -> anyhow::Result<Vec<Value>> {
    let input = layer_input(runtime, plugin.meta().layer, records)?;
    let outputs = plugin.transform(&input)?;
    Ok(rows_as_json(&outputs))
}

/// `{"table": .., "row": {..}}` per output row, tables in name order.
pub fn rows_as_json(outputs: &BTreeMap<String, RecordBatch>) -> Vec<Value> {
    let mut rows = Vec::new();
    for (table, batch) in outputs {
        for row in row_maps(batch) {
            rows.push(json!({"table": table, "row": row}));
        }
    }
    rows
}

/// Each row of `batch` as a JSON object, in the expectation format.
pub fn row_maps(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    (0..batch.num_rows())
        .map(|i| {
            batch
                .schema()
                .fields()
                .iter()
                .zip(batch.columns())
                .map(|(field, column)| (field.name().clone(), cell(column.as_ref(), i)))
                .collect()
        })
        .collect()
}

/// One value in the expectation format: timestamps as integer microseconds,
/// dates as integer days, binary as (lossy) UTF-8 text.
fn cell(column: &dyn Array, i: usize) -> Value {
    if column.is_null(i) {
        return Value::Null;
    }
    let any = column.as_any();
    macro_rules! as_json {
        ($t:ty) => {
            any.downcast_ref::<$t>().map(|a| json!(a.value(i)))
        };
    }
    let value = match column.data_type() {
        DataType::Utf8 => as_json!(StringArray),
        DataType::Int64 => as_json!(Int64Array),
        DataType::Int32 => as_json!(Int32Array),
        DataType::UInt32 => as_json!(UInt32Array),
        DataType::Float64 => as_json!(Float64Array),
        DataType::Boolean => as_json!(BooleanArray),
        DataType::Date32 => as_json!(Date32Array),
        DataType::Timestamp(TimeUnit::Microsecond, _) => as_json!(TimestampMicrosecondArray),
        // Readers hand back dictionary, view and large variants; show them plain.
        DataType::Dictionary(_, value_type) => return cell_as(column, i, value_type),
        DataType::Utf8View | DataType::LargeUtf8 => return cell_as(column, i, &DataType::Utf8),
        DataType::BinaryView | DataType::LargeBinary => {
            return cell_as(column, i, &DataType::Binary);
        }
        DataType::Binary => any
            .downcast_ref::<BinaryArray>()
            .map(|a| json!(String::from_utf8_lossy(a.value(i)))),
        _ => None,
    };
    value.unwrap_or_else(|| json!(format!("{:?}", column.slice(i, 1))))
}

fn cell_as(column: &dyn Array, i: usize, plain: &DataType) -> Value {
    deltalake::arrow::compute::cast(&column.slice(i, 1), plain)
        .map(|plain| cell(plain.as_ref(), 0))
        .unwrap_or(Value::Null)
}

/// Reads an expectation file (one JSON object per line).
pub fn read_expected(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_expected(&path.display().to_string(), &text)
}

/// Parses expectation text (one JSON object per line); `name` is for errors.
pub fn parse_expected(name: &str, text: &str) -> anyhow::Result<Vec<Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{name}:{}", i + 1)))
        .collect()
}

/// Human-readable differences between actual and expected rows (empty when
/// they match). Rows are compared per table, in order.
pub fn differences(actual: &[Value], expected: &[Value]) -> Vec<String> {
    let by_table = |rows: &[Value]| {
        let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in rows {
            let table = r["table"].as_str().unwrap_or("?").to_string();
            map.entry(table).or_default().push(r["row"].clone());
        }
        map
    };
    let (actual, expected) = (by_table(actual), by_table(expected));
    let mut diffs = Vec::new();
    for table in actual
        .keys()
        .chain(expected.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (a, e) = (
            actual.get(table).map(Vec::as_slice).unwrap_or_default(),
            expected.get(table).map(Vec::as_slice).unwrap_or_default(),
        );
        if a.len() != e.len() {
            diffs.push(format!("{table}: {} rows, expected {}", a.len(), e.len()));
        }
        for (i, (x, y)) in a.iter().zip(e).enumerate() {
            if x != y {
                diffs.push(format!("{table} row {i}:\n  got      {x}\n  expected {y}"));
            }
        }
    }
    diffs
}
