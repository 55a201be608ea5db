//! What a source needs when several instances share the lake: the lake's
//! positions as other instances move them (so a partition taken over
//! resumes where its last owner stopped), and the refine role's signal.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::lake::{LakeTable, Marks};
use crate::layers::bronze::{position_key, position_marks};
use crate::record::Positions;

/// A source's part in sharing the lake.
pub struct Sharing {
    /// This instance's id in the lake (its bronze writer id): what it
    /// claims partitions as where ownership is kept outside the broker
    /// (Event Hubs), so `sluice status` can match owners to the lake's
    /// instances.
    pub instance: String,
    pub positions: LakePositions,
    /// Set true while this instance holds the partition that carries the
    /// refine role (partition 0), false when it loses it.
    pub lead: watch::Sender<bool>,
}

/// The lake's last offset per ordered-source partition, following the app
/// transactions of `bronze_events` commits. Never ahead of the lake: a
/// partition resumed from it may re-read records another instance stored
/// meanwhile, which the bronze fence then drops (`pipeline/ingest.rs`).
pub struct LakePositions {
    bronze: tokio::sync::Mutex<LakeTable>,
    marks: Mutex<Marks>,
}

impl LakePositions {
    /// Follows `bronze` (a handle of its own) from the positions `start`
    /// read with its snapshot.
    pub fn new(bronze: LakeTable, start: &Positions) -> Self {
        LakePositions {
            bronze: tokio::sync::Mutex::new(bronze),
            marks: Mutex::new(position_marks(start)),
        }
    }

    /// The last offset of `(source, partition)` in the lake, as of the last
    /// [`refresh`](Self::refresh).
    pub fn get(&self, source: &str, partition: &str) -> Option<i64> {
        let marks = self.marks.lock().expect("positions");
        marks.get(&position_key(source, partition)).copied()
    }

    /// Reads the bronze commits made since the last refresh.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let mut bronze = self.bronze.lock().await;
        let mut marks = self.marks.lock().expect("positions").clone();
        bronze.catch_up(&mut marks).await?;
        *self.marks.lock().expect("positions") = marks;
        Ok(())
    }
}
