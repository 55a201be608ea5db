//! The plugin registry: every deployed component by hash and an append-only
//! history of what was deployed, rolled back and refused, from which each
//! layer's version stack (and so the active plugin) follows. It lives in an
//! object store (a directory, or the lake's Azure store), so every instance
//! sharing a lake reads and writes one registry.
//!
//! Each history entry is an object of its own, `history/<seq>.json`, put
//! create-only: two instances recording at once cannot both take a number
//! (the store refuses the second, which reads the first and takes the
//! next), so every instance sees one order without a lock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use crate::lake::{Lake, StorageOptions};
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
    /// The shadow candidate stopped running (and was not promoted).
    ShadowStop,
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
            Action::ShadowStop => "shadow_stop",
        }
    }

    pub(super) fn pushes(self) -> bool {
        matches!(self, Action::Deploy | Action::Promote)
    }

    pub(super) fn pops(self) -> bool {
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
    /// The instance that made the change (empty: a single instance, or an
    /// entry older than the field).
    #[serde(default)]
    pub instance: String,
}

/// A replay that was started and has not finished: finished on restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReplay {
    pub layer: Layer,
    pub from_batch: i64,
}

/// What one instance runs, as it last published it (`instances/<id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub instance: String,
    /// RFC 3339, UTC: when the instance last wrote this (it does on every
    /// change and every [`RUNNING_EVERY`]).
    pub seen: String,
    pub layers: Vec<RunningLayer>,
}

/// One layer of [`Running`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningLayer {
    pub layer: String,
    /// `name@version`.
    pub plugin: String,
    pub hash: String,
    /// The shadow candidate's `name@version`, if one runs.
    #[serde(default)]
    pub shadow: Option<String>,
}

/// How often a running instance says again what it runs, so a reader can
/// tell a live instance from one that is gone.
pub const RUNNING_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// The registry: `<hash>.wasm` components, the history (`history/<seq>.json`
/// entries after a legacy `history.jsonl`), `replay-pending.json` while a
/// replay runs, and what each sharing instance runs (`instances/`).
pub struct Registry {
    store: Arc<dyn ObjectStore>,
    /// Where it is, for messages.
    place: String,
    known: Mutex<Known>,
}

/// The history as far as this instance has read it.
#[derive(Default)]
struct Known {
    /// Entries of a `history.jsonl` an older version appended to.
    legacy: Vec<Entry>,
    /// Entries by sequence number.
    entries: BTreeMap<u64, Entry>,
}

impl Known {
    fn next_seq(&self) -> u64 {
        self.entries.last_key_value().map_or(0, |(seq, _)| seq + 1)
    }

    fn all(&self) -> impl Iterator<Item = &Entry> {
        self.legacy.iter().chain(self.entries.values())
    }
}

impl Registry {
    /// Opens (creating if needed) the registry at `location`: a directory,
    /// or a URL of the kinds a lake may have, reached with `options`.
    pub async fn open(location: &Path, options: &StorageOptions) -> anyhow::Result<Arc<Registry>> {
        let place = location.display().to_string();
        let store = Lake::open_root(location, options)
            .await
            .and_then(|root| root.objects(""))
            .with_context(|| format!("opening the plugin registry {place}"))?;
        let registry = Registry {
            store,
            place,
            known: Mutex::default(),
        };
        registry.read_legacy().await?;
        registry.refresh().await?;
        Ok(Arc::new(registry))
    }

    /// The registry for a reader that must not create one (the dashboard,
    /// `sluice status`): `None` if there is no local directory at `location`.
    pub async fn open_existing(
        location: &Path,
        options: &StorageOptions,
    ) -> anyhow::Result<Option<Arc<Registry>>> {
        if !crate::lake::location::is_url(location) && !location.exists() {
            return Ok(None);
        }
        Registry::open(location, options).await.map(Some)
    }

    /// The history as such a reader sees it; empty without a registry.
    pub async fn read_history(location: &Path, options: &StorageOptions) -> Vec<Entry> {
        match Registry::open_existing(location, options).await {
            Ok(registry) => registry.map(|r| r.history()).unwrap_or_default(),
            Err(e) => {
                tracing::warn!("reading the plugin history: {e:#}");
                Vec::new()
            }
        }
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        // Only whole entries are ever inserted: a panic elsewhere leaves it valid.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn history(&self) -> Vec<Entry> {
        self.known().all().cloned().collect()
    }

