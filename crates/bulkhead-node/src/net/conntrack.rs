//! The host's connection tracking table, per tenant address.
//!
//! Tenant traffic is tracked in the host's network namespace (bridged IPv4
//! passes the `inet` hooks through `br_netfilter`), and the firewall accepts
//! `ct state established,related` before it looks at `@allow`. Removing a
//! tenant's elements therefore stops new connections only: a connection
//! already tracked keeps flowing until conntrack forgets it (five days for an
//! established TCP connection by default). [`cut`] deletes the tenant's
//! entries over nfnetlink (`IPCTNL_MSG_CT_DELETE`, one per entry found by a
//! dump, the way `conntrack -D -s` does), so the next packet of such a
//! connection is new to the firewall and meets its default deny. Suspension
//! and offboarding call it after the firewall has dropped the tenant's
//! elements.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::error::LinkError;
use super::netlink::Netlink;

fn netlink_error(step: &'static str) -> impl Fn(std::io::Error) -> LinkError {
    move |source| LinkError::Netlink {
        step,
        object: "the conntrack table".to_owned(),
        source,
    }
}

/// How many tracked connections each of `addresses` has, as the original
/// source or destination (an address without any is left out).
pub fn count(addresses: &BTreeSet<Ipv4Addr>) -> Result<BTreeMap<Ipv4Addr, usize>, LinkError> {
    let mut socket = Netlink::open_netfilter().map_err(netlink_error("open"))?;
    let mut out = BTreeMap::new();
    for entry in socket.conntrack().map_err(netlink_error("dump"))? {
        for address in [entry.src, entry.dst] {
            if addresses.contains(&address) {
                *out.entry(address).or_insert(0) += 1;
            }
        }
    }
    Ok(out)
}

/// Deletes every tracked connection from or to `address`; how many were
/// deleted.
pub fn cut(address: Ipv4Addr) -> Result<usize, LinkError> {
    let mut socket = Netlink::open_netfilter().map_err(netlink_error("open"))?;
    let mut deleted = 0;
    for entry in socket.conntrack().map_err(netlink_error("dump"))? {
        if (entry.src == address || entry.dst == address)
            && socket
                .delete_tracked(&entry)
                .map_err(netlink_error("delete an entry of"))?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}
