//! The dashboard in a real browser: headless Chromium loads the page a
//! `sluice run` fed by the simulator serves, and every chart shows the
//! numbers its JSON endpoint (and `sluice analysis`) gives, with and without
//! the plan filter; quarantined bytes appear as text, never as markup; a
//! screenshot is kept under `target/test-artifacts/`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

/// Chromium, or `None` (after saying why) when it is not installed and CI
/// did not ask for it; under `SLUICE_TEST_REQUIRE_SERVICES=1` its absence fails.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(move |dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .find(|p| p.is_file());
    if found.is_none() {
        let why = "no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)";
        if std::env::var("SLUICE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{why}");
        }
        eprintln!("skipping the browser test: {why}");
    }
    found
}

/// A headless browser run over `url` with `args` (`--dump-dom`,
/// `--screenshot=…`): scripts run and fetches finish within the virtual
/// time budget; the process is bounded in real time too.
async fn browse(chromium: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium finished within two minutes")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The markup of the element with `id` up to the end of its section (or
/// of the page's main part).
fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in the page"));
    let end = ["</section>", "</main>"]
        .iter()
        .filter_map(|mark| dom[start..].find(mark))
        .min()
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The value of attribute `name` in the first tag of `markup` at or after `from`.
fn attribute(markup: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = markup.find(&needle)? + needle.len();
    let end = markup[start..].find('"')? + start;
    Some(
        markup[start..end]
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Every tag of `markup` that starts with `prefix` (e.g. `<g class="bar"`).
fn tags<'a>(markup: &'a str, prefix: &str) -> Vec<&'a str> {
    markup
        .match_indices(prefix)
        .map(|(i, _)| {
            let end = markup[i..].find('>').map_or(markup.len(), |e| i + e);
            &markup[i..end]
        })
        .collect()
}

/// (label, value) of the bars of a bar chart.
fn bars(dom: &str, id: &str) -> Vec<(String, String)> {
    tags(element(dom, id), "<g class=\"bar\"")
        .into_iter()
        .map(|t| {
            (
                attribute(t, "data-label").unwrap(),
                attribute(t, "data-value").unwrap(),
            )
        })
        .collect()
}

/// series → (x, value) of the last point of each line of a line chart.
fn last_points(dom: &str, id: &str) -> Vec<(String, String, String)> {
    let chart = element(dom, id);
    let mut out = Vec::new();
    for (i, _) in chart.match_indices("<g class=\"series\"") {
        let group = &chart[i..];
        let series = attribute(&group[..group.find('>').unwrap()], "data-series").unwrap();
        let last = tags(group, "<text class=\"last\"")[0];
        out.push((
            series,
            attribute(last, "data-x").unwrap(),
            attribute(last, "data-value").unwrap(),
        ));
    }
    out
}

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// Per plan, the latest day's active users in `/api/daily_usage` rows.
fn latest_dau(rows: &Value) -> Vec<(String, String, String)> {
    let mut by_plan: std::collections::BTreeMap<String, (String, String)> = Default::default();
    for row in rows.as_array().unwrap() {
        let (plan, day) = (row["plan"].as_str().unwrap(), row["day"].as_str().unwrap());
        let entry = by_plan
            .entry(plan.to_string())
            .or_insert((String::new(), String::new()));
        if day > entry.0.as_str() {
            *entry = (day.to_string(), row["active_users"].to_string());
        }
    }
    by_plan.into_iter().map(|(p, (d, v))| (p, d, v)).collect()
}

/// Starts `sluice run` with the collector, metrics and dashboard on free
/// ports; returns the child and the collector's and dashboard's base URLs.
fn start_service(dir: &Path) -> (std::process::Child, String, String) {
    let dashboard_port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--listen", "127.0.0.1:0", "--lake"])
        .arg(dir.join("lake"))
        .env("SLUICE_CACHE_DIR", dir.join("cache"))
        .env("SLUICE_METRICS__LISTEN", "127.0.0.1:0")
        .env(
            "SLUICE_DASHBOARD__LISTEN",
            format!("127.0.0.1:{dashboard_port}"),
        )
        .env("SLUICE_BATCH__MAX_EVENTS", "2000")
        .env("SLUICE_GOLD__MAX_INTERVAL_MS", "200")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (mut collector, mut dashboard) = (None, None);
    while collector.is_none() || dashboard.is_none() {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited early");
        let url = line.split_whitespace().last().unwrap_or_default();
        if line.contains("collecting on") {
            collector = Some(url.trim_end_matches("/v1/events").to_string());
        } else if line.contains("dashboard on") {
            dashboard = Some(url.trim_end_matches('/').to_string());
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
    (child, collector.unwrap(), dashboard.unwrap())
}

/// Waits until gold has refined every bronze batch and holds `events` in all.
async fn wait_until_refined(dashboard: &str, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let health = get_json(&format!("{dashboard}/api/health")).await;
        let tiers = health["tiers"].as_array().unwrap();
        let (bronze, gold) = (&tiers[0]["position"], &tiers[2]["position"]);
        let refined: i64 = health["throughput"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["silver"]["in"].as_f64().unwrap() * 10.0).round() as i64)
            .sum();
        if bronze == gold && bronze.as_i64().unwrap() > 0 && refined as usize >= lines {
            return;
        }
        assert!(Instant::now() < deadline, "gold did not catch up: {health}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser_shows_what_the_api_answers() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut child, collector, dashboard) = start_service(dir.path());

    // Three weeks of usage, then a hostile line for the quarantine page.
    let events = 8_000;
    common::run_ok(Command::new(env!("CARGO_BIN_EXE_sluice")).args([
        "simulate",
        "--events",
        &events.to_string(),
        "--days",
        "21",
        "--accounts",
        "60",
        "--duplicate-fraction",
        "0.02",
        "--late-fraction",
        "0.01",
        "--malformed-fraction",
        "0.01",
        "--to",
        &collector,
    ]));
    let hostile =
        "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>";
    let response = reqwest::Client::new()
        .post(format!("{collector}/v1/events"))
        .body(format!("{{\"not\": \"an event\"}}\n{hostile}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    wait_until_refined(&dashboard, events + 2).await;
    // The dashboard answers from a session up to 2 s old (`web::SESSION_TTL`):
    // one opened while the health checks above still saw gold refining
    // would answer the API calls below with older rows than the page gets.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // The API answers what `sluice analysis` prints.
    let top = get_json(&format!("{dashboard}/api/top_features")).await;
    let printed = common::run_ok(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["analysis", "top_features", "--format", "json", "--lake"])
            .arg(dir.path().join("lake")),
    );
    assert_eq!(top, serde_json::from_str::<Value>(&printed).unwrap());
    let daily = get_json(&format!("{dashboard}/api/daily_usage")).await;
    let top_free = get_json(&format!("{dashboard}/api/top_features?plan=free")).await;
    let daily_free = get_json(&format!("{dashboard}/api/daily_usage?plan=free")).await;
    let retention = get_json(&format!("{dashboard}/api/retention")).await;

    let profile = dir.path().join("chromium-profile");
    let dom = browse(
        &chromium,
        &profile,
        &format!("{dashboard}/"),
        &["--dump-dom"],
    )
    .await;
    // Every chart and table drew itself.
    let charts = tags(&dom, "<");
    let charts: Vec<&&str> = charts
        .iter()
        .filter(|t| t.contains(" data-chart=\""))
        .collect();
    assert!(charts.len() >= 20, "{} charts", charts.len());
    for chart in &charts {
        assert!(
            chart.contains("data-rendered=\"true\""),
            "not drawn: {chart}"
        );
    }
    assert!(!dom.contains("failed:"), "a chart failed to load");

    // The top feature's bar: its label and value.
    let bars_all = bars(&dom, "chart-top-features");
    assert_eq!(bars_all.len(), top.as_array().unwrap().len());
    assert_eq!(bars_all[0].0, top[0]["feature"].as_str().unwrap());
    assert_eq!(bars_all[0].1, top[0]["events"].to_string());
    // The latest day's active users, per plan.
    let mut lines = last_points(&dom, "chart-daily-users");
    lines.sort();
    assert_eq!(lines, latest_dau(&daily));
    assert!(lines.len() >= 2, "several plans: {lines:?}");
    // The retention heat map's first cell is the first cohort's week 0.
    let cells = tags(element(&dom, "chart-retention"), "<td ");
    let cell = cells.iter().find(|t| t.contains("class=\"heat")).unwrap();
    let first = &retention.as_array().unwrap()[0];
    let shown: f64 = attribute(cell, "data-value").unwrap().parse().unwrap();
    assert_eq!(shown, first["active_pct"].as_f64().unwrap());
    assert_eq!(first["week_number"], 0);

    // The plan filter changes them, to what the filtered API answers.
    let dom_free = browse(
        &chromium,
        &profile,
        &format!("{dashboard}/?plan=free"),
        &["--dump-dom"],
    )
    .await;
    let bars_free = bars(&dom_free, "chart-top-features");
    assert_eq!(bars_free[0].0, top_free[0]["feature"].as_str().unwrap());
    assert_eq!(bars_free[0].1, top_free[0]["events"].to_string());
    assert_ne!(
        bars_free[0].1, bars_all[0].1,
        "free users are fewer than all"
    );
    let lines_free = last_points(&dom_free, "chart-daily-users");
    assert_eq!(lines_free, latest_dau(&daily_free));
    assert_eq!(lines_free.len(), 1);

    // Quarantined bytes are shown as text: no element from them, no script run.
    let quarantine = browse(
        &chromium,
        &profile,
        &format!("{dashboard}/quarantine?reason=invalid_json"),
        &["--dump-dom"],
    )
    .await;
    let samples = element(&quarantine, "table-samples");
    assert!(samples.contains("data-rendered=\"true\""), "{samples}");
    assert!(samples.contains("&lt;img src=x onerror="), "{samples}");
    assert!(
        !samples.contains("<img") && !samples.contains("<script"),
        "{samples}"
    );
    assert!(!quarantine.contains("pwned</title>"));

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &chromium,
        &profile,
        &format!("{dashboard}/"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,3000",
        ],
    )
    .await;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "a screenshot at {}: {size} bytes",
        shot.display()
    );
    eprintln!("dashboard screenshot: {}", shot.display());

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}
