//! Integration tests: the whole host with real wasmtime, real Delta tables
//! and a real child process, in one test binary to keep link time down.

mod analyses;
mod azurite;
mod bad_input;
mod build_script;
mod checkpoint_store;
mod cli;
mod collector;
mod common;
mod crash;
mod dashboard;
mod eventhubs;
mod eventhubs_amqp;
mod eventhubs_fleet;
mod fixtures;
mod fleet;
mod formats;
mod gold;
mod grafana;
mod hostile;
mod interop;
mod kafka;
mod lifecycle;
mod maintain;
mod metrics;
mod synapse;
mod warehouse;
