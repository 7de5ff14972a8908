//! The validated model: what enforcement accepts. Values here were parsed and checked
//! once (see `decode` and `validate`); defaults are already applied (see `defaults`).
//!
//! The serde `Serialize` form of each type is the canonical YAML/JSON of the object, as
//! `bulkhead get -o yaml` prints it and revisions store it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Serialize;

use crate::net::{CidrBlock, PortSpec, Protocol, serialize_display};
use crate::quantity::{Bandwidth, Bytes, Cpu};

/// The API version every object carries.
pub const API_VERSION: &str = "bulkhead.dev/v1alpha1";

/// A validated DNS-1123 label: the name of a tenant, a workload or a platform.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Name(
    #[schemars(regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))] String,
);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn new_unchecked(text: String) -> Name {
        Name(text)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Labels, as in Kubernetes.
pub type Labels = BTreeMap<String, String>;

/// The security profile, in the Pod Security Standards vocabulary.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Everything dropped and denied; the default.
    #[default]
    Restricted,
    /// Known privilege escalations blocked; some compatibility kept.
    Baseline,
    /// Unrestricted inside the tenant's namespaces; never the default.
    Privileged,
}

impl Profile {
    /// All profiles, most restrictive first.
    pub const ALL: [Profile; 3] = [Profile::Restricted, Profile::Baseline, Profile::Privileged];

    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Restricted => "restricted",
            Profile::Baseline => "baseline",
            Profile::Privileged => "privileged",
        }
    }
}

/// Whether a tenant runs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TenantState {
    /// Running; the default.
    #[default]
    Active,
    /// Frozen: processes stopped, network cut.
    Suspended,
}

/// Object metadata for tenants and platforms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The object's name.
    pub name: Name,
    /// Labels, matched by selectors.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Free-form notes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Workload metadata: names the owning tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadMetadata {
    /// The workload's name, unique within its tenant.
    pub name: Name,
    /// The tenant it belongs to.
    pub tenant: Name,
    /// Labels, matched by workload selectors.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Free-form notes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A tenant: owned by the platform team.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Always `bulkhead.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Tenant`.
    pub kind: String,
    /// Name and labels.
    pub metadata: Metadata,
    /// What the tenant may use and reach.
    pub spec: TenantSpec,
}

/// The body of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// People or groups responsible for the tenant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Security profile; `restricted` by default.
    pub profile: Profile,
    /// Lifecycle state; `active` by default.
    pub state: TenantState,
    /// Hard ceilings for the whole tenant.
    pub quota: Quota,
    /// Per-workload defaults, like a Kubernetes LimitRange.
    pub defaults: WorkloadDefaults,
    /// Allowed traffic; everything else is denied.
    pub network: TenantNetwork,
    /// The tenant's volume.
    pub storage: Storage,
    /// Where the tenant's own Kubernetes manifests come from (Flux), if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitops: Option<GitOps>,
}

/// A tenant's GitOps source on Kubernetes: a Git repository Flux pulls and applies with
/// the tenant's own service account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitOps {
    /// Repository URL, `https://` or `ssh://`; must match the platform's
    /// `kubernetes.fluxSourceAllowList`.
    pub url: String,
    /// Branch (`main`), or a full Git reference (`refs/tags/v1.2.0`); default `main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Directory of the manifests inside the repository, relative; default `./`.
    pub path: String,
    /// How often Flux reconciles, a Go duration like `5m` or `1h30m`; default `5m`.
    pub interval: String,
}

/// Hard ceilings for a whole tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// CPU cap (CFS quota) across all workloads; absent = no cap, fair share by weight only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Relative CPU weight under contention, 1-10000 (cgroup v2 `cpu.weight`); default 100.
    pub cpu_weight: u32,
    /// Memory hard limit, swap excluded; default 1Gi.
    pub memory: Bytes,
    /// Process and thread count ceiling; default 512.
    pub pids: u32,
    /// Size of the tenant's volume; default 1Gi.
    pub storage: Bytes,
    /// Disk throughput and IOPS ceilings on the tenant's volume.
    #[serde(skip_serializing_if = "IoLimits::is_empty")]
    pub io: IoLimits,
    /// Egress bandwidth cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<Bandwidth>,
    /// Ingress bandwidth cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Bandwidth>,
    /// Most workloads the tenant may declare; default 16.
    pub workloads: u32,
    /// Optional exclusive CPU set, e.g. `2-3` (cpuset syntax).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
}

