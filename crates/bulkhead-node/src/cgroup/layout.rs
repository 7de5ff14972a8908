//! Where the cgroup controllers live: one unified (v2) tree, or one v1 hierarchy
//! per controller (or per co-mounted group such as `cpu,cpuacct`), possibly next
//! to an empty cgroup2 mount ("hybrid").

use std::path::{Path, PathBuf};

use super::error::{CgroupError, DetectCgroupError};
use crate::mountinfo::{MountInfo, parse_mountinfo};

/// A controller bulkhead uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// CPU weight and bandwidth (`cpu`).
    Cpu,
    /// CPU accounting: v1 `cpuacct`; on v2 part of the core (`cpu.stat`).
    Cpuacct,
    /// Memory limits (`memory`).
    Memory,
    /// Process count limits (`pids`).
    Pids,
    /// Block io throttling: v1 `blkio`, v2 `io`.
    Io,
    /// CPU sets (`cpuset`).
    Cpuset,
    /// Freezing: v1 `freezer`; on v2 part of the core (`cgroup.freeze`).
    Freezer,
}

impl Controller {
    /// Every controller, in a fixed order.
    pub const ALL: [Controller; 7] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Memory,
        Controller::Pids,
        Controller::Io,
        Controller::Cpuset,
        Controller::Freezer,
    ];

    /// Controllers every tenant needs; the rest are needed only by the limits that
    /// use them (io limits, a cpuset).
    pub const REQUIRED: [Controller; 5] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Memory,
        Controller::Pids,
        Controller::Freezer,
    ];

    /// bulkhead's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Io => "io",
            Controller::Cpuset => "cpuset",
            Controller::Freezer => "freezer",
        }
    }

    /// The v1 subsystem name (as in `/proc/cgroups` and mount options).
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Io => "blkio",
            other => other.name(),
        }
    }

    /// The name in v2 `cgroup.controllers`, or `None` when v2 has it in the core.
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Cpuacct | Controller::Freezer => None,
            Controller::Io => Some("io"),
            other => Some(other.name()),
        }
    }

    pub(super) fn expected_location(self) -> String {
        match self.v2_name() {
            Some(v2) => format!(
                "a v1 {} hierarchy, or {v2} in the cgroup2 root's cgroup.controllers",
                self.v1_name()
            ),
            None => format!("a v1 {} hierarchy, or cgroup v2", self.v1_name()),
        }
    }
}

/// One mounted v1 hierarchy and the controllers bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    /// Its mount point, e.g. `/sys/fs/cgroup/memory`.
    pub root: PathBuf,
    /// The controllers bulkhead uses that it carries.
    pub controllers: Vec<Controller>,
}

/// How cgroups are mounted, as far as bulkhead cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Controllers live in v1 hierarchies. `unified` is the cgroup2 mount of a
    /// hybrid host, which bulkhead leaves alone (it carries no controllers).
    V1 {
        /// The hierarchies that carry a controller bulkhead uses, one entry per
        /// mount (co-mounted controllers share one).
        hierarchies: Vec<Hierarchy>,
        /// The cgroup2 mount of a hybrid host.
        unified: Option<PathBuf>,
    },
    /// Everything in one cgroup2 tree.
    V2 {
        /// Its root, e.g. `/sys/fs/cgroup` (or a delegated subtree).
        root: PathBuf,
    },
}

/// The mode of a [`Layout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies plus a cgroup2 mount without bulkhead's controllers.
    Hybrid,
    /// The unified hierarchy.
    V2,
}

impl Layout {
    /// A pure v2 layout rooted at `root`.
    pub fn v2(root: impl Into<PathBuf>) -> Self {
        Layout::V2 { root: root.into() }
    }

    /// A v1 layout with each controller in its own hierarchy `<base>/<v1 name>`,
    /// the way this project's CI hosts mount them.
    pub fn v1_split(base: &Path) -> Self {
        Layout::V1 {
            hierarchies: Controller::ALL
                .iter()
                .map(|c| Hierarchy {
                    root: base.join(c.v1_name()),
                    controllers: vec![*c],
                })
                .collect(),
            unified: None,
        }
    }

    /// Reads `/proc/self/mountinfo`.
    pub fn detect() -> Result<Self, DetectCgroupError> {
        Self::detect_from(Path::new("/proc/self/mountinfo"))
    }

    /// Reads the given mountinfo file.
    pub fn detect_from(mountinfo: &Path) -> Result<Self, DetectCgroupError> {
        let text =
            std::fs::read_to_string(mountinfo).map_err(|source| DetectCgroupError::Read {
                path: mountinfo.to_owned(),
                source,
            })?;
        Self::from_mountinfo(&text)
    }

