//! Typed access to output rows, and the common edit of a silver rule:
//! moving the rows a rule refuses from `silver_events` to `quarantine`.

use std::sync::Arc;

use arrow_array::builder::{StringBuilder, UInt32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt32Type};
use arrow_array::{BooleanArray, Int64Array, RecordBatch, StringArray, UInt32Array};

use crate::schemas::{INPUT_ROW, QUARANTINE, quarantine_output};
use crate::{TableRows, TransformError};

fn internal(e: impl std::fmt::Display) -> TransformError {
    TransformError::Internal(e.to_string())
}

fn column<'a>(
    rows: &'a RecordBatch,
    name: &str,
) -> Result<&'a arrow_array::ArrayRef, TransformError> {
    rows.column_by_name(name)
        .ok_or_else(|| internal(format!("no column `{name}`")))
}

/// A utf8 column by name (e.g. `feature` of `silver_events`).
pub fn str_column<'a>(
    rows: &'a RecordBatch,
    name: &str,
) -> Result<&'a StringArray, TransformError> {
    column(rows, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| internal(format!("column `{name}` is not utf8")))
}

/// An int64 column by name (e.g. `duration_ms`).
pub fn i64_column<'a>(rows: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, TransformError> {
    column(rows, name)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| internal(format!("column `{name}` is not int64")))
}

/// The `input_row` column of a silver output.
pub fn input_rows(rows: &RecordBatch) -> Result<&UInt32Array, TransformError> {
    column(rows, INPUT_ROW)?
        .as_primitive_opt::<UInt32Type>()
        .ok_or_else(|| internal("column `input_row` is not uint32"))
}

/// Moves the rows of `table` for which `refuse` is true to `quarantine`
/// with `reason` and `detail`, keeping every input row accounted for.
/// `refuse` has one entry per row of `table`.
pub fn quarantine_where(
    outputs: &mut Vec<TableRows>,
    table: &str,
    refuse: &[bool],
    reason: &str,
    detail: &str,
) -> Result<(), TransformError> {
    let Some(at) = outputs.iter().position(|(t, _)| t == table) else {
        return Ok(());
    };
    let rows = outputs[at].1.clone();
    if refuse.len() != rows.num_rows() {
        return Err(internal(format!(
            "{} verdicts for {} rows",
            refuse.len(),
            rows.num_rows()
        )));
    }
    let kept: BooleanArray = refuse.iter().map(|r| Some(!r)).collect();
    let moved_mask = BooleanArray::from(refuse.to_vec());
    outputs[at].1 = arrow_select::filter::filter_record_batch(&rows, &kept).map_err(internal)?;
    let moved = arrow_select::filter::filter_record_batch(&rows, &moved_mask).map_err(internal)?;
    let quarantined = quarantine_rows(input_rows(&moved)?, reason, detail)?;
    match outputs.iter_mut().find(|(t, _)| t == QUARANTINE) {
        Some((_, existing)) => {
            *existing = arrow_select::concat::concat_batches(
                &quarantine_output(),
                [&*existing, &quarantined],
            )
            .map_err(internal)?;
        }
        None => outputs.push((QUARANTINE.to_string(), quarantined)),
    }
    Ok(())
}

fn quarantine_rows(
    input_rows: &UInt32Array,
    reason: &str,
    detail: &str,
) -> Result<RecordBatch, TransformError> {
    let mut row = UInt32Builder::new();
    let mut reasons = StringBuilder::new();
    let mut details = StringBuilder::new();
    for r in input_rows.values() {
        row.append_value(*r);
        reasons.append_value(reason);
        details.append_value(detail);
    }
    RecordBatch::try_new(
        quarantine_output(),
        vec![
            Arc::new(row.finish()),
            Arc::new(reasons.finish()),
            Arc::new(details.finish()),
        ],
    )
    .map_err(internal)
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn refused_rows_move_to_quarantine_with_their_input_row() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(INPUT_ROW, DataType::UInt32, false),
            Field::new("feature", DataType::Utf8, true),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt32Array::from(vec![0, 1, 2])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
            ],
        )
        .unwrap();
        let mut outputs = vec![("silver_events".to_string(), rows)];
        quarantine_where(
            &mut outputs,
            "silver_events",
            &[false, true, false],
            "r",
            "d",
        )
        .unwrap();
        assert_eq!(outputs[0].1.num_rows(), 2);
        let q = &outputs[1].1;
        assert_eq!(outputs[1].0, QUARANTINE);
        assert_eq!(input_rows(q).unwrap().values().to_vec(), vec![1]);
        assert_eq!(str_column(q, "reason").unwrap().value(0), "r");
    }
}
