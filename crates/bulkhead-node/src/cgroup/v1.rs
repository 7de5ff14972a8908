//! cgroup v1: one hierarchy per controller (or per co-mounted group), the same
//! relative path in each (Documentation/admin-guide/cgroup-v1/).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bulkhead_spec::parse_cpuset;

use super::layout::{Controller, Layout};
use super::limits::{
    CpuMax, Cpuset, Device, IoDeviceLimit, Limits, format_cpus, shares_to_weight, weight_to_shares,
};
use super::usage::{CpuUsage, IoUsage, MemoryUsage, Pressure, Usage};
use super::{CgroupError, Change, Ctx};

/// v1 memory files read a huge page-aligned number (`PAGE_COUNTER_MAX` pages)
/// for "unlimited"; anything from 4 EiB up is taken as that.
const UNLIMITED_BYTES: u64 = 1 << 62;

/// The four throttle files and which field of [`IoDeviceLimit`] each holds.
const THROTTLE_FILES: [&str; 4] = [
    "blkio.throttle.read_bps_device",
    "blkio.throttle.write_bps_device",
    "blkio.throttle.read_iops_device",
    "blkio.throttle.write_iops_device",
];

fn io_field(limit: &mut IoDeviceLimit, index: usize) -> &mut Option<u64> {
    match index {
        0 => &mut limit.read_bps,
        1 => &mut limit.write_bps,
        2 => &mut limit.read_iops,
        _ => &mut limit.write_iops,
    }
}

fn dir(layout: &Layout, c: Controller, rel: &Path) -> Result<PathBuf, CgroupError> {
    Ok(layout.require_v1(c)?.join(rel))
}

fn read_cpus(ctx: &Ctx<'_>, dir: &Path) -> Result<Vec<u32>, CgroupError> {
    let path = dir.join("cpuset.cpus");
    let text = ctx.read_trim(&path)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    match parse_cpuset(&text) {
        Some(cpus) => Ok(cpus),
        None => Err(CgroupError::Parse {
            path,
            value: text,
            expected: "a cpu list such as 0-1,4",
        }),
    }
}

fn read_flag(ctx: &Ctx<'_>, path: &Path) -> Result<bool, CgroupError> {
    Ok(ctx.read_u64(path)? == 1)
}

/// The CPUs a cgroup without a cpuset of its own gets: its parent's, minus those
/// of exclusive siblings.
fn inherited_cpus(ctx: &Ctx<'_>, dir: &Path) -> Result<Vec<u32>, CgroupError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(CgroupError::InvalidPath {
            path: dir.to_owned(),
        });
    };
    let mut cpus: BTreeSet<u32> = read_cpus(ctx, parent)?.into_iter().collect();
    for sibling in ctx.subdirs(parent)? {
        if std::ffi::OsStr::new(&sibling) == name {
            continue;
        }
        let sibling = parent.join(sibling);
        if read_flag(ctx, &sibling.join("cpuset.cpu_exclusive"))? {
            for cpu in read_cpus(ctx, &sibling)? {
                cpus.remove(&cpu);
            }
        }
    }
    if cpus.is_empty() {
        return Err(CgroupError::InvalidLimit {
            what: "inherited cpuset",
            value: dir.display().to_string(),
            expected: "at least one cpu of the parent not taken by an exclusive sibling",
        });
    }
    Ok(cpus.into_iter().collect())
}

