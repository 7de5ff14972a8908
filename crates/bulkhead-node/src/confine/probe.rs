//! A probe that runs inside a confined process and reports, from there, what
//! the confinement left it: its capability sets, no_new_privs and seccomp
//! mode as `/proc/thread-self/status` shows them, its rlimits, the outcome of every
//! syscall a profile may deny, whether it can write to given paths, and
//! whether it can still start threads and programs.
//!
//! Each denied-syscall attempt is harmless when nothing denies it (see the
//! table in `sys::probe`): without a filter the kernel answers with an error
//! other than `EPERM` even for full root, so `EPERM` means "denied as
//! designed". A caller compares against an unconfined run to be sure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sys;

/// `/proc/self/status` fields the probe reports.
pub const STATUS_FIELDS: &[&str] = &[
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
];

/// What a probe saw, from inside.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The [`STATUS_FIELDS`] as the probing thread's status file shows them.
    pub status: BTreeMap<String, String>,
    /// `RLIMIT_CORE` soft and hard (`None` = unlimited).
    pub core_limit: (Option<u64>, Option<u64>),
    /// `RLIMIT_NOFILE` soft and hard.
    pub nofile_limit: (Option<u64>, Option<u64>),
    /// Each attempted syscall: `Ok(return value)` or `Err(errno)`.
    pub syscalls: BTreeMap<String, Result<i64, i32>>,
    /// `getpid` through the x32 ABI (x86_64 only).
    pub x32_getpid: Option<Result<i64, i32>>,
    /// Each path the probe was asked to create a file in: `Ok` or `Err(errno)`.
    pub writes: BTreeMap<PathBuf, Result<(), i32>>,
    /// Starting a thread: `Ok` or the error (`None` until tried).
    pub thread: Option<Result<(), String>>,
    /// Running `/bin/true` (when it exists): `Ok` or the error.
    pub spawn: Option<Result<(), String>>,
}

/// Names of the syscalls the probe attempts on this architecture.
pub fn attempted_syscalls() -> impl Iterator<Item = &'static str> {
    sys::probe::ATTEMPTS.iter().map(|attempt| attempt.name)
}

/// The syscall number the probe uses for `name` on this architecture.
pub fn syscall_number(name: &str) -> Option<i64> {
    sys::probe::ATTEMPTS
        .iter()
        .find(|attempt| attempt.name == name)
        .map(|attempt| attempt.nr)
}

/// Runs the probe in the calling process: leaves its session first (so
/// `vhangup` has no terminal to hang up), then looks and tries. `write_paths`
/// are directories to try creating a file in (the file is removed again).
pub fn run(write_paths: &[PathBuf]) -> ProbeReport {
    // Fails only if we already lead a process group; then there is no
    // terminal of ours to worry about either way.
    let _ = rustix::process::setsid();
    let mut report = ProbeReport {
        status: status(),
        ..ProbeReport::default()
    };
    let limit = |resource| {
        let limit = rustix::process::getrlimit(resource);
        (limit.current, limit.maximum)
    };
    report.core_limit = limit(rustix::process::Resource::Core);
    report.nofile_limit = limit(rustix::process::Resource::Nofile);
    for attempt in sys::probe::ATTEMPTS {
        report
            .syscalls
            .insert(attempt.name.to_owned(), sys::probe::make(attempt));
    }
    #[cfg(target_arch = "x86_64")]
    {
        report.x32_getpid = Some(sys::probe::make(&sys::probe::X32_GETPID));
    }
    for path in write_paths {
        report.writes.insert(path.clone(), try_write(path));
    }
    report.thread = Some(
        std::thread::Builder::new()
            .spawn(|| ())
            .and_then(|handle| {
                handle
                    .join()
                    .map_err(|_| std::io::Error::other("thread panicked"))
            })
            .map_err(|error| error.to_string()),
    );
    if Path::new("/bin/true").exists() {
        report.spawn = Some(
            std::process::Command::new("/bin/true")
                .status()
                .map_err(|error| error.to_string())
                .and_then(|status| {
                    if status.success() {
                        Ok(())
                    } else {
                        Err(status.to_string())
                    }
                }),
        );
    }
    report
}

/// The calling thread's status: a filter loaded by one thread (without
/// TSYNC) shows only in that thread's file, not in the process's.
fn status() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string("/proc/thread-self/status")
        .or_else(|_| std::fs::read_to_string("/proc/self/status"))
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| STATUS_FIELDS.contains(key))
        .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
        .collect()
}

fn try_write(dir: &Path) -> Result<(), i32> {
    let errno = |error: std::io::Error| error.raw_os_error().unwrap_or(libc::EIO);
    let file = dir.join(format!("bulkhead-probe-{}", std::process::id()));
    std::fs::write(&file, b"probe").map_err(errno)?;
    std::fs::remove_file(&file).map_err(errno)
}
