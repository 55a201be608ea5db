//! The raw record as the sources hand it over and bronze stores it, and the
//! positions committed per source partition: the vocabulary sources, layers
//! and the pipeline share without naming each other.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

/// One raw event as received, with where it came from.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub payload: Bytes,
    /// Source kind and name, e.g. `file` or `http`.
    pub source: Arc<str>,
    /// Partition within the source: a file path, the collector, a topic
    /// partition.
    pub partition: Arc<str>,
    /// Position within the partition: a line number, a collector offset, a
    /// Kafka offset.
    pub offset: i64,
}

/// Last committed offset per (source, partition).
pub type Positions = HashMap<(String, String), i64>;

/// Sources whose partitions are ordered logs (a Kafka or Event Hubs
/// partition): each partition is a stream with its own watermark. Files and
/// the HTTP collector share one stream per source.
const ORDERED_LOG_SOURCES: [&str; 2] = ["kafka", "eventhubs"];

/// Whether the partitions of `source` are ordered logs.
pub fn is_ordered_log(source: &str) -> bool {
    ORDERED_LOG_SOURCES.contains(&source)
}
