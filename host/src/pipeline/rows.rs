//! Row plumbing between layers: checks on a silver plugin's outputs, and
//! quarantine rows for plugin-rejected events or whole failed batches.

use std::collections::BTreeMap;

use anyhow::Context as _;
use deltalake::arrow::array::{RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::datatypes::SchemaRef;
use sluice_plugin_sdk::schemas::INPUT_ROW;

use crate::layers::bronze::RawColumns;
use crate::layers::quarantine::{self, QuarantineRows};
use crate::layers::silver;
use crate::runtime::{Layer, LoadedPlugin, PluginFailure};

/// Silver output must account for every input row, in silver or quarantine.
pub(super) fn check_silver_coverage(
    mut out: BTreeMap<String, RecordBatch>,
    inputs: usize,
    plugin: &LoadedPlugin,
) -> Result<(RecordBatch, RecordBatch), PluginFailure> {
    let silver_rows = out.remove(silver::TABLE);
    let q_rows = out.remove(quarantine::TABLE);
    let mut seen = vec![false; inputs];
    for rows in [&silver_rows, &q_rows].into_iter().flatten() {
        let col = rows
            .column_by_name(INPUT_ROW)
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
            .ok_or_else(|| PluginFailure::BadOutput("missing input_row".into()))?;
        for r in col.values() {
            let slot = seen.get_mut(*r as usize).ok_or_else(|| {
                PluginFailure::BadOutput(format!("input_row {r} is outside the batch of {inputs}"))
            })?;
            *slot = true;
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(PluginFailure::BadOutput(format!(
            "input row {missing} is neither in silver_events nor in quarantine"
        )));
    }
    let empty = |schema: SchemaRef| RecordBatch::new_empty(schema);
    Ok((
        silver_rows.unwrap_or_else(|| {
            empty(
                plugin
                    .meta()
                    .output(silver::TABLE)
                    .expect("checked at load")
                    .schema
                    .clone(),
            )
        }),
        q_rows.unwrap_or_else(|| empty(sluice_plugin_sdk::schemas::quarantine_output())),
    ))
}

pub(super) fn push_plugin_quarantine(
    q: &mut QuarantineRows,
    rows: &RecordBatch,
    raw: &RawColumns<'_>,
    producer: &str,
) -> anyhow::Result<()> {
    if rows.num_rows() == 0 {
        return Ok(());
    }
    let input_row = column_u32(rows, INPUT_ROW)?;
    let reason = rows
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .context("quarantine.reason")?;
    let detail = rows
        .column(2)
        .as_any()
        .downcast_ref::<StringArray>()
        .context("quarantine.detail")?;
    for (i, row) in input_row.iter().enumerate() {
        q.push(
            Layer::Silver,
            reason.value(i),
            detail.value(i),
            raw.row(*row as usize),
            producer,
        );
    }
    Ok(())
}

pub(super) fn quarantine_all(
    input: &RecordBatch,
    batch: i64,
    now: i64,
    layer: Layer,
    failure: &PluginFailure,
    producer: &str,
) -> anyhow::Result<RecordBatch> {
    let raw = RawColumns::new(input).map_err(anyhow::Error::msg)?;
    let mut q = QuarantineRows::new(batch, now);
    let detail = failure.to_string();
    for i in 0..raw.len() {
        q.push(layer, failure.reason(), &detail, raw.row(i), producer);
    }
    Ok(q.finish())
}

pub(super) fn column_u32(rows: &RecordBatch, name: &str) -> anyhow::Result<Vec<u32>> {
    if rows.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let col = rows
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
        .with_context(|| format!("column `{name}`"))?;
    Ok(col.values().to_vec())
}
