//! Exhaustion of shared kernel tables from inside one tenant: ephemeral
//! ports, inodes, tracked connections, neighbour (ARP) entries. Each mode is bounded (a cap on
//! attempts and a time budget) so that it cannot hurt the host, reports how
//! far it got, and where it holds something (ports, files) keeps it until
//! the verifier has checked the victim, then releases it.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};

use super::ResourceOutcome;

/// How far an inode fill got in one directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeFill {
    /// The directory filled.
    pub dir: String,
    /// Empty files created.
    pub files: u64,
    /// What stopped it (`None`: the cap or the time budget).
    pub errno: Option<i32>,
}

fn print_line<T: Serialize>(value: &T) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(value).unwrap_or_else(|_| "null".into())
    );
    let _ = out.flush();
}

/// Blocks until the verifier closes its end of our stdout.
fn hold_until_released() {
    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    loop {
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::empty(),
        )];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) if !fds[0].revents().is_empty() => break,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
}

/// How far a port holder got.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsHeld {
    /// The namespace's ephemeral range (`ip_local_port_range`).
    pub range: (u16, u16),
    /// Ports this process bound and holds.
    pub held: u64,
    /// The first port it did not try (where the next holder starts).
    pub next: u32,
    /// What stopped it before the end of the range (`EMFILE`: its open-file
    /// limit), if anything.
    pub errno: Option<i32>,
    /// Whether a bind to port 0 then failed with `EADDRINUSE`: no
    /// ephemeral port left in this namespace.
    pub exhausted: bool,
}

fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().filter_map(|n| n.parse().ok());
            Some((it.next()?, it.next()?))
        })
        .unwrap_or((32768, 60999))
}

fn bind_tcp(port: u16) -> Result<OwnedFd, rustix::io::Errno> {
    let socket = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&socket, &SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
    Ok(socket)
}

/// Binds TCP ports of the namespace's ephemeral range one by one from
/// `first` (the range's start when below it) — explicit ports, since the
/// kernel's search for a free one grows with the ports taken — until the
/// range ends, the open-file limit, `cap` ports or `millis`; then tries
/// `bind(0)`. Prints [`PortsHeld`] and holds the ports until released.
pub(super) fn port_hold(first: u32, cap: u64, millis: u64) -> i32 {
    let until = Instant::now() + Duration::from_millis(millis);
    let range = local_port_range();
    let mut port = first.max(u32::from(range.0));
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut errno = None;
    while port <= u32::from(range.1) && (held.len() as u64) < cap && Instant::now() < until {
        match bind_tcp(u16::try_from(port).unwrap_or(u16::MAX)) {
            Ok(socket) => held.push(socket),
            // Taken already (by us or a workload): still not free.
            Err(rustix::io::Errno::ADDRINUSE) => {}
            Err(e) => {
                errno = Some(e.raw_os_error());
                break;
            }
        }
        port += 1;
    }
    if errno == Some(libc::EMFILE) {
        // Room for the check below.
        held.pop();
        port -= 1;
    }
    let exhausted = matches!(bind_tcp(0), Err(rustix::io::Errno::ADDRINUSE));
    print_line(&PortsHeld {
        range,
        held: held.len() as u64,
        next: port,
        errno,
        exhausted,
    });
    hold_until_released();
    drop(held);
    0
}

