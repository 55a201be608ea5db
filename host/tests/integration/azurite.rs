//! The lake on Azure Blob Storage, emulated by Azurite (started by `.ci/run`):
//! the pipeline writes its Delta tables there, `sluice query` reads them,
//! a restart re-opens them, and a storage outage mid-run loses and repeats
//! nothing.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice::config::Config;
use sluice::lake::{Lake, StorageOptions};

use crate::common::{self, Expected};

/// A service `.ci/run` provides: its value, or `None` with the skip reason
/// printed. In CI (`SLUICE_TEST_REQUIRE_SERVICES`) a missing one fails.
pub fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("SLUICE_TEST_REQUIRE_SERVICES").is_some() => {
            panic!("{what} is required here but {var} is not set (.ci/run starts it)")
        }
        _ => {
            eprintln!(
                "skipped: {var} is not set, so no {what} to test against (.ci/run starts one)"
            );
            None
        }
    }
}

pub(crate) fn emulator_options() -> StorageOptions {
    StorageOptions(BTreeMap::from([(
        "azure_storage_use_emulator".to_string(),
        "true".to_string(),
    )]))
}

/// A fresh container per test, so tests never see each other's tables.
pub(crate) fn lake_url() -> String {
    format!("az://t{}/lake", uuid::Uuid::new_v4().simple())
}

pub(crate) fn azure_config(url: &str, cache: &Path, files: Vec<std::path::PathBuf>) -> Config {
    let mut config = common::replay_config(&cache.join("unused-lake"), files, 2_000);
    config.lake = url.into();
    config.lake_options = emulator_options();
    config.cache_dir = Some(cache.join("cache"));
    config
}

/// Bronze, silver and every gold table equal what `lines` must give.
async fn assert_lake_matches(lake: &Lake, lines: &[String], lateness_secs: u64) {
    let expected = Expected::compute(lines, lateness_secs as i64 * 1_000_000);
    let bronze = common::count_in(lake, "SELECT COUNT(*) FROM bronze_events").await;
    assert_eq!(
        bronze as usize,
        lines.len(),
        "bronze keeps every record once"
    );
    let silver = common::count_in(lake, "SELECT COUNT(*) FROM silver_events").await;
    let distinct =
        common::count_in(lake, "SELECT COUNT(DISTINCT event_id) FROM silver_events").await;
    assert_eq!(silver as usize, expected.accepted.len());
    assert_eq!(distinct, silver, "silver holds each event once");
    common::assert_gold_matches_in(lake, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_with_its_lake_in_azure_blob_storage() {
    let Some(endpoint) = service("AZURITE_BLOB_STORAGE_URL", "Azurite") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = common::simulated_lines(31, 8_000, 0.03);
    let (first, second) = lines.split_at(5_000);
    let (file1, file2) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    common::write_lines(&file1, first);
    common::write_lines(&file2, second);
    let url = lake_url();

    // The container does not exist yet: opening the lake creates it.
    let config = azure_config(&url, dir.path(), vec![file1.clone()]);
    let totals = common::run_to_end(&config).await;
    assert_eq!(totals.events as usize, first.len());
    let lake = Lake::open_root(Path::new(&url), &emulator_options())
        .await
        .unwrap();
    assert!(
        lake.table_names()
            .await
            .unwrap()
            .contains(&"dim_user".to_string())
    );
    assert_lake_matches(&lake, first, config.lateness.allowed_secs).await;

    // A restart re-opens every table from Azure (positions, dedup ids, SCD2
    // history) and carries on with more events.
    let config = azure_config(&url, dir.path(), vec![file1, file2]);
    let totals = common::run_to_end(&config).await;
    assert_eq!(
        totals.events as usize,
        second.len(),
        "replay resumed after the stored positions"
    );
    assert_lake_matches(&lake, &lines, config.lateness.allowed_secs).await;

    // The CLI reads the same tables.
    let stdout = common::run_ok(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "query",
                "SELECT COUNT(*) AS n FROM bronze_events",
                "--lake",
                &url,
            ])
            .env("SLUICE_LAKE_OPTIONS__AZURE_STORAGE_USE_EMULATOR", "true")
            .env("AZURITE_BLOB_STORAGE_URL", &endpoint)
            .env("SLUICE_CACHE_DIR", dir.path().join("cache")),
    );
    assert!(stdout.contains(&format!("| {} ", lines.len())), "{stdout}");
}

