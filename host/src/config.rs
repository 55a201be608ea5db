//! Service configuration: TOML file, then `SLUICE_*` environment overrides,
//! then validation that names the offending field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::config_error::{ConfigError, invalid, parse};
use crate::sources::http::config::MIN_TOKEN_CHARS;
pub use crate::sources::http::config::{COLLECTOR_TOKENS_ENV, CollectorAuth, CollectorConfig};
pub use crate::web::config::{DASHBOARD_LISTEN, DashboardConfig};

/// Everything `sluice run` needs. Every field has a default, so an empty file
/// (or none) is a working local setup.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the Delta tables live: a local directory, or an Azure URL
    /// (`abfss://container@account.dfs.core.windows.net/path`, `az://container/path`,
    /// `https://account.blob.core.windows.net/container/path`).
    pub lake: PathBuf,
    /// Storage options for an Azure lake (object_store's `azure_*` keys).
    /// Credentials belong in `AZURE_*` env vars, not here; values are never logged.
    pub lake_options: crate::lake::StorageOptions,
    /// Where precompiled plugins are cached (defaults under the lake's parent).
    pub cache_dir: Option<PathBuf>,
    pub batch: BatchConfig,
    pub gold: GoldConfig,
    pub lateness: LatenessConfig,
    pub plugins: PluginsConfig,
    pub collector: CollectorConfig,
    pub admin: AdminConfig,
    /// The Prometheus `/metrics` endpoint.
    pub metrics: MetricsConfig,
    /// Where deployed plugins and their history are kept: a directory or a
    /// URL of the kinds a lake may have (defaults beside a local lake, in
    /// a lake given by URL).
    pub registry_dir: Option<PathBuf>,
    /// NDJSON files or directories to replay, in order.
    pub replay: Vec<PathBuf>,
    /// A Kafka-protocol topic to consume (disabled while `brokers` is empty).
    pub kafka: crate::sources::kafka::KafkaConfig,
    /// Loading gold into a SQL warehouse (off unless `kind` is set).
    pub warehouse: crate::sinks::warehouse::WarehouseConfig,
    /// An Event Hub to consume over AMQP (disabled while `hub` is empty).
    pub eventhubs: crate::sources::eventhubs::EventHubsConfig,
    /// Periodic table maintenance: compaction, checkpoints, vacuum.
    pub maintenance: MaintenanceConfig,
    /// The read-only web dashboard `sluice run` serves.
    pub dashboard: DashboardConfig,
}

/// Table maintenance (`sluice run` every `interval_secs`, `sluice maintain`
/// once): compact small files, checkpoint, vacuum what no reader within
/// the retention needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Seconds between two rounds in `sluice run`; 0 turns them off there.
    pub interval_secs: u64,
    /// Compaction writes files of about this many MiB.
    pub target_file_mb: u64,
    /// Vacuum deletes data files removed from a table longer ago than this
    /// (at least 1: a reader of an older version may still need them).
    pub vacuum_retention_hours: u64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            interval_secs: 3_600,
            target_file_mb: 128,
            vacuum_retention_hours: 168,
        }
    }
}

impl MaintenanceConfig {
    /// Refuses values maintenance cannot run with, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=4_096).contains(&self.target_file_mb) {
            return Err(invalid(
                "maintenance.target_file_mb",
                "must be between 1 and 4096",
            ));
        }
        let floor = crate::lake::maintain::RETENTION_FLOOR.as_secs() / 3_600;
        if self.vacuum_retention_hours < floor {
            return Err(invalid(
                "maintenance.vacuum_retention_hours",
                format!(
                    "must be at least {floor}: readers of older versions rely on the files \
                     vacuum would delete"
                ),
            ));
        }
        if self.vacuum_retention_hours > 24 * 365 * 100 {
            return Err(invalid(
                "maintenance.vacuum_retention_hours",
                "must be at most 876000 (100 years)",
            ));
        }
        Ok(())
    }

    /// The maintenance policy these settings give, compacting every table.
    pub fn policy(&self) -> crate::lake::Policy {
        crate::lake::Policy {
            target_file_bytes: self.target_file_mb << 20,
            retention: Duration::from_secs(self.vacuum_retention_hours * 3_600),
            force_retention: false,
            compact_only: None,
        }
    }

    /// How often `sluice run` maintains the lake, if at all.
    pub fn interval(&self) -> Option<Duration> {
        (self.interval_secs > 0).then(|| Duration::from_secs(self.interval_secs))
    }
}

