//! Carrying out the network plan: listeners in every tenant, the flows from
//! each source tenant (in parallel, one confined probe each), then the
//! attacks that need root in the source's namespace (ICMP echo, forged
//! source addresses) and UDP broadcasts, watched by raw receivers in every
//! tenant's namespace.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ChildStdout;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulkhead_node::naming::Instance;
use bulkhead_node::sandbox::Process;
use bulkhead_policy::Protocol;

use super::arp;
use super::metadata::StandIn;
use super::raw::{self, Forged, Receiver};
use super::{
    METADATA_ADDRESS, METADATA_PORT, NetworkUnderTest, both_protocols, host_expectations,
    metadata_expected, pair_expectations, probe_ports, protocol_name,
};
use crate::class::{Expected, ProbeClass, Target, Verdict};
use crate::probe::net::{
    BroadcastRequest, ConnectRequest, Flow, FlowOutcome, ListenReady, ListenRequest, Reach,
};
use crate::probe::{Request, errno_name};
use crate::report::{Report, Row};
use crate::verify::{Prepared, VerifyOptions, finish, spawn, spawn_helper};

const C: ProbeClass = ProbeClass::Network;
/// The progress phase: one step per flow, then one per tenant's attacks.
const PHASE: &str = "network";
/// Time for the last forged and broadcast packets to arrive.
const SETTLE: Duration = Duration::from_millis(300);
/// Network probes run at least this many source tenants at once (they wait
/// on timeouts, not on the CPU).
const MIN_PARALLEL: usize = 16;
/// Source tenants asking the resolver at once: one process on the host
/// answers every tenant.
const RESOLVER_PARALLEL: usize = 4;
/// Source tenants retrying their unanswered allowed flows at once.
const RETRY_PARALLEL: usize = 4;
/// The retry waits this many times [`NetworkUnderTest::timeout`].
const RETRY_FACTOR: u32 = 3;
/// The DNS port.
const DNS_PORT: u16 = 53;

/// A listener in one tenant.
struct Listener {
    process: Process,
    _stdout: BufReader<ChildStdout>,
    ready: ListenReady,
}

fn start_listener(
    p: &Prepared<'_>,
    ports: &[u16],
    options: &VerifyOptions,
) -> Result<Listener, String> {
    let lifetime = options.probe_timeout.saturating_mul(3);
    let request = Request::Listen(ListenRequest {
        ports: ports.to_vec(),
        lifetime_ms: u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX),
    });
    let mut process = spawn_helper(p, &request, &options.probe_exe)?;
    let stdout = process.stdout().ok_or("listener without stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    match serde_json::from_str::<ListenReady>(&line) {
        Ok(ready) => Ok(Listener {
            process,
            _stdout: stdout,
            ready,
        }),
        Err(_) => {
            let _ = process.kill();
            let mut err = String::new();
            if let Some(mut stderr) = process.stderr() {
                let _ = stderr.read_to_string(&mut err);
            }
            let _ = process.wait();
            Err(format!(
                "the listener in {} did not start: {}",
                p.tenant.name,
                err.trim()
            ))
        }
    }
}

fn stop_listener(mut listener: Listener) {
    let _ = listener.process.kill();
    let _ = listener.process.wait();
}

/// The tenant's network namespace, through its holder.
fn netns_of(p: &Prepared<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/net", p.sandbox.holder_pid()))
}

fn describe(outcome: &Result<FlowOutcome, String>, timeout: Duration) -> String {
    match outcome {
        Ok(o) => match o.reach {
            Reach::Connected => "connected".into(),
            Reach::Refused => "refused by the destination (the packet got there)".into(),
            Reach::Silent => format!("no answer in {} ms", timeout.as_millis()),
            Reach::Error => o.errno.map_or_else(|| "failed".into(), errno_name),
        },
        Err(message) => message.clone(),
    }
}

/// A flow's row: reached where denied (or narrowed) is a leak, not reached
/// where allowed an outage, except a UDP port our listener could not bind
/// and nobody answered on (not judged); not reached where narrowed is
/// [`Verdict::Narrowed`]. An allowed flow to the resolver must be answered:
/// a refusal there is the host's kernel saying nobody serves DNS.
fn flow_row(
    tenant: &str,
    (target, id, attempt): (Target, String, String),
    (expected, needs_answer): (Expected, bool),
    outcome: &Result<FlowOutcome, String>,
    unbound: Option<i32>,
    timeout: Duration,
) -> Row {
    let allowed = expected == Expected::Allowed;
    let mut observed = describe(outcome, timeout);
    let verdict = match outcome {
        Ok(o) => {
            let reached = if allowed && needs_answer {
                o.reach == Reach::Connected
            } else {
                o.reach.reached()
            };
            if allowed
                && !reached
                && let Some(errno) = unbound
            {
                observed = format!(
                    "{observed}; the listener could not bind it ({})",
                    errno_name(errno)
                );
                Verdict::Skipped
            } else {
                Verdict::judge(expected, reached)
            }
        }
        Err(_) => Verdict::Outage,
    };
    Row {
        class: C,
        tenant: tenant.to_owned(),
        target,
        id,
        attempt,
        expected,
        observed,
        verdict,
    }
}

