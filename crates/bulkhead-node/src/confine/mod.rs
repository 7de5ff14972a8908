//! Process confinement: what a workload process gets right before `execve`,
//! per security [`Profile`] (see `docs/PROFILES.md` for the three side by side).
//!
//! A [`Confinement`] is built in the parent, **before fork**, by
//! [`Confinement::prepare`]: it compiles the profile's seccomp filter
//! ([`seccomp`]), opens the Landlock paths and creates the ruleset
//! ([`landlock`]), reads the kernel's last capability ([`caps`]). Everything
//! that allocates or can fail for a reason a person must fix happens there.
//!
//! [`Confinement::apply`] runs in the child between `fork` and `execve` (for
//! example through [`Confinement::attach`] on a `std::process::Command`) and only makes
//! system calls that allocate nothing, in this order:
//!
//! 1. rlimits ([`rlimit`]): `RLIMIT_CORE` = 0, `RLIMIT_NOFILE` lowered;
//! 2. capabilities ([`caps`]): every set emptied (restricted, baseline);
//!    nothing that follows needs one, because no_new_privs stands in for
//!    `CAP_SYS_ADMIN` for both Landlock and seccomp;
//! 3. no_new_privs, always;
//! 4. Landlock (restricted, baseline);
//! 5. seccomp, last, so that the steps before may use any syscall.
//!
//! | | restricted | baseline | privileged |
//! |---|---|---|---|
//! | seccomp | `restricted.json` + x32 rule | `baseline.json` + x32 rule | x32 rule only |
//! | capabilities | all dropped | all dropped | kept (user namespace) |
//! | no_new_privs | yes | yes | yes |
//! | Landlock | yes | yes | no |
//! | rlimits | core 0, nofile | core 0, nofile | core 0, nofile |

pub mod caps;
pub mod landlock;
pub mod probe;
pub mod rlimit;
pub mod seccomp;

use std::fmt;
use std::process::Command;
use std::sync::Arc;

use bulkhead_spec::Profile;

use self::caps::CapabilityPolicy;
use self::landlock::{LandlockError, LandlockGap, LandlockMode, LandlockPaths, PreparedLandlock};
use self::rlimit::{RlimitKind, Rlimits};
use self::seccomp::{Arch, SeccompError, SeccompProfile, SeccompProgram};

/// What the caller decides about a workload's confinement; the profile decides
/// the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfineOptions {
    /// Paths for Landlock (ignored by the privileged profile).
    pub paths: LandlockPaths,
    /// Whether a kernel that cannot enforce the full Landlock ruleset is an
    /// error ([`LandlockMode::Required`], the default) or reported.
    pub landlock_mode: LandlockMode,
    /// Resource limits.
    pub rlimits: Rlimits,
}

/// Why a confinement could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareConfinementError {
    /// The seccomp profile did not load or compile.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The Landlock ruleset could not be built.
    #[error(transparent)]
    Landlock(#[from] LandlockError),
    /// No seccomp filter exists for the CPU this runs on.
    #[error("no seccomp filters for architecture {0} (expected x86_64 or aarch64)")]
    UnsupportedArch(&'static str),
}

/// A step of [`Confinement::apply`], in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyStep {
    /// `setrlimit(RLIMIT_CORE)`.
    LimitCoreDumps,
    /// `setrlimit(RLIMIT_NOFILE)`.
    LimitOpenFiles,
    /// Emptying the capability sets.
    DropCapabilities,
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    SetNoNewPrivs,
    /// `landlock_restrict_self`.
    RestrictLandlock,
    /// `seccomp(SECCOMP_SET_MODE_FILTER)`.
    LoadSeccomp,
}

impl fmt::Display for ApplyStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplyStep::LimitCoreDumps => "disable core dumps",
            ApplyStep::LimitOpenFiles => "lower the open file limit",
            ApplyStep::DropCapabilities => "drop capabilities",
            ApplyStep::SetNoNewPrivs => "set no_new_privs",
            ApplyStep::RestrictLandlock => "enforce the landlock ruleset",
            ApplyStep::LoadSeccomp => "load the seccomp filter",
        })
    }
}

