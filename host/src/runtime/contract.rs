//! The host's view of a plugin's metadata (decoded from the WIT types) and
//! the checks its outputs must pass before anything is written.

use std::collections::BTreeMap;

use deltalake::arrow::array::{Array, RecordBatch};
use deltalake::arrow::datatypes::SchemaRef;

use super::bindings::sluice::transform::types as wit;

/// A medallion layer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Bronze,
    Silver,
    Gold,
}

impl Layer {
    pub const ALL: [Layer; 3] = [Layer::Bronze, Layer::Silver, Layer::Gold];

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Bronze => "bronze",
            Layer::Silver => "silver",
            Layer::Gold => "gold",
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bronze" => Ok(Layer::Bronze),
            "silver" => Ok(Layer::Silver),
            "gold" => Ok(Layer::Gold),
            other => Err(format!("unknown layer `{other}` (bronze, silver or gold)")),
        }
    }
}

/// A merge table's grain and measures (the WIT's `merge-spec`): the lake's
/// own vocabulary, since it is the lake that folds and merges by them.
pub use sluice_lake::{Measure, MergeOp, MergeSpec};

#[derive(Debug, Clone)]
pub struct Scd2Spec {
    pub key: String,
    pub tracked: Vec<String>,
    pub at: String,
    pub is_change: String,
}

#[derive(Debug, Clone)]
pub struct DerivedSpec {
    pub sql: String,
    pub keys: Vec<String>,
    pub scope: String,
}

/// How the host writes a table; mirrors `write-mode` in the WIT.
#[derive(Debug, Clone)]
pub enum WriteMode {
    Append,
    Merge(MergeSpec),
    Scd2(Scd2Spec),
    Derived(DerivedSpec),
}

/// One declared output table.
#[derive(Debug, Clone)]
pub struct TableDecl {
    pub name: String,
    pub description: String,
    pub schema: SchemaRef,
    pub partition_by: Vec<String>,
    pub mode: WriteMode,
}

/// What a plugin said about itself.
#[derive(Debug, Clone)]
pub struct PluginMeta {
    pub name: String,
    pub version: String,
    pub layer: Layer,
    pub description: String,
    pub outputs: Vec<TableDecl>,
    /// What the plugin's manifest asks for; the host caps it.
    pub requested: RequestedLimits,
}

/// A plugin's own memory and time budget per batch (`none`: host default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestedLimits {
    pub memory_mb: Option<u32>,
    pub batch_timeout_ms: Option<u32>,
}

impl PluginMeta {
    /// `name@version`, recorded with every row the plugin produces.
    pub fn producer(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    pub fn output(&self, table: &str) -> Option<&TableDecl> {
        self.outputs.iter().find(|t| t.name == table)
    }

    /// Decodes and checks the WIT record: schemas parse, names are unique,
    /// merge keys and measures name real columns.
    pub fn from_wit(info: wit::PluginInfo) -> Result<PluginMeta, String> {
        let mut outputs = Vec::with_capacity(info.outputs.len());
        for table in info.outputs {
            let decl = decode_table(table)?;
            if outputs.iter().any(|t: &TableDecl| t.name == decl.name) {
                return Err(format!("table `{}` declared twice", decl.name));
            }
            outputs.push(decl);
        }
        Ok(PluginMeta {
            name: info.name,
            version: info.version,
            layer: match info.layer {
                wit::Layer::Bronze => Layer::Bronze,
                wit::Layer::Silver => Layer::Silver,
                wit::Layer::Gold => Layer::Gold,
            },
            description: info.description,
            outputs,
            requested: RequestedLimits {
                memory_mb: info.limits.memory_mb,
                batch_timeout_ms: info.limits.batch_timeout_ms,
            },
        })
    }
}

/// Longest table name: PostgreSQL's identifier limit.
const MAX_TABLE_NAME: usize = 63;

/// Refuses a table name that is not `^[a-z][a-z0-9_]{0,62}$`. A name becomes
/// a directory under the lake root, a DataFusion table and a warehouse
/// identifier, so nothing that could climb out of the lake (`../x`), alias a
/// host table (`./bronze_events`), address another store (`az://other/x`)
/// or need quoting gets through. A leading `_` (Delta's and Sluice's own
/// directories, e.g. `_sluice`) is refused by the same rule.
pub fn check_table_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = name.len() <= MAX_TABLE_NAME
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "table name `{}` must match ^[a-z][a-z0-9_]{{0,62}}$",
            name.escape_debug()
        ))
    }
}

