//! `bulkhead k8s apply`: the rendered objects onto a cluster by **server-side apply**,
//! then **pruning** of what bulkhead applied earlier and the spec no longer has.
//!
//! # Steps
//!
//! 1. **Apply**, in render order (a tenant's Namespace before its contents): one
//!    `PATCH` per object with `Content-Type: application/apply-patch+yaml`,
//!    `fieldManager=bulkhead` (the [`ApplyOptions::field_manager`]) and `force=true`
//!    only when [`ApplyOptions::force`] says so, so a field another manager owns is a
//!    conflict error by default, not silently taken over. The client goes through
//!    kube's dynamic API ([`DynamicObject`]); the resource's plural comes from
//!    [`resource_for`] (a fixed table of what [`crate::render()`] produces, no discovery
//!    call). The Flux lockdown patch is not a cluster object and is skipped.
//! 2. **Wait** where readiness means something: after a Namespace is applied, until its
//!    `status.phase` is `Active` (the API server refuses objects in a namespace that is
//!    still terminating), up to [`ApplyOptions::timeout`].
//! 3. **Prune**: list every kind bulkhead renders ([`PRUNABLE`]) with the label
//!    selector `app.kubernetes.io/managed-by=bulkhead` (plus `bulkhead.dev/tenant=NAME`
//!    when [`ApplyOptions::tenant`] scopes the apply to one tenant, as the controller
//!    does; [`owner_selector`]), subtract what was just applied,
//!    and `DELETE` the rest (background propagation). An apply scoped to one tenant
//!    neither applies nor lists the [`PLATFORM_ONLY`] kinds (the shared tenant
//!    reconciler ClusterRole). An object inside a namespace that
//!    is itself pruned is left to the namespace's deletion. A kind whose API is not
//!    installed (Flux or Istio absent: 404) has nothing to prune.
//!
//! With [`ApplyOptions::dry_run`], patches go with `dryRun=All` (the API server validates
//! and admits them but stores nothing), nothing is waited for, and prunes are reported,
//! not sent.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Serialize;

use crate::labels;
use crate::render::RenderedObject;

/// What the caller decides about an apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyOptions {
    /// The server-side apply field manager.
    pub field_manager: String,
    /// Take over fields another manager owns (`force=true`), instead of failing.
    pub force: bool,
    /// Delete objects bulkhead applied earlier that the spec no longer has.
    pub prune: bool,
    /// Server-side dry run: validate and admit, store nothing; prunes only reported.
    pub dry_run: bool,
    /// How long to wait for a Namespace to become `Active`.
    pub timeout: Duration,
    /// How often to look while waiting.
    pub poll: Duration,
    /// Prune only objects labelled as this tenant's (`bulkhead.dev/tenant`): what the
    /// controller uses, so one Tenant's reconcile never deletes another's objects.
    /// `None` prunes everything bulkhead owns that the render lacks.
    pub tenant: Option<String>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            field_manager: labels::MANAGER.to_owned(),
            force: false,
            prune: true,
            dry_run: false,
            timeout: Duration::from_secs(60),
            poll: Duration::from_millis(500),
            tenant: None,
        }
    }
}

/// One object on the cluster: `apiVersion`, kind, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKey {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace`, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What an apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    /// Objects applied, in order.
    pub applied: Vec<ObjectKey>,
    /// Objects deleted (or, in a dry run, that would be), in order.
    pub pruned: Vec<ObjectKey>,
    /// Whether this was a server-side dry run.
    pub dry_run: bool,
}

/// Why an apply stopped. Objects applied before the error stay applied; running it
/// again converges.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A rendered object is not valid YAML for the dynamic API (a bug).
    #[error("cannot read rendered {object} as an API object: {message}")]
    Object {
        /// The object.
        object: ObjectKey,
        /// What the decoder said.
        message: String,
    },
    /// The API server refused a request.
    #[error("cannot {verb} {object}: {source}")]
    Api {
        /// `apply`, `list`, `get` or `delete`.
        verb: &'static str,
        /// The object, or the kind for a list.
        object: String,
        /// What the client said.
        source: kube::Error,
    },
    /// A Namespace did not become Active in time.
    #[error("namespace {namespace} is not Active after {seconds} s (phase {phase:?})")]
    NotReady {
        /// The namespace.
        namespace: String,
        /// The timeout.
        seconds: u64,
        /// Its last phase.
        phase: Option<String>,
    },
}

