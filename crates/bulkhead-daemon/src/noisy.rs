//! Noisy neighbours: sustained pressure per tenant, from successive cgroup samples.
//!
//! [`Detector::observe`] is a pure function of the samples it is fed (a tenant's
//! [`TenantUsage`] and the time it was read): between two samples it computes the
//! signals the platform's `spec.noisyNeighbours` turns on —
//!
//! | signal | from | counts when |
//! |---|---|---|
//! | `cpu-busy` | cpu usage (v1 `cpuacct.usage`, v2 `cpu.stat usage_usec`) | millicores ≥ `cpuBusyMillicores` |
//! | `cpu-throttled` | throttled time (v1/v2 `cpu.stat`) | share of wall time ≥ `cpuThrottledPercent` |
//! | `memory` | usage vs limit, v1 `memory.failcnt` or OOM kills | usage ≥ `memoryPercent` of the limit *and* failcnt or OOM kills rose |
//! | `io` | bytes read + written (v1 `blkio`, v2 `io.stat`) | MiB/s ≥ `ioMibPerSecond` |
//!
//! — and reports a [`Pressure`] once per episode when some signal has held in every
//! sample for `windowSeconds`. An episode ends with the first sample without any
//! signal. What to do with a pressure (audit, metric, tightening) is the daemon's
//! business ([`crate::Daemon::noisy_pass`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bulkhead_spec::NoisyNeighbours;

use crate::backend::TenantUsage;

/// The audit log's actor for automatic noisy-neighbour actions.
pub const NOISY_ACTOR: &str = "bulkhead-daemon/noisy-neighbours";

/// Sustained pressure on one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pressure {
    /// The tenant.
    pub tenant: String,
    /// The signals of the last sample, each with its measured value.
    pub signals: BTreeMap<&'static str, String>,
    /// How long it has lasted.
    pub lasted: Duration,
}

impl Pressure {
    /// The signals, for a person: `cpu-busy 1984 millicores, io 120 MiB/s`.
    pub fn describe(&self) -> String {
        self.signals
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Default)]
struct Tenant {
    last: Option<(Duration, TenantUsage)>,
    since: Option<Duration>,
    reported: bool,
    signals: BTreeSet<&'static str>,
}

/// Per-tenant state between samples.
#[derive(Debug, Default)]
pub struct Detector {
    tenants: BTreeMap<String, Tenant>,
}

/// The signals between two samples `dt` apart.
pub fn signals(
    settings: &NoisyNeighbours,
    before: &TenantUsage,
    after: &TenantUsage,
    dt: Duration,
) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    let ns = dt.as_nanos().max(1) as f64;
    let cpu_millicores =
        after.cpu_usage_ns.saturating_sub(before.cpu_usage_ns) as f64 / ns * 1000.0;
    if settings.cpu_busy_millicores > 0 && cpu_millicores >= f64::from(settings.cpu_busy_millicores)
    {
        out.insert("cpu-busy", format!("{cpu_millicores:.0} millicores"));
    }
    let throttled = after
        .cpu_throttled_ns
        .saturating_sub(before.cpu_throttled_ns) as f64
        / ns
        * 100.0;
    if settings.cpu_throttled_percent > 0 && throttled >= f64::from(settings.cpu_throttled_percent)
    {
        out.insert("cpu-throttled", format!("{throttled:.0}% of wall time"));
    }
    if let Some(limit) = after.memory_limit_bytes.filter(|l| *l > 0) {
        let near = after.memory_bytes.saturating_mul(100)
            >= limit.saturating_mul(u64::from(settings.memory_percent));
        let rose = |a: Option<u64>, b: Option<u64>| matches!((a, b), (Some(a), Some(b)) if b > a);
        if near
            && (rose(before.memory_failcnt, after.memory_failcnt)
                || rose(before.oom_kills, after.oom_kills))
        {
            out.insert(
                "memory",
                format!(
                    "{}% of the limit, limit hit",
                    after.memory_bytes.saturating_mul(100) / limit
                ),
            );
        }
    }
    let io = (after.io_read_bytes + after.io_write_bytes)
        .saturating_sub(before.io_read_bytes + before.io_write_bytes) as f64
        / dt.as_secs_f64().max(1e-9)
        / f64::from(1u32 << 20);
    if settings.io_mib_per_second > 0 && io >= f64::from(settings.io_mib_per_second) {
        out.insert("io", format!("{io:.0} MiB/s"));
    }
    out
}

