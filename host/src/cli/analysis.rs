//! `sluice analysis <name>`: one analysis or business chart from the lake,
//! filtered by dates and plan, in any output format; without a name, the
//! list of them. The dashboard's `/api/<name>` answers the same.

use std::process::ExitCode;

use chrono::NaiveDate;
use sluice::analyses::{self, Filter, PlanFilter};
use sluice::query::Format;

#[derive(clap::Args)]
pub struct AnalysisArgs {
    /// retention, stickiness, active_days, feature_adoption, feature_first_use,
    /// lifecycle, top_features, feature_trend, engagement, daily_usage, …
    name: Option<String>,
    /// First day (YYYY-MM-DD); weekly analyses start at its week.
    #[arg(long)]
    from: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD).
    #[arg(long)]
    to: Option<NaiveDate>,
    /// Plan: all (overall rows), free, paid (pro and enterprise), pro, enterprise.
    #[arg(long, value_enum, default_value_t)]
    plan: PlanFilter,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub async fn run(lake: &sluice::lake::Lake, args: &AnalysisArgs) -> anyhow::Result<ExitCode> {
    let Some(name) = &args.name else {
        for (name, about) in analyses::names() {
            println!("{name:<18} {about}");
        }
        return Ok(ExitCode::SUCCESS);
    };
    let filter = Filter {
        from: args.from,
        to: args.to,
        plan: args.plan,
    };
    let batches = sluice::query::analysis(lake, name, &filter).await?;
    print!("{}", sluice::query::render(&batches, args.format)?);
    Ok(ExitCode::SUCCESS)
}
