//! The resolver process: what runs when the `bulkhead` binary is re-executed
//! with [`RESOLVER_ENV`] set (see [`super::process`] for how it is started).
//!
//! It reads the zone file named by the variable, binds UDP and TCP port 53
//! on the bridge address, gives up root (uid/gid 65534, no supplementary
//! groups, `no_new_privs`: the parser faces every tenant), says `ready` on
//! stdout and serves until killed. A changed zone means a restart, never a
//! reload: what runs is exactly what the record's digest says.
//!
//! The source address of a query picks the view. The bridge's anti-spoofing
//! table guarantees a tenant sends only from its own address, so a tenant
//! cannot borrow another's view.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::wire::{self, ParseError, Query, Rcode, ReplyFlags};
use super::zone::{Answer, Index, TTL, Zone};

/// Environment variable that marks a resolver invocation; its value is the
/// zone file.
pub const RESOLVER_ENV: &str = "BULKHEAD_RESOLVER";
/// The DNS port.
pub const PORT: u16 = 53;
/// How long one upstream may take.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP client may stay idle.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Forwarded queries (and TCP connections) in flight at once; more are
/// answered `SERVFAIL` (or closed): a tenant cannot exhaust the host's threads.
const MAX_IN_FLIGHT: usize = 64;
/// The unprivileged id the resolver runs as once its sockets are bound.
const NOBODY: u32 = 65534;

/// Whether this process was started as the resolver. The binary checks this
/// first thing in `main`, then calls [`resolver_main`].
pub fn is_resolver_invocation() -> bool {
    std::env::var_os(RESOLVER_ENV).is_some()
}

/// Runs the resolver and never returns. Call it from `main` before any
/// other thread exists (dropping privileges is per thread on Linux).
pub fn resolver_main() -> ! {
    match serve() {
        Ok(never) => match never {},
        Err(message) => {
            say(&format!("error {message}"));
            eprintln!("bulkhead-resolver: {message}");
            std::process::exit(1)
        }
    }
}

enum Never {}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn serve() -> Result<Never, String> {
    let path = std::env::var_os(RESOLVER_ENV).unwrap_or_default();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.to_string_lossy()))?;
    let zone = Zone::parse(&text)?;
    let (udp, tcp) = bind(&zone)
        .map_err(|(what, e)| format!("cannot bind {what} {}:{PORT}: {e}", zone.listen))?;
    drop_privileges()?;
    let index = Arc::new(Index::new(zone));
    say("ready");
    let udp = Arc::new(udp);
    let in_flight = Arc::new(AtomicUsize::new(0));
    {
        let index = Arc::clone(&index);
        let in_flight = Arc::clone(&in_flight);
        std::thread::Builder::new()
            .name("tcp".to_owned())
            .spawn(move || serve_tcp(&tcp, &index, &in_flight))
            .map_err(|e| format!("cannot start the tcp thread: {e}"))?;
    }
    let mut buffer = [0u8; 4096];
    loop {
        let Ok((len, from)) = udp.recv_from(&mut buffer) else {
            continue;
        };
        let message = &buffer[..len];
        match decide(&index, from, message) {
            Decision::Reply(reply) => {
                let _ = udp.send_to(&reply, from);
            }
            Decision::Drop => {}
            Decision::Forward(query) => {
                let Some(slot) = Slot::take(&in_flight) else {
                    let _ = udp.send_to(&servfail(&index, &query), from);
                    continue;
                };
                let (index, udp, message) =
                    (Arc::clone(&index), Arc::clone(&udp), message.to_vec());
                let _ = std::thread::Builder::new()
                    .name("forward".to_owned())
                    .spawn(move || {
                        let _slot = slot;
                        let reply = forward_udp(&index.zone().upstreams, &query, &message)
                            .unwrap_or_else(|| servfail(&index, &query));
                        let _ = udp.send_to(&reply, from);
                    });
            }
        }
    }
}

/// UDP and TCP sockets on the bridge address. Not bound to a device: the
/// tenants of every bridge shard reach it; the firewall's `input` chain keeps
/// every other interface but loopback off it, and no two instances share
/// the address (`link::ensure_bridge` refuses a range routed elsewhere).
fn bind(zone: &Zone) -> Result<(UdpSocket, TcpListener), (&'static str, std::io::Error)> {
    use rustix::net::{AddressFamily, SocketAddrV4, SocketType};
    let address = SocketAddrV4::new(zone.listen, PORT);
    let open = |kind: SocketType, what: &'static str| {
        let fd =
            rustix::net::socket(AddressFamily::INET, kind, None).map_err(|e| (what, e.into()))?;
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true).map_err(|e| (what, e.into()))?;
        rustix::net::bind(&fd, &address).map_err(|e| (what, e.into()))?;
        Ok::<_, (&'static str, std::io::Error)>(fd)
    };
    let udp = open(SocketType::DGRAM, "udp")?;
    let tcp = open(SocketType::STREAM, "tcp")?;
    rustix::net::listen(&tcp, 128).map_err(|e| ("tcp", e.into()))?;
    Ok((UdpSocket::from(udp), TcpListener::from(tcp)))
}

