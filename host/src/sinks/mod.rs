//! Where gold goes after the lake: SQL warehouses fed from the gold tables.

pub mod warehouse;
