//! `[kafka]` settings: brokers, topic, security (plain Kafka or the Event
//! Hubs Kafka endpoint over SASL), and the librdkafka client built from them.
//! The SASL password comes only from the environment variable named here.

use rdkafka::ClientConfig;
use rdkafka::consumer::StreamConsumer;

use super::group::GroupContext;
use serde::Deserialize;

use crate::config_error::ConfigError;

/// `[kafka]`: where to consume from. Empty `brokers` disables the source.
///
/// For the Event Hubs Kafka endpoint: `brokers = "<ns>.servicebus.windows.net:9093"`,
/// `security_protocol = "SASL_SSL"`, `sasl_mechanism = "PLAIN"`,
/// `sasl_username = "$ConnectionString"`, and `sasl_password_env` naming the
/// variable that holds the connection string.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    pub topic: String,
    /// Consumer group: the instances sharing the topic join it (with
    /// `share_partitions`); offsets are committed under it for lag views
    /// only, never read back.
    pub group: String,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with a SASL protocol).
    pub sasl_mechanism: String,
    pub sasl_username: String,
    /// Name of the environment variable holding the SASL password; the
    /// password itself never appears in a file.
    pub sasl_password_env: String,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch for data.
    pub fetch_wait_max_ms: u64,
    /// Share the partitions with other `sluice run` instances on the same
    /// lake: they subscribe in `group` and the broker assigns the
    /// partitions (cooperative-sticky); whoever holds partition 0 refines.
    pub share_partitions: bool,
    /// `session.timeout.ms` with `share_partitions`: how long the group
    /// waits for a silent instance before moving its partitions.
    pub session_timeout_ms: u64,
    /// How often the running source logs its per-partition lag.
    pub lag_report_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topic: "sluice-events".into(),
            group: "sluice".into(),
            security_protocol: "PLAINTEXT".into(),
            sasl_mechanism: "PLAIN".into(),
            sasl_username: String::new(),
            sasl_password_env: String::new(),
            fetch_wait_max_ms: 50,
            share_partitions: false,
            session_timeout_ms: 10_000,
            lag_report_ms: 5_000,
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: format!("kafka.{field}"),
        message: message.into(),
    }
}

impl KafkaConfig {
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    fn uses_sasl(&self) -> bool {
        self.security_protocol
            .to_ascii_uppercase()
            .starts_with("SASL")
    }

    /// Refuses settings the consumer cannot work with, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            if self.share_partitions {
                return Err(invalid("share_partitions", "needs kafka.brokers"));
            }
            return Ok(());
        }
        for broker in self.brokers.split(',') {
            let broker = broker.trim();
            let port = broker.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                return Err(invalid("brokers", format!("`{broker}` is not host:port")));
            }
        }
        if self.topic.trim().is_empty() {
            return Err(invalid("topic", "must not be empty"));
        }
        if !(1_000..=3_600_000).contains(&self.session_timeout_ms) {
            return Err(invalid(
                "session_timeout_ms",
                "must be between 1000 and 3600000 (milliseconds)",
            ));
        }
        if self.group.trim().is_empty() {
            return Err(invalid("group", "must not be empty"));
        }
        let protocols = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
        if !protocols.contains(&self.security_protocol.to_ascii_uppercase().as_str()) {
            return Err(invalid(
                "security_protocol",
                format!("must be one of {}", protocols.join(", ")),
            ));
        }
        if self.lag_report_ms < 100 {
            return Err(invalid("lag_report_ms", "must be at least 100"));
        }
        if !(1..=10_000).contains(&self.fetch_wait_max_ms) {
            return Err(invalid("fetch_wait_max_ms", "must be between 1 and 10000"));
        }
        if self.uses_sasl() {
            self.validate_sasl()?;
        }
        Ok(())
    }

    fn validate_sasl(&self) -> Result<(), ConfigError> {
        let mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
        if !mechanisms.contains(&self.sasl_mechanism.to_ascii_uppercase().as_str()) {
            return Err(invalid(
                "sasl_mechanism",
                format!("must be one of {}", mechanisms.join(", ")),
            ));
        }
        if self.sasl_username.is_empty() {
            return Err(invalid("sasl_username", "is required with SASL"));
        }
        if self.sasl_password_env.is_empty() {
            return Err(invalid(
                "sasl_password_env",
                "name the environment variable holding the password",
            ));
        }
        if std::env::var_os(&self.sasl_password_env).is_none() {
            return Err(invalid(
                "sasl_password_env",
                format!("the variable {} is not set", self.sasl_password_env),
            ));
        }
        Ok(())
    }

    /// librdkafka settings shared by the consumer, producer and admin client.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set(
                "security.protocol",
                self.security_protocol.to_ascii_lowercase(),
            )
            // Reconnect quickly after a broker outage, but not in a hot loop.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000");
        if self.uses_sasl() {
            let password = std::env::var(&self.sasl_password_env).unwrap_or_default();
            config
                .set("sasl.mechanisms", self.sasl_mechanism.to_ascii_uppercase())
                .set("sasl.username", &self.sasl_username)
                .set("sasl.password", password);
        }
        config
    }

    /// The source's consumer; `in_group`: it will subscribe in `group`.
    pub(super) fn consumer(
        &self,
        context: GroupContext,
        in_group: bool,
    ) -> anyhow::Result<StreamConsumer<GroupContext>> {
        let mut config = self.client_config();
        if in_group {
            let session = self.session_timeout_ms;
            config
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("session.timeout.ms", session.to_string())
                .set("heartbeat.interval.ms", (session / 3).max(100).to_string());
        }
        config
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set("enable.partition.eof", "false")
            // A lake position whose offset retention deleted resumes at the
            // oldest offset left, never at the newest: what is gone is
            // reported (`super::report_gaps`), what is left is read.
            .set("auto.offset.reset", "earliest");
        Ok(config.create_with_context(context)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        type Change = fn(&mut KafkaConfig);
        let cases: [(&str, Change); 6] = [
            ("kafka.brokers", |c| c.brokers = "nohost".into()),
            ("kafka.session_timeout_ms", |c| c.session_timeout_ms = 10),
            ("kafka.topic", |c| c.topic = " ".into()),
            ("kafka.security_protocol", |c| {
                c.security_protocol = "TLS".into()
            }),
            ("kafka.sasl_username", |c| {
                c.security_protocol = "SASL_SSL".into()
            }),
            ("kafka.sasl_password_env", |c| {
                c.security_protocol = "SASL_SSL".into();
                c.sasl_username = "$ConnectionString".into();
                c.sasl_password_env = "SLUICE_TEST_SURELY_UNSET_VARIABLE".into();
            }),
        ];
        for (field, change) in cases {
            let mut config = enabled();
            change(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        assert!(enabled().validate().is_ok());
        assert!(
            KafkaConfig::default().validate().is_ok(),
            "disabled is valid"
        );
        let sharing_nothing = KafkaConfig {
            share_partitions: true,
            ..Default::default()
        };
        let err = sharing_nothing.validate().unwrap_err().to_string();
        assert!(err.contains("kafka.share_partitions"), "{err}");
    }
}
