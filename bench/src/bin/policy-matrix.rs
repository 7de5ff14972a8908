//! Benchmark: the full reachability matrix of a synthetic multi-tenant cluster
//! (1,000 namespaces × 10 pods, 5,000 policy rules by default), against the naive
//! baseline of evaluating every (source, destination, port class) with
//! `Engine::allowed`, timed on a sample of sources and extrapolated.
//!
//! ```text
//! cargo xtask bench policy-matrix [--namespaces N] [--pods N] [--seed N] [--sample N]
//!                                 [--threads N] [--out FILE] [--scenario tenants|open]
//! ```
//!
//! `--scenario open` replaces the tenant policies by "any pod of the cluster, no external
//! address" in both directions: every matrix row is dense, the worst case for memory.
//!
//! ```text
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_policy::{
    Cluster, EgressRule, EndpointId, Engine, EngineOptions, ExternalEndpoint, IngressRule, IpBlock,
    LabelSelector, Namespace, NetworkPolicy, Peer, Pod, PolicyType, PortSpec, Protocol,
    SelectorOperator, diff,
};

struct Args {
    namespaces: usize,
    pods: usize,
    seed: u64,
    sample: usize,
    threads: Option<usize>,
    out: Option<String>,
    open: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        namespaces: 1000,
        pods: 10,
        seed: 42,
        sample: 16,
        threads: None,
        out: None,
        open: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--namespaces" => args.namespaces = number(value()?)? as usize,
            "--pods" => args.pods = number(value()?)? as usize,
            "--seed" => args.seed = number(value()?)?,
            "--sample" => args.sample = (number(value()?)? as usize).max(1),
            "--threads" => args.threads = Some((number(value()?)? as usize).max(1)),
            "--out" => args.out = Some(value()?),
            "--scenario" => match value()?.as_str() {
                "tenants" => args.open = false,
                "open" => args.open = true,
                other => {
                    return Err(format!(
                        "--scenario: {other:?} is not a scenario (expected tenants or open)"
                    ));
                }
            },
            other => {
                return Err(format!(
                    "unknown flag {other:?} (expected --namespaces, --pods, --seed, --sample, --threads, --out, --scenario)"
                ));
            }
        }
    }
    Ok(args)
}

/// SplitMix64: small, seeded, good enough to make the synthetic cluster.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const APPS: [&str; 5] = ["web", "api", "worker", "db", "cache"];

fn ns_name(i: usize) -> String {
    format!("t{i:04}")
}

fn sel(key: &str, value: &str) -> LabelSelector {
    LabelSelector::with_label(key, value)
}

