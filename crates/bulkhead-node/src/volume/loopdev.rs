//! Loop devices: finding the one that backs an image, attaching one,
//! arming autoclear, detaching.
//!
//! Attach takes a free device from `/dev/loop-control` (`LOOP_CTL_GET_FREE`)
//! and binds the image with `LOOP_CONFIGURE` (Linux 5.8+), falling back to
//! `LOOP_SET_FD` + `LOOP_SET_STATUS64` on kernels without it. A device that
//! already backs the image — found through `/sys/block/loop*/loop/backing_file`
//! and confirmed by inode through `LOOP_GET_STATUS64` — is reused instead,
//! so a crash between attach and mount leaks at most one device per image,
//! and the next attach picks it up.
//!
//! Attach does not set `LO_FLAGS_AUTOCLEAR`: with it, the device would
//! vanish the moment the attaching descriptor closes, so attach and mount
//! could not be separate, idempotent steps. Mount arms autoclear right after
//! the filesystem holds the device ([`arm_autoclear`]); from then on,
//! unmounting releases the device by itself, even if bulkhead is gone.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys::loopdev as sys;

/// A loop device bound to an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoopDevice {
    /// N in `/dev/loopN`.
    pub number: u32,
    /// `/dev/loopN` (under the configured `/dev`).
    pub path: PathBuf,
    /// Block device major number (7 for loop), for io limits.
    pub major: u32,
    /// Block device minor number.
    pub minor: u32,
    /// The backing file as the kernel reports it.
    pub backing_file: PathBuf,
    /// Whether the device detaches itself when its last user closes it.
    pub autoclear: bool,
}

impl LoopDevice {
    /// `major:minor`, the form cgroup io files take.
    pub fn dev_t(&self) -> String {
        format!("{}:{}", self.major, self.minor)
    }
}

/// Why a loop device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("{path}: could not open (expected the loop driver: `modprobe loop`)")]
    OpenControl {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not open the loop device")]
    OpenDevice {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not open the image to attach")]
    OpenImage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{device}: {op} failed for image {image}")]
    Ioctl {
        device: PathBuf,
        image: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not read loop devices from sysfs")]
    Sysfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "could not find a free loop device for {image} after {attempts} attempts (others kept taking them)"
    )]
    NoFreeDevice { image: PathBuf, attempts: u32 },
    #[error(
        "{device}: still backs {image} {waited:?} after detaching (expected the kernel to release it; is it mounted elsewhere or open?)"
    )]
    StillAttached {
        device: PathBuf,
        image: PathBuf,
        waited: Duration,
    },
}

/// How often attach retries when another process takes the free device
/// between `LOOP_CTL_GET_FREE` and `LOOP_CONFIGURE`.
const ATTACH_ATTEMPTS: u32 = 16;

/// How long detach waits for the kernel to release a device.
const DETACH_WAIT: Duration = Duration::from_secs(5);

/// The loop device that backs `image`, if any.
pub fn find_backing(
    sys_root: &Path,
    dev: &Path,
    image: &Path,
) -> Result<Option<LoopDevice>, LoopError> {
    let image_meta = match std::fs::metadata(image) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LoopError::OpenImage {
                path: image.to_path_buf(),
                source,
            });
        }
    };
    let canonical = std::fs::canonicalize(image).map_err(|source| LoopError::OpenImage {
        path: image.to_path_buf(),
        source,
    })?;
    let block = sys_root.join("block");
    let entries = std::fs::read_dir(&block).map_err(|source| LoopError::Sysfs {
        path: block.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| LoopError::Sysfs {
            path: block.clone(),
            source,
        })?;
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_prefix("loop"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        // `loop/` exists only while the device is bound.
        let Ok(backing) = std::fs::read(dir.join("loop/backing_file")) else {
            continue;
        };
        let backing = PathBuf::from(std::ffi::OsStr::from_bytes(backing.trim_ascii_end()));
        if backing != canonical {
            continue;
        }
        let device = dev.join(format!("loop{number}"));
        // Confirm by inode: the path could name a replaced file.
        let file = open_device(&device, false)?;
        match sys::get_status(file.as_fd()) {
            Ok(info) if info.lo_inode == image_meta.ino() => {}
            Ok(_) | Err(libc::ENXIO) => continue,
            Err(errno) => {
                return Err(ioctl_error(&device, image, "LOOP_GET_STATUS64", errno));
            }
        }
        let (major, minor) = read_dev(&dir)?;
        let autoclear = std::fs::read_to_string(dir.join("loop/autoclear"))
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        return Ok(Some(LoopDevice {
            number,
            path: device,
            major,
            minor,
            backing_file: backing,
            autoclear,
        }));
    }
    Ok(None)
}