    /// Decides the layout from the text of a mountinfo file: v1 when any v1
    /// hierarchy carries one of bulkhead's controllers (the cgroup2 mount of a
    /// hybrid host is then recorded but unused), else v2 at the first cgroup2 mount.
    pub fn from_mountinfo(text: &str) -> Result<Self, DetectCgroupError> {
        let mounts = parse_mountinfo(text)?;
        Self::from_mounts(&mounts)
    }

    fn from_mounts(mounts: &[MountInfo]) -> Result<Self, DetectCgroupError> {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        let mut unified = None;
        for m in mounts {
            match m.fs_type.as_str() {
                "cgroup" => {
                    let controllers: Vec<Controller> = Controller::ALL
                        .into_iter()
                        .filter(|c| m.super_options().any(|o| o == c.v1_name()))
                        .collect();
                    // The same hierarchy may be mounted twice: keep the first.
                    let seen = hierarchies.iter().any(|h| h.controllers == controllers);
                    if !controllers.is_empty() && !seen {
                        hierarchies.push(Hierarchy {
                            root: m.mount_point.clone(),
                            controllers,
                        });
                    }
                }
                "cgroup2" if unified.is_none() => unified = Some(m.mount_point.clone()),
                _ => {}
            }
        }
        match (hierarchies.is_empty(), unified) {
            (false, unified) => Ok(Layout::V1 {
                hierarchies,
                unified,
            }),
            (true, Some(root)) => Ok(Layout::V2 { root }),
            (true, None) => Err(DetectCgroupError::NoHierarchy),
        }
    }

    /// v1, hybrid or v2.
    pub fn mode(&self) -> Mode {
        match self {
            Layout::V1 { unified: None, .. } => Mode::V1,
            Layout::V1 {
                unified: Some(_), ..
            } => Mode::Hybrid,
            Layout::V2 { .. } => Mode::V2,
        }
    }

    /// v1: the mount point of the hierarchy carrying `controller`.
    pub fn v1_root(&self, controller: Controller) -> Option<&Path> {
        match self {
            Layout::V1 { hierarchies, .. } => hierarchies
                .iter()
                .find(|h| h.controllers.contains(&controller))
                .map(|h| h.root.as_path()),
            Layout::V2 { .. } => None,
        }
    }

    /// v1: like [`Layout::v1_root`], or an error naming the controller.
    pub(super) fn require_v1(&self, controller: Controller) -> Result<&Path, CgroupError> {
        self.v1_root(controller)
            .ok_or(CgroupError::MissingController { controller })
    }

    /// Every distinct hierarchy root bulkhead places cgroups in.
    pub fn roots(&self) -> Vec<&Path> {
        match self {
            Layout::V1 { hierarchies, .. } => {
                hierarchies.iter().map(|h| h.root.as_path()).collect()
            }
            Layout::V2 { root } => vec![root.as_path()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host_uses_the_v1_hierarchies() {
        let layout = Layout::from_mountinfo(HYBRID).expect("parses");
        assert_eq!(layout.mode(), Mode::Hybrid);
        assert_eq!(
            layout.v1_root(Controller::Io),
            Some(Path::new("/sys/fs/cgroup/blkio"))
        );
        assert_eq!(
            layout.v1_root(Controller::Cpuacct),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
        // devices and name=systemd carry nothing bulkhead uses.
        assert_eq!(layout.roots().len(), 7);
    }

    #[test]
    fn co_mounted_controllers_share_a_hierarchy() {
        let text = "\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
27 24 0:24 / /mnt/again rw - cgroup cgroup rw,memory
";
        let layout = Layout::from_mountinfo(text).expect("parses");
        assert_eq!(layout.mode(), Mode::V1);
        assert_eq!(
            layout.v1_root(Controller::Cpu),
            layout.v1_root(Controller::Cpuacct)
        );
        assert_eq!(layout.roots().len(), 2);
        assert!(matches!(
            layout.require_v1(Controller::Pids),
            Err(CgroupError::MissingController {
                controller: Controller::Pids
            })
        ));
    }

    #[test]
    fn pure_v2_host() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let layout = Layout::from_mountinfo(text).expect("parses");
        assert_eq!(layout, Layout::v2("/sys/fs/cgroup"));
        assert_eq!(layout.mode(), Mode::V2);
    }

    #[test]
    fn no_cgroups_is_an_error() {
        let text = "22 1 8:1 / / rw - ext4 /dev/vda rw\n";
        assert!(matches!(
            Layout::from_mountinfo(text),
            Err(DetectCgroupError::NoHierarchy)
        ));
    }
}
