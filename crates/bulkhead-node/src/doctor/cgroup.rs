//! Cgroup layout: which hierarchies are mounted where (mountinfo), which
//! controllers the kernel has (`/proc/cgroups`), and on v2 which the root
//! offers and delegates (`cgroup.controllers`, `cgroup.subtree_control`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::host::{Fact, Host};
use super::{Feature, FeatureCheck, Status};
use crate::mountinfo::{MountInfo, parse_mountinfo};

/// How cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only the unified hierarchy carries controllers.
    V2,
    /// v1 controller hierarchies plus a cgroup2 mount (systemd's "hybrid").
    Hybrid,
    /// Only v1 hierarchies.
    V1,
    /// No cgroup filesystem is mounted.
    None,
    /// The mount table could not be read.
    Unknown,
}

impl CgroupMode {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::V2 => "v2",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V1 => "v1",
            CgroupMode::None => "none",
            CgroupMode::Unknown => "unknown",
        }
    }
}

/// A cgroup hierarchy version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// `cgroup` filesystem.
    V1,
    /// `cgroup2` filesystem.
    V2,
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupMount {
    /// Where it is mounted, as the host sees it.
    pub mount_point: PathBuf,
    /// `cgroup` or `cgroup2`.
    pub version: CgroupVersion,
    /// v1: the controllers bound to it; v2: the root's `cgroup.controllers`.
    pub controllers: Vec<String>,
    /// v1 named hierarchy (`name=systemd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where one controller bulkhead uses can be found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerState {
    /// bulkhead's name: cpu, cpuacct, memory, pids, io, cpuset, freezer.
    pub name: &'static str,
    /// The hierarchy that provides it, if any.
    pub version: Option<CgroupVersion>,
    /// Its mount point.
    pub mount_point: Option<PathBuf>,
    /// The `enabled` column of `/proc/cgroups` (v1 name), when listed.
    pub kernel_enabled: Option<bool>,
    /// v2 only: whether the root's `cgroup.subtree_control` already enables it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_subtree_control: Option<bool>,
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupInfo {
    /// v1, v2, hybrid, none or unknown.
    pub mode: CgroupMode,
    /// Mounted hierarchies, first mount of each.
    pub mounts: Vec<CgroupMount>,
    /// The controllers bulkhead uses, in a fixed order.
    pub controllers: Vec<ControllerState>,
    /// The v2 root's `cgroup.subtree_control`, when there is a v2 mount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtree_control: Option<Vec<String>>,
    /// Why the mode is unknown, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CgroupInfo {
    /// The controller called `name` (bulkhead's name).
    pub fn controller(&self, name: &str) -> Option<&ControllerState> {
        self.controllers.iter().find(|c| c.name == name)
    }

    /// The unified (cgroup2) mount, if any.
    pub fn unified(&self) -> Option<&CgroupMount> {
        self.mounts.iter().find(|m| m.version == CgroupVersion::V2)
    }
}

/// bulkhead's controllers: (our name, v1 name, v2 name or `None` when the
/// feature is part of the v2 core, feature).
const CONTROLLERS: &[(&str, &str, Option<&str>, Feature)] = &[
    ("cpu", "cpu", Some("cpu"), Feature::CpuController),
    ("cpuacct", "cpuacct", None, Feature::CpuacctController),
    (
        "memory",
        "memory",
        Some("memory"),
        Feature::MemoryController,
    ),
    ("pids", "pids", Some("pids"), Feature::PidsController),
    ("io", "blkio", Some("io"), Feature::IoController),
    (
        "cpuset",
        "cpuset",
        Some("cpuset"),
        Feature::CpusetController,
    ),
    ("freezer", "freezer", None, Feature::FreezerController),
];

/// v1 controller names (anything else in a v1 mount's options is an option).
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// A row of `/proc/cgroups`.
#[derive(Debug, Clone, Copy)]
struct KernelController {
    hierarchy: u32,
    enabled: bool,
}

fn parse_proc_cgroups(text: &str) -> BTreeMap<String, KernelController> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let hierarchy = f.next()?.parse().ok()?;
            let _num_cgroups = f.next()?;
            let enabled = f.next()? == "1";
            Some((name.to_owned(), KernelController { hierarchy, enabled }))
        })
        .collect()
}

