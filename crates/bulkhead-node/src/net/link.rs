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

use super::addr::{bridge_address, tenant_mac};
use super::error::LinkError;
use super::netlink::{Link, Netlink};
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
    /// Whether the host routes tenant traffic off the bridge (sets
    /// `net.ipv4.conf.<bridge>.forwarding`; needed for any tenant rule that
    /// reaches beyond the host, never touches the host-wide switch).
    pub forwarding: bool,
}

impl BridgeConfig {
    /// The bridge's address (`None` for a range without one).
    pub fn address(&self) -> Option<Ipv4Addr> {
        bridge_address(self.range)
    }
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
}

impl BridgeState {
    /// Exists, up and addressed.
    pub fn is_ready(&self) -> bool {
        self.exists && self.up && self.addressed
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
    /// … the default route goes via the bridge address.
    pub route_ok: bool,
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

/// Creates the instance bridge if missing, gives it the first usable
/// address of the range, brings it up, and sets its forwarding switch.
pub fn ensure_bridge(instance: &Instance, config: &BridgeConfig) -> Result<Changes, LinkError> {
    let name = instance.bridge();
    let (address, prefix) = bridge_prefix(config)?;
    let mut nl = host_netlink()?;
    let mut changes = Changes::default();
    let link = match nl.link(&name).map_err(nl_err("look up", &name))? {
        Some(link) => link,
        None => {
            nl.create_link(&name, "bridge")
                .map_err(nl_err("create bridge", &name))?;
            changes.steps.push(format!("create bridge {name}"));
            let link = nl
                .link(&name)
                .map_err(nl_err("look up", &name))?
                .ok_or_else(|| LinkError::NoBridge {
                    bridge: name.clone(),
                })?;
            nl.set_no_ipv6_addresses(link.index)
                .map_err(nl_err("turn off IPv6 addresses on", &name))?;
            link
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(LinkError::Foreign {
            name,
            found: link.kind.unwrap_or_else(|| "device".to_owned()),
            expected: "bridge",
        });
    }
    let has = nl
        .addresses()
        .map_err(nl_err("list addresses", &name))?
        .iter()
        .any(|a| a.index == link.index && a.address == address && a.prefix_len == prefix);
    if !has {
        nl.add_address(link.index, address, prefix)
            .map_err(nl_err("add address", &name))?;
        changes
            .steps
            .push(format!("address {name} {address}/{prefix}"));
    }
    if !link.is_up() {
        nl.set_up(link.index, true)
            .map_err(nl_err("set up", &name))?;
        changes.steps.push(format!("up {name}"));
    }
    let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{name}/forwarding"));
    let want = if config.forwarding { "1" } else { "0" };
    let now = std::fs::read_to_string(&path).unwrap_or_default();
    if now.trim() != want {
        std::fs::write(&path, want).map_err(|source| LinkError::Sysctl {
            path: path.clone(),
            source,
        })?;
        changes.steps.push(format!("forwarding {name} {want}"));
    }
    Ok(changes)
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
    })
}

/// Deletes the bridge; `false` if there was none. Tenant veths stay (they
/// are only unplugged): remove them first.
pub fn remove_bridge(instance: &Instance) -> Result<bool, LinkError> {
    let name = instance.bridge();
    let mut nl = host_netlink()?;
    match nl.link(&name).map_err(nl_err("look up", &name))? {
        Some(link) => nl.delete_link(link.index).map_err(nl_err("delete", &name)),
        None => Ok(false),
    }
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
    tenant: &str,
) -> Result<Ends, LinkError> {
    let bridge_name = instance.bridge();
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
    let (gateway, prefix) = bridge_prefix(config)?;
    let netns = link.netns.open()?;
    let mut host_nl = host_netlink()?;
    let mut tenant_nl = Netlink::open_in(netns.as_fd()).map_err(nl_err(
        "open netlink socket in",
        &link.netns.path().display().to_string(),
    ))?;
    let host_name = instance.interface(&link.tenant, 'h');
    let mac = tenant_mac(link.address);
    let mut changes = Changes::default();

    let mut now = ends(&mut host_nl, &mut tenant_nl, instance, &link.tenant)?;
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
        now = ends(&mut host_nl, &mut tenant_nl, instance, &link.tenant)?;
        // Both ends are still down: no IPv6 addresses, before they come up.
        if let Some(h) = &now.host {
            host_nl
                .set_no_ipv6_addresses(h.index)
                .map_err(nl_err("turn off IPv6 addresses on", &host_name))?;
        }
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
    if !host.is_up() {
        host_nl
            .set_up(host.index, true)
            .map_err(nl_err("set up", &host_name))?;
        changes.steps.push(format!("up {host_name}"));
    }
    if tenant.mac != Some(mac) {
        tenant_nl
            .set_mac(tenant.index, mac)
            .map_err(nl_err("set mac", TENANT_IFNAME))?;
        changes.steps.push(format!("mac {TENANT_IFNAME}"));
    }
    let addresses = tenant_nl
        .addresses()
        .map_err(nl_err("list addresses", TENANT_IFNAME))?;
    if !addresses
        .iter()
        .any(|a| a.index == tenant.index && a.address == link.address && a.prefix_len == prefix)
    {
        tenant_nl
            .add_address(tenant.index, link.address, prefix)
            .map_err(nl_err("add address", TENANT_IFNAME))?;
        changes
            .steps
            .push(format!("address {TENANT_IFNAME} {}/{prefix}", link.address));
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
    if !default_route_ok(&routes, gateway, tenant.index) {
        tenant_nl
            .replace_default_route(gateway, tenant.index)
            .map_err(nl_err("set default route", TENANT_IFNAME))?;
        changes.steps.push(format!("default via {gateway}"));
    }
    Ok(changes)
}

fn default_route_ok(routes: &[super::netlink::Route], gateway: Ipv4Addr, oif: u32) -> bool {
    routes
        .iter()
        .any(|r| r.dst_len == 0 && r.gateway == Some(gateway) && r.oif == Some(oif))
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
    let (gateway, prefix) = bridge_prefix(config)?;
    let mut host_nl = host_netlink()?;
    let host_name = instance.interface(&link.tenant, 'h');
    let bridge = host_nl
        .link(&instance.bridge())
        .map_err(nl_err("look up", &instance.bridge()))?;
    let host = host_nl
        .link(&host_name)
        .map_err(nl_err("look up", &host_name))?
        .filter(|h| h.kind.as_deref() == Some("veth"));
    let mut state = TenantLinkState::default();
    if let Some(h) = &host {
        state.host_end = true;
        state.host_up = h.is_up();
        state.on_bridge = bridge.is_some_and(|b| h.master == Some(b.index));
    }
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
        mine.len() == 1 && mine[0].address == link.address && mine[0].prefix_len == prefix;
    state.route_ok = default_route_ok(
        &tenant_nl
            .routes()
            .map_err(nl_err("list routes", TENANT_IFNAME))?,
        gateway,
        tenant.index,
    );
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
