//! The `Tenant` CustomResourceDefinition (`tenants.bulkhead.dev`, version `v1alpha1`),
//! generated from the same Rust types as `bulkhead schema tenant`: the spec crate's
//! JSON Schema ([`bulkhead_spec::schema::schema_for`]) made **structural**, as the API
//! server requires.
//!
//! # From JSON Schema to a structural schema
//!
//! | JSON Schema (schemars, draft 2020-12) | CRD schema |
//! |---|---|
//! | `$ref` to `$defs` | inlined (the model has no recursive types; a cycle is an error) |
//! | `type: [T, "null"]`, `anyOf: [X, {type: null}]` | `T` or `X` with `nullable: true` |
//! | `const` | `enum: [value]` |
//! | `oneOf`/`anyOf` of string constants (Rust enums) | `type: string`, `enum` of the constants |
//! | `anyOf` of objects (untagged peers) | one object with the union of their properties |
//! | `anyOf` of string and integer (ports) | `x-kubernetes-int-or-string: true` |
//! | `anyOf` of string and number (quantities `1.5`, `"500m"`) | `x-kubernetes-preserve-unknown-fields: true`, no type |
//! | `exclusiveMinimum: n` (a number) | `minimum: n`, `exclusiveMinimum: true` |
//! | `format` other than `int32`, `int64`, `date-time`, `byte` | dropped |
//! | `required` below `spec`, `default`, `additionalProperties: false`, `title`, `$schema` | dropped |
//!
//! `required` is dropped below `spec` because the schema describes the *validated*
//! model, where defaults are filled in: a field the user may omit would otherwise be
//! mandatory. The spec crate's validation, which the controller runs on every object,
//! stays the authority; the CRD schema catches shape errors at admission time.
//! `status` is `x-kubernetes-preserve-unknown-fields` (the controller owns it).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};

/// The API group.
pub const GROUP: &str = "bulkhead.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The kind.
pub const KIND: &str = "Tenant";
/// The plural resource name.
pub const PLURAL: &str = "tenants";

/// Why the CRD could not be generated (a bug in the model's schema, not user input).
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The schema could not be serialized or read back.
    #[error("cannot convert the Tenant schema: {0}")]
    Json(#[from] serde_json::Error),
    /// A `$ref` points nowhere or into a cycle.
    #[error("the Tenant schema has an unresolvable or recursive $ref {0:?}")]
    Ref(String),
    /// The CRD could not be written as YAML.
    #[error("cannot write the Tenant CRD as YAML: {0}")]
    Yaml(String),
    /// The spec crate has no Tenant schema.
    #[error("the spec crate has no Tenant schema")]
    Missing,
}

/// The `Tenant` CRD, cluster-scoped, with the status subresource and printer columns.
pub fn tenant_crd() -> Result<CustomResourceDefinition, CrdError> {
    let schema = bulkhead_spec::schema::schema_for("tenant").ok_or(CrdError::Missing)?;
    let root = serde_json::to_value(&schema)?;
    let defs = root
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let spec = root
        .pointer("/properties/spec")
        .cloned()
        .ok_or(CrdError::Missing)?;
    let mut spec = structural(&spec, &defs, &mut Vec::new())?;
    strip_required(&mut spec);
    let description = root
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("A tenant: owned by the platform team.");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{PLURAL}.{GROUP}"),
            "labels": { crate::labels::MANAGED_BY: crate::labels::MANAGER },
        },
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": KIND,
                "listKind": format!("{KIND}List"),
                "plural": PLURAL,
                "singular": "tenant",
                "shortNames": ["bht"],
            },
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "additionalPrinterColumns": [
                    { "name": "Profile", "type": "string", "jsonPath": ".spec.profile" },
                    { "name": "State", "type": "string", "jsonPath": ".spec.state" },
                    { "name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status" },
                    { "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp" },
                ],
                "schema": { "openAPIV3Schema": {
                    "description": description,
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": { "type": "string" },
                        "kind": { "type": "string" },
                        "metadata": { "type": "object" },
                        "spec": spec,
                        "status": {
                            "description": "Written by `bulkhead k8s controller`.",
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": true,
                        },
                    },
                }},
            }],
        },
    });
    Ok(serde_json::from_value(crd)?)
}

/// The CRD as YAML.
pub fn tenant_crd_yaml() -> Result<String, CrdError> {
    let crd = tenant_crd()?;
    serde_saphyr::to_string(&crd).map_err(|e| CrdError::Yaml(e.to_string()))
}

const KEEP_FORMATS: [&str; 4] = ["int32", "int64", "date-time", "byte"];