fn words(fact: &Fact) -> Option<Vec<String>> {
    fact.value()
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
}

fn collect_mounts(
    host: &Host<'_>,
    mounts: &[MountInfo],
) -> (Vec<CgroupMount>, Option<Vec<String>>) {
    let mut out: Vec<CgroupMount> = Vec::new();
    let mut subtree_control = None;
    for m in mounts {
        let version = match m.fs_type.as_str() {
            "cgroup" => CgroupVersion::V1,
            "cgroup2" => CgroupVersion::V2,
            _ => continue,
        };
        let (controllers, name) = match version {
            CgroupVersion::V1 => (
                m.super_options()
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
                m.super_options()
                    .find_map(|o| o.strip_prefix("name="))
                    .map(str::to_owned),
            ),
            CgroupVersion::V2 => {
                if out.iter().any(|o| o.version == CgroupVersion::V2) {
                    continue;
                }
                let root = host.paths.resolve(&m.mount_point);
                subtree_control = words(&Fact::read(&root.join("cgroup.subtree_control")));
                (
                    words(&Fact::read(&root.join("cgroup.controllers"))).unwrap_or_default(),
                    None,
                )
            }
        };
        // The same v1 hierarchy can be mounted more than once: keep the first.
        let duplicate = version == CgroupVersion::V1
            && out.iter().any(|o| {
                o.version == CgroupVersion::V1 && o.controllers == controllers && o.name == name
            });
        if !duplicate {
            out.push(CgroupMount {
                mount_point: m.mount_point.clone(),
                version,
                controllers,
                name,
            });
        }
    }
    (out, subtree_control)
}

pub(crate) fn inspect(host: &Host<'_>) -> CgroupInfo {
    let parsed = match host.proc("self/mountinfo") {
        Fact::Value(text) => parse_mountinfo(&text).map_err(|e| e.to_string()),
        other => Err(format!("/proc/self/mountinfo: {}", host.unreadable(&other))),
    };
    let kernel = match host.proc("cgroups") {
        Fact::Value(text) => parse_proc_cgroups(&text),
        _ => BTreeMap::new(),
    };
    let (mounts, subtree_control, error) = match parsed {
        Ok(m) => {
            let (mounts, subtree) = collect_mounts(host, &m);
            (mounts, subtree, None)
        }
        Err(e) => (Vec::new(), None, Some(e)),
    };
    let has_v1 = mounts
        .iter()
        .any(|m| m.version == CgroupVersion::V1 && !m.controllers.is_empty());
    let has_v2 = mounts.iter().any(|m| m.version == CgroupVersion::V2);
    let mode = match (&error, has_v1, has_v2) {
        (Some(_), _, _) => CgroupMode::Unknown,
        (None, true, true) => CgroupMode::Hybrid,
        (None, true, false) => CgroupMode::V1,
        (None, false, true) => CgroupMode::V2,
        (None, false, false) => CgroupMode::None,
    };
    let unified = mounts.iter().find(|m| m.version == CgroupVersion::V2);
    let controllers = CONTROLLERS
        .iter()
        .map(|&(name, v1, v2, _)| {
            let kernel_enabled = kernel.get(v1).map(|k| k.enabled);
            let on_v1 = mounts
                .iter()
                .find(|m| m.version == CgroupVersion::V1 && m.controllers.iter().any(|c| c == v1));
            let on_v2 = unified.filter(|u| match v2 {
                Some(v2) => u.controllers.iter().any(|c| c == v2),
                // Core v2 features count only where v2 is the hierarchy in use.
                None => mode == CgroupMode::V2,
            });
            let (version, mount_point, in_subtree_control) = match (on_v1, on_v2) {
                (Some(m), _) => (Some(CgroupVersion::V1), Some(m.mount_point.clone()), None),
                (None, Some(u)) => (
                    Some(CgroupVersion::V2),
                    Some(u.mount_point.clone()),
                    v2.and_then(|v2| subtree_control.as_ref().map(|s| s.iter().any(|c| c == v2))),
                ),
                (None, None) => (None, None, None),
            };
            ControllerState {
                name,
                version,
                mount_point,
                kernel_enabled,
                in_subtree_control,
            }
        })
        .collect();
    CgroupInfo {
        mode,
        mounts,
        controllers,
        subtree_control,
        error,
    }
}

