//! The ingest tier: raw records → bronze plugin → `bronze_events`, one
//! commit per batch, and producers acknowledged as soon as that commit is
//! durable. It never waits for silver or gold: bronze is the acknowledged,
//! replayable log the silver tier follows.
//!
//! Commit protocol of bronze batch N: the plugin's rows (or, if the bronze
//! plugin fails, quarantine rows with the raw bytes) are committed with app
//! transaction `sluice-bronze` = N. Source positions are the max offsets
//! stored in those rows.

use deltalake::arrow::array::RecordBatch;

use super::STAGE_BRONZE;
use super::slots::Slots;
use crate::failpoint::reached as failpoint;
use crate::lake::LakeTable;
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
}

impl IngestTier {
    pub(super) fn new(bronze: LakeTable, quarantine: LakeTable, slots: Slots) -> IngestTier {
        IngestTier {
            bronze,
            quarantine,
            slots,
        }
    }

    /// Runs the bronze plugin on `records` and commits its rows as the next
    /// bronze batch (or quarantines the batch if the plugin fails). When
    /// this returns, the records are durable and may be acknowledged.
    pub async fn commit(&mut self, records: &[RawRecord]) -> anyhow::Result<Committed> {
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
                let stored = bronze::to_stored(&rows, batch, &plugin.meta().producer());
                self.bronze
                    .append(STAGE_BRONZE, batch, vec![stored.clone()])
                    .await?;
                committed.rows = stored;
            }
            Err(failure) => {
                let producer = self.slots.active(Layer::Bronze).meta().producer();
                tracing::error!(batch, plugin = %producer, "{failure}; quarantining the batch");
                let q = super::rows::quarantine_all(
                    &input,
                    batch,
                    now,
                    Layer::Bronze,
                    &failure,
                    &producer,
                )?;
                self.quarantine.append(STAGE_BRONZE, batch, vec![q]).await?;
                committed.bronze_failure = Some(failure.reason());
            }
        }
        failpoint("bronze-committed", batch);
        crate::metrics::record_tier_position("bronze", batch);
        Ok(committed)
    }
}
