//! `sluice plugin new`: writes a self-contained plugin crate from a template
//! per use case (`host/templates/plugin/`).
//!
//! The crate needs nothing of a Sluice checkout: this binary carries the WIT
//! contract, the plugin SDK and the default plugin a template builds on, and
//! writes them into the crate (`wit/`, `vendor/<crate>/`) with manifests whose
//! workspace references are resolved, plus the workspace's `Cargo.lock` so the
//! crate resolves to the crates.io versions the host was tested with. So a
//! team with only the `sluice` binary builds with
//! `cargo build --release --target wasm32-wasip2` and crates.io.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::runtime::Layer;

/// What the new plugin is for; each has its own sources, fixtures and README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// The default bronze transform, ready for changes.
    Bronze,
    /// The default silver rules plus one: rows matching a condition go to
    /// quarantine with a reason of yours.
    SilverRule,
    /// The default silver rules plus a value looked up in a table compiled
    /// into the plugin.
    SilverEnrichment,
    /// The default gold tables plus a new merged table.
    GoldTable,
}

impl Template {
    /// The template `--layer` alone stands for.
    pub fn for_layer(layer: Layer) -> Template {
        match layer {
            Layer::Bronze => Template::Bronze,
            Layer::Silver => Template::SilverRule,
            Layer::Gold => Template::GoldTable,
        }
    }

    pub fn layer(self) -> Layer {
        match self {
            Template::Bronze => Layer::Bronze,
            Template::SilverRule | Template::SilverEnrichment => Layer::Silver,
            Template::GoldTable => Layer::Gold,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Template::Bronze => "bronze",
            Template::SilverRule => "silver-rule",
            Template::SilverEnrichment => "silver-enrichment",
            Template::GoldTable => "gold-table",
        }
    }

    fn sources(self) -> (&'static str, &'static str) {
        match self {
            Template::Bronze => (
                include_str!("../templates/plugin/bronze/lib.rs.tmpl"),
                include_str!("../templates/plugin/bronze/README.md.tmpl"),
            ),
            Template::SilverRule => (
                include_str!("../templates/plugin/silver-rule/lib.rs.tmpl"),
                include_str!("../templates/plugin/silver-rule/README.md.tmpl"),
            ),
            Template::SilverEnrichment => (
                include_str!("../templates/plugin/silver-enrichment/lib.rs.tmpl"),
                include_str!("../templates/plugin/silver-enrichment/README.md.tmpl"),
            ),
            Template::GoldTable => (
                include_str!("../templates/plugin/gold-table/lib.rs.tmpl"),
                include_str!("../templates/plugin/gold-table/README.md.tmpl"),
            ),
        }
    }

    /// Fixture events and the rows the template's plugin gives for them.
    fn fixtures(self) -> (&'static str, &'static str) {
        match self {
            Template::Bronze => (
                include_str!("../../plugins/bronze/fixtures/events.ndjson"),
                include_str!("../../plugins/bronze/fixtures/expected.ndjson"),
            ),
            Template::SilverRule => (
                include_str!("../templates/plugin/silver-rule/events.ndjson"),
                include_str!("../templates/plugin/silver-rule/expected.ndjson"),
            ),
            Template::SilverEnrichment => (
                include_str!("../templates/plugin/silver-enrichment/events.ndjson"),
                include_str!("../templates/plugin/silver-enrichment/expected.ndjson"),
            ),
            Template::GoldTable => (
                include_str!("../templates/plugin/gold-table/events.ndjson"),
                include_str!("../templates/plugin/gold-table/expected.ndjson"),
            ),
        }
    }

    /// The default plugin the template's code builds on, as a library.
    fn base(self) -> &'static Vendored {
        match self.layer() {
            Layer::Bronze => &BRONZE,
            Layer::Silver => &SILVER,
            Layer::Gold => &GOLD,
        }
    }
}

/// A crate of this repository the binary carries: its manifest (with
/// workspace references) and every source file under `src/`.
pub struct Vendored {
    /// The package name, also its directory under `vendor/`.
    pub package: &'static str,
    /// Its directory in the repository, under `plugins/`.
    pub dir: &'static str,
    manifest: &'static str,
    /// (path under `src/`, text).
    pub sources: &'static [(&'static str, &'static str)],
}

/// Embeds `plugins/<dir>/src/<file>` for each file, with its name.
macro_rules! sources {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../plugins/", $dir, "/src/", $file)))),*]
    };
}

