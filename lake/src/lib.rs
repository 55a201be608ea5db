//! The lake: every layer is a Delta table under one root (a local directory
//! or an Azure URL), written through delta-rs. Each write carries a Delta app transaction so a batch
//! that was already committed is never committed twice.
//!
//! Invariant: a write for `(stage, batch)` happens only if the table's
//! transaction version for that stage is below the batch id. Batch ids only
//! grow, so a replay after a crash skips what is already durable.

mod container;
mod epoch;
mod fenced;
mod history;
pub mod location;
pub mod maintain;
mod merge;
mod objects;
mod retry;
mod table;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::{DeltaTable, DeltaTableError, StructType};
use url::Url;

pub use epoch::Fence;
pub use fenced::{FencedCommit, Marks, raise_mark};
pub use history::CommitSummary;
pub use location::{LakeRoot, StorageOptions};
pub use maintain::{Compaction, Policy, Round, TableReport, Usage};
pub use merge::{Measure, MergeOp, MergeSpec, conform, merge_plan_sql};
pub use retry::{delays as retry_delays, on_retry};
pub use table::LakeTable;

/// Errors from the lake, with the table they concern.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("table `{table}`: {source}")]
    Delta {
        table: String,
        /// Boxed: delta-rs's error is large, and every lake call returns it.
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error("table `{table}`: {message}")]
    Other { table: String, message: String },
    #[error(
        "table `{table}`: `{app_id}` epoch {epoch} met epoch {other} here: another \
         instance holds or held the role meanwhile, so this writer stops"
    )]
    Fenced {
        table: String,
        app_id: String,
        epoch: i64,
        other: i64,
    },
}

pub type Result<T> = std::result::Result<T, LakeError>;

fn delta_err(table: &str) -> impl FnOnce(DeltaTableError) -> LakeError + '_ {
    move |source| LakeError::Delta {
        table: table.to_string(),
        source: Box::new(source),
    }
}

fn other_err(table: &str, message: impl std::fmt::Display) -> LakeError {
    LakeError::Other {
        table: table.to_string(),
        message: message.to_string(),
    }
}

/// Refuses an existing table that lacks a column this version writes (a lake
/// written by an older Sluice or another plugin), naming the columns, rather
/// than failing later inside a query or a commit.
fn check_has_columns(name: &str, table: &DeltaTable, schema: &Schema) -> Result<()> {
    let snapshot = table.snapshot().map_err(delta_err(name))?;
    let existing = snapshot.schema();
    let missing: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| existing.field(n).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(other_err(
        name,
        format!(
            "the table in the lake has no column {}; it was written by another version of \
             Sluice or of its plugin. Use a new lake (replay the old bronze into it) or add \
             the columns",
            missing.join(", ")
        ),
    ))
}

/// The root all tables live under, and the storage options to reach it.
#[derive(Clone)]
pub struct Lake {
    /// Ends in `/`; `file://` for a local lake.
    root: Url,
    options: HashMap<String, String>,
    local: bool,
    /// The role every table opened from this handle writes for (`epoch.rs`).
    fence: Option<Fence>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options may hold keys: never printed.
        write!(f, "Lake({})", self.root)
    }
}

