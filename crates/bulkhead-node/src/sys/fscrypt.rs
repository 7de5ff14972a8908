//! fscrypt ioctls (`include/uapi/linux/fscrypt.h`, see the kernel's
//! `Documentation/filesystems/fscrypt.rst`, "User API").
//!
//! Struct layouts mirror the UAPI header exactly; their sizes are asserted at
//! compile time, and the ioctl numbers are computed the way `_IOR`/`_IOWR`
//! compute them (and pinned in tests against the values the header yields).

use std::os::fd::{AsRawFd, BorrowedFd};

/// `FSCRYPT_POLICY_V2`.
pub(crate) const POLICY_V2: u8 = 2;
/// `FSCRYPT_KEY_IDENTIFIER_SIZE`.
pub(crate) const KEY_IDENTIFIER_SIZE: usize = 16;
/// `FSCRYPT_MODE_AES_256_XTS`.
pub(crate) const MODE_AES_256_XTS: u8 = 1;
/// `FSCRYPT_MODE_AES_256_CTS`.
pub(crate) const MODE_AES_256_CTS: u8 = 4;
/// `FSCRYPT_POLICY_FLAGS_PAD_32`: pad file names to 32 bytes, hiding
/// their lengths as far as the kernel allows.
pub(crate) const POLICY_FLAGS_PAD_32: u8 = 0x03;
/// `FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER`.
const KEY_SPEC_TYPE_IDENTIFIER: u32 = 2;
/// `FSCRYPT_MAX_KEY_SIZE`.
pub(crate) const MAX_KEY_SIZE: usize = 64;

/// `FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY`.
pub(crate) const REMOVAL_FILES_BUSY: u32 = 0x1;
/// `FSCRYPT_KEY_REMOVAL_STATUS_FLAG_OTHER_USERS`.
pub(crate) const REMOVAL_OTHER_USERS: u32 = 0x2;

/// `FSCRYPT_KEY_STATUS_ABSENT`, `_PRESENT`, `_INCOMPLETELY_REMOVED`.
pub(crate) const KEY_STATUS_ABSENT: u32 = 1;
pub(crate) const KEY_STATUS_PRESENT: u32 = 2;
pub(crate) const KEY_STATUS_INCOMPLETELY_REMOVED: u32 = 3;

/// `struct fscrypt_policy_v1` (only its size matters: it is in the number of
/// `FS_IOC_SET_ENCRYPTION_POLICY`, which reads the version byte first and
/// then the whole structure of that version).
#[repr(C)]
struct PolicyV1 {
    version: u8,
    contents_encryption_mode: u8,
    filenames_encryption_mode: u8,
    flags: u8,
    master_key_descriptor: [u8; 8],
}

/// `struct fscrypt_policy_v2`. Kernels since 6.7 name the first reserved
/// byte `log2_data_unit_size`; 0 means the filesystem block size.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PolicyV2 {
    pub(crate) version: u8,
    pub(crate) contents_encryption_mode: u8,
    pub(crate) filenames_encryption_mode: u8,
    pub(crate) flags: u8,
    pub(crate) log2_data_unit_size: u8,
    pub(crate) reserved: [u8; 3],
    pub(crate) master_key_identifier: [u8; KEY_IDENTIFIER_SIZE],
}

/// `struct fscrypt_get_policy_ex_arg` with the union sized for v2 (the
/// largest member).
#[repr(C)]
struct GetPolicyExArg {
    policy_size: u64,
    policy: PolicyV2,
}

/// `struct fscrypt_key_specifier`.
#[repr(C)]
#[derive(Clone, Copy)]
struct KeySpecifier {
    kind: u32,
    reserved: u32,
    /// The union `u`: 32 bytes, of which an identifier uses the first 16.
    u: [u8; 32],
}

/// `struct fscrypt_add_key_arg` followed by room for the raw key (the
/// header's flexible array member `raw[]`).
#[repr(C)]
struct AddKeyArg {
    key_spec: KeySpecifier,
    raw_size: u32,
    key_id: u32,
    /// `flags` and `__reserved[7]` (older headers: `__reserved[8]`).
    reserved: [u32; 8],
    raw: [u8; MAX_KEY_SIZE],
}

/// `struct fscrypt_remove_key_arg`.
#[repr(C)]
struct RemoveKeyArg {
    key_spec: KeySpecifier,
    removal_status_flags: u32,
    reserved: [u32; 5],
}

/// `struct fscrypt_get_key_status_arg`.
#[repr(C)]
struct GetKeyStatusArg {
    key_spec: KeySpecifier,
    reserved: [u32; 6],
    status: u32,
    status_flags: u32,
    user_count: u32,
    out_reserved: [u32; 13],
}

