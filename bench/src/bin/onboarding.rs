//! Benchmark: onboarding time per tenant for N = 1, 10, 100 tenants, without network.
//!
//! For each N it writes N small tenants (a 16Mi encrypted volume and one workload
//! each) into a fresh instance, times `bulkhead apply` (the release binary), reads
//! every host action's duration from the audit log (`audit log -o json`: the intent and
//! outcome time of each action), then times offboarding (`gc --all`). Formatting the
//! volume is reported apart: the `prepare-volume` actions from the audit log, and a
//! bare `mkfs.ext4` with bulkhead's own command line on an image of the same size, in
//! the same run (the baseline). Per-tenant time must stay flat as N grows: the run
//! prints the ratio N=100 vs N=10. Needs root.
//!
//! ```text
//! cargo xtask bench onboarding [-- --sizes 1,10,100 --repeat 3 --bulkhead PATH]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use bulkhead_bench::{
    BenchInstance, Table, allowed_cpus, bulkhead_binary, is_root, median_p95, ms, time_command,
};

/// Volume size of every tenant (the `storage:` of [`bulkhead_bench::tenant_yaml`]).
const VOLUME_BYTES: u64 = 16 << 20;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("onboarding: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    sizes: Vec<usize>,
    repeat: usize,
    bulkhead: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut parsed = Args {
        sizes: vec![1, 10, 100],
        repeat: 3,
        bulkhead: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                parsed.sizes = args
                    .next()
                    .ok_or("--sizes needs a list")?
                    .split(',')
                    .map(|n| n.trim().parse().ok().filter(|&n: &usize| n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("--sizes needs positive numbers separated by commas")?;
            }
            "--repeat" => {
                parsed.repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--repeat needs a positive number")?;
            }
            "--bulkhead" => {
                parsed.bulkhead = Some(args.next().ok_or("--bulkhead needs a path")?.into());
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --sizes 1,10,100, --repeat N or --bulkhead PATH)"
                ));
            }
        }
    }
    Ok(parsed)
}

/// One apply of N tenants.
struct Sample {
    apply: Duration,
    gc: Duration,
    /// Every host action's duration by verb (from the audit log).
    actions: BTreeMap<String, Vec<Duration>>,
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    if !is_root() {
        return Err("needs root (it applies tenants)".to_owned());
    }
    let binary = bulkhead_binary(args.bulkhead.clone())?;
    let cpus = allowed_cpus()?;
    let mut results: Vec<(usize, Vec<Sample>, Vec<Duration>)> = args
        .sizes
        .iter()
        .map(|&n| (n, Vec::new(), Vec::new()))
        .collect();
    let mut instance_number = 0;
    // Sizes interleave within each repetition, so a busy spell of the machine hits one
    // repetition of every size rather than every run of one size.
    for r in 0..args.repeat {
        for (n, samples, mkfs) in results.iter_mut() {
            let n = *n;
            instance_number += 1;
            let instance = BenchInstance::new(&binary, "bo", instance_number)?;
            instance.add_tenants(n)?;
            let apply = instance.apply()?;
            let actions = action_durations(&instance.run(&["audit", "log", "-o", "json"])?)?;
            let gc = time_command(instance.command().args(["gc", "--all"]))?;
            drop(instance);
            // The baseline, in the same run: a few bare mkfs per apply.
            for _ in 0..3 {
                mkfs.push(time_mkfs()?);
            }
            eprintln!(
                "onboarding: N={n} run {}/{}: apply {}, gc {}",
                r + 1,
                args.repeat,
                ms(apply),
                ms(gc)
            );
            samples.push(Sample { apply, gc, actions });
        }
    }
    report(&args, &cpus, &mut results);
    Ok(())
}

/// `mkfs.ext4` with bulkhead's own arguments on a fresh sparse image of the tenants'
/// volume size.
fn time_mkfs() -> Result<Duration, String> {
    let image =
        std::env::temp_dir().join(format!("bulkhead-bench-mkfs-{}.img", std::process::id()));
    let file = std::fs::File::create(&image)
        .map_err(|e| format!("cannot create {}: {e}", image.display()))?;
    file.set_len(VOLUME_BYTES)
        .map_err(|e| format!("cannot size {}: {e}", image.display()))?;
    drop(file);
    let took = time_command(
        Command::new(bulkhead_node::volume::ext4::MKFS_PROGRAM).args(
            bulkhead_node::volume::ext4::mkfs_args(&image, "bench", true),
        ),
    );
    let _ = std::fs::remove_file(&image);
    took
}

/// Audit verbs of revision objects rather than host actions: their outcome is written
/// once the whole revision is saved, so their span grows with N by construction.
const REVISION_VERBS: &[&str] = &["create", "update", "delete"];

/// Every host action's duration (outcome time − intent time), by verb.
fn action_durations(audit_json: &str) -> Result<BTreeMap<String, Vec<Duration>>, String> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(audit_json).map_err(|e| format!("audit log is not JSON: {e}"))?;
    let mut intents: BTreeMap<i64, (String, f64)> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for entry in &entries {
        let field = |name: &str| entry.get(name).ok_or(format!("audit entry without {name}"));
        let time = seconds(field("time")?.as_str().ok_or("audit time is not text")?)?;
        match entry.get("refers_to").and_then(serde_json::Value::as_i64) {
            None => {
                let seq = field("seq")?.as_i64().ok_or("audit seq is not a number")?;
                let verb = field("action")?.as_str().unwrap_or_default().to_owned();
                intents.insert(seq, (verb, time));
            }
            Some(intent) => {
                if let Some((verb, started)) = intents.get(&intent)
                    && !REVISION_VERBS.contains(&verb.as_str())
                {
                    out.entry(verb.clone())
                        .or_default()
                        .push(Duration::from_secs_f64((time - started).max(0.0)));
                }
            }
        }
    }
    Ok(out)
}

