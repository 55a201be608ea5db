//! A table's recent commits as the log records them: when each was made and
//! the app transactions it carried, which say who wrote it (a writer's own
//! app id) and for what (a batch, a partition's position, an epoch).

use std::ops::RangeInclusive;

use deltalake::DeltaTable;
use deltalake::logstore::LogStore as _;

use crate::fenced::app_transactions;
use crate::{Lake, Result, delta_err, retry};

/// One commit of a table.
#[derive(Debug, Clone)]
pub struct CommitSummary {
    pub version: u64,
    /// The commit's `commitInfo.timestamp` (milliseconds since the epoch).
    pub timestamp_ms: Option<i64>,
    /// Its app transactions: app id and version.
    pub txns: Vec<(String, i64)>,
}

impl Lake {
    /// The last `max` commits of table `name`, oldest first (none if the
    /// table does not exist).
    pub async fn recent_commits(&self, name: &str, max: u64) -> Result<Vec<CommitSummary>> {
        let Some(table) = self.open(name).await? else {
            return Ok(Vec::new());
        };
        let Some(now) = table.version() else {
            return Ok(Vec::new());
        };
        commits_in(
            &table,
            name,
            now.saturating_sub(max.saturating_sub(1))..=now,
        )
        .await
    }
}

/// The commits of `table` (named `name`) in `versions`, oldest first: one
/// read of each commit file, no log replay, storage outages waited out. A
/// version cleaned up from the log is skipped.
pub(crate) async fn commits_in(
    table: &DeltaTable,
    name: &str,
    versions: RangeInclusive<u64>,
) -> Result<Vec<CommitSummary>> {
    let log = table.log_store();
    let mut out = Vec::new();
    for version in versions {
        let entry = retry::transient(name, "read a commit", || log.read_commit_entry(version))
            .await
            .map_err(delta_err(name))?;
        let Some(bytes) = entry else { continue };
        out.push(CommitSummary {
            version,
            timestamp_ms: commit_timestamp(&bytes),
            txns: app_transactions(&bytes),
        });
    }
    Ok(out)
}

/// The `commitInfo.timestamp` of one commit file, if it has one.
fn commit_timestamp(commit: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Line {
        commit_info: Option<Info>,
    }
    #[derive(serde::Deserialize)]
    struct Info {
        timestamp: Option<i64>,
    }
    commit
        .split(|b| *b == b'\n')
        .filter(|line| line.windows(13).any(|w| w == b"\"commitInfo\":"))
        .find_map(|line| {
            serde_json::from_slice::<Line>(line)
                .ok()?
                .commit_info?
                .timestamp
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timestamp_comes_from_commit_info() {
        let commit = b"{\"commitInfo\":{\"timestamp\":1765000000000,\"operation\":\"WRITE\"}}\n\
                       {\"txn\":{\"appId\":\"a\",\"version\":3}}\n";
        assert_eq!(commit_timestamp(commit), Some(1_765_000_000_000));
        assert_eq!(app_transactions(commit), vec![("a".to_string(), 3)]);
        assert_eq!(commit_timestamp(b"{\"add\":{}}"), None);
    }
}
