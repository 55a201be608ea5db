//! `[eventhubs]` settings: which hub and consumer group, how to sign in
//! (connection string or Microsoft Entra ID), and where checkpoints live.
//! Secrets come only from environment variables and are never echoed.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientSecretCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential,
};
use azure_messaging_eventhubs::ConsumerClient;
use serde::Deserialize;

use super::super::blob_checkpoints::BlobLocation;
use crate::config_error::ConfigError;

/// How the source signs in to the Event Hubs namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// A Shared Access Signature connection string from `connection_string_env`.
    #[default]
    ConnectionString,
    /// Microsoft Entra ID: a service principal (`AZURE_TENANT_ID`,
    /// `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`), workload identity
    /// (`AZURE_FEDERATED_TOKEN_FILE`) or else the managed identity
    /// (user-assigned if `AZURE_CLIENT_ID` is set).
    EntraId,
}

impl std::str::FromStr for Auth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "connection_string" => Ok(Auth::ConnectionString),
            "entra_id" => Ok(Auth::EntraId),
            _ => Err("expected connection_string or entra_id".into()),
        }
    }
}

/// `[eventhubs]`: the hub to consume over AMQP. Empty `hub` disables it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventHubsConfig {
    /// The event hub's name.
    pub hub: String,
    pub consumer_group: String,
    pub auth: Auth,
    /// Name of the environment variable holding the connection string
    /// (`Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…`), for
    /// `auth = "connection_string"`.
    pub connection_string_env: String,
    /// The namespace's host, `<ns>.servicebus.windows.net`, for
    /// `auth = "entra_id"` (a connection string names it itself).
    pub namespace: String,
    /// Blob account URL of the checkpoint store, e.g.
    /// `https://<account>.blob.core.windows.net`; empty: no checkpoints, and
    /// this instance reads every partition.
    pub checkpoint_url: String,
    pub checkpoint_container: String,
    /// Name of the environment variable holding the storage account's
    /// Shared Key; empty: `AZURE_STORAGE_*` settings or managed identity.
    pub checkpoint_key_env: String,
    /// An ownership not renewed for this long may be taken over.
    pub ownership_expiry_secs: u64,
    /// How often each partition's lag is measured (metric and log line).
    pub lag_report_ms: u64,
}

