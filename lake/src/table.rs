//! A table handle: the schema the pipeline writes, the open Delta table,
//! and every kind of write (append, overwrite, replace, MERGE), each
//! guarded by its stage's app transaction.

use std::collections::HashMap;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;

use crate::{
    Fence, MergeSpec, Result, app_version, delta_err, maintain, merge, quiet_commit, retry,
};

/// One open table and the schema the pipeline writes to it.
pub struct LakeTable {
    pub name: String,
    pub(crate) schema: SchemaRef,
    pub(crate) table: DeltaTable,
    /// Per stage, the batch this handle committed last. As of this handle's
    /// snapshot that is the stage's transaction version: a writer of the
    /// same stage that committed after it would have made our commit fail
    /// Delta's conflict check (same app id). So a later batch of the stage
    /// needs no log read to know it is not in the table yet. Cleared on
    /// reload, which may bring in anyone's commits.
    pub(crate) own_commits: HashMap<String, i64>,
    /// Set when the handle writes for a role held by epoch (`epoch.rs`).
    pub(crate) fence: Option<Fence>,
}

impl LakeTable {
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn delta(&self) -> &DeltaTable {
        &self.table
    }

    /// Reloads the table's latest state (what other writers committed too),
    /// waiting out a storage outage.
    pub async fn reload(&mut self) -> Result<()> {
        self.own_commits.clear();
        let seen = self.table.version();
        let start = std::time::Instant::now();
        let mut delays = retry::delays();
        loop {
            match self.table.update_state().await {
                Ok(()) => return self.check_fence_since(seen).await,
                Err(e)
                    if retry::is_transient(&format!("{e:?} {e}"))
                        && start.elapsed() < retry::GIVE_UP_AFTER =>
                {
                    tokio::time::sleep(delays.next().unwrap_or(std::time::Duration::from_secs(5)))
                        .await;
                }
                Err(e) => return Err(delta_err(&self.name)(e)),
            }
        }
    }

    /// Highest batch id committed to this table by `stage`, if any.
    pub async fn committed(&self, stage: &str) -> Result<Option<i64>> {
        app_version(&self.table, &self.name, stage).await
    }

    /// True if `stage` already committed `batch` (or a later one) here.
    pub async fn already_has(&self, stage: &str, batch: i64) -> Result<bool> {
        Ok(self.committed(stage).await?.is_some_and(|v| v >= batch))
    }

    /// Whether the table holds `(stage, batch)`: known without reading the
    /// log when this handle committed an earlier batch of the stage last.
    async fn holds(&self, stage: &str, batch: i64) -> Result<bool> {
        if self
            .own_commits
            .get(stage)
            .is_some_and(|&last| last < batch)
        {
            return Ok(false);
        }
        self.already_has(stage, batch).await
    }

    /// What every commit of this handle carries: its fence's epoch, if any.
    fn fenced_commit(&self) -> CommitProperties {
        quiet_commit().with_application_transactions(self.fence_claim().into_iter().collect())
    }

    pub(crate) fn commit_properties(&self, stage: &str, batch: i64) -> CommitProperties {
        self.fenced_commit()
            .with_application_transaction(Transaction::new(stage, batch))
    }

    /// Appends rows as `stage`'s commit of `batch`, unless already committed.
    pub async fn append(
        &mut self,
        stage: &str,
        batch: i64,
        rows: Vec<RecordBatch>,
    ) -> Result<bool> {
        self.write(stage, batch, rows, SaveMode::Append).await
    }

    /// Replaces the whole table content, unless `batch` is already committed.
    pub async fn overwrite(
        &mut self,
        stage: &str,
        batch: i64,
        rows: Vec<RecordBatch>,
    ) -> Result<bool> {
        let _layout = self.rewrite_guard().await?;
        self.write(stage, batch, rows, SaveMode::Overwrite).await
    }

    /// Takes the table's layout lock for a commit that rewrites files, and
    /// reloads first if a compaction committed after this handle's
    /// snapshot: a rewrite from an older snapshot would keep the compacted
    /// copy of the rows it replaces (see `maintain.rs`).
    async fn rewrite_guard(&mut self) -> Result<tokio::sync::OwnedMutexGuard<Option<u64>>> {
        let guard = maintain::layout_lock(self.table.table_url()).await;
        if let Some(compacted) = *guard
            && self.table.version().is_none_or(|v| v < compacted)
        {
            self.reload().await?;
        }
        Ok(guard)
    }