/// The synthetic cluster: every namespace a tenant with a default deny, same-namespace
/// traffic, DNS, and two rules drawn from templates (cross-tenant APIs, databases,
/// internet egress, monitoring, partner ranges), each rule its own policy.
fn synthetic(namespaces: usize, pods: usize, seed: u64) -> Cluster {
    let mut rng = Rng(seed);
    let mut cluster = Cluster::new()
        .external(ExternalEndpoint::new(
            "dns",
            IpAddr::V4(Ipv4Addr::new(169, 254, 20, 10)),
        ))
        .external(ExternalEndpoint::new(
            "world",
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
        ))
        .external(ExternalEndpoint::new(
            "partner",
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        ))
        .external(ExternalEndpoint::new(
            "lan",
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
        ));
    for i in 0..namespaces {
        let tier = ["gold", "silver", "bronze"][rng.below(3)];
        let env = ["prod", "staging"][rng.below(2)];
        cluster = cluster.namespace(
            Namespace::new(ns_name(i))
                .label("team", format!("team{}", i % 50))
                .label("tier", tier)
                .label("env", env),
        );
        for j in 0..pods {
            let app = APPS[j % APPS.len()];
            let role = if j % APPS.len() < 2 {
                "frontend"
            } else {
                "backend"
            };
            let octets = [
                10,
                u8::try_from(i / 250).unwrap_or(u8::MAX),
                u8::try_from(i % 250).unwrap_or(u8::MAX),
                u8::try_from(j + 1).unwrap_or(u8::MAX),
            ];
            let mut pod = Pod::new(ns_name(i), format!("{app}-{j}"))
                .label("app", app)
                .label("role", role)
                .ip(IpAddr::V4(Ipv4Addr::from(octets)));
            pod = match app {
                "web" => pod
                    .port("http", 8080, Protocol::Tcp)
                    .port("metrics", 9090, Protocol::Tcp),
                "api" => pod
                    .port("http", 8000, Protocol::Tcp)
                    .port("metrics", 9090, Protocol::Tcp),
                "db" => pod.port("pg", 5432, Protocol::Tcp),
                "cache" => pod.port("redis", 6379, Protocol::Tcp),
                _ => pod.port("metrics", 9091, Protocol::Tcp),
            };
            cluster = cluster.pod(pod);
        }

        let ns = ns_name(i);
        cluster = cluster
            .policy(
                NetworkPolicy::new(&ns, "default-deny")
                    .types([PolicyType::Ingress, PolicyType::Egress]),
            )
            .policy(
                NetworkPolicy::new(&ns, "same-namespace")
                    .types([PolicyType::Ingress, PolicyType::Egress])
                    .ingress_rule(IngressRule::new().from(Peer::pods(LabelSelector::everything())))
                    .egress_rule(EgressRule::new().to(Peer::pods(LabelSelector::everything()))),
            )
            .policy(
                NetworkPolicy::new(&ns, "dns")
                    .types([PolicyType::Egress])
                    .egress_rule(
                        EgressRule::new()
                            .to(Peer::ip_block(IpBlock::new("169.254.20.10/32")))
                            .port(PortSpec::udp(53))
                            .port(PortSpec::tcp(53)),
                    ),
            );
        for extra in 0..2 {
            let name = format!("extra-{extra}");
            let other = ns_name(rng.below(namespaces));
            let policy = match rng.below(7) {
                0 => NetworkPolicy::new(&ns, name)
                    .select(sel("app", "web"))
                    .ingress_rule(
                        IngressRule::new()
                            .from(Peer::pods_in_namespaces(
                                sel("app", "api"),
                                sel("team", &format!("team{}", rng.below(50))),
                            ))
                            .port(PortSpec::named(Protocol::Tcp, "http")),
                    ),
                1 => NetworkPolicy::new(&ns, name)
                    .select(sel("app", "db"))
                    .ingress_rule(
                        IngressRule::new()
                            .from(Peer::pods(LabelSelector::everything().and_expression(
                                "app",
                                SelectorOperator::In,
                                ["api", "worker"],
                            )))
                            .port(PortSpec::tcp(5432)),
                    ),
                2 => NetworkPolicy::new(&ns, name)
                    .select(sel("app", "api"))
                    .types([PolicyType::Egress])
                    .egress_rule(
                        EgressRule::new()
                            .to(Peer::pods_in_namespaces(
                                sel("app", "api"),
                                sel("tier", "gold"),
                            ))
                            .port(PortSpec::range(Protocol::Tcp, 8000, 8100)),
                    ),
                3 => NetworkPolicy::new(&ns, name)
                    .select(sel("role", "frontend"))
                    .types([PolicyType::Egress])
                    .egress_rule(
                        EgressRule::new()
                            .to(Peer::ip_block(
                                IpBlock::new("0.0.0.0/0")
                                    .except("10.0.0.0/8")
                                    .except("192.168.0.0/16"),
                            ))
                            .port(PortSpec::tcp(443)),
                    ),
                4 => NetworkPolicy::new(&ns, name)
                    .select(sel("app", "web"))
                    .ingress_rule(
                        IngressRule::new()
                            .from(Peer::ip_block(IpBlock::new("192.0.2.0/24")))
                            .port(PortSpec::tcp(443))
                            .port(PortSpec::named(Protocol::Tcp, "metrics")),
                    ),
                5 => NetworkPolicy::new(&ns, name)
                    .select(sel("app", "worker"))
                    .types([PolicyType::Egress])
                    .egress_rule(
                        EgressRule::new()
                            .to(Peer::namespaces(sel("kubernetes.io/metadata.name", &other)))
                            .port(PortSpec::named(Protocol::Tcp, "http")),
                    ),
                _ => NetworkPolicy::new(&ns, name).ingress_rule(
                    IngressRule::new()
                        .from(Peer::pods_in_namespaces(
                            sel("app", "web"),
                            LabelSelector::everything().and_expression(
                                "env",
                                SelectorOperator::In,
                                ["prod"],
                            ),
                        ))
                        .port(PortSpec::named(Protocol::Tcp, "metrics")),
                ),
            };
            cluster = cluster.policy(policy);
        }
    }
    cluster
}

