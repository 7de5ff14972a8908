//! The tenant's reconciler identity: a ServiceAccount, a namespace-scoped Role and its
//! RoleBinding. Flux applies the tenant's GitOps source as this account.
//!
//! The Role lists resources by name, never `*`: it grants the workload kinds a tenant
//! deploys and nothing that shapes its own isolation — no ResourceQuota, LimitRange,
//! NetworkPolicy, Role, RoleBinding or Namespace, no `endpoints`/`endpointslices`
//! (which could redirect a Service to another tenant's pods), no `ingresses` (a host
//! name claimed on the shared ingress could take another tenant's), no `pods/exec`, and none
//! of the verbs `escalate`, `bind` or `impersonate`.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
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

/// The reconciler's Role.
pub fn role(tenant: &str) -> Role {
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
    Role {
        metadata: meta(tenant),
        rules: Some(rules),
    }
}

/// Binds the Role to the ServiceAccount, both in the tenant's namespace.
pub fn role_binding(tenant: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(tenant),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: labels::RECONCILER.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: labels::RECONCILER.to_owned(),
            namespace: Some(labels::namespace(tenant)),
            ..Subject::default()
        }]),
    }
}
