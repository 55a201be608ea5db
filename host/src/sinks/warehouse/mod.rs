//! Loads the gold tables into a SQL warehouse (Synapse or PostgreSQL),
//! incrementally and exactly once.
//!
//! Invariant: the warehouse owns its load state. `sluice.load_state` holds,
//! per gold table, the Delta version loaded; it is updated in the same
//! warehouse transaction as the rows, so a crash anywhere leaves either the
//! old rows and old version or the new rows and new version. A load stages
//! the rows that differ between the loaded version and the latest one, then
//! deletes vanished keys, MERGEs by the table's keys and moves the version.

mod conn;
pub mod dialect;
mod diff;

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config_error::{ConfigError, invalid, parse};
use crate::lake::Lake;
use crate::runtime::contract::{PluginMeta, WriteMode};

pub use conn::{Conn, SqlError, State};
pub use dialect::Dialect;

/// The `[warehouse]` config section. The connection string itself is a
/// secret, so it comes only from the env var named here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarehouseConfig {
    /// `postgres`, `synapse`, or empty (no warehouse).
    pub kind: String,
    /// Env var holding the connection string (PostgreSQL URL, or ADO.NET
    /// string for Synapse).
    pub connection_env: String,
    /// Seconds between loads inside `sluice run`.
    pub interval_secs: u64,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            kind: String::new(),
            connection_env: "SLUICE_WAREHOUSE_CONNECTION".into(),
            interval_secs: 60,
        }
    }
}

impl WarehouseConfig {
    pub(crate) fn apply_env(&mut self, field: &str, value: &str) -> Result<(), ConfigError> {
        match field {
            "warehouse.kind" => self.kind = value.into(),
            "warehouse.connection_env" => self.connection_env = value.into(),
            "warehouse.interval_secs" => self.interval_secs = parse(field, value)?,
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.dialect()?;
        if self.interval_secs == 0 {
            return Err(invalid("warehouse.interval_secs", "must be at least 1"));
        }
        if self.connection_env.is_empty() {
            return Err(invalid("warehouse.connection_env", "must name an env var"));
        }
        Ok(())
    }

    /// The dialect, or `None` when no warehouse is configured.
    pub fn dialect(&self) -> Result<Option<Dialect>, ConfigError> {
        match self.kind.as_str() {
            "" => Ok(None),
            "postgres" | "postgresql" => Ok(Some(Dialect::Postgres)),
            "synapse" => Ok(Some(Dialect::Synapse)),
            other => Err(invalid(
                "warehouse.kind",
                format!("`{other}`: use \"postgres\" or \"synapse\""),
            )),
        }
    }

    /// The connection string from the environment, or an error naming the
    /// field (never the value).
    pub fn connection(&self) -> Result<String, ConfigError> {
        std::env::var(&self.connection_env).map_err(|_| {
            invalid(
                "warehouse.connection_env",
                format!("env var {} is not set", self.connection_env),
            )
        })
    }
}

/// A gold table and the columns that identify its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    /// Empty: every column (append-only tables).
    pub keys: Vec<String>,
}

/// The tables to load, from the gold plugin's declarations.
pub fn tables(meta: &PluginMeta) -> Vec<TableSpec> {
    meta.outputs
        .iter()
        .map(|decl| TableSpec {
            name: decl.name.clone(),
            keys: match &decl.mode {
                WriteMode::Merge(spec) => spec.keys.clone(),
                WriteMode::Derived(spec) => spec.keys.clone(),
                // One row per version: the key and when the version opened.
                WriteMode::Scd2(spec) => vec![spec.key.clone(), "valid_from".to_string()],
                WriteMode::Append => Vec::new(),
            },
        })
        .collect()
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("warehouse table `{table}`: {source}")]
    Sql {
        table: String,
        #[source]
        source: SqlError,
    },
    #[error("gold table `{table}`: {message}")]
    Lake { table: String, message: String },
    #[error("warehouse: {0}")]
    Connect(#[source] SqlError),
}

/// What one table's load did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableLoad {
    pub table: String,
    pub from_version: i64,
    pub to_version: i64,
    pub upserted: usize,
    pub deleted: usize,
}

