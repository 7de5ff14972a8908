//! The Tenant controller's `reconcile` against a fake API server (`tower-test`'s
//! `mock::pair` behind `kube::Client::new`): the finalizer before anything is created,
//! the server-side applies (paths, `fieldManager=bulkhead`, bodies), the status written
//! through the status subresource, events, cleanup on deletion, an invalid spec that
//! changes nothing, an API error that degrades and backs off; and a live run when
//! `KUBECONFIG` is set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_k8s::K8sOptions;
use bulkhead_k8s::apply::ApplyOptions;
use bulkhead_k8s::controller::{
    Context, FINALIZER, ReconcileError, backoff, error_policy, reconcile, tenant_resource,
};
use http::{Request, Response};
use kube::api::DynamicObject;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tower_test::mock;

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

/// What the fake cluster holds: objects returned by label-selected lists, and whether
/// applies fail.
#[derive(Clone, Default)]
struct Cluster {
    /// `(plural, object)`.
    owned: Vec<(&'static str, Value)>,
    /// Answer every server-side apply with this status.
    apply_status: Option<u16>,
    /// Tenants a list of tenants returns (watches are held open with no events).
    tenants: Vec<Value>,
    /// The tenant reconciler ClusterRole a get returns: `None`, the rendered one;
    /// `Some(Value::Null)`, not found.
    reconciler_role: Option<Value>,
}

const RECONCILER_ROLE_PATH: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterroles/bulkhead-tenant-reconciler";

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

fn decode(query: &str) -> String {
    query
        .replace("%2F", "/")
        .replace("%3D", "=")
        .replace("%2C", ",")
}

/// Whether `object`'s labels satisfy an equality selector `k=v,k=v`.
fn matches(selector: &str, object: &Value) -> bool {
    selector.split(',').all(|term| {
        let (key, value) = term.split_once('=').expect("equality selector");
        object["metadata"]["labels"][key] == value
    })
}

fn selector_of(query: &str) -> Option<String> {
    decode(query)
        .split('&')
        .find_map(|p| p.strip_prefix("labelSelector=").map(str::to_owned))
}

async fn serve(
    mut handle: mock::Handle<Request<Body>, Response<Body>>,
    cluster: Cluster,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut held = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("body");
        let body: Value = serde_json::from_slice(&bytes)
            .or_else(|_| serde_saphyr::from_slice::<Value>(&bytes))
            .unwrap_or(Value::Null);
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
            content_type: content_type.clone(),
            body: body.clone(),
        });
        let tenant_object = json!({ "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": { "name": "x" } });
        let not_installed = path.contains("toolkit.fluxcd.io") || path.contains("istio.io");
        if parts.method == "GET" && path.ends_with("/tenants") {
            if query.contains("watch=") {
                // No changes: the watch stays open until the client goes.
                held.push(send);
                continue;
            }
            send.send_response(respond(
                200,
                &json!({ "apiVersion": "bulkhead.dev/v1alpha1", "kind": "TenantList",
                         "metadata": { "resourceVersion": "7" }, "items": cluster.tenants }),
            ));
            continue;
        }
        let response = match parts.method.as_str() {
            "GET" if path == RECONCILER_ROLE_PATH => match &cluster.reconciler_role {
                None => respond(
                    200,
                    &serde_json::to_value(bulkhead_k8s::rbac::cluster_role()).expect("json"),
                ),
                Some(Value::Null) => respond(404, &failure(404, "NotFound")),
                Some(role) => respond(200, role),
            },
            "PATCH" if path.contains("/tenants/") => respond(200, &tenant_object),
            "PATCH" => match cluster.apply_status {
                Some(code) => respond(code, &failure(code, "InternalError")),
                None => {
                    let mut object = body.clone();
                    object["metadata"]["uid"] = json!("uid-1");
                    if object["kind"] == "Namespace" {
                        object["status"] = json!({ "phase": "Active" });
                    }
                    respond(200, &object)
                }
            },
            "GET" => match selector_of(&query) {
                Some(_) if not_installed => respond(404, &failure(404, "NotFound")),
                Some(selector) => {
                    let plural = path.rsplit('/').next().unwrap_or_default();
                    let items: Vec<Value> = cluster
                        .owned
                        .iter()
                        .filter(|(p, o)| *p == plural && matches(&selector, o))
                        .map(|(_, o)| o.clone())
                        .collect();
                    respond(
                        200,
                        &json!({ "kind": "List", "apiVersion": "v1", "metadata": {}, "items": items }),
                    )
                }
                None => respond(404, &failure(404, "NotFound")),
            },
            "POST" => respond(201, &body),
            "DELETE" => respond(
                200,
                &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200 }),
            ),
            _ => respond(405, &failure(405, "MethodNotAllowed")),
        };
        send.send_response(response);
    }
}

fn tenant(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1",
        "kind": "Tenant",
        "metadata": { "name": name, "uid": format!("uid-{name}"), "generation": 3,
                      "resourceVersion": "7", "labels": { "team": name } },
        "spec": spec,
    }))
    .expect("tenant object")
}

fn alpha() -> DynamicObject {
    tenant(
        "alpha",
        json!({
            "quota": { "memory": "1Gi", "cpu": "1" },
            "network": { "egress": [ { "to": [ { "tenant": "beta" } ], "ports": ["5432/tcp"] } ] },
        }),
    )
}

