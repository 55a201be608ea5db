//! The admin API: a separate HTTP port, bearer-token auth, for plugin
//! deploys, rollbacks, shadow runs and replays; plus its client (used by the
//! CLI) and the watched plugin directory.

pub mod client;
pub mod server;
pub mod watch;

use serde::{Deserialize, Serialize};

use crate::lifecycle::Fixtures;

/// Body of `POST /v1/plugins/{layer}/deploy`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The component, base64 (standard alphabet).
    pub wasm_base64: String,
    /// Run beside the active plugin without writing, instead of replacing it.
    #[serde(default)]
    pub shadow: bool,
    /// Fixtures the candidate must pass before it goes live.
    #[serde(default)]
    pub fixtures: Option<Fixtures>,
}

/// Body of `POST /v1/replay`: a layer and where to start.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplayRequest {
    pub layer: String,
    /// First batch to recompute.
    #[serde(default)]
    pub from_batch: Option<i64>,
    /// Or: recompute batches committed at or after this RFC 3339 time.
    #[serde(default)]
    pub since: Option<String>,
}

/// Error body of every non-2xx answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
