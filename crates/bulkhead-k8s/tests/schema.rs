//! Every object bulkhead renders (and the controller's own manifests), checked against the OpenAPI schema of **Kubernetes
//! 1.34** (the version `k8s-openapi` is pinned to, feature `v1_34`) in strict mode: an
//! unknown field is an error, as is a wrong type or a missing required field. The
//! checker is the `kubernetes-validate` package (it bundles the JSON schemas of each
//! Kubernetes version), run by `tests/schema/validate.py`; `scripts/setup.sh` installs
//! it in a virtual environment and exports its Python as `BULKHEAD_KUBERNETES_VALIDATE`.
//!
//! Custom resources (Flux `GitRepository` and `Kustomization`, Istio
//! `PeerAuthentication` and `AuthorizationPolicy`) and the Flux lockdown patch (a
//! kustomize file, not a cluster object) have no schema in that package: they must be
//! reported as such and are only shape-checked (their typed forms in `flux` and `mesh`,
//! and the golden files). Any other kind without a schema fails the test.
//!
//! Without the checker the test says it is skipped; under CI (`CI` set, or
//! `BULKHEAD_REQUIRE_SCHEMA_CHECK=1` as `scripts/test.sh` sets it) it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use bulkhead_k8s::{K8sOptions, render};
use serde_json::Value;

/// The Kubernetes version every object is checked against.
const KUBERNETES_VERSION: &str = "1.34.0";

/// Kinds the checker has no schema for, and why that is expected.
const CUSTOM: &[(&str, &str)] = &[
    ("source.toolkit.fluxcd.io/v1", "GitRepository"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    ("security.istio.io/v1", "PeerAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
];

fn checker() -> Option<PathBuf> {
    let python = std::env::var_os("BULKHEAD_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("bulkhead/kubernetes-validate-1.37.0/bin/python"))
        })?;
    let works = Command::new(&python)
        .args(["-c", "import kubernetes_validate"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var_os("BULKHEAD_REQUIRE_SCHEMA_CHECK").is_some_and(|v| v == "1");
    assert!(
        !required,
        "{}: no Python with kubernetes-validate; run scripts/setup.sh (required under CI)",
        python.display()
    );
    eprintln!(
        "skipped: no kubernetes-validate at {} (run scripts/setup.sh to install it)",
        python.display()
    );
    None
}

/// One line of the checker's output.
#[derive(Debug)]
struct Checked {
    kind: String,
    api_version: String,
    name: String,
    result: String,
    message: String,
}

/// Runs the checker over `documents` (YAML, one object each), in order.
fn check(python: &Path, documents: &[String]) -> Vec<Checked> {
    let text: String = documents.iter().map(|d| format!("---\n{d}")).collect();
    let results = check_text(python, &text);
    assert_eq!(results.len(), documents.len(), "one result per document");
    results
}

/// Runs the checker over a multi-document YAML text.
fn check_text(python: &Path, text: &str) -> Vec<Checked> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, text).expect("write objects");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema/validate.py");
    let output = Command::new(python)
        .arg(&script)
        .arg(KUBERNETES_VERSION)
        .arg(&file)
        .output()
        .expect("run the schema checker");
    assert!(
        output.status.success(),
        "schema checker failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("checker output is JSON");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            Checked {
                kind: s("kind"),
                api_version: s("apiVersion"),
                name: s("name"),
                result: s("result"),
                message: s("message"),
            }
        })
        .collect()
}

