//! The micro-batch pipeline: one batch goes bronze → silver → gold, each layer
//! committed to Delta under the batch id, so a restart finishes exactly what
//! a crash interrupted.
//!
//! Commit protocol for batch N (who owns what):
//! 1. bronze: the raw records (or, if the bronze plugin fails, their
//!    quarantine rows) are committed with app transaction `sluice-bronze` = N.
//!    Source positions are the max offsets stored in those rows. Only now are
//!    producers acknowledged.
//! 2. silver: `silver_events` and `quarantine` with `sluice-silver` = N.
//! 3. gold: each gold table with `sluice-gold` = N (derived tables recomputed).
//! 4. `pipeline_batches` gets N's summary row with `sluice-batches` = N:
//!    batch N is done.
//!
//! On start, batches after the last done one and up to the last bronze one
//! are re-read from bronze and finished; every table write is skipped if that
//! table already holds the batch. Host state (dedup ids, watermark, SCD2
//! histories) is rebuilt from the tables as of the last done batch.

mod job;
pub mod plugins;
mod recovery;
mod replay;
mod rows;
pub mod runner;
pub mod shadow;
pub mod shared;
mod swap;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::lake::{Lake, LakeTable};
use crate::layers::bronze::{self, RawColumns};
use crate::layers::gold::GoldTables;
use crate::layers::quarantine::{self, QuarantineRows};
use crate::layers::silver::{self, DedupState};
use crate::runtime::{Layer, PluginFailure};
use crate::sources::{Positions, RawRecord};
use job::LayerJob;
pub use plugins::Plugins;
pub use replay::ReplayReport;
use rows::{check_silver_coverage, column_u32, push_plugin_quarantine, quarantine_all};
use sluice_plugin_sdk::schemas::INPUT_ROW;
pub use swap::AutoRollback;
use swap::{Probation, Shadow};

pub const BATCHES_TABLE: &str = "pipeline_batches";
pub const STAGE_BRONZE: &str = "sluice-bronze";
pub const STAGE_SILVER: &str = "sluice-silver";
pub const STAGE_GOLD: &str = "sluice-gold";
pub const STAGE_DONE: &str = "sluice-batches";

/// Fault injection for crash tests: with `SLUICE_FAILPOINT=<point>:<batch>`
/// the process aborts (no cleanup, like `kill -9`) when batch `<batch>`
/// reaches `<point>`: `bronze-committed`, `silver-committed`, `gold-tables`
/// (after the merged gold tables, before the derived ones), `before-done`,
/// or `replay-silver-replaced` (a replay from that batch, before gold).
pub fn failpoint(point: &str, batch: i64) {
    static SPEC: std::sync::OnceLock<Option<(String, i64)>> = std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let value = std::env::var("SLUICE_FAILPOINT").ok()?;
        let (name, at) = value.split_once(':')?;
        Some((name.to_string(), at.parse().ok()?))
    });
    if spec
        .as_ref()
        .is_some_and(|(name, at)| name == point && *at == batch)
    {
        eprintln!("failpoint {point} reached at batch {batch}: aborting");
        std::process::abort();
    }
}

/// What one batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    pub batch: i64,
    pub events: usize,
    pub accepted: usize,
    pub quarantined: BTreeMap<String, usize>,
    pub millis: u128,
}

