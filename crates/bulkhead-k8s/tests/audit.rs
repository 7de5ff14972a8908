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

fn controller_manifests() -> Vec<Manifest> {
    let objects = bulkhead_k8s::deploy::controller_manifests(
        &bulkhead_k8s::deploy::ControllerManifestOptions::default(),
    )
    .expect("manifests");
    objects
        .iter()
        .flat_map(|o| parse("controller.yaml", &o.yaml).expect("parse"))
        .collect()
}

fn field<'a>(m: &'a Manifest, pointer: &str) -> Option<&'a str> {
    m.value.pointer(pointer).and_then(serde_json::Value::as_str)
}

fn bind_findings(manifests: &[Manifest]) -> Vec<String> {
    audit(manifests)
        .iter()
        .filter(|f| f.id == "BH-K8S-007")
        .map(|f| format!("{} {}", f.object, f.message))
        .collect()
}

/// The controller's ClusterRole holds `bind`, restricted by name to the tenant
/// reconciler ClusterRole, which grants no more than a reconciler may have: accepted,
/// alone and together with the render it manages.
#[test]
fn a_bind_bounded_to_the_reconciler_cluster_role_is_accepted() {
    let manifests = controller_manifests();
    let role = manifests
        .iter()
        .find(|m| {
            field(m, "/kind") == Some("ClusterRole")
                && field(m, "/metadata/name") == Some("bulkhead-controller")
        })
        .expect("the controller's ClusterRole");
    assert!(
        role.value.to_string().contains("\"bind\""),
        "{:?}",
        role.value
    );
    let findings = audit(&manifests);
    assert!(findings.is_empty(), "{findings:#?}");

    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let mut all = manifests;
    all.extend(
        objects
            .iter()
            .flat_map(|o| parse("rendered.yaml", &o.yaml).expect("parse")),
    );
    let findings = audit(&all);
    assert!(findings.is_empty(), "{findings:#?}");
}

/// Each way a `bind` stops being bounded is flagged on the controller's ClusterRole:
/// the bound ClusterRole missing from the input, granting more than a reconciler may
/// (a NetworkPolicy right, a `*`, an aggregation rule), the rule without
/// `resourceNames`, or with another resource besides `clusterroles`.
#[test]
fn an_unbounded_bind_is_still_flagged() {
    let edit = |f: &dyn Fn(&mut serde_json::Value, &str)| -> Vec<String> {
        let mut manifests = controller_manifests();
        for m in &mut manifests {
            let name = field(m, "/metadata/name").unwrap_or_default().to_owned();
            if field(m, "/kind") == Some("ClusterRole") {
                f(&mut m.value, &name);
            }
        }
        bind_findings(&manifests)
    };
    // The controller's ClusterRole is flagged for its bind (the bound role itself may
    // be flagged too, for a `*`).
    let flagged = |found: Vec<String>, what: &str| {
        let on_controller: Vec<&String> = found
            .iter()
            .filter(|f| f.starts_with("ClusterRole bulkhead-controller "))
            .collect();
        assert_eq!(on_controller.len(), 1, "{what}: {found:?}");
        assert!(
            on_controller[0].ends_with("grants bind"),
            "{what}: {found:?}"
        );
    };
    // The bound ClusterRole is not in the input: nothing says what it grants.
    let manifests: Vec<Manifest> = controller_manifests()
        .into_iter()
        .filter(|m| field(m, "/metadata/name") != Some("bulkhead-tenant-reconciler"))
        .collect();
    flagged(bind_findings(&manifests), "missing ClusterRole");
    // It grants rights on NetworkPolicies, which shape isolation.
    flagged(
        edit(&|v, name| {
            if name == "bulkhead-tenant-reconciler" {
                v["rules"][0]["resources"]
                    .as_array_mut()
                    .expect("resources")
                    .push("networkpolicies".into());
            }
        }),
        "networkpolicies",
    );
    // It grants every verb on Secrets.
    flagged(
        edit(&|v, name| {
            if name == "bulkhead-tenant-reconciler" {
                v["rules"][0]["verbs"] = serde_json::json!(["*"]);
            }
        }),
        "wildcard verb",
    );
    // It aggregates other ClusterRoles' rules.
    flagged(
        edit(&|v, name| {
            if name == "bulkhead-tenant-reconciler" {
                v["aggregationRule"] = serde_json::json!({
                    "clusterRoleSelectors": [{ "matchLabels": { "x": "y" } }]
                });
            }
        }),
        "aggregation",
    );
    // The bind is not restricted by name.
    flagged(
        edit(&|v, name| {
            if name == "bulkhead-controller" {
                for rule in v["rules"].as_array_mut().expect("rules") {
                    if rule["verbs"] == serde_json::json!(["bind"]) {
                        rule.as_object_mut().expect("rule").remove("resourceNames");
                    }
                }
            }
        }),
        "no resourceNames",
    );
    // The bind also covers Roles (any Role in any namespace).
    flagged(
        edit(&|v, name| {
            if name == "bulkhead-controller" {
                for rule in v["rules"].as_array_mut().expect("rules") {
                    if rule["verbs"] == serde_json::json!(["bind"]) {
                        rule["resources"] = serde_json::json!(["clusterroles", "roles"]);
                    }
                }
            }
        }),
        "roles too",
    );
    // And the unedited manifests are clean: the findings above come from the edits.
    assert!(edit(&|_, _| {}).is_empty());
}
