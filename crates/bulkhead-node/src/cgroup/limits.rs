//! The limits of one cgroup as typed values, built from the validated model
//! ([`Quota`] for a tenant, [`Resources`] for a workload) and read back by
//! `observe` into the same type, so a plan can compare desired with observed.

use std::fmt;

use bulkhead_spec::{Cpu, IoLimits, Quota, Resources, parse_cpuset};

use super::error::CgroupError;

/// Default CFS period, 100 ms (the kernel's default).
pub const DEFAULT_PERIOD_US: u64 = 100_000;
/// Longest CFS period the kernel accepts, 1 s.
pub const MAX_PERIOD_US: u64 = 1_000_000;
/// Shortest CFS quota the kernel accepts, 1 ms.
pub const MIN_QUOTA_US: u64 = 1_000;
/// `cpu.weight` of a cgroup nobody configured, and of every workload: workloads of
/// one tenant share the tenant's CPU equally.
pub const DEFAULT_WEIGHT: u32 = 100;

/// A block device, `major:minor` as in `/proc/partitions` and `io.max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Device {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl Device {
    /// From major and minor numbers.
    pub const fn new(major: u32, minor: u32) -> Self {
        Device { major, minor }
    }

    /// Parses `MAJ:MIN`.
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.split_once(':')?;
        Some(Device {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// A CFS bandwidth cap: `quota_us` of CPU time per `period_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuMax {
    /// Microseconds of CPU per period (over all CPUs).
    pub quota_us: u64,
    /// The period in microseconds.
    pub period_us: u64,
}

impl CpuMax {
    /// The cap for `cpu` cores: quota = millicores × period / 1000 with the default
    /// 100 ms period, or a 1 s period when that quota would fall below the kernel's
    /// 1 ms minimum (caps under 10m), so every millicore value is exact.
    pub fn from_cpu(cpu: Cpu) -> Self {
        let millis = cpu.millis();
        let quota_us = millis.saturating_mul(DEFAULT_PERIOD_US) / 1000;
        if quota_us >= MIN_QUOTA_US {
            CpuMax {
                quota_us,
                period_us: DEFAULT_PERIOD_US,
            }
        } else {
            CpuMax {
                quota_us: millis.saturating_mul(MAX_PERIOD_US) / 1000,
                period_us: MAX_PERIOD_US,
            }
        }
    }
}

/// CPUs a cgroup may run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpuset {
    /// CPU numbers, sorted, without duplicates.
    pub cpus: Vec<u32>,
    /// Whether no sibling may share them (v1 `cpuset.cpu_exclusive`, v2 a
    /// partition root).
    pub exclusive: bool,
}

/// Formats CPU numbers in the kernel's list syntax (`0-2,5`).
pub fn format_cpus(cpus: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let first = cpus[i];
        let mut last = first;
        while i + 1 < cpus.len() && cpus[i + 1] == last + 1 {
            i += 1;
            last = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if first == last {
            out.push_str(&first.to_string());
        } else {
            out.push_str(&format!("{first}-{last}"));
        }
        i += 1;
    }
    out
}

/// Throttling of one device; `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoDeviceLimit {
    /// The device.
    pub device: Device,
    /// Read bytes per second.
    pub read_bps: Option<u64>,
    /// Write bytes per second.
    pub write_bps: Option<u64>,
    /// Read operations per second.
    pub read_iops: Option<u64>,
    /// Write operations per second.
    pub write_iops: Option<u64>,
}

impl IoDeviceLimit {
    /// True when nothing on the device is limited.
    pub fn is_unlimited(&self) -> bool {
        self.read_bps.is_none()
            && self.write_bps.is_none()
            && self.read_iops.is_none()
            && self.write_iops.is_none()
    }
}

/// The limits of one cgroup. `None` means unlimited (`max`), so what `observe`
/// reads is exactly comparable with what the model asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Relative CPU weight under contention, 1-10000 (v2 `cpu.weight`; v1
    /// `cpu.shares` derived by [`weight_to_shares`]).
    pub cpu_weight: u32,
    /// CPU bandwidth cap.
    pub cpu_max: Option<CpuMax>,
    /// Memory hard limit in bytes, a multiple of the page size.
    pub memory_max: Option<u64>,
    /// Swap the cgroup may use in bytes; bulkhead asks for `Some(0)`. `None` when
    /// swap is not limited, which is also what a host without swap accounting
    /// reports.
    pub swap_max: Option<u64>,
    /// Most processes and threads.
    pub pids_max: Option<u64>,
    /// Per-device io throttling, sorted by device.
    pub io: Vec<IoDeviceLimit>,
    /// CPUs; `None` inherits the parent's (minus exclusive siblings' on v1).
    pub cpuset: Option<Cpuset>,
}

impl Limits {
    /// What a cgroup nobody configured has: everything unlimited, default weight.
    pub fn unlimited() -> Self {
        Limits {
            cpu_weight: DEFAULT_WEIGHT,
            cpu_max: None,
            memory_max: None,
            swap_max: None,
            pids_max: None,
            io: Vec::new(),
            cpuset: None,
        }
    }

