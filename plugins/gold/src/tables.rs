//! The gold star schema as data: each table's columns, fold operations and
//! write mode. The declared schema, the merge spec and the emitted batches
//! all come from these declarations, so they cannot disagree.

use std::sync::{Arc, OnceLock};

use sluice_plugin_sdk::arrow_schema::{DataType, Field, Schema};
use sluice_plugin_sdk::schemas::timestamp_type;
use sluice_plugin_sdk::{DerivedSpec, MergeOp, MergeSpec, Scd2Spec, TableSpec, WriteMode, measure};

use MergeOp::{Any, First, Max, Min, Sum};
use Type::{Boolean, Date32, Int32, Int64, Timestamp, Utf8};

pub const FACT_FEATURE_USAGE: &str = "fact_feature_usage";
pub const FACT_SESSIONS: &str = "fact_sessions";
pub const FACT_USER_DAILY: &str = "fact_user_daily";
pub const FACT_DAILY_ACTIVE_USERS: &str = "fact_daily_active_users";
pub const DIM_USER: &str = "dim_user";
pub const DIM_FEATURE: &str = "dim_feature";
pub const DIM_DATE: &str = "dim_date";
pub const DIM_PLAN: &str = "dim_plan";

/// Column types used by gold tables.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Type {
    Int32,
    Int64,
    Utf8,
    Boolean,
    Date32,
    /// Microseconds, UTC.
    Timestamp,
}

impl Type {
    fn data_type(self) -> DataType {
        match self {
            Type::Int32 => DataType::Int32,
            Type::Int64 => DataType::Int64,
            Type::Utf8 => DataType::Utf8,
            Type::Boolean => DataType::Boolean,
            Type::Date32 => DataType::Date32,
            Type::Timestamp => timestamp_type(),
        }
    }
}

/// One column; `op` is `None` for grain keys and in tables that are not merged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Col {
    name: &'static str,
    ty: Type,
    nullable: bool,
    op: Option<MergeOp>,
}

const fn col(name: &'static str, ty: Type) -> Col {
    Col {
        name,
        ty,
        nullable: false,
        op: None,
    }
}

const fn measured(name: &'static str, ty: Type, op: MergeOp) -> Col {
    Col {
        name,
        ty,
        nullable: false,
        op: Some(op),
    }
}

const fn nullable(col: Col) -> Col {
    Col {
        nullable: true,
        ..col
    }
}

/// How the host writes a table, minus the columns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// Keys are the columns without an `op`.
    Merge { order_by: Option<&'static str> },
    Scd2 {
        key: &'static str,
        tracked: &'static [&'static str],
        at: &'static str,
        is_change: &'static str,
    },
    Derived {
        sql: &'static str,
        keys: &'static [&'static str],
        scope: &'static str,
    },
}

/// A gold table declaration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Table {
    pub name: &'static str,
    description: &'static str,
    /// Keys first, then measures, as emitted.
    columns: &'static [Col],
    mode: Mode,
    /// Delta partition columns. The daily facts are partitioned by day, so
    /// a MERGE reads and rewrites only the days its rows touch (delta-rs
    /// prunes partitions by the source's values) instead of the whole table.
    partition_by: &'static [&'static str],
}

