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
