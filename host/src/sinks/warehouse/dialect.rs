//! Every SQL text the loader sends, for PostgreSQL and for Synapse (T-SQL).
//! The two dialects differ only here: identifiers, literals, staging tables
//! and the DDL file; MERGE and DELETE ... EXISTS read the same in both.

use deltalake::arrow::array::{
    Array, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array, Int16Array,
    Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use deltalake::arrow::datatypes::{DataType, TimeUnit};

/// The warehouse's SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Synapse,
}

/// Rows per staging INSERT statement (T-SQL allows at most 1000 per VALUES,
/// and Synapse none: it gets `SELECT ... UNION ALL`).
pub const ROWS_PER_INSERT: usize = 500;

/// The warehouse schema every table lives in.
pub const SCHEMA: &str = "sluice";
/// The load-state table: one row per gold table, the Delta version loaded.
pub const STATE_TABLE: &str = "load_state";

impl Dialect {
    /// The DDL files `warehouse init` applies, in order (each idempotent).
    pub fn ddl(self) -> &'static [&'static str] {
        match self {
            Dialect::Postgres => &[include_str!("../../../../postgres/001_star_schema.sql")],
            Dialect::Synapse => &[
                include_str!("../../../../synapse/001_star_schema.sql"),
                include_str!("../../../../synapse/002_load_state.sql"),
            ],
        }
    }

    pub fn ident(self, name: &str) -> String {
        match self {
            Dialect::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
            Dialect::Synapse => format!("[{}]", name.replace(']', "]]")),
        }
    }

    /// `sluice.<table>`, quoted.
    pub fn table(self, name: &str) -> String {
        format!("{}.{}", self.ident(SCHEMA), self.ident(name))
    }

    /// Name of the session-scoped staging table for `table` (`kind`: rows or keys).
    pub fn staging(self, table: &str, kind: &str) -> String {
        match self {
            Dialect::Postgres => self.ident(&format!("stage_{kind}_{table}")),
            Dialect::Synapse => format!("[#stage_{kind}_{}]", table.replace(']', "]]")),
        }
    }

    fn cols(self, columns: &[String]) -> String {
        columns
            .iter()
            .map(|c| self.ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// (Re)creates an empty staging table shaped like `columns` of the target.
    pub fn create_staging(self, table: &str, kind: &str, columns: &[String]) -> String {
        let stage = self.staging(table, kind);
        let target = self.table(table);
        let cols = self.cols(columns);
        match self {
            Dialect::Postgres => format!(
                "DROP TABLE IF EXISTS {stage}; \
                 CREATE TEMP TABLE {stage} AS SELECT {cols} FROM {target} WITH NO DATA"
            ),
            // Synapse temp tables come from CTAS; round-robin heap loads fastest.
            // OBJECT_ID takes the bracket-quoted name inside a string
            // literal: both quotings apply, `]` doubled, then `'` doubled.
            Dialect::Synapse => format!(
                "IF OBJECT_ID({name}) IS NOT NULL DROP TABLE {stage}; \
                 CREATE TABLE {stage} WITH (DISTRIBUTION = ROUND_ROBIN, HEAP) \
                 AS SELECT {cols} FROM {target} WHERE 1 = 0",
                name = self.text(&format!("tempdb..{stage}")),
            ),
        }
    }

    /// INSERTs of `rows` into a staging table, at most [`ROWS_PER_INSERT`] per statement.
    pub fn insert_staging(
        self,
        table: &str,
        kind: &str,
        rows: &RecordBatch,
    ) -> Result<Vec<String>, String> {
        let stage = self.staging(table, kind);
        let names: Vec<String> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let cols = self.cols(&names);
        let mut statements = Vec::new();
        let mut start = 0;
        while start < rows.num_rows() {
            let len = ROWS_PER_INSERT.min(rows.num_rows() - start);
            let mut tuples = Vec::with_capacity(len);
            for row in start..start + len {
                let values = rows
                    .columns()
                    .iter()
                    .map(|c| self.literal(c.as_ref(), row))
                    .collect::<Result<Vec<_>, _>>()?;
                tuples.push(values.join(", "));
            }
            statements.push(match self {
                Dialect::Postgres => format!(
                    "INSERT INTO {stage} ({cols}) VALUES ({})",
                    tuples.join("), (")
                ),
                Dialect::Synapse => format!(
                    "INSERT INTO {stage} ({cols}) SELECT {}",
                    tuples.join(" UNION ALL SELECT ")
                ),
            });
            start += len;
        }
        Ok(statements)
    }

    /// One value as a SQL literal. Strings are quoted by doubling `'`, the
    /// only escape either dialect needs (PostgreSQL with standard strings).
    pub fn literal(self, column: &dyn Array, row: usize) -> Result<String, String> {
        if column.is_null(row) {
            return Ok("NULL".into());
        }
        let any = column.as_any();
        macro_rules! num {
            ($t:ty) => {
                any.downcast_ref::<$t>().map(|a| a.value(row).to_string())
            };
        }
        let text = |s: &str| -> Result<String, String> {
            if s.contains('\0') {
                return Err("a string holds a NUL character, which SQL text cannot".into());
            }
            let quoted = s.replace('\'', "''");
            Ok(match self {
                Dialect::Postgres => format!("'{quoted}'"),
                Dialect::Synapse => format!("N'{quoted}'"),
            })
        };
        let value = match column.data_type() {
            DataType::Utf8 => text(any.downcast_ref::<StringArray>().unwrap().value(row))?,
            DataType::LargeUtf8 => {
                text(any.downcast_ref::<LargeStringArray>().unwrap().value(row))?
            }
            DataType::Utf8View => text(any.downcast_ref::<StringViewArray>().unwrap().value(row))?,
            DataType::Boolean => {
                let b = any.downcast_ref::<BooleanArray>().unwrap().value(row);
                match (self, b) {
                    (Dialect::Postgres, true) => "TRUE".into(),
                    (Dialect::Postgres, false) => "FALSE".into(),
                    (Dialect::Synapse, true) => "1".into(),
                    (Dialect::Synapse, false) => "0".into(),
                }
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let micros = any
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .unwrap()
                    .value(row);
                let at = chrono::DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| format!("timestamp {micros} out of range"))?;
                let iso = at.format("%Y-%m-%dT%H:%M:%S%.6f");
                match self {
                    Dialect::Postgres => format!("'{iso}'"),
                    Dialect::Synapse => format!("CAST('{iso}' AS DATETIME2(6))"),
                }
            }
            DataType::Date32 => {
                let days = any.downcast_ref::<Date32Array>().unwrap().value(row);
                let date = chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                    .ok_or_else(|| format!("date {days} out of range"))?
                    .format("%Y-%m-%d");
                match self {
                    Dialect::Postgres => format!("'{date}'"),
                    Dialect::Synapse => format!("CAST('{date}' AS DATE)"),
                }
            }
            DataType::Float32 | DataType::Float64 => {
                let f = num!(Float64Array)
                    .or_else(|| num!(Float32Array))
                    .ok_or("bad float column")?;
                if f.parse::<f64>().is_ok_and(f64::is_finite) {
                    f
                } else {
                    return Err(format!("float {f} has no SQL literal"));
                }
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => num!(Int64Array)
                .or_else(|| num!(Int32Array))
                .or_else(|| num!(Int16Array))
                .or_else(|| num!(Int8Array))
                .or_else(|| num!(UInt64Array))
                .or_else(|| num!(UInt32Array))
                .or_else(|| num!(UInt16Array))
                .or_else(|| num!(UInt8Array))
                .ok_or("bad integer column")?,
            other => return Err(format!("type {other} is not loaded into the warehouse")),
        };
        Ok(value)
    }

    /// Upserts staged rows into the target by `keys`.
    pub fn merge(self, table: &str, columns: &[String], keys: &[String]) -> String {
        let target = self.table(table);
        let stage = self.staging(table, "rows");
        let on = keys
            .iter()
            .map(|k| format!("t.{k} = s.{k}", k = self.ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let set = columns
            .iter()
            .filter(|c| !keys.contains(c))
            .map(|c| format!("{c} = s.{c}", c = self.ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let cols = self.cols(columns);
        let values = columns
            .iter()
            .map(|c| format!("s.{}", self.ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let update = if set.is_empty() {
            String::new()
        } else {
            format!(" WHEN MATCHED THEN UPDATE SET {set}")
        };
        format!(
            "MERGE INTO {target} AS t USING {stage} AS s ON {on}{update} \
             WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values});"
        )
    }

    /// Deletes target rows whose keys are staged as gone from the lake.
    pub fn delete_gone(self, table: &str, keys: &[String]) -> String {
        let target = self.table(table);
        let stage = self.staging(table, "keys");
        let on = keys
            .iter()
            .map(|k| format!("d.{k} = {target}.{k}", k = self.ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!("DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {stage} AS d WHERE {on});")
    }

    /// Empties the target (when the lake's old version is gone and the
    /// table is reloaded whole).
    pub fn delete_all(self, table: &str) -> String {
        format!("DELETE FROM {};", self.table(table))
    }

    fn text(self, s: &str) -> String {
        match self {
            Dialect::Postgres => format!("'{}'", s.replace('\'', "''")),
            Dialect::Synapse => format!("N'{}'", s.replace('\'', "''")),
        }
    }

    /// Adds the table's state row (version -1: nothing loaded) if missing.
    pub fn ensure_state_row(self, table: &str) -> String {
        let state = self.table(STATE_TABLE);
        let name = self.text(table);
        let now = self.now();
        format!(
            "INSERT INTO {state} (table_name, delta_version, loaded_at) \
             SELECT {name}, -1, {now} WHERE NOT EXISTS \
             (SELECT 1 FROM {state} WHERE table_name = {name});"
        )
    }

    fn now(self) -> &'static str {
        match self {
            Dialect::Postgres => "now()",
            Dialect::Synapse => "SYSUTCDATETIME()",
        }
    }

    /// Reads the table's loaded version (locking the row in PostgreSQL so two
    /// loaders serialize; Synapse has no row locks: run one loader).
    pub fn select_state(self, table: &str) -> String {
        let state = self.table(STATE_TABLE);
        let name = self.text(table);
        match self {
            Dialect::Postgres => format!(
                "SELECT delta_version, table_id FROM {state} WHERE table_name = {name} FOR UPDATE"
            ),
            Dialect::Synapse => {
                format!("SELECT delta_version, table_id FROM {state} WHERE table_name = {name}")
            }
        }
    }

    /// Records `version` of Delta table `id` as loaded; runs in the data's
    /// transaction.
    pub fn update_state(self, table: &str, version: i64, id: &str) -> String {
        format!(
            "UPDATE {} SET delta_version = {version}, table_id = {}, loaded_at = {} WHERE table_name = {};",
            self.table(STATE_TABLE),
            self.text(id),
            self.now(),
            self.text(table)
        )
    }

    pub fn begin(self) -> &'static str {
        match self {
            Dialect::Postgres => "BEGIN",
            // XACT_ABORT: any error rolls the whole transaction back.
            Dialect::Synapse => "SET XACT_ABORT ON; BEGIN TRANSACTION",
        }
    }

    pub fn commit(self) -> &'static str {
        match self {
            Dialect::Postgres => "COMMIT",
            Dialect::Synapse => "COMMIT TRANSACTION",
        }
    }

    pub fn rollback(self) -> &'static str {
        match self {
            Dialect::Postgres => "ROLLBACK",
            Dialect::Synapse => "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::datatypes::{Field, Schema};

    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tsql_merge_matches_on_keys_and_updates_the_rest() {
        let sql = Dialect::Synapse.merge(
            "dim_user",
            &cols(&["user_id", "plan", "valid_from", "valid_to"]),
            &cols(&["user_id", "valid_from"]),
        );
        assert_eq!(
            sql,
            "MERGE INTO [sluice].[dim_user] AS t USING [#stage_rows_dim_user] AS s \
             ON t.[user_id] = s.[user_id] AND t.[valid_from] = s.[valid_from] \
             WHEN MATCHED THEN UPDATE SET [plan] = s.[plan], [valid_to] = s.[valid_to] \
             WHEN NOT MATCHED THEN INSERT ([user_id], [plan], [valid_from], [valid_to]) \
             VALUES (s.[user_id], s.[plan], s.[valid_from], s.[valid_to]);"
        );
    }

    #[test]
    fn merge_without_non_key_columns_only_inserts() {
        let sql = Dialect::Synapse.merge("dim_plan", &cols(&["plan"]), &cols(&["plan"]));
        assert!(!sql.contains("WHEN MATCHED"), "{sql}");
        assert!(
            sql.contains("WHEN NOT MATCHED THEN INSERT ([plan])"),
            "{sql}"
        );
    }

    #[test]
    fn tsql_staging_is_a_round_robin_temp_heap() {
        let sql = Dialect::Synapse.create_staging("fact_sessions", "rows", &cols(&["session_id"]));
        assert_eq!(
            sql,
            "IF OBJECT_ID(N'tempdb..[#stage_rows_fact_sessions]') IS NOT NULL DROP TABLE [#stage_rows_fact_sessions]; \
             CREATE TABLE [#stage_rows_fact_sessions] WITH (DISTRIBUTION = ROUND_ROBIN, HEAP) \
             AS SELECT [session_id] FROM [sluice].[fact_sessions] WHERE 1 = 0"
        );
    }

    #[test]
    fn tsql_quotes_hostile_names_in_identifiers_and_strings() {
        let sql = Dialect::Synapse.create_staging("o'x]y", "rows", &cols(&["a]'b"]));
        assert_eq!(
            sql,
            "IF OBJECT_ID(N'tempdb..[#stage_rows_o''x]]y]') IS NOT NULL DROP TABLE [#stage_rows_o'x]]y]; \
             CREATE TABLE [#stage_rows_o'x]]y] WITH (DISTRIBUTION = ROUND_ROBIN, HEAP) \
             AS SELECT [a]]'b] FROM [sluice].[o'x]]y] WHERE 1 = 0"
        );
        assert!(Dialect::Synapse.update_state("o'x", 1, "i'd").ends_with(
            "table_id = N'i''d', loaded_at = SYSUTCDATETIME() WHERE table_name = N'o''x';"
        ));
        assert!(
            Dialect::Synapse
                .merge("o'x", &cols(&["k]", "v"]), &cols(&["k]"]))
                .starts_with("MERGE INTO [sluice].[o'x] AS t USING [#stage_rows_o'x] AS s ON t.[k]]] = s.[k]]]")
        );
    }

    #[test]
    fn tsql_delete_and_state_statements() {
        assert_eq!(
            Dialect::Synapse.delete_gone("dim_user", &cols(&["user_id", "valid_from"])),
            "DELETE FROM [sluice].[dim_user] WHERE EXISTS (SELECT 1 FROM [#stage_keys_dim_user] AS d \
             WHERE d.[user_id] = [sluice].[dim_user].[user_id] AND d.[valid_from] = [sluice].[dim_user].[valid_from]);"
        );
        assert_eq!(
            Dialect::Synapse.update_state("dim_user", 7, "ab-1"),
            "UPDATE [sluice].[load_state] SET delta_version = 7, table_id = N'ab-1', \
             loaded_at = SYSUTCDATETIME() WHERE table_name = N'dim_user';"
        );
        assert!(Dialect::Synapse.ensure_state_row("x").contains(
            "WHERE NOT EXISTS (SELECT 1 FROM [sluice].[load_state] WHERE table_name = N'x')"
        ));
        assert!(Dialect::Synapse.begin().contains("XACT_ABORT ON"));
    }

    fn sample() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("events", DataType::Int64, true),
            Field::new("is_current", DataType::Boolean, false),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["o'brien", "ü]x"])),
                Arc::new(Int64Array::from(vec![Some(3), None])),
                Arc::new(BooleanArray::from(vec![true, false])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_772_323_200_123_456), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn tsql_staging_inserts_are_select_union_all_with_escaped_literals() {
        let sql = Dialect::Synapse
            .insert_staging("t", "rows", &sample())
            .unwrap();
        assert_eq!(
            sql,
            vec![
                "INSERT INTO [#stage_rows_t] ([user_id], [events], [is_current], [at]) \
                 SELECT N'o''brien', 3, 1, CAST('2026-03-01T00:00:00.123456' AS DATETIME2(6)) \
                 UNION ALL SELECT N'ü]x', NULL, 0, NULL"
                    .to_string()
            ]
        );
    }

    #[test]
    fn postgres_staging_inserts_are_multi_row_values() {
        let sql = Dialect::Postgres
            .insert_staging("t", "rows", &sample())
            .unwrap();
        assert_eq!(
            sql[0],
            "INSERT INTO \"stage_rows_t\" (\"user_id\", \"events\", \"is_current\", \"at\") VALUES \
             ('o''brien', 3, TRUE, '2026-03-01T00:00:00.123456'), ('ü]x', NULL, FALSE, NULL)"
        );
    }

    #[test]
    fn inserts_are_chunked() {
        let n = ROWS_PER_INSERT * 2 + 1;
        let schema = Schema::new(vec![Field::new("k", DataType::Int64, false)]);
        let rows = RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(Int64Array::from_iter_values(0..n as i64))],
        )
        .unwrap();
        let sql = Dialect::Synapse.insert_staging("t", "rows", &rows).unwrap();
        assert_eq!(sql.len(), 3);
        assert_eq!(sql[2].matches("SELECT").count(), 1);
    }

    #[test]
    fn nul_in_a_string_is_refused() {
        let rows = StringArray::from(vec!["a\0b"]);
        assert!(Dialect::Postgres.literal(&rows, 0).is_err());
    }

    #[test]
    fn every_ddl_file_is_idempotent_in_form() {
        for ddl in Dialect::Synapse.ddl() {
            assert_eq!(
                ddl.matches("CREATE TABLE").count(),
                ddl.matches("IF OBJECT_ID(").count()
            );
        }
        for ddl in Dialect::Postgres.ddl() {
            assert_eq!(
                ddl.matches("CREATE TABLE").count(),
                ddl.matches("CREATE TABLE IF NOT EXISTS").count()
            );
        }
    }
}
