//! Attempts that need root in a tenant's network namespace: ICMP echo,
//! source-address spoofing, and the receivers that watch for spoofed and
//! broadcast packets.
//!
//! A tenant's workloads have no `CAP_NET_RAW` (and no ping group) under the
//! restricted and baseline profiles, so the confined probe cannot make these
//! attempts; but a tenant that gets root in its own namespaces can. The
//! verifier makes them **from the host side**: a short thread joins the
//! tenant's network namespace (`setns`), opens a raw socket there and
//! leaves; the socket stays in that namespace. The packets leave through the
//! tenant's own `eth0` and meet the same bridge and firewall as a workload's.
//! This is the documented exception to "every probe runs under the tenant's
//! confinement": it is the stronger attacker, on purpose.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_policy::Protocol;
use rustix::event::{PollFd, PollFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto};
use rustix::thread::LinkNameSpaceType;

/// Opens a raw socket of `protocol` inside the network namespace at `netns`.
fn raw_socket_in(netns: &Path, protocol: rustix::net::Protocol) -> io::Result<OwnedFd> {
    let file = File::open(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> io::Result<OwnedFd> {
                rustix::thread::move_into_link_name_space(
                    file.as_fd(),
                    Some(LinkNameSpaceType::Network),
                )?;
                Ok(rustix::net::socket_with(
                    AddressFamily::INET,
                    SocketType::RAW,
                    SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                    Some(protocol),
                )?)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// The Internet checksum of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A transport segment's checksum over the IPv4 pseudo-header.
fn transport_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(12 + segment.len());
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&dst.octets());
    data.extend_from_slice(&[0, proto]);
    data.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    data.extend_from_slice(segment);
    checksum(&data)
}

/// An IPv4 packet from `src` (any address: that is the point) to `dst`:
/// a UDP datagram or a TCP SYN carrying `payload`.
pub(crate) fn forged_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: Protocol,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let (proto, mut segment) = match protocol {
        Protocol::Udp => {
            let mut s = Vec::new();
            s.extend_from_slice(&40_000u16.to_be_bytes());
            s.extend_from_slice(&port.to_be_bytes());
            s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            s.extend_from_slice(&[0, 0]);
            s.extend_from_slice(payload);
            (17u8, s)
        }
        _ => {
            let mut s = Vec::new();
            s.extend_from_slice(&40_000u16.to_be_bytes());
            s.extend_from_slice(&port.to_be_bytes());
            s.extend_from_slice(&0x6275_6c6bu32.to_be_bytes()); // sequence
            s.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
            s.extend_from_slice(&[5 << 4, 0x02]); // header length, SYN
            s.extend_from_slice(&65_535u16.to_be_bytes()); // window
            s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
            s.extend_from_slice(payload);
            (6u8, s)
        }
    };
    let sum = transport_checksum(src, dst, proto, &segment);
    let at = if proto == 17 { 6 } else { 16 };
    segment[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    let total = (20 + segment.len()) as u16;
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    let sum = checksum(&packet);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet.extend_from_slice(&segment);
    packet
}

/// One forged packet to send from a tenant's namespace.
#[derive(Clone, Debug)]
pub(crate) struct Forged {
    /// The whole IPv4 packet.
    pub packet: Vec<u8>,
    /// Its destination.
    pub to: Ipv4Addr,
}

/// Sends each packet twice from the namespace at `netns` through a raw
/// socket; the errno of each send that failed.
pub(crate) fn send_forged(netns: &Path, packets: &[Forged]) -> io::Result<Vec<Option<i32>>> {
    let socket = raw_socket_in(netns, ipproto::RAW)?;
    Ok(packets
        .iter()
        .map(|p| {
            let to = SocketAddrV4::new(p.to, 0);
            let mut failed = None;
            for _ in 0..2 {
                if let Err(e) =
                    rustix::net::sendto(&socket, &p.packet, rustix::net::SendFlags::empty(), &to)
                {
                    failed = failed.or(Some(e.raw_os_error()));
                }
            }
            failed
        })
        .collect())
}

/// Pings each of `targets` from the namespace at `netns`; whether each
/// answered before `timeout`.
pub(crate) fn icmp_echo(
    netns: &Path,
    targets: &[Ipv4Addr],
    id: u16,
    timeout: Duration,
) -> io::Result<Vec<bool>> {
    let socket = raw_socket_in(netns, ipproto::ICMP)?;
    let request = |seq: u16| {
        let mut m = vec![8, 0, 0, 0];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(b"bulkhead-verify");
        let sum = checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        m
    };
    let send_all = |answered: &[bool]| {
        for (seq, target) in targets.iter().enumerate() {
            if !answered[seq] {
                let _ = rustix::net::sendto(
                    &socket,
                    &request(seq as u16),
                    rustix::net::SendFlags::empty(),
                    &SocketAddrV4::new(*target, 0),
                );
            }
        }
    };
    let mut answered = vec![false; targets.len()];
    send_all(&answered);
    let started = Instant::now();
    let mut resent = false;
    let mut buf = [0u8; 1500];
    while started.elapsed() < timeout && answered.iter().any(|a| !a) {
        if !resent && started.elapsed() >= timeout / 2 {
            send_all(&answered);
            resent = true;
        }
        let mut fds = [PollFd::new(&socket, PollFlags::IN)];
        let wait = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        };
        let _ = rustix::event::poll(&mut fds, Some(&wait));
        while let Ok((n, _, _)) =
            rustix::net::recvfrom(&socket, &mut buf, rustix::net::RecvFlags::empty())
        {
            let packet = &buf[..n];
            let Some(ihl) = packet.first().map(|b| usize::from(b & 0x0f) * 4) else {
                continue;
            };
            if n < ihl + 8 || packet[ihl] != 0 {
                continue;
            }
            let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
            let got_id = u16::from_be_bytes([packet[ihl + 4], packet[ihl + 5]]);
            let seq = usize::from(u16::from_be_bytes([packet[ihl + 6], packet[ihl + 7]]));
            if got_id == id && targets.get(seq) == Some(&from) {
                answered[seq] = true;
            }
        }
    }
    Ok(answered)
}

