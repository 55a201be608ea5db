//! The analyses' SQL. Weeks start on Monday and are computed as days since
//! 1970-01-01 (a Thursday, hence the `+ 3`); a user is active on a day when
//! `fact_user_daily` has a row for them (any accepted event), under the plan
//! their events carried that day.

use super::Column::{DateKey, Day, Plan, PlanWithAll, Segment, Week};
use super::{Chart, View};

/// Every view, helpers first (later views read them).
pub const VIEWS: [View; 8] = [
    View {
        name: "user_activity",
        about: "One row per user, plan and active day, with the day's and its week's number",
        sql: "SELECT DISTINCT f.user_id, f.plan, d.date AS day, \
              CAST(d.date AS INT) AS day_num, \
              CAST(d.date AS INT) - (CAST(d.date AS INT) + 3) % 7 AS week_num \
              FROM fact_user_daily f JOIN dim_date d ON f.date_key = d.date_key",
        columns: &[Day("day"), Plan("plan")],
        order_by: "day, user_id, plan",
        helper: true,
    },
    View {
        name: "user_cohort",
        about: "Each user's cohort (the week first seen) and segment (free or paid at first sight)",
        sql: "WITH first_seen AS ( \
                SELECT user_id, plan FROM ( \
                  SELECT user_id, plan, ROW_NUMBER() OVER ( \
                    PARTITION BY user_id ORDER BY valid_from, account_id, plan) AS nth \
                  FROM dim_user) AS versions \
                WHERE nth = 1) \
              SELECT a.user_id, MIN(a.week_num) AS cohort_num, \
                CAST(MIN(a.week_num) AS DATE) AS cohort_week, \
                CASE WHEN MIN(f.plan) = 'free' THEN 'free' ELSE 'paid' END AS segment \
              FROM user_activity a JOIN first_seen f ON a.user_id = f.user_id \
              GROUP BY a.user_id",
        columns: &[Week("cohort_week"), Segment("segment")],
        order_by: "cohort_week, user_id",
        helper: true,
    },
    View {
        name: "retention",
        about: "Cohorts by week first seen × weeks since: active users and their share, \
                overall and by plan at first sight (free, paid)",
        sql: "WITH members AS ( \
                SELECT user_id, cohort_num, 'all' AS segment FROM user_cohort \
                UNION ALL SELECT user_id, cohort_num, segment FROM user_cohort), \
              sizes AS ( \
                SELECT cohort_num, segment, COUNT(*) AS cohort_users \
                FROM members GROUP BY cohort_num, segment), \
              weeks AS (SELECT DISTINCT week_num FROM user_activity), \
              active_weeks AS (SELECT DISTINCT user_id, week_num FROM user_activity), \
              active AS ( \
                SELECT m.cohort_num, m.segment, w.week_num, COUNT(*) AS active_users \
                FROM members m JOIN active_weeks w ON m.user_id = w.user_id \
                GROUP BY m.cohort_num, m.segment, w.week_num) \
              SELECT CAST(s.cohort_num AS DATE) AS cohort_week, s.segment, \
                CAST((w.week_num - s.cohort_num) / 7 AS BIGINT) AS week_number, \
                s.cohort_users, \
                COALESCE(a.active_users, 0) AS active_users, \
                ROUND(100.0 * COALESCE(a.active_users, 0) / s.cohort_users, 1) AS active_pct \
              FROM sizes s JOIN weeks w ON w.week_num >= s.cohort_num \
              LEFT JOIN active a ON a.cohort_num = s.cohort_num AND a.segment = s.segment \
                AND a.week_num = w.week_num",
        columns: &[Week("cohort_week"), Segment("segment")],
        order_by: "cohort_week, segment, week_number",
        helper: false,
    },
    View {
        name: "stickiness",
        about: "Per day and plan (and all): DAU, WAU (7 days to the day), MAU (30 days), DAU/MAU",
        sql: "WITH by_plan AS ( \
                SELECT user_id, plan, day_num FROM user_activity \
                UNION ALL SELECT DISTINCT user_id, 'all' AS plan, day_num FROM user_activity), \
              days AS (SELECT DISTINCT day_num FROM user_activity) \
              SELECT CAST(x.day_num AS DATE) AS day, u.plan, \
                COUNT(DISTINCT CASE WHEN u.day_num = x.day_num THEN u.user_id END) AS dau, \
                COUNT(DISTINCT CASE WHEN u.day_num > x.day_num - 7 THEN u.user_id END) AS wau, \
                COUNT(DISTINCT u.user_id) AS mau, \
                ROUND(CAST(COUNT(DISTINCT CASE WHEN u.day_num = x.day_num THEN u.user_id END) \
                  AS DOUBLE) / COUNT(DISTINCT u.user_id), 3) AS dau_mau \
              FROM days x JOIN by_plan u \
                ON u.day_num <= x.day_num AND u.day_num > x.day_num - 30 \
              GROUP BY x.day_num, u.plan",
        columns: &[Day("day"), PlanWithAll("plan")],
        order_by: "day, plan",
        helper: false,
    },
    View {
        name: "active_days",
        about: "Per week and plan (and all): how many users were active on 1, 2, … 7 days",
        sql: "WITH per_user AS ( \
                SELECT week_num, plan, user_id, COUNT(*) AS days \
                FROM user_activity GROUP BY week_num, plan, user_id \
                UNION ALL \
                SELECT week_num, 'all' AS plan, user_id, COUNT(DISTINCT day_num) AS days \
                FROM user_activity GROUP BY week_num, user_id) \
              SELECT CAST(week_num AS DATE) AS week, plan, days AS active_days, \
                COUNT(*) AS users \
              FROM per_user GROUP BY week_num, plan, days",
        columns: &[Week("week"), PlanWithAll("plan")],
        order_by: "week, plan, active_days",
        helper: false,
    },
    View {
        name: "feature_adoption",
        about: "Per week, feature and plan (and all): users who used it, their share of the \
                week's active users (reach) and uses per user (frequency)",
        sql: "WITH used_by AS ( \
                SELECT u.feature, u.plan, u.user_id, u.events, \
                  CAST(d.date AS INT) - (CAST(d.date AS INT) + 3) % 7 AS week_num \
                FROM fact_feature_usage u JOIN dim_date d ON u.date_key = d.date_key), \
              by_plan AS ( \
                SELECT week_num, feature, plan, user_id, events FROM used_by \
                UNION ALL SELECT week_num, feature, 'all' AS plan, user_id, events FROM used_by), \
              used AS ( \
                SELECT week_num, feature, plan, COUNT(DISTINCT user_id) AS users, \
                  SUM(events) AS uses \
                FROM by_plan GROUP BY week_num, feature, plan), \
              active AS ( \
                SELECT week_num, plan, COUNT(DISTINCT user_id) AS active_users \
                FROM user_activity GROUP BY week_num, plan \
                UNION ALL \
                SELECT week_num, 'all' AS plan, COUNT(DISTINCT user_id) AS active_users \
                FROM user_activity GROUP BY week_num) \
              SELECT CAST(u.week_num AS DATE) AS week, u.feature, u.plan, u.users, \
                a.active_users, ROUND(100.0 * u.users / a.active_users, 1) AS reach_pct, \
                u.uses, ROUND(CAST(u.uses AS DOUBLE) / u.users, 2) AS uses_per_user \
              FROM used u JOIN active a ON u.week_num = a.week_num AND u.plan = a.plan",
        columns: &[Week("week"), PlanWithAll("plan")],
        order_by: "week, plan, users DESC, feature",
        helper: false,
    },
    View {
        name: "feature_first_use",
        about: "When each user first used each feature",
        sql: "SELECT user_id, feature, MIN(first_used_at) AS first_used_at, \
                CAST(MIN(first_used_at) AS DATE) AS first_use_date \
              FROM fact_feature_usage GROUP BY user_id, feature",
        columns: &[Day("first_use_date")],
        order_by: "first_used_at, user_id, feature",
        helper: false,
    },
    View {
        name: "lifecycle",
        about: "Per week, overall and by plan at first sight: new, returning (active the \
                week before too), resurrected (back after a gap) and dormant (active the \
                week before, not this one) users",
        sql: "WITH members AS ( \
                SELECT user_id, cohort_num, 'all' AS segment FROM user_cohort \
                UNION ALL SELECT user_id, cohort_num, segment FROM user_cohort), \
              cur AS (SELECT DISTINCT user_id, week_num FROM user_activity), \
              prev AS (SELECT user_id, week_num + 7 AS week_num FROM cur), \
              last_week AS (SELECT MAX(week_num) AS week_num FROM cur), \
              flags AS ( \
                SELECT COALESCE(c.user_id, p.user_id) AS user_id, \
                  COALESCE(c.week_num, p.week_num) AS week_num, \
                  c.user_id IS NOT NULL AS active, p.user_id IS NOT NULL AS was_active \
                FROM cur c FULL OUTER JOIN prev p \
                  ON c.user_id = p.user_id AND c.week_num = p.week_num) \
              SELECT CAST(f.week_num AS DATE) AS week, m.segment, \
                SUM(CASE WHEN f.active AND m.cohort_num = f.week_num THEN 1 ELSE 0 END) \
                  AS new_users, \
                SUM(CASE WHEN f.active AND m.cohort_num < f.week_num AND f.was_active \
                  THEN 1 ELSE 0 END) AS returning_users, \
                SUM(CASE WHEN f.active AND m.cohort_num < f.week_num AND NOT f.was_active \
                  THEN 1 ELSE 0 END) AS resurrected_users, \
                SUM(CASE WHEN NOT f.active THEN 1 ELSE 0 END) AS dormant_users \
              FROM flags f JOIN members m ON f.user_id = m.user_id \
                CROSS JOIN last_week l \
              WHERE f.week_num <= l.week_num \
              GROUP BY f.week_num, m.segment",
        columns: &[Week("week"), Segment("segment")],
        order_by: "week, segment",
        helper: false,
    },
];

