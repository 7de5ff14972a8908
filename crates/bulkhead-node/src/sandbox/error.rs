//! Errors of the sandbox launcher.

use std::io;
use std::path::PathBuf;

/// What went wrong starting, entering, observing or stopping a tenant's
/// sandbox. Each variant names the step and, where there is one, the path.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The tenant name cannot name host objects.
    #[error(
        "tenant name {name:?} is not a DNS-1123 label (expected 1 to 63 lowercase letters, digits or '-', not starting or ending with '-')"
    )]
    InvalidTenant {
        /// The name given.
        name: String,
    },
    /// The id base leaves no room for the tenant's range, or includes host
    /// root.
    #[error("uid/gid base {base} is out of range (expected 1..={max})")]
    InvalidIdBase {
        /// The base given.
        base: u32,
        /// The highest base that fits.
        max: u32,
    },
    /// A uid or gid is outside the tenant's range.
    #[error("id {id} is outside the tenant's range (expected 0..{range})")]
    InvalidId {
        /// The id given.
        id: u32,
        /// The size of the range.
        range: u32,
    },
    /// A file system or process step on the host failed.
    #[error("{step}: {}: {source}", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The holder (or the process that starts it) failed or broke the
    /// protocol.
    #[error("holder of tenant {tenant}: {step}: {message}")]
    Holder {
        /// The tenant.
        tenant: String,
        /// The holder's step.
        step: String,
        /// What it reported.
        message: String,
    },
    /// The tenant has no live holder.
    #[error("tenant {tenant} has no running sandbox (expected `start` first)")]
    NotRunning {
        /// The tenant.
        tenant: String,
    },
    /// Starting a process inside the tenant failed at a step of the join
    /// sequence.
    #[error("run {program:?} in tenant {tenant}: {step}: {source}")]
    Join {
        /// The tenant.
        tenant: String,
        /// The program.
        program: String,
        /// The step of the join sequence (`join user namespace`, `set uid`,
        /// `exec`, …).
        step: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The holder did not exit after `SIGKILL`.
    #[error(
        "holder {pid} of tenant {tenant} still runs {seconds}s after SIGKILL (a process of the tenant orphaned outside it may be an unreaped zombie; its reaper must reap it)"
    )]
    StillRunning {
        /// The tenant.
        tenant: String,
        /// The holder's pid.
        pid: u32,
        /// How long `stop` waited.
        seconds: u64,
    },
    /// A step failed and cleaning up after it failed too.
    #[error("{first}; cleaning up also failed: {cleanup}")]
    Cleanup {
        /// The first failure.
        first: Box<SandboxError>,
        /// The failure of the clean-up.
        cleanup: Box<SandboxError>,
    },
}

impl SandboxError {
    pub(crate) fn io(step: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SandboxError::Io {
            step,
            path: path.into(),
            source,
        }
    }
}
