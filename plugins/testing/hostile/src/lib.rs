//! A silver plugin for tests that behaves like the default one, except when
//! a raw record in the batch contains a trigger word:
//! `HOSTILE_LOOP` spins forever, `HOSTILE_ALLOC` allocates without bound,
//! `HOSTILE_PANIC` panics, `HOSTILE_SCHEMA` emits rows that do not match the
//! declared schema, `HOSTILE_SLEEP` sleeps an hour inside a host call. The host must survive all of them. `HOSTILE_ENTROPY`
//! writes what it reads from the clocks and from randomness (through hash
//! map seeding) into every silver row's `extra`, so a test can see whether
//! the host keeps plugins pure.

use std::sync::Arc;

use sluice_plugin_sdk::arrow_array::cast::AsArray;
use sluice_plugin_sdk::arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
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
        if batch_contains(input, "HOSTILE_SLEEP") {
            // Blocks inside a host call (a WASI poll), where epoch
            // interruption cannot stop it.
            std::thread::sleep(std::time::Duration::from_secs(3_600));
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
        let outputs = Silver::transform(input)?;
        if batch_contains(input, "HOSTILE_ENTROPY") {
            return outputs.into_iter().map(with_entropy).collect();
        }
        Ok(outputs)
    }
}

/// What a plugin can observe besides its input: wall clock, monotonic
/// clock, and the random keys std seeds each `RandomState` with.
fn entropy() -> String {
    use std::hash::BuildHasher;
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let monotonic = std::time::Instant::now();
    let random = std::collections::hash_map::RandomState::new().hash_one("sluice");
    format!("wall={wall} monotonic={monotonic:?} random={random}")
}

/// `silver_events` rows with `extra` replaced by [`entropy`].
fn with_entropy((table, rows): TableRows) -> Result<TableRows, TransformError> {
    let Ok(i) = rows.schema().index_of("extra") else {
        return Ok((table, rows));
    };
    let mut columns = rows.columns().to_vec();
    let observed = entropy();
    columns[i] = Arc::new(StringArray::from(vec![observed.as_str(); rows.num_rows()])) as ArrayRef;
    let rows = RecordBatch::try_new(rows.schema(), columns)
        .map_err(|e| TransformError::Internal(e.to_string()))?;
    Ok((table, rows))
}

#[cfg(target_arch = "wasm32")]
sluice_plugin_sdk::export_plugin!(Hostile);
