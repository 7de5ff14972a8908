//! Benchmark: tenant-to-tenant traffic through bridge + firewall with 1,000 tenants
//! loaded (every tenant wired, the engine-compiled firewall of a ring of rules
//! loaded), against two namespaces on a bare veth + bridge with no rules, in the
//! same run. Measures a bounded TCP transfer (`--bytes`, default 1 GiB), request/
//! response round trips on one connection, and new connection + one request (where
//! the firewall's set lookup and conntrack sit). Rounds alternate bare and loaded;
//! medians over rounds. Plain namespaces stand in for sandboxes. Needs root; cleans up.
//!
//! ```text
//! cargo xtask bench net-throughput [-- --tenants 1000 --bytes 1073741824 --rounds 3]
//! ```
//!
//! Unpinned (client and server need a core each on this 2-vCPU machine).

#[path = "../net_common.rs"]
mod net_common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_node::net::firewall;
use bulkhead_node::net::link::{self, NetnsRef, TenantLink};
use ipnet::Ipv4Net;
use net_common::{Lab, PORT, ms, stats};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("net-throughput: {message}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    tenants: usize,
    bytes: u64,
    rounds: usize,
    pings: usize,
    connects: usize,
}

fn run() -> Result<(), String> {
    let mut o = Options {
        tenants: 1000,
        bytes: 1 << 30,
        rounds: 3,
        pings: 20_000,
        connects: 2_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| format!("{arg} needs a positive number"))
        };
        match arg.as_str() {
            "--tenants" => o.tenants = usize::try_from(value()?).map_err(|e| e.to_string())?,
            "--bytes" => o.bytes = value()?,
            "--rounds" => o.rounds = usize::try_from(value()?).map_err(|e| e.to_string())?,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (expected --tenants N, --bytes N, --rounds N)"
                ));
            }
        }
    }
    if o.tenants < 2 {
        return Err("--tenants needs at least 2".to_owned());
    }
    let pid = std::process::id() % 0xfff;

    // Loaded: every tenant wired and the compiled firewall in place.
    let range: Ipv4Net = "10.244.0.0/20".parse().map_err(|_| "range")?;
    let prefix = format!("bt{pid:x}l");
    let desired = net_common::desired(&prefix, range, o.tenants)?;
    let addresses = net_common::addresses(range, o.tenants);
    let mut loaded = Lab::new(&prefix, range)?;
    let order: Vec<String> = (0..o.tenants).map(net_common::tenant).collect();
    loaded.add_namespaces(&order)?;
    let setup = Instant::now();
    for tenant in &order {
        wire(&loaded, tenant, addresses[tenant])?;
    }
    let ruleset =
        firewall::compile(&loaded.instance, &desired, &addresses).map_err(|e| e.to_string())?;
    firewall::apply(&ruleset).map_err(|e| e.to_string())?;
    eprintln!(
        "loaded {} tenants in {:.1} s",
        o.tenants,
        setup.elapsed().as_secs_f64()
    );
    let size = ruleset.size();
    let observed = firewall::observe(&loaded.instance).map_err(|e| e.to_string())?;

    // Bare: two namespaces on a bridge of their own, no tables.
    let bare_range: Ipv4Net = "10.245.0.0/24".parse().map_err(|_| "range")?;
    let mut bare = Lab::new(&format!("bt{pid:x}b"), bare_range)?;
    let pair = [net_common::tenant(0), net_common::tenant(1)];
    bare.add_namespaces(&pair)?;
    let bare_addresses = net_common::addresses(bare_range, 2);
    for tenant in &pair {
        wire(&bare, tenant, bare_addresses[tenant])?;
    }

    // t0000 may open 5201/tcp on t0001 in both setups.
    let loaded_pair = Pair::new(&loaded, &pair, &addresses);
    let bare_pair = Pair::new(&bare, &pair, &bare_addresses);
    let (mut tput, mut rtt, mut conn) = ([vec![], vec![]], [vec![], vec![]], [vec![], vec![]]);
    for round in 0..o.rounds {
        for (i, p) in [&bare_pair, &loaded_pair].iter().enumerate() {
            tput[i].push(p.transfer(o.bytes)?);
            let (mut pings, mut connects) = p.latency(o.pings, o.connects)?;
            rtt[i].push(stats(&mut pings));
            conn[i].push(stats(&mut connects));
        }
        eprintln!("round {} done", round + 1);
    }
    let median_f = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let median_d = |v: &mut Vec<(Duration, Duration)>| {
        v.sort();
        v[v.len() / 2]
    };
    let (bare_tput, loaded_tput) = (median_f(&mut tput[0]), median_f(&mut tput[1]));
    let (bare_rtt, loaded_rtt) = (median_d(&mut rtt[0]), median_d(&mut rtt[1]));
    let (bare_conn, loaded_conn) = (median_d(&mut conn[0]), median_d(&mut conn[1]));
    println!(
        "| what (unpinned, median of {} rounds) | bare veth + bridge, no rules | bridge + firewall, {} tenants | ratio |",
        o.rounds, o.tenants
    );
    println!("|---|---|---|---|");
    println!(
        "| TCP transfer of {} MiB, one stream | {:.2} Gbit/s | {:.2} Gbit/s | {:.3} |",
        o.bytes >> 20,
        bare_tput,
        loaded_tput,
        loaded_tput / bare_tput
    );
    println!(
        "| request/response on one connection, median (p95) | {} ({}) | {} ({}) | {:.3} |",
        us(bare_rtt.0),
        us(bare_rtt.1),
        us(loaded_rtt.0),
        us(loaded_rtt.1),
        bare_rtt.0.as_secs_f64() / loaded_rtt.0.as_secs_f64()
    );
    println!(
        "| new connection + one request, median (p95) | {} ({}) | {} ({}) | {:.3} |",
        ms(bare_conn.0),
        ms(bare_conn.1),
        ms(loaded_conn.0),
        ms(loaded_conn.1),
        bare_conn.0.as_secs_f64() / loaded_conn.0.as_secs_f64()
    );
    println!(
        "\nratios are loaded/bare for throughput and bare/loaded for latency (1 = no cost; target ≥ 0.95)"
    );
    println!(
        "ruleset at N={}: {} rules; {} allow elements, {} anti-spoofing, {} counter elements (compiled); {} allow and {} port bindings read back from the kernel",
        o.tenants,
        size.rules,
        size.allow_elements,
        size.port_elements,
        size.counter_elements,
        observed.allow.len(),
        observed.port_addrs.len()
    );
    drop(loaded);
    drop(bare);
    Ok(())
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn wire(lab: &Lab, tenant: &str, address: Ipv4Addr) -> Result<(), String> {
    let wiring = TenantLink {
        tenant: tenant.to_owned(),
        netns: NetnsRef::of_tenant(&lab.instance, tenant),
        address,
    };
    link::ensure_tenant(&lab.instance, &lab.bridge, &wiring)
        .map(drop)
        .map_err(|e| format!("{tenant}: {e}"))
}

