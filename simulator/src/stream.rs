//! The arrival stream: takes generated events in event-time order and mixes
//! in duplicate, late and malformed lines at the configured fractions.

use std::collections::BinaryHeap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{SimConfig, SimConfigError};
use crate::event::Event;
use crate::generator::Generator;
use crate::malformed::write_malformed;
use crate::render::{Tamper, write_event};
use crate::{EventKind, SimEvent};

/// Good lines kept for re-sending; a duplicate copies one 3..=256 good lines back.
const RECENT_LINES: usize = 256;
/// Newest good lines never duplicated, so a copy lands "a few" lines later.
const MIN_DUPLICATE_OFFSET: usize = 2;
/// Typical line length, to size fresh buffers.
const LINE_CAPACITY: usize = 384;

/// Deterministic event stream; yields exactly `cfg.events` lines.
pub struct Simulator {
    cfg: SimConfig,
    generator: Generator,
    /// Fault decisions use their own stream, so the underlying events are the
    /// same with and without faults.
    rng: StdRng,
    emitted: u64,
    /// Latest event time among normal lines: the stream's "now".
    stream_ms: i64,
    held: BinaryHeap<Held>,
    held_seq: u64,
    recent: Vec<String>,
    recent_next: usize,
    /// Per-line chance of a duplicate when no late event is due.
    p_duplicate: f64,
    /// Per-generated-event chances of breaking it or holding it back.
    p_malformed: f64,
    p_hold: f64,
    late_min_ms: i64,
    late_max_ms: i64,
}

/// An event held back until the stream has moved `delay` past it.
struct Held {
    release_ms: i64,
    seq: u64,
    event: Event,
}

impl Held {
    fn key(&self) -> (i64, u64) {
        (self.release_ms, self.seq)
    }
}

// Reversed so `BinaryHeap` (a max-heap) pops the earliest release first.
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key().cmp(&self.key())
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Held {}

impl Simulator {
    /// Validates `cfg` and builds the population; no events are generated yet.
    pub fn new(cfg: SimConfig) -> Result<Self, SimConfigError> {
        cfg.validate()?;
        let (p_duplicate, p_malformed, p_hold) = line_probabilities(&cfg);
        Ok(Self {
            generator: Generator::new(&cfg),
            rng: StdRng::seed_from_u64(cfg.seed ^ 0xD1B5_4A32_D192_ED03),
            emitted: 0,
            stream_ms: i64::MIN,
            held: BinaryHeap::new(),
            held_seq: 0,
            recent: Vec::new(),
            recent_next: 0,
            p_duplicate,
            p_malformed,
            p_hold,
            late_min_ms: ceil_millis(cfg.late_min),
            late_max_ms: ceil_millis(cfg.late_max),
            cfg,
        })
    }

    /// The config this simulator runs with.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Writes the next line into `out` (cleared first, no newline) and returns
    /// its kind, or `None` after `cfg.events` lines. Lets callers reuse one buffer.
    pub fn next_line(&mut self, out: &mut String) -> Option<EventKind> {
        if self.emitted >= self.cfg.events {
            return None;
        }
        self.emitted += 1;
        out.clear();
        Some(self.fill(out))
    }

    fn fill(&mut self, out: &mut String) -> EventKind {
        if let Some(event) = self.pop_due_late() {
            write_event(out, &event, Tamper::None);
            self.remember(out);
            return EventKind::Late;
        }
        if self.p_duplicate > 0.0
            && self.recent.len() > MIN_DUPLICATE_OFFSET
            && self.rng.random_bool(self.p_duplicate)
        {
            self.write_duplicate(out);
            return EventKind::Duplicate;
        }
        loop {
            let event = self.generator.next_event();
            let roll: f64 = self.rng.random();
            if roll < self.p_malformed {
                return EventKind::Malformed(write_malformed(out, &event, &mut self.rng));
            }
            if roll < self.p_malformed + self.p_hold {
                self.hold(event);
                continue;
            }
            write_event(out, &event, Tamper::None);
            self.stream_ms = self.stream_ms.max(event.ts_ms);
            self.remember(out);
            return EventKind::Normal;
        }
    }

