//! Default gold transform: folds accepted silver events into the star
//! schema's fact and dimension rows, pre-aggregated per grain key per batch.
//!
//! The host merges the rows into Delta tables by each table's declared write
//! mode (merge, type-2 dimension, or derived by SQL), across batches.

mod calendar;
mod catalog;
mod fold;
mod input;
mod tables;

use std::sync::Arc;

use sluice_plugin_sdk::arrow_array::{ArrayRef, RecordBatch};
use sluice_plugin_sdk::arrow_schema::Schema;
use sluice_plugin_sdk::{Layer, Plugin, PluginInfo, TableRows, TransformError};

pub use tables::{
    DIM_DATE, DIM_FEATURE, DIM_PLAN, DIM_USER, FACT_DAILY_ACTIVE_USERS, FACT_FEATURE_USAGE,
    FACT_SESSIONS, FACT_USER_DAILY,
};
use tables::{TABLES, Table};

/// The default gold plugin.
pub struct Gold;

/// Names of every gold table, in declaration order.
pub fn table_names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name).collect()
}

/// Schema of the rows gold emits for `table` (declared, for the derived one).
pub fn output_schema(table: &str) -> Option<Arc<Schema>> {
    Table::named(table).map(Table::schema)
}

/// Declares a public `fn` per table returning its schema.
macro_rules! schema_fns {
    ($($fn_name:ident => $table:ident),* $(,)?) => {$(
        #[doc = concat!("Schema of `", stringify!($table), "` rows.")]
        pub fn $fn_name() -> Arc<Schema> {
            output_schema($table).expect("a declared table")
        }
    )*};
}

schema_fns! {
    fact_feature_usage_schema => FACT_FEATURE_USAGE,
    fact_sessions_schema => FACT_SESSIONS,
    fact_user_daily_schema => FACT_USER_DAILY,
    fact_daily_active_users_schema => FACT_DAILY_ACTIVE_USERS,
    dim_user_schema => DIM_USER,
    dim_feature_schema => DIM_FEATURE,
    dim_date_schema => DIM_DATE,
    dim_plan_schema => DIM_PLAN,
}

impl Plugin for Gold {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sluice-gold".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            layer: Layer::Gold,
            description: "Star schema of product usage: feature, session and daily facts; \
                          user, feature, date and plan dimensions"
                .into(),
            outputs: TABLES.iter().map(Table::spec).collect(),
            limits: sluice_plugin_sdk::ResourceLimits::HOST_DEFAULTS,
        }
    }

    /// Emits every table except the derived one, even when a table gets no
    /// rows, so each batch has the same shape.
    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError> {
        let events = input::events(input)?;
        TABLES
            .iter()
            .filter(|t| t.is_emitted())
            .map(|table| {
                let rows = fold::batch(table.schema(), columns(table.name, &events))
                    .map_err(|e| TransformError::Internal(format!("{}: {e}", table.name)))?;
                Ok((table.name.to_string(), rows))
            })
            .collect()
    }
}

/// The columns of one emitted table for a batch of events.
fn columns(table: &str, events: &[input::Event<'_>]) -> Vec<ArrayRef> {
    match table {
        FACT_FEATURE_USAGE => fold::fact_feature_usage(events),
        FACT_SESSIONS => fold::fact_sessions(events),
        FACT_USER_DAILY => fold::fact_user_daily(events),
        DIM_USER => fold::dim_user(events),
        DIM_FEATURE => fold::dim_feature(events),
        DIM_DATE => fold::dim_date(events),
        DIM_PLAN => fold::dim_plan(events),
        other => unreachable!("no fold for {other}"),
    }
}

#[cfg(all(target_arch = "wasm32", feature = "export"))]
sluice_plugin_sdk::export_plugin!(Gold);
