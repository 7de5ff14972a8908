//! The live-cluster reader against a fake API server that serves a small cluster: the
//! audit and reachability of what it lists equal those of the same objects read from
//! files; Flux not installed is no error, a refused list is; objects a listed
//! controller owns are read through their owner, made-up owners hide nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_k8s::audit::{Finding, Manifest, audit, audit_dir};
use bulkhead_k8s::live::{LIVE_KINDS, LiveError, load};
use bulkhead_k8s::reach::{ReachOptions, reach};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// The cluster, as one would dump it to files.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: { name: acme, uid: ns-acme, labels: { pod-security.kubernetes.io/enforce: privileged } }
---
apiVersion: v1
kind: Namespace
metadata: { name: globex, uid: ns-globex, labels: { pod-security.kubernetes.io/enforce: restricted } }
---
apiVersion: v1
kind: Namespace
metadata: { name: kube-system, uid: ns-kube-system }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: open, namespace: acme, uid: np-open }
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [{ namespaceSelector: {} }]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: deny, namespace: globex, uid: np-deny }
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: too-much, namespace: acme, uid: rb-1 }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin }
subjects: [{ kind: ServiceAccount, name: default, namespace: acme }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: escalator, uid: cr-1 }
rules: [{ apiGroups: [""], resources: [pods], verbs: ["*"] }]
---
apiVersion: v1
kind: ResourceQuota
metadata: { name: q, namespace: globex, uid: rq-1 }
spec: { hard: { pods: "10" } }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: acme, uid: svc-1 }
spec: { type: NodePort, ports: [{ port: 80 }] }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: default, namespace: acme, uid: sa-1 }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: api, namespace: acme, uid: dep-api }
spec:
  selector: { matchLabels: { app: api } }
  template:
    metadata: { labels: { app: api } }
    spec:
      hostNetwork: true
      containers:
        - name: api
          image: api:1
          securityContext: { privileged: true }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: db, namespace: globex, uid: dep-db }
spec:
  selector: { matchLabels: { app: db } }
  template:
    metadata: { labels: { app: db } }
    spec:
      containers:
        - name: db
          image: db:1
          securityContext: { allowPrivilegeEscalation: false }
---
apiVersion: v1
kind: Pod
metadata:
  name: sneaky
  namespace: globex
  uid: pod-sneaky
  labels: { app: sneaky }
  ownerReferences:
    - { apiVersion: apps/v1, kind: ReplicaSet, name: made-up, uid: rs-made-up, controller: true }
spec:
  volumes: [{ name: root, hostPath: { path: / } }]
  containers: [{ name: c, image: x, securityContext: { allowPrivilegeEscalation: false } }]
---
apiVersion: v1
kind: Pod
metadata: { name: worker, namespace: acme, uid: pod-worker, labels: { app: worker } }
spec:
  containers: [{ name: c, image: x, securityContext: { allowPrivilegeEscalation: false } }]
"#;

/// What a real cluster adds: the ReplicaSet and Pod the api Deployment owns.
const OWNED: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: api-5d8f
  namespace: acme
  uid: rs-api
  ownerReferences: [{ apiVersion: apps/v1, kind: Deployment, name: api, uid: dep-api, controller: true }]
spec:
  selector: { matchLabels: { app: api } }
  template:
    metadata: { labels: { app: api } }
    spec:
      hostNetwork: true
      containers: [{ name: api, image: "api:1", securityContext: { privileged: true } }]
---
apiVersion: v1
kind: Pod
metadata:
  name: api-5d8f-x2
  namespace: acme
  uid: pod-api
  labels: { app: api }
  ownerReferences: [{ apiVersion: apps/v1, kind: ReplicaSet, name: api-5d8f, uid: rs-api, controller: true }]
spec:
  hostNetwork: true
  containers: [{ name: api, image: "api:1", securityContext: { privileged: true } }]
"#;

fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).expect("yaml")
}

fn plural_of(kind: &str) -> &'static str {
    LIVE_KINDS
        .iter()
        .find(|(_, k, _, _)| *k == kind)
        .map(|(_, _, p, _)| *p)
        .unwrap_or_else(|| panic!("{kind} is not listed"))
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn failure(code: u16, reason: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": reason, "reason": reason, "code": code })
}

/// Serves lists of `objects` by plural, items without `apiVersion`/`kind` (as the API
/// server sends them) and with managedFields; Flux is not installed; `forbidden`
/// plurals answer 403.
async fn serve(
    mut handle: mock::Handle<Request<Body>, Response<Body>>,
    objects: Vec<Value>,
    forbidden: Vec<&'static str>,
    paths: Arc<Mutex<Vec<String>>>,
) {
    let mut by_plural: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for mut object in objects {
        let plural = plural_of(object["kind"].as_str().expect("kind"));
        let map = object.as_object_mut().expect("object");
        map.remove("apiVersion");
        map.remove("kind");
        object["metadata"]["managedFields"] =
            json!([{ "manager": "kubectl", "operation": "Apply" }]);
        by_plural.entry(plural).or_default().push(object);
    }
    while let Some((request, send)) = handle.next_request().await {
        let path = request.uri().path().to_owned();
        paths.lock().expect("lock").push(path.clone());
        let plural = path.rsplit('/').next().unwrap_or_default();
        let response = if request.method() != "GET" {
            respond(405, &failure(405, "MethodNotAllowed"))
        } else if path.contains("toolkit.fluxcd.io") {
            respond(404, &failure(404, "NotFound"))
        } else if forbidden.contains(&plural) {
            respond(403, &failure(403, "Forbidden"))
        } else {
            // One object per page: the client must follow `continue` to read them all.
            let items = by_plural.get(plural).cloned().unwrap_or_default();
            let query = request.uri().query().unwrap_or_default();
            assert!(query.contains("limit=500"), "{query}");
            let at: usize = query
                .split('&')
                .find_map(|p| p.strip_prefix("continue="))
                .map_or(0, |n| n.parse().expect("our token"));
            let page: Vec<Value> = items.iter().skip(at).take(1).cloned().collect();
            let mut metadata = json!({ "resourceVersion": "1" });
            if at + 1 < items.len() {
                metadata["continue"] = json!((at + 1).to_string());
            }
            respond(
                200,
                &json!({ "kind": "List", "apiVersion": "v1", "metadata": metadata, "items": page }),
            )
        };
        send.send_response(response);
    }
}

async fn read_cluster(
    objects: Vec<Value>,
    forbidden: Vec<&'static str>,
) -> (Result<Vec<Manifest>, LiveError>, Vec<String>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(handle, objects, forbidden, Arc::clone(&paths)));
    let client = kube::Client::new(service, "default");
    let result = load(&client, "cluster").await;
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let paths = paths.lock().expect("lock").clone();
    (result, paths)
}

/// A finding without the file it was read from.
fn comparable(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{} {} {}: {}", f.id, f.severity, f.object, f.message))
        .collect()
}