/// Binds `image` to a loop device, reusing one that already backs it.
/// Returns the device and whether it was reused.
pub fn attach(sys_root: &Path, dev: &Path, image: &Path) -> Result<(LoopDevice, bool), LoopError> {
    if let Some(existing) = find_backing(sys_root, dev, image)? {
        return Ok((existing, true));
    }
    let control_path = dev.join("loop-control");
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&control_path)
        .map_err(|source| LoopError::OpenControl {
            path: control_path.clone(),
            source,
        })?;
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(image)
        .map_err(|source| LoopError::OpenImage {
            path: image.to_path_buf(),
            source,
        })?;
    let canonical = std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    let mut info = sys::LoopInfo64::zeroed();
    info.set_file_name(canonical.as_os_str().as_bytes());

    for _ in 0..ATTACH_ATTEMPTS {
        let number = sys::get_free(control.as_fd())
            .map_err(|errno| ioctl_error(&control_path, image, "LOOP_CTL_GET_FREE", errno))?;
        let device = dev.join(format!("loop{number}"));
        let file = open_device(&device, true)?;
        match sys::configure(file.as_fd(), backing.as_fd(), &info) {
            Ok(()) => {}
            // Another process bound it first: take the next free one.
            Err(libc::EBUSY) => continue,
            // No LOOP_CONFIGURE (before 5.8): two steps.
            Err(libc::EINVAL | libc::ENOTTY) => {
                match sys::set_fd(file.as_fd(), backing.as_fd()) {
                    Ok(()) => {}
                    Err(libc::EBUSY) => continue,
                    Err(errno) => return Err(ioctl_error(&device, image, "LOOP_SET_FD", errno)),
                }
                if let Err(errno) = sys::set_status(file.as_fd(), &info) {
                    let _ = sys::clear_fd(file.as_fd());
                    return Err(ioctl_error(&device, image, "LOOP_SET_STATUS64", errno));
                }
            }
            Err(errno) => return Err(ioctl_error(&device, image, "LOOP_CONFIGURE", errno)),
        }
        let sys_dir = sys_root.join("block").join(format!("loop{number}"));
        let (major, minor) = read_dev(&sys_dir)?;
        return Ok((
            LoopDevice {
                number,
                path: device,
                major,
                minor,
                backing_file: canonical,
                autoclear: false,
            },
            false,
        ));
    }
    Err(LoopError::NoFreeDevice {
        image: image.to_path_buf(),
        attempts: ATTACH_ATTEMPTS,
    })
}

/// Sets `LO_FLAGS_AUTOCLEAR` on a bound device, keeping its other settings.
pub fn arm_autoclear(device: &LoopDevice, image: &Path) -> Result<(), LoopError> {
    if device.autoclear {
        return Ok(());
    }
    let file = open_device(&device.path, false)?;
    let mut info = sys::get_status(file.as_fd())
        .map_err(|errno| ioctl_error(&device.path, image, "LOOP_GET_STATUS64", errno))?;
    info.lo_flags |= sys::LO_FLAGS_AUTOCLEAR;
    sys::set_status(file.as_fd(), &info)
        .map_err(|errno| ioctl_error(&device.path, image, "LOOP_SET_STATUS64", errno))
}

/// Unbinds whatever loop device backs `image` and waits until the kernel
/// has let go of it. Returns whether there was one. The caller unmounts
/// first: on a device still in use the kernel only arms autoclear, and this
/// reports [`LoopError::StillAttached`].
pub fn detach(sys_root: &Path, dev: &Path, image: &Path) -> Result<bool, LoopError> {
    let Some(device) = find_backing(sys_root, dev, image)? else {
        return Ok(false);
    };
    let started = Instant::now();
    // An autoclear device may be on its way out after an unmount; give the
    // kernel a moment before clearing it ourselves.
    while started.elapsed() < Duration::from_millis(200) {
        if find_backing(sys_root, dev, image)?.is_none() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let file = open_device(&device.path, false)?;
    match sys::clear_fd(file.as_fd()) {
        Ok(()) | Err(libc::ENXIO) => {}
        Err(errno) => return Err(ioctl_error(&device.path, image, "LOOP_CLR_FD", errno)),
    }
    drop(file);
    while started.elapsed() < DETACH_WAIT {
        if find_backing(sys_root, dev, image)?.is_none() {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(LoopError::StillAttached {
        device: device.path,
        image: image.to_path_buf(),
        waited: started.elapsed(),
    })
}

fn open_device(path: &Path, write: bool) -> Result<File, LoopError> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LoopError::OpenDevice {
            path: path.to_path_buf(),
            source,
        })
}

/// `major:minor` from `<sys>/block/loopN/dev`.
fn read_dev(sys_dir: &Path) -> Result<(u32, u32), LoopError> {
    let path = sys_dir.join("dev");
    let text = std::fs::read_to_string(&path).map_err(|source| LoopError::Sysfs {
        path: path.clone(),
        source,
    })?;
    parse_dev(&text).ok_or_else(|| LoopError::Sysfs {
        path,
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{:?} is not major:minor", text.trim()),
        ),
    })
}

fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn ioctl_error(device: &Path, image: &Path, op: &'static str, errno: i32) -> LoopError {
    LoopError::Ioctl {
        device: device.to_path_buf(),
        image: image.to_path_buf(),
        op,
        source: io::Error::from_raw_os_error(errno),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn parses_major_minor() {
        assert_eq!(parse_dev("7:3\n"), Some((7, 3)));
        assert_eq!(parse_dev("259:12"), Some((259, 12)));
        assert_eq!(parse_dev("7"), None);
        assert_eq!(parse_dev("a:b"), None);
    }

    #[test]
    fn no_backing_device_for_a_missing_image() {
        let dir = tempfile::tempdir().unwrap();
        let found = find_backing(dir.path(), dir.path(), &dir.path().join("none.img")).unwrap();
        assert_eq!(found, None);
    }

    /// A fake sysfs whose loop device backs another file is skipped
    /// without opening any device node.
    #[test]
    fn ignores_loop_devices_backing_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("web.img");
        std::fs::write(&image, b"").unwrap();
        let sys_loop = dir.path().join("sys/block/loop0/loop");
        std::fs::create_dir_all(&sys_loop).unwrap();
        std::fs::write(sys_loop.join("backing_file"), "/elsewhere/db.img\n").unwrap();
        std::fs::create_dir_all(dir.path().join("sys/block/vda")).unwrap();
        let found = find_backing(&dir.path().join("sys"), dir.path(), &image).unwrap();
        assert_eq!(found, None);
    }
}
