//! Istio objects with `mesh: true`: a golden file for the examples, and the per-rule
//! AuthorizationPolicies checked against the NetworkPolicies they come from: one rule
//! per ingress rule, principals from the source tenant's service accounts, TCP ports
//! as numbers, and whatever cannot be said exactly left out rather than widened.

use std::path::Path;

use bulkhead_k8s::mesh::AuthorizationPolicy;
use bulkhead_k8s::{K8sOptions, RenderedObject, render};
use k8s_openapi::api::networking::v1::NetworkPolicy;

fn with_mesh(mut desired: bulkhead_spec::Desired, options: &K8sOptions) -> Vec<RenderedObject> {
    desired.platform.spec.kubernetes.mesh = true;
    render(&desired, options).expect("render")
}

fn examples() -> bulkhead_spec::Desired {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    bulkhead_spec::load(&[root]).unwrap_or_else(|e| panic!("{e}"))
}

fn authz(objects: &[RenderedObject], namespace: &str) -> Vec<AuthorizationPolicy> {
    objects
        .iter()
        .filter(|o| o.kind == "AuthorizationPolicy" && o.namespace.as_deref() == Some(namespace))
        .map(|o| serde_saphyr::from_str(&o.yaml).expect("typed"))
        .collect()
}

fn find<'a>(policies: &'a [AuthorizationPolicy], name: &str) -> Option<&'a AuthorizationPolicy> {
    policies.iter().find(|p| p.metadata.name == name)
}

fn principals(policy: &AuthorizationPolicy) -> Vec<Vec<String>> {
    policy
        .spec
        .rules
        .iter()
        .map(|r| {
            r.from
                .iter()
                .flat_map(|f| f.source.principals.clone())
                .collect()
        })
        .collect()
}

fn ports(policy: &AuthorizationPolicy) -> Vec<Vec<String>> {
    policy
        .spec
        .rules
        .iter()
        .map(|r| {
            r.to.iter()
                .flat_map(|t| t.operation.ports.clone())
                .collect()
        })
        .collect()
}

/// `BULKHEAD_UPDATE_GOLDEN=1` rewrites the file instead.
#[test]
fn mesh_objects_match_the_golden_file() {
    let objects = with_mesh(examples(), &K8sOptions::default());
    let got: String = objects
        .iter()
        .filter(|o| o.api_version == bulkhead_k8s::mesh::SECURITY_API_VERSION)
        .map(|o| format!("---\n{}", o.yaml))
        .collect();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/mesh.yaml");
    if std::env::var_os("BULKHEAD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with BULKHEAD_UPDATE_GOLDEN=1)",
            golden.display()
        )
    });
    assert!(
        got == want,
        "mesh.yaml differs from its golden file; run with BULKHEAD_UPDATE_GOLDEN=1 and review the diff"
    );
}

