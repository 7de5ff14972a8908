//! Benchmark: network onboarding per tenant at N = 10, 100, 1,000 tenants, through
//! the library (`link::ensure_tenant` over netlink, then the tenant's own firewall
//! elements with `firewall::update`, one nfnetlink batch) against the equivalent
//! shell commands (one `ip` exec per step, the same `nft -f -` script), each on a
//! fresh instance. Plain network namespaces stand in for sandboxes (made with one
//! `ip -batch` before the clock starts); the firewall is the one the policy engine
//! compiles for a ring of rules (tenant i may open 5201/tcp on tenant i+1, DNS).
//! Needs root; cleans up after each run.
//!
//! ```text
//! cargo xtask bench net-onboarding [-- --sizes 10,100,1000 --repeat 5 --no-shell]
//! ```
//!
//! With `--repeat R` the library runs R rounds over all sizes, in alternating order
//! (10, 100, 1000, then 1000, 100, 10, …) so that a noisy minute hits every size,
//! and reports per size the median of the per-run medians with their spread, and the
//! N=1,000 / N=100 ratio of those (and of each round). The shell runs once.
//!
//! Unpinned; pin with `taskset -c 1` for steadier figures.

#[path = "../net_common.rs"]
mod net_common;

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bulkhead_node::net::firewall::{self, Ruleset};
use bulkhead_node::net::link::{self, NetnsRef, TenantLink};
use bulkhead_node::net::{format_mac, tenant_mac};
use ipnet::Ipv4Net;
use net_common::{Lab, ms, stats};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("net-onboarding: {message}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Library,
    Shell,
}

struct Run {
    n: usize,
    method: Method,
    per_tenant: Vec<Duration>,
    /// Library only: the netlink wiring part of each tenant's time.
    wiring: Duration,
    total: Duration,
    compile: Duration,
    size: firewall::RulesetSize,
}

fn run() -> Result<(), String> {
    let mut sizes = vec![10usize, 100, 1000];
    let mut shell = true;
    let mut repeat = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .ok_or("--sizes needs a list")?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| format!("bad size {s:?}")))
                    .collect::<Result<_, _>>()?;
            }
            "--no-shell" => shell = false,
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .filter(|r| *r > 0)
                    .ok_or("--repeat needs a count of at least 1")?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --sizes N,N,…, --repeat R or --no-shell)"
                ));
            }
        }
    }
    let mut runs = Vec::new();
    // Per round and size, the library run's median per tenant.
    let mut medians: Vec<Vec<(usize, Duration)>> = Vec::new();
    for round in 0..repeat {
        let order: Vec<usize> = if round % 2 == 0 {
            sizes.clone()
        } else {
            sizes.iter().rev().copied().collect()
        };
        let mut this_round = Vec::new();
        for n in order {
            let r = onboard(n, Method::Library)?;
            let mut sorted = r.per_tenant.clone();
            this_round.push((n, stats(&mut sorted).0));
            runs.push(r);
            if shell && round == 0 {
                runs.push(onboard(n, Method::Shell)?);
            }
        }
        medians.push(this_round);
    }
    println!(
        "| N | method | per tenant, mean | median | p95 | of which wiring (mean) | total | firewall compile (all N) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &mut runs {
        let (median, p95) = stats(&mut r.per_tenant);
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} s | {} |",
            r.n,
            if r.method == Method::Library {
                "library (netlink + nfnetlink elements)"
            } else {
                "shell (ip per step + nft)"
            },
            ms(r.total / r.n as u32),
            ms(median),
            ms(p95),
            if r.method == Method::Library {
                ms(r.wiring / r.n as u32)
            } else {
                "-".to_owned()
            },
            r.total.as_secs_f64(),
            ms(r.compile),
        );
    }
    let mean = |n: usize, m: Method| {
        runs.iter()
            .find(|r| r.n == n && r.method == m)
            .map(|r| r.total.as_secs_f64() / r.n as f64)
    };
    if let (Some(big), Some(small)) = (mean(1000, Method::Library), mean(100, Method::Library)) {
        println!(
            "\nratio per tenant, library, N=1,000 / N=100: {:.2} (target ≤ 1.2)",
            big / small
        );
    }
    if repeat > 1 {
        let of = |n: usize| -> Vec<f64> {
            medians
                .iter()
                .flatten()
                .filter(|(m, _)| *m == n)
                .map(|(_, d)| d.as_secs_f64() * 1e3)
                .collect()
        };
        println!(
            "\nlibrary, {repeat} rounds: median of the per-run medians per tenant (min – max)"
        );
        for &n in &sizes {
            let mut v = of(n);
            println!(
                "N={n}: {:.3} ms ({:.3} – {:.3})",
                median_of(&mut v),
                v.first().copied().unwrap_or(0.0),
                v.last().copied().unwrap_or(0.0)
            );
        }
        let (mut big, mut small) = (of(1000), of(100));
        if !big.is_empty() && !small.is_empty() {
            let mut per_round: Vec<f64> = medians
                .iter()
                .filter_map(|round| {
                    let get = |n| {
                        round
                            .iter()
                            .find(|(m, _)| *m == n)
                            .map(|(_, d)| d.as_secs_f64())
                    };
                    Some(get(1000)? / get(100)?)
                })
                .collect();
            let ratio = median_of(&mut big) / median_of(&mut small);
            let round_median = median_of(&mut per_round); // sorts
            println!(
                "ratio N=1,000 / N=100 of the medians of medians: {ratio:.2} (target ≤ 1.2); per round {:.2} – {:.2}, median {round_median:.2}",
                per_round.first().copied().unwrap_or(0.0),
                per_round.last().copied().unwrap_or(0.0),
            );
        }
    }
    for &n in &sizes {
        if let (Some(lib), Some(sh)) = (mean(n, Method::Library), mean(n, Method::Shell)) {
            println!("shell / library at N={n}: {:.1}×", sh / lib);
        }
    }
    if let Some(r) = runs.iter().find(|r| r.n == 1000) {
        println!(
            "ruleset at N=1,000: {} rules, {} allow elements, {} anti-spoofing elements, {} counter elements",
            r.size.rules, r.size.allow_elements, r.size.port_elements, r.size.counter_elements
        );
    }
    Ok(())
}