/// Peak resident set size so far, from `/proc/self/status` (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("policy-matrix: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("policy-matrix: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |name: &str, value: String| {
        eprintln!("  {name}: {value}");
        rows.push((name.to_owned(), value));
    };

    let start = Instant::now();
    let mut cluster = synthetic(args.namespaces, args.pods, args.seed);
    if args.open {
        cluster.policies = cluster
            .namespaces
            .iter()
            .flat_map(|ns| {
                let everywhere = || Peer::namespaces(LabelSelector::everything());
                [
                    NetworkPolicy::new(&ns.name, "cluster-only")
                        .types([PolicyType::Ingress, PolicyType::Egress])
                        .ingress_rule(IngressRule::new().from(everywhere()))
                        .egress_rule(EgressRule::new().to(everywhere())),
                    NetworkPolicy::new(&ns.name, "web-ports").ingress_rule(
                        IngressRule::new()
                            .port(PortSpec::tcp(443))
                            .port(PortSpec::named(Protocol::Tcp, "http"))
                            .port(PortSpec::range(Protocol::Tcp, 8000, 8100)),
                    ),
                ]
            })
            .collect();
    }
    let rule_count: usize = cluster
        .policies
        .iter()
        .map(|p| p.ingress.len() + p.egress.len())
        .sum();
    row(
        "cluster",
        format!(
            "{} namespaces, {} pods, {} externals, {} policies, {} rules (seed {}, scenario {})",
            cluster.namespaces.len(),
            cluster.pods.len(),
            cluster.externals.len(),
            cluster.policies.len(),
            rule_count,
            args.seed,
            if args.open { "open" } else { "tenants" }
        ),
    );
    row("generate cluster", secs(start.elapsed()));

    let start = Instant::now();
    let engine = Engine::new(&cluster, EngineOptions::default()).map_err(|e| e.to_string())?;
    row("validate + compile (Engine::new)", secs(start.elapsed()));
    let rss_engine = peak_rss_kib().unwrap_or(0);

    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let start = Instant::now();
    let matrix = engine.matrix_with_threads(threads);
    let matrix_time = start.elapsed();
    row(&format!("matrix ({threads} thread(s))"), secs(matrix_time));
    let start = Instant::now();
    let single = engine.matrix_with_threads(1);
    let single_time = start.elapsed();
    row("matrix (1 thread)", secs(single_time));
    drop(single);

    let n = engine.endpoint_count();
    let classes = matrix.port_classes().to_vec();
    row(
        "matrix size",
        format!(
            "{n} × {n} endpoints × {} port classes = {:.2e} cells, {} allowed; rows hold {}",
            classes.len(),
            (n * n * classes.len()) as f64,
            matrix.allowed_count(),
            mib(matrix.heap_bytes() as u64)
        ),
    );

    // Naive baseline: every destination and class for a sample of sources.
    let sample: Vec<usize> = (0..args.sample.min(n))
        .map(|i| i * n / args.sample.min(n))
        .collect();
    let start = Instant::now();
    let mut naive_allowed = 0u64;
    let mut mismatches = 0u64;
    for &s in &sample {
        let src = EndpointId(u32::try_from(s).map_err(|_| "too many endpoints")?);
        for d in 0..n {
            let dst = EndpointId(u32::try_from(d).map_err(|_| "too many endpoints")?);
            for class in &classes {
                let allowed = engine.allowed(src, dst, class.protocol, class.start);
                naive_allowed += u64::from(allowed);
                if allowed != matrix.allowed(src, dst, class.protocol, class.start) {
                    mismatches += 1;
                }
            }
        }
    }
    let naive_sample = start.elapsed();
    let naive_full = naive_sample.mul_f64(n as f64 / sample.len() as f64);
    row(
        "naive baseline (sampled)",
        format!(
            "{} sources × {n} × {} classes in {} ({naive_allowed} allowed, {mismatches} disagreements with the matrix)",
            sample.len(),
            classes.len(),
            secs(naive_sample)
        ),
    );
    row(
        "naive baseline (extrapolated to all sources)",
        secs(naive_full),
    );
    row(
        "speed-up (naive extrapolated / matrix)",
        format!(
            "{:.0}× ({} threads), {:.0}× (1 thread)",
            naive_full.as_secs_f64() / matrix_time.as_secs_f64().max(1e-9),
            threads,
            naive_full.as_secs_f64() / single_time.as_secs_f64().max(1e-9)
        ),
    );
    if mismatches != 0 {
        return Err(format!(
            "the matrix disagrees with Engine::allowed on {mismatches} sampled cells"
        ));
    }

    let start = Instant::now();
    let by_namespace = matrix.namespace_matrix();
    let ns_time = start.elapsed();
    let ns_pairs = by_namespace.connections().len();
    row(
        "namespace matrix",
        format!("{} ({ns_pairs} group pairs connected)", secs(ns_time)),
    );

    // A change: ten tenants drop every policy (connections added), ten others drop
    // same-namespace traffic (connections removed).
    let step = (args.namespaces / 10).max(1);
    let tenant = |ns: &str| {
        ns.trim_start_matches('t')
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    };
    let mut changed = cluster.clone();
    changed.policies.retain(|p| {
        let i = tenant(&p.namespace);
        !(i % step == 0 || (i % step == 1 && p.name == "same-namespace"))
    });
    let engine_b = Engine::new(&changed, EngineOptions::default()).map_err(|e| e.to_string())?;
    let matrix_b = engine_b.matrix_with_threads(threads);
    let start = Instant::now();
    let d = diff(&matrix, &matrix_b);
    row(
        "diff (10 tenants open, 10 lose same-namespace)",
        format!(
            "{} ({} added, {} removed connection entries)",
            secs(start.elapsed()),
            d.added.len(),
            d.removed.len()
        ),
    );
    let start = Instant::now();
    let same = diff(&matrix, &matrix).is_empty();
    row(
        "diff (matrix with itself)",
        format!("{} (empty: {same})", secs(start.elapsed())),
    );

    row(
        "peak RSS (VmHWM)",
        format!(
            "{} after Engine::new, {} at the end",
            mib(rss_engine * 1024),
            mib(peak_rss_kib().unwrap_or(0) * 1024)
        ),
    );

    let mut table = String::from("| measure | value |\n|---|---|\n");
    for (name, value) in &rows {
        table.push_str(&format!("| {name} | {value} |\n"));
    }
    println!("{table}");
    if let Some(path) = &args.out {
        std::fs::write(path, &table).map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    Ok(())
}