fn denied_row(
    tenant: &str,
    target: Target,
    id: &str,
    attempt: String,
    observed: String,
    worked: bool,
) -> Row {
    Row {
        class: C,
        tenant: tenant.to_owned(),
        target,
        id: id.to_owned(),
        attempt,
        expected: Expected::Denied,
        observed,
        verdict: Verdict::judge(Expected::Denied, worked),
    }
}

fn skipped_row(tenant: &str, target: Target, id: &str, attempt: String, observed: String) -> Row {
    Row {
        verdict: Verdict::Skipped,
        expected: Expected::Observed,
        ..denied_row(tenant, target, id, attempt, observed, false)
    }
}

/// One source tenant's flow outcomes, in order, or why there are none.
type FlowResult = Result<Vec<FlowOutcome>, String>;
/// One flow's outcome by `(source tenant, index in its plan)`.
type Keyed = ((usize, usize), Result<FlowOutcome, String>);
/// One source tenant's attack rows, and the errno of each forged packet
/// that could not be sent.
type AttackResult = (usize, Vec<Row>, Vec<Option<i32>>);

/// What one source tenant's flows are about.
enum About {
    Peer {
        dst: usize,
        allowed: bool,
        narrowed: bool,
    },
    Host {
        allowed: bool,
        resolver: bool,
        narrowed: bool,
    },
    Metadata {
        allowed: bool,
    },
}

impl About {
    /// What the row expects.
    fn expected(&self) -> Expected {
        let (allowed, narrowed) = match self {
            About::Peer {
                allowed, narrowed, ..
            }
            | About::Host {
                allowed, narrowed, ..
            } => (*allowed, *narrowed),
            About::Metadata { allowed } => (*allowed, false),
        };
        match (allowed, narrowed) {
            (true, true) => Expected::Narrowed,
            (true, false) => Expected::Allowed,
            (false, _) => Expected::Denied,
        }
    }

    /// Allowed (and not narrowed): no answer is an outage.
    fn allowed(&self) -> bool {
        self.expected() == Expected::Allowed
    }

    /// A flow to the instance's resolver on the bridge (port 53).
    fn is_resolver(&self) -> bool {
        matches!(self, About::Host { resolver: true, .. })
    }
}

/// The ARP entries for `dst` in the tenant's namespace (through its holder)
/// and for the tenant's own address on the host.
fn arp_evidence(holder: u32, dst: Ipv4Addr, own: Option<Ipv4Addr>) -> String {
    let entry = |table: &str, ip: Ipv4Addr| -> String {
        std::fs::read_to_string(table)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.split_whitespace().next() == Some(ip.to_string().as_str()))
                    .map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        format!(
                            "flags {} {}",
                            f.get(2).copied().unwrap_or("?"),
                            f.get(3).copied().unwrap_or("?")
                        )
                    })
            })
            .unwrap_or_else(|| "no entry".to_owned())
    };
    let mut text = format!(
        "tenant ARP for {dst}: {}",
        entry(&format!("/proc/{holder}/net/arp"), dst)
    );
    if let Some(own) = own {
        text.push_str(&format!(
            ", host ARP for {own}: {}",
            entry("/proc/net/arp", own)
        ));
    }
    text
}

/// Runs `jobs` (per source tenant, the indices of its flows in `plans`),
/// `parallel` sources at a time, one confined probe each, with `timeout`
/// per batch; the outcome of each `(source, flow index)`.
fn run_flows(
    ctx: &Context<'_, '_>,
    plans: &[(usize, Vec<(Flow, About)>)],
    jobs: &[(usize, Vec<usize>)],
    timeout: Duration,
    parallel: usize,
    payload: &str,
) -> Vec<Keyed> {
    let jobs: Vec<&(usize, Vec<usize>)> = jobs.iter().filter(|(_, k)| !k.is_empty()).collect();
    let results: Mutex<Vec<Keyed>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1).min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some((i, picked)) = jobs.get(n).copied() else {
                        break;
                    };
                    let Ok(p) = &ctx.prepared[*i] else { continue };
                    let Some((_, flows)) = plans.iter().find(|(k, _)| k == i) else {
                        continue;
                    };
                    let request = Request::Connect(ConnectRequest {
                        flows: picked.iter().map(|k| flows[*k].0).collect(),
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(1000),
                        payload: payload.to_owned(),
                    });
                    let result: FlowResult = spawn(p, &request, &ctx.options.probe_exe, &[], &[])
                        .and_then(|process| finish(process, ctx.options.probe_timeout))
                        .and_then(|(code, out, err)| {
                            serde_json::from_slice::<Vec<FlowOutcome>>(&out).map_err(|e| {
                                format!(
                                    "network probe in {} exited {code} without a report ({e}): {}",
                                    p.tenant.name,
                                    String::from_utf8_lossy(&err).trim()
                                )
                            })
                        });
                    ctx.options.progress_advance(PHASE, picked.len() as u64);
                    let mine: Vec<_> = picked
                        .iter()
                        .enumerate()
                        .map(|(n, k)| {
                            let outcome = match &result {
                                Ok(list) => {
                                    list.get(n).copied().ok_or_else(|| "no outcome".to_owned())
                                }
                                Err(message) => Err(message.clone()),
                            };
                            ((*i, *k), outcome)
                        })
                        .collect();
                    if let Ok(mut list) = results.lock() {
                        list.extend(mine);
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}

