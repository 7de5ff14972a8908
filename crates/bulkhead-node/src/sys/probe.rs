//! A fixed table of syscall attempts a probe makes to find out whether a
//! seccomp filter denies them, and the raw call that makes them.
//!
//! Every attempt is chosen so that, if nothing denies it, the kernel rejects
//! it on its own (bad file descriptor, bad pointer, bad flags) or it does
//! nothing: pointers are the address [`BAD`], which is never mapped, so the
//! kernel's `copy_from_user` fails with `EFAULT` and no memory of ours is read
//! or written; pids are above `pid_max`; flags carry a bit or combination the
//! kernel refuses. An unfiltered attempt therefore never returns `EPERM` for a
//! caller with full capabilities, so `EPERM` means "denied by the filter".

use libc::c_long;

/// An address that is never mapped (the first page is reserved).
const BAD: c_long = 1;
/// A pid above any `pid_max` (2^22).
const NO_PID: c_long = 0x7fff_fff0;
/// An invalid file descriptor.
const NO_FD: c_long = -1;
/// An invalid clock id.
const NO_CLOCK: c_long = -1;

/// One attempt: the syscall's name, its number on this architecture and its
/// six arguments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub(crate) name: &'static str,
    pub(crate) nr: c_long,
    pub(crate) args: [c_long; 6],
}

const fn attempt(name: &'static str, nr: c_long, args: [c_long; 6]) -> Attempt {
    Attempt { name, nr, args }
}

/// The x32 ABI bit (`__X32_SYSCALL_BIT`).
#[cfg(target_arch = "x86_64")]
const X32: c_long = 0x4000_0000;