impl BatchReport {
    pub fn quarantined_total(&self) -> usize {
        self.quarantined.values().sum()
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

/// The open lake tables, plugins and host state of a running pipeline.
pub struct Pipeline {
    lake: Lake,
    lateness_micros: i64,
    plugins: Plugins,
    /// Per layer, the version a fresh deploy replaced, kept while the new
    /// one is on probation: if it fails a batch, the old one takes over.
    fallbacks: BTreeMap<Layer, Probation>,
    /// Per layer, a candidate running beside the active plugin.
    shadows: BTreeMap<Layer, Shadow>,
    auto_rollbacks: Vec<AutoRollback>,
    /// Hash of the gold plugin `gold` was opened for.
    gold_opened_for: String,
    bronze: LakeTable,
    silver: LakeTable,
    quarantine: LakeTable,
    batches: LakeTable,
    gold: GoldTables,
    dedup: DedupState,
    next_batch: i64,
    positions: Positions,
    totals: Totals,
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
        lateness_micros: i64,
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
        let mut pipeline = Pipeline {
            lake: lake.clone(),
            lateness_micros,
            gold_opened_for: plugins.gold.hash().to_string(),
            plugins,
            fallbacks: BTreeMap::new(),
            shadows: BTreeMap::new(),
            auto_rollbacks: Vec::new(),
            bronze,
            silver,
            quarantine,
            batches,
            gold,
            dedup: DedupState::new(lateness_micros, silver::DEFAULT_MAX_FUTURE_MICROS),
            next_batch: 1,
            positions: Positions::new(),
            totals: Totals::default(),
            shared: None,
        };
        recovery::recover(&mut pipeline, lateness_micros).await?;
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
    pub fn gold_meta(&self) -> &crate::runtime::contract::PluginMeta {
        self.plugins.gold.meta()
    }

    /// Runs one micro-batch through every layer. `on_durable` is called once
    /// the records are committed in bronze (or quarantine).
    pub async fn process(
        &mut self,
        records: Vec<RawRecord>,
        on_durable: impl FnOnce(),
    ) -> anyhow::Result<BatchReport> {
        let _writer = shared::take_writer(self).await?;
        let started = Instant::now();
        let batch = self.next_batch;
        let (bronze_rows, bronze_failure, silver_job) = self.bronze_stage(batch, &records).await?;
        self.next_batch += 1;
        on_durable();
        for r in &records {
            let key = (r.source.to_string(), r.partition.to_string());
            let pos = self.positions.entry(key).or_insert(r.offset);
            *pos = (*pos).max(r.offset);
        }
        let mut report = self
            .downstream(batch, bronze_rows, silver_job, started)
            .await?;
        report.events = records.len();
        if let Some(reason) = bronze_failure {
            *report.quarantined.entry(reason.to_string()).or_default() += records.len();
        }
        self.add_to_totals(&report);
        Ok(report)
    }

    /// Commits the raw records to bronze (or quarantine if the bronze plugin
    /// fails). Returns the stored bronze rows, the quarantine reason if the
    /// plugin failed, and the silver plugin's job on the rows, started before
    /// the bronze commit so the two overlap.
    async fn bronze_stage(
        &mut self,
        batch: i64,
        records: &[RawRecord],
    ) -> anyhow::Result<(RecordBatch, Option<&'static str>, Option<LayerJob>)> {
        let now = crate::time::now_micros();
        let input = bronze::raw_input(records, now);
        let expected_rows = input.num_rows();
        let job = self.start_job(Layer::Bronze, input.clone());
        let outcome = self
            .finish_job(batch, job, |mut out, plugin| {
                let rows = out.remove(bronze::TABLE).unwrap_or_else(|| {
                    RecordBatch::new_empty(
                        plugin
                            .meta()
                            .output(bronze::TABLE)
                            .expect("checked at load")
                            .schema
                            .clone(),
                    )
                });
                if rows.num_rows() != expected_rows {
                    return Err(PluginFailure::BadOutput(format!(
                        "bronze must keep every record: got {} rows for {expected_rows}",
                        rows.num_rows(),
                    )));
                }
                Ok(rows)
            })
            .await;
        // After a probation rollback the producer is the restored version.
        let producer = self.plugins.bronze.meta().producer();
        match outcome {
            Ok(rows) => {
                let stored = bronze::to_stored(&rows, batch, &producer);
                let silver_job = self.start_job(Layer::Silver, stored.clone());
                self.bronze
                    .append(STAGE_BRONZE, batch, vec![stored.clone()])
                    .await?;
                failpoint("bronze-committed", batch);
                Ok((stored, None, Some(silver_job)))
            }
            Err(failure) => {
                tracing::error!(batch, plugin = %producer, "{failure}; quarantining the batch");
                let q = quarantine_all(&input, batch, now, Layer::Bronze, &failure, &producer)?;
                self.quarantine.append(STAGE_BRONZE, batch, vec![q]).await?;
                let empty = RecordBatch::new_empty(self.bronze.schema().clone());
                Ok((empty, Some(failure.reason()), None))
            }
        }
    }

    /// Silver, gold and the batch summary for bronze rows of `batch`.
    async fn downstream(
        &mut self,
        batch: i64,
        bronze_rows: RecordBatch,
        silver_job: Option<LayerJob>,
        started: Instant,
    ) -> anyhow::Result<BatchReport> {
        let mut report = BatchReport {
            batch,
            events: bronze_rows.num_rows(),
            ..Default::default()
        };
        let now = crate::time::now_micros();
        let mut q = QuarantineRows::new(batch, now);
        let accepted = if bronze_rows.num_rows() > 0 {
            self.silver_stage(batch, &bronze_rows, silver_job, &mut q)
                .await?
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
                    .gold_stage(batch, gold_job, &input_rows, &bronze_rows)
                    .await?;
                for (reason, n) in gold_failed {
                    *report.quarantined.entry(reason).or_default() += n;
                }
            }
        }
        report.millis = started.elapsed().as_millis();
        failpoint("before-done", batch);
        self.record_batch(&report, now).await?;
        Ok(report)
    }

    /// Finishes the silver plugin's job and runs the host's dedup. Returns
    /// the stored silver rows, per row the bronze row it came from, and the
    /// gold plugin's job on them (started before the silver commit).
    async fn silver_stage(
        &mut self,
        batch: i64,
        bronze_rows: &RecordBatch,
        job: Option<LayerJob>,
        q: &mut QuarantineRows,
    ) -> anyhow::Result<Option<SilverOutcome>> {
        let Some((stored, input_rows)) = self.silver_rows(batch, bronze_rows, job, q).await? else {
            return Ok(None);
        };
        let gold_job = (stored.num_rows() > 0).then(|| self.start_job(Layer::Gold, stored.clone()));
        if stored.num_rows() > 0 {
            self.silver
                .append(STAGE_SILVER, batch, vec![stored.clone()])
                .await?;
            failpoint("silver-committed", batch);
        }
        Ok(Some((stored, input_rows, gold_job)))
    }

    /// Runs the silver plugin (or finishes its job) and the host's dedup on
    /// one batch of bronze rows. Returns the rows to store in silver and, per
    /// row, the bronze row it came from; rejected rows go to `q`. `None` if
    /// the plugin failed (the whole batch is then in `q`).
    async fn silver_rows(
        &mut self,
        batch: i64,
        bronze_rows: &RecordBatch,
        job: Option<LayerJob>,
        q: &mut QuarantineRows,
    ) -> anyhow::Result<Option<(RecordBatch, Vec<u32>)>> {
        let raw = RawColumns::new(bronze_rows).map_err(anyhow::Error::msg)?;
        let job = job.unwrap_or_else(|| self.start_job(Layer::Silver, bronze_rows.clone()));
        let inputs = bronze_rows.num_rows();
        let outcome = self
            .finish_job(batch, job, |out, plugin| {
                check_silver_coverage(out, inputs, plugin)
            })
            .await;
        let producer = self.plugins.silver.meta().producer();
        let (silver_rows, plugin_quarantine) = match outcome {
            Ok(parts) => parts,
            Err(failure) => {
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
                return Ok(None);
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
        let stored = silver::to_stored(&accepted, bronze_rows, batch, &producer)
            .map_err(anyhow::Error::msg)?;
        Ok(Some((stored, input_rows)))
    }

    /// Finishes the gold plugin's job and folds its rows into the gold
    /// tables. If the plugin failed, the batch's accepted events are
    /// quarantined for gold.
    async fn gold_stage(
        &mut self,
        batch: i64,
        job: LayerJob,
        input_rows: &[u32],
        bronze_rows: &RecordBatch,
    ) -> anyhow::Result<Vec<(String, usize)>> {
        let outcome = self.finish_job(batch, job, |out, _| Ok(out)).await;
        match outcome {
            Ok(outputs) => {
                self.ensure_gold_tables().await?;
                self.gold.write(STAGE_GOLD, batch, outputs).await?;
                Ok(Vec::new())
            }
            Err(failure) => {
                let producer = self.plugins.gold.meta().producer();
                tracing::error!(batch, plugin = %producer, "{failure}; quarantining the batch for gold");
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
            .map(|l| self.plugins.get(l).meta().producer())
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
