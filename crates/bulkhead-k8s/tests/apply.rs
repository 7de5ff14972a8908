//! `apply` against a fake API server (`tower-test`'s `mock::pair` behind
//! `kube::Client::new`): the requests it sends — paths, `fieldManager=bulkhead`, the
//! `application/apply-patch+yaml` bodies, the wait for a Namespace, the prune list and
//! DELETE of a removed tenant — and a live run when `KUBECONFIG` is set.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_k8s::apply::{ApplyError, ApplyOptions, apply};
use bulkhead_k8s::{K8sOptions, RenderedObject, render};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

fn rendered() -> Vec<RenderedObject> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let desired = bulkhead_spec::load(&[root]).unwrap_or_else(|e| panic!("{e}"));
    render(&desired, &K8sOptions::default()).expect("render")
}

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// What the fake cluster holds beyond what is applied: objects with the owner label,
/// returned by list calls.
#[derive(Clone, Default)]
struct Cluster {
    /// `(plural, object)`.
    owned: Vec<(&'static str, Value)>,
    /// Return this status for every apply PATCH instead of 200.
    patch_status: Option<u16>,
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn status(code: u16, reason: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": reason, "reason": reason, "code": code })
}

/// Serves until the client is dropped: echoes apply patches (a Namespace without a
/// phase, so the client must wait and GET it Active), lists what `cluster` owns, 404s
/// the Flux and Istio APIs (not installed), accepts deletes.
async fn serve(
    mut handle: mock::Handle<Request<Body>, Response<Body>>,
    cluster: Cluster,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("body");
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        seen.lock().expect("lock").push(Seen {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type,
            body: body.clone(),
        });
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let not_installed = path.contains("toolkit.fluxcd.io") || path.contains("istio.io");
        let response = match parts.method.as_str() {
            "PATCH" => match cluster.patch_status {
                Some(code) => respond(code, &status(code, "Conflict")),
                None => {
                    let mut object = body.clone();
                    object["metadata"]["uid"] = json!("uid-1");
                    respond(200, &object)
                }
            },
            "GET" if query.contains("labelSelector") => {
                if not_installed {
                    respond(404, &status(404, "NotFound"))
                } else {
                    let plural = segments.last().copied().unwrap_or_default();
                    let items: Vec<Value> = cluster
                        .owned
                        .iter()
                        .filter(|(p, _)| *p == plural)
                        .map(|(_, o)| o.clone())
                        .collect();
                    respond(
                        200,
                        &json!({ "kind": "List", "apiVersion": "v1", "metadata": {}, "items": items }),
                    )
                }
            }
            "GET" => {
                let name = segments.last().copied().unwrap_or_default();
                respond(
                    200,
                    &json!({ "apiVersion": "v1", "kind": "Namespace",
                             "metadata": { "name": name }, "status": { "phase": "Active" } }),
                )
            }
            "DELETE" => respond(
                200,
                &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200 }),
            ),
            _ => respond(405, &status(405, "MethodNotAllowed")),
        };
        send.send_response(response);
    }
}

async fn run(
    cluster: Cluster,
    options: ApplyOptions,
) -> (
    Result<bulkhead_k8s::apply::ApplyReport, ApplyError>,
    Vec<Seen>,
) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(handle, cluster, Arc::clone(&seen)));
    let client = kube::Client::new(service, "default");
    let result = apply(&client, &rendered(), &options).await;
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let seen = seen.lock().expect("lock").clone();
    (result, seen)
}

fn quick() -> ApplyOptions {
    ApplyOptions {
        poll: Duration::from_millis(1),
        ..ApplyOptions::default()
    }
}

fn owned(kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let mut metadata =
        json!({ "name": name, "labels": { "app.kubernetes.io/managed-by": "bulkhead" } });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({ "kind": kind, "metadata": metadata })
}

#[tokio::test]
async fn every_object_is_server_side_applied_with_our_field_manager() {
    let (result, seen) = run(Cluster::default(), quick()).await;
    let report = result.expect("apply");
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.method == "PATCH").collect();
    // Every cluster object of the render, none of the Flux bootstrap kustomization.
    let cluster_objects = rendered()
        .iter()
        .filter(|o| o.api_version != "kustomize.config.k8s.io/v1beta1")
        .count();
    assert_eq!(patches.len(), cluster_objects);
    assert_eq!(report.applied.len(), cluster_objects);
    for patch in &patches {
        assert_eq!(
            patch.content_type, "application/apply-patch+yaml",
            "{patch:?}"
        );
        assert!(patch.query.contains("fieldManager=bulkhead"), "{patch:?}");
        assert!(
            !patch.query.contains("force"),
            "no force without the flag: {patch:?}"
        );
        assert!(!patch.query.contains("dryRun"), "{patch:?}");
        // The body is the rendered object, with its owner label.
        assert_eq!(
            patch.body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "bulkhead",
            "{patch:?}"
        );
    }
    // Paths: cluster-scoped, core namespaced, grouped namespaced.
    let paths: Vec<&str> = patches.iter().map(|p| p.path.as_str()).collect();
    // The platform's objects first (the reconciler ClusterRole a RoleBinding names,
    // the admission policies a new tenant's Namespace must pass), then each tenant
    // starting with its Namespace.
    assert_eq!(
        paths[0], "/apis/rbac.authorization.k8s.io/v1/clusterroles/bulkhead-tenant-reconciler",
        "the platform's objects come first"
    );
    let first_tenant = paths
        .iter()
        .position(|p| p.contains("/namespaces/db"))
        .expect("tenant db");
    assert_eq!(
        paths[first_tenant], "/api/v1/namespaces/db",
        "then a tenant's Namespace"
    );
    assert!(
        paths[..first_tenant]
            .iter()
            .any(|p| p.contains("validatingadmissionpolicies")),
        "admission policies before any tenant: {paths:?}"
    );
    assert!(paths.contains(&"/api/v1/namespaces/db/resourcequotas/bulkhead-quota"));
    assert!(paths.contains(
        &"/apis/networking.k8s.io/v1/namespaces/db/networkpolicies/bulkhead-default-deny"
    ));
    assert!(paths.contains(&"/apis/apps/v1/namespaces/web/deployments/app"));
    assert!(paths.iter().any(|p| {
        p.starts_with("/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/")
    }));
    // The Namespace came back without a phase: the client waited and read it Active
    // before applying what goes inside it.
    let first_get = seen
        .iter()
        .position(|s| s.method == "GET" && s.path == "/api/v1/namespaces/db")
        .expect("waited for namespace db");
    let quota = seen
        .iter()
        .position(|s| s.path == "/api/v1/namespaces/db/resourcequotas/bulkhead-quota")
        .expect("quota applied");
    assert!(first_get < quota);
    // Pruning listed every kind by the owner label, and found nothing to delete.
    let lists: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.method == "GET" && s.query.contains("labelSelector"))
        .collect();
    assert_eq!(lists.len(), bulkhead_k8s::apply::PRUNABLE.len());
    assert!(
        lists.iter().all(|l| l
            .query
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dbulkhead")),
        "{lists:?}"
    );
    assert!(report.pruned.is_empty());
    assert!(seen.iter().all(|s| s.method != "DELETE"));
}

