//! The Event Hubs processor's checkpoint store in Azure Blob Storage (or
//! Azurite): partition ownership blobs claimed with ETag-conditional writes,
//! and checkpoint blobs, behind the SDK's [`CheckpointStore`] trait.
//!
//! Why our own: the SDK's blob store crate authenticates with Entra ID only,
//! which Azurite cannot serve; `object_store`'s Azure client (already in the
//! build through deltalake) signs with Shared Key, SAS or Entra ID and does
//! the conditional puts (`If-None-Match: *`, `If-Match: <etag>`) we need.
//! Blob names follow the SDKs' layout
//! (`<namespace>/<hub>/<group>/ownership/<partition>`, `…/checkpoint/…`); the
//! owner and sequence number live in the blob body as JSON.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::error::ErrorKind;
use azure_core::http::Etag;
use azure_messaging_eventhubs::CheckpointStore;
use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use futures::TryStreamExt;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use serde::{Deserialize, Serialize};

/// Where the store lives and how it authenticates.
#[derive(Debug, Clone)]
pub struct BlobLocation {
    /// Account URL: `https://<account>.blob.core.windows.net` or, path-style
    /// (Azurite), `http://127.0.0.1:10000/devstoreaccount1`.
    pub account_url: String,
    pub container: String,
    /// Shared Key of the account, if that is how to authenticate; otherwise
    /// the `AZURE_STORAGE_*` / managed identity settings of the environment.
    pub access_key: Option<String>,
}

/// Failure to reach or make sense of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("checkpoint store URL `{0}`: {1}")]
    Url(String, String),
    #[error("checkpoint store: {0}")]
    Container(String),
    #[error("checkpoint store: {0}")]
    Blob(#[from] object_store::Error),
}

/// The account name of `url`: the first host label of `*.blob.core.windows.net`,
/// else (path-style, Azurite) the first path segment.
pub fn account_name(url: &str) -> Result<String, StoreError> {
    let parsed = url::Url::parse(url).map_err(|e| StoreError::Url(url.into(), e.to_string()))?;
    let host = parsed.host_str().unwrap_or_default();
    let name = if host.contains(".blob.") {
        host.split('.').next().map(str::to_string)
    } else {
        parsed
            .path_segments()
            .and_then(|mut s| s.next())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    name.ok_or_else(|| StoreError::Url(url.into(), "no account name in it".into()))
}

/// Checkpoints and ownership of Event Hubs partitions in one blob container.
#[derive(Clone)]
pub struct BlobCheckpointStore {
    store: Arc<dyn ObjectStore>,
}

#[derive(Serialize, Deserialize)]
struct OwnershipBody {
    owner_id: String,
}

#[derive(Serialize, Deserialize)]
struct CheckpointBody {
    sequence_number: Option<i64>,
    offset: Option<String>,
}

fn azure_error(e: impl std::fmt::Display) -> azure_core::Error {
    azure_core::Error::with_message(ErrorKind::Io, e.to_string())
}

fn prefix(namespace: &str, hub: &str, group: &str, kind: &str) -> Path {
    Path::from(format!("{namespace}/{hub}/{group}/{kind}/"))
}

fn blob(namespace: &str, hub: &str, group: &str, kind: &str, partition: &str) -> Path {
    Path::from(format!("{namespace}/{hub}/{group}/{kind}/{partition}"))
}

impl BlobCheckpointStore {
    /// A store on `location`; nothing is contacted yet.
    pub fn new(location: &BlobLocation) -> Result<Self, StoreError> {
        let account = account_name(&location.account_url)?;
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_account(account)
            .with_endpoint(location.account_url.trim_end_matches('/').to_string())
            .with_container_name(&location.container)
            .with_allow_http(location.account_url.starts_with("http://"));
        if let Some(key) = &location.access_key {
            builder = builder.with_access_key(key);
        }
        Ok(BlobCheckpointStore {
            store: Arc::new(builder.build()?),
        })
    }

    /// Creates the container if it does not exist (Azurite starts empty).
    /// Only with a Shared Key: with Entra ID the container must exist.
    pub async fn ensure_container(location: &BlobLocation) -> Result<(), StoreError> {
        let Some(key) = &location.access_key else {
            return Ok(());
        };
        // object_store has no container call: one Shared Key signed request.
        let account = account_name(&location.account_url)?;
        let url = format!(
            "{}/{}?restype=container",
            location.account_url.trim_end_matches('/'),
            location.container
        );
        let path = url::Url::parse(&url)
            .map_err(|e| StoreError::Url(url.clone(), e.to_string()))?
            .path()
            .to_string();
        let date = httpdate::fmt_http_date(SystemTime::now());
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}{path}\nrestype:container"
        );
        let signature = sign(key, &to_sign).map_err(|e| StoreError::Url(url.clone(), e))?;
        let response = reqwest::Client::new()
            .put(&url)
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("content-length", "0")
            .header("authorization", format!("SharedKey {account}:{signature}"))
            .send()
            .await
            .map_err(|e| StoreError::Container(e.to_string()))?;
        match response.status().as_u16() {
            201 | 409 => Ok(()),
            status => Err(StoreError::Container(format!(
                "creating container {} answered {status}",
                location.container
            ))),
        }
    }

    /// Ownership blobs, with their ETag and last-modified time.
    async fn ownerships(&self, prefix: &Path) -> Result<Vec<Ownership>, StoreError> {
        let metas: Vec<_> = self.store.list(Some(prefix)).try_collect().await?;
        let mut found = Vec::new();
        for meta in metas {
            let got = match self.store.get(&meta.location).await {
                Ok(got) => got,
                // Deleted between list and get: nobody owns it.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let meta = got.meta.clone();
            let body = got.bytes().await?;
            let owner: OwnershipBody = serde_json::from_slice(&body).unwrap_or(OwnershipBody {
                owner_id: String::new(),
            });
            let mut parts = meta.location.parts().map(|p| p.as_ref().to_string());
            let (Some(ns), Some(hub), Some(group), _, Some(partition)) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                continue;
            };
            found.push(Ownership {
                fully_qualified_namespace: ns,
                event_hub_name: hub,
                consumer_group: group,
                partition_id: partition,
                owner_id: Some(owner.owner_id).filter(|o| !o.is_empty()),
                etag: meta.e_tag.map(Etag::from),
                last_modified_time: Some(SystemTime::from(meta.last_modified).into()),
            });
        }
        Ok(found)
    }

    /// Writes one ownership: created if its `etag` is `None`, else replaced
    /// only if the blob still has that ETag. `Ok(None)` if another owner won.
    async fn claim(&self, wanted: &Ownership) -> Result<Option<Ownership>, StoreError> {
        let path = blob(
            &wanted.fully_qualified_namespace,
            &wanted.event_hub_name,
            &wanted.consumer_group,
            "ownership",
            &wanted.partition_id,
        );
        let body = serde_json::to_vec(&OwnershipBody {
            owner_id: wanted.owner_id.clone().unwrap_or_default(),
        })
        .expect("ownership serializes");
        let mode = match &wanted.etag {
            None => PutMode::Create,
            Some(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.to_string()),
                version: None,
            }),
        };
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        match self.store.put_opts(&path, body.into(), options).await {
            Ok(result) => {
                let mut claimed = wanted.clone();
                claimed.etag = result.e_tag.map(Etag::from);
                claimed.last_modified_time = Some(SystemTime::now().into());
                Ok(Some(claimed))
            }
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Shared Key signature: base64 HMAC-SHA256 of `text` under the base64 `key`.
fn sign(key: &str, text: &str) -> Result<String, String> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(key.trim())
        .map_err(|_| "the account key is not base64".to_string())?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    Ok(engine.encode(ring::hmac::sign(&key, text.as_bytes()).as_ref()))
}

