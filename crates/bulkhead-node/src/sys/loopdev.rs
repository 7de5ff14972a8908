//! Loop device ioctls (`include/uapi/linux/loop.h`).

use std::os::fd::{AsRawFd, BorrowedFd};

/// `LOOP_SET_FD`.
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
/// `LOOP_CLR_FD`.
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
/// `LOOP_SET_STATUS64`.
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
/// `LOOP_GET_STATUS64`.
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
/// `LOOP_CONFIGURE` (Linux 5.8).
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
/// `LOOP_CTL_GET_FREE`, on `/dev/loop-control`.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// `LO_FLAGS_AUTOCLEAR`: detach when the last user closes the device.
pub(crate) const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// `LO_NAME_SIZE`.
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct LoopInfo64 {
    pub(crate) lo_device: u64,
    pub(crate) lo_inode: u64,
    pub(crate) lo_rdevice: u64,
    pub(crate) lo_offset: u64,
    pub(crate) lo_sizelimit: u64,
    pub(crate) lo_number: u32,
    pub(crate) lo_encrypt_type: u32,
    pub(crate) lo_encrypt_key_size: u32,
    pub(crate) lo_flags: u32,
    pub(crate) lo_file_name: [u8; LO_NAME_SIZE],
    pub(crate) lo_crypt_name: [u8; LO_NAME_SIZE],
    pub(crate) lo_encrypt_key: [u8; 32],
    pub(crate) lo_init: [u64; 2],
}

impl LoopInfo64 {
    pub(crate) fn zeroed() -> LoopInfo64 {
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: 0,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }

    /// Sets `lo_file_name` (informational: what `losetup -l` shows when
    /// sysfs is missing), cut to fit with its NUL.
    pub(crate) fn set_file_name(&mut self, name: &[u8]) {
        let n = name.len().min(LO_NAME_SIZE - 1);
        self.lo_file_name = [0; LO_NAME_SIZE];
        self.lo_file_name[..n].copy_from_slice(&name[..n]);
    }
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = {
    assert!(size_of::<LoopInfo64>() == 232);
    assert!(size_of::<LoopConfig>() == 304);
};

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `LOOP_CTL_GET_FREE`: the number of a free loop device, allocating one if
/// none is free.
pub(crate) fn get_free(control: BorrowedFd<'_>) -> Result<u32, i32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and touches no user
    // memory; it returns a device number or -1. `control` is open.
    let ret = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    if ret < 0 {
        Err(errno())
    } else {
        u32::try_from(ret).map_err(|_| libc::ERANGE)
    }
}

/// `LOOP_CONFIGURE`: binds `backing` to the loop device `dev` with `info`
/// in one step (no window where the device exists without its flags).
pub(crate) fn configure(
    dev: BorrowedFd<'_>,
    backing: BorrowedFd<'_>,
    info: &LoopInfo64,
) -> Result<(), i32> {
    let fd = u32::try_from(backing.as_raw_fd()).map_err(|_| libc::EBADF)?;
    let config = LoopConfig {
        fd,
        block_size: 0,
        info: *info,
        reserved: [0; 8],
    };
    // SAFETY: `config` is a live, aligned `struct loop_config` (size
    // asserted); the kernel only reads it. Both descriptors are open for
    // the call; the kernel takes its own reference to the backing file.
    let ret = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &raw const config) };
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

/// `LOOP_SET_FD`: the pre-5.8 first half of [`configure`].
pub(crate) fn set_fd(dev: BorrowedFd<'_>, backing: BorrowedFd<'_>) -> Result<(), i32> {
    // SAFETY: LOOP_SET_FD takes the backing descriptor as an integer
    // argument and reads no user memory; both descriptors are open.
    let ret = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_FD as _,
            backing.as_raw_fd() as libc::c_ulong,
        )
    };
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

/// `LOOP_SET_STATUS64`.
pub(crate) fn set_status(dev: BorrowedFd<'_>, info: &LoopInfo64) -> Result<(), i32> {
    // SAFETY: `info` is a live, aligned `struct loop_info64` (size
    // asserted) that the kernel only reads. `dev` is open.
    let ret = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_STATUS64 as _,
            std::ptr::from_ref(info),
        )
    };
    if ret < 0 { Err(errno()) } else { Ok(()) }
}

/// `LOOP_GET_STATUS64`; `ENXIO` when the device is not bound.
pub(crate) fn get_status(dev: BorrowedFd<'_>) -> Result<LoopInfo64, i32> {
    let mut info = LoopInfo64::zeroed();
    // SAFETY: `info` is a live, aligned, writable `struct loop_info64`;
    // the kernel fills it and reads nothing else. `dev` is open.
    let ret = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_GET_STATUS64 as _, &raw mut info) };
    if ret < 0 { Err(errno()) } else { Ok(info) }
}

/// `LOOP_CLR_FD`. On a device still in use the kernel marks it autoclear
/// instead and returns success (Linux 5.x+), or `EBUSY` on older kernels.
pub(crate) fn clear_fd(dev: BorrowedFd<'_>) -> Result<(), i32> {
    // SAFETY: LOOP_CLR_FD takes no argument and touches no user memory.
    let ret = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _) };
    if ret < 0 { Err(errno()) } else { Ok(()) }
}
