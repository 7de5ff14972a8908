//! `bulkhead k8s reach|crd|apply` through the binary.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn bulkhead(state: &Path) -> Command {
    let mut command = Command::cargo_bin("bulkhead").expect("binary");
    command
        .env("BULKHEAD_STATE_ROOT", state)
        .env("BULKHEAD_ACTOR", "test")
        .env_remove("BULKHEAD_INSTANCE");
    command
}

fn stdout(command: &mut Command, code: i32) -> String {
    let out = command.assert().code(code).get_output().stdout.clone();
    String::from_utf8(out).expect("utf8")
}

#[test]
fn reach_lists_connections_and_flags_what_the_spec_does_not_allow() {
    let state = tempfile::tempdir().expect("tempdir");
    let rendered = tempfile::tempdir().expect("tempdir");
    bulkhead(state.path())
        .args(["k8s", "render", "-f"])
        .arg(examples())
        .arg("--out")
        .arg(rendered.path())
        .assert()
        .success();

    // Without a spec, the examples' cross-tenant paths are findings (exit 1).
    let table = stdout(
        bulkhead(state.path())
            .args(["k8s", "reach", "-f"])
            .arg(rendered.path()),
        1,
    );
    assert!(
        table.contains("web/app[Deployment] => db/postgres[Deployment] : TCP 5432"),
        "{table}"
    );
    assert!(table.contains("NAMESPACE MATRIX"), "{table}");
    assert!(table.contains("BH-K8S-019"), "{table}");
    assert!(table.contains("do not match pod addresses"), "{table}");

    // With the spec that rendered them, nothing is left to report.
    let json = stdout(
        bulkhead(state.path())
            .args(["k8s", "reach", "-o", "json", "--spec"])
            .arg(examples())
            .arg("-f")
            .arg(rendered.path()),
        0,
    );
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(0));
    assert_eq!(report["ipBlockMatchesPods"], false);
    assert!(
        report["connections"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
    );

    let sarif = stdout(
        bulkhead(state.path())
            .args([
                "k8s",
                "reach",
                "--format",
                "sarif",
                "--fail-on",
                "never",
                "-f",
            ])
            .arg(rendered.path()),
        0,
    );
    let sarif: serde_json::Value = serde_json::from_str(&sarif).expect("sarif");
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "BH-K8S-019");
    let junit = stdout(
        bulkhead(state.path())
            .args([
                "k8s",
                "reach",
                "--ip-block-matches-pods",
                "--format",
                "junit",
                "--fail-on",
                "never",
                "-f",
            ])
            .arg(rendered.path()),
        0,
    );
    assert!(junit.contains("bulkhead.k8s.reach.BH-K8S-019"), "{junit}");
}

#[test]
fn crd_prints_the_golden_tenant_crd() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = stdout(bulkhead(state.path()).args(["k8s", "crd"]), 0);
    let golden =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../bulkhead-k8s/tests/golden/crd-tenant.yaml");
    let want = std::fs::read_to_string(golden).expect("golden");
    assert_eq!(out, format!("---\n{want}"));
}

#[test]
fn apply_without_a_cluster_says_where_it_looked() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = bulkhead(state.path())
        .args(["k8s", "apply", "--dry-run", "-f"])
        .arg(examples())
        .env("KUBECONFIG", state.path().join("missing"))
        .env("HOME", state.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8(out).expect("utf8");
    assert!(stderr.contains("cannot reach a cluster"), "{stderr}");
}

#[test]
fn audit_and_reach_take_a_directory_or_live_but_not_both() {
    let state = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    for command in ["audit", "reach"] {
        // Neither: a usage error naming the missing argument.
        let out = bulkhead(state.path())
            .args(["k8s", command])
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        assert!(
            String::from_utf8_lossy(&out).contains("--file"),
            "{command}"
        );
        // Both: a usage error.
        bulkhead(state.path())
            .args(["k8s", command, "--live", "-f"])
            .arg(dir.path())
            .assert()
            .code(2);
        // A context only means something with --live.
        let out = bulkhead(state.path())
            .args(["k8s", command, "--context", "prod", "-f"])
            .arg(dir.path())
            .assert()
            .code(1)
            .get_output()
            .stderr
            .clone();
        assert!(
            String::from_utf8_lossy(&out).contains("--context"),
            "{command}"
        );
        // --live without any cluster configuration: a clear failure, not a clean report.
        let out = bulkhead(state.path())
            .args(["k8s", command, "--live"])
            .env("KUBECONFIG", dir.path().join("missing"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .assert()
            .code(1)
            .get_output()
            .stderr
            .clone();
        let stderr = String::from_utf8_lossy(&out);
        assert!(
            stderr.contains("cannot read the cluster"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn the_controller_refuses_a_platform_file_that_holds_tenants() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = bulkhead(state.path())
        .args(["k8s", "controller", "--platform"])
        .arg(examples())
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&out);
    assert!(
        stderr.contains("expected exactly one document of kind Platform"),
        "{stderr}"
    );
}

#[test]
fn the_controller_prints_its_deployment_manifests() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = stdout(
        bulkhead(state.path()).args([
            "k8s",
            "controller",
            "--manifests",
            "--namespace",
            "tenancy",
            "--image",
            "registry.example/bulkhead:test",
            "--platform-configmap",
            "platform",
        ]),
        0,
    );
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&out).expect("yaml");
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment"
        ]
    );
    assert_eq!(
        documents[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(
        documents[2]["metadata"]["name"],
        "bulkhead-tenant-reconciler"
    );
    assert_eq!(documents[3]["metadata"]["name"], "bulkhead-controller");
    assert_eq!(documents[4]["roleRef"]["name"], "bulkhead-controller");
    assert_eq!(documents[4]["subjects"][0]["namespace"], "tenancy");
    let pod = &documents[5]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "bulkhead-controller");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example/bulkhead:test");
    assert_eq!(
        container["args"],
        serde_json::json!([
            "k8s",
            "controller",
            "--platform",
            "/etc/bulkhead/platform.yaml"
        ])
    );
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "platform");
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // The manifest options mean nothing without --manifests.
    bulkhead(state.path())
        .args(["k8s", "controller", "--image", "x"])
        .assert()
        .code(2);
}
