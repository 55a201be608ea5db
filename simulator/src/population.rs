//! The simulated customer base: accounts with a plan and country, and their
//! users with a home platform, app version, time zone and activity level.

use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand_distr::LogNormal;

use crate::catalog::{APP_VERSIONS, COUNTRIES, PLAN_MIX, PLATFORM_WEIGHTS, Plan};

pub(crate) struct Account {
    /// Current plan; upgrades change it mid-stream.
    pub plan: Plan,
}

pub(crate) struct User {
    pub account: u32,
    pub country: u8,
    pub platform: u8,
    pub app_version: u8,
    /// Offset added to UTC to get the user's local time, in milliseconds.
    pub utc_offset_ms: i64,
}

pub(crate) struct Population {
    pub accounts: Vec<Account>,
    pub users: Vec<User>,
    /// Picks the user who starts the next session, heavy users more often.
    pub user_picker: WeightedIndex<f64>,
    /// Activity share per country, used to calibrate the day/night curve.
    pub country_share: [f64; COUNTRIES.len()],
}

/// Chance that a user is based in another country than their account.
const FOREIGN_USER_SHARE: f64 = 0.12;

impl Population {
    pub fn generate<R: Rng>(rng: &mut R, accounts: u32, users_per_account: u32) -> Self {
        let plan_pick = WeightedIndex::new(PLAN_MIX).expect("static weights");
        let country_pick =
            WeightedIndex::new(COUNTRIES.iter().map(|c| c.weight)).expect("static weights");
        let platform_pick = WeightedIndex::new(PLATFORM_WEIGHTS).expect("static weights");
        // Newer releases have more users: each release ~35% more than the one before.
        let version_pick =
            WeightedIndex::new((0..APP_VERSIONS.len()).map(|i| 1.35f64.powi(i as i32)))
                .expect("static weights");
        // Activity is heavy-tailed: a few power users, many occasional ones.
        let activity = LogNormal::new(0.0, 0.8).expect("static parameters");

        let total_users = accounts as usize * users_per_account as usize;
        let mut account_list = Vec::with_capacity(accounts as usize);
        let mut users = Vec::with_capacity(total_users);
        let mut weights = Vec::with_capacity(total_users);
        let mut country_share = [0.0; COUNTRIES.len()];
        for account in 0..accounts {
            let plan = Plan::ALL[plan_pick.sample(rng)];
            let home_country = country_pick.sample(rng);
            account_list.push(Account { plan });
            for _ in 0..users_per_account {
                let country = if rng.random_bool(FOREIGN_USER_SHARE) {
                    country_pick.sample(rng)
                } else {
                    home_country
                };
                let weight = activity.sample(rng) * plan_engagement(plan);
                country_share[country] += weight;
                weights.push(weight);
                users.push(User {
                    account,
                    country: country as u8,
                    platform: platform_pick.sample(rng) as u8,
                    app_version: version_pick.sample(rng) as u8,
                    utc_offset_ms: COUNTRIES[country].utc_offset_min * 60_000,
                });
            }
        }
        let total: f64 = weights.iter().sum();
        country_share.iter_mut().for_each(|s| *s /= total);
        Population {
            accounts: account_list,
            users,
            user_picker: WeightedIndex::new(weights).expect("positive activity weights"),
            country_share,
        }
    }
}

/// Paying customers use the product more: that is partly why they pay.
fn plan_engagement(plan: Plan) -> f64 {
    match plan {
        Plan::Free => 0.8,
        Plan::Pro => 1.2,
        Plan::Enterprise => 1.5,
    }
}
