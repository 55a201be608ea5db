//! The default silver rules plus one: a `feature_used` event whose
//! `duration_ms` exceeds [`MAX_DURATION_MS`] goes to quarantine as
//! `duration_over_limit`. A changed business rule, for shadow-run tests.

use sluice_plugin_sdk::arrow_array::{Array, RecordBatch};
use sluice_plugin_sdk::rows::{i64_column, quarantine_where, str_column};
use sluice_plugin_sdk::{Plugin, PluginInfo, TableRows, TransformError};
use sluice_plugin_silver::{SILVER_EVENTS, Silver};

pub struct SilverStrict;

pub const VERSION: &str = "0.3.0-strict";
pub const MAX_DURATION_MS: i64 = 60_000;
pub const REASON: &str = "duration_over_limit";

/// Per row, true if the new rule refuses it.
fn over_limit(rows: &RecordBatch) -> Result<Vec<bool>, TransformError> {
    let types = str_column(rows, "event_type")?;
    let durations = i64_column(rows, "duration_ms")?;
    Ok((0..rows.num_rows())
        .map(|i| {
            types.value(i) == "feature_used"
                && durations.is_valid(i)
                && durations.value(i) > MAX_DURATION_MS
        })
        .collect())
}

impl Plugin for SilverStrict {
    fn info() -> PluginInfo {
        let mut info = Silver::info();
        info.version = VERSION.into();
        info
    }

    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError> {
        let mut outputs = Silver::transform(input)?;
        let refuse = match outputs.iter().find(|(t, _)| t == SILVER_EVENTS) {
            Some((_, rows)) => over_limit(rows)?,
            None => return Ok(outputs),
        };
        let detail = format!("feature use longer than {MAX_DURATION_MS} ms");
        quarantine_where(&mut outputs, SILVER_EVENTS, &refuse, REASON, &detail)?;
        Ok(outputs)
    }
}

#[cfg(target_arch = "wasm32")]
sluice_plugin_sdk::export_plugin!(SilverStrict);
