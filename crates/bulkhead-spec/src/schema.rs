//! JSON Schema for each kind, generated from the model types.
//!
//! Editors that speak the YAML language server pick a schema from a modeline at the top
//! of a file: `# yaml-language-server: $schema=./schema/tenant.json` after
//! `bulkhead schema tenant > schema/tenant.json`.

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings};

use crate::model::{Platform, Tenant, Workload};

/// The kinds that have a schema.
pub const KINDS: [&str; 3] = ["tenant", "workload", "platform"];

fn generate<T: JsonSchema>() -> Schema {
    let generator = SchemaGenerator::new(SchemaSettings::draft2020_12());
    generator.into_root_schema_for::<T>()
}

/// The JSON Schema of one kind (`tenant`, `workload`, `platform`, any case).
pub fn schema_for(kind: &str) -> Option<Schema> {
    match kind.to_ascii_lowercase().as_str() {
        "tenant" => Some(generate::<Tenant>()),
        "workload" => Some(generate::<Workload>()),
        "platform" => Some(generate::<Platform>()),
        _ => None,
    }
}
