//! SQL over the lake with DataFusion, and the business report built on it.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::pretty::pretty_format_batches;

use crate::lake::Lake;

/// Runs one SQL statement over every table of the lake.
pub async fn sql(lake: &Lake, statement: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let ctx = lake.session().await?;
    let df = ctx.sql(statement).await?;
    Ok(df.collect().await?)
}

/// Renders batches as a text table.
pub fn format(batches: &[RecordBatch]) -> anyhow::Result<String> {
    Ok(pretty_format_batches(batches)?.to_string())
}

/// The report's sections: a title and the query answering it.
pub const REPORT: [(&str, &str); 4] = [
    (
        "Most-used features",
        "SELECT feature, SUM(events) AS events, COUNT(DISTINCT user_id) AS users, \
         ROUND(SUM(total_duration_ms) / 3600000.0, 1) AS hours \
         FROM fact_feature_usage GROUP BY feature ORDER BY events DESC, feature LIMIT 10",
    ),
    (
        "Engagement by plan (per active user)",
        "SELECT plan, COUNT(DISTINCT user_id) AS active_users, SUM(events) AS events, \
         ROUND(CAST(SUM(events) AS DOUBLE) / COUNT(DISTINCT user_id), 1) AS events_per_user, \
         ROUND(CAST(SUM(sessions) AS DOUBLE) / COUNT(DISTINCT user_id), 2) AS sessions_per_user \
         FROM fact_user_daily GROUP BY plan ORDER BY plan",
    ),
    (
        "Free vs paid",
        "SELECT CASE WHEN plan = 'free' THEN 'free' ELSE 'paid' END AS tier, \
         COUNT(DISTINCT user_id) AS active_users, \
         ROUND(CAST(SUM(events) AS DOUBLE) / COUNT(DISTINCT user_id), 1) AS events_per_user, \
         ROUND(CAST(SUM(sessions) AS DOUBLE) / COUNT(DISTINCT user_id), 2) AS sessions_per_user \
         FROM fact_user_daily GROUP BY 1 ORDER BY 1",
    ),
    (
        "Usage over time (daily active users and events, per plan)",
        "SELECT date_key, plan, active_users, events, sessions \
         FROM fact_daily_active_users ORDER BY date_key, plan",
    ),
];

/// Runs every report query and renders the answers.
pub async fn report(lake: &Lake) -> anyhow::Result<String> {
    let mut out = String::new();
    for (title, statement) in REPORT {
        let batches = sql(lake, statement).await?;
        out.push_str(&format!("\n## {title}\n{}\n", format(&batches)?));
    }
    Ok(out)
}
