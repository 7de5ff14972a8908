//! `observe` and `stop`: what is left of a tenant's sandbox on the host, and
//! removing all of it. Both only read or remove objects named by
//! [`Instance`], so they also collect what a crashed holder left behind.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};

use super::SandboxError;
use super::netns::{self, NetnsEntry};
use super::record::{HolderRecord, ProcStat};
use super::start::validate_tenant;
use crate::naming::Instance;

/// How long `stop` waits for a killed holder to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The holder process, as far as the host can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HolderState {
    /// No record of a holder.
    Absent,
    /// The recorded process runs.
    Running {
        /// Its host pid.
        pid: u32,
    },
    /// A record names a process that is gone (crashed, killed, or its pid
    /// now belongs to another process).
    Gone {
        /// The recorded pid.
        pid: u32,
    },
}

/// What exists on the host for one tenant's sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The tenant.
    pub tenant: String,
    /// The holder.
    pub holder: HolderState,
    /// The `/run/netns` entry.
    pub netns: NetnsEntry,
    /// Whether the sandbox root directory exists.
    pub root_dir: bool,
}

impl Observed {
    /// The holder runs and `ip netns` can find its network namespace.
    pub fn is_running(&self) -> bool {
        matches!(self.holder, HolderState::Running { .. }) && self.netns == NetnsEntry::Holder
    }

    /// Nothing at all exists.
    pub fn is_absent(&self) -> bool {
        self.holder == HolderState::Absent && self.netns == NetnsEntry::Absent && !self.root_dir
    }

    /// Not running, but something is left that `stop` removes.
    pub fn has_leftovers(&self) -> bool {
        !self.is_running() && !self.is_absent()
    }
}

/// What `stop` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// The holder it killed, if one ran.
    pub killed: Option<u32>,
    /// Whether it removed a `/run/netns` entry.
    pub netns_removed: bool,
    /// Whether it removed the sandbox root directory.
    pub root_removed: bool,
    /// Whether it removed the holder record.
    pub record_removed: bool,
}

/// Reads what exists for `tenant`'s sandbox.
pub fn observe(instance: &Instance, tenant: &str) -> Result<Observed, SandboxError> {
    validate_tenant(tenant)?;
    let record = HolderRecord::load(&instance.holder_record(tenant))?;
    let holder = match record {
        None => HolderState::Absent,
        Some(record) if record.is_alive() => HolderState::Running { pid: record.pid },
        Some(record) => HolderState::Gone { pid: record.pid },
    };
    let live = match holder {
        HolderState::Running { pid } => Some(pid),
        _ => None,
    };
    Ok(Observed {
        tenant: tenant.to_owned(),
        holder,
        netns: netns::entry(&instance.netns_path(tenant), live),
        root_dir: instance.sandbox_root(tenant).exists(),
    })
}

/// Kills the holder (and with it every process of the tenant), unmounts and
/// removes the `/run/netns` entry, removes the root directory and the record.
/// Idempotent: whatever is already gone is skipped.
pub fn stop(instance: &Instance, tenant: &str) -> Result<StopReport, SandboxError> {
    validate_tenant(tenant)?;
    let mut report = StopReport::default();
    let record_path = instance.holder_record(tenant);
    let record = HolderRecord::load(&record_path)?;
    // Every step runs even if an earlier one failed; the first failure is
    // returned (with a later one, if any).
    let killed = match record {
        Some(record) if record.is_alive() => kill(tenant, &record),
        _ => Ok(None),
    };
    let netns = netns::unregister(&instance.netns_path(tenant));
    // Not recursive on purpose: the host directory is only a mount point, and
    // a recursive removal could cross into a mount.
    let root = remove(&instance.sandbox_root(tenant), "remove sandbox root", |p| {
        std::fs::remove_dir(p)
    });
    let mut errors = Vec::new();
    match killed {
        Ok(pid) => report.killed = pid,
        Err(e) => errors.push(e),
    }
    match netns {
        Ok(removed) => report.netns_removed = removed,
        Err(e) => errors.push(e),
    }
    match root {
        Ok(removed) => report.root_removed = removed,
        Err(e) => errors.push(e),
    }
    let mut errors = errors.into_iter();
    match (errors.next(), errors.next()) {
        (None, _) => {
            // The record goes last, so a failed stop can be retried.
            report.record_removed = remove(&record_path, "remove holder record", |p| {
                std::fs::remove_file(p)
            })?;
            Ok(report)
        }
        (Some(first), None) => Err(first),
        (Some(first), Some(second)) => Err(SandboxError::Cleanup {
            first: Box::new(first),
            cleanup: Box::new(second),
        }),
    }
}

fn remove(
    path: &Path,
    step: &'static str,
    remove: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<bool, SandboxError> {
    match remove(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SandboxError::io(step, path, e)),
    }
}

/// `SIGKILL` through a pidfd (so a recycled pid is never hit), then waits
/// until the holder has exited, and reaps it if it is our child.
fn kill(tenant: &str, record: &HolderRecord) -> Result<Option<u32>, SandboxError> {
    let proc_path = format!("/proc/{}", record.pid);
    let Some(pid) = i32::try_from(record.pid).ok().and_then(Pid::from_raw) else {
        return Ok(None);
    };
    let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(None),
        Err(e) => return Err(SandboxError::io("open holder pidfd", proc_path, e.into())),
    };
    // The pidfd now pins the process; make sure it is still the holder.
    match ProcStat::read(record.pid) {
        Some(stat) if stat.start_time == record.start_time => {}
        _ => return Ok(None),
    }
    match rustix::process::pidfd_send_signal(&pidfd, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => return Err(SandboxError::io("kill holder", proc_path, e.into())),
    }
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::event::Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                return Err(SandboxError::StillRunning {
                    tenant: tenant.to_owned(),
                    pid: record.pid,
                    seconds: KILL_TIMEOUT.as_secs(),
                });
            }
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(SandboxError::io("wait for holder", proc_path, e.into())),
        }
    }
    // Reap it if it is our child (e.g. we are a subreaper); ECHILD otherwise.
    let _ = rustix::process::waitid(
        WaitId::PidFd(pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    );
    Ok(Some(record.pid))
}
