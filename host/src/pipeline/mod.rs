//! The pipeline, in three tiers that run concurrently, each exactly-once on
//! its own and each following the one before by bronze batch id:
//!
//! - the **ingest tier** ([`ingest`]) commits raw records to `bronze_events`
//!   batch by batch and acknowledges producers at once;
//! - the **silver tier** (`silver_tier.rs`) takes every bronze batch
//!   committed since its last step (`a..=b`) through the silver plugin and
//!   the host's dedup into `silver_events` and `quarantine`
//!   (`sluice-silver` = b);
//! - the **gold tier** (`gold_tier.rs`) takes every silver step committed
//!   since its last one through the gold plugin into the gold tables, one
//!   MERGE per table per step (`sluice-gold` = b), then writes the step's
//!   row to `pipeline_batches` (`sluice-batches` = b: refined up to b).
//!
//! When a tier falls behind, its steps grow, so gold's MERGE cost is paid per
//! step, not per batch. On start (`recovery.rs`) silver is recomputed from
//! the last refined batch (tables keep only rows of batches they do not
//! hold yet), an interrupted gold step is redone over exactly its range,
//! and the rest is refined. Host state (dedup ids, watermarks, SCD2
//! histories) is rebuilt from the tables.

pub mod fleet;
mod gold_tier;
pub mod ingest;
mod job;
pub mod plugins;
mod recovery;
mod replay;
mod rows;
pub mod runner;
pub mod shadow;
pub mod shared;
mod silver_tier;
mod slots;

use std::collections::BTreeMap;

use anyhow::Context as _;

use crate::lake::Lake;
use crate::layers::bronze;
use crate::layers::gold::GoldTables;
use crate::layers::quarantine;
use crate::layers::silver::{self, DedupState, TimeBounds};
use crate::runtime::Layer;
use crate::sources::{Positions, RawRecord};
pub use gold_tier::BATCHES_TABLE;
use gold_tier::GoldTier;
pub use ingest::{Committed, IngestTier};
pub use plugins::Plugins;
pub use recovery::{TierPositions, tier_positions};
pub use replay::ReplayReport;
pub use silver_tier::SilverCommitted;
use silver_tier::SilverTier;
use slots::Slots;
pub use slots::{AutoRollback, RollbackRecorder};

pub const STAGE_BRONZE: &str = "sluice-bronze";
pub const STAGE_SILVER: &str = "sluice-silver";
pub const STAGE_GOLD: &str = "sluice-gold";
pub const STAGE_DONE: &str = "sluice-batches";
/// In `pipeline_batches`, on a shared lake: the last batch of the gold step
/// the leader is about to write (`shared.rs`), so a leader that takes over
/// finishes that step over exactly its range.
pub const STAGE_PLAN: &str = "sluice-gold-plan";

/// What one refined step did (bronze batches `first_batch..=batch`).
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
        silver_tier::add_reasons(&mut self.quarantined, &next.quarantined);
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

/// The three tiers over one lake and the plugin slots they share. The
/// runner moves the ingest tier and the gold tier to tasks of their own
/// while it runs; between steps (plugin changes, replays) all are here.
pub struct Pipeline {
    lake: Lake,
    slots: Slots,
    ingest: Option<IngestTier>,
    silver: SilverTier,
    gold: Option<GoldTier>,
    /// Committed positions when the pipeline opened; sources resume after them.
    positions: Positions,
    totals: Totals,
    /// Set when other instances share the lake (see `shared.rs`).
    shared: Option<shared::SharedLake>,
}

impl Pipeline {
    /// Opens (creating if needed) every table, then finishes what a
    /// previous run left unrefined.
    pub async fn open(
        lake: &Lake,
        plugins: Plugins,
        bounds: TimeBounds,
    ) -> anyhow::Result<Pipeline> {
        let mut pipeline = Self::open_tables(lake, plugins, bounds).await?;
        recovery::recover(&mut pipeline).await?;
        pipeline.start_ingest().await?;
        Ok(pipeline)
    }

