//! The `sluice` binary as an operator meets it: a bad config is refused at
//! start naming the field, but a command is checked only on the sections it
//! uses; SIGTERM drains and commits; `query` reads the lake.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::common;

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// Runs `sluice run` with `config` (TOML) and extra env; asserts it is
/// refused and returns what it said.
fn refused(config: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    let out = sluice()
        .args(["run", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{config} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_config_is_refused_at_start_naming_the_field() {
    let stderr = refused("[lateness]\nallowed_secs = -5\n", &[]);
    assert!(stderr.contains("allowed_secs"), "{stderr}");
    let stderr = refused("[batch]\nmax_events = 0\n", &[]);
    assert!(stderr.contains("batch.max_events"), "{stderr}");
    let stderr = refused("", &[("SLUICE_PLUGINS__SILVER", "/nowhere/x.wasm")]);
    assert!(stderr.contains("plugins.silver"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_query_reads_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut child = sluice()
        .args(["run", "--listen", "127.0.0.1:0", "--lake"])
        .arg(&lake)
        .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
        .env("SLUICE_BATCH__MAX_WAIT_MS", "60000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("collecting on") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "service exited before listening"
        );
    }
    let url = line.split_whitespace().last().unwrap().to_string();

    // With a one-minute batch window the request waits in the batch; SIGTERM
    // must close it early, commit it, and only then answer and exit.
    let body: Vec<String> = (0..20)
        .map(|i| {
            serde_json::json!({"event_id": format!("t{i}"), "user_id": "u", "account_id": "a", "plan": "free",
                "event_type": "login", "session_id": "s", "timestamp": "2026-03-01T00:00:00Z"})
            .to_string()
        })
        .collect();
    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .body(body.join("\n"))
            .send()
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let stdout = common::run_ok(
        sluice()
            .args(["query", "select count(*) as n from silver_events", "--lake"])
            .arg(&lake),
    );
    assert!(stdout.lines().any(|l| l.trim() == "| 20 |"), "{stdout}");
}

/// With `[admin] listen` and no token, `run` is refused naming the field,
/// while the read-only commands on the lake work: the token is `run`'s
/// business. A section a command does use (Kafka for `status`) still counts.
#[test]
fn commands_check_only_the_config_sections_they_use() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let events = dir.path().join("events.ndjson");
    let lines = common::simulated_lines(41, 200, 0.0);
    common::write_lines(&events, &lines);
    common::run_ok(
        sluice()
            .args(["run", "--listen", "", "--replay"])
            .arg(&events)
            .arg("--lake")
            .arg(&lake)
            .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
            .env_remove("SLUICE_ADMIN_TOKEN"),
    );

    let config = dir.path().join("sluice.toml");
    let toml = format!(
        "lake = {:?}\ncache_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:7070\"\n",
        lake.to_str().unwrap(),
        dir.path().join("cache").to_str().unwrap()
    );
    std::fs::write(&config, &toml).unwrap();
    let with_config = |args: &[&str]| {
        let mut command = sluice();
        command
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("SLUICE_ADMIN_TOKEN")
            .env_remove("SLUICE_CONFIG")
            .current_dir(dir.path());
        command
    };
    let out = common::run_ok(&mut with_config(&[
        "query",
        "select count(*) as n from bronze_events",
    ]));
    let expected = format!("| {} |", lines.len());
    assert!(out.lines().any(|l| l.trim() == expected), "{out}");
    common::run_ok(&mut with_config(&["report"]));
    common::run_ok(&mut with_config(&["status"]));
    common::run_ok(&mut with_config(&[
        "plugin", "new", "acme-x", "--layer", "bronze",
    ]));
    assert!(dir.path().join("acme-x/Cargo.toml").is_file());

    let out = with_config(&["run", "--listen", ""]).output().unwrap();
    assert!(!out.status.success(), "run started without the admin token");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admin.listen") && stderr.contains("SLUICE_ADMIN_TOKEN"),
        "{stderr}"
    );

    // `status` reads the Kafka section, so a broken one stops it (and not `query`).
    std::fs::write(&config, format!("{toml}[kafka]\nbrokers = \"nowhere\"\n")).unwrap();
    let out = with_config(&["status"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("brokers"),
        "{stderr}"
    );
    common::run_ok(&mut with_config(&["query", "select 1"]));
}
