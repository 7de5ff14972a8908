//! The tenant's ResourceQuota (hard ceilings for the namespace) and LimitRange
//! (per-container defaults, and the tenant quota as each container's maximum).
//!
//! | bulkhead | ResourceQuota `hard` |
//! |---|---|
//! | `quota.cpu` (if set) | `requests.cpu`, `limits.cpu` |
//! | `quota.memory` | `requests.memory`, `limits.memory` |
//! | `quota.storage` | `requests.ephemeral-storage`, `limits.ephemeral-storage` |
//! | `quota.workloads` | `pods` — factor 1: Deployments use the `Recreate` strategy, so a workload never has a second pod (the host backend restarts in place too, and a rolling update's surge pod would not fit under the same memory ceiling anyway) |
//! | [`K8sOptions`] | `services`, `secrets`, `configmaps`, `persistentvolumeclaims` |
//! | (always) | `services.nodeports: 0`, `services.loadbalancers: 0`, `replicationcontrollers: 0`, `resourcequotas: 1` (this one) |
//!
//! `quota.pids`, `cpuWeight`, `io`, `egress`/`ingress` bandwidth and `cpuset` have no
//! namespace-level Kubernetes equivalent and are not rendered.
//!
//! LimitRange, type `Container`: `default` and `defaultRequest` from `defaults.resources`
//! (cpu only if set there, else the tenant's cpu quota split evenly over
//! `quota.workloads`, when the quota caps cpu — a quota on `limits.cpu` rejects containers
//! that declare none); ephemeral storage defaults to `quota.storage` split evenly over
//! `quota.workloads`, for the same reason; `max` is the tenant quota.

use std::collections::BTreeMap;

use bulkhead_spec::{Bytes, Cpu, Tenant};
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels;
use crate::options::K8sOptions;

fn meta(tenant: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(labels::namespace(tenant)),
        labels: Some(labels::owned(tenant)),
        ..ObjectMeta::default()
    }
}

fn q(text: impl ToString) -> Quantity {
    Quantity(text.to_string())
}

/// The quota keys every tenant's ResourceQuota carries, whatever its spec says (the audit
/// checks for them).
pub const REQUIRED_KEYS: [&str; 13] = [
    "requests.memory",
    "limits.memory",
    "requests.ephemeral-storage",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "services.nodeports",
    "services.loadbalancers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

/// The tenant's ResourceQuota.
pub fn resource_quota(tenant: &Tenant, options: &K8sOptions) -> ResourceQuota {
    let name = tenant.metadata.name.as_str();
    let quota = &tenant.spec.quota;
    let mut hard = BTreeMap::new();
    if let Some(cpu) = quota.cpu {
        hard.insert("requests.cpu".to_owned(), q(cpu));
        hard.insert("limits.cpu".to_owned(), q(cpu));
    }
    hard.insert("requests.memory".to_owned(), q(quota.memory));
    hard.insert("limits.memory".to_owned(), q(quota.memory));
    hard.insert("requests.ephemeral-storage".to_owned(), q(quota.storage));
    hard.insert("limits.ephemeral-storage".to_owned(), q(quota.storage));
    hard.insert("pods".to_owned(), q(quota.workloads));
    hard.insert("services".to_owned(), q(options.services));
    hard.insert("services.nodeports".to_owned(), q(0));
    hard.insert("services.loadbalancers".to_owned(), q(0));
    hard.insert("secrets".to_owned(), q(options.secrets));
    hard.insert("configmaps".to_owned(), q(options.configmaps));
    hard.insert(
        "persistentvolumeclaims".to_owned(),
        q(options.persistent_volume_claims),
    );
    hard.insert("replicationcontrollers".to_owned(), q(0));
    hard.insert("resourcequotas".to_owned(), q(1));
    ResourceQuota {
        metadata: meta(name, labels::QUOTA),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// Ephemeral storage each container gets by default: the tenant's storage split evenly,
/// rounded down to whole MiB (at least 1Mi).
pub fn ephemeral_share(tenant: &Tenant) -> Bytes {
    let quota = &tenant.spec.quota;
    let share = quota.storage.get() / u64::from(quota.workloads.max(1));
    Bytes::new((share >> 20).max(1) << 20)
}

/// CPU each container gets by default when `defaults` names none but the quota caps cpu.
fn cpu_share(tenant: &Tenant) -> Option<Cpu> {
    let quota = &tenant.spec.quota;
    tenant.spec.defaults.resources.cpu.or_else(|| {
        quota.cpu.map(|cap| {
            let share = cap.millis() / u64::from(quota.workloads.max(1));
            Cpu::from_millis(share.max(1))
        })
    })
}

/// The tenant's LimitRange.
pub fn limit_range(tenant: &Tenant) -> LimitRange {
    let name = tenant.metadata.name.as_str();
    let quota = &tenant.spec.quota;
    let defaults = &tenant.spec.defaults.resources;
    let mut default = BTreeMap::new();
    default.insert("memory".to_owned(), q(defaults.memory));
    default.insert("ephemeral-storage".to_owned(), q(ephemeral_share(tenant)));
    if let Some(cpu) = cpu_share(tenant) {
        default.insert("cpu".to_owned(), q(cpu));
    }
    let mut max = BTreeMap::new();
    max.insert("memory".to_owned(), q(quota.memory));
    max.insert("ephemeral-storage".to_owned(), q(quota.storage));
    if let Some(cpu) = quota.cpu {
        max.insert("cpu".to_owned(), q(cpu));
    }
    LimitRange {
        metadata: meta(name, labels::LIMIT_RANGE),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default_request: Some(default.clone()),
                default: Some(default),
                max: Some(max),
                ..LimitRangeItem::default()
            }],
        }),
    }
}