fn beta() -> DynamicObject {
    tenant(
        "beta",
        json!({
            "quota": { "memory": "1Gi" },
            "network": { "ingress": [ { "from": [ { "tenant": "alpha" } ], "ports": ["5432/tcp"] } ] },
        }),
    )
}

fn owned(kind: &str, namespace: Option<&str>, name: &str, tenant: &str) -> Value {
    let mut metadata = json!({ "name": name, "labels": {
        "app.kubernetes.io/managed-by": "bulkhead", "bulkhead.dev/tenant": tenant } });
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({ "kind": kind, "metadata": metadata })
}

struct Outcome {
    result: Result<Action, ReconcileError>,
    seen: Vec<Seen>,
    ctx: Arc<Context>,
}

/// Reconciles `object` once, with `store` as the controller's cache of Tenants.
async fn run(cluster: Cluster, object: DynamicObject, store: Vec<DynamicObject>) -> Outcome {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(handle, cluster, Arc::clone(&seen)));
    let client = kube::Client::new(service, "default");
    let mut writer = Writer::new(tenant_resource());
    for t in store {
        writer.apply_watcher_event(&watcher::Event::Apply(t));
    }
    let apply = ApplyOptions {
        poll: Duration::from_millis(1),
        ..ApplyOptions::default()
    };
    let ctx = Arc::new(Context::new(
        client,
        Vec::new(),
        writer.as_reader(),
        K8sOptions::default(),
        apply,
    ));
    let result = reconcile(Arc::new(object), Arc::clone(&ctx)).await;
    let _ = tokio::time::timeout(Duration::from_millis(200), server).await;
    let seen = seen.lock().expect("lock").clone();
    Outcome { result, seen, ctx }
}

fn is_apply(s: &Seen) -> bool {
    s.method == "PATCH" && s.content_type == "application/apply-patch+yaml"
}

fn condition<'a>(status_patch: &'a Value, kind: &str) -> &'a Value {
    status_patch["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {status_patch}"))
}