fn decode_table(table: wit::TableSpec) -> Result<TableDecl, String> {
    check_table_name(&table.name)?;
    let (schema, _) = sluice_plugin_sdk::ipc::read_all(&table.schema)
        .map_err(|e| format!("table `{}`: schema: {e}", table.name))?;
    let mode = match table.mode {
        wit::WriteMode::Append => WriteMode::Append,
        wit::WriteMode::Merge(m) => WriteMode::Merge(MergeSpec {
            keys: m.keys,
            measures: m
                .measures
                .into_iter()
                .map(|m| Measure {
                    column: m.column,
                    op: match m.op {
                        wit::MergeOp::Sum => MergeOp::Sum,
                        wit::MergeOp::Min => MergeOp::Min,
                        wit::MergeOp::Max => MergeOp::Max,
                        wit::MergeOp::Any => MergeOp::Any,
                        wit::MergeOp::First => MergeOp::First,
                    },
                })
                .collect(),
            order_by: m.order_by,
        }),
        wit::WriteMode::Scd2(s) => WriteMode::Scd2(Scd2Spec {
            key: s.key,
            tracked: s.tracked,
            at: s.at,
            is_change: s.is_change,
        }),
        wit::WriteMode::Derived(d) => WriteMode::Derived(DerivedSpec {
            sql: d.sql,
            keys: d.keys,
            scope: d.scope,
        }),
    };
    let decl = TableDecl {
        name: table.name,
        description: table.description,
        schema,
        partition_by: table.partition_by,
        mode,
    };
    check_columns(&decl)?;
    Ok(decl)
}

fn check_columns(decl: &TableDecl) -> Result<(), String> {
    let has = |c: &str| decl.schema.column_with_name(c).is_some();
    let mut named: Vec<&str> = decl.partition_by.iter().map(String::as_str).collect();
    match &decl.mode {
        WriteMode::Append | WriteMode::Derived(_) => {}
        WriteMode::Merge(m) => {
            named.extend(m.keys.iter().map(String::as_str));
            named.extend(m.measures.iter().map(|m| m.column.as_str()));
            named.extend(m.order_by.as_deref());
            let uses_first = m.measures.iter().any(|m| m.op == MergeOp::First);
            if uses_first && m.order_by.is_none() {
                return Err(format!(
                    "table `{}`: `first` measures need order-by",
                    decl.name
                ));
            }
            let covered = m.keys.len() + m.measures.len();
            if covered != decl.schema.fields().len() {
                return Err(format!(
                    "table `{}`: every column must be a key or a measure",
                    decl.name
                ));
            }
        }
        WriteMode::Scd2(s) => {
            named.push(&s.key);
            named.extend(s.tracked.iter().map(String::as_str));
            named.push(&s.at);
            named.push(&s.is_change);
        }
    }
    if let Some(missing) = named.into_iter().find(|c| !has(c)) {
        return Err(format!(
            "table `{}`: column `{missing}` is named but not in the schema",
            decl.name
        ));
    }
    check_keys_non_null(decl)
}

/// Key columns must be declared non-null, so a null key is refused when the
/// plugin's rows are decoded (a plugin failure: quarantine or rollback)
/// rather than found while merging (a failed step, again at every start).
fn check_keys_non_null(decl: &TableDecl) -> Result<(), String> {
    let keys: Vec<&str> = match &decl.mode {
        WriteMode::Merge(m) => m.keys.iter().map(String::as_str).collect(),
        WriteMode::Scd2(s) => vec![s.key.as_str()],
        WriteMode::Append | WriteMode::Derived(_) => Vec::new(),
    };
    let nullable = keys.into_iter().find(|k| {
        decl.schema
            .field_with_name(k)
            .is_ok_and(|f| f.is_nullable())
    });
    match nullable {
        Some(key) => Err(format!(
            "table `{}`: key column `{key}` must be declared non-null",
            decl.name
        )),
        None => Ok(()),
    }
}

