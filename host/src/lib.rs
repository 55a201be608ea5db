//! Sluice: a real-time product-usage analytics pipeline. Events come in from
//! sources, go through bronze, silver and gold transforms that run as
//! sandboxed WebAssembly components, and land as Delta tables.
//!
//! Start at [`service`] (what `sluice run` wires together), then
//! [`pipeline`] (the commit protocol), [`runtime`] (the plugin sandbox) and
//! [`layers`] (host-owned state per layer). ARCHITECTURE.md maps the rest.

pub mod admin;
pub mod analyses;
pub mod config;
pub mod config_error;
pub mod failpoint;
pub use sluice_lake as lake;
pub mod layers;
pub mod lifecycle;
pub mod metrics;
pub mod pipeline;
pub mod plugin_test;
pub mod query;
pub mod record;
pub mod runtime;
pub mod scaffold;
pub mod service;
pub mod sinks;
pub mod sources;
pub mod time;
pub mod web;
