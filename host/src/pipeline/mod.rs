//! The pipeline, in two tiers that run concurrently, each exactly-once on
//! its own:
//!
//! - the **ingest tier** ([`ingest`]) commits raw records to `bronze_events`
//!   batch by batch and acknowledges producers at once;
//! - the **refine tier** ([`Pipeline`]) follows bronze: each step takes one or
//!   more consecutive bronze batches (more when it is behind, so gold's
//!   MERGEs are paid once per step, not per batch) through silver and gold.
//!
//! Commit protocol of a refine step covering bronze batches `a..=b`:
//! 1. silver: `silver_events` and `quarantine` with `sluice-silver` = b; each
//!    row keeps the id of the bronze batch it came from.
//! 2. gold: each gold table with `sluice-gold` = b (derived tables recomputed).
//! 3. `pipeline_batches` gets the step's summary row with `sluice-batches` = b:
//!    bronze batches up to b are done.
//!
//! On start, an interrupted step is redone over exactly its range (the
//! highest silver or gold transaction says where it ended), then bronze
//! batches after it are refined; every table write is skipped if that
//! table already holds the step. Host state (dedup ids, watermarks, SCD2
//! histories) is rebuilt from the tables as of the last done step.

pub mod ingest;
mod job;
pub mod plugins;
mod recovery;
mod replay;
mod rows;
pub mod runner;
pub mod shadow;
pub mod shared;
mod slots;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::failpoint::reached_in as failpoint;
use crate::lake::{Lake, LakeTable};
use crate::layers::bronze::{self, RawColumns};
use crate::layers::gold::GoldTables;
use crate::layers::quarantine::{self, QuarantineRows};
use crate::layers::silver::{self, DedupState, TimeBounds};
use crate::runtime::Layer;
use crate::sources::{Positions, RawRecord};
pub use ingest::{Committed, IngestTier};
use job::LayerJob;
pub use plugins::Plugins;
pub use recovery::{TierPositions, tier_positions};
pub use replay::ReplayReport;
use rows::{check_silver_coverage, column_u32, push_plugin_quarantine};
pub use slots::AutoRollback;
use slots::Slots;
use sluice_plugin_sdk::schemas::INPUT_ROW;

pub const BATCHES_TABLE: &str = "pipeline_batches";
pub const STAGE_BRONZE: &str = "sluice-bronze";
pub const STAGE_SILVER: &str = "sluice-silver";
pub const STAGE_GOLD: &str = "sluice-gold";
pub const STAGE_DONE: &str = "sluice-batches";

/// What one refine step did (one or more bronze batches, `first_batch..=batch`).
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    /// The last bronze batch of the step: its id in `pipeline_batches`.
    pub batch: i64,
    pub first_batch: i64,
    pub events: usize,
    pub accepted: usize,
    pub quarantined: BTreeMap<String, usize>,
    pub millis: u128,
}

impl BatchReport {
    pub fn quarantined_total(&self) -> usize {
        self.quarantined.values().sum()
    }

    /// Adds the report of the step that followed this one.
    fn absorb(&mut self, next: BatchReport) {
        self.batch = next.batch;
        self.events += next.events;
        self.accepted += next.accepted;
        for (reason, n) in next.quarantined {
            *self.quarantined.entry(reason).or_default() += n;
        }
        self.millis += next.millis;
    }
}

/// Running totals since the pipeline opened.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub batches: u64,
    pub events: u64,
    pub accepted: u64,
    pub quarantined: BTreeMap<String, u64>,
}

/// The refine tier: silver, gold and the step log, the host state between
/// them, and (until the runner moves it to its own task) the ingest tier.
pub struct Pipeline {
    lake: Lake,
    bounds: TimeBounds,
    slots: Slots,
    /// Hash of the gold plugin `gold` was opened for.
    gold_opened_for: String,
    /// Read-only here: recovery and replays read bronze through it.
    bronze: LakeTable,
    silver: LakeTable,
    quarantine: LakeTable,
    batches: LakeTable,
    gold: GoldTables,
    dedup: DedupState,
    /// The first bronze batch not yet refined.
    next_batch: i64,
    /// Committed positions when the pipeline opened; sources resume after them.
    positions: Positions,
    totals: Totals,
    ingest: Option<IngestTier>,
    /// Set when other instances share the lake (see `shared.rs`).
    shared: Option<shared::SharedLake>,
}