/// A counted place among [`MAX_IN_FLIGHT`]; released on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A place, if fewer than [`MAX_IN_FLIGHT`] are taken.
    fn take(counter: &Arc<AtomicUsize>) -> Option<Slot> {
        let held = counter.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(Arc::clone(counter));
        (held < MAX_IN_FLIGHT).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn drop_privileges() -> Result<(), String> {
    use rustix::process::{Gid, Uid};
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let single = crate::sys::process::SingleThreaded::check()
        .map_err(|e| format!("cannot count threads: {e}"))?;
    if single.is_none() {
        return Err("more than one thread before dropping privileges".to_owned());
    }
    let gid = Gid::from_raw(NOBODY);
    // rustix's id calls act on this thread only: it is the only one.
    rustix::thread::set_thread_groups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
    let uid = Uid::from_raw(NOBODY);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
    Ok(())
}

/// What to do with one message.
#[derive(Debug)]
enum Decision {
    Reply(Vec<u8>),
    Forward(Query),
    Drop,
}

fn flags(index: &Index, authoritative: bool) -> ReplyFlags {
    ReplyFlags {
        authoritative,
        recursion_available: !index.zone().upstreams.is_empty(),
    }
}

fn servfail(index: &Index, query: &Query) -> Vec<u8> {
    wire::reply(query, Rcode::ServFail, flags(index, false), &[], 0)
}

fn decide(index: &Index, from: SocketAddr, message: &[u8]) -> Decision {
    let query = match wire::parse_query(message) {
        Ok(query) => query,
        Err(ParseError::Drop) => return Decision::Drop,
        Err(ParseError::Reply { id, rcode }) => {
            return Decision::Reply(wire::error_reply(id, rcode));
        }
    };
    let IpAddr::V4(source) = from.ip() else {
        return Decision::Reply(wire::reply(
            &query,
            Rcode::Refused,
            flags(index, false),
            &[],
            0,
        ));
    };
    let authority = flags(index, true);
    match index.answer(source, &query.name) {
        Answer::Refused => Decision::Reply(wire::reply(
            &query,
            Rcode::Refused,
            flags(index, false),
            &[],
            0,
        )),
        Answer::NxDomain => {
            Decision::Reply(wire::reply(&query, Rcode::NxDomain, authority, &[], TTL))
        }
        Answer::Address(address) => {
            let answers: &[Ipv4Addr] = if query.qclass == wire::CLASS_IN
                && (query.qtype == wire::TYPE_A || query.qtype == wire::TYPE_ANY)
            {
                &[address][..]
            } else {
                // The name exists, not with that type (AAAA, MX…): NODATA.
                &[]
            };
            Decision::Reply(wire::reply(&query, Rcode::NoError, authority, answers, TTL))
        }
        Answer::Forward => Decision::Forward(query),
    }
}

/// Whether `reply` answers `query` (same id, same question).
fn answers(query: &Query, reply: &[u8]) -> bool {
    reply.len() >= wire::HEADER_LEN + query.question.len()
        && reply[..2] == query.id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[wire::HEADER_LEN..wire::HEADER_LEN + query.question.len()]
            .eq_ignore_ascii_case(&query.question)
}

/// Asks each upstream in turn over UDP; the first matching reply, as sent.
fn forward_udp(upstreams: &[IpAddr], query: &Query, message: &[u8]) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let bind: SocketAddr = match upstream {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let Ok(socket) = UdpSocket::bind(bind) else {
            continue;
        };
        if socket.connect((*upstream, PORT)).is_err()
            || socket.set_read_timeout(Some(UPSTREAM_TIMEOUT)).is_err()
            || socket.send(message).is_err()
        {
            continue;
        }
        let mut buffer = [0u8; 4096];
        // Skip stray datagrams until the deadline (the socket is connected:
        // only the upstream can send to it).
        while let Ok(len) = socket.recv(&mut buffer) {
            if answers(query, &buffer[..len]) {
                return Some(buffer[..len].to_vec());
            }
        }
    }
    None
}

