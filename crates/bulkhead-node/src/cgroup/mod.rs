//! Cgroups for tenants and workloads, on cgroup v1 (including "hybrid" hosts) and
//! v2, behind one API: [`Cgroups`].
//!
//! # Shape
//!
//! Each tenant gets one subtree `<instance>/<tenant>` in every hierarchy bulkhead
//! uses (v1) or in the unified tree (v2), and each workload a child
//! `<instance>/<tenant>/<workload>`; the names come from
//! [`crate::naming::Instance`]. Processes live only in leaves: v2's "no internal
//! processes" rule, kept on v1 for symmetry ([`Cgroups::attach`] refuses a cgroup
//! with children).
//!
//! [`Layout`] says where the controllers are (detected from mountinfo, or given,
//! so tests can point at a temp dir); [`CgroupFs`] is the seam to the kernel:
//! [`HostFs`] for real, [`FakeCgroupFs`] for a cgroup2 tree emulated in a temp dir.
//! [`Limits`] is the typed form of every limit, built from the model
//! ([`Limits::for_tenant`], [`Limits::for_workload`]) and read back by
//! [`Cgroups::observe`], so `desired != observed` is drift.
//!
//! # What each limit maps to
//!
//! | limit | v1 | v2 |
//! |---|---|---|
//! | cpu weight | `cpu.shares` = [`weight_to_shares`] | `cpu.weight` |
//! | cpu cap | `cpu.cfs_quota_us`, `cpu.cfs_period_us` (`-1` = none) | `cpu.max` `"quota period"` (`max` = none) |
//! | memory | `memory.limit_in_bytes` (`-1` = none) | `memory.max` |
//! | no swap | `memory.memsw.limit_in_bytes` = memory limit (needs swap accounting) | `memory.swap.max` = 0 |
//! | pids | `pids.max` | `pids.max` |
//! | io | `blkio.throttle.{read,write}_{bps,iops}_device` `"MAJ:MIN n"` (`n` = 0 removes) | `io.max` `"MAJ:MIN rbps= wbps= riops= wiops="` |
//! | cpuset | `cpuset.cpus`, `cpuset.mems` (copied from the parent), `cpuset.cpu_exclusive` | `cpuset.cpus`, `cpuset.cpus.partition` = `root` |
//! | freeze | `freezer.state` FROZEN / THAWED | `cgroup.freeze`, `cgroup.events` frozen |
//! | kill | freeze, SIGKILL every task, thaw | `cgroup.kill` |
//! | usage | `cpuacct.usage`, `cpu.stat`, `memory.usage_in_bytes`, `memory.failcnt`, `memory.oom_control`, `pids.current`, `blkio.throttle.io_service_bytes_recursive` | `cpu.stat`, `memory.current`, `memory.events`, `pids.current`, `io.stat` |
//!
//! # cpu weight ↔ shares
//!
//! The kernel's own conversion (`sched_weight_from_cgroup` / `sched_weight_to_cgroup`
//! in `kernel/sched/sched.h`): `shares = round(weight × 1024 / 100)` and
//! `weight = clamp(round(shares × 100 / 1024), 1, 10000)`. Weight 100 (the
//! default) is 1024 shares, 1 is 10, 10000 is 102400; the round trip is exact for
//! every weight. (runc's OCI formula `1 + (shares - 2) × 9999 / 262142` maps
//! the other way and disagrees; bulkhead follows the kernel.)
//!
//! # Order of writes
//!
//! - v1 memory: `memory.memsw.limit_in_bytes` must never be below
//!   `memory.limit_in_bytes`. Growing: raise memsw first, then memory. Shrinking:
//!   lower memory first, then memsw.
//! - v1 cpu cap: of the two intermediate states (new quota with old period, old
//!   quota with new period) the one granting less CPU is passed through.
//! - v1 cpu caps nest: the kernel refuses a child quota/period above its parent's.
//!   A plan grows a tenant before its workloads and shrinks workloads before their
//!   tenant. The same order (parent first when growing) holds for cpusets.
//! - v1 cpuset: `cpuset.cpus` and `cpuset.mems` are copied from the parent when a
//!   cgroup is created, before any task can join (the kernel refuses tasks in a
//!   cpuset without CPUs). A cgroup without a cpuset of its own gets its parent's
//!   CPUs minus those of exclusive siblings; `cpuset.cpu_exclusive` also needs the
//!   parent exclusive, so [`Cgroups::apply`] marks the instance cgroup exclusive
//!   first (which fails if another cgroup at the hierarchy root overlaps it).
//! - v2: controllers are enabled in `cgroup.subtree_control` of every ancestor,
//!   root first, before the child is created; cpuset CPUs are written before the
//!   partition is turned into a root, and a partition the kernel marks invalid is
//!   turned back into a member and reported.
//!
//! Applying is idempotent: each file is read first and written only when it
//! differs, and [`Cgroups::apply`] returns the writes it made (none the second
//! time). A limit that needs a controller or feature the host lacks is an error
//! naming it, never skipped.