    /// The held event whose lateness has been reached, if any.
    fn pop_due_late(&mut self) -> Option<Event> {
        if self.held.peek()?.release_ms <= self.stream_ms {
            self.held.pop().map(|h| h.event)
        } else {
            None
        }
    }

    /// Holds `event` back for a log-uniform delay in `[late_min, late_max]`:
    /// mostly a little late, sometimes hours late.
    fn hold(&mut self, event: Event) {
        let (lo, hi) = (self.late_min_ms, self.late_max_ms);
        let delay = if hi <= lo {
            lo
        } else {
            let (ln_lo, ln_hi) = ((lo.max(1) as f64).ln(), (hi as f64).ln());
            let ln = self.rng.random_range(ln_lo..=ln_hi);
            (ln.exp().round() as i64).clamp(lo, hi)
        };
        self.held_seq += 1;
        self.held.push(Held {
            release_ms: event.ts_ms + delay,
            seq: self.held_seq,
            event,
        });
    }

    /// Keeps a copy of a good line as a duplicate source.
    fn remember(&mut self, line: &str) {
        if self.p_duplicate == 0.0 {
            return;
        }
        if self.recent.len() < RECENT_LINES {
            self.recent.push(line.to_owned());
        } else {
            let slot = &mut self.recent[self.recent_next];
            slot.clear();
            slot.push_str(line);
        }
        self.recent_next = (self.recent_next + 1) % RECENT_LINES;
    }

    fn write_duplicate(&mut self, out: &mut String) {
        let len = self.recent.len();
        let back = self.rng.random_range(MIN_DUPLICATE_OFFSET..len);
        let newest = (self.recent_next + len - 1) % len;
        let index = (newest + len - back) % len;
        out.push_str(&self.recent[index]);
    }
}

impl Iterator for Simulator {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        let mut line = String::with_capacity(LINE_CAPACITY);
        let kind = self.next_line(&mut line)?;
        Some(SimEvent { line, kind })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.cfg.events - self.emitted).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

// `next` keeps returning `None` once `cfg.events` lines are out.
impl std::iter::FusedIterator for Simulator {}

/// Converts the configured line fractions into per-decision probabilities.
///
/// With `d`, `l`, `m` the duplicate, late and malformed line fractions: a line
/// is a duplicate with chance `d / (1 - l)` unless a late event is due, and a
/// generated event is broken with chance `m / (1 - d)` and held back with
/// chance `l / (1 - d)`. In steady state that makes each kind's share of the
/// output equal its fraction.
fn line_probabilities(cfg: &SimConfig) -> (f64, f64, f64) {
    let (d, l, m) = (
        cfg.duplicate_fraction,
        cfg.late_fraction,
        cfg.malformed_fraction,
    );
    let p_duplicate = if l < 1.0 {
        (d / (1.0 - l)).min(1.0)
    } else {
        0.0
    };
    let (p_malformed, p_hold) = if d < 1.0 {
        ((m / (1.0 - d)).min(1.0), (l / (1.0 - d)).min(1.0))
    } else {
        (0.0, 0.0)
    };
    (p_duplicate, p_malformed, p_hold)
}

/// Whole milliseconds, rounded up so a late line is never less late than asked.
fn ceil_millis(d: Duration) -> i64 {
    i64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulator_can_move_across_threads() {
        // The host drives it from async tasks.
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Simulator>();
        assert_send::<SimConfigError>();
    }

    #[test]
    fn line_probabilities_hit_the_configured_fractions() {
        let cfg = SimConfig {
            duplicate_fraction: 0.1,
            late_fraction: 0.2,
            malformed_fraction: 0.3,
            ..SimConfig::default()
        };
        let (dup, mal, hold) = line_probabilities(&cfg);
        assert!((dup - 0.1 / 0.8).abs() < 1e-12);
        assert!((mal - 0.3 / 0.9).abs() < 1e-12);
        assert!((hold - 0.2 / 0.9).abs() < 1e-12);
        assert_eq!(ceil_millis(Duration::from_micros(1_500)), 2);
    }
}
