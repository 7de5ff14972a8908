//! The resources class's exhaustion probes: one tenant uses up a shared
//! kernel table as far as the kernel lets it — ephemeral ports, inodes,
//! tracked connections — and the verifier checks that the next tenant (and
//! the host) can still do the same thing; for the host's neighbour (ARP)
//! table it checks that one tenant cannot grow it beyond a small share.
//! Every attempt is bounded (a cap and a time budget) so that a host without
//! a limit is not hurt; the row says how far the tenant got, so a missing
//! limit shows as a number even where the victim is unaffected.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ChildStdout;
use std::time::Duration;

use bulkhead_node::sandbox::Process;
use bulkhead_policy::Protocol;

use crate::class::{Expected, ProbeClass, Target, Verdict};
use crate::network::host_expectations;
use crate::probe::exhaust::{InodeFill, PortsHeld};
use crate::probe::net::{ConnectRequest, Flow, FlowOutcome, Reach};
use crate::probe::{Request, ResourceOutcome, errno_name};
use crate::report::Row;
use crate::verify::{Prepared, VerifyOptions, finish, spawn};

const C: ProbeClass = ProbeClass::Resources;
/// Ports one tenant may try to hold (the default range is 28,232 ports).
const PORT_CAP: u64 = 30_000;
/// Processes holding ports (each is limited by its open-file limit).
const PORT_HOLDERS: usize = 4;
/// Files one tenant may create in all.
const INODE_CAP: u64 = 20_000;
/// Tracked flows one tenant may open, at most (and never more than a
/// quarter of the host table's free entries).
const CONNTRACK_CAP: u64 = 20_000;
/// Time budget of each exhaustion attempt.
const BUDGET_MS: u64 = 5_000;
/// Kernel memory a bound TCP socket costs the tenant, about (measured: a
/// 96 MiB tenant held 20,000 and lost a process to its OOM killer past
/// that). Sockets and tmpfs inodes are charged to the tenant's memory
/// cgroup, but the OOM killer ranks processes by their own pages: past the
/// limit it would kill another process of the tenant (a workload), not the
/// holder. So the probes take at most half of the memory left.
const SOCKET_BYTES: u64 = 4096;
/// The same for an empty file on a tmpfs (inode and dentry).
const TMPFS_FILE_BYTES: u64 = 1024;

/// Memory the tenant has left under its declared `memory.max`: the limit
/// minus the highest usage of the cgroups its probes join and their parents
/// (the tenant's own cgroup). `None`: no limit declared.
fn memory_headroom(p: &Prepared<'_>) -> Option<u64> {
    let max = p.tenant.limits.memory_max?;
    let mut used = 0u64;
    for procs in &p.tenant.cgroup_procs {
        let Some(dir) = procs.parent() else { continue };
        for d in [Some(dir), dir.parent()].into_iter().flatten() {
            for file in ["memory.usage_in_bytes", "memory.current"] {
                if let Some(n) = std::fs::read_to_string(d.join(file))
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                {
                    used = used.max(n);
                }
            }
        }
    }
    Some(max.saturating_sub(used))
}

/// A probe that holds what it took until its stdout is closed.
struct Holding {
    process: Process,
    stdout: BufReader<ChildStdout>,
}