/// A TCP connection to a listener of our own on loopback: `None` when it
/// connected, else the errno.
pub(super) fn local_connect() -> Option<i32> {
    let listener = match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)) {
        Ok(l) => l,
        Err(e) => return Some(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return Some(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => None,
        Err(e) => Some(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// Creates empty files in a fresh directory under each of `dirs` until the
/// file system refuses (`ENOSPC`: no inode left), `cap` files in each or
/// `millis` in all; prints the [`InodeFill`]s, holds until released, then removes
/// everything it made.
pub(super) fn inode_fill(dirs: &[String], cap: u64, millis: u64, nonce: &str) -> i32 {
    let until = Instant::now() + Duration::from_millis(millis);
    let mut made: Vec<PathBuf> = Vec::new();
    let mut fills = Vec::new();
    for dir in dirs {
        let base = Path::new(dir).join(format!(".bulkhead-inodes-{nonce}"));
        let mut fill = InodeFill {
            dir: dir.clone(),
            ..InodeFill::default()
        };
        if let Err(e) = std::fs::create_dir(&base) {
            fill.errno = Some(e.raw_os_error().unwrap_or(libc::EIO));
            fills.push(fill);
            continue;
        }
        made.push(base.clone());
        while fill.files < cap && Instant::now() < until {
            let path = base.join(fill.files.to_string());
            match std::fs::File::create_new(&path) {
                Ok(_) => fill.files += 1,
                Err(e) => {
                    fill.errno = Some(e.raw_os_error().unwrap_or(libc::EIO));
                    break;
                }
            }
        }
        fills.push(fill);
    }
    print_line(&fills);
    hold_until_released();
    for base in made {
        let _ = std::fs::remove_dir_all(base);
    }
    0
}

/// Creates and removes one file at each of `paths`: `None` where it worked.
pub(super) fn touch(paths: &[String]) -> Vec<Option<i32>> {
    paths
        .iter()
        .map(|path| {
            let created = std::fs::File::create_new(path)
                .map(|_| ())
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO));
            let _ = std::fs::remove_file(path);
            created.err()
        })
        .collect()
}

/// Opens as many tracked connections as it can towards `address:port`
/// (UDP: each new socket is a new source port, a new conntrack entry on the
/// host; the socket is closed at once, the entry stays until it times out),
/// up to `cap` or `millis`. The datagram is `payload`.
pub(super) fn conntrack_flood(
    address: Ipv4Addr,
    port: u16,
    payload: &[u8],
    cap: u64,
    millis: u64,
) -> ResourceOutcome {
    let until = Instant::now() + Duration::from_millis(millis);
    let to = SocketAddrV4::new(address, port);
    let mut sent = 0u64;
    let mut errno = None;
    while sent < cap && Instant::now() < until {
        let result = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|socket| socket.send_to(payload, to));
        match result {
            // A full table drops silently: sending still works.
            Ok(_) => sent += 1,
            Err(e) => {
                errno = Some(e.raw_os_error().unwrap_or(libc::EIO));
                break;
            }
        }
    }
    ResourceOutcome {
        amount: sent,
        reached_cap: sent >= cap,
        errno,
    }
}

/// Datagrams sent through one socket before the next: a datagram to an
/// address without a neighbour entry waits in the kernel (charged to its
/// socket) until resolution fails, and one socket's send buffer holds a few
/// hundred.
const FLOOD_PER_SOCKET: usize = 32;
/// Datagrams sent back to back before a pause of [`FLOOD_PAUSE`]: each may
/// make an ARP broadcast that the bridge copies to every port, and every
/// copy waits in the kernel's per-CPU receive backlog (1,000 packets);
/// unpaced, 50 tenants' floods overflowed it (453,210 drops in one verify).
const FLOOD_BURST: usize = 8;
/// See [`FLOOD_BURST`].
const FLOOD_PAUSE: Duration = Duration::from_millis(4);

/// Sends one UDP datagram to each address of `ranges` (`(first, count)`),
/// port `port`, with a TTL of 1: a router (the host) never forwards it, so
/// nothing leaves the first hop; but the kernel resolves the next hop
/// first, and for an address on the tenant's link that is a new neighbour
/// entry in the host-wide table. Stops at `millis`. Unprivileged: any
/// workload can do this.
pub(super) fn neighbour_flood(
    ranges: &[(Ipv4Addr, u32)],
    port: u16,
    millis: u64,
) -> ResourceOutcome {
    let until = Instant::now() + Duration::from_millis(millis);
    let total: u64 = ranges.iter().map(|(_, n)| u64::from(*n)).sum();
    let mut sent = 0u64;
    let mut errno = None;
    let mut socket: Option<UdpSocket> = None;
    let mut on_socket = 0usize;
    'all: for (first, count) in ranges {
        for k in 0..*count {
            if Instant::now() >= until {
                break 'all;
            }
            if socket.is_none() || on_socket >= FLOOD_PER_SOCKET {
                let fresh = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
                    .and_then(|s| s.set_ttl(1).map(|()| s));
                match fresh {
                    Ok(s) => {
                        socket = Some(s);
                        on_socket = 0;
                    }
                    Err(e) => {
                        errno = Some(e.raw_os_error().unwrap_or(libc::EIO));
                        break 'all;
                    }
                }
            }
            let Some(s) = &socket else { break 'all };
            let to = Ipv4Addr::from(u32::from(*first).wrapping_add(k));
            if k > 0 && (k as usize).is_multiple_of(FLOOD_BURST) {
                std::thread::sleep(FLOOD_PAUSE);
            }
            on_socket += 1;
            match s.send_to(b"bulkhead-verify", SocketAddrV4::new(to, port)) {
                Ok(_) => sent += 1,
                // Refused on the spot (no route, a full table): counted, go on.
                Err(e) => {
                    errno = errno.or(Some(e.raw_os_error().unwrap_or(libc::EIO)));
                }
            }
        }
    }
    ResourceOutcome {
        amount: sent,
        reached_cap: sent >= total,
        errno,
    }
}
