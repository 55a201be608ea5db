//! Merge writes: fold a batch's rows by grain keys, then MERGE them into the
//! Delta table with the per-measure operation the plugin declared.

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::cast;
use deltalake::datafusion::common::Column;
use deltalake::datafusion::logical_expr::{Expr, when};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::CommitProperties;

use super::{LakeError, Result, other_err};

/// How a measure folds rows that share the grain keys (the WIT's
/// `merge-op`, which the host's contract maps onto this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOp {
    Sum,
    Min,
    Max,
    Any,
    First,
}

/// One measure column and how it folds.
#[derive(Debug, Clone)]
pub struct Measure {
    pub column: String,
    pub op: MergeOp,
}

/// A merge table's grain (`keys`) and measures; `order_by` decides `First`.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    pub keys: Vec<String>,
    pub measures: Vec<Measure>,
    pub order_by: Option<String>,
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQL folding rows of `input` that share keys, as the measures declare.
pub fn merge_plan_sql(input: &str, spec: &MergeSpec) -> String {
    let keys: Vec<String> = spec.keys.iter().map(|k| quoted(k)).collect();
    let mut select = keys.clone();
    for m in &spec.measures {
        let c = quoted(&m.column);
        let agg = match m.op {
            MergeOp::Sum => format!("SUM({c})"),
            MergeOp::Min | MergeOp::Any => format!("MIN({c})"),
            MergeOp::Max => format!("MAX({c})"),
            MergeOp::First => {
                let order = quoted(spec.order_by.as_deref().unwrap_or(&m.column));
                format!("FIRST_VALUE({c} ORDER BY {order} ASC NULLS LAST, {c} ASC NULLS LAST)")
            }
        };
        select.push(format!("{agg} AS {c}"));
    }
    format!(
        "SELECT {} FROM {} GROUP BY {}",
        select.join(", "),
        quoted(input),
        keys.join(", ")
    )
}

/// Folds rows sharing keys within one batch, keeping the table's schema.
async fn fold(table: &str, rows: RecordBatch, spec: &MergeSpec) -> Result<RecordBatch> {
    let schema = rows.schema();
    let ctx = SessionContext::new();
    ctx.register_batch("batch_rows", rows)
        .map_err(|e| other_err(table, e))?;
    let df = ctx
        .sql(&merge_plan_sql("batch_rows", spec))
        .await
        .map_err(|e| other_err(table, e))?;
    let folded_schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| other_err(table, e))?;
    let folded = deltalake::arrow::compute::concat_batches(&folded_schema, &batches)
        .map_err(|e| other_err(table, e))?;
    conform(table, &folded, &schema)
}

/// Casts columns by name to `schema` (aggregates may widen or relax nullability).
pub fn conform(
    table: &str,
    batch: &RecordBatch,
    schema: &deltalake::arrow::datatypes::SchemaRef,
) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| other_err(table, format!("missing column `{}`", field.name())))?;
            cast(column, field.data_type()).map_err(|e| other_err(table, e))
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| other_err(table, e))
}

fn target(c: &str) -> Expr {
    Expr::Column(Column::new(Some("target"), c))
}

fn source(c: &str) -> Expr {
    Expr::Column(Column::new(Some("source"), c))
}

fn key_predicate(keys: &[String]) -> Expr {
    keys.iter()
        .map(|k| target(k).eq(source(k)))
        .reduce(Expr::and)
        .expect("a merge spec has at least one key")
}

/// The expression a matched row's measure takes.
fn update_expr(
    op: MergeOp,
    column: &str,
    order_by: Option<&str>,
) -> std::result::Result<Expr, String> {
    let (t, s) = (target(column), source(column));
    let take_source_if = |cond: Expr| {
        when(cond, s.clone())
            .otherwise(t.clone())
            .map_err(|e| e.to_string())
    };
    match op {
        MergeOp::Sum => Ok(t.clone() + s.clone()),
        MergeOp::Min => take_source_if(t.clone().is_null().or(s.clone().lt(t.clone()))),
        MergeOp::Max => take_source_if(t.clone().is_null().or(s.clone().gt(t.clone()))),
        MergeOp::Any => take_source_if(t.clone().is_null()),
        MergeOp::First => {
            let o = order_by.ok_or("`first` needs order-by")?;
            let earlier = source(o).lt(target(o));
            let tie = source(o).eq(target(o)).and(s.clone().lt(t.clone()));
            take_source_if(target(o).is_null().or(earlier).or(tie))
        }
    }
}

/// Folds `rows` and merges them into `table` as one commit.
pub(super) async fn merge_into(
    table: DeltaTable,
    name: &str,
    rows: RecordBatch,
    spec: &MergeSpec,
    ctx: &SessionContext,
    commit: CommitProperties,
) -> Result<DeltaTable> {
    let rows = fold(name, rows, spec).await?;
    let source_df = ctx.read_batch(rows).map_err(|e| other_err(name, e))?;
    let mut updates = Vec::with_capacity(spec.measures.len());
    for m in &spec.measures {
        let expr = update_expr(m.op, &m.column, spec.order_by.as_deref())
            .map_err(|e| other_err(name, e))?;
        updates.push((m.column.clone(), expr));
    }
    let columns: Vec<String> = spec
        .keys
        .iter()
        .cloned()
        .chain(spec.measures.iter().map(|m| m.column.clone()))
        .collect();
    run_merge(
        table,
        name,
        source_df,
        key_predicate(&spec.keys),
        updates,
        columns,
        commit,
    )
    .await
}

/// Merges precomputed rows: matched rows take every source column.
pub(super) async fn upsert(
    table: DeltaTable,
    name: &str,
    rows: RecordBatch,
    keys: &[String],
    ctx: &SessionContext,
    commit: CommitProperties,
) -> Result<DeltaTable> {
    let columns: Vec<String> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let updates = columns
        .iter()
        .filter(|c| !keys.contains(c))
        .map(|c| (c.clone(), source(c)))
        .collect();
    let source_df = ctx.read_batch(rows).map_err(|e| other_err(name, e))?;
    run_merge(
        table,
        name,
        source_df,
        key_predicate(keys),
        updates,
        columns,
        commit,
    )
    .await
}

async fn run_merge(
    table: DeltaTable,
    name: &str,
    source_df: deltalake::datafusion::prelude::DataFrame,
    predicate: Expr,
    updates: Vec<(String, Expr)>,
    columns: Vec<String>,
    commit: CommitProperties,
) -> Result<DeltaTable> {
    let delta_err = |source| LakeError::Delta {
        table: name.to_string(),
        source: Box::new(source),
    };
    let (table, _metrics) = table
        .merge(source_df, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_commit_properties(commit)
        .when_matched_update(|mut u| {
            for (column, expr) in updates {
                u = u.update(column.as_str(), expr);
            }
            u
        })
        .map_err(delta_err)?
        .when_not_matched_insert(|mut i| {
            for column in &columns {
                i = i.set(column.as_str(), source(column));
            }
            i
        })
        .map_err(delta_err)?
        .await
        .map_err(delta_err)?;
    Ok(table)
}
