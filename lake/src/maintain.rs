//! Table maintenance, so the lake does not grow without bound: compacts
//! small files (`OPTIMIZE`), writes a Delta checkpoint, drops expired log
//! files and vacuums data files no version within the retention references.
//!
//! Invariant: maintenance never changes what a table holds, nor its app
//! transactions (`txn` actions, kept by every checkpoint), and never deletes
//! a file a reader of a version younger than the retention may need.
//!
//! Concurrency. Appends commute with compaction (delta-rs orders the commits;
//! a compaction that loses a conflict is retried next round). A rewrite
//! (MERGE, overwrite, replace) does not: delta-rs lets a rewrite made from a
//! snapshot older than a compaction commit after it, which would keep the
//! compacted copy of the rows it replaced. In one process, the *layout
//! lock* of a table ([`layout_lock`]) orders the two: compaction holds it,
//! and a rewrite takes it and first reloads its snapshot if a compaction
//! committed since. Across processes nothing orders them, so a caller that
//! may share the lake with a running host compacts only tables that host
//! appends to ([`Policy::compact_only`]).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use deltalake::kernel::transaction::TransactionError;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt as _;
use object_store::ObjectStoreExt as _;
use tokio::sync::OwnedMutexGuard;

use super::{Lake, LakeError, Result, delta_err, other_err};

/// Vacuum never deletes files removed less than this long ago, unless
/// forced (tests): a reader of an older version may still need them.
pub const RETENTION_FLOOR: Duration = Duration::from_secs(3_600);

/// What a maintenance round does.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Compaction bins small files into files of about this size.
    pub target_file_bytes: u64,
    /// Vacuum deletes files removed from the table longer ago than this.
    pub retention: Duration,
    /// Allow a retention below [`RETENTION_FLOOR`] (tests only).
    pub force_retention: bool,
    /// Compact only these tables (the others are checkpointed and vacuumed
    /// only); `None` compacts every table.
    pub compact_only: Option<Vec<String>>,
}

impl Policy {
    fn compacts(&self, table: &str) -> bool {
        self.compact_only
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == table))
    }

    fn check_retention(&self) -> Result<()> {
        if self.retention < RETENTION_FLOOR && !self.force_retention {
            return Err(other_err(
                "(lake)",
                format!(
                    "a vacuum retention of {} h is below the floor of {} h: readers of \
                     older versions may still need those files",
                    self.retention.as_secs_f64() / 3_600.0,
                    RETENTION_FLOOR.as_secs() / 3_600
                ),
            ));
        }
        Ok(())
    }
}

/// Files and bytes a table holds in storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Data files stored (current and removed-but-not-vacuumed).
    pub data_files: usize,
    pub data_bytes: u64,
    /// Files under `_delta_log/` (commits, checkpoints).
    pub log_files: usize,
    pub log_bytes: u64,
}

impl Usage {
    pub fn bytes(&self) -> u64 {
        self.data_bytes + self.log_bytes
    }
}

/// What compaction did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compaction {
    /// Not compacted in this round (a table another process may rewrite).
    NotAsked,
    /// Files rewritten into fewer, larger ones (none if nothing was small).
    Done { removed: u64, added: u64 },
    /// Lost a conflict with a concurrent commit; tried again next round.
    Conflict(String),
}

/// One table's round: storage before and after, and what each step did.
#[derive(Debug, Clone)]
pub struct TableReport {
    pub table: String,
    pub before: Usage,
    pub after: Usage,
    /// Data files the table's latest version references, before and after.
    pub live_files: (usize, usize),
    pub compaction: Compaction,
    /// The version checkpointed, if a checkpoint was written.
    pub checkpoint: Option<u64>,
    /// Expired log files deleted (Delta's `logRetentionDuration`).
    pub logs_removed: usize,
    /// Data files vacuum deleted.
    pub vacuumed: usize,
}

/// A round over every table; a table that failed does not stop the others.
#[derive(Debug, Default)]
pub struct Round {
    pub tables: Vec<TableReport>,
    pub failures: Vec<LakeError>,
}

/// Per table: the version of the last compaction this process committed.
type LayoutState = Arc<tokio::sync::Mutex<Option<u64>>>;

