//! The silver tier: follows bronze by batch id. Each step takes one or more
//! consecutive committed bronze batches `a..=b`, runs the silver plugin and
//! the host's dedup and watermarks once, and appends `quarantine` and
//! `silver_events` (concurrently), each under app transaction
//! `sluice-silver` = b. Rows
//! keep the id of the bronze batch they came from.

use std::collections::BTreeMap;

use deltalake::arrow::array::{Int64Array, RecordBatch};
use deltalake::arrow::compute::kernels::cmp::gt;
use deltalake::arrow::compute::{concat_batches, filter_record_batch};

use super::ingest::Committed;
use super::rows::{check_silver_coverage, push_plugin_quarantine};
use super::slots::Slots;
use super::{BatchReport, STAGE_SILVER};
use crate::failpoint::reached_in as failpoint;
use crate::lake::LakeTable;
use crate::layers::BATCH_ID;
use crate::layers::bronze::RawColumns;
use crate::layers::quarantine::QuarantineRows;
use crate::layers::silver::{self, DedupState, TimeBounds};
use crate::runtime::Layer;

/// A committed silver step: what the gold tier takes next.
pub struct SilverCommitted {
    pub first: i64,
    pub last: i64,
    /// The stored silver rows of the step (possibly none).
    pub rows: RecordBatch,
    /// Events, accepted and quarantined (bronze and silver) of the step.
    pub report: BatchReport,
    /// When each bronze batch of the step was received (UTC µs).
    pub ingest_micros: Vec<i64>,
}

/// Silver's tables, the host state between its steps, and its position.
pub(super) struct SilverTier {
    pub(super) bounds: TimeBounds,
    /// Read-only here: recovery and replays read bronze through it.
    pub(super) bronze: LakeTable,
    pub(super) silver: LakeTable,
    pub(super) quarantine: LakeTable,
    pub(super) dedup: DedupState,
    /// The first bronze batch not yet in silver.
    pub(super) next_batch: i64,
    /// Up to this bronze batch a table may already hold silver rows (what
    /// a previous run wrote before it stopped); steps after it append
    /// without asking the tables first.
    pub(super) written_by_earlier_run: i64,
}

/// What the silver plugin and dedup made of a step's bronze rows.
pub(super) enum SilverRows {
    /// Rows to store (the plugin's rejects and dedup's are in the step's
    /// quarantine).
    Rows(RecordBatch),
    /// The plugin failed: every row is in the step's quarantine.
    Quarantined,
    /// The plugin failed and the step is to be split: nothing happened.
    Split,
}

impl SilverTier {
    /// One step over consecutive committed bronze batches. `None` if the
    /// silver plugin failed and `split` allows retrying batch by batch
    /// (then nothing was committed).
    pub(super) async fn step(
        &mut self,
        slots: &Slots,
        step: &[Committed],
        split: bool,
    ) -> anyhow::Result<Option<SilverCommitted>> {
        let started = std::time::Instant::now();
        let (Some(first), Some(last)) = (step.first(), step.last()) else {
            anyhow::bail!("a silver step needs at least one bronze batch");
        };
        let (first, last) = (first.batch, last.batch);
        anyhow::ensure!(
            first == self.next_batch && last - first + 1 == step.len() as i64,
            "silver step {first}..={last} does not follow batch {} in order",
            self.next_batch - 1
        );
        let rows: Vec<RecordBatch> = step.iter().map(|c| c.rows.clone()).collect();
        let rows = concat_batches(self.bronze.schema(), &rows)?;
        let Some(mut done) = self.refine(slots, first, last, &rows, split).await? else {
            return Ok(None);
        };
        done.report.events = step.iter().map(|c| c.events).sum();
        for c in step {
            if let Some(reason) = c.bronze_failure {
                *done
                    .report
                    .quarantined
                    .entry(reason.to_string())
                    .or_default() += c.events;
            }
        }
        done.report.millis = started.elapsed().as_millis();
        done.ingest_micros = step.iter().map(|c| c.ingest_micros).collect();
        Ok(Some(done))
    }

    /// Silver for the bronze rows of batches `first..=last`, committed under
    /// `last`. A table that already holds some of the range (a step a crash
    /// interrupted, redone at start) gets only the rows of batches after
    /// the ones it holds.
    pub(super) async fn refine(
        &mut self,
        slots: &Slots,
        first: i64,
        last: i64,
        bronze_rows: &RecordBatch,
        split: bool,
    ) -> anyhow::Result<Option<SilverCommitted>> {
        let mut q = QuarantineRows::new(last, crate::time::now_micros());
        let stored = match self
            .silver_rows(slots, last, bronze_rows, split, &mut q)
            .await?
        {
            SilverRows::Rows(stored) => stored,
            SilverRows::Split => return Ok(None),
            SilverRows::Quarantined => RecordBatch::new_empty(self.silver.schema().clone()),
        };
        let mut report = BatchReport {
            batch: last,
            first_batch: first,
            events: bronze_rows.num_rows(),
            accepted: stored.num_rows(),
            ..Default::default()
        };
        for (reason, n) in q.reasons() {
            *report.quarantined.entry(reason).or_default() += n;
        }
        let partly_written = first <= self.written_by_earlier_run;
        // Independent tables, each checked on its own at recovery: the two
        // commits may land in either order.
        tokio::try_join!(
            append_unwritten(&mut self.quarantine, last, q.finish(), partly_written),
            append_unwritten(&mut self.silver, last, stored.clone(), partly_written),
        )?;
        failpoint("silver-committed", first, last);
        self.next_batch = last + 1;
        crate::metrics::record_tier_position("silver", last);
        Ok(Some(SilverCommitted {
            first,
            last,
            rows: stored,
            report,
            ingest_micros: Vec::new(),
        }))
    }

