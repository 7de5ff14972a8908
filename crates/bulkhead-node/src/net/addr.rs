//! Tenant addresses: the bridge's, the allocator the store calls, and the
//! MAC address a tenant's `eth0` is given. Pure functions.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The bridge's address: the first usable address of the tenant range
/// (the policy crate's default DNS resolver too).
pub fn bridge_address(range: Ipv4Net) -> Option<Ipv4Addr> {
    range.hosts().next().filter(|a| *a != range.network())
}

/// The lowest free tenant address of `range`: not the network or broadcast
/// address, not the bridge, not in `taken`. `None` when the range is full.
pub fn allocate(range: Ipv4Net, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let bridge = bridge_address(range)?;
    range
        .hosts()
        .filter(|a| *a != range.network() && *a != range.broadcast() && *a != bridge)
        .find(|a| !taken.contains(a))
}

/// The MAC address of a tenant's `eth0`: locally administered, unicast
/// (`02:b4`) followed by its IPv4 address, so the anti-spoofing set can name
/// it without asking the kernel and two tenants of one bridge never share
/// one.
pub fn tenant_mac(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0xb4, a, b, c, d]
}

/// The instance bridge's MAC address: the one [`tenant_mac`] gives its
/// (gateway) address, which no tenant holds. Set when the bridge is made,
/// so it never follows the ports that come and go, and tenants can keep a
/// permanent neighbour entry for their gateway.
pub fn gateway_mac(address: Ipv4Addr) -> [u8; 6] {
    tenant_mac(address)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("a network")
    }

    #[test]
    fn allocation_skips_network_bridge_broadcast_and_taken() {
        let range = net("10.9.0.0/29");
        assert_eq!(bridge_address(range), Some(Ipv4Addr::new(10, 9, 0, 1)));
        let mut taken = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(a) = allocate(range, &taken) {
            taken.insert(a);
            got.push(a.octets()[3]);
        }
        assert_eq!(got, vec![2, 3, 4, 5, 6]);
        taken.remove(&Ipv4Addr::new(10, 9, 0, 4));
        assert_eq!(allocate(range, &taken), Some(Ipv4Addr::new(10, 9, 0, 4)));
    }

    #[test]
    fn tiny_ranges_have_one_tenant_address_or_none() {
        assert_eq!(
            allocate(net("10.9.0.0/30"), &BTreeSet::new()),
            Some(Ipv4Addr::new(10, 9, 0, 2))
        );
        assert_eq!(allocate(net("10.9.0.0/31"), &BTreeSet::new()), None);
        assert_eq!(allocate(net("10.9.0.0/32"), &BTreeSet::new()), None);
        assert_eq!(bridge_address(net("10.9.0.0/32")), None);
    }

    #[test]
    fn macs_are_local_unicast_and_name_the_address() {
        let mac = tenant_mac(Ipv4Addr::new(10, 240, 0, 7));
        assert_eq!(format_mac(mac), "02:b4:0a:f0:00:07");
        assert_eq!(mac[0] & 0x01, 0, "unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
    }
}