/// Attempts for every syscall a bulkhead profile may deny (see the module
/// docs for why each is harmless when not denied).
pub(crate) const ATTEMPTS: &[Attempt] = &[
    attempt("mount", libc::SYS_mount, [BAD, BAD, BAD, 0, 0, 0]),
    attempt("umount2", libc::SYS_umount2, [BAD, 0, 0, 0, 0, 0]),
    attempt("pivot_root", libc::SYS_pivot_root, [BAD, BAD, 0, 0, 0, 0]),
    attempt("chroot", libc::SYS_chroot, [BAD, 0, 0, 0, 0, 0]),
    attempt("fsopen", libc::SYS_fsopen, [BAD, 0, 0, 0, 0, 0]),
    attempt("fsconfig", libc::SYS_fsconfig, [NO_FD, 0, 0, 0, 0, 0]),
    attempt("fsmount", libc::SYS_fsmount, [NO_FD, 0, 0, 0, 0, 0]),
    attempt("fspick", libc::SYS_fspick, [NO_FD, BAD, 0, 0, 0, 0]),
    attempt(
        "move_mount",
        libc::SYS_move_mount,
        [NO_FD, BAD, NO_FD, BAD, 0, 0],
    ),
    attempt("open_tree", libc::SYS_open_tree, [NO_FD, BAD, 0, 0, 0, 0]),
    attempt(
        "mount_setattr",
        libc::SYS_mount_setattr,
        [NO_FD, BAD, 0, BAD, 0, 0],
    ),
    // Bit 0 is not an unshare flag: EINVAL before anything is unshared.
    attempt(
        "unshare",
        libc::SYS_unshare,
        [libc::CLONE_NEWUSER as c_long | 1, 0, 0, 0, 0, 0],
    ),
    attempt("setns", libc::SYS_setns, [NO_FD, 0, 0, 0, 0, 0]),
    // CLONE_NEWUSER with CLONE_FS is refused (EINVAL) before any task exists.
    attempt(
        "clone",
        libc::SYS_clone,
        [
            (libc::CLONE_NEWUSER | libc::CLONE_FS) as c_long,
            0,
            0,
            0,
            0,
            0,
        ],
    ),
    attempt("clone3", libc::SYS_clone3, [BAD, 88, 0, 0, 0, 0]),
    attempt("keyctl", libc::SYS_keyctl, [-1, 0, 0, 0, 0, 0]),
    attempt("add_key", libc::SYS_add_key, [BAD, BAD, BAD, 0, 0, 0]),
    attempt(
        "request_key",
        libc::SYS_request_key,
        [BAD, BAD, BAD, 0, 0, 0],
    ),
    attempt("bpf", libc::SYS_bpf, [-1, 0, 0, 0, 0, 0]),
    attempt(
        "perf_event_open",
        libc::SYS_perf_event_open,
        [BAD, 0, -1, -1, 0, 0],
    ),
    attempt(
        "ptrace",
        libc::SYS_ptrace,
        [libc::PTRACE_ATTACH as c_long, NO_PID, 0, 0, 0, 0],
    ),
    attempt(
        "process_vm_readv",
        libc::SYS_process_vm_readv,
        [NO_PID, BAD, 1, BAD, 1, 0],
    ),
    attempt(
        "process_vm_writev",
        libc::SYS_process_vm_writev,
        [NO_PID, BAD, 1, BAD, 1, 0],
    ),
    attempt("kcmp", libc::SYS_kcmp, [NO_PID, NO_PID, 0, 0, 0, 0]),
    attempt("pidfd_getfd", libc::SYS_pidfd_getfd, [NO_FD, 0, 0, 0, 0, 0]),
    // Flags with an unknown architecture: EINVAL.
    attempt(
        "kexec_load",
        libc::SYS_kexec_load,
        [0, 0, 0, 0x7fff_0000, 0, 0],
    ),
    attempt(
        "kexec_file_load",
        libc::SYS_kexec_file_load,
        [NO_FD, NO_FD, 0, 0, -1, 0],
    ),
    // Without the magic numbers: EINVAL.
    attempt("reboot", libc::SYS_reboot, [0, 0, 0, 0, 0, 0]),
    attempt("init_module", libc::SYS_init_module, [BAD, 0, BAD, 0, 0, 0]),
    attempt(
        "finit_module",
        libc::SYS_finit_module,
        [NO_FD, BAD, 0, 0, 0, 0],
    ),
    attempt(
        "delete_module",
        libc::SYS_delete_module,
        [BAD, 0, 0, 0, 0, 0],
    ),
    attempt(
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
        [NO_FD, BAD, 0, 0, 0, 0],
    ),
    attempt(
        "name_to_handle_at",
        libc::SYS_name_to_handle_at,
        [NO_FD, BAD, BAD, BAD, 0, 0],
    ),
    attempt(
        "userfaultfd",
        libc::SYS_userfaultfd,
        [0x7fff_0000, 0, 0, 0, 0, 0],
    ),
    attempt(
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        [0, BAD, 0, 0, 0, 0],
    ),
    attempt(
        "io_uring_enter",
        libc::SYS_io_uring_enter,
        [NO_FD, 0, 0, 0, 0, 0],
    ),
    attempt(
        "io_uring_register",
        libc::SYS_io_uring_register,
        [NO_FD, 0, 0, 0, 0, 0],
    ),
    attempt(
        "clock_settime",
        libc::SYS_clock_settime,
        [NO_CLOCK, BAD, 0, 0, 0, 0],
    ),
    attempt(
        "clock_adjtime",
        libc::SYS_clock_adjtime,
        [NO_CLOCK, BAD, 0, 0, 0, 0],
    ),
    // Both pointers NULL: sets nothing.
    attempt("settimeofday", libc::SYS_settimeofday, [0, 0, 0, 0, 0, 0]),
    attempt("adjtimex", libc::SYS_adjtimex, [BAD, 0, 0, 0, 0, 0]),
    attempt("swapon", libc::SYS_swapon, [BAD, 0, 0, 0, 0, 0]),
    attempt("swapoff", libc::SYS_swapoff, [BAD, 0, 0, 0, 0, 0]),
    attempt("acct", libc::SYS_acct, [BAD, 0, 0, 0, 0, 0]),
    attempt("quotactl", libc::SYS_quotactl, [0, BAD, 0, BAD, 0, 0]),
    attempt(
        "quotactl_fd",
        libc::SYS_quotactl_fd,
        [NO_FD, 0, 0, BAD, 0, 0],
    ),
    attempt("syslog", libc::SYS_syslog, [-1, 0, 0, 0, 0, 0]),
    // Only meaningful with a controlling terminal; the probe calls setsid()
    // first, so it has none.
    attempt("vhangup", libc::SYS_vhangup, [0, 0, 0, 0, 0, 0]),
    // Level 0 and an empty range change nothing.
    #[cfg(target_arch = "x86_64")]
    attempt("iopl", libc::SYS_iopl, [0, 0, 0, 0, 0, 0]),
    #[cfg(target_arch = "x86_64")]
    attempt("ioperm", libc::SYS_ioperm, [0, 0, 0, 0, 0, 0]),
    // Reading zero bytes of the LDT.
    #[cfg(target_arch = "x86_64")]
    attempt("modify_ldt", libc::SYS_modify_ldt, [0, BAD, 0, 0, 0, 0]),
    #[cfg(target_arch = "x86_64")]
    attempt("uselib", libc::SYS_uselib, [BAD, 0, 0, 0, 0, 0]),
];

/// `getpid` through the x32 ABI: `EPERM` under the x32 rule, `ENOSYS` (or a
/// pid, on a kernel with x32 enabled) without it.
#[cfg(target_arch = "x86_64")]
pub(crate) const X32_GETPID: Attempt = attempt("x32 getpid", X32 | libc::SYS_getpid, [0; 6]);

/// Makes `attempt`; returns the syscall's result or its errno.
pub(crate) fn make(attempt: &Attempt) -> Result<c_long, i32> {
    let [a, b, c, d, e, f] = attempt.args;
    // SAFETY: `attempt` comes from the fixed tables above (the type cannot be
    // built outside this module's crate with other values, and the crate only
    // passes these). Each entry passes integers, an unmapped address, invalid
    // descriptors, pids or flags, so the kernel either rejects the call before
    // acting or the call is a documented no-op (see each entry); no memory of
    // this process is read, written, mapped or unmapped, and no task is
    // created, so Rust's invariants cannot be broken by the call.
    let ret = unsafe { libc::syscall(attempt.nr, a, b, c, d, e, f) };
    if ret < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(ret)
    }
}