/// Disk limits, per second.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IoLimits {
    /// Read bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_bps: Option<Bytes>,
    /// Write bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_bps: Option<Bytes>,
    /// Read operations per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_iops: Option<u32>,
    /// Write operations per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_iops: Option<u32>,
}

impl IoLimits {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        self == &IoLimits::default()
    }
}

/// Per-workload defaults and ceilings, applied to workloads that do not say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadDefaults {
    /// Default resources of a workload that names none.
    pub resources: Resources,
    /// Default restart policy.
    pub restart: RestartPolicy,
}

/// What one workload may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Memory hard limit.
    pub memory: Bytes,
    /// Process and thread ceiling.
    pub pids: u32,
}

/// When a workload is restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Always, with exponential backoff.
    Always,
    /// Only after a non-zero exit; the default.
    #[default]
    OnFailure,
    /// Never.
    Never,
}

/// Whether a tenant's workloads reach each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SameTenant {
    /// Workloads of the tenant reach each other on any port; the default.
    #[default]
    Allow,
    /// Only explicit rules apply, even inside the tenant.
    Deny,
}

/// A tenant's network rules. Everything not allowed is denied; a connection needs the
/// source's egress and the destination's ingress to allow it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantNetwork {
    /// Traffic between the tenant's own workloads.
    pub same_tenant: SameTenant,
    /// Who may connect to this tenant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRule>,
    /// Where this tenant may connect.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
}

/// One ingress allow rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// Which of this tenant's workloads the rule opens; absent = all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads: Option<LabelSelector>,
    /// Allowed sources (OR); at least one.
    pub from: Vec<Peer>,
    /// Allowed ports (OR); empty = all ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

/// One egress allow rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Which of this tenant's workloads the rule opens; absent = all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads: Option<LabelSelector>,
    /// Allowed destinations (OR); at least one.
    pub to: Vec<Peer>,
    /// Allowed ports (OR); empty = all ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

/// The other end of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", untagged)]
pub enum Peer {
    /// A named tenant, optionally narrowed to its workloads matching a selector.
    Tenant {
        /// The tenant.
        tenant: Name,
        /// Its workloads; absent = all.
        #[serde(skip_serializing_if = "Option::is_none", rename = "workloadSelector")]
        workload_selector: Option<LabelSelector>,
    },
    /// Tenants whose labels match, optionally narrowed to matching workloads.
    TenantSelector {
        /// Tenants by label; `{}` matches every tenant.
        #[serde(rename = "tenantSelector")]
        tenant_selector: LabelSelector,
        /// Their workloads; absent = all.
        #[serde(skip_serializing_if = "Option::is_none", rename = "workloadSelector")]
        workload_selector: Option<LabelSelector>,
    },
    /// Addresses outside the platform's tenant range.
    Cidr(CidrBlock),
    /// The platform's DNS resolver (UDP and TCP port 53).
    Dns {
        /// Always true.
        dns: bool,
    },
    /// A shared service declared by the platform.
    Service {
        /// The service's name in the platform file.
        service: Name,
    },
}

/// A Kubernetes-style label selector. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with these values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    /// Further requirements, ANDed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// How to compare.
    pub operator: SelectorOperator,
    /// Values for `In` and `NotIn`; empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Label selector operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
pub enum SelectorOperator {
    /// Label value is one of the values.
    In,
    /// Label absent, or value not among the values.
    NotIn,
    /// Label present.
    Exists,
    /// Label absent.
    DoesNotExist,
}

/// The tenant's volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Encrypt with the tenant's own fscrypt key; default true.
    pub encrypted: bool,
}