impl Detector {
    /// Feeds one sample of `tenant` read at `at` (any monotonic clock); returns the
    /// pressure once per episode, when it has lasted the window.
    pub fn observe(
        &mut self,
        settings: &NoisyNeighbours,
        tenant: &str,
        usage: TenantUsage,
        at: Duration,
    ) -> Option<Pressure> {
        let state = self.tenants.entry(tenant.to_owned()).or_default();
        let previous = state.last.replace((at, usage.clone()));
        let (then, before) = previous?;
        let found = signals(settings, &before, &usage, at.saturating_sub(then));
        if found.is_empty() {
            state.since = None;
            state.reported = false;
            state.signals.clear();
            return None;
        }
        let since = *state.since.get_or_insert(then);
        state.signals.extend(found.keys());
        let lasted = at.saturating_sub(since);
        if state.reported || lasted < Duration::from_secs(u64::from(settings.window_seconds)) {
            return None;
        }
        state.reported = true;
        Some(Pressure {
            tenant: tenant.to_owned(),
            signals: found,
            lasted,
        })
    }

    /// Starts `tenant` over (after a tightening ends, so a tenant still noisy is
    /// judged afresh).
    pub fn reset(&mut self, tenant: &str) {
        self.tenants.remove(tenant);
    }

    /// Forgets tenants not in `keep` (deleted or suspended).
    pub fn retain(&mut self, keep: &BTreeSet<String>) {
        self.tenants.retain(|t, _| keep.contains(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NoisyNeighbours {
        NoisyNeighbours {
            window_seconds: 3,
            sample_seconds: 1,
            ..bulkhead_spec::defaults::NOISY_NEIGHBOURS
        }
    }

    fn busy(cpu_s: u64) -> TenantUsage {
        TenantUsage {
            cpu_usage_ns: cpu_s * 1_000_000_000,
            ..TenantUsage::default()
        }
    }

    #[test]
    fn sustained_cpu_is_reported_once_after_the_window() {
        let mut d = Detector::default();
        let s = settings();
        let at = Duration::from_secs;
        // 2 cores busy every second.
        assert_eq!(d.observe(&s, "hog", busy(0), at(0)), None);
        assert_eq!(d.observe(&s, "hog", busy(2), at(1)), None);
        assert_eq!(d.observe(&s, "hog", busy(4), at(2)), None);
        let p = d.observe(&s, "hog", busy(6), at(3)).expect("reported");
        assert_eq!(p.lasted, at(3));
        assert_eq!(p.describe(), "cpu-busy 2000 millicores");
        assert_eq!(d.observe(&s, "hog", busy(8), at(4)), None, "once");
        // Idle for one sample ends the episode; a new one needs a whole window.
        assert_eq!(d.observe(&s, "hog", busy(8), at(5)), None);
        assert_eq!(d.observe(&s, "hog", busy(10), at(6)), None);
        assert_eq!(d.observe(&s, "hog", busy(12), at(7)), None);
        assert!(d.observe(&s, "hog", busy(14), at(9)).is_some());
    }

    #[test]
    fn a_short_burst_is_not_pressure() {
        let mut d = Detector::default();
        let s = settings();
        let at = Duration::from_secs;
        d.observe(&s, "t", busy(0), at(0));
        d.observe(&s, "t", busy(2), at(1));
        d.observe(&s, "t", busy(2), at(2));
        d.observe(&s, "t", busy(4), at(3));
        assert_eq!(d.observe(&s, "t", busy(4), at(4)), None);
    }

    #[test]
    fn memory_counts_only_near_the_limit_while_the_limit_is_hit() {
        let s = settings();
        let mem = |used: u64, failcnt: u64| TenantUsage {
            memory_bytes: used,
            memory_limit_bytes: Some(100),
            memory_failcnt: Some(failcnt),
            ..TenantUsage::default()
        };
        let one = Duration::from_secs(1);
        assert!(signals(&s, &mem(95, 1), &mem(95, 5), one).contains_key("memory"));
        assert!(!signals(&s, &mem(95, 5), &mem(95, 5), one).contains_key("memory"));
        assert!(!signals(&s, &mem(50, 1), &mem(50, 5), one).contains_key("memory"));
    }

    #[test]
    fn throttling_and_io_have_their_own_thresholds() {
        let s = settings();
        let one = Duration::from_secs(1);
        let before = TenantUsage::default();
        let after = TenantUsage {
            cpu_throttled_ns: 600_000_000,
            io_write_bytes: 200 << 20,
            ..TenantUsage::default()
        };
        let found = signals(&s, &before, &after, one);
        assert_eq!(
            found.keys().copied().collect::<Vec<_>>(),
            vec!["cpu-throttled", "io"]
        );
        let off = NoisyNeighbours {
            cpu_throttled_percent: 0,
            io_mib_per_second: 0,
            ..s
        };
        assert!(signals(&off, &before, &after, one).is_empty());
    }
}
