//! The Tenant CRD: typed, structural, pinned by a golden file.

use std::path::Path;

use bulkhead_k8s::crd::{tenant_crd, tenant_crd_yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// Every node has a type (or says it is int-or-string or free-form), no `$ref` is left,
/// and `properties` never sits beside `additionalProperties`.
fn assert_structural(node: &Value, path: &str) {
    let map = node
        .as_object()
        .unwrap_or_else(|| panic!("{path}: not an object"));
    assert!(!map.contains_key("$ref"), "{path}: $ref");
    for key in ["anyOf", "oneOf", "allOf", "$defs", "const", "default"] {
        assert!(!map.contains_key(key), "{path}: {key}");
    }
    let free = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    assert!(
        free || map.contains_key("type"),
        "{path}: no type in {node}"
    );
    assert!(
        !(map.contains_key("properties") && map.contains_key("additionalProperties")),
        "{path}"
    );
    for (name, schema) in map
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        assert_structural(schema, &format!("{path}.{name}"));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(schema) = map.get(key).filter(|v| v.is_object()) {
            assert_structural(schema, &format!("{path}[{key}]"));
        }
    }
}

#[test]
fn the_crd_is_typed_structural_and_matches_its_golden_file() {
    let crd = tenant_crd().expect("crd");
    assert_eq!(crd.metadata.name.as_deref(), Some("tenants.bulkhead.dev"));
    assert_eq!(crd.spec.scope, "Cluster");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let schema = serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("json");
    assert_structural(&schema, "");
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(
        spec["profile"]["enum"],
        serde_json::json!(["restricted", "baseline", "privileged"])
    );
    assert!(spec["network"]["properties"]["ingress"]["items"]["properties"]["from"]["items"]["properties"]
        .get("tenantSelector")
        .is_some(), "peers merge into one object: {spec}");

    let yaml = tenant_crd_yaml().expect("yaml");
    // Back through the typed form: what we print is a valid CustomResourceDefinition.
    let parsed: CustomResourceDefinition = serde_saphyr::from_str(&yaml).expect("typed");
    assert_eq!(parsed, crd);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/crd-tenant.yaml");
    if std::env::var_os("BULKHEAD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &yaml).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with BULKHEAD_UPDATE_GOLDEN=1)",
            golden.display()
        )
    });
    assert!(
        yaml == want,
        "the CRD differs from its golden file; run with BULKHEAD_UPDATE_GOLDEN=1 and review the diff"
    );
}
