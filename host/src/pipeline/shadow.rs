//! Shadow runs: a candidate plugin transforms the same live batches as the
//! active one, its outputs are compared row by row and never written.

use std::collections::{BTreeMap, HashMap};

use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};

use crate::runtime::{PluginFailure, PluginMeta, WriteMode};
use sluice_plugin_sdk::schemas::INPUT_ROW;

/// How one output table of the candidate differs from the active plugin's.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDiff {
    /// Rows only the candidate emits.
    pub added: u64,
    /// Rows only the active plugin emits.
    pub removed: u64,
    /// Rows with the same key whose values differ.
    pub changed: u64,
    pub unchanged: u64,
}

/// Everything a shadow run has seen so far.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ShadowReport {
    pub active: String,
    pub candidate: String,
    /// Batches both plugins transformed.
    pub batches: u64,
    pub tables: BTreeMap<String, TableDiff>,
    /// Quarantine rows per reason the active plugin emitted.
    pub active_quarantine: BTreeMap<String, u64>,
    /// Quarantine rows per reason the candidate would have emitted.
    pub candidate_quarantine: BTreeMap<String, u64>,
    /// Batches the candidate failed on, per failure reason.
    pub candidate_failures: BTreeMap<String, u64>,
}

type Outputs = BTreeMap<String, RecordBatch>;

impl ShadowReport {
    pub fn new(active: &PluginMeta, candidate: &PluginMeta) -> ShadowReport {
        ShadowReport {
            active: active.producer(),
            candidate: candidate.producer(),
            ..Default::default()
        }
    }

    /// Adds one batch: both plugins' outputs on the same input. A batch the
    /// active plugin failed on is not comparable and is skipped.
    pub fn observe(
        &mut self,
        meta: &PluginMeta,
        active: &Result<Outputs, PluginFailure>,
        candidate: &Result<Outputs, PluginFailure>,
    ) {
        let Ok(active) = active else { return };
        self.batches += 1;
        let candidate = match candidate {
            Ok(c) => c,
            Err(failure) => {
                *self
                    .candidate_failures
                    .entry(failure.reason().to_string())
                    .or_default() += 1;
                return;
            }
        };
        count_reasons(active, &mut self.active_quarantine);
        count_reasons(candidate, &mut self.candidate_quarantine);
        let names: std::collections::BTreeSet<&String> =
            active.keys().chain(candidate.keys()).collect();
        for name in names {
            let keys = diff_keys(meta, name);
            let diff = diff_rows(active.get(name), candidate.get(name), &keys);
            let total = self.tables.entry(name.clone()).or_default();
            total.added += diff.added;
            total.removed += diff.removed;
            total.changed += diff.changed;
            total.unchanged += diff.unchanged;
        }
    }
}

fn count_reasons(outputs: &Outputs, into: &mut BTreeMap<String, u64>) {
    let Some(rows) = outputs.get(sluice_plugin_sdk::schemas::QUARANTINE) else {
        return;
    };
    let Some(reasons) = rows.column_by_name("reason") else {
        return;
    };
    for reason in rendered(reasons.as_ref()) {
        *into.entry(reason).or_default() += 1;
    }
}

/// The columns that identify "the same row" in a table: the input row for
/// silver outputs, the grain for gold tables, the position otherwise.
fn diff_keys(meta: &PluginMeta, table: &str) -> Vec<String> {
    let Some(decl) = meta.output(table) else {
        return vec![INPUT_ROW.to_string()];
    };
    if decl.schema.field_with_name(INPUT_ROW).is_ok() {
        return vec![INPUT_ROW.to_string()];
    }
    match &decl.mode {
        WriteMode::Merge(spec) => spec.keys.clone(),
        WriteMode::Scd2(spec) => vec![spec.key.clone(), spec.at.clone()],
        WriteMode::Derived(spec) => spec.keys.clone(),
        WriteMode::Append => Vec::new(),
    }
}

/// Row-by-row difference of two outputs of one table. Rows are matched by
/// `keys` (by position when empty); several rows may share a key (gold
/// plugins emit unfolded rows), so each key holds a multiset of rows.
pub fn diff_rows(
    active: Option<&RecordBatch>,
    candidate: Option<&RecordBatch>,
    keys: &[String],
) -> TableDiff {
    let (a, c) = (keyed_rows(active, keys), keyed_rows(candidate, keys));
    let mut diff = TableDiff::default();
    let all_keys: std::collections::BTreeSet<&String> = a.keys().chain(c.keys()).collect();
    for key in all_keys {
        let mut left = a.get(key).cloned().unwrap_or_default();
        let mut right = c.get(key).cloned().unwrap_or_default();
        left.sort();
        right.sort();
        let same = common_count(&left, &right);
        diff.unchanged += same as u64;
        let (only_left, only_right) = (left.len() - same, right.len() - same);
        let changed = only_left.min(only_right);
        diff.changed += changed as u64;
        diff.removed += (only_left - changed) as u64;
        diff.added += (only_right - changed) as u64;
    }
    diff
}

/// Size of the multiset intersection of two sorted lists.
fn common_count(left: &[String], right: &[String]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < left.len() && j < right.len() {
        match left[i].cmp(&right[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Each row rendered as text, grouped by its key rendered as text.
fn keyed_rows(rows: Option<&RecordBatch>, keys: &[String]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let Some(rows) = rows else { return out };
    let columns: Vec<Vec<String>> = rows.columns().iter().map(|c| rendered(c)).collect();
    let key_columns: Vec<usize> = keys
        .iter()
        .filter_map(|k| rows.schema().index_of(k).ok())
        .collect();
    for i in 0..rows.num_rows() {
        let key = if key_columns.is_empty() {
            i.to_string()
        } else {
            join(key_columns.iter().map(|&c| columns[c][i].as_str()))
        };
        let row = join(columns.iter().map(|c| c[i].as_str()));
        out.entry(key).or_default().push(row);
    }
    out
}

fn join<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values.collect::<Vec<_>>().join("\u{1f}")
}

fn rendered(column: &dyn Array) -> Vec<String> {
    let options = FormatOptions::default().with_null("\u{0}");
    match ArrayFormatter::try_new(column, &options) {
        Ok(f) => (0..column.len()).map(|i| f.value(i).to_string()).collect(),
        Err(_) => vec![String::new(); column.len()],
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(keys: &[&str], values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn counts_added_removed_changed_by_key() {
        let active = rows(&["a", "b", "c", "c"], &[1, 2, 3, 3]);
        let candidate = rows(&["a", "b", "c", "d"], &[1, 20, 3, 4]);
        let diff = diff_rows(Some(&active), Some(&candidate), &["k".into()]);
        // a same; b changed; one c same, the other c gone; d new.
        assert_eq!(
            diff,
            TableDiff {
                added: 1,
                removed: 1,
                changed: 1,
                unchanged: 2
            }
        );
    }

    #[test]
    fn positional_without_keys_and_missing_tables() {
        let active = rows(&["a", "b"], &[1, 2]);
        let candidate = rows(&["a", "x"], &[1, 2]);
        let diff = diff_rows(Some(&active), Some(&candidate), &[]);
        assert_eq!((diff.unchanged, diff.changed), (1, 1));
        let gone = diff_rows(Some(&active), None, &[]);
        assert_eq!((gone.removed, gone.added), (2, 0));
    }
}
