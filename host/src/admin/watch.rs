//! The watched plugin directory: a `.wasm` file dropped there is validated
//! and deployed to the layer it declares, as if sent to the admin API.
//! Fixtures, if any, are read from `<stem>.fixtures/{events,expected}.ndjson`.
//! A file present at start is deployed unless the registry's history already
//! knows its content (deployed or refused before), so a file dropped while
//! the host was down is not missed and a restart redeploys nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::lifecycle::{Control, Fixtures, Validator};
use crate::runtime::Limits;

/// How often the directory is scanned.
const POLL: Duration = Duration::from_millis(500);

/// Scans `dir` until the pipeline's control channel closes. `handled`:
/// sha256 of every component the registry's history names.
pub async fn watch(
    dir: PathBuf,
    control: mpsc::Sender<Control>,
    validator: Validator,
    handled: HashSet<String>,
) {
    let mut seen: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
    for (path, stamp) in wasm_files(&dir) {
        let known = std::fs::read(&path)
            .is_ok_and(|wasm| handled.contains(&hex::encode(Sha256::digest(&wasm))));
        if known {
            seen.insert(path, stamp);
        }
    }
    loop {
        tokio::time::sleep(POLL).await;
        if control.is_closed() {
            return;
        }
        for (path, stamp) in wasm_files(&dir) {
            if seen.get(&path) == Some(&stamp) {
                continue;
            }
            seen.insert(path.clone(), stamp);
            deploy_file(&path, &control, &validator).await;
        }
    }
}

fn wasm_files(dir: &Path) -> Vec<(PathBuf, (u64, SystemTime))> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), (meta.len(), meta.modified().ok()?)))
        })
        .collect()
}

async fn deploy_file(path: &Path, control: &mpsc::Sender<Control>, validator: &Validator) {
    let file = path.to_path_buf();
    let checker = validator.clone();
    let validated = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let wasm = std::fs::read(&file)?;
        // The layer is whatever the component declares.
        let layer = checker
            .runtime()
            .load(&wasm, Limits::default())?
            .meta()
            .layer;
        let fixtures = read_fixtures(&file);
        checker.validate(layer, wasm, fixtures.as_ref())
    })
    .await;
    let candidate = match validated {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::error!(file = %path.display(), "refused: {e:#}");
            return;
        }
        Err(e) => {
            tracing::error!(file = %path.display(), "validation thread: {e}");
            return;
        }
    };
    let layer = candidate.plugin.meta().layer;
    let (reply, answer) = oneshot::channel();
    let sent = control
        .send(Control::Deploy {
            layer,
            candidate,
            shadow: false,
            reply,
        })
        .await;
    if sent.is_err() {
        return;
    }
    match answer.await {
        Ok(Ok(change)) => tracing::info!(
            file = %path.display(), %layer, version = %change.version,
            from_batch = change.from_batch, "deployed from the watched directory"
        ),
        Ok(Err(reason)) => tracing::error!(file = %path.display(), "refused: {reason}"),
        Err(_) => {}
    }
}

fn read_fixtures(wasm: &Path) -> Option<Fixtures> {
    let dir = wasm.with_extension("fixtures");
    Some(Fixtures {
        events: std::fs::read_to_string(dir.join("events.ndjson")).ok()?,
        expected: std::fs::read_to_string(dir.join("expected.ndjson")).ok()?,
    })
}
