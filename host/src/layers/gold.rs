//! Gold as the host sees it: folds the gold plugin's rows into the star
//! schema by each table's declared write mode (merge, SCD2, derived), so gold
//! stays right when one key's events arrive in different batches.

mod scd2;

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::concat;
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::{self, Lake, LakeError, LakeTable};
use crate::runtime::contract::{DerivedSpec, PluginMeta, TableDecl, WriteMode};
pub use scd2::Scd2State;

/// A gold table, its declaration and (for SCD2) its in-memory history.
struct GoldTable {
    decl: TableDecl,
    table: LakeTable,
    scd2: Option<Scd2State>,
}

impl GoldTable {
    /// Writes this batch's rows by the table's mode (derived tables wait).
    async fn write_rows(
        &mut self,
        stage: &str,
        batch: i64,
        rows: &RecordBatch,
    ) -> Result<(), LakeError> {
        if rows.num_rows() == 0 {
            return Ok(());
        }
        match &self.decl.mode {
            WriteMode::Merge(spec) => {
                let ctx = SessionContext::new();
                self.table
                    .merge(stage, batch, rows.clone(), spec, &ctx)
                    .await?;
            }
            WriteMode::Append => {
                self.table.append(stage, batch, vec![rows.clone()]).await?;
            }
            WriteMode::Scd2(_) => {
                let name = &self.decl.name;
                let state = self.scd2.as_mut().expect("scd2 tables carry state");
                state.observe(rows).map_err(|e| other(name, e))?;
                let all = state.rows().map_err(|e| other(name, e))?;
                self.table.overwrite(stage, batch, vec![all]).await?;
            }
            WriteMode::Derived(_) => {}
        }
        Ok(())
    }
}

/// Every gold table the gold plugin declared.
pub struct GoldTables {
    tables: BTreeMap<String, GoldTable>,
}

impl GoldTables {
    /// Opens (creating if needed) each declared table and restores SCD2
    /// histories from what is stored.
    pub async fn open(lake: &Lake, meta: &PluginMeta) -> Result<GoldTables, LakeError> {
        check_derived(meta)
            .await
            .map_err(|message| LakeError::Other {
                table: meta.producer(),
                message,
            })?;
        let mut tables = BTreeMap::new();
        for decl in &meta.outputs {
            let (stored, scd2) = match &decl.mode {
                WriteMode::Scd2(spec) => {
                    let state = Scd2State::new(spec.clone(), &decl.schema);
                    (state.stored_schema(), Some(state))
                }
                _ => (decl.schema.clone(), None),
            };
            let table = lake
                .open_or_create(&decl.name, &decl.description, &stored, &decl.partition_by)
                .await?;
            let scd2 = match scd2 {
                Some(mut state) => {
                    let ctx = SessionContext::new();
                    lake::register(&ctx, &decl.name, table.delta()).await?;
                    state
                        .restore(&ctx, &decl.name)
                        .await
                        .map_err(|e| LakeError::Other {
                            table: decl.name.clone(),
                            message: e,
                        })?;
                    Some(state)
                }
                None => None,
            };
            tables.insert(
                decl.name.clone(),
                GoldTable {
                    decl: decl.clone(),
                    table,
                    scd2,
                },
            );
        }
        Ok(GoldTables { tables })
    }

    /// The highest step any gold table committed as `stage`.
    pub async fn last_committed(&self, stage: &str) -> Result<Option<i64>, LakeError> {
        let mut last = None;
        for t in self.tables.values() {
            last = last.max(t.table.committed(stage).await?);
        }
        Ok(last)
    }

    /// Writes one batch of gold rows: the merged, appended and SCD2 tables
    /// in parallel (they are independent), then the derived tables over the
    /// merged results. Each table write is skipped if that table already
    /// holds this batch.
    pub async fn write(
        &mut self,
        stage: &'static str,
        batch: i64,
        outputs: BTreeMap<String, RecordBatch>,
    ) -> Result<(), LakeError> {
        self.write_stored(stage, batch, &outputs).await?;
        self.write_derived(stage, batch, &outputs).await
    }

