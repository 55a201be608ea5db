//! `[collector]` settings: where the HTTP collector listens, its bounds
//! against slow and many clients, bearer tokens (from the environment) and
//! the browser origins it accepts.

use std::time::Duration;

use serde::Deserialize;

use crate::config_error::{ConfigError, invalid};

/// Shortest bearer token accepted (collector and admin API).
pub const MIN_TOKEN_CHARS: usize = 16;

/// The HTTP collector.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Listen address, e.g. `127.0.0.1:8080`; empty disables the collector.
    /// Anything but a loopback address needs `auth = "bearer"`.
    pub listen: String,
    /// Largest request body accepted (bytes); larger gets 413.
    pub max_body_bytes: usize,
    /// Who may post events: nobody needs to prove anything (`none`, loopback
    /// only) or a bearer token is required (`bearer`).
    pub auth: CollectorAuth,
    /// The environment variable holding the accepted bearer tokens,
    /// comma-separated: several at once, so a new one can be rolled out
    /// before the old one is withdrawn.
    pub tokens_env: String,
    /// The tokens read from `tokens_env`: only from the environment, never
    /// from the file, never printed.
    #[serde(skip)]
    pub tokens: Vec<String>,
    /// Browser origins (`https://app.example.com`) allowed to post events;
    /// empty (the default): a request carrying an `Origin` header is refused.
    pub cors_origins: Vec<String>,
    /// A client must send a request's head within this long (also how long
    /// an idle connection is kept), else the connection is closed.
    pub header_timeout_ms: u64,
    /// A request's body must arrive within this long of its head, else 408.
    pub body_timeout_ms: u64,
    /// Connections served at once; one more is answered 503 with
    /// `Retry-After` and closed.
    pub max_connections: usize,
    /// How long a request waits for room in the pipeline and then for its
    /// bronze commit before it is answered 503 with `Retry-After`.
    pub ack_timeout_ms: u64,
}

impl std::fmt::Debug for CollectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorConfig")
            .field("listen", &self.listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("auth", &self.auth)
            .field("tokens_env", &self.tokens_env)
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("cors_origins", &self.cors_origins)
            .field("header_timeout_ms", &self.header_timeout_ms)
            .field("body_timeout_ms", &self.body_timeout_ms)
            .field("max_connections", &self.max_connections)
            .field("ack_timeout_ms", &self.ack_timeout_ms)
            .finish()
    }
}

/// How a client proves it may post to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectorAuth {
    /// No proof: only for a collector listening on a loopback address.
    #[default]
    None,
    /// `Authorization: Bearer <token>` with one of the tokens in `tokens_env`.
    Bearer,
}

impl std::str::FromStr for CollectorAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(CollectorAuth::None),
            "bearer" => Ok(CollectorAuth::Bearer),
            _ => Err("expected none or bearer".into()),
        }
    }
}

impl CollectorConfig {
    /// Refuses limits the collector cannot serve with, a collector open to
    /// the network without authentication, and origins that are not origins.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(invalid("collector.max_body_bytes", "must be at least 1024"));
        }
        for (field, value) in [
            ("collector.header_timeout_ms", self.header_timeout_ms),
            ("collector.body_timeout_ms", self.body_timeout_ms),
            ("collector.ack_timeout_ms", self.ack_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return Err(invalid(
                "collector.max_connections",
                format!("must be between 1 and {MAX_CONNECTIONS_LIMIT}"),
            ));
        }
        self.validate_auth()?;
        self.validate_origins()
    }

    /// Bearer auth needs usable tokens; without auth the collector must be
    /// reachable from this machine only.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        match self.auth {
            CollectorAuth::Bearer => self.validate_tokens(),
            CollectorAuth::None => match self.listen.parse::<std::net::SocketAddr>() {
                Ok(addr) if !addr.ip().is_loopback() => Err(invalid(
                    "collector.listen",
                    format!(
                        "`{}` is reachable from other machines: set collector.auth = \"bearer\" \
                         (tokens in {}) or listen on a loopback address like 127.0.0.1:8080",
                        self.listen, self.tokens_env
                    ),
                )),
                _ => Ok(()),
            },
        }
    }

    fn validate_tokens(&self) -> Result<(), ConfigError> {
        if self.tokens.is_empty() {
            return Err(invalid(
                "collector.tokens_env",
                format!(
                    "collector.auth = \"bearer\" needs at least one token in {} \
                     (comma-separated)",
                    self.tokens_env
                ),
            ));
        }
        let usable = |t: &String| {
            t.chars().count() >= MIN_TOKEN_CHARS && t.bytes().all(|b| b.is_ascii_graphic())
        };
        if !self.tokens.iter().all(usable) {
            return Err(invalid(
                "collector.tokens_env",
                format!(
                    "every token in {} must be at least {MIN_TOKEN_CHARS} printable ASCII \
                     characters without spaces",
                    self.tokens_env
                ),
            ));
        }
        Ok(())
    }

    /// Each origin is `*` (any page; with bearer auth only) or exactly an
    /// origin as browsers send it: `scheme://host[:port]`, no path.
    fn validate_origins(&self) -> Result<(), ConfigError> {
        const FIELD: &str = "collector.cors_origins";
        for origin in &self.cors_origins {
            if origin == "*" {
                if self.auth != CollectorAuth::Bearer {
                    return Err(invalid(
                        FIELD,
                        "`*` lets any web page post events: only with collector.auth = \"bearer\"",
                    ));
                }
                continue;
            }
            let normal = url::Url::parse(origin)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|u| u.origin().ascii_serialization());
            match normal {
                Some(normal) if normal == *origin => {}
                Some(normal) => {
                    return Err(invalid(
                        FIELD,
                        format!("`{origin}`: write it as browsers send it, `{normal}`"),
                    ));
                }
                None => {
                    return Err(invalid(
                        FIELD,
                        format!("`{origin}` is not an origin like https://app.example.com"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A read timeout for request heads.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    /// A read timeout for request bodies.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    /// How long a request waits for its bronze commit.
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }
}

/// The default variable holding the collector's bearer tokens.
pub const COLLECTOR_TOKENS_ENV: &str = "SLUICE_COLLECTOR_TOKENS";

/// Most connections a collector may be configured to serve at once.
const MAX_CONNECTIONS_LIMIT: usize = 100_000;

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 * 1024 * 1024,
            auth: CollectorAuth::None,
            tokens_env: COLLECTOR_TOKENS_ENV.into(),
            tokens: Vec::new(),
            cors_origins: Vec::new(),
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections: 512,
            ack_timeout_ms: 10_000,
        }
    }
}
