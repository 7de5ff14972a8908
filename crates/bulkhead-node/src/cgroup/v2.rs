//! cgroup v2: one tree, controllers enabled down the path through
//! `cgroup.subtree_control` (Documentation/admin-guide/cgroup-v2.rst).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bulkhead_spec::parse_cpuset;

use super::limits::{CpuMax, Cpuset, Device, IoDeviceLimit, Limits, format_cpus};
use super::usage::{CpuUsage, IoUsage, MemoryEvents, MemoryUsage, Pressure, PressureStat, Usage};
use super::{CgroupError, Change, Controller, Ctx, format_max, parse_max};

/// Controllers enabled for every tenant, and those enabled when the root offers
/// them (their limits then error if missing).
const ALWAYS: [Controller; 3] = [Controller::Cpu, Controller::Memory, Controller::Pids];
const IF_OFFERED: [Controller; 2] = [Controller::Io, Controller::Cpuset];

fn words(text: &str) -> BTreeSet<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

pub(super) fn check_root_controllers(
    ctx: &Ctx<'_>,
    root: &Path,
    needed: &[Controller],
) -> Result<(), CgroupError> {
    let offered = words(&ctx.read(&root.join("cgroup.controllers"))?);
    for c in needed {
        if let Some(name) = c.v2_name()
            && !offered.contains(name)
        {
            return Err(CgroupError::MissingController { controller: *c });
        }
    }
    Ok(())
}

pub(super) fn create(
    ctx: &Ctx<'_>,
    root: &Path,
    rel: &Path,
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    check_root_controllers(ctx, root, &ALWAYS)?;
    let offered = words(&ctx.read(&root.join("cgroup.controllers"))?);
    let enable: Vec<&str> = ALWAYS
        .iter()
        .chain(IF_OFFERED.iter())
        .filter_map(|c| c.v2_name())
        .filter(|n| offered.contains(*n))
        .collect();
    let mut dir = root.to_owned();
    for component in rel.components() {
        // The parent must delegate the controllers before the child exists.
        let control = dir.join("cgroup.subtree_control");
        let enabled = words(&ctx.read(&control)?);
        let missing: Vec<String> = enable
            .iter()
            .filter(|n| !enabled.contains(**n))
            .map(|n| format!("+{n}"))
            .collect();
        if !missing.is_empty() {
            ctx.write(&control, &missing.join(" "), changes)?;
        }
        dir.push(component);
        ctx.mkdir(&dir)?;
    }
    Ok(())
}

/// The controllers enabled for `dir` (its `cgroup.controllers`).
fn controllers(ctx: &Ctx<'_>, dir: &Path) -> Result<BTreeSet<String>, CgroupError> {
    Ok(words(&ctx.read(&dir.join("cgroup.controllers"))?))
}

fn need(have: &BTreeSet<String>, c: Controller) -> Result<(), CgroupError> {
    match c.v2_name() {
        Some(name) if !have.contains(name) => Err(CgroupError::MissingController { controller: c }),
        _ => Ok(()),
    }
}

fn parse_cpu_max(path: &Path, text: &str) -> Result<Option<CpuMax>, CgroupError> {
    let bad = || CgroupError::Parse {
        path: path.to_owned(),
        value: text.to_owned(),
        expected: "\"quota period\" (quota a number or max)",
    };
    let mut fields = text.split_whitespace();
    let quota = parse_max(fields.next().ok_or_else(bad)?).ok_or_else(bad)?;
    let period: u64 = fields.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    Ok(quota.map(|quota_us| CpuMax {
        quota_us,
        period_us: period,
    }))
}

