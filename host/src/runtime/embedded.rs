//! The default plugins, built by `host/build.rs` and embedded in the binary so
//! `sluice` runs with no plugin files around.

use super::contract::Layer;

static BRONZE: &[u8] = include_bytes!(env!("SLUICE_PLUGIN_BRONZE"));
static SILVER: &[u8] = include_bytes!(env!("SLUICE_PLUGIN_SILVER"));
static GOLD: &[u8] = include_bytes!(env!("SLUICE_PLUGIN_GOLD"));

/// The embedded component for a layer.
pub fn default_plugin(layer: Layer) -> &'static [u8] {
    match layer {
        Layer::Bronze => BRONZE,
        Layer::Silver => SILVER,
        Layer::Gold => GOLD,
    }
}