mod error;
mod fake;
mod fs;
mod layout;
mod limits;
mod usage;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

pub use error::{ApplyCgroupError, CgroupError, DetectCgroupError};
pub use fake::{FAKE_CONTROLLERS, FakeCgroupFs};
pub use fs::{CgroupFs, HostFs};
pub use layout::{Controller, Hierarchy, Layout, Mode};
pub use limits::{
    CpuMax, Cpuset, DEFAULT_PERIOD_US, DEFAULT_WEIGHT, Device, IoDeviceLimit, Limits, format_cpus,
    page_size, shares_to_weight, weight_to_shares,
};
pub use usage::{
    CpuUsage, IoUsage, MemoryEvents, MemoryUsage, Pressure, PressureLine, PressureStat, Usage,
    parse_pressure,
};

use crate::naming::Instance;

/// How long [`Cgroups`] waits for the kernel by default (freezing, emptying,
/// removing).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// One write `apply` or `create` made: the file and the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The control file.
    pub path: PathBuf,
    /// What was written.
    pub value: String,
}

/// The cgroups of a host: a [`Layout`] and the filesystem to reach it through.
#[derive(Debug)]
pub struct Cgroups<F: CgroupFs = HostFs> {
    layout: Layout,
    fs: F,
    wait: Duration,
}

impl Cgroups<HostFs> {
    /// The host's cgroups, as `/proc/self/mountinfo` shows them.
    pub fn detect() -> Result<Self, DetectCgroupError> {
        Ok(Cgroups::new(Layout::detect()?, HostFs))
    }
}

impl<F: CgroupFs> Cgroups<F> {
    /// Cgroups at `layout`, reached through `fs`.
    pub fn new(layout: Layout, fs: F) -> Self {
        Cgroups {
            layout,
            fs,
            wait: DEFAULT_WAIT,
        }
    }

