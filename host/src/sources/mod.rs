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

use tokio::sync::oneshot;

pub use crate::record::{Positions, RawRecord};

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