/// Asserts every result is `valid`, or `no-schema` for a known custom kind.
fn assert_all_valid(what: &str, results: &[Checked]) {
    let mut problems = Vec::new();
    for r in results {
        let custom = CUSTOM
            .iter()
            .any(|(v, k)| *v == r.api_version && *k == r.kind);
        let ok = match r.result.as_str() {
            "valid" => !custom,
            "no-schema" => custom,
            _ => false,
        };
        if !ok {
            problems.push(format!(
                "{} {} {}: {} {}",
                r.api_version, r.kind, r.name, r.result, r.message
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: not valid against Kubernetes {KUBERNETES_VERSION}:\n{}",
        problems.join("\n")
    );
}

fn examples() -> bulkhead_spec::Desired {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    bulkhead_spec::load(&[root]).unwrap_or_else(|e| panic!("examples must validate:\n{e}"))
}

fn rendered(desired: &bulkhead_spec::Desired) -> Vec<String> {
    render(desired, &K8sOptions::default())
        .expect("render")
        .into_iter()
        .map(|o| o.yaml)
        .collect()
}

#[test]
fn every_rendered_object_matches_the_kubernetes_schema() {
    let Some(python) = checker() else { return };
    // The examples as `bulkhead k8s render` writes them, then with the mesh switched on.
    let plain = rendered(&examples());
    let mut meshed = examples();
    meshed.platform.spec.kubernetes.mesh = true;
    let meshed = rendered(&meshed);
    // The golden scenarios, file by file (tests compare them with the render).
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&golden_dir)
        .expect("golden dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 7, "golden files: {files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read golden");
        let results = check_text(&python, &text);
        assert!(!results.is_empty(), "{}: no object", file.display());
        assert_all_valid(&file.display().to_string(), &results);
    }
    let crd = vec![bulkhead_k8s::crd::tenant_crd_yaml().expect("crd")];
    // `bulkhead k8s controller --manifests`, with and without a Platform ConfigMap.
    let deploy = |config_map: Option<&str>| -> Vec<String> {
        let options = bulkhead_k8s::deploy::ControllerManifestOptions {
            platform_config_map: config_map.map(str::to_owned),
            ..Default::default()
        };
        bulkhead_k8s::deploy::controller_manifests(&options)
            .expect("manifests")
            .into_iter()
            .map(|o| o.yaml)
            .collect()
    };
    let controller = deploy(None);
    let controller_with_platform = deploy(Some("bulkhead-platform"));
    for (what, documents) in [
        ("render of the examples", &plain),
        ("render with the mesh", &meshed),
        ("Tenant CRD", &crd),
        ("controller manifests", &controller),
        (
            "controller manifests with a platform",
            &controller_with_platform,
        ),
    ] {
        let results = check(&python, documents);
        assert_all_valid(what, &results);
        // Real work was done: every core kind was looked at against a schema.
        assert!(
            results.iter().any(|r| r.result == "valid"),
            "{what}: nothing checked"
        );
    }
    let kinds: std::collections::BTreeSet<_> = plain
        .iter()
        .chain(&meshed)
        .filter_map(|d| {
            d.lines()
                .find_map(|l| l.strip_prefix("kind: ").map(str::to_owned))
        })
        .collect();
    for kind in [
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "ServiceAccount",
        "ClusterRole",
        "RoleBinding",
        "Deployment",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "GitRepository",
        "PeerAuthentication",
        "AuthorizationPolicy",
    ] {
        assert!(kinds.contains(kind), "the renders hold no {kind}");
    }
}

/// The check is real: an unknown field, a wrong type and a misspelt nested field in
/// otherwise rendered objects are each caught, and the untouched objects still pass.
#[test]
fn the_schema_check_catches_unknown_fields_and_wrong_types() {
    let Some(python) = checker() else { return };
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let find = |kind: &str| -> Value {
        let object = objects
            .iter()
            .find(|o| o.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"));
        serde_saphyr::from_str(&object.yaml).expect("yaml")
    };
    let yaml = |v: &Value| serde_saphyr::to_string(v).expect("yaml");

    let mut unknown = find("NetworkPolicy");
    unknown["spec"]["podSelectr"] = serde_json::json!({});
    let mut wrong_type = find("Deployment");
    wrong_type["spec"]["replicas"] = serde_json::json!("two");
    let mut nested = find("Namespace");
    nested["metadata"]["lables"] = serde_json::json!({ "a": "b" });
    let mut quota = find("ResourceQuota");
    quota["spec"]["hard"] = serde_json::json!(["pods"]);
    let untouched = find("ClusterRole");

    let results = check(
        &python,
        &[
            yaml(&unknown),
            yaml(&wrong_type),
            yaml(&nested),
            yaml(&quota),
            yaml(&untouched),
        ],
    );
    let expect = [
        ("NetworkPolicy", "podSelectr"),
        ("Deployment", "replicas"),
        ("Namespace", "lables"),
        ("ResourceQuota", "hard"),
    ];
    for (result, (kind, word)) in results.iter().zip(expect) {
        assert_eq!(result.kind, kind);
        assert_eq!(result.result, "invalid", "{kind} should be rejected");
        assert!(
            result.message.contains(word),
            "{kind}: the error names {word}: {}",
            result.message
        );
    }
    assert_eq!(results[4].kind, "ClusterRole");
    assert_eq!(results[4].result, "valid", "{}", results[4].message);
}
