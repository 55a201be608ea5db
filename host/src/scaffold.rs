//! `sluice plugin new`: writes a plugin crate (Cargo.toml, src/lib.rs,
//! fixtures, README) from the templates in `host/templates/plugin`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::runtime::Layer;

const CARGO_TOML: &str = include_str!("../templates/plugin/Cargo.toml.tmpl");
const LIB_SILVER: &str = include_str!("../templates/plugin/lib.rs.silver.tmpl");
const LIB_OTHER: &str = include_str!("../templates/plugin/lib.rs.other.tmpl");
const README: &str = include_str!("../templates/plugin/README.md.tmpl");

/// The repository this binary was built from: where the SDK, the default
/// plugins (used as libraries) and the WIT are found by default.
pub fn source_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Creates `<parent>/<name>`; `repo` holds `plugins/` and `wit/`.
pub fn create(name: &str, layer: Layer, parent: &Path, repo: &Path) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
    {
        bail!("plugin name `{name}`: use lower-case letters, digits and dashes");
    }
    let plugins = repo.join("plugins");
    anyhow::ensure!(
        plugins.join("sdk/Cargo.toml").is_file(),
        "no Sluice plugin SDK under {} (pass --repo <sluice checkout>)",
        plugins.display()
    );
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{layer}}", layer.as_str())
            .replace("{{type}}", default_type(layer))
            .replace("{{plugins}}", &plugins.display().to_string())
            .replace("{{wit}}", &repo.join("wit").display().to_string())
    };
    let lib = if layer == Layer::Silver {
        LIB_SILVER
    } else {
        LIB_OTHER
    };
    write(&dir.join("Cargo.toml"), &fill(CARGO_TOML))?;
    write(&dir.join("src/lib.rs"), &fill(lib))?;
    write(&dir.join("README.md"), &fill(README))?;
    // The host's toolchain pin (with the wasm32-wasip2 target), so the
    // plugin builds with the compiler the host was tested with.
    let pin = repo.join("rust-toolchain.toml");
    if pin.is_file() {
        write(
            &dir.join("rust-toolchain.toml"),
            &std::fs::read_to_string(&pin)?,
        )?;
    }
    for file in ["events.ndjson", "expected.ndjson"] {
        let from = plugins.join(layer.as_str()).join("fixtures").join(file);
        let text = std::fs::read_to_string(&from)
            .with_context(|| format!("reading {}", from.display()))?;
        write(&dir.join("fixtures").join(file), &text)?;
    }
    Ok(dir)
}

fn default_type(layer: Layer) -> &'static str {
    match layer {
        Layer::Bronze => "Bronze",
        Layer::Silver => "Silver",
        Layer::Gold => "Gold",
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