    /// The entries after `seq` (all for `None`) with their numbers, and
    /// the highest number known.
    pub fn entries_after(&self, seq: Option<u64>) -> (Vec<(u64, Entry)>, Option<u64>) {
        let known = self.known();
        let from = seq.map_or(0, |s| s + 1);
        let entries = known
            .entries
            .range(from..)
            .map(|(s, e)| (*s, e.clone()))
            .collect();
        (entries, known.entries.last_key_value().map(|(s, _)| *s))
    }

    async fn read_legacy(&self) -> anyhow::Result<()> {
        let Some(bytes) = self.get(&ObjectPath::from(LEGACY_HISTORY)).await? else {
            return Ok(());
        };
        let legacy = parse_history(&format!("{}/{LEGACY_HISTORY}", self.place), &bytes)?;
        self.known().legacy = legacy;
        Ok(())
    }

    /// Reads the entries other instances recorded since the last look;
    /// true if there were any.
    pub async fn refresh(&self) -> anyhow::Result<bool> {
        let next = self.known().next_seq();
        let prefix = ObjectPath::from(HISTORY);
        let listing = match next.checked_sub(1) {
            None => self.store.list(Some(&prefix)),
            Some(last) => {
                let offset = ObjectPath::from(format!("{HISTORY}/{}", entry_name(last)));
                self.store.list_with_offset(Some(&prefix), &offset)
            }
        };
        let listed: Vec<_> = listing
            .try_collect()
            .await
            .with_context(|| format!("listing the plugin history in {}", self.place))?;
        let mut new: Vec<(u64, ObjectPath)> = listed
            .into_iter()
            .filter_map(|meta| Some((entry_seq(&meta.location)?, meta.location)))
            .filter(|(seq, _)| *seq >= next)
            .collect();
        new.sort();
        for (seq, path) in &new {
            let bytes = self
                .get(path)
                .await?
                .with_context(|| format!("{path} vanished"))?;
            let entry: Entry = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}/{path}", self.place))?;
            self.known().entries.insert(*seq, entry);
        }
        Ok(!new.is_empty())
    }

    /// Appends an entry to the history, after every entry recorded before
    /// it by any instance.
    pub async fn record(&self, entry: Entry) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&entry)?;
        loop {
            let seq = self.known().next_seq();
            let path = ObjectPath::from(format!("{HISTORY}/{}", entry_name(seq)));
            let create = PutOptions::from(PutMode::Create);
            match self
                .store
                .put_opts(&path, body.clone().into(), create)
                .await
            {
                Ok(_) => {
                    self.known().entries.insert(seq, entry);
                    return Ok(());
                }
                // Another instance took the number: read what it wrote.
                Err(object_store::Error::AlreadyExists { .. }) => {
                    self.refresh().await?;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("recording in {}/{path}", self.place));
                }
            }
        }
    }

    /// Keeps a deployed component so restarts, rollbacks and the other
    /// instances can load it.
    pub async fn store(&self, hash: &str, wasm: &[u8]) -> anyhow::Result<()> {
        let create = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(&component(hash), wasm.to_vec().into(), create)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("storing {hash}.wasm in {}", self.place)),
        }
    }

    /// A component [`Registry::store`] kept.
    pub async fn component(&self, hash: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = self.get(&component(hash)).await?;
        let bytes = bytes.with_context(|| format!("{hash}.wasm is not in {}", self.place))?;
        Ok(bytes.to_vec())
    }

    async fn get(&self, path: &ObjectPath) -> anyhow::Result<Option<bytes::Bytes>> {
        let read = async { self.store.get(path).await?.bytes().await };
        match read.await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}/{path}", self.place)),
        }
    }

    /// The replay a previous run started and did not finish, if any.
    pub async fn pending_replay(&self) -> anyhow::Result<Option<PendingReplay>> {
        let Some(bytes) = self.get(&ObjectPath::from(PENDING_REPLAY)).await? else {
            return Ok(None);
        };
        let pending = serde_json::from_slice(&bytes)
            .with_context(|| format!("reading {}/{PENDING_REPLAY}", self.place))?;
        Ok(Some(pending))
    }

    /// Marks a replay as started (`Some`) or finished (`None`), durably.
    pub async fn set_pending_replay(&self, replay: Option<PendingReplay>) -> anyhow::Result<()> {
        let path = ObjectPath::from(PENDING_REPLAY);
        let done = match replay {
            Some(r) => self
                .store
                .put(&path, serde_json::to_vec(&r)?.into())
                .await
                .map(drop),
            None => match self.store.delete(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other,
            },
        };
        done.with_context(|| format!("writing {}/{PENDING_REPLAY}", self.place))
    }

    /// Says what this instance runs, for `sluice plugin list` on any of them.
    pub async fn publish(&self, running: &Running) -> anyhow::Result<()> {
        let path = running_path(&running.instance);
        self.store
            .put(&path, serde_json::to_vec(running)?.into())
            .await
            .with_context(|| format!("writing {}/{path}", self.place))?;
        Ok(())
    }

    /// Takes this instance off the list (it stops).
    pub async fn withdraw(&self, instance: &str) -> anyhow::Result<()> {
        match self.store.delete(&running_path(instance)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("withdrawing {instance}")),
        }
    }

    /// What every instance that shares this registry last said it runs.
    pub async fn running(&self) -> anyhow::Result<Vec<Running>> {
        let listed: Vec<_> = self
            .store
            .list(Some(&ObjectPath::from(INSTANCES)))
            .try_collect()
            .await
            .with_context(|| format!("listing {}/{INSTANCES}", self.place))?;
        let mut running = Vec::with_capacity(listed.len());
        for meta in listed {
            let Some(bytes) = self.get(&meta.location).await? else {
                continue; // withdrawn meanwhile
            };
            match serde_json::from_slice::<Running>(&bytes) {
                Ok(r) => running.push(r),
                Err(e) => {
                    tracing::warn!(path = %meta.location, "skipping an unreadable instance file: {e}")
                }
            }
        }
        running.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(running)
    }

    /// Hashes of the deployed versions of `layer`, oldest first; the last
    /// one is active. Empty: the configured (or embedded) plugin is active.
    pub fn stack(&self, layer: Layer) -> Vec<String> {
        stack(self.known().all(), layer)
    }
}