/// The three business questions, filtered before they aggregate (`{where}`
/// is where the filter goes). Unfiltered, they give the report's numbers.
pub const CHARTS: [Chart; 4] = [
    Chart {
        name: "top_features",
        about: "The ten most-used features: events and users",
        template: "SELECT feature, SUM(events) AS events, COUNT(DISTINCT user_id) AS users \
                   FROM fact_feature_usage{where} \
                   GROUP BY feature ORDER BY events DESC, feature LIMIT 10",
        columns: &[DateKey("date_key"), Plan("plan")],
    },
    Chart {
        name: "feature_trend",
        about: "Events per week of the ten most-used features",
        template: "WITH used AS ( \
                     SELECT u.feature, u.events, \
                       CAST(d.date AS INT) - (CAST(d.date AS INT) + 3) % 7 AS week_num \
                     FROM fact_feature_usage u JOIN dim_date d ON u.date_key = d.date_key{where}), \
                   top AS ( \
                     SELECT feature FROM used GROUP BY feature \
                     ORDER BY SUM(events) DESC, feature LIMIT 10) \
                   SELECT CAST(used.week_num AS DATE) AS week, used.feature, \
                     SUM(used.events) AS events \
                   FROM used JOIN top ON used.feature = top.feature \
                   GROUP BY used.week_num, used.feature ORDER BY week, events DESC, feature",
        columns: &[DateKey("u.date_key"), Plan("u.plan")],
    },
    Chart {
        name: "engagement",
        about: "Free vs paid: active users, events and sessions per active user",
        template: "SELECT CASE WHEN plan = 'free' THEN 'free' ELSE 'paid' END AS tier, \
                     COUNT(DISTINCT user_id) AS active_users, SUM(events) AS events, \
                     SUM(sessions) AS sessions, \
                     ROUND(CAST(SUM(events) AS DOUBLE) / COUNT(DISTINCT user_id), 1) \
                       AS events_per_user, \
                     ROUND(CAST(SUM(sessions) AS DOUBLE) / COUNT(DISTINCT user_id), 2) \
                       AS sessions_per_user \
                   FROM fact_user_daily{where} GROUP BY 1 ORDER BY 1",
        columns: &[DateKey("date_key"), Plan("plan")],
    },
    Chart {
        name: "daily_usage",
        about: "Daily active users, events and sessions per plan",
        template: "SELECT d.date AS day, a.plan, a.active_users, a.events, a.sessions \
                   FROM fact_daily_active_users a JOIN dim_date d ON a.date_key = d.date_key{where} \
                   ORDER BY day, plan",
        columns: &[DateKey("a.date_key"), Plan("a.plan")],
    },
];
