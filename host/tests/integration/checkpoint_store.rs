//! The Event Hubs checkpoint/ownership store against a real Azurite blob
//! service (`SLUICE_TEST_AZURITE_BLOB`, set by `.ci/run`): claims, a refused
//! conflicting claim (ETag), takeover after expiry, checkpoints.

use std::time::Duration;

use azure_messaging_eventhubs::CheckpointStore;
use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use sluice::sources::blob_checkpoints::{BlobCheckpointStore, BlobLocation, expired};
use sluice::sources::eventhubs::{Scope, claim_round, relinquish};

/// Azurite's well-known development account key (public, documented by
/// Microsoft; not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The Azurite account URL, or `None` after printing why the test skips
/// (it panics instead when `.ci/run` requires the services).
pub(crate) fn azurite() -> Option<String> {
    match std::env::var("SLUICE_TEST_AZURITE_BLOB") {
        Ok(url) => Some(url),
        Err(_) => {
            let reason = "SLUICE_TEST_AZURITE_BLOB (an Azurite blob account URL) is not set";
            if std::env::var("SLUICE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("a required service is missing: {reason}");
            }
            eprintln!("skipping: {reason}");
            None
        }
    }
}

const NS: &str = "test.servicebus.windows.net";
pub(crate) const HUB: &str = "events";
const GROUP: &str = "$Default";

fn wanted(partition: &str, owner: &str, etag: Option<&Ownership>) -> Ownership {
    Ownership {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.into(),
        owner_id: Some(owner.into()),
        etag: etag.and_then(|o| o.etag.clone()),
        last_modified_time: None,
    }
}

async fn current(store: &BlobCheckpointStore, partition: &str) -> Ownership {
    let all = store.list_ownerships(NS, HUB, GROUP).await.unwrap();
    all.into_iter()
        .find(|o| o.partition_id == partition)
        .expect("an ownership blob")
}

#[tokio::test]
async fn ownership_and_checkpoints_in_azurite() {
    let Some(url) = azurite() else { return };
    let location = BlobLocation {
        account_url: url,
        container: format!("ckpt-{}", uuid::Uuid::new_v4().simple()),
        access_key: Some(AZURITE_KEY.into()),
    };
    BlobCheckpointStore::ensure_container(&location)
        .await
        .unwrap();
    BlobCheckpointStore::ensure_container(&location)
        .await
        .expect("an existing container is fine");
    let store = BlobCheckpointStore::new(&location).unwrap();

    // A claims partition 0; B's claim of the same new blob is refused.
    let a = store
        .claim_ownership(&[wanted("0", "a", None)])
        .await
        .unwrap();
    assert_eq!(a.len(), 1, "a claims a free partition");
    let b = store
        .claim_ownership(&[wanted("0", "b", None)])
        .await
        .unwrap();
    assert!(b.is_empty(), "b cannot create a blob a owns");
    let seen_by_b = current(&store, "0").await;
    assert_eq!(seen_by_b.owner_id.as_deref(), Some("a"));

    // A renews (ETag changes); B's claim with the ETag it saw is refused.
    let renewed = store
        .claim_ownership(&[wanted("0", "a", Some(&a[0]))])
        .await
        .unwrap();
    assert_eq!(renewed.len(), 1, "the owner renews with its ETag");
    assert_ne!(renewed[0].etag, a[0].etag, "a renewal changes the ETag");
    let b = store
        .claim_ownership(&[wanted("0", "b", Some(&seen_by_b))])
        .await
        .unwrap();
    assert!(b.is_empty(), "a stale ETag is refused");
    assert_eq!(current(&store, "0").await.owner_id.as_deref(), Some("a"));

    // A stops renewing: once expired, B takes over and A's renewal fails.
    let fresh = current(&store, "0").await;
    assert!(!expired(&fresh, Duration::from_secs(30)), "just renewed");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let stale = current(&store, "0").await;
    assert!(
        expired(&stale, Duration::from_secs(1)),
        "not renewed for 2 s"
    );
    let b = store
        .claim_ownership(&[wanted("0", "b", Some(&stale))])
        .await
        .unwrap();
    assert_eq!(b.len(), 1, "b takes over the stale ownership");
    let a_again = store
        .claim_ownership(&[wanted("0", "a", Some(&renewed[0]))])
        .await
        .unwrap();
    assert!(a_again.is_empty(), "a lost the partition");
    assert_eq!(current(&store, "0").await.owner_id.as_deref(), Some("b"));

    // Checkpoints: the latest write per partition is what is read back.
    for (partition, sequence) in [("0", 41), ("0", 42), ("1", 7)] {
        store
            .update_checkpoint(Checkpoint {
                fully_qualified_namespace: NS.into(),
                event_hub_name: HUB.into(),
                consumer_group: GROUP.into(),
                partition_id: partition.into(),
                offset: Some(format!("{}", sequence * 100)),
                sequence_number: Some(sequence),
            })
            .await
            .unwrap();
    }
    let mut checkpoints = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
    checkpoints.sort_by(|x, y| x.partition_id.cmp(&y.partition_id));
    let read: Vec<(String, Option<i64>, Option<String>)> = checkpoints
        .into_iter()
        .map(|c| (c.partition_id, c.sequence_number, c.offset))
        .collect();
    assert_eq!(
        read,
        vec![
            ("0".into(), Some(42), Some("4200".into())),
            ("1".into(), Some(7), Some("700".into())),
        ]
    );
    let other_group = store.list_checkpoints(NS, HUB, "other").await.unwrap();
    assert!(other_group.is_empty(), "checkpoints are per consumer group");
}