/// Header size of `fscrypt_add_key_arg` (without `raw[]`), as the kernel's
/// `sizeof` sees it and as encoded in the ioctl number.
const ADD_KEY_ARG_HEADER: usize = 80;

const _: () = {
    assert!(size_of::<PolicyV1>() == 12);
    assert!(size_of::<PolicyV2>() == 24);
    assert!(size_of::<GetPolicyExArg>() == 32);
    assert!(size_of::<KeySpecifier>() == 40);
    assert!(size_of::<AddKeyArg>() == ADD_KEY_ARG_HEADER + MAX_KEY_SIZE);
    assert!(std::mem::offset_of!(AddKeyArg, raw) == ADD_KEY_ARG_HEADER);
    assert!(size_of::<RemoveKeyArg>() == 64);
    assert!(size_of::<GetKeyStatusArg>() == 128);
};

/// `_IOC(dir, type, nr, size)` for the asm-generic layout (x86, arm64,
/// riscv): `dir << 30 | size << 16 | type << 8 | nr`.
const fn ioc(dir: u32, kind: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((kind as u32) << 8) | nr as u32
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

pub(crate) const FS_IOC_SET_ENCRYPTION_POLICY: u32 = ioc(IOC_READ, b'f', 19, size_of::<PolicyV1>());
pub(crate) const FS_IOC_GET_ENCRYPTION_POLICY_EX: u32 = ioc(IOC_READ | IOC_WRITE, b'f', 22, 9);
pub(crate) const FS_IOC_ADD_ENCRYPTION_KEY: u32 =
    ioc(IOC_READ | IOC_WRITE, b'f', 23, ADD_KEY_ARG_HEADER);
pub(crate) const FS_IOC_REMOVE_ENCRYPTION_KEY: u32 =
    ioc(IOC_READ | IOC_WRITE, b'f', 24, size_of::<RemoveKeyArg>());
pub(crate) const FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS: u32 =
    ioc(IOC_READ | IOC_WRITE, b'f', 25, size_of::<RemoveKeyArg>());
pub(crate) const FS_IOC_GET_ENCRYPTION_KEY_STATUS: u32 =
    ioc(IOC_READ | IOC_WRITE, b'f', 26, size_of::<GetKeyStatusArg>());

fn identifier_spec(identifier: &[u8; KEY_IDENTIFIER_SIZE]) -> KeySpecifier {
    let mut u = [0u8; 32];
    u[..KEY_IDENTIFIER_SIZE].copy_from_slice(identifier);
    KeySpecifier {
        kind: KEY_SPEC_TYPE_IDENTIFIER,
        reserved: 0,
        u,
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A zeroing wrapper so the copy of the key inside the ioctl argument does
/// not outlive the call.
struct ScrubOnDrop(AddKeyArg);

impl Drop for ScrubOnDrop {
    fn drop(&mut self) {
        for byte in self.0.raw.iter_mut() {
            // SAFETY: `byte` is a valid, aligned, exclusive reference to a
            // u8 inside `self`; a volatile write through it is sound and is
            // not elided by the optimiser.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

/// `FS_IOC_ADD_ENCRYPTION_KEY` with a v2 (identifier) key specifier: gives
/// `raw` to the filesystem of `fd` and returns the key identifier the kernel
/// derived from it.
pub(crate) fn add_key(fd: BorrowedFd<'_>, raw: &[u8]) -> Result<[u8; KEY_IDENTIFIER_SIZE], i32> {
    if raw.is_empty() || raw.len() > MAX_KEY_SIZE {
        return Err(libc::EINVAL);
    }
    let mut arg = ScrubOnDrop(AddKeyArg {
        key_spec: KeySpecifier {
            kind: KEY_SPEC_TYPE_IDENTIFIER,
            reserved: 0,
            u: [0; 32],
        },
        raw_size: raw.len() as u32,
        key_id: 0,
        reserved: [0; 8],
        raw: [0; MAX_KEY_SIZE],
    });
    arg.0.raw[..raw.len()].copy_from_slice(raw);
    // SAFETY: `arg` is a live, properly aligned `fscrypt_add_key_arg` whose
    // header matches the UAPI layout (asserted above) and is followed by
    // `raw_size` valid key bytes, which is everything the kernel reads; it
    // writes back only the identifier inside `key_spec`. `fd` is open for
    // the duration of the call.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            FS_IOC_ADD_ENCRYPTION_KEY as _,
            &raw mut arg.0,
        )
    };
    if ret < 0 {
        return Err(errno());
    }
    let mut identifier = [0u8; KEY_IDENTIFIER_SIZE];
    identifier.copy_from_slice(&arg.0.key_spec.u[..KEY_IDENTIFIER_SIZE]);
    Ok(identifier)
}

/// `FS_IOC_REMOVE_ENCRYPTION_KEY` (or its `_ALL_USERS` variant) for a v2
/// key; returns `removal_status_flags`.
pub(crate) fn remove_key(
    fd: BorrowedFd<'_>,
    identifier: &[u8; KEY_IDENTIFIER_SIZE],
    all_users: bool,
) -> Result<u32, i32> {
    let mut arg = RemoveKeyArg {
        key_spec: identifier_spec(identifier),
        removal_status_flags: 0,
        reserved: [0; 5],
    };
    let request = if all_users {
        FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS
    } else {
        FS_IOC_REMOVE_ENCRYPTION_KEY
    };
    // SAFETY: `arg` is a live, aligned `fscrypt_remove_key_arg` of exactly
    // the size encoded in `request`; the kernel reads the specifier and
    // writes `removal_status_flags` inside it. `fd` is open.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &raw mut arg) };
    if ret < 0 {
        return Err(errno());
    }
    Ok(arg.removal_status_flags)
}

/// `FS_IOC_GET_ENCRYPTION_KEY_STATUS`: (status, status_flags, user_count).
pub(crate) fn key_status(
    fd: BorrowedFd<'_>,
    identifier: &[u8; KEY_IDENTIFIER_SIZE],
) -> Result<(u32, u32, u32), i32> {
    let mut arg = GetKeyStatusArg {
        key_spec: identifier_spec(identifier),
        reserved: [0; 6],
        status: 0,
        status_flags: 0,
        user_count: 0,
        out_reserved: [0; 13],
    };
    // SAFETY: `arg` is a live, aligned `fscrypt_get_key_status_arg` of the
    // size encoded in the request; the kernel reads the specifier and
    // writes the status fields inside it. `fd` is open.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            FS_IOC_GET_ENCRYPTION_KEY_STATUS as _,
            &raw mut arg,
        )
    };
    if ret < 0 {
        return Err(errno());
    }
    Ok((arg.status, arg.status_flags, arg.user_count))
}

/// `FS_IOC_SET_ENCRYPTION_POLICY` with a v2 policy on the directory `fd`.
pub(crate) fn set_policy(fd: BorrowedFd<'_>, policy: &PolicyV2) -> Result<(), i32> {
    // SAFETY: the kernel reads the version byte, sees 2 and copies
    // `sizeof(struct fscrypt_policy_v2)` = 24 bytes, which `policy` (a live
    // `#[repr(C)]` value of that layout) provides; it writes nothing. `fd`
    // is open.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            FS_IOC_SET_ENCRYPTION_POLICY as _,
            std::ptr::from_ref(policy),
        )
    };
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

/// `FS_IOC_GET_ENCRYPTION_POLICY_EX`: the policy of `fd`, `Ok(None)` when
/// it has none (`ENODATA`). A v1 policy (which bulkhead never sets) is
/// returned as `Err(EPROTO)`-like `Err(libc::EPROTO)`.
pub(crate) fn get_policy(fd: BorrowedFd<'_>) -> Result<Option<PolicyV2>, i32> {
    let mut arg = GetPolicyExArg {
        policy_size: size_of::<PolicyV2>() as u64,
        policy: PolicyV2::default(),
    };
    // SAFETY: `arg` is a live, aligned `fscrypt_get_policy_ex_arg` whose
    // `policy_size` says how many bytes follow (24, the v2 size); the
    // kernel writes at most that many and updates `policy_size`. `fd` is
    // open.
    let ret = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            FS_IOC_GET_ENCRYPTION_POLICY_EX as _,
            &raw mut arg,
        )
    };
    if ret < 0 {
        let e = errno();
        return if e == libc::ENODATA { Ok(None) } else { Err(e) };
    }
    if arg.policy.version != POLICY_V2 || arg.policy_size != size_of::<PolicyV2>() as u64 {
        return Err(libc::EPROTO);
    }
    Ok(Some(arg.policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values `<linux/fscrypt.h>` gives on x86_64 and arm64.
    #[test]
    fn ioctl_numbers_match_the_uapi_header() {
        assert_eq!(FS_IOC_SET_ENCRYPTION_POLICY, 0x800c_6613);
        assert_eq!(FS_IOC_GET_ENCRYPTION_POLICY_EX, 0xc009_6616);
        assert_eq!(FS_IOC_ADD_ENCRYPTION_KEY, 0xc050_6617);
        assert_eq!(FS_IOC_REMOVE_ENCRYPTION_KEY, 0xc040_6618);
        assert_eq!(FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, 0xc040_6619);
        assert_eq!(FS_IOC_GET_ENCRYPTION_KEY_STATUS, 0xc080_661a);
    }
}
