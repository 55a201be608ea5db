//! Session engine: starts sessions along the day/night curve and interleaves
//! the events of all open sessions into one stream ordered by event time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Geometric, LogNormal};

use crate::catalog::{FEATURE_SPECS, LOGIN_METHOD_WEIGHTS, PLATFORM_WEIGHTS, Plan, plan_affinity};
use crate::config::SimConfig;
use crate::diurnal::Diurnal;
use crate::event::{Event, Payload};
use crate::population::Population;

/// Average `feature_used` events per session (geometric count).
const MEAN_FEATURES: f64 = 6.0;
/// Hard cap so a freak geometric draw cannot produce an endless session.
const MAX_FEATURES: u64 = 200;
/// Attempts to find another user when the picked one is mid-session.
const MAX_REPICKS: u32 = 64;
/// Share of accounts that upgrade during the simulated period, per plan tier.
const CONVERSION: [f64; 3] = [0.10, 0.05, 0.0];
/// Share of sessions opened on the user's usual platform.
const HOME_PLATFORM_SHARE: f64 = 0.85;
/// Smallest gap between two events of a session (UI and network latency).
const MIN_GAP_MS: f64 = 200.0;
/// Time spent in the checkout flow before a `plan_changed` lands.
const CHECKOUT_MS: f64 = 20_000.0;
/// Longest single feature interaction.
const MAX_FEATURE_MS: f64 = 30.0 * 60_000.0;

/// One open session: who, where, and how far along it is.
#[derive(Clone, Copy)]
struct Session {
    user: u32,
    id: u64,
    platform: u8,
    login_ms: i64,
    /// Steps between login and session end: features plus an optional upgrade.
    steps: u32,
    done: u32,
    /// Step index at which the user upgrades, or `u32::MAX` for none.
    upgrade_at: u32,
}

/// Produces well-formed events forever, in event-time order.
pub(crate) struct Generator {
    rng: StdRng,
    pop: Population,
    diurnal: Diurnal,
    sessions: Vec<Session>,
    free_slots: Vec<u32>,
    /// Next event time of every open session, earliest first.
    queue: BinaryHeap<Reverse<(i64, u32)>>,
    /// Whether each user has a session open; one session per user at a time.
    busy: Vec<bool>,
    /// Clock of the (thinned Poisson) session-start process, in epoch ms.
    start_clock_ms: f64,
    /// Candidate session starts per millisecond before diurnal thinning.
    starts_per_ms: f64,
    next_start: Option<(i64, u32)>,
    upgrade_chance: [f64; 3],
    feature_pick: [WeightedIndex<f64>; 3],
    method_pick: [WeightedIndex<f64>; 3],
    platform_pick: WeightedIndex<f64>,
    feature_count: Geometric,
    think: LogNormal<f64>,
    feature_duration: Vec<LogNormal<f64>>,
    feature_items: Vec<Geometric>,
}