/// A fresh container of the Azurite account at `url`.
fn fresh_location(url: String) -> BlobLocation {
    BlobLocation {
        account_url: url,
        container: format!("own-{}", uuid::Uuid::new_v4().simple()),
        access_key: Some(AZURITE_KEY.into()),
    }
}

/// An ownership store on a fresh container of the Azurite account at
/// `url`, and the hub it keeps ownership for (`HUB`, consumer group `GROUP`).
pub(crate) async fn fresh_ownership_store(url: String) -> (BlobCheckpointStore, Scope) {
    ownership_store(&fresh_location(url)).await
}

async fn ownership_store(location: &BlobLocation) -> (BlobCheckpointStore, Scope) {
    BlobCheckpointStore::ensure_container(location)
        .await
        .unwrap();
    let store = BlobCheckpointStore::new(location).unwrap();
    let scope = Scope {
        namespace: NS.into(),
        hub: HUB.into(),
        group: GROUP.into(),
    };
    (store, scope)
}

/// Two owners, `a` and `b`, on a fresh container at `location`: four
/// ownership rounds each, as two instances started together do; they split
/// the four partitions two and two. Returns the store, the scope and the ids.
async fn two_owners_split(
    location: &BlobLocation,
    expiry: Duration,
) -> (BlobCheckpointStore, Scope, Vec<String>) {
    let (store, scope) = ownership_store(location).await;
    let ids: Vec<String> = (0..4).map(|i| i.to_string()).collect();
    let (mut a, mut b) = (Default::default(), Default::default());
    for _ in 0..4 {
        a = claim_round(&store, &scope, "a", &ids, expiry)
            .await
            .unwrap()
            .owned;
        b = claim_round(&store, &scope, "b", &ids, expiry)
            .await
            .unwrap()
            .owned;
    }
    assert_eq!((a.len(), b.len()), (2, 2), "a {a:?}, b {b:?}");
    assert!(a.is_disjoint(&b), "a {a:?}, b {b:?}");
    (store, scope, ids)
}

/// The ownership rounds `sluice run` does, for two instances on Azurite:
/// started together they split four partitions two and two; when one stops
/// renewing, the other takes its partitions once they are stale.
#[tokio::test]
async fn two_owners_balance_and_take_over_in_azurite() {
    let Some(url) = azurite() else { return };
    let expiry = Duration::from_secs(30);
    let (store, scope, ids) = two_owners_split(&fresh_location(url), expiry).await;
    let mut b = Default::default();

    // a stops renewing; with a 3 s expiry b takes all four, one a round.
    // Blob Last-Modified has one-second resolution, so a renewal can look
    // up to a second older than it is: the expiry leaves room for that and
    // for slow rounds on a loaded machine, and a's claims are 4 s old.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let short = Duration::from_secs(3);
    for _ in 0..4 {
        b = claim_round(&store, &scope, "b", &ids, short)
            .await
            .unwrap()
            .owned;
    }
    assert_eq!(b.len(), 4, "b took over: {b:?}");
    let a_now = claim_round(&store, &scope, "a", &ids, expiry)
        .await
        .unwrap();
    assert!(
        a_now.owned.is_empty(),
        "a lost everything: {:?}",
        a_now.owned
    );
}