    /// Opens every table for an instance that only ingests for now (on a
    /// lake another instance refines): nothing is refined or recovered.
    pub async fn open_to_ingest(
        lake: &Lake,
        plugins: Plugins,
        bounds: TimeBounds,
    ) -> anyhow::Result<Pipeline> {
        let mut pipeline = Self::open_tables(lake, plugins, bounds).await?;
        pipeline.start_ingest().await?;
        Ok(pipeline)
    }

    /// Positions and the next batch id as the ingest tier's own view of
    /// the lake says (the snapshot its fenced commits start from).
    async fn start_ingest(&mut self) -> anyhow::Result<()> {
        let ingest = self.ingest.as_mut().context("the ingest tier is out")?;
        let (positions, last_batch) = ingest.start().await?;
        self.positions = positions;
        if self.slots.next_bronze() <= last_batch {
            self.slots.set_next_bronze(last_batch + 1);
        }
        Ok(())
    }

    async fn open_tables(
        lake: &Lake,
        plugins: Plugins,
        bounds: TimeBounds,
    ) -> anyhow::Result<Pipeline> {
        let decl = |plugin: &crate::runtime::LoadedPlugin, table: &str| {
            plugin
                .meta()
                .output(table)
                .with_context(|| format!("{table} table"))
                .cloned()
        };
        let bronze_decl = decl(&plugins.bronze, bronze::TABLE)?;
        let silver_decl = decl(&plugins.silver, silver::TABLE)?;
        // Under a leader epoch (shared lake), each tier fences its own
        // handles: the two tiers' quarantine commits may run concurrently.
        let silver_lake = lake.fence_part(shared::SILVER_PART);
        let gold_lake = lake.fence_part(shared::GOLD_PART);
        let bronze = silver_lake
            .open_or_create(
                bronze::TABLE,
                &bronze_decl.description,
                &bronze::stored_schema(&bronze_decl.schema),
                &bronze_decl.partition_by,
            )
            .await?;
        let silver_table = silver_lake
            .open_or_create(
                silver::TABLE,
                &silver_decl.description,
                &silver::stored_schema(&silver_decl.schema),
                &silver_decl.partition_by,
            )
            .await?;
        let quarantine = silver_lake
            .open_or_create(
                quarantine::TABLE,
                "Events the pipeline could not accept, with reason and raw bytes",
                &quarantine::schema(),
                &[],
            )
            .await?;
        let batches = gold_lake
            .open_or_create(
                BATCHES_TABLE,
                "One row per refined step (bronze batches up to batch_id)",
                &gold_tier::batches_schema(),
                &[],
            )
            .await?;
        let slots = Slots::new(plugins.clone(), 1);
        let ingest = IngestTier::new(
            lake.reopen(&bronze).await?,
            lake.reopen(&quarantine).await?,
            slots.clone(),
        );
        let gold = GoldTier {
            gold: GoldTables::open(&gold_lake, plugins.gold.meta()).await?,
            lake: gold_lake.clone(),
            opened_for: plugins.gold.hash().to_string(),
            quarantine: gold_lake.reopen(&quarantine).await?,
            batches,
            bronze_schema: bronze.schema().clone(),
            silver_schema: silver_table.schema().clone(),
            next_batch: 1,
        };
        let silver = SilverTier {
            bounds,
            bronze,
            silver: silver_table,
            quarantine,
            dedup: DedupState::new(bounds.lateness_micros, bounds.max_future_micros),
            next_batch: 1,
            written_by_earlier_run: 0,
        };
        Ok(Pipeline {
            lake: lake.clone(),
            slots,
            ingest: Some(ingest),
            silver,
            gold: Some(gold),
            positions: Positions::new(),
            totals: Totals::default(),
            shared: None,
        })
    }

    /// Last committed offset per source partition; sources resume after it.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// From now on, ingest beside other instances and refine only while
    /// holding the refine role (see `shared.rs`).
    pub fn share(&mut self, shared: shared::SharedLake) {
        self.shared = Some(shared);
    }

    /// What the gold plugin declared (the tables a warehouse loads).
    pub fn gold_meta(&self) -> crate::runtime::contract::PluginMeta {
        self.slots.active(Layer::Gold).meta().clone()
    }

