//! Silver's host-owned state: event-id deduplication bounded by an event-time
//! watermark. Runs on the silver plugin's output, in arrival order.
//!
//! The watermark is the newest accepted event time minus the allowed
//! lateness, advanced event by event; so whether an event is accepted, a
//! duplicate or late depends only on arrival order, never on where batch
//! boundaries fall. That is what makes a replay after a crash give the same
//! silver table as an uninterrupted run.

use std::collections::HashMap;

use deltalake::arrow::array::BooleanArray;
use deltalake::arrow::array::{
    Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use deltalake::arrow::compute::{filter_record_batch, sort_to_indices, take_record_batch};

use sluice_plugin_sdk::schemas::INPUT_ROW;

pub const TABLE: &str = "silver_events";
/// Columns the host needs in a silver plugin's `silver_events` output.
pub const EVENT_ID: &str = "event_id";
pub const EVENT_TIME: &str = "event_time";

/// What the host decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Duplicate,
    Late { watermark: i64 },
}

/// Event ids seen within the lateness window, and the newest event time.
#[derive(Debug, Default)]
pub struct DedupState {
    seen: HashMap<Box<str>, i64>,
    newest: Option<i64>,
    lateness_micros: i64,
}

impl DedupState {
    pub fn new(lateness_micros: i64) -> Self {
        DedupState {
            lateness_micros,
            ..Default::default()
        }
    }

    /// Rebuilds the state from accepted events (id, event time), as read
    /// back from the silver table.
    pub fn restore(
        lateness_micros: i64,
        accepted: impl IntoIterator<Item = (String, i64)>,
    ) -> Self {
        let mut state = DedupState::new(lateness_micros);
        for (id, t) in accepted {
            state.newest = Some(state.newest.map_or(t, |n| n.max(t)));
            state.seen.insert(id.into_boxed_str(), t);
        }
        state.prune();
        state
    }

    /// Events older than this are late.
    pub fn watermark(&self) -> Option<i64> {
        self.newest.map(|n| n - self.lateness_micros)
    }

    pub fn tracked_ids(&self) -> usize {
        self.seen.len()
    }

    /// Judges one event and, if accepted, remembers it.
    pub fn judge(&mut self, id: &str, event_time: i64) -> Verdict {
        if let Some(watermark) = self.watermark()
            && event_time < watermark
        {
            return Verdict::Late { watermark };
        }
        if self.seen.contains_key(id) {
            return Verdict::Duplicate;
        }
        self.seen.insert(id.into(), event_time);
        self.newest = Some(self.newest.map_or(event_time, |n| n.max(event_time)));
        Verdict::Accept
    }

    /// Forgets ids that can no longer be re-accepted: anything older than the
    /// watermark is judged late before its id is looked at.
    pub fn prune(&mut self) {
        if let Some(watermark) = self.watermark() {
            self.seen.retain(|_, t| *t >= watermark);
        }
    }
}

/// An event the host rejected after the plugin accepted it.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub input_row: u32,
    pub reason: &'static str,
    pub detail: String,
}

/// Splits the plugin's `silver_events` rows into accepted rows (arrival
/// order, `input_row` kept) and rejected ones.
pub fn deduplicate(
    state: &mut DedupState,
    rows: &RecordBatch,
) -> Result<(RecordBatch, Vec<Rejected>), String> {
    if rows.num_rows() == 0 {
        return Ok((rows.clone(), Vec::new()));
    }
    let order = rows
        .column_by_name(INPUT_ROW)
        .ok_or("silver_events rows lack `input_row`")?;
    let indices = sort_to_indices(order, None, None).map_err(|e| e.to_string())?;
    let rows = take_record_batch(rows, &indices).map_err(|e| e.to_string())?;
    let input_row = column::<UInt32Array>(&rows, INPUT_ROW)?;
    let ids = column::<StringArray>(&rows, EVENT_ID)?;
    let times = column::<TimestampMicrosecondArray>(&rows, EVENT_TIME)?;
    let mut keep = Vec::with_capacity(rows.num_rows());
    let mut rejected = Vec::new();
    for i in 0..rows.num_rows() {
        let (id, t) = (ids.value(i), times.value(i));
        let verdict = state.judge(id, t);
        keep.push(verdict == Verdict::Accept);
        match verdict {
            Verdict::Accept => {}
            Verdict::Duplicate => rejected.push(Rejected {
                input_row: input_row.value(i),
                reason: "duplicate",
                detail: format!("event_id {id} was already accepted"),
            }),
            Verdict::Late { watermark } => rejected.push(Rejected {
                input_row: input_row.value(i),
                reason: "late",
                detail: format!(
                    "event time {} is before the watermark {}",
                    crate::time::format_micros(t),
                    crate::time::format_micros(watermark)
                ),
            }),
        }
    }
    state.prune();
    let accepted =
        filter_record_batch(&rows, &BooleanArray::from(keep)).map_err(|e| e.to_string())?;
    Ok((accepted, rejected))
}

fn column<'a, T: 'static>(rows: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    let col = rows
        .column_by_name(name)
        .ok_or_else(|| format!("silver_events rows lack `{name}`"))?;
    if col.null_count() > 0 {
        return Err(format!("silver_events column `{name}` has nulls"));
    }
    col.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("silver_events column `{name}` has the wrong type"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    #[test]
    fn duplicates_and_late_events_are_judged_by_arrival_order() {
        let mut s = DedupState::new(10 * MIN);
        assert_eq!(s.judge("a", 100 * MIN), Verdict::Accept);
        assert_eq!(s.judge("a", 100 * MIN), Verdict::Duplicate);
        assert_eq!(s.judge("b", 95 * MIN), Verdict::Accept, "within lateness");
        assert_eq!(
            s.judge("c", 89 * MIN),
            Verdict::Late {
                watermark: 90 * MIN
            }
        );
        assert_eq!(s.judge("d", 120 * MIN), Verdict::Accept);
        assert_eq!(
            s.judge("b", 95 * MIN),
            Verdict::Late {
                watermark: 110 * MIN
            },
            "old duplicate is late"
        );
    }

    #[test]
    fn prune_keeps_only_ids_inside_the_window() {
        let mut s = DedupState::new(10 * MIN);
        for i in 0..100 {
            s.judge(&format!("e{i}"), i * MIN);
        }
        s.prune();
        assert_eq!(s.tracked_ids(), 11, "ids at 89..=99 minutes remain");
        let restored = DedupState::restore(10 * MIN, (0..100).map(|i| (format!("e{i}"), i * MIN)));
        assert_eq!(restored.tracked_ids(), 11);
        assert_eq!(restored.watermark(), Some(89 * MIN));
    }
}
