//! Reachability of manifests: what the engine allows between workloads, and which
//! cross-tenant paths are findings.

use std::path::Path;

use bulkhead_k8s::audit::{Manifest, parse};
use bulkhead_k8s::reach::{CROSS_TENANT, ReachOptions, cluster_input, reach};
use bulkhead_k8s::{K8sOptions, render};
use bulkhead_policy::tenancy::{TenancyOptions, tenant_matrix};

fn examples() -> bulkhead_spec::Desired {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    bulkhead_spec::load(&[root]).unwrap_or_else(|e| panic!("{e}"))
}

fn manifests(text: &str) -> Vec<Manifest> {
    parse("test.yaml", text).expect("parse")
}

fn rendered() -> Vec<Manifest> {
    render(&examples(), &K8sOptions::default())
        .expect("render")
        .iter()
        .flat_map(|o| parse("rendered.yaml", &o.yaml).expect("parse"))
        .collect()
}

#[test]
fn our_render_has_only_the_paths_the_spec_allows() {
    let desired = examples();
    let allowed = tenant_matrix(&desired, &TenancyOptions::new()).expect("tenant matrix");
    let report = reach(
        &rendered(),
        &ReachOptions {
            allowed: Some(allowed),
            ..ReachOptions::default()
        },
    )
    .expect("reach");
    let shown: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    assert!(report.findings.is_empty(), "{}", shown.join("\n"));
    assert!(!report.connections.is_empty());

    // Without the spec, every cross-tenant path the examples open is a finding.
    let report = reach(&rendered(), &ReachOptions::default()).expect("reach");
    assert!(
        !report.findings.is_empty(),
        "the examples open cross-tenant paths"
    );
    assert!(report.findings.iter().all(|f| f.id == CROSS_TENANT));
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.message.contains("no spec given allows it")),
        "{:?}",
        report.findings
    );
}

const OPEN: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: a }
---
apiVersion: v1
kind: Namespace
metadata: { name: b }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, namespace: a }
spec:
  replicas: 3
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: web, image: x, ports: [{ name: http, containerPort: 8080 }] }] }
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-5d8f
  namespace: a
  ownerReferences: [{ kind: Deployment, name: web, controller: true }]
spec:
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [{ name: web, image: x }] }
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: db, namespace: b }
spec:
  template:
    metadata: { labels: { app: db } }
    spec: { containers: [{ name: db, image: x }] }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: db, namespace: b }
spec:
  podSelector: { matchLabels: { app: db } }
  ingress:
    - from: [{ namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: a } } }]
      ports: [{ port: 443 }, { port: 80 }]
"#;

#[test]
fn a_replicated_workload_is_one_endpoint_and_its_replica_set_is_not_another() {
    let input = cluster_input(&manifests(OPEN)).expect("input");
    let names: Vec<String> = input.workloads.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["a/web[Deployment]", "b/db[StatefulSet]"]);
}

#[test]
fn connections_print_per_workload_and_cross_tenant_paths_are_findings() {
    let report = reach(&manifests(OPEN), &ReachOptions::default()).expect("reach");
    let lines: Vec<String> = report.lines().map(|c| c.to_string()).collect();
    assert_eq!(
        lines,
        [
            "a/web[Deployment] => b/db[StatefulSet] : TCP 80,443",
            "b/db[StatefulSet] => a/web[Deployment] : TCP any; UDP any; SCTP any",
        ]
    );
    let namespaces: Vec<(String, String)> = report
        .namespaces
        .iter()
        .map(|c| (c.src.clone(), c.dst.clone()))
        .collect();
    assert_eq!(
        namespaces,
        [
            ("a".to_owned(), "b".to_owned()),
            ("b".to_owned(), "a".to_owned())
        ]
    );
    let findings: Vec<String> = report.findings.iter().map(|f| f.message.clone()).collect();
    assert_eq!(
        findings,
        [
            "tenant a reaches tenant b on TCP 80,443 (no spec given allows it), e.g. a/web[Deployment] => b/db[StatefulSet]",
            "tenant b reaches tenant a on TCP any; UDP any; SCTP any (no spec given allows it), e.g. b/db[StatefulSet] => a/web[Deployment]",
        ]
    );
    assert_eq!(report.findings[0].object.file, "test.yaml");
}

#[test]
fn system_namespaces_are_not_tenants() {
    let text = OPEN
        .replace("name: b }", "name: kube-system }")
        .replace("namespace: b }", "namespace: kube-system }");
    let report = reach(&manifests(&text), &ReachOptions::default()).expect("reach");
    assert_eq!(report.connections.len(), 2);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

const IP_BLOCK: &str = r#"
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: a, labels: { app: client } }
spec: { containers: [{ name: c, image: x }] }
---
apiVersion: v1
kind: Pod
metadata: { name: server, namespace: b }
spec: { containers: [{ name: s, image: x }] }
status: { podIP: 10.1.0.5, podIPs: [{ ip: 10.1.0.5 }] }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: egress, namespace: a }
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ ipBlock: { cidr: 10.1.0.0/16 } }]
      ports: [{ port: 443 }]
"#;

#[test]
fn ip_blocks_match_pod_addresses_only_when_asked() {
    let default = reach(&manifests(IP_BLOCK), &ReachOptions::default()).expect("reach");
    assert!(!default.ip_block_matches_pods);
    let lines: Vec<String> = default.lines().map(|c| c.to_string()).collect();
    assert_eq!(
        lines,
        ["b/server[Pod] => a/client[Pod] : TCP any; UDP any; SCTP any"]
    );

    let options = ReachOptions {
        ip_block_matches_pods: true,
        ..ReachOptions::default()
    };
    let matching = reach(&manifests(IP_BLOCK), &options).expect("reach");
    let lines: Vec<String> = matching.lines().map(|c| c.to_string()).collect();
    assert_eq!(
        lines,
        [
            "a/client[Pod] => b/server[Pod] : TCP 443",
            "b/server[Pod] => a/client[Pod] : TCP any; UDP any; SCTP any"
        ]
    );
    // Implied namespaces: no Namespace objects in the input.
    assert_eq!(
        cluster_input(&manifests(IP_BLOCK))
            .expect("input")
            .cluster
            .namespaces
            .len(),
        2
    );
}

#[test]
fn a_malformed_policy_is_an_error_that_names_it() {
    let text = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: broken, namespace: a }
spec:
  podSelector: {}
  ingress: [{ ports: [{ port: 80, protocol: ICMP }] }]
"#;
    let error = reach(&manifests(text), &ReachOptions::default()).expect_err("invalid");
    assert!(
        error.to_string().contains("NetworkPolicy a/broken"),
        "{error}"
    );
}
