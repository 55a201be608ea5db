//! Appends fenced by app transactions, so several writers can append to one
//! table without a lock: each commit carries the app ids it claims (a
//! sequence number, the position of each source partition), Delta refuses a
//! commit when a concurrent one carried one of the same ids, and the loser
//! learns what the winners claimed from their commits and builds its
//! commit again from that (kafka-delta-ingest's pattern).

use std::collections::HashMap;

use deltalake::DeltaTableError;
use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::TransactionError;
use deltalake::protocol::SaveMode;

use crate::history::commits_in;
use crate::{LakeTable, Result, delta_err, quiet_commit, retry};

/// The app transaction version per app id that a writer knows the table
/// holds: a lower bound for every id, exact for every id whose version
/// moved while this writer watched (every commit that moved one it claims
/// too made its own commit conflict, and was read).
pub type Marks = HashMap<String, i64>;

/// One attempt of a fenced append: the app transactions it claims and its
/// rows.
pub struct FencedCommit {
    pub txns: Vec<(String, i64)>,
    pub rows: Vec<RecordBatch>,
}

/// Raises `marks[id]` to `version`.
pub fn raise_mark(marks: &mut Marks, id: &str, version: i64) {
    match marks.get_mut(id) {
        Some(known) => *known = (*known).max(version),
        None => {
            marks.insert(id.to_string(), version);
        }
    }
}

impl LakeTable {
    /// Appends what `build` makes of the current `marks`, claiming its app
    /// transactions; `build` returns `None` when nothing is left to commit
    /// (the table holds it all). On a conflict with a concurrent commit, or
    /// after a transient storage error, the handle catches up with the
    /// table (raising `marks` by every commit since its snapshot, its own
    /// lost-answer commit included) and calls `build` again. Returns whether
    /// a commit of this call landed; `marks` then includes its claims.
    pub async fn append_fenced<F>(&mut self, marks: &mut Marks, mut build: F) -> Result<bool>
    where
        F: FnMut(&Marks) -> Option<FencedCommit>,
    {
        let start = std::time::Instant::now();
        let mut delays = retry::delays();
        loop {
            let Some(FencedCommit { txns, rows }) = build(marks) else {
                return Ok(false);
            };
            let claims = txns
                .iter()
                .map(|(id, version)| Transaction::new(id.as_str(), *version))
                .chain(self.fence_claim())
                .collect();
            let attempt = self
                .table
                .clone()
                .write(rows)
                .with_save_mode(SaveMode::Append)
                .with_commit_properties(quiet_commit().with_application_transactions(claims))
                .await;
            match attempt {
                Ok(table) => {
                    self.table = table;
                    for (id, version) in &txns {
                        raise_mark(marks, id, *version);
                    }
                    return Ok(true);
                }
                Err(e) if is_conflict(&e) => {
                    tracing::debug!(table = %self.name, "a concurrent commit claimed the same app ids; catching up");
                    self.catch_up(marks).await?;
                }
                Err(e)
                    if retry::is_transient(&format!("{e:?} {e}"))
                        && start.elapsed() < retry::GIVE_UP_AFTER =>
                {
                    let delay = delays.next().unwrap_or(std::time::Duration::from_secs(5));
                    tracing::warn!(table = %self.name, error = %e, ?delay, "commit failed: storage unreachable; retrying");
                    retry::report(&self.name);
                    tokio::time::sleep(delay).await;
                    self.catch_up(marks).await?;
                }
                Err(e) => return Err(delta_err(&self.name)(e)),
            }
        }
    }

    /// Reloads the table and raises `marks` by the app transactions of
    /// every commit after this handle's snapshot (one read of each commit
    /// file, no log replay): how a writer, or a reader following the
    /// table, learns what others committed.
    pub async fn catch_up(&mut self, marks: &mut Marks) -> Result<()> {
        let first_unseen = self.table.version().map_or(0, |v| v + 1);
        self.reload().await?;
        let Some(now) = self.table.version() else {
            return Ok(());
        };
        for commit in commits_in(&self.table, &self.name, first_unseen..=now).await? {
            for (id, claimed) in commit.txns {
                raise_mark(marks, &id, claimed);
            }
        }
        Ok(())
    }
}

/// Whether a commit failed because a concurrent commit won (Delta's
/// conflict check, or the table moving on faster than delta-rs retries).
pub(crate) fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
        }
    )
}

/// The `txn` actions of one commit file (newline-delimited JSON actions).
pub(crate) fn app_transactions(commit: &[u8]) -> Vec<(String, i64)> {
    #[derive(serde::Deserialize)]
    struct Line {
        txn: Option<Txn>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Txn {
        app_id: String,
        version: i64,
    }
    commit
        .split(|b| *b == b'\n')
        .filter(|line| line.windows(6).any(|w| w == b"\"txn\":"))
        .filter_map(|line| serde_json::from_slice::<Line>(line).ok()?.txn)
        .map(|t| (t.app_id, t.version))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, Int64Array};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::Lake;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![Field::new(
            "offset",
            DataType::Int64,
            false,
        )]))
    }

    /// Offsets `from..=to` of one partition, fenced by its mark.
    fn offsets(marks: &Marks, from: i64, to: i64) -> Option<FencedCommit> {
        let first = marks.get("p").map_or(from, |m| (m + 1).max(from));
        let column: ArrayRef = Arc::new(Int64Array::from_iter_values(first..=to));
        (first <= to).then(|| FencedCommit {
            txns: vec![("p".into(), to)],
            rows: vec![RecordBatch::try_new(schema(), vec![column]).unwrap()],
        })
    }

    #[test]
    fn app_transactions_are_read_from_a_commit_file() {
        let commit = br#"{"commitInfo":{"operation":"WRITE"}}
{"txn":{"appId":"kafka:t/0","version":41,"lastUpdated":1}}
{"add":{"path":"x.parquet","size":1}}
{"txn":{"appId":"sluice-bronze","version":7}}"#;
        assert_eq!(
            app_transactions(commit),
            vec![
                ("kafka:t/0".to_string(), 41),
                ("sluice-bronze".to_string(), 7)
            ]
        );
    }

    #[tokio::test]
    async fn a_stale_writer_learns_the_winners_claims_and_commits_only_what_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(dir.path()).unwrap();
        let mut a = lake
            .open_or_create("t", "test", &schema(), &[])
            .await
            .unwrap();
        let mut b = lake.reopen(&a).await.unwrap();
        let (mut marks_a, mut marks_b) = (Marks::new(), Marks::new());
        assert!(
            a.append_fenced(&mut marks_a, |m| offsets(m, 0, 9))
                .await
                .unwrap()
        );
        // b's snapshot predates a's commit: it conflicts, reads a's claim
        // and commits 10..=14 only.
        assert!(
            b.append_fenced(&mut marks_b, |m| offsets(m, 5, 14))
                .await
                .unwrap()
        );
        assert_eq!(marks_b.get("p"), Some(&14));
        // Everything a holds again is in the table already.
        assert!(
            !a.append_fenced(&mut marks_a, |m| offsets(m, 3, 12))
                .await
                .unwrap()
        );
        assert_eq!(marks_a.get("p"), Some(&14));
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        a.reload().await.unwrap();
        crate::register(&ctx, "t", a.delta()).await.unwrap();
        let counted = ctx
            .sql("SELECT COUNT(*) AS n, COUNT(DISTINCT \"offset\") AS d FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let column = |i: usize| {
            counted[0]
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)
        };
        assert_eq!((column(0), column(1)), (15, 15), "0..=14, each once");
    }
}
