//! Benchmark: `bulkhead k8s audit` and `bulkhead k8s reach` on a synthetic cluster dump
//! of 1,000 namespaces, 10,000 workloads (pods) and 3,000 NetworkPolicies, generated
//! deterministically as YAML files in a temporary directory.
//!
//! ```text
//! cargo xtask bench k8s-audit [-- --namespaces N --pods N --seed N --out FILE]
//! ```
//!
//! The baseline, in the same run, is reading the manifests (`load_dir`: file reads
//! and YAML parsing), which every consumer pays: audit and reach are reported as
//! multiples of it. Targets on this machine: the whole run under 2 s and 1 GiB.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_k8s::audit::{audit, load_dir};
use bulkhead_k8s::reach::{ReachOptions, reach};

struct Args {
    namespaces: usize,
    pods: usize,
    seed: u64,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        namespaces: 1000,
        pods: 10,
        seed: 42,
        out: None,
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
            "--out" => args.out = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// SplitMix64: deterministic, no dependency.
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

const KINDS: [&str; 4] = ["Deployment", "StatefulSet", "DaemonSet", "Pod"];
const ROLES: [&str; 4] = ["web", "api", "db", "worker"];

/// One namespace's file: the Namespace, a ResourceQuota, `pods` workloads and three
/// NetworkPolicies (default deny; same namespace, egress to the team and DNS; one
/// template rule).
fn namespace_yaml(rng: &mut Rng, ns: usize, namespaces: usize, pods: usize) -> String {
    let name = format!("t{ns:04}");
    let mut y = String::new();
    let team = ns % 20;
    let _ = write!(
        y,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    team: team-{team}\n    pod-security.kubernetes.io/enforce: restricted\n"
    );
    let _ = write!(
        y,
        "---\napiVersion: v1\nkind: ResourceQuota\nmetadata: {{ name: quota, namespace: {name} }}\nspec:\n  hard: {{ requests.cpu: '4', requests.memory: 8Gi, limits.cpu: '4', limits.memory: 8Gi, pods: '50', services: '10' }}\n"
    );
    for p in 0..pods {
        let kind = KINDS[rng.below(KINDS.len())];
        let role = ROLES[p % ROLES.len()];
        let privileged = rng.below(50) == 0;
        let container = format!(
            "{{ name: main, image: registry.example/{role}:1, ports: [{{ name: http, containerPort: {} }}], securityContext: {{ allowPrivilegeEscalation: false, privileged: {privileged} }} }}",
            8000 + rng.below(4) * 80
        );
        if kind == "Pod" {
            let _ = write!(
                y,
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {role}-{p}\n  namespace: {name}\n  labels: {{ app: {role}, tier: t{} }}\nspec:\n  containers: [{container}]\nstatus: {{ podIP: 10.{}.{}.{} }}\n",
                p % 3,
                ns / 256,
                ns % 256,
                p + 2
            );
        } else {
            let _ = write!(
                y,
                "---\napiVersion: apps/v1\nkind: {kind}\nmetadata: {{ name: {role}-{p}, namespace: {name} }}\nspec:\n  replicas: 3\n  selector: {{ matchLabels: {{ app: {role}, idx: '{p}' }} }}\n  template:\n    metadata: {{ labels: {{ app: {role}, idx: '{p}', tier: t{} }} }}\n    spec:\n      containers: [{container}]\n",
                p % 3
            );
        }
    }
    let _ = write!(
        y,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{ name: default-deny, namespace: {name} }}\nspec: {{ podSelector: {{}}, policyTypes: [Ingress, Egress] }}\n"
    );
    let _ = write!(
        y,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{ name: same-namespace, namespace: {name} }}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n  ingress: [{{ from: [{{ podSelector: {{}} }}] }}]\n  egress:\n    - to: [{{ podSelector: {{}} }}, {{ namespaceSelector: {{ matchLabels: {{ team: team-{team} }} }} }}]\n    - to: [{{ namespaceSelector: {{ matchLabels: {{ kubernetes.io/metadata.name: kube-system }} }}, podSelector: {{ matchLabels: {{ k8s-app: kube-dns }} }} }}]\n      ports: [{{ port: 53, protocol: UDP }}, {{ port: 53, protocol: TCP }}]\n"
    );
    let peer = format!("t{:04}", rng.below(namespaces));
    let rule = match rng.below(5) {
        // Another tenant's API calls this one's web tier.
        0 => format!(
            "  podSelector: {{ matchLabels: {{ app: web }} }}\n  policyTypes: [Ingress]\n  ingress: [{{ from: [{{ namespaceSelector: {{ matchLabels: {{ kubernetes.io/metadata.name: {peer} }} }}, podSelector: {{ matchLabels: {{ app: api }} }} }}], ports: [{{ port: 443 }}, {{ port: 8080 }}] }}]\n"
        ),
        // The whole team may reach the databases on a port range.
        1 => format!(
            "  podSelector: {{ matchLabels: {{ app: db }} }}\n  policyTypes: [Ingress]\n  ingress: [{{ from: [{{ namespaceSelector: {{ matchLabels: {{ team: team-{team} }} }} }}], ports: [{{ port: 5432, endPort: 5440 }}] }}]\n"
        ),
        // Workers go to the internet, but not to the cluster's ranges.
        2 => "  podSelector: { matchLabels: { app: worker } }\n  policyTypes: [Egress]\n  egress: [{ to: [{ ipBlock: { cidr: 0.0.0.0/0, except: [10.0.0.0/8] } }], ports: [{ port: 443 }] }]\n".to_owned(),
        // Named ports, resolved on the destination.
        3 => format!(
            "  podSelector: {{ matchExpressions: [{{ key: tier, operator: In, values: [t0, t1] }}] }}\n  policyTypes: [Ingress]\n  ingress: [{{ from: [{{ namespaceSelector: {{ matchLabels: {{ kubernetes.io/metadata.name: {peer} }} }} }}], ports: [{{ port: http }}] }}]\n"
        ),
        // Monitoring scrapes everything.
        _ => "  podSelector: {}\n  policyTypes: [Ingress]\n  ingress: [{ from: [{ namespaceSelector: { matchLabels: { kubernetes.io/metadata.name: monitoring } } }], ports: [{ port: 9090 }] }]\n".to_owned(),
    };
    let _ = write!(
        y,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{ name: exception, namespace: {name} }}\nspec:\n{rule}"
    );
    y
}

