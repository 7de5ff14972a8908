//! Wiring: the instance bridge and one veth pair per tenant, over raw
//! rtnetlink ([`super::netlink`]).
//!
//! Every function is idempotent: `ensure_*` creates what is missing and
//! repairs what drifted (a link down, an address or route gone, a MAC
//! changed from inside, a tenant end that is not our veth's peer), `observe_*`
//! only reads, `remove_*` deletes what is there.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::addr::{bridge_address, gateway_mac, tenant_mac};
use super::error::LinkError;
use super::netlink::{Link, NUD_PERMANENT, Netlink};
use crate::naming::Instance;

/// The tenant end's name inside its namespace.
pub const TENANT_IFNAME: &str = "eth0";

/// How long `ensure_tenant` retries a name the kernel has not released yet
/// (a veth of a deleted namespace lingers ~35-50 ms).
const NAME_RELEASE_WAIT: Duration = Duration::from_millis(1000);

/// The instance bridge: its address is the first usable of the tenant range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The tenant range.
    pub range: Ipv4Net,
}

impl BridgeConfig {
    /// The bridge's address (`None` for a range without one).
    pub fn address(&self) -> Option<Ipv4Addr> {
        bridge_address(self.range)
    }
}

/// Ports per bridge: tenants are spread over bridge *shards* by address
/// (addresses `k·128 … k·128+127` of the range on shard `k`,
/// [`Instance::bridge_shard`]). The kernel's work to add a port grows with
/// the ports already on the bridge (promiscuity, adjacency lists and static
/// FDB entries are walked per port), so bounded bridges keep per-tenant
/// wiring flat. Shard 0 is the instance bridge with the gateway address;
/// the others carry no address, the gateway's MAC, and the host's route to
/// their addresses.
pub const PORTS_PER_BRIDGE: u32 = 128;

/// The bridge shard of `address` in `range`.
pub fn shard_of(range: Ipv4Net, address: Ipv4Addr) -> u32 {
    u32::from(address).wrapping_sub(u32::from(range.network())) / PORTS_PER_BRIDGE
}

/// The addresses of shard `k` as one prefix; `None` when the whole range
/// fits on shard 0.
fn shard_block(range: Ipv4Net, k: u32) -> Option<Ipv4Net> {
    let prefix = 32 - PORTS_PER_BRIDGE.trailing_zeros() as u8;
    if range.prefix_len() >= prefix {
        return None;
    }
    let first = u32::from(range.network()).checked_add(k.checked_mul(PORTS_PER_BRIDGE)?)?;
    Ipv4Net::new(Ipv4Addr::from(first), prefix).ok()
}

/// Where a tenant's network namespace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsRef {
    /// A namespace file, e.g. `/run/netns/<instance>-<tenant>`.
    Path(PathBuf),
    /// A process in it (`/proc/<pid>/ns/net`), e.g. the sandbox holder.
    Pid(u32),
}

impl NetnsRef {
    /// The tenant's registered namespace, [`Instance::netns_path`].
    pub fn of_tenant(instance: &Instance, tenant: &str) -> Self {
        NetnsRef::Path(instance.netns_path(tenant))
    }

    fn path(&self) -> PathBuf {
        match self {
            NetnsRef::Path(path) => path.clone(),
            NetnsRef::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    fn open(&self) -> Result<File, LinkError> {
        let path = self.path();
        File::open(&path).map_err(|source| LinkError::Netns { path, source })
    }
}

/// One tenant's wiring: its namespace and its (store-allocated) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLink {
    /// The tenant.
    pub tenant: String,
    /// Its network namespace.
    pub netns: NetnsRef,
    /// Its address, inside the bridge's range.
    pub address: Ipv4Addr,
}

/// What `ensure_*` did, step by step (empty when nothing had to change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The steps taken, e.g. `create veth bhab12cd34h`.
    pub steps: Vec<String>,
}

