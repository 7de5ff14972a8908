//! `load_sources_within`: one tenant's part of a validated whole, whose references to
//! tenants outside the part resolve by name.

use std::collections::BTreeSet;

use bulkhead_spec::{Source, load_sources, load_sources_within};

const WEB: &str = "apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: web }
spec:
  quota: { memory: 1Gi, pids: 128 }
  network:
    egress:
      - to: [{ tenant: db }]
        ports: [5432/tcp]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: app, tenant: web }
spec:
  command: [/bin/true]
";

fn sources() -> Vec<Source> {
    vec![Source {
        name: "web.yaml".into(),
        text: WEB.to_owned(),
    }]
}

#[test]
fn references_to_tenants_elsewhere_resolve_by_name() {
    let elsewhere: BTreeSet<String> = ["db".to_owned()].into();
    let desired = load_sources_within(&sources(), &elsewhere).expect("validates");
    assert_eq!(desired.tenants.len(), 1, "only the part is loaded");
    assert_eq!(desired.workloads.len(), 1);
}

#[test]
fn a_tenant_named_nowhere_is_still_an_error() {
    let errors = load_sources(&sources()).expect_err("db is unknown");
    assert!(
        errors.to_string().contains("unknown tenant \"db\""),
        "{errors}"
    );
    let elsewhere: BTreeSet<String> = ["dbx".to_owned()].into();
    let errors = load_sources_within(&sources(), &elsewhere).expect_err("db is unknown");
    assert!(
        errors.to_string().contains("dbx"),
        "names what is known: {errors}"
    );
}

#[test]
fn every_check_within_the_part_still_runs() {
    let over = WEB.replace(
        "command: [/bin/true]",
        "command: [/bin/true]\n  resources: { memory: 2Gi }",
    );
    let elsewhere: BTreeSet<String> = ["db".to_owned()].into();
    let sources = [Source {
        name: "web.yaml".into(),
        text: over,
    }];
    let errors = load_sources_within(&sources, &elsewhere).expect_err("over quota");
    assert!(errors.to_string().contains("memory"), "{errors}");
}