    /// Whether other instances share the lake.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether this instance runs silver and gold: always on a lake of its
    /// own, while it holds the refine role on a shared one.
    pub fn refines(&self) -> bool {
        self.shared.as_ref().is_none_or(|s| s.leading)
    }

    /// The refine role's signal on a shared lake.
    fn lead_signal(&self) -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
        match &self.shared {
            Some(s) => Ok(s.lead.clone()),
            None => anyhow::bail!("not a shared lake"),
        }
    }

    /// After silver and gold stopped on a shared lake.
    fn stop_leading(&mut self) {
        if let Some(s) = self.shared.as_mut() {
            s.leading = false;
        }
    }

    /// This instance's id on a shared lake: its bronze writer's.
    pub fn instance_id(&self) -> Option<String> {
        self.ingest.as_ref().map(|i| i.writer_id().to_string())
    }

    /// A fresh handle on bronze, as every instance opens it (no epoch), for
    /// following what any instance commits.
    pub async fn bronze_handle(&self) -> anyhow::Result<crate::lake::LakeTable> {
        let lake = self.shared.as_ref().map_or(&self.lake, |s| &s.lake);
        Ok(lake.reopen(&self.silver.bronze).await?)
    }

    /// Hands the ingest tier to a task of its own.
    pub fn take_ingest(&mut self) -> Option<IngestTier> {
        self.ingest.take()
    }

    /// Takes the ingest tier back once its task is done.
    pub fn put_ingest(&mut self, ingest: IngestTier) {
        self.ingest = Some(ingest);
    }

    /// Hands the gold tier to a task of its own for one step.
    fn take_gold(&mut self) -> Option<GoldTier> {
        self.gold.take()
    }

    /// Takes the gold tier back once its step is done.
    fn put_gold(&mut self, gold: GoldTier) {
        self.gold = Some(gold);
    }

    /// The gold tier, while no task runs it.
    fn gold_mut(&mut self) -> anyhow::Result<&mut GoldTier> {
        self.gold
            .as_mut()
            .context("the gold tier runs on its own task")
    }

    fn gold_ref(&self) -> anyhow::Result<&GoldTier> {
        self.gold
            .as_ref()
            .context("the gold tier runs on its own task")
    }

    /// Ingests one batch and refines it at once (all tiers in one call):
    /// the path of tests that drive the pipeline batch by batch.
    /// `on_durable` is called once the records are committed in bronze (or
    /// quarantine).
    pub async fn process(
        &mut self,
        records: Vec<RawRecord>,
        on_durable: impl FnOnce(),
    ) -> anyhow::Result<BatchReport> {
        let ingest = self
            .ingest
            .as_mut()
            .context("the ingest tier runs on its own task")?;
        let committed = ingest.commit(&records).await?;
        on_durable();
        let Some(committed) = committed else {
            return Ok(BatchReport::default());
        };
        let silver = self.refine_silver(vec![committed]).await?;
        let slots = self.slots.clone();
        let report = self.gold_mut()?.step(&slots, silver).await?;
        self.count(&report);
        Ok(report)
    }

    /// One silver step over consecutive committed bronze batches; if the
    /// silver plugin fails on several, one step per batch, so a batch that
    /// makes it fail costs only its own events.
    pub async fn refine_silver(
        &mut self,
        step: Vec<Committed>,
    ) -> anyhow::Result<Vec<SilverCommitted>> {
        if let Some(done) = self.silver.step(&self.slots, &step, step.len() > 1).await? {
            return Ok(vec![done]);
        }
        tracing::warn!(
            batches = step.len(),
            "the silver plugin failed on a step of several batches: one step per batch"
        );
        let mut done = Vec::with_capacity(step.len());
        for committed in &step {
            done.push(
                self.silver
                    .step(&self.slots, std::slice::from_ref(committed), false)
                    .await?
                    .context("a step of one batch is never split")?,
            );
        }
        Ok(done)
    }

    /// Counts a refined step in the totals.
    pub fn count(&mut self, report: &BatchReport) {
        self.totals.batches += 1;
        self.totals.events += report.events as u64;
        self.totals.accepted += report.accepted as u64;
        for (reason, n) in &report.quarantined {
            *self.totals.quarantined.entry(reason.clone()).or_default() += *n as u64;
        }
    }
}