#[test]
fn each_ingress_rule_becomes_a_rule_naming_the_source_tenants_accounts() {
    let objects = with_mesh(examples(), &K8sOptions::default());
    for tenant in ["db", "ingress", "web"] {
        let policies = authz(&objects, tenant);
        // Deny by default: an allow-nothing policy over the whole namespace.
        let base = find(&policies, "bulkhead-mesh").expect("allow-nothing policy");
        assert!(base.spec.rules.is_empty() && base.spec.selector.is_none());
        assert_eq!(base.spec.action, "ALLOW");
        // Every other policy is named after a NetworkPolicy of the namespace.
        let network: Vec<NetworkPolicy> = objects
            .iter()
            .filter(|o| o.kind == "NetworkPolicy" && o.namespace.as_deref() == Some(tenant))
            .map(|o| serde_saphyr::from_str(&o.yaml).expect("typed"))
            .collect();
        for policy in policies
            .iter()
            .filter(|p| p.metadata.name != "bulkhead-mesh")
        {
            let source = network
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(policy.metadata.name.as_str()))
                .unwrap_or_else(|| {
                    panic!("{tenant}/{} has no NetworkPolicy", policy.metadata.name)
                });
            let rules = source
                .spec
                .as_ref()
                .and_then(|s| s.ingress.as_ref())
                .map_or(0, Vec::len);
            assert!(policy.spec.rules.len() <= rules);
            assert!(!policy.spec.rules.is_empty());
        }
        // Same tenant: its own workloads' account.
        let same = find(&policies, "bulkhead-same-tenant").expect("same tenant");
        assert_eq!(
            principals(same),
            [[format!("cluster.local/ns/{tenant}/sa/default")]]
        );
    }
    // db's postgres: only web's workloads, only 5432, only the postgres pods.
    let db = authz(&objects, "db");
    let postgres = find(&db, "bulkhead-ingress-0").expect("db ingress rule");
    assert_eq!(principals(postgres), [["cluster.local/ns/web/sa/default"]]);
    assert_eq!(ports(postgres), [["5432"]]);
    let selector = postgres.spec.selector.as_ref().expect("selector");
    assert_eq!(
        selector.match_labels.get("app").map(String::as_str),
        Some("postgres")
    );
    // web: the ingress proxy, on the named port `http`, resolved to web's 8080.
    let web = authz(&objects, "web");
    let from_proxy = find(&web, "bulkhead-ingress-0").expect("web ingress rule");
    assert_eq!(
        principals(from_proxy),
        [["cluster.local/ns/ingress/sa/default"]]
    );
    assert_eq!(ports(from_proxy), [["8080"]]);
    // ingress: its only rule admits a CIDR, which has no mesh identity.
    assert!(find(&authz(&objects, "ingress"), "bulkhead-ingress-0").is_none());
    // Rendered workloads run as the account the principals name.
    let deployment = objects
        .iter()
        .find(|o| o.kind == "Deployment" && o.name == "postgres")
        .expect("deployment");
    assert!(
        deployment.yaml.contains("serviceAccountName: default"),
        "{}",
        deployment.yaml
    );
}

const SPEC: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: gitops }
spec:
  quota: { memory: 1Gi }
  network:
    egress:
      - to: [{ tenant: api }]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: api }
spec:
  quota: { memory: 1Gi }
  network:
    ingress:
      - from: [{ tenant: gitops }]
        ports: [9000-9003/tcp]
      - from: [{ tenant: gitops }]
        ports: [5353/udp]
      - from: [{ tenant: gitops }]
        ports: [10000-20000/tcp]
      - workloads: { matchLabels: { app: server } }
        from: [{ tenant: gitops }]
        ports: [grpc]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: server, tenant: api, labels: { app: server } }
spec:
  command: [/bin/server]
  ports: [{ name: web, port: 8080 }]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata: { name: other, tenant: api, labels: { app: other } }
spec:
  command: [/bin/other]
  ports: [{ name: grpc, port: 9090 }]
"#;

#[test]
fn what_the_mesh_cannot_say_is_left_out_and_gitops_tenants_are_named_whole() {
    let desired = bulkhead_spec::load_str("mesh.yaml", SPEC).unwrap_or_else(|e| panic!("{e}"));
    let options = K8sOptions {
        mesh_trust_domain: "corp.example".to_owned(),
        ..K8sOptions::default()
    };
    let objects = with_mesh(desired, &options);
    let api = authz(&objects, "api");
    let network: Vec<&str> = objects
        .iter()
        .filter(|o| o.kind == "NetworkPolicy" && o.namespace.as_deref() == Some("api"))
        .map(|o| o.name.as_str())
        .collect();
    // The four rules are four NetworkPolicies; only the small TCP range survives into
    // the mesh (UDP is not the mesh's, 10001 ports are too many, `grpc` is no port of
    // the server pods the rule selects).
    let ingress: Vec<&str> = network
        .iter()
        .copied()
        .filter(|n| n.starts_with("bulkhead-ingress-"))
        .collect();
    assert_eq!(ingress.len(), 4, "{network:?}");
    let names: Vec<&str> = api.iter().map(|p| p.metadata.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bulkhead-mesh",
            "bulkhead-same-tenant",
            "bulkhead-ingress-0"
        ],
        "{api:?}"
    );
    let range = find(&api, "bulkhead-ingress-0").expect("range rule");
    assert_eq!(ports(range), [["9000", "9001", "9002", "9003"]]);
    // gitops declares no workloads: every account of its namespace, in our trust domain.
    assert_eq!(principals(range), [["corp.example/ns/gitops/sa/*"]]);
}