fn generate(dir: &Path, args: &Args) -> Result<(), String> {
    let mut rng = Rng(args.seed);
    for ns in 0..args.namespaces {
        let text = namespace_yaml(&mut rng, ns, args.namespaces, args.pods);
        let path = dir.join(format!("t{ns:04}.yaml"));
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
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

fn run(args: &Args, dir: &Path) -> Result<bool, String> {
    generate(dir, args)?;

    let total = Instant::now();
    let start = Instant::now();
    let manifests = load_dir(dir).map_err(|e| e.to_string())?;
    let t_load = start.elapsed();

    let start = Instant::now();
    let findings = audit(&manifests);
    let t_audit = start.elapsed();

    let start = Instant::now();
    let report = reach(&manifests, &ReachOptions::default()).map_err(|e| e.to_string())?;
    let t_reach = start.elapsed();
    let t_total = total.elapsed();
    let rss = peak_rss_kib().unwrap_or(0);

    let policies = manifests
        .iter()
        .filter(|m| m.value.get("kind").and_then(|k| k.as_str()) == Some("NetworkPolicy"))
        .count();
    let ratio = |d: Duration| d.as_secs_f64() / t_load.as_secs_f64().max(1e-9);
    let rows = [
        (
            "input".to_owned(),
            format!(
                "{} namespaces, {} workloads, {policies} NetworkPolicies, {} objects",
                args.namespaces,
                report.workloads.len(),
                manifests.len()
            ),
        ),
        ("baseline: read + parse (load_dir)".to_owned(), secs(t_load)),
        (
            "audit".to_owned(),
            format!(
                "{} ({:.2}× baseline), {} findings",
                secs(t_audit),
                ratio(t_audit),
                findings.len()
            ),
        ),
        (
            "reach (engine, matrix, connections, findings)".to_owned(),
            format!(
                "{} ({:.2}× baseline), {} connections, {} namespace pairs, {} findings",
                secs(t_reach),
                ratio(t_reach),
                report.connections.len(),
                report.namespaces.len(),
                report.findings.len()
            ),
        ),
        ("total (load + audit + reach)".to_owned(), secs(t_total)),
        (
            "peak RSS (VmHWM)".to_owned(),
            format!("{:.1} MiB", rss as f64 / 1024.0),
        ),
    ];
    let mut table = String::from("| measure | value |\n|---|---|\n");
    for (name, value) in &rows {
        let _ = writeln!(table, "| {name} | {value} |");
    }
    print!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table).map_err(|e| format!("{out}: {e}"))?;
    }
    let ok = t_total < Duration::from_secs(2) && rss < 1024 * 1024;
    println!(
        "target (< 2 s, < 1 GiB): {}",
        if ok { "met" } else { "MISSED" }
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("k8s-audit: {message}");
            return ExitCode::from(2);
        }
    };
    let dir: PathBuf =
        std::env::temp_dir().join(format!("bulkhead-k8s-audit-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("k8s-audit: {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let result = run(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("k8s-audit: {message}");
            ExitCode::from(2)
        }
    }
}