/// One forged packet, and what it pretends.
struct Spoof {
    actor: usize,
    posing_as: usize,
    to: usize,
    protocol: Protocol,
    port: u16,
}

/// Everything the network class needs from `verify`.
pub(crate) struct Context<'a, 'b> {
    pub(crate) instance: &'a Instance,
    pub(crate) prepared: &'a [Result<Prepared<'b>, String>],
    pub(crate) peers: Vec<Vec<usize>>,
    pub(crate) network: Option<&'a NetworkUnderTest>,
    pub(crate) options: &'a VerifyOptions,
    pub(crate) nonce: &'a str,
}

/// Runs the network class and adds its rows to `report`.
pub(crate) fn probe(ctx: &Context<'_, '_>, report: &mut Report) {
    let Some(network) = ctx.network else {
        report.notes.push(
            "network: not probed (no tenant network given: the caller passes the matrix, the bridge and each tenant's address)".into(),
        );
        return;
    };
    let n = ctx.prepared.len();
    // Tenants that take part: running, with an address.
    let addr: Vec<Option<Ipv4Addr>> = ctx
        .prepared
        .iter()
        .map(|p| p.as_ref().ok().and_then(|p| p.tenant.address))
        .collect();
    for p in ctx.prepared.iter().flatten() {
        if p.tenant.address.is_none() {
            report.notes.push(format!(
                "network: {} has no address, not probed",
                p.tenant.name
            ));
        }
    }
    let part: Vec<usize> = (0..n).filter(|i| addr[*i].is_some()).collect();
    let name = |i: usize| -> &str {
        ctx.prepared[i]
            .as_ref()
            .map(|p| p.tenant.name.as_str())
            .unwrap_or_default()
    };
    let names: Vec<String> = part.iter().map(|i| name(*i).to_owned()).collect();
    let ports = probe_ports(&network.matrix, &names);
    let timeout = network.timeout;
    let phase = Instant::now();

    // Listeners.
    let mut listeners: BTreeMap<usize, Listener> = BTreeMap::new();
    for &i in &part {
        let Ok(p) = &ctx.prepared[i] else { continue };
        match start_listener(p, &ports, ctx.options) {
            Ok(listener) => {
                listeners.insert(i, listener);
            }
            Err(message) => report.rows.push(Row {
                verdict: Verdict::Outage,
                expected: Expected::Allowed,
                ..skipped_row(
                    name(i),
                    Target::Own,
                    "network.listen",
                    "listen on the probed ports".into(),
                    message,
                )
            }),
        }
    }
    let unbound = |dst: usize, protocol: Protocol, port: u16| -> Option<i32> {
        listeners.get(&dst).and_then(|l| {
            l.ready
                .failed
                .iter()
                .find(|f| f.protocol == protocol && f.port == port)
                .map(|f| f.errno)
        })
    };

    // The metadata stand-in.
    let stand_in = match StandIn::build(ctx.instance, ctx.nonce) {
        Ok(s) => Some(s),
        Err(e) => {
            report.notes.push(format!(
                "network: the metadata stand-in could not be built ({e}); 169.254.169.254 not probed"
            ));
            None
        }
    };

    // Flows, per source tenant in parallel.
    let payload = format!("bhn-{}-x", ctx.nonce);
    let resolver_on_bridge = network.resolver == network.bridge;
    let plans: Vec<(usize, Vec<(Flow, About)>)> = part
        .iter()
        .map(|&i| {
            let mut flows = Vec::new();
            for &j in &ctx.peers[i] {
                let Some(dst) = addr[j] else { continue };
                for e in
                    pair_expectations(&network.matrix, name(i), name(j), &both_protocols(&ports))
                {
                    flows.push((
                        Flow {
                            address: dst,
                            protocol: e.protocol,
                            port: e.port,
                            dns: false,
                        },
                        About::Peer {
                            dst: j,
                            allowed: e.allowed,
                            narrowed: network.tenants_narrowed(
                                name(i),
                                name(j),
                                e.protocol,
                                e.port,
                            ),
                        },
                    ));
                }
            }
            for (protocol, port, allowed) in host_expectations(network, name(i)) {
                let resolver = resolver_on_bridge && port == DNS_PORT;
                flows.push((
                    Flow {
                        address: network.bridge,
                        protocol,
                        port,
                        dns: resolver,
                    },
                    About::Host {
                        allowed,
                        resolver,
                        narrowed: resolver && network.dns_narrowed(name(i), protocol, port),
                    },
                ));
            }
            if stand_in.is_some() {
                flows.push((
                    Flow {
                        address: METADATA_ADDRESS,
                        protocol: Protocol::Tcp,
                        port: METADATA_PORT,
                        dns: false,
                    },
                    About::Metadata {
                        allowed: metadata_expected(network, name(i)),
                    },
                ));
            }
            (i, flows)
        })
        .collect();
    // Tenants are routed: a source needs no neighbour entry per peer (it has one,
    // permanent, for its gateway), so the host's one neighbour table does not bound
    // how many sources run at once (it did while tenants shared a subnet:
    // docs/VERIFY.md).
    let threads = ctx
        .options
        .parallelism
        .max(MIN_PARALLEL)
        .min(plans.len().max(1));
    // Everything but the resolver, many sources at once; then the resolver,
    // a few sources at a time (one process answers them all); then every
    // allowed flow that got no answer once more, a few at a time and with a
    // longer deadline, before it counts as an outage.
    let mut outcomes: BTreeMap<(usize, usize), (Result<FlowOutcome, String>, bool)> =
        BTreeMap::new();
    let flows_total: usize = plans.iter().map(|(_, f)| f.len()).sum();
    ctx.options
        .progress_total(PHASE, (flows_total + part.len()) as u64);
    let phase_jobs = |resolver: bool| -> Vec<(usize, Vec<usize>)> {
        plans
            .iter()
            .map(|(i, flows)| {
                let picked = flows
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, about))| about.is_resolver() == resolver)
                    .map(|(k, _)| k)
                    .collect();
                (*i, picked)
            })
            .collect()
    };
    for (jobs, parallel) in [
        (phase_jobs(false), threads),
        (phase_jobs(true), RESOLVER_PARALLEL),
    ] {
        for (key, outcome) in run_flows(ctx, &plans, &jobs, timeout, parallel, &payload) {
            outcomes.insert(key, (outcome, false));
        }
    }
    let retry: Vec<(usize, Vec<usize>)> = plans
        .iter()
        .map(|(i, flows)| {
            let again = flows
                .iter()
                .enumerate()
                .filter(|(k, (_, about))| {
                    about.allowed()
                        && matches!(
                            outcomes.get(&(*i, *k)),
                            Some((
                                Ok(FlowOutcome {
                                    reach: Reach::Silent,
                                    ..
                                }),
                                _
                            ))
                        )
                })
                .map(|(k, _)| k)
                .collect();
            (*i, again)
        })
        .collect();
    let retry_timeout = timeout.saturating_mul(RETRY_FACTOR);
    let retries: usize = retry.iter().map(|(_, k)| k.len()).sum();
    if retries > 0 {
        ctx.options
            .progress_total(PHASE, (flows_total + retries + part.len()) as u64);
    }
    for (key, outcome) in run_flows(ctx, &plans, &retry, retry_timeout, RETRY_PARALLEL, &payload) {
        outcomes.insert(key, (outcome, true));
    }
    for (i, flows) in &plans {
        let i = *i;
        for (k, (flow, about)) in flows.iter().enumerate() {
            let (outcome, retried) = outcomes
                .remove(&(i, k))
                .unwrap_or_else(|| (Err("no outcome".to_owned()), false));
            let proto = protocol_name(flow.protocol);
            let (what, unbound) = match about {
                About::Peer { dst, .. } => (
                    (
                        Target::Tenant(name(*dst).to_owned()),
                        format!("network.{proto}.{}", flow.port),
                        format!(
                            "reach {} at {}:{}/{proto}",
                            name(*dst),
                            flow.address,
                            flow.port
                        ),
                    ),
                    unbound(*dst, flow.protocol, flow.port),
                ),
                About::Host { resolver, .. } => (
                    (
                        Target::Host,
                        format!("network.host.{proto}.{}", flow.port),
                        if *resolver {
                            format!(
                                "reach the host's resolver at {}:{}/{proto} (a query answered)",
                                flow.address, flow.port
                            )
                        } else {
                            format!("reach the host at {}:{}/{proto}", flow.address, flow.port)
                        },
                    ),
                    None,
                ),
                About::Metadata { .. } => (
                    (
                        Target::Host,
                        format!("network.metadata.{proto}.{}", flow.port),
                        format!(
                            "reach the metadata address {}:{}/{proto} (a stand-in)",
                            flow.address, flow.port
                        ),
                    ),
                    None,
                ),
            };
            let wait = if retried { retry_timeout } else { timeout };
            let mut row = flow_row(
                name(i),
                what,
                (about.expected(), about.is_resolver()),
                &outcome,
                unbound,
                wait,
            );
            if retried {
                row.observed = format!(
                    "{} (second try, after no answer in {} ms)",
                    row.observed,
                    timeout.as_millis()
                );
                if row.verdict == Verdict::Outage
                    && let Ok(p) = &ctx.prepared[i]
                {
                    // Evidence for whoever looks into it: the neighbour
                    // entries on both ends of the first hop.
                    row.observed = format!(
                        "{}; {}",
                        row.observed,
                        arp_evidence(p.sandbox.holder_pid(), flow.address, p.tenant.address)
                    );
                }
            }
            report.rows.push(row);
        }
    }
    if stand_in.is_none() {
        for &i in &part {
            report.rows.push(skipped_row(
                name(i),
                Target::Host,
                &format!("network.metadata.tcp.{METADATA_PORT}"),
                format!("reach the metadata address {METADATA_ADDRESS}:{METADATA_PORT}/tcp"),
                "not judged: no stand-in metadata namespace (see notes)".into(),
            ));
        }
    }
    drop(stand_in);
    report.timed("network flows", phase.elapsed());

    // Attacks: receivers first, then broadcast, ICMP and forged sources.
    let phase = Instant::now();
    let mut receivers: BTreeMap<usize, Receiver> = BTreeMap::new();
    for &i in &part {
        let Ok(p) = &ctx.prepared[i] else { continue };
        match Receiver::open(&netns_of(p)) {
            Ok(r) => {
                receivers.insert(i, r);
            }
            Err(e) => report.notes.push(format!(
                "network: no receiver in {}'s namespace ({e}); broadcasts and forged packets to it not judged",
                name(i)
            )),
        }
    }
    let marker = format!("bhn-{}-", ctx.nonce);
    let broadcast_port = ports.first().copied().unwrap_or(31337);
    let spoofs = spoof_plan(&part, &ctx.peers, network, &ports, |i| name(i).to_owned());
    let id = (u32::from_str_radix(ctx.nonce, 16).unwrap_or(7) & 0xffff) as u16;
    let attack: Mutex<Vec<AttackResult>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(part.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = part.get(k) else { break };
                    let Ok(p) = &ctx.prepared[i] else { continue };
                    let mut rows = Vec::new();
                    // Broadcast, confined as the tenant.
                    let request = Request::Broadcast(BroadcastRequest {
                        targets: vec![
                            (Ipv4Addr::BROADCAST, broadcast_port),
                            (network.broadcast, broadcast_port),
                        ],
                        payload: format!("{marker}b-{i}"),
                    });
                    if let Err(message) = spawn(p, &request, &ctx.options.probe_exe, &[], &[])
                        .and_then(|process| finish(process, ctx.options.probe_timeout))
                    {
                        rows.push(skipped_row(
                            name(i),
                            Target::Own,
                            "network.broadcast",
                            "send UDP broadcasts".into(),
                            message,
                        ));
                    }
                    // ICMP echo, as root in the tenant's namespace.
                    let peers: Vec<usize> = ctx.peers[i]
                        .iter()
                        .copied()
                        .filter(|j| addr[*j].is_some())
                        .collect();
                    let targets: Vec<Ipv4Addr> = peers.iter().filter_map(|j| addr[*j]).collect();
                    match raw::icmp_echo(&netns_of(p), &targets, id.wrapping_add(i as u16), timeout)
                    {
                        Ok(answered) => {
                            for (j, ok) in peers.iter().zip(answered) {
                                rows.push(denied_row(
                                    name(i),
                                    Target::Tenant(name(*j).to_owned()),
                                    "network.icmp-echo",
                                    format!(
                                        "ping {} (raw socket, root in the namespace)",
                                        name(*j)
                                    ),
                                    if ok {
                                        "answered".into()
                                    } else {
                                        format!("no answer in {} ms", timeout.as_millis())
                                    },
                                    ok,
                                ));
                            }
                        }
                        Err(e) => rows.push(skipped_row(
                            name(i),
                            Target::Own,
                            "network.icmp-echo",
                            "ping other tenants".into(),
                            format!("not sent: {e}"),
                        )),
                    }
                    // Forged source addresses.
                    let mine: Vec<(usize, &Spoof)> = spoofs
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.actor == i)
                        .collect();
                    let packets: Vec<Forged> = mine
                        .iter()
                        .filter_map(|(k, s)| {
                            Some(Forged {
                                packet: raw::forged_packet(
                                    addr[s.posing_as]?,
                                    addr[s.to]?,
                                    s.protocol,
                                    s.port,
                                    format!("{marker}s-{k}").as_bytes(),
                                ),
                                to: addr[s.to]?,
                            })
                        })
                        .collect();
                    let sent = if packets.is_empty() {
                        Vec::new()
                    } else {
                        raw::send_forged(&netns_of(p), &packets).unwrap_or_else(|e| {
                            vec![e.raw_os_error().or(Some(libc::EIO)); packets.len()]
                        })
                    };
                    ctx.options.progress_advance(PHASE, 1);
                    if let Ok(mut list) = attack.lock() {
                        list.push((i, rows, sent));
                    }
                }
            });
        }
    });
    std::thread::sleep(SETTLE);
    // What arrived where: (receiving tenant, payload).
    let mut arrived: Vec<(usize, String)> = Vec::new();
    for (i, r) in &receivers {
        for (_, payload) in r.drain(&marker) {
            arrived.push((*i, payload));
        }
    }
    let mut attack = attack.into_inner().unwrap_or_default();
    attack.sort_by_key(|(i, ..)| *i);
    for (i, rows, sent) in attack {
        report.rows.extend(rows);
        // Broadcast rows: every sampled peer, and anyone else it reached.
        let tag = format!("{marker}b-{i}");
        let mut heard: Vec<usize> = arrived
            .iter()
            .filter(|(at, payload)| *at != i && *payload == tag)
            .map(|(at, _)| *at)
            .collect();
        heard.sort_unstable();
        heard.dedup();
        let mut judged: Vec<usize> = ctx.peers[i]
            .iter()
            .copied()
            .filter(|j| receivers.contains_key(j))
            .collect();
        for j in &heard {
            if !judged.contains(j) {
                judged.push(*j);
            }
        }
        for j in judged {
            let got = heard.contains(&j);
            report.rows.push(denied_row(
                name(i),
                Target::Tenant(name(j).to_owned()),
                "network.broadcast",
                format!(
                    "reach {} with a UDP broadcast (255.255.255.255 and {}, port {broadcast_port})",
                    name(j),
                    network.broadcast
                ),
                if got {
                    "arrived".into()
                } else {
                    "did not arrive".into()
                },
                got,
            ));
        }
        // Forged source rows.
        let mine: Vec<(usize, &Spoof)> = spoofs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.actor == i)
            .collect();
        for ((k, s), failed) in mine.iter().zip(sent.iter().chain(std::iter::repeat(&None))) {
            let attempt = format!(
                "send {}/{} to {} as {} (forged source address, raw socket, root in the namespace)",
                s.port,
                protocol_name(s.protocol),
                name(s.to),
                name(s.posing_as)
            );
            let target = Target::Tenant(name(s.to).to_owned());
            if let Some(errno) = failed {
                report.rows.push(skipped_row(
                    name(i),
                    target,
                    "network.spoof",
                    attempt,
                    format!("not sent: {}", errno_name(*errno)),
                ));
                continue;
            }
            if !receivers.contains_key(&s.to) {
                continue;
            }
            let tag = format!("{marker}s-{k}");
            let got = arrived
                .iter()
                .any(|(at, payload)| *at == s.to && *payload == tag);
            report.rows.push(denied_row(
                name(i),
                target,
                "network.spoof",
                attempt,
                if got {
                    "arrived".into()
                } else {
                    "did not arrive".into()
                },
                got,
            ));
        }
    }
    if part.len() < 3 {
        report.notes.push(
            "network: forged source addresses need three tenants (one to pose as); not probed"
                .into(),
        );
    }
    for (_, listener) in std::mem::take(&mut listeners) {
        stop_listener(listener);
    }
    report.timed("network attacks", phase.elapsed());

    let phase = Instant::now();
    neighbour_spoof(ctx, network, &part, &addr, report);
    report.timed("network neighbour spoofing", phase.elapsed());
}

