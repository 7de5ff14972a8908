//! Raw calls the isolation verifier's probe attempts from inside a tenant
//! (`crate::attempt` is the safe face). Each either touches only kernel
//! objects named by integers and strings, or memory this module owns for the
//! duration of the call.

use std::ffi::CStr;

use libc::c_long;

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

fn check(ret: c_long) -> Result<c_long, i32> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

/// `ptrace(PTRACE_ATTACH, pid)`; on success `PTRACE_DETACH` at once.
pub(crate) fn ptrace_attach(pid: i32) -> Result<(), i32> {
    // SAFETY: PTRACE_ATTACH takes a pid and ignores addr/data; it reads or
    // writes no memory of ours.
    let ret = unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    check(ret)?;
    // SAFETY: as above; PTRACE_DETACH with signal 0.
    let _ = unsafe {
        libc::ptrace(
            libc::PTRACE_DETACH,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    Ok(())
}

/// `shmget`/`msgget`/`semget` with `key` and `flags` (one page, one semaphore).
pub(crate) fn sysv_get(kind: u8, key: i32, flags: i32) -> Result<i32, i32> {
    // SAFETY: the three calls take only integers and create or look up a
    // kernel object; no memory of ours is passed.
    let ret = unsafe {
        match kind {
            0 => libc::shmget(key, 4096, flags),
            1 => libc::msgget(key, flags),
            _ => libc::semget(key, 1, flags),
        }
    };
    check(ret as c_long).map(|id| id as i32)
}

/// `IPC_RMID` of a SysV object.
pub(crate) fn sysv_remove(kind: u8, id: i32) -> Result<(), i32> {
    // SAFETY: IPC_RMID ignores the buffer argument (null), so no memory of
    // ours is read or written.
    let ret = unsafe {
        match kind {
            0 => libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            1 => libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()),
            _ => libc::semctl(id, 0, libc::IPC_RMID),
        }
    };
    check(ret as c_long).map(drop)
}

/// `mq_open(name, flags, 0600, NULL)`, closing the descriptor again.
pub(crate) fn mq_open(name: &CStr, flags: i32) -> Result<(), i32> {
    // SAFETY: `name` is a valid NUL-terminated string for the call; a null
    // attribute pointer asks for the defaults.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_mq_open,
            name.as_ptr()
                .wrapping_add(usize::from(name.to_bytes().first() == Some(&b'/'))),
            flags as c_long,
            0o600 as c_long,
            0 as c_long,
        )
    };
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned to us and is closed once.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// `mq_unlink(name)`.
pub(crate) fn mq_unlink(name: &CStr) -> Result<(), i32> {
    // SAFETY: as in `mq_open`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mq_unlink,
            name.as_ptr()
                .wrapping_add(usize::from(name.to_bytes().first() == Some(&b'/'))),
        )
    };
    check(ret).map(drop)
}

/// `syslog(SYSLOG_ACTION_READ_ALL)` into `buf`; the number of bytes read.
pub(crate) fn syslog_read_all(buf: &mut [u8]) -> Result<usize, i32> {
    let len = i32::try_from(buf.len()).unwrap_or(i32::MAX);
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which we own
    // mutably for the call.
    let ret = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), len) };
    check(ret as c_long).map(|n| n as usize)
}

/// `add_key("user", description, payload, KEY_SPEC_PROCESS_KEYRING)`.
pub(crate) fn add_user_key(description: &CStr, payload: &[u8]) -> Result<i32, i32> {
    const KEY_SPEC_PROCESS_KEYRING: c_long = -2;
    // SAFETY: both strings are NUL-terminated and the payload pointer and
    // length describe a slice we borrow for the call; the kernel copies them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            description.as_ptr(),
            payload.as_ptr(),
            payload.len() as c_long,
            KEY_SPEC_PROCESS_KEYRING,
        )
    };
    check(ret).map(|serial| serial as i32)
}

/// `unshare(CLONE_NEWUSER)` of the calling process.
pub(crate) fn unshare_user() -> Result<(), i32> {
    // SAFETY: only CLONE_NEWUSER: it changes this process's credentials, not
    // its memory, file table or filesystem context that other code relies
    // on; the kernel refuses it (EINVAL) in a multi-threaded process.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
        .map_err(|e| e.raw_os_error())
}
