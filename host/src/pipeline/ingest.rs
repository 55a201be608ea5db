//! The ingest tier: raw records → bronze plugin → `bronze_events`, one
//! commit per batch, and producers acknowledged as soon as that commit is
//! durable. It never waits for silver or gold: bronze is the acknowledged,
//! replayable log the silver tier follows.
//!
//! Commit protocol of bronze batch N: the plugin's rows are committed with
//! app transactions `sluice-bronze` = N, `sluice-bronze@<writer>` = N (so a
//! writer knows its own commit whose answer was lost) and, per partition of
//! an ordered log (Kafka, Event Hubs), `<source>:<partition>` = its last
//! offset in the batch. Those make bronze safe for several writers without a
//! lock (`lake::LakeTable::append_fenced`): two commits claiming the same
//! batch id or partition conflict in Delta, and the loser takes the next id
//! and drops the records the winner stored. If the bronze plugin fails, the
//! batch's raw records go to quarantine under `sluice-bronze` = N there,
//! fenced the same way by the batch id and the writer's id, so two writers'
//! failures never share an id.
//! Source positions are the max offsets stored in those rows.

use anyhow::Context;
use deltalake::arrow::array::RecordBatch;

use super::STAGE_BRONZE;
use super::slots::Slots;
use crate::failpoint::reached as failpoint;
use crate::lake::{FencedCommit, LakeTable, Marks};
use crate::layers::bronze;
use crate::runtime::{Layer, PluginFailure};
use crate::sources::RawRecord;

/// A bronze batch that is durable: what the silver tier takes next.
pub struct Committed {
    pub batch: i64,
    /// The stored bronze rows; empty if the bronze plugin failed.
    pub rows: RecordBatch,
    /// Records in the batch (bronze rows or quarantined ones).
    pub events: usize,
    /// Why the bronze plugin failed the batch, if it did.
    pub bronze_failure: Option<&'static str>,
    /// When the batch was received (UTC µs): where event-to-gold latency starts.
    pub ingest_micros: i64,
}

/// Owns the bronze table's writes and gives bronze batches their ids.
pub struct IngestTier {
    bronze: LakeTable,
    /// Only for bronze failures; silver and gold append to it too, with their
    /// own app transactions (Delta appends commute).
    quarantine: LakeTable,
    slots: Slots,
    /// What this writer knows bronze holds: the last batch id, each ordered
    /// partition's last offset, its own last batch.
    marks: Marks,
    /// What this writer knows quarantine holds of bronze failures: the
    /// last failed batch id, its own last one.
    failed_marks: Marks,
    /// This writer's own app id in bronze commits.
    writer: String,
}