impl Changes {
    /// True when the world already matched.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// What the bridge looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeState {
    /// Whether a bridge of that name exists.
    pub exists: bool,
    /// Whether it is up.
    pub up: bool,
    /// Whether it carries the expected address and prefix.
    pub addressed: bool,
    /// Whether it has the fixed MAC address ([`gateway_mac`]) the tenants'
    /// permanent gateway entries name.
    pub mac_ok: bool,
    /// Whether it routes (`net.ipv4.conf.<bridge>.forwarding` is 1).
    pub forwarding: bool,
}

impl BridgeState {
    /// Exists, up, addressed, with its MAC, routing.
    pub fn is_ready(&self) -> bool {
        self.exists && self.up && self.addressed && self.mac_ok && self.forwarding
    }
}

/// What a tenant's wiring looks like from both ends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantLinkState {
    /// The host end exists as a veth.
    pub host_end: bool,
    /// … is up.
    pub host_up: bool,
    /// … is enslaved to the instance bridge.
    pub on_bridge: bool,
    /// The tenant end exists as `eth0`, the host end's peer.
    pub tenant_end: bool,
    /// … is up.
    pub tenant_up: bool,
    /// … has the expected MAC.
    pub mac_ok: bool,
    /// … carries exactly the tenant's address (and no other IPv4 address).
    pub address_ok: bool,
    /// … the only routes: the bridge address on the link, the default via it.
    pub route_ok: bool,
    /// The host end is an isolated bridge port (no frames to other tenants).
    pub isolated: bool,
    /// Both permanent neighbour entries: the gateway's MAC in the tenant's
    /// namespace, the tenant's MAC on the bridge.
    pub neighbours_ok: bool,
}

impl TenantLinkState {
    /// Everything in place.
    pub fn is_wired(&self) -> bool {
        self.host_end
            && self.host_up
            && self.on_bridge
            && self.tenant_end
            && self.tenant_up
            && self.mac_ok
            && self.address_ok
            && self.route_ok
            && self.isolated
            && self.neighbours_ok
    }

    /// Nothing of it exists.
    pub fn is_absent(&self) -> bool {
        !self.host_end && !self.tenant_end
    }
}

fn nl_err(step: &'static str, object: &str) -> impl FnOnce(std::io::Error) -> LinkError {
    let object = object.to_owned();
    move |source| LinkError::Netlink {
        step,
        object,
        source,
    }
}

fn host_netlink() -> Result<Netlink, LinkError> {
    Netlink::open().map_err(nl_err("open netlink socket", "host"))
}

fn bridge_prefix(config: &BridgeConfig) -> Result<(Ipv4Addr, u8), LinkError> {
    let address = config.address().ok_or_else(|| LinkError::BadAddress {
        address: config.range.to_string(),
        range: config.range.to_string(),
    })?;
    Ok((address, config.range.prefix_len()))
}

/// Creates the instance bridge if missing, with its fixed MAC
/// ([`gateway_mac`]) and the first usable address of the range, brings it
/// up, and turns on routing for what arrives on it (the per-interface
/// `forwarding` switch, never the host-wide one): tenants reach each other
/// through the host's routing, not across the bridge (see the module docs).
pub fn ensure_bridge(instance: &Instance, config: &BridgeConfig) -> Result<Changes, LinkError> {
    let name = instance.bridge();
    let (address, prefix) = bridge_prefix(config)?;
    let mac = gateway_mac(address);
    let mut nl = host_netlink()?;
    let mut changes = Changes::default();
    let link = bridge_device(&mut nl, &name, mac, &mut changes)?;
    let has = nl
        .addresses()
        .map_err(nl_err("list addresses", &name))?
        .iter()
        .any(|a| a.index == link.index && a.address == address && a.prefix_len == prefix);
    if !has {
        // Tenants are routed: a range the host already routes elsewhere (another
        // instance's bridge, a host network) would take each other's traffic.
        let routes = nl.routes().map_err(nl_err("list routes", "host"))?;
        let links = nl.links().map_err(nl_err("list links", "host"))?;
        let name_of = |oif: u32| {
            links
                .iter()
                .find(|l| l.index == oif)
                .map_or_else(|| format!("interface {oif}"), |l| l.name.clone())
        };
        for route in routes.iter().filter(|r| r.dst_len > 0) {
            let (Some(dst), Some(oif)) = (route.dst, route.oif) else {
                continue;
            };
            let Ok(net) = Ipv4Net::new(dst, route.dst_len) else {
                continue;
            };
            let overlaps =
                net.contains(&config.range.network()) || config.range.contains(&net.network());
            let device = name_of(oif);
            // One of our own shards (the instance bridge was recreated) is fine.
            if overlaps && oif != link.index && !instance.is_bridge_shard(&device) {
                return Err(LinkError::RangeInUse {
                    range: config.range.to_string(),
                    device,
                });
            }
        }
        nl.add_address(link.index, address, prefix)
            .map_err(nl_err("add address", &name))?;
        changes
            .steps
            .push(format!("address {name} {address}/{prefix}"));
    }
    Ok(changes)
}