/// Every gold table, in the order they are declared and emitted.
pub(crate) const TABLES: [Table; 8] = [
    Table {
        name: FACT_FEATURE_USAGE,
        description: "Feature use per day, feature, user and plan",
        columns: &[
            col("date_key", Int32),
            col("feature", Utf8),
            col("user_id", Utf8),
            col("plan", Utf8),
            measured("events", Int64, Sum),
            measured("total_duration_ms", Int64, Sum),
            measured("total_items", Int64, Sum),
            measured("first_used_at", Timestamp, Min),
            measured("last_used_at", Timestamp, Max),
        ],
        mode: Mode::Merge { order_by: None },
        partition_by: &["date_key"],
    },
    Table {
        name: FACT_SESSIONS,
        description: "One row per session: who, when, how long and how much was used",
        columns: &[
            col("session_id", Utf8),
            measured("user_id", Utf8, Any),
            measured("account_id", Utf8, Any),
            measured("plan", Utf8, First),
            nullable(measured("platform", Utf8, First)),
            measured("date_key", Int32, First),
            measured("started_at", Timestamp, Min),
            measured("ended_at", Timestamp, Max),
            measured("events", Int64, Sum),
            measured("feature_events", Int64, Sum),
            measured("session_ends", Int64, Sum),
            measured("duration_ms", Int64, Sum),
        ],
        mode: Mode::Merge {
            order_by: Some("started_at"),
        },
        partition_by: &[],
    },
    Table {
        name: FACT_USER_DAILY,
        description: "Activity per user, day and plan",
        columns: &[
            col("date_key", Int32),
            col("user_id", Utf8),
            col("plan", Utf8),
            measured("account_id", Utf8, Any),
            measured("events", Int64, Sum),
            measured("sessions", Int64, Sum),
            measured("feature_events", Int64, Sum),
            measured("duration_ms", Int64, Sum),
        ],
        mode: Mode::Merge { order_by: None },
        partition_by: &["date_key"],
    },
    Table {
        name: FACT_DAILY_ACTIVE_USERS,
        description: "Active users and activity per day and plan (computed by the host)",
        columns: &[
            col("date_key", Int32),
            col("plan", Utf8),
            col("active_users", Int64),
            col("events", Int64),
            col("sessions", Int64),
            col("feature_events", Int64),
        ],
        mode: Mode::Derived {
            sql: "SELECT date_key, plan, COUNT(*) AS active_users, SUM(events) AS events, \
                  SUM(sessions) AS sessions, SUM(feature_events) AS feature_events \
                  FROM fact_user_daily GROUP BY date_key, plan",
            keys: &["date_key", "plan"],
            scope: "date_key",
        },
        partition_by: &[],
    },
    Table {
        name: DIM_USER,
        description: "Users with their account and plan history (type 2)",
        columns: &[
            col("user_id", Utf8),
            col("account_id", Utf8),
            col("plan", Utf8),
            col("observed_at", Timestamp),
            col("is_change", Boolean),
        ],
        mode: Mode::Scd2 {
            key: "user_id",
            tracked: &["account_id", "plan"],
            at: "observed_at",
            is_change: "is_change",
        },
        partition_by: &[],
    },
    Table {
        name: DIM_FEATURE,
        description: "Features with their category and first and last use",
        columns: &[
            col("feature", Utf8),
            measured("category", Utf8, Any),
            measured("is_advanced", Boolean, Any),
            measured("first_used_at", Timestamp, Min),
            measured("last_used_at", Timestamp, Max),
        ],
        mode: Mode::Merge { order_by: None },
        partition_by: &[],
    },
    Table {
        name: DIM_DATE,
        description: "Calendar attributes of every date with events",
        columns: &[
            col("date_key", Int32),
            measured("date", Date32, Any),
            measured("year", Int32, Any),
            measured("quarter", Int32, Any),
            measured("month", Int32, Any),
            measured("day", Int32, Any),
            measured("weekday", Utf8, Any),
            measured("is_weekend", Boolean, Any),
        ],
        mode: Mode::Merge { order_by: None },
        partition_by: &[],
    },
    Table {
        name: DIM_PLAN,
        description: "Subscription plans with their tier",
        columns: &[
            col("plan", Utf8),
            measured("display_name", Utf8, Any),
            measured("tier", Int32, Any),
            measured("is_paid", Boolean, Any),
        ],
        mode: Mode::Merge { order_by: None },
        partition_by: &[],
    },
];

impl Table {
    /// The declaration of `name`, if gold has such a table.
    pub(crate) fn named(name: &str) -> Option<&'static Table> {
        TABLES.iter().find(|t| t.name == name)
    }

    /// Whether the plugin emits rows for it (the host computes derived ones).
    pub(crate) fn is_emitted(&self) -> bool {
        !matches!(self.mode, Mode::Derived { .. })
    }

    /// The Arrow schema of emitted rows, built once per table.
    pub(crate) fn schema(&self) -> Arc<Schema> {
        static SCHEMAS: OnceLock<Vec<Arc<Schema>>> = OnceLock::new();
        let schemas = SCHEMAS.get_or_init(|| TABLES.iter().map(Table::build_schema).collect());
        let index = TABLES
            .iter()
            .position(|t| t.name == self.name)
            .expect("a declared table");
        schemas[index].clone()
    }

    fn build_schema(&self) -> Arc<Schema> {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.name, c.ty.data_type(), c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The table as declared in `plugin-info`.
    pub(crate) fn spec(&self) -> TableSpec {
        sluice_plugin_sdk::table(
            self.name,
            self.description,
            &self.schema(),
            self.partition_by,
            self.write_mode(),
        )
    }

    fn write_mode(&self) -> WriteMode {
        let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        match self.mode {
            Mode::Merge { order_by } => WriteMode::Merge(MergeSpec {
                keys: self
                    .columns
                    .iter()
                    .filter(|c| c.op.is_none())
                    .map(|c| c.name.to_string())
                    .collect(),
                measures: self
                    .columns
                    .iter()
                    .filter_map(|c| c.op.map(|op| measure(c.name, op)))
                    .collect(),
                order_by: order_by.map(str::to_string),
            }),
            Mode::Scd2 {
                key,
                tracked,
                at,
                is_change,
            } => WriteMode::Scd2(Scd2Spec {
                key: key.to_string(),
                tracked: strings(tracked),
                at: at.to_string(),
                is_change: is_change.to_string(),
            }),
            Mode::Derived { sql, keys, scope } => WriteMode::Derived(DerivedSpec {
                sql: sql.to_string(),
                keys: strings(keys),
                scope: scope.to_string(),
            }),
        }
    }
}