/// Asks each upstream in turn over TCP.
fn forward_tcp(upstreams: &[IpAddr], query: &Query, message: &[u8]) -> Option<Vec<u8>> {
    for upstream in upstreams {
        let Ok(mut stream) =
            TcpStream::connect_timeout(&SocketAddr::new(*upstream, PORT), UPSTREAM_TIMEOUT)
        else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(UPSTREAM_TIMEOUT));
        let _ = stream.set_write_timeout(Some(UPSTREAM_TIMEOUT));
        if write_framed(&mut stream, message).is_err() {
            continue;
        }
        if let Ok(Some(reply)) = read_framed(&mut stream)
            && answers(query, &reply)
        {
            return Some(reply);
        }
    }
    None
}

fn write_framed(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed)
}

/// One length-prefixed message; `None` at a clean end of stream.
fn read_framed(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message)?;
    Ok(Some(message))
}

fn serve_tcp(listener: &TcpListener, index: &Arc<Index>, in_flight: &Arc<AtomicUsize>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let Some(slot) = Slot::take(in_flight) else {
            continue; // dropped: the connection closes
        };
        let index = Arc::clone(index);
        let _ = std::thread::Builder::new()
            .name("tcp-client".to_owned())
            .spawn(move || {
                let _slot = slot;
                serve_tcp_client(stream, &index);
            });
    }
}

fn serve_tcp_client(mut stream: TcpStream, index: &Index) {
    let Ok(from) = stream.peer_addr() else { return };
    let _ = stream.set_read_timeout(Some(TCP_IDLE));
    let _ = stream.set_write_timeout(Some(TCP_IDLE));
    while let Ok(Some(message)) = read_framed(&mut stream) {
        let reply = match decide(index, from, &message) {
            Decision::Reply(reply) => reply,
            Decision::Drop => return,
            Decision::Forward(query) => forward_tcp(&index.zone().upstreams, &query, &message)
                .unwrap_or_else(|| servfail(index, &query)),
        };
        if write_framed(&mut stream, &reply).is_err() {
            return;
        }
    }
}

/// Waits for the resolver's first line on `reader` (`ready` or `error …`).
pub(crate) fn read_ready(reader: impl std::io::Read) -> Result<(), String> {
    let mut line = String::new();
    std::io::BufReader::new(reader)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the resolver's first line: {e}"))?;
    match line.trim() {
        "ready" => Ok(()),
        "" => Err("the resolver exited before it was ready".to_owned()),
        other => Err(other.strip_prefix("error ").unwrap_or(other).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn index() -> Index {
        let a = Ipv4Addr::new(10, 9, 0, 2);
        Index::new(Zone {
            listen: Ipv4Addr::new(10, 9, 0, 1),
            upstreams: Vec::new(),
            tenants: BTreeSet::from(["a".to_owned()]),
            names: vec![("a".to_owned(), a)],
            views: BTreeMap::from([(a, vec![0])]),
        })
    }

    fn from(last: u8) -> SocketAddr {
        (Ipv4Addr::new(10, 9, 0, last), 40000).into()
    }

    #[test]
    fn decisions_follow_the_view() {
        let index = index();
        let Decision::Reply(reply) = decide(&index, from(2), &wire::build_query(1, "a", 1)) else {
            panic!("expected a reply");
        };
        assert_eq!(
            wire::parse_reply(&reply),
            Some((1, 0, vec![Ipv4Addr::new(10, 9, 0, 2)]))
        );
        let Decision::Reply(reply) = decide(&index, from(2), &wire::build_query(2, "a", 28)) else {
            panic!("expected a reply");
        };
        assert_eq!(
            wire::parse_reply(&reply),
            Some((2, 0, vec![])),
            "AAAA: NODATA"
        );
        let Decision::Reply(reply) = decide(&index, from(3), &wire::build_query(3, "a", 1)) else {
            panic!("expected a reply");
        };
        assert_eq!(wire::parse_reply(&reply), Some((3, 5, vec![])), "refused");
        let Decision::Reply(reply) =
            decide(&index, from(2), &wire::build_query(4, "example.com", 1))
        else {
            panic!("expected a reply");
        };
        assert_eq!(
            wire::parse_reply(&reply),
            Some((4, 3, vec![])),
            "no upstream"
        );
    }

    #[test]
    fn ready_line() {
        assert_eq!(read_ready(&b"ready\n"[..]), Ok(()));
        assert_eq!(
            read_ready(&b"error cannot bind\n"[..]),
            Err("cannot bind".to_owned())
        );
        assert!(read_ready(&b""[..]).is_err());
    }
}
