//! The plugin registry on disk: every deployed component by hash and an
//! append-only history of what was deployed, rolled back and refused, from
//! which each layer's version stack (and so the active plugin) follows.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::runtime::Layer;

/// What happened to a layer's plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Became active (pushed on the layer's stack).
    Deploy,
    /// A shadow candidate became active.
    Promote,
    /// Went back to the version before (popped).
    Rollback,
    /// Failed a live batch on probation; the version before took over.
    AutoRollback,
    /// Started running as a shadow candidate.
    Shadow,
    /// Validation refused it; nothing changed.
    Refused,
}

impl Action {
    /// The name used in the history file and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::AutoRollback => "auto_rollback",
            Action::Shadow => "shadow",
            Action::Refused => "refused",
        }
    }

    fn pushes(self) -> bool {
        matches!(self, Action::Deploy | Action::Promote)
    }

    fn pops(self) -> bool {
        matches!(self, Action::Rollback | Action::AutoRollback)
    }
}

/// One line of the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub at: String,
    pub layer: String,
    pub action: Action,
    /// The plugin the action is about (for rollbacks: the one now active).
    pub name: String,
    pub version: String,
    pub hash: String,
    /// First batch the now-active plugin serves.
    pub from_batch: i64,
    /// How long the pipeline waited at the batch boundary for the change.
    pub pause_micros: u64,
    #[serde(default)]
    pub note: String,
}

/// A replay that was started and has not finished: finished on restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReplay {
    pub layer: Layer,
    pub from_batch: i64,
}

/// The registry directory: `<hash>.wasm` files, `history.jsonl`, and
/// `replay-pending.json` while a replay runs.
pub struct Registry {
    dir: PathBuf,
    history: Vec<Entry>,
    /// A torn last line found at open: the file length then and where the
    /// line starts, cut off before the next append.
    torn: Option<TornTail>,
}

/// The unparseable end of `history.jsonl` a crash mid-append left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TornTail {
    file_len: u64,
    line_start: u64,
}

impl Registry {
    /// Opens (creating if needed) the registry in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Registry> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(HISTORY);
        let (history, torn) = match std::fs::read(&path) {
            Ok(bytes) => parse_history(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Registry {
            dir: dir.to_path_buf(),
            history,
            torn,
        })
    }

    pub fn history(&self) -> &[Entry] {
        &self.history
    }

    /// Keeps a deployed component so restarts and rollbacks can load it.
    pub fn store(&self, hash: &str, wasm: &[u8]) -> anyhow::Result<()> {
        let path = self.wasm_path(hash);
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, wasm).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    pub fn wasm_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    /// Appends an entry (durably) to the history.
    pub fn record(&mut self, entry: Entry) -> anyhow::Result<()> {
        let path = self.dir.join(HISTORY);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        if let Some(torn) = self.torn.take() {
            cut_torn_tail(&file, torn).with_context(|| format!("repairing {}", path.display()))?;
        }
        writeln!(file, "{}", serde_json::to_string(&entry)?)?;
        file.sync_data()?;
        self.history.push(entry);
        Ok(())
    }

    /// The replay a previous run started and did not finish, if any.
    pub fn pending_replay(&self) -> anyhow::Result<Option<PendingReplay>> {
        let path = self.dir.join(PENDING_REPLAY);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Marks a replay as started (`Some`) or finished (`None`), durably.
    pub fn set_pending_replay(&self, replay: Option<PendingReplay>) -> anyhow::Result<()> {
        let path = self.dir.join(PENDING_REPLAY);
        match replay {
            Some(r) => {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, serde_json::to_vec(&r)?)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, &path)?;
            }
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            },
        }
        Ok(())
    }

    /// Hashes of the deployed versions of `layer`, oldest first; the last
    /// one is active. Empty: the configured (or embedded) plugin is active.
    pub fn stack(&self, layer: Layer) -> Vec<String> {
        let mut stack = Vec::new();
        for e in self.history.iter().filter(|e| e.layer == layer.as_str()) {
            if e.action.pushes() {
                stack.push(e.hash.clone());
            } else if e.action.pops() {
                stack.pop();
            }
        }
        stack
    }
}

const PENDING_REPLAY: &str = "replay-pending.json";
const HISTORY: &str = "history.jsonl";