#[tokio::test]
async fn a_new_tenant_gets_the_finalizer_first_then_its_objects_then_ready() {
    let out = run(Cluster::default(), alpha(), vec![alpha(), beta()]).await;
    assert_eq!(
        out.result.expect("reconcile"),
        Action::requeue(bulkhead_k8s::controller::RESYNC)
    );
    let seen = &out.seen;

    // 1. The finalizer, before anything else, as a JSON patch tested against the
    //    finalizers seen (none).
    let first = &seen[0];
    assert_eq!(first.method, "PATCH");
    assert_eq!(first.path, "/apis/bulkhead.dev/v1alpha1/tenants/alpha");
    assert_eq!(first.content_type, "application/json-patch+json");
    assert_eq!(
        first.body,
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ])
    );

    // 2. Every object of alpha's stack and the platform's admission policies, by
    //    server-side apply with our field manager; nothing of beta's.
    let applies: Vec<&Seen> = seen.iter().filter(|s| is_apply(s)).collect();
    assert!(applies.len() > 5, "{applies:?}");
    for a in &applies {
        assert!(a.query.contains("fieldManager=bulkhead"), "{a:?}");
        assert!(!a.query.contains("force"), "{a:?}");
        assert_eq!(
            a.body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "bulkhead",
            "{a:?}"
        );
        assert!(!a.path.contains("/beta"), "another tenant's object: {a:?}");
    }
    let paths: Vec<&str> = applies.iter().map(|a| a.path.as_str()).collect();
    // The platform's admission policies first (a new tenant's Namespace must already
    // be listed by them), then the tenant's stack starting with its Namespace.
    let namespace = paths
        .iter()
        .position(|p| p.contains("/namespaces/alpha"))
        .expect("alpha's objects");
    assert_eq!(paths[namespace], "/api/v1/namespaces/alpha");
    assert!(
        namespace > 0
            && paths[..namespace]
                .iter()
                .all(|p| p.contains("validatingadmissionpolic")),
        "{paths:?}"
    );
    assert_eq!(
        applies[namespace].body["metadata"]["labels"]["bulkhead.dev/tenant"],
        "alpha"
    );
    assert_eq!(
        applies[namespace].body["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert!(paths.contains(&"/api/v1/namespaces/alpha/resourcequotas/bulkhead-quota"));
    let quota = applies
        .iter()
        .find(|a| a.path.ends_with("/resourcequotas/bulkhead-quota"))
        .expect("quota");
    assert_eq!(
        quota.body["spec"]["hard"]["limits.memory"], "1Gi",
        "{quota:?}"
    );
    assert!(paths.contains(
        &"/apis/networking.k8s.io/v1/namespaces/alpha/networkpolicies/bulkhead-default-deny"
    ));
    // The egress rule to beta, on 5432, selecting beta's namespace by its name.
    let egress = applies
        .iter()
        .filter(|a| a.path.contains("/networkpolicies/"))
        .find(|a| a.body.to_string().contains("\"beta\""))
        .expect("a policy naming beta");
    assert!(egress.body.to_string().contains("5432"), "{egress:?}");
    assert!(paths.iter().any(|p| {
        p.starts_with("/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/")
    }));
    let finalizer_at = 0;
    let first_apply = seen.iter().position(is_apply).expect("apply");
    assert!(finalizer_at < first_apply);

    // 3. Pruning lists only alpha's objects.
    let lists: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.method == "GET" && s.query.contains("labelSelector"))
        .collect();
    // Every kind but the shared reconciler ClusterRole, which the controller neither
    // applies, lists nor deletes.
    assert_eq!(
        lists.len(),
        bulkhead_k8s::apply::PRUNABLE.len() - bulkhead_k8s::apply::PLATFORM_ONLY.len()
    );
    // It only reads that ClusterRole (installed, not widened) before applying.
    let role_read = seen
        .iter()
        .position(|s| s.method == "GET" && s.path == RECONCILER_ROLE_PATH)
        .expect("the ClusterRole read");
    assert!(role_read < seen.iter().position(is_apply).expect("apply"));
    assert!(
        seen.iter()
            .filter(|s| s.path.contains("/clusterroles"))
            .all(|s| s.method == "GET" && s.path == RECONCILER_ROLE_PATH),
        "{seen:?}"
    );
    // The reconciler's RoleBinding names the platform ClusterRole; no Role is applied.
    let binding = applies
        .iter()
        .find(|a| a.path == "/apis/rbac.authorization.k8s.io/v1/namespaces/alpha/rolebindings/bulkhead-tenant-reconciler")
        .expect("the reconciler RoleBinding");
    assert_eq!(binding.body["roleRef"]["kind"], "ClusterRole");
    assert_eq!(
        binding.body["roleRef"]["name"],
        "bulkhead-tenant-reconciler"
    );
    assert!(
        applies.iter().all(|a| !a.path.contains("/roles/")),
        "{applies:?}"
    );
    for l in &lists {
        assert_eq!(
            selector_of(&l.query).as_deref(),
            Some("app.kubernetes.io/managed-by=bulkhead,bulkhead.dev/tenant=alpha"),
            "{l:?}"
        );
    }

    // 4. Status through the status subresource, after the applies: Ready, not Degraded.
    let status_at = seen
        .iter()
        .position(|s| s.path == "/apis/bulkhead.dev/v1alpha1/tenants/alpha/status")
        .expect("status written");
    let last_apply = seen.iter().rposition(is_apply).expect("apply");
    assert!(status_at > last_apply);
    let status = &seen[status_at];
    assert_eq!(status.method, "PATCH");
    assert_eq!(status.content_type, "application/merge-patch+json");
    assert_eq!(status.body["status"]["observedGeneration"], 3);
    assert_eq!(status.body["status"]["applied"], applies.len());
    let ready = condition(&status.body, "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "Applied");
    assert_eq!(ready["observedGeneration"], 3);
    assert!(ready["lastTransitionTime"].is_string());
    assert_eq!(condition(&status.body, "Degraded")["status"], "False");

    // 5. A Normal event on the Tenant.
    let event = seen
        .iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/events"))
        .expect("event");
    assert_eq!(
        event.path,
        "/apis/events.k8s.io/v1/namespaces/default/events"
    );
    assert_eq!(event.body["reason"], "Applied");
    assert_eq!(event.body["type"], "Normal");
    assert_eq!(event.body["regarding"]["kind"], "Tenant");
    assert_eq!(event.body["regarding"]["name"], "alpha");
    assert_eq!(event.body["reportingController"], "bulkhead-controller");
}

#[tokio::test]
async fn a_tenant_with_the_finalizer_is_not_patched_again_and_prunes_only_its_own() {
    let mut object = alpha();
    object.metadata.finalizers = Some(vec!["other.example/keep".to_owned(), FINALIZER.to_owned()]);
    let cluster = Cluster {
        owned: vec![
            (
                "networkpolicies",
                owned("NetworkPolicy", Some("alpha"), "bulkhead-stale", "alpha"),
            ),
            (
                "networkpolicies",
                owned("NetworkPolicy", Some("beta"), "bulkhead-stale", "beta"),
            ),
            ("namespaces", owned("Namespace", None, "beta", "beta")),
        ],
        ..Cluster::default()
    };
    let out = run(cluster, object, vec![beta()]).await;
    out.result.expect("reconcile");
    assert!(
        out.seen
            .iter()
            .all(|s| s.content_type != "application/json-patch+json"),
        "the finalizer is there already"
    );
    let deletes: Vec<&str> = out
        .seen
        .iter()
        .filter(|s| s.method == "DELETE")
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        deletes,
        ["/apis/networking.k8s.io/v1/namespaces/alpha/networkpolicies/bulkhead-stale"],
        "alpha's stale policy, never beta's objects"
    );
}

