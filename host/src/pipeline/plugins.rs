//! The active plugin of each layer, and the checks a plugin must pass to
//! serve a layer (chosen by `lifecycle`: registry, config or embedded).

use std::path::Path;

use anyhow::{Context as _, bail};
use deltalake::arrow::datatypes::DataType;

use crate::layers::{bronze, quarantine, silver};
use crate::runtime::contract::WriteMode;
use crate::runtime::{Layer, LoadedPlugin};

/// Tables the host owns; a gold plugin may not declare these names.
pub const RESERVED_TABLES: [&str; 4] = [
    bronze::TABLE,
    silver::TABLE,
    quarantine::TABLE,
    super::BATCHES_TABLE,
];

/// Whether a gold plugin may not use `name`: the host's tables and anything
/// under `_` (Delta's `_delta_log`, and `_sluice`, kept for Sluice's own use).
pub fn is_host_table(name: &str) -> bool {
    RESERVED_TABLES.contains(&name) || name.starts_with('_')
}

/// One loaded plugin per layer.
#[derive(Clone)]
pub struct Plugins {
    pub bronze: LoadedPlugin,
    pub silver: LoadedPlugin,
    pub gold: LoadedPlugin,
}

impl Plugins {
    /// Makes `plugin` the active one of `layer`.
    pub fn set(&mut self, layer: Layer, plugin: LoadedPlugin) {
        match layer {
            Layer::Bronze => self.bronze = plugin,
            Layer::Silver => self.silver = plugin,
            Layer::Gold => self.gold = plugin,
        }
    }

    pub fn get(&self, layer: Layer) -> &LoadedPlugin {
        match layer {
            Layer::Bronze => &self.bronze,
            Layer::Silver => &self.silver,
            Layer::Gold => &self.gold,
        }
    }
}

/// Refuses a plugin that serves another layer or lacks the tables and
/// columns the host relies on for that layer.
pub fn check_layer(plugin: &LoadedPlugin, layer: Layer, path: Option<&Path>) -> anyhow::Result<()> {
    let meta = plugin.meta();
    let what = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| meta.producer());
    if meta.layer != layer {
        bail!("{what} is a {} plugin, configured for {layer}", meta.layer);
    }
    // Decoding checked the names already; a load or deploy checks again
    // so no path is ever built from a name that skipped decoding.
    for table in &meta.outputs {
        crate::runtime::contract::check_table_name(&table.name)
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    }
    let require = |table: &str, columns: &[(&str, DataType)]| -> anyhow::Result<()> {
        let decl = meta
            .output(table)
            .with_context(|| format!("{what}: a {layer} plugin must declare table `{table}`"))?;
        if !matches!(decl.mode, WriteMode::Append) {
            bail!("{what}: table `{table}` must be append");
        }
        for (column, ty) in columns {
            let field = decl
                .schema
                .field_with_name(column)
                .with_context(|| format!("{what}: table `{table}` needs column `{column}`"))?;
            if field.data_type() != ty {
                bail!(
                    "{what}: `{table}.{column}` must be {ty}, not {}",
                    field.data_type()
                );
            }
        }
        Ok(())
    };
    match layer {
        Layer::Bronze => require(
            bronze::TABLE,
            &[
                ("raw", DataType::Binary),
                ("source", DataType::Utf8),
                ("source_partition", DataType::Utf8),
                ("source_offset", DataType::Int64),
            ],
        ),
        Layer::Silver => {
            require(
                silver::TABLE,
                &[
                    (sluice_plugin_sdk::schemas::INPUT_ROW, DataType::UInt32),
                    (silver::EVENT_ID, DataType::Utf8),
                    (
                        silver::EVENT_TIME,
                        sluice_plugin_sdk::schemas::timestamp_type(),
                    ),
                ],
            )?;
            let events = &meta.output(silver::TABLE).expect("checked above").schema;
            let host_columns = silver::SOURCE_COLUMNS
                .into_iter()
                .chain([crate::layers::BATCH_ID, crate::layers::PRODUCER]);
            for column in host_columns {
                if events.field_with_name(column).is_ok() {
                    bail!(
                        "{what}: `{}.{column}` is a column the host adds",
                        silver::TABLE
                    );
                }
            }
            let q = meta
                .output(quarantine::TABLE)
                .with_context(|| format!("{what}: a silver plugin must declare `quarantine`"))?;
            if q.schema.fields() != sluice_plugin_sdk::schemas::quarantine_output().fields() {
                bail!("{what}: `quarantine` must have the contract's quarantine schema");
            }
            Ok(())
        }
        Layer::Gold => {
            if let Some(t) = meta.outputs.iter().find(|t| is_host_table(&t.name)) {
                bail!("{what}: table name `{}` is reserved for the host", t.name);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gold_may_not_name_a_host_table() {
        for name in RESERVED_TABLES.into_iter().chain(["_sluice", "_delta_log"]) {
            assert!(is_host_table(name), "{name}");
        }
        assert!(!is_host_table("fact_daily_active_users"));
    }
}
