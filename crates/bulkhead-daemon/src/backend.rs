//! The seam between the control plane and the host: what the daemon asks of whoever
//! enforces tenants. The CLI implements [`Backend`] over the same functions its verbs
//! use (`apply` records an audited revision, then converges the host); tests implement
//! it with a fake. Every method blocks: the daemon calls them off the async runtime.

use std::collections::BTreeMap;
use std::io::{self, Read};

use bulkhead_spec::Desired;
use serde::Serialize;
use utoipa::ToSchema;

/// Why a backend call failed, sorted by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The input does not validate; nothing was changed. One message per problem.
    #[error("invalid input: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Anything else, with its causes folded into the text.
    #[error("{0}")]
    Failed(String),
}

/// What an apply (or a lifecycle verb, which is an apply of a changed state) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Applied {
    /// The revision now in force.
    pub revision: i64,
    /// True when the desired state equalled the last revision.
    pub unchanged: bool,
    /// Host actions taken, each audited.
    pub host_actions: Vec<String>,
}

/// One action a converge took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The tenant it was about (empty for instance-wide objects: bridge, firewall).
    pub tenant: String,
    /// What was done, for a person.
    pub action: String,
}

/// A tenant's resource use, from its cgroups and volume. `None` where the host does
/// not say (cgroup v2 has no failcnt; an unmounted volume has no usage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantUsage {
    /// CPU time consumed, ns.
    pub cpu_usage_ns: u64,
    /// Time throttled by the cpu cap, ns.
    pub cpu_throttled_ns: u64,
    /// Memory charged now, bytes.
    pub memory_bytes: u64,
    /// The memory limit, bytes.
    pub memory_limit_bytes: Option<u64>,
    /// How often the limit was hit (v1).
    pub memory_failcnt: Option<u64>,
    /// Processes the OOM killer killed.
    pub oom_kills: Option<u64>,
    /// Processes and threads now.
    pub pids: u64,
    /// Bytes read from block devices.
    pub io_read_bytes: u64,
    /// Bytes written to block devices.
    pub io_write_bytes: u64,
    /// Bytes the volume occupies on the host.
    pub storage_used_bytes: Option<u64>,
    /// The storage quota, bytes.
    pub storage_limit_bytes: Option<u64>,
    /// Pressure stall information, one entry per resource and kind the kernel offers
    /// for the tenant's cgroup (empty on cgroup v1, which has none per cgroup).
    pub pressure: Vec<PressureSeries>,
}

/// One pressure line: `cpu`/`memory`/`io`, `some`/`full`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PressureSeries {
    /// cpu, memory or io.
    pub resource: &'static str,
    /// some or full.
    pub kind: &'static str,
    /// Share of the last 10 s stalled, hundredths of a percent.
    pub avg10_centi: u32,
    /// Total stall time, microseconds.
    pub total_us: u64,
}

/// One of a process's piped output streams.
pub type Output = Box<dyn Read + Send>;

/// A process started in a tenant's sandbox.
pub trait WorkloadProcess: Send {
    /// Host pid of the process the backend started.
    fn id(&self) -> u32;
    /// Its piped stdout and stderr (once).
    fn take_output(&mut self) -> (Option<Output>, Option<Output>);
    /// Its exit code (or 128 + signal) when it has ended, without blocking.
    fn try_wait(&mut self) -> io::Result<Option<i32>>;
    /// Kills it.
    fn kill(&mut self) -> io::Result<()>;
}

/// Who enforces tenants, as the daemon sees it.
pub trait Backend: Send + Sync + 'static {
    /// The instance prefix.
    fn instance(&self) -> &str;
    /// The desired state of the last applied revision, if any.
    fn current(&self) -> Result<Option<Desired>, BackendError>;
    /// Validates `yaml` (every object of the desired state), records it as a new
    /// audited revision by `actor`, and converges the host to it.
    fn apply(&self, yaml: &str, actor: &str, message: &str) -> Result<Applied, BackendError>;
    /// Freezes a tenant (a new revision with `state: suspended`).
    fn suspend(&self, tenant: &str, evict_key: bool, actor: &str) -> Result<Applied, BackendError>;
    /// Thaws a tenant.
    fn resume(&self, tenant: &str, actor: &str) -> Result<Applied, BackendError>;
    /// Offboards a tenant: stop, destroy its volume, crypto-shred its key.
    fn delete(&self, tenant: &str, actor: &str) -> Result<Applied, BackendError>;
    /// Observes the host and repairs what differs from the last revision; returns the
    /// actions taken (each audited by the backend as `actor`).
    fn converge(&self, actor: &str) -> Result<Vec<Repair>, BackendError>;
    /// Starts a workload (its own command, or `command` in its cgroup) in its tenant's
    /// sandbox, stdout and stderr piped.
    fn spawn(
        &self,
        tenant: &str,
        workload: &str,
        command: Option<&[String]>,
    ) -> Result<Box<dyn WorkloadProcess>, BackendError>;
    /// Kills every process in the workload's cgroup (leftovers of a crashed daemon, or
    /// a workload no longer desired).
    fn stop_workload(&self, tenant: &str, workload: &str) -> Result<(), BackendError>;
    /// A tenant's resource use.
    fn usage(&self, tenant: &str) -> Result<TenantUsage, BackendError>;
    /// The last isolation verify, per tenant: true when it found no violation.
    fn last_verify(&self) -> BTreeMap<String, bool>;
}
