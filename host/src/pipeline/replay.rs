//! Replay from bronze: recomputes silver from a batch on, and all of gold,
//! with the active plugins, replacing what earlier versions wrote. Runs
//! between two live batches; each table is replaced in one Delta commit.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use deltalake::arrow::array::{Array, Int64Array, RecordBatch};
use deltalake::arrow::compute::concat_batches;
use deltalake::datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use super::job::PluginJob;
use super::recovery::{bronze_batches, query, restore_dedup};
use super::silver_tier::SilverRows;
use super::{BATCHES_TABLE, Pipeline, STAGE_GOLD};
use crate::lake::{self, Lake};
use crate::layers::gold::GoldTables;
use crate::layers::quarantine::QuarantineRows;
use crate::layers::{bronze, quarantine, silver};
use crate::runtime::Layer;

/// Silver rows handed to the gold plugin per call while rebuilding gold.
const GOLD_CHUNK_ROWS: usize = 100_000;

/// What a replay rewrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayReport {
    pub layer: String,
    /// First and last batch whose silver rows were recomputed (silver only).
    pub from_batch: i64,
    pub to_batch: i64,
    pub silver_rows: usize,
    pub quarantined: usize,
    /// Rows per gold table after the rebuild.
    pub gold_rows: BTreeMap<String, usize>,
    pub plugins: Vec<String>,
    pub millis: u128,
}

impl Pipeline {
    /// The first bronze batch of the first step committed at or after
    /// `micros` (UTC µs), if any.
    pub async fn first_batch_since(&self, micros: i64) -> anyhow::Result<Option<i64>> {
        let ctx = SessionContext::new();
        lake::register(&ctx, BATCHES_TABLE, self.gold_ref()?.batches.delta()).await?;
        let at = "CAST(committed_at AS BIGINT)";
        let since = format!("SELECT MIN(batch_id) FROM {BATCHES_TABLE} WHERE {at} >= {micros}");
        if single_i64(&query(&ctx, &since).await?).is_none() {
            return Ok(None);
        }
        // A step's row names its last batch; it began after the step before.
        let before = format!("SELECT MAX(batch_id) FROM {BATCHES_TABLE} WHERE {at} < {micros}");
        Ok(Some(
            single_i64(&query(&ctx, &before).await?).unwrap_or(0) + 1,
        ))
    }

    /// Recomputes `layer` (silver: from `from_batch` on, then all of gold;
    /// gold: all of it, from silver) with the active plugins and replaces
    /// the stored rows. Nothing is replaced if a plugin fails on the way.
    /// Idempotent: running the same replay again gives the same tables.
    pub async fn replay(&mut self, layer: Layer, from_batch: i64) -> anyhow::Result<ReplayReport> {
        let started = std::time::Instant::now();
        if layer == Layer::Bronze {
            bail!("bronze is the log every other layer is rebuilt from: replay silver or gold");
        }
        // On a shared lake only the leader writes silver and gold.
        anyhow::ensure!(
            self.refines(),
            "this instance does not run silver and gold now (another instance on the lake \
             holds the refine role, the owner of partition 0): ask that one to replay"
        );
        anyhow::ensure!(
            self.silver.next_batch == self.next_batch(),
            "a replay needs silver and gold at the same batch (gold is behind)"
        );
        let last = self.next_batch() - 1;
        let from = from_batch.max(1);
        // The ingest tier commits bronze through its own handle.
        self.silver.bronze.reload().await?;
        let ctx = SessionContext::new();
        lake::register(&ctx, bronze::TABLE, self.silver.bronze.delta()).await?;
        lake::register(&ctx, silver::TABLE, self.silver.silver.delta()).await?;
        let (new_silver, new_quarantine) = if layer == Layer::Silver {
            self.recompute_silver(&ctx, from, last).await?
        } else {
            (Vec::new(), Vec::new())
        };
        let keep_below = if layer == Layer::Silver {
            from
        } else {
            i64::MAX
        };
        let rebuilt = self.rebuild_gold(&ctx, keep_below, &new_silver).await?;
        let mut report = ReplayReport {
            layer: layer.to_string(),
            from_batch: from,
            to_batch: last,
            silver_rows: new_silver.iter().map(RecordBatch::num_rows).sum(),
            quarantined: new_quarantine.iter().map(RecordBatch::num_rows).sum(),
            gold_rows: BTreeMap::new(),
            plugins: [Layer::Silver, Layer::Gold]
                .map(|l| self.slots.active(l).meta().producer())
                .to_vec(),
            millis: 0,
        };
        if layer == Layer::Silver {
            self.replace_silver(from, new_silver, new_quarantine)
                .await?;
            crate::failpoint::reached("replay-silver-replaced", from);
        }
        report.gold_rows = self.gold_mut()?.gold.replace_from(&rebuilt.tables).await?;
        drop(rebuilt);
        self.reload_state(last).await?;
        report.millis = started.elapsed().as_millis();
        tracing::info!(?report, "replay done");
        Ok(report)
    }