/// A workload: a process a tenant runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Always `bulkhead.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Workload`.
    pub kind: String,
    /// Name, tenant and labels.
    pub metadata: WorkloadMetadata,
    /// What runs.
    pub spec: WorkloadSpec,
}

/// The body of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Program and arguments; the program is an absolute path inside the sandbox.
    pub command: Vec<String>,
    /// Environment variables.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Container image on Kubernetes; absent = the renderer's default image. The host
    /// backend ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Working directory inside the sandbox; default the volume's mount point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Ports the workload listens on; names are used by rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadPort>,
    /// Resources, within the tenant's quota; defaulted from the tenant's `defaults`.
    pub resources: Resources,
    /// Restart policy; defaulted from the tenant's `defaults`.
    pub restart: RestartPolicy,
}

/// A port a workload listens on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPort {
    /// Name used by rules (`http`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    pub port: u16,
    /// Protocol; TCP by default.
    pub protocol: Protocol,
}

/// Host-wide settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    /// Always `bulkhead.dev/v1alpha1`.
    pub api_version: String,
    /// Always `Platform`.
    pub kind: String,
    /// Name.
    pub metadata: Metadata,
    /// The settings.
    pub spec: PlatformSpec,
}

/// The body of the platform file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformSpec {
    /// Prefix of every host object this installation creates; default `bh`.
    pub instance: String,
    /// Tenant networking.
    pub network: PlatformNetwork,
    /// Services every tenant may be allowed to reach with a `service:` peer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shared_services: Vec<SharedService>,
    /// Administrators and their roles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<Admin>,
    /// Where the master key that wraps tenant keys comes from.
    pub key_source: KeySource,
    /// Weaker isolation the platform explicitly accepts on hosts that lack a feature.
    /// Empty by default: a missing feature makes `apply` refuse.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_degraded: Vec<DegradableFeature>,
    /// Settings of the Kubernetes backend.
    pub kubernetes: PlatformKubernetes,
    /// How the control plane treats tenants under sustained pressure.
    pub noisy_neighbours: NoisyNeighbours,
}

/// Noisy-neighbour handling by `bulkhead serve`: every `sampleSeconds` it reads each
/// tenant's cgroups; pressure that lasts `windowSeconds` is an event (audited, and a
/// metric). With `tighten: true` the tenant's cpu weight is lowered to
/// `tightenCpuWeight` for `coolDownSeconds`, audited, then restored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoisyNeighbours {
    /// Lower a noisy tenant's cpu weight for a cool-down; default false (events only).
    pub tighten: bool,
    /// Seconds between samples, 1-600; default 5.
    pub sample_seconds: u32,
    /// Seconds pressure must last to count, 1-3600, at least `sampleSeconds`; default 30.
    pub window_seconds: u32,
    /// Seconds a tightening lasts, 10-86400; default 300.
    pub cool_down_seconds: u32,
    /// The cpu weight while tightened, 1-10000; default 10.
    pub tighten_cpu_weight: u32,
    /// CPU use that counts as pressure, millicores (0 = not a signal); default 1000.
    pub cpu_busy_millicores: u32,
    /// Share of wall time throttled by the cpu cap that counts, percent (0 = not a
    /// signal); default 50.
    pub cpu_throttled_percent: u32,
    /// Memory use near the limit that counts while the limit is being hit (failcnt or
    /// OOM kills rising), percent of the limit, 1-100; default 90.
    pub memory_percent: u32,
    /// Block I/O that counts, MiB per second (0 = not a signal); default 100.
    pub io_mib_per_second: u32,
}

/// Settings of the Kubernetes backend: what differs between distributions and what the
/// platform allows tenants to pull.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformKubernetes {
    /// The cluster DNS resolver that `dns: true` peers reach; default `kube-system` pods
    /// labelled `k8s-app: kube-dns`.
    pub dns_selector: DnsSelector,
    /// URL prefixes tenants' GitOps sources must start with; empty = no tenant may have
    /// a GitOps source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flux_source_allow_list: Vec<String>,
    /// Pod Security Admission version pinned on tenant namespaces: `latest` (the
    /// default) or `v1.N`.
    pub pod_security_version: String,
    /// Add Istio mTLS (PeerAuthentication STRICT) and AuthorizationPolicies; default false.
    pub mesh: bool,
}