/// Turns IPv6 off on a host device (`net.ipv6.conf.<name>.disable_ipv6`); a
/// host without IPv6 has no such switch and nothing to turn off.
fn disable_ipv6(name: &str) -> Result<(), LinkError> {
    let path = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"));
    match std::fs::write(&path, "1") {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && !Path::new("/proc/sys/net/ipv6").exists() =>
        {
            Ok(())
        }
        Err(source) => Err(LinkError::Sysctl { path, source }),
    }
}

/// The bridge `name` as every bridge of the instance is: created if missing
/// (with `mac`, multicast snooping and IPv6 off), of kind bridge, with `mac`,
/// snooping off, up, and routing what arrives on it (its own `forwarding`
/// switch, never the host-wide one).
fn bridge_device(
    nl: &mut Netlink,
    name: &str,
    mac: [u8; 6],
    changes: &mut Changes,
) -> Result<Link, LinkError> {
    let link = match nl.link(name).map_err(nl_err("look up", name))? {
        Some(link) => link,
        None => {
            nl.create_bridge(name, mac)
                .map_err(nl_err("create bridge", name))?;
            changes.steps.push(format!("create bridge {name}"));
            disable_ipv6(name)?;
            nl.link(name)
                .map_err(nl_err("look up", name))?
                .ok_or_else(|| LinkError::NoBridge {
                    bridge: name.to_owned(),
                })?
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(LinkError::Foreign {
            name: name.to_owned(),
            found: link.kind.unwrap_or_else(|| "device".to_owned()),
            expected: "bridge",
        });
    }
    if link.mac != Some(mac) {
        nl.set_mac(link.index, mac)
            .map_err(nl_err("set mac", name))?;
        changes.steps.push(format!("mac {name}"));
    }
    if link.multicast_snooping != Some(false) {
        nl.set_bridge_snooping_off(link.index)
            .map_err(nl_err("turn off multicast snooping on", name))?;
        changes.steps.push(format!("multicast snooping off {name}"));
    }
    if !link.is_up() {
        nl.set_up(link.index, true)
            .map_err(nl_err("set up", name))?;
        changes.steps.push(format!("up {name}"));
    }
    let path = forwarding_path(name);
    if std::fs::read_to_string(&path).unwrap_or_default().trim() != "1" {
        std::fs::write(&path, "1").map_err(|source| LinkError::Sysctl {
            path: path.clone(),
            source,
        })?;
        changes.steps.push(format!("forwarding {name} 1"));
    }
    Ok(link)
}

fn forwarding_path(bridge: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/ipv4/conf/{bridge}/forwarding"))
}

/// What the bridge looks like now.
pub fn observe_bridge(
    instance: &Instance,
    config: &BridgeConfig,
) -> Result<BridgeState, LinkError> {
    let name = instance.bridge();
    let (address, prefix) = bridge_prefix(config)?;
    let mut nl = host_netlink()?;
    let Some(link) = nl.link(&name).map_err(nl_err("look up", &name))? else {
        return Ok(BridgeState {
            exists: false,
            up: false,
            addressed: false,
            mac_ok: false,
            forwarding: false,
        });
    };
    let addressed = nl
        .addresses()
        .map_err(nl_err("list addresses", &name))?
        .iter()
        .any(|a| a.index == link.index && a.address == address && a.prefix_len == prefix);
    Ok(BridgeState {
        exists: link.kind.as_deref() == Some("bridge"),
        up: link.is_up(),
        addressed,
        mac_ok: link.mac == Some(gateway_mac(address)),
        forwarding: std::fs::read_to_string(forwarding_path(&name)).is_ok_and(|v| v.trim() == "1"),
    })
}

/// Deletes the instance bridge and every bridge shard; `false` if there
/// was none. Tenant veths stay (they are only unplugged): remove them first.
pub fn remove_bridge(instance: &Instance) -> Result<bool, LinkError> {
    let mut nl = host_netlink()?;
    let mut any = false;
    for link in nl.links().map_err(nl_err("list links", "host"))? {
        if link.kind.as_deref() == Some("bridge") && instance.is_bridge_shard(&link.name) {
            any |= nl
                .delete_link(link.index)
                .map_err(nl_err("delete", &link.name))?;
        }
    }
    Ok(any)
}

fn check_address(config: &BridgeConfig, address: Ipv4Addr) -> Result<(), LinkError> {
    let range = config.range;
    let ok = range.contains(&address)
        && address != range.network()
        && address != range.broadcast()
        && Some(address) != config.address();
    if ok {
        Ok(())
    } else {
        Err(LinkError::BadAddress {
            address: address.to_string(),
            range: range.to_string(),
        })
    }
}

/// The host end and the tenant end, as they are now.
struct Ends {
    bridge: Link,
    host: Option<Link>,
    tenant: Option<Link>,
}

fn ends(
    host_nl: &mut Netlink,
    tenant_nl: &mut Netlink,
    instance: &Instance,
    bridge_name: &str,
    tenant: &str,
) -> Result<Ends, LinkError> {
    let bridge_name = bridge_name.to_owned();
    let bridge = host_nl
        .link(&bridge_name)
        .map_err(nl_err("look up", &bridge_name))?
        .ok_or(LinkError::NoBridge {
            bridge: bridge_name,
        })?;
    let host_name = instance.interface(tenant, 'h');
    let host = host_nl
        .link(&host_name)
        .map_err(nl_err("look up", &host_name))?;
    let tenant_end = tenant_nl
        .link(TENANT_IFNAME)
        .map_err(nl_err("look up in the tenant's namespace", TENANT_IFNAME))?;
    Ok(Ends {
        bridge,
        host,
        tenant: tenant_end,
    })
}

/// The tenant end is the host end's veth peer (each names the other's index).
fn paired(host: &Link, tenant: &Link) -> bool {
    host.kind.as_deref() == Some("veth")
        && tenant.kind.as_deref() == Some("veth")
        && host.peer == Some(tenant.index)
        && tenant.peer == Some(host.index)
}

/// Wires one tenant: a veth pair whose host end
/// ([`Instance::interface`]`(tenant, 'h')`) is enslaved to the bridge and up,
/// and whose tenant end is `eth0` in the tenant's namespace with a MAC from
/// [`tenant_mac`], the tenant's address, up, with the default route via the
/// bridge address (and `lo` up). Repairs whatever differs.
pub fn ensure_tenant(
    instance: &Instance,
    config: &BridgeConfig,
    link: &TenantLink,
) -> Result<Changes, LinkError> {
    check_address(config, link.address)?;
    let (gateway, _) = bridge_prefix(config)?;
    let netns = link.netns.open()?;
    let mut host_nl = host_netlink()?;
    let mut tenant_nl = Netlink::open_in(netns.as_fd()).map_err(nl_err(
        "open netlink socket in",
        &link.netns.path().display().to_string(),
    ))?;
    let host_name = instance.interface(&link.tenant, 'h');
    let mac = tenant_mac(link.address);
    let mut changes = Changes::default();

    let shard = shard_of(config.range, link.address);
    if shard > 0 {
        ensure_shard(instance, config, shard, &mut host_nl, &mut changes)?;
    }
    let bridge_name = instance.bridge_shard(shard);
    let mut now = ends(
        &mut host_nl,
        &mut tenant_nl,
        instance,
        &bridge_name,
        &link.tenant,
    )?;
    let pair_ok = match (&now.host, &now.tenant) {
        (Some(h), Some(t)) => paired(h, t),
        _ => false,
    };
    if !pair_ok {
        // Anything half there is replaced: a host end whose peer is gone
        // elsewhere, or an `eth0` the tenant made itself.
        if let Some(h) = &now.host {
            if h.kind.as_deref() != Some("veth") {
                return Err(LinkError::Foreign {
                    name: host_name,
                    found: h.kind.clone().unwrap_or_else(|| "device".to_owned()),
                    expected: "veth",
                });
            }
            host_nl
                .delete_link(h.index)
                .map_err(nl_err("delete stale", &host_name))?;
            changes.steps.push(format!("delete stale {host_name}"));
        }
        if let Some(t) = &now.tenant
            && tenant_nl
                .delete_link(t.index)
                .map_err(nl_err("delete stale tenant", TENANT_IFNAME))?
        {
            changes
                .steps
                .push(format!("delete stale tenant {TENANT_IFNAME}"));
        }
        create_veth_retrying(&mut host_nl, &host_name, now.bridge.index, &netns, mac)?;
        changes
            .steps
            .push(format!("create veth {host_name} <-> {TENANT_IFNAME}"));
        // The new pair as the tenant's end shows it (its peer index is the host
        // end's): every message about the host end makes the kernel walk the ids
        // of all the host's peer namespaces, so the host end is not asked for.
        let tenant = tenant_nl
            .link(TENANT_IFNAME)
            .map_err(nl_err("look up in the tenant's namespace", TENANT_IFNAME))?
            .filter(|t| t.kind.as_deref() == Some("veth"));
        let host = tenant.as_ref().and_then(|t| t.peer).map(|index| Link {
            index,
            name: host_name.clone(),
            flags: 0,
            master: Some(now.bridge.index),
            kind: Some("veth".to_owned()),
            mac: None,
            peer: tenant.as_ref().map(|t| t.index),
            isolated: Some(false),
            multicast_snooping: None,
        });
        now = Ends {
            bridge: now.bridge,
            host,
            tenant,
        };
        // Both ends are still down: no IPv6 before they come up. On the host end
        // IPv6 is off altogether: with it, bringing a device up adds a multicast
        // route per device to the host's IPv6 table, in a walk over all of them.
        disable_ipv6(&host_name)?;
        if let Some(t) = &now.tenant {
            tenant_nl
                .set_no_ipv6_addresses(t.index)
                .map_err(nl_err("turn off IPv6 addresses on", TENANT_IFNAME))?;
        }
    }
    let (Some(host), Some(tenant)) = (now.host, now.tenant) else {
        return Err(LinkError::Netlink {
            step: "find the new veth",
            object: host_name,
            source: std::io::Error::from_raw_os_error(libc::ENODEV),
        });
    };
    if host.master != Some(now.bridge.index) {
        host_nl
            .set_master(host.index, now.bridge.index)
            .map_err(nl_err("enslave", &host_name))?;
        changes.steps.push(format!("enslave {host_name}"));
    }
    // Isolated and up in one request.
    let isolate = host.isolated != Some(true) || host.master != Some(now.bridge.index);
    if isolate || !host.is_up() {
        host_nl
            .set_port_isolated(host.index, true, true)
            .map_err(nl_err("isolate port and set up", &host_name))?;
        if isolate {
            changes.steps.push(format!("isolate {host_name}"));
        }
        if !host.is_up() {
            changes.steps.push(format!("up {host_name}"));
        }
    }
    if tenant.mac != Some(mac) {
        tenant_nl
            .set_mac(tenant.index, mac)
            .map_err(nl_err("set mac", TENANT_IFNAME))?;
        changes.steps.push(format!("mac {TENANT_IFNAME}"));
    }
    // Exactly the tenant's address, as a /32: no peer is on the link.
    let addresses = tenant_nl
        .addresses()
        .map_err(nl_err("list addresses", TENANT_IFNAME))?;
    let mut has = false;
    for a in addresses.iter().filter(|a| a.index == tenant.index) {
        if a.address == link.address && a.prefix_len == 32 {
            has = true;
        } else if tenant_nl
            .delete_address(tenant.index, a.address, a.prefix_len)
            .map_err(nl_err("delete address", TENANT_IFNAME))?
        {
            changes.steps.push(format!(
                "delete address {TENANT_IFNAME} {}/{}",
                a.address, a.prefix_len
            ));
        }
    }
    if !has {
        tenant_nl
            .add_address(tenant.index, link.address, 32)
            .map_err(nl_err("add address", TENANT_IFNAME))?;
        changes
            .steps
            .push(format!("address {TENANT_IFNAME} {}/32", link.address));
    }
    if !tenant.is_up() {
        tenant_nl
            .set_up(tenant.index, true)
            .map_err(nl_err("set up", TENANT_IFNAME))?;
        changes.steps.push(format!("up {TENANT_IFNAME}"));
    }
    if let Some(lo) = tenant_nl.link("lo").map_err(nl_err("look up", "lo"))?
        && !lo.is_up()
    {
        tenant_nl
            .set_up(lo.index, true)
            .map_err(nl_err("set up", "lo"))?;
        changes.steps.push("up lo".to_owned());
    }
    let routes = tenant_nl
        .routes()
        .map_err(nl_err("list routes", TENANT_IFNAME))?;
    if !gateway_route_ok(&routes, gateway, tenant.index) {
        tenant_nl
            .replace_link_route(gateway, 32, tenant.index, None)
            .map_err(nl_err("set gateway route", TENANT_IFNAME))?;
        changes
            .steps
            .push(format!("route {gateway} dev {TENANT_IFNAME}"));
    }
    if !default_route_ok(&routes, gateway, tenant.index) {
        tenant_nl
            .replace_default_route(gateway, tenant.index)
            .map_err(nl_err("set default route", TENANT_IFNAME))?;
        changes.steps.push(format!("default via {gateway}"));
    }
    // Permanent neighbour entries on both sides: nothing is ever resolved
    // by ARP, so no tenant adds to the host's one neighbour table and no
    // ARP packet can redirect anyone's traffic.
    let gateway_mac = gateway_mac(gateway);
    let seen = tenant_nl
        .neighbour(tenant.index, gateway)
        .map_err(nl_err("look up neighbour", TENANT_IFNAME))?;
    if seen != Some((gateway_mac, NUD_PERMANENT)) {
        tenant_nl
            .replace_permanent_neighbour(tenant.index, gateway, gateway_mac)
            .map_err(nl_err("set gateway neighbour", TENANT_IFNAME))?;
        changes
            .steps
            .push(format!("neighbour {gateway} on {TENANT_IFNAME}"));
    }
    let seen = host_nl
        .neighbour(now.bridge.index, link.address)
        .map_err(nl_err("look up neighbour", &bridge_name))?;
    if seen != Some((mac, NUD_PERMANENT)) {
        host_nl
            .replace_permanent_neighbour(now.bridge.index, link.address, mac)
            .map_err(nl_err("set tenant neighbour", &bridge_name))?;
        changes
            .steps
            .push(format!("neighbour {} on {bridge_name}", link.address));
    }
    Ok(changes)
}

/// Makes bridge shard `k` (> 0) ready for its tenants: the bridge with the
/// gateway's MAC, snooping and IPv6 off, up and routing, and the host's
/// route to the shard's addresses through it (from the gateway address).
fn ensure_shard(
    instance: &Instance,
    config: &BridgeConfig,
    k: u32,
    nl: &mut Netlink,
    changes: &mut Changes,
) -> Result<(), LinkError> {
    let name = instance.bridge_shard(k);
    let (gateway, _) = bridge_prefix(config)?;
    let block = shard_block(config.range, k).ok_or_else(|| LinkError::BadAddress {
        address: format!("shard {k}"),
        range: config.range.to_string(),
    })?;
    let link = bridge_device(nl, &name, gateway_mac(gateway), changes)?;
    if nl
        .route_oif(block.network())
        .map_err(nl_err("look up the route through", &name))?
        != Some(link.index)
    {
        nl.replace_link_route(
            block.network(),
            block.prefix_len(),
            link.index,
            Some(gateway),
        )
        .map_err(nl_err("route through", &name))?;
        changes.steps.push(format!("route {block} dev {name}"));
    }
    Ok(())
}

fn default_route_ok(routes: &[super::netlink::Route], gateway: Ipv4Addr, oif: u32) -> bool {
    routes
        .iter()
        .any(|r| r.dst_len == 0 && r.gateway == Some(gateway) && r.oif == Some(oif))
}

fn gateway_route_ok(routes: &[super::netlink::Route], gateway: Ipv4Addr, oif: u32) -> bool {
    routes.iter().any(|r| {
        r.dst_len == 32 && r.dst == Some(gateway) && r.gateway.is_none() && r.oif == Some(oif)
    })
}

/// Creates the pair, waiting out a host-end name the kernel still holds
/// after a recent deletion (`EEXIST` while the old link is torn down).
fn create_veth_retrying(
    nl: &mut Netlink,
    host_name: &str,
    bridge: u32,
    netns: &File,
    mac: [u8; 6],
) -> Result<(), LinkError> {
    let started = Instant::now();
    loop {
        match nl.create_veth(host_name, bridge, TENANT_IFNAME, netns.as_fd(), mac) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EEXIST)
                    && started.elapsed() < NAME_RELEASE_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(nl_err("create veth", host_name)(e)),
        }
    }
}