#[tokio::test]
async fn a_deleted_tenant_loses_its_objects_then_the_finalizer() {
    let mut object = alpha();
    object.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    object.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-11-23T10:00:00Z")).expect("time"));
    let cluster = Cluster {
        owned: vec![
            ("namespaces", owned("Namespace", None, "alpha", "alpha")),
            (
                "networkpolicies",
                owned(
                    "NetworkPolicy",
                    Some("alpha"),
                    "bulkhead-default-deny",
                    "alpha",
                ),
            ),
            (
                "validatingadmissionpolicies",
                owned("ValidatingAdmissionPolicy", None, "bulkhead-x", "beta"),
            ),
        ],
        ..Cluster::default()
    };
    let gamma = tenant("gamma", json!({ "quota": { "memory": "1Gi" } }));
    let out = run(cluster, object, vec![beta(), gamma]).await;
    assert_eq!(out.result.expect("cleanup"), Action::await_change());
    let seen = &out.seen;
    // Only the platform's admission policies are applied again, for the tenants that
    // remain valid (gamma; beta named alpha), nothing of a tenant's.
    let applies: Vec<&Seen> = seen.iter().filter(|s| is_apply(s)).collect();
    assert!(!applies.is_empty());
    for a in &applies {
        assert!(
            a.path
                .starts_with("/apis/admissionregistration.k8s.io/v1/validatingadmissionpolic"),
            "{a:?}"
        );
        assert!(
            !a.body.to_string().contains("'alpha'"),
            "alpha is gone: {a:?}"
        );
    }
    assert!(
        applies
            .iter()
            .any(|a| a.body.to_string().contains("'gamma'")),
        "the policies name the remaining tenant"
    );
    let deletes: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.method == "DELETE")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(deletes.len(), 1, "the namespace takes its policy with it");
    assert_eq!(seen[deletes[0]].path, "/api/v1/namespaces/alpha");
    let unfinalize = seen
        .iter()
        .position(|s| s.content_type == "application/json-patch+json")
        .expect("finalizer removed");
    assert!(unfinalize > deletes[0], "objects first, then the finalizer");
    assert_eq!(
        seen[unfinalize].path,
        "/apis/bulkhead.dev/v1alpha1/tenants/alpha"
    );
    assert_eq!(
        seen[unfinalize].body,
        json!([
            { "op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER },
            { "op": "remove", "path": "/metadata/finalizers/0" },
        ])
    );
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_with_the_field_and_changes_nothing() {
    let object = tenant(
        "alpha",
        json!({ "quota": { "memory": "12Gx" }, "profile": "restricted" }),
    );
    let out = run(Cluster::default(), object, vec![]).await;
    assert_eq!(
        out.result.expect("reconcile"),
        Action::requeue(bulkhead_k8s::controller::RESYNC)
    );
    let seen = &out.seen;
    let patches: Vec<&Seen> = seen.iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "the status alone: {patches:?}");
    assert_eq!(
        patches[0].path,
        "/apis/bulkhead.dev/v1alpha1/tenants/alpha/status"
    );
    let degraded = condition(&patches[0].body, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidSpec");
    let message = degraded["message"].as_str().expect("message");
    assert!(
        message.starts_with(
            "Tenant/alpha: spec.quota.memory: \"12Gx\" is not a byte quantity (expected"
        ),
        "{message}"
    );
    assert_eq!(condition(&patches[0].body, "Ready")["status"], "False");
    assert!(
        seen.iter()
            .all(|s| s.method != "DELETE" && !s.query.contains("labelSelector")),
        "no prune either"
    );
    let event = seen.iter().find(|s| s.method == "POST").expect("event");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "InvalidSpec");
}

#[tokio::test]
async fn a_reference_to_an_unknown_tenant_is_invalid() {
    // beta is not in the store: alpha's egress names nobody.
    let out = run(Cluster::default(), alpha(), vec![]).await;
    out.result.expect("reconcile");
    assert!(out.seen.iter().all(|s| !is_apply(s)));
    let status = out
        .seen
        .iter()
        .find(|s| s.path.ends_with("/status"))
        .expect("status");
    let degraded = condition(&status.body, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or_default()
            .contains("beta"),
        "{degraded}"
    );
}

#[tokio::test]
async fn an_invalid_peer_degrades_those_that_refer_to_it_and_no_one_else() {
    // beta is invalid; alpha names it, gamma does not.
    let broken_beta = tenant("beta", json!({ "quota": { "memory": "lots" } }));
    let gamma = tenant("gamma", json!({ "quota": { "memory": "1Gi" } }));
    let store = vec![alpha(), broken_beta, gamma.clone()];

    let out = run(Cluster::default(), alpha(), store.clone()).await;
    out.result.expect("reconcile");
    assert!(
        out.seen
            .iter()
            .all(|s| !is_apply(s) && s.method != "DELETE")
    );
    let status = out
        .seen
        .iter()
        .find(|s| s.path.ends_with("/status"))
        .expect("status");
    let degraded = condition(&status.body, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or_default()
            .contains("beta"),
        "{degraded}"
    );

    let out = run(Cluster::default(), gamma, store).await;
    out.result.expect("reconcile");
    assert!(
        out.seen
            .iter()
            .any(|s| is_apply(s) && s.path == "/api/v1/namespaces/gamma")
    );
    let status = out
        .seen
        .iter()
        .find(|s| s.path.ends_with("/status"))
        .expect("status");
    assert_eq!(condition(&status.body, "Ready")["status"], "True");
}

