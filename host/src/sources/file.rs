//! File replay source: reads NDJSON files (or every `.ndjson`/`.jsonl`/`.json`
//! file of a directory, in name order), one record per non-empty line,
//! resuming after the last line committed to bronze.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Envelope, RawRecord, SourceContext};

pub const SOURCE: &str = "file";

/// Expands directories into their NDJSON files; keeps files as given.
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("listing {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("ndjson" | "jsonl" | "json")
                    )
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    files
        .into_iter()
        .map(|f| std::fs::canonicalize(&f).with_context(|| format!("opening {}", f.display())))
        .collect()
}

/// Sends every line after the committed position of each file, in chunks of
/// `chunk` records. Blocking: run it on a blocking thread. Returns the number
/// of records sent; stops early if the pipeline goes away.
pub fn replay(files: &[PathBuf], ctx: &SourceContext) -> anyhow::Result<u64> {
    let SourceContext {
        positions,
        chunk,
        tx,
        ..
    } = ctx;
    let chunk = *chunk;
    let source: Arc<str> = Arc::from(SOURCE);
    let mut sent = 0;
    for file in files {
        let partition: Arc<str> = Arc::from(file.to_string_lossy().as_ref());
        let done = positions
            .get(&(SOURCE.to_string(), partition.to_string()))
            .copied()
            .unwrap_or(0);
        match replay_file(file, &source, &partition, done, chunk, tx)? {
            Some(n) => sent += n,
            None => return Ok(sent),
        }
    }
    Ok(sent)
}

/// `None` when the receiver is gone.
fn replay_file(
    file: &Path,
    source: &Arc<str>,
    partition: &Arc<str>,
    committed_line: i64,
    chunk: usize,
    tx: &mpsc::Sender<Envelope>,
) -> anyhow::Result<Option<u64>> {
    let reader = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let mut records = Vec::with_capacity(chunk);
    let mut sent = 0;
    for (index, line) in reader.split(b'\n').enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        let offset = index as i64 + 1;
        if offset <= committed_line || line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        records.push(RawRecord {
            payload: Bytes::from(line),
            source: source.clone(),
            partition: partition.clone(),
            offset,
        });
        if records.len() >= chunk {
            sent += records.len() as u64;
            if !send(
                tx,
                std::mem::replace(&mut records, Vec::with_capacity(chunk)),
            ) {
                return Ok(None);
            }
        }
    }
    sent += records.len() as u64;
    if !records.is_empty() && !send(tx, records) {
        return Ok(None);
    }
    Ok(Some(sent))
}

fn send(tx: &mpsc::Sender<Envelope>, records: Vec<RawRecord>) -> bool {
    tx.blocking_send(Envelope { records, ack: None }).is_ok()
}
