//! Static catalogs the simulator draws from: plans, event types, features,
//! platforms, countries, app versions and login methods.

/// A subscription plan. Users inherit the plan of their account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plan {
    Free,
    Pro,
    Enterprise,
}

impl Plan {
    /// All plans, cheapest first; the index is the plan's tier.
    pub const ALL: [Plan; 3] = [Plan::Free, Plan::Pro, Plan::Enterprise];

    /// The contract spelling (`"free"`, `"pro"`, `"enterprise"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }

    /// The plan an upgrade moves to, if there is a higher tier.
    pub fn upgrade(self) -> Option<Plan> {
        match self {
            Plan::Free => Some(Plan::Pro),
            Plan::Pro => Some(Plan::Enterprise),
            Plan::Enterprise => None,
        }
    }

    pub(crate) fn tier(self) -> usize {
        self as usize
    }
}

/// Every valid `event_type` value of the contract.
pub const EVENT_TYPES: [&str; 4] = ["login", "feature_used", "session_end", "plan_changed"];

/// Every valid `platform` value of the contract.
pub const PLATFORMS: [&str; 5] = ["web", "ios", "android", "desktop_windows", "desktop_mac"];

/// Every valid `properties.method` value of a `login` event.
pub const LOGIN_METHODS: [&str; 3] = ["password", "sso", "google"];

/// Who can reach a feature; advanced features sit behind paid plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Available and used on every plan.
    Basic,
    /// Technically reachable on free (trials, limited quota) but rarely used there.
    Paid,
    /// Not available on the free plan at all.
    PaidOnly,
}

/// How a feature is used: its typical interaction length and item count.
pub(crate) struct FeatureSpec {
    pub name: &'static str,
    pub median_duration_ms: f64,
    pub mean_items: f64,
    pub access: Access,
}

const fn feature(
    name: &'static str,
    median_duration_ms: f64,
    mean_items: f64,
    access: Access,
) -> FeatureSpec {
    FeatureSpec {
        name,
        median_duration_ms,
        mean_items,
        access,
    }
}

/// Features in popularity order; the generator gives rank `r` a Zipf weight `1/r`.
pub(crate) const FEATURE_SPECS: [FeatureSpec; 22] = [
    feature("dashboard_view", 20_000.0, 0.5, Access::Basic),
    feature("search", 12_000.0, 1.5, Access::Basic),
    feature("report_export", 25_000.0, 1.0, Access::Basic),
    feature("filter_apply", 5_000.0, 1.5, Access::Basic),
    feature("chart_create", 45_000.0, 1.0, Access::Basic),
    feature("chart_edit", 30_000.0, 1.0, Access::Basic),
    feature("comment_add", 15_000.0, 1.0, Access::Basic),
    feature("share_link", 6_000.0, 1.0, Access::Basic),
    feature("file_upload", 20_000.0, 2.0, Access::Basic),
    feature("file_download", 8_000.0, 1.5, Access::Basic),
    feature("invite_user", 12_000.0, 1.5, Access::Basic),
    feature("alert_create", 25_000.0, 1.0, Access::Basic),
    feature("template_use", 18_000.0, 1.0, Access::Basic),
    feature("alert_edit", 20_000.0, 1.0, Access::Basic),
    feature("integration_connect", 60_000.0, 1.0, Access::Basic),
    feature("settings_update", 15_000.0, 1.0, Access::Basic),
    feature("billing_view", 10_000.0, 0.2, Access::Basic),
    feature("api_key_create", 10_000.0, 1.0, Access::Paid),
    feature("workflow_automate", 90_000.0, 2.0, Access::Paid),
    feature("data_warehouse_sync", 120_000.0, 3.0, Access::Paid),
    feature("audit_log_view", 30_000.0, 5.0, Access::PaidOnly),
    feature("sso_configure", 120_000.0, 0.5, Access::PaidOnly),
];

/// Every `feature` value the simulator emits, most popular first.
pub const FEATURES: [&str; 22] = {
    let mut names = [""; 22];
    let mut i = 0;
    while i < names.len() {
        names[i] = FEATURE_SPECS[i].name;
        i += 1;
    }
    names
};

/// True for features aimed at paid plans (API keys, SSO, audit log, automation, ...).
pub fn is_advanced_feature(name: &str) -> bool {
    FEATURE_SPECS
        .iter()
        .any(|f| f.name == name && f.access != Access::Basic)
}

/// How much more (or less) a plan uses a feature class than the Zipf baseline.
pub(crate) fn plan_affinity(access: Access, plan: Plan) -> f64 {
    match (access, plan) {
        (Access::Basic, _) => 1.0,
        (Access::Paid, Plan::Free) => 0.03,
        (Access::Paid, Plan::Pro) => 1.0,
        (Access::Paid, Plan::Enterprise) => 2.5,
        (Access::PaidOnly, Plan::Free) => 0.0,
        (Access::PaidOnly, Plan::Pro) => 0.6,
        (Access::PaidOnly, Plan::Enterprise) => 3.0,
    }
}

/// Relative share of users whose main platform is each of [`PLATFORMS`].
pub(crate) const PLATFORM_WEIGHTS: [f64; 5] = [48.0, 18.0, 10.0, 12.0, 12.0];

/// A country: ISO-2 code, relative share of accounts, and the UTC offset
/// (minutes, January) that drives its users' day/night rhythm.
pub(crate) struct Country {
    pub code: &'static str,
    pub weight: f64,
    pub utc_offset_min: i64,
}

const fn country(code: &'static str, weight: f64, utc_offset_min: i64) -> Country {
    Country {
        code,
        weight,
        utc_offset_min,
    }
}

pub(crate) const COUNTRIES: [Country; 15] = [
    country("US", 22.0, -360),
    country("FR", 12.0, 60),
    country("GB", 10.0, 0),
    country("DE", 9.0, 60),
    country("BR", 8.0, -180),
    country("IN", 7.0, 330),
    country("ES", 5.0, 60),
    country("CA", 5.0, -300),
    country("NL", 4.0, 60),
    country("SG", 4.0, 480),
    country("JP", 4.0, 540),
    country("PL", 3.0, 60),
    country("AU", 3.0, 660),
    country("SE", 2.0, 60),
    country("MX", 2.0, -360),
];

/// Released app versions, oldest first; newer ones have more users.
pub(crate) const APP_VERSIONS: [&str; 20] = [
    "5.11.0", "5.11.1", "5.11.2", "5.11.3", "5.12.0", "5.12.1", "5.12.2", "5.12.3", "5.13.0",
    "5.13.1", "5.13.2", "5.13.3", "5.14.0", "5.14.1", "5.14.2", "5.14.3", "5.15.0", "5.15.1",
    "5.15.2", "5.15.3",
];

/// Login method mix per plan tier, in [`LOGIN_METHODS`] order: enterprises
/// mostly sign in through SSO, free users never can.
pub(crate) const LOGIN_METHOD_WEIGHTS: [[f64; 3]; 3] =
    [[0.60, 0.00, 0.40], [0.50, 0.15, 0.35], [0.20, 0.65, 0.15]];

/// Share of accounts on each plan tier at the start of the simulation.
pub(crate) const PLAN_MIX: [f64; 3] = [0.70, 0.24, 0.06];
