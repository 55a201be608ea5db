//! Type-2 slowly changing dimension history, kept by the host per key.
//!
//! A key's versions are: one opened by its earliest observation, then one per
//! explicit change after it. That is a function of the set of observations,
//! not of their order, so late and out-of-order events give the same
//! history. The stored table is the whole history; it is rewritten when a
//! batch brings observations, and read back on start.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, BooleanArray, BooleanBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::prelude::SessionContext;

use crate::runtime::contract::Scd2Spec;

pub const VALID_FROM: &str = "valid_from";
pub const VALID_TO: &str = "valid_to";
pub const IS_CURRENT: &str = "is_current";
/// `first_seen` or `change`: what opened the version (needed to rebuild).
pub const OPENED_BY: &str = "opened_by";

type Values = Vec<Option<String>>;

#[derive(Debug, Default, Clone)]
struct History {
    earliest: Option<(i64, Values)>,
    changes: BTreeMap<i64, Values>,
}

impl History {
    fn observe(&mut self, at: i64, values: Values, is_change: bool) {
        if is_change {
            self.changes
                .entry(at)
                .and_modify(|v| {
                    if values < *v {
                        *v = values.clone();
                    }
                })
                .or_insert_with(|| values.clone());
        }
        let earlier = match &self.earliest {
            None => true,
            Some((t, v)) => (at, &values) < (*t, v),
        };
        if earlier {
            self.earliest = Some((at, values));
        }
    }

    /// (valid_from, values, opened_by) in time order.
    fn versions(&self) -> Vec<(i64, &Values, &'static str)> {
        let Some((first_at, first_values)) = &self.earliest else {
            return Vec::new();
        };
        let opened = if self.changes.get(first_at) == Some(first_values) {
            "change"
        } else {
            "first_seen"
        };
        let mut out = vec![(*first_at, first_values, opened)];
        out.extend(
            self.changes
                .range(first_at + 1..)
                .map(|(at, v)| (*at, v, "change")),
        );
        out
    }
}

/// The history of one SCD2 table.
pub struct Scd2State {
    spec: Scd2Spec,
    key_field: Field,
    tracked_fields: Vec<Field>,
    keys: BTreeMap<String, History>,
}

impl Scd2State {
    pub fn new(spec: Scd2Spec, observation_schema: &Schema) -> Self {
        let field = |name: &str| {
            observation_schema
                .field_with_name(name)
                .cloned()
                .unwrap_or_else(|_| Field::new(name, DataType::Utf8, true))
        };
        Scd2State {
            key_field: field(&spec.key).with_nullable(false),
            tracked_fields: spec.tracked.iter().map(|c| field(c)).collect(),
            spec,
            keys: BTreeMap::new(),
        }
    }