    /// Silver and quarantine rows for batches `from..=last`, recomputed from
    /// bronze with dedup state as of batch `from - 1`.
    async fn recompute_silver(
        &mut self,
        ctx: &SessionContext,
        from: i64,
        last: i64,
    ) -> anyhow::Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
        let before = restore_dedup(ctx, from - 1, self.silver.bounds).await?;
        let live_dedup = std::mem::replace(&mut self.silver.dedup, before);
        // Shadows and probation are about live steps, not this rewrite.
        let aside = self.slots.set_aside();
        let result = self.silver_for_batches(ctx, from, last).await;
        self.slots.restore(aside);
        if result.is_err() {
            self.silver.dedup = live_dedup;
        }
        result
    }

    async fn silver_for_batches(
        &mut self,
        ctx: &SessionContext,
        from: i64,
        last: i64,
    ) -> anyhow::Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
        let (mut rows, mut quarantined) = (Vec::new(), Vec::new());
        let now = crate::time::now_micros();
        for batch in from..=last {
            let bronze_rows =
                bronze_batches(ctx, batch, batch, self.silver.bronze.schema()).await?;
            if bronze_rows.num_rows() == 0 {
                continue;
            }
            let mut q = QuarantineRows::new(batch, now);
            let SilverRows::Rows(stored) = self
                .silver
                .silver_rows(&self.slots, batch, &bronze_rows, false, &mut q)
                .await?
            else {
                bail!(
                    "the active silver plugin {} failed on batch {batch}; nothing was replaced",
                    self.slots.active(Layer::Silver).meta().producer()
                );
            };
            rows.push(stored);
            let q = q.finish();
            if q.num_rows() > 0 {
                quarantined.push(q);
            }
        }
        Ok((rows, quarantined))
    }

    /// Builds gold from scratch in a scratch lake: stored silver rows of
    /// batches below `keep_below`, then `new_silver`.
    async fn rebuild_gold(
        &self,
        ctx: &SessionContext,
        keep_below: i64,
        new_silver: &[RecordBatch],
    ) -> anyhow::Result<ScratchGold> {
        let dir = std::env::temp_dir().join(format!("sluice-replay-{}", uuid::Uuid::new_v4()));
        let scratch = Lake::local(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let gold = self.slots.active(Layer::Gold);
        let mut tables = GoldTables::open(&scratch, gold.meta()).await?;
        let kept = query(
            ctx,
            &format!(
                "SELECT * FROM {} WHERE batch_id < {keep_below} ORDER BY batch_id",
                silver::TABLE
            ),
        )
        .await?;
        let schema = self.silver.silver.schema().clone();
        let mut chunk: Vec<RecordBatch> = Vec::new();
        let mut chunk_id = 0;
        let all = kept
            .iter()
            .map(|b| lake::conform(silver::TABLE, b, &schema))
            .chain(new_silver.iter().map(|b| Ok(b.clone())));
        for rows in all {
            chunk.push(rows?);
            if chunk.iter().map(RecordBatch::num_rows).sum::<usize>() >= GOLD_CHUNK_ROWS {
                chunk_id += 1;
                self.gold_chunk(&mut tables, chunk_id, &std::mem::take(&mut chunk))
                    .await?;
            }
        }
        if !chunk.is_empty() {
            self.gold_chunk(&mut tables, chunk_id + 1, &chunk).await?;
        }
        Ok(ScratchGold { tables, dir })
    }

    async fn gold_chunk(
        &self,
        tables: &mut GoldTables,
        chunk_id: i64,
        rows: &[RecordBatch],
    ) -> anyhow::Result<()> {
        let input = concat_batches(self.silver.silver.schema(), rows)?;
        if input.num_rows() == 0 {
            return Ok(());
        }
        let plugin = self.slots.active(Layer::Gold);
        let outputs = PluginJob::start(&plugin, input)
            .finish()
            .await
            .map_err(|f| {
                anyhow::anyhow!(
                    "the gold plugin {} failed while rebuilding gold ({f}); nothing was replaced",
                    plugin.meta().producer()
                )
            })?;
        tables.write(STAGE_GOLD, chunk_id, outputs).await?;
        Ok(())
    }

    /// Swaps the recomputed range into `silver_events` and `quarantine`.
    /// Gold-layer quarantine rows go too: the rebuild took every event.
    async fn replace_silver(
        &mut self,
        from: i64,
        rows: Vec<RecordBatch>,
        quarantined: Vec<RecordBatch>,
    ) -> anyhow::Result<()> {
        let rows = non_empty(rows, self.silver.silver.schema());
        self.silver
            .silver
            .replace_where(&format!("batch_id >= {from}"), rows)
            .await?;
        let quarantined = non_empty(quarantined, &quarantine::schema());
        self.silver
            .quarantine
            .replace_where(
                &format!("(layer = 'silver' AND batch_id >= {from}) OR layer = 'gold'"),
                quarantined,
            )
            .await?;
        Ok(())
    }

    /// Host state from the replaced tables: dedup ids and SCD2 histories.
    async fn reload_state(&mut self, last: i64) -> anyhow::Result<()> {
        let ctx = SessionContext::new();
        lake::register(&ctx, silver::TABLE, self.silver.silver.delta()).await?;
        self.silver.dedup = restore_dedup(&ctx, last, self.silver.bounds).await?;
        let plugin = self.slots.active(Layer::Gold);
        let gold = self.gold_mut()?;
        let tables = GoldTables::open(&gold.lake, plugin.meta()).await?;
        gold.gold = tables;
        gold.opened_for = plugin.hash().to_string();
        Ok(())
    }
}

/// Gold rebuilt in a scratch lake, removed when dropped.
struct ScratchGold {
    tables: GoldTables,
    dir: std::path::PathBuf,
}

impl Drop for ScratchGold {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Delta writes need at least one batch to know the schema.
fn non_empty(
    rows: Vec<RecordBatch>,
    schema: &deltalake::arrow::datatypes::SchemaRef,
) -> Vec<RecordBatch> {
    if rows.is_empty() {
        vec![RecordBatch::new_empty(schema.clone())]
    } else {
        rows
    }
}

/// The one value of a one-row, one-column answer, if not null.
fn single_i64(rows: &[RecordBatch]) -> Option<i64> {
    rows.first().and_then(|b| {
        b.column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .filter(|a| !a.is_empty() && a.is_valid(0))
            .map(|a| a.value(0))
    })
}
