//! The instances on a shared lake as its commit logs tell (for `sluice
//! status`): the bronze writers with what they committed lately, and who
//! took the refine role last.

use std::collections::{BTreeMap, BTreeSet};

use super::shared::LEADER_APP;
use super::{BATCHES_TABLE, STAGE_BRONZE};
use crate::lake::Lake;
use crate::layers::bronze;

/// The instances on a lake as its logs tell: bronze writers with what they
/// committed lately, and who holds the refine role.
#[derive(Debug, Default)]
pub struct Fleet {
    pub writers: Vec<Writer>,
    /// The refine role's latest epoch and the instance that claimed it.
    pub leader: Option<(i64, String)>,
}

/// One instance's bronze commits among the recent ones.
#[derive(Debug)]
pub struct Writer {
    pub id: String,
    pub commits: usize,
    pub last_commit_ms: Option<i64>,
    /// Ordered-source partitions its commits carried (`<source>:<partition>`).
    pub partitions: BTreeSet<String>,
}

/// Reads [`Fleet`] from the last `recent` commits of bronze and of
/// `pipeline_batches`.
pub async fn fleet(lake: &Lake, recent: u64) -> anyhow::Result<Fleet> {
    let writer_prefix = format!("{STAGE_BRONZE}@");
    let mut writers: BTreeMap<String, Writer> = BTreeMap::new();
    for commit in lake.recent_commits(bronze::TABLE, recent).await? {
        let Some(id) = commit
            .txns
            .iter()
            .find_map(|(app, _)| app.strip_prefix(&writer_prefix))
        else {
            continue;
        };
        let writer = writers.entry(id.to_string()).or_insert_with(|| Writer {
            id: id.to_string(),
            commits: 0,
            last_commit_ms: None,
            partitions: Default::default(),
        });
        writer.commits += 1;
        writer.last_commit_ms = writer.last_commit_ms.max(commit.timestamp_ms);
        let positions = commit.txns.iter().filter(|(app, _)| app.contains(':'));
        writer
            .partitions
            .extend(positions.map(|(app, _)| app.clone()));
    }
    let holder_prefix = format!("{LEADER_APP}@");
    let leader = lake
        .recent_commits(BATCHES_TABLE, recent)
        .await?
        .into_iter()
        .flat_map(|c| c.txns)
        .filter_map(|(app, epoch)| Some((epoch, app.strip_prefix(&holder_prefix)?.to_string())))
        .max();
    Ok(Fleet {
        writers: writers.into_values().collect(),
        leader,
    })
}
