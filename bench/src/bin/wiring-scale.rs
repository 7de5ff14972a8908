//! Benchmark (research, issue 4): why per-tenant network wiring grows with the
//! number of tenants already wired, and what other host layouts cost.
//!
//! Each run wires N tenants (default 1,000) one after the other into fresh
//! network namespaces and times every tenant; the figures are the medians of
//! the first `W` tenants (the marginal cost at N≈100 for W=100) and of the last
//! `W` (at N≈1,000), and their ratio. Then it removes tenants and times that
//! too: the last `W` first (at N≈1,000), the middle ones untimed in one
//! `ip -batch` of `netns del`, then the first `W` (at N≈100).
//!
//! Layouts (`--layouts`, default all):
//! - `lib`: today's library, `link::ensure_tenant` / `link::remove_tenant`
//!   (lookups by name, repairs; one bridge);
//! - `a`: the same kernel objects with the minimum of requests: one bridge, the
//!   host end enslaved in the veth's creating request;
//! - `b64`, `b128`, `b256` (any `bP`): sharded, bridges of at most P ports,
//!   each made when the first tenant needs it (bridge 0 carries the gateway
//!   address; the others none: the tenants keep the one range and gateway);
//! - `c`: one bridge, every port isolated (`IFLA_BRPORT_ISOLATED`, one more
//!   request);
//! - `d`: routed, no bridge: tenant address /32 with a default route via
//!   169.254.1.1 `onlink`, host end unnumbered with `proxy_arp` on and a /32
//!   host route to the tenant (the layout Calico uses);
//! - `e`: the veth pair as in `a` but never enslaved (and no host route): what
//!   creating the devices costs without the bridge;
//! - any of these but `lib` with `-no6` (e.g. `b128-no6`): the host end gets
//!   `net.ipv6.conf.<name>.disable_ipv6 = 1` (a procfs write) instead of the
//!   `addrgenmode none` request, before it comes up, so the kernel adds no
//!   `ff00::/8` multicast route for it to the host's IPv6 table.
//!
//! Rounds (`--repeat R`) run every layout once, in an order rotated and
//! reversed from round to round so that a noisy minute hits each layout.
//! - any of these but `lib` with `-nomc` (e.g. `a-nomc-no6`): multicast
//!   snooping off on the bridges (sysfs, when each bridge is made).
//!
//! `--perf DIR` adds, after the timed rounds, `--perf-repeat K` (default 1)
//! untimed runs per layout of `--perf-layouts` (default `a,b128`) under
//! `perf record -a -g -F <--perf-freq>` for each window:
//! `DIR/<layout>-lo.<k>.data` and `DIR/<layout>-hi.<k>.data` (compare them
//! with `bench/scripts/wiring-perf.sh`). Needs root; every namespace, link and
//! bridge (prefix `bw`) is removed after each run, also when a step fails.
//!
//! ```text
//! cargo xtask bench wiring-scale [-- --tenants 1000 --window 100 --repeat 5 --layouts a,b128,d --perf /tmp/wperf]
//! ```

#[path = "../wiring_nl.rs"]
mod wiring_nl;

#[path = "../net_common.rs"]
mod net_common;

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bulkhead_node::naming::Instance;
use bulkhead_node::net::link::{self, BridgeConfig, NetnsRef, TenantLink};
use bulkhead_node::net::tenant_mac;
use ipnet::Ipv4Net;
use wiring_nl::Netlink;

/// The tenant range (not used by the other benchmarks or tests).
const RANGE: &str = "10.251.16.0/20";
/// The routed layout's gateway, as Calico uses it: link-local, on no link.
const ROUTED_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
const TENANT_IFNAME: &str = "eth0";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wiring-scale: {message}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Library,
    Bridge,
    Sharded(usize),
    Isolated,
    Routed,
    Unenslaved,
}

/// A layout, optionally with IPv6 off on the host end (`-no6`) and multicast
/// snooping off on the bridges (`-nomc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    kind: Kind,
    /// `net.ipv6.conf.<host end>.disable_ipv6 = 1` before the link comes up
    /// (instead of `addrgenmode none`), so the kernel adds no IPv6 multicast
    /// route (`ff00::/8`) for it.
    no_ipv6: bool,
    /// The bridges' `multicast_snooping` off (sysfs), set when each is made.
    no_snooping: bool,
}