impl Holding {
    fn start(
        p: &Prepared<'_>,
        request: &Request,
        options: &VerifyOptions,
    ) -> Result<(Holding, String), String> {
        let mut process = spawn(p, request, &options.probe_exe, &[], &[])?;
        let stdout = process.stdout().ok_or("probe without stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        Ok((Holding { process, stdout }, line))
    }

    /// Lets it go and waits for it (it removes what it made).
    fn release(self) -> Option<i32> {
        let Holding { process, stdout } = self;
        drop(stdout);
        finish(process, Duration::from_secs(30))
            .ok()
            .map(|(code, ..)| code)
    }
}

fn run_json<T: serde::de::DeserializeOwned>(
    p: &Prepared<'_>,
    request: &Request,
    options: &VerifyOptions,
) -> Result<T, String> {
    let process = spawn(p, request, &options.probe_exe, &[], &[])?;
    let (code, out, err) = finish(process, options.probe_timeout)?;
    serde_json::from_slice(&out).map_err(|e| {
        format!(
            "probe in {} exited {code} without a report ({e}): {}",
            p.tenant.name,
            String::from_utf8_lossy(&err).trim()
        )
    })
}

fn row(
    tenant: &str,
    target: Target,
    id: &str,
    attempt: String,
    result: Result<(bool, String), String>,
) -> Row {
    let (expected, verdict, observed) = match result {
        Ok((worked, observed)) => (
            Expected::Denied,
            Verdict::judge(Expected::Denied, worked),
            observed,
        ),
        Err(message) => (Expected::Allowed, Verdict::Outage, message),
    };
    Row {
        class: C,
        tenant: tenant.to_owned(),
        target,
        id: id.to_owned(),
        attempt,
        expected,
        observed,
        verdict,
    }
}

fn skipped(tenant: &str, target: Target, id: &str, attempt: String, why: String) -> Row {
    Row {
        class: C,
        tenant: tenant.to_owned(),
        target,
        id: id.to_owned(),
        attempt,
        expected: Expected::Observed,
        observed: why,
        verdict: Verdict::Skipped,
    }
}

/// The exhaustion rows of `p` against `victim` (and the host, whose
/// scratch directory is `host_dir`).
pub(crate) fn probe(
    p: &Prepared<'_>,
    victim: &Prepared<'_>,
    options: &VerifyOptions,
    nonce: &str,
    host_dir: &Path,
) -> Vec<Row> {
    let mut rows = vec![ports(p, victim, options)];
    rows.extend(inodes(p, victim, options, nonce, host_dir));
    rows.push(conntrack(p, victim, options));
    rows
}

/// Ports are per network namespace: a tenant that binds its whole range
/// leaves its own connections without a source port, not another tenant's.
fn ports(p: &Prepared<'_>, victim: &Prepared<'_>, options: &VerifyOptions) -> Row {
    let v = &victim.tenant.name;
    let attempt = format!("use up the ephemeral port range so that {v} cannot connect");
    let mut holders = Vec::new();
    let mut held = 0u64;
    let mut next = 0u32;
    let mut last: Option<PortsHeld> = None;
    let mut failure = None;
    let started = std::time::Instant::now();
    let cap = memory_headroom(p).map_or(PORT_CAP, |room| PORT_CAP.min(room / 2 / SOCKET_BYTES));
    while holders.len() < PORT_HOLDERS && held < cap {
        let left = BUDGET_MS
            .saturating_sub(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        if left == 0 {
            break;
        }
        let request = Request::PortHold {
            first: next,
            cap: cap - held,
            millis: left,
        };
        match Holding::start(p, &request, options) {
            Ok((holding, line)) => {
                holders.push(holding);
                match serde_json::from_str::<PortsHeld>(&line) {
                    Ok(o) => {
                        held += o.held;
                        next = o.next;
                        let done = o.exhausted || o.errno != Some(libc::EMFILE) || o.held == 0;
                        last = Some(o);
                        if done {
                            break;
                        }
                    }
                    Err(_) => {
                        failure = Some("a port holder died before reporting".to_owned());
                        break;
                    }
                }
            }
            Err(message) => {
                failure = Some(message);
                break;
            }
        }
    }
    let own: Result<Option<i32>, String> = run_json(p, &Request::LocalConnect, options);
    let theirs: Result<Option<i32>, String> = run_json(victim, &Request::LocalConnect, options);
    let count = holders.len();
    // A holder the kernel killed (its memory limit: every socket is charged
    // to the tenant) gave its ports back before the checks above.
    let killed = holders
        .into_iter()
        .filter_map(Holding::release)
        .filter(|code| *code != 0)
        .count();
    let result = theirs.map(|theirs| {
        let how = match &last {
            Some(o) if o.exhausted => format!(
                "the range {}-{} was used up (bind to port 0: EADDRINUSE)",
                o.range.0, o.range.1
            ),
            Some(o) if held >= cap && cap < PORT_CAP => format!(
                "the range {}-{} was not used up: half of the tenant's free memory holds only {cap} sockets",
                o.range.0, o.range.1
            ),
            Some(o) => format!(
                "the range {}-{} was not used up ({})",
                o.range.0,
                o.range.1,
                o.errno.map_or_else(|| "cap or time budget".to_owned(), errno_name)
            ),
            None => "nothing reported".to_owned(),
        };
        let own = match own {
            Ok(None) => "its own connect still worked".to_owned(),
            Ok(Some(errno)) => format!("its own connect: {}", errno_name(errno)),
            Err(e) => format!("its own connect: {e}"),
        };
        let mut extra = failure.map_or_else(String::new, |f| format!(" ({f})"));
        if killed > 0 {
            extra.push_str(&format!(
                " ({killed} of the holders did not survive to the end: killed, likely by the tenant's memory limit, which gave their ports back)"
            ));
        }
        (
            theirs.is_some(),
            format!(
                "held {held} ports in {count} processes: {how}{extra}; {own}; {v}: {}",
                theirs.map_or_else(|| "connected".to_owned(), errno_name)
            ),
        )
    });
    row(
        &p.tenant.name,
        Target::Tenant(v.clone()),
        "resources.ports",
        attempt,
        result,
    )
}

/// Inodes: the tenant's volume and its `/tmp` (a private tmpfs per sandbox:
/// nothing of them is shared with another tenant or the host).
fn inodes(
    p: &Prepared<'_>,
    victim: &Prepared<'_>,
    options: &VerifyOptions,
    nonce: &str,
    host_dir: &Path,
) -> Vec<Row> {
    let v = &victim.tenant.name;
    let name = &p.tenant.name;
    let dirs_of = |t: &Prepared<'_>| -> Vec<String> {
        let mut dirs = vec!["/tmp".to_owned()];
        if t.tenant.volume_data_dir.is_some() {
            dirs.push("/data".to_owned());
        }
        dirs
    };
    // /tmp's inodes are memory of the tenant: keep to half of what is left.
    let cap =
        memory_headroom(p).map_or(INODE_CAP, |room| INODE_CAP.min(room / 2 / TMPFS_FILE_BYTES));
    let request = Request::InodeFill {
        dirs: dirs_of(p),
        cap,
        millis: BUDGET_MS,
        nonce: nonce.to_owned(),
    };
    let attempt =
        format!("use up the inodes of its /tmp and volume so that {v} cannot create a file");
    let host_attempt =
        "use up the inodes of its /tmp and volume so that the host cannot create a file".to_owned();
    let (holding, line) = match Holding::start(p, &request, options) {
        Ok(started) => started,
        Err(message) => {
            return vec![
                row(
                    name,
                    Target::Tenant(v.clone()),
                    "resources.inodes",
                    attempt,
                    Err(message.clone()),
                ),
                row(
                    name,
                    Target::Host,
                    "resources.inodes-host",
                    host_attempt,
                    Err(message),
                ),
            ];
        }
    };
    let fills: Vec<InodeFill> = serde_json::from_str(&line).unwrap_or_default();
    let filled = fills
        .iter()
        .map(|f| {
            format!(
                "{} {} files{}",
                f.dir,
                f.files,
                f.errno.map_or_else(
                    || " (cap)".to_owned(),
                    |e| format!(", then {}", errno_name(e))
                )
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let touch: Vec<String> = dirs_of(victim)
        .iter()
        .map(|d| format!("{d}/.bulkhead-touch-{nonce}"))
        .collect();
    let theirs: Result<Vec<Option<i32>>, String> = run_json(
        victim,
        &Request::Touch {
            paths: touch.clone(),
        },
        options,
    );
    let host_file = host_dir.join(format!("touch-{nonce}"));
    let host = std::fs::File::create_new(&host_file)
        .map(|_| ())
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO));
    let _ = std::fs::remove_file(&host_file);
    holding.release();
    let victim_result = theirs.map(|list| {
        let failed: Vec<String> = touch
            .iter()
            .zip(&list)
            .filter_map(|(path, e)| e.map(|e| format!("{path}: {}", errno_name(e))))
            .collect();
        (
            !failed.is_empty() || list.len() != touch.len(),
            format!(
                "{filled}; {v}: {}",
                if failed.is_empty() {
                    "created a file in each".to_owned()
                } else {
                    failed.join(", ")
                }
            ),
        )
    });
    vec![
        row(
            name,
            Target::Tenant(v.clone()),
            "resources.inodes",
            attempt,
            victim_result,
        ),
        row(
            name,
            Target::Host,
            "resources.inodes-host",
            host_attempt,
            Ok((
                host.is_err(),
                format!(
                    "{filled}; host: {}",
                    host.err()
                        .map_or_else(|| "created a file".to_owned(), errno_name)
                ),
            )),
        ),
    ]
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Host conntrack entries whose original source is `address`.
fn tracked_from(address: Ipv4Addr) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/nf_conntrack").ok()?;
    let needle = format!(" src={address} ");
    Some(text.lines().filter(|l| l.contains(&needle)).count() as u64)
}

/// Tracked connections: the host's conntrack table is one for all tenants.
/// The tenant sends to the resolver (an allowed destination: a dropped
/// packet leaves no entry) from as many source ports as it can; the next
/// tenant must still get an answer from the resolver.
fn conntrack(p: &Prepared<'_>, victim: &Prepared<'_>, options: &VerifyOptions) -> Row {
    let v = &victim.tenant.name;
    let name = &p.tenant.name;
    let attempt = format!("fill the host's connection tracking table so that {v} cannot connect");
    let id = "resources.conntrack";
    let target = Target::Tenant(v.clone());
    let Some(network) = options.network.as_ref() else {
        return skipped(
            name,
            target,
            id,
            attempt,
            "not judged: no tenant network given".into(),
        );
    };
    let (Some(address), Some(_)) = (p.tenant.address, victim.tenant.address) else {
        return skipped(
            name,
            target,
            id,
            attempt,
            "not judged: a tenant has no address".into(),
        );
    };
    let may_ask = |tenant: &str| {
        network.resolver == network.bridge
            && host_expectations(network, tenant)
                .iter()
                .any(|(protocol, port, allowed)| {
                    *protocol == Protocol::Udp && *port == 53 && *allowed
                })
    };
    if !may_ask(name) || !may_ask(v) {
        return skipped(
            name,
            target,
            id,
            attempt,
            format!(
                "not judged: {name} and {v} both need DNS allowed (the only host destination both may reach)"
            ),
        );
    }
    let max = read_number("/proc/sys/net/netfilter/nf_conntrack_max");
    let count = read_number("/proc/sys/net/netfilter/nf_conntrack_count");
    let cap = match (max, count) {
        (Some(max), Some(count)) => CONNTRACK_CAP.min(max.saturating_sub(count) / 4),
        _ => {
            return skipped(
                name,
                target,
                id,
                attempt,
                "not judged: the host has no connection tracking table to read".into(),
            );
        }
    };
    let before = tracked_from(address).unwrap_or(0);
    let sent: Result<ResourceOutcome, String> = run_json(
        p,
        &Request::ConntrackFlood {
            address: network.bridge,
            port: 53,
            cap,
            millis: BUDGET_MS,
        },
        options,
    );
    let after = tracked_from(address).unwrap_or(0);
    let request = Request::Connect(ConnectRequest {
        flows: vec![Flow {
            address: network.bridge,
            protocol: Protocol::Udp,
            port: 53,
            dns: true,
        }],
        timeout_ms: u64::try_from(network.timeout.saturating_mul(3).as_millis()).unwrap_or(3000),
        payload: String::new(),
    });
    let answered: Result<Vec<FlowOutcome>, String> = run_json(victim, &request, options);
    let result = sent.and_then(|sent| {
        let answered = answered?;
        let ok = answered.first().is_some_and(|o| o.reach == Reach::Connected);
        Ok((
            !ok,
            format!(
                "sent from {} source ports (cap {cap}{}), host table +{} entries from {address} (max {}); {v}'s query {}",
                sent.amount,
                sent.errno.map_or_else(String::new, |e| format!(", then {}", errno_name(e))),
                after.saturating_sub(before),
                max.unwrap_or(0),
                if ok { "answered" } else { "not answered" }
            ),
        ))
    });
    row(name, target, id, attempt, result)
}

/// Neighbour entries one tenant's flood may add to the instance's tables.
/// The intended wiring needs one per tenant on each side (its gateway in
/// its namespace, its address on the host), none of them made by traffic;
/// 8 leaves room for entries a flood meets for other reasons (the gateway
/// re-resolved, a peer's entry refreshed) while `gc_thresh3 / 8` tenants
/// (128 at the default 1,024) could all do it at once without filling the
/// host's table.
pub(crate) const NEIGHBOUR_BOUND: usize = 8;
/// Addresses one flood sends to, at most (never more than a quarter of the
/// host table's free entries): 32 times the bound, enough to show a missing
/// limit, and small enough that the ARP broadcasts it causes (each copied
/// to every port of the bridge) do not overflow the host's receive backlog.
const NEIGHBOUR_CAP: usize = 256;
/// The documentation ranges (RFC 5737): off the tenant range, reached only
/// through the tenant's own routes.
const DOCUMENTATION: [(Ipv4Addr, u32); 3] = [
    (Ipv4Addr::new(192, 0, 2, 0), 256),
    (Ipv4Addr::new(198, 51, 100, 0), 256),
    (Ipv4Addr::new(203, 0, 113, 0), 256),
];
/// How long the count is watched after the flood ends (an unresolved entry
/// lives about 3 s: three probes a second apart).
const NEIGHBOUR_WATCH: Duration = Duration::from_millis(400);
/// The watch's sampling period.
const NEIGHBOUR_SAMPLE: Duration = Duration::from_millis(10);
/// The port the flood's datagrams go to (the discard port).
const NEIGHBOUR_PORT: u16 = 9;

/// The instance's neighbour tables: the host's entries on the instance
/// bridge and every tenant's namespace (through its holder).
#[derive(Clone, Debug)]
pub(crate) struct NeighbourScope {
    /// The instance (its bridges: [`Instance::is_bridge_shard`]).
    pub(crate) instance: bulkhead_node::naming::Instance,
    /// Holder pids of every running tenant.
    pub(crate) holders: Vec<u32>,
    /// Every tenant's address (never flooded).
    pub(crate) addresses: Vec<Ipv4Addr>,
}

/// The addresses a flood sends to, as `(first, count)` runs: up to `cap`
/// in all, a quarter of them (at most) in the documentation ranges, the
/// rest the tenant range's addresses (between the bridge, its first, and
/// the broadcast address, its last) that are no tenant's. Returns the runs
/// and how many of each kind.
pub(crate) fn neighbour_targets(
    bridge: Ipv4Addr,
    broadcast: Ipv4Addr,
    tenants: &[Ipv4Addr],
    cap: usize,
) -> (Vec<(Ipv4Addr, u32)>, usize, usize) {
    let documentation: usize = DOCUMENTATION.iter().map(|(_, n)| *n as usize).sum();
    let want = cap - (cap / 4).min(documentation);
    let mut runs: Vec<(Ipv4Addr, u32)> = Vec::new();
    let mut in_range = 0usize;
    let (first, last) = (u32::from(bridge), u32::from(broadcast));
    let mut a = first.saturating_add(1);
    while a < last && in_range < want {
        let address = Ipv4Addr::from(a);
        if !tenants.contains(&address) {
            match runs.last_mut() {
                Some((start, n)) if u32::from(*start) + *n == a => *n += 1,
                _ => runs.push((address, 1)),
            }
            in_range += 1;
        }
        a += 1;
    }
    // A small range leaves room for more documentation addresses.
    let docs = (cap - in_range).min(documentation);
    let mut left = docs;
    for (start, n) in DOCUMENTATION {
        if left == 0 {
            break;
        }
        let take = (n as usize).min(left);
        runs.push((start, take as u32));
        left -= take;
    }
    (runs, in_range, docs)
}

/// The host-wide neighbour entry count: the first column (hex) of
/// `/proc/net/stat/arp_cache`'s first data line (the same on every line:
/// it is the table's, not the CPU's).
pub(crate) fn parse_arp_cache_entries(text: &str) -> Option<u64> {
    let line = text.lines().nth(1)?;
    u64::from_str_radix(line.split_whitespace().next()?, 16).ok()
}

fn host_neighbour_entries() -> Option<u64> {
    parse_arp_cache_entries(&std::fs::read_to_string("/proc/net/stat/arp_cache").ok()?)
}

/// One neighbour entry of the instance: (table: `None` the host's on the
/// bridge, else the holder's pid; address; device).
type Entry = (Option<u32>, Ipv4Addr, String);

/// The entries for `targets` in the instance's tables.
fn entries_for(scope: &NeighbourScope, targets: &BTreeSet<Ipv4Addr>) -> BTreeSet<Entry> {
    let mut found = BTreeSet::new();
    if let Ok(table) = crate::network::arp::read_table(None) {
        for n in table
            .into_iter()
            .filter(|n| scope.instance.is_bridge_shard(&n.device))
        {
            if targets.contains(&n.ip) {
                found.insert((None, n.ip, n.device));
            }
        }
    }
    for pid in &scope.holders {
        if let Ok(table) = crate::network::arp::read_table(Some(*pid)) {
            for n in table.into_iter().filter(|n| targets.contains(&n.ip)) {
                found.insert((Some(*pid), n.ip, n.device));
            }
        }
    }
    found
}

/// Removes `made` from the kernel's tables; how many were removed, or why
/// not all.
fn remove_entries(made: &BTreeSet<Entry>) -> Result<usize, String> {
    let mut by_table: std::collections::BTreeMap<Option<u32>, Vec<(String, Ipv4Addr)>> =
        std::collections::BTreeMap::new();
    for (table, ip, device) in made {
        by_table
            .entry(*table)
            .or_default()
            .push((device.clone(), *ip));
    }
    let mut removed = 0;
    for (table, entries) in by_table {
        removed += crate::network::arp::delete_entries(table, &entries).map_err(|e| {
            format!(
                "{} of them not removed ({e})",
                made.len().saturating_sub(removed)
            )
        })?;
    }
    Ok(removed)
}

/// Whether the entries a flood made (at their peak, beyond those there
/// before) are more than one tenant's share.
pub(crate) fn judge_neighbours(peak: usize) -> bool {
    peak > NEIGHBOUR_BOUND
}

/// Neighbour entries: the host's neighbour (ARP) table is one for every
/// network namespace (`gc_thresh3`); past it the kernel drops packets to
/// peers without an entry, for every tenant. A confined probe sends one
/// UDP datagram (TTL 1) to each of up to [`NEIGHBOUR_CAP`] addresses — the tenant
/// range's unused ones and documentation addresses — while the verifier
/// watches the instance's tables and the host-wide count, then removes the
/// entries the flood made. Expected: the flood makes at most
/// [`NEIGHBOUR_BOUND`] entries.
pub(crate) fn neighbours(p: &Prepared<'_>, scope: &NeighbourScope, options: &VerifyOptions) -> Row {
    let name = &p.tenant.name;
    let attempt = format!(
        "grow the host's neighbour (ARP) table by more than {NEIGHBOUR_BOUND} entries (one UDP datagram, TTL 1, to each of up to {NEIGHBOUR_CAP} addresses)"
    );
    let id = "resources.neighbours";
    let Some(network) = options.network.as_ref() else {
        return skipped(
            name,
            Target::Host,
            id,
            attempt,
            "not judged: no tenant network given".into(),
        );
    };
    if p.tenant.address.is_none() {
        return skipped(
            name,
            Target::Host,
            id,
            attempt,
            "not judged: the tenant has no address".into(),
        );
    }
    let max = read_number("/proc/sys/net/ipv4/neigh/default/gc_thresh3");
    let before_host = host_neighbour_entries();
    let (Some(max), Some(before_host)) = (max, before_host) else {
        return skipped(
            name,
            Target::Host,
            id,
            attempt,
            "not judged: the host's neighbour table cannot be read".into(),
        );
    };
    let free = max.saturating_sub(before_host);
    let cap = NEIGHBOUR_CAP.min(usize::try_from(free / 4).unwrap_or(usize::MAX));
    if cap <= 2 * NEIGHBOUR_BOUND {
        return skipped(
            name,
            Target::Host,
            id,
            attempt,
            format!(
                "not judged: the host's neighbour table has {free} free entries (of {max}); a quarter of that is too few to tell"
            ),
        );
    }
    let (runs, in_range, docs) =
        neighbour_targets(network.bridge, network.broadcast, &scope.addresses, cap);
    let targets: BTreeSet<Ipv4Addr> = runs
        .iter()
        .flat_map(|(start, n)| (0..*n).map(move |k| Ipv4Addr::from(u32::from(*start) + k)))
        .collect();
    let before = entries_for(scope, &targets);
    let request = Request::NeighbourFlood {
        ranges: runs,
        port: NEIGHBOUR_PORT,
        millis: BUDGET_MS,
    };
    let mut peak = 0usize;
    let mut peak_host = before_host;
    let sample = |peak: &mut usize, peak_host: &mut u64| {
        let now = entries_for(scope, &targets);
        *peak = (*peak).max(now.difference(&before).count());
        if let Some(n) = host_neighbour_entries() {
            *peak_host = (*peak_host).max(n);
        }
    };
    let sent: Result<ResourceOutcome, String> = std::thread::scope(|s| {
        let flood = s.spawn(|| run_json::<ResourceOutcome>(p, &request, options));
        while !flood.is_finished() {
            sample(&mut peak, &mut peak_host);
            std::thread::sleep(NEIGHBOUR_SAMPLE);
        }
        let watch = std::time::Instant::now();
        while watch.elapsed() < NEIGHBOUR_WATCH {
            sample(&mut peak, &mut peak_host);
            std::thread::sleep(NEIGHBOUR_SAMPLE);
        }
        flood
            .join()
            .unwrap_or_else(|_| Err("the flood's thread panicked".to_owned()))
    });
    let made: BTreeSet<Entry> = entries_for(scope, &targets)
        .difference(&before)
        .cloned()
        .collect();
    let after = made.len();
    let after_host = host_neighbour_entries().unwrap_or(0);
    // What the flood made is the verifier's to clean up: unresolved entries
    // otherwise stay until the kernel's periodic collection, and successive
    // tenants' floods would pile up towards `gc_thresh3`.
    let cleanup = match remove_entries(&made) {
        Ok(n) => format!("; removed the {n} it left"),
        Err(why) => format!("; {why}"),
    };
    let result = sent.map(|sent| {
        (
            judge_neighbours(peak),
            format!(
                "sent to {} of {} addresses ({in_range} unused in the tenant range, {docs} documentation; cap {cap}: a quarter of the {free} free entries of {max}){}; entries it made in the instance's tables: peak {peak} (bound {NEIGHBOUR_BOUND}), {after} still there {} ms after; host-wide entries {before_host} -> peak {peak_host} (+{}) -> {after_host}{cleanup}",
                sent.amount,
                in_range + docs,
                sent.errno
                    .map_or_else(String::new, |e| format!(", {}", errno_name(e))),
                NEIGHBOUR_WATCH.as_millis(),
                peak_host.saturating_sub(before_host),
            ),
        )
    });
    row(name, Target::Host, id, attempt, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_targets_skip_tenants_and_the_bridge_and_add_documentation() {
        let bridge = Ipv4Addr::new(10, 9, 0, 1);
        let broadcast = Ipv4Addr::new(10, 9, 0, 255);
        let tenants = [Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 5)];
        let (runs, in_range, docs) = neighbour_targets(bridge, broadcast, &tenants, 100);
        assert_eq!((in_range, docs), (75, 25));
        assert_eq!(
            &runs[..3],
            &[
                (Ipv4Addr::new(10, 9, 0, 3), 2),
                (Ipv4Addr::new(10, 9, 0, 6), 73),
                (Ipv4Addr::new(192, 0, 2, 0), 25),
            ]
        );
        assert_eq!(runs.len(), 3);
        // A /24 has 251 addresses that are neither bridge, broadcast nor tenant:
        // the rest of the cap goes to documentation addresses.
        let (runs, in_range, docs) = neighbour_targets(bridge, broadcast, &tenants, 2_000);
        assert_eq!((in_range, docs), (251, 768));
        let total: u32 = runs.iter().map(|(_, n)| n).sum();
        assert_eq!(total as usize, in_range + docs);
        assert!(runs.iter().all(|(a, n)| {
            let end = u32::from(*a) + n - 1;
            !tenants.contains(a) && end < u32::from(broadcast) || a.octets()[0] != 10
        }));
        // A /16: 1,500 of the range and 500 documentation addresses.
        let (_, in_range, docs) =
            neighbour_targets(bridge, Ipv4Addr::new(10, 9, 255, 255), &tenants, 2_000);
        assert_eq!((in_range, docs), (1_500, 500));
    }

    #[test]
    fn the_host_wide_count_is_the_first_column_in_hex() {
        let text =
            "entries  allocs   destroys\n0000002a 000039d3 000041c9\n0000002a 00003873 0000307b\n";
        assert_eq!(parse_arp_cache_entries(text), Some(42));
        assert_eq!(parse_arp_cache_entries("entries\n"), None);
    }

    #[test]
    fn more_entries_than_the_share_is_a_leak() {
        assert!(!judge_neighbours(0));
        assert!(!judge_neighbours(NEIGHBOUR_BOUND));
        assert!(judge_neighbours(NEIGHBOUR_BOUND + 1));
        assert!(judge_neighbours(250));
    }
}
