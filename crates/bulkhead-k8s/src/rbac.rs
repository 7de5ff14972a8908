//! The tenant's reconciler identity: a ServiceAccount and a RoleBinding in the tenant's
//! namespace, binding it to ONE platform ClusterRole, [`CLUSTER_ROLE`]
//! (`bulkhead-tenant-reconciler`, rendered once with the platform's objects). A
//! RoleBinding grants a ClusterRole's rules inside its own namespace only, so each
//! reconciler holds them in its tenant's namespace and nowhere else. Flux applies the
//! tenant's GitOps source as this account.
//!
//! The Tenant controller creates the RoleBindings; Kubernetes lets it do so because it
//! holds `bind` on exactly that ClusterRole (by `resourceNames`), not because it holds
//! the rights itself, so the controller cannot read a tenant's Secrets. The ClusterRole
//! is installed with the controller's manifests and by `bulkhead k8s apply`; the
//! controller never writes it (that would need every right in it, or `escalate`).
//!
//! The ClusterRole lists resources by name, never `*`: it grants the workload kinds a tenant
//! deploys and nothing that shapes its own isolation — no ResourceQuota, LimitRange,
//! NetworkPolicy, Role, RoleBinding or Namespace, no `endpoints`/`endpointslices`
//! (which could redirect a Service to another tenant's pods), no `ingresses` (a host
//! name claimed on the shared ingress could take another tenant's), no `pods/exec`, and none
//! of the verbs `escalate`, `bind` or `impersonate`.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels;

/// The verbs the reconciler has on every resource it may touch.
pub const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

/// Verbs no tenant Role may carry.
pub const FORBIDDEN_VERBS: [&str; 3] = ["escalate", "bind", "impersonate"];

/// `(API group, resources)` the reconciler manages, in the Role's order.
pub const GRANTS: [(&str, &[&str]); 5] = [
    (
        "",
        &[
            "configmaps",
            "persistentvolumeclaims",
            "pods",
            "secrets",
            "serviceaccounts",
            "services",
        ],
    ),
    ("apps", &["deployments", "replicasets", "statefulsets"]),
    ("batch", &["cronjobs", "jobs"]),
    ("autoscaling", &["horizontalpodautoscalers"]),
    ("policy", &["poddisruptionbudgets"]),
];

/// Read-only access the reconciler needs to report health.
pub const READ_ONLY: [(&str, &[&str]); 2] = [
    ("", &["events", "pods/log"]),
    ("events.k8s.io", &["events"]),
];

fn meta(tenant: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(labels::RECONCILER.to_owned()),
        namespace: Some(labels::namespace(tenant)),
        labels: Some(labels::owned(tenant)),
        ..ObjectMeta::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The reconciler's ServiceAccount; its token is not mounted into pods by default.
pub fn service_account(tenant: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(tenant),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The name of the platform ClusterRole every tenant's reconciler is bound to.
pub const CLUSTER_ROLE: &str = "bulkhead-tenant-reconciler";

/// The API group of RBAC objects.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The rules of a tenant reconciler: [`GRANTS`] with [`VERBS`], [`READ_ONLY`] read.
pub fn reconciler_rules() -> Vec<PolicyRule> {
    let mut rules: Vec<PolicyRule> = GRANTS
        .iter()
        .map(|(group, resources)| PolicyRule {
            api_groups: Some(vec![(*group).to_owned()]),
            resources: Some(strings(resources)),
            verbs: strings(&VERBS),
            ..PolicyRule::default()
        })
        .collect();
    rules.extend(READ_ONLY.iter().map(|(group, resources)| PolicyRule {
        api_groups: Some(vec![(*group).to_owned()]),
        resources: Some(strings(resources)),
        verbs: strings(&["get", "list", "watch"]),
        ..PolicyRule::default()
    }));
    rules
}

/// Whether `verb` on `resource` of `group` is within a tenant reconciler's rights
/// ([`GRANTS`] with [`VERBS`], [`READ_ONLY`] with get, list and watch). Exact names
/// only: `*` is never within.
pub fn within_reconciler_rights(group: &str, resource: &str, verb: &str) -> bool {
    let granted = GRANTS
        .iter()
        .any(|(g, resources)| *g == group && resources.contains(&resource))
        && VERBS.contains(&verb);
    let read = READ_ONLY
        .iter()
        .any(|(g, resources)| *g == group && resources.contains(&resource))
        && ["get", "list", "watch"].contains(&verb);
    granted || read
}

/// The platform ClusterRole holding the reconciler's rules, [`CLUSTER_ROLE`]; owned
/// by bulkhead (`app.kubernetes.io/managed-by`) like the other platform objects, with
/// no tenant label, so pruning one tenant's objects never removes it.
pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(CLUSTER_ROLE.to_owned()),
            labels: Some(labels::platform_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(reconciler_rules()),
        ..ClusterRole::default()
    }
}

/// Binds the platform ClusterRole [`CLUSTER_ROLE`] to the reconciler's ServiceAccount
/// in the tenant's namespace: the rights hold in that namespace only.
pub fn role_binding(tenant: &str) -> RoleBinding {
    let mut metadata = meta(tenant);
    metadata.name = Some(labels::RECONCILER_BINDING.to_owned());
    RoleBinding {
        metadata,
        role_ref: RoleRef {
            api_group: RBAC_GROUP.to_owned(),
            kind: "ClusterRole".to_owned(),
            name: CLUSTER_ROLE.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: labels::RECONCILER.to_owned(),
            namespace: Some(labels::namespace(tenant)),
            ..Subject::default()
        }]),
    }
}
