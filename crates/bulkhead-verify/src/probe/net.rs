//! The network modes: a listener in the destination tenant and the
//! connections from the source tenant, each one process, single-threaded
//! (threads count against the tenant's `pids.max`): non-blocking sockets
//! and one `poll` with one deadline for a whole batch.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use bulkhead_policy::Protocol;
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};

/// Flows tried at once (each is a descriptor).
const BATCH: usize = 384;
/// A UDP datagram without an answer is sent again after this long.
const RESEND: Duration = Duration::from_millis(200);
/// Packets sent back to back before a pause of [`PACE_PAUSE`]. Without
/// pacing, 16 sources starting 384 flows each at once overflowed the
/// kernel's per-CPU receive backlog (`netdev_max_backlog`, 1,000 here; the
/// veths and the bridge queue every packet there): hundreds of thousands of
/// drops in `/proc/net/softnet_stat` at 50 tenants, among them the ARP and
/// DNS packets of allowed flows, which then looked like outages.
const PACE_BURST: usize = 16;
/// See [`PACE_BURST`]: about 4,000 packets a second per source.
const PACE_PAUSE: Duration = Duration::from_millis(4);
/// The name asked of the resolver: one label, which the resolver answers
/// itself (`NXDOMAIN`, or `REFUSED` for a source it has no view for) and
/// never forwards, so the answer does not wait on an upstream.
pub const DNS_PROBE_NAME: &str = "bulkhead-verify-probe";

/// Bind TCP and UDP on `ports` and answer: accept connections, echo
/// datagrams.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListenRequest {
    /// The ports (both protocols each).
    pub ports: Vec<u16>,
    /// Exit after this long even if nobody stops us.
    pub lifetime_ms: u64,
}

/// A port the listener could not bind (another process of the tenant may
/// hold it; it answers then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindFailure {
    /// The protocol.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// Why.
    pub errno: i32,
}

/// The listener's first line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListenReady {
    /// What it could not bind.
    pub failed: Vec<BindFailure>,
}

/// One flow to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The destination.
    pub address: Ipv4Addr,
    /// TCP (connect) or UDP (a datagram that must be echoed).
    pub protocol: Protocol,
    /// The destination port.
    pub port: u16,
    /// A flow to a DNS resolver: over UDP the datagram is a real query (for
    /// [`DNS_PROBE_NAME`]), so an answer means the resolver answered.
    #[serde(default)]
    pub dns: bool,
}

/// Try `flows`, then send `broadcast` datagrams.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// The flows, in order.
    pub flows: Vec<Flow>,
    /// Longest wait for one batch.
    pub timeout_ms: u64,
    /// Payload of the UDP exchange.
    pub payload: String,
}

/// Send UDP broadcasts (nothing answers; receivers are watched from the
/// host).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BroadcastRequest {
    /// Broadcast addresses and ports.
    pub targets: Vec<(Ipv4Addr, u16)>,
    /// The payload (marks the sender).
    pub payload: String,
}

/// How a flow came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// Connected (TCP) or answered (UDP).
    Connected,
    /// Refused by the destination's kernel (a reset, a port unreachable):
    /// the packet got there.
    Refused,
    /// Nothing came back before the deadline (dropped).
    Silent,
    /// Failed locally or with another error (`errno`).
    Error,
}

impl Reach {
    /// Whether the packet demonstrably got to its destination.
    pub fn reached(self) -> bool {
        matches!(self, Reach::Connected | Reach::Refused)
    }
}

/// One flow's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowOutcome {
    /// How it came out.
    pub reach: Reach,
    /// The errno, for [`Reach::Error`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
}

impl FlowOutcome {
    fn of(reach: Reach) -> Self {
        FlowOutcome { reach, errno: None }
    }

    fn error(errno: Errno) -> Self {
        match errno {
            Errno::CONNREFUSED => FlowOutcome::of(Reach::Refused),
            e => FlowOutcome {
                reach: Reach::Error,
                errno: Some(e.raw_os_error()),
            },
        }
    }
}

/// Binds, prints [`ListenReady`] as one JSON line, then serves until killed
/// or `lifetime_ms` passed.
pub(super) fn listen(request: &ListenRequest) -> i32 {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let mut ready = ListenReady::default();
    for port in &request.ports {
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *port);
        match TcpListener::bind(any).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(listener) => tcp.push(listener),
            Err(e) => ready.failed.push(BindFailure {
                protocol: Protocol::Tcp,
                port: *port,
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            }),
        }
        match UdpSocket::bind(any).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
            Ok(socket) => udp.push(socket),
            Err(e) => ready.failed.push(BindFailure {
                protocol: Protocol::Udp,
                port: *port,
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            }),
        }
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(&ready).unwrap_or_else(|_| "{}".into())
        );
        let _ = out.flush();
    }
    let until = Instant::now() + Duration::from_millis(request.lifetime_ms);
    let mut buf = [0u8; 1500];
    while Instant::now() < until {
        let mut fds: Vec<PollFd<'_>> = tcp
            .iter()
            .map(|l| PollFd::new(l, PollFlags::IN))
            .chain(udp.iter().map(|s| PollFd::new(s, PollFlags::IN)))
            .collect();
        let timeout = rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut fds, Some(&timeout)).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        for (i, listener) in tcp.iter().enumerate() {
            if ready[i] {
                while let Ok((stream, _)) = listener.accept() {
                    drop(stream);
                }
            }
        }
        for (i, socket) in udp.iter().enumerate() {
            if ready[tcp.len() + i] {
                while let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        }
    }
    0
}

