//! Sources: where raw events come from. Each source runs as its own task and
//! sends [`Envelope`]s of raw records into the pipeline's bounded channel,
//! which is also the backpressure: a slow lake blocks the sources.
//!
//! Invariant: sources never decide what is committed. The pipeline records
//! positions with the bronze commit; a source resumes from
//! [`Positions`] read back from the lake, and acknowledges its producer only
//! when the envelope's ack fires (after the bronze commit).

pub mod blob_checkpoints;
pub mod eventhubs;
pub mod file;
pub mod http;
pub mod kafka;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

/// One raw event as received, with where it came from.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub payload: Bytes,
    /// Source kind and name, e.g. `file` or `http`.
    pub source: Arc<str>,
    /// Partition within the source: a file path, an HTTP request id.
    pub partition: Arc<str>,
    /// Position within the partition: a line number, an index in a request.
    pub offset: i64,
}

/// Records that travel together; `ack` fires once they are durable in bronze
/// (or the pipeline failed to make them so).
#[derive(Debug)]
pub struct Envelope {
    pub records: Vec<RawRecord>,
    pub ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// Last committed offset per (source, partition).
pub type Positions = HashMap<(String, String), i64>;