static LAYOUTS: LazyLock<Mutex<HashMap<String, LayoutState>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The layout lock of the table at `url` in this process. Its value is the
/// version of the last compaction committed under it: a writer whose
/// snapshot is older must reload before it rewrites files.
pub(crate) async fn layout_lock(url: &url::Url) -> OwnedMutexGuard<Option<u64>> {
    let key = url.as_str().trim_end_matches('/').to_string();
    let state = {
        let mut map = LAYOUTS.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    };
    state.lock_owned().await
}

impl Lake {
    /// One maintenance round over every table of the lake.
    pub async fn maintain(&self, policy: &Policy) -> Result<Round> {
        policy.check_retention()?;
        let mut round = Round::default();
        for name in self.table_names().await? {
            match self.maintain_table(&name, policy).await {
                Ok(report) => round.tables.push(report),
                Err(e) => round.failures.push(e),
            }
        }
        Ok(round)
    }

    /// One maintenance round over the table `name`.
    pub async fn maintain_table(&self, name: &str, policy: &Policy) -> Result<TableReport> {
        policy.check_retention()?;
        let table = self.load(name).await?;
        let before = usage(name, &table).await?;
        let live_before = live_files(name, &table)?;
        let (table, compaction) = if policy.compacts(name) {
            compact(name, table, policy.target_file_bytes).await?
        } else {
            (table, Compaction::NotAsked)
        };
        let checkpoint = checkpoint(name, &table).await?;
        let logs_removed = deltalake::checkpoints::cleanup_metadata(&table, None)
            .await
            .map_err(delta_err(name))?;
        let (table, vacuumed) = vacuum(name, table, policy).await?;
        Ok(TableReport {
            table: name.to_string(),
            before,
            after: usage(name, &table).await?,
            live_files: (live_before, live_files(name, &table)?),
            compaction,
            checkpoint,
            logs_removed,
            vacuumed,
        })
    }
}

fn live_files(name: &str, table: &DeltaTable) -> Result<usize> {
    Ok(table
        .snapshot()
        .map_err(delta_err(name))?
        .log_data()
        .num_files())
}

/// Lists everything stored under the table's root.
async fn usage(name: &str, table: &DeltaTable) -> Result<Usage> {
    let store = table.object_store();
    let objects: Vec<deltalake::ObjectMeta> =
        super::retry::transient(name, "list", || store.list(None).try_collect::<Vec<_>>())
            .await
            .map_err(|e| other_err(name, e))?;
    let mut usage = Usage::default();
    for o in objects {
        let size = o.size;
        if o.location.as_ref().starts_with("_delta_log/") {
            usage.log_files += 1;
            usage.log_bytes += size;
        } else if o.location.as_ref().ends_with(".parquet") {
            usage.data_files += 1;
            usage.data_bytes += size;
        }
    }
    Ok(usage)
}

/// Bins small files into files of about `target` bytes, under the table's
/// layout lock. A lost conflict is reported, not an error.
async fn compact(name: &str, table: DeltaTable, target: u64) -> Result<(DeltaTable, Compaction)> {
    let mut layout = layout_lock(table.table_url()).await;
    // The latest version, read under the lock: no rewrite of this process
    // is between its read and its commit now.
    let mut table = table;
    table.update_state().await.map_err(delta_err(name))?;
    let target = NonZeroU64::new(target.max(1)).unwrap_or(NonZeroU64::MIN);
    // One file rewritten at a time: the pipeline keeps the other core.
    let optimize = table
        .clone()
        .optimize()
        .with_target_size(target)
        .with_max_concurrent_tasks(1);
    match optimize.await {
        Ok((table, metrics)) => {
            if metrics.num_files_added > 0 {
                *layout = table.version();
            }
            let done = Compaction::Done {
                removed: metrics.num_files_removed,
                added: metrics.num_files_added,
            };
            Ok((table, done))
        }
        Err(e) if is_conflict(&e) => {
            tracing::info!(table = name, error = %e, "compaction lost a conflict with a concurrent commit; retrying next round");
            Ok((table, Compaction::Conflict(e.to_string())))
        }
        Err(e) => Err(delta_err(name)(e)),
    }
}

fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)
        } | DeltaTableError::VersionAlreadyExists(_)
    )
}

