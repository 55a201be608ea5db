//! SQL over the lake with DataFusion (the analyses' views included), the
//! business report built on it, and the output formats both print in.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::Lake;

/// A DataFusion session over every table of the lake and the analyses'
/// views.
pub async fn session(lake: &Lake) -> anyhow::Result<SessionContext> {
    let ctx = lake.session().await?;
    crate::analyses::register(&ctx).await;
    Ok(ctx)
}

/// Runs one SQL statement over every table of the lake and the analyses'
/// views. An empty answer is one empty batch, so its columns are still known.
pub async fn sql(lake: &Lake, statement: &str) -> anyhow::Result<Vec<RecordBatch>> {
    sql_in(&session(lake).await?, statement).await
}

/// Runs one SQL statement in a session from [`session`].
pub async fn sql_in(ctx: &SessionContext, statement: &str) -> anyhow::Result<Vec<RecordBatch>> {
    let df = ctx.sql(statement).await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(vec![RecordBatch::new_empty(schema)]);
    }
    Ok(batches)
}

/// The answer to the analysis or chart `name` (see [`crate::analyses`])
/// under `filter`.
pub async fn analysis(
    lake: &Lake,
    name: &str,
    filter: &crate::analyses::Filter,
) -> anyhow::Result<Vec<RecordBatch>> {
    analysis_in(&session(lake).await?, name, filter).await
}

/// [`analysis`] in a session from [`session`].
pub async fn analysis_in(
    ctx: &SessionContext,
    name: &str,
    filter: &crate::analyses::Filter,
) -> anyhow::Result<Vec<RecordBatch>> {
    let statement = crate::analyses::statement(name, filter).ok_or_else(|| {
        let known: Vec<_> = crate::analyses::names()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        anyhow::anyhow!("no analysis `{name}`; there are {}", known.join(", "))
    })?;
    sql_in(ctx, &statement).await
}

/// Renders batches as a text table.
pub fn format(batches: &[RecordBatch]) -> anyhow::Result<String> {
    Ok(pretty_format_batches(batches)?.to_string())
}

/// How `query`, `report` and `analysis` print results: a table for people,
/// CSV for spreadsheets, a JSON array or NDJSON for scripts and BI tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    /// A header line, then one line per row; nulls are empty fields.
    Csv,
    /// One array of objects, every column in every object (nulls as null).
    Json,
    /// One object per line, like `json`.
    Ndjson,
}

/// Renders batches in `format`. CSV and JSON keep the values the table
/// shows: timestamps in RFC 3339, dates as `YYYY-MM-DD`, binary as hex.
pub fn render(batches: &[RecordBatch], format: Format) -> anyhow::Result<String> {
    use deltalake::arrow::{csv, json};
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let bytes = match format {
        Format::Table => return format_table(batches),
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            for batch in batches {
                writer.write(batch)?;
            }
            writer.into_inner()
        }
        Format::Json => {
            let mut writer = json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, json::writer::JsonArray>(Vec::new());
            writer.write_batches(&refs)?;
            writer.finish()?;
            let mut out = writer.into_inner();
            out.push(b'\n');
            out
        }
        Format::Ndjson => {
            let mut writer = json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, json::writer::LineDelimited>(Vec::new());
            writer.write_batches(&refs)?;
            writer.finish()?;
            writer.into_inner()
        }
    };
    Ok(String::from_utf8(bytes)?)
}

fn format_table(batches: &[RecordBatch]) -> anyhow::Result<String> {
    Ok(format(batches)? + "\n")
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

/// Runs every report query and renders the answers as tables.
pub async fn report(lake: &Lake) -> anyhow::Result<String> {
    report_as(lake, Format::Table).await
}

/// Runs every report query and renders the answers in `format`: tables and
/// CSV under a `## title` / `# title` line each (CSV sections apart by a
/// blank line; `#` is the comment mark spreadsheet importers skip), JSON as
/// one array of `{"section", "rows"}`, NDJSON as rows carrying a `section`.
pub async fn report_as(lake: &Lake, format: Format) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut sections = Vec::new();
    for (title, statement) in REPORT {
        let batches = sql(lake, statement).await?;
        match format {
            Format::Table => out.push_str(&format!("\n## {title}\n{}", render(&batches, format)?)),
            Format::Csv => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("# {title}\n{}", render(&batches, format)?));
            }
            Format::Json => {
                let rows: serde_json::Value = serde_json::from_str(&render(&batches, format)?)?;
                sections.push(serde_json::json!({"section": title, "rows": rows}));
            }
            Format::Ndjson => {
                for line in render(&batches, format)?.lines() {
                    let mut row: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(line)?;
                    row.insert("section".into(), title.into());
                    out.push_str(&serde_json::Value::Object(row).to_string());
                    out.push('\n');
                }
            }
        }
    }
    if format == Format::Json {
        out = serde_json::to_string_pretty(&sections)? + "\n";
    }
    Ok(out)
}
