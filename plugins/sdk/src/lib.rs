//! The plugin author's side of the Sluice WIT contract: Arrow IPC in and out,
//! the host's input schemas, and `export_plugin!` to turn a [`Plugin`] into a
//! WebAssembly component.
//!
//! A plugin implements [`Plugin`] on plain Arrow types; the macro generates the
//! WIT glue. The same crate also builds natively, which is how benchmarks and
//! unit tests call a plugin without Wasm.

pub mod ipc;
pub mod rows;
pub mod schemas;

pub use arrow_array;
pub use arrow_schema;

/// Bindings generated from `wit/transform.wit`.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "export_transform",
        default_bindings_module: "sluice_plugin_sdk::bindings",
    });
}

pub use bindings::sluice::transform::types::DerivedSpec;
pub use bindings::sluice::transform::types::{
    Layer, Level, Measure, MergeOp, MergeSpec, PluginInfo, ResourceLimits, Scd2Spec, TableBatch,
    TableSpec, TransformError, WriteMode,
};

impl ResourceLimits {
    /// Ask for nothing special: the host's configured memory and time budget.
    pub const HOST_DEFAULTS: ResourceLimits = ResourceLimits {
        memory_mb: None,
        batch_timeout_ms: None,
    };
}

use arrow_array::RecordBatch;

/// Rows a plugin emits for one output table.
pub type TableRows = (String, RecordBatch);

/// A transform, written against Arrow types. `export_plugin!` exports it.
pub trait Plugin {
    /// Name, version, layer and output tables. Must not depend on any batch.
    fn info() -> PluginInfo;
    /// Transform one micro-batch into rows per output table. Deterministic.
    fn transform(input: &RecordBatch) -> Result<Vec<TableRows>, TransformError>;
}

/// Runs a [`Plugin`] on IPC bytes, as the Wasm export does. Public so native
/// callers (benchmarks, tests) exercise the same path as the component.
pub fn run_ipc<P: Plugin>(input: &[u8]) -> Result<Vec<TableBatch>, TransformError> {
    let batch = ipc::read_single(input).map_err(TransformError::BadInput)?;
    let outputs = P::transform(&batch)?;
    outputs
        .into_iter()
        .map(|(table, rows)| {
            let ipc = ipc::write_batch(&rows).map_err(TransformError::Internal)?;
            Ok(TableBatch { table, ipc })
        })
        .collect()
}

/// Sends a line to the host log. A no-op when not running inside the host.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::sluice::transform::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Describes an output table; `schema` is encoded as the contract asks.
pub fn table(
    name: &str,
    description: &str,
    schema: &arrow_schema::Schema,
    partition_by: &[&str],
    mode: WriteMode,
) -> TableSpec {
    TableSpec {
        name: name.to_string(),
        description: description.to_string(),
        schema: ipc::write_schema(schema),
        partition_by: partition_by.iter().map(|c| c.to_string()).collect(),
        mode,
    }
}

/// Shorthand for a merge measure.
pub fn measure(column: &str, op: MergeOp) -> Measure {
    Measure {
        column: column.to_string(),
        op,
    }
}

/// Exports a [`Plugin`] implementation as the component's `transform` world.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        struct __SluiceGuest;
        impl $crate::bindings::Guest for __SluiceGuest {
            fn info() -> $crate::PluginInfo {
                <$plugin as $crate::Plugin>::info()
            }
            fn transform(
                input: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::TableBatch>, $crate::TransformError>
            {
                $crate::run_ipc::<$plugin>(&input)
            }
        }
        $crate::bindings::export_transform!(__SluiceGuest with_types_in $crate::bindings);
    };
}
