//! `sluice-simulator`: a seeded, deterministic generator of realistic SaaS
//! product-usage events as NDJSON lines, with optional duplicate, late and
//! malformed lines mixed into the arrival stream (see `docs/events.md`).
//!
//! ```
//! use sluice_simulator::{EventKind, SimConfig, Simulator};
//!
//! let sim = Simulator::new(SimConfig { events: 100, ..SimConfig::default() }).unwrap();
//! let lines: Vec<_> = sim.collect();
//! assert_eq!(lines.len(), 100);
//! assert!(lines.iter().all(|e| e.kind == EventKind::Normal));
//! ```

pub mod catalog;
mod config;
mod diurnal;
mod event;
mod generator;
mod malformed;
mod population;
mod render;
mod stream;

pub use config::{SimConfig, SimConfigError};
pub use malformed::MalformedKind;
pub use stream::Simulator;

/// Why a line is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A good event, emitted in event-time order.
    Normal,
    /// A verbatim re-send of an earlier good line (same `event_id`).
    Duplicate,
    /// A good event held back and emitted after newer ones.
    Late,
    /// A line that breaks the contract in the given way.
    Malformed(MalformedKind),
}

/// One NDJSON line (without the trailing newline) and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    pub line: String,
    pub kind: EventKind,
}
