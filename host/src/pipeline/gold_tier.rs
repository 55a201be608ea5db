//! The gold tier: follows silver. Each step takes every silver step committed
//! since its last one (bronze batches `a..=b`), runs the gold plugin once and
//! folds its rows into the gold tables with one MERGE per table, all under
//! app transaction `sluice-gold` = b; then `pipeline_batches` gets the step's
//! row (`sluice-batches` = b): bronze up to b is refined.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use deltalake::arrow::array::{
    BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use deltalake::arrow::compute::{concat_batches, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::prelude::SessionContext;

use super::silver_tier::{SilverCommitted, add_reasons, sum_reports};
use super::slots::Slots;
use super::{BatchReport, STAGE_DONE, STAGE_GOLD, STAGE_PLAN};
use crate::failpoint::reached_in as failpoint;
use crate::lake::{self, Lake, LakeTable};
use crate::layers::bronze::{self, RawColumns};
use crate::layers::gold::GoldTables;
use crate::layers::quarantine::QuarantineRows;
use crate::runtime::{Layer, PluginFailure};

pub const BATCHES_TABLE: &str = "pipeline_batches";

/// Gold's tables, the step log, and the tier's position.
pub(super) struct GoldTier {
    pub(super) lake: Lake,
    pub(super) gold: GoldTables,
    /// Hash of the gold plugin `gold` was opened for.
    pub(super) opened_for: String,
    pub(super) quarantine: LakeTable,
    pub(super) batches: LakeTable,
    /// The stored bronze schema (raw bytes of a failed step come from bronze).
    pub(super) bronze_schema: SchemaRef,
    pub(super) silver_schema: SchemaRef,
    /// The first bronze batch not yet in gold: not yet refined.
    pub(super) next_batch: i64,
}

/// What the gold plugin made of a step.
enum GoldOutcome {
    /// Gold tables written; quarantined events by reason if the plugin failed.
    Done(Vec<(String, usize)>),
    /// The plugin failed and the step is to be split: nothing happened.
    Split,
}

impl GoldTier {
    /// One step over consecutive silver steps. If the gold plugin fails on
    /// several, each becomes a step of its own, so a silver step that makes
    /// it fail costs only its own events.
    pub(super) async fn step(
        &mut self,
        slots: &Slots,
        steps: Vec<SilverCommitted>,
    ) -> anyhow::Result<BatchReport> {
        let started = Instant::now();
        let (Some(first), Some(last)) = (steps.first(), steps.last()) else {
            anyhow::bail!("a gold step needs at least one silver step");
        };
        let (first, last) = (first.first, last.last);
        anyhow::ensure!(
            first == self.next_batch,
            "gold step {first}..={last} does not follow batch {} in order",
            self.next_batch - 1
        );
        let rows: Vec<RecordBatch> = steps.iter().map(|s| s.rows.clone()).collect();
        let rows = concat_batches(&self.silver_schema, &rows)?;
        let split = steps.len() > 1;
        let mut report = match self.merge(slots, first, last, &rows, split).await? {
            GoldOutcome::Done(failed) => {
                self.finish(slots, (first, last), &steps, failed, started)
                    .await?
            }
            GoldOutcome::Split => {
                tracing::warn!(
                    steps = steps.len(),
                    "the gold plugin failed on several silver steps: one gold step each"
                );
                let mut reports = Vec::new();
                for step in &steps {
                    let started = Instant::now();
                    let one = std::slice::from_ref(step);
                    let failed = match self
                        .merge(slots, step.first, step.last, &step.rows, false)
                        .await?
                    {
                        GoldOutcome::Done(failed) => failed,
                        GoldOutcome::Split => unreachable!("a single step is never split"),
                    };
                    reports.push(
                        self.finish(slots, (step.first, step.last), one, failed, started)
                            .await?,
                    );
                }
                sum_reports(reports).context("a gold step has silver steps")?
            }
        };
        report.first_batch = first;
        let now = crate::time::now_micros();
        for micros in steps.iter().flat_map(|s| &s.ingest_micros) {
            crate::metrics::record_event_to_gold(now.saturating_sub(*micros));
        }
        Ok(report)
    }

    /// Records the step `first..=last` as refined and returns its figures
    /// (silver's and gold's time in `millis`).
    async fn finish(
        &mut self,
        slots: &Slots,
        (first, last): (i64, i64),
        steps: &[SilverCommitted],
        failed: Vec<(String, usize)>,
        started: Instant,
    ) -> anyhow::Result<BatchReport> {
        let mut report = sum_reports(steps.iter().map(|s| s.report.clone()))
            .context("a gold step has silver steps")?;
        report.first_batch = first;
        report.batch = last;
        add_reasons(&mut report.quarantined, &failed.into_iter().collect());
        report.millis += started.elapsed().as_millis();
        failpoint("before-done", first, last);
        let plugins = [Layer::Bronze, Layer::Silver, Layer::Gold]
            .map(|l| slots.active(l).meta().producer())
            .join(",");
        self.record_step(&report, plugins).await?;
        self.next_batch = last + 1;
        crate::metrics::record_tier_position("gold", last);
        crate::metrics::record_batch(crate::metrics::StepFigures {
            batch: report.batch,
            events: report.events,
            accepted: report.accepted,
            quarantined: &report.quarantined,
            millis: report.millis,
        });
        Ok(report)
    }

    /// Runs the gold plugin on the silver rows of bronze batches
    /// `first..=last` and folds its rows into the gold tables. If the plugin
    /// fails, the step's events are quarantined for gold (or, with `split`,
    /// nothing happens).
    async fn merge(
        &mut self,
        slots: &Slots,
        first: i64,
        last: i64,
        rows: &RecordBatch,
        split: bool,
    ) -> anyhow::Result<GoldOutcome> {
        if rows.num_rows() == 0 {
            return Ok(GoldOutcome::Done(Vec::new()));
        }
        let job = slots.start_job(Layer::Gold, rows.clone());
        match slots.finish_job(last, job, |out, _| Ok(out)).await {
            Ok((outputs, _)) => {
                self.ensure_tables(slots).await?;
                self.announce(last).await?;
                self.gold.write_stored(STAGE_GOLD, last, &outputs).await?;
                failpoint("gold-tables", first, last);
                self.gold.write_derived(STAGE_GOLD, last, &outputs).await?;
                Ok(GoldOutcome::Done(Vec::new()))
            }
            Err(_) if split => Ok(GoldOutcome::Split),
            Err(failure) => Ok(GoldOutcome::Done(
                self.quarantine_step(slots, first, last, rows, &failure)
                    .await?,
            )),
        }
    }

    /// On a shared lake (tables fenced by the leader's epoch), commits the
    /// step ending at `last` to `pipeline_batches` before any gold table:
    /// a leader replaced mid-step is refused here if it was replaced before,
    /// and otherwise its successor finishes the step over the same range
    /// (`recovery.rs`), so no table folds a batch twice under two steps.
    async fn announce(&mut self, last: i64) -> anyhow::Result<()> {
        if self.batches.is_fenced() {
            self.batches.commit_mark(STAGE_PLAN, last).await?;
        }
        Ok(())
    }

    /// Quarantines the events behind `rows` (with their raw bytes, read back
    /// from bronze) for gold.
    async fn quarantine_step(
        &mut self,
        slots: &Slots,
        first: i64,
        last: i64,
        rows: &RecordBatch,
        failure: &PluginFailure,
    ) -> anyhow::Result<Vec<(String, usize)>> {
        let producer = slots.active(Layer::Gold).meta().producer();
        tracing::error!(first, last, plugin = %producer, "{failure}; quarantining the step for gold");
        let bronze_rows = self.bronze_rows_of(first, last, rows).await?;
        let raw = RawColumns::new(&bronze_rows).map_err(anyhow::Error::msg)?;
        let mut q = QuarantineRows::new(last, crate::time::now_micros());
        for i in 0..raw.len() {
            q.push(
                Layer::Gold,
                failure.reason(),
                &failure.to_string(),
                raw.row(i),
                &producer,
            );
        }
        let n = q.len();
        self.announce(last).await?;
        self.quarantine
            .append(STAGE_GOLD, last, vec![q.finish()])
            .await?;
        Ok(vec![(failure.reason().to_string(), n)])
    }

    /// The bronze rows the silver `rows` of batches `first..=last` came from.
    async fn bronze_rows_of(
        &self,
        first: i64,
        last: i64,
        rows: &RecordBatch,
    ) -> anyhow::Result<RecordBatch> {
        let table = self
            .lake
            .open(bronze::TABLE)
            .await?
            .context("bronze_events is gone")?;
        let ctx = SessionContext::new();
        lake::register(&ctx, bronze::TABLE, &table).await?;
        let bronze_rows =
            super::recovery::bronze_batches(&ctx, first, last, &self.bronze_schema).await?;
        let wanted = positions(rows)?;
        let found = positions_list(&bronze_rows)?;
        let keep: BooleanArray = found.iter().map(|p| Some(wanted.contains(p))).collect();
        Ok(filter_record_batch(&bronze_rows, &keep)?)
    }

    /// Reopens the gold tables if the active gold plugin changed since.
    pub(super) async fn ensure_tables(&mut self, slots: &Slots) -> anyhow::Result<()> {
        let gold = slots.active(Layer::Gold);
        if gold.hash() != self.opened_for {
            self.gold = GoldTables::open(&self.lake, gold.meta()).await?;
            self.opened_for = gold.hash().to_string();
        }
        Ok(())
    }

    async fn record_step(&mut self, report: &BatchReport, plugins: String) -> anyhow::Result<()> {
        let row = RecordBatch::try_new(
            batches_schema(),
            vec![
                Arc::new(Int64Array::from(vec![report.batch])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![crate::time::now_micros()])
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![report.events as i64])),
                Arc::new(Int64Array::from(vec![report.accepted as i64])),
                Arc::new(Int64Array::from(vec![report.quarantined_total() as i64])),
                Arc::new(Int64Array::from(vec![report.millis as i64])),
                Arc::new(StringArray::from(vec![plugins])),
            ],
        )?;
        self.batches
            .append(STAGE_DONE, report.batch, vec![row])
            .await?;
        Ok(())
    }
}