    /// Waits up to `wait` for freezing, emptying and removal (default
    /// [`DEFAULT_WAIT`]).
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Where the controllers are.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The filesystem (tests inspect the fake through it).
    pub fn fs(&self) -> &F {
        &self.fs
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            fs: &self.fs,
            wait: self.wait,
        }
    }

    /// Errors naming the first of `controllers` the host does not offer.
    pub fn check_controllers(&self, controllers: &[Controller]) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { .. } => controllers
                .iter()
                .try_for_each(|c| self.layout.require_v1(*c).map(drop)),
            Layout::V2 { root } => v2::check_root_controllers(&self.ctx(), root, controllers),
        }
    }

    /// Creates `cgroup` (a relative path from [`Instance`]) and its ancestors in
    /// every hierarchy, enabling controllers (v2) or copying cpusets (v1) on the
    /// way. Existing cgroups are left as they are; returns the writes made.
    pub fn create(&self, cgroup: &Path) -> Result<Vec<Change>, CgroupError> {
        let rel = checked(cgroup)?;
        let mut changes = Vec::new();
        match &self.layout {
            Layout::V1 { .. } => v1::create(&self.ctx(), &self.layout, rel, &mut changes)?,
            Layout::V2 { root } => v2::create(&self.ctx(), root, rel, &mut changes)?,
        }
        Ok(changes)
    }

    /// Sets `limits` on an existing `cgroup`, writing only what differs; returns
    /// the writes made (empty when nothing drifted).
    pub fn apply(&self, cgroup: &Path, limits: &Limits) -> Result<Vec<Change>, CgroupError> {
        let rel = checked(cgroup)?;
        let mut changes = Vec::new();
        match &self.layout {
            Layout::V1 { .. } => v1::apply(&self.ctx(), &self.layout, rel, limits, &mut changes)?,
            Layout::V2 { root } => v2::apply(&self.ctx(), root, rel, limits, &mut changes)?,
        }
        Ok(changes)
    }

    /// Reads the limits of `cgroup` back from the kernel.
    pub fn observe(&self, cgroup: &Path) -> Result<Limits, CgroupError> {
        let rel = checked(cgroup)?;
        match &self.layout {
            Layout::V1 { .. } => v1::observe(&self.ctx(), &self.layout, rel),
            Layout::V2 { root } => v2::observe(&self.ctx(), root, rel),
        }
    }

    /// Creates a tenant's cgroup and applies its limits.
    pub fn ensure_tenant(
        &self,
        instance: &Instance,
        tenant: &str,
        limits: &Limits,
    ) -> Result<Vec<Change>, CgroupError> {
        let path = instance.tenant_cgroup(tenant);
        let mut changes = self.create(&path)?;
        changes.extend(self.apply(&path, limits)?);
        Ok(changes)
    }

    /// Creates a workload's cgroup (and its tenant's, unlimited, if missing) and
    /// applies its limits.
    pub fn ensure_workload(
        &self,
        instance: &Instance,
        tenant: &str,
        workload: &str,
        limits: &Limits,
    ) -> Result<Vec<Change>, CgroupError> {
        let path = instance.workload_cgroup(tenant, workload);
        let mut changes = self.create(&path)?;
        changes.extend(self.apply(&path, limits)?);
        Ok(changes)
    }

    /// Moves process `pid` into `cgroup` in every hierarchy. Refuses a cgroup
    /// with child cgroups (processes live only in leaves).
    pub fn attach(&self, cgroup: &Path, pid: u32) -> Result<(), CgroupError> {
        let rel = checked(cgroup)?;
        let ctx = self.ctx();
        for root in self.layout.roots() {
            let dir = root.join(rel);
            if !ctx.subdirs(&dir)?.is_empty() {
                return Err(CgroupError::NotLeaf { path: dir });
            }
        }
        for root in self.layout.roots() {
            let path = root.join(rel).join("cgroup.procs");
            ctx.write_raw(&path, &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in `cgroup` and its descendants, in any hierarchy, sorted.
    pub fn pids(&self, cgroup: &Path) -> Result<Vec<u32>, CgroupError> {
        let rel = checked(cgroup)?;
        let ctx = self.ctx();
        let mut all = BTreeSet::new();
        for root in self.layout.roots() {
            ctx.subtree_pids(&root.join(rel), "cgroup.procs", &mut all)?;
        }
        Ok(all.into_iter().collect())
    }

    /// Freezes every process in `cgroup` and its descendants and waits until the
    /// kernel reports them frozen.
    pub fn freeze(&self, cgroup: &Path) -> Result<(), CgroupError> {
        let rel = checked(cgroup)?;
        match &self.layout {
            Layout::V1 { .. } => v1::set_frozen(&self.ctx(), &self.layout, rel, true),
            Layout::V2 { root } => v2::set_frozen(&self.ctx(), root, rel, true),
        }
    }

    /// Thaws `cgroup` and waits until the kernel reports it thawed.
    pub fn thaw(&self, cgroup: &Path) -> Result<(), CgroupError> {
        let rel = checked(cgroup)?;
        match &self.layout {
            Layout::V1 { .. } => v1::set_frozen(&self.ctx(), &self.layout, rel, false),
            Layout::V2 { root } => v2::set_frozen(&self.ctx(), root, rel, false),
        }
    }

    /// Kills every process in `cgroup` and its descendants and waits until none
    /// is left. v2: `cgroup.kill`. v1: freeze (so nothing forks or exits and
    /// frees its pid for reuse meanwhile), SIGKILL every task, thaw.
    pub fn kill_all(&self, cgroup: &Path) -> Result<(), CgroupError> {
        let rel = checked(cgroup)?;
        match &self.layout {
            Layout::V1 { .. } => v1::kill_all(&self.ctx(), &self.layout, rel)?,
            Layout::V2 { root } => v2::kill_all(&self.ctx(), root, rel)?,
        }
        self.wait_empty(rel)
    }

    fn wait_empty(&self, rel: &Path) -> Result<(), CgroupError> {
        let ctx = self.ctx();
        for root in self.layout.roots() {
            let dir = root.join(rel);
            ctx.wait_for(&dir.join("cgroup.procs"), "no processes", |_| {
                let mut left = BTreeSet::new();
                ctx.subtree_pids(&dir, "cgroup.procs", &mut left)?;
                Ok(left.is_empty())
            })?;
        }
        Ok(())
    }

    /// Removes `cgroup` and its descendants, bottom up, in every hierarchy. Each
    /// must be empty of processes; EBUSY is retried until the wait runs out (the
    /// kernel may still be releasing a killed process). Missing cgroups are fine.
    pub fn remove(&self, cgroup: &Path) -> Result<(), CgroupError> {
        let rel = checked(cgroup)?;
        let ctx = self.ctx();
        for root in self.layout.roots() {
            ctx.remove_tree(&root.join(rel))?;
        }
        Ok(())
    }

    /// Whether `cgroup` exists in any hierarchy.
    pub fn exists(&self, cgroup: &Path) -> bool {
        checked(cgroup).is_ok_and(|rel| {
            self.layout
                .roots()
                .iter()
                .any(|root| self.fs.exists(&root.join(rel)))
        })
    }

    /// The tenants present under an instance and their workloads, in any
    /// hierarchy (a crashed instance may have left some hierarchies half done):
    /// what `bulkhead gc` removes.
    pub fn list(
        &self,
        instance: &Instance,
    ) -> Result<BTreeMap<String, BTreeSet<String>>, CgroupError> {
        let ctx = self.ctx();
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for root in self.layout.roots() {
            let base = root.join(instance.cgroup_root());
            if !self.fs.exists(&base) {
                continue;
            }
            for tenant in ctx.subdirs(&base)? {
                let workloads = ctx.subdirs(&root.join(instance.tenant_cgroup(&tenant)))?;
                out.entry(tenant).or_default().extend(workloads);
            }
        }
        Ok(out)
    }

    /// Resource use of `cgroup`, its descendants included.
    pub fn usage(&self, cgroup: &Path) -> Result<Usage, CgroupError> {
        let rel = checked(cgroup)?;
        match &self.layout {
            Layout::V1 { .. } => v1::usage(&self.ctx(), &self.layout, rel),
            Layout::V2 { root } => v2::usage(&self.ctx(), root, rel),
        }
    }
}

/// A cgroup path must be relative and plain, so it stays inside the hierarchy.
fn checked(path: &Path) -> Result<&Path, CgroupError> {
    let plain = path.components().count() > 0
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(path)
    } else {
        Err(CgroupError::InvalidPath {
            path: path.to_owned(),
        })
    }
}

/// File access with errors that carry the path (and the value), shared by v1 and v2.
pub(super) struct Ctx<'a> {
    fs: &'a dyn CgroupFs,
    wait: Duration,
}