    /// Runs the silver plugin and the host's dedup on the bronze rows of a
    /// step. Returns the rows to store in silver; rejected rows go to `q`.
    /// If the plugin failed: the whole step is in `q`, or, with `split`,
    /// nothing happened.
    pub(super) async fn silver_rows(
        &mut self,
        slots: &Slots,
        batch: i64,
        bronze_rows: &RecordBatch,
        split: bool,
        q: &mut QuarantineRows,
    ) -> anyhow::Result<SilverRows> {
        if bronze_rows.num_rows() == 0 {
            return Ok(SilverRows::Rows(RecordBatch::new_empty(
                self.silver.schema().clone(),
            )));
        }
        let raw = RawColumns::new(bronze_rows).map_err(anyhow::Error::msg)?;
        let job = slots.start_job(Layer::Silver, bronze_rows.clone());
        let inputs = bronze_rows.num_rows();
        let outcome = slots
            .finish_job(batch, job, |out, plugin| {
                check_silver_coverage(out, inputs, plugin)
            })
            .await;
        let ((silver_rows, plugin_quarantine), producer) = match outcome {
            Ok((parts, plugin)) => (parts, plugin.meta().producer()),
            Err(_) if split => return Ok(SilverRows::Split),
            Err(failure) => {
                let producer = slots.active(Layer::Silver).meta().producer();
                tracing::error!(batch, plugin = %producer, "{failure}; quarantining the batch");
                for i in 0..raw.len() {
                    q.push(
                        Layer::Silver,
                        failure.reason(),
                        &failure.to_string(),
                        raw.row(i),
                        &producer,
                    );
                }
                return Ok(SilverRows::Quarantined);
            }
        };
        push_plugin_quarantine(q, &plugin_quarantine, &raw, &producer)?;
        let (accepted, rejected) =
            silver::deduplicate(&mut self.dedup, &silver_rows, &raw).map_err(anyhow::Error::msg)?;
        for r in &rejected {
            q.push(
                Layer::Silver,
                r.reason,
                &r.detail,
                raw.row(r.input_row as usize),
                "sluice-host",
            );
        }
        let stored =
            silver::to_stored(&accepted, bronze_rows, &producer).map_err(anyhow::Error::msg)?;
        Ok(SilverRows::Rows(stored))
    }
}

/// Appends `rows` under `sluice-silver` = `last`. If the table may hold
/// part of the step (`partly_written`), the rows of bronze batches it
/// already holds are left out (all of them if it holds `last`).
async fn append_unwritten(
    table: &mut LakeTable,
    last: i64,
    rows: RecordBatch,
    partly_written: bool,
) -> anyhow::Result<()> {
    if rows.num_rows() == 0 {
        return Ok(());
    }
    if !partly_written {
        table.append(STAGE_SILVER, last, vec![rows]).await?;
        return Ok(());
    }
    let held = table.committed(STAGE_SILVER).await?.unwrap_or(0);
    if held >= last {
        return Ok(());
    }
    let rows = rows_after(&rows, held)?;
    if rows.num_rows() > 0 {
        table.append(STAGE_SILVER, last, vec![rows]).await?;
    }
    Ok(())
}

/// The rows whose bronze batch is after `batch`.
pub(super) fn rows_after(rows: &RecordBatch, batch: i64) -> anyhow::Result<RecordBatch> {
    let ids = rows
        .column_by_name(BATCH_ID)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| anyhow::anyhow!("rows lack an int64 `{BATCH_ID}` column"))?;
    let keep = gt(ids, &Int64Array::new_scalar(batch))?;
    Ok(filter_record_batch(rows, &keep)?)
}

/// Adds up the figures of consecutive steps.
pub(super) fn sum_reports(reports: impl IntoIterator<Item = BatchReport>) -> Option<BatchReport> {
    let mut total: Option<BatchReport> = None;
    for report in reports {
        match total.as_mut() {
            Some(total) => total.absorb(report),
            None => total = Some(report),
        }
    }
    total
}

/// Quarantined events by reason, added into `into`.
pub(super) fn add_reasons(into: &mut BTreeMap<String, usize>, from: &BTreeMap<String, usize>) {
    for (reason, n) in from {
        *into.entry(reason.clone()).or_default() += n;
    }
}