/// The kinds bulkhead renders, as `(apiVersion, kind, plural, namespaced)`: what
/// [`resource_for`] knows and what pruning lists.
pub const PRUNABLE: [(&str, &str, &str, bool); 15] = [
    ("v1", "Namespace", "namespaces", false),
    ("v1", "ResourceQuota", "resourcequotas", true),
    ("v1", "LimitRange", "limitranges", true),
    ("v1", "ServiceAccount", "serviceaccounts", true),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    // Rendered no more (the reconciler is bound to a platform ClusterRole); listed so
    // an apply prunes the Roles earlier versions created in tenant namespaces.
    ("rbac.authorization.k8s.io/v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    ("apps/v1", "Deployment", "deployments", true),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        false,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        false,
    ),
    (
        crate::flux::SOURCE_API_VERSION,
        "GitRepository",
        "gitrepositories",
        true,
    ),
    (
        crate::flux::KUSTOMIZE_API_VERSION,
        "Kustomization",
        "kustomizations",
        true,
    ),
    (
        crate::mesh::SECURITY_API_VERSION,
        "PeerAuthentication",
        "peerauthentications",
        true,
    ),
    (
        crate::mesh::SECURITY_API_VERSION,
        "AuthorizationPolicy",
        "authorizationpolicies",
        true,
    ),
];

/// Platform kinds an apply scoped to one tenant ([`ApplyOptions::tenant`], what the
/// controller runs) neither applies nor prunes: the tenant reconciler ClusterRole
/// ([`crate::rbac::cluster_role`]). Writing it needs every right it grants (or
/// `escalate`), which the controller does not hold; it is installed with the
/// controller's manifests and by an unscoped `bulkhead k8s apply`, and never carries a
/// tenant label, so no tenant's cleanup removes it.
pub const PLATFORM_ONLY: [&str; 1] = ["ClusterRole"];

/// The API resource of a rendered kind, and whether it is namespaced; `None` for what
/// is not a cluster object (the Flux lockdown kustomization).
pub fn resource_for(api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    let (_, _, plural, namespaced) = PRUNABLE
        .iter()
        .find(|(v, k, _, _)| *v == api_version && *k == kind)?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some((ApiResource::from_gvk_with_plural(&gvk, plural), *namespaced))
}