/// An instance that stops cleanly hands its partitions back: the other takes
/// them in its next rounds, without waiting for the ownerships to expire.
#[tokio::test]
async fn a_stopped_owner_hands_its_partitions_back_at_once() {
    let Some(url) = azurite() else { return };
    let expiry = Duration::from_secs(600);
    let (store, scope, ids) = two_owners_split(&fresh_location(url), expiry).await;
    let mut b = Default::default();

    assert_eq!(relinquish(&store, &scope, "a").await.unwrap(), 2);
    for _ in 0..2 {
        b = claim_round(&store, &scope, "b", &ids, expiry)
            .await
            .unwrap()
            .owned;
    }
    assert_eq!(
        b.len(),
        4,
        "b took a's partitions long before expiry: {b:?}"
    );
    assert_eq!(
        relinquish(&store, &scope, "a").await.unwrap(),
        0,
        "a owns nothing to hand back"
    );
}

/// `sluice status` with a checkpoint store says who owns each partition,
/// read from the store alone: the hub (unreachable here) is only needed for
/// the lag, which it reports as unavailable, failing, after the rest.
#[tokio::test]
async fn status_shows_each_partitions_owner_from_the_store() {
    let Some(url) = azurite() else { return };
    let location = fresh_location(url.clone());
    let (store, scope, _) = two_owners_split(&location, Duration::from_secs(600)).await;
    let a: Vec<String> =
        sluice::sources::eventhubs::owners(&store, &scope, Duration::from_secs(600))
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.owner.as_deref() == Some("a"))
            .map(|o| o.partition)
            .collect();
    assert_eq!(a.len(), 2, "{a:?}");
    relinquish(&store, &scope, "a").await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lake")).unwrap();
    let config = dir.path().join("sluice.toml");
    let toml = format!(
        "lake = {:?}\n[eventhubs]\nhub = {HUB:?}\nconsumer_group = {GROUP:?}\n\
         connection_string_env = \"SLUICE_TEST_STATUS_HUB\"\ncheckpoint_url = {url:?}\n\
         checkpoint_container = {:?}\ncheckpoint_key_env = \"SLUICE_TEST_STATUS_KEY\"\n\
         ownership_expiry_secs = 600\n",
        dir.path().join("lake").to_str().unwrap(),
        location.container,
    );
    std::fs::write(&config, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["status", "--config"])
        .arg(&config)
        .env(
            "SLUICE_TEST_STATUS_HUB",
            format!("Endpoint=sb://{NS}/;SharedAccessKeyName=test;SharedAccessKey=unused"),
        )
        .env("SLUICE_TEST_STATUS_KEY", AZURITE_KEY)
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let state = |partition: &str| -> (String, String) {
        let line = stdout
            .lines()
            .skip_while(|l| !l.contains("partition owners"))
            .find(|l| l.split_whitespace().next() == Some(partition))
            .unwrap_or_else(|| panic!("no line for partition {partition}: {stdout}{stderr}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        (words[1].to_string(), words[4..].join(" "))
    };
    for id in ["0", "1", "2", "3"] {
        let expected = if a.contains(&id.to_string()) {
            ("-".to_string(), "handed back".to_string())
        } else {
            ("b".to_string(), "live".to_string())
        };
        assert_eq!(state(id), expected, "partition {id}: {stdout}");
    }
    assert!(
        stdout.contains("event hub lag unavailable") && !out.status.success(),
        "the lag needs the hub, and its absence fails status: {stdout}"
    );
    assert!(
        !stdout.contains(AZURITE_KEY) && !stderr.contains(AZURITE_KEY),
        "no key in the output"
    );
}