    /// The merged, appended and SCD2 tables of one batch, in parallel (they
    /// are independent); derived tables come after, from their results.
    pub async fn write_stored(
        &mut self,
        stage: &'static str,
        batch: i64,
        outputs: &BTreeMap<String, RecordBatch>,
    ) -> Result<(), LakeError> {
        let mut tasks = Vec::new();
        for (name, rows) in outputs {
            let Some(mut t) = self.tables.remove(name) else {
                continue;
            };
            let rows = rows.clone();
            tasks.push(tokio::spawn(async move {
                let result = t.write_rows(stage, batch, &rows).await;
                (t, result)
            }));
        }
        let mut first_error = None;
        for task in tasks {
            let (t, result) = task.await.map_err(|e| other("gold", e))?;
            self.tables.insert(t.decl.name.clone(), t);
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Replaces every table's content with the same table of `rebuilt` (gold
    /// rebuilt elsewhere), one commit per table. Returns rows per table.
    pub async fn replace_from(
        &mut self,
        rebuilt: &GoldTables,
    ) -> Result<BTreeMap<String, usize>, LakeError> {
        let ctx = SessionContext::new();
        let mut counts = BTreeMap::new();
        for (name, t) in &mut self.tables {
            let Some(source) = rebuilt.tables.get(name) else {
                continue;
            };
            lake::register(&ctx, name, source.table.delta()).await?;
            let rows = ctx
                .sql(&format!("SELECT * FROM \"{name}\""))
                .await
                .map_err(|e| other(name, e))?
                .collect()
                .await
                .map_err(|e| other(name, e))?;
            let schema = t.table.schema().clone();
            let mut conformed = Vec::with_capacity(rows.len().max(1));
            for b in &rows {
                conformed.push(crate::lake::conform(name, b, &schema)?);
            }
            if conformed.is_empty() {
                conformed.push(RecordBatch::new_empty(schema));
            }
            counts.insert(name.clone(), conformed.iter().map(|b| b.num_rows()).sum());
            t.table.replace_all(conformed).await?;
        }
        Ok(counts)
    }

    /// The derived tables, recomputed over the merged ones.
    pub async fn write_derived(
        &mut self,
        stage: &str,
        batch: i64,
        outputs: &BTreeMap<String, RecordBatch>,
    ) -> Result<(), LakeError> {
        let derived: Vec<(String, DerivedSpec)> = self
            .tables
            .values()
            .filter_map(|t| match &t.decl.mode {
                WriteMode::Derived(spec) => Some((t.decl.name.clone(), spec.clone())),
                _ => None,
            })
            .collect();
        if derived.is_empty() {
            return Ok(());
        }
        let ctx = SessionContext::new();
        for (name, t) in &self.tables {
            if !matches!(t.decl.mode, WriteMode::Derived(_)) {
                lake::register(&ctx, name, t.table.delta()).await?;
            }
        }
        for (name, spec) in derived {
            let Some(scope) = scope_values(outputs, &spec.scope).map_err(|e| other(&name, e))?
            else {
                continue;
            };
            let rows = recompute(&ctx, &spec, scope)
                .await
                .map_err(|e| other(&name, e))?;
            let t = self.tables.get_mut(&name).expect("listed above");
            let rows = crate::lake::conform(&name, &rows, &t.decl.schema)?;
            if rows.num_rows() > 0 {
                t.table.upsert(stage, batch, rows, &spec.keys, &ctx).await?;
            }
        }
        Ok(())
    }
}

fn other(table: &str, message: impl std::fmt::Display) -> LakeError {
    LakeError::Other {
        table: table.to_string(),
        message: message.to_string(),
    }
}

/// Distinct values of `scope` across this batch's outputs, as one column.
fn scope_values(
    outputs: &BTreeMap<String, RecordBatch>,
    scope: &str,
) -> Result<Option<RecordBatch>, String> {
    let columns: Vec<_> = outputs
        .values()
        .filter_map(|rows| rows.column_by_name(scope).cloned())
        .collect();
    if columns.is_empty() || columns.iter().all(|c| c.is_empty()) {
        return Ok(None);
    }
    let refs: Vec<&dyn deltalake::arrow::array::Array> =
        columns.iter().map(|c| c.as_ref()).collect();
    let all = concat(&refs).map_err(|e| e.to_string())?;
    let field = deltalake::arrow::datatypes::Field::new(scope, all.data_type().clone(), true);
    let schema = Arc::new(deltalake::arrow::datatypes::Schema::new(vec![field]));
    RecordBatch::try_new(schema, vec![all])
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Runs the derived query restricted to the touched scope values.
/// Plans each derived table's SQL over empty tables of the declared schemas
/// and checks it yields the declared columns: a plugin whose derived SQL
/// cannot run is refused when it is loaded or deployed, not found out at a
/// step (where it would fail every step, and every restart, again).
pub async fn check_derived(meta: &PluginMeta) -> Result<(), String> {
    let ctx = SessionContext::new();
    for decl in &meta.outputs {
        let schema = match &decl.mode {
            WriteMode::Derived(_) => continue,
            WriteMode::Scd2(spec) => Scd2State::new(spec.clone(), &decl.schema).stored_schema(),
            _ => decl.schema.clone(),
        };
        let empty = deltalake::datafusion::datasource::MemTable::try_new(schema, vec![vec![]])
            .map_err(|e| format!("table `{}`: {e}", decl.name))?;
        ctx.register_table(decl.name.as_str(), Arc::new(empty))
            .map_err(|e| format!("table `{}`: {e}", decl.name))?;
    }
    for decl in &meta.outputs {
        let WriteMode::Derived(spec) = &decl.mode else {
            continue;
        };
        let planned = ctx
            .sql(&spec.sql)
            .await
            .map_err(|e| format!("derived table `{}`: its SQL does not plan: {e}", decl.name))?;
        let produced = planned.schema().as_arrow().clone();
        for field in decl.schema.fields() {
            let column = produced.field_with_name(field.name()).map_err(|_| {
                format!(
                    "derived table `{}`: its SQL yields no column `{}`",
                    decl.name,
                    field.name()
                )
            })?;
            if !deltalake::arrow::compute::can_cast_types(column.data_type(), field.data_type()) {
                return Err(format!(
                    "derived table `{}`: column `{}` is {}, not castable to the declared {}",
                    decl.name,
                    field.name(),
                    column.data_type(),
                    field.data_type()
                ));
            }
        }
    }
    Ok(())
}

async fn recompute(
    ctx: &SessionContext,
    spec: &DerivedSpec,
    scope: RecordBatch,
) -> Result<RecordBatch, String> {
    ctx.deregister_table("__scope").map_err(|e| e.to_string())?;
    ctx.register_batch("__scope", scope)
        .map_err(|e| e.to_string())?;
    let column = format!("\"{}\"", spec.scope.replace('"', "\"\""));
    let sql = format!(
        "SELECT * FROM ({}) AS derived WHERE {column} IN (SELECT DISTINCT {column} FROM __scope)",
        spec.sql
    );
    let df = ctx
        .sql(&sql)
        .await
        .map_err(|e| format!("derived query: {e}"))?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df
        .collect()
        .await
        .map_err(|e| format!("derived query: {e}"))?;
    deltalake::arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Layer;
    use crate::runtime::contract::{Measure, MergeOp, MergeSpec, RequestedLimits};
    use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

    fn meta_with_derived(sql: &str) -> PluginMeta {
        let usage = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Int32, false),
            Field::new("events", DataType::Int64, false),
        ]));
        let daily = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Int32, false),
            Field::new("total", DataType::Int64, false),
        ]));
        let table = |name: &str, schema: &SchemaRef, mode: WriteMode| TableDecl {
            name: name.into(),
            description: String::new(),
            schema: schema.clone(),
            partition_by: Vec::new(),
            mode,
        };
        PluginMeta {
            name: "gold".into(),
            version: "1".into(),
            layer: Layer::Gold,
            description: String::new(),
            outputs: vec![
                table(
                    "usage",
                    &usage,
                    WriteMode::Merge(MergeSpec {
                        keys: vec!["day".into()],
                        measures: vec![Measure {
                            column: "events".into(),
                            op: MergeOp::Sum,
                        }],
                        order_by: None,
                    }),
                ),
                table(
                    "daily",
                    &daily,
                    WriteMode::Derived(DerivedSpec {
                        sql: sql.into(),
                        keys: vec!["day".into()],
                        scope: "day".into(),
                    }),
                ),
            ],
            requested: RequestedLimits::default(),
        }
    }

    #[tokio::test]
    async fn derived_sql_that_cannot_run_is_refused_naming_the_table() {
        let good = "SELECT day, SUM(events) AS total FROM usage GROUP BY day";
        assert_eq!(check_derived(&meta_with_derived(good)).await, Ok(()));
        for (sql, expected) in [
            (
                "SELECT day, SUM(events) AS total FROM nowhere GROUP BY day",
                "does not plan",
            ),
            ("SELECT day FROM usage", "no column `total`"),
            ("SELEKT 1", "does not plan"),
        ] {
            let err = check_derived(&meta_with_derived(sql)).await.unwrap_err();
            assert!(
                err.contains("`daily`") && err.contains(expected),
                "{sql}: {err}"
            );
        }
    }
}