/// Writes a checkpoint of the latest version unless there is one already.
async fn checkpoint(name: &str, table: &DeltaTable) -> Result<Option<u64>> {
    let Some(version) = table.version() else {
        return Ok(None);
    };
    if last_checkpoint(name, table).await? == Some(version) {
        return Ok(None);
    }
    deltalake::checkpoints::create_checkpoint(table, None)
        .await
        .map_err(delta_err(name))?;
    Ok(Some(version))
}

/// The version in `_delta_log/_last_checkpoint`, if any.
async fn last_checkpoint(name: &str, table: &DeltaTable) -> Result<Option<u64>> {
    let path = deltalake::Path::from("_delta_log/_last_checkpoint");
    let bytes = match table.object_store().get(&path).await {
        Ok(got) => got.bytes().await.map_err(|e| other_err(name, e))?,
        Err(deltalake::ObjectStoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(other_err(name, e)),
    };
    let hint: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| other_err(name, e))?;
    Ok(hint.get("version").and_then(serde_json::Value::as_u64))
}

/// Deletes data files removed longer ago than the retention (files the
/// log still tombstones; never a file the log does not know).
async fn vacuum(name: &str, table: DeltaTable, policy: &Policy) -> Result<(DeltaTable, usize)> {
    let retention = chrono::Duration::from_std(policy.retention)
        .map_err(|e| other_err(name, format!("vacuum retention: {e}")))?;
    // Our floor replaces the table's `deletedFileRetentionDuration` check
    // (7 days by default), so a shorter configured retention works.
    let (table, metrics) = table
        .vacuum()
        .with_mode(VacuumMode::Lite)
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .await
        .map_err(delta_err(name))?;
    Ok((table, metrics.files_deleted.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    fn rows(schema: &Arc<Schema>, ids: std::ops::Range<i64>) -> Vec<RecordBatch> {
        let ids = Int64Array::from_iter_values(ids);
        vec![RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)]).unwrap()]
    }

    async fn count(table: &super::super::LakeTable) -> usize {
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        super::super::register(&ctx, "t", table.delta())
            .await
            .unwrap();
        let batches = ctx.sql("SELECT * FROM t").await.unwrap().collect().await;
        batches.unwrap().iter().map(|b| b.num_rows()).sum()
    }

    /// An overwrite from a snapshot taken before a compaction must not keep
    /// the compacted copy of the rows it replaces, and the app transactions
    /// survive compaction and checkpoint.
    #[tokio::test]
    async fn a_rewrite_from_a_stale_snapshot_after_compaction_replaces_everything() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut writer = lake
            .open_or_create("t", "test", &schema, &[])
            .await
            .unwrap();
        for batch in 1..=3 {
            let ids = batch * 10..batch * 10 + 10;
            writer.append("s", batch, rows(&schema, ids)).await.unwrap();
        }
        let mut reader = lake.reopen(&writer).await.unwrap();
        let policy = Policy {
            target_file_bytes: 1 << 20,
            retention: Duration::ZERO,
            force_retention: true,
            compact_only: None,
        };
        let report = lake.maintain_table("t", &policy).await.unwrap();
        assert_eq!(report.live_files, (3, 1));
        assert_eq!(
            report.compaction,
            Compaction::Done {
                removed: 3,
                added: 1
            }
        );
        assert!(report.checkpoint.is_some());
        reader.reload().await.unwrap();
        assert_eq!(reader.committed("s").await.unwrap(), Some(3));

        // The writer's snapshot predates the compaction.
        let mut stale = writer;
        assert!(stale.overwrite("s", 4, rows(&schema, 0..5)).await.unwrap());
        assert_eq!(
            count(&stale).await,
            5,
            "the compacted rows survived the overwrite"
        );
        assert_eq!(stale.committed("s").await.unwrap(), Some(4));
    }

    #[test]
    fn a_retention_below_the_floor_is_refused_unless_forced() {
        let mut policy = Policy {
            target_file_bytes: 1 << 20,
            retention: Duration::from_secs(60),
            force_retention: false,
            compact_only: None,
        };
        let err = policy.check_retention().unwrap_err().to_string();
        assert!(err.contains("below the floor"), "{err}");
        policy.force_retention = true;
        policy.check_retention().unwrap();
        assert!(policy.compacts("anything"));
        policy.compact_only = Some(vec!["bronze_events".into()]);
        assert!(policy.compacts("bronze_events") && !policy.compacts("dim_user"));
    }
}