impl Default for EventHubsConfig {
    fn default() -> Self {
        EventHubsConfig {
            hub: String::new(),
            consumer_group: "$Default".into(),
            auth: Auth::default(),
            connection_string_env: "EVENTHUBS_CONNECTION_STRING".into(),
            namespace: String::new(),
            checkpoint_url: String::new(),
            checkpoint_container: "sluice-checkpoints".into(),
            checkpoint_key_env: String::new(),
            ownership_expiry_secs: 30,
            lag_report_ms: 10_000,
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: format!("eventhubs.{field}"),
        message: message.into(),
    }
}

/// Environment variables of an Entra ID service principal.
const TENANT_ENV: &str = "AZURE_TENANT_ID";
const CLIENT_ENV: &str = "AZURE_CLIENT_ID";
const SECRET_ENV: &str = "AZURE_CLIENT_SECRET";
const FEDERATED_TOKEN_ENV: &str = "AZURE_FEDERATED_TOKEN_FILE";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl EventHubsConfig {
    pub fn enabled(&self) -> bool {
        !self.hub.trim().is_empty()
    }

    /// Refuses settings the source cannot work with, naming the field. The
    /// connection string is checked for presence, never echoed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.consumer_group.trim().is_empty() {
            return Err(invalid("consumer_group", "must not be empty"));
        }
        match self.auth {
            Auth::ConnectionString => self.validate_connection_string()?,
            Auth::EntraId => self.validate_entra_id()?,
        }
        if self.lag_report_ms < 100 {
            return Err(invalid("lag_report_ms", "must be at least 100"));
        }
        if !self.checkpoint_url.is_empty() {
            self.validate_store()?;
        }
        Ok(())
    }

    fn validate_connection_string(&self) -> Result<(), ConfigError> {
        let field = "connection_string_env";
        if self.connection_string_env.trim().is_empty() {
            return Err(invalid(
                field,
                "name the environment variable holding the connection string",
            ));
        }
        let var = &self.connection_string_env;
        match std::env::var(var) {
            Err(_) => Err(invalid(field, format!("the variable {var} is not set"))),
            Ok(conn) if namespace_of(&conn).is_none() => Err(invalid(
                field,
                format!("the value of {var} has no Endpoint=sb://…"),
            )),
            Ok(_) => Ok(()),
        }
    }

    fn validate_entra_id(&self) -> Result<(), ConfigError> {
        let ns = self.namespace.trim();
        if ns.is_empty() || ns.contains("://") || ns.contains('/') {
            return Err(invalid(
                "namespace",
                "with auth = \"entra_id\", give the namespace host, e.g. myns.servicebus.windows.net",
            ));
        }
        if env(SECRET_ENV).is_some() && (env(TENANT_ENV).is_none() || env(CLIENT_ENV).is_none()) {
            return Err(invalid(
                "auth",
                format!("{SECRET_ENV} is set, so {TENANT_ENV} and {CLIENT_ENV} must be too"),
            ));
        }
        Ok(())
    }

    fn validate_store(&self) -> Result<(), ConfigError> {
        super::super::blob_checkpoints::account_name(&self.checkpoint_url)
            .map_err(|e| invalid("checkpoint_url", e.to_string()))?;
        let name_ok = (3..=63).contains(&self.checkpoint_container.len())
            && self
                .checkpoint_container
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(invalid(
                "checkpoint_container",
                "must be 3–63 lowercase letters, digits or dashes",
            ));
        }
        if !self.checkpoint_key_env.is_empty()
            && std::env::var_os(&self.checkpoint_key_env).is_none()
        {
            return Err(invalid(
                "checkpoint_key_env",
                format!("the variable {} is not set", self.checkpoint_key_env),
            ));
        }
        if !(5..=3_600).contains(&self.ownership_expiry_secs) {
            return Err(invalid(
                "ownership_expiry_secs",
                "must be between 5 and 3600",
            ));
        }
        Ok(())
    }

    /// The checkpoint store's location, if one is configured.
    pub fn store_location(&self) -> Option<BlobLocation> {
        if self.checkpoint_url.is_empty() {
            return None;
        }
        Some(BlobLocation {
            account_url: self.checkpoint_url.clone(),
            container: self.checkpoint_container.clone(),
            access_key: (!self.checkpoint_key_env.is_empty())
                .then(|| std::env::var(&self.checkpoint_key_env).ok())
                .flatten(),
        })
    }

    fn connection_string(&self) -> anyhow::Result<String> {
        std::env::var(&self.connection_string_env)
            .map_err(|_| anyhow::anyhow!("{} is not set", self.connection_string_env))
    }

    /// The namespace host (`<ns>.servicebus.windows.net`) the hub lives in.
    pub fn namespace(&self) -> anyhow::Result<String> {
        match self.auth {
            Auth::EntraId => Ok(self.namespace.trim().to_string()),
            Auth::ConnectionString => namespace_of(&self.connection_string()?)
                .ok_or_else(|| anyhow::anyhow!("the connection string has no Endpoint=sb://…")),
        }
    }

    /// Opens a consumer client for the hub.
    pub async fn consumer(&self) -> anyhow::Result<ConsumerClient> {
        let builder = ConsumerClient::builder().with_consumer_group(self.consumer_group.clone());
        let client = match self.auth {
            Auth::ConnectionString => {
                builder
                    .open_with_connection_string(&self.connection_string()?, Some(&self.hub))
                    .await
            }
            Auth::EntraId => {
                builder
                    .open(&self.namespace()?, self.hub.clone(), entra_credential()?)
                    .await
            }
        };
        client.map_err(|e| anyhow::anyhow!("opening Event Hub {}: {e}", self.hub))
    }
}

/// Which Entra ID credential the environment describes.
#[derive(Debug, PartialEq, Eq)]
enum EntraSource {
    ServicePrincipal,
    WorkloadIdentity,
    ManagedIdentity { client_id: Option<String> },
}

fn entra_source(env: impl Fn(&str) -> Option<String>) -> EntraSource {
    if env(SECRET_ENV).is_some() {
        EntraSource::ServicePrincipal
    } else if env(FEDERATED_TOKEN_ENV).is_some() {
        EntraSource::WorkloadIdentity
    } else {
        EntraSource::ManagedIdentity {
            client_id: env(CLIENT_ENV),
        }
    }
}