/// `io.max`: `MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..` per limited device.
fn parse_io_max(path: &Path, text: &str) -> Result<Vec<IoDeviceLimit>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || CgroupError::Parse {
            path: path.to_owned(),
            value: line.to_owned(),
            expected: "\"MAJ:MIN rbps=N wbps=N riops=N wiops=N\" (N a number or max)",
        };
        let mut fields = line.split_whitespace();
        let device = fields.next().and_then(Device::parse).ok_or_else(bad)?;
        let mut limit = IoDeviceLimit {
            device,
            read_bps: None,
            write_bps: None,
            read_iops: None,
            write_iops: None,
        };
        for field in fields {
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            let value = parse_max(value).ok_or_else(bad)?;
            match key {
                "rbps" => limit.read_bps = value,
                "wbps" => limit.write_bps = value,
                "riops" => limit.read_iops = value,
                "wiops" => limit.write_iops = value,
                _ => return Err(bad()),
            }
        }
        if !limit.is_unlimited() {
            out.push(limit);
        }
    }
    out.sort_by_key(|l| l.device);
    Ok(out)
}

fn format_io_max(limit: &IoDeviceLimit) -> String {
    format!(
        "{} rbps={} wbps={} riops={} wiops={}",
        limit.device,
        format_max(limit.read_bps),
        format_max(limit.write_bps),
        format_max(limit.read_iops),
        format_max(limit.write_iops)
    )
}

fn read_cpuset(ctx: &Ctx<'_>, dir: &Path) -> Result<Option<Cpuset>, CgroupError> {
    let path = dir.join("cpuset.cpus");
    let text = ctx.read_trim(&path)?;
    if text.is_empty() {
        return Ok(None);
    }
    let cpus = parse_cpuset(&text).ok_or_else(|| CgroupError::Parse {
        path: path.clone(),
        value: text.clone(),
        expected: "a cpu list such as 0-1,4",
    })?;
    let partition = ctx.read_trim(&dir.join("cpuset.cpus.partition"))?;
    Ok(Some(Cpuset {
        cpus,
        exclusive: partition == "root",
    }))
}

pub(super) fn observe(ctx: &Ctx<'_>, root: &Path, rel: &Path) -> Result<Limits, CgroupError> {
    let dir = root.join(rel);
    let have = controllers(ctx, &dir)?;
    for c in ALWAYS {
        need(&have, c)?;
    }
    let weight_path = dir.join("cpu.weight");
    let weight = ctx.read_u64(&weight_path)?;
    let cpu_weight = u32::try_from(weight).map_err(|_| CgroupError::Parse {
        path: weight_path,
        value: weight.to_string(),
        expected: "a weight 1-10000",
    })?;
    let cpu_max_path = dir.join("cpu.max");
    let cpu_max = parse_cpu_max(&cpu_max_path, &ctx.read_trim(&cpu_max_path)?)?;
    let swap_path = dir.join("memory.swap.max");
    let swap_max = if ctx.fs.exists(&swap_path) {
        ctx.read_max(&swap_path)?
    } else {
        None
    };
    let io = if have.contains("io") {
        let path = dir.join("io.max");
        parse_io_max(&path, &ctx.read(&path)?)?
    } else {
        Vec::new()
    };
    let cpuset = if have.contains("cpuset") {
        read_cpuset(ctx, &dir)?
    } else {
        None
    };
    Ok(Limits {
        cpu_weight,
        cpu_max,
        memory_max: ctx.read_max(&dir.join("memory.max"))?,
        swap_max,
        pids_max: ctx.read_max(&dir.join("pids.max"))?,
        io,
        cpuset,
    })
}

