//! Attempts the isolation verifier (`bulkhead-verify`) makes from inside a
//! tenant that neither `std` nor `rustix` offer: tracing a pid, SysV and
//! POSIX message queue IPC by name, reading the kernel log, adding a key,
//! creating a user namespace. Each returns the errno it failed with, so the
//! verifier can tell "denied" (`EPERM`, `ESRCH`, `ENOENT`) apart.
//!
//! Nothing here is harmful when it works: a successful trace is detached at
//! once, the IPC objects are the verifier's own canaries, the key goes to a
//! keyring that dies with the process.

use std::ffi::CStr;

use crate::sys::attempt as sys;

/// A SysV IPC object kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysvKind {
    /// Shared memory (`shmget`), one page.
    Shm,
    /// A message queue (`msgget`).
    Msg,
    /// A semaphore set (`semget`) of one.
    Sem,
}

impl SysvKind {
    /// All three.
    pub const ALL: [SysvKind; 3] = [SysvKind::Shm, SysvKind::Msg, SysvKind::Sem];

    /// The file under `/proc/sysvipc` listing this kind.
    pub fn proc_file(self) -> &'static str {
        match self {
            SysvKind::Shm => "/proc/sysvipc/shm",
            SysvKind::Msg => "/proc/sysvipc/msg",
            SysvKind::Sem => "/proc/sysvipc/sem",
        }
    }

    fn code(self) -> u8 {
        match self {
            SysvKind::Shm => 0,
            SysvKind::Msg => 1,
            SysvKind::Sem => 2,
        }
    }
}

/// `ptrace(PTRACE_ATTACH, pid)`, detached at once if it worked.
pub fn ptrace_attach(pid: i32) -> Result<(), i32> {
    sys::ptrace_attach(pid)
}

/// Creates a SysV object with `key` (mode 0600, must not exist); its id.
pub fn sysv_create(kind: SysvKind, key: i32) -> Result<i32, i32> {
    sys::sysv_get(kind.code(), key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600)
}

/// Looks up an existing SysV object by `key`; its id.
pub fn sysv_lookup(kind: SysvKind, key: i32) -> Result<i32, i32> {
    sys::sysv_get(kind.code(), key, 0)
}

/// Removes a SysV object by id.
pub fn sysv_remove(kind: SysvKind, id: i32) -> Result<(), i32> {
    sys::sysv_remove(kind.code(), id)
}

/// Creates the POSIX message queue `name` (`/name`), mode 0600, and closes it.
pub fn mq_create(name: &CStr) -> Result<(), i32> {
    sys::mq_open(name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR)
}

/// Opens an existing POSIX message queue read-only and closes it.
pub fn mq_open_existing(name: &CStr) -> Result<(), i32> {
    sys::mq_open(name, libc::O_RDONLY)
}

/// Removes a POSIX message queue.
pub fn mq_unlink(name: &CStr) -> Result<(), i32> {
    sys::mq_unlink(name)
}

/// Reads the kernel log (`dmesg`): the number of bytes it gave.
pub fn syslog_read_all() -> Result<usize, i32> {
    let mut buf = vec![0u8; 16 * 1024];
    sys::syslog_read_all(&mut buf)
}

/// Adds a `user` key to the process keyring; its serial.
pub fn add_user_key(description: &CStr, payload: &[u8]) -> Result<i32, i32> {
    sys::add_user_key(description, payload)
}

/// Moves the calling (single-threaded) process into a new user namespace.
pub fn unshare_user_namespace() -> Result<(), i32> {
    sys::unshare_user()
}
