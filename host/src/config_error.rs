//! How a setting is refused: the error every section of the configuration
//! (the service's, each source's, the warehouse's) reports, naming the field.
//! A leaf module, so sections defined next to the code they configure need
//! not depend on `config`.

use std::path::PathBuf;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

/// The error for a field whose value is refused, and why.
pub fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Parses `value` for `field`, or refuses it naming the field.
pub fn parse<T: std::str::FromStr>(field: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| invalid(field, format!("`{value}`: {e}")))
}
