//! The resources class's exhaustion probes: one tenant uses up a shared
//! kernel table as far as the kernel lets it — ephemeral ports, inodes,
//! tracked connections — and the verifier checks that the next tenant (and
//! the host) can still do the same thing. Every attempt is bounded (a cap and
//! a time budget) so that a host without a limit is not hurt; the row says
//! how far the tenant got, so a missing limit shows as a number even where
//! the victim is unaffected.

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