/// Decodes a plugin's outputs and checks each against its declaration.
pub fn decode_outputs(
    meta: &PluginMeta,
    outputs: Vec<wit::TableBatch>,
) -> Result<BTreeMap<String, RecordBatch>, String> {
    let mut tables: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for out in outputs {
        let decl = meta
            .output(&out.table)
            .ok_or_else(|| format!("emitted rows for undeclared table `{}`", out.table))?;
        let (schema, batches) = sluice_plugin_sdk::ipc::read_all(&out.ipc)
            .map_err(|e| format!("table `{}`: {e}", out.table))?;
        if !same_fields(&schema, &decl.schema) {
            return Err(format!(
                "table `{}`: emitted schema {} does not match declared {}",
                out.table,
                describe(&schema),
                describe(&decl.schema)
            ));
        }
        for batch in &batches {
            check_non_null(&out.table, &decl.schema, batch)?;
        }
        tables.entry(out.table).or_default().extend(batches);
    }
    tables
        .into_iter()
        .map(|(name, batches)| {
            let schema = meta.output(&name).expect("checked above").schema.clone();
            let rows = deltalake::arrow::compute::concat_batches(&schema, &batches)
                .map_err(|e| format!("table `{name}`: {e}"))?;
            Ok((name, rows))
        })
        .collect()
}

fn same_fields(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name()
                && x.data_type() == y.data_type()
                && x.is_nullable() == y.is_nullable()
        })
}

fn describe(schema: &SchemaRef) -> String {
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {}{}",
                f.name(),
                f.data_type(),
                if f.is_nullable() { "?" } else { "" }
            )
        })
        .collect();
    format!("({})", cols.join(", "))
}

fn check_non_null(table: &str, schema: &SchemaRef, batch: &RecordBatch) -> Result<(), String> {
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if !field.is_nullable() && column.null_count() > 0 {
            return Err(format!(
                "table `{table}`: column `{}` is declared non-null but has {} nulls",
                field.name(),
                column.null_count()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    fn info_with_table(name: &str) -> wit::PluginInfo {
        let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
        wit::PluginInfo {
            name: "t".into(),
            version: "0.1.0".into(),
            layer: wit::Layer::Gold,
            description: String::new(),
            outputs: vec![wit::TableSpec {
                name: name.into(),
                description: String::new(),
                schema: sluice_plugin_sdk::ipc::write_schema(&schema),
                partition_by: Vec::new(),
                mode: wit::WriteMode::Append,
            }],
            limits: wit::ResourceLimits {
                memory_mb: None,
                batch_timeout_ms: None,
            },
        }
    }

    #[test]
    fn table_names_are_plain_lowercase_identifiers() {
        let longest = format!("a{}", "b".repeat(62));
        for good in [
            "a",
            "fact_daily_active_users",
            "dim_user2",
            longest.as_str(),
        ] {
            assert_eq!(check_table_name(good), Ok(()), "{good}");
        }
        let too_long = format!("a{}", "b".repeat(63));
        for bad in [
            "",
            "../x",
            "./bronze_events",
            "az://other/x",
            "_sluice",
            "Upper",
            "1st",
            "a-b",
            "a b",
            "é",
            too_long.as_str(),
        ] {
            let err = check_table_name(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn merge_keys_must_be_declared_non_null() {
        let merged = |key_nullable: bool| {
            let mut info = info_with_table("daily_usage");
            let schema = Schema::new(vec![
                Field::new("day", DataType::Int32, key_nullable),
                Field::new("n", DataType::Int64, false),
            ]);
            info.outputs[0].schema = sluice_plugin_sdk::ipc::write_schema(&schema);
            info.outputs[0].mode = wit::WriteMode::Merge(wit::MergeSpec {
                keys: vec!["day".into()],
                measures: vec![wit::Measure {
                    column: "n".into(),
                    op: wit::MergeOp::Sum,
                }],
                order_by: None,
            });
            PluginMeta::from_wit(info)
        };
        assert!(merged(false).is_ok());
        let err = merged(true).expect_err("a nullable key");
        assert!(err.contains("key column `day`"), "{err}");
    }

    #[test]
    fn a_plugin_declaring_a_path_as_a_table_is_refused_at_decode() {
        for bad in ["../x", "./bronze_events", "az://other/x"] {
            let err = PluginMeta::from_wit(info_with_table(bad)).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
        assert!(PluginMeta::from_wit(info_with_table("daily_usage")).is_ok());
    }
}