/// Where the cluster DNS resolver runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsSelector {
    /// Its namespace, matched by the immutable `kubernetes.io/metadata.name` label.
    pub namespace: Name,
    /// Labels of its pods; at least one.
    pub pod_labels: Labels,
}

/// Tenant networking settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformNetwork {
    /// Addresses for tenants; the first usable address is the bridge. Default 10.240.0.0/16.
    #[schemars(with = "String")]
    #[serde(serialize_with = "serialize_display")]
    pub tenant_range: IpNet,
    /// DNS resolver tenants may reach with a `dns: true` peer; default the bridge address.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub dns: Option<IpAddr>,
    /// Upstream resolvers for names outside the platform; none by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub upstream_dns: Vec<IpAddr>,
    /// Ports on host addresses that tenants may reach; none by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_ports: Vec<PortSpec>,
    /// Allow 169.254.0.0/16 (link-local, cloud metadata); false by default.
    pub allow_link_local: bool,
    /// Masquerade traffic that leaves the host (only where a tenant rule allows it).
    pub nat: bool,
    /// Connections each tenant may have tracked at once (new ones beyond are
    /// refused), so that no tenant fills the host's shared conntrack table. One
    /// value for all tenants (the host firewall's rule count stays constant);
    /// default 16384.
    pub connections_per_tenant: u32,
}

/// A service tenants may be granted with a `service:` peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SharedService {
    /// The service's name.
    pub name: Name,
    /// Where it runs: a tenant, optionally narrowed to workloads, or a CIDR.
    #[serde(flatten)]
    pub target: ServiceTarget,
    /// Ports it serves.
    pub ports: Vec<PortSpec>,
}

/// Where a shared service runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", untagged)]
pub enum ServiceTarget {
    /// Workloads of a tenant.
    Tenant {
        /// The tenant.
        tenant: Name,
        /// Its workloads; absent = all.
        #[serde(skip_serializing_if = "Option::is_none", rename = "workloadSelector")]
        workload_selector: Option<LabelSelector>,
    },
    /// Addresses outside the tenant range.
    Cidr(CidrBlock),
}

/// An administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Admin {
    /// The identity (user name or certificate subject).
    pub name: String,
    /// The role.
    pub role: Role,
    /// For tenant roles: the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Name>,
}

/// Roles of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    PlatformAdmin,
    /// Own tenant's workloads, logs and exec.
    TenantAdmin,
    /// Read-only on own tenant.
    TenantViewer,
}

/// Where the master key comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", untagged)]
pub enum KeySource {
    /// A root-only file holding 32 random bytes (created on first apply).
    File {
        /// Path of the key file.
        file: String,
    },
    /// An environment variable holding the key as 64 hex digits.
    Env {
        /// The variable's name.
        env: String,
    },
}

/// Isolation features a platform may explicitly accept running without.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DegradableFeature {
    /// Run without Landlock (filesystem rules then rest on mounts alone).
    Landlock,
    /// Run volumes unencrypted when ext4 encryption is missing.
    Encryption,
    /// Run without io limits when the io controller is missing.
    IoLimits,
    /// Run without a cpuset when the cpuset controller is missing.
    Cpuset,
}

/// The whole desired state: one platform, tenants, workloads — validated together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// The platform (the default one if no file declared it).
    pub platform: Platform,
    /// Tenants by name.
    pub tenants: BTreeMap<Name, Tenant>,
    /// Workloads by (tenant, name).
    pub workloads: BTreeMap<(Name, Name), Workload>,
}

impl Desired {
    /// The workloads of one tenant, in name order.
    pub fn workloads_of<'a>(&'a self, tenant: &'a Name) -> impl Iterator<Item = &'a Workload> + 'a {
        self.workloads
            .iter()
            .filter(move |((owner, _), _)| owner == tenant)
            .map(|(_, workload)| workload)
    }
}
