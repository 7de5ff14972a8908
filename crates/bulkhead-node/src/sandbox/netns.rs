//! Naming a tenant's network namespace for `ip netns`: a bind mount of
//! `/proc/<holder>/ns/net` on `/run/netns/<instance>-<tenant>`, done the way
//! iproute2 does it (the directory is a shared mount of itself, so that an
//! unmount also reaches mount namespaces copied later).

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::mount::{MountPropagationFlags, UnmountFlags};

use super::SandboxError;

/// `NSFS_MAGIC` from `<linux/magic.h>`: the file system of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// What is at a tenant's `/run/netns` path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetnsEntry {
    /// Nothing.
    Absent,
    /// A bind mount of the holder's network namespace.
    Holder,
    /// A bind mount of another network namespace (a previous holder's).
    Other,
    /// A plain file: a mount point whose mount is gone.
    Unmounted,
}

/// Inspects `path`; `holder` is the live holder's pid, if any.
pub(crate) fn entry(path: &Path, holder: Option<u32>) -> NetnsEntry {
    let Ok(meta) = std::fs::metadata(path) else {
        return NetnsEntry::Absent;
    };
    if let Some(pid) = holder
        && let Ok(ns) = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        && ns.dev() == meta.dev()
        && ns.ino() == meta.ino()
    {
        return NetnsEntry::Holder;
    }
    // `f_type`'s width differs between architectures.
    #[allow(clippy::useless_conversion)]
    match rustix::fs::statfs(path) {
        Ok(fs) if i64::from(fs.f_type) == NSFS_MAGIC => NetnsEntry::Other,
        _ => NetnsEntry::Unmounted,
    }
}

/// Makes `/run/netns` a shared mount of itself if it is not one yet.
fn prepare_run_dir(dir: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("create netns directory", dir, e))?;
    let shared = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
    match rustix::mount::mount_change(dir, shared) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) => {
            rustix::mount::mount_bind_recursive(dir, dir)
                .map_err(|e| SandboxError::io("bind netns directory on itself", dir, e.into()))?;
            rustix::mount::mount_change(dir, shared)
                .map_err(|e| SandboxError::io("share netns directory", dir, e.into()))
        }
        Err(e) => Err(SandboxError::io("share netns directory", dir, e.into())),
    }
}

/// Binds the holder's network namespace at `path` (replacing whatever is
/// there).
pub(crate) fn register(path: &Path, holder: u32) -> Result<(), SandboxError> {
    match entry(path, Some(holder)) {
        NetnsEntry::Holder => return Ok(()),
        NetnsEntry::Absent => {}
        NetnsEntry::Other | NetnsEntry::Unmounted => {
            unregister(path)?;
        }
    }
    if let Some(dir) = path.parent() {
        prepare_run_dir(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|e| SandboxError::io("create netns mount point", path, e))?;
    let source = PathBuf::from(format!("/proc/{holder}/ns/net"));
    if let Err(e) = rustix::mount::mount_bind(&source, path) {
        let first = SandboxError::io("bind network namespace", path, e.into());
        return match std::fs::remove_file(path) {
            Ok(()) => Err(first),
            Err(cleanup) => Err(SandboxError::Cleanup {
                first: Box::new(first),
                cleanup: Box::new(SandboxError::io("remove netns mount point", path, cleanup)),
            }),
        };
    }
    Ok(())
}

/// Unmounts and removes `path`; `true` if there was anything.
pub(crate) fn unregister(path: &Path) -> Result<bool, SandboxError> {
    let mut found = false;
    // A stacked mount needs one unmount per layer; stop at "not a mount".
    loop {
        match rustix::mount::unmount(path, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) => found = true,
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => break,
            Err(e) => {
                return Err(SandboxError::io(
                    "unmount network namespace",
                    path,
                    e.into(),
                ));
            }
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(found),
        Err(e) => Err(SandboxError::io("remove netns mount point", path, e)),
    }
}
