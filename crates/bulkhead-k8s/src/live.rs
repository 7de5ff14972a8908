//! Reading a live cluster for [`crate::audit`] and [`crate::reach`]: the objects the
//! checks read, listed through kube and turned into the same [`Manifest`]s that
//! `-f DIR` reads from files, so a cluster and a dump of it give the same findings.
//!
//! [`LIVE_KINDS`] is what is listed (every namespace, [`PAGE`] objects a request):
//! Namespaces, Pods and the workload kinds, Services, ServiceAccounts, Roles,
//! ClusterRoles, RoleBindings, ClusterRoleBindings, NetworkPolicies, ResourceQuotas,
//! LimitRanges, ValidatingAdmissionPolicies and their bindings, and the Flux sources,
//! Kustomizations and HelmReleases. A kind whose API is not installed (the Flux CRDs, answered with
//! 404) is skipped; any other refusal (403: the account may not list it) is an error,
//! since an audit that silently skips what it cannot read would report a hole as clean.
//!
//! List items come back without `apiVersion` and `kind`; they are set from the kind
//! listed, and `metadata.managedFields` is dropped. Objects whose controller owner was
//! listed too (a ReplicaSet of a Deployment, a Pod of a ReplicaSet, a Job of a CronJob,
//! matched by the owner's uid) are left out: the owner carries the same pod template,
//! and both audit and reach count a workload once. An owner reference to an object
//! that is not there (a Pod claiming a made-up ReplicaSet) hides nothing: that Pod is
//! audited itself.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use crate::audit::Manifest;

/// The kinds read from a cluster: `(apiVersion, kind, plural, optional)`; an optional
/// kind's missing API (404) is not an error.
pub const LIVE_KINDS: [(&str, &str, &str, bool); 26] = [
    ("v1", "Namespace", "namespaces", false),
    ("v1", "Pod", "pods", false),
    (
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        false,
    ),
    ("apps/v1", "Deployment", "deployments", false),
    ("apps/v1", "StatefulSet", "statefulsets", false),
    ("apps/v1", "DaemonSet", "daemonsets", false),
    ("apps/v1", "ReplicaSet", "replicasets", false),
    ("batch/v1", "Job", "jobs", false),
    ("batch/v1", "CronJob", "cronjobs", false),
    ("v1", "Service", "services", false),
    ("v1", "ServiceAccount", "serviceaccounts", false),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", false),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        false,
    ),
    ("v1", "ResourceQuota", "resourcequotas", false),
    ("v1", "LimitRange", "limitranges", false),
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
        crate::flux::SOURCE_API_VERSION,
        "OCIRepository",
        "ocirepositories",
        true,
    ),
    (
        crate::flux::SOURCE_API_VERSION,
        "HelmRepository",
        "helmrepositories",
        true,
    ),
    (crate::flux::SOURCE_API_VERSION, "Bucket", "buckets", true),
    (
        crate::flux::KUSTOMIZE_API_VERSION,
        "Kustomization",
        "kustomizations",
        true,
    ),
    (
        "helm.toolkit.fluxcd.io/v2",
        "HelmRelease",
        "helmreleases",
        true,
    ),
];

/// Objects per list request; longer lists are read page by page.
pub const PAGE: u32 = 500;

/// Kinds whose owned children are left out (the owner holds the pod template).
const OWNER_KINDS: [&str; 6] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "CronJob",
    "ReplicationController",
];

/// Why a cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// No client could be built for the context.
    #[error("cannot reach the cluster{}: {message}", context.as_deref().map(|c| format!(" of context {c}")).unwrap_or_default())]
    Connect {
        /// The kubeconfig context asked for.
        context: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// A list was refused.
    #[error(
        "cannot list {plural} ({api_version}): {source} (the audit needs to read every kind it checks)"
    )]
    List {
        /// The kind's `apiVersion`.
        api_version: String,
        /// The resource.
        plural: String,
        /// What the client said.
        source: Box<kube::Error>,
    },
}

/// A client for a kubeconfig context (`None`: the current context, else in-cluster).
pub async fn connect(context: Option<&str>) -> Result<kube::Client, LiveError> {
    let error = |message: String| LiveError::Connect {
        context: context.map(str::to_owned),
        message,
    };
    let Some(context) = context else {
        return kube::Client::try_default()
            .await
            .map_err(|e| error(e.to_string()));
    };
    let kubeconfig = Kubeconfig::read().map_err(|e| error(e.to_string()))?;
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| error(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| error(e.to_string()))
}

/// Whether `value`'s controller is one of `owners` (uids of listed workload objects).
fn owned_by_listed_controller(value: &Value, owners: &BTreeSet<String>) -> bool {
    value
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|o| {
            o.get("controller").and_then(Value::as_bool) == Some(true)
                && o.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| OWNER_KINDS.contains(&k))
                && o.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|uid| owners.contains(uid))
        })
}

/// Lists [`LIVE_KINDS`] and returns them as manifests, each with `file` set to
/// `source` (shown in findings: e.g. `cluster` or the context's name).
pub async fn load(client: &kube::Client, source: &str) -> Result<Vec<Manifest>, LiveError> {
    let mut out = Vec::new();
    let mut owners = BTreeSet::new();
    for (api_version, kind, plural, optional) in LIVE_KINDS {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(PAGE);
            if let Some(token) = &token {
                params = params.continue_token(token);
            }
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(kube::Error::Api(status)) if optional && status.code == 404 => break,
                Err(source) => {
                    return Err(LiveError::List {
                        api_version: api_version.to_owned(),
                        plural: plural.to_owned(),
                        source: Box::new(source),
                    });
                }
            };
            items.extend(page.items);
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        for mut item in items {
            item.metadata.managed_fields = None;
            let mut value = match serde_json::to_value(&item) {
                Ok(value) => value,
                Err(_) => continue,
            };
            if OWNER_KINDS.contains(&kind)
                && let Some(uid) = item.metadata.uid.clone()
            {
                owners.insert(uid);
            }
            if let Some(object) = value.as_object_mut() {
                object.insert("apiVersion".to_owned(), Value::from(api_version));
                object.insert("kind".to_owned(), Value::from(kind));
            }
            out.push(Manifest {
                file: source.to_owned(),
                value,
            });
        }
    }
    out.retain(|m| !owned_by_listed_controller(&m.value, &owners));
    Ok(out)
}