pub const SDK: Vendored = Vendored {
    package: "sluice-plugin-sdk",
    dir: "sdk",
    manifest: include_str!("../../plugins/sdk/Cargo.toml"),
    sources: sources!("sdk": "lib.rs", "ipc.rs", "rows.rs", "schemas.rs"),
};

pub const BRONZE: Vendored = Vendored {
    package: "sluice-plugin-bronze",
    dir: "bronze",
    manifest: include_str!("../../plugins/bronze/Cargo.toml"),
    sources: sources!("bronze": "lib.rs"),
};

pub const SILVER: Vendored = Vendored {
    package: "sluice-plugin-silver",
    dir: "silver",
    manifest: include_str!("../../plugins/silver/Cargo.toml"),
    sources: sources!("silver": "lib.rs", "event.rs", "fixture.rs", "validate.rs"),
};

pub const GOLD: Vendored = Vendored {
    package: "sluice-plugin-gold",
    dir: "gold",
    manifest: include_str!("../../plugins/gold/Cargo.toml"),
    sources: sources!("gold": "lib.rs", "calendar.rs", "catalog.rs", "fold.rs", "input.rs", "tables.rs"),
};

/// Every crate the binary carries (checked against the repository by a test).
pub const VENDORED: [&Vendored; 4] = [&SDK, &BRONZE, &SILVER, &GOLD];

const WIT: &str = include_str!("../../wit/transform.wit");
const WORKSPACE_MANIFEST: &str = include_str!("../../Cargo.toml");
const WORKSPACE_LOCK: &str = include_str!("../../Cargo.lock");
const TOOLCHAIN: &str = include_str!("../../rust-toolchain.toml");
const CARGO_TOML: &str = include_str!("../templates/plugin/Cargo.toml.tmpl");
const GITIGNORE: &str = "/target\n";

/// The contract's package version (`sluice:transform@<this>`), from the WIT.
pub fn contract_version() -> &'static str {
    WIT.lines()
        .find_map(|l| l.trim().strip_prefix("package sluice:transform@"))
        .map(|v| v.trim_end_matches(';').trim())
        .expect("wit/transform.wit declares `package sluice:transform@<version>;`")
}

/// Creates `<parent>/<name>` from `template`; returns its path.
pub fn create(name: &str, template: Template, parent: &Path) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
    {
        bail!("plugin name `{name}`: use lower-case letters, digits and dashes");
    }
    if name.starts_with("sluice-plugin-") {
        bail!("plugin name `{name}`: `sluice-plugin-*` names the vendored Sluice crates");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let base = template.base();
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{layer}}", template.layer().as_str())
            .replace("{{template}}", template.name())
            .replace("{{base}}", base.package)
            .replace("{{contract}}", contract_version())
            .replace("{{sluice_version}}", env!("CARGO_PKG_VERSION"))
    };
    let (lib, readme) = template.sources();
    let (events, expected) = template.fixtures();
    write(&dir.join("Cargo.toml"), &fill(CARGO_TOML))?;
    write(&dir.join("src/lib.rs"), &fill(lib))?;
    write(&dir.join("README.md"), &fill(readme))?;
    write(&dir.join("fixtures/events.ndjson"), events)?;
    // Expected rows name the template's own tables (`{{crate}}_…`).
    write(&dir.join("fixtures/expected.ndjson"), &fill(expected))?;
    write(&dir.join("wit/transform.wit"), WIT)?;
    // The host's toolchain pin (with the wasm32-wasip2 target), so the
    // plugin builds with the compiler the host was tested with.
    write(&dir.join("rust-toolchain.toml"), TOOLCHAIN)?;
    // The versions the host and its plugins were tested with; cargo drops
    // the entries this crate does not use on its first build.
    write(&dir.join("Cargo.lock"), WORKSPACE_LOCK)?;
    write(&dir.join(".gitignore"), GITIGNORE)?;
    let workspace: toml::Table = WORKSPACE_MANIFEST
        .parse()
        .context("parsing the workspace Cargo.toml this binary carries")?;
    for vendored in [&SDK, base] {
        let at = dir.join("vendor").join(vendored.package);
        write(
            &at.join("Cargo.toml"),
            &vendored_manifest(vendored, &workspace)?,
        )?;
        for (file, text) in vendored.sources {
            write(&at.join("src").join(file), text)?;
        }
    }
    Ok(dir)
}

