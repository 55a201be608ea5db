//! Plugins scaffolded by `sluice plugin new`, one per template, in a
//! directory holding nothing of Sluice but the `sluice` binary and with a
//! fresh `HOME` (the cargo registry reachable as usual): built with cargo and
//! crates.io only, tested on their fixtures, deployed into a running
//! `sluice run`, and their effect read back with `sluice query`, the way each
//! template's README tells a newcomer.
//!
//! Slow by nature: three release builds for wasm32-wasip2. They share one
//! target directory under the workspace's (`<target>/scaffold`), so the
//! crates.io dependencies are compiled once per machine and later runs only
//! rebuild the small vendored crates.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::*;

/// A directory with only a copy of the `sluice` binary, and a fresh `HOME`.
struct Sandbox {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    home: PathBuf,
    work: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin/sluice");
        let home = dir.path().join("home");
        let work = dir.path().join("work");
        for d in [bin.parent().unwrap(), &home, &work] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &bin).unwrap();
        Sandbox {
            _dir: dir,
            bin,
            home,
            work,
        }
    }

    /// The copied binary, run in the work directory with the fresh `HOME`
    /// and no config of the test's environment.
    fn sluice(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("SLUICE_ADMIN_TOKEN", TOKEN)
            .env_remove("SLUICE_CONFIG")
            .env_remove("SLUICE_ADMIN_URL");
        command
    }

    fn run(&self, args: &[&str]) -> String {
        common::run_ok(&mut self.sluice(args))
    }

    /// `cargo build --release --target wasm32-wasip2` in `crate_dir` with the
    /// fresh `HOME`; the cargo and rustup homes are kept where they are, so
    /// the registry and toolchains are reachable as usual.
    fn build(&self, crate_dir: &Path) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("scaffold");
        let real_home = std::env::var_os("HOME").map(PathBuf::from).unwrap();
        let keep = |var: &str, default: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| real_home.join(default))
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(crate_dir)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target)
            .env("HOME", &self.home)
            .env("CARGO_HOME", keep("CARGO_HOME", ".cargo"))
            .env("RUSTUP_HOME", keep("RUSTUP_HOME", ".rustup"));
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        common::run_ok(&mut cmd);
        let name = crate_dir.file_name().unwrap().to_str().unwrap();
        target.join(format!(
            "wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ))
    }
}

/// `sluice run` from the sandbox, with its collector and admin API on free
/// ports; its log is drained on a thread so it never blocks on stderr.
struct RunningHost {
    child: Child,
    events_url: String,
    admin_url: String,
    log: std::thread::JoinHandle<String>,
}