#[tokio::test]
async fn an_api_error_degrades_and_requeues_with_backoff() {
    let cluster = Cluster {
        apply_status: Some(500),
        ..Cluster::default()
    };
    let object = alpha();
    let out = run(cluster, object.clone(), vec![alpha(), beta()]).await;
    let error = out.result.expect_err("apply refused");
    assert!(matches!(error, ReconcileError::Apply { .. }), "{error}");
    assert!(
        error.to_string().contains("ValidatingAdmissionPolicy"),
        "{error}"
    );
    let seen = &out.seen;
    assert_eq!(
        seen.iter().filter(|s| is_apply(s)).count(),
        1,
        "nothing after the first refusal"
    );
    let status = seen
        .iter()
        .find(|s| s.path.ends_with("/status"))
        .expect("status");
    let degraded = condition(&status.body, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ApplyFailed");
    assert_eq!(condition(&status.body, "Ready")["status"], "False");
    let event = seen.iter().find(|s| s.method == "POST").expect("event");
    assert_eq!(event.body["reason"], "ApplyFailed");
    assert_eq!(event.body["type"], "Warning");

    // The error policy backs off per tenant: 5 s, 10 s, 20 s ... up to 5 min.
    let object = Arc::new(object);
    let first = error_policy(Arc::clone(&object), &error, Arc::clone(&out.ctx));
    let second = error_policy(Arc::clone(&object), &error, Arc::clone(&out.ctx));
    assert_eq!(first, Action::requeue(Duration::from_secs(5)));
    assert_eq!(second, Action::requeue(Duration::from_secs(10)));
    assert_eq!(backoff(3), Duration::from_secs(20));
    assert_eq!(backoff(40), Duration::from_secs(300));
}

/// The controller binds the platform ClusterRole only as rendered: missing, widened
/// (a right on NetworkPolicies added) or aggregating, nothing is applied, the Tenant
/// is Degraded with reason ReconcilerRoleInvalid and a message naming the fix, and the
/// error is retried.
#[tokio::test]
async fn a_missing_or_widened_reconciler_cluster_role_is_not_bound() {
    let mut widened = serde_json::to_value(bulkhead_k8s::rbac::cluster_role()).expect("json");
    widened["rules"][0]["resources"]
        .as_array_mut()
        .expect("resources")
        .push(json!("networkpolicies"));
    let mut aggregating = serde_json::to_value(bulkhead_k8s::rbac::cluster_role()).expect("json");
    aggregating["aggregationRule"] =
        json!({ "clusterRoleSelectors": [{ "matchLabels": { "x": "y" } }] });
    for (role, expected) in [
        (Value::Null, "is missing"),
        (widened, "grants other rules"),
        (aggregating, "aggregationRule"),
    ] {
        let cluster = Cluster {
            reconciler_role: Some(role),
            ..Cluster::default()
        };
        let out = run(cluster, alpha(), vec![alpha(), beta()]).await;
        let error = out.result.expect_err("refused");
        assert!(
            matches!(error, ReconcileError::ReconcilerRole { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(
            message.contains("bulkhead k8s controller --manifests"),
            "{message}"
        );
        let seen = &out.seen;
        assert!(seen.iter().any(|s| s.path == RECONCILER_ROLE_PATH));
        assert_eq!(
            seen.iter().filter(|s| is_apply(s)).count(),
            0,
            "nothing applied: {seen:?}"
        );
        assert!(seen.iter().all(|s| s.method != "DELETE"));
        let status = seen
            .iter()
            .find(|s| s.path.ends_with("/status"))
            .expect("status");
        let degraded = condition(&status.body, "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "ReconcilerRoleInvalid");
        assert!(
            degraded["message"]
                .as_str()
                .is_some_and(|m| m.contains(expected)),
            "{degraded}"
        );
        assert_eq!(condition(&status.body, "Ready")["status"], "False");
    }
}

#[tokio::test]
async fn the_controller_reconciles_what_its_watch_lists() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cluster = Cluster {
        tenants: vec![
            serde_json::to_value(alpha()).expect("json"),
            serde_json::to_value(beta()).expect("json"),
        ],
        ..Cluster::default()
    };
    let server = tokio::spawn(serve(handle, cluster, Arc::clone(&seen)));
    let client = kube::Client::new(service, "default");
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&reports);
    let controller = tokio::spawn(bulkhead_k8s::controller::run(
        client,
        Vec::new(),
        K8sOptions::default(),
        ApplyOptions::default(),
        move |line| sink.lock().expect("lock").push(line),
    ));
    // Wait (bounded) until both Tenants' status was written.
    let status_of = |name: &str| format!("/apis/bulkhead.dev/v1alpha1/tenants/{name}/status");
    let done = |seen: &[Seen]| {
        ["alpha", "beta"]
            .iter()
            .all(|n| seen.iter().any(|s| s.path == status_of(n)))
    };
    for _ in 0..500 {
        if done(&seen.lock().expect("lock")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.abort();
    let _ = controller.await;
    server.abort();
    let seen = seen.lock().expect("lock").clone();
    assert!(done(&seen), "{seen:#?}");
    // Listed and watched, then each Tenant: finalizer, its Namespace, status Ready.
    assert!(
        seen.iter()
            .any(|s| s.path == "/apis/bulkhead.dev/v1alpha1/tenants" && s.query.contains("watch="))
    );
    for name in ["alpha", "beta"] {
        let finalizer = seen
            .iter()
            .position(|s| {
                s.path == format!("/apis/bulkhead.dev/v1alpha1/tenants/{name}")
                    && s.content_type == "application/json-patch+json"
            })
            .expect("finalizer");
        let namespace = seen
            .iter()
            .position(|s| is_apply(s) && s.path == format!("/api/v1/namespaces/{name}"))
            .expect("namespace applied");
        let status = seen
            .iter()
            .position(|s| s.path == status_of(name))
            .expect("status");
        assert!(finalizer < namespace && namespace < status);
        assert_eq!(condition(&seen[status].body, "Ready")["status"], "True");
    }
    let reports = reports.lock().expect("lock").clone();
    assert!(
        reports
            .iter()
            .any(|r| r.contains("reconciled Tenant alpha")),
        "{reports:?}"
    );
}

/// Against a real cluster (when `KUBECONFIG` is set): installs the CRD if it is
/// missing (and removes it again), creates a uniquely named Tenant, reconciles it with
/// server-side dry-run applies (the API server validates and admits every object,
/// stores none: no namespace or admission policy is left on a shared cluster), checks
/// the finalizer and the Ready status written for real, deletes the Tenant and
/// reconciles the cleanup, which releases the finalizer.
#[tokio::test]
async fn live_reconcile_against_kubeconfig() {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!("skipped: KUBECONFIG is not set (live controller test needs a cluster)");
        return;
    }
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

    let client = bulkhead_k8s::apply::connect()
        .await
        .expect("client from KUBECONFIG");
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let crd_name = "tenants.bulkhead.dev";
    let installed_here = crds.get_opt(crd_name).await.expect("read CRDs").is_none();
    if installed_here {
        let crd = bulkhead_k8s::crd::tenant_crd().expect("crd");
        crds.patch(
            crd_name,
            &PatchParams::apply("bulkhead"),
            &Patch::Apply(&crd),
        )
        .await
        .expect("install the CRD");
    }
    // Wait (bounded) for the CRD to be served.
    for _ in 0..60 {
        let established = crds
            .get(crd_name)
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let name = format!("bh-live-{}", std::process::id());
    let tenants = Api::<DynamicObject>::all_with(client.clone(), &tenant_resource());
    let mut object = tenant(&name, json!({ "quota": { "memory": "256Mi" } }));
    object.metadata.uid = None;
    object.metadata.resource_version = None;
    object.metadata.generation = None;
    tenants
        .create(&PostParams::default(), &object)
        .await
        .expect("create the Tenant");
    let ctx = |client: kube::Client| {
        Arc::new(Context::new(
            client,
            Vec::new(),
            Writer::new(tenant_resource()).as_reader(),
            K8sOptions::default(),
            ApplyOptions {
                dry_run: true,
                ..ApplyOptions::default()
            },
        ))
    };
    let current = tenants.get(&name).await.expect("get");
    let result = reconcile(Arc::new(current), ctx(client.clone())).await;
    let after = tenants.get(&name).await.expect("get");
    // Clean up whatever happened above: delete, reconcile the cleanup, and as a last
    // resort drop the finalizer by hand.
    let _ = tenants.delete(&name, &DeleteParams::default()).await;
    if let Ok(current) = tenants.get(&name).await {
        let _ = reconcile(Arc::new(current), ctx(client.clone())).await;
    }
    let gone = tenants.get_opt(&name).await.ok().flatten().is_none();
    if !gone {
        let _ = tenants
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
            )
            .await;
    }
    if installed_here {
        let _ = crds.delete(crd_name, &DeleteParams::default()).await;
    }

    assert_eq!(
        result.expect("live reconcile"),
        Action::requeue(bulkhead_k8s::controller::RESYNC)
    );
    assert_eq!(
        after.metadata.finalizers.clone().unwrap_or_default(),
        [FINALIZER]
    );
    let ready = after.data["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready["status"], "True", "{}", after.data["status"]);
    assert!(
        gone,
        "the cleanup released the finalizer and the Tenant is gone"
    );
}

/// A request as RBAC sees it: `(API group, resource[/subresource], verb)`.
fn rbac_request(s: &Seen) -> (String, String, String) {
    let parts: Vec<&str> = s.path.trim_start_matches('/').split('/').collect();
    // /api/v1/... or /apis/GROUP/VERSION/...
    let (group, rest) = match parts.first() {
        Some(&"api") => (String::new(), &parts[2..]),
        Some(&"apis") => (parts[1].to_owned(), &parts[3..]),
        _ => panic!("unexpected path {}", s.path),
    };
    // namespaces/NS/RESOURCE[/NAME[/SUB]] unless the resource is namespaces itself.
    let rest = if rest.len() >= 3 && rest[0] == "namespaces" {
        &rest[2..]
    } else {
        rest
    };
    let resource = match rest {
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => panic!("no resource in {}", s.path),
    };
    let named = rest.len() >= 2;
    let verb = match s.method.as_str() {
        "GET" if s.query.contains("watch=") => "watch",
        "GET" if named => "get",
        "GET" => "list",
        "PATCH" => "patch",
        "POST" => "create",
        "DELETE" => "delete",
        other => panic!("unexpected method {other}"),
    };
    (group, resource, verb.to_owned())
}

fn allows(
    rules: &[k8s_openapi::api::rbac::v1::PolicyRule],
    request: &(String, String, String),
) -> bool {
    let (group, resource, verb) = request;
    rules.iter().any(|r| {
        r.api_groups.as_ref().is_some_and(|g| g.contains(group))
            && r.resources.as_ref().is_some_and(|x| x.contains(resource))
            && r.verbs.contains(verb)
    })
}

/// The ClusterRole of `bulkhead k8s controller --manifests` against every request the
/// controller makes in the scenarios here (a new Tenant with stale objects of every
/// rendered kind to prune, a deleted Tenant, the watch loop): every request is allowed
/// (with what the API server authorizes besides the request's verb: `create` for an
/// apply, `bind` on the ClusterRole a RoleBinding names), no rule uses `*`, `escalate`
/// or `impersonate`, the one `bind` is on the tenant reconciler ClusterRole by name,
/// no rule touches the tenant's data (Secrets, ConfigMaps, Pods…), and every rule is
/// exercised, except the few the fake cannot provoke, named below with the reason.
#[tokio::test]
async fn the_controller_cluster_role_is_exactly_what_its_requests_need() {
    use bulkhead_k8s::deploy::{cluster_role, controller_rules};
    let mut seen = Vec::new();

    // 1. A new Tenant, with one stale object of each kind labelled as its own.
    let mut stale = vec![("namespaces", owned("Namespace", None, "alpha-old", "alpha"))];
    for (_, kind, plural, namespaced) in bulkhead_k8s::apply::PRUNABLE {
        if kind != "Namespace" {
            let ns = namespaced.then_some("alpha");
            stale.push((plural, owned(kind, ns, "stale", "alpha")));
        }
    }
    let cluster = Cluster {
        owned: stale,
        ..Cluster::default()
    };
    let out = run(cluster, alpha(), vec![alpha(), beta()]).await;
    out.result.expect("reconcile");
    seen.extend(out.seen);

    // 2. A deleted Tenant: cleanup, platform refresh, finalizer removed.
    let mut object = alpha();
    object.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    object.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-11-23T10:00:00Z")).expect("time"));
    let cluster = Cluster {
        owned: vec![("namespaces", owned("Namespace", None, "alpha", "alpha"))],
        ..Cluster::default()
    };
    let out = run(cluster, object, vec![beta()]).await;
    out.result.expect("cleanup");
    seen.extend(out.seen);

    // 3. The watch loop: list and watch Tenants, reconcile them.
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let watched = Arc::new(Mutex::new(Vec::new()));
    let cluster = Cluster {
        tenants: vec![serde_json::to_value(beta()).expect("json")],
        ..Cluster::default()
    };
    let server = tokio::spawn(serve(handle, cluster, Arc::clone(&watched)));
    let controller = tokio::spawn(bulkhead_k8s::controller::run(
        kube::Client::new(service, "default"),
        Vec::new(),
        K8sOptions::default(),
        ApplyOptions::default(),
        |_| {},
    ));
    for _ in 0..500 {
        if watched
            .lock()
            .expect("lock")
            .iter()
            .any(|s: &Seen| s.path.ends_with("/tenants/beta/status"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.abort();
    let _ = controller.await;
    server.abort();
    seen.extend(watched.lock().expect("lock").clone());

    let mut requests: std::collections::BTreeSet<_> = seen.iter().map(rbac_request).collect();
    // What the API server authorizes beyond the verb of the request: a server-side apply
    // that creates its object is also authorized as `create`; a RoleBinding to a
    // ClusterRole needs `bind` on that ClusterRole (by name) when the client does not
    // hold the role's rights, which the controller does not.
    let mut bound = std::collections::BTreeSet::new();
    for s in seen.iter().filter(|s| is_apply(s)) {
        let (group, resource, _) = rbac_request(s);
        if s.body["kind"] == "RoleBinding" {
            assert_eq!(s.body["roleRef"]["kind"], "ClusterRole", "{s:?}");
            let name = s.body["roleRef"]["name"].as_str().expect("roleRef name");
            bound.insert(name.to_owned());
            requests.insert((
                "rbac.authorization.k8s.io".to_owned(),
                "clusterroles".to_owned(),
                "bind".to_owned(),
            ));
        }
        requests.insert((group, resource, "create".to_owned()));
    }
    assert_eq!(
        bound.into_iter().collect::<Vec<_>>(),
        [bulkhead_k8s::rbac::CLUSTER_ROLE],
        "the reconciler RoleBinding binds the platform ClusterRole"
    );
    let role = cluster_role();
    let rules = role.rules.clone().unwrap_or_default();
    let denied: Vec<_> = requests.iter().filter(|r| !allows(&rules, r)).collect();
    assert!(
        denied.is_empty(),
        "requests the ClusterRole does not allow: {denied:?}"
    );
    let bind = rules
        .iter()
        .filter(|r| r.verbs.contains(&"bind".to_owned()))
        .collect::<Vec<_>>();
    assert_eq!(bind.len(), 1, "{rules:?}");
    assert_eq!(bind[0].verbs, ["bind"]);
    assert_eq!(
        bind[0].api_groups.as_deref(),
        Some(&["rbac.authorization.k8s.io".to_owned()][..])
    );
    assert_eq!(
        bind[0].resources.as_deref(),
        Some(&["clusterroles".to_owned()][..])
    );
    assert_eq!(
        bind[0].resource_names.as_deref(),
        Some(&[bulkhead_k8s::rbac::CLUSTER_ROLE.to_owned()][..])
    );
    // Whatever touches clusterroles is a get or a bind of that one ClusterRole.
    assert!(
        seen.iter()
            .filter(|s| s.path.contains("/clusterroles"))
            .all(|s| s.method == "GET" && s.path == RECONCILER_ROLE_PATH),
        "{seen:?}"
    );
    for rule in &rules {
        // Only the get and the bind of that ClusterRole name clusterroles at all, and
        // no other rule has resourceNames.
        let on_roles = rule.resources.iter().flatten().any(|r| r == "clusterroles");
        assert_eq!(rule.resource_names.is_some(), on_roles, "{rule:?}");
        if on_roles {
            assert!(rule.verbs == ["bind"] || rule.verbs == ["get"], "{rule:?}");
            assert_eq!(
                rule.resources.as_deref(),
                Some(&["clusterroles".to_owned()][..])
            );
            assert_eq!(
                rule.resource_names.as_deref(),
                Some(&[bulkhead_k8s::rbac::CLUSTER_ROLE.to_owned()][..])
            );
        }
        for word in rule
            .verbs
            .iter()
            .chain(rule.resources.iter().flatten())
            .chain(rule.api_groups.iter().flatten())
        {
            assert!(
                !["*", "escalate", "impersonate"].contains(&word.as_str()),
                "{rule:?}"
            );
        }
        // None of the tenant's data: the controller cannot read or write Secrets,
        // ConfigMaps, Pods or workloads anywhere.
        for resource in rule.resources.iter().flatten() {
            assert!(
                ![
                    "secrets",
                    "configmaps",
                    "pods",
                    "pods/log",
                    "persistentvolumeclaims",
                    "services",
                    "statefulsets",
                    "replicasets",
                    "jobs",
                    "cronjobs",
                ]
                .contains(&resource.as_str()),
                "{rule:?}"
            );
        }
    }
    // Not provoked by the fake: a repeated event (the recorder patches it), a Namespace
    // not yet Active (the wait reads it), and writes to Flux and Istio kinds (the fake
    // has their APIs not installed: lists answer 404).
    let unprovoked = |group: &str, resource: &str, verb: &str| {
        (group == "events.k8s.io" && verb == "patch")
            || (resource == "namespaces" && verb == "get")
            || ((group.ends_with("toolkit.fluxcd.io") || group == "security.istio.io")
                && verb != "list")
    };
    let mut unused = Vec::new();
    for rule in controller_rules() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let request = (group.clone(), resource.clone(), verb.clone());
                    if !requests.contains(&request) && !unprovoked(group, resource, verb) {
                        unused.push(request);
                    }
                }
            }
        }
    }
    assert!(unused.is_empty(), "rules no request needs: {unused:?}");
    // And the scenarios did reach every rendered kind.
    assert!(requests.len() > 30, "{requests:?}");
}

/// One context across changes, as in the running controller: the validation of the
/// set is shared between reconciles of one state of the store, and a change to another
/// Tenant's spec (a new generation) or labels is seen by the next reconcile, not
/// answered from the previous state. A status write (same generation) changes nothing.
#[tokio::test]
async fn reconciles_share_the_validation_until_a_tenant_changes() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(handle, Cluster::default(), Arc::clone(&seen)));
    let client = kube::Client::new(service, "default");
    let mut writer = Writer::new(tenant_resource());
    for t in [alpha(), beta()] {
        writer.apply_watcher_event(&watcher::Event::Apply(t));
    }
    let ctx = Arc::new(Context::new(
        client,
        Vec::new(),
        writer.as_reader(),
        K8sOptions::default(),
        ApplyOptions {
            poll: Duration::from_millis(1),
            ..ApplyOptions::default()
        },
    ));
    let status_of = |from: usize, name: &str| -> Value {
        let seen = seen.lock().expect("lock");
        seen[from..]
            .iter()
            .rev()
            .find(|s| s.path == format!("/apis/bulkhead.dev/v1alpha1/tenants/{name}/status"))
            .map(|s| s.body.clone())
            .unwrap_or_else(|| panic!("no status for {name}"))
    };
    let mark = || seen.lock().expect("lock").len();

    // 1. Both valid; both reconciled from one state.
    for t in [alpha(), beta()] {
        let name = t.metadata.name.clone().expect("name");
        let from = mark();
        reconcile(Arc::new(t), Arc::clone(&ctx))
            .await
            .expect("reconcile");
        assert_eq!(
            condition(&status_of(from, &name), "Ready")["status"],
            "True"
        );
    }

    // 2. Only beta's status changed (a new resourceVersion, same generation): alpha
    //    still applies.
    let mut beta_status = beta();
    beta_status.metadata.resource_version = Some("8".to_owned());
    beta_status.data["status"] = json!({ "observedGeneration": 3 });
    writer.apply_watcher_event(&watcher::Event::Apply(beta_status));
    let from = mark();
    reconcile(Arc::new(alpha()), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    assert_eq!(
        condition(&status_of(from, "alpha"), "Ready")["status"],
        "True"
    );

    // 3. beta's spec breaks (generation 4): alpha, which names it, is degraded now.
    let mut broken = tenant("beta", json!({ "quota": { "memory": "lots" } }));
    broken.metadata.generation = Some(4);
    writer.apply_watcher_event(&watcher::Event::Apply(broken));
    let from = mark();
    reconcile(Arc::new(alpha()), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    let degraded = condition(&status_of(from, "alpha"), "Degraded").clone();
    assert_eq!(degraded["status"], "True", "{degraded}");
    assert!(
        seen.lock().expect("lock")[from..]
            .iter()
            .all(|s| !is_apply(s)),
        "nothing applied for a degraded Tenant"
    );

    // 4. beta is fixed again (generation 5): alpha applies again.
    let mut fixed = beta();
    fixed.metadata.generation = Some(5);
    writer.apply_watcher_event(&watcher::Event::Apply(fixed));
    let from = mark();
    reconcile(Arc::new(alpha()), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    assert_eq!(
        condition(&status_of(from, "alpha"), "Ready")["status"],
        "True"
    );

    // 5. A Tenant the store does not hold in this version (the watch lags): validated
    //    on its own terms, not from the shared state.
    let changed = tenant("alpha", json!({ "quota": { "memory": "12Gx" } }));
    let from = mark();
    reconcile(Arc::new(changed), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    let degraded = condition(&status_of(from, "alpha"), "Degraded").clone();
    assert_eq!(degraded["status"], "True", "{degraded}");
    server.abort();
}