/// `vendored`'s manifest standing alone: `x.workspace = true` replaced by
/// the workspace's value, Sluice crates pointing at their `vendor/`
/// siblings, dev-dependencies (for tests not carried) dropped. Its
/// `../../wit` (the WIT from `plugins/<dir>`) is the crate's `wit/` from
/// `vendor/<package>` too, so the SDK's `generate!` needs no change.
pub fn vendored_manifest(vendored: &Vendored, workspace: &toml::Table) -> anyhow::Result<String> {
    let what = || format!("the manifest of {}", vendored.package);
    let mut manifest: toml::Table = vendored.manifest.parse().with_context(what)?;
    let inherited = |table: &toml::Value| {
        table
            .as_table()
            .and_then(|t| t.get("workspace"))
            .and_then(toml::Value::as_bool)
            == Some(true)
    };
    let ws_package = workspace
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(toml::Value::as_table)
        .context("the workspace Cargo.toml has no [workspace.package]")?;
    let ws_deps = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(toml::Value::as_table)
        .context("the workspace Cargo.toml has no [workspace.dependencies]")?;
    if let Some(package) = manifest.get_mut("package").and_then(|p| p.as_table_mut()) {
        for (key, value) in package.iter_mut() {
            if inherited(value) {
                *value = ws_package
                    .get(key)
                    .with_context(|| format!("{}: no workspace.package.{key}", what()))?
                    .clone();
            }
        }
    }
    manifest.remove("dev-dependencies");
    for key in ["dependencies", "build-dependencies"] {
        if let Some(deps) = manifest.get_mut(key).and_then(|t| t.as_table_mut()) {
            resolve_dependencies(deps, ws_deps).with_context(what)?;
        }
    }
    if let Some(targets) = manifest.get_mut("target").and_then(|t| t.as_table_mut()) {
        for (_, target) in targets.iter_mut() {
            if let Some(deps) = target
                .get_mut("dependencies")
                .and_then(|t| t.as_table_mut())
            {
                resolve_dependencies(deps, ws_deps).with_context(what)?;
            }
        }
    }
    // `[package]` first, as people write manifests (the table sorts keys).
    let mut package = toml::Table::new();
    if let Some(p) = manifest.remove("package") {
        package.insert("package".into(), p);
    }
    let text = format!(
        "{}\n{}",
        toml::to_string(&package).with_context(what)?,
        toml::to_string(&manifest).with_context(what)?
    );
    Ok(format!(
        "# {} as shipped with sluice {} (contract sluice:transform@{}),\n\
         # written by `sluice plugin new`. Replace it with the one a newer\n\
         # `sluice plugin new` writes when you move to a newer host.\n\n{text}",
        vendored.package,
        env!("CARGO_PKG_VERSION"),
        contract_version()
    ))
}