/// What a tenant's wiring looks like now. A missing namespace reads as no
/// tenant end.
pub fn observe_tenant(
    instance: &Instance,
    config: &BridgeConfig,
    link: &TenantLink,
) -> Result<TenantLinkState, LinkError> {
    let (gateway, _) = bridge_prefix(config)?;
    let mut host_nl = host_netlink()?;
    let host_name = instance.interface(&link.tenant, 'h');
    let shard = shard_of(config.range, link.address);
    let bridge_name = instance.bridge_shard(shard);
    let bridge = host_nl
        .link(&bridge_name)
        .map_err(nl_err("look up", &bridge_name))?;
    let host = host_nl
        .link(&host_name)
        .map_err(nl_err("look up", &host_name))?
        .filter(|h| h.kind.as_deref() == Some("veth"));
    let mut state = TenantLinkState::default();
    if let Some(h) = &host {
        state.host_end = true;
        state.host_up = h.is_up();
        state.on_bridge = bridge.as_ref().is_some_and(|b| h.master == Some(b.index));
        // A shard's addresses are reached through it only with its route.
        if shard > 0 && state.on_bridge {
            let oif = host_nl
                .route_oif(link.address)
                .map_err(nl_err("look up the route through", &bridge_name))?;
            state.on_bridge = bridge.as_ref().map(|b| b.index) == oif;
        }
        state.isolated = state.on_bridge && h.isolated == Some(true);
    }
    let host_neighbour = match &bridge {
        Some(b) => host_nl
            .neighbour(b.index, link.address)
            .map_err(nl_err("look up neighbour", &bridge_name))?,
        None => None,
    };
    let Ok(netns) = link.netns.open() else {
        return Ok(state);
    };
    let mut tenant_nl = Netlink::open_in(netns.as_fd()).map_err(nl_err(
        "open netlink socket in",
        &link.netns.path().display().to_string(),
    ))?;
    let Some(tenant) = tenant_nl
        .link(TENANT_IFNAME)
        .map_err(nl_err("look up", TENANT_IFNAME))?
    else {
        return Ok(state);
    };
    state.tenant_end = host.as_ref().is_some_and(|h| paired(h, &tenant));
    state.tenant_up = tenant.is_up();
    state.mac_ok = tenant.mac == Some(tenant_mac(link.address));
    let mine: Vec<_> = tenant_nl
        .addresses()
        .map_err(nl_err("list addresses", TENANT_IFNAME))?
        .into_iter()
        .filter(|a| a.index == tenant.index)
        .collect();
    state.address_ok =
        mine.len() == 1 && mine[0].address == link.address && mine[0].prefix_len == 32;
    let routes = tenant_nl
        .routes()
        .map_err(nl_err("list routes", TENANT_IFNAME))?;
    state.route_ok = default_route_ok(&routes, gateway, tenant.index)
        && gateway_route_ok(&routes, gateway, tenant.index);
    let gateway_entry = tenant_nl
        .neighbour(tenant.index, gateway)
        .map_err(nl_err("look up neighbour", TENANT_IFNAME))?;
    state.neighbours_ok = gateway_entry == Some((gateway_mac(gateway), NUD_PERMANENT))
        && host_neighbour == Some((tenant_mac(link.address), NUD_PERMANENT));
    Ok(state)
}

