//! Fixed attributes of features and plans for the `dim_feature` and
//! `dim_plan` dimensions.

/// Feature name, category, and whether it is advanced (aimed at paid plans).
/// Advanced follows the event generator's access rules: the features only
/// paid plans really use. Settings, billing and integrations are open to all.
const FEATURES: [(&str, &str, bool); 22] = [
    ("dashboard_view", "core", false),
    ("search", "core", false),
    ("filter_apply", "core", false),
    ("file_upload", "core", false),
    ("file_download", "core", false),
    ("template_use", "core", false),
    ("report_export", "analytics", false),
    ("chart_create", "analytics", false),
    ("chart_edit", "analytics", false),
    ("alert_create", "analytics", false),
    ("alert_edit", "analytics", false),
    ("comment_add", "collaboration", false),
    ("share_link", "collaboration", false),
    ("invite_user", "collaboration", false),
    ("settings_update", "admin", false),
    ("billing_view", "admin", false),
    ("api_key_create", "admin", true),
    ("audit_log_view", "admin", true),
    ("sso_configure", "admin", true),
    ("integration_connect", "automation", false),
    ("workflow_automate", "automation", true),
    ("data_warehouse_sync", "automation", true),
];

/// Category and advanced flag of a feature; unknown ones are `other`.
pub(crate) fn feature(name: &str) -> (&'static str, bool) {
    FEATURES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or(("other", false), |(_, category, advanced)| {
            (category, *advanced)
        })
}

/// Display name, tier and whether it is paid, by plan.
const PLANS: [(&str, &str, i32, bool); 3] = [
    ("free", "Free", 0, false),
    ("pro", "Pro", 1, true),
    ("enterprise", "Enterprise", 2, true),
];

/// Attributes of a plan. Silver only accepts the three known plans; any
/// other (from a different silver plugin) keeps its name, tier -1, unpaid.
pub(crate) fn plan(name: &str) -> (&str, i32, bool) {
    PLANS
        .iter()
        .find(|(n, ..)| *n == name)
        .map_or((name, -1, false), |(_, display, tier, paid)| {
            (*display, *tier, *paid)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(feature("sso_configure"), ("admin", true));
        assert_eq!(feature("search"), ("core", false));
        assert_eq!(feature("teleport"), ("other", false));
        assert_eq!(plan("enterprise"), ("Enterprise", 2, true));
        assert_eq!(plan("gold"), ("gold", -1, false));
    }
}