/// When a bronze batch closes (group commit of the ingest tier).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Close a batch once it holds this many events.
    pub max_events: usize,
    /// Close a batch once its raw events hold this many bytes (one request
    /// larger than this is a batch of its own).
    pub max_bytes: usize,
    /// Close a batch this long after its first event arrived, if it is not
    /// full before: how long a producer's acknowledgement may wait for
    /// others to share its commit. (`max_wait_ms` is the old name.)
    #[serde(alias = "max_wait_ms")]
    pub linger_ms: u64,
}

/// When the gold tier takes a step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoldConfig {
    /// How long committed silver rows may wait for gold to take them with
    /// later ones (gold steps sooner once `batch.max_events` events wait):
    /// bounds how stale gold gets; larger steps pay fewer MERGEs. 0 = a
    /// gold step as soon as the previous one is done.
    pub max_interval_ms: u64,
}

impl Default for GoldConfig {
    fn default() -> Self {
        GoldConfig {
            max_interval_ms: 1000,
        }
    }
}

/// How late an event may arrive and still be counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatenessConfig {
    /// Events older than (newest event time seen − this) go to quarantine as `late`.
    pub allowed_secs: u64,
    /// Events stamped more than this after their ingest time go to
    /// quarantine as `future_timestamp` and never move a watermark.
    pub max_future_secs: u64,
}

impl LatenessConfig {
    /// `allowed_secs` in microseconds, saturating (`u64::MAX` means "never late").
    pub fn allowed_micros(&self) -> i64 {
        secs_to_micros(self.allowed_secs)
    }

    /// `max_future_secs` in microseconds, saturating.
    pub fn max_future_micros(&self) -> i64 {
        secs_to_micros(self.max_future_secs)
    }
}

fn secs_to_micros(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}

/// Plugin selection and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// `.wasm` replacing the embedded bronze plugin.
    pub bronze: Option<PathBuf>,
    /// `.wasm` replacing the embedded silver plugin.
    pub silver: Option<PathBuf>,
    /// `.wasm` replacing the embedded gold plugin.
    pub gold: Option<PathBuf>,
    /// Linear memory a plugin instance may grow to.
    pub memory_mb: u64,
    /// Wall-clock budget for one batch in one plugin.
    pub batch_timeout_ms: u64,
    /// Batches a freshly deployed plugin must pass before the version it
    /// replaced is let go; a failure within them rolls back by itself.
    pub probation_batches: u32,
    /// A directory watched for `.wasm` files: each new one is validated and
    /// deployed to the layer it declares (fixtures from `<stem>.fixtures/`).
    pub watch_dir: Option<PathBuf>,
}

/// The admin API (plugin deploys, rollbacks, shadow runs, replays).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address, e.g. `127.0.0.1:7070`; empty disables the API.
    pub listen: String,
    /// The bearer token: only from the environment variable
    /// [`ADMIN_TOKEN_ENV`], never from the file, never printed.
    #[serde(skip)]
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The environment variable holding the admin API's bearer token.
pub const ADMIN_TOKEN_ENV: &str = "SLUICE_ADMIN_TOKEN";

/// The Prometheus endpoint (`GET /metrics`): batches, events by outcome,
/// source lag per partition, plugin changes, storage retries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Listen address, e.g. `127.0.0.1:9464`; empty disables the endpoint.
    pub listen: String,
}

/// A comma-separated list: items trimmed, empty ones dropped.
pub(crate) fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lake: PathBuf::from("sluice-data/lake"),
            lake_options: Default::default(),
            cache_dir: None,
            batch: BatchConfig::default(),
            gold: GoldConfig::default(),
            lateness: LatenessConfig::default(),
            plugins: PluginsConfig::default(),
            collector: CollectorConfig::default(),
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            registry_dir: None,
            replay: Vec::new(),
            kafka: Default::default(),
            warehouse: Default::default(),
            eventhubs: Default::default(),
            maintenance: Default::default(),
            dashboard: Default::default(),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 50_000,
            max_bytes: 32 << 20,
            linger_ms: 5,
        }
    }
}