/// One schema node made structural, `$ref`s inlined (`stack`: the refs being inlined).
fn structural(
    node: &Value,
    defs: &Map<String, Value>,
    stack: &mut Vec<String>,
) -> Result<Value, CrdError> {
    let Some(object) = node.as_object() else {
        // `true`: anything.
        return Ok(json!({ "x-kubernetes-preserve-unknown-fields": true }));
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/$defs/")
            .ok_or_else(|| CrdError::Ref(reference.to_owned()))?;
        if stack.iter().any(|s| s == name) {
            return Err(CrdError::Ref(reference.to_owned()));
        }
        let target = defs
            .get(name)
            .ok_or_else(|| CrdError::Ref(reference.to_owned()))?;
        stack.push(name.to_owned());
        let mut out = structural(target, defs, stack)?;
        stack.pop();
        // The referring node's own description wins (it says what the field is for).
        if let (Some(d), Some(out)) = (object.get("description"), out.as_object_mut()) {
            out.insert("description".to_owned(), d.clone());
        }
        return Ok(out);
    }
    let mut out = Map::new();
    if let Some(d) = object.get("description") {
        out.insert("description".to_owned(), d.clone());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(variants) = object.get(key).and_then(Value::as_array) {
            let mut nullable = false;
            let mut resolved = Vec::new();
            for v in variants {
                if v.get("type").and_then(Value::as_str) == Some("null") {
                    nullable = true;
                } else {
                    resolved.push(structural(v, defs, stack)?);
                }
            }
            let merged = merge_variants(resolved);
            let mut merged = merged.as_object().cloned().unwrap_or_default();
            if out.contains_key("description") {
                merged.remove("description");
            }
            out.extend(merged);
            if nullable {
                out.insert("nullable".to_owned(), Value::Bool(true));
            }
            return Ok(Value::Object(out));
        }
    }
    for (key, value) in object {
        match key.as_str() {
            "type" => match value {
                Value::Array(types) => {
                    let real: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                    if real.len() == 1 {
                        out.insert("type".to_owned(), real[0].clone());
                    } else {
                        out.insert(
                            "x-kubernetes-preserve-unknown-fields".to_owned(),
                            Value::Bool(true),
                        );
                    }
                    if real.len() < types.len() {
                        out.insert("nullable".to_owned(), Value::Bool(true));
                    }
                }
                _ => {
                    out.insert("type".to_owned(), value.clone());
                }
            },
            "const" => {
                out.insert("enum".to_owned(), Value::Array(vec![value.clone()]));
            }
            "properties" => {
                let mut properties = Map::new();
                for (name, schema) in value.as_object().into_iter().flatten() {
                    properties.insert(name.clone(), structural(schema, defs, stack)?);
                }
                out.insert("properties".to_owned(), Value::Object(properties));
            }
            "items" => {
                out.insert("items".to_owned(), structural(value, defs, stack)?);
            }
            "additionalProperties" if value.is_object() => {
                out.insert(
                    "additionalProperties".to_owned(),
                    structural(value, defs, stack)?,
                );
            }
            "exclusiveMinimum" | "exclusiveMaximum" if value.is_number() => {
                let bound = if key == "exclusiveMinimum" {
                    "minimum"
                } else {
                    "maximum"
                };
                out.insert(bound.to_owned(), value.clone());
                out.insert(key.clone(), Value::Bool(true));
            }
            "format" if value.as_str().is_some_and(|f| KEEP_FORMATS.contains(&f)) => {
                out.insert(key.clone(), value.clone());
            }
            "required" | "minimum" | "maximum" | "pattern" | "minLength" | "maxLength"
            | "minItems" | "maxItems" | "uniqueItems" | "enum" | "multipleOf" => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if out.contains_key("properties") && !out.contains_key("type") {
        out.insert("type".to_owned(), Value::from("object"));
    }
    Ok(Value::Object(out))
}

/// One structural node for a value matching any of `variants` (already structural).
fn merge_variants(variants: Vec<Value>) -> Value {
    let types: Vec<Option<&str>> = variants
        .iter()
        .map(|v| v.get("type").and_then(Value::as_str))
        .collect();
    if variants.len() == 1 {
        return variants.into_iter().next().unwrap_or_default();
    }
    // Rust enums of unit variants: string constants.
    if types.iter().all(|t| *t == Some("string"))
        && variants.iter().all(|v| v.get("enum").is_some())
    {
        let values: Vec<Value> = variants
            .iter()
            .flat_map(|v| v["enum"].as_array().cloned().unwrap_or_default())
            .collect();
        return json!({ "type": "string", "enum": values });
    }
    // Untagged structs: one object with every variant's properties.
    if types.iter().all(|t| *t == Some("object")) {
        let mut properties = Map::new();
        for v in &variants {
            for (name, schema) in v
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                properties
                    .entry(name.clone())
                    .or_insert_with(|| schema.clone());
            }
        }
        return json!({ "type": "object", "properties": properties });
    }
    let kinds: Vec<&str> = types.iter().flatten().copied().collect();
    if kinds.len() == types.len() && kinds.iter().all(|t| matches!(*t, "string" | "integer")) {
        return json!({ "x-kubernetes-int-or-string": true });
    }
    json!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Drops `required` lists (never a property that happens to be called `required`).
fn strip_required(node: &mut Value) {
    let Some(map) = node.as_object_mut() else {
        return;
    };
    if map.get("required").is_some_and(Value::is_array) {
        map.remove("required");
    }
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "properties" => value
                .as_object_mut()
                .into_iter()
                .flat_map(|p| p.values_mut())
                .for_each(strip_required),
            "items" | "additionalProperties" => strip_required(value),
            _ => {}
        }
    }
}
