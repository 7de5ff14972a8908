//! The tenant's Namespace: Pod Security Admission labels set to the tenant's profile in
//! every mode, the tenant label and the owner label.

use bulkhead_spec::{PlatformKubernetes, Tenant};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels;

/// The tenant's Namespace. The tenant's own labels come first so that ours win; render
/// refuses reserved keys in them anyway.
pub fn namespace(tenant: &Tenant, platform: &PlatformKubernetes) -> Namespace {
    let name = tenant.metadata.name.as_str();
    let mut all = tenant.metadata.labels.clone();
    all.extend(labels::owned(name));
    for mode in labels::POD_SECURITY_MODES {
        all.insert(
            format!("{}{mode}", labels::POD_SECURITY),
            tenant.spec.profile.as_str().to_owned(),
        );
        all.insert(
            format!("{}{mode}-version", labels::POD_SECURITY),
            platform.pod_security_version.clone(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(labels::namespace(name)),
            labels: Some(all),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}
