//! Label keys and object names bulkhead owns on a cluster; each name derives from the
//! tenant or workload in exactly one function, so pruning, audit and tests never guess.

use std::collections::BTreeMap;

/// Names the tenant a namespace or object belongs to.
pub const TENANT: &str = "bulkhead.dev/tenant";
/// Names the workload a Deployment and its pods belong to.
pub const WORKLOAD: &str = "bulkhead.dev/workload";
/// The owner label, for pruning what bulkhead rendered and nothing else.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGER: &str = "bulkhead";
/// Kubernetes' own immutable namespace-name label; the only one our selectors use.
pub const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";
/// Prefix of the Pod Security Admission labels.
pub const POD_SECURITY: &str = "pod-security.kubernetes.io/";
/// The Pod Security Admission modes, each set to the tenant's profile.
pub const POD_SECURITY_MODES: [&str; 3] = ["enforce", "audit", "warn"];

/// Label-key prefixes a tenant's or workload's own labels may not use: they would
/// override what bulkhead pins.
pub const RESERVED_PREFIXES: [&str; 4] = [
    "bulkhead.dev/",
    "pod-security.kubernetes.io/",
    "kubernetes.io/",
    "app.kubernetes.io/managed-by",
];

/// Whether a label key is one bulkhead pins.
pub fn is_reserved(key: &str) -> bool {
    RESERVED_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// The labels every object rendered for `tenant` carries.
pub fn owned(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (TENANT.to_owned(), tenant.to_owned()),
    ])
}

/// The labels of platform-level objects.
pub fn platform_owned() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY.to_owned(), MANAGER.to_owned())])
}

/// The tenant's namespace: the tenant's name.
pub fn namespace(tenant: &str) -> String {
    tenant.to_owned()
}

/// The tenant's ResourceQuota.
pub const QUOTA: &str = "bulkhead-quota";
/// The tenant's LimitRange.
pub const LIMIT_RANGE: &str = "bulkhead-limits";
/// The tenant's reconciler ServiceAccount.
pub const RECONCILER: &str = "bulkhead-reconciler";
/// The RoleBinding of the tenant's reconciler to the platform ClusterRole. Not
/// [`RECONCILER`]: a RoleBinding's `roleRef` cannot change, and earlier versions bound a
/// per-tenant Role under that name, so an apply prunes that binding and creates this
/// one instead of failing on the changed `roleRef`.
pub const RECONCILER_BINDING: &str = "bulkhead-tenant-reconciler";

/// The service account a rendered workload's pods run as (its token is not mounted):
/// the identity mesh AuthorizationPolicies name.
pub const WORKLOAD_SERVICE_ACCOUNT: &str = "default";

/// The tenant's Flux GitRepository and Kustomization.
pub fn flux_source(tenant: &str) -> String {
    format!("{tenant}-gitops")
}

/// A workload's Deployment (and container).
pub fn deployment(workload: &str) -> String {
    workload.to_owned()
}