impl Generator {
    pub fn new(cfg: &SimConfig) -> Self {
        // Separate streams: the population does not shift when `events` changes.
        let mut pop_rng = StdRng::seed_from_u64(cfg.seed ^ 0x9E37_79B9_7F4A_7C15);
        let pop = Population::generate(&mut pop_rng, cfg.accounts, cfg.users_per_account);
        let diurnal = Diurnal::new();

        let start_ms = cfg.start.timestamp_millis();
        let span_ms = i64::from(cfg.days) * 86_400_000;
        // Duplicates are copies, every other line consumes one generated event.
        let generated = cfg.events as f64 * (1.0 - cfg.duplicate_fraction);
        let sessions = (generated / (MEAN_FEATURES + 2.0)).max(1.0);
        let mean_accept = diurnal.mean_weight(start_ms, span_ms, &pop.country_share);
        let starts_per_ms = sessions / (span_ms as f64 * mean_accept);

        let sessions_per_account = sessions / f64::from(cfg.accounts);
        let upgrade_chance = CONVERSION.map(|c| (c / sessions_per_account).min(0.25));

        let users = pop.users.len();
        Self {
            rng: StdRng::seed_from_u64(cfg.seed),
            pop,
            diurnal,
            sessions: Vec::new(),
            free_slots: Vec::new(),
            queue: BinaryHeap::new(),
            busy: vec![false; users],
            start_clock_ms: start_ms as f64,
            starts_per_ms,
            next_start: None,
            upgrade_chance,
            feature_pick: Plan::ALL.map(feature_weights),
            method_pick: LOGIN_METHOD_WEIGHTS.map(|w| WeightedIndex::new(w).expect("static")),
            platform_pick: WeightedIndex::new(PLATFORM_WEIGHTS).expect("static weights"),
            feature_count: Geometric::new(1.0 / (MEAN_FEATURES + 1.0)).expect("valid p"),
            think: LogNormal::new(5_000f64.ln(), 0.9).expect("static parameters"),
            feature_duration: FEATURE_SPECS
                .iter()
                .map(|f| LogNormal::new(f.median_duration_ms.ln(), 0.8).expect("static"))
                .collect(),
            feature_items: FEATURE_SPECS
                .iter()
                .map(|f| Geometric::new(1.0 / (1.0 + f.mean_items)).expect("valid p"))
                .collect(),
        }
    }

    /// The next event in event-time order.
    pub fn next_event(&mut self) -> Event {
        loop {
            let (start_ms, user) = self.peek_start();
            match self.queue.peek() {
                Some(&Reverse((ts, slot))) if ts <= start_ms => {
                    self.queue.pop();
                    return self.step(slot, ts);
                }
                _ => {
                    self.next_start = None;
                    if let Some(login) = self.start_session(start_ms, user) {
                        return login;
                    }
                }
            }
        }
    }

    /// The next accepted session start, drawn by thinning a Poisson process
    /// with the diurnal intensity of the picked user's local time.
    fn peek_start(&mut self) -> (i64, u32) {
        if let Some(start) = self.next_start {
            return start;
        }
        loop {
            let u: f64 = self.rng.random();
            self.start_clock_ms += -(1.0 - u).ln() / self.starts_per_ms;
            let user = self.pop.user_picker.sample(&mut self.rng);
            let ts = self.start_clock_ms as i64;
            let local = ts + self.pop.users[user].utc_offset_ms;
            if self.rng.random::<f64>() < self.diurnal.weight(local) {
                let start = (ts, user as u32);
                self.next_start = Some(start);
                return start;
            }
        }
    }

    /// Opens a session and returns its login; `None` if no free user was found.
    fn start_session(&mut self, ts: i64, user: u32) -> Option<Event> {
        let user = self.free_user(ts, user)?;
        self.busy[user as usize] = true;
        let plan = self.plan_of(user);
        let features = self.feature_count.sample(&mut self.rng).min(MAX_FEATURES) as u32;
        let upgrades = plan.upgrade().is_some() && {
            let chance = self.upgrade_chance[plan.tier()];
            self.rng.random_bool(chance)
        };
        let steps = features + u32::from(upgrades);
        let upgrade_at = if upgrades {
            self.rng.random_range(0..steps)
        } else {
            u32::MAX
        };
        let home = self.pop.users[user as usize].platform;
        let platform = if self.rng.random_bool(HOME_PLATFORM_SHARE) {
            home
        } else {
            self.platform_pick.sample(&mut self.rng) as u8
        };
        let session = Session {
            user,
            id: self.rng.random(),
            platform,
            login_ms: ts,
            steps,
            done: 0,
            upgrade_at,
        };
        let method = self.method_pick[plan.tier()].sample(&mut self.rng) as u8;
        let login = self.event(session, ts, plan, Payload::Login { method });
        let first_step = ts + self.think_ms();
        let slot = self.store(session);
        self.queue.push(Reverse((first_step, slot)));
        Some(login)
    }