pub(crate) fn checks(host: &Host<'_>, info: &CgroupInfo) -> Vec<FeatureCheck> {
    let kernel = match host.proc("cgroups") {
        Fact::Value(text) => Some(parse_proc_cgroups(&text)),
        _ => None,
    };
    let mut out = vec![hierarchy_check(info)];
    for &(name, v1, v2, feature) in CONTROLLERS {
        let Some(state) = info.controller(name) else {
            continue;
        };
        out.push(controller_check(
            info,
            state,
            v1,
            v2,
            feature,
            kernel.as_ref(),
        ));
    }
    out.push(swap_check(host, info));
    out
}

fn hierarchy_check(info: &CgroupInfo) -> FeatureCheck {
    let unified = info.unified();
    let v1_count = info
        .mounts
        .iter()
        .filter(|m| m.version == CgroupVersion::V1 && !m.controllers.is_empty())
        .count();
    let f = Feature::Cgroups;
    match info.mode {
        CgroupMode::V2 => FeatureCheck::new(
            f,
            Status::Ok,
            format!(
                "v2 at {}",
                unified.map_or_else(String::new, |u| u.mount_point.display().to_string())
            ),
        ),
        CgroupMode::Hybrid => {
            let (at, extra) = unified.map_or((String::new(), String::new()), |u| {
                let listed = if u.controllers.is_empty() {
                    "empty".to_owned()
                } else {
                    u.controllers.join(" ")
                };
                (u.mount_point.display().to_string(), listed)
            });
            FeatureCheck::new(
                f,
                Status::Ok,
                format!("hybrid: {v1_count} v1 hierarchies, cgroup2 at {at} ({extra})"),
            )
            .hint("bulkhead places tenants in the v1 hierarchies; crun refuses this layout, runc works")
        }
        CgroupMode::V1 => FeatureCheck::new(f, Status::Ok, format!("v1: {v1_count} hierarchies")),
        CgroupMode::None => FeatureCheck::new(f, Status::Missing, "no cgroup filesystem mounted")
            .hint("mount cgroup2 at /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)"),
        CgroupMode::Unknown => FeatureCheck::new(
            f,
            Status::Unknown,
            info.error.clone().unwrap_or_else(|| "unknown".to_owned()),
        ),
    }
}

fn controller_check(
    info: &CgroupInfo,
    state: &ControllerState,
    v1: &str,
    v2: Option<&str>,
    feature: Feature,
    kernel: Option<&BTreeMap<String, KernelController>>,
) -> FeatureCheck {
    let at = |p: &Option<PathBuf>| {
        p.as_deref()
            .map_or_else(String::new, |p| p.display().to_string())
    };
    match state.version {
        Some(CgroupVersion::V1) => {
            let check = FeatureCheck::new(
                feature,
                Status::Ok,
                format!("v1 {v1} at {}", at(&state.mount_point)),
            );
            if feature == Feature::IoController {
                FeatureCheck {
                    status: Status::Degraded,
                    ..check
                }
                .hint("v1 blkio throttling does not cover buffered writes: io limits bind direct io only")
            } else {
                check
            }
        }
        Some(CgroupVersion::V2) => {
            let observed = match (v2, state.in_subtree_control) {
                (None, _) if feature == Feature::FreezerController => {
                    format!("v2 core (cgroup.freeze) at {}", at(&state.mount_point))
                }
                (None, _) => format!("v2 core (cpu.stat) at {}", at(&state.mount_point)),
                (Some(n), Some(true)) => format!("v2 {n} at {}, delegated", at(&state.mount_point)),
                (Some(n), _) => format!("v2 {n} at {}", at(&state.mount_point)),
            };
            let check = FeatureCheck::new(feature, Status::Ok, observed);
            if state.in_subtree_control == Some(false) {
                check.hint("not yet in the root's cgroup.subtree_control; bulkhead enables it")
            } else {
                check
            }
        }
        None => {
            if info.mode == CgroupMode::Unknown {
                return FeatureCheck::new(feature, Status::Unknown, "cgroup mounts unknown");
            }
            let row = kernel.and_then(|k| k.get(v1).or_else(|| v2.and_then(|v2| k.get(v2))));
            match (kernel, row) {
                (_, Some(k)) if !k.enabled => {
                    FeatureCheck::new(feature, Status::Missing, "disabled at boot").hint(format!(
                        "remove cgroup_disable={v1} from the kernel command line"
                    ))
                }
                (_, Some(k)) if k.hierarchy == 0 && info.mode != CgroupMode::V2 => {
                    FeatureCheck::new(feature, Status::Missing, "in the kernel, not mounted").hint(
                        format!("mount -t cgroup -o {v1} cgroup /sys/fs/cgroup/{v1}"),
                    )
                }
                (_, Some(_)) => FeatureCheck::new(feature, Status::Missing, "not mounted"),
                (Some(_), None) => {
                    FeatureCheck::new(feature, Status::Missing, "not in this kernel")
                }
                (None, None) => FeatureCheck::new(feature, Status::Missing, "not mounted"),
            }
        }
    }
}

