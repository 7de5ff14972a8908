//! Load on the control plane: C concurrent API clients on the unix socket for S seconds
//! with mixed reads and writes while N tenants run (one supervised workload each).
//!
//! - Onboarding: N tenants applied with `bulkhead apply` (timed), then `bulkhead serve`
//!   started (time to its first reconciler pass reported).
//! - Baseline, same run: one client alone, the same read mix, for `--baseline-seconds`.
//! - Load: `--lifecycle-clients` clients each suspend and resume a tenant of their own
//!   in turn (a revision and a converge each); the other clients send 85 % reads
//!   (`GET /tenants/{t}` as platform admin, `GET /tenants` and
//!   `GET /tenants/{t}/workloads` as that tenant's viewer, `GET /metrics`) and 15 %
//!   writes (`POST /tokens`). Every non-2xx answer and every transport error counts as
//!   an error.
//! - Audit: the log must grow by exactly the records the audited writes account for
//!   (2 per token created; per suspend/resume 2 for the changed tenant object plus 2 per
//!   host action the answer lists), and `audit verify` must pass.
//!
//! ```text
//! cargo xtask bench api-load [-- --tenants 100 --clients 200 --seconds 60]
//! target/release/api-load --tenants 5 --clients 20 --seconds 5   # a CI-sized run
//! ```

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_bench::{BenchInstance, bulkhead_binary, is_root, ms};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(message) => {
            eprintln!("api-load: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Args {
    tenants: usize,
    clients: usize,
    seconds: u64,
    baseline_seconds: u64,
    lifecycle_clients: usize,
    bulkhead: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        tenants: 100,
        clients: 200,
        seconds: 60,
        baseline_seconds: 5,
        lifecycle_clients: 4,
        bulkhead: None,
    };
    let mut i = 0;
    while i < raw.len() {
        let value = raw
            .get(i + 1)
            .ok_or_else(|| format!("{} needs a value", raw[i]))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{}: {value:?} is not a number", raw[i]))
        };
        match raw[i].as_str() {
            "--tenants" => args.tenants = number()? as usize,
            "--clients" => args.clients = number()? as usize,
            "--seconds" => args.seconds = number()?,
            "--baseline-seconds" => args.baseline_seconds = number()?,
            "--lifecycle-clients" => args.lifecycle_clients = number()? as usize,
            "--bulkhead" => args.bulkhead = Some(PathBuf::from(value)),
            other => {
                return Err(format!(
                    "unknown flag {other:?} (expected --tenants, --clients, --seconds, --baseline-seconds, --lifecycle-clients, --bulkhead)"
                ));
            }
        }
        i += 2;
    }
    if args.tenants == 0 || args.clients == 0 {
        return Err("--tenants and --clients must be at least 1".to_owned());
    }
    args.lifecycle_clients = args
        .lifecycle_clients
        .min(args.tenants)
        .min(args.clients.saturating_sub(1));
    Ok(args)
}