impl Default for LatenessConfig {
    fn default() -> Self {
        LatenessConfig {
            allowed_secs: 3_600,
            max_future_secs: 86_400,
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            bronze: None,
            silver: None,
            gold: None,
            memory_mb: 512,
            batch_timeout_ms: 30_000,
            probation_batches: 5,
            watch_dir: None,
        }
    }
}

/// The sections of the configuration a command reads; [`Config::validate_for`]
/// checks only those. `run` uses them all; `query` only the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    /// `lake` and `lake_options`.
    pub lake: bool,
    /// `batch` and `lateness`: the micro-batch loop.
    pub pipeline: bool,
    /// `plugins`: which components run, with what limits.
    pub plugins: bool,
    /// `collector`, `admin` (and its token), `metrics`: what `run` listens on.
    pub listeners: bool,
    /// The `replay` files.
    pub replay: bool,
    pub kafka: bool,
    pub eventhubs: bool,
    pub warehouse: bool,
    /// `maintenance`: compaction, checkpoints, vacuum.
    pub maintenance: bool,
    /// `dashboard`: where the web dashboard listens.
    pub dashboard: bool,
}

impl Uses {
    /// Everything: `sluice run`.
    pub const ALL: Uses = Uses {
        lake: true,
        pipeline: true,
        plugins: true,
        listeners: true,
        replay: true,
        kafka: true,
        eventhubs: true,
        warehouse: true,
        maintenance: true,
        dashboard: true,
    };
    /// Nothing: commands that talk to a running host or write files.
    pub const NOTHING: Uses = Uses {
        lake: false,
        pipeline: false,
        plugins: false,
        listeners: false,
        replay: false,
        kafka: false,
        eventhubs: false,
        warehouse: false,
        maintenance: false,
        dashboard: false,
    };
    /// Reading the lake only: `query`, `report`.
    pub const LAKE: Uses = Uses {
        lake: true,
        ..Uses::NOTHING
    };
}