impl RunningHost {
    fn start(sandbox: &Sandbox, lake: &Path) -> RunningHost {
        let mut child = sandbox
            .sluice(&["run", "--listen", "127.0.0.1:0", "--lake"])
            .arg(lake)
            .env("SLUICE_ADMIN__LISTEN", "127.0.0.1:0")
            .env("SLUICE_BATCH__MAX_WAIT_MS", "50")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let (mut events_url, mut admin_url) = (None, None);
        let mut line = String::new();
        while events_url.is_none() || admin_url.is_none() {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "sluice run exited before listening"
            );
            let url = line.split_whitespace().last().map(str::to_string);
            if line.contains("collecting on") {
                events_url = url;
            } else if line.contains("admin API on") {
                admin_url = url;
            }
        }
        let log = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut all);
            all
        });
        RunningHost {
            child,
            events_url: events_url.unwrap(),
            admin_url: admin_url.unwrap(),
            log,
        }
    }

    /// Posts `lines`; the collector answers once they are durable.
    async fn send(&self, lines: &[String]) {
        let response = reqwest::Client::new()
            .post(&self.events_url)
            .body(lines.join("\n"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
    }

    /// SIGTERM: the host drains, commits and exits cleanly.
    fn stop(mut self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        let log = self.log.join().unwrap();
        assert!(status.success(), "sluice run: {status}\n{log}");
    }
}

fn event(id: &str, account: &str, second: u32) -> String {
    json!({
        "event_id": id, "user_id": "u_1", "account_id": account, "plan": "free",
        "event_type": "login", "session_id": "s_1",
        "timestamp": format!("2026-01-05T10:00:{second:02}Z"),
        "properties": {"method": "password"}
    })
    .to_string()
}

/// The cells of `sluice query`'s table, row by row, header first.
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// Every template: scaffold, build, `plugin test`, deploy, effect in a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_template_builds_from_the_binary_alone_and_deploys() {
    let started = Instant::now();
    let sandbox = Sandbox::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let crates = [
        ("acme-rule", ["--template", "silver-rule"]),
        ("acme-enrich", ["--template", "silver-enrichment"]),
        // `--layer gold` stands for the gold-table template.
        ("acme-gold", ["--layer", "gold"]),
    ];
    let mut wasm = Vec::new();
    for (name, how) in crates {
        let out = sandbox.run(&["plugin", "new", name, how[0], how[1]]);
        assert!(out.contains("contract sluice:transform@"), "{out}");
        let crate_dir = sandbox.work.join(name);
        assert_nothing_points_into(&crate_dir, repo);
        let built = Instant::now();
        let component = sandbox.build(&crate_dir);
        eprintln!("{name}: built in {:.0?}", built.elapsed());
        let out = sandbox.run(&[
            "plugin",
            "test",
            component.to_str().unwrap(),
            "--fixtures",
            crate_dir.join("fixtures/events.ndjson").to_str().unwrap(),
            "--expect",
            crate_dir.join("fixtures/expected.ndjson").to_str().unwrap(),
        ]);
        assert!(out.contains("rows match"), "{name}: {out}");
        wasm.push((name, crate_dir, component));
    }
    let lake = sandbox.work.join("lake");
    let host = RunningHost::start(&sandbox, &lake);
    let deploy = |layer: &str, (name, crate_dir, component): &(&str, PathBuf, PathBuf)| {
        let out = sandbox.run(&[
            "plugin",
            "deploy",
            layer,
            component.to_str().unwrap(),
            "--fixtures",
            crate_dir.join("fixtures").to_str().unwrap(),
            "--admin",
            &host.admin_url,
        ]);
        assert!(out.contains(&format!("{name}@0.1.0")), "{out}");
    };

    // The rule: test accounts go to quarantine.
    deploy("silver", &wasm[0]);
    host.send(&[
        event("r1", "test_qa", 1),
        event("r2", "acct_01", 2),
        event("r3", "test_load", 3),
    ])
    .await;
    // The enrichment replaces the rule: listed accounts get their segment.
    deploy("silver", &wasm[1]);
    host.send(&[
        event("e1", "acct_01", 4),
        event("e2", "acct_99", 5),
        event("e3", "acct_01", 6),
    ])
    .await;
    // The gold table: it gets the batches after the deploy, and all the
    // lake's history with a gold replay.
    deploy("gold", &wasm[2]);
    host.send(&[event("g1", "acct_99", 7)]).await;
    let list = sandbox.run(&["plugin", "list", "--admin", &host.admin_url]);
    assert!(
        list.contains("acme-enrich") && list.contains("acme-gold"),
        "{list}"
    );
    let replay = sandbox.run(&[
        "replay",
        "--layer",
        "gold",
        "--from-batch",
        "0",
        "--admin",
        &host.admin_url,
    ]);
    let replay: serde_json::Value = serde_json::from_str(&replay).unwrap();
    assert_eq!(
        replay["gold_rows"]["acme_gold_account_daily"], 2,
        "{replay}"
    );
    host.stop();

    let query = |sql: &str| cells(&sandbox.run(&["query", sql, "--lake", lake.to_str().unwrap()]));
    let quarantined = query(
        "SELECT producer, COUNT(*) AS n FROM quarantine \
         WHERE reason = 'test_account' GROUP BY producer",
    );
    assert_eq!(
        quarantined[1..],
        [vec!["acme-rule@0.1.0", "2"]],
        "{quarantined:?}"
    );
    let enriched = query(
        "SELECT event_id, extra FROM silver_events \
         WHERE producer = 'acme-enrich@0.1.0' ORDER BY event_id",
    );
    assert_eq!(
        enriched[1..],
        [
            vec!["e1", r#"{"segment":"enterprise"}"#],
            vec!["e2", ""],
            vec!["e3", r#"{"segment":"enterprise"}"#],
            // Silver is still the enrichment after the gold deploy.
            vec!["g1", ""],
        ],
        "{enriched:?}"
    );
    let daily = query("SELECT account_id, events FROM acme_gold_account_daily ORDER BY account_id");
    assert_eq!(
        daily[1..],
        [vec!["acct_01", "3"], vec!["acct_99", "2"]],
        "{daily:?}"
    );
    eprintln!("scaffold test: {:.0?} in all", started.elapsed());
}

/// No file of the crate names the checkout the binary was built from, and
/// every manifest path is relative.
fn assert_nothing_points_into(crate_dir: &Path, repo: &Path) {
    let repo = repo.canonicalize().unwrap();
    let repo = repo.to_str().unwrap();
    let mut dirs = vec![crate_dir.to_path_buf()];
    let mut manifests = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains(repo), "{} names {repo}", path.display());
            if path.file_name().unwrap() == "Cargo.toml" {
                manifests += 1;
                for line in text.lines().filter(|l| l.contains("path =")) {
                    assert!(!line.contains("\"/"), "{}: {line}", path.display());
                }
            }
        }
    }
    assert_eq!(manifests, 3, "the crate, the SDK and the default plugin");
}
