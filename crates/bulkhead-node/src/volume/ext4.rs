//! ext4 on the image: formatting with `mkfs.ext4`, mounting, unmounting,
//! and finding the mount in `/proc/self/mountinfo`.
//!
//! The exact `mkfs.ext4` command line ([`mkfs_args`]):
//!
//! ```text
//! mkfs.ext4 -q -F -t ext4 -b 4096 -m 0 -L <label> [-O encrypt] -E root_owner=0:0 <image>
//! ```
//!
//! - `-b 4096`: fscrypt's contents encryption works on filesystem blocks;
//!   a fixed size keeps every volume alike (mke2fs would pick 1 KiB blocks
//!   for small images).
//! - `-m 0`: no blocks reserved for root; the whole quota is the tenant's.
//! - `-L`: the label from [`crate::naming::Instance::volume_label`].
//! - `-O encrypt`: allows fscrypt policies (only for encrypted volumes).
//! - `-F`: the target is a regular file, not a block device; mke2fs must not
//!   stop to ask. bulkhead only runs mkfs after reading the image's
//!   superblock and finding no ext4 magic, so this never reformats a volume.
//! - `-q`, stdin closed: no prompts, no progress output; stderr is kept for
//!   the error message.
//!
//! mke2fs discards (punches holes in) the image first and, since holes read
//! as zeros, marks inode tables as already zeroed: formatting writes only
//! metadata, the image stays sparse, and the kernel's lazy inode-table
//! initialisation has nothing to do after mount.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::mount::{MountFlags, UnmountFlags};

use crate::mountinfo::{MountInfo, ParseMountinfoError, parse_mountinfo};

/// The formatting program.
pub const MKFS_PROGRAM: &str = "mkfs.ext4";

/// Filesystem block size of every volume.
pub const BLOCK_SIZE: u32 = 4096;

/// How a volume is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOptions {
    /// Add `noexec`. Off by default: tenants run programs they install on
    /// their own volume (build output, virtualenvs). The sandbox decides
    /// what a workload may execute; see the module docs of `volume`.
    pub noexec: bool,
}

impl MountOptions {
    /// The mount(2) flags: always `nosuid` and `nodev`, `noexec` on request.
    pub fn flags(&self) -> MountFlags {
        let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
        if self.noexec {
            flags |= MountFlags::NOEXEC;
        }
        flags
    }
}

