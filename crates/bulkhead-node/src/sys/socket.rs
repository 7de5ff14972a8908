//! Socket options `rustix` does not offer.

use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd};

/// `SO_BINDTODEVICE`: the socket sees and sends only through `device`, and
/// may share its address and port with sockets bound to other devices (two
/// instances whose bridges carry the same address each run a resolver).
pub(crate) fn bind_to_device(fd: BorrowedFd<'_>, device: &str) -> io::Result<()> {
    let bytes = device.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let len = libc::socklen_t::try_from(bytes.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `fd` is a live socket borrowed for the call; the kernel reads
    // exactly `len` bytes from `bytes`, which outlives the call (the option
    // takes a name without its NUL when the length says so).
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            bytes.as_ptr().cast(),
            len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