pub(super) fn create(
    ctx: &Ctx<'_>,
    layout: &Layout,
    rel: &Path,
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    for c in Controller::REQUIRED {
        layout.require_v1(c)?;
    }
    let cpuset_root = layout.v1_root(Controller::Cpuset);
    for root in layout.roots() {
        let mut dir = root.to_owned();
        for component in rel.components() {
            let parent = dir.clone();
            dir.push(component);
            ctx.mkdir(&dir)?;
            if cpuset_root == Some(root) {
                // No task may join a cpuset without cpus and mems: copy them from
                // the parent (also repairs a half-created cgroup of a crashed run).
                if read_cpus(ctx, &dir)?.is_empty() {
                    let cpus = format_cpus(&inherited_cpus(ctx, &dir)?);
                    ctx.write(&dir.join("cpuset.cpus"), &cpus, changes)?;
                }
                let mems_path = dir.join("cpuset.mems");
                if ctx.read_trim(&mems_path)?.is_empty() {
                    let mems = ctx.read_trim(&parent.join("cpuset.mems"))?;
                    ctx.write(&mems_path, &mems, changes)?;
                }
            }
        }
    }
    Ok(())
}

/// A memory file: a number, "unlimited" from 4 EiB up.
fn read_bytes(ctx: &Ctx<'_>, path: &Path) -> Result<Option<u64>, CgroupError> {
    let value = ctx.read_u64(path)?;
    Ok((value < UNLIMITED_BYTES).then_some(value))
}

/// `MAJ:MIN value` lines.
fn read_device_values(ctx: &Ctx<'_>, path: &Path) -> Result<BTreeMap<Device, u64>, CgroupError> {
    let text = ctx.read(path)?;
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || CgroupError::Parse {
            path: path.to_owned(),
            value: line.to_owned(),
            expected: "\"MAJ:MIN value\" lines",
        };
        let mut fields = line.split_whitespace();
        let device = fields.next().and_then(Device::parse).ok_or_else(bad)?;
        let value = fields.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        out.insert(device, value);
    }
    Ok(out)
}

fn read_io(ctx: &Ctx<'_>, dir: &Path) -> Result<Vec<IoDeviceLimit>, CgroupError> {
    let mut merged: BTreeMap<Device, IoDeviceLimit> = BTreeMap::new();
    for (index, file) in THROTTLE_FILES.iter().enumerate() {
        for (device, value) in read_device_values(ctx, &dir.join(file))? {
            let entry = merged.entry(device).or_insert(IoDeviceLimit {
                device,
                read_bps: None,
                write_bps: None,
                read_iops: None,
                write_iops: None,
            });
            *io_field(entry, index) = Some(value);
        }
    }
    Ok(merged.into_values().filter(|l| !l.is_unlimited()).collect())
}

pub(super) fn observe(ctx: &Ctx<'_>, layout: &Layout, rel: &Path) -> Result<Limits, CgroupError> {
    let cpu = dir(layout, Controller::Cpu, rel)?;
    let memory = dir(layout, Controller::Memory, rel)?;
    let pids = dir(layout, Controller::Pids, rel)?;

    let cpu_weight = shares_to_weight(ctx.read_u64(&cpu.join("cpu.shares"))?);
    let quota_path = cpu.join("cpu.cfs_quota_us");
    let quota_text = ctx.read_trim(&quota_path)?;
    let cpu_max = if quota_text == "-1" {
        None
    } else {
        let quota_us = quota_text.parse().map_err(|_| CgroupError::Parse {
            path: quota_path,
            value: quota_text.clone(),
            expected: "microseconds or -1",
        })?;
        Some(CpuMax {
            quota_us,
            period_us: ctx.read_u64(&cpu.join("cpu.cfs_period_us"))?,
        })
    };

    let memory_max = read_bytes(ctx, &memory.join("memory.limit_in_bytes"))?;
    let memsw_path = memory.join("memory.memsw.limit_in_bytes");
    let swap_max = if ctx.fs.exists(&memsw_path) {
        match (memory_max, read_bytes(ctx, &memsw_path)?) {
            (Some(mem), Some(memsw)) => Some(memsw.saturating_sub(mem)),
            _ => None,
        }
    } else {
        None
    };

    let io = match layout.v1_root(Controller::Io) {
        Some(root) => read_io(ctx, &root.join(rel))?,
        None => Vec::new(),
    };
    let cpuset = match layout.v1_root(Controller::Cpuset) {
        Some(root) => {
            let dir = root.join(rel);
            let cpus = read_cpus(ctx, &dir)?;
            let exclusive = read_flag(ctx, &dir.join("cpuset.cpu_exclusive"))?;
            if !exclusive && cpus == inherited_cpus(ctx, &dir)? {
                None
            } else {
                Some(Cpuset { cpus, exclusive })
            }
        }
        None => None,
    };
    Ok(Limits {
        cpu_weight,
        cpu_max,
        memory_max,
        swap_max,
        pids_max: ctx.read_max(&pids.join("pids.max"))?,
        io,
        cpuset,
    })
}