/// A client namespace and a server namespace with the server's address.
struct Pair {
    client: PathBuf,
    server: PathBuf,
    server_address: Ipv4Addr,
}

/// Runs `f` on a thread inside the network namespace at `path`.
fn in_netns<T: Send + 'static>(
    path: &std::path::Path,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| format!("setns {}: {e}", path.display()))?;
        f()
    })
}

fn join<T>(handle: std::thread::JoinHandle<Result<T, String>>) -> Result<T, String> {
    handle.join().map_err(|_| "a thread panicked".to_owned())?
}

impl Pair {
    fn new(
        lab: &Lab,
        pair: &[String; 2],
        addresses: &std::collections::BTreeMap<String, Ipv4Addr>,
    ) -> Pair {
        Pair {
            client: lab.instance.netns_path(&pair[0]),
            server: lab.instance.netns_path(&pair[1]),
            server_address: addresses[&pair[1]],
        }
    }

    fn listen(&self) -> Result<(TcpListener, SocketAddr), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let address = SocketAddr::from((self.server_address, PORT));
        let handle = in_netns(&self.server, move || {
            let listener = TcpListener::bind(address).map_err(|e| format!("bind: {e}"))?;
            let _ = tx.send(());
            Ok(listener)
        });
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the server did not bind")?;
        Ok((join(handle)?, address))
    }

    /// Gbit/s of one bounded transfer client → server (until the server has read all).
    fn transfer(&self, bytes: u64) -> Result<f64, String> {
        let (listener, address) = self.listen()?;
        let server = std::thread::spawn(move || -> Result<(), String> {
            let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut buffer = vec![0u8; 1 << 18];
            let mut left = bytes;
            while left > 0 {
                let n = stream.read(&mut buffer).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("short transfer".to_owned());
                }
                left -= n as u64;
            }
            stream.write_all(&[1]).map_err(|e| e.to_string())
        });
        let client = in_netns(&self.client, move || {
            let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))
                .map_err(|e| format!("connect {address}: {e}"))?;
            let buffer = vec![7u8; 1 << 18];
            let started = Instant::now();
            let mut left = bytes;
            while left > 0 {
                let n = left.min(buffer.len() as u64) as usize;
                stream.write_all(&buffer[..n]).map_err(|e| e.to_string())?;
                left -= n as u64;
            }
            let mut done = [0u8; 1];
            stream.read_exact(&mut done).map_err(|e| e.to_string())?;
            Ok(started.elapsed())
        });
        let elapsed = join(client)?;
        server.join().map_err(|_| "server panicked")??;
        Ok(bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9)
    }

    /// Round trips of one byte on one connection, and new connection + one request.
    fn latency(
        &self,
        pings: usize,
        connects: usize,
    ) -> Result<(Vec<Duration>, Vec<Duration>), String> {
        let (listener, address) = self.listen()?;
        let server = std::thread::spawn(move || -> Result<(), String> {
            for _ in 0..=connects {
                let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                let mut byte = [0u8; 1];
                while stream.read(&mut byte).map_err(|e| e.to_string())? == 1 {
                    stream.write_all(&byte).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        });
        let client = in_netns(&self.client, move || {
            let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))
                .map_err(|e| format!("connect {address}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut rtts = Vec::with_capacity(pings);
            let mut byte = [0u8; 1];
            for _ in 0..pings {
                let t = Instant::now();
                stream.write_all(&[1]).map_err(|e| e.to_string())?;
                stream.read_exact(&mut byte).map_err(|e| e.to_string())?;
                rtts.push(t.elapsed());
            }
            drop(stream);
            let mut fresh = Vec::with_capacity(connects);
            for _ in 0..connects {
                let t = Instant::now();
                let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))
                    .map_err(|e| format!("connect {address}: {e}"))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                stream.write_all(&[1]).map_err(|e| e.to_string())?;
                stream.read_exact(&mut byte).map_err(|e| e.to_string())?;
                fresh.push(t.elapsed());
            }
            Ok((rtts, fresh))
        });
        let result = join(client)?;
        server.join().map_err(|_| "server panicked")??;
        Ok(result)
    }
}