/// The entries of `history.jsonl`. Every append ends with a newline and a
/// sync, so only the last line can be torn by a crash: an unparseable last
/// line is ignored with a warning (its action never completed, so nothing
/// relied on it). An unparseable line before the last is damage this code
/// did not cause and is refused, naming the line.
fn parse_history(path: &Path, bytes: &[u8]) -> anyhow::Result<(Vec<Entry>, Option<TornTail>)> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (number, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines.push((number + 1, start, line));
        }
        start += line.len() + 1;
    }
    let mut history = Vec::with_capacity(lines.len());
    let last = lines.len().saturating_sub(1);
    for (i, &(number, start, line)) in lines.iter().enumerate() {
        match serde_json::from_slice(line) {
            Ok(entry) => history.push(entry),
            Err(e) if i == last => {
                tracing::warn!(
                    path = %path.display(),
                    line = number,
                    error = %e,
                    "ignoring the torn last line of the plugin history (a crash while it was written)"
                );
                let torn = TornTail {
                    file_len: bytes.len() as u64,
                    line_start: start as u64,
                };
                return Ok((history, Some(torn)));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("{}:{number}", path.display()));
            }
        }
    }
    Ok((history, None))
}

/// Cuts the torn line off before the next append, so the new entry starts a
/// line of its own instead of being glued to the fragment. Only if the file
/// is as it was at open: anything appended since is left alone.
fn cut_torn_tail(file: &std::fs::File, torn: TornTail) -> std::io::Result<()> {
    if file.metadata()?.len() == torn.file_len {
        file.set_len(torn.line_start)?;
        file.sync_data()?;
    }
    Ok(())
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_the_history_file_spelling() {
        for action in [
            Action::Deploy,
            Action::Promote,
            Action::Rollback,
            Action::AutoRollback,
            Action::Shadow,
            Action::Refused,
        ] {
            let stored = serde_json::to_value(action).unwrap();
            assert_eq!(stored.as_str(), Some(action.name()));
        }
    }

    fn entry(action: Action, hash: &str) -> Entry {
        Entry {
            at: now_rfc3339(),
            layer: "silver".into(),
            action,
            name: "p".into(),
            version: "1".into(),
            hash: hash.into(),
            from_batch: 1,
            pause_micros: 0,
            note: String::new(),
        }
    }

    #[test]
    fn stack_follows_deploys_and_rollbacks_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        for (action, hash) in [
            (Action::Deploy, "a"),
            (Action::Shadow, "x"),
            (Action::Refused, "y"),
            (Action::Deploy, "b"),
            (Action::Promote, "c"),
            (Action::AutoRollback, "b"),
        ] {
            r.record(entry(action, hash)).unwrap();
        }
        assert_eq!(r.stack(Layer::Silver), ["a", "b"]);
        assert!(r.stack(Layer::Gold).is_empty());
        let reopened = Registry::open(dir.path()).unwrap();
        assert_eq!(reopened.stack(Layer::Silver), ["a", "b"]);
        assert_eq!(reopened.history().len(), 6);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        r.record(entry(Action::Deploy, "a")).unwrap();
        r.record(entry(Action::Deploy, "b")).unwrap();
        let path = dir.path().join(HISTORY);
        let full = serde_json::to_string(&entry(Action::Deploy, "c")).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(file);

        let mut r = Registry::open(dir.path()).expect("a torn last line does not stop a start");
        assert_eq!(r.stack(Layer::Silver), ["a", "b"]);
        r.record(entry(Action::Rollback, "a")).unwrap();
        let reopened = Registry::open(dir.path()).expect("the fragment was cut, not glued");
        assert_eq!(reopened.history().len(), 3);
        assert_eq!(reopened.stack(Layer::Silver), ["a"]);
        assert!(reopened.torn.is_none());
    }

    #[test]
    fn a_bad_line_before_the_last_is_refused_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&entry(Action::Deploy, "a")).unwrap();
        std::fs::write(
            dir.path().join(HISTORY),
            format!("{good}\n{{oops\n{good}\n"),
        )
        .unwrap();
        let err = Registry::open(dir.path()).err().expect("refused");
        assert!(format!("{err:#}").contains("history.jsonl:2"), "{err:#}");
    }
}
