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