/// Deletes the tenant's veth pair (both ends go, and their qdiscs) and its
/// shaping device ([`super::shape`]); `false` if none was there. Returns
/// once the kernel has released the names.
pub fn remove_tenant(instance: &Instance, tenant: &str) -> Result<bool, LinkError> {
    let name = instance.interface(tenant, 'h');
    let mut nl = host_netlink()?;
    let ifb = instance.interface(tenant, super::shape::IFB_ROLE);
    let had_ifb = match nl.link(&ifb).map_err(nl_err("look up", &ifb))? {
        Some(link) if link.kind.as_deref() == Some("ifb") => {
            nl.delete_link(link.index).map_err(nl_err("delete", &ifb))?
        }
        _ => false,
    };
    match nl.link(&name).map_err(nl_err("look up", &name))? {
        Some(link) if link.kind.as_deref() == Some("veth") => {
            nl.delete_link(link.index).map_err(nl_err("delete", &name))
        }
        None => Ok(had_ifb),
        Some(link) => Err(LinkError::Foreign {
            name,
            found: link.kind.unwrap_or_else(|| "device".to_owned()),
            expected: "veth",
        }),
    }
}

/// Deletes the permanent neighbour entry for a departed tenant's `address`
/// on its bridge; `false` if there was none (or no bridge).
pub fn remove_neighbour(
    instance: &Instance,
    config: &BridgeConfig,
    address: Ipv4Addr,
) -> Result<bool, LinkError> {
    let name = instance.bridge_shard(shard_of(config.range, address));
    let mut nl = host_netlink()?;
    match nl.link(&name).map_err(nl_err("look up", &name))? {
        Some(bridge) => nl
            .delete_neighbour(bridge.index, address)
            .map_err(nl_err("delete neighbour", &name)),
        None => Ok(false),
    }
}