fn api(
    client: &kube::Client,
    resource: &ApiResource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

fn key_of(object: &RenderedObject) -> ObjectKey {
    ObjectKey {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
    }
}

/// Applies `objects` (from [`crate::render()`]) and prunes what bulkhead owns beyond them.
pub async fn apply(
    client: &kube::Client,
    objects: &[RenderedObject],
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport {
        dry_run: options.dry_run,
        ..ApplyReport::default()
    };
    let mut params = PatchParams::apply(&options.field_manager);
    if options.force {
        params = params.force();
    }
    if options.dry_run {
        params = params.dry_run();
    }
    let mut desired = BTreeSet::new();
    // The platform's objects first: a new tenant's Namespace carries a tenant label
    // that the admission policy on tenant namespaces must already list, and its
    // RoleBinding names the reconciler ClusterRole.
    let ordered = objects
        .iter()
        .filter(|o| o.tenant.is_none())
        .chain(objects.iter().filter(|o| o.tenant.is_some()));
    for object in ordered {
        if options.tenant.is_some() && PLATFORM_ONLY.contains(&object.kind.as_str()) {
            continue;
        }
        let Some((resource, namespaced)) = resource_for(&object.api_version, &object.kind) else {
            continue;
        };
        let key = key_of(object);
        let body: DynamicObject =
            serde_saphyr::from_str(&object.yaml).map_err(|e| ApplyError::Object {
                object: key.clone(),
                message: e.to_string(),
            })?;
        let namespace = if namespaced {
            object.namespace.as_deref()
        } else {
            None
        };
        let applied = api(client, &resource, namespace)
            .patch(&object.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|source| ApplyError::Api {
                verb: "apply",
                object: key.to_string(),
                source,
            })?;
        if object.kind == "Namespace" && !options.dry_run {
            wait_active(client, &resource, &object.name, applied, options).await?;
        }
        desired.insert(key.clone());
        report.applied.push(key);
    }
    if options.prune {
        let tenant = options.tenant.as_deref();
        let selector = owner_selector(tenant);
        report.pruned = prune(
            client,
            &desired,
            &selector,
            tenant.is_some(),
            options.dry_run,
        )
        .await?;
    }
    Ok(report)
}

/// The label selector of what bulkhead owns: everything, or one tenant's objects.
pub fn owner_selector(tenant: Option<&str>) -> String {
    match tenant {
        Some(tenant) => format!(
            "{}={},{}={tenant}",
            labels::MANAGED_BY,
            labels::MANAGER,
            labels::TENANT
        ),
        None => format!("{}={}", labels::MANAGED_BY, labels::MANAGER),
    }
}

/// Deletes every object bulkhead applied for `tenant` (owner and tenant labels), as
/// pruning does: objects inside the tenant's Namespace go with it. What the Tenant
/// controller runs before it releases a deleted Tenant's finalizer.
pub async fn delete_tenant(
    client: &kube::Client,
    tenant: &str,
) -> Result<Vec<ObjectKey>, ApplyError> {
    prune(
        client,
        &BTreeSet::new(),
        &owner_selector(Some(tenant)),
        true,
        false,
    )
    .await
}

fn phase(object: &DynamicObject) -> Option<String> {
    object
        .data
        .pointer("/status/phase")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

async fn wait_active(
    client: &kube::Client,
    resource: &ApiResource,
    name: &str,
    applied: DynamicObject,
    options: &ApplyOptions,
) -> Result<(), ApplyError> {
    let mut last = phase(&applied);
    let started = tokio::time::Instant::now();
    while last.as_deref() != Some("Active") {
        if started.elapsed() >= options.timeout {
            return Err(ApplyError::NotReady {
                namespace: name.to_owned(),
                seconds: options.timeout.as_secs(),
                phase: last,
            });
        }
        tokio::time::sleep(options.poll).await;
        let current = api(client, resource, None)
            .get(name)
            .await
            .map_err(|source| ApplyError::Api {
                verb: "get",
                object: format!("Namespace {name}"),
                source,
            })?;
        last = phase(&current);
    }
    Ok(())
}

/// Deletes what `selector` finds that `desired` lacks; `scoped` (one tenant's objects)
/// leaves the [`PLATFORM_ONLY`] kinds alone.
async fn prune(
    client: &kube::Client,
    desired: &BTreeSet<ObjectKey>,
    selector: &str,
    scoped: bool,
    dry_run: bool,
) -> Result<Vec<ObjectKey>, ApplyError> {
    let mut stale = Vec::new();
    for (api_version, kind, _, _) in PRUNABLE {
        if scoped && PLATFORM_ONLY.contains(&kind) {
            continue;
        }
        let Some((resource, _)) = resource_for(api_version, kind) else {
            continue;
        };
        let list = match api(client, &resource, None)
            .list(&ListParams::default().labels(selector))
            .await
        {
            Ok(list) => list,
            // The kind's API is not installed: nothing of it to prune.
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(source) => {
                return Err(ApplyError::Api {
                    verb: "list",
                    object: kind.to_owned(),
                    source,
                });
            }
        };
        for item in list.items {
            let key = ObjectKey {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                namespace: item.metadata.namespace.clone(),
                name: item.metadata.name.clone().unwrap_or_default(),
            };
            if !desired.contains(&key) {
                stale.push(key);
            }
        }
    }
    let doomed_namespaces: BTreeSet<String> = stale
        .iter()
        .filter(|k| k.kind == "Namespace")
        .map(|k| k.name.clone())
        .collect();
    stale.retain(|k| {
        k.namespace
            .as_ref()
            .is_none_or(|ns| !doomed_namespaces.contains(ns))
    });
    if dry_run {
        return Ok(stale);
    }
    let params = DeleteParams::background();
    for key in &stale {
        let Some((resource, namespaced)) = resource_for(&key.api_version, &key.kind) else {
            continue;
        };
        let namespace = if namespaced {
            key.namespace.as_deref()
        } else {
            None
        };
        match api(client, &resource, namespace)
            .delete(&key.name, &params)
            .await
        {
            Ok(_) => {}
            // Already gone: what pruning wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(ApplyError::Api {
                    verb: "delete",
                    object: key.to_string(),
                    source,
                });
            }
        }
    }
    Ok(stale)
}

/// A client from the environment: `KUBECONFIG` (or `~/.kube/config`), else the
/// in-cluster service account.
pub async fn connect() -> Result<kube::Client, kube::Error> {
    kube::Client::try_default().await
}