    /// `user`, or if they are mid-session someone else who would start one at
    /// `ts`. Replacing instead of dropping keeps the start rate (and so the
    /// simulated span) right even when heavy users are often busy.
    fn free_user(&mut self, ts: i64, user: u32) -> Option<u32> {
        if !self.busy[user as usize] {
            return Some(user);
        }
        (0..MAX_REPICKS).find_map(|_| {
            let other = self.pop.user_picker.sample(&mut self.rng);
            let local = ts + self.pop.users[other].utc_offset_ms;
            let accept = self.rng.random::<f64>() < self.diurnal.weight(local);
            (accept && !self.busy[other]).then_some(other as u32)
        })
    }

    /// Emits the step of session `slot` due at `ts`: a feature, an upgrade or the end.
    fn step(&mut self, slot: u32, ts: i64) -> Event {
        let session = self.sessions[slot as usize];
        if session.done == session.steps {
            return self.end_session(slot, ts);
        }
        self.sessions[slot as usize].done += 1;
        let plan = self.plan_of(session.user);
        let (event, gap_ms) = match plan.upgrade() {
            // Another user of the account may have upgraded it already; then
            // this step falls back to ordinary feature use.
            Some(to) if session.done == session.upgrade_at => {
                let account = self.pop.users[session.user as usize].account;
                self.pop.accounts[account as usize].plan = to;
                let payload = Payload::PlanChanged { from: plan, to };
                let gap = (CHECKOUT_MS + self.think.sample(&mut self.rng)) as i64;
                (self.event(session, ts, to, payload), gap)
            }
            _ => self.feature_event(session, ts, plan),
        };
        self.queue.push(Reverse((ts + gap_ms, slot)));
        event
    }

    /// A `feature_used` event and the time until the session's next step.
    fn feature_event(&mut self, session: Session, ts: i64, plan: Plan) -> (Event, i64) {
        let feature = self.feature_pick[plan.tier()].sample(&mut self.rng);
        let duration = self.feature_duration[feature]
            .sample(&mut self.rng)
            .min(MAX_FEATURE_MS) as u64;
        let items = self.feature_items[feature].sample(&mut self.rng);
        let payload = Payload::FeatureUsed {
            feature: feature as u8,
            duration_ms: duration,
            items,
        };
        let gap = duration as i64 + self.think_ms();
        (self.event(session, ts, plan, payload), gap)
    }

    fn end_session(&mut self, slot: u32, ts: i64) -> Event {
        let session = self.sessions[slot as usize];
        let duration_ms = (ts - session.login_ms).max(0) as u64;
        let plan = self.plan_of(session.user);
        let end = self.event(session, ts, plan, Payload::SessionEnd { duration_ms });
        self.busy[session.user as usize] = false;
        self.free_slots.push(slot);
        end
    }

    /// Builds an event of `session`, drawing a fresh random UUID for it.
    fn event(&mut self, session: Session, ts_ms: i64, plan: Plan, payload: Payload) -> Event {
        let id = self.rng.random();
        let user = &self.pop.users[session.user as usize];
        Event {
            id,
            user: session.user,
            account: user.account,
            plan,
            session_id: session.id,
            ts_ms,
            platform: session.platform,
            country: user.country,
            app_version: user.app_version,
            payload,
        }
    }

    fn think_ms(&mut self) -> i64 {
        (MIN_GAP_MS + self.think.sample(&mut self.rng)) as i64
    }

    fn plan_of(&self, user: u32) -> Plan {
        let account = self.pop.users[user as usize].account;
        self.pop.accounts[account as usize].plan
    }

    /// Puts a session into a free slot of the slab, reusing ended ones.
    fn store(&mut self, session: Session) -> u32 {
        match self.free_slots.pop() {
            Some(slot) => {
                self.sessions[slot as usize] = session;
                slot
            }
            None => {
                self.sessions.push(session);
                (self.sessions.len() - 1) as u32
            }
        }
    }
}

/// Zipf weights over the feature catalog, shifted by what a plan can use.
fn feature_weights(plan: Plan) -> WeightedIndex<f64> {
    WeightedIndex::new(
        FEATURE_SPECS
            .iter()
            .enumerate()
            .map(|(rank, f)| plan_affinity(f.access, plan) / (rank + 1) as f64),
    )
    .expect("every plan has usable features")
}
