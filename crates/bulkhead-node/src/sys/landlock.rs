//! `landlock_create_ruleset(2)` in its version-query form.

/// `LANDLOCK_CREATE_RULESET_VERSION` from `<linux/landlock.h>`.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;

/// Asks the kernel for the highest Landlock ABI it supports.
///
/// Returns the ABI version, or the errno: `ENOSYS` when the kernel was built
/// without Landlock, `EOPNOTSUPP` when it was built with it but Landlock is not
/// enabled at boot (missing from `lsm=`).
pub(crate) fn abi_version() -> Result<u32, i32> {
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the
    // kernel reads no user memory and creates no file descriptor; it only
    // returns an integer (the ABI version) or -1 with errno set. The arguments
    // are passed with the widths the syscall ABI expects.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        u32::try_from(ret).map_err(|_| libc::ERANGE)
    }
}

/// `landlock_restrict_self(2)`: enforces the ruleset behind `ruleset` on the
/// calling thread (and what it executes). Needs no_new_privs (or
/// CAP_SYS_ADMIN). Allocates nothing, so it may run between `fork` and
/// `execve`. Returns the errno on failure.
pub(crate) fn restrict_self(ruleset: std::os::fd::BorrowedFd<'_>) -> Result<(), i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: the syscall takes a file descriptor and a flags word and reads
    // no user memory. `ruleset` is a borrowed, open descriptor, so the number
    // stays valid for the duration of the call; flags 0 asks for nothing
    // optional. The kernel checks that the descriptor is a Landlock ruleset.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_restrict_self,
            ruleset.as_raw_fd(),
            0 as libc::c_uint,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    }
}
