//! The few rtnetlink requests the `wiring-scale` benchmark sends, encoded by
//! hand the way `bulkhead_node::net::netlink` does (that module is private to
//! the node crate): links, bridge port flags, IPv4 addresses and routes. No
//! `unsafe`; every syscall goes through `rustix`.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const HEADER: usize = 16;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_AF_SPEC_INET6: u16 = 10;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BRPORT_ISOLATED: u16 = 33;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTNH_F_ONLINK: u32 = 4;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;

/// `ENODEV`, `EAFNOSUPPORT` (x86_64 and aarch64 agree).
pub const ENODEV: i32 = 19;
const EAFNOSUPPORT: i32 = 97;

struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        Message {
            buf,
            nests: Vec::new(),
        }
    }

    /// `struct ifinfomsg`.
    fn ifinfo(mut self, index: u32, flags: u32, change: u32) -> Self {
        self.buf.extend_from_slice(&[AF_UNSPEC, 0, 0, 0]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr_str(&mut self, kind: u16, text: &str) {
        let mut data = text.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data);
    }

    fn attr_u32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_ne_bytes());
    }

    fn begin(&mut self, kind: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    fn end(&mut self) {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn attrs(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & !NLA_F_NESTED;
        if len < 4 || len > data.len() {
            break;
        }
        out.push((kind, &data[4..len]));
        let next = len.next_multiple_of(4).min(data.len());
        data = &data[next..];
    }
    out
}

fn u32_of(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

fn str_of(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// A host route of the main table: destination, prefix length, output link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Option<Ipv4Addr>,
    pub dst_len: u8,
    pub oif: Option<u32>,
}

/// A `NETLINK_ROUTE` socket in the namespace it was opened in.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// A socket in the network namespace `netns`, opened by a short-lived
    /// thread that joins it (as the node crate does for each tenant).
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<Self> {
        let ns = netns.try_clone_to_owned()?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    rustix::thread::move_into_link_name_space(
                        ns.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )?;
                    Netlink::open()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netlink thread panicked")))
        })
    }

    fn exchange(&mut self, message: Message) -> io::Result<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = message.finish(seq);
        let dump = u16::from_ne_bytes([request[6], request[7]]) & NLM_F_DUMP == NLM_F_DUMP;
        rustix::net::send(&self.fd, &request, SendFlags::empty())?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (_, len) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            let mut data = &buf[..len.min(buf.len())];
            while data.len() >= HEADER {
                let msg_len = u32_of(data).unwrap_or(0) as usize;
                if msg_len < HEADER || msg_len > data.len() {
                    return Err(io::Error::other("truncated netlink message"));
                }
                let kind = u16::from_ne_bytes([data[4], data[5]]);
                let msg_seq = u32_of(&data[8..]).unwrap_or(0);
                let payload = &data[HEADER..msg_len];
                data = &data[msg_len.next_multiple_of(4).min(data.len())..];
                if msg_seq != seq {
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        let code = u32_of(payload).map(|c| c as i32).unwrap_or(-5);
                        return if code == 0 {
                            Ok(replies)
                        } else {
                            Err(io::Error::from_raw_os_error(-code))
                        };
                    }
                    NLMSG_DONE if dump => return Ok(replies),
                    _ => replies.push((kind, payload.to_vec())),
                }
            }
        }
    }

    fn request(&mut self, message: Message) -> io::Result<()> {
        self.exchange(message).map(drop)
    }

    /// The index of the link called `name`, if any.
    pub fn index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut message = Message::new(RTM_GETLINK, NLM_F_ACK).ifinfo(0, 0, 0);
        message.attr_str(IFLA_IFNAME, name);
        match self.exchange(message) {
            Ok(replies) => Ok(replies
                .iter()
                .filter(|(kind, _)| *kind == RTM_NEWLINK)
                .find_map(|(_, payload)| u32_of(payload.get(4..)?))),
            Err(e) if e.raw_os_error() == Some(ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of the namespace: index and name.
    pub fn links(&mut self) -> io::Result<Vec<(u32, String)>> {
        let message = Message::new(RTM_GETLINK, NLM_F_DUMP).ifinfo(0, 0, 0);
        Ok(self
            .exchange(message)?
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWLINK)
            .filter_map(|(_, payload)| {
                let index = u32_of(payload.get(4..)?)?;
                let name = attrs(payload.get(16..)?)
                    .into_iter()
                    .find(|(k, _)| *k == IFLA_IFNAME)
                    .map(|(_, v)| str_of(v))?;
                Some((index, name))
            })
            .collect())
    }

    /// Creates a bridge (`EEXIST` if the name is taken).
    pub fn create_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut message =
            Message::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        message.attr_str(IFLA_IFNAME, name);
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, "bridge");
        message.end();
        self.request(message)
    }

    /// Creates a veth pair in one request: `host` here (enslaved to `master`
    /// when given), its peer `peer` directly in `peer_netns` with `peer_mac`.
    pub fn create_veth(
        &mut self,
        host: &str,
        master: Option<u32>,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
        peer_mac: [u8; 6],
    ) -> io::Result<()> {
        let mut message =
            Message::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        message.attr_str(IFLA_IFNAME, host);
        if let Some(master) = master {
            message.attr_u32(IFLA_MASTER, master);
        }
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, "veth");
        message.begin(IFLA_INFO_DATA);
        message.begin(VETH_INFO_PEER);
        message.raw(&[AF_UNSPEC, 0, 0, 0]);
        message.raw(&[0; 12]);
        message.attr_str(IFLA_IFNAME, peer);
        message.attr(IFLA_ADDRESS, &peer_mac);
        message.attr_u32(IFLA_NET_NS_FD, peer_netns.as_raw_fd() as u32);
        message.end();
        message.end();
        message.end();
        self.request(message)
    }

    /// `addrgenmode none` on a link that is still down; `false` without IPv6.
    pub fn no_ipv6_addresses(&mut self, index: u32) -> io::Result<bool> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, 0, 0);
        message.begin(IFLA_AF_SPEC);
        message.begin(IFLA_AF_SPEC_INET6);
        message.attr(IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE]);
        message.end();
        message.end();
        match self.request(message) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(EAFNOSUPPORT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Marks a bridge port isolated (`IFLA_BRPORT_ISOLATED`, like
    /// `ip link set dev X type bridge_slave isolated on`).
    pub fn set_isolated(&mut self, index: u32) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, 0, 0);
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_SLAVE_KIND, "bridge");
        message.begin(IFLA_INFO_SLAVE_DATA);
        message.attr(IFLA_BRPORT_ISOLATED, &[1]);
        message.end();
        message.end();
        self.request(message)
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.request(Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, IFF_UP, IFF_UP))
    }

    /// Deletes a link (a veth: both ends); `false` if it did not exist.
    pub fn delete_link(&mut self, index: u32) -> io::Result<bool> {
        match self.request(Message::new(RTM_DELLINK, NLM_F_ACK).ifinfo(index, 0, 0)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        message.raw(&[AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE]);
        message.raw(&index.to_ne_bytes());
        message.attr(IFA_LOCAL, &address.octets());
        message.attr(IFA_ADDRESS, &address.octets());
        if prefix_len < 31 {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(address) | !mask);
            message.attr(IFA_BROADCAST, &broadcast.octets());
        }
        self.request(message)
    }

    /// Sets the default route via `gateway` through `oif`; `onlink` when the
    /// gateway is not in any subnet of the link (a routed /32 tenant).
    pub fn default_route(&mut self, gateway: Ipv4Addr, oif: u32, onlink: bool) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        message.raw(&[
            AF_INET,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        let flags = if onlink { RTNH_F_ONLINK } else { 0 };
        message.raw(&flags.to_ne_bytes());
        message.attr(RTA_DST, &[0, 0, 0, 0]);
        message.attr(RTA_GATEWAY, &gateway.octets());
        message.attr_u32(RTA_OIF, oif);
        self.request(message)
    }

    /// A link-scope route `dst/32 dev oif` (the host's route to a routed tenant).
    pub fn host_route(&mut self, dst: Ipv4Addr, oif: u32) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        message.raw(&[
            AF_INET,
            32,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            RT_SCOPE_LINK,
            RTN_UNICAST,
        ]);
        message.raw(&0u32.to_ne_bytes());
        message.attr(RTA_DST, &dst.octets());
        message.attr_u32(RTA_OIF, oif);
        self.request(message)
    }

    /// The IPv4 routes of the main table.
    pub fn routes(&mut self) -> io::Result<Vec<Route>> {
        let mut message = Message::new(RTM_GETROUTE, NLM_F_DUMP);
        message.raw(&[AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        Ok(self
            .exchange(message)?
            .iter()
            .filter(|(_, payload)| payload.get(4) == Some(&RT_TABLE_MAIN))
            .filter_map(|(_, payload)| {
                let mut route = Route {
                    dst: None,
                    dst_len: *payload.get(1)?,
                    oif: None,
                };
                for (kind, data) in attrs(payload.get(12..)?) {
                    match kind {
                        RTA_DST => {
                            let bytes: [u8; 4] = data.get(..4)?.try_into().ok()?;
                            route.dst = Some(Ipv4Addr::from(bytes));
                        }
                        RTA_OIF => route.oif = u32_of(data),
                        _ => {}
                    }
                }
                Some(route)
            })
            .collect())
    }
}