#[tokio::test]
async fn a_live_cluster_audits_like_its_dump() {
    let mut served = documents(CLUSTER);
    served.extend(documents(OWNED));
    let mut served_count: BTreeMap<&str, usize> = BTreeMap::new();
    for object in &served {
        let kind = LIVE_KINDS
            .iter()
            .map(|(_, k, _, _)| *k)
            .find(|k| object["kind"] == *k)
            .expect("a listed kind");
        *served_count.entry(kind).or_default() += 1;
    }
    let (result, paths) = read_cluster(served.clone(), Vec::new()).await;
    let live = result.expect("read the cluster");

    // Every kind was listed cluster-wide, Flux included (and found missing), page by
    // page (one object a page here).
    let pages: usize = LIVE_KINDS
        .iter()
        .map(|(_, kind, _, _)| served_count.get(kind).copied().unwrap_or(0).max(1))
        .sum();
    assert_eq!(paths.len(), pages);
    assert!(paths.contains(&"/api/v1/pods".to_owned()));
    assert!(paths.contains(&"/apis/apps/v1/deployments".to_owned()));
    assert!(paths.contains(&"/apis/source.toolkit.fluxcd.io/v1/gitrepositories".to_owned()));
    assert!(paths.contains(
        &"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings".to_owned()
    ));

    // Kinds restored, managedFields dropped, owned objects folded into their owner.
    assert!(live.iter().all(|m| m.value["apiVersion"].is_string()));
    assert!(
        live.iter()
            .all(|m| m.value["metadata"].get("managedFields").is_none())
    );
    let names: Vec<&str> = live
        .iter()
        .filter_map(|m| m.value["metadata"]["name"].as_str())
        .collect();
    assert!(!names.contains(&"api-5d8f"), "{names:?}");
    assert!(!names.contains(&"api-5d8f-x2"), "{names:?}");
    assert!(names.contains(&"sneaky"), "a made-up owner hides nothing");

    // The same objects from files give the same findings.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("cluster.yaml"), CLUSTER).expect("write");
    let from_files = audit_dir(dir.path()).expect("audit files");
    let from_cluster = audit(&live);
    assert_eq!(comparable(&from_cluster), comparable(&from_files));
    let ids: Vec<&str> = from_cluster.iter().map(|f| f.id).collect();
    for id in [
        "BH-K8S-001",
        "BH-K8S-003",
        "BH-K8S-005",
        "BH-K8S-007",
        "BH-K8S-008",
        "BH-K8S-009",
        "BH-K8S-010",
        "BH-K8S-011",
        "BH-K8S-016",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // Read once: the api Deployment's privileged container is one finding, not three.
    let privileged: Vec<&Finding> = from_cluster
        .iter()
        .filter(|f| f.id == "BH-K8S-009")
        .collect();
    assert_eq!(privileged.len(), 1, "{privileged:?}");
    assert!(from_cluster.iter().all(|f| f.object.file == "cluster"));

    // Reachability too.
    let options = ReachOptions::default();
    let live_reach = reach(&live, &options).expect("reach live");
    let file_reach = reach(
        &bulkhead_k8s::audit::load_dir(dir.path()).expect("load"),
        &options,
    )
    .expect("reach files");
    let lines = |r: &bulkhead_k8s::reach::ReachReport| -> Vec<String> {
        r.lines().map(|l| l.to_string()).collect()
    };
    assert_eq!(lines(&live_reach), lines(&file_reach));
    assert!(!lines(&live_reach).is_empty());
    assert_eq!(
        comparable(&live_reach.findings),
        comparable(&file_reach.findings)
    );
}

#[tokio::test]
async fn a_kind_the_account_may_not_list_is_an_error() {
    let (result, _) = read_cluster(documents(CLUSTER), vec!["clusterrolebindings"]).await;
    let error = result.expect_err("forbidden");
    let message = error.to_string();
    assert!(
        message.contains("cannot list clusterrolebindings"),
        "{message}"
    );
    assert!(matches!(error, LiveError::List { .. }));
}

/// Against a real cluster (when `KUBECONFIG` is set): every kind is readable and the
/// cluster's own namespaces are among what was read.
#[tokio::test]
async fn live_read_against_kubeconfig() {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!("skipped: KUBECONFIG is not set (live audit test needs a cluster)");
        return;
    }
    let client = bulkhead_k8s::live::connect(None).await.expect("client");
    let manifests = load(&client, "cluster").await.expect("read the cluster");
    assert!(manifests.iter().any(|m| m.value["kind"] == "Namespace"
        && m.value["metadata"]["name"] == "kube-system"));
    let _ = audit(&manifests);
}