/// Seconds since the epoch of an RFC 3339 UTC time as the audit log writes it
/// (`2026-11-23T13:06:32.088333Z`).
fn seconds(text: &str) -> Result<f64, String> {
    let bad = || format!("{text:?} is not an audit time (expected YYYY-MM-DDTHH:MM:SS.ffffffZ)");
    let (date, clock) = text
        .strip_suffix('Z')
        .and_then(|t| t.split_once('T'))
        .ok_or_else(bad)?;
    let date: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let clock: Vec<f64> = clock
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (&[y, m, d], &[h, min, s]) = (&date[..], &clock[..]) else {
        return Err(bad());
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

fn per(d: Duration, n: usize) -> Duration {
    d / u32::try_from(n).unwrap_or(u32::MAX)
}

fn report(args: &Args, cpus: &str, results: &mut [(usize, Vec<Sample>, Vec<Duration>)]) {
    println!(
        "onboarding, {} run(s) per N, unpinned (CPUs {cpus}), tenants with a 16Mi encrypted volume and one workload, no network\n",
        args.repeat
    );
    let mut table = Table::new(&[
        "N",
        "apply, median (p95)",
        "per tenant, median (p95)",
        "per tenant without prepare-volume",
        "prepare-volume per tenant, median (p95)",
        "bare mkfs.ext4 16Mi, median (p95)",
        "gc per tenant, median",
    ]);
    let mut flat: BTreeMap<usize, (Duration, Duration)> = BTreeMap::new();
    for (n, samples, mkfs) in results.iter_mut() {
        let n = *n;
        let mut apply: Vec<Duration> = samples.iter().map(|s| s.apply).collect();
        let mut per_tenant: Vec<Duration> = samples.iter().map(|s| per(s.apply, n)).collect();
        let mut without: Vec<Duration> = samples
            .iter()
            .map(|s| {
                let volume: Duration = s
                    .actions
                    .get("prepare-volume")
                    .map(|v| v.iter().sum())
                    .unwrap_or_default();
                per(s.apply.saturating_sub(volume), n)
            })
            .collect();
        let mut prepare: Vec<Duration> = samples
            .iter()
            .flat_map(|s| s.actions.get("prepare-volume").cloned().unwrap_or_default())
            .collect();
        let mut gc: Vec<Duration> = samples.iter().map(|s| per(s.gc, n)).collect();
        let (apply_m, apply_p) = median_p95(&mut apply);
        let (per_m, per_p) = median_p95(&mut per_tenant);
        let (without_m, without_p) = median_p95(&mut without);
        let (mkfs_m, mkfs_p) = median_p95(mkfs);
        let prepare_cell = if prepare.is_empty() {
            "-".to_owned()
        } else {
            let (m, p) = median_p95(&mut prepare);
            format!("{} ({})", ms(m), ms(p))
        };
        table.row(vec![
            n.to_string(),
            format!("{} ({})", ms(apply_m), ms(apply_p)),
            format!("{} ({})", ms(per_m), ms(per_p)),
            format!("{} ({})", ms(without_m), ms(without_p)),
            prepare_cell,
            format!("{} ({})", ms(mkfs_m), ms(mkfs_p)),
            ms(median_p95(&mut gc).0),
        ]);
        flat.insert(n, (per_m, without_m));
    }
    println!("{table}");

    // Where each tenant's time goes: every host action, median per action, by N.
    let sizes: Vec<usize> = results.iter().map(|(n, _, _)| *n).collect();
    let mut headers = vec!["host action (median per action)".to_owned()];
    headers.extend(sizes.iter().map(|n| format!("N={n}")));
    let mut actions = Table::new(&headers.iter().map(String::as_str).collect::<Vec<_>>());
    let verbs: std::collections::BTreeSet<String> = results
        .iter()
        .flat_map(|(_, samples, _)| samples.iter().flat_map(|s| s.actions.keys().cloned()))
        .collect();
    for verb in verbs {
        let mut row = vec![verb.clone()];
        for (_, samples, _) in results.iter() {
            let mut all: Vec<Duration> = samples
                .iter()
                .flat_map(|s| s.actions.get(&verb).cloned().unwrap_or_default())
                .collect();
            row.push(if all.is_empty() {
                "-".to_owned()
            } else {
                ms(median_p95(&mut all).0)
            });
        }
        actions.row(row);
    }
    println!("{actions}");

    if let (Some((big, big_without)), Some((small, small_without))) =
        (flat.get(&100), flat.get(&10))
    {
        println!(
            "per-tenant time, N=100 vs N=10 (must stay flat): {:.2}× of medians ({:.2}× without prepare-volume)",
            big.as_secs_f64() / small.as_secs_f64(),
            big_without.as_secs_f64() / small_without.as_secs_f64()
        );
        let of = |n: usize| results.iter().find(|(m, _, _)| *m == n).map(|(_, s, _)| s);
        if let (Some(big), Some(small)) = (of(100), of(10)) {
            let mut ratios: Vec<f64> = big
                .iter()
                .zip(small)
                .map(|(b, s)| (b.apply.as_secs_f64() / 100.0) / (s.apply.as_secs_f64() / 10.0))
                .collect();
            ratios.sort_by(f64::total_cmp);
            let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
            println!(
                "  per repetition (N=10 and N=100 back to back): {}",
                shown.join(", ")
            );
        }
    }
}
