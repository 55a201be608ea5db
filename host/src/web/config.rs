//! The dashboard's settings (`[dashboard]`), beside the web code that
//! serves it, as the collector's are beside the collector.

use serde::Deserialize;

use crate::config_error::{ConfigError, invalid};

/// The web dashboard (`sluice run` serves it; `sluice dashboard` too).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Listen address, on loopback (the dashboard has no sign-in); empty
    /// turns it off in `sluice run`.
    pub listen: String,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            listen: DASHBOARD_LISTEN.into(),
        }
    }
}

/// Where the dashboard listens unless told otherwise.
pub const DASHBOARD_LISTEN: &str = "127.0.0.1:8088";

impl DashboardConfig {
    /// Refuses an address that does not parse, is not loopback, or takes
    /// the port of another listener of the same process (`others`: field
    /// and value), naming the field.
    pub fn validate(&self, others: &[(&str, &str)]) -> Result<(), ConfigError> {
        if self.listen.is_empty() {
            return Ok(());
        }
        let addr: std::net::SocketAddr = self.listen.parse().map_err(|_| {
            invalid(
                "dashboard.listen",
                format!(
                    "`{}` is not an address like {DASHBOARD_LISTEN}",
                    self.listen
                ),
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(invalid(
                "dashboard.listen",
                format!(
                    "`{}` is not a loopback address: the dashboard has no sign-in, so it \
                     listens on this machine only (put a proxy with authentication in front \
                     to share it)",
                    self.listen
                ),
            ));
        }
        for (field, other) in others {
            let taken = other
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|o| o.port() != 0 && o.port() == addr.port());
            if taken {
                return Err(invalid(
                    "dashboard.listen",
                    format!("`{}` takes the port of {field} (`{other}`)", self.listen),
                ));
            }
        }
        Ok(())
    }
}
