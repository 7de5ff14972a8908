//! OpenMetrics at `/metrics`: per-tenant resource use, drift repairs, the last verify
//! result and workload restarts. A fresh registry per scrape (no global one): the
//! series are read from the kernel at scrape time, and a deleted tenant's series
//! disappear with it.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::backend::TenantUsage;
use crate::supervisor::WorkloadStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PressureLabel {
    tenant: String,
    resource: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkloadLabel {
    tenant: String,
    workload: String,
}

/// What one scrape shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Each tenant's use (tenants whose use could not be read are absent).
    pub usage: Vec<(String, TenantUsage)>,
    /// Drift repairs per tenant since the daemon started.
    pub repairs: BTreeMap<String, u64>,
    /// Last verify per tenant: true when clean.
    pub verify: BTreeMap<String, bool>,
    /// Supervised workloads.
    pub workloads: Vec<WorkloadStatus>,
    /// Reconciler passes that failed since start.
    pub reconcile_failures: u64,
    /// Noisy-neighbour events per tenant since start.
    pub noisy_events: BTreeMap<String, u64>,
    /// Tenants whose cpu weight is tightened now, with that weight.
    pub tightened: BTreeMap<String, u32>,
}

fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Encodes `snapshot` as OpenMetrics text.
pub fn render(snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("bulkhead_tenant");
    let cpu = Family::<TenantLabel, Counter<f64>>::default();
    let throttled = Family::<TenantLabel, Counter<f64>>::default();
    let memory = Family::<TenantLabel, Gauge>::default();
    let memory_limit = Family::<TenantLabel, Gauge>::default();
    let failcnt = Family::<TenantLabel, Counter>::default();
    let oom = Family::<TenantLabel, Counter>::default();
    let pids = Family::<TenantLabel, Gauge>::default();
    let io_read = Family::<TenantLabel, Counter>::default();
    let io_write = Family::<TenantLabel, Counter>::default();
    let storage = Family::<TenantLabel, Gauge>::default();
    let storage_limit = Family::<TenantLabel, Gauge>::default();
    let repairs = Family::<TenantLabel, Counter>::default();
    let verify = Family::<TenantLabel, Gauge>::default();
    let restarts = Family::<WorkloadLabel, Counter>::default();
    let running = Family::<WorkloadLabel, Gauge>::default();
    let stalled = Family::<PressureLabel, Counter<f64>>::default();
    let stalled_avg10 =
        Family::<PressureLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (tenant, u) in &snapshot.usage {
        for p in &u.pressure {
            let l = PressureLabel {
                tenant: tenant.clone(),
                resource: p.resource.to_owned(),
                kind: p.kind.to_owned(),
            };
            stalled.get_or_create(&l).inc_by(p.total_us as f64 / 1e6);
            stalled_avg10
                .get_or_create(&l)
                .set(f64::from(p.avg10_centi) / 10_000.0);
        }
    }
    let noisy = Family::<TenantLabel, Counter>::default();
    let tightened = Family::<TenantLabel, Gauge>::default();
    for (tenant, n) in &snapshot.noisy_events {
        noisy
            .get_or_create(&TenantLabel {
                tenant: tenant.clone(),
            })
            .inc_by(*n);
    }
    for (tenant, weight) in &snapshot.tightened {
        tightened
            .get_or_create(&TenantLabel {
                tenant: tenant.clone(),
            })
            .set(i64::from(*weight));
    }
    for (tenant, u) in &snapshot.usage {
        let l = TenantLabel {
            tenant: tenant.clone(),
        };
        cpu.get_or_create(&l).inc_by(ns_to_seconds(u.cpu_usage_ns));
        throttled
            .get_or_create(&l)
            .inc_by(ns_to_seconds(u.cpu_throttled_ns));
        memory.get_or_create(&l).set(as_i64(u.memory_bytes));
        if let Some(limit) = u.memory_limit_bytes {
            memory_limit.get_or_create(&l).set(as_i64(limit));
        }
        if let Some(n) = u.memory_failcnt {
            failcnt.get_or_create(&l).inc_by(n);
        }
        if let Some(n) = u.oom_kills {
            oom.get_or_create(&l).inc_by(n);
        }
        pids.get_or_create(&l).set(as_i64(u.pids));
        io_read.get_or_create(&l).inc_by(u.io_read_bytes);
        io_write.get_or_create(&l).inc_by(u.io_write_bytes);
        if let Some(used) = u.storage_used_bytes {
            storage.get_or_create(&l).set(as_i64(used));
        }
        if let Some(limit) = u.storage_limit_bytes {
            storage_limit.get_or_create(&l).set(as_i64(limit));
        }
        repairs
            .get_or_create(&l)
            .inc_by(snapshot.repairs.get(tenant).copied().unwrap_or(0));
    }
    for (tenant, clean) in &snapshot.verify {
        verify
            .get_or_create(&TenantLabel {
                tenant: tenant.clone(),
            })
            .set(i64::from(*clean));
    }
    for w in &snapshot.workloads {
        let l = WorkloadLabel {
            tenant: w.tenant.clone(),
            workload: w.workload.clone(),
        };
        restarts.get_or_create(&l).inc_by(w.restarts);
        running.get_or_create(&l).set(i64::from(w.pid.is_some()));
    }
    registry.register_with_unit("cpu_usage", "CPU time used", Unit::Seconds, cpu);
    registry.register_with_unit(
        "cpu_throttled",
        "Time throttled by the CPU cap",
        Unit::Seconds,
        throttled,
    );
    registry.register_with_unit("memory_usage", "Memory charged now", Unit::Bytes, memory);
    registry.register_with_unit(
        "memory_limit",
        "The memory limit",
        Unit::Bytes,
        memory_limit,
    );
    registry.register(
        "memory_failcnt",
        "Times the memory limit was hit (cgroup v1)",
        failcnt,
    );
    registry.register("oom_kills", "Processes the OOM killer killed", oom);
    registry.register("pids", "Processes and threads now", pids);
    registry.register_with_unit(
        "pressure_stalled",
        "Time tasks stalled on cpu, memory or io (PSI); absent where the kernel has no per-cgroup PSI (cgroup v1)",
        Unit::Seconds,
        stalled,
    );
    registry.register(
        "pressure_stalled_avg10_ratio",
        "Share of the last 10 s stalled (PSI avg10); absent where the kernel has no per-cgroup PSI (cgroup v1)",
        stalled_avg10,
    );
    registry.register(
        "noisy_neighbour_events",
        "Sustained pressure episodes detected since the daemon started",
        noisy,
    );
    registry.register(
        "tightened_cpu_weight",
        "The cpu weight of a tenant tightened for a cool-down (absent when not tightened)",
        tightened,
    );
    registry.register_with_unit("io_read", "Bytes read", Unit::Bytes, io_read);
    registry.register_with_unit("io_written", "Bytes written", Unit::Bytes, io_write);
    registry.register_with_unit(
        "storage_used",
        "Bytes the volume occupies",
        Unit::Bytes,
        storage,
    );
    registry.register_with_unit(
        "storage_limit",
        "The storage quota",
        Unit::Bytes,
        storage_limit,
    );
    registry.register(
        "drift_repairs",
        "Drift the reconciler repaired since the daemon started",
        repairs,
    );
    registry.register(
        "verify_clean",
        "1 when the last isolation verify found no leak or outage for the tenant",
        verify,
    );
    registry.register(
        "workload_restarts",
        "Times the supervisor restarted the workload",
        restarts,
    );
    registry.register("workload_running", "1 while the workload runs", running);
    let failures = Counter::<u64>::default();
    failures.inc_by(snapshot.reconcile_failures);
    registry.register(
        "reconcile_failures",
        "Reconciler passes that failed since the daemon started",
        failures,
    );
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// A snapshot of `tenants` synthetic tenants (for the scrape-cost bench and tests).
pub fn synthetic(tenants: usize) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for i in 0..tenants {
        let name = format!("tenant-{i:05}");
        let n = i as u64;
        snapshot.usage.push((
            name.clone(),
            TenantUsage {
                cpu_usage_ns: n * 1_000_000_007,
                cpu_throttled_ns: n * 1_000,
                memory_bytes: n << 20,
                memory_limit_bytes: Some(1 << 30),
                memory_failcnt: Some(n % 7),
                oom_kills: Some(n % 3),
                pids: n % 100,
                io_read_bytes: n << 12,
                io_write_bytes: n << 13,
                storage_used_bytes: Some(n << 16),
                storage_limit_bytes: Some(1 << 30),
                pressure: Vec::new(),
            },
        ));
        snapshot.repairs.insert(name.clone(), n % 5);
        snapshot.verify.insert(name.clone(), i % 10 != 0);
        snapshot.workloads.push(WorkloadStatus {
            tenant: name,
            workload: "app".to_owned(),
            restart: "always".to_owned(),
            state: crate::supervisor::WorkloadState::Running,
            pid: Some(1000 + i as u32),
            restarts: n % 4,
            last_exit: None,
            last_error: None,
            backoff_ms: 0,
        });
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_once_per_tenant() {
        let text = render(&synthetic(3)).unwrap();
        for name in [
            "bulkhead_tenant_cpu_usage_seconds_total",
            "bulkhead_tenant_cpu_throttled_seconds_total",
            "bulkhead_tenant_memory_usage_bytes",
            "bulkhead_tenant_memory_limit_bytes",
            "bulkhead_tenant_memory_failcnt_total",
            "bulkhead_tenant_oom_kills_total",
            "bulkhead_tenant_pids",
            "bulkhead_tenant_io_read_bytes_total",
            "bulkhead_tenant_io_written_bytes_total",
            "bulkhead_tenant_storage_used_bytes",
            "bulkhead_tenant_storage_limit_bytes",
            "bulkhead_tenant_drift_repairs_total",
            "bulkhead_tenant_verify_clean",
            "bulkhead_tenant_workload_restarts_total",
        ] {
            let series = text
                .lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .count();
            assert_eq!(series, 3, "{name} in:\n{text}");
        }
        assert!(
            text.contains(
                r#"bulkhead_tenant_cpu_usage_seconds_total{tenant="tenant-00001"} 1.000000007"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn pressure_series_exist_only_where_the_kernel_offers_psi() {
        let mut snapshot = synthetic(2);
        // Tenant 0 as on cgroup v2 with cpu and memory PSI; tenant 1 as on v1: none.
        snapshot.usage[0].1.pressure = vec![
            crate::backend::PressureSeries {
                resource: "cpu",
                kind: "some",
                avg10_centi: 150,
                total_us: 2_500_000,
            },
            crate::backend::PressureSeries {
                resource: "memory",
                kind: "full",
                avg10_centi: 0,
                total_us: 40,
            },
        ];
        let text = render(&snapshot).unwrap();
        assert!(
            text.contains(r#"bulkhead_tenant_pressure_stalled_seconds_total{tenant="tenant-00000",resource="cpu",kind="some"} 2.5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bulkhead_tenant_pressure_stalled_avg10_ratio{tenant="tenant-00000",resource="cpu",kind="some"} 0.015"#),
            "{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("bulkhead_tenant_pressure") && l.contains("tenant-00001")),
            "no zeros for a tenant without PSI:\n{text}"
        );
    }
}