fn format_bytes(value: Option<u64>) -> String {
    value.map_or_else(|| "-1".to_owned(), |v| v.to_string())
}

pub(super) fn apply(
    ctx: &Ctx<'_>,
    layout: &Layout,
    rel: &Path,
    want: &Limits,
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    let cpu = dir(layout, Controller::Cpu, rel)?;
    let memory = dir(layout, Controller::Memory, rel)?;
    let pids = dir(layout, Controller::Pids, rel)?;
    let io_root = if want.io.is_empty() {
        layout.v1_root(Controller::Io)
    } else {
        Some(layout.require_v1(Controller::Io)?)
    };
    let cpuset_root = if want.cpuset.is_none() {
        layout.v1_root(Controller::Cpuset)
    } else {
        Some(layout.require_v1(Controller::Cpuset)?)
    };
    let memsw_path = memory.join("memory.memsw.limit_in_bytes");
    let swap_accounting = ctx.fs.exists(&memsw_path);
    if want.swap_max.is_some() && !swap_accounting {
        return Err(CgroupError::Unsupported {
            what: "swap accounting",
            path: memsw_path,
            expected: "a kernel booted with swapaccount=1 (CONFIG_MEMCG_SWAP)",
        });
    }
    if want.swap_max.is_some() && want.memory_max.is_none() {
        return Err(CgroupError::InvalidLimit {
            what: "swap limit",
            value: "a swap limit without a memory limit".to_owned(),
            expected: "a memory limit too (v1 limits memory + swap together)",
        });
    }
    let got = observe(ctx, layout, rel)?;

    if got.cpu_weight != want.cpu_weight {
        let shares = weight_to_shares(want.cpu_weight);
        ctx.write(&cpu.join("cpu.shares"), &shares.to_string(), changes)?;
    }
    if got.cpu_max != want.cpu_max {
        apply_cpu_max(ctx, &cpu, got.cpu_max, want.cpu_max, changes)?;
    }
    apply_memory(ctx, &memory, swap_accounting, want, changes)?;
    if got.pids_max != want.pids_max {
        let value = want
            .pids_max
            .map_or_else(|| "max".to_owned(), |v| v.to_string());
        ctx.write(&pids.join("pids.max"), &value, changes)?;
    }
    if let Some(root) = io_root
        && got.io != want.io
    {
        apply_io(ctx, &root.join(rel), &want.io, changes)?;
    }
    if let Some(root) = cpuset_root
        && got.cpuset != want.cpuset
    {
        apply_cpuset(ctx, root, rel, want.cpuset.as_ref(), changes)?;
    }
    Ok(())
}

