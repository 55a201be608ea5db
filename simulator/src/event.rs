//! The in-memory form of one well-formed event, before it becomes a line.

use crate::catalog::Plan;

/// What happened, with the `properties` each event type carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    Login {
        method: u8,
    },
    FeatureUsed {
        feature: u8,
        duration_ms: u64,
        items: u64,
    },
    SessionEnd {
        duration_ms: u64,
    },
    PlanChanged {
        from: Plan,
        to: Plan,
    },
}

/// One event as the generator produced it; indices point into the catalogs
/// and the population, so it is small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    pub id: [u8; 16],
    pub user: u32,
    pub account: u32,
    pub plan: Plan,
    pub session_id: u64,
    pub ts_ms: i64,
    pub platform: u8,
    pub country: u8,
    pub app_version: u8,
    pub payload: Payload,
}

impl Event {
    /// The `properties.duration_ms` value, for event types that carry one.
    pub fn duration_ms(&self) -> Option<u64> {
        match self.payload {
            Payload::FeatureUsed { duration_ms, .. } | Payload::SessionEnd { duration_ms } => {
                Some(duration_ms)
            }
            Payload::Login { .. } | Payload::PlanChanged { .. } => None,
        }
    }
}
