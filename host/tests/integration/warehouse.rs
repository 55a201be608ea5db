//! Gold loaded into a real PostgreSQL (started by `.ci/run`): a load, more
//! events, another load, and a repeated load leave every warehouse table
//! equal to its gold table row for row, SCD2 history included. Synapse gets
//! a live test when `SYNAPSE_CONNECTION_STRING` is set.

use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value};
use sluice::lake::Lake;
use sluice::runtime::{Layer, Runtime, embedded};
use sluice::sinks::warehouse::{self, Dialect, Loader, TableSpec};

use crate::azurite::service;
use crate::common::{self, Expected, GOLD_QUERIES};

fn gold_tables() -> Vec<TableSpec> {
    let runtime = Runtime::new(None).unwrap();
    let gold = runtime
        .load(embedded::default_plugin(Layer::Gold), Default::default())
        .unwrap();
    warehouse::tables(gold.meta())
}

/// A fresh database on the test server; returns its URL.
async fn fresh_database(admin_url: &str) -> String {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let name = format!("sluice_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// Every row of `sluice.<table>` in the lake's row format (timestamps as
/// microseconds, dates as days), sorted.
async fn warehouse_rows(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let columns = client
        .query(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'sluice' AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .unwrap();
    let select: Vec<String> = columns
        .iter()
        .map(|r| {
            let (name, kind): (String, String) = (r.get(0), r.get(1));
            match kind.as_str() {
                "timestamp without time zone" => {
                    format!("(extract(epoch from \"{name}\") * 1000000)::bigint AS \"{name}\"")
                }
                "date" => format!("(\"{name}\" - DATE '1970-01-01') AS \"{name}\""),
                _ => format!("\"{name}\""),
            }
        })
        .collect();
    let sql = format!(
        "SELECT row_to_json(r)::text FROM (SELECT {} FROM sluice.{table}) r",
        select.join(", ")
    );
    let mut out: Vec<String> = client
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let v: Map<String, Value> = serde_json::from_str(row.get::<_, &str>(0)).unwrap();
            Value::Object(v).to_string()
        })
        .collect();
    out.sort();
    out
}

async fn lake_rows(lake: &Path, table: &str) -> Vec<String> {
    common::rows(lake, &format!("SELECT * FROM {table}")).await
}

/// Every gold table equals its warehouse table, row for row.
async fn assert_warehouse_equals_gold(client: &tokio_postgres::Client, lake: &Path) {
    for (table, _) in GOLD_QUERIES {
        let gold = lake_rows(lake, table).await;
        assert!(!gold.is_empty(), "{table} has rows");
        common::assert_same_rows(table, &warehouse_rows(client, table).await, &gold);
    }
}

async fn assert_gold_is_right(lake: &Path, lines: &[String]) {
    let expected = Expected::compute(lines, 3_600 * 1_000_000);
    common::assert_gold_matches(lake, &expected).await;
}

/// Two events of a new user, both within the allowed lateness of `prefix`'s
/// newest event: one seen 10 min before it, then one 20 min before it. The
/// second opens the user's first `dim_user` version earlier, so the first
/// version's key vanishes from gold and must vanish from the warehouse.
fn earlier_sighting(prefix: &[String]) -> (String, String) {
    let expected = Expected::compute(prefix, 3_600 * 1_000_000);
    let newest = expected.accepted.iter().map(|e| e.time).max().unwrap();
    let template = prefix
        .iter()
        .find(|l| common::parse(l).is_some_and(|e| e.kind == "login"))
        .unwrap();
    let at = |minutes: i64, id: &str| {
        let mut v: Value = serde_json::from_str(template).unwrap();
        let t = chrono::DateTime::from_timestamp_micros(newest - minutes * 60_000_000).unwrap();
        v["timestamp"] = Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        v["event_id"] = Value::String(id.into());
        v["user_id"] = Value::String("u-late-sighting".into());
        v["session_id"] = Value::String("s-late-sighting".into());
        v.to_string()
    };
    (at(10, "late-sighting-1"), at(20, "late-sighting-2"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_loads_into_postgres_equal_gold_exactly_once() {
    let Some(admin) = service("SLUICE_TEST_POSTGRES_URL", "PostgreSQL server") else {
        return;
    };
    let url = fresh_database(&admin).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);

    let dir = tempfile::tempdir().unwrap();
    let base = common::simulated_lines(41, 10_000, 0.03);
    let (first, rest) = base.split_at(5_000);
    let (second, third) = rest.split_at(4_000);
    let (seen, earlier) = earlier_sighting(&base[..9_000]);
    let second: Vec<String> = second.iter().cloned().chain([seen]).collect();
    let third: Vec<String> = std::iter::once(earlier)
        .chain(third.iter().cloned())
        .collect();
    let lines: Vec<String> = first.iter().chain(&second).chain(&third).cloned().collect();
    let (file1, file2) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let file3 = dir.path().join("c.ndjson");
    common::write_lines(&file1, first);
    common::write_lines(&file2, &second);
    common::write_lines(&file3, &third);
    let lake_dir = dir.path().join("lake");

    let mut loader = Loader::new(Dialect::Postgres, url.clone(), gold_tables());
    loader.init().await.unwrap();
    loader.init().await.unwrap(); // idempotent

    // A full run, then a load.
    common::run_to_end(&common::replay_config(
        &lake_dir,
        vec![file1.clone()],
        1_500,
    ))
    .await;
    let lake = Lake::local(&lake_dir).unwrap();
    let started = std::time::Instant::now();
    let loads = loader.load(&lake).await.unwrap();
    let rows: usize = loads.iter().map(|l| l.upserted).sum();
    eprintln!(
        "first load: {rows} rows into PostgreSQL in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(loads.len(), 8, "{loads:?}");
    assert!(loads.iter().all(|l| l.from_version == -1));
    assert_gold_is_right(&lake_dir, first).await;
    assert_warehouse_equals_gold(&client, &lake_dir).await;

    // More events (new users, plan changes closing SCD2 versions, late
    // events moving first sightings), then an incremental load.
    common::run_to_end(&common::replay_config(&lake_dir, vec![file1, file2], 1_500)).await;
    let started = std::time::Instant::now();
    let loads = loader.load(&lake).await.unwrap();
    let rows: usize = loads.iter().map(|l| l.upserted + l.deleted).sum();
    eprintln!(
        "incremental load: {rows} rows changed in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for l in &loads {
        eprintln!(
            "  {}: {} upserted, {} deleted",
            l.table, l.upserted, l.deleted
        );
    }
    assert!(!loads.is_empty());
    let sessions = loads.iter().find(|l| l.table == "fact_sessions").unwrap();
    let total = warehouse_rows(&client, "fact_sessions").await.len();
    assert!(
        sessions.upserted < total,
        "only changed rows were loaded: {} of {total}",
        sessions.upserted
    );
    assert_gold_is_right(&lake_dir, &lines[..9_001]).await;
    assert_warehouse_equals_gold(&client, &lake_dir).await;

    // SCD2: closed versions were updated in place, none duplicated.
    let closed = client
        .query_one(
            "SELECT COUNT(*) FROM sluice.dim_user WHERE NOT is_current AND valid_to IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(closed > 0, "some users changed plan");
    let current_twice = client
        .query_one(
            "SELECT COUNT(*) FROM (SELECT user_id FROM sluice.dim_user WHERE is_current \
             GROUP BY user_id HAVING COUNT(*) > 1) x",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(current_twice, 0, "one current version per user");

    // A load that fails half-way (the warehouse refuses one table's rows)
    // changes neither that table nor its state; the next load catches up.
    common::run_to_end(&common::replay_config(&lake_dir, vec![file3], 1_500)).await;
    client
        .batch_execute(
            "ALTER TABLE sluice.fact_sessions ADD CONSTRAINT refuse_all CHECK (events < 0) NOT VALID",
        )
        .await
        .unwrap();
    let before = warehouse_rows(&client, "fact_sessions").await;
    let err = loader.load(&lake).await.unwrap_err();
    assert!(err.to_string().contains("fact_sessions"), "{err}");
    assert_eq!(warehouse_rows(&client, "fact_sessions").await, before);
    client
        .batch_execute("ALTER TABLE sluice.fact_sessions DROP CONSTRAINT refuse_all")
        .await
        .unwrap();
    let loads = loader.load(&lake).await.unwrap();
    assert!(
        loads.iter().any(|l| l.table == "fact_sessions"),
        "{loads:?}"
    );
    let dim_user = loads.iter().find(|l| l.table == "dim_user").unwrap();
    assert!(
        dim_user.deleted > 0,
        "a replaced SCD2 version was deleted: {dim_user:?}"
    );
    assert_gold_is_right(&lake_dir, &lines).await;
    assert_warehouse_equals_gold(&client, &lake_dir).await;

    // The same load again, in-process and from the CLI: nothing moves.
    assert_eq!(loader.load(&lake).await.unwrap(), vec![]);
    let stdout = common::run_ok(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["warehouse", "load", "--lake"])
            .arg(&lake_dir)
            .env("SLUICE_WAREHOUSE__KIND", "postgres")
            .env("SLUICE_WAREHOUSE_CONNECTION", &url)
            .env("SLUICE_CACHE_DIR", dir.path().join("cache")),
    );
    assert!(stdout.contains("nothing new to load"), "{stdout}");
    assert_warehouse_equals_gold(&client, &lake_dir).await;
    let state = client
        .query(
            "SELECT table_name, delta_version FROM sluice.load_state ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(state.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_run_loads_the_warehouse_continuously() {
    let Some(admin) = service("SLUICE_TEST_POSTGRES_URL", "PostgreSQL server") else {
        return;
    };
    let url = fresh_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let lines = common::simulated_lines(43, 4_000, 0.02);
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &lines);
    let lake_dir = dir.path().join("lake");
    common::run_ok(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--listen", "", "--lake"])
            .arg(&lake_dir)
            .arg("--replay")
            .arg(&file)
            .env("SLUICE_WAREHOUSE__KIND", "postgres")
            .env("SLUICE_WAREHOUSE__INTERVAL_SECS", "1")
            .env("SLUICE_WAREHOUSE_CONNECTION", &url)
            .env("SLUICE_BATCH__MAX_EVENTS", "500")
            .env("SLUICE_CACHE_DIR", dir.path().join("cache")),
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_gold_is_right(&lake_dir, &lines).await;
    assert_warehouse_equals_gold(&client, &lake_dir).await;
}

#[test]
fn a_bad_warehouse_config_is_refused_naming_the_field() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["warehouse", "init"])
        .env("SLUICE_WAREHOUSE__KIND", "oracle")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warehouse.kind"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["warehouse", "init"])
        .env("SLUICE_WAREHOUSE__KIND", "postgres")
        .env(
            "SLUICE_WAREHOUSE__CONNECTION_ENV",
            "SLUICE_TEST_NO_SUCH_VAR",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warehouse.connection_env"), "{stderr}");
}

/// Live Synapse: init twice, load, load again; the state moves once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_synapse_load_when_a_connection_string_is_set() {
    let Ok(connection) = std::env::var("SYNAPSE_CONNECTION_STRING") else {
        eprintln!(
            "skipped: SYNAPSE_CONNECTION_STRING is not set (an ADO.NET string for a dedicated SQL pool)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = common::simulated_lines(47, 2_000, 0.02);
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &lines);
    let lake_dir = dir.path().join("lake");
    common::run_to_end(&common::replay_config(&lake_dir, vec![file], 1_000)).await;
    let lake = Lake::local(&lake_dir).unwrap();
    let mut loader = Loader::new(Dialect::Synapse, connection, gold_tables());
    loader.init().await.unwrap();
    loader.init().await.unwrap();
    let first = loader.load(&lake).await.unwrap();
    let again = loader.load(&lake).await.unwrap();
    assert!(again.is_empty(), "a repeated load loads nothing: {again:?}");
    eprintln!("loaded into Synapse: {first:?}");
}