impl Config {
    /// Reads `path` if given (else defaults), applies `SLUICE_*` overrides
    /// from `env`, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let config = Self::read(path, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path` if given (else defaults) and applies `SLUICE_*`
    /// overrides from `env`, refusing only what does not parse; the caller
    /// checks the sections it uses with [`Config::validate_for`].
    pub fn read(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        for (key, value) in &env {
            config.apply_env(key, value)?;
        }
        // Read after the overrides, which may name another variable.
        config.collector.tokens = env
            .iter()
            .filter(|(key, _)| *key == config.collector.tokens_env)
            .flat_map(|(_, value)| split_list(value))
            .collect();
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Applies one `SLUICE_SECTION__FIELD` variable (double underscore between
    /// section and field, e.g. `SLUICE_BATCH__MAX_EVENTS`). Others are ignored.
    fn apply_env(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if key == ADMIN_TOKEN_ENV {
            self.admin.token = Some(value.to_string());
            return Ok(());
        }
        let Some(name) = key.strip_prefix("SLUICE_") else {
            return Ok(());
        };
        let field = name.to_lowercase().replace("__", ".");
        match field.as_str() {
            "lake" => self.lake = value.into(),
            "cache_dir" => self.cache_dir = Some(value.into()),
            "batch.max_events" => self.batch.max_events = parse(&field, value)?,
            "batch.linger_ms" | "batch.max_wait_ms" => self.batch.linger_ms = parse(&field, value)?,
            "batch.max_bytes" => self.batch.max_bytes = parse(&field, value)?,
            "gold.max_interval_ms" => self.gold.max_interval_ms = parse(&field, value)?,
            "lateness.allowed_secs" => self.lateness.allowed_secs = parse(&field, value)?,
            "lateness.max_future_secs" => self.lateness.max_future_secs = parse(&field, value)?,
            "plugins.bronze" => self.plugins.bronze = Some(value.into()),
            "plugins.silver" => self.plugins.silver = Some(value.into()),
            "plugins.gold" => self.plugins.gold = Some(value.into()),
            "plugins.memory_mb" => self.plugins.memory_mb = parse(&field, value)?,
            "plugins.batch_timeout_ms" => self.plugins.batch_timeout_ms = parse(&field, value)?,
            "plugins.probation_batches" => self.plugins.probation_batches = parse(&field, value)?,
            "plugins.watch_dir" => self.plugins.watch_dir = Some(value.into()),
            "registry_dir" => self.registry_dir = Some(value.into()),
            "admin.listen" => self.admin.listen = value.into(),
            "metrics.listen" => self.metrics.listen = value.into(),
            "dashboard.listen" => self.dashboard.listen = value.into(),
            "collector.listen" => self.collector.listen = value.into(),
            "collector.max_body_bytes" => self.collector.max_body_bytes = parse(&field, value)?,
            "collector.auth" => self.collector.auth = parse(&field, value)?,
            "collector.tokens_env" => self.collector.tokens_env = value.into(),
            "collector.cors_origins" => self.collector.cors_origins = split_list(value),
            "collector.header_timeout_ms" => {
                self.collector.header_timeout_ms = parse(&field, value)?
            }
            "collector.body_timeout_ms" => self.collector.body_timeout_ms = parse(&field, value)?,
            "collector.max_connections" => self.collector.max_connections = parse(&field, value)?,
            "collector.ack_timeout_ms" => self.collector.ack_timeout_ms = parse(&field, value)?,
            "kafka.brokers" => self.kafka.brokers = value.into(),
            "kafka.topic" => self.kafka.topic = value.into(),
            "kafka.group" => self.kafka.group = value.into(),
            "kafka.security_protocol" => self.kafka.security_protocol = value.into(),
            "kafka.sasl_mechanism" => self.kafka.sasl_mechanism = value.into(),
            "kafka.sasl_username" => self.kafka.sasl_username = value.into(),
            "kafka.sasl_password_env" => self.kafka.sasl_password_env = value.into(),
            "kafka.share_partitions" => self.kafka.share_partitions = parse(&field, value)?,
            "kafka.lag_report_ms" => self.kafka.lag_report_ms = parse(&field, value)?,
            f if f.starts_with("lake_options.") => {
                let key = f.trim_start_matches("lake_options.").to_string();
                self.lake_options.0.insert(key, value.to_string());
            }
            f if f.starts_with("warehouse.") => self.warehouse.apply_env(&field, value)?,
            "maintenance.interval_secs" => self.maintenance.interval_secs = parse(&field, value)?,
            "maintenance.target_file_mb" => self.maintenance.target_file_mb = parse(&field, value)?,
            "maintenance.vacuum_retention_hours" => {
                self.maintenance.vacuum_retention_hours = parse(&field, value)?
            }
            "eventhubs.hub" => self.eventhubs.hub = value.into(),
            "eventhubs.consumer_group" => self.eventhubs.consumer_group = value.into(),
            "eventhubs.connection_string_env" => {
                self.eventhubs.connection_string_env = value.into()
            }
            "eventhubs.auth" => self.eventhubs.auth = parse(&field, value)?,
            "eventhubs.namespace" => self.eventhubs.namespace = value.into(),
            "eventhubs.lag_report_ms" => self.eventhubs.lag_report_ms = parse(&field, value)?,
            "eventhubs.checkpoint_url" => self.eventhubs.checkpoint_url = value.into(),
            "eventhubs.checkpoint_container" => self.eventhubs.checkpoint_container = value.into(),
            "eventhubs.checkpoint_key_env" => self.eventhubs.checkpoint_key_env = value.into(),
            "eventhubs.ownership_expiry_secs" => {
                self.eventhubs.ownership_expiry_secs = parse(&field, value)?
            }
            _ => {}
        }
        Ok(())
    }

    /// Refuses values the service cannot run with, naming the field: every
    /// section, as `sluice run` needs them all.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(Uses::ALL)
    }

    /// Checks only the sections a command reads, so a read-only command is
    /// not refused over one it never touches (`sluice query` on a config
    /// whose `[admin] listen` needs a token only `run` uses).
    pub fn validate_for(&self, uses: Uses) -> Result<(), ConfigError> {
        if uses.lake {
            self.validate_lake()?;
        }
        if uses.warehouse {
            self.warehouse.validate()?;
        }
        if uses.pipeline {
            self.validate_pipeline()?;
        }
        if uses.plugins {
            self.validate_plugins()?;
        }
        if uses.listeners {
            self.validate_listeners()?;
        }
        if uses.replay {
            self.validate_replay()?;
        }
        if uses.kafka {
            self.kafka.validate()?;
        }
        if uses.eventhubs {
            self.eventhubs.validate()?;
        }
        if uses.maintenance {
            self.maintenance.validate()?;
        }
        if uses.dashboard {
            let others = if uses.listeners {
                vec![
                    ("collector.listen", self.collector.listen.as_str()),
                    ("admin.listen", self.admin.listen.as_str()),
                    ("metrics.listen", self.metrics.listen.as_str()),
                ]
            } else {
                Vec::new()
            };
            self.dashboard.validate(&others)?;
        }
        Ok(())
    }

    fn validate_lake(&self) -> Result<(), ConfigError> {
        if self.lake.as_os_str().is_empty() {
            return Err(invalid("lake", "must be a directory path or an Azure URL"));
        }
        crate::lake::location::parse(&self.lake, &self.lake_options)
            .map_err(|e| invalid("lake", e))?;
        Ok(())
    }

    fn validate_pipeline(&self) -> Result<(), ConfigError> {
        if self.batch.max_events == 0 {
            return Err(invalid("batch.max_events", "must be at least 1"));
        }
        if self.batch.linger_ms == 0 {
            return Err(invalid("batch.linger_ms", "must be at least 1"));
        }
        if self.batch.max_bytes < 1 << 10 {
            return Err(invalid("batch.max_bytes", "must be at least 1024"));
        }
        if self.gold.max_interval_ms > 3_600_000 {
            return Err(invalid(
                "gold.max_interval_ms",
                "must be at most 3600000 (an hour)",
            ));
        }
        Ok(())
    }

    fn validate_plugins(&self) -> Result<(), ConfigError> {
        if !(16..=65_536).contains(&self.plugins.memory_mb) {
            return Err(invalid("plugins.memory_mb", "must be between 16 and 65536"));
        }
        if self.plugins.batch_timeout_ms < 10 {
            return Err(invalid("plugins.batch_timeout_ms", "must be at least 10"));
        }
        for (field, path) in [
            ("plugins.bronze", &self.plugins.bronze),
            ("plugins.silver", &self.plugins.silver),
            ("plugins.gold", &self.plugins.gold),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(invalid(field, format!("{} is not a file", path.display())));
            }
        }
        if let Some(dir) = &self.plugins.watch_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                "plugins.watch_dir",
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(())
    }

