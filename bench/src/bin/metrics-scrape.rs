//! Cost of one `/metrics` scrape: rendering OpenMetrics for N synthetic tenants (every
//! per-tenant series, one workload each) with the daemon's own renderer, against a
//! baseline in the same run — the same numbers written with `format!` into one string,
//! the least any encoder could cost. Target: under 100 ms at 1,000 tenants.
//!
//! cargo xtask bench metrics-scrape [-- --tenants 1000 --rounds 30]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bulkhead_daemon::metrics::{self, Snapshot};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn baseline(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(snapshot.usage.len() * 1200);
    for (tenant, u) in &snapshot.usage {
        let _ = writeln!(
            out,
            "cpu{{tenant=\"{tenant}\"}} {}",
            u.cpu_usage_ns as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "thr{{tenant=\"{tenant}\"}} {}",
            u.cpu_throttled_ns as f64 / 1e9
        );
        for (name, v) in [
            ("mem", u.memory_bytes),
            ("lim", u.memory_limit_bytes.unwrap_or(0)),
            ("fail", u.memory_failcnt.unwrap_or(0)),
            ("oom", u.oom_kills.unwrap_or(0)),
            ("pids", u.pids),
            ("rd", u.io_read_bytes),
            ("wr", u.io_write_bytes),
            ("st", u.storage_used_bytes.unwrap_or(0)),
            ("stl", u.storage_limit_bytes.unwrap_or(0)),
            ("rep", snapshot.repairs.get(tenant).copied().unwrap_or(0)),
            (
                "ver",
                u64::from(snapshot.verify.get(tenant).copied().unwrap_or(false)),
            ),
        ] {
            let _ = writeln!(out, "{name}{{tenant=\"{tenant}\"}} {v}");
        }
    }
    for w in &snapshot.workloads {
        let _ = writeln!(
            out,
            "restarts{{tenant=\"{}\",workload=\"{}\"}} {}",
            w.tenant, w.workload, w.restarts
        );
    }
    out
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(rounds: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut samples = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        bytes = std::hint::black_box(f());
        samples.push(start.elapsed());
    }
    (median(samples), bytes)
}

fn main() {
    let tenants = arg("--tenants", 1000);
    let rounds = arg("--rounds", 30).max(1);
    println!("| tenants | renderer | median | bytes | per tenant |");
    println!("|---|---|---|---|---|");
    for n in [10, tenants] {
        let snapshot = metrics::synthetic(n);
        let (ours, bytes) = measure(rounds, || {
            metrics::render(&snapshot).map(|t| t.len()).unwrap_or(0)
        });
        let (base, base_bytes) = measure(rounds, || baseline(&snapshot).len());
        for (name, time, size) in [
            ("prometheus-client", ours, bytes),
            ("format! baseline", base, base_bytes),
        ] {
            println!(
                "| {n} | {name} | {:.2} ms | {size} | {:.1} µs |",
                time.as_secs_f64() * 1e3,
                time.as_secs_f64() * 1e6 / n as f64
            );
        }
        if n == tenants {
            println!(
                "\nratio to baseline at {n} tenants: {:.1}×; target < 100 ms: {}",
                ours.as_secs_f64() / base.as_secs_f64().max(1e-9),
                if ours < Duration::from_millis(100) {
                    "met"
                } else {
                    "MISSED"
                }
            );
        }
    }
}