/// The Entra ID credential the environment describes (see [`Auth::EntraId`]).
fn entra_credential() -> anyhow::Result<Arc<dyn TokenCredential>> {
    let credential: Arc<dyn TokenCredential> = match entra_source(env) {
        EntraSource::ServicePrincipal => {
            let tenant = env(TENANT_ENV).unwrap_or_default();
            let client = env(CLIENT_ENV).unwrap_or_default();
            let secret = Secret::new(env(SECRET_ENV).unwrap_or_default());
            ClientSecretCredential::new(&tenant, client, secret, None)?
        }
        EntraSource::WorkloadIdentity => WorkloadIdentityCredential::new(None)?,
        EntraSource::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.map(UserAssignedId::ClientId),
                ..Default::default()
            };
            ManagedIdentityCredential::new(Some(options))?
        }
    };
    Ok(credential)
}

/// `<ns>.servicebus.windows.net` from a connection string's `Endpoint=sb://…/`.
pub fn namespace_of(connection_string: &str) -> Option<String> {
    connection_string
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Endpoint=sb://"))
        .map(|h| h.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAR: &str = "SLUICE_TEST_EVENTHUBS_UNIT_CONN";

    fn enabled() -> EventHubsConfig {
        // SAFETY: only this test module sets this variable, to one value.
        unsafe {
            std::env::set_var(
                VAR,
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=x",
            )
        };
        EventHubsConfig {
            hub: "events".into(),
            connection_string_env: VAR.into(),
            ..Default::default()
        }
    }

    #[test]
    fn bad_settings_name_the_field() {
        type Change = fn(&mut EventHubsConfig);
        let cases: [(&str, Change); 6] = [
            ("eventhubs.consumer_group", |c| {
                c.consumer_group = " ".into()
            }),
            ("eventhubs.connection_string_env", |c| {
                c.connection_string_env = String::new()
            }),
            ("eventhubs.connection_string_env", |c| {
                c.connection_string_env = "SLUICE_TEST_SURELY_UNSET_VARIABLE".into()
            }),
            ("eventhubs.checkpoint_url", |c| {
                c.checkpoint_url = "http://127.0.0.1:10000".into()
            }),
            ("eventhubs.checkpoint_container", |c| {
                c.checkpoint_url = "https://acme.blob.core.windows.net".into();
                c.checkpoint_container = "Bad_Name".into();
            }),
            ("eventhubs.ownership_expiry_secs", |c| {
                c.checkpoint_url = "https://acme.blob.core.windows.net".into();
                c.ownership_expiry_secs = 1;
            }),
        ];
        for (field, change) in cases {
            let mut config = enabled();
            change(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
            assert!(!err.contains("SharedAccessKey="), "no secret in {err}");
        }
        assert!(enabled().validate().is_ok());
        assert!(EventHubsConfig::default().validate().is_ok(), "disabled");
    }

    #[test]
    fn entra_id_needs_a_namespace_host_and_picks_the_credential_from_the_environment() {
        let mut config = EventHubsConfig {
            hub: "events".into(),
            auth: Auth::EntraId,
            connection_string_env: "SLUICE_TEST_SURELY_UNSET_VARIABLE".into(),
            ..Default::default()
        };
        for bad in ["", "sb://ns.servicebus.windows.net/", "ns/x"] {
            config.namespace = bad.into();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("eventhubs.namespace"), "{bad}: {err}");
        }
        config.namespace = "ns.servicebus.windows.net".into();
        if env(SECRET_ENV).is_none() {
            assert!(config.validate().is_ok(), "no connection string needed");
        }
        assert_eq!(config.namespace().unwrap(), "ns.servicebus.windows.net");

        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            entra_source(vars(&[
                (TENANT_ENV, "t"),
                (CLIENT_ENV, "c"),
                (SECRET_ENV, "s")
            ])),
            EntraSource::ServicePrincipal
        );
        assert_eq!(
            entra_source(vars(&[(CLIENT_ENV, "c"), (FEDERATED_TOKEN_ENV, "/token")])),
            EntraSource::WorkloadIdentity
        );
        assert_eq!(
            entra_source(vars(&[(CLIENT_ENV, "c")])),
            EntraSource::ManagedIdentity {
                client_id: Some("c".into())
            }
        );
        assert_eq!(
            entra_source(vars(&[])),
            EntraSource::ManagedIdentity { client_id: None }
        );
    }
}
