//! The auditor: our own render audits clean, and each finding fires on a manifest that
//! has the problem.

use std::path::Path;

use bulkhead_k8s::audit::{Manifest, audit, audit_dir, parse};
use bulkhead_k8s::{K8sOptions, render, write_dir};

fn examples() -> bulkhead_spec::Desired {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    bulkhead_spec::load(&[root]).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn our_rendered_output_audits_clean() {
    for mesh in [false, true] {
        let mut desired = examples();
        desired.platform.spec.kubernetes.mesh = mesh;
        let objects = render(&desired, &K8sOptions::default()).expect("render");
        let dir = tempfile::tempdir().expect("temp dir");
        write_dir(&objects, dir.path()).expect("write");
        let findings = audit_dir(dir.path()).expect("audit");
        let shown: Vec<String> = findings.iter().map(ToString::to_string).collect();
        assert!(findings.is_empty(), "mesh {mesh}:\n{}", shown.join("\n"));
    }
    // The clean result is not from reading nothing: drop one default deny and it shows.
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let manifests: Vec<Manifest> = objects
        .iter()
        .filter(|o| !(o.namespace.as_deref() == Some("db") && o.name == "bulkhead-default-deny"))
        .flat_map(|o| parse("rendered.yaml", &o.yaml).expect("parse"))
        .collect();
    let ids: Vec<String> = audit(&manifests)
        .iter()
        .map(|f| format!("{} {}", f.id, f.object))
        .collect();
    assert_eq!(ids, ["BH-K8S-001 Namespace db", "BH-K8S-002 Namespace db"]);
}

const BAD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: acme, labels: { pod-security.kubernetes.io/enforce: privileged } }
---
apiVersion: v1
kind: Namespace
metadata: { name: kube-system }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: open, namespace: acme }
spec:
  podSelector: {}
  ingress:
    - from: [{ namespaceSelector: {} }]
---
apiVersion: v1
kind: ResourceQuota
metadata: { name: q, namespace: acme }
spec: { hard: { pods: "10" } }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: owners, namespace: acme }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin }
subjects: [{ kind: Group, name: acme-devs }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: oops }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin }
subjects: [{ kind: ServiceAccount, name: ci, namespace: acme }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: sneaky, namespace: acme }
rules:
  - { apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate, bind] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: kubelet-reader }
rules:
  - { apiGroups: [""], resources: [nodes/proxy], verbs: [get] }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: app, namespace: acme }
spec:
  selector: { matchLabels: { app: x } }
  template:
    metadata: { labels: { app: x } }
    spec:
      hostNetwork: true
      hostPID: true
      volumes: [{ name: root, hostPath: { path: / } }]
      containers:
        - name: app
          image: x
          ports: [{ containerPort: 80, hostPort: 80 }]
          securityContext:
            privileged: true
            capabilities: { add: [NET_ADMIN] }
---
apiVersion: v1
kind: Service
metadata: { name: lb, namespace: acme }
spec: { type: LoadBalancer, ports: [{ port: 80 }] }
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: { name: apps, namespace: acme }
spec:
  interval: 5m
  path: ./
  prune: true
  sourceRef: { kind: GitRepository, name: platform, namespace: flux-system }
"#;

fn findings() -> Vec<bulkhead_k8s::audit::Finding> {
    let manifests: Vec<Manifest> = parse("bad.yaml", BAD).expect("parse");
    audit(&manifests)
}

#[test]
fn every_check_fires_on_a_bad_manifest() {
    let findings = findings();
    let ids: Vec<&str> = findings.iter().map(|f| f.id).collect();
    for id in 1..=18 {
        if id == 4 {
            continue; // needs a default-deny egress to be meaningful; see below
        }
        let id = format!("BH-K8S-{id:03}");
        assert!(ids.contains(&id.as_str()), "{id} missing from {ids:?}");
    }
    // kube-system is not a tenant: nothing is reported about it.
    assert!(
        findings
            .iter()
            .all(|f| f.object.namespace.as_deref() != Some("kube-system"))
    );
}

#[test]
fn denied_egress_without_dns_is_reported() {
    let text = r#"
apiVersion: v1
kind: Namespace
metadata: { name: acme, labels: { pod-security.kubernetes.io/enforce: restricted } }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: deny, namespace: acme }
spec: { podSelector: {}, policyTypes: [Ingress, Egress] }
"#;
    let findings = audit(&parse("ns.yaml", text).expect("parse"));
    let ids: Vec<&str> = findings.iter().map(|f| f.id).collect();
    assert_eq!(ids, ["BH-K8S-004", "BH-K8S-015"], "{findings:#?}");
    let line = findings[0].to_string();
    assert!(
        line.starts_with("BH-K8S-004 [low] Namespace acme (ns.yaml): egress is denied"),
        "{line}"
    );
}

#[test]
fn findings_are_stable_in_order() {
    assert_eq!(findings(), findings());
    let ids: Vec<&str> = findings().iter().map(|f| f.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}
