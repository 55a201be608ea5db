//! Writer roles held by epoch, without a lock service: a role is taken by
//! committing the next epoch as an app transaction, and a handle opened
//! under a [`Fence`] makes every commit carry its epoch, so the commits of
//! an older holder that did not notice it was replaced are refused by
//! Delta's conflict check (or, after a reload, by the fence itself).

use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::state::DeltaTableState;
use deltalake::{DeltaTable, DeltaTableError};

use crate::fenced::is_conflict;
use crate::history::commits_in;
use crate::{Lake, LakeError, LakeTable, Result, app_version, delta_err, quiet_commit};

/// The role an open handle writes for: every commit carries `app_id` at
/// `epoch`, and a table that holds a higher epoch refuses the handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub app_id: String,
    pub epoch: i64,
}

impl Lake {
    /// The same lake, with every table opened from it fenced by `fence`.
    pub fn fenced(&self, fence: Fence) -> Lake {
        Lake {
            fence: Some(fence),
            ..self.clone()
        }
    }

    /// The same lake with its fence (if any) narrowed to one `part` of the
    /// role (`<app id>/<part>`, same epoch): handles of two parts that
    /// commit to one table concurrently do not conflict with each other,
    /// while each still conflicts with the same part of another holder.
    pub fn fence_part(&self, part: &str) -> Lake {
        Lake {
            fence: self.fence.as_ref().map(|f| Fence {
                app_id: format!("{}/{part}", f.app_id),
                epoch: f.epoch,
            }),
            ..self.clone()
        }
    }

    /// The newest epoch of role `app_id` claimed on table `name` (0: none).
    pub async fn claimed_epoch(&self, name: &str, app_id: &str) -> Result<i64> {
        let Some(table) = self.open(name).await? else {
            return Ok(0);
        };
        Ok(app_version(&table, name, app_id).await?.unwrap_or(0))
    }

    /// Takes the role `app_id` on the existing table `name` for `holder`:
    /// commits the epoch after the highest one the table holds (an empty
    /// commit but for its app transactions: the role's, `<app_id>@<holder>`
    /// naming who took it, and `<app_id>/<part>` for each of `parts` that
    /// writes this table, so the previous holder's next commit of that part
    /// here conflicts with the claim). Of two instances claiming at once the
    /// later commit wins, each with an epoch of its own.
    pub async fn claim_epoch(
        &self,
        name: &str,
        app_id: &str,
        holder: &str,
        parts: &[&str],
    ) -> Result<Fence> {
        let mut table = self.load(name).await?;
        loop {
            let held = app_version(&table, name, app_id).await?.unwrap_or(0);
            let fence = Fence {
                app_id: app_id.to_string(),
                epoch: held + 1,
            };
            let ids = [app_id.to_string(), format!("{app_id}@{holder}")]
                .into_iter()
                .chain(parts.iter().map(|part| format!("{app_id}/{part}")));
            let claim = quiet_commit().with_application_transactions(
                ids.map(|id| Transaction::new(id, fence.epoch)).collect(),
            );
            match commit_marks_only(&table, claim).await {
                Ok(_) => return Ok(fence),
                Err(e) if is_conflict(&e) => {
                    table.update_state().await.map_err(delta_err(name))?;
                }
                Err(e) => return Err(delta_err(name)(e)),
            }
        }
    }
}

/// Commits `properties`' app transactions to `table` with no data: a mark
/// that orders writers (a claimed epoch, a planned step) and nothing else.
/// Returns the table's state after the commit.
async fn commit_marks_only(
    table: &DeltaTable,
    properties: CommitProperties,
) -> std::result::Result<DeltaTableState, DeltaTableError> {
    let done = CommitBuilder::from(properties)
        .build(
            Some(table.snapshot()?),
            table.log_store(),
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            },
        )
        .await?;
    Ok(done.snapshot)
}

impl LakeTable {
    /// Commits `(stage, batch)` (and the fence's epoch) with no data, unless
    /// the table has it: how a writer announces a step before the commits
    /// that carry it out, so whoever finishes the step knows its range.
    pub async fn commit_mark(&mut self, stage: &str, batch: i64) -> Result<bool> {
        let properties = self.commit_properties(stage, batch);
        let name = self.name.clone();
        self.retrying(stage, batch, |mut table| {
            let properties = properties.clone();
            let name = name.clone();
            async move {
                let state = commit_marks_only(&table, properties)
                    .await
                    .map_err(delta_err(&name))?;
                table.state = Some(state);
                Ok(table)
            }
        })
        .await
    }

