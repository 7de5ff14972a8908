//! Errors of the cgroup module. Every variant carries the file or directory it is
//! about, and writes carry the value, so a person can repeat the step by hand.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::layout::Controller;

/// A value the kernel (or the filesystem standing in for it) refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {value:?} to {}: {source}", path.display())]
pub struct ApplyCgroupError {
    /// The control file.
    pub path: PathBuf,
    /// What was written.
    pub value: String,
    /// The error of the write.
    #[source]
    pub source: io::Error,
}

/// What can go wrong managing cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A write was refused.
    #[error(transparent)]
    Apply(#[from] ApplyCgroupError),
    /// A control file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The control file.
        path: PathBuf,
        /// The error of the read.
        #[source]
        source: io::Error,
    },
    /// A control file held something other than its documented format.
    #[error("{}: {value:?} is not {expected}", path.display())]
    Parse {
        /// The control file.
        path: PathBuf,
        /// What it held (or the offending part).
        value: String,
        /// What the kernel documents, e.g. `"quota period"`.
        expected: &'static str,
    },
    /// A cgroup directory could not be created.
    #[error("cannot create cgroup {}: {source}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// The error of `mkdir`.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be removed.
    #[error("cannot remove cgroup {}: {source}", path.display())]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The error of `rmdir` (EBUSY: it still holds processes).
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be listed.
    #[error("cannot list {}: {source}", path.display())]
    List {
        /// The directory.
        path: PathBuf,
        /// The error of `readdir`.
        #[source]
        source: io::Error,
    },
    /// A controller bulkhead needs is not mounted (v1) or not offered by the
    /// root (v2).
    #[error(
        "the {} controller is not available on this host (expected {}); run `bulkhead doctor`",
        controller.name(),
        controller.expected_location()
    )]
    MissingController {
        /// The controller.
        controller: Controller,
    },
    /// The host lacks a kernel feature a limit needs.
    #[error("{what} is not available at {} (expected {expected}); run `bulkhead doctor`", path.display())]
    Unsupported {
        /// The feature, e.g. `swap accounting`.
        what: &'static str,
        /// The file that would provide it.
        path: PathBuf,
        /// What would make it work.
        expected: &'static str,
    },
    /// A limit that cannot be expressed in cgroup files.
    #[error("{what}: {value} is out of range (expected {expected})")]
    InvalidLimit {
        /// Which limit.
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted range or form.
        expected: &'static str,
    },
    /// A path given to the cgroup API is not a plain relative path.
    #[error("{}: not a cgroup path (expected a relative path without `..`, as `naming` makes them)", path.display())]
    InvalidPath {
        /// The path given.
        path: PathBuf,
    },
    /// Processes may join only leaf cgroups.
    #[error("{}: has child cgroups (expected a leaf: processes live only in workload cgroups)", path.display())]
    NotLeaf {
        /// The cgroup directory.
        path: PathBuf,
    },
    /// A state change the kernel did not complete in time.
    #[error("{} did not reach {expected} within {waited:?} (last read {last:?})", path.display())]
    Timeout {
        /// The file that reports the state.
        path: PathBuf,
        /// The state waited for, e.g. `FROZEN` or `populated 0`.
        expected: &'static str,
        /// What the file said last.
        last: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// A cpuset partition the kernel marked invalid.
    #[error("{}: cpuset partition is {state:?} (expected \"root\": the parent must be a partition root, or cpuset.cpus.exclusive must be granted down the path)", path.display())]
    Partition {
        /// `cpuset.cpus.partition`.
        path: PathBuf,
        /// What it reads.
        state: String,
    },
    /// A signal could not be sent.
    #[error("cannot send SIGKILL to pid {pid} (in {}): {source}", path.display())]
    Signal {
        /// The process.
        pid: u32,
        /// The cgroup it was listed in.
        path: PathBuf,
        /// The error of `kill(2)`.
        #[source]
        source: io::Error,
    },
    /// An operation failed and so did the step that should have undone it.
    #[error("{primary}; undoing it also failed: {cleanup}")]
    Cleanup {
        /// The first error.
        primary: Box<CgroupError>,
        /// The error of the cleanup.
        cleanup: Box<CgroupError>,
    },
}

/// Detection of the cgroup layout failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectCgroupError {
    /// The mount table could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// `/proc/self/mountinfo`.
        path: PathBuf,
        /// The error of the read.
        #[source]
        source: io::Error,
    },
    /// The mount table did not parse.
    #[error(transparent)]
    Mountinfo(#[from] crate::mountinfo::ParseMountinfoError),
    /// Neither v1 hierarchies with controllers nor a cgroup2 mount.
    #[error(
        "no cgroup hierarchy with controllers is mounted (expected cgroup2 at /sys/fs/cgroup or v1 controllers under it); run `bulkhead doctor`"
    )]
    NoHierarchy,
}
