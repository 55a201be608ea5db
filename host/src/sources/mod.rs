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
pub mod shared;

use tokio::sync::{mpsc, oneshot, watch};

pub use crate::record::{Positions, RawRecord};

/// What every source is started with: where to resume, how many records
/// an envelope may carry, where envelopes go, and when to stop.
#[derive(Clone)]
pub struct SourceContext {
    /// Committed positions in the lake; a source resumes after them.
    pub positions: Positions,
    /// Records per envelope at most.
    pub chunk: usize,
    pub tx: mpsc::Sender<Envelope>,
    /// Turns true when the service stops: sources stop reading.
    pub stop: watch::Receiver<bool>,
}

impl SourceContext {
    /// The next offset of `(source, partition)`: one past its position.
    pub fn next_offset(&self, source: &str, partition: &str) -> i64 {
        self.positions
            .get(&(source.to_string(), partition.to_string()))
            .map_or(0, |last| last + 1)
    }
}

/// Records that travel together; `ack` fires once they are durable in bronze
/// (or the pipeline failed to make them so).
#[derive(Debug)]
pub struct Envelope {
    pub records: Vec<RawRecord>,
    pub ack: Option<oneshot::Sender<Result<(), String>>>,
}

#[cfg(test)]
mod tests {
    use crate::record::is_ordered_log;

    #[test]
    fn the_log_sources_are_the_ordered_ones() {
        assert!(is_ordered_log(super::kafka::SOURCE));
        assert!(is_ordered_log(super::eventhubs::SOURCE));
        assert!(!is_ordered_log(super::file::SOURCE));
        assert!(!is_ordered_log(super::http::SOURCE));
    }
}
