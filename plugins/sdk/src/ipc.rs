//! Arrow IPC stream encoding, the wire format of batches across the Wasm boundary.

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::Schema;

/// Encodes a schema as an IPC stream with no batches.
pub fn write_schema(schema: &Schema) -> Vec<u8> {
    let mut out = Vec::new();
    let writer = StreamWriter::try_new(&mut out, schema).and_then(|mut w| w.finish());
    writer.expect("encoding a schema into memory cannot fail");
    out
}

/// Encodes one batch as an IPC stream.
pub fn write_batch(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    // Size by the bytes the batch views, not by its buffers' allocations:
    // columns decoded from one IPC message all share that message's buffer.
    let viewed: usize = batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum();
    let mut out = Vec::with_capacity(viewed + 1024);
    let mut writer =
        StreamWriter::try_new(&mut out, &batch.schema()).map_err(|e| format!("ipc: {e}"))?;
    writer.write(batch).map_err(|e| format!("ipc: {e}"))?;
    writer.finish().map_err(|e| format!("ipc: {e}"))?;
    drop(writer);
    Ok(out)
}

/// Decodes an IPC stream into its schema and batches.
pub fn read_all(bytes: &[u8]) -> Result<(arrow_schema::SchemaRef, Vec<RecordBatch>), String> {
    let reader = StreamReader::try_new(bytes, None).map_err(|e| format!("ipc: {e}"))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ipc: {e}"))?;
    Ok((schema, batches))
}

/// Decodes an IPC stream into one batch (concatenating if it holds several).
pub fn read_single(bytes: &[u8]) -> Result<RecordBatch, String> {
    let (schema, batches) = read_all(bytes)?;
    match batches.len() {
        0 => Ok(RecordBatch::new_empty(schema)),
        1 => Ok(batches.into_iter().next().expect("one batch")),
        _ => {
            arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| format!("ipc: {e}"))
        }
    }
}