/// An Azurite of the test's own, on disk so a restart keeps the data.
struct OwnAzurite {
    bin: String,
    dir: std::path::PathBuf,
    port: u16,
    child: Option<Child>,
}

impl OwnAzurite {
    fn start(bin: &str, dir: &Path) -> OwnAzurite {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut azurite = OwnAzurite {
            bin: bin.to_string(),
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        azurite.up();
        azurite
    }

    fn up(&mut self) {
        let child = Command::new(&self.bin)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.port.to_string(),
            ])
            .args([
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
                "--location",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Azurite did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops Azurite the way an operator would (SIGINT): it saves its
    /// metadata, as durable storage would have; a SIGKILL would lose the
    /// last seconds of Azurite's own bookkeeping, which Azure never does.
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let start = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if start.elapsed() > Duration::from_secs(20) {
                    child.kill().unwrap();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnAzurite {
    fn drop(&mut self) {
        self.down();
    }
}

/// Runs `sluice run` replaying `file` into `lake` against `azurite`.
fn spawn_run(lake: &str, file: &Path, cache: &Path, azurite: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--listen", "", "--lake", lake, "--replay"])
        .arg(file)
        .env("SLUICE_LAKE_OPTIONS__AZURE_STORAGE_USE_EMULATOR", "true")
        .env("AZURITE_BLOB_STORAGE_URL", azurite)
        .env("SLUICE_CACHE_DIR", cache)
        .env("SLUICE_BATCH__MAX_EVENTS", "1000")
        .env("SLUICE_LOG", "warn,sluice=info")
        // object_store's own retries (10, up to minutes) would otherwise
        // absorb a short outage before Sluice's backoff ever saw it; with
        // one retry the outage reaches the layer this test is about.
        .env("SLUICE_LAKE_OPTIONS__MAX_RETRIES", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_outage_mid_run_loses_and_repeats_nothing() {
    let Some(bin) = service("SLUICE_TEST_AZURITE_BIN", "Azurite") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let lines = common::simulated_lines(37, 12_000, 0.03);
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &lines);
    let mut azurite = OwnAzurite::start(&bin, &dir.path().join("azurite"));
    let url = lake_url();

    let mut child = spawn_run(&url, &file, &dir.path().join("cache"), &azurite.url());
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut committed = 0;
    // Let two batches commit, then take storage away for a few seconds.
    while committed < 2 {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "sluice exited early"
        );
        committed += line.contains("batch committed") as usize;
    }
    azurite.down();
    assert!(
        child.try_wait().unwrap().is_none(),
        "sluice finished before storage went away; the outage would prove nothing"
    );
    std::thread::sleep(Duration::from_secs(4));
    azurite.up();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "sluice failed after the outage:\n{rest}");
    let waits = rest.matches("storage unreachable; retrying").count();
    eprintln!("the service waited out the outage with {waits} backoff retries");
    assert!(waits > 0, "the outage hit the service:\n{rest}");

    // Everything once: the same lake an uninterrupted run gives. This
    // Azurite's endpoint goes in options, not the process-wide env var the
    // other Azurite test relies on.
    let mut options = emulator_options();
    options.0.insert(
        "azure_storage_endpoint".into(),
        format!("{}/devstoreaccount1", azurite.url()),
    );
    options.0.remove("azure_storage_use_emulator");
    options.0.insert(
        "azure_storage_account_name".into(),
        "devstoreaccount1".into(),
    );
    options.0.insert(
        "azure_storage_account_key".into(),
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
            .into(),
    );
    options.0.insert("azure_allow_http".into(), "true".into());
    let lake = Lake::open_root(Path::new(&url), &options).await.unwrap();
    assert_lake_matches(&lake, &lines, 3_600).await;
}
