//! What the network benchmarks share: a synthetic instance of N tenants on a
//! ring of rules (tenant i may open 5201/tcp on tenant i+1, and DNS), plain
//! network namespaces standing in for sandboxes (made with one `ip -batch`,
//! outside the timed part), and cleanup that runs even when a step fails.

// Shared by the network benchmarks; each uses a part.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bulkhead_node::naming::Instance;
use bulkhead_node::net::firewall::{self, Allow, Ruleset};
use bulkhead_node::net::link::{self, BridgeConfig};
use ipnet::Ipv4Net;

/// The port the ring of rules opens.
pub const PORT: u16 = 5201;

/// Tenant `i`'s name.
pub fn tenant(i: usize) -> String {
    format!("t{i:04}")
}

/// The desired state: platform on `range`, `n` tenants on a ring.
pub fn desired(prefix: &str, range: Ipv4Net, n: usize) -> Result<bulkhead_spec::Desired, String> {
    let mut yaml = format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata: {{ name: bench }}\nspec:\n  instance: {prefix}\n  network:\n    tenantRange: {range}\n  keySource: {{ file: /nonexistent/bench.key }}\n"
    );
    for i in 0..n {
        let (prev, next) = (tenant((i + n - 1) % n), tenant((i + 1) % n));
        yaml.push_str(&format!(
            "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata: {{ name: {} }}\nspec:\n  network:\n    ingress:\n      - from: [{{ tenant: {prev} }}]\n        ports: [{PORT}/tcp]\n    egress:\n      - to: [{{ dns: true }}]\n      - to: [{{ tenant: {next} }}]\n        ports: [{PORT}/tcp]\n",
            tenant(i)
        ));
    }
    bulkhead_spec::load_str("<bench>", &yaml).map_err(|e| format!("synthetic spec: {e:?}"))
}

/// Addresses in allocation order.
pub fn addresses(range: Ipv4Net, n: usize) -> BTreeMap<String, Ipv4Addr> {
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for i in 0..n {
        if let Some(a) = bulkhead_node::net::allocate(range, &taken) {
            taken.insert(a);
            out.insert(tenant(i), a);
        }
    }
    out
}

/// `ruleset` with no tenant: the chains and empty sets, loaded first.
pub fn empty(ruleset: &Ruleset) -> Ruleset {
    Ruleset {
        ports: Vec::new(),
        allow: BTreeSet::new(),
        deviations: Vec::new(),
        ..ruleset.clone()
    }
}

/// Per tenant, in onboarding order, the ruleset holding only what onboarding it
/// adds: its port binding and the `allow` elements whose later endpoint it is.
pub fn per_tenant(ruleset: &Ruleset, order: &[String]) -> Vec<Ruleset> {
    let index: BTreeMap<Ipv4Addr, usize> = ruleset
        .ports
        .iter()
        .filter_map(|p| Some((p.address, order.iter().position(|t| *t == p.tenant)?)))
        .collect();
    let owner = |a: &Allow| {
        let of = |r: &firewall::AddrRange| {
            (r.first == r.last)
                .then(|| index.get(&r.first).copied())
                .flatten()
        };
        of(&a.src).max(of(&a.dst))
    };
    let mut out: Vec<Ruleset> = order
        .iter()
        .map(|t| Ruleset {
            ports: ruleset
                .ports
                .iter()
                .filter(|p| p.tenant == *t)
                .cloned()
                .collect(),
            allow: BTreeSet::new(),
            deviations: Vec::new(),
            ..ruleset.clone()
        })
        .collect();
    for a in &ruleset.allow {
        if let Some(i) = owner(a) {
            out[i].allow.insert(*a);
        }
    }
    out
}

/// Runs `ip -batch -` with `lines`.
pub fn ip_batch(lines: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("ip: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(lines.as_bytes())
        .map_err(|e| format!("ip: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -batch failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One benchmark instance: its namespaces, bridge and tables go on drop.
pub struct Lab {
    pub instance: Instance,
    pub bridge: BridgeConfig,
    pub namespaces: Vec<String>,
    _state: TempDir,
}

/// A temporary directory removed on drop (std only).
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Lab {
    /// An instance `prefix` on `range` with a bridge (no tenants yet).
    pub fn new(prefix: &str, range: Ipv4Net) -> Result<Lab, String> {
        let dir = std::env::temp_dir().join(format!("bulkhead-bench-{prefix}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let instance = Instance::new(prefix, &dir);
        let bridge = BridgeConfig { range };
        let lab = Lab {
            instance,
            bridge,
            namespaces: Vec::new(),
            _state: TempDir(dir),
        };
        link::ensure_bridge(&lab.instance, &lab.bridge).map_err(|e| e.to_string())?;
        Ok(lab)
    }

    /// Plain namespaces for `tenants`, registered under /run/netns (one `ip` exec).
    pub fn add_namespaces(&mut self, tenants: &[String]) -> Result<(), String> {
        let names: Vec<String> = tenants.iter().map(|t| self.instance.netns(t)).collect();
        self.namespaces.extend(names.iter().cloned());
        let lines: String = names.iter().map(|n| format!("netns add {n}\n")).collect();
        ip_batch(&lines)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace takes the tenant end of its veth, and so the pair.
        let lines: String = self
            .namespaces
            .iter()
            .map(|n| format!("netns del {n}\n"))
            .collect();
        if !lines.is_empty()
            && let Err(e) = ip_batch(&lines)
        {
            eprintln!("cleanup: {e}");
        }
        // ifb devices of shaped tenants (none here) and lingering veths.
        std::thread::sleep(Duration::from_millis(100));
        if let Err(e) = firewall::remove(&self.instance) {
            eprintln!("cleanup: firewall: {e}");
        }
        if let Err(e) = link::remove_bridge(&self.instance) {
            eprintln!("cleanup: bridge: {e}");
        }
    }
}

/// Median and 95th percentile.
pub fn stats(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    (at(0.5), at(0.95))
}

/// `1.23 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