    /// Key, tracked columns, then the version columns.
    pub fn stored_schema(&self) -> SchemaRef {
        let ts = sluice_plugin_sdk::schemas::timestamp_type();
        let mut fields = vec![self.key_field.clone()];
        fields.extend(self.tracked_fields.iter().cloned());
        fields.push(Field::new(VALID_FROM, ts.clone(), false));
        fields.push(Field::new(VALID_TO, ts, true));
        fields.push(Field::new(IS_CURRENT, DataType::Boolean, false));
        fields.push(Field::new(OPENED_BY, DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    }

    /// Adds a batch of observation rows.
    pub fn observe(&mut self, rows: &RecordBatch) -> Result<(), String> {
        let at = typed::<TimestampMicrosecondArray>(rows, &self.spec.at)?;
        let is_change = typed::<BooleanArray>(rows, &self.spec.is_change)?;
        self.ingest(rows, at, |i| is_change.is_valid(i) && is_change.value(i))
    }

    /// Records each row's key and tracked values as seen at `at`.
    fn ingest(
        &mut self,
        rows: &RecordBatch,
        at: &TimestampMicrosecondArray,
        is_change: impl Fn(usize) -> bool,
    ) -> Result<(), String> {
        let key = utf8(rows, &self.spec.key)?;
        let tracked: Vec<&StringArray> = self
            .spec
            .tracked
            .iter()
            .map(|c| utf8(rows, c))
            .collect::<Result<_, _>>()?;
        for i in 0..rows.num_rows() {
            if key.is_null(i) || at.is_null(i) {
                return Err(format!("row {i} has no key or time"));
            }
            let values: Values = tracked
                .iter()
                .map(|c| c.is_valid(i).then(|| c.value(i).to_string()))
                .collect();
            self.keys
                .entry(key.value(i).to_string())
                .or_default()
                .observe(at.value(i), values, is_change(i));
        }
        Ok(())
    }

    /// The full table content, ordered by key and valid_from.
    pub fn rows(&self) -> Result<RecordBatch, String> {
        let mut key = StringBuilder::new();
        let mut tracked: Vec<StringBuilder> = self
            .tracked_fields
            .iter()
            .map(|_| StringBuilder::new())
            .collect();
        let mut from = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut to = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        let mut current = BooleanBuilder::new();
        let mut opened_by = StringBuilder::new();
        for (k, history) in &self.keys {
            let versions = history.versions();
            for (i, (at, values, opened)) in versions.iter().enumerate() {
                key.append_value(k);
                for (builder, value) in tracked.iter_mut().zip(values.iter()) {
                    builder.append_option(value.as_deref());
                }
                from.append_value(*at);
                let next = versions.get(i + 1).map(|v| v.0);
                to.append_option(next);
                current.append_value(next.is_none());
                opened_by.append_value(*opened);
            }
        }
        let mut columns: Vec<Arc<dyn Array>> = vec![Arc::new(key.finish())];
        columns.extend(
            tracked
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as Arc<dyn Array>),
        );
        columns.push(Arc::new(from.finish()));
        columns.push(Arc::new(to.finish()));
        columns.push(Arc::new(current.finish()));
        columns.push(Arc::new(opened_by.finish()));
        RecordBatch::try_new(self.stored_schema(), columns).map_err(|e| e.to_string())
    }

    /// Rebuilds the history from the stored table registered as `table`.
    pub async fn restore(&mut self, ctx: &SessionContext, table: &str) -> Result<(), String> {
        let df = ctx
            .sql(&format!("SELECT * FROM \"{table}\""))
            .await
            .map_err(|e| e.to_string())?;
        let schema = self.stored_schema();
        for rows in df.collect().await.map_err(|e| e.to_string())? {
            // DataFusion may read strings back as views; go back to the stored types.
            let rows = crate::lake::conform(table, &rows, &schema).map_err(|e| e.to_string())?;
            self.restore_rows(&rows)?;
        }
        Ok(())
    }

    /// Stored versions replay as observations: the first of a key as a
    /// sighting, those opened by a change as changes.
    fn restore_rows(&mut self, rows: &RecordBatch) -> Result<(), String> {
        let from = typed::<TimestampMicrosecondArray>(rows, VALID_FROM)?;
        let opened = utf8(rows, OPENED_BY)?;
        self.ingest(rows, from, |i| opened.value(i) == "change")
    }
}

fn typed<'a, T: 'static>(rows: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    rows.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("column `{name}` is missing or has the wrong type"))
}

fn utf8<'a>(rows: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    typed::<StringArray>(rows, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(p: &str) -> Values {
        vec![Some(p.to_string())]
    }

    fn history_of(observations: &[(i64, &str, bool)]) -> Vec<(i64, String, &'static str)> {
        let mut h = History::default();
        for (at, p, change) in observations {
            h.observe(*at, plan(p), *change);
        }
        h.versions()
            .into_iter()
            .map(|(at, v, o)| (at, v[0].clone().unwrap(), o))
            .collect()
    }

    #[test]
    fn history_does_not_depend_on_arrival_order() {
        let obs = [
            (10, "free", false),
            (50, "pro", true),
            (30, "free", false),
            (70, "enterprise", true),
            (5, "free", false),
        ];
        let expected = vec![
            (5, "free".to_string(), "first_seen"),
            (50, "pro".into(), "change"),
            (70, "enterprise".into(), "change"),
        ];
        assert_eq!(history_of(&obs), expected);
        let mut reversed = obs;
        reversed.reverse();
        assert_eq!(history_of(&reversed), expected);
    }

    #[test]
    fn a_change_before_any_sighting_opens_the_first_version() {
        assert_eq!(
            history_of(&[(20, "pro", false), (10, "pro", true)]),
            vec![(10, "pro".to_string(), "change")]
        );
    }
}
