//! The lake: every layer is a Delta table under one root directory, written
//! through delta-rs. Each write carries a Delta app transaction so a batch
//! that was already committed is never committed twice.
//!
//! Invariant: a write for `(stage, batch)` happens only if the table's
//! transaction version for that stage is below the batch id. Batch ids only
//! grow, so a replay after a crash skips what is already durable.

mod merge;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError, StructType};
use url::Url;

pub use merge::{conform, merge_plan_sql};

/// Errors from the lake, with the table they concern.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("table `{table}`: {source}")]
    Delta {
        table: String,
        #[source]
        source: DeltaTableError,
    },
    #[error("table `{table}`: {message}")]
    Other { table: String, message: String },
}

pub type Result<T> = std::result::Result<T, LakeError>;

fn delta_err(table: &str) -> impl FnOnce(DeltaTableError) -> LakeError + '_ {
    move |source| LakeError::Delta {
        table: table.to_string(),
        source,
    }
}

fn other_err(table: &str, message: impl std::fmt::Display) -> LakeError {
    LakeError::Other {
        table: table.to_string(),
        message: message.to_string(),
    }
}

/// The root all tables live under.
#[derive(Debug, Clone)]
pub struct Lake {
    root: PathBuf,
}

impl Lake {
    /// A lake in a local directory (created if missing).
    pub fn local(root: &Path) -> std::io::Result<Lake> {
        std::fs::create_dir_all(root)?;
        Ok(Lake {
            root: std::fs::canonicalize(root)?,
        })
    }

    fn table_url(&self, name: &str) -> Result<Url> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| other_err(name, e))?;
        Url::from_directory_path(&dir).map_err(|_| other_err(name, "not an absolute path"))
    }

    /// Opens a table, creating it with `schema` if it does not exist yet.
    pub async fn open_or_create(
        &self,
        name: &str,
        description: &str,
        schema: &Schema,
        partition_by: &[String],
    ) -> Result<LakeTable> {
        let table = DeltaTable::try_from_url(self.table_url(name)?)
            .await
            .map_err(delta_err(name))?;
        let table = if table.version().is_some() {
            table
        } else {
            let kernel: StructType = schema.try_into_kernel().map_err(|e| other_err(name, e))?;
            table
                .create()
                .with_table_name(name)
                .with_comment(description)
                .with_columns(kernel.fields().cloned())
                .with_partition_columns(partition_by.to_vec())
                .await
                .map_err(delta_err(name))?
        };
        Ok(LakeTable {
            name: name.to_string(),
            schema: Arc::new(schema.clone()),
            table,
        })
    }

    /// Opens an existing table, or `None` if there is none by that name.
    pub async fn open(&self, name: &str) -> Result<Option<DeltaTable>> {
        let dir = self.root.join(name);
        if !dir.join("_delta_log").is_dir() {
            return Ok(None);
        }
        let url = Url::from_directory_path(&dir).map_err(|_| other_err(name, "bad path"))?;
        let table = DeltaTable::try_from_url(url)
            .await
            .map_err(delta_err(name))?;
        Ok(table.version().is_some().then_some(table))
    }

    /// Names of the tables present, sorted.
    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("_delta_log").is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// A DataFusion session with every table of the lake registered by name.
    pub async fn session(&self) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        for name in self.table_names() {
            if let Some(table) = self.open(&name).await? {
                register(&ctx, &name, &table).await?;
            }
        }
        Ok(ctx)
    }
}

/// Registers (or re-registers) a Delta table in a DataFusion session.
pub async fn register(ctx: &SessionContext, name: &str, table: &DeltaTable) -> Result<()> {
    table
        .update_datafusion_session(&ctx.state())
        .map_err(delta_err(name))?;
    let provider = table
        .table_provider()
        .await
        .map_err(|e| other_err(name, e))?;
    ctx.deregister_table(name).map_err(|e| other_err(name, e))?;
    ctx.register_table(name, provider)
        .map_err(|e| other_err(name, e))?;
    Ok(())
}

/// One open table and the schema the pipeline writes to it.
pub struct LakeTable {
    pub name: String,
    schema: SchemaRef,
    table: DeltaTable,
}

impl LakeTable {
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn delta(&self) -> &DeltaTable {
        &self.table
    }

    /// Highest batch id committed to this table by `stage`, if any.
    pub async fn committed(&self, stage: &str) -> Result<Option<i64>> {
        let snapshot = self.table.snapshot().map_err(delta_err(&self.name))?;
        snapshot
            .transaction_version(self.table.log_store().as_ref(), stage)
            .await
            .map_err(delta_err(&self.name))
    }

    /// True if `stage` already committed `batch` (or a later one) here.
    pub async fn already_has(&self, stage: &str, batch: i64) -> Result<bool> {
        Ok(self.committed(stage).await?.is_some_and(|v| v >= batch))
    }

    fn commit_properties(stage: &str, batch: i64) -> CommitProperties {
        CommitProperties::default().with_application_transaction(Transaction::new(stage, batch))
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
        self.write(stage, batch, rows, SaveMode::Overwrite).await
    }

    async fn write(
        &mut self,
        stage: &str,
        batch: i64,
        rows: Vec<RecordBatch>,
        mode: SaveMode,
    ) -> Result<bool> {
        if self.already_has(stage, batch).await? {
            return Ok(false);
        }
        let table = self
            .table
            .clone()
            .write(rows)
            .with_save_mode(mode)
            .with_commit_properties(Self::commit_properties(stage, batch))
            .await
            .map_err(delta_err(&self.name))?;
        self.table = table;
        Ok(true)
    }

    /// Replaces the rows matching `predicate` (SQL over the table's columns)
    /// with `rows`, in one commit. Every new row must match the predicate.
    /// Used by replays, which rewrite a range outside the batch protocol.
    pub async fn replace_where(&mut self, predicate: &str, rows: Vec<RecordBatch>) -> Result<()> {
        let table = self
            .table
            .clone()
            .write(rows)
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate)
            .await
            .map_err(delta_err(&self.name))?;
        self.table = table;
        Ok(())
    }

    /// Replaces the whole table with `rows` in one commit, outside the batch
    /// protocol (replays).
    pub async fn replace_all(&mut self, rows: Vec<RecordBatch>) -> Result<()> {
        let table = self
            .table
            .clone()
            .write(rows)
            .with_save_mode(SaveMode::Overwrite)
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
        spec: &crate::runtime::contract::MergeSpec,
        ctx: &SessionContext,
    ) -> Result<bool> {
        if self.already_has(stage, batch).await? {
            return Ok(false);
        }
        let table = merge::merge_into(
            self.table.clone(),
            &self.name,
            rows,
            spec,
            ctx,
            Self::commit_properties(stage, batch),
        )
        .await?;
        self.table = table;
        Ok(true)
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
        if self.already_has(stage, batch).await? {
            return Ok(false);
        }
        let table = merge::upsert(
            self.table.clone(),
            &self.name,
            rows,
            keys,
            ctx,
            Self::commit_properties(stage, batch),
        )
        .await?;
        self.table = table;
        Ok(true)
    }
}