/// A step of [`Confinement::apply`] failed. Holds no heap data, so it can be
/// made in the child; converts into an [`std::io::Error`] with the errno for
/// `pre_exec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {step} before exec: {}", std::io::Error::from_raw_os_error(*.errno))]
pub struct ApplyConfinementError {
    /// The step that failed.
    pub step: ApplyStep,
    /// The errno it failed with.
    pub errno: i32,
}

impl From<ApplyConfinementError> for std::io::Error {
    fn from(error: ApplyConfinementError) -> Self {
        std::io::Error::from_raw_os_error(error.errno)
    }
}

/// Everything a workload process gets before `execve`, prepared in the parent.
#[derive(Debug)]
pub struct Confinement {
    profile: Profile,
    rlimits: Rlimits,
    capabilities: CapabilityPolicy,
    landlock: Option<PreparedLandlock>,
    seccomp: SeccompProgram,
}

impl Confinement {
    /// Prepares the confinement for `profile` on this host: compiles the
    /// seccomp filter for the host's architecture, builds the Landlock ruleset
    /// (restricted and baseline), reads the capability range. Call before
    /// `fork`.
    pub fn prepare(
        profile: Profile,
        options: &ConfineOptions,
    ) -> Result<Self, PrepareConfinementError> {
        let arch = Arch::host().ok_or(PrepareConfinementError::UnsupportedArch(
            std::env::consts::ARCH,
        ))?;
        let seccomp = SeccompProfile::builtin(profile)?.compile(arch)?;
        let (capabilities, landlock) = match profile {
            Profile::Restricted | Profile::Baseline => (
                CapabilityPolicy::drop_all(),
                Some(landlock::prepare(&options.paths, options.landlock_mode)?),
            ),
            // Landlock also forbids mounting, which is what privileged
            // workloads (nested containers, FUSE) come for; their boundary is
            // the tenant's namespaces, cgroups and firewall.
            Profile::Privileged => (CapabilityPolicy::KeepUserNamespace, None),
        };
        Ok(Confinement {
            profile,
            rlimits: options.rlimits,
            capabilities,
            landlock,
            seccomp,
        })
    }

    /// The profile this confinement was prepared for.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The compiled seccomp program.
    pub fn seccomp(&self) -> &SeccompProgram {
        &self.seccomp
    }

    /// The Landlock ruleset, if the profile uses one.
    pub fn landlock(&self) -> Option<&PreparedLandlock> {
        self.landlock.as_ref()
    }

    /// The capability policy.
    pub fn capabilities(&self) -> CapabilityPolicy {
        self.capabilities
    }

    /// What was requested but will not be enforced on this kernel: empty
    /// unless the caller allowed Landlock best effort.
    pub fn not_enforced(&self) -> &[LandlockGap] {
        self.landlock
            .as_ref()
            .map_or(&[][..], PreparedLandlock::not_enforced)
    }

    /// Makes `command` apply this confinement in its child right before
    /// `execve`; spawning then fails with the errno of a step that failed.
    pub fn attach(self: &Arc<Self>, command: &mut Command) {
        crate::sys::exec::confine_before_exec(command, Arc::clone(self));
    }

    /// Confines the calling process; run it in the child between `fork` and
    /// `execve`. Allocates nothing and takes no lock.
    pub fn apply(&self) -> Result<(), ApplyConfinementError> {
        let fail = |step| move |errno| ApplyConfinementError { step, errno };
        self.rlimits.apply().map_err(|(kind, errno)| {
            let step = match kind {
                RlimitKind::Core => ApplyStep::LimitCoreDumps,
                RlimitKind::Nofile => ApplyStep::LimitOpenFiles,
            };
            ApplyConfinementError { step, errno }
        })?;
        self.capabilities
            .apply()
            .map_err(fail(ApplyStep::DropCapabilities))?;
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| e.raw_os_error())
            .map_err(fail(ApplyStep::SetNoNewPrivs))?;
        if let Some(landlock) = &self.landlock {
            landlock
                .apply()
                .map_err(fail(ApplyStep::RestrictLandlock))?;
        }
        self.seccomp.apply().map_err(fail(ApplyStep::LoadSeccomp))
    }
}
