//! What `bulkhead net show` prints: per tenant, the objects that make its
//! network (address, MAC, host interface, namespace and its inode, bridge)
//! and the counters that say what happened to its traffic (firewall drops,
//! shaper bytes and drops). Read-only.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;

use serde::Serialize;

use super::addr::{format_mac, tenant_mac};
use super::firewall::{Count, FirewallState};
use super::link::{self, BridgeConfig, NetnsRef, TenantLink};
use super::shape::{self, Caps, ShaperStats};
use crate::naming::Instance;

/// One tenant's network, as the host shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantNetwork {
    /// The tenant.
    pub tenant: String,
    /// Its address (from the store).
    pub address: Ipv4Addr,
    /// The MAC of its `eth0`.
    pub mac: String,
    /// The host end of its veth.
    pub host_interface: String,
    /// Its network namespace's name (`/run/netns/<name>`).
    pub netns: String,
    /// The namespace's inode (what `readlink /proc/<pid>/ns/net` names), if
    /// the namespace file exists.
    pub netns_inode: Option<u64>,
    /// The instance bridge.
    pub bridge: String,
    /// Both ends in place, addressed, routed.
    pub wired: bool,
    /// Bandwidth caps in force (bits per second), as declared.
    pub caps: CapsShown,
    /// Firewall drop counters.
    pub drops: Drops,
    /// Shaper counters, per direction (absent when uncapped).
    pub shaping: Shaping,
}

/// The declared caps, readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapsShown {
    /// What the tenant may send (`None`: uncapped).
    pub egress: Option<String>,
    /// What it may receive.
    pub ingress: Option<String>,
}

/// Firewall drops of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Drops {
    /// New connections (or packets) it sent that no rule allowed.
    pub egress: Count,
    /// Packets toward it that no rule allowed.
    pub ingress: Count,
    /// Frames from its port with a source MAC or address not its own.
    pub spoof: Count,
}

/// Shaper counters of one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Shaping {
    /// Egress shaper (on its `ifb`).
    pub egress: Option<ShaperStats>,
    /// Ingress shaper (on the host end).
    pub ingress: Option<ShaperStats>,
}

/// The inode of a namespace file (`None` when it does not exist).
pub fn netns_inode(path: &std::path::Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Reads one tenant's network. `firewall` is [`super::firewall::observe`]'s
/// answer, read once for all tenants.
pub fn tenant_network(
    instance: &Instance,
    bridge: &BridgeConfig,
    tenant: &str,
    address: Ipv4Addr,
    caps: &Caps,
    firewall: &FirewallState,
) -> TenantNetwork {
    let host_interface = instance.interface(tenant, 'h');
    let wiring = TenantLink {
        tenant: tenant.to_owned(),
        netns: NetnsRef::of_tenant(instance, tenant),
        address,
    };
    let wired = link::observe_tenant(instance, bridge, &wiring).is_ok_and(|s| s.is_wired());
    let shaped = shape::observe(instance, tenant).unwrap_or_default();
    TenantNetwork {
        tenant: tenant.to_owned(),
        address,
        mac: format_mac(tenant_mac(address)),
        netns: instance.netns(tenant),
        netns_inode: netns_inode(&instance.netns_path(tenant)),
        bridge: instance.bridge(),
        wired,
        caps: CapsShown {
            egress: caps.egress.map(|b| b.to_string()),
            ingress: caps.ingress.map(|b| b.to_string()),
        },
        drops: Drops {
            egress: firewall
                .egress_drops
                .get(&address)
                .copied()
                .unwrap_or_default(),
            ingress: firewall
                .ingress_drops
                .get(&address)
                .copied()
                .unwrap_or_default(),
            spoof: firewall
                .spoof_drops
                .get(&host_interface)
                .copied()
                .unwrap_or_default(),
        },
        shaping: Shaping {
            egress: shaped.egress,
            ingress: shaped.ingress,
        },
        host_interface,
    }
}
