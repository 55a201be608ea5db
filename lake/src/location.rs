//! Where the lake lives: a local directory or an Azure URL (ADLS Gen2 /
//! Blob Storage through delta-rs' object_store), with its storage options.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use url::Url;

/// Schemes delta-rs' Azure handlers accept.
const AZURE_SCHEMES: [&str; 5] = ["az", "azure", "abfs", "abfss", "adl"];

/// Storage options passed to delta-rs / object_store (`azure_storage_*`,
/// `azure_use_emulator`, ...). Values are never printed: they may hold keys.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct StorageOptions(pub BTreeMap<String, String>);

impl std::fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// A parsed lake root.
#[derive(Clone, PartialEq, Eq)]
pub enum LakeRoot {
    /// A local directory.
    Local(PathBuf),
    /// An object-store URL (`az://container/path` form), ending in `/`,
    /// and the options needed to reach it.
    Remote {
        url: Url,
        options: HashMap<String, String>,
    },
}

impl std::fmt::Debug for LakeRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeRoot::Local(path) => write!(f, "Local({})", path.display()),
            LakeRoot::Remote { url, .. } => write!(f, "Remote({url})"),
        }
    }
}

/// True if `root` names an object store rather than a local directory.
pub fn is_url(root: &Path) -> bool {
    root.to_str().is_some_and(|s| s.contains("://"))
}

/// Parses a lake root: a path, `abfss://container@account.dfs.core.windows.net/p`,
/// `az://container/p`, or `https://account.blob.core.windows.net/container/p`.
pub fn parse(root: &Path, options: &StorageOptions) -> Result<LakeRoot, String> {
    if !is_url(root) {
        return Ok(LakeRoot::Local(root.to_path_buf()));
    }
    let text = root.to_str().unwrap_or_default();
    let mut url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let mut options: HashMap<String, String> = options.0.clone().into_iter().collect();
    match url.scheme() {
        s if AZURE_SCHEMES.contains(&s) => {}
        "https" | "http" => url = blob_url_to_az(&url, &mut options)?,
        "file" => {
            let path = url
                .to_file_path()
                .map_err(|_| format!("`{text}` is not a local file URL"))?;
            return Ok(LakeRoot::Local(path));
        }
        other => {
            return Err(format!(
                "scheme `{other}` is not supported (use a path, abfss://, az:// or https://<account>.blob.core.windows.net/)"
            ));
        }
    }
    if url.host_str().unwrap_or_default().is_empty() {
        return Err(format!("`{text}` names no container"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(LakeRoot::Remote { url, options })
}

/// `https://account.blob.core.windows.net/container/path` →
/// `az://container/path` with the account as an option (object_store's
/// `az://` form; delta-rs registers no handler for plain https).
fn blob_url_to_az(url: &Url, options: &mut HashMap<String, String>) -> Result<Url, String> {
    let host = url.host_str().unwrap_or_default();
    let account = host
        .strip_suffix(".blob.core.windows.net")
        .or_else(|| host.strip_suffix(".dfs.core.windows.net"))
        .ok_or_else(|| {
            format!("`{url}` is not an Azure storage URL (<account>.blob.core.windows.net)")
        })?;
    let mut segments = url.path().trim_start_matches('/').splitn(2, '/');
    let container = segments.next().filter(|c| !c.is_empty());
    let container = container.ok_or_else(|| format!("`{url}` names no container"))?;
    let rest = segments.next().unwrap_or("");
    options
        .entry("azure_storage_account_name".into())
        .or_insert_with(|| account.to_string());
    Url::parse(&format!("az://{container}/{rest}")).map_err(|e| e.to_string())
}

/// The container a remote root lives in (`az://container/..` or
/// `abfss://container@account...`).
pub fn container(url: &Url) -> &str {
    match url.scheme() {
        "abfs" | "abfss" if !url.username().is_empty() => url.username(),
        _ => url.host_str().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(root: &str) -> (Url, HashMap<String, String>) {
        match parse(Path::new(root), &StorageOptions::default()).unwrap() {
            LakeRoot::Remote { url, options } => (url, options),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_stay_local() {
        assert_eq!(
            parse(Path::new("data/lake"), &StorageOptions::default()).unwrap(),
            LakeRoot::Local("data/lake".into())
        );
    }

    #[test]
    fn azure_forms_are_understood() {
        let (url, _) = remote("abfss://lake@acct.dfs.core.windows.net/sluice");
        assert_eq!(
            url.as_str(),
            "abfss://lake@acct.dfs.core.windows.net/sluice/"
        );
        assert_eq!(container(&url), "lake");
        let (url, _) = remote("az://lake/a/b");
        assert_eq!(url.as_str(), "az://lake/a/b/");
        assert_eq!(container(&url), "lake");
        let (url, options) = remote("https://acct.blob.core.windows.net/lake/x");
        assert_eq!(url.as_str(), "az://lake/x/");
        assert_eq!(options["azure_storage_account_name"], "acct");
    }

    #[test]
    fn bad_roots_are_refused() {
        assert!(parse(Path::new("s3://b/p"), &StorageOptions::default()).is_err());
        assert!(
            parse(
                Path::new("https://example.com/c"),
                &StorageOptions::default()
            )
            .is_err()
        );
    }

    #[test]
    fn debug_never_shows_option_values() {
        let options = StorageOptions(BTreeMap::from([(
            "azure_storage_account_key".to_string(),
            "s3cr3t".to_string(),
        )]));
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("s3cr3t") && shown.contains("account_key"),
            "{shown}"
        );
    }
}