/// Raw UDP and TCP sockets in a tenant's namespace: every datagram and
/// segment that arrives there, whatever its port, is copied to them.
#[derive(Debug)]
pub(crate) struct Receiver {
    sockets: Vec<OwnedFd>,
}

impl Receiver {
    /// Opens the receivers in the namespace at `netns`.
    pub(crate) fn open(netns: &Path) -> io::Result<Receiver> {
        Ok(Receiver {
            sockets: vec![
                raw_socket_in(netns, ipproto::UDP)?,
                raw_socket_in(netns, ipproto::TCP)?,
            ],
        })
    }

    /// Every payload received so far that starts with `marker`, with the
    /// packet's source address.
    pub(crate) fn drain(&self, marker: &str) -> Vec<(Ipv4Addr, String)> {
        let mut found = Vec::new();
        let mut buf = vec![0u8; 65_536];
        for socket in &self.sockets {
            while let Ok((n, _, _)) =
                rustix::net::recvfrom(socket, &mut buf, rustix::net::RecvFlags::empty())
            {
                let packet = &buf[..n];
                let Some(ihl) = packet.first().map(|b| usize::from(b & 0x0f) * 4) else {
                    continue;
                };
                if n < ihl + 8 {
                    continue;
                }
                let offset = match packet[9] {
                    17 => ihl + 8,
                    6 if n >= ihl + 20 => ihl + usize::from(packet[ihl + 12] >> 4) * 4,
                    _ => continue,
                };
                let payload = String::from_utf8_lossy(packet.get(offset..).unwrap_or(&[]));
                if payload.starts_with(marker) {
                    let from = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
                    found.push((from, payload.into_owned()));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_packets_carry_valid_checksums() {
        let src = Ipv4Addr::new(10, 240, 0, 3);
        let dst = Ipv4Addr::new(10, 240, 0, 4);
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            let packet = forged_packet(src, dst, protocol, 8080, b"bhn-x");
            assert_eq!(checksum(&packet[..20]), 0, "ip header");
            assert_eq!(&packet[12..16], &src.octets());
            let proto = packet[9];
            assert_eq!(transport_checksum(src, dst, proto, &packet[20..]), 0);
            assert_eq!(u16::from_be_bytes([packet[22], packet[23]]), 8080);
            assert!(packet.ends_with(b"bhn-x"));
        }
    }
}
