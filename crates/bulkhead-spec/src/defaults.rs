//! Every default of the model, in one place. A field the user left out gets its value
//! here and nowhere else, and `bulkhead get -o yaml` shows the result.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::model::{KeySource, Resources, RestartPolicy};
use crate::quantity::Bytes;

/// Instance prefix when the platform file names none.
pub const INSTANCE: &str = "bh";
/// Tenant address range when the platform file names none.
pub fn tenant_range() -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(
        std::net::Ipv4Addr::new(10, 240, 0, 0),
        16,
    ))
}
/// Master key location when the platform file names none.
pub fn key_source() -> KeySource {
    KeySource::File {
        file: "/etc/bulkhead/master.key".to_owned(),
    }
}
/// DNS resolver when the platform file names none: none (the bridge address is used).
pub const DNS: Option<IpAddr> = None;

/// Connections each tenant may have tracked at once (the host's conntrack table
/// is shared; `nf_conntrack_max` is often 262,144): what a platform that names no
/// `network.connectionsPerTenant` gets.
pub const CONNECTIONS_PER_TENANT: u32 = 16_384;

/// Noisy-neighbour handling when the platform file says nothing: events only.
pub const NOISY_NEIGHBOURS: crate::model::NoisyNeighbours = crate::model::NoisyNeighbours {
    tighten: false,
    sample_seconds: 5,
    window_seconds: 30,
    cool_down_seconds: 300,
    tighten_cpu_weight: 10,
    cpu_busy_millicores: 1000,
    cpu_throttled_percent: 50,
    memory_percent: 90,
    io_mib_per_second: 100,
};

/// Tenant CPU weight (cgroup v2 scale; v1 shares are derived from it).
pub const CPU_WEIGHT: u32 = 100;
/// Tenant memory ceiling.
pub const TENANT_MEMORY: Bytes = Bytes::new(1 << 30);
/// Tenant process ceiling.
pub const TENANT_PIDS: u32 = 512;
/// Tenant volume size.
pub const TENANT_STORAGE: Bytes = Bytes::new(1 << 30);
/// Most workloads per tenant.
pub const TENANT_WORKLOADS: u32 = 16;
/// Volumes are encrypted unless the tenant says otherwise.
pub const ENCRYPTED: bool = true;

/// Per-workload resources when neither the workload nor its tenant's `defaults` say.
pub const WORKLOAD_RESOURCES: Resources = Resources {
    cpu: None,
    memory: Bytes::new(256 << 20),
    pids: 64,
};
/// Restart policy when neither the workload nor its tenant's `defaults` say.
pub const RESTART: RestartPolicy = RestartPolicy::OnFailure;

/// Fills a workload's resources: its own values, else the tenant's defaults.
pub fn workload_resources(
    given: &crate::decode::PartialResources,
    tenant_defaults: &Resources,
) -> Resources {
    Resources {
        cpu: given.cpu.or(tenant_defaults.cpu),
        memory: given.memory.unwrap_or(tenant_defaults.memory),
        pids: given.pids.unwrap_or(tenant_defaults.pids),
    }
}

/// Namespace of the cluster DNS resolver when the platform names none.
pub const DNS_NAMESPACE: &str = "kube-system";
/// Pod labels of the cluster DNS resolver when the platform names none (kubeadm, kind,
/// most managed distributions).
pub const DNS_POD_LABELS: [(&str, &str); 1] = [("k8s-app", "kube-dns")];
/// Pod Security Admission version when the platform names none.
pub const POD_SECURITY_VERSION: &str = "latest";
/// Git reference of a GitOps source that names none.
pub const GITOPS_REF: &str = "main";
/// Path of a GitOps source that names none.
pub const GITOPS_PATH: &str = "./";
/// Reconcile interval of a GitOps source that names none.
pub const GITOPS_INTERVAL: &str = "5m";