impl Layout {
    fn parse(text: &str) -> Result<Layout, String> {
        let mut parts = text.split('-');
        let base = parts.next().unwrap_or_default();
        let (mut no_ipv6, mut no_snooping) = (false, false);
        for modifier in parts {
            match modifier {
                "no6" => no_ipv6 = true,
                "nomc" => no_snooping = true,
                _ => {
                    return Err(format!(
                        "unknown modifier {modifier:?} in layout {text:?} (expected -no6 or -nomc)"
                    ));
                }
            }
        }
        let kind = match base {
            "lib" => Kind::Library,
            "a" => Kind::Bridge,
            "c" => Kind::Isolated,
            "d" => Kind::Routed,
            "e" => Kind::Unenslaved,
            _ => match base.strip_prefix('b').map(str::parse::<usize>) {
                Some(Ok(ports)) if ports > 0 => Kind::Sharded(ports),
                _ => {
                    return Err(format!(
                        "unknown layout {text:?} (expected lib, a, bP with P ports per bridge e.g. b128, c, d or e, then optionally -no6 and/or -nomc)"
                    ));
                }
            },
        };
        let layout = Layout {
            kind,
            no_ipv6,
            no_snooping,
        };
        if kind == Kind::Library && (no_ipv6 || no_snooping) {
            return Err(format!("layout {text:?}: lib takes no modifier"));
        }
        // Today's library turns both off itself (and isolates its ports).
        let layout = if kind == Kind::Library {
            Layout {
                no_ipv6: true,
                no_snooping: true,
                ..layout
            }
        } else {
            layout
        };
        if no_snooping && !layout.has_bridge() {
            return Err(format!("layout {text:?}: -nomc needs a bridge"));
        }
        Ok(layout)
    }

    fn name(self) -> String {
        let mut name = match self.kind {
            Kind::Library => {
                "lib: today's library (ensure_tenant: routed, isolated ports, bridge shards of 128)"
                    .to_owned()
            }
            Kind::Bridge => "a: one bridge".to_owned(),
            Kind::Sharded(p) => format!("b: bridges of ≤ {p} ports"),
            Kind::Isolated => "c: one bridge, isolated ports".to_owned(),
            Kind::Routed => "d: routed veth, no bridge".to_owned(),
            Kind::Unenslaved => "e: veth not enslaved".to_owned(),
        };
        if self.no_snooping {
            name.push_str(", no multicast snooping");
        }
        if self.no_ipv6 {
            name.push_str(", host end without IPv6");
        }
        name
    }

    fn short(self) -> String {
        let mut name = match self.kind {
            Kind::Library => "lib".to_owned(),
            Kind::Bridge => "a".to_owned(),
            Kind::Sharded(p) => format!("b{p}"),
            Kind::Isolated => "c".to_owned(),
            Kind::Routed => "d".to_owned(),
            Kind::Unenslaved => "e".to_owned(),
        };
        if self.no_snooping {
            name.push_str("-nomc");
        }
        if self.no_ipv6 {
            name.push_str("-no6");
        }
        name
    }

    fn has_bridge(self) -> bool {
        !matches!(self.kind, Kind::Routed | Kind::Unenslaved)
    }
}

