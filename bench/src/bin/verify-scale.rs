//! Benchmark: wall time of a full `bulkhead verify` (every probe class, all peers) for
//! N = 2, 10 and 50 tenants, and of its network class alone, through the release
//! binary on a fresh instance per N. Each tenant is restricted, has a 16Mi encrypted
//! volume, one workload, DNS allowed, and a ring rule (tenant i may open 5201/tcp on
//! tenant i+1), so the network class has allowed flows to peers and to the resolver.
//! The baseline is the N=2 run of the same invocation: the figures are reported as
//! ratios against it, with the rows, verdicts and phase timings of each report (a
//! leak or an outage is printed, never hidden: the run must be clean to count).
//! Needs root; every instance is collected with `gc --all`, also on failure.
//!
//! ```text
//! cargo xtask bench verify-scale [-- --sizes 2,10,50 --bulkhead PATH]
//! ```
//!
//! Unpinned; the machine is shared, so repeat and compare ratios.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_bench::{BenchInstance, Table, bulkhead_binary, is_root, ratio};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("verify-scale: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One tenant of the ring: DNS, and 5201/tcp to the next tenant.
fn tenant(i: usize, n: usize) -> String {
    let next = (i + 1) % n;
    let prev = (i + n - 1) % n;
    format!(
        "apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata:
  name: t{i}
spec:
  profile: restricted
  quota:
    cpuWeight: 100
    memory: 256Mi
    pids: 64
    storage: 16Mi
    workloads: 1
  storage:
    encrypted: true
  network:
    ingress:
      - from: [{{ tenant: t{prev} }}]
        ports: [5201/tcp]
    egress:
      - to: [{{ dns: true }}]
      - to: [{{ tenant: t{next} }}]
        ports: [5201/tcp]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Workload
metadata:
  name: app
  tenant: t{i}
spec:
  command: [/bin/sleep, infinity]
  resources: {{ memory: 64Mi, pids: 16 }}
"
    )
}

/// What one `verify` run gave.
struct Outcome {
    took: Duration,
    rows: usize,
    verdicts: BTreeMap<String, usize>,
    /// Leaks and outages: "verdict id" → count.
    violations: BTreeMap<String, usize>,
    phases: String,
    /// Packets the kernel dropped from its per-CPU receive backlogs during the
    /// run (`/proc/net/softnet_stat`, second column, all CPUs): host-wide.
    backlog_drops: u64,
}

fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
        .sum()
}

fn verify(instance: &BenchInstance, only: Option<&str>) -> Result<Outcome, String> {
    let mut command = instance.command();
    command.args(["verify", "--format", "json"]);
    if let Some(class) = only {
        command.args(["--only", class]);
    }
    let drops_before = backlog_drops();
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|e| format!("cannot start bulkhead verify: {e}"))?;
    let took = started.elapsed();
    let backlog_drops = backlog_drops().saturating_sub(drops_before);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "verify gave no report ({e}, exit {:?}): {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let rows = report["rows"].as_array().ok_or("the report has no rows")?;
    let mut verdicts = BTreeMap::new();
    let mut violations = BTreeMap::new();
    for row in rows {
        let verdict = row["verdict"].as_str().unwrap_or("?").to_owned();
        if verdict == "leak" || verdict == "outage" {
            let key = format!(
                "{verdict} {} ({})",
                row["id"].as_str().unwrap_or("?"),
                row["observed"].as_str().unwrap_or("?")
            );
            *violations.entry(key).or_insert(0) += 1;
        }
        *verdicts.entry(verdict).or_insert(0) += 1;
    }
    let phases = report["timings"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|p| {
                    format!(
                        "{} {:.1} s",
                        p["phase"].as_str().unwrap_or("?"),
                        p["millis"].as_f64().unwrap_or(0.0) / 1000.0
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Ok(Outcome {
        took,
        rows: rows.len(),
        verdicts,
        violations,
        phases,
        backlog_drops,
    })
}

fn run() -> Result<(), String> {
    let mut sizes = vec![2usize, 10, 50];
    let mut binary: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .ok_or("--sizes needs a list")?
                    .split(',')
                    .map(|n| n.trim().parse().ok().filter(|&n: &usize| n >= 2))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--sizes needs numbers of at least 2, separated by commas")?;
            }
            "--bulkhead" => {
                binary = Some(PathBuf::from(args.next().ok_or("--bulkhead needs a path")?));
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --sizes N,N,… or --bulkhead PATH)"
                ));
            }
        }
    }
    if !is_root() {
        return Err("needs root (sandboxes, volumes, the firewall)".to_owned());
    }
    let binary = bulkhead_binary(binary)?;
    let mut results = Vec::new();
    for &n in &sizes {
        let instance = BenchInstance::new(&binary, "bv", n)?;
        // A tenant range of its own: 10.243.0.0/24 holds up to 253 tenants.
        let platform = instance.specs().join("platform.yaml");
        let mut text = std::fs::read_to_string(&platform)
            .map_err(|e| format!("cannot read {}: {e}", platform.display()))?;
        text.push_str("  network:\n    tenantRange: 10.243.0.0/24\n");
        instance.write_spec("platform.yaml", &text)?;
        for i in 0..n {
            instance.write_spec(&format!("tenants/t{i}.yaml"), &tenant(i, n))?;
        }
        let applied = instance.apply()?;
        eprintln!(
            "N={n}: applied in {:.1} s; verifying…",
            applied.as_secs_f64()
        );
        let full = verify(&instance, None)?;
        let network = verify(&instance, Some("network"))?;
        for (label, o) in [("full", &full), ("network", &network)] {
            eprintln!(
                "N={n} {label}: {:.1} s, {} rows {:?}, {} backlog drops; {}",
                o.took.as_secs_f64(),
                o.rows,
                o.verdicts,
                o.backlog_drops,
                o.phases
            );
            for (what, count) in &o.violations {
                eprintln!("  {count} × {what}");
            }
        }
        results.push((n, full, network));
    }
    let Some((_, base_full, base_net)) = results.first() else {
        return Ok(());
    };
    let (base_full, base_net) = (base_full.took, base_net.took);
    let mut table = Table::new(&[
        "N",
        "full verify",
        "vs N=2",
        "rows",
        "leaks / outages",
        "network class",
        "vs N=2",
        "network rows",
        "network leaks / outages / narrowed",
        "backlog drops (full / network)",
    ]);
    for (n, full, network) in &results {
        let count = |o: &Outcome, v: &str| o.verdicts.get(v).copied().unwrap_or(0);
        table.row(vec![
            n.to_string(),
            format!("{:.1} s", full.took.as_secs_f64()),
            ratio(full.took, base_full),
            full.rows.to_string(),
            format!("{} / {}", count(full, "leak"), count(full, "outage")),
            format!("{:.1} s", network.took.as_secs_f64()),
            ratio(network.took, base_net),
            network.rows.to_string(),
            format!(
                "{} / {} / {}",
                count(network, "leak"),
                count(network, "outage"),
                count(network, "narrowed")
            ),
            format!("{} / {}", full.backlog_drops, network.backlog_drops),
        ]);
    }
    println!("{table}");
    for (n, full, _) in &results {
        println!("N={n} full verify phases: {}", full.phases);
    }
    Ok(())
}