    async fn write(
        &mut self,
        stage: &str,
        batch: i64,
        rows: Vec<RecordBatch>,
        mode: SaveMode,
    ) -> Result<bool> {
        let name = self.name.clone();
        let properties = self.commit_properties(stage, batch);
        self.retrying(stage, batch, |table| {
            let rows = rows.clone();
            let name = name.clone();
            let properties = properties.clone();
            async move {
                table
                    .write(rows)
                    .with_save_mode(mode)
                    .with_commit_properties(properties)
                    .await
                    .map_err(delta_err(&name))
            }
        })
        .await
    }

    /// Runs one commit of `(stage, batch)` unless the table has it, retrying
    /// transient storage errors with backoff. Before each retry the table is
    /// reloaded and the app transaction checked again: a commit that landed
    /// although its answer was lost is not made twice.
    pub(crate) async fn retrying<F, Fut>(
        &mut self,
        stage: &str,
        batch: i64,
        mut commit: F,
    ) -> Result<bool>
    where
        F: FnMut(DeltaTable) -> Fut,
        Fut: std::future::Future<Output = Result<DeltaTable>>,
    {
        let start = std::time::Instant::now();
        let mut delays = retry::delays();
        loop {
            let attempt = match self.holds(stage, batch).await {
                Ok(true) => return Ok(false),
                Ok(false) => commit(self.table.clone()).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(table) => {
                    self.table = table;
                    let last = self.own_commits.entry(stage.to_string()).or_insert(batch);
                    *last = (*last).max(batch);
                    return Ok(true);
                }
                Err(e)
                    if retry::is_transient(&format!("{e:?} {e}"))
                        && start.elapsed() < retry::GIVE_UP_AFTER =>
                {
                    let delay = delays.next().unwrap_or(std::time::Duration::from_secs(5));
                    tracing::warn!(table = %self.name, batch, error = %e, ?delay, "commit failed: storage unreachable; retrying");
                    retry::report(&self.name);
                    tokio::time::sleep(delay).await;
                    self.reload().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Replaces the rows matching `predicate` (SQL over the table's columns)
    /// with `rows`, in one commit. Every new row must match the predicate.
    /// Used by replays, which rewrite a range outside the batch protocol.
    pub async fn replace_where(&mut self, predicate: &str, rows: Vec<RecordBatch>) -> Result<()> {
        let _layout = self.rewrite_guard().await?;
        let table = self
            .table
            .clone()
            .write(rows)
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate)
            .with_commit_properties(self.fenced_commit())
            .await
            .map_err(delta_err(&self.name))?;
        self.table = table;
        Ok(())
    }

    /// Replaces the whole table with `rows` in one commit, outside the batch
    /// protocol (replays).
    pub async fn replace_all(&mut self, rows: Vec<RecordBatch>) -> Result<()> {
        let _layout = self.rewrite_guard().await?;
        let table = self
            .table
            .clone()
            .write(rows)
            .with_save_mode(SaveMode::Overwrite)
            .with_commit_properties(self.fenced_commit())
            .await
            .map_err(delta_err(&self.name))?;
        self.table = table;
        Ok(())
    }

    /// Folds `rows` into the table by the merge spec, unless already committed.
    pub async fn merge(
        &mut self,
        stage: &str,
        batch: i64,
        rows: RecordBatch,
        spec: &MergeSpec,
        ctx: &SessionContext,
    ) -> Result<bool> {
        let _layout = self.rewrite_guard().await?;
        let name = self.name.clone();
        let properties = self.commit_properties(stage, batch);
        self.retrying(stage, batch, |table| {
            merge::merge_into(table, &name, rows.clone(), spec, ctx, properties.clone())
        })
        .await
    }

    /// Upserts precomputed rows by `keys` (every column replaced), unless
    /// already committed. Used for derived tables.
    pub async fn upsert(
        &mut self,
        stage: &str,
        batch: i64,
        rows: RecordBatch,
        keys: &[String],
        ctx: &SessionContext,
    ) -> Result<bool> {
        let _layout = self.rewrite_guard().await?;
        let name = self.name.clone();
        let properties = self.commit_properties(stage, batch);
        self.retrying(stage, batch, |table| {
            merge::upsert(table, &name, rows.clone(), keys, ctx, properties.clone())
        })
        .await
    }
}