/// How long a table's load keeps retrying transient errors.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Moves gold into one warehouse.
pub struct Loader {
    dialect: Dialect,
    connection: String,
    conn: Option<Conn>,
    tables: Vec<TableSpec>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string holds a password: never shown.
        write!(
            f,
            "Loader({:?}, {} tables)",
            self.dialect,
            self.tables.len()
        )
    }
}

impl Loader {
    pub fn new(dialect: Dialect, connection: String, tables: Vec<TableSpec>) -> Loader {
        Loader {
            dialect,
            connection,
            conn: None,
            tables,
        }
    }

    async fn conn(&mut self) -> Result<&mut Conn, SqlError> {
        if self.conn.is_none() {
            self.conn = Some(Conn::connect(self.dialect, &self.connection).await?);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Applies the dialect's DDL (idempotent) and adds missing state rows.
    pub async fn init(&mut self) -> Result<(), LoadError> {
        let dialect = self.dialect;
        let names: Vec<String> = self.tables.iter().map(|t| t.name.clone()).collect();
        self.with_retry("(ddl)", |conn| {
            let names = names.clone();
            Box::pin(async move {
                for ddl in dialect.ddl() {
                    conn.execute(ddl).await?;
                }
                for name in &names {
                    conn.execute(&dialect.ensure_state_row(name)).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Loads every table's changes since its recorded version, once.
    pub async fn load(&mut self, lake: &Lake) -> Result<Vec<TableLoad>, LoadError> {
        let mut report = Vec::new();
        for spec in self.tables.clone() {
            if let Some(load) = self.load_table(lake, &spec).await? {
                report.push(load);
            }
        }
        Ok(report)
    }

    /// Runs `attempt` on a connection, reconnecting and retrying with
    /// backoff while errors are transient (each attempt is idempotent).
    async fn with_retry<T, F>(&mut self, table: &str, mut attempt: F) -> Result<T, LoadError>
    where
        F: for<'c> FnMut(
            &'c mut Conn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, SqlError>> + Send + 'c>,
        >,
    {
        let start = Instant::now();
        let mut delays = crate::lake::retry_delays();
        loop {
            let result = match self.conn().await {
                Ok(conn) => attempt(conn).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(value) => return Ok(value),
                Err(e) if e.transient && start.elapsed() < RETRY_FOR => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(table, error = %e, ?delay, "warehouse unreachable; retrying");
                    self.conn = None;
                    tokio::time::sleep(delay).await;
                }
                Err(source) => {
                    if let Some(conn) = self.conn.as_mut() {
                        // Best effort: leave no transaction open for the next table.
                        let _ = conn.execute(self.dialect.rollback()).await;
                    }
                    return Err(LoadError::Sql {
                        table: table.to_string(),
                        source,
                    });
                }
            }
        }
    }

    async fn load_table(
        &mut self,
        lake: &Lake,
        spec: &TableSpec,
    ) -> Result<Option<TableLoad>, LoadError> {
        let dialect = self.dialect;
        let name = spec.name.clone();
        let state = {
            let sql = dialect.ensure_state_row(&name);
            let select = dialect.select_state(&name);
            self.with_retry(&name, |conn| {
                let (sql, select) = (sql.clone(), select.clone());
                Box::pin(async move {
                    conn.execute(&sql).await?;
                    Ok(conn.query_state(&select).await?.unwrap_or(State {
                        version: -1,
                        table_id: None,
                    }))
                })
            })
            .await?
        };
        let changes = diff::changes(lake, &name, &spec.keys, &state)
            .await
            .map_err(|message| LoadError::Lake {
                table: name.clone(),
                message,
            })?;
        let Some(changes) = changes else {
            return Ok(None);
        };
        let keys = if spec.keys.is_empty() {
            changes.columns.clone()
        } else {
            spec.keys.clone()
        };
        let script =
            Script::build(dialect, &name, &keys, &changes).map_err(|message| LoadError::Lake {
                table: name.clone(),
                message,
            })?;
        let loaded = self
            .with_retry(&name, |conn| {
                let (script, state) = (script.clone(), state.clone());
                Box::pin(async move { script.run(conn, &state).await })
            })
            .await?;
        Ok(loaded.then(|| TableLoad {
            table: name,
            from_version: state.version,
            to_version: changes.version,
            upserted: changes.rows.num_rows(),
            deleted: changes.gone.as_ref().map_or(0, |g| g.num_rows()),
        }))
    }
}

/// The statements of one table's load.
#[derive(Clone)]
struct Script {
    dialect: Dialect,
    table: String,
    /// Staging tables created and filled (outside the transaction: Synapse
    /// allows no DDL inside one).
    stage: Vec<String>,
    /// Inside the transaction, after the state check.
    apply: Vec<String>,
}

impl Script {
    fn build(
        dialect: Dialect,
        table: &str,
        keys: &[String],
        changes: &diff::Changes,
    ) -> Result<Script, String> {
        let mut stage = vec![dialect.create_staging(table, "rows", &changes.columns)];
        stage.extend(dialect.insert_staging(table, "rows", &changes.rows)?);
        let mut apply = Vec::new();
        if changes.whole {
            apply.push(dialect.delete_all(table));
        }
        if let Some(gone) = changes.gone.as_ref().filter(|g| g.num_rows() > 0) {
            stage.push(dialect.create_staging(table, "keys", keys));
            stage.extend(dialect.insert_staging(table, "keys", gone)?);
            apply.push(dialect.delete_gone(table, keys));
        }
        if changes.rows.num_rows() > 0 {
            apply.push(dialect.merge(table, &changes.columns, keys));
        }
        apply.push(dialect.update_state(table, changes.version, &changes.table_id));
        Ok(Script {
            dialect,
            table: table.to_string(),
            stage,
            apply,
        })
    }

    /// Stages, then in one transaction checks the state is still `since`,
    /// applies and moves the state. `false` if another load got there first.
    async fn run(&self, conn: &mut Conn, since: &State) -> Result<bool, SqlError> {
        for sql in &self.stage {
            conn.execute(sql).await?;
        }
        conn.execute(self.dialect.begin()).await?;
        let result = async {
            let now = conn
                .query_state(&self.dialect.select_state(&self.table))
                .await?;
            if now.as_ref() != Some(since) {
                return Ok(false);
            }
            conn.execute(&self.apply.join("\n")).await?;
            Ok(true)
        }
        .await;
        match result {
            Ok(true) => {
                conn.execute(self.dialect.commit()).await?;
                Ok(true)
            }
            Ok(false) => {
                conn.execute(self.dialect.rollback()).await?;
                Ok(false)
            }
            Err(e) => {
                let _ = conn.execute(self.dialect.rollback()).await;
                Err(e)
            }
        }
    }
}

/// Loads every `interval` until `stop` turns true, then hands the loader
/// back for a last load once the pipeline has committed everything. Errors
/// are logged and retried next interval: the lake keeps everything meanwhile.
pub async fn run_continuously(
    mut loader: Loader,
    lake: Lake,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Loader {
    let mut ready = false;
    loop {
        if !ready {
            // The schema first (idempotent); retried each interval until it works.
            match loader.init().await {
                Ok(()) => ready = true,
                Err(e) => {
                    tracing::error!(error = %e, "warehouse init failed; retrying next interval")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return loader,
        }
        if ready {
            log_load(loader.load(&lake).await);
        }
    }
}

/// Logs what a load did, or why it failed.
pub fn log_load(result: Result<Vec<TableLoad>, LoadError>) {
    match result {
        Ok(loads) => {
            for l in loads {
                tracing::info!(table = %l.table, version = l.to_version, upserted = l.upserted, deleted = l.deleted, "loaded into the warehouse");
            }
        }
        Err(e) => tracing::error!(error = %e, "warehouse load failed; retrying next interval"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_checked_naming_the_field() {
        let config = WarehouseConfig {
            kind: "oracle".into(),
            ..Default::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("warehouse.kind"), "{err}");
        let config = WarehouseConfig {
            kind: "synapse".into(),
            ..Default::default()
        };
        assert_eq!(config.dialect().unwrap(), Some(Dialect::Synapse));
    }

    #[test]
    fn loader_debug_hides_the_connection_string() {
        let loader = Loader::new(
            Dialect::Postgres,
            "postgres://u:hunter2@h/db".into(),
            vec![],
        );
        assert!(!format!("{loader:?}").contains("hunter2"));
    }
}