pub(super) fn apply(
    ctx: &Ctx<'_>,
    root: &Path,
    rel: &Path,
    want: &Limits,
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    let dir = root.join(rel);
    let have = controllers(ctx, &dir)?;
    for c in ALWAYS {
        need(&have, c)?;
    }
    if !want.io.is_empty() {
        need(&have, Controller::Io)?;
    }
    if want.cpuset.is_some() {
        need(&have, Controller::Cpuset)?;
    }
    let swap_path = dir.join("memory.swap.max");
    if want.swap_max.is_some() && !ctx.fs.exists(&swap_path) {
        return Err(CgroupError::Unsupported {
            what: "swap accounting",
            path: swap_path,
            expected: "a kernel with CONFIG_MEMCG_SWAP, booted without swapaccount=0",
        });
    }
    let got = observe(ctx, root, rel)?;

    if got.cpu_weight != want.cpu_weight {
        ctx.write(
            &dir.join("cpu.weight"),
            &want.cpu_weight.to_string(),
            changes,
        )?;
    }
    if got.cpu_max != want.cpu_max {
        let value = match want.cpu_max {
            Some(m) => format!("{} {}", m.quota_us, m.period_us),
            None => "max".to_owned(),
        };
        ctx.write(&dir.join("cpu.max"), &value, changes)?;
    }
    if got.memory_max != want.memory_max {
        ctx.write(
            &dir.join("memory.max"),
            &format_max(want.memory_max),
            changes,
        )?;
    }
    if got.swap_max != want.swap_max {
        ctx.write(&swap_path, &format_max(want.swap_max), changes)?;
    }
    if got.pids_max != want.pids_max {
        ctx.write(&dir.join("pids.max"), &format_max(want.pids_max), changes)?;
    }
    if got.io != want.io {
        let path = dir.join("io.max");
        let wanted: BTreeMap<Device, &IoDeviceLimit> =
            want.io.iter().map(|l| (l.device, l)).collect();
        for old in &got.io {
            if !wanted.contains_key(&old.device) {
                let clear = IoDeviceLimit {
                    device: old.device,
                    read_bps: None,
                    write_bps: None,
                    read_iops: None,
                    write_iops: None,
                };
                ctx.write(&path, &format_io_max(&clear), changes)?;
            }
        }
        for limit in &want.io {
            if !got.io.contains(limit) {
                ctx.write(&path, &format_io_max(limit), changes)?;
            }
        }
    }
    if have.contains("cpuset") && got.cpuset != want.cpuset {
        apply_cpuset(
            ctx,
            &dir,
            got.cpuset.as_ref(),
            want.cpuset.as_ref(),
            changes,
        )?;
    }
    Ok(())
}

fn apply_cpuset(
    ctx: &Ctx<'_>,
    dir: &Path,
    got: Option<&Cpuset>,
    want: Option<&Cpuset>,
    changes: &mut Vec<Change>,
) -> Result<(), CgroupError> {
    let cpus_path = dir.join("cpuset.cpus");
    let partition_path = dir.join("cpuset.cpus.partition");
    let was_root = got.is_some_and(|c| c.exclusive);
    let want_root = want.is_some_and(|c| c.exclusive);
    if was_root && !want_root {
        ctx.write(&partition_path, "member", changes)?;
    }
    let want_cpus = want.map(|c| format_cpus(&c.cpus)).unwrap_or_default();
    if got.map(|c| &c.cpus) != want.map(|c| &c.cpus) {
        ctx.write(&cpus_path, &want_cpus, changes)?;
    }
    if want_root && !was_root {
        ctx.write(&partition_path, "root", changes)?;
        let state = ctx.read_trim(&partition_path)?;
        if state != "root" {
            let primary = CgroupError::Partition {
                path: partition_path.clone(),
                state,
            };
            return match ctx.write(&partition_path, "member", changes) {
                Ok(()) => Err(primary),
                Err(cleanup) => Err(CgroupError::Cleanup {
                    primary: Box::new(primary),
                    cleanup: Box::new(cleanup),
                }),
            };
        }
    }
    Ok(())
}

fn events(ctx: &Ctx<'_>, dir: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    ctx.read_keyed(&dir.join("cgroup.events"))
}

pub(super) fn set_frozen(
    ctx: &Ctx<'_>,
    root: &Path,
    rel: &Path,
    frozen: bool,
) -> Result<(), CgroupError> {
    let dir = root.join(rel);
    let want = u64::from(frozen);
    ctx.write_raw(&dir.join("cgroup.freeze"), &want.to_string())?;
    let expected = if frozen { "frozen 1" } else { "frozen 0" };
    ctx.wait_for(&dir.join("cgroup.events"), expected, |ctx| {
        Ok(events(ctx, &dir)?.get("frozen") == Some(&want))
    })
}