/// Hashes of the deployed versions of `layer` in `history`, oldest first.
fn stack<'a>(history: impl Iterator<Item = &'a Entry>, layer: Layer) -> Vec<String> {
    let mut stack = Vec::new();
    for e in history.filter(|e| e.layer == layer.as_str()) {
        if e.action.pushes() {
            stack.push(e.hash.clone());
        } else if e.action.pops() {
            stack.pop();
        }
    }
    stack
}

const PENDING_REPLAY: &str = "replay-pending.json";
const HISTORY: &str = "history";
const LEGACY_HISTORY: &str = "history.jsonl";
const INSTANCES: &str = "instances";

/// `history/<seq>.json`, zero-padded so names sort as numbers.
fn entry_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

fn entry_seq(path: &ObjectPath) -> Option<u64> {
    path.filename()?.strip_suffix(".json")?.parse().ok()
}

fn component(hash: &str) -> ObjectPath {
    ObjectPath::from(format!("{hash}.wasm"))
}

fn running_path(instance: &str) -> ObjectPath {
    ObjectPath::from(format!("{INSTANCES}/{instance}.json"))
}

/// The entries of a legacy `history.jsonl`. Every append ended with a
/// newline and a sync, so only the last line can be torn by a crash: an
/// unparseable last line is ignored with a warning (its action never
/// completed, so nothing relied on it). An unparseable line before the
/// last is damage this code did not cause and is refused, naming the line.
fn parse_history(place: &str, bytes: &[u8]) -> anyhow::Result<Vec<Entry>> {
    let lines: Vec<(usize, &[u8])> = bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| (i + 1, line))
        .collect();
    let mut history = Vec::with_capacity(lines.len());
    let last = lines.len().saturating_sub(1);
    for (i, &(number, line)) in lines.iter().enumerate() {
        match serde_json::from_slice(line) {
            Ok(entry) => history.push(entry),
            Err(e) if i == last => {
                tracing::warn!(
                    place,
                    line = number,
                    error = %e,
                    "ignoring the torn last line of the plugin history (a crash while it was written)"
                );
            }
            Err(e) => return Err(e).with_context(|| format!("{place}:{number}")),
        }
    }
    Ok(history)
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
            Action::ShadowStop,
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
            instance: String::new(),
        }
    }

    async fn open(dir: &Path) -> Arc<Registry> {
        Registry::open(dir, &StorageOptions::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn stack_follows_deploys_and_rollbacks_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let r = open(dir.path()).await;
        for (action, hash) in [
            (Action::Deploy, "a"),
            (Action::Shadow, "x"),
            (Action::Refused, "y"),
            (Action::Deploy, "b"),
            (Action::Promote, "c"),
            (Action::AutoRollback, "b"),
        ] {
            r.record(entry(action, hash)).await.unwrap();
        }
        assert_eq!(r.stack(Layer::Silver), ["a", "b"]);
        assert!(r.stack(Layer::Gold).is_empty());
        let reopened = open(dir.path()).await;
        assert_eq!(reopened.stack(Layer::Silver), ["a", "b"]);
        assert_eq!(reopened.history().len(), 6);
    }

    #[tokio::test]
    async fn two_handles_recording_at_once_keep_one_order_and_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (open(dir.path()).await, open(dir.path()).await);
        a.record(entry(Action::Deploy, "a1")).await.unwrap();
        // `b` has not read `a1`: its first try takes the same number, is
        // refused by the store, reads `a1`, and takes the next.
        b.record(entry(Action::Deploy, "b1")).await.unwrap();
        assert_eq!(b.stack(Layer::Silver), ["a1", "b1"]);
        let (seen_before, _) = a.entries_after(None);
        assert_eq!(seen_before.len(), 1);
        assert!(a.refresh().await.unwrap(), "a finds b's entry");
        assert!(!a.refresh().await.unwrap(), "and nothing more");
        assert_eq!(a.stack(Layer::Silver), ["a1", "b1"]);
        let (after_first, last) = a.entries_after(Some(0));
        assert_eq!(after_first.len(), 1);
        assert_eq!(after_first[0].1.hash, "b1");
        assert_eq!(last, Some(1));
    }

    #[tokio::test]
    async fn a_legacy_history_comes_first_and_a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let line = |hash| serde_json::to_string(&entry(Action::Deploy, hash)).unwrap();
        let torn = line("c");
        let text = format!("{}\n{}\n{}", line("a"), line("b"), &torn[..torn.len() / 2]);
        std::fs::write(dir.path().join(LEGACY_HISTORY), text).unwrap();
        let r = open(dir.path()).await;
        assert_eq!(r.stack(Layer::Silver), ["a", "b"]);
        r.record(entry(Action::Rollback, "a")).await.unwrap();
        let reopened = open(dir.path()).await;
        assert_eq!(reopened.history().len(), 3);
        assert_eq!(reopened.stack(Layer::Silver), ["a"]);
    }

    #[tokio::test]
    async fn a_bad_legacy_line_before_the_last_is_refused_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&entry(Action::Deploy, "a")).unwrap();
        let text = format!("{good}\n{{oops\n{good}\n");
        std::fs::write(dir.path().join(LEGACY_HISTORY), text).unwrap();
        let err = Registry::open(dir.path(), &StorageOptions::default())
            .await
            .err()
            .expect("refused");
        assert!(format!("{err:#}").contains("history.jsonl:2"), "{err:#}");
    }

    #[tokio::test]
    async fn components_pending_replays_and_instances_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let r = open(dir.path()).await;
        r.store("h", b"wasm").await.unwrap();
        r.store("h", b"wasm").await.expect("storing twice is fine");
        assert_eq!(r.component("h").await.unwrap(), b"wasm");
        assert!(r.component("missing").await.is_err());
        let pending = PendingReplay {
            layer: Layer::Gold,
            from_batch: 7,
        };
        r.set_pending_replay(Some(pending)).await.unwrap();
        assert_eq!(r.pending_replay().await.unwrap(), Some(pending));
        r.set_pending_replay(None).await.unwrap();
        assert_eq!(r.pending_replay().await.unwrap(), None);
        let running = |instance: &str| Running {
            instance: instance.into(),
            seen: now_rfc3339(),
            layers: Vec::new(),
        };
        r.publish(&running("b")).await.unwrap();
        r.publish(&running("a")).await.unwrap();
        let names = |list: Vec<Running>| list.into_iter().map(|r| r.instance).collect::<Vec<_>>();
        assert_eq!(names(r.running().await.unwrap()), ["a", "b"]);
        r.withdraw("a").await.unwrap();
        assert_eq!(names(r.running().await.unwrap()), ["b"]);
    }
}