fn apply_cpu_max(
    ctx: &Ctx<'_>,
    cpu: &Path,
    got: Option<CpuMax>,
    want: Option<CpuMax>,
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    let quota_path = cpu.join("cpu.cfs_quota_us");
    let period_path = cpu.join("cpu.cfs_period_us");
    let Some(want) = want else {
        return ctx.write(&quota_path, "-1", changes);
    };
    let period = ctx.read_u64(&period_path)?;
    if period == want.period_us {
        return ctx.write(&quota_path, &want.quota_us.to_string(), changes);
    }
    // Pass through whichever intermediate state grants less CPU: new quota with
    // the old period, or old quota with the new period.
    let quota_first = match got {
        None => false,
        Some(old) => {
            u128::from(want.quota_us) * u128::from(want.period_us)
                < u128::from(old.quota_us) * u128::from(period)
        }
    };
    if quota_first {
        ctx.write(&quota_path, &want.quota_us.to_string(), changes)?;
        ctx.write(&period_path, &want.period_us.to_string(), changes)
    } else {
        ctx.write(&period_path, &want.period_us.to_string(), changes)?;
        ctx.write(&quota_path, &want.quota_us.to_string(), changes)
    }
}

/// memsw (memory + swap) may never be below memory: raise memsw first when
/// growing, lower memory first when shrinking.
fn apply_memory(
    ctx: &Ctx<'_>,
    memory: &Path,
    swap_accounting: bool,
    want: &Limits,
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    let mem_path = memory.join("memory.limit_in_bytes");
    let memsw_path = memory.join("memory.memsw.limit_in_bytes");
    let cur_mem = read_bytes(ctx, &mem_path)?;
    if !swap_accounting {
        if cur_mem != want.memory_max {
            ctx.write(&mem_path, &format_bytes(want.memory_max), changes)?;
        }
        return Ok(());
    }
    let cur_memsw = read_bytes(ctx, &memsw_path)?;
    let want_memsw = match (want.memory_max, want.swap_max) {
        (Some(mem), Some(swap)) => Some(mem.saturating_add(swap)),
        _ => None,
    };
    let mem_changes = cur_mem != want.memory_max;
    let memsw_changes = cur_memsw != want_memsw;
    // None is unlimited: compare with it as the largest value.
    let at_most = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a <= b,
    };
    let memory_first = at_most(want.memory_max, cur_memsw);
    if memory_first {
        if mem_changes {
            ctx.write(&mem_path, &format_bytes(want.memory_max), changes)?;
        }
        if memsw_changes {
            ctx.write(&memsw_path, &format_bytes(want_memsw), changes)?;
        }
    } else {
        if memsw_changes {
            ctx.write(&memsw_path, &format_bytes(want_memsw), changes)?;
        }
        if mem_changes {
            ctx.write(&mem_path, &format_bytes(want.memory_max), changes)?;
        }
    }
    Ok(())
}

fn apply_io(
    ctx: &Ctx<'_>,
    dir: &Path,
    want: &[IoDeviceLimit],
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    for (index, file) in THROTTLE_FILES.iter().enumerate() {
        let path = dir.join(file);
        let got = read_device_values(ctx, &path)?;
        let mut wanted: BTreeMap<Device, u64> = BTreeMap::new();
        for limit in want {
            let mut limit = *limit;
            if let Some(v) = *io_field(&mut limit, index) {
                wanted.insert(limit.device, v);
            }
        }
        // "MAJ:MIN 0" removes a rule.
        for device in got.keys().filter(|d| !wanted.contains_key(d)) {
            ctx.write(&path, &format!("{device} 0"), changes)?;
        }
        for (device, value) in &wanted {
            if got.get(device) != Some(value) {
                ctx.write(&path, &format!("{device} {value}"), changes)?;
            }
        }
    }
    Ok(())
}