    /// Whether this handle writes for a role held by epoch.
    pub fn is_fenced(&self) -> bool {
        self.fence.is_some()
    }

    /// The app transaction every commit of this handle carries, if fenced.
    pub(crate) fn fence_claim(&self) -> Option<Transaction> {
        let fence = self.fence.as_ref()?;
        Some(Transaction::new(fence.app_id.as_str(), fence.epoch))
    }

    /// Refuses a fenced handle whose table holds a newer epoch of its role:
    /// its holder was replaced, and must not commit from this snapshot.
    pub(crate) async fn check_fence(&self) -> Result<()> {
        let Some(fence) = &self.fence else {
            return Ok(());
        };
        fence.check(&self.name, self.committed(&fence.app_id).await?)
    }

    /// After a reload: refuses the handle if a commit since `seen` (`None`:
    /// the handle knew nothing) carries its role at another epoch. A newer
    /// one means its holder was replaced; an older one, that a replaced
    /// holder still writes here, and this holder must look at the table
    /// again (its successor's recovery) before it goes on.
    pub(crate) async fn check_fence_since(&self, seen: Option<u64>) -> Result<()> {
        let (Some(fence), Some(now)) = (&self.fence, self.table.version()) else {
            return Ok(());
        };
        let Some(seen) = seen else {
            return self.check_fence().await;
        };
        let since = commits_in(&self.table, &self.name, seen + 1..=now).await?;
        let other = since
            .into_iter()
            .flat_map(|c| c.txns)
            .find(|(id, epoch)| *id == fence.app_id && *epoch != fence.epoch);
        match other {
            Some((_, other)) => Err(fence.refused(&self.name, other)),
            None => Ok(()),
        }
    }
}

impl Fence {
    /// Refuses this fence if `held`, the epoch a table holds, is newer.
    fn check(&self, table: &str, held: Option<i64>) -> Result<()> {
        match held {
            Some(newer) if newer > self.epoch => Err(self.refused(table, newer)),
            _ => Ok(()),
        }
    }

    fn refused(&self, table: &str, other: i64) -> LakeError {
        LakeError::Fenced {
            table: table.to_string(),
            app_id: self.app_id.clone(),
            epoch: self.epoch,
            other,
        }
    }
}

impl LakeError {
    /// Whether another writer of the same role committed first: the
    /// handle's holder has been replaced (or is racing its replacement).
    pub fn is_fenced(&self) -> bool {
        match self {
            LakeError::Fenced { .. } => true,
            LakeError::Delta { source, .. } => is_conflict(source),
            LakeError::Other { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(schema: &Arc<Schema>, value: i64) -> Vec<RecordBatch> {
        let column: ArrayRef = Arc::new(Int64Array::from(vec![value]));
        vec![RecordBatch::try_new(schema.clone(), vec![column]).unwrap()]
    }

    #[tokio::test]
    async fn a_replaced_holder_cannot_commit_before_or_after_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        lake.open_or_create("log", "roles", &schema, &[])
            .await
            .unwrap();
        lake.open_or_create("t", "data", &schema, &[])
            .await
            .unwrap();

        let first = lake.claim_epoch("log", "leader", "a", &[]).await.unwrap();
        assert_eq!(first.epoch, 1);
        let old = lake.fenced(first);
        let mut stale = old.open_or_create("t", "data", &schema, &[]).await.unwrap();
        assert!(stale.append("s", 1, rows(&schema, 1)).await.unwrap());

        let second = lake.claim_epoch("log", "leader", "b", &[]).await.unwrap();
        assert_eq!(second.epoch, 2, "the next claim takes the next epoch");
        let new = lake.fenced(second);
        let mut current = new.open_or_create("t", "data", &schema, &[]).await.unwrap();
        assert!(current.append("s", 2, rows(&schema, 2)).await.unwrap());

        // The stale handle's snapshot predates the new holder's commit:
        // Delta's conflict check refuses it (same app id).
        let err = stale.append("s", 3, rows(&schema, 3)).await.unwrap_err();
        assert!(err.is_fenced(), "{err}");
        // Reloaded, it sees the newer epoch and refuses itself.
        let err = stale.reload().await.unwrap_err();
        assert!(matches!(err, LakeError::Fenced { other: 2, .. }), "{err}");
        let err = old
            .open_or_create("t", "data", &schema, &[])
            .await
            .err()
            .expect("a stale holder cannot reopen the table");
        assert!(err.is_fenced(), "{err}");

        assert!(current.append("s", 3, rows(&schema, 3)).await.unwrap());
        current.reload().await.unwrap();
        assert_eq!(current.committed("s").await.unwrap(), Some(3));
    }
}
