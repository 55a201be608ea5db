//! What changed in a gold table between two Delta versions: rows new or
//! changed since the loaded version, and keys that are gone (an SCD2 version
//! replaced by an earlier sighting). Computed with DataFusion over Delta
//! time travel, since gold rows carry no batch id of their own.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::concat_batches;
use deltalake::datafusion::prelude::SessionContext;

use super::conn::State;
use crate::lake::{self, Lake};

/// Changes of one table from `since` to `version`.
pub struct Changes {
    pub version: i64,
    /// The Delta table's id.
    pub table_id: String,
    pub columns: Vec<String>,
    /// Rows to upsert by key.
    pub rows: RecordBatch,
    /// Key columns of rows to delete.
    pub gone: Option<RecordBatch>,
    /// The old version could not be read (vacuumed): replace the table whole.
    pub whole: bool,
}

fn quoted(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<RecordBatch, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    let schema = df.schema().inner().clone();
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    concat_batches(&schema, &batches).map_err(|e| e.to_string())
}

/// The Delta table's unique id (from its metadata action).
fn table_id(table: &deltalake::DeltaTable) -> Result<String, String> {
    let snapshot = table.snapshot().map_err(|e| e.to_string())?;
    let metadata = serde_json::to_value(snapshot.metadata()).map_err(|e| e.to_string())?;
    metadata["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "the Delta table has no id".to_string())
}

/// Changes of `table` since the loaded `state`, or `None` if the table does
/// not exist yet or has not moved. A table with another id than the loaded
/// one (the lake was recreated) is reloaded whole.
pub async fn changes(
    lake: &Lake,
    table: &str,
    keys: &[String],
    state: &State,
) -> Result<Option<Changes>, String> {
    let Some(current) = lake.open(table).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let version = current.version().map_or(-1, |v| v as i64);
    let id = table_id(&current)?;
    let same_table = state.table_id.as_deref().is_none_or(|loaded| loaded == id);
    if version == state.version && same_table {
        return Ok(None);
    }
    let since = if same_table { state.version } else { -1 };
    let ctx = SessionContext::new();
    lake::register(&ctx, "cur", &current)
        .await
        .map_err(|e| e.to_string())?;
    let columns: Vec<String> = ctx
        .table("cur")
        .await
        .map_err(|e| e.to_string())?
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut whole = since < 0;
    if !whole {
        let mut old = current.clone();
        match old.load_version(since as u64).await {
            Ok(()) => lake::register(&ctx, "old", &old)
                .await
                .map_err(|e| e.to_string())?,
            Err(e) => {
                tracing::warn!(table, since, error = %e, "loaded version unreadable; reloading the table whole");
                whole = true;
            }
        }
    }
    let cols = quoted(&columns);
    let keys = if keys.is_empty() { &columns[..] } else { keys };
    let (rows, gone) = if whole {
        (
            collect(&ctx, &format!("SELECT {cols} FROM cur")).await?,
            None,
        )
    } else {
        let rows = format!("SELECT {cols} FROM cur EXCEPT SELECT {cols} FROM old");
        let k = quoted(keys);
        let gone = format!("SELECT {k} FROM old EXCEPT SELECT {k} FROM cur");
        (
            collect(&ctx, &rows).await?,
            Some(collect(&ctx, &gone).await?),
        )
    };
    Ok(Some(Changes {
        version,
        table_id: id,
        columns,
        rows,
        gone,
        whole,
    }))
}
