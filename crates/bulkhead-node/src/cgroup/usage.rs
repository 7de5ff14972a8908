//! What a cgroup has used, for `describe` and metrics.

use super::limits::Device;

/// Resource use of one cgroup (and its descendants).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time and throttling.
    pub cpu: CpuUsage,
    /// Memory.
    pub memory: MemoryUsage,
    /// Processes and threads now.
    pub pids_current: u64,
    /// Bytes moved per device.
    pub io: Vec<IoUsage>,
    /// Pressure stall information, where the kernel offers it per cgroup (v2 only).
    pub pressure: Pressure,
}

/// Pressure stall information of a cgroup (v2 `cpu.pressure`, `memory.pressure`,
/// `io.pressure`). `None` where the file is absent or unreadable (cgroup v1 has no
/// per-cgroup PSI; a kernel booted with `psi=0` refuses the read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    /// CPU.
    pub cpu: Option<PressureStat>,
    /// Memory.
    pub memory: Option<PressureStat>,
    /// Block I/O.
    pub io: Option<PressureStat>,
}

/// One `<resource>.pressure` file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PressureStat {
    /// Some task stalled.
    pub some: PressureLine,
    /// All non-idle tasks stalled at once (absent for cpu on older kernels).
    pub full: Option<PressureLine>,
}

/// One line of a pressure file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PressureLine {
    /// Share of the last 10 s stalled, in hundredths of a percent (`avg10=1.23` → 123).
    pub avg10_centi: u32,
    /// Total stall time, microseconds.
    pub total_us: u64,
}

/// Parses `some avg10=0.12 avg60=0.00 avg300=0.00 total=1234` (and a `full` line);
/// `None` when the text is not a pressure file.
pub fn parse_pressure(text: &str) -> Option<PressureStat> {
    let mut some = None;
    let mut full = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let kind = fields.next()?;
        let mut parsed = PressureLine::default();
        let mut seen = (false, false);
        for field in fields {
            let (key, value) = field.split_once('=')?;
            match key {
                "avg10" => {
                    let (whole, frac) = value.split_once('.').unwrap_or((value, "0"));
                    let frac = format!("{frac:0<2}");
                    parsed.avg10_centi = whole
                        .parse::<u32>()
                        .ok()?
                        .checked_mul(100)?
                        .checked_add(frac.get(..2)?.parse::<u32>().ok()?)?;
                    seen.0 = true;
                }
                "total" => {
                    parsed.total_us = value.parse().ok()?;
                    seen.1 = true;
                }
                _ => {}
            }
        }
        if seen != (true, true) {
            return None;
        }
        match kind {
            "some" => some = Some(parsed),
            "full" => full = Some(parsed),
            _ => return None,
        }
    }
    Some(PressureStat { some: some?, full })
}

/// CPU time and throttling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuUsage {
    /// CPU time consumed, ns (v1 `cpuacct.usage`, v2 `cpu.stat` usage_usec × 1000).
    pub usage_ns: u64,
    /// Time throttled by the cap, ns (v1 `cpu.stat` throttled_time, v2
    /// throttled_usec × 1000).
    pub throttled_ns: u64,
    /// Periods in which the cap throttled the cgroup.
    pub nr_throttled: u64,
}

/// Memory use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes charged now (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub current: u64,
    /// The limit; `None` when unlimited.
    pub max: Option<u64>,
    /// v1 only: how often the limit was hit (`memory.failcnt`).
    pub failcnt: Option<u64>,
    /// Processes the OOM killer killed in the cgroup (v1 `memory.oom_control`
    /// oom_kill, v2 `memory.events` oom_kill); `None` when the kernel does not say.
    pub oom_kill: Option<u64>,
    /// v2 only: `memory.events`.
    pub events: Option<MemoryEvents>,
}

/// v2 `memory.events` counters bulkhead reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    /// Times usage was about to exceed `memory.max`.
    pub max: u64,
    /// Times the OOM killer was invoked.
    pub oom: u64,
    /// Processes killed by it.
    pub oom_kill: u64,
}

/// Bytes moved on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoUsage {
    /// The device.
    pub device: Device,
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
}