    fn validate_listeners(&self) -> Result<(), ConfigError> {
        for (field, value, example) in [
            ("collector.listen", &self.collector.listen, "127.0.0.1:8080"),
            ("metrics.listen", &self.metrics.listen, "127.0.0.1:9464"),
            ("admin.listen", &self.admin.listen, "127.0.0.1:7070"),
        ] {
            if !value.is_empty() && value.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(
                    field,
                    format!("`{value}` is not an address like {example}"),
                ));
            }
        }
        if !self.admin.listen.is_empty()
            && self
                .admin
                .token
                .as_ref()
                .is_none_or(|t| t.chars().count() < MIN_TOKEN_CHARS)
        {
            return Err(invalid(
                "admin.listen",
                format!(
                    "the admin API needs a bearer token of at least {MIN_TOKEN_CHARS} \
                     characters in {ADMIN_TOKEN_ENV}"
                ),
            ));
        }
        self.collector.validate()
    }

    fn validate_replay(&self) -> Result<(), ConfigError> {
        for (i, path) in self.replay.iter().enumerate() {
            if !path.exists() {
                return Err(invalid(
                    &format!("replay[{i}]"),
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        Ok(())
    }

    /// Where compiled plugin artifacts are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| {
            if crate::lake::location::is_url(&self.lake) {
                return PathBuf::from("sluice-cache");
            }
            self.lake
                .parent()
                .map(|p| p.join("cache"))
                .unwrap_or_else(|| PathBuf::from("sluice-cache"))
        })
    }

    /// Where deployed plugins and their history are kept: beside a local
    /// lake, or in a lake given by URL (`<lake>/_plugins`), so every
    /// instance sharing that lake shares the registry.
    pub fn registry_dir(&self) -> PathBuf {
        self.registry_dir.clone().unwrap_or_else(|| {
            if crate::lake::location::is_url(&self.lake) {
                let lake = self.lake.to_string_lossy();
                return PathBuf::from(format!("{}/_plugins", lake.trim_end_matches('/')));
            }
            self.lake
                .parent()
                .map(|p| p.join("plugins"))
                .unwrap_or_else(|| PathBuf::from("sluice-plugins"))
        })
    }

    /// The host's maximum memory and time per plugin batch.
    pub fn plugin_limits(&self) -> crate::runtime::Limits {
        crate::runtime::Limits {
            memory_bytes: (self.plugins.memory_mb as usize) << 20,
            batch_timeout: Duration::from_millis(self.plugins.batch_timeout_ms),
        }
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.batch.linger_ms)
    }

    /// `gold.max_interval_ms` as a duration.
    pub fn gold_interval(&self) -> Duration {
        Duration::from_millis(self.gold.max_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), Vec::new())
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = load_str("").unwrap();
        assert_eq!(config.batch.max_events, 50_000);
        assert_eq!(config.lateness.allowed_secs, 3_600);
        assert_eq!(config.lateness.max_future_secs, 86_400);
    }

    #[test]
    fn lateness_bounds_parse_and_saturate() {
        let config =
            load_str("[lateness]\nallowed_secs = 18446744073709551615\nmax_future_secs = 60\n")
                .unwrap();
        assert_eq!(config.lateness.allowed_micros(), i64::MAX, "saturates");
        assert_eq!(config.lateness.max_future_micros(), 60_000_000);
        let env = vec![(
            "SLUICE_LATENESS__MAX_FUTURE_SECS".to_string(),
            "5".to_string(),
        )];
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.lateness.max_future_micros(), 5_000_000);
    }

    #[test]
    fn bad_value_names_the_field() {
        let err = load_str("[batch]\nmax_events = 0\n").unwrap_err();
        assert!(err.to_string().contains("batch.max_events"), "{err}");
        let err = load_str("[collector]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(err.to_string().contains("collector.listen"), "{err}");
    }

    #[test]
    fn unknown_field_is_refused_with_its_name() {
        let err = load_str("[batch]\nmax_evnts = 5\n").unwrap_err();
        assert!(err.to_string().contains("max_evnts"), "{err}");
    }

    #[test]
    fn azure_lake_roots_are_checked_and_options_never_printed() {
        let config = load_str(
            "lake = \"abfss://lake@acct.dfs.core.windows.net/sluice\"\n[lake_options]\nazure_storage_account_key = \"s3cr3t\"\n",
        )
        .unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
        assert_eq!(config.cache_dir(), PathBuf::from("sluice-cache"));
        assert_eq!(
            config.registry_dir(),
            PathBuf::from("abfss://lake@acct.dfs.core.windows.net/sluice/_plugins")
        );
        let err = load_str("lake = \"s3://bucket/x\"\n").unwrap_err();
        assert!(err.to_string().contains("`lake`"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_is_validated() {
        let env = vec![
            ("SLUICE_BATCH__MAX_EVENTS".to_string(), "77".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.batch.max_events, 77);
        let env = vec![("SLUICE_PLUGINS__MEMORY_MB".to_string(), "lots".to_string())];
        let err = Config::load(None, env).unwrap_err();
        assert!(err.to_string().contains("plugins.memory_mb"), "{err}");
    }

    #[test]
    fn admin_needs_a_token_from_the_environment_and_never_prints_it() {
        let listen = (
            "SLUICE_ADMIN__LISTEN".to_string(),
            "127.0.0.1:7070".to_string(),
        );
        let err = Config::load(None, vec![listen.clone()]).unwrap_err();
        assert!(err.to_string().contains("admin.listen"), "{err}");
        let short = (ADMIN_TOKEN_ENV.to_string(), "short".to_string());
        assert!(Config::load(None, vec![listen.clone(), short]).is_err());
        let token = "a-long-enough-admin-token";
        let good = (ADMIN_TOKEN_ENV.to_string(), token.to_string());
        let config = Config::load(None, vec![listen, good]).unwrap();
        assert_eq!(config.admin.token.as_deref(), Some(token));
        assert!(!format!("{config:?}").contains(token));
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn collector_limits_have_defaults_and_are_checked() {
        let config = load_str("").unwrap();
        let c = &config.collector;
        assert_eq!(c.auth, CollectorAuth::None);
        assert_eq!(c.tokens_env, COLLECTOR_TOKENS_ENV);
        assert!(c.cors_origins.is_empty());
        assert_eq!(
            (
                c.header_timeout_ms,
                c.body_timeout_ms,
                c.max_connections,
                c.ack_timeout_ms
            ),
            (10_000, 30_000, 512, 10_000)
        );
        let config = load_str(
            "[collector]\nheader_timeout_ms = 500\nbody_timeout_ms = 700\n\
             max_connections = 3\nack_timeout_ms = 900\n",
        )
        .unwrap();
        assert_eq!(
            config.collector.header_timeout(),
            Duration::from_millis(500)
        );
        assert_eq!(config.collector.max_connections, 3);
        for (field, text) in [
            ("collector.max_connections", "max_connections = 0"),
            ("collector.header_timeout_ms", "header_timeout_ms = 0"),
            ("collector.body_timeout_ms", "body_timeout_ms = 0"),
            ("collector.ack_timeout_ms", "ack_timeout_ms = 0"),
        ] {
            let err = load_str(&format!("[collector]\n{text}\n")).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
        let config = Config::load(None, env(&[("SLUICE_COLLECTOR__ACK_TIMEOUT_MS", "1234")]));
        assert_eq!(config.unwrap().collector.ack_timeout_ms, 1234);
    }

    #[test]
    fn a_collector_open_to_the_network_needs_bearer_auth() {
        for listen in ["0.0.0.0:8080", "192.168.1.10:8080", "[::]:8080"] {
            let err = Config::load(None, env(&[("SLUICE_COLLECTOR__LISTEN", listen)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("collector.listen"), "{err}");
        }
        for listen in ["127.0.0.1:8080", "[::1]:8080", ""] {
            Config::load(None, env(&[("SLUICE_COLLECTOR__LISTEN", listen)])).unwrap();
        }
        let open = ("SLUICE_COLLECTOR__LISTEN", "0.0.0.0:8080");
        let bearer = ("SLUICE_COLLECTOR__AUTH", "bearer");
        let err = Config::load(None, env(&[open, bearer]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("collector.tokens_env"), "{err}");
        assert!(err.contains(COLLECTOR_TOKENS_ENV), "{err}");
        let short = (COLLECTOR_TOKENS_ENV, "short");
        let err = Config::load(None, env(&[open, bearer, short])).unwrap_err();
        assert!(
            !err.to_string().contains("short"),
            "never echoes a token: {err}"
        );
        let err = Config::load(None, env(&[("SLUICE_COLLECTOR__AUTH", "basic")])).unwrap_err();
        assert!(err.to_string().contains("collector.auth"), "{err}");
    }

    #[test]
    fn collector_tokens_come_from_the_named_variable_and_are_never_printed() {
        let tokens = " first-token-0123456789 ,second-token-0123456789,";
        let config = Config::load(
            None,
            env(&[
                ("SLUICE_COLLECTOR__AUTH", "bearer"),
                ("SLUICE_COLLECTOR__LISTEN", "0.0.0.0:8080"),
                (COLLECTOR_TOKENS_ENV, tokens),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.collector.tokens,
            vec!["first-token-0123456789", "second-token-0123456789"]
        );
        assert!(!format!("{config:?}").contains("token-0123"));
        // Another variable, named in the file, read whatever the order.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "[collector]\nauth = \"bearer\"\ntokens_env = \"MY_TOKENS\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("MY_TOKENS", "third-token-0123456789"),
                (COLLECTOR_TOKENS_ENV, tokens),
            ]),
        )
        .unwrap();
        assert_eq!(config.collector.tokens, vec!["third-token-0123456789"]);
    }

    #[test]
    fn cors_origins_are_exact_origins_and_a_wildcard_needs_auth() {
        let config = load_str(
            "[collector]\ncors_origins = [\"https://app.example.com\", \"http://localhost:3000\"]\n",
        )
        .unwrap();
        assert_eq!(config.collector.cors_origins.len(), 2);
        for bad in [
            "https://app.example.com/",
            "https://App.example.com",
            "app.example.com",
            "ftp://x.example",
            "*",
        ] {
            let err = load_str(&format!("[collector]\ncors_origins = [\"{bad}\"]\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("collector.cors_origins"), "{bad}: {err}");
        }
        let config = Config::load(
            None,
            env(&[
                ("SLUICE_COLLECTOR__CORS_ORIGINS", "*"),
                ("SLUICE_COLLECTOR__AUTH", "bearer"),
                (COLLECTOR_TOKENS_ENV, "first-token-0123456789"),
            ]),
        )
        .unwrap();
        assert_eq!(config.collector.cors_origins, vec!["*"]);
    }

    #[test]
    fn a_command_is_checked_only_on_the_sections_it_uses() {
        let env = vec![
            (
                "SLUICE_ADMIN__LISTEN".to_string(),
                "127.0.0.1:7070".to_string(),
            ),
            ("SLUICE_KAFKA__BROKERS".to_string(), "nowhere".to_string()),
        ];
        let config = Config::read(None, env).unwrap();
        config.validate_for(Uses::LAKE).unwrap();
        config.validate_for(Uses::NOTHING).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("admin.listen"), "{err}");
        let kafka = Uses {
            kafka: true,
            ..Uses::LAKE
        };
        let err = config.validate_for(kafka).unwrap_err().to_string();
        assert!(err.contains("brokers"), "{err}");
        // A value that does not parse is refused whatever the command.
        let bad = vec![("SLUICE_BATCH__MAX_EVENTS".to_string(), "x".to_string())];
        assert!(Config::read(None, bad).is_err());
    }

    #[test]
    fn maintenance_defaults_parse_and_env_overrides() {
        let config = load_str("").unwrap();
        assert_eq!(
            config.maintenance.interval(),
            Some(Duration::from_secs(3_600))
        );
        assert_eq!(config.maintenance.vacuum_retention_hours, 168);
        let policy = config.maintenance.policy();
        assert_eq!(policy.target_file_bytes, 128 << 20);
        assert_eq!(policy.retention, Duration::from_secs(168 * 3_600));
        let config = load_str(
            "[maintenance]\ninterval_secs = 0\ntarget_file_mb = 8\nvacuum_retention_hours = 24\n",
        )
        .unwrap();
        assert_eq!(config.maintenance.interval(), None, "0 turns it off");
        assert_eq!(config.maintenance.policy().target_file_bytes, 8 << 20);
        let env = vec![(
            "SLUICE_MAINTENANCE__VACUUM_RETENTION_HOURS".to_string(),
            "2".to_string(),
        )];
        let config = Config::load(None, env).unwrap();
        assert_eq!(config.maintenance.vacuum_retention_hours, 2);
    }

    #[test]
    fn the_dashboard_listens_on_loopback_off_the_other_ports() {
        let config = load_str("").unwrap();
        assert_eq!(config.dashboard.listen, DASHBOARD_LISTEN);
        for bad in [
            "nowhere",
            "0.0.0.0:8088",
            "192.168.1.10:8088",
            "127.0.0.1:8080",
        ] {
            let err = Config::load(None, env(&[("SLUICE_DASHBOARD__LISTEN", bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("dashboard.listen"), "{bad}: {err}");
        }
        let err = load_str(
            "[metrics]\nlisten = \"127.0.0.1:9000\"\n[dashboard]\nlisten = \"[::1]:9000\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("metrics.listen"), "{err}");
        for good in ["", "[::1]:9999", "127.0.0.1:0"] {
            Config::load(None, env(&[("SLUICE_DASHBOARD__LISTEN", good)])).unwrap();
        }
        // `sluice dashboard` does not listen beside a collector.
        let config = Config::read(None, env(&[("SLUICE_DASHBOARD__LISTEN", "127.0.0.1:8080")]));
        let dashboard_only = Uses {
            dashboard: true,
            ..Uses::LAKE
        };
        config.unwrap().validate_for(dashboard_only).unwrap();
    }

    #[test]
    fn maintenance_values_are_refused_naming_the_field() {
        let err = load_str("[maintenance]\nvacuum_retention_hours = 0\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("maintenance.vacuum_retention_hours"),
            "{err}"
        );
        let err = load_str("[maintenance]\ntarget_file_mb = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("maintenance.target_file_mb"),
            "{err}"
        );
        let env = vec![(
            "SLUICE_MAINTENANCE__INTERVAL_SECS".to_string(),
            "soon".to_string(),
        )];
        let err = Config::load(None, env).unwrap_err();
        assert!(
            err.to_string().contains("maintenance.interval_secs"),
            "{err}"
        );
        let err = load_str("[maintenance]\nintervl_secs = 5\n").unwrap_err();
        assert!(err.to_string().contains("intervl_secs"), "{err}");
        // Only commands that maintain the lake check the section.
        let env = vec![(
            "SLUICE_MAINTENANCE__TARGET_FILE_MB".to_string(),
            "0".to_string(),
        )];
        let config = Config::read(None, env).unwrap();
        config.validate_for(Uses::LAKE).unwrap();
    }
}
