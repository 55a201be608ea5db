//! The lake is plain Delta: another reader (the `deltalake` Python package,
//! when installed) opens every table at the widest-read protocol and sees the
//! same rows as Sluice.

use std::process::Command;

use crate::common;

fn python_deltalake_available() -> bool {
    Command::new("python3")
        .args(["-c", "import deltalake"])
        .output()
        .is_ok_and(|o| o.status.success())
}

const READ_ALL: &str = r#"
import json, os, sys
from deltalake import DeltaTable
lake = sys.argv[1]
out = {}
for name in sorted(os.listdir(lake)):
    if os.path.isdir(os.path.join(lake, name, "_delta_log")):
        dt = DeltaTable(os.path.join(lake, name))
        p = dt.protocol()
        out[name] = [p.min_reader_version, p.min_writer_version, dt.to_pyarrow_table().num_rows]
print(json.dumps(out))
sys.stdout.flush()
# deltalake 1.6 sometimes aborts in its exit-time destructors; skip them.
os._exit(0)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_delta_reader_sees_every_table() {
    if !python_deltalake_available() {
        eprintln!(
            "SKIPPED another_delta_reader_sees_every_table: python3 with the `deltalake` package is not installed (pip install deltalake)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    common::write_lines(&file, &common::simulated_lines(5, 3_000, 0.02));
    let lake = dir.path().join("lake");
    common::run_to_end(&common::replay_config(&lake, vec![file], 1_000)).await;

    let output = Command::new("python3")
        .args(["-c", READ_ALL])
        .arg(&lake)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tables: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&output.stdout).unwrap();
    assert!(tables.len() >= 12, "{tables:?}");
    for (name, facts) in &tables {
        assert_eq!(facts[0], 1, "{name}: reader protocol");
        assert_eq!(facts[1], 2, "{name}: writer protocol");
        let ours = common::count(&lake, &format!("SELECT COUNT(*) FROM {name}")).await;
        assert_eq!(facts[2].as_i64().unwrap(), ours, "{name}: row count");
    }
}