    /// A tenant's limits. `io_device` is the tenant volume's block device, needed
    /// when the quota has io limits. Memory is rounded down to the page size, as
    /// the kernel does; swap is disabled; the cpuset, if any, is exclusive.
    pub fn for_tenant(quota: &Quota, io_device: Option<Device>) -> Result<Self, CgroupError> {
        if !(1..=10_000).contains(&quota.cpu_weight) {
            return Err(CgroupError::InvalidLimit {
                what: "cpu weight",
                value: quota.cpu_weight.to_string(),
                expected: "1-10000",
            });
        }
        let cpuset = match &quota.cpuset {
            None => None,
            Some(text) => {
                let cpus = parse_cpuset(text)
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| CgroupError::InvalidLimit {
                        what: "cpuset",
                        value: text.clone(),
                        expected: "a cpu list such as 0-1,4",
                    })?;
                Some(Cpuset {
                    cpus,
                    exclusive: true,
                })
            }
        };
        Ok(Limits {
            cpu_weight: quota.cpu_weight,
            cpu_max: quota.cpu.map(CpuMax::from_cpu),
            memory_max: Some(page_floor(quota.memory.get())),
            swap_max: Some(0),
            pids_max: Some(u64::from(quota.pids)),
            io: io_limits(&quota.io, io_device)?,
            cpuset,
        })
    }

    /// A workload's limits: its own cap, memory and pids, the default weight, no
    /// swap, the tenant's io limits and cpuset by inheritance.
    pub fn for_workload(resources: &Resources) -> Self {
        Limits {
            cpu_weight: DEFAULT_WEIGHT,
            cpu_max: resources.cpu.map(CpuMax::from_cpu),
            memory_max: Some(page_floor(resources.memory.get())),
            swap_max: Some(0),
            pids_max: Some(u64::from(resources.pids)),
            io: Vec::new(),
            cpuset: None,
        }
    }
}

fn io_limits(io: &IoLimits, device: Option<Device>) -> Result<Vec<IoDeviceLimit>, CgroupError> {
    if io.is_empty() {
        return Ok(Vec::new());
    }
    let device = device.ok_or(CgroupError::InvalidLimit {
        what: "io limits",
        value: "no device".to_owned(),
        expected: "the tenant volume's major:minor",
    })?;
    let positive = |what: &'static str, v: Option<u64>| match v {
        Some(0) => Err(CgroupError::InvalidLimit {
            what,
            value: "0".to_owned(),
            expected: "a positive rate (v1 reads 0 as no limit)",
        }),
        other => Ok(other),
    };
    Ok(vec![IoDeviceLimit {
        device,
        read_bps: positive("io read bps", io.read_bps.map(|b| b.get()))?,
        write_bps: positive("io write bps", io.write_bps.map(|b| b.get()))?,
        read_iops: positive("io read iops", io.read_iops.map(u64::from))?,
        write_iops: positive("io write iops", io.write_iops.map(u64::from))?,
    }])
}

/// The system page size.
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

fn page_floor(bytes: u64) -> u64 {
    let page = page_size();
    bytes / page * page
}

/// v2 `cpu.weight` → v1 `cpu.shares`, the kernel's own conversion
/// (`sched_weight_from_cgroup`): `shares = round(weight × 1024 / 100)`.
/// 1 → 10, 100 → 1024, 10000 → 102400.
pub fn weight_to_shares(weight: u32) -> u64 {
    (u64::from(weight) * 1024 + 50) / 100
}

/// v1 `cpu.shares` → v2 `cpu.weight` (`sched_weight_to_cgroup`):
/// `weight = clamp(round(shares × 100 / 1024), 1, 10000)`. Exact inverse of
/// [`weight_to_shares`] for every weight 1-10000.
pub fn shares_to_weight(shares: u64) -> u32 {
    let weight = (shares.saturating_mul(100) + 512) / 1024;
    // Clamped to 1..=10000, so the cast cannot truncate.
    weight.clamp(1, 10_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_and_shares_round_trip() {
        assert_eq!(weight_to_shares(1), 10);
        assert_eq!(weight_to_shares(100), 1024);
        assert_eq!(weight_to_shares(10_000), 102_400);
        for w in 1..=10_000 {
            assert_eq!(shares_to_weight(weight_to_shares(w)), w, "weight {w}");
        }
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn cpu_caps_are_exact() {
        assert_eq!(
            CpuMax::from_cpu(Cpu::from_millis(1500)),
            CpuMax {
                quota_us: 150_000,
                period_us: 100_000
            }
        );
        assert_eq!(
            CpuMax::from_cpu(Cpu::from_millis(10)),
            CpuMax {
                quota_us: 1_000,
                period_us: 100_000
            }
        );
        assert_eq!(
            CpuMax::from_cpu(Cpu::from_millis(5)),
            CpuMax {
                quota_us: 5_000,
                period_us: 1_000_000
            }
        );
    }

    #[test]
    fn cpu_lists_format_like_the_kernel() {
        assert_eq!(format_cpus(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(format_cpus(&[3]), "3");
        assert_eq!(format_cpus(&[]), "");
        assert_eq!(parse_cpuset("0-2,5"), Some(vec![0, 1, 2, 5]));
    }
}