/// Why formatting, mounting or unmounting failed.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error(
        "could not run {program} on {image} (expected e2fsprogs installed: `apt-get install e2fsprogs`)"
    )]
    MkfsSpawn {
        program: String,
        image: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{program} failed on {image} with {status}: {stderr}")]
    MkfsFailed {
        program: String,
        image: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{path}: could not create the mount point (mode 0700)")]
    MountPoint {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not mount {device} on {target} as ext4 with {flags}")]
    Mount {
        device: PathBuf,
        target: PathBuf,
        flags: String,
        #[source]
        source: io::Error,
    },
    #[error("{target}: could not unmount (busy means a process still uses the volume)")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not read the mount table")]
    ReadMountinfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not parse the mount table")]
    ParseMountinfo {
        path: PathBuf,
        #[source]
        source: ParseMountinfoError,
    },
}

/// The arguments after the program name; see the module docs.
pub fn mkfs_args(image: &Path, label: &str, encrypted: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-q", "-F", "-t", "ext4", "-b"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(BLOCK_SIZE.to_string().into());
    args.extend(["-m", "0", "-L"].map(OsString::from));
    args.push(label.into());
    if encrypted {
        args.extend(["-O", "encrypt"].map(OsString::from));
    }
    args.extend(["-E", "root_owner=0:0"].map(OsString::from));
    args.push(image.as_os_str().to_owned());
    args
}

/// Runs `mkfs.ext4` on `image`. The caller has checked that it holds no
/// filesystem.
pub fn mkfs(image: &Path, label: &str, encrypted: bool) -> Result<(), Ext4Error> {
    let output = Command::new(MKFS_PROGRAM)
        .args(mkfs_args(image, label, encrypted))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| Ext4Error::MkfsSpawn {
            program: MKFS_PROGRAM.to_owned(),
            image: image.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        return Err(Ext4Error::MkfsFailed {
            program: MKFS_PROGRAM.to_owned(),
            image: image.to_path_buf(),
            status: output.status,
            stderr,
        });
    }
    Ok(())
}

/// The mount at exactly `target` (the topmost, if stacked), from the mount
/// table at `mountinfo`.
pub fn find_mount(mountinfo: &Path, target: &Path) -> Result<Option<MountInfo>, Ext4Error> {
    let text = std::fs::read_to_string(mountinfo).map_err(|source| Ext4Error::ReadMountinfo {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    let mounts = parse_mountinfo(&text).map_err(|source| Ext4Error::ParseMountinfo {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    Ok(mounts.into_iter().rev().find(|m| m.mount_point == target))
}

/// Creates the mount point (and missing parents) with mode 0700, so that
/// no other host user can reach into a tenant's volume.
pub fn create_mount_point(target: &Path) -> Result<(), Ext4Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(target)
        .map_err(|source| Ext4Error::MountPoint {
            path: target.to_path_buf(),
            source,
        })
}

/// Mounts `device` (ext4) on `target`.
pub fn mount(device: &Path, target: &Path, options: MountOptions) -> Result<(), Ext4Error> {
    rustix::mount::mount(device, target, "ext4", options.flags(), None).map_err(|errno| {
        Ext4Error::Mount {
            device: device.to_path_buf(),
            target: target.to_path_buf(),
            flags: describe(options),
            source: errno.into(),
        }
    })
}

/// Unmounts `target` (no lazy detach: a busy volume is reported, not
/// hidden).
pub fn unmount(target: &Path) -> Result<(), Ext4Error> {
    rustix::mount::unmount(target, UnmountFlags::empty()).map_err(|errno| Ext4Error::Unmount {
        target: target.to_path_buf(),
        source: errno.into(),
    })
}

fn describe(options: MountOptions) -> String {
    if options.noexec {
        "nosuid,nodev,noexec".to_owned()
    } else {
        "nosuid,nodev".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn mkfs_command_line_is_pinned() {
        let args = mkfs_args(Path::new("/v/web.img"), "web", true);
        let line: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            line.join(" "),
            "-q -F -t ext4 -b 4096 -m 0 -L web -O encrypt -E root_owner=0:0 /v/web.img"
        );
        let plain = mkfs_args(Path::new("/v/web.img"), "web", false);
        assert!(!plain.iter().any(|a| a == "encrypt"));
    }

    #[test]
    fn finds_the_topmost_mount_at_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("mountinfo");
        std::fs::write(
            &table,
            "1 0 8:1 / / rw - ext4 /dev/vda rw\n\
             40 1 7:0 / /var/lib/bulkhead/t/mnt/web rw,nosuid,nodev - ext4 /dev/loop0 rw\n\
             41 40 7:1 / /var/lib/bulkhead/t/mnt/web rw,nosuid,nodev,noexec - ext4 /dev/loop1 rw\n",
        )
        .unwrap();
        let found = find_mount(&table, Path::new("/var/lib/bulkhead/t/mnt/web"))
            .unwrap()
            .unwrap();
        assert_eq!(found.source, "/dev/loop1");
        assert_eq!(
            find_mount(&table, Path::new("/var/lib/bulkhead/t/mnt/db")).unwrap(),
            None
        );
    }

    #[test]
    fn mount_flags_always_include_nosuid_and_nodev() {
        let flags = MountOptions { noexec: false }.flags();
        assert!(flags.contains(MountFlags::NOSUID | MountFlags::NODEV));
        assert!(!flags.contains(MountFlags::NOEXEC));
        assert!(
            MountOptions { noexec: true }
                .flags()
                .contains(MountFlags::NOEXEC)
        );
    }
}