/// Rounds of forged ARP frames: the kernel lets an ARP reply override an
/// entry only once the entry is older than `locktime` (1 s by default), so
/// the rounds span more than that.
const SPOOF_ROUNDS: usize = 3;
/// The pause between rounds.
const SPOOF_GAP: Duration = Duration::from_millis(600);
/// Peers whose addresses each attacker claims (its first sampled peers):
/// the broadcasts among its frames reach every tenant, so a few suffice and
/// the flood stays small at 50 tenants.
const SPOOF_PEERS: usize = 3;
/// A pause after each attacker's frames of a round (the receive backlog).
const SPOOF_PACE: Duration = Duration::from_millis(2);

/// The instance's neighbour tables at one moment: the host's entries on the
/// bridge, and each tenant's (by index), read through its holder.
struct Tables {
    host: Result<Vec<arp::Neighbour>, String>,
    tenants: BTreeMap<usize, Result<Vec<arp::Neighbour>, String>>,
}

impl Tables {
    fn read(ctx: &Context<'_, '_>, part: &[usize], bridge: &str) -> Tables {
        let host = arp::read_table(None)
            .map(|t| {
                t.into_iter()
                    .filter(|n| n.device == bridge || ctx.instance.is_bridge_shard(&n.device))
                    .collect()
            })
            .map_err(|e| e.to_string());
        let tenants = part
            .iter()
            .filter_map(|&j| {
                let p = ctx.prepared[j].as_ref().ok()?;
                Some((
                    j,
                    arp::read_table(Some(p.sandbox.holder_pid())).map_err(|e| e.to_string()),
                ))
            })
            .collect();
        Tables { host, tenants }
    }

