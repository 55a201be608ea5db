//! One warehouse connection: tokio-postgres for PostgreSQL, tiberius (TDS)
//! for Synapse. Statements go as plain batches so session temp tables live
//! across calls (tiberius' parameterised `execute` would scope them away).

use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt as _};

use super::dialect::Dialect;

/// Why a warehouse call failed; `transient` ones are retried.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub message: String,
    /// Connection lost, deadlock, throttling, a failover: worth a retry.
    pub transient: bool,
}

impl From<tokio_postgres::Error> for SqlError {
    fn from(e: tokio_postgres::Error) -> Self {
        let state = e.code().map(|c| c.code().to_string()).unwrap_or_default();
        // 08: connection, 40: serialization/deadlock, 53: resources, 57P: shutdown.
        let transient = e.is_closed()
            || state.starts_with("08")
            || state.starts_with("40")
            || state.starts_with("53")
            || state.starts_with("57P")
            || (state.is_empty() && e.to_string().contains("connect"));
        let message = match e.as_db_error() {
            Some(db) => format!("PostgreSQL {state}: {}", db.message()),
            None => format!("PostgreSQL: {e}"),
        };
        SqlError { message, transient }
    }
}

impl From<tiberius::error::Error> for SqlError {
    fn from(e: tiberius::error::Error) -> Self {
        use tiberius::error::Error;
        let transient = match &e {
            Error::Io { .. } | Error::Routing { .. } => true,
            // Deadlock victim, Azure SQL throttling / failover codes.
            Error::Server(t) => matches!(
                t.code(),
                1205 | 4060 | 40197 | 40501 | 40613 | 49918 | 49919 | 49920 | 10928 | 10929
            ),
            _ => false,
        };
        SqlError {
            message: format!("Synapse: {e}"),
            transient,
        }
    }
}

impl From<std::io::Error> for SqlError {
    fn from(e: std::io::Error) -> Self {
        SqlError {
            message: format!("connecting to the warehouse: {e}"),
            transient: true,
        }
    }
}

/// What the warehouse says was loaded of one gold table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Delta version loaded; -1 for none.
    pub version: i64,
    /// The Delta table's id (a different one means another lake).
    pub table_id: Option<String>,
}

/// An open connection of either kind.
pub enum Conn {
    Postgres(tokio_postgres::Client),
    Synapse(Box<tiberius::Client<Compat<TcpStream>>>),
}

impl Conn {
    /// Connects with `connection`: a PostgreSQL URL/keyword string, or an
    /// ADO.NET string for Synapse (`server=tcp:host,1433;database=..;user=..`).
    /// The string is never logged or put in errors.
    pub async fn connect(dialect: Dialect, connection: &str) -> Result<Conn, SqlError> {
        match dialect {
            Dialect::Postgres => {
                let (client, driver) =
                    tokio_postgres::connect(connection, tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = driver.await {
                        tracing::warn!(error = %e, "warehouse connection closed");
                    }
                });
                client
                    .batch_execute("SET standard_conforming_strings = on")
                    .await?;
                Ok(Conn::Postgres(client))
            }
            Dialect::Synapse => {
                let mut config =
                    tiberius::Config::from_ado_string(connection).map_err(|_| SqlError {
                        message: "the Synapse connection string is not a valid ADO.NET string"
                            .into(),
                        transient: false,
                    })?;
                let mut redirects = 0;
                loop {
                    let tcp = TcpStream::connect(config.get_addr()).await?;
                    tcp.set_nodelay(true)?;
                    match tiberius::Client::connect(config.clone(), tcp.compat_write()).await {
                        Ok(client) => return Ok(Conn::Synapse(Box::new(client))),
                        // Azure's gateway may redirect to the node serving the pool.
                        Err(tiberius::error::Error::Routing { host, port }) if redirects < 3 => {
                            redirects += 1;
                            config.host(&host);
                            config.port(port);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Runs a batch of statements, discarding results.
    pub async fn execute(&mut self, sql: &str) -> Result<(), SqlError> {
        match self {
            Conn::Postgres(client) => Ok(client.batch_execute(sql).await?),
            Conn::Synapse(client) => {
                client.simple_query(sql).await?.into_results().await?;
                Ok(())
            }
        }
    }

    /// A load-state row: (version, table id), if there is a row.
    pub async fn query_state(&mut self, sql: &str) -> Result<Option<State>, SqlError> {
        match self {
            Conn::Postgres(client) => {
                let row = client.query_opt(sql, &[]).await?;
                Ok(row.map(|r| State {
                    version: r.get(0),
                    table_id: r.get(1),
                }))
            }
            Conn::Synapse(client) => {
                let row = client.simple_query(sql).await?.into_row().await?;
                Ok(row.map(|r| State {
                    version: r.get::<i64, _>(0).unwrap_or(-1),
                    table_id: r.get::<&str, _>(1).map(str::to_string),
                }))
            }
        }
    }
}
