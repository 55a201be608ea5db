//! Creates the lake's Azure container if it is missing: neither delta-rs nor
//! object_store does, so a fresh account (or Azurite) would fail every write.
//! One signed REST call (`PUT ?restype=container`); 409 means it exists.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use url::Url;

/// Azurite's public development account and key (documented by Microsoft).
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";

/// What a container call needs: where, as whom, and with which credential.
#[derive(PartialEq, Eq)]
pub struct Target {
    /// Account base URL, e.g. `https://acct.blob.core.windows.net` or
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub base: String,
    pub account: String,
    pub container: String,
    pub credential: Credential,
}

#[derive(PartialEq, Eq)]
pub enum Credential {
    Key(String),
    Sas(String),
    /// Entra ID credentials (service principal, managed identity): this call
    /// does not fetch tokens, so the container must already exist.
    Other,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.container)
    }
}

/// An option by any of its names, from `options` then `AZURE_*` env vars.
fn lookup(
    options: &HashMap<String, String>,
    env: &HashMap<String, String>,
    keys: &[&str],
) -> Option<String> {
    keys.iter()
        .find_map(|k| options.get(*k))
        .or_else(|| keys.iter().find_map(|k| env.get(&k.to_ascii_uppercase())))
        .cloned()
}

fn truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// Works out the target the way object_store does for the same options.
pub fn target(
    url: &Url,
    options: &HashMap<String, String>,
    env: &HashMap<String, String>,
) -> Target {
    let container = super::location::container(url).to_string();
    let emulator = truthy(lookup(
        options,
        env,
        &["azure_storage_use_emulator", "use_emulator"],
    ));
    let account = lookup(
        options,
        env,
        &[
            "azure_storage_account_name",
            "account_name",
            "azure_storage_account",
        ],
    )
    .or_else(|| {
        // abfss://container@account.dfs.core.windows.net/...
        url.host_str()
            .and_then(|h| h.split('.').next())
            .filter(|_| {
                url.host_str()
                    .is_some_and(|h| h.contains(".core.windows.net"))
            })
            .map(str::to_string)
    })
    .unwrap_or_else(|| EMULATOR_ACCOUNT.to_string());
    let endpoint = lookup(
        options,
        env,
        &["azure_storage_endpoint", "azure_endpoint", "endpoint"],
    );
    let base = match (endpoint, emulator) {
        (Some(endpoint), _) => endpoint.trim_end_matches('/').to_string(),
        (None, true) => {
            let host = env
                .get("AZURITE_BLOB_STORAGE_URL")
                .cloned()
                .unwrap_or_else(|| "http://127.0.0.1:10000".into());
            format!("{}/{account}", host.trim_end_matches('/'))
        }
        (None, false) => format!("https://{account}.blob.core.windows.net"),
    };
    let key = lookup(
        options,
        env,
        &[
            "azure_storage_account_key",
            "azure_storage_access_key",
            "account_key",
            "access_key",
        ],
    );
    let sas = lookup(
        options,
        env,
        &[
            "azure_storage_sas_key",
            "sas_key",
            "azure_storage_sas_token",
            "sas_token",
        ],
    );
    let credential = match (key, sas) {
        (Some(key), _) => Credential::Key(key),
        (None, Some(sas)) => Credential::Sas(sas.trim_start_matches('?').to_string()),
        (None, None) if emulator => Credential::Key(EMULATOR_KEY.to_string()),
        (None, None) => Credential::Other,
    };
    Target {
        base,
        account,
        container,
        credential,
    }
}

/// The Shared Key string-to-sign of a bodiless `PUT ?restype=container`.
pub fn string_to_sign(account: &str, path: &str, date: &str) -> String {
    // VERB, then 11 empty standard headers (Content-Length is empty for 0).
    format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{account}{path}\nrestype:container"
    )
}

fn sign(key: &str, text: &str) -> Result<String, String> {
    let key = STANDARD
        .decode(key)
        .map_err(|_| "the storage account key is not base64".to_string())?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    Ok(STANDARD.encode(ring::hmac::sign(&key, text.as_bytes()).as_ref()))
}

/// Creates the container unless it exists. Errors never include credentials.
pub async fn ensure(target: &Target) -> Result<(), String> {
    let mut url = Url::parse(&format!("{}/{}", target.base, target.container))
        .map_err(|e| format!("container URL: {e}"))?;
    url.set_query(Some("restype=container"));
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let client = reqwest012::Client::new();
    let mut request = client
        .put(url.clone())
        .header("x-ms-date", &date)
        .header("x-ms-version", API_VERSION)
        .header("content-length", "0");
    match &target.credential {
        Credential::Key(key) => {
            let signature = sign(key, &string_to_sign(&target.account, url.path(), &date))?;
            request = request.header(
                "authorization",
                format!("SharedKey {}:{signature}", target.account),
            );
        }
        Credential::Sas(sas) => {
            let mut with_sas = url.clone();
            with_sas.set_query(Some(&format!("restype=container&{sas}")));
            request = client
                .put(with_sas)
                .header("x-ms-date", &date)
                .header("x-ms-version", API_VERSION)
                .header("content-length", "0");
        }
        Credential::Other => {
            tracing::info!(container = %target.container, "not creating the container: Entra ID credentials; it must exist");
            return Ok(());
        }
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("creating container {target:?}: {}", e.without_url()))?;
    match response.status().as_u16() {
        201 => {
            tracing::info!(container = %target.container, "created the lake's container");
            Ok(())
        }
        409 => Ok(()),
        status => Err(format!(
            "creating container {target:?}: HTTP {status} {}",
            response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_target_uses_the_dev_account() {
        let url = Url::parse("az://lake/root/").unwrap();
        let options =
            HashMap::from([("azure_storage_use_emulator".to_string(), "true".to_string())]);
        let env = HashMap::from([(
            "AZURITE_BLOB_STORAGE_URL".to_string(),
            "http://127.0.0.1:1234".to_string(),
        )]);
        let t = target(&url, &options, &env);
        assert_eq!(t.base, "http://127.0.0.1:1234/devstoreaccount1");
        assert_eq!(t.container, "lake");
        assert!(matches!(t.credential, Credential::Key(ref k) if k == EMULATOR_KEY));
    }

    #[test]
    fn abfss_target_takes_account_from_host_and_key_from_env() {
        let url = Url::parse("abfss://lake@acct.dfs.core.windows.net/x/").unwrap();
        let env = HashMap::from([("AZURE_STORAGE_ACCOUNT_KEY".to_string(), "a2V5".to_string())]);
        let t = target(&url, &HashMap::new(), &env);
        assert_eq!(t.base, "https://acct.blob.core.windows.net");
        assert_eq!(t.account, "acct");
        assert_eq!(t.container, "lake");
        assert!(matches!(t.credential, Credential::Key(_)));
        assert!(!format!("{t:?}").contains("a2V5"));
    }

    #[test]
    fn string_to_sign_has_the_shared_key_layout() {
        let s = string_to_sign("acct", "/lake", "Sun, 29 Nov 2026 04:00:00 GMT");
        assert_eq!(s.lines().count(), 16);
        assert!(s.starts_with("PUT\n\n"));
        assert!(s.ends_with("\n/acct/lake\nrestype:container"));
    }
}