/// The daemon this benchmark started; killed by its pid on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request over the socket: status and body.
fn request(
    socket: &Path,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, String), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: bulkhead\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("receive: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_owned())?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}

fn token(
    instance: &BenchInstance,
    subject: &str,
    role: &str,
    tenant: Option<&str>,
) -> Result<String, String> {
    let mut args = vec![
        "token",
        "create",
        "--role",
        role,
        "--ttl",
        "6h",
        "--subject",
        subject,
    ];
    if let Some(tenant) = tenant {
        args.extend(["--tenant", tenant]);
    }
    Ok(instance
        .run(&args)?
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

fn audit_count(instance: &BenchInstance) -> Result<usize, String> {
    let text = instance.run(&["audit", "log", "-o", "json", "--limit", "100000000"])?;
    let records: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("audit log is not JSON: {e}"))?;
    Ok(records.as_array().map_or(0, Vec::len))
}

/// What one client did.
#[derive(Debug, Default)]
struct Tally {
    latencies: Vec<Duration>,
    /// Latencies of the writes among them (token creation).
    write_latencies: Vec<Duration>,
    reads: u64,
    writes: u64,
    errors: Vec<String>,
    /// Audit records the writes account for.
    audited: u64,
}

struct Tokens {
    admin: String,
    viewers: Vec<String>,
}

/// A small deterministic generator per client (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn reader(
    socket: &Path,
    tokens: &Tokens,
    tenants: usize,
    seed: u64,
    until: Instant,
    writes: bool,
) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    while Instant::now() < until {
        let t = (rng.next() % tenants as u64) as usize;
        let roll = rng.next() % 100;
        let viewer = tokens.viewers[t].as_str();
        let admin = tokens.admin.as_str();
        let (method, path, token, body, write) = match roll {
            _ if writes && roll >= 85 => (
                "POST",
                "/tokens".to_owned(),
                admin,
                format!(
                    r#"{{"subject": "load-{seed}", "role": "tenant-viewer", "tenant": "t{t}", "ttl_seconds": 600}}"#
                ),
                true,
            ),
            0..=39 => ("GET", format!("/tenants/t{t}"), admin, String::new(), false),
            40..=59 => ("GET", "/tenants".to_owned(), viewer, String::new(), false),
            60..=79 => (
                "GET",
                format!("/tenants/t{t}/workloads"),
                viewer,
                String::new(),
                false,
            ),
            _ => ("GET", "/metrics".to_owned(), admin, String::new(), false),
        };
        let started = Instant::now();
        let result = request(socket, method, &path, Some(token), &body);
        tally.latencies.push(started.elapsed());
        if write {
            tally.write_latencies.push(started.elapsed());
        }
        match result {
            Ok((status, _)) if (200..300).contains(&status) => {
                if write {
                    tally.writes += 1;
                    tally.audited += 2;
                } else {
                    tally.reads += 1;
                }
            }
            Ok((status, body)) => tally
                .errors
                .push(format!("{method} {path}: {status} {}", body.trim())),
            Err(e) => tally.errors.push(format!("{method} {path}: {e}")),
        }
    }
    tally
}