/// Replaces each `dep.workspace = true` of `deps` by the workspace's entry,
/// with the member's own keys (features added, others overriding); a path
/// dependency (a Sluice crate) points at its `vendor/` sibling.
fn resolve_dependencies(deps: &mut toml::Table, ws_deps: &toml::Table) -> anyhow::Result<()> {
    for (name, dep) in deps.iter_mut() {
        let Some(own) = dep.as_table().filter(|t| t.get("workspace").is_some()) else {
            continue;
        };
        let mut resolved = match ws_deps.get(name) {
            Some(toml::Value::String(version)) => {
                let mut t = toml::Table::new();
                t.insert("version".into(), toml::Value::String(version.clone()));
                t
            }
            Some(toml::Value::Table(t)) => t.clone(),
            _ => bail!("no workspace dependency `{name}`"),
        };
        if resolved.contains_key("path") {
            resolved.insert("path".into(), toml::Value::String(format!("../{name}")));
        }
        for (key, value) in own {
            match (key.as_str(), resolved.get_mut(key)) {
                ("workspace", _) => {}
                ("features", Some(toml::Value::Array(features))) => {
                    features.extend(value.as_array().into_iter().flatten().cloned())
                }
                _ => {
                    resolved.insert(key.clone(), value.clone());
                }
            }
        }
        *dep = toml::Value::Table(resolved);
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Every source file of a carried crate is carried: a file added to the
    /// SDK or a default plugin must be added to its `sources!` list.
    #[test]
    fn the_binary_carries_every_source_of_the_vendored_crates() {
        for vendored in VENDORED {
            let src = repo().join("plugins").join(vendored.dir).join("src");
            let mut on_disk: Vec<String> = std::fs::read_dir(&src)
                .unwrap()
                .map(|e| e.unwrap())
                .inspect(|e| assert!(e.file_type().unwrap().is_file(), "{:?}", e.path()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            let mut carried: Vec<String> = vendored
                .sources
                .iter()
                .map(|(f, _)| f.to_string())
                .collect();
            on_disk.sort();
            carried.sort();
            assert_eq!(carried, on_disk, "plugins/{}/src", vendored.dir);
        }
    }

    #[test]
    fn vendored_manifests_stand_alone() {
        let workspace: toml::Table = WORKSPACE_MANIFEST.parse().unwrap();
        for vendored in VENDORED {
            let text = vendored_manifest(vendored, &workspace).unwrap();
            assert!(!text.contains("workspace"), "{text}");
            let manifest: toml::Table = text.parse().unwrap();
            let package = manifest["package"].as_table().unwrap();
            assert_eq!(package["name"].as_str(), Some(vendored.package));
            assert_eq!(package["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
            assert!(!manifest.contains_key("dev-dependencies"));
            if let Some(sdk) = manifest["dependencies"].get("sluice-plugin-sdk") {
                assert_eq!(sdk["path"].as_str(), Some("../sluice-plugin-sdk"));
            }
        }
        let silver = vendored_manifest(&SILVER, &workspace).unwrap();
        let silver: toml::Table = silver.parse().unwrap();
        let deps = &silver["dependencies"];
        assert_eq!(
            deps["sluice-plugin-sdk"]["path"].as_str(),
            Some("../sluice-plugin-sdk")
        );
        // Features of the member are added to the workspace's.
        let json = deps["serde_json"].as_table().unwrap();
        assert_eq!(
            json["features"].as_array().unwrap()[0].as_str(),
            Some("raw_value")
        );
        let arrow = &deps["arrow-array"];
        assert_eq!(arrow["default-features"].as_bool(), Some(false));
        let native = &silver["target"]["cfg(not(target_arch = \"wasm32\"))"]["dependencies"];
        assert!(native["arrow-select"]["version"].is_str(), "{silver:?}");
    }

    /// A `{{word}}` left unfilled (Rust's `{{` escapes are not words).
    fn has_placeholder(text: &str) -> bool {
        text.split("{{").skip(1).any(|rest| {
            rest.split_once("}}").is_some_and(|(word, _)| {
                !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            })
        })
    }

    #[test]
    fn a_crate_has_no_path_outside_itself() {
        let dir = tempfile::tempdir().unwrap();
        for template in [
            Template::Bronze,
            Template::SilverRule,
            Template::SilverEnrichment,
            Template::GoldTable,
        ] {
            let name = format!("acme-{}", template.name());
            let created = create(&name, template, dir.path()).unwrap();
            let manifest = std::fs::read_to_string(created.join("Cargo.toml")).unwrap();
            assert!(!has_placeholder(&manifest), "{manifest}");
            let manifest: toml::Table = manifest.parse().unwrap();
            let base = template.base().package;
            assert_eq!(
                manifest["dependencies"][base]["path"].as_str(),
                Some(format!("vendor/{base}").as_str())
            );
            assert!(
                created
                    .join("vendor")
                    .join(base)
                    .join("src/lib.rs")
                    .is_file()
            );
            assert!(
                created
                    .join("vendor/sluice-plugin-sdk/Cargo.toml")
                    .is_file()
            );
            // The SDK's `generate!` path, from its vendored directory.
            let sdk_lib = created.join("vendor/sluice-plugin-sdk/src/lib.rs");
            assert!(
                std::fs::read_to_string(sdk_lib)
                    .unwrap()
                    .contains("\"../../wit\"")
            );
            assert!(
                created
                    .join("vendor/sluice-plugin-sdk/../../wit/transform.wit")
                    .is_file()
            );
            for file in ["src/lib.rs", "README.md", "fixtures/expected.ndjson"] {
                let text = std::fs::read_to_string(created.join(file)).unwrap();
                assert!(!has_placeholder(&text), "{file}: {text}");
            }
            for manifest in [
                created.join("Cargo.toml"),
                created.join("vendor/sluice-plugin-sdk/Cargo.toml"),
                created.join("vendor").join(base).join("Cargo.toml"),
            ] {
                let text = std::fs::read_to_string(&manifest).unwrap();
                for line in text.lines().filter(|l| l.contains("path")) {
                    assert!(!line.contains("\"/"), "{}: {line}", manifest.display());
                }
            }
        }
        assert!(create("acme-silver-rule", Template::SilverRule, dir.path()).is_err());
        assert!(create("Bad_Name", Template::SilverRule, dir.path()).is_err());
    }

    #[test]
    fn the_contract_version_is_the_wits() {
        assert!(WIT.contains(&format!("package sluice:transform@{};", contract_version())));
    }
}