impl Lake {
    /// A lake in a local directory (created if missing).
    pub fn local(root: &Path) -> std::io::Result<Lake> {
        std::fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root)?;
        let root = Url::from_directory_path(&root)
            .map_err(|_| std::io::Error::other("lake path is not absolute"))?;
        Ok(Lake {
            root,
            options: HashMap::new(),
            local: true,
            fence: None,
        })
    }

    /// The lake at `root` (a path or an Azure URL). For Azure, registers
    /// delta-rs' handlers and creates the container if it is missing.
    pub async fn open_root(root: &Path, options: &StorageOptions) -> Result<Lake> {
        match location::parse(root, options).map_err(|e| other_err("(lake)", e))? {
            LakeRoot::Local(path) => Lake::local(&path).map_err(|e| other_err("(lake)", e)),
            LakeRoot::Remote { url, options } => {
                deltalake::azure::register_handlers(None);
                let env: HashMap<String, String> = std::env::vars()
                    .filter(|(k, _)| k.starts_with("AZURE_") || k == "AZURITE_BLOB_STORAGE_URL")
                    .collect();
                let target = container::target(&url, &options, &env);
                retry::transient("(lake)", "create container", || container::ensure(&target))
                    .await
                    .map_err(|e| other_err("(lake)", e))?;
                Ok(Lake {
                    root: url,
                    options,
                    local: false,
                    fence: None,
                })
            }
        }
    }

    /// The lake's root URL (no credentials in it).
    pub fn root(&self) -> &Url {
        &self.root
    }

    fn table_url(&self, name: &str) -> Result<Url> {
        let url = self
            .root
            .join(&format!("{name}/"))
            .map_err(|e| other_err(name, e))?;
        if self.local {
            let dir = url
                .to_file_path()
                .map_err(|_| other_err(name, "not a local path"))?;
            std::fs::create_dir_all(&dir).map_err(|e| other_err(name, e))?;
        }
        Ok(url)
    }

    /// Loads the table at `name`, or an unloaded handle if there is none yet.
    async fn load(&self, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(name)?;
        retry::transient(name, "open", || {
            DeltaTable::try_from_url_with_storage_options(url.clone(), self.options.clone())
        })
        .await
        .map_err(delta_err(name))
    }

    /// Opens a table, creating it with `schema` if it does not exist yet.
    pub async fn open_or_create(
        &self,
        name: &str,
        description: &str,
        schema: &Schema,
        partition_by: &[String],
    ) -> Result<LakeTable> {
        let table = self.load(name).await?;
        let table = if table.version().is_some() {
            check_has_columns(name, &table, schema)?;
            table
        } else {
            let kernel: StructType = schema.try_into_kernel().map_err(|e| other_err(name, e))?;
            let created = table
                .create()
                .with_table_name(name)
                .with_comment(description)
                .with_columns(kernel.fields().cloned())
                .with_partition_columns(partition_by.to_vec())
                .await;
            match created {
                Ok(table) => table,
                // Another instance created it first: use theirs.
                Err(e) => {
                    let theirs = self.load(name).await?;
                    if theirs.version().is_none() {
                        return Err(delta_err(name)(e));
                    }
                    check_has_columns(name, &theirs, schema)?;
                    theirs
                }
            }
        };
        let table = LakeTable {
            name: name.to_string(),
            schema: Arc::new(schema.clone()),
            table,
            own_commits: HashMap::new(),
            fence: self.fence.clone(),
        };
        table.check_fence().await?;
        Ok(table)
    }

    /// A second, independent handle on an open table (same schema), for a
    /// writer on another task: each handle commits with its own snapshot
    /// and Delta's optimistic concurrency orders the commits.
    pub async fn reopen(&self, table: &LakeTable) -> Result<LakeTable> {
        Ok(LakeTable {
            name: table.name.clone(),
            schema: table.schema.clone(),
            table: self.load(&table.name).await?,
            own_commits: HashMap::new(),
            fence: self.fence.clone(),
        })
    }

    /// Opens an existing table, or `None` if there is none by that name.
    pub async fn open(&self, name: &str) -> Result<Option<DeltaTable>> {
        if self.local {
            let dir = self.root.to_file_path().unwrap_or_default().join(name);
            if !dir.join("_delta_log").is_dir() {
                return Ok(None);
            }
        }
        let table = self.load(name).await?;
        Ok(table.version().is_some().then_some(table))
    }

    /// Names of the tables present, sorted.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        if self.local {
            let root = self.root.to_file_path().unwrap_or_default();
            let mut names: Vec<String> = std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().join("_delta_log").is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            return Ok(names);
        }
        // Each table is a "directory" under the root with a `_delta_log`.
        let store = self.objects("")?;
        let listing = retry::transient("(lake)", "list", || store.list_with_delimiter(None))
            .await
            .map_err(|e| other_err("(lake)", e))?;
        let mut names = Vec::new();
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename().map(str::to_string) else {
                continue;
            };
            if self.open(&name).await?.is_some() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// A DataFusion session with every table of the lake registered by name.
    pub async fn session(&self) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        for name in self.table_names().await? {
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

/// The version of app transaction `app_id` in `table`'s loaded snapshot.
async fn app_version(table: &DeltaTable, name: &str, app_id: &str) -> Result<Option<i64>> {
    let snapshot = table.snapshot().map_err(delta_err(name))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(delta_err(name))
}

/// Commit properties for every pipeline commit: Delta's checkpoint every
/// `checkpointInterval` commits stays on, but expired-log cleanup does not
/// run after each commit. That cleanup lists (and stats) the whole
/// `_delta_log` directory every time, so a table of many small commits
/// paid more per commit the longer it lived (630 instead of 1,491
/// single-event requests/s after ~10,000 commits); maintenance rounds
/// (`maintain.rs`) drop expired logs instead.
fn quiet_commit() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::{DataType, Field};

    #[tokio::test]
    async fn an_existing_table_missing_a_column_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let old = Schema::new(vec![Field::new("event_id", DataType::Utf8, false)]);
        lake.open_or_create("t", "test", &old, &[]).await.unwrap();
        let new = Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("source_partition", DataType::Utf8, false),
        ]);
        let err = lake
            .open_or_create("t", "test", &new, &[])
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("table `t`"), "{err}");
        assert!(err.contains("no column source_partition"), "{err}");
        assert!(lake.open_or_create("t", "test", &old, &[]).await.is_ok());
    }
}