/// The median of `values`, which it sorts (0 for none).
fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn sh(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{program}: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn onboard(n: usize, method: Method) -> Result<Run, String> {
    let tag = if method == Method::Library { 'l' } else { 's' };
    let prefix = format!("bo{:x}{tag}", std::process::id() % 0xfff);
    let range: Ipv4Net = "10.243.0.0/20".parse().map_err(|_| "range")?;
    let desired = net_common::desired(&prefix, range, n)?;
    let addresses = net_common::addresses(range, n);
    let mut lab = Lab::new(&prefix, range)?;
    let started = Instant::now();
    let ruleset =
        firewall::compile(&lab.instance, &desired, &addresses).map_err(|e| e.to_string())?;
    let compile = started.elapsed();
    let order: Vec<String> = (0..n).map(net_common::tenant).collect();
    let parts = net_common::per_tenant(&ruleset, &order);
    let base = net_common::empty(&ruleset);
    firewall::apply(&base).map_err(|e| e.to_string())?;
    lab.add_namespaces(&order)?;
    let gateway = lab.bridge.address().ok_or("no bridge address")?;
    let mut per_tenant = Vec::with_capacity(n);
    let mut wiring_time = Duration::ZERO;
    let all = Instant::now();
    for (tenant, part) in order.iter().zip(&parts) {
        let address = addresses[tenant];
        let t0 = Instant::now();
        match method {
            Method::Library => {
                let wiring = TenantLink {
                    tenant: tenant.clone(),
                    netns: NetnsRef::of_tenant(&lab.instance, tenant),
                    address,
                };
                link::ensure_tenant(&lab.instance, &lab.bridge, &wiring)
                    .map_err(|e| format!("{tenant}: {e}"))?;
                wiring_time += t0.elapsed();
                firewall::update(&base, part).map_err(|e| format!("{tenant}: {e}"))?;
            }
            Method::Shell => shell_onboard(&lab, tenant, address, gateway, &base, part)?,
        }
        per_tenant.push(t0.elapsed());
    }
    let total = all.elapsed();
    // Everything is in place, and the loaded tables are the compiled ruleset.
    let state = firewall::observe(&lab.instance).map_err(|e| e.to_string())?;
    let drift = state.drift(&ruleset);
    if !drift.is_empty() {
        return Err(format!("N={n}: the loaded firewall differs: {drift:?}"));
    }
    for tenant in [&order[0], &order[n - 1]] {
        let wiring = TenantLink {
            tenant: tenant.clone(),
            netns: NetnsRef::of_tenant(&lab.instance, tenant),
            address: addresses[tenant],
        };
        let seen =
            link::observe_tenant(&lab.instance, &lab.bridge, &wiring).map_err(|e| e.to_string())?;
        if !seen.is_wired() {
            return Err(format!("N={n}: {tenant} is not wired: {seen:?}"));
        }
    }
    let size = ruleset.size();
    drop(lab);
    Ok(Run {
        n,
        method,
        per_tenant,
        wiring: wiring_time,
        total,
        compile,
        size,
    })
}

/// What an operator's script would run: one `ip` per step, then the same nft script.
fn shell_onboard(
    lab: &Lab,
    tenant: &str,
    address: std::net::Ipv4Addr,
    gateway: std::net::Ipv4Addr,
    base: &Ruleset,
    part: &Ruleset,
) -> Result<(), String> {
    let host = lab.instance.interface(tenant, 'h');
    let netns = lab.instance.netns(tenant);
    let range = lab.bridge.range;
    let shard = link::shard_of(range, address);
    let bridge = lab.instance.bridge_shard(shard);
    let mac = format_mac(tenant_mac(address));
    let gateway_mac = format_mac(bulkhead_node::net::gateway_mac(gateway));
    let cidr = format!("{address}/32");
    let gw = gateway.to_string();
    let own = address.to_string();
    if shard > 0 && !std::path::Path::new(&format!("/sys/class/net/{bridge}")).exists() {
        // The bridge shard, as the library makes it.
        let first = u32::from(range.network()) + shard * link::PORTS_PER_BRIDGE;
        let block = format!(
            "{}/{}",
            std::net::Ipv4Addr::from(first),
            32 - link::PORTS_PER_BRIDGE.trailing_zeros()
        );
        sh(
            "ip",
            &[
                "link",
                "add",
                &bridge,
                "address",
                &gateway_mac,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
            None,
        )?;
        sh(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{bridge}.disable_ipv6=1")],
            None,
        )?;
        sh("ip", &["link", "set", &bridge, "up"], None)?;
        sh(
            "sysctl",
            &["-qw", &format!("net.ipv4.conf.{bridge}.forwarding=1")],
            None,
        )?;
        sh(
            "ip",
            &[
                "route", "replace", &block, "dev", &bridge, "scope", "link", "src", &gw,
            ],
            None,
        )?;
    }
    sh(
        "ip",
        &[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            "address", &mac,
        ],
        None,
    )?;
    sh(
        "sysctl",
        &["-qw", &format!("net.ipv6.conf.{host}.disable_ipv6=1")],
        None,
    )?;
    sh("ip", &["link", "set", &host, "master", &bridge], None)?;
    sh(
        "ip",
        &[
            "link",
            "set",
            &host,
            "type",
            "bridge_slave",
            "isolated",
            "on",
        ],
        None,
    )?;
    sh("ip", &["link", "set", &host, "up"], None)?;
    sh(
        "ip",
        &["-n", &netns, "addr", "add", &cidr, "dev", "eth0"],
        None,
    )?;
    sh("ip", &["-n", &netns, "link", "set", "eth0", "up"], None)?;
    sh("ip", &["-n", &netns, "link", "set", "lo", "up"], None)?;
    sh(
        "ip",
        &[
            "-n", &netns, "route", "add", &gw, "dev", "eth0", "scope", "link",
        ],
        None,
    )?;
    sh(
        "ip",
        &["-n", &netns, "route", "add", "default", "via", &gw],
        None,
    )?;
    sh(
        "ip",
        &[
            "-n",
            &netns,
            "neigh",
            "replace",
            &gw,
            "lladdr",
            &gateway_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
        None,
    )?;
    sh(
        "ip",
        &[
            "neigh",
            "replace",
            &own,
            "lladdr",
            &mac,
            "dev",
            &bridge,
            "nud",
            "permanent",
        ],
        None,
    )?;
    let script = base.delta(part).unwrap_or_default();
    if !script.is_empty() {
        sh("nft", &["-f", "-"], Some(&script))?;
    }
    Ok(())
}
