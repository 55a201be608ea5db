//! The Synapse DDL declares every gold table and column the gold plugin
//! writes, so the warehouse and the lake cannot drift apart silently.

use std::path::Path;

use sluice::runtime::{Layer, Runtime, WriteMode, embedded};

#[test]
fn synapse_ddl_covers_every_gold_table_and_column() {
    let ddl_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../synapse/001_star_schema.sql");
    let ddl = std::fs::read_to_string(ddl_path).unwrap();
    let runtime = Runtime::new(None).unwrap();
    let gold = runtime
        .load(embedded::default_plugin(Layer::Gold), Default::default())
        .unwrap();
    for table in &gold.meta().outputs {
        let start = ddl
            .find(&format!("CREATE TABLE sluice.{} (", table.name))
            .unwrap_or_else(|| panic!("no CREATE TABLE for {}", table.name));
        let body = &ddl[start..start + ddl[start..].find("WITH (").unwrap()];
        let mut columns: Vec<String> = match &table.mode {
            WriteMode::Scd2(spec) => {
                let mut c = vec![spec.key.clone()];
                c.extend(spec.tracked.iter().cloned());
                c.extend(["valid_from", "valid_to", "is_current", "opened_by"].map(String::from));
                c
            }
            _ => table
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        };
        columns.sort();
        for column in columns {
            let plain = format!("\n    {column} ");
            let bracketed = format!("\n    [{column}] ");
            assert!(
                body.contains(&plain) || body.contains(&bracketed),
                "sluice.{} lacks column {column}",
                table.name
            );
        }
    }
}