    /// Records in `seen` what maps another address than `own_ip` to one of
    /// `macs`, per table (`None`: the host's), as attacker `i`'s doing.
    fn record(&self, i: usize, own_ip: Ipv4Addr, macs: &[arp::Mac], seen: &mut Poisoned) {
        let tables = std::iter::once((None, &self.host))
            .chain(self.tenants.iter().map(|(j, t)| (Some(*j), t)))
            .filter(|(owner, _)| *owner != Some(i));
        for (owner, table) in tables {
            let Ok(table) = table else { continue };
            for n in arp::poisoned(table, own_ip, macs) {
                let entries = seen.entry((i, owner)).or_default();
                if !entries.contains(n) {
                    entries.push(n.clone());
                }
            }
        }
    }
}

/// Poisoned entries seen, by (attacker, table owner: `None` the host).
type Poisoned = BTreeMap<(usize, Option<usize>), Vec<arp::Neighbour>>;

/// `network.neighbour-spoof`: from root in each tenant's namespace, forged
/// ARP frames claiming the gateway's and peers' addresses with the tenant's
/// own MAC and a forged one ([`arp::SpoofPlan::frames`]). The instance's
/// neighbour tables are read after each attacker's frames of every round
/// (a later attacker claiming the same address overwrites the entry) and
/// once more at the end. An entry mapping an address other than the
/// attacker's to one of its MACs, at any of those reads, is a leak naming
/// the entry.
fn neighbour_spoof(
    ctx: &Context<'_, '_>,
    network: &NetworkUnderTest,
    part: &[usize],
    addr: &[Option<Ipv4Addr>],
    report: &mut Report,
) {
    const ID: &str = "network.neighbour-spoof";
    let name = |i: usize| -> String {
        ctx.prepared[i]
            .as_ref()
            .map(|p| p.tenant.name.clone())
            .unwrap_or_default()
    };
    let bridge = ctx.instance.bridge();
    let gateway_mac = std::fs::read_to_string(format!("/sys/class/net/{bridge}/address"))
        .ok()
        .and_then(|t| arp::parse_mac(&t));
    if gateway_mac.is_none() {
        report.notes.push(format!(
            "network: the bridge {bridge}'s MAC is unknown; neighbour spoofing sent broadcasts only"
        ));
    }
    let seed = u32::from_str_radix(ctx.nonce, 16).unwrap_or(7) & 0xffff;
    // (attacker, its socket, its plan, the first errno of its sends).
    let mut attackers: Vec<(usize, arp::Eth0, arp::SpoofPlan, Option<i32>)> = Vec::new();
    for &i in part {
        let (Ok(p), Some(own_ip)) = (&ctx.prepared[i], addr[i]) else {
            continue;
        };
        match arp::Eth0::open(&netns_of(p)) {
            Ok(eth0) => {
                let plan = arp::SpoofPlan {
                    own_ip,
                    own_mac: eth0.mac,
                    forged_mac: arp::forged_mac((seed << 16) | (i as u32 & 0xffff)),
                    gateway_ip: network.bridge,
                    gateway_mac,
                    peers: ctx.peers[i]
                        .iter()
                        .filter_map(|j| addr[*j])
                        .take(SPOOF_PEERS)
                        .collect(),
                };
                attackers.push((i, eth0, plan, None));
            }
            Err(e) => report.rows.push(skipped_row(
                &name(i),
                Target::Own,
                ID,
                "poison neighbour tables with forged ARP".into(),
                format!("not sent: no packet socket on {}: {e}", arp::TENANT_IFNAME),
            )),
        }
    }
    if attackers.is_empty() {
        return;
    }
    let frames: Vec<Vec<Vec<u8>>> = attackers
        .iter()
        .map(|(_, _, plan, _)| plan.frames().iter().map(arp::ArpFrame::bytes).collect())
        .collect();
    let mut seen: Poisoned = BTreeMap::new();
    for round in 0..SPOOF_ROUNDS {
        if round > 0 {
            std::thread::sleep(SPOOF_GAP);
        }
        for ((i, eth0, plan, failed), frames) in attackers.iter_mut().zip(&frames) {
            for frame in frames {
                if let Some(errno) = eth0.send(frame) {
                    *failed = failed.or(Some(errno));
                }
            }
            std::thread::sleep(SPOOF_PACE);
            Tables::read(ctx, part, &bridge).record(
                *i,
                plan.own_ip,
                &[plan.own_mac, plan.forged_mac],
                &mut seen,
            );
        }
    }
    std::thread::sleep(SETTLE);
    let last = Tables::read(ctx, part, &bridge);
    for (i, _, plan, _) in &attackers {
        last.record(*i, plan.own_ip, &[plan.own_mac, plan.forged_mac], &mut seen);
    }
    if let Err(e) = &last.host {
        report
            .notes
            .push(format!("network: the host's neighbour table: {e}"));
    }
    for (j, table) in &last.tenants {
        if let Err(e) = table {
            report.notes.push(format!(
                "network: {}'s neighbour table could not be read ({e}); neighbour spoofing against it not judged",
                name(*j)
            ));
        }
    }
    for (i, _, plan, failed) in &attackers {
        let i = *i;
        let attempt = |whose: &str| {
            format!(
                "poison {whose} neighbour table: gratuitous ARP, ARP requests and replies claiming the gateway {} and {} peer address(es), with its own MAC {} and a forged {} (packet socket on eth0, root in the namespace, {SPOOF_ROUNDS} rounds)",
                plan.gateway_ip,
                plan.peers.len(),
                arp::format_mac(plan.own_mac),
                arp::format_mac(plan.forged_mac),
            )
        };
        let row = |target: Target, whose: &str, owner: Option<usize>| {
            let found = seen.get(&(i, owner)).map(Vec::as_slice).unwrap_or_default();
            let mut observed = if found.is_empty() {
                "no entry mapped another address to either MAC".to_owned()
            } else {
                format!(
                    "poisoned: {}",
                    found
                        .iter()
                        .map(arp::Neighbour::describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            if let Some(errno) = failed {
                observed.push_str(&format!(" (some frames not sent: {})", errno_name(*errno)));
            }
            denied_row(
                &name(i),
                target,
                ID,
                attempt(whose),
                observed,
                !found.is_empty(),
            )
        };
        if last.host.is_ok() {
            report.rows.push(row(Target::Host, "the host's", None));
        }
        // Each sampled peer, and any other tenant where a poisoned entry showed.
        let readable = |j: &usize| last.tenants.get(j).is_some_and(Result::is_ok);
        let mut judged: Vec<usize> = ctx.peers[i].iter().copied().filter(readable).collect();
        for (attacker, owner) in seen.keys() {
            if let Some(j) = owner
                && *attacker == i
                && !judged.contains(j)
            {
                judged.push(*j);
            }
        }
        for j in judged {
            report.rows.push(row(
                Target::Tenant(name(j)),
                &format!("{}'s", name(j)),
                Some(j),
            ));
        }
    }
}

/// For each sampled pair `actor -> to`: a third tenant to pose as,
/// preferably one the matrix lets reach `to` (so that only the
/// anti-spoofing stands between the forged packet and `to`), on a port it
/// may use; else any third tenant on the first probed port over UDP.
fn spoof_plan(
    part: &[usize],
    peers: &[Vec<usize>],
    network: &NetworkUnderTest,
    ports: &[u16],
    name: impl Fn(usize) -> String,
) -> Vec<Spoof> {
    let mut out = Vec::new();
    let first = ports.first().copied().unwrap_or(31337);
    for &actor in part {
        for &to in peers[actor].iter().filter(|j| part.contains(j)) {
            let others: Vec<usize> = part
                .iter()
                .copied()
                .filter(|b| *b != actor && *b != to)
                .collect();
            let allowed = others.iter().find_map(|b| {
                pair_expectations(
                    &network.matrix,
                    &name(*b),
                    &name(to),
                    &both_protocols(ports),
                )
                .into_iter()
                .find(|e| {
                    e.allowed && !network.tenants_narrowed(&name(*b), &name(to), e.protocol, e.port)
                })
                .map(|e| (*b, e.protocol, e.port))
            });
            let choice = allowed.or_else(|| others.first().map(|b| (*b, Protocol::Udp, first)));
            if let Some((posing_as, protocol, port)) = choice {
                out.push(Spoof {
                    actor,
                    posing_as,
                    to,
                    protocol,
                    port,
                });
            }
        }
    }
    out
}
