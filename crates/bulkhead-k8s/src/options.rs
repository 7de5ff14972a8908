//! What the caller decides about a render that the spec does not say.

/// Options of [`crate::render()`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct K8sOptions {
    /// Image of a workload that names none.
    pub default_image: String,
    /// User and group id pods run as (non-root).
    pub run_as_user: i64,
    /// `services` per tenant (a ResourceQuota count).
    pub services: u32,
    /// `secrets` per tenant.
    pub secrets: u32,
    /// `configmaps` per tenant.
    pub configmaps: u32,
    /// `persistentvolumeclaims` per tenant; 0 by default, since the tenant's volume is
    /// not rendered on Kubernetes yet.
    pub persistent_volume_claims: u32,
    /// Namespace of the Flux controllers.
    pub flux_namespace: String,
    /// The mesh's trust domain: the first part of the principals mesh
    /// AuthorizationPolicies name (`<trust domain>/ns/<namespace>/sa/<account>`).
    pub mesh_trust_domain: String,
}

impl Default for K8sOptions {
    fn default() -> Self {
        Self {
            default_image: "docker.io/library/python:3.13-slim".to_owned(),
            run_as_user: 65532,
            services: 8,
            secrets: 16,
            configmaps: 16,
            persistent_volume_claims: 0,
            flux_namespace: "flux-system".to_owned(),
            mesh_trust_domain: "cluster.local".to_owned(),
        }
    }
}
