//! A silver plugin for tests that behaves like the default one, except when
//! a raw record in the batch contains a trigger word:
//! `HOSTILE_LOOP` spins forever, `HOSTILE_ALLOC` allocates without bound,
//! `HOSTILE_PANIC` panics, `HOSTILE_SCHEMA` emits rows that do not match the
//! declared schema. The host must survive all of them.

use std::sync::Arc;

use sluice_plugin_sdk::arrow_array::cast::AsArray;
use sluice_plugin_sdk::arrow_array::{Int64Array, RecordBatch};
use sluice_plugin_sdk::arrow_schema::{DataType, Field, Schema};
use sluice_plugin_sdk::{Plugin, PluginInfo, TableRows, TransformError};
use sluice_plugin_silver::Silver;

pub struct Hostile;

fn batch_contains(input: &RecordBatch, word: &str) -> bool {
    let Some(raw) = input.column_by_name("raw") else {
        return false;
    };
    raw.as_binary::<i32>()
        .iter()
        .flatten()
        .any(|bytes| bytes.windows(word.len()).any(|w| w == word.as_bytes()))
}

impl Plugin for Hostile {
    fn info() -> PluginInfo {
        let mut info = Silver::info();
        info.name = "sluice-hostile".into();
        info
    }

    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError> {
        if batch_contains(input, "HOSTILE_LOOP") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if batch_contains(input, "HOSTILE_ALLOC") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        if batch_contains(input, "HOSTILE_PANIC") {
            panic!("hostile plugin panics on purpose");
        }
        if batch_contains(input, "HOSTILE_SCHEMA") {
            let schema = Arc::new(Schema::new(vec![Field::new(
                "nonsense",
                DataType::Int64,
                false,
            )]));
            let rows = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1]))])
                .map_err(|e| TransformError::Internal(e.to_string()))?;
            return Ok(vec![("silver_events".to_string(), rows)]);
        }
        Silver::transform(input)
    }
}

#[cfg(target_arch = "wasm32")]
sluice_plugin_sdk::export_plugin!(Hostile);
