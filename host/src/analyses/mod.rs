//! The analyses product teams ask for — retention cohorts, stickiness,
//! feature adoption, lifecycle — as SQL views the host computes over the
//! gold tables when they are read, so a late event or a replay is in the
//! next answer with nothing to recompute. Read-only: nothing here writes.

mod views;

use chrono::{Datelike, NaiveDate};
use deltalake::datafusion::prelude::SessionContext;

pub use views::{CHARTS, VIEWS};

/// Registers every analysis view in `ctx` (a session over the lake's
/// tables). A view whose tables the lake lacks (nothing refined yet, or a
/// gold plugin with other tables), or whose name a table already has, is
/// left out: the query naming it then says it does not exist.
pub async fn register(ctx: &SessionContext) {
    for view in VIEWS {
        let statement = format!("CREATE VIEW {} AS {}", view.name, view.sql);
        if let Err(e) = ctx.sql(&statement).await {
            tracing::debug!(view = view.name, error = %e, "analysis view not available");
        }
    }
}

/// Which plan (or plan group) a filtered answer is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanFilter {
    /// Every plan; views split by plan show their `all` rows.
    #[default]
    All,
    Free,
    /// Pro and enterprise.
    Paid,
    Pro,
    Enterprise,
}

impl PlanFilter {
    /// The predicate on a column of plan names (`free`, `pro`,
    /// `enterprise`, and `all` where a view adds an overall row).
    fn on_plan(self, column: &str) -> Option<String> {
        Some(match self {
            PlanFilter::All => return None,
            PlanFilter::Free => format!("{column} = 'free'"),
            PlanFilter::Paid => format!("{column} IN ('pro', 'enterprise')"),
            PlanFilter::Pro => format!("{column} = 'pro'"),
            PlanFilter::Enterprise => format!("{column} = 'enterprise'"),
        })
    }

    /// The predicate on a segment column (`all`, `free`, `paid`: the plan
    /// at a user's first sighting).
    fn on_segment(self, column: &str) -> String {
        let segment = match self {
            PlanFilter::All => "all",
            PlanFilter::Free => "free",
            PlanFilter::Paid | PlanFilter::Pro | PlanFilter::Enterprise => "paid",
        };
        format!("{column} = '{segment}'")
    }
}

/// A date range and a plan: what the dashboard's filters and the CLI's
/// `--from`, `--to`, `--plan` ask for. Values are parsed, never pasted, so
/// they cannot change a statement's meaning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub plan: PlanFilter,
}

