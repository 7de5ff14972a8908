//! Resource limits set on the workload process: no core dumps, and fewer open
//! files when asked.
//!
//! Limits are only ever lowered: hosts may deny `CAP_SYS_RESOURCE` even to
//! root, so raising a hard limit would fail (and is never what confinement
//! wants). `getrlimit`/`setrlimit` allocate nothing, so this runs between
//! `fork` and `execve`.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The limits a workload gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rlimits {
    /// Lower `RLIMIT_NOFILE` (soft and hard) to this; a value above the
    /// current hard limit leaves the hard limit as it is.
    pub nofile: Option<u64>,
}

/// Which limit failed to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RlimitKind {
    /// `RLIMIT_CORE`.
    Core,
    /// `RLIMIT_NOFILE`.
    Nofile,
}

impl Rlimits {
    /// Sets `RLIMIT_CORE` to 0 (soft and hard) and lowers `RLIMIT_NOFILE`.
    /// Returns which limit failed and the errno.
    pub fn apply(&self) -> Result<(), (RlimitKind, i32)> {
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )
        .map_err(|e| (RlimitKind::Core, e.raw_os_error()))?;
        if let Some(wanted) = self.nofile {
            let now = getrlimit(Resource::Nofile);
            let lower = |limit: Option<u64>| Some(limit.map_or(wanted, |l| l.min(wanted)));
            let maximum = lower(now.maximum);
            let current = lower(now.current).min(maximum);
            setrlimit(Resource::Nofile, Rlimit { current, maximum })
                .map_err(|e| (RlimitKind::Nofile, e.raw_os_error()))?;
        }
        Ok(())
    }
}
