//! The seam between the cgroup logic and the kernel: every file access and the one
//! signal v1 needs go through [`CgroupFs`]. [`HostFs`] is the real thing;
//! [`super::FakeCgroupFs`] emulates a cgroup2 tree in a temp dir.

use std::io::{self, Write};
use std::path::Path;

/// The operations the cgroup module performs on a cgroup filesystem.
pub trait CgroupFs: std::fmt::Debug {
    /// The whole content of a control file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes `value` to a control file in one `write(2)` (the kernel parses each
    /// write on its own).
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Whether the file or directory exists.
    fn exists(&self, path: &Path) -> bool;
    /// `mkdir`; `AlreadyExists` when it does.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// `rmdir` of a cgroup (the kernel refuses with EBUSY while it holds
    /// processes or children).
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Names of the child directories (child cgroups).
    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Sends SIGKILL to `pid`; a process that is already gone is not an error.
    fn kill(&self, pid: u32) -> io::Result<()>;
}

/// The host's cgroup filesystems, through `std::fs` and `kill(2)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFs;

impl CgroupFs for HostFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.write_all(value.as_bytes())
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn subdirs(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn kill(&self, pid: u32) -> io::Result<()> {
        let raw = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let pid = rustix::process::Pid::from_raw(raw)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        match rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