pub(super) fn kill_all(ctx: &Ctx<'_>, root: &Path, rel: &Path) -> Result<(), CgroupError> {
    let dir = root.join(rel);
    let kill = dir.join("cgroup.kill");
    if ctx.fs.exists(&kill) {
        ctx.write_raw(&kill, "1")?;
    } else {
        // Kernels before 5.14: freeze, signal, thaw, as on v1.
        set_frozen(ctx, root, rel, true)?;
        let mut pids = BTreeSet::new();
        let signalled = ctx
            .subtree_pids(&dir, "cgroup.procs", &mut pids)
            .and_then(|()| {
                pids.iter().try_for_each(|pid| {
                    ctx.fs.kill(*pid).map_err(|source| CgroupError::Signal {
                        pid: *pid,
                        path: dir.clone(),
                        source,
                    })
                })
            });
        let thawed = set_frozen(ctx, root, rel, false);
        match (signalled, thawed) {
            (Ok(()), Ok(())) => {}
            (Err(e), Ok(())) | (Ok(()), Err(e)) => return Err(e),
            (Err(primary), Err(cleanup)) => {
                return Err(CgroupError::Cleanup {
                    primary: Box::new(primary),
                    cleanup: Box::new(cleanup),
                });
            }
        }
    }
    ctx.wait_for(&dir.join("cgroup.events"), "populated 0", |ctx| {
        Ok(events(ctx, &dir)?.get("populated") == Some(&0))
    })
}

pub(super) fn usage(ctx: &Ctx<'_>, root: &Path, rel: &Path) -> Result<Usage, CgroupError> {
    let dir = root.join(rel);
    let stat = ctx.read_keyed(&dir.join("cpu.stat"))?;
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let cpu = CpuUsage {
        usage_ns: get("usage_usec").saturating_mul(1000),
        throttled_ns: get("throttled_usec").saturating_mul(1000),
        nr_throttled: get("nr_throttled"),
    };
    let ev = ctx.read_keyed(&dir.join("memory.events"))?;
    let ev_get = |k: &str| ev.get(k).copied().unwrap_or(0);
    let events = MemoryEvents {
        max: ev_get("max"),
        oom: ev_get("oom"),
        oom_kill: ev_get("oom_kill"),
    };
    let memory = MemoryUsage {
        current: ctx.read_u64(&dir.join("memory.current"))?,
        max: ctx.read_max(&dir.join("memory.max"))?,
        failcnt: None,
        oom_kill: Some(events.oom_kill),
        events: Some(events),
    };
    let io_stat = dir.join("io.stat");
    let io = if ctx.fs.exists(&io_stat) {
        parse_io_stat(&io_stat, &ctx.read(&io_stat)?)?
    } else {
        Vec::new()
    };
    Ok(Usage {
        cpu,
        memory,
        pids_current: ctx.read_u64(&dir.join("pids.current"))?,
        io,
        pressure: Pressure {
            cpu: pressure(ctx, &dir.join("cpu.pressure")),
            memory: pressure(ctx, &dir.join("memory.pressure")),
            io: pressure(ctx, &dir.join("io.pressure")),
        },
    })
}

/// A pressure file, if the kernel offers it: absent files and refused reads (a kernel
/// booted with `psi=0` answers EOPNOTSUPP) are `None`, never zeros.
fn pressure(ctx: &Ctx<'_>, path: &Path) -> Option<PressureStat> {
    if !ctx.fs.exists(path) {
        return None;
    }
    ctx.read(path)
        .ok()
        .and_then(|text| super::usage::parse_pressure(&text))
}

/// `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..`.
fn parse_io_stat(path: &Path, text: &str) -> Result<Vec<IoUsage>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || CgroupError::Parse {
            path: path.to_owned(),
            value: line.to_owned(),
            expected: "\"MAJ:MIN rbytes=N wbytes=N ...\"",
        };
        let mut fields = line.split_whitespace();
        let device = fields.next().and_then(Device::parse).ok_or_else(bad)?;
        let mut usage = IoUsage {
            device,
            read_bytes: 0,
            write_bytes: 0,
        };
        for field in fields {
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            match key {
                "rbytes" => usage.read_bytes = value.parse().map_err(|_| bad())?,
                "wbytes" => usage.write_bytes = value.parse().map_err(|_| bad())?,
                _ => {}
            }
        }
        out.push(usage);
    }
    out.sort_by_key(|u| u.device);
    Ok(out)
}
