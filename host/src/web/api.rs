//! `/api/<analysis>`: a chart's or view's rows under the page's filters
//! (`from`, `to`, `plan` query parameters), exactly as `sluice analysis
//! <name> --format json` prints them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;

use super::{Dashboard, error};
use crate::analyses::{self, Filter, PlanFilter};
use crate::query::{Format, render};

pub(super) async fn analysis(
    State(dashboard): State<Arc<Dashboard>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let filter = match parse_filter(&params) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    if analyses::statement(&name, &filter).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no analysis `{name}`"));
    }
    let answer = match dashboard.session().await {
        Ok(ctx) => crate::query::analysis_in(&ctx, &name, &filter).await,
        Err(e) => Err(e),
    };
    match answer.and_then(|batches| render(&batches, Format::Json)) {
        Ok(json) => json_response(json),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

/// JSON text already rendered.
pub(super) fn json_response(json: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The filter the query parameters ask for; an empty value is no filter.
pub(super) fn parse_filter(params: &HashMap<String, String>) -> Result<Filter, String> {
    let given = |key: &str| params.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let day = |key: &str| {
        given(key)
            .map(|v| {
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .map_err(|_| format!("`{key}` must be a date like 2026-01-05"))
            })
            .transpose()
    };
    let plan = match given("plan") {
        None => PlanFilter::All,
        Some(v) => <PlanFilter as clap::ValueEnum>::from_str(v, true)
            .map_err(|_| "`plan` must be all, free, paid, pro or enterprise".to_string())?,
    };
    Ok(Filter {
        from: day("from")?,
        to: day("to")?,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_come_from_parsed_parameters_only() {
        let filter = parse_filter(&params(&[
            ("from", "2026-01-05"),
            ("to", ""),
            ("plan", "paid"),
        ]))
        .unwrap();
        assert_eq!(filter.from, NaiveDate::from_ymd_opt(2026, 1, 5));
        assert_eq!((filter.to, filter.plan), (None, PlanFilter::Paid));
        for bad in [
            ("from", "2026-01-05' OR 1=1 --"),
            ("to", "yesterday"),
            ("plan", "free' OR 'a'='a"),
        ] {
            assert!(parse_filter(&params(&[bad])).is_err(), "{bad:?}");
        }
        assert_eq!(parse_filter(&params(&[])).unwrap(), Filter::default());
    }
}
