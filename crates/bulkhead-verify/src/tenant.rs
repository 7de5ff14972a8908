//! What the caller knows about each tenant under test.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use bulkhead_spec::Profile;

/// How the probe is confined, which should be how the tenant's workloads
/// are. Anything but [`Confine::AsDeclared`] reproduces a misconfiguration
/// on purpose (the verifier's own tests use it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Confine {
    /// [`Confinement`](bulkhead_node::confine::Confinement) of the declared profile.
    #[default]
    AsDeclared,
    /// The confinement of another profile than the declared one.
    Profile(Profile),
    /// No confinement at all (no seccomp, capabilities, no_new_privs, Landlock).
    Nothing,
    /// The declared profile's confinement with one more path (inside the
    /// sandbox, e.g. `/dev`) writable in its Landlock ruleset: a relaxed
    /// Landlock rule, everything else as declared.
    ExtraWritable(PathBuf),
}

/// The limits the tenant's quota declares, as the resource probes check them.
/// `None`: not limited, the probe is skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeclaredLimits {
    /// `memory.max` of the tenant's cgroup, bytes.
    pub memory_max: Option<u64>,
    /// `pids.max` of the tenant's cgroup.
    pub pids_max: Option<u64>,
    /// Storage quota (size of the volume), bytes.
    pub storage: Option<u64>,
}

/// A tenant whose sandbox runs, with what the caller knows about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantUnderTest {
    /// The tenant's name (its sandbox is found by it).
    pub name: String,
    /// The declared security profile: what the expectations follow.
    pub profile: Profile,
    /// How the probe is actually confined (normally as declared).
    pub confine: Confine,
    /// First host uid/gid of the tenant's range, as configured.
    pub id_base: u32,
    /// The host directory bound at `/data` (the volume's data directory).
    pub volume_data_dir: Option<PathBuf>,
    /// `cgroup.procs` files a workload of the tenant joins (one per v1
    /// hierarchy, or one on v2).
    pub cgroup_procs: Vec<PathBuf>,
    /// The quota the resource probes check.
    pub limits: DeclaredLimits,
    /// Its address on the instance bridge (the store's); `None`: no network
    /// probes to or from it.
    pub address: Option<Ipv4Addr>,
}

impl TenantUnderTest {
    /// A tenant confined as declared, without volume, cgroups or limits.
    pub fn new(name: &str, profile: Profile, id_base: u32) -> Self {
        TenantUnderTest {
            name: name.to_owned(),
            profile,
            confine: Confine::AsDeclared,
            id_base,
            volume_data_dir: None,
            cgroup_procs: Vec::new(),
            limits: DeclaredLimits::default(),
            address: None,
        }
    }
}