impl Ctx<'_> {
    fn read(&self, path: &Path) -> Result<String, CgroupError> {
        self.fs.read(path).map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// The content, trimmed.
    fn read_trim(&self, path: &Path) -> Result<String, CgroupError> {
        Ok(self.read(path)?.trim().to_owned())
    }

    fn read_u64(&self, path: &Path) -> Result<u64, CgroupError> {
        let text = self.read_trim(path)?;
        text.parse().map_err(|_| CgroupError::Parse {
            path: path.to_owned(),
            value: text,
            expected: "an unsigned integer",
        })
    }

    /// A number or `max`.
    fn read_max(&self, path: &Path) -> Result<Option<u64>, CgroupError> {
        let text = self.read_trim(path)?;
        parse_max(&text).ok_or_else(|| CgroupError::Parse {
            path: path.to_owned(),
            value: text,
            expected: "an unsigned integer or \"max\"",
        })
    }

    /// A flat-keyed file (`key value` per line) as a map.
    fn read_keyed(&self, path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
        let text = self.read(path)?;
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields = line.split_whitespace();
            let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
                return Err(CgroupError::Parse {
                    path: path.to_owned(),
                    value: line.to_owned(),
                    expected: "\"key value\" lines",
                });
            };
            let value = value.parse().map_err(|_| CgroupError::Parse {
                path: path.to_owned(),
                value: line.to_owned(),
                expected: "\"key value\" lines with integer values",
            })?;
            out.insert(key.to_owned(), value);
        }
        Ok(out)
    }

    fn write_raw(&self, path: &Path, value: &str) -> Result<(), CgroupError> {
        self.fs.write(path, value).map_err(|source| {
            CgroupError::Apply(ApplyCgroupError {
                path: path.to_owned(),
                value: value.to_owned(),
                source,
            })
        })
    }

    /// Writes and records the change.
    fn write(
        &self,
        path: &Path,
        value: &str,
        changes: &mut Vec<Change>,
    ) -> Result<(), CgroupError> {
        self.write_raw(path, value)?;
        changes.push(Change {
            path: path.to_owned(),
            value: value.to_owned(),
        });
        Ok(())
    }

    fn mkdir(&self, path: &Path) -> Result<bool, CgroupError> {
        match self.fs.create_dir(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(CgroupError::Create {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn subdirs(&self, path: &Path) -> Result<Vec<String>, CgroupError> {
        self.fs.subdirs(path).map_err(|source| CgroupError::List {
            path: path.to_owned(),
            source,
        })
    }

    /// Pids listed in `file` (`cgroup.procs` or `tasks`) of `dir` and below.
    fn subtree_pids(
        &self,
        dir: &Path,
        file: &str,
        out: &mut BTreeSet<u32>,
    ) -> Result<(), CgroupError> {
        if !self.fs.exists(dir) {
            return Ok(());
        }
        let path = dir.join(file);
        let text = self.read(&path)?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
                path: path.clone(),
                value: line.to_owned(),
                expected: "one pid per line",
            })?;
            out.insert(pid);
        }
        for child in self.subdirs(dir)? {
            self.subtree_pids(&dir.join(child), file, out)?;
        }
        Ok(())
    }

    /// Every cgroup directory from `dir` down, children before parents.
    fn subtree_bottom_up(&self, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        if !self.fs.exists(dir) {
            return Ok(());
        }
        for child in self.subdirs(dir)? {
            self.subtree_bottom_up(&dir.join(child), out)?;
        }
        out.push(dir.to_owned());
        Ok(())
    }

    fn remove_tree(&self, dir: &Path) -> Result<(), CgroupError> {
        let mut dirs = Vec::new();
        self.subtree_bottom_up(dir, &mut dirs)?;
        for d in dirs {
            let deadline = Instant::now() + self.wait;
            loop {
                match self.fs.remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(source) => return Err(CgroupError::Remove { path: d, source }),
                }
            }
        }
        Ok(())
    }

    /// Polls `done` until it holds or the wait runs out; `path` and `expected`
    /// name the state in the timeout error.
    fn wait_for(
        &self,
        path: &Path,
        expected: &'static str,
        mut done: impl FnMut(&Self) -> Result<bool, CgroupError>,
    ) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            if done(self)? {
                return Ok(());
            }
            if start.elapsed() >= self.wait {
                let last = self
                    .fs
                    .read(path)
                    .map_or_else(|e| format!("unreadable: {e}"), |t| t.trim().to_owned());
                return Err(CgroupError::Timeout {
                    path: path.to_owned(),
                    expected,
                    last,
                    waited: self.wait,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// `max` → `None`, a number → `Some`.
fn parse_max(text: &str) -> Option<Option<u64>> {
    if text == "max" {
        Some(None)
    } else {
        text.parse().ok().map(Some)
    }
}

fn format_max(value: Option<u64>) -> String {
    value.map_or_else(|| "max".to_owned(), |v| v.to_string())
}