/// Whether `ownership` is stale: not renewed within `expiry`.
pub fn expired(ownership: &Ownership, expiry: Duration) -> bool {
    let Some(modified) = ownership.last_modified_time else {
        return true;
    };
    let modified = SystemTime::from(modified);
    SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|age| age > expiry)
}

#[async_trait::async_trait]
impl CheckpointStore for BlobCheckpointStore {
    async fn claim_ownership(
        &self,
        ownerships: &[Ownership],
    ) -> azure_core::Result<Vec<Ownership>> {
        let mut claimed = Vec::new();
        for wanted in ownerships {
            if let Some(won) = self.claim(wanted).await.map_err(azure_error)? {
                claimed.push(won);
            }
        }
        Ok(claimed)
    }

    async fn list_checkpoints(
        &self,
        namespace: &str,
        hub: &str,
        group: &str,
    ) -> azure_core::Result<Vec<Checkpoint>> {
        let prefix = prefix(namespace, hub, group, "checkpoint");
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(azure_error)?;
        let mut found = Vec::new();
        for meta in metas {
            let body = match self.store.get(&meta.location).await {
                Ok(got) => got.bytes().await.map_err(azure_error)?,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(azure_error(e)),
            };
            let Ok(body) = serde_json::from_slice::<CheckpointBody>(&body) else {
                continue;
            };
            let Some(partition) = meta.location.filename() else {
                continue;
            };
            found.push(Checkpoint {
                fully_qualified_namespace: namespace.into(),
                event_hub_name: hub.into(),
                consumer_group: group.into(),
                partition_id: partition.into(),
                offset: body.offset,
                sequence_number: body.sequence_number,
            });
        }
        Ok(found)
    }

    async fn list_ownerships(
        &self,
        namespace: &str,
        hub: &str,
        group: &str,
    ) -> azure_core::Result<Vec<Ownership>> {
        self.ownerships(&prefix(namespace, hub, group, "ownership"))
            .await
            .map_err(azure_error)
    }

    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> azure_core::Result<()> {
        let path = blob(
            &checkpoint.fully_qualified_namespace,
            &checkpoint.event_hub_name,
            &checkpoint.consumer_group,
            "checkpoint",
            &checkpoint.partition_id,
        );
        let body = serde_json::to_vec(&CheckpointBody {
            sequence_number: checkpoint.sequence_number,
            offset: checkpoint.offset,
        })
        .expect("checkpoint serializes");
        self.store
            .put(&path, body.into())
            .await
            .map_err(azure_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_from_either_url_style() {
        assert_eq!(
            account_name("https://acme.blob.core.windows.net").unwrap(),
            "acme"
        );
        assert_eq!(
            account_name("http://127.0.0.1:10000/devstoreaccount1").unwrap(),
            "devstoreaccount1"
        );
        assert!(account_name("http://127.0.0.1:10000").is_err());
        assert!(account_name("not a url").is_err());
    }
}