#[tokio::test]
async fn a_removed_tenant_is_pruned_by_its_namespace_and_stale_objects_alone() {
    let cluster = Cluster {
        owned: vec![
            ("namespaces", owned("Namespace", None, "web")),
            ("namespaces", owned("Namespace", None, "gone")),
            (
                "networkpolicies",
                owned("NetworkPolicy", Some("gone"), "bulkhead-default-deny"),
            ),
            (
                "networkpolicies",
                owned("NetworkPolicy", Some("web"), "bulkhead-egress-9"),
            ),
            (
                "networkpolicies",
                owned("NetworkPolicy", Some("web"), "bulkhead-default-deny"),
            ),
        ],
        patch_status: None,
    };
    let (result, seen) = run(cluster, quick()).await;
    let report = result.expect("apply");
    let deletes: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        deletes,
        [
            "/api/v1/namespaces/gone",
            "/apis/networking.k8s.io/v1/namespaces/web/networkpolicies/bulkhead-egress-9",
        ],
        "the removed tenant's namespace (its policy goes with it) and the stale policy"
    );
    let delete = seen.iter().find(|s| s.method == "DELETE").expect("delete");
    assert_eq!(delete.body["propagationPolicy"], "Background", "{delete:?}");
    let pruned: Vec<String> = report.pruned.iter().map(ToString::to_string).collect();
    assert_eq!(
        pruned,
        ["Namespace gone", "NetworkPolicy web/bulkhead-egress-9"]
    );
}

#[tokio::test]
async fn force_and_dry_run_reach_the_query_and_a_dry_run_deletes_nothing() {
    let cluster = Cluster {
        owned: vec![("namespaces", owned("Namespace", None, "gone"))],
        patch_status: None,
    };
    let options = ApplyOptions {
        force: true,
        dry_run: true,
        ..quick()
    };
    let (result, seen) = run(cluster, options).await;
    let report = result.expect("apply");
    let patch = seen.iter().find(|s| s.method == "PATCH").expect("patch");
    assert!(patch.query.contains("force=true"), "{patch:?}");
    assert!(patch.query.contains("dryRun=All"), "{patch:?}");
    assert!(seen.iter().all(|s| s.method != "DELETE"));
    assert!(
        seen.iter()
            .all(|s| s.method != "GET" || s.query.contains("labelSelector")),
        "no readiness wait in a dry run"
    );
    assert_eq!(report.pruned.len(), 1, "reported, not deleted");
    assert!(report.dry_run);
}

#[tokio::test]
async fn a_conflict_stops_the_apply_and_names_the_object() {
    let cluster = Cluster {
        patch_status: Some(409),
        ..Cluster::default()
    };
    let (result, seen) = run(cluster, quick()).await;
    let error = result.expect_err("conflict");
    assert!(
        error
            .to_string()
            .contains("apply ClusterRole bulkhead-tenant-reconciler"),
        "{error}"
    );
    assert_eq!(seen.len(), 1, "nothing after the first refusal");
}

/// Against a real cluster, as a server-side dry run (nothing is stored): only when
/// `KUBECONFIG` is set.
#[tokio::test]
async fn live_dry_run_against_kubeconfig() {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!("skipped: KUBECONFIG is not set (live apply test needs a cluster)");
        return;
    }
    let client = bulkhead_k8s::apply::connect()
        .await
        .expect("client from KUBECONFIG");
    let options = ApplyOptions {
        dry_run: true,
        prune: false,
        ..ApplyOptions::default()
    };
    let objects: Vec<RenderedObject> = rendered()
        .into_iter()
        // Flux and Istio may not be installed on the cluster under test.
        .filter(|o| {
            !o.api_version.contains("toolkit.fluxcd.io") && !o.api_version.contains("istio.io")
        })
        .collect();
    let report = apply(&client, &objects, &options)
        .await
        .expect("live dry run");
    assert!(!report.applied.is_empty());
}