fn apply_cpuset(
    ctx: &Ctx<'_>,
    root: &Path,
    rel: &Path,
    want: Option<&Cpuset>,
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    let dir = root.join(rel);
    let flag = dir.join("cpuset.cpu_exclusive");
    let exclusive_now = read_flag(ctx, &flag)?;
    let want_exclusive = want.is_some_and(|c| c.exclusive);
    if exclusive_now && !want_exclusive {
        ctx.write(&flag, "0", changes)?;
    }
    let cpus = match want {
        Some(c) => c.cpus.clone(),
        None => inherited_cpus(ctx, &dir)?,
    };
    if want_exclusive {
        // The kernel allows an exclusive cpuset only under an exclusive parent:
        // mark the ancestors below the hierarchy root (the instance) first.
        let mut ancestors = Vec::new();
        let mut up = dir.parent();
        while let Some(a) = up.filter(|a| *a != root) {
            ancestors.push(a.to_owned());
            up = a.parent();
        }
        for a in ancestors.iter().rev() {
            let f = a.join("cpuset.cpu_exclusive");
            if !read_flag(ctx, &f)? {
                ctx.write(&f, "1", changes)?;
            }
        }
        // Siblings may not overlap an exclusive cpuset: take its cpus away from
        // the non-exclusive ones (their children first) before setting the flag.
        if let Some(parent) = dir.parent() {
            for sibling in ctx.subdirs(parent)? {
                let sibling = parent.join(sibling);
                if sibling == dir || read_flag(ctx, &sibling.join("cpuset.cpu_exclusive"))? {
                    continue;
                }
                let mut subtree = Vec::new();
                ctx.subtree_bottom_up(&sibling, &mut subtree)?;
                for d in subtree {
                    let current = read_cpus(ctx, &d)?;
                    let left: Vec<u32> = current
                        .iter()
                        .copied()
                        .filter(|c| !cpus.contains(c))
                        .collect();
                    if left.is_empty() {
                        return Err(CgroupError::InvalidLimit {
                            what: "exclusive cpuset",
                            value: format_cpus(&cpus),
                            expected: "cpus that leave every sibling tenant at least one cpu",
                        });
                    }
                    if left != current {
                        ctx.write(&d.join("cpuset.cpus"), &format_cpus(&left), changes)?;
                    }
                }
            }
        }
    }
    // Children must stay within their parent: narrow them first (bottom up);
    // one sharing no cpu with the new set moves to all of it afterwards.
    let mut below = Vec::new();
    ctx.subtree_bottom_up(&dir, &mut below)?;
    below.pop(); // `dir` itself comes last
    let mut moved = Vec::new();
    for child in &below {
        let current = read_cpus(ctx, child)?;
        let narrowed: Vec<u32> = current
            .iter()
            .copied()
            .filter(|c| cpus.contains(c))
            .collect();
        if narrowed.is_empty() {
            moved.push(child);
        } else if narrowed != current {
            ctx.write(&child.join("cpuset.cpus"), &format_cpus(&narrowed), changes)?;
        }
    }
    if read_cpus(ctx, &dir)? != cpus {
        ctx.write(&dir.join("cpuset.cpus"), &format_cpus(&cpus), changes)?;
    }
    for child in moved.into_iter().rev() {
        ctx.write(&child.join("cpuset.cpus"), &format_cpus(&cpus), changes)?;
    }
    if want_exclusive && !read_flag(ctx, &flag)? {
        ctx.write(&flag, "1", changes)?;
    }
    Ok(())
}

fn freezer_state(ctx: &Ctx<'_>, path: &Path) -> Result<String, CgroupError> {
    ctx.read_trim(path)
}

pub(super) fn set_frozen(
    ctx: &Ctx<'_>,
    layout: &Layout,
    rel: &Path,
    frozen: bool,
) -> Result<(), CgroupError> {
    let path = dir(layout, Controller::Freezer, rel)?.join("freezer.state");
    let (value, expected) = if frozen {
        ("FROZEN", "FROZEN")
    } else {
        ("THAWED", "THAWED")
    };
    ctx.write_raw(&path, value)?;
    // FREEZING until every task has stopped; a task stuck in the kernel can hold
    // it there, so write again while waiting (the documented way to retry).
    ctx.wait_for(&path, expected, |ctx| {
        let state = freezer_state(ctx, &path)?;
        if state == expected {
            return Ok(true);
        }
        ctx.write_raw(&path, value)?;
        Ok(false)
    })
}

