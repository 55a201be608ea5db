//! Several `sluice run` instances on one lake: membership, partition claims
//! and the refine claim, as OS file locks under `<lake>/_sluice/`.
//!
//! Why file locks: the lake is a local directory, and the kernel drops a
//! dead process's locks at once, so a `kill -9`ed instance's partitions and
//! refine claim are free the moment it is gone, with no expiry to wait out,
//! while a stopped (SIGSTOP) one keeps them. Commits need no lock: bronze
//! commits are fenced by Delta app transactions (`pipeline/ingest.rs`).
//!
//! - `members/<id>.lock`: held by each live instance; counting the held ones
//!   gives each instance its fair share of partitions.
//! - `claims/<name>.lock`: held by the instance that consumes that partition.
//!   An instance only claims free partitions and never gives one up while it
//!   lives, so two instances never consume the same partition.
//! - `claims/refine.lock`: held by the one instance that runs the silver and
//!   gold tiers (the leader), from before it reads their state until they
//!   have stopped, so two never refine at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// This instance's membership; dropping every clone (or dying) leaves the
/// cluster.
#[derive(Clone)]
pub struct Cluster {
    dir: PathBuf,
    id: String,
    _member: std::sync::Arc<File>,
}

/// A claimed partition; dropping it releases the claim.
pub struct Claim {
    _file: File,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

/// Takes `file`'s exclusive lock if free: `Ok(false)` if another holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

impl Cluster {
    /// Joins the cluster of instances sharing `lake`.
    pub fn join(lake: &Path) -> io::Result<Cluster> {
        let dir = lake.join("_sluice");
        std::fs::create_dir_all(dir.join("members"))?;
        std::fs::create_dir_all(dir.join("claims"))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Lock under a temporary name, then rename: another instance never
        // sees our member file unlocked (and takes it for a dead one).
        let pending = dir.join(format!("members/.{id}.joining"));
        let member = open(&pending)?;
        member.lock()?;
        std::fs::rename(&pending, dir.join(format!("members/{id}.lock")))?;
        Ok(Cluster {
            dir,
            id,
            _member: std::sync::Arc::new(member),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Live instances, this one included. Files of dead instances are removed.
    pub fn live_members(&self) -> io::Result<usize> {
        let mut live = 0;
        for entry in std::fs::read_dir(self.dir.join("members"))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("lock") {
                continue;
            }
            if path.file_stem().and_then(|s| s.to_str()) == Some(self.id.as_str()) {
                live += 1;
                continue;
            }
            let Ok(file) = open(&path) else { continue };
            if try_lock(&file)? {
                // Nobody holds it: its instance is gone.
                let _ = std::fs::remove_file(&path);
            } else {
                live += 1;
            }
        }
        Ok(live.max(1))
    }

    /// Claims `name` if no live instance holds it.
    pub fn try_claim(&self, name: &str) -> io::Result<Option<Claim>> {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let file = open(&self.dir.join(format!("claims/{safe}.lock")))?;
        Ok(try_lock(&file)?.then_some(Claim { _file: file }))
    }

    /// Claims the right to run the silver and gold tiers, if no live
    /// instance holds it.
    pub fn try_lead(&self) -> io::Result<Option<Claim>> {
        self.try_claim(REFINE_CLAIM)
    }
}

/// The claim of the instance that runs silver and gold.
const REFINE_CLAIM: &str = "refine";

/// How many of `partitions` one of `members` instances should consume.
pub fn fair_share(partitions: usize, members: usize) -> usize {
    partitions.div_ceil(members.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_exclude_each_other_and_free_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = Cluster::join(dir.path()).unwrap();
        let b = Cluster::join(dir.path()).unwrap();
        assert_eq!(a.live_members().unwrap(), 2);
        let claim = a.try_claim("topic/0").unwrap().expect("free");
        assert!(b.try_claim("topic/0").unwrap().is_none(), "held by a");
        drop(claim);
        assert!(b.try_claim("topic/0").unwrap().is_some(), "released");
        drop(a);
        assert_eq!(b.live_members().unwrap(), 1, "a left");
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(fair_share(4, 1), 4);
        let lead = b.try_lead().unwrap().expect("nobody leads");
        let c = Cluster::join(dir.path()).unwrap();
        assert!(c.try_lead().unwrap().is_none(), "b leads");
        drop(lead);
        assert!(c.try_lead().unwrap().is_some(), "b stepped down");
    }
}