/// Creates an `ifb` device if missing and brings it up (for shaping).
pub(crate) fn ensure_ifb(name: &str) -> Result<bool, LinkError> {
    let mut nl = host_netlink()?;
    let mut created = false;
    let link = match nl.link(name).map_err(nl_err("look up", name))? {
        Some(link) => link,
        None => {
            nl.create_link(name, "ifb")
                .map_err(nl_err("create ifb", name))?;
            created = true;
            nl.link(name)
                .map_err(nl_err("look up", name))?
                .ok_or_else(|| {
                    nl_err("find new ifb", name)(std::io::Error::from_raw_os_error(libc::ENODEV))
                })?
        }
    };
    if link.kind.as_deref() != Some("ifb") {
        return Err(LinkError::Foreign {
            name: name.to_owned(),
            found: link.kind.unwrap_or_else(|| "device".to_owned()),
            expected: "ifb",
        });
    }
    if !link.is_up() {
        nl.set_up(link.index, true)
            .map_err(nl_err("set up", name))?;
    }
    Ok(created)
}

/// The index of a host interface, for callers that name it (tests, tc).
pub fn host_interface_exists(name: &str) -> Result<bool, LinkError> {
    Ok(host_netlink()?
        .link(name)
        .map_err(nl_err("look up", name))?
        .is_some())
}

/// Whether `path` is a network namespace file we could wire.
pub fn netns_exists(path: &Path) -> bool {
    File::open(path).is_ok()
}