fn swap_check(host: &Host<'_>, info: &CgroupInfo) -> FeatureCheck {
    let f = Feature::SwapAccounting;
    let swap_total_kb = host.proc("meminfo").value().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("SwapTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    });
    let no_swap = swap_total_kb == Some(0);
    let suffix = if no_swap { " (no swap configured)" } else { "" };
    let Some(memory) = info.controller("memory") else {
        return FeatureCheck::new(f, Status::Missing, "no memory controller");
    };
    let Some(mount) = memory.mount_point.as_deref().map(|p| host.paths.resolve(p)) else {
        return FeatureCheck::new(f, Status::Missing, "no memory controller");
    };
    match memory.version {
        Some(CgroupVersion::V1) => {
            if mount.join("memory.memsw.limit_in_bytes").exists() {
                FeatureCheck::new(f, Status::Ok, format!("on (memory.memsw.*){suffix}"))
            } else {
                FeatureCheck::new(
                    f,
                    Status::Degraded,
                    format!("off (no memory.memsw.*){suffix}"),
                )
                .hint(
                    "boot with swapaccount=1, or keep swap off: swapped pages escape memory limits",
                )
            }
        }
        Some(CgroupVersion::V2) => {
            let cmdline = host.proc("cmdline");
            if cmdline
                .value()
                .is_some_and(|c| c.split_whitespace().any(|a| a == "swapaccount=0"))
            {
                return FeatureCheck::new(
                    f,
                    Status::Degraded,
                    format!("off (swapaccount=0){suffix}"),
                )
                .hint("remove swapaccount=0 from the kernel command line");
            }
            match v2_memory_child(host, &mount) {
                Some((dir, true)) => FeatureCheck::new(
                    f,
                    Status::Ok,
                    format!("on (memory.swap.max in {}){suffix}", dir.display()),
                ),
                Some((_, false)) => FeatureCheck::new(
                    f,
                    Status::Degraded,
                    format!("off (no memory.swap.*){suffix}"),
                )
                .hint("boot a kernel with swap accounting (CONFIG_MEMCG_SWAP), or keep swap off"),
                None => FeatureCheck::new(
                    f,
                    Status::Unknown,
                    format!("no child cgroup with the memory controller to inspect{suffix}"),
                ),
            }
        }
        None => FeatureCheck::new(f, Status::Missing, "no memory controller"),
    }
}

/// A non-root v2 cgroup with the memory controller (has `memory.current`),
/// and whether it has `memory.swap.max`. Looks at doctor's own cgroup first,
/// then at the root's children.
fn v2_memory_child(host: &Host<'_>, root: &Path) -> Option<(PathBuf, bool)> {
    let own = host.proc("self/cgroup").value().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(|p| root.join(p.trim_start_matches('/')))
    });
    let children = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .take(64);
    own.into_iter()
        .filter(|p| p.as_path() != root)
        .chain(children)
        .find(|dir| dir.join("memory.current").exists())
        .map(|dir| {
            let swap = dir.join("memory.swap.max").exists();
            (dir, swap)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_cgroups() {
        let k = parse_proc_cgroups(
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nnet_cls\t0\t1\t1\nmemory\t4\t17\t0\n",
        );
        assert_eq!(k["cpu"].hierarchy, 1);
        assert!(k["net_cls"].enabled);
        assert!(!k["memory"].enabled);
    }
}
