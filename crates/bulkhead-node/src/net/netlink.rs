//! A small netlink client: just the requests tenant wiring needs (links,
//! IPv4 addresses, the default route) and the conntrack table's dump and
//! delete (nfnetlink), encoded by hand.
//!
//! Why not `rtnetlink`: it needs an async runtime for what is, per tenant, a
//! handful of request/acknowledge exchanges, and a socket in a *tenant's*
//! network namespace anyway (opened from a thread that joined it, see
//! [`Netlink::open_in`]). The wire format is stable kernel ABI
//! (`<linux/netlink.h>`, `<linux/rtnetlink.h>`, `<linux/if_link.h>`); every
//! syscall goes through `rustix`, so this module has no `unsafe`.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

// <linux/netlink.h>
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

// <linux/rtnetlink.h>
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;

// <linux/if_link.h>
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_AF_SPEC: u16 = 26;
/// Inside `IFLA_AF_SPEC`, the IPv6 part is the attribute of type `AF_INET6`.
const IFLA_AF_SPEC_INET6: u16 = 10;
const IFLA_INET6_ADDR_GEN_MODE: u16 = 8;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BRPORT_ISOLATED: u16 = 33;
const IFLA_BR_MCAST_SNOOPING: u16 = 23;
const VETH_INFO_PEER: u16 = 1;

// <linux/if_addr.h>, <linux/rtnetlink.h> (routes)
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// `NUD_PERMANENT`: never probed, never garbage-collected, never replaced by
/// what an ARP packet says.
pub(crate) const NUD_PERMANENT: u16 = 0x80;
const RTN_UNICAST: u8 = 1;

// <linux/netfilter/nfnetlink.h>, <linux/netfilter/nfnetlink_conntrack.h>
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
const CTA_FILTER_F_CTA_IP_SRC: u32 = 1 << 0;
const CTA_FILTER_F_CTA_IP_DST: u32 = 1 << 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;

// <linux/netfilter/nfnetlink.h>, <linux/netfilter/nf_tables.h>
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;
/// Elements per message: the element list is one attribute, whose length is 16 bits.
const ELEMENTS_PER_MESSAGE: usize = 256;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
/// `IFF_UP`.
pub(crate) const IFF_UP: u32 = 0x1;

/// What a link dump says about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub flags: u32,
    /// The bridge (or other master) it is enslaved to.
    pub master: Option<u32>,
    /// `IFLA_INFO_KIND`: `veth`, `bridge`, ….
    pub kind: Option<String>,
    pub mac: Option<[u8; 6]>,
    /// For a veth: the peer's index (in the peer's namespace).
    pub peer: Option<u32>,
    /// For a bridge port: whether it is isolated (`IFLA_BRPORT_ISOLATED`).
    pub isolated: Option<bool>,
    /// For a bridge: whether it snoops multicast (`IFLA_BR_MCAST_SNOOPING`).
    pub multicast_snooping: Option<bool>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }
}

/// One IPv4 address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Address {
    pub index: u32,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

/// A route of the main table (IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub dst: Option<Ipv4Addr>,
    pub dst_len: u8,
    pub scope: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// One entry of the conntrack table (IPv4), as the kernel dumped it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tracked {
    /// Source of the original direction.
    pub src: Ipv4Addr,
    /// Destination of the original direction.
    pub dst: Ipv4Addr,
    /// `CTA_TUPLE_ORIG` as dumped: enough to name the entry in a delete.
    orig: Vec<u8>,
    /// `CTA_ZONE`, when the entry has one.
    zone: Option<Vec<u8>>,
}

/// Set elements to add or delete in one nftables set, keys encoded as the
/// kernel stores them (each field of a concatenation padded to 4 bytes,
/// integers in network order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SetEdit {
    /// `NFPROTO_INET` (1) or `NFPROTO_BRIDGE` (7).
    pub family: u8,
    /// The set.
    pub set: &'static str,
    /// Elements to delete: key, and key end for interval sets.
    pub delete: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Elements to add.
    pub add: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// A request under construction: header, fixed part, attributes.
struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set by `finish`
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
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

    /// `struct nfgenmsg` for IPv4, version 0, resource id 0.
    fn nfgen(self) -> Self {
        self.nfgen_with(AF_INET, 0)
    }

    /// `struct nfgenmsg`: family, version 0, resource id (network order).
    fn nfgen_with(mut self, family: u8, res_id: u16) -> Self {
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
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
        self.pad();
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

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// Attributes `(type, payload)` of a netlink attribute stream.
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

fn ipv4_of(data: &[u8]) -> Option<Ipv4Addr> {
    let bytes: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(bytes))
}

fn str_of(data: &[u8]) -> String {
    let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// A `NETLINK_ROUTE` socket bound to the network namespace it was opened in.
#[derive(Debug)]
pub(crate) struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None, // NETLINK_ROUTE is protocol 0
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// A `NETLINK_NETFILTER` socket in the calling thread's network
    /// namespace (for the conntrack table).
    pub fn open_netfilter() -> io::Result<Self> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            Some(rustix::net::netlink::NETFILTER),
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
        Ok(Netlink { fd, seq: 1 })
    }

    /// Every IPv4 entry of the conntrack table (a `NETLINK_NETFILTER` socket).
    pub fn conntrack(&mut self) -> io::Result<Vec<Tracked>> {
        let kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
        let replies = self.exchange(Message::new(kind, NLM_F_DUMP).nfgen())?;
        let new = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
        Ok(replies
            .iter()
            .filter(|(kind, _)| *kind == new)
            .filter_map(|(_, payload)| parse_tracked(payload.get(4..)?))
            .collect())
    }

    /// The IPv4 conntrack entries whose original direction has `address` as
    /// its destination (`as_destination`) or its source, selected by the
    /// kernel (`CTA_FILTER` on the original tuple, Linux 5.9+): only those are
    /// copied out, instead of the whole table. A kernel that predates the
    /// filter ignores the attribute and dumps everything, so callers still
    /// check each entry.
    pub fn conntrack_of(
        &mut self,
        address: Ipv4Addr,
        as_destination: bool,
    ) -> io::Result<Vec<Tracked>> {
        let kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
        let (field, flag) = if as_destination {
            (CTA_IP_V4_DST, CTA_FILTER_F_CTA_IP_DST)
        } else {
            (CTA_IP_V4_SRC, CTA_FILTER_F_CTA_IP_SRC)
        };
        let mut message = Message::new(kind, NLM_F_DUMP).nfgen();
        message.begin(CTA_TUPLE_ORIG);
        message.begin(CTA_TUPLE_IP);
        message.attr(field, &address.octets());
        message.end();
        message.end();
        message.begin(CTA_FILTER);
        message.attr_u32(CTA_FILTER_ORIG_FLAGS, flag);
        message.attr_u32(CTA_FILTER_REPLY_FLAGS, 0);
        message.end();
        let replies = self.exchange(message)?;
        let new = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
        Ok(replies
            .iter()
            .filter(|(kind, _)| *kind == new)
            .filter_map(|(_, payload)| parse_tracked(payload.get(4..)?))
            .collect())
    }

    /// Deletes one conntrack entry; `false` when it was already gone.
    pub fn delete_tracked(&mut self, entry: &Tracked) -> io::Result<bool> {
        let kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
        let mut message = Message::new(kind, NLM_F_ACK).nfgen();
        message.attr(CTA_TUPLE_ORIG | NLA_F_NESTED, &entry.orig);
        if let Some(zone) = &entry.zone {
            message.attr(CTA_ZONE, zone);
        }
        match self.request(message) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds and deletes nftables set elements of `table` in one batch (one
    /// transaction: all of it or none of it), deletions first. A
    /// `NETLINK_NETFILTER` socket; no table or set cache is fetched.
    pub fn edit_set_elements(&mut self, table: &str, edits: &[SetEdit]) -> io::Result<()> {
        let kind = |msg: u16| (NFNL_SUBSYS_NFTABLES << 8) | msg;
        let mut messages = Vec::new();
        for (msg, flags) in [(NFT_MSG_DELSETELEM, 0), (NFT_MSG_NEWSETELEM, NLM_F_CREATE)] {
            for edit in edits {
                let elements = if msg == NFT_MSG_DELSETELEM {
                    &edit.delete
                } else {
                    &edit.add
                };
                for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
                    let mut m =
                        Message::new(kind(msg), flags | NLM_F_ACK).nfgen_with(edit.family, 0);
                    m.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
                    m.attr_str(NFTA_SET_ELEM_LIST_SET, edit.set);
                    m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
                    for (key, end) in chunk {
                        m.begin(NFTA_LIST_ELEM);
                        m.begin(NFTA_SET_ELEM_KEY);
                        m.attr(NFTA_DATA_VALUE, key);
                        m.end();
                        if let Some(end) = end {
                            m.begin(NFTA_SET_ELEM_KEY_END);
                            m.attr(NFTA_DATA_VALUE, end);
                            m.end();
                        }
                        m.end();
                    }
                    m.end();
                    messages.push(m);
                }
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        self.batch(messages)
    }

    /// Sends `messages` between a batch begin and end (nfnetlink, nftables
    /// subsystem) in one datagram and waits for each one's acknowledgement;
    /// the first error, if any (the kernel then applied none of them).
    fn batch(&mut self, messages: Vec<Message>) -> io::Result<()> {
        let mut request = Vec::new();
        let first = self.seq.wrapping_add(1);
        let mut seq = first;
        let begin =
            Message::new(NFNL_MSG_BATCH_BEGIN, 0).nfgen_with(AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
        request.extend(begin.finish(seq));
        let count = messages.len() as u32;
        for message in messages {
            seq = seq.wrapping_add(1);
            request.extend(message.finish(seq));
        }
        seq = seq.wrapping_add(1);
        let end = Message::new(NFNL_MSG_BATCH_END, 0).nfgen_with(AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
        request.extend(end.finish(seq));
        self.seq = seq;
        rustix::net::send(&self.fd, &request, SendFlags::empty())?;
        let mut acked = 0u32;
        let mut buf = vec![0u8; 64 * 1024];
        while acked < count {
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
                if kind != NLMSG_ERROR || msg_seq.wrapping_sub(first) > count + 1 {
                    continue;
                }
                acked += 1;
                let code = u32_of(payload).map(|c| c as i32).unwrap_or(-libc::EIO);
                if code != 0 {
                    // The kernel aborts a batch with a failed message whole.
                    return Err(io::Error::from_raw_os_error(-code));
                }
            }
        }
        Ok(())
    }

    /// A socket in the network namespace `netns` (a namespace file). A
    /// socket stays in the namespace it was created in, so a short-lived
    /// thread joins the namespace, opens it and hands it back; the calling
    /// thread never changes namespace.
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

    /// Sends `message` and returns every reply payload (type, bytes after
    /// the header) until the acknowledgement or the end of a dump.
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
                        let code = u32_of(payload).map(|c| c as i32).unwrap_or(-libc::EIO);
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

    /// The link called `name`, if any.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut message = Message::new(RTM_GETLINK, NLM_F_ACK).ifinfo(0, 0, 0);
        message.attr_str(IFLA_IFNAME, name);
        match self.exchange(message) {
            Ok(replies) => Ok(replies
                .iter()
                .filter(|(kind, _)| *kind == RTM_NEWLINK)
                .find_map(|(_, payload)| parse_link(payload))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a link of a kind without options, e.g. `bridge` or `ifb`
    /// (fails with `EEXIST` if the name is taken).
    pub fn create_link(&mut self, name: &str, kind: &str) -> io::Result<()> {
        let mut message =
            Message::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        message.attr_str(IFLA_IFNAME, name);
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, kind);
        message.end();
        self.request(message)
    }

    /// Creates a veth pair in one request: `host` here, enslaved to
    /// `master`; its peer `peer` directly in the namespace `peer_netns` with
    /// the MAC address `peer_mac` (so the tenant end never exists on the
    /// host under a name that could clash).
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
        peer_mac: [u8; 6],
    ) -> io::Result<()> {
        let mut message =
            Message::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        message.attr_str(IFLA_IFNAME, host);
        message.attr_u32(IFLA_MASTER, master);
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, "veth");
        message.begin(IFLA_INFO_DATA);
        message.begin(VETH_INFO_PEER);
        // The peer's own `struct ifinfomsg`, then its attributes.
        message.raw(&[AF_UNSPEC, 0, 0, 0]);
        message.raw(&[0; 12]);
        message.attr_str(IFLA_IFNAME, peer);
        message.attr(IFLA_ADDRESS, &peer_mac);
        let fd = peer_netns.as_raw_fd_u32();
        message.attr_u32(IFLA_NET_NS_FD, fd);
        message.end();
        message.end();
        message.end();
        self.request(message)
    }

    /// Turns off IPv6 address generation on a link that is still down
    /// (`addrgenmode none`): brought up, it gets no link-local address, so the
    /// kernel runs no duplicate address detection, multicast joins or router
    /// solicitation for it. Tenant ranges are IPv4 only and the firewall drops
    /// every IPv6 packet from tenants; this only spares per-device work. The
    /// kernel here refuses the attribute at creation (`EAFNOSUPPORT`), hence a
    /// request of its own. `Ok(false)` when the host has no IPv6 at all.
    pub fn set_no_ipv6_addresses(&mut self, index: u32) -> io::Result<bool> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, 0, 0);
        message.begin(IFLA_AF_SPEC);
        message.begin(IFLA_AF_SPEC_INET6);
        message.attr(IFLA_INET6_ADDR_GEN_MODE, &[IN6_ADDR_GEN_MODE_NONE]);
        message.end();
        message.end();
        match self.request(message) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets or clears `IFF_UP`.
    pub fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let flags = if up { IFF_UP } else { 0 };
        self.request(Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, flags, IFF_UP))
    }

    /// Enslaves `index` to `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, 0, 0);
        message.attr_u32(IFLA_MASTER, master);
        self.request(message)
    }

    /// Sets the MAC address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, 0, 0);
        message.attr(IFLA_ADDRESS, &mac);
        self.request(message)
    }

    /// Deletes a link (for a veth, both ends); `false` if it did not exist.
    pub fn delete_link(&mut self, index: u32) -> io::Result<bool> {
        match self.request(Message::new(RTM_DELLINK, NLM_F_ACK).ifinfo(index, 0, 0)) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every IPv4 address of the namespace.
    pub fn addresses(&mut self) -> io::Result<Vec<Address>> {
        let mut message = Message::new(RTM_GETADDR, NLM_F_DUMP);
        message.raw(&[AF_INET, 0, 0, 0, 0, 0, 0, 0]);
        Ok(self
            .exchange(message)?
            .iter()
            .filter_map(|(_, payload)| {
                let index = u32_of(payload.get(4..)?)?;
                let prefix_len = *payload.get(1)?;
                let address = attrs(payload.get(8..)?)
                    .into_iter()
                    .filter(|(kind, _)| *kind == IFA_LOCAL || *kind == IFA_ADDRESS)
                    .find_map(|(_, data)| ipv4_of(data))?;
                Some(Address {
                    index,
                    address,
                    prefix_len,
                })
            })
            .collect())
    }

    /// Adds `address/prefix_len` to `index` (replacing its flags if present).
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        message.raw(&[AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE]);
        message.raw(&index.to_ne_bytes());
        message.attr(IFA_LOCAL, &address.octets());
        message.attr(IFA_ADDRESS, &address.octets());
        let host_bits = 32 - u32::from(prefix_len.min(32));
        let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
        if prefix_len < 31 {
            let broadcast = Ipv4Addr::from(u32::from(address) | !mask);
            message.attr(IFA_BROADCAST, &broadcast.octets());
        }
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
                let dst_len = *payload.get(1)?;
                let mut route = Route {
                    dst: None,
                    dst_len,
                    scope: *payload.get(6)?,
                    gateway: None,
                    oif: None,
                };
                for (kind, data) in attrs(payload.get(12..)?) {
                    match kind {
                        RTA_DST => route.dst = ipv4_of(data),
                        RTA_GATEWAY => route.gateway = ipv4_of(data),
                        RTA_OIF => route.oif = u32_of(data),
                        _ => {}
                    }
                }
                Some(route)
            })
            .collect())
    }

    /// Sets the default route to `gateway` through `oif` (replacing one).
    pub fn replace_default_route(&mut self, gateway: Ipv4Addr, oif: u32) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        message.raw(&[
            AF_INET,
            0, // dst_len: default
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_STATIC,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ]);
        message.raw(&0u32.to_ne_bytes());
        message.attr(RTA_DST, &[0, 0, 0, 0]);
        message.attr(RTA_GATEWAY, &gateway.octets());
        message.attr_u32(RTA_OIF, oif);
        self.request(message)
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let message = Message::new(RTM_GETLINK, NLM_F_DUMP).ifinfo(0, 0, 0);
        Ok(self
            .exchange(message)?
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWLINK)
            .filter_map(|(_, payload)| parse_link(payload))
            .collect())
    }

    /// The interface the kernel would send a packet to `dst` out of (a route
    /// lookup, as `ip route get`); `None` when it has no route.
    pub fn route_oif(&mut self, dst: Ipv4Addr) -> io::Result<Option<u32>> {
        Ok(self.route_get(dst)?.map(|(oif, _)| oif))
    }

    /// The route the kernel picks for `dst`: its interface and its prefix
    /// length (0: the default route).
    pub fn route_get(&mut self, dst: Ipv4Addr) -> io::Result<Option<(u32, u8)>> {
        let mut message = Message::new(RTM_GETROUTE, NLM_F_ACK);
        message.raw(&[AF_INET, 32, 0, 0, RT_TABLE_MAIN, 0, 0, 0]);
        message.raw(&0u32.to_ne_bytes());
        message.attr(RTA_DST, &dst.octets());
        match self.exchange(message) {
            Ok(replies) => Ok(replies
                .iter()
                .filter(|(kind, _)| *kind == RTM_NEWROUTE)
                .find_map(|(_, payload)| {
                    let oif = attrs(payload.get(12..)?)
                        .into_iter()
                        .find(|(k, _)| *k == RTA_OIF)
                        .and_then(|(_, v)| u32_of(v))?;
                    Some((oif, *payload.get(1)?))
                })),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Sets the route to `dst/dst_len` straight out of `oif` (`scope link`,
    /// replacing one), with the preferred source `src` if given: a tenant's
    /// route to its gateway (`/32`), the host's to a bridge shard's block.
    pub fn replace_link_route(
        &mut self,
        dst: Ipv4Addr,
        dst_len: u8,
        oif: u32,
        src: Option<Ipv4Addr>,
    ) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        message.raw(&[
            AF_INET,
            dst_len,
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
        if let Some(src) = src {
            message.attr(RTA_PREFSRC, &src.octets());
        }
        self.request(message)
    }

    /// Deletes `address/prefix_len` from `index`; `false` if it was not there.
    pub fn delete_address(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> io::Result<bool> {
        let mut message = Message::new(RTM_DELADDR, NLM_F_ACK);
        message.raw(&[AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE]);
        message.raw(&index.to_ne_bytes());
        message.attr(IFA_LOCAL, &address.octets());
        message.attr(IFA_ADDRESS, &address.octets());
        match self.request(message) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge with a fixed MAC address (kept whatever ports come and
    /// go) and multicast snooping off (its per-port work grows with the ports,
    /// and tenants exchange no multicast).
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> io::Result<()> {
        let mut message =
            Message::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        message.attr_str(IFLA_IFNAME, name);
        message.attr(IFLA_ADDRESS, &mac);
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, "bridge");
        message.begin(IFLA_INFO_DATA);
        message.attr(IFLA_BR_MCAST_SNOOPING, &[0]);
        message.end();
        message.end();
        self.request(message)
    }

    /// Turns a bridge's multicast snooping off.
    pub fn set_bridge_snooping_off(&mut self, index: u32) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, 0, 0);
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, "bridge");
        message.begin(IFLA_INFO_DATA);
        message.attr(IFLA_BR_MCAST_SNOOPING, &[0]);
        message.end();
        message.end();
        self.request(message)
    }

    /// Sets a bridge port's `isolated` flag (isolated ports exchange no
    /// frames with each other, only with the bridge itself and ports that are
    /// not isolated) and, with `up`, brings it up in the same request.
    pub fn set_port_isolated(&mut self, index: u32, isolated: bool, up: bool) -> io::Result<()> {
        let (flags, change) = if up { (IFF_UP, IFF_UP) } else { (0, 0) };
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, flags, change);
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_SLAVE_KIND, "bridge");
        message.begin(IFLA_INFO_SLAVE_DATA);
        message.attr(IFLA_BRPORT_ISOLATED, &[u8::from(isolated)]);
        message.end();
        message.end();
        self.request(message)
    }

    /// `struct ndmsg` for IPv4 on `index` with `state`.
    fn ndmsg(message: &mut Message, index: u32, state: u16) {
        message.raw(&[AF_INET, 0, 0, 0]);
        message.raw(&index.to_ne_bytes());
        message.raw(&state.to_ne_bytes());
        message.raw(&[0, 0]); // flags, type
    }

    /// The neighbour entry for `address` on `index`: its link-layer address
    /// and `NUD_*` state, `None` when there is none.
    pub fn neighbour(
        &mut self,
        index: u32,
        address: Ipv4Addr,
    ) -> io::Result<Option<([u8; 6], u16)>> {
        let mut message = Message::new(RTM_GETNEIGH, NLM_F_ACK);
        Self::ndmsg(&mut message, index, 0);
        message.attr(NDA_DST, &address.octets());
        match self.exchange(message) {
            Ok(replies) => Ok(replies
                .iter()
                .filter(|(kind, _)| *kind == RTM_NEWNEIGH)
                .find_map(|(_, payload)| {
                    parse_neighbour(payload).map(|(_, mac, state)| (mac, state))
                })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes `address` on `index` resolve to `mac` for good
    /// (`NUD_PERMANENT`, replacing any entry).
    pub fn replace_permanent_neighbour(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        mac: [u8; 6],
    ) -> io::Result<()> {
        let mut message = Message::new(RTM_NEWNEIGH, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
        Self::ndmsg(&mut message, index, NUD_PERMANENT);
        message.attr(NDA_DST, &address.octets());
        message.attr(NDA_LLADDR, &mac);
        self.request(message)
    }

    /// Deletes the neighbour entry for `address` on `index`; `false` if there
    /// was none.
    pub fn delete_neighbour(&mut self, index: u32, address: Ipv4Addr) -> io::Result<bool> {
        let mut message = Message::new(RTM_DELNEIGH, NLM_F_ACK);
        Self::ndmsg(&mut message, index, 0);
        message.attr(NDA_DST, &address.octets());
        match self.request(message) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// An `RTM_NEWNEIGH` payload: destination, link-layer address, state.
fn parse_neighbour(payload: &[u8]) -> Option<(Ipv4Addr, [u8; 6], u16)> {
    if payload.first() != Some(&AF_INET) {
        return None;
    }
    let state = u16::from_ne_bytes(payload.get(8..10)?.try_into().ok()?);
    let mut dst = None;
    let mut mac = None;
    for (kind, data) in attrs(payload.get(12..)?) {
        match kind {
            NDA_DST => dst = ipv4_of(data),
            NDA_LLADDR => mac = data.get(..6).and_then(|m| m.try_into().ok()),
            _ => {}
        }
    }
    Some((dst?, mac.unwrap_or([0; 6]), state))
}

/// A file descriptor as the `u32` netlink carries.
trait RawFdU32 {
    fn as_raw_fd_u32(&self) -> u32;
}

impl RawFdU32 for BorrowedFd<'_> {
    fn as_raw_fd_u32(&self) -> u32 {
        use std::os::fd::AsRawFd;
        self.as_raw_fd() as u32
    }
}

fn parse_tracked(data: &[u8]) -> Option<Tracked> {
    let top = attrs(data);
    let orig = top.iter().find(|(k, _)| *k == CTA_TUPLE_ORIG)?.1;
    let ip = attrs(orig).into_iter().find(|(k, _)| *k == CTA_TUPLE_IP)?.1;
    let ip = attrs(ip);
    let get = |kind| {
        ip.iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, v)| ipv4_of(v))
    };
    Some(Tracked {
        src: get(CTA_IP_V4_SRC)?,
        dst: get(CTA_IP_V4_DST)?,
        orig: orig.to_vec(),
        zone: top
            .iter()
            .find(|(k, _)| *k == CTA_ZONE)
            .map(|(_, v)| v.to_vec()),
    })
}

fn parse_link(payload: &[u8]) -> Option<Link> {
    let index = u32_of(payload.get(4..)?)?;
    let flags = u32_of(payload.get(8..)?)?;
    let mut link = Link {
        index,
        name: String::new(),
        flags,
        master: None,
        kind: None,
        mac: None,
        peer: None,
        isolated: None,
        multicast_snooping: None,
    };
    for (kind, data) in attrs(payload.get(16..)?) {
        match kind {
            IFLA_IFNAME => link.name = str_of(data),
            IFLA_MASTER => link.master = u32_of(data),
            IFLA_LINK => link.peer = u32_of(data),
            IFLA_ADDRESS => link.mac = data.get(..6).and_then(|m| m.try_into().ok()),
            IFLA_LINKINFO => {
                for (info, value) in attrs(data) {
                    match info {
                        IFLA_INFO_KIND => link.kind = Some(str_of(value)),
                        IFLA_INFO_DATA => {
                            link.multicast_snooping = attrs(value)
                                .into_iter()
                                .find(|(k, _)| *k == IFLA_BR_MCAST_SNOOPING)
                                .and_then(|(_, v)| v.first().map(|b| *b != 0));
                        }
                        IFLA_INFO_SLAVE_DATA => {
                            link.isolated = attrs(value)
                                .into_iter()
                                .find(|(k, _)| *k == IFLA_BRPORT_ISOLATED)
                                .and_then(|(_, v)| v.first().map(|b| *b != 0));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_length() {
        let mut message = Message::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(0, 0, 0);
        message.begin(IFLA_LINKINFO);
        message.attr_str(IFLA_INFO_KIND, "veth");
        message.end();
        let bytes = message.finish(7);
        assert_eq!(u32_of(&bytes).map(|n| n as usize), Some(bytes.len()));
        let top = attrs(&bytes[HEADER + 16..]);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].0, IFLA_LINKINFO);
        let inner = attrs(top[0].1);
        assert_eq!(inner, vec![(IFLA_INFO_KIND, &b"veth\0"[..])]);
    }
}
