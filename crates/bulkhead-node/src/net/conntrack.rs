//! The host's connection tracking table, per tenant address.
//!
//! Tenant traffic is tracked in the host's network namespace (the host
//! routes every tenant packet), and the firewall accepts
//! `ct state established,related` before it looks at `@allow`. Removing a
//! tenant's elements therefore stops new connections only: a connection
//! already tracked keeps flowing until conntrack forgets it (five days for an
//! established TCP connection by default). [`cut`] deletes the tenant's
//! entries over nfnetlink (`IPCTNL_MSG_CT_DELETE`, one per entry found by a
//! dump, the way `conntrack -D -s` does), so the next packet of such a
//! connection is new to the firewall and meets its default deny. Suspension
//! and offboarding call it after the firewall has dropped the tenant's
//! elements.
//!
//! Both [`cut`] and [`count`] (which `net show` and every observe pass of a
//! suspended tenant call) ask the kernel for one address's entries only: two
//! dumps filtered in the kernel (`CTA_FILTER` on the original source, then on
//! the original destination), so the cost of copying and parsing follows the
//! tenant's own connections, not the size of the host's table. Entries are
//! still checked here (a kernel without the filter dumps everything) and an
//! entry from and to the same address is counted once. Beyond
//! [`FILTERED_DUMPS_UP_TO`] addresses, [`count`] takes one whole dump instead
//! of two kernel walks per address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::error::LinkError;
use super::netlink::{Netlink, Tracked};

/// Most addresses [`count`] asks about with filtered dumps (each walks the
/// kernel's table once per direction); more take one whole dump.
pub const FILTERED_DUMPS_UP_TO: usize = 16;

fn netlink_error(step: &'static str) -> impl Fn(std::io::Error) -> LinkError {
    move |source| LinkError::Netlink {
        step,
        object: "the conntrack table".to_owned(),
        source,
    }
}

/// The entries from or to `address` (original direction), each once.
fn tracked_with(socket: &mut Netlink, address: Ipv4Addr) -> Result<Vec<Tracked>, LinkError> {
    let mut found = BTreeSet::new();
    for as_destination in [false, true] {
        for entry in socket
            .conntrack_of(address, as_destination)
            .map_err(netlink_error("filtered dump of"))?
        {
            if entry.src == address || entry.dst == address {
                found.insert(entry);
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// How many entries the kernel sends for `address`'s two filtered dumps, before
/// they are checked here: the entries with `address` as original source plus those
/// with it as original destination when the kernel filters, twice the whole table
/// when it ignores the filter. Tests and diagnostics use it to tell the two apart.
pub fn filtered_dump_size(address: Ipv4Addr) -> Result<usize, LinkError> {
    let mut socket = Netlink::open_netfilter().map_err(netlink_error("open"))?;
    let mut sent = 0;
    for as_destination in [false, true] {
        sent += socket
            .conntrack_of(address, as_destination)
            .map_err(netlink_error("filtered dump of"))?
            .len();
    }
    Ok(sent)
}

/// How many tracked connections each of `addresses` has, as the original
/// source or destination (an address without any is left out).
pub fn count(addresses: &BTreeSet<Ipv4Addr>) -> Result<BTreeMap<Ipv4Addr, usize>, LinkError> {
    let mut socket = Netlink::open_netfilter().map_err(netlink_error("open"))?;
    let mut out = BTreeMap::new();
    if addresses.len() <= FILTERED_DUMPS_UP_TO {
        for address in addresses {
            let n = tracked_with(&mut socket, *address)?.len();
            if n > 0 {
                out.insert(*address, n);
            }
        }
        return Ok(out);
    }
    for entry in socket.conntrack().map_err(netlink_error("dump"))? {
        let ends: BTreeSet<Ipv4Addr> = [entry.src, entry.dst].into_iter().collect();
        for address in ends {
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
    for entry in tracked_with(&mut socket, address)? {
        if socket
            .delete_tracked(&entry)
            .map_err(netlink_error("delete an entry of"))?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The host's conntrack table size (`nf_conntrack_max`), if the kernel shows it.
pub fn table_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A warning when `tenants` shares of `share` tracked connections add up to more
/// than the host's table of `max` entries: each tenant stays within its share, yet
/// together they can still fill the table for everyone.
pub fn overcommit(tenants: u64, share: u64, max: u64) -> Option<String> {
    let total = tenants.saturating_mul(share);
    (total > max).then(|| {
        format!(
            "{tenants} tenants x network.connectionsPerTenant {share} = {total} tracked \
             connections, more than the host's conntrack table (nf_conntrack_max {max}): \
             together the tenants can still fill it; lower the share or raise the table"
        )
    })
}

#[cfg(test)]
mod overcommit_tests {
    use super::overcommit;

    #[test]
    fn shares_beyond_the_table_are_named() {
        assert_eq!(overcommit(16, 16_384, 262_144), None, "exactly the table");
        let warning = overcommit(17, 16_384, 262_144).expect("over the table");
        assert!(warning.contains("278528"), "{warning}");
        assert!(warning.contains("nf_conntrack_max 262144"), "{warning}");
        assert_eq!(
            overcommit(u64::MAX, 2, 10).map(|w| w.contains("18446744073709551615")),
            Some(true)
        );
    }
}