/// How a view's rows are placed in time and by plan, for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// A `DATE` column holding a day.
    Day(&'static str),
    /// A `DATE` column holding the Monday of a week.
    Week(&'static str),
    /// An `INT` column holding `yyyymmdd` (gold's `date_key`).
    DateKey(&'static str),
    /// Plan names.
    Plan(&'static str),
    /// Plan names and `all` (every plan together): no plan filter means
    /// the `all` rows.
    PlanWithAll(&'static str),
    /// `all`, `free`, `paid`.
    Segment(&'static str),
}

impl Filter {
    /// `WHERE …` (or nothing) for a relation with `columns`.
    pub fn where_clause(&self, columns: &[Column]) -> String {
        let mut terms = Vec::new();
        for column in columns {
            match *column {
                Column::Day(c) => terms.extend(self.range(c, date_literal, |d| d)),
                Column::Week(c) => terms.extend(self.range(c, date_literal, monday)),
                Column::DateKey(c) => {
                    terms.extend(self.range(c, |d| date_key(d).to_string(), |d| d))
                }
                Column::Plan(c) => terms.extend(self.plan.on_plan(c)),
                Column::PlanWithAll(c) => terms.push(
                    self.plan
                        .on_plan(c)
                        .unwrap_or_else(|| format!("{c} = 'all'")),
                ),
                Column::Segment(c) => terms.push(self.plan.on_segment(c)),
            }
        }
        if terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", terms.join(" AND "))
        }
    }

    /// `column >= from AND column <= to`, with `from` moved by `start`
    /// (a week starts on the Monday of `from`).
    fn range(
        &self,
        column: &str,
        literal: impl Fn(NaiveDate) -> String,
        start: impl Fn(NaiveDate) -> NaiveDate,
    ) -> Vec<String> {
        let mut terms = Vec::new();
        if let Some(from) = self.from {
            terms.push(format!("{column} >= {}", literal(start(from))));
        }
        if let Some(to) = self.to {
            terms.push(format!("{column} <= {}", literal(to)));
        }
        terms
    }
}

fn date_literal(day: NaiveDate) -> String {
    format!("DATE '{}'", day.format("%Y-%m-%d"))
}

/// Gold's `date_key` of a day: `yyyymmdd`.
pub fn date_key(day: NaiveDate) -> i32 {
    day.year() * 10_000 + day.month() as i32 * 100 + day.day() as i32
}

/// The Monday of the week `day` is in (weeks start on Monday, as ISO's do).
pub fn monday(day: NaiveDate) -> NaiveDate {
    day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday()))
}

/// One analysis as `sluice analysis <name>` and `/api/<name>` answer it.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub about: &'static str,
    pub sql: &'static str,
    /// What the filters apply to (a helper view has nothing to filter).
    pub columns: &'static [Column],
    pub order_by: &'static str,
    /// A building block of other views rather than an answer.
    pub helper: bool,
}

/// A business question as the dashboard charts it: a statement the filter
/// goes into before it aggregates.
#[derive(Debug, Clone, Copy)]
pub struct Chart {
    pub name: &'static str,
    pub about: &'static str,
    /// SQL with `{where}` where the filter's `WHERE` clause goes.
    pub template: &'static str,
    pub columns: &'static [Column],
}

/// Names and one-line descriptions of everything [`statement`] answers.
pub fn names() -> Vec<(&'static str, &'static str)> {
    CHARTS
        .iter()
        .map(|c| (c.name, c.about))
        .chain(VIEWS.iter().map(|v| (v.name, v.about)))
        .collect()
}

/// The ordered statement answering the chart or view `name` under
/// `filter`, if there is one by that name.
pub fn statement(name: &str, filter: &Filter) -> Option<String> {
    if let Some(chart) = CHARTS.iter().find(|c| c.name == name) {
        return Some(
            chart
                .template
                .replace("{where}", &filter.where_clause(chart.columns)),
        );
    }
    let view = VIEWS.iter().find(|v| v.name == name)?;
    Some(format!(
        "SELECT * FROM {}{} ORDER BY {}",
        view.name,
        filter.where_clause(view.columns),
        view.order_by
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn weeks_start_on_monday() {
        assert_eq!(monday(day("2026-01-05")), day("2026-01-05"));
        assert_eq!(monday(day("2026-01-11")), day("2026-01-05"));
        assert_eq!(monday(day("2026-01-12")), day("2026-01-12"));
        assert_eq!(date_key(day("2026-01-05")), 20_260_105);
    }

    #[test]
    fn filters_become_predicates_on_parsed_values() {
        let filter = Filter {
            from: Some(day("2026-01-07")),
            to: Some(day("2026-01-20")),
            plan: PlanFilter::Paid,
        };
        let clause = filter.where_clause(&[Column::Week("week"), Column::Segment("segment")]);
        assert_eq!(
            clause,
            " WHERE week >= DATE '2026-01-05' AND week <= DATE '2026-01-20' AND segment = 'paid'"
        );
        let clause = filter.where_clause(&[Column::DateKey("date_key"), Column::Plan("plan")]);
        assert_eq!(
            clause,
            " WHERE date_key >= 20260107 AND date_key <= 20260120 AND plan IN ('pro', 'enterprise')"
        );
        let all = Filter::default().where_clause(&[Column::PlanWithAll("plan")]);
        assert_eq!(all, " WHERE plan = 'all'");
        assert_eq!(Filter::default().where_clause(&[Column::Plan("plan")]), "");
        assert_eq!(Filter::default().where_clause(&[Column::Day("day")]), "");
    }

    #[test]
    fn every_view_has_a_unique_name_and_helpers_come_first() {
        let mut names: Vec<_> = VIEWS.iter().map(|v| v.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), VIEWS.len());
        let first_answer = VIEWS.iter().position(|v| !v.helper).unwrap();
        assert!(VIEWS[first_answer..].iter().all(|v| !v.helper));
        assert!(
            CHARTS
                .iter()
                .all(|c| VIEWS.iter().all(|v| v.name != c.name))
        );
    }

    #[test]
    fn charts_take_the_filter_before_they_aggregate() {
        let filter = Filter {
            plan: PlanFilter::Free,
            ..Default::default()
        };
        let sql = statement("top_features", &filter).unwrap();
        assert!(
            sql.contains("FROM fact_feature_usage WHERE plan = 'free' GROUP BY"),
            "{sql}"
        );
        assert!(statement("nothing", &filter).is_none());
    }
}