fn lifecycle(socket: &Path, admin: &str, tenant: &str, until: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut suspend = true;
    while Instant::now() < until {
        let verb = if suspend { "suspend" } else { "resume" };
        let path = format!("/tenants/{tenant}/{verb}");
        let started = Instant::now();
        let result = request(socket, "POST", &path, Some(admin), "");
        tally.latencies.push(started.elapsed());
        match result {
            Ok((200, body)) => {
                tally.writes += 1;
                let applied: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let actions = applied["host_actions"].as_array().map_or(0, Vec::len) as u64;
                let changed = applied["unchanged"].as_bool() == Some(false);
                tally.audited += 2 * actions + if changed { 2 } else { 0 };
                suspend = !suspend;
            }
            Ok((status, body)) => tally
                .errors
                .push(format!("POST {path}: {status} {}", body.trim())),
            Err(e) => tally.errors.push(format!("POST {path}: {e}")),
        }
    }
    // Leave the tenant running.
    if !suspend {
        let _ = request(
            socket,
            "POST",
            &format!("/tenants/{tenant}/resume"),
            Some(admin),
            "",
        )
        .map(|(status, body)| {
            if status == 200 {
                let applied: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let actions = applied["host_actions"].as_array().map_or(0, Vec::len) as u64;
                let changed = applied["unchanged"].as_bool() == Some(false);
                tally.writes += 1;
                tally.audited += 2 * actions + if changed { 2 } else { 0 };
            } else {
                tally.errors.push(format!("final resume: {status} {body}"));
            }
        });
    }
    tally
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn run() -> Result<bool, String> {
    let args = args()?;
    if !is_root() {
        return Err("needs root (cgroups, namespaces, loop devices)".to_owned());
    }
    let binary = bulkhead_binary(args.bulkhead.clone())?;
    let instance = BenchInstance::new(&binary, "al", 0)?;
    let names = instance.add_tenants(args.tenants)?;
    let onboarding = instance.apply()?;
    println!(
        "onboarding: {} tenants applied in {:.1} s ({} per tenant)",
        args.tenants,
        onboarding.as_secs_f64(),
        ms(onboarding / args.tenants as u32)
    );
    let admin = token(&instance, "bench-admin", "platform-admin", None)?;
    let viewers = names
        .iter()
        .map(|t| token(&instance, &format!("viewer-{t}"), "tenant-viewer", Some(t)))
        .collect::<Result<Vec<_>, _>>()?;
    let tokens = Arc::new(Tokens { admin, viewers });

    let state = instance
        .specs()
        .parent()
        .map(|d| d.join("state"))
        .ok_or("no instance directory")?;
    let socket = state.join(instance.prefix()).join("api.sock");
    let log = std::fs::File::create(state.join("serve.log"))
        .map_err(|e| format!("cannot create the daemon's log: {e}"))?;
    let started = Instant::now();
    let child = instance
        .command()
        .args([
            "serve",
            "--reconcile-interval",
            "86400",
            "--denial-limit",
            "1000000",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let _daemon = Daemon(child);
    loop {
        if let Ok((200, body)) = request(&socket, "GET", "/health", None, "") {
            let health: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if health["reconciler"]["passes"].as_u64().unwrap_or(0) >= 1 {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the daemon did not finish its first pass in 10 minutes".to_owned());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "daemon: first reconciler pass done {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    // Let the supervisor start every workload before measuring.
    std::thread::sleep(Duration::from_secs(2));

    // Baseline: one client, reads only.
    let until = Instant::now() + Duration::from_secs(args.baseline_seconds);
    let mut baseline = reader(&socket, &tokens, args.tenants, 1, until, false);
    baseline.latencies.sort();

    let before = audit_count(&instance)?;
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let load_started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..args.clients {
        let socket = socket.clone();
        let tokens = Arc::clone(&tokens);
        let tenants = args.tenants;
        let lifecycle_tenant = names.get(c).filter(|_| c < args.lifecycle_clients).cloned();
        handles.push(std::thread::spawn(move || match lifecycle_tenant {
            Some(tenant) => lifecycle(&socket, &tokens.admin, &tenant, until),
            None => reader(&socket, &tokens, tenants, c as u64 + 2, until, true),
        }));
    }
    let mut total = Tally::default();
    let mut lifecycle_latencies = Vec::new();
    for (c, handle) in handles.into_iter().enumerate() {
        let tally = handle
            .join()
            .map_err(|_| "a client thread panicked".to_owned())?;
        if c < args.lifecycle_clients {
            lifecycle_latencies.extend(tally.latencies.iter().copied());
        } else {
            total.latencies.extend(tally.latencies);
            total.write_latencies.extend(tally.write_latencies);
        }
        total.reads += tally.reads;
        total.writes += tally.writes;
        total.audited += tally.audited;
        total.errors.extend(tally.errors);
    }
    let elapsed = load_started.elapsed();
    let after = audit_count(&instance)?;
    let verified = instance.run(&["audit", "verify"]).is_ok();
    total.latencies.sort();
    total.write_latencies.sort();
    lifecycle_latencies.sort();

    let requests = total.reads + total.writes + total.errors.len() as u64;
    println!(
        "load: {} clients ({} suspend/resume), {:.1} s, {} tenants running",
        args.clients,
        args.lifecycle_clients,
        elapsed.as_secs_f64(),
        args.tenants
    );
    println!(
        "requests: {requests} ({:.0}/s): {} reads, {} writes, {} errors",
        requests as f64 / elapsed.as_secs_f64(),
        total.reads,
        total.writes,
        total.errors.len()
    );
    println!("| | p50 | p99 | max |\n|---|---|---|---|");
    let line = |name: &str, sorted: &[Duration]| {
        println!(
            "| {name} | {} | {} | {} |",
            ms(quantile(sorted, 0.5)),
            ms(quantile(sorted, 0.99)),
            ms(sorted.last().copied().unwrap_or_default())
        );
    };
    line("baseline: 1 client, reads", &baseline.latencies);
    line("load: reads and token writes", &total.latencies);
    line("load: of which token writes", &total.write_latencies);
    line("load: suspend/resume", &lifecycle_latencies);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "p50 ratio load/baseline {:.1}×, p99 ratio {:.1}×",
        ratio(
            quantile(&total.latencies, 0.5),
            quantile(&baseline.latencies, 0.5)
        ),
        ratio(
            quantile(&total.latencies, 0.99),
            quantile(&baseline.latencies, 0.99)
        )
    );
    let grew = after.saturating_sub(before) as u64;
    println!(
        "audit: grew by {grew} records, the audited writes account for {} ({}); verify: {}",
        total.audited,
        if grew == total.audited {
            "exact"
        } else {
            "MISMATCH"
        },
        if verified { "ok" } else { "FAILED" }
    );
    for e in total.errors.iter().take(10) {
        println!("error: {e}");
    }
    Ok(total.errors.is_empty() && grew == total.audited && verified && baseline.errors.is_empty())
}