impl IngestTier {
    pub(super) fn new(bronze: LakeTable, quarantine: LakeTable, slots: Slots) -> IngestTier {
        IngestTier {
            bronze,
            quarantine,
            slots,
            marks: Marks::new(),
            failed_marks: Marks::new(),
            writer: format!("{STAGE_BRONZE}@{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// This writer's id (the part after `sluice-bronze@` in its commits),
    /// which names the instance on a shared lake.
    pub(super) fn writer_id(&self) -> &str {
        self.writer.rsplit('@').next().unwrap_or_default()
    }

    /// Reads, from this tier's own snapshot of bronze (and quarantine), the
    /// committed positions and the last bronze batch id, and starts its
    /// marks from them: exact as of the snapshot its commits start from,
    /// so any later commit of another writer makes them conflict.
    pub(super) async fn start(&mut self) -> anyhow::Result<(crate::record::Positions, i64)> {
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        crate::lake::register(&ctx, bronze::TABLE, self.bronze.delta()).await?;
        crate::lake::register(
            &ctx,
            crate::layers::quarantine::TABLE,
            self.quarantine.delta(),
        )
        .await?;
        let positions = bronze::positions_in(&ctx).await?;
        let last_bronze = self.bronze.committed(STAGE_BRONZE).await?.unwrap_or(0);
        let last_failed = self.quarantine.committed(STAGE_BRONZE).await?.unwrap_or(0);
        self.marks = bronze::position_marks(&positions);
        self.marks.insert(STAGE_BRONZE.to_string(), last_bronze);
        self.failed_marks = Marks::from([(STAGE_BRONZE.to_string(), last_failed)]);
        Ok((positions, last_bronze.max(last_failed)))
    }

    /// Runs the bronze plugin on `records` and commits its rows as the next
    /// bronze batch (or quarantines the batch if the plugin fails). When
    /// this returns, the records are durable and may be acknowledged.
    /// `None` if other writers had stored every record already.
    pub async fn commit(&mut self, records: &[RawRecord]) -> anyhow::Result<Option<Committed>> {
        let now = crate::time::now_micros();
        let input = bronze::raw_input(records, now);
        let expected_rows = input.num_rows();
        let (batch, job) = self.slots.start_bronze(input.clone());
        let outcome = self
            .slots
            .finish_job(batch, job, |mut out, plugin| {
                let rows = out.remove(bronze::TABLE).unwrap_or_else(|| {
                    let decl = plugin
                        .meta()
                        .output(bronze::TABLE)
                        .expect("checked at load");
                    RecordBatch::new_empty(decl.schema.clone())
                });
                if rows.num_rows() != expected_rows {
                    return Err(PluginFailure::BadOutput(format!(
                        "bronze must keep every record: got {} rows for {expected_rows}",
                        rows.num_rows(),
                    )));
                }
                // Positions and raw bytes are the host's: a plugin that
                // moved an offset could make a source skip or repeat.
                bronze::check_host_columns(&input, &rows).map_err(PluginFailure::BadOutput)?;
                Ok(rows)
            })
            .await;
        let mut committed = Committed {
            batch,
            rows: RecordBatch::new_empty(self.bronze.schema().clone()),
            events: records.len(),
            bronze_failure: None,
            ingest_micros: now,
        };
        match outcome {
            Ok((rows, plugin)) => {
                let producer = plugin.meta().producer();
                let Some((batch, stored)) = self.append_fenced(batch, &rows, &producer).await?
                else {
                    // Tentative ids are this writer's: give this one back.
                    self.slots.set_next_bronze(batch);
                    return Ok(None);
                };
                committed.batch = batch;
                committed.rows = stored;
            }
            Err(failure) => {
                let producer = self.slots.active(Layer::Bronze).meta().producer();
                tracing::error!(batch, plugin = %producer, "{failure}; quarantining the batch");
                committed.batch = self
                    .quarantine_fenced(batch, &input, now, &failure, &producer)
                    .await?;
                committed.bronze_failure = Some(failure.reason());
            }
        }
        failpoint("bronze-committed", committed.batch);
        crate::metrics::record_tier_position("bronze", committed.batch);
        Ok(Some(committed))
    }

    /// Quarantines the raw records of a batch the bronze plugin failed, as
    /// failed batch `tentative` or, if another writer's failure took that id
    /// meanwhile, the next free one. Returns the batch id.
    async fn quarantine_fenced(
        &mut self,
        tentative: i64,
        input: &RecordBatch,
        now: i64,
        failure: &PluginFailure,
        producer: &str,
    ) -> anyhow::Result<i64> {
        let writer = self.writer.clone();
        let mut attempt: Option<i64> = None;
        let mut unbuilt = None;
        self.quarantine
            .append_fenced(&mut self.failed_marks, |marks| {
                if let Some(batch) = attempt
                    && marks.get(&writer).is_some_and(|own| *own >= batch)
                {
                    return None; // our commit landed; its answer was lost
                }
                let batch = marks
                    .get(STAGE_BRONZE)
                    .map_or(tentative, |last| tentative.max(last + 1));
                let quarantined = super::rows::quarantine_all(
                    input,
                    batch,
                    now,
                    Layer::Bronze,
                    failure,
                    producer,
                );
                match quarantined {
                    Ok(rows) => {
                        attempt = Some(batch);
                        Some(FencedCommit {
                            txns: vec![(STAGE_BRONZE.to_string(), batch), (writer.clone(), batch)],
                            rows: vec![rows],
                        })
                    }
                    Err(e) => {
                        unbuilt = Some(e);
                        None
                    }
                }
            })
            .await?;
        if let Some(e) = unbuilt {
            return Err(e.context("quarantining a failed bronze batch"));
        }
        let batch = attempt.context("a failed bronze batch left nothing to quarantine")?;
        self.slots.set_next_bronze(batch + 1);
        Ok(batch)
    }

    /// Commits the plugin's `rows` as bronze batch `tentative` or, if other
    /// writers took that id meanwhile, the next free one, without the
    /// records they stored. Returns the batch id and the stored rows, or
    /// `None` if nothing was left to store.
    async fn append_fenced(
        &mut self,
        tentative: i64,
        rows: &RecordBatch,
        producer: &str,
    ) -> anyhow::Result<Option<(i64, RecordBatch)>> {
        let writer = self.writer.clone();
        let mut attempt: Option<(i64, RecordBatch)> = None;
        let mut refused = None;
        self.bronze
            .append_fenced(&mut self.marks, |marks| {
                if let Some((batch, _)) = &attempt
                    && marks.get(&writer).is_some_and(|own| own >= batch)
                {
                    return None; // our commit landed; its answer was lost
                }
                let (kept, positions) = match bronze::ahead_of_marks(rows, marks) {
                    Ok(Some(ahead)) => ahead,
                    Ok(None) => {
                        attempt = None;
                        return None;
                    }
                    Err(e) => {
                        refused = Some(e);
                        return None;
                    }
                };
                let batch = marks
                    .get(STAGE_BRONZE)
                    .map_or(tentative, |last| tentative.max(last + 1));
                let stored = bronze::to_stored(&kept, batch, producer);
                let mut txns = vec![(STAGE_BRONZE.to_string(), batch), (writer.clone(), batch)];
                txns.extend(positions);
                attempt = Some((batch, stored.clone()));
                Some(FencedCommit {
                    txns,
                    rows: vec![stored],
                })
            })
            .await?;
        if let Some(e) = refused {
            anyhow::bail!("bronze rows: {e}");
        }
        if let Some((batch, _)) = &attempt {
            self.slots.set_next_bronze(batch + 1);
        }
        Ok(attempt)
    }
}