pub(super) fn kill_all(ctx: &Ctx<'_>, layout: &Layout, rel: &Path) -> Result<(), CgroupError> {
    set_frozen(ctx, layout, rel, true)?;
    // Frozen: nothing can fork, and nothing can exit and free its pid for reuse,
    // until the thaw below. SIGKILL is delivered then.
    let mut signalled = Ok(());
    for root in layout.roots() {
        let dir = root.join(rel);
        let mut tasks = BTreeSet::new();
        let result = ctx.subtree_pids(&dir, "tasks", &mut tasks).and_then(|()| {
            tasks.iter().try_for_each(|pid| {
                ctx.fs.kill(*pid).map_err(|source| CgroupError::Signal {
                    pid: *pid,
                    path: dir.clone(),
                    source,
                })
            })
        });
        if let Err(e) = result {
            signalled = Err(e);
            break;
        }
    }
    let thawed = set_frozen(ctx, layout, rel, false);
    match (signalled, thawed) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(primary), Err(cleanup)) => Err(CgroupError::Cleanup {
            primary: Box::new(primary),
            cleanup: Box::new(cleanup),
        }),
    }
}

pub(super) fn usage(ctx: &Ctx<'_>, layout: &Layout, rel: &Path) -> Result<Usage, CgroupError> {
    let cpuacct = dir(layout, Controller::Cpuacct, rel)?;
    let cpu = dir(layout, Controller::Cpu, rel)?;
    let memory = dir(layout, Controller::Memory, rel)?;
    let pids = dir(layout, Controller::Pids, rel)?;
    let stat = ctx.read_keyed(&cpu.join("cpu.stat"))?;
    let cpu_usage = CpuUsage {
        usage_ns: ctx.read_u64(&cpuacct.join("cpuacct.usage"))?,
        throttled_ns: stat.get("throttled_time").copied().unwrap_or(0),
        nr_throttled: stat.get("nr_throttled").copied().unwrap_or(0),
    };
    let oom = ctx.read_keyed(&memory.join("memory.oom_control"))?;
    let memory_usage = MemoryUsage {
        current: ctx.read_u64(&memory.join("memory.usage_in_bytes"))?,
        max: read_bytes(ctx, &memory.join("memory.limit_in_bytes"))?,
        failcnt: Some(ctx.read_u64(&memory.join("memory.failcnt"))?),
        oom_kill: oom.get("oom_kill").copied(),
        events: None,
    };
    let io = match layout.v1_root(Controller::Io) {
        Some(root) => {
            let path = root
                .join(rel)
                .join("blkio.throttle.io_service_bytes_recursive");
            parse_service_bytes(&path, &ctx.read(&path)?)?
        }
        None => Vec::new(),
    };
    Ok(Usage {
        cpu: cpu_usage,
        memory: memory_usage,
        pids_current: ctx.read_u64(&pids.join("pids.current"))?,
        io,
        // v1 hierarchies have no per-cgroup pressure files.
        pressure: Pressure::default(),
    })
}

/// `MAJ:MIN Read N` / `Write N` / ... lines and a final `Total N`.
fn parse_service_bytes(path: &Path, text: &str) -> Result<Vec<IoUsage>, CgroupError> {
    let mut out: BTreeMap<Device, IoUsage> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, op, value] = fields[..] else {
            continue; // "Total N"
        };
        let bad = || CgroupError::Parse {
            path: path.to_owned(),
            value: line.to_owned(),
            expected: "\"MAJ:MIN Read|Write|... N\" lines",
        };
        let device = Device::parse(device).ok_or_else(bad)?;
        let value: u64 = value.parse().map_err(|_| bad())?;
        let entry = out.entry(device).or_insert(IoUsage {
            device,
            read_bytes: 0,
            write_bytes: 0,
        });
        match op {
            "Read" => entry.read_bytes = value,
            "Write" => entry.write_bytes = value,
            _ => {}
        }
    }
    Ok(out.into_values().collect())
}