fn batches_schema() -> SchemaRef {
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

impl Pipeline {
    /// Opens (creating if needed) every table, then finishes any batch a
    /// previous run left half-committed.
    pub async fn open(
        lake: &Lake,
        plugins: Plugins,
        bounds: TimeBounds,
    ) -> anyhow::Result<Pipeline> {
        let bronze_decl = plugins
            .bronze
            .meta()
            .output(bronze::TABLE)
            .context("bronze table")?
            .clone();
        let silver_decl = plugins
            .silver
            .meta()
            .output(silver::TABLE)
            .context("silver table")?
            .clone();
        let bronze = lake
            .open_or_create(
                bronze::TABLE,
                &bronze_decl.description,
                &bronze::stored_schema(&bronze_decl.schema),
                &bronze_decl.partition_by,
            )
            .await?;
        let silver_schema = silver::stored_schema(&silver_decl.schema);
        let silver = lake
            .open_or_create(
                silver::TABLE,
                &silver_decl.description,
                &silver_schema,
                &silver_decl.partition_by,
            )
            .await?;
        let quarantine = lake
            .open_or_create(
                quarantine::TABLE,
                "Events the pipeline could not accept, with reason and raw bytes",
                &quarantine::schema(),
                &[],
            )
            .await?;
        let batches = lake
            .open_or_create(
                BATCHES_TABLE,
                "One row per committed micro-batch",
                &batches_schema(),
                &[],
            )
            .await?;
        let gold = GoldTables::open(lake, plugins.gold.meta()).await?;
        let slots = Slots::new(plugins.clone(), 1);
        let ingest = IngestTier::new(
            lake.reopen(&bronze).await?,
            lake.reopen(&quarantine).await?,
            slots.clone(),
        );
        let mut pipeline = Pipeline {
            lake: lake.clone(),
            bounds,
            gold_opened_for: plugins.gold.hash().to_string(),
            slots,
            bronze,
            silver,
            quarantine,
            batches,
            gold,
            dedup: DedupState::new(bounds.lateness_micros, bounds.max_future_micros),
            next_batch: 1,
            positions: Positions::new(),
            totals: Totals::default(),
            ingest: Some(ingest),
            shared: None,
        };
        recovery::recover(&mut pipeline, bounds).await?;
        Ok(pipeline)
    }

    /// Last committed offset per source partition; sources resume after it.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// From now on, commit each batch under the cluster's writer lock.
    pub fn share(&mut self, shared: shared::SharedLake) {
        self.shared = Some(shared);
    }

    /// What the gold plugin declared (the tables a warehouse loads).
    pub fn gold_meta(&self) -> crate::runtime::contract::PluginMeta {
        self.slots.active(Layer::Gold).meta().clone()
    }

    /// Whether other instances share the lake (then each batch is ingested
    /// and refined in one go, under the writer lock).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Hands the ingest tier to a task of its own.
    pub fn take_ingest(&mut self) -> Option<IngestTier> {
        self.ingest.take()
    }

    /// Takes the ingest tier back once its task is done.
    pub fn put_ingest(&mut self, ingest: IngestTier) {
        self.ingest = Some(ingest);
    }

    /// Ingests one batch and refines it at once (both tiers in one call):
    /// the path of a shared lake and of tests that drive the pipeline
    /// batch by batch. `on_durable` is called once the records are
    /// committed in bronze (or quarantine).
    pub async fn process(
        &mut self,
        records: Vec<RawRecord>,
        on_durable: impl FnOnce(),
    ) -> anyhow::Result<BatchReport> {
        let _writer = shared::take_writer(self).await?;
        let ingest = self
            .ingest
            .as_mut()
            .context("the ingest tier runs on its own task")?;
        let committed = ingest.commit(&records).await?;
        on_durable();
        self.refine(vec![committed]).await
    }

    /// One refine step over consecutive committed bronze batches: silver,
    /// gold and the step's row in `pipeline_batches`. If the silver plugin
    /// fails on a step of several batches, each batch becomes a step of its
    /// own, so a batch that makes it fail costs only its own events.
    pub async fn refine(&mut self, step: Vec<Committed>) -> anyhow::Result<BatchReport> {
        if let Some(report) = self.refine_step(&step, step.len() > 1).await? {
            return Ok(report);
        }
        tracing::warn!(
            batches = step.len(),
            "the silver plugin failed on a step of several batches: one step per batch"
        );
        let mut total: Option<BatchReport> = None;
        for committed in &step {
            let report = self
                .refine_step(std::slice::from_ref(committed), false)
                .await?
                .context("a step of one batch is never split")?;
            match total.as_mut() {
                Some(total) => total.absorb(report),
                None => total = Some(report),
            }
        }
        total.context("a refine step needs at least one bronze batch")
    }

    /// `refine` for one step; `None` if the silver plugin failed and
    /// `split` allows retrying batch by batch (nothing was committed then).
    async fn refine_step(
        &mut self,
        step: &[Committed],
        split: bool,
    ) -> anyhow::Result<Option<BatchReport>> {
        let started = Instant::now();
        let (Some(first), Some(last)) = (step.first(), step.last()) else {
            anyhow::bail!("a refine step needs at least one bronze batch");
        };
        let (first, last) = (first.batch, last.batch);
        anyhow::ensure!(
            first == self.next_batch && last - first + 1 == step.len() as i64,
            "refine step {first}..={last} does not follow batch {} in order",
            self.next_batch - 1
        );
        let rows: Vec<RecordBatch> = step.iter().map(|c| c.rows.clone()).collect();
        let rows = deltalake::arrow::compute::concat_batches(self.bronze.schema(), &rows)?;
        let Some(mut report) = self.downstream(first, last, rows, split, started).await? else {
            return Ok(None);
        };
        report.events = step.iter().map(|c| c.events).sum();
        for c in step {
            if let Some(reason) = c.bronze_failure {
                *report.quarantined.entry(reason.to_string()).or_default() += c.events;
            }
        }
        let now = crate::time::now_micros();
        for c in step {
            crate::metrics::record_event_to_gold(now.saturating_sub(c.ingest_micros));
        }
        crate::metrics::record_batch(crate::metrics::StepFigures {
            batch: report.batch,
            events: report.events,
            accepted: report.accepted,
            quarantined: &report.quarantined,
            millis: report.millis,
        });
        self.add_to_totals(&report);
        Ok(Some(report))
    }

    /// Silver, gold and the step's summary for the bronze rows of batches
    /// `first..=batch`; the step is committed under id `batch`. `None` if
    /// the silver plugin failed and `split` was allowed (nothing committed).
    async fn downstream(
        &mut self,
        first: i64,
        batch: i64,
        bronze_rows: RecordBatch,
        split: bool,
        started: Instant,
    ) -> anyhow::Result<Option<BatchReport>> {
        let mut report = BatchReport {
            batch,
            first_batch: first,
            events: bronze_rows.num_rows(),
            ..Default::default()
        };
        let now = crate::time::now_micros();
        let mut q = QuarantineRows::new(batch, now);
        let accepted = if bronze_rows.num_rows() > 0 {
            match self
                .silver_stage(first, batch, &bronze_rows, split, &mut q)
                .await?
            {
                SilverStage::Split => return Ok(None),
                SilverStage::Failed => None,
                SilverStage::Done(outcome) => Some(*outcome),
            }
        } else {
            None
        };
        for (reason, n) in q.reasons() {
            *report.quarantined.entry(reason).or_default() += n;
        }
        let silver_quarantine = q.finish();
        if silver_quarantine.num_rows() > 0 {
            self.quarantine
                .append(STAGE_SILVER, batch, vec![silver_quarantine])
                .await?;
        }
        if let Some((accepted, input_rows, gold_job)) = accepted {
            report.accepted = accepted.num_rows();
            if let Some(gold_job) = gold_job {
                let gold_failed = self
                    .gold_stage(first, batch, gold_job, &input_rows, &bronze_rows)
                    .await?;
                for (reason, n) in gold_failed {
                    *report.quarantined.entry(reason).or_default() += n;
                }
            }
        }
        report.millis = started.elapsed().as_millis();
        failpoint("before-done", first, batch);
        self.record_batch(&report, now).await?;
        self.next_batch = batch + 1;
        crate::metrics::record_tier_position("silver", batch);
        crate::metrics::record_tier_position("gold", batch);
        Ok(Some(report))
    }

    /// Finishes the silver plugin's job and runs the host's dedup. Returns
    /// the stored silver rows, per row the bronze row it came from, and the
    /// gold plugin's job on them (started before the silver commit).
    async fn silver_stage(
        &mut self,
        first: i64,
        batch: i64,
        bronze_rows: &RecordBatch,
        split: bool,
        q: &mut QuarantineRows,
    ) -> anyhow::Result<SilverStage> {
        let (stored, input_rows) = match self.silver_rows(batch, bronze_rows, split, q).await? {
            SilverRows::Rows(stored, input_rows) => (stored, input_rows),
            SilverRows::Split => return Ok(SilverStage::Split),
            SilverRows::Quarantined => return Ok(SilverStage::Failed),
        };
        let gold_job =
            (stored.num_rows() > 0).then(|| self.slots.start_job(Layer::Gold, stored.clone()));
        if stored.num_rows() > 0 {
            self.silver
                .append(STAGE_SILVER, batch, vec![stored.clone()])
                .await?;
            failpoint("silver-committed", first, batch);
        }
        Ok(SilverStage::Done(Box::new((stored, input_rows, gold_job))))
    }

    /// Runs the silver plugin and the host's dedup on the bronze rows of a
    /// step. Returns the rows to store in silver and, per row, the bronze
    /// row it came from; rejected rows go to `q`. If the plugin failed: the
    /// whole step is in `q`, or, with `split`, nothing happened.
    async fn silver_rows(
        &mut self,
        batch: i64,
        bronze_rows: &RecordBatch,
        split: bool,
        q: &mut QuarantineRows,
    ) -> anyhow::Result<SilverRows> {
        let raw = RawColumns::new(bronze_rows).map_err(anyhow::Error::msg)?;
        let job = self.slots.start_job(Layer::Silver, bronze_rows.clone());
        let inputs = bronze_rows.num_rows();
        let outcome = self
            .slots
            .finish_job(batch, job, |out, plugin| {
                check_silver_coverage(out, inputs, plugin)
            })
            .await;
        let ((silver_rows, plugin_quarantine), producer) = match outcome {
            Ok((parts, plugin)) => (parts, plugin.meta().producer()),
            Err(_) if split => return Ok(SilverRows::Split),
            Err(failure) => {
                let producer = self.slots.active(Layer::Silver).meta().producer();
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
        let input_rows = column_u32(&accepted, INPUT_ROW)?;
        let stored =
            silver::to_stored(&accepted, bronze_rows, &producer).map_err(anyhow::Error::msg)?;
        Ok(SilverRows::Rows(stored, input_rows))
    }

    /// Finishes the gold plugin's job and folds its rows into the gold
    /// tables. If the plugin failed, the batch's accepted events are
    /// quarantined for gold.
    async fn gold_stage(
        &mut self,
        first: i64,
        batch: i64,
        job: LayerJob,
        input_rows: &[u32],
        bronze_rows: &RecordBatch,
    ) -> anyhow::Result<Vec<(String, usize)>> {
        let outcome = self.slots.finish_job(batch, job, |out, _| Ok(out)).await;
        match outcome {
            Ok((outputs, _)) => {
                self.ensure_gold_tables().await?;
                self.gold.write_stored(STAGE_GOLD, batch, &outputs).await?;
                failpoint("gold-tables", first, batch);
                self.gold.write_derived(STAGE_GOLD, batch, &outputs).await?;
                Ok(Vec::new())
            }
            Err(failure) => {
                let producer = self.slots.active(Layer::Gold).meta().producer();
                tracing::error!(batch, plugin = %producer, "{failure}; quarantining the step for gold");
                let raw = RawColumns::new(bronze_rows).map_err(anyhow::Error::msg)?;
                let mut q = QuarantineRows::new(batch, crate::time::now_micros());
                for &row in input_rows {
                    q.push(
                        Layer::Gold,
                        failure.reason(),
                        &failure.to_string(),
                        raw.row(row as usize),
                        &producer,
                    );
                }
                let n = q.len();
                self.quarantine
                    .append(STAGE_GOLD, batch, vec![q.finish()])
                    .await?;
                Ok(vec![(failure.reason().to_string(), n)])
            }
        }
    }

    async fn record_batch(&mut self, report: &BatchReport, now: i64) -> anyhow::Result<()> {
        let plugins = [Layer::Bronze, Layer::Silver, Layer::Gold]
            .map(|l| self.slots.active(l).meta().producer())
            .join(",");
        let row = RecordBatch::try_new(
            batches_schema(),
            vec![
                Arc::new(Int64Array::from(vec![report.batch])),
                Arc::new(TimestampMicrosecondArray::from(vec![now]).with_timezone("UTC")),
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

    fn add_to_totals(&mut self, report: &BatchReport) {
        self.totals.batches += 1;
        self.totals.events += report.events as u64;
        self.totals.accepted += report.accepted as u64;
        for (reason, n) in &report.quarantined {
            *self.totals.quarantined.entry(reason.clone()).or_default() += *n as u64;
        }
    }
}

/// Accepted silver rows, the bronze row of each, and gold's job on them.
type SilverOutcome = (RecordBatch, Vec<u32>, Option<LayerJob>);

/// What the silver plugin and dedup made of a step's bronze rows.
enum SilverRows {
    /// Rows to store, and per row the bronze row it came from.
    Rows(RecordBatch, Vec<u32>),
    /// The plugin failed: every row is in the step's quarantine.
    Quarantined,
    /// The plugin failed and the step is to be split: nothing happened.
    Split,
}

/// What the silver stage committed.
enum SilverStage {
    Done(Box<SilverOutcome>),
    Failed,
    Split,
}