struct Options {
    tenants: usize,
    window: usize,
    repeat: usize,
    layouts: Vec<Layout>,
    removal: bool,
    perf: Option<PathBuf>,
    perf_layouts: Vec<Layout>,
    perf_freq: u32,
    perf_repeat: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        tenants: 1000,
        window: 100,
        repeat: 3,
        layouts: ["lib", "a", "b64", "b128", "b256", "c", "d", "e"]
            .iter()
            .map(|l| Layout::parse(l))
            .collect::<Result<_, _>>()?,
        removal: true,
        perf: None,
        perf_layouts: vec![Layout::parse("a")?, Layout::parse("b128")?],
        perf_freq: 10_000,
        perf_repeat: 1,
    };
    let number = |flag: &str, value: Option<String>| -> Result<usize, String> {
        value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number"))
    };
    let layouts = |value: Option<String>| -> Result<Vec<Layout>, String> {
        value
            .ok_or("a layout list is missing")?
            .split(',')
            .map(|l| Layout::parse(l.trim()))
            .collect()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tenants" => o.tenants = number("--tenants", args.next())?,
            "--window" => o.window = number("--window", args.next())?,
            "--repeat" => o.repeat = number("--repeat", args.next())?,
            "--layouts" => o.layouts = layouts(args.next())?,
            "--no-removal" => o.removal = false,
            "--perf" => {
                o.perf = Some(PathBuf::from(
                    args.next().ok_or("--perf needs a directory")?,
                ))
            }
            "--perf-layouts" => o.perf_layouts = layouts(args.next())?,
            "--perf-freq" => o.perf_freq = number("--perf-freq", args.next())? as u32,
            "--perf-repeat" => o.perf_repeat = number("--perf-repeat", args.next())?,
            "--help" | "-h" => {
                println!(
                    "wiring-scale [--tenants N] [--window W] [--repeat R] [--layouts lib,a,b64,b128,b256,c,d,e] [--no-removal] [--perf DIR] [--perf-layouts a,b128] [--perf-freq HZ] [--perf-repeat K]"
                );
                return Err("help shown".to_owned());
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if o.window == 0 || o.tenants < 2 * o.window {
        return Err(format!(
            "--tenants ({}) must hold two windows of --window ({}) tenants",
            o.tenants, o.window
        ));
    }
    if o.tenants > 4000 {
        return Err("--tenants is at most 4000 (the range is a /20)".to_owned());
    }
    if o.perf_repeat == 0 || o.perf_repeat > 5 {
        return Err("--perf-repeat must be 1 to 5".to_owned());
    }
    if o.repeat > 30 || (o.repeat == 0 && o.perf.is_none()) {
        return Err("--repeat must be 1 to 30 (0 only with --perf)".to_owned());
    }
    if o.layouts.is_empty() || o.layouts.len() > 30 {
        return Err("--layouts must name 1 to 30 layouts".to_owned());
    }
    Ok(o)
}

/// One run's samples.
struct Samples {
    layout: Layout,
    add_lo: Vec<Duration>,
    add_hi: Vec<Duration>,
    del_lo: Vec<Duration>,
    del_hi: Vec<Duration>,
}

fn run() -> Result<(), String> {
    let o = options()?;
    let mut all: Vec<Samples> = Vec::new();
    eprintln!(
        "wiring-scale: {} tenants, windows of {}, {} rounds, layouts {}",
        o.tenants,
        o.window,
        o.repeat,
        o.layouts
            .iter()
            .map(|l| l.short())
            .collect::<Vec<_>>()
            .join(",")
    );
    for round in 0..o.repeat {
        let k = o.layouts.len();
        let mut order: Vec<usize> = (0..k).map(|i| (i + round) % k).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for idx in order {
            let layout = o.layouts[idx];
            let samples = one_run(&o, layout, idx, round, None)?;
            eprintln!(
                "round {round} {:>5}: add {} → {} ({:.2}×), remove {} → {}",
                layout.short(),
                ms(median(&samples.add_lo)),
                ms(median(&samples.add_hi)),
                ratio(median(&samples.add_hi), median(&samples.add_lo)),
                ms(median(&samples.del_lo)),
                ms(median(&samples.del_hi)),
            );
            all.push(samples);
        }
    }
    if o.repeat > 0 {
        report(&o, &all);
    }
    if let Some(dir) = &o.perf {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for rep in 0..o.perf_repeat {
            for (i, &layout) in o.perf_layouts.iter().enumerate() {
                // Layout indices and rounds above the timed ones: names no timed run used.
                let samples = one_run(&o, layout, 30 + i, 31 + rep, Some((dir, rep)))?;
                eprintln!(
                    "perf run {rep} {:>5} (not in the figures): add {} → {}",
                    layout.short(),
                    ms(median(&samples.add_lo)),
                    ms(median(&samples.add_hi))
                );
            }
        }
        println!(
            "\nperf data in {}: <layout>-lo.<k>.data (tenants 0..{}) and <layout>-hi.<k>.data (tenants {}..{}); compare with bench/scripts/wiring-perf.sh",
            dir.display(),
            o.window,
            o.tenants - o.window,
            o.tenants
        );
    }
    Ok(())
}

fn report(o: &Options, all: &[Samples]) {
    let (lo_n, hi_n) = (o.window, o.tenants);
    println!(
        "\nPer tenant: median over {} rounds of each run's median, (min – max of the run medians); windows: tenants 0..{} (N≈{lo_n}) and {}..{} (N≈{hi_n}). Unpinned.\n",
        o.repeat,
        o.window,
        o.tenants - o.window,
        o.tenants
    );
    let mut sections = vec![(
        "wiring",
        (|s: &Samples| &s.add_lo) as fn(&Samples) -> &Vec<Duration>,
        (|s: &Samples| &s.add_hi) as fn(&Samples) -> &Vec<Duration>,
    )];
    if o.removal {
        sections.push(("removal", |s| &s.del_lo, |s| &s.del_hi));
    }
    for (what, lo, hi) in sections {
        println!(
            "| layout | {what}, N≈{lo_n} | {what}, N≈{hi_n} | ratio of medians | per-round ratio, median (min – max) |"
        );
        println!("|---|---|---|---|---|");
        for &layout in &o.layouts {
            let runs: Vec<&Samples> = all.iter().filter(|s| s.layout == layout).collect();
            let mut los: Vec<f64> = runs.iter().map(|s| secs(median(lo(s)))).collect();
            let mut his: Vec<f64> = runs.iter().map(|s| secs(median(hi(s)))).collect();
            let mut ratios: Vec<f64> = runs
                .iter()
                .map(|s| secs(median(hi(s))) / secs(median(lo(s))).max(1e-9))
                .collect();
            let (l, h, r) = (
                median_f(&mut los),
                median_f(&mut his),
                median_f(&mut ratios),
            );
            println!(
                "| {} | {:.3} ms ({:.3} – {:.3}) | {:.3} ms ({:.3} – {:.3}) | {:.2} | {:.2} ({:.2} – {:.2}) |",
                layout.name(),
                l * 1e3,
                first(&los) * 1e3,
                last(&los) * 1e3,
                h * 1e3,
                first(&his) * 1e3,
                last(&his) * 1e3,
                h / l.max(1e-9),
                r,
                first(&ratios),
                last(&ratios),
            );
        }
        println!();
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn first(v: &[f64]) -> f64 {
    v.first().copied().unwrap_or(0.0)
}

fn last(v: &[f64]) -> f64 {
    v.last().copied().unwrap_or(0.0)
}

/// Sorts and returns the median (0 for none).
fn median_f(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn median(samples: &[Duration]) -> Duration {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64()).collect();
    Duration::from_secs_f64(median_f(&mut v))
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn base36(i: usize) -> char {
    char::from_digit((i % 36) as u32, 36).unwrap_or('z')
}

/// One layout's run: wire all tenants, check the first and last, remove.
fn one_run(
    o: &Options,
    layout: Layout,
    idx: usize,
    round: usize,
    perf: Option<(&Path, usize)>,
) -> Result<Samples, String> {
    let prefix = format!(
        "bw{:02x}{}{}",
        std::process::id() % 256,
        base36(idx),
        base36(round)
    );
    let mut lab = Lab::new(&prefix, layout, o.tenants)?;
    lab.add_namespaces()?;
    let n = o.tenants;
    let w = o.window;
    let mut add = Vec::with_capacity(n);
    let mut recorder: Option<Perf> = None;
    for i in 0..n {
        if let Some((dir, rep)) = perf
            && (i == 0 || i == n - w)
        {
            let tag = if i == 0 { "lo" } else { "hi" };
            let file = dir.join(format!("{}-{tag}.{rep}.data", layout.short()));
            recorder = Some(Perf::start(&file, o.perf_freq)?);
        }
        let t0 = Instant::now();
        lab.wire(i)?;
        add.push(t0.elapsed());
        if (i + 1 == w || i + 1 == n)
            && let Some(p) = recorder.take()
        {
            p.stop()?;
        }
    }
    lab.check(0)?;
    lab.check(n - 1)?;
    lab.check_ports()?;
    let (mut del_lo, mut del_hi) = (Vec::new(), Vec::new());
    if o.removal && perf.is_none() {
        for i in (n - w..n).rev() {
            let t0 = Instant::now();
            lab.unwire(i)?;
            del_hi.push(t0.elapsed());
        }
        lab.drop_namespaces(w..n - w)?;
        for i in (0..w).rev() {
            let t0 = Instant::now();
            lab.unwire(i)?;
            del_lo.push(t0.elapsed());
        }
    }
    drop(lab);
    Ok(Samples {
        layout,
        add_lo: add[..w].to_vec(),
        add_hi: add[n - w..].to_vec(),
        del_lo,
        del_hi,
    })
}

/// `perf record -a -g` until stopped (SIGINT).
struct Perf {
    child: Child,
    file: PathBuf,
}

impl Perf {
    fn start(file: &Path, freq: u32) -> Result<Perf, String> {
        let child = Command::new("perf")
            .args(["record", "-a", "-g", "-F", &freq.to_string(), "-o"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("perf: {e}"))?;
        // perf needs a moment to open its events on every CPU.
        std::thread::sleep(Duration::from_secs(2));
        Ok(Perf {
            child,
            file: file.to_owned(),
        })
    }

    fn stop(mut self) -> Result<(), String> {
        let pid =
            rustix::process::Pid::from_raw(self.child.id() as i32).ok_or("perf has no pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::INT)
            .map_err(|e| format!("stop perf: {e}"))?;
        let status = self.child.wait().map_err(|e| format!("perf: {e}"))?;
        if !self.file.exists() {
            return Err(format!("perf wrote no {} ({status})", self.file.display()));
        }
        Ok(())
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        // Only reached when a step failed between start and stop.
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
            }
            let _ = self.child.wait();
        }
    }
}

/// One run's kernel objects; all go on drop.
struct Lab {
    layout: Layout,
    instance: Instance,
    config: BridgeConfig,
    state: PathBuf,
    host: Netlink,
    tenants: Vec<String>,
    addresses: Vec<Ipv4Addr>,
    /// Index of each bridge made so far (shard k at k).
    bridges: Vec<u32>,
    /// Namespaces registered and not yet deleted.
    namespaces: Vec<Option<String>>,
}

impl Lab {
    fn new(prefix: &str, layout: Layout, n: usize) -> Result<Lab, String> {
        let range: Ipv4Net = RANGE.parse().map_err(|_| "range")?;
        let state = std::env::temp_dir().join(format!("bulkhead-wiring-{prefix}"));
        std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
        let instance = Instance::new(prefix, &state);
        let config = BridgeConfig { range };
        let gateway = config.address().ok_or("range has no gateway")?;
        let addresses: Vec<Ipv4Addr> = range.hosts().filter(|a| *a != gateway).take(n).collect();
        let mut lab = Lab {
            layout,
            instance,
            config,
            state,
            host: Netlink::open().map_err(|e| format!("netlink: {e}"))?,
            tenants: (0..n).map(|i| format!("t{i:04}")).collect(),
            addresses,
            bridges: Vec::new(),
            namespaces: Vec::new(),
        };
        if layout.has_bridge() {
            link::ensure_bridge(&lab.instance, &lab.config).map_err(|e| e.to_string())?;
            let name = lab.instance.bridge();
            let index = lab.index(&name)?;
            lab.bridges.push(index);
            lab.snooping(&name)?;
        }
        Ok(lab)
    }

    fn index(&mut self, name: &str) -> Result<u32, String> {
        self.host
            .index(name)
            .map_err(|e| format!("look up {name}: {e}"))?
            .ok_or_else(|| format!("{name} is missing"))
    }

    /// Sets multicast snooping on bridge `name` as the layout says: off for
    /// `-nomc` layouts, on otherwise (the library makes its bridges with it off).
    fn snooping(&self, name: &str) -> Result<(), String> {
        let path = format!("/sys/class/net/{name}/bridge/multicast_snooping");
        let value = if self.layout.no_snooping { "0" } else { "1" };
        std::fs::write(&path, value).map_err(|e| format!("{path}: {e}"))
    }

    fn shard_name(&self, k: usize) -> String {
        if k == 0 {
            self.instance.bridge()
        } else {
            format!("{}s{k}", self.instance.prefix())
        }
    }

    fn add_namespaces(&mut self) -> Result<(), String> {
        let names: Vec<String> = self
            .tenants
            .iter()
            .map(|t| self.instance.netns(t))
            .collect();
        self.namespaces = names.iter().cloned().map(Some).collect();
        let lines: String = names.iter().map(|n| format!("netns add {n}\n")).collect();
        net_common::ip_batch(&lines)
    }

    /// Deletes the namespaces of `range` (their veths go with them) and waits
    /// until the kernel has removed those host ends.
    fn drop_namespaces(&mut self, range: std::ops::Range<usize>) -> Result<(), String> {
        let mut lines = String::new();
        for i in range.clone() {
            if let Some(name) = self.namespaces[i].take() {
                lines.push_str(&format!("netns del {name}\n"));
            }
        }
        net_common::ip_batch(&lines)?;
        let started = Instant::now();
        for i in range {
            let name = self.instance.interface(&self.tenants[i], 'h');
            while self
                .host
                .index(&name)
                .map_err(|e| format!("look up {name}: {e}"))?
                .is_some()
            {
                if started.elapsed() > Duration::from_secs(120) {
                    return Err(format!("{name} still there 120 s after its namespace went"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    fn netns_path(&self, i: usize) -> PathBuf {
        self.instance.netns_path(&self.tenants[i])
    }

    /// Wires tenant `i` the layout's way.
    fn wire(&mut self, i: usize) -> Result<(), String> {
        let tenant = self.tenants[i].clone();
        let address = self.addresses[i];
        if self.layout.kind == Kind::Library {
            let wiring = TenantLink {
                tenant: tenant.clone(),
                netns: NetnsRef::of_tenant(&self.instance, &tenant),
                address,
            };
            link::ensure_tenant(&self.instance, &self.config, &wiring)
                .map_err(|e| format!("{tenant}: {e}"))?;
            return Ok(());
        }
        let host_name = self.instance.interface(&tenant, 'h');
        let err = |step: &str| {
            let host_name = host_name.clone();
            let step = step.to_owned();
            move |e: std::io::Error| format!("{tenant}: {step} {host_name}: {e}", tenant = i)
        };
        let master = match self.layout.kind {
            Kind::Bridge | Kind::Isolated => Some(self.bridges[0]),
            Kind::Sharded(ports) => {
                let k = i / ports;
                while self.bridges.len() <= k {
                    let name = self.shard_name(self.bridges.len());
                    self.host
                        .create_bridge(&name)
                        .map_err(|e| format!("create bridge {name}: {e}"))?;
                    let index = self.index(&name)?;
                    self.host
                        .no_ipv6_addresses(index)
                        .map_err(|e| format!("addrgenmode {name}: {e}"))?;
                    self.snooping(&name)?;
                    self.host
                        .set_up(index)
                        .map_err(|e| format!("up {name}: {e}"))?;
                    self.bridges.push(index);
                }
                Some(self.bridges[k])
            }
            _ => None,
        };
        let path = self.netns_path(i);
        let netns = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut inner =
            Netlink::open_in(netns.as_fd()).map_err(|e| format!("{}: {e}", path.display()))?;
        self.host
            .create_veth(
                &host_name,
                master,
                TENANT_IFNAME,
                netns.as_fd(),
                tenant_mac(address),
            )
            .map_err(err("create veth"))?;
        let host = self.index(&host_name)?;
        let eth0 = inner
            .index(TENANT_IFNAME)
            .map_err(err("look up eth0 of"))?
            .ok_or_else(|| format!("{tenant}: no eth0"))?;
        if self.layout.no_ipv6 {
            let sysctl = format!("/proc/sys/net/ipv6/conf/{host_name}/disable_ipv6");
            std::fs::write(&sysctl, "1").map_err(|e| format!("{sysctl}: {e}"))?;
        } else {
            self.host
                .no_ipv6_addresses(host)
                .map_err(err("addrgenmode"))?;
        }
        inner
            .no_ipv6_addresses(eth0)
            .map_err(err("addrgenmode eth0 of"))?;
        if self.layout.kind == Kind::Isolated {
            self.host.set_isolated(host).map_err(err("isolate"))?;
        }
        if self.layout.kind == Kind::Routed {
            let sysctl = format!("/proc/sys/net/ipv4/conf/{host_name}/proxy_arp");
            std::fs::write(&sysctl, "1").map_err(|e| format!("{sysctl}: {e}"))?;
        }
        self.host.set_up(host).map_err(err("up"))?;
        let prefix_len = if self.layout.kind == Kind::Routed {
            32
        } else {
            self.config.range.prefix_len()
        };
        inner
            .add_address(eth0, address, prefix_len)
            .map_err(err("address eth0 of"))?;
        inner.set_up(eth0).map_err(err("up eth0 of"))?;
        inner.set_up(1).map_err(err("up lo of"))?;
        if self.layout.kind == Kind::Routed {
            inner
                .default_route(ROUTED_GATEWAY, eth0, true)
                .map_err(err("default route of"))?;
            self.host
                .host_route(address, host)
                .map_err(err("host route to"))?;
        } else {
            let gateway = self.config.address().ok_or("no gateway")?;
            inner
                .default_route(gateway, eth0, false)
                .map_err(err("default route of"))?;
        }
        Ok(())
    }

    /// Removes tenant `i`'s veth pair (the product's offboarding step).
    fn unwire(&mut self, i: usize) -> Result<(), String> {
        let tenant = &self.tenants[i];
        if self.layout.kind == Kind::Library {
            let removed = link::remove_tenant(&self.instance, tenant)
                .map_err(|e| format!("{tenant}: {e}"))?;
            return if removed {
                Ok(())
            } else {
                Err(format!("{tenant}: nothing to remove"))
            };
        }
        let name = self.instance.interface(tenant, 'h');
        let index = self.index(&name)?;
        if self
            .host
            .delete_link(index)
            .map_err(|e| format!("delete {name}: {e}"))?
        {
            Ok(())
        } else {
            Err(format!("{name}: nothing to remove"))
        }
    }

    /// What the kernel holds for tenant `i`, read back from sysfs, procfs and
    /// the routing table (not from our own requests).
    fn check(&mut self, i: usize) -> Result<(), String> {
        let host_name = self.instance.interface(&self.tenants[i], 'h');
        let sys = PathBuf::from(format!("/sys/class/net/{host_name}"));
        if !sys.exists() {
            return Err(format!("{host_name}: missing after wiring"));
        }
        let master = std::fs::read_link(sys.join("master"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let want = match self.layout.kind {
            Kind::Library => {
                let range: Ipv4Net = RANGE.parse().map_err(|_| "range")?;
                Some(
                    self.instance
                        .bridge_shard(link::shard_of(range, self.addresses[i])),
                )
            }
            Kind::Bridge | Kind::Isolated => Some(self.instance.bridge()),
            Kind::Sharded(ports) => Some(self.shard_name(i / ports)),
            Kind::Routed | Kind::Unenslaved => None,
        };
        if master != want {
            return Err(format!(
                "{host_name}: master is {master:?}, expected {want:?}"
            ));
        }
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("{}: {e}", p.display()))
        };
        if self.layout.has_bridge() {
            let isolated = read(sys.join("brport/isolated"))?;
            let want = if matches!(self.layout.kind, Kind::Isolated | Kind::Library) {
                "1"
            } else {
                "0"
            };
            if isolated != want {
                return Err(format!(
                    "{host_name}: isolated is {isolated}, expected {want}"
                ));
            }
        }
        if self.layout.has_bridge() {
            let bridge = want.clone().unwrap_or_default();
            let snooping = read(PathBuf::from(format!(
                "/sys/class/net/{bridge}/bridge/multicast_snooping"
            )))?;
            let expected = if self.layout.no_snooping { "0" } else { "1" };
            if snooping != expected {
                return Err(format!(
                    "{bridge}: multicast_snooping is {snooping}, expected {expected}"
                ));
            }
        }
        if self.layout.no_ipv6 {
            let off = read(PathBuf::from(format!(
                "/proc/sys/net/ipv6/conf/{host_name}/disable_ipv6"
            )))?;
            if off != "1" {
                return Err(format!("{host_name}: disable_ipv6 is {off}, expected 1"));
            }
        }
        // The IPv6 multicast route the kernel adds for a device at carrier-up
        // (the carrier event is handled later by the kernel's worker, so
        // only the first tenant is sure to have it when IPv6 is on).
        if Path::new("/proc/sys/net/ipv6").exists() && (self.layout.no_ipv6 || i == 0) {
            let routes = ip_output(&["-6", "route", "show", "table", "local", "dev", &host_name])?;
            let has = routes.lines().any(|l| l.contains("ff00::/8"));
            if has == self.layout.no_ipv6 {
                return Err(format!(
                    "{host_name}: IPv6 multicast route present: {has}, expected {}",
                    !self.layout.no_ipv6
                ));
            }
        }
        if self.layout.kind == Kind::Routed {
            let proxy = read(PathBuf::from(format!(
                "/proc/sys/net/ipv4/conf/{host_name}/proxy_arp"
            )))?;
            let index = self.index(&host_name)?;
            let address = self.addresses[i];
            let routed = self
                .host
                .routes()
                .map_err(|e| format!("routes: {e}"))?
                .iter()
                .any(|r| r.dst == Some(address) && r.dst_len == 32 && r.oif == Some(index));
            if proxy != "1" || !routed {
                return Err(format!(
                    "{host_name}: proxy_arp {proxy}, host route to {address}: {routed}"
                ));
            }
        }
        Ok(())
    }

    /// Every host end is where the layout puts it: the bridges' port lists
    /// (sysfs `brif`) hold all N, none above the shard size.
    fn check_ports(&self) -> Result<(), String> {
        if !self.layout.has_bridge() {
            return Ok(());
        }
        let mut total = 0;
        // The library makes its own shards (as many as the range needs).
        let names: Vec<String> = if self.layout.kind == Kind::Library {
            (0..64u32)
                .map(|k| self.instance.bridge_shard(k))
                .filter(|n| Path::new(&format!("/sys/class/net/{n}")).exists())
                .collect()
        } else {
            (0..self.bridges.len())
                .map(|k| self.shard_name(k))
                .collect()
        };
        for name in names {
            let dir = format!("/sys/class/net/{name}/brif");
            let ports = std::fs::read_dir(&dir)
                .map_err(|e| format!("{dir}: {e}"))?
                .count();
            if let Kind::Sharded(max) = self.layout.kind
                && ports > max
            {
                return Err(format!("{dir}: {ports} ports, more than {max}"));
            }
            total += ports;
        }
        if total != self.tenants.len() {
            return Err(format!(
                "{} ports on the bridges, expected {}",
                total,
                self.tenants.len()
            ));
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let lines: String = self
            .namespaces
            .iter()
            .flatten()
            .map(|n| format!("netns del {n}\n"))
            .collect();
        if !lines.is_empty()
            && let Err(e) = net_common::ip_batch(&lines)
        {
            eprintln!("cleanup: {e}");
        }
        // Host ends of deleted namespaces linger a little; then delete what
        // is left under the prefix (bridges, and any veth still there).
        let prefix = self.instance.prefix().to_owned();
        let started = Instant::now();
        loop {
            let ours: Vec<(u32, String)> = match self.host.links() {
                Ok(links) => links
                    .into_iter()
                    .filter(|(_, name)| name.starts_with(&prefix))
                    .collect(),
                Err(e) => {
                    eprintln!("cleanup: list links: {e}");
                    break;
                }
            };
            if ours.is_empty() {
                break;
            }
            for (index, name) in &ours {
                if let Err(e) = self.host.delete_link(*index) {
                    eprintln!("cleanup: delete {name}: {e}");
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                eprintln!("cleanup: links of {prefix} still there after 60 s: {ours:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Runs `ip` with `args` and returns what it printed.
fn ip_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