pub(super) fn batches_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("batch_id", DataType::Int64, false),
        Field::new(
            "committed_at",
            sluice_plugin_sdk::schemas::timestamp_type(),
            false,
        ),
        Field::new("events", DataType::Int64, false),
        Field::new("accepted", DataType::Int64, false),
        Field::new("quarantined", DataType::Int64, false),
        Field::new("millis", DataType::Int64, false),
        Field::new("plugins", DataType::Utf8, false),
    ]))
}

type Position = (String, String, i64);

/// Each row's source position (source, partition, offset).
fn positions_list(rows: &RecordBatch) -> anyhow::Result<Vec<Position>> {
    let text = |name: &str| -> anyhow::Result<StringArray> {
        let col = rows
            .column_by_name(name)
            .with_context(|| format!("rows lack `{name}`"))?;
        let utf8 = deltalake::arrow::compute::cast(col, &DataType::Utf8)?;
        Ok(utf8
            .as_any()
            .downcast_ref::<StringArray>()
            .context("cast to utf8")?
            .clone())
    };
    let (source, partition) = (text("source")?, text("source_partition")?);
    let offset = rows
        .column_by_name("source_offset")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .context("rows lack an int64 `source_offset`")?;
    Ok((0..rows.num_rows())
        .map(|i| {
            (
                source.value(i).to_string(),
                partition.value(i).to_string(),
                offset.value(i),
            )
        })
        .collect())
}

fn positions(rows: &RecordBatch) -> anyhow::Result<HashSet<Position>> {
    Ok(positions_list(rows)?.into_iter().collect())
}