/// A flow in progress.
struct Pending {
    index: usize,
    socket: OwnedFd,
    udp: bool,
    dns: bool,
    sent: Instant,
}

/// A DNS query for [`DNS_PROBE_NAME`], type A, class IN, recursion desired.
pub fn dns_query(id: u16) -> Vec<u8> {
    let mut query = Vec::with_capacity(12 + DNS_PROBE_NAME.len() + 6);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in DNS_PROBE_NAME.split('.') {
        query.push(u8::try_from(label.len()).unwrap_or(63).min(63));
        query.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

fn start(flow: &Flow, payload: &[u8]) -> Result<Option<OwnedFd>, Errno> {
    let kind = match flow.protocol {
        Protocol::Udp => SocketType::DGRAM,
        _ => SocketType::STREAM,
    };
    let socket = rustix::net::socket_with(
        AddressFamily::INET,
        kind,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrV4::new(flow.address, flow.port);
    match rustix::net::connect(&socket, &addr) {
        Ok(()) | Err(Errno::INPROGRESS) => {}
        Err(e) => return Err(e),
    }
    if flow.protocol == Protocol::Udp {
        rustix::net::send(&socket, payload, rustix::net::SendFlags::empty())?;
    }
    Ok(Some(socket))
}

/// Tries every flow, `BATCH` at a time, each batch under one deadline.
pub(super) fn connect(request: &ConnectRequest) -> Vec<FlowOutcome> {
    let timeout = Duration::from_millis(request.timeout_ms);
    let payload = request.payload.as_bytes();
    let query = dns_query(0x6268);
    let payload_of = |dns: bool| -> &[u8] { if dns { &query } else { payload } };
    let mut out = vec![FlowOutcome::of(Reach::Silent); request.flows.len()];
    let mut buf = [0u8; 1500];
    for (chunk, flows) in request.flows.chunks(BATCH).enumerate() {
        let mut pending: Vec<Pending> = Vec::new();
        for (k, flow) in flows.iter().enumerate() {
            let index = chunk * BATCH + k;
            if k > 0 && k.is_multiple_of(PACE_BURST) {
                std::thread::sleep(PACE_PAUSE);
            }
            match start(flow, payload_of(flow.dns)) {
                Ok(Some(socket)) => pending.push(Pending {
                    index,
                    socket,
                    udp: flow.protocol == Protocol::Udp,
                    dns: flow.dns,
                    sent: Instant::now(),
                }),
                Ok(None) => {}
                Err(e) => out[index] = FlowOutcome::error(e),
            }
        }
        let deadline = Instant::now() + timeout;
        while !pending.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = (deadline - now).min(RESEND);
            let mut fds: Vec<PollFd<'_>> = pending
                .iter()
                .map(|p| {
                    let want = if p.udp { PollFlags::IN } else { PollFlags::OUT };
                    PollFd::new(&p.socket, want)
                })
                .collect();
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: i64::from(wait.subsec_nanos()).max(1_000_000),
            };
            let _ = rustix::event::poll(&mut fds, Some(&timeout));
            let events: Vec<PollFlags> = fds.iter().map(|f| f.revents()).collect();
            drop(fds);
            let mut still = Vec::new();
            let mut resent = 0usize;
            for (p, events) in pending.into_iter().zip(events) {
                if events.is_empty() {
                    if p.udp && p.sent.elapsed() >= RESEND {
                        resent += 1;
                        if resent.is_multiple_of(PACE_BURST) {
                            std::thread::sleep(PACE_PAUSE);
                        }
                        let _ = rustix::net::send(
                            p.socket.as_fd(),
                            payload_of(p.dns),
                            rustix::net::SendFlags::empty(),
                        );
                        still.push(Pending {
                            sent: Instant::now(),
                            ..p
                        });
                    } else {
                        still.push(p);
                    }
                    continue;
                }
                out[p.index] = if p.udp {
                    match rustix::net::recv(&p.socket, &mut buf, rustix::net::RecvFlags::empty()) {
                        Ok(_) => FlowOutcome::of(Reach::Connected),
                        Err(Errno::AGAIN) => {
                            still.push(p);
                            continue;
                        }
                        Err(e) => FlowOutcome::error(e),
                    }
                } else {
                    match rustix::net::sockopt::socket_error(&p.socket) {
                        Ok(Ok(())) => FlowOutcome::of(Reach::Connected),
                        Ok(Err(e)) | Err(e) => FlowOutcome::error(e),
                    }
                };
            }
            pending = still;
        }
    }
    out
}

/// Sends each broadcast twice; the errno of each first failure, if any.
pub(super) fn broadcast(request: &BroadcastRequest) -> Vec<Option<i32>> {
    let socket = match UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.set_broadcast(true).map(|()| s))
    {
        Ok(socket) => socket,
        Err(e) => return vec![e.raw_os_error(); request.targets.len()],
    };
    request
        .targets
        .iter()
        .map(|(address, port)| {
            let mut failed = None;
            for _ in 0..2 {
                if let Err(e) = socket.send_to(
                    request.payload.as_bytes(),
                    SocketAddrV4::new(*address, *port),
                ) {
                    failed = failed.or(e.raw_os_error());
                }
            }
            failed
        })
        .collect()
}
