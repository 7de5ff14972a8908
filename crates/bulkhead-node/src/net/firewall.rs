//! The tenant firewall: one `inet` and one `bridge` nftables table per
//! instance, both named [`Instance::nft_table`], compiled from the policy
//! engine into sets so that the rule count is constant and only set elements
//! grow with the tenants. See the module docs of [`crate::net`] for the
//! layout; this file holds the compiler ([`compile`] → [`Ruleset`]), the
//! renderer ([`Ruleset::render`], [`Ruleset::delta`]), the evaluator the
//! tests compare with the engine ([`Ruleset::allows`]) and the `nft` calls
//! ([`apply`], [`update`], [`observe`], [`counters`], [`remove`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use bulkhead_policy::tenancy::{self, DNS_ENDPOINT, TENANT_ENDPOINT, TenancyOptions};
use bulkhead_policy::{Engine, EngineOptions, GroupKey, PortRange, PortSet, Protocol};
use bulkhead_spec as spec;
use ipnet::{IpNet, Ipv4Net};

use super::addr::{bridge_address, format_mac, tenant_mac};
use super::error::{FirewallError, run};
use crate::naming::Instance;

/// The link-local range dropped unless the platform allows it.
pub const LINK_LOCAL: &str = "169.254.0.0/16";

/// An inclusive range of IPv4 addresses (one address when `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrRange {
    /// The first address.
    pub first: Ipv4Addr,
    /// The last address.
    pub last: Ipv4Addr,
}

impl AddrRange {
    /// One address.
    pub fn one(address: Ipv4Addr) -> Self {
        AddrRange {
            first: address,
            last: address,
        }
    }

    fn of_net(net: Ipv4Net) -> Self {
        AddrRange {
            first: net.network(),
            last: net.broadcast(),
        }
    }

    /// Whether `address` is inside.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        self.first <= address && address <= self.last
    }
}

impl std::fmt::Display for AddrRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One element of the `allow` set: new connections from `src` to `dst` on
/// `protocol` ports `ports.0..=ports.1` are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Allow {
    /// Source addresses.
    pub src: AddrRange,
    /// Destination addresses.
    pub dst: AddrRange,
    /// The protocol.
    pub protocol: Protocol,
    /// First and last destination port.
    pub ports: (u16, u16),
}

impl std::fmt::Display for Allow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} . {} . {} . ",
            self.src,
            self.dst,
            nft_protocol(self.protocol)
        )?;
        if self.ports.0 == self.ports.1 {
            write!(f, "{}", self.ports.0)
        } else {
            write!(f, "{}-{}", self.ports.0, self.ports.1)
        }
    }
}

/// A tenant's bridge port as the anti-spoofing set names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortBinding {
    /// The tenant.
    pub tenant: String,
    /// The host end of its veth.
    pub interface: String,
    /// The only source MAC it may send from.
    pub mac: [u8; 6],
    /// The only source address it may send from.
    pub address: Ipv4Addr,
}

/// Why the firewall cannot say exactly what the engine says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deviation {
    /// Ports the engine allows between some workloads of `src` and `dst`
    /// but the firewall does not (narrower, never wider).
    Narrowed {
        /// Source tenant or external endpoint.
        src: GroupKey,
        /// Destination.
        dst: GroupKey,
        /// What the engine allows for some workload pairs only (or what the
        /// platform forbids).
        ports: PortSet,
        /// Why.
        reason: NarrowReason,
    },
    /// Traffic between workloads of one tenant never leaves its namespace,
    /// so the host cannot filter it: the engine denies some of it, the host
    /// lets it through.
    NotEnforced {
        /// The tenant.
        tenant: String,
    },
}

/// Why a connection was narrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NarrowReason {
    /// All workloads of a tenant share its address, so a rule that holds
    /// only for some of them (a workload selector, a named port that
    /// resolves differently) is kept only where it holds for all of them.
    SharedAddress,
    /// 169.254.0.0/16 is dropped (`platform.spec.network.allowLinkLocal`).
    LinkLocal,
    /// Nothing leaves the host without NAT (`platform.spec.network.nat`):
    /// tenants reach addresses beyond the host only when it masquerades.
    NoNat,
}

impl std::fmt::Display for Deviation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deviation::Narrowed {
                src,
                dst,
                ports,
                reason: NarrowReason::SharedAddress,
            } => write!(
                f,
                "narrowed {src} -> {dst}  {ports}: allowed for some workloads only, and a tenant's workloads share one address"
            ),
            Deviation::Narrowed {
                src,
                dst,
                ports,
                reason: NarrowReason::LinkLocal,
            } => write!(
                f,
                "narrowed {src} -> {dst}  {ports}: link-local addresses are dropped (platform allowLinkLocal: false)"
            ),
            Deviation::Narrowed {
                src,
                dst,
                ports,
                reason: NarrowReason::NoNat,
            } => write!(
                f,
                "narrowed {src} -> {dst}  {ports}: nothing leaves the host without NAT (platform nat: false)"
            ),
            Deviation::NotEnforced { tenant } => write!(
                f,
                "not enforced: traffic between workloads of {tenant} stays inside its network namespace, where the host does not filter"
            ),
        }
    }
}

/// A compiled firewall: everything `render` writes, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Table name (both families).
    pub table: String,
    /// The instance bridge.
    pub bridge: String,
    /// Every bridge shard the tenants are on (the instance bridge always).
    pub bridges: BTreeSet<String>,
    /// The tenant range.
    pub range: Ipv4Net,
    /// The bridge's (host's) address on the range.
    pub bridge_address: Ipv4Addr,
    /// The DNS resolver tenants reach with `dns: true`.
    pub resolver: Ipv4Addr,
    /// Tenant ports, by tenant.
    pub ports: Vec<PortBinding>,
    /// New connections allowed between tenants, and between tenants and
    /// address classes outside the range.
    pub allow: BTreeSet<Allow>,
    /// `platform.spec.network.hostPorts`: what tenants reach on host
    /// addresses.
    pub host_ports: BTreeSet<(Protocol, u16, u16)>,
    /// Masquerade what leaves the host.
    pub nat: bool,
    /// Let 169.254.0.0/16 through where rules allow it.
    pub allow_link_local: bool,
    /// New connections from a tenant beyond this many tracked ones are refused
    /// (`platform.spec.network.connectionsPerTenant`).
    pub connections_per_tenant: u32,
    /// Where the firewall is narrower than the engine, or cannot enforce it.
    pub deviations: Vec<Deviation>,
}

fn nft_protocol(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

fn protocol_of(p: spec::Protocol) -> Protocol {
    match p {
        spec::Protocol::Tcp => Protocol::Tcp,
        spec::Protocol::Udp => Protocol::Udp,
        spec::Protocol::Sctp => Protocol::Sctp,
    }
}

/// `a ∩ b`.
pub(crate) fn intersect(a: &PortSet, b: &PortSet) -> PortSet {
    let mut out = Vec::new();
    for x in a.ranges() {
        for y in b.ranges() {
            if x.protocol == y.protocol {
                let (start, end) = (x.start.max(y.start), x.end.min(y.end));
                if start <= end {
                    out.push(PortRange {
                        protocol: x.protocol,
                        start,
                        end,
                    });
                }
            }
        }
    }
    PortSet::from_ranges(out)
}

fn union(a: &PortSet, b: &PortSet) -> PortSet {
    PortSet::from_ranges(a.ranges().iter().chain(b.ranges()).copied())
}

/// `a` minus `b`.
fn subtract(a: &PortSet, b: &PortSet) -> PortSet {
    let mut out = Vec::new();
    for range in a.ranges() {
        let mut pieces = vec![(u32::from(range.start), u32::from(range.end))];
        for cut in b.ranges().iter().filter(|r| r.protocol == range.protocol) {
            let (lo, hi) = (u32::from(cut.start), u32::from(cut.end));
            pieces = pieces
                .into_iter()
                .flat_map(|(start, end)| {
                    let mut left = Vec::with_capacity(2);
                    if hi < start || lo > end {
                        left.push((start, end));
                    } else {
                        if lo > start {
                            left.push((start, lo - 1));
                        }
                        if hi < end {
                            left.push((hi + 1, end));
                        }
                    }
                    left
                })
                .collect();
        }
        out.extend(pieces.into_iter().map(|(start, end)| PortRange {
            protocol: range.protocol,
            start: start as u16,
            end: end as u16,
        }));
    }
    PortSet::from_ranges(out)
}

/// One address class outside the tenant range: every ipBlock of every
/// policy either contains all of it or none of it.
#[derive(Debug, Clone)]
struct Class {
    name: String,
    range: AddrRange,
}

/// Cuts the IPv4 space at every ipBlock's (and except's) ends, the link-local
/// range and the tenant range; the pieces outside the tenant range are the
/// classes. The resolver is its own class, the engine's [`DNS_ENDPOINT`].
fn address_classes(
    translation: &tenancy::Translation,
    range: Ipv4Net,
    resolver: Ipv4Addr,
) -> Vec<Class> {
    let mut cuts: BTreeSet<u64> = BTreeSet::new();
    let mut cut = |net: Ipv4Net| {
        cuts.insert(u64::from(u32::from(net.network())));
        cuts.insert(u64::from(u32::from(net.broadcast())) + 1);
    };
    cut(range);
    cut(LINK_LOCAL.parse().unwrap_or(range));
    cut(Ipv4Net::from(resolver));
    for policy in &translation.cluster.policies {
        let peers = policy
            .ingress
            .iter()
            .flat_map(|r| &r.from)
            .chain(policy.egress.iter().flat_map(|r| &r.to));
        for block in peers.filter_map(|p| p.ip_block.as_ref()) {
            for text in std::iter::once(&block.cidr).chain(&block.except) {
                if let Ok(IpNet::V4(net)) = text.parse::<IpNet>() {
                    cut(net);
                }
            }
        }
    }
    cuts.insert(0);
    let bounds: Vec<u64> = cuts.into_iter().filter(|c| *c <= 1 << 32).collect();
    let tenant_range = AddrRange::of_net(range);
    let mut classes = Vec::new();
    for pair in bounds.windows(2) {
        let first = Ipv4Addr::from(pair[0] as u32);
        let last = Ipv4Addr::from((pair[1] - 1) as u32);
        if first == resolver || tenant_range.contains(first) {
            continue;
        }
        classes.push(Class {
            name: format!("net-{}", classes.len()),
            range: AddrRange { first, last },
        });
    }
    if let Some(last) = bounds.last()
        && *last < 1 << 32
    {
        let first = Ipv4Addr::from(*last as u32);
        if !tenant_range.contains(first) && first != resolver {
            classes.push(Class {
                name: format!("net-{}", classes.len()),
                range: AddrRange {
                    first,
                    last: Ipv4Addr::BROADCAST,
                },
            });
        }
    }
    classes
}

/// Compiles the firewall of `desired` for `instance`, with each tenant at
/// `addresses[tenant]` (the store allocates them). Every tenant of
/// `desired` needs an address.
pub fn compile(
    instance: &Instance,
    desired: &spec::Desired,
    addresses: &BTreeMap<String, Ipv4Addr>,
) -> Result<Ruleset, FirewallError> {
    let network = &desired.platform.spec.network;
    let IpNet::V4(range) = network.tenant_range else {
        return Err(FirewallError::NotIpv4 {
            range: network.tenant_range.to_string(),
        });
    };
    let bridge_addr = bridge_address(range).ok_or_else(|| FirewallError::NotIpv4 {
        range: range.to_string(),
    })?;
    let resolver = match tenancy::resolver_address(&desired.platform) {
        Some(IpAddr::V4(a)) => a,
        other => {
            return Err(FirewallError::NotIpv4 {
                range: other.map(|a| a.to_string()).unwrap_or_default(),
            });
        }
    };

    // Addresses, checked.
    let mut ports = Vec::new();
    let mut seen = BTreeSet::new();
    let mut options = TenancyOptions::new().tenant_endpoints(true);
    for name in desired.tenants.keys() {
        let tenant = name.as_str();
        let address = *addresses
            .get(tenant)
            .ok_or_else(|| FirewallError::NoAddress {
                tenant: tenant.to_owned(),
            })?;
        let problem = if !range.contains(&address) {
            Some("outside the tenant range")
        } else if address == range.network()
            || address == range.broadcast()
            || address == bridge_addr
        {
            Some("the range's network, broadcast or bridge address")
        } else if !seen.insert(address) {
            Some("used by another tenant too")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(FirewallError::BadAddress {
                tenant: tenant.to_owned(),
                address: address.to_string(),
                problem,
            });
        }
        options = options.address(tenant, IpAddr::V4(address));
        ports.push(PortBinding {
            tenant: tenant.to_owned(),
            interface: instance.interface(tenant, 'h'),
            mac: tenant_mac(address),
            address,
        });
    }

    // The engine, with one external endpoint per address class.
    let translation = tenancy::translate(desired, &options)
        .map_err(|e| FirewallError::Policy(tenancy::TenancyError::Translate(e)))?;
    let classes = address_classes(&translation, range, resolver);
    for class in &classes {
        options = options.external(class.name.clone(), IpAddr::V4(class.range.first));
    }
    let engine = tenancy::engine_for(desired, &options)?;
    let matrix = engine.matrix();

    // Each tenant's endpoints: its workloads, or the synthetic endpoint.
    let endpoints_of = |tenant: &spec::Name| -> Vec<bulkhead_policy::EndpointId> {
        let workloads: Vec<_> = desired
            .workloads_of(tenant)
            .filter_map(|w| engine.pod(tenant.as_str(), w.metadata.name.as_str()))
            .collect();
        if workloads.is_empty() {
            engine
                .pod(tenant.as_str(), TENANT_ENDPOINT)
                .into_iter()
                .collect()
        } else {
            workloads
        }
    };
    let tenants: Vec<(&PortBinding, Vec<_>)> = ports
        .iter()
        .zip(desired.tenants.keys())
        .map(|(p, name)| (p, endpoints_of(name)))
        .collect();
    let mut externals: Vec<(String, AddrRange, bulkhead_policy::EndpointId)> = Vec::new();
    if let Some(id) = engine.external(DNS_ENDPOINT) {
        externals.push((DNS_ENDPOINT.to_owned(), AddrRange::one(resolver), id));
    }
    for class in &classes {
        if let Some(id) = engine.external(&class.name) {
            externals.push((class.name.clone(), class.range, id));
        }
    }

    let mut allow = BTreeSet::new();
    let mut deviations = Vec::new();
    let link_local: Ipv4Net = LINK_LOCAL.parse().unwrap_or(range);
    let mut add = |src: AddrRange, dst: AddrRange, ports: &PortSet| {
        for r in ports.ranges() {
            allow.insert(Allow {
                src,
                dst,
                protocol: r.protocol,
                ports: (r.start, r.end),
            });
        }
    };
    // The intersection and union of the engine's ports over endpoint pairs.
    let meet = |srcs: &[bulkhead_policy::EndpointId], dsts: &[bulkhead_policy::EndpointId]| {
        let mut all: Option<PortSet> = None;
        let mut any = PortSet::default();
        for s in srcs {
            for d in dsts {
                if s == d {
                    continue;
                }
                let p = matrix.ports(*s, *d);
                any = union(&any, &p);
                all = Some(match all {
                    None => p,
                    Some(acc) => intersect(&acc, &p),
                });
            }
        }
        (all.unwrap_or_default(), any)
    };
    let tenant_key = |name: &str| GroupKey::Namespace {
        name: name.to_owned(),
    };
    let external_key = |name: &str| GroupKey::External {
        name: name.to_owned(),
    };
    let narrowed = |src: GroupKey, dst: GroupKey, all: &PortSet, any: &PortSet| {
        let lost = subtract(any, all);
        (!lost.is_empty()).then_some(Deviation::Narrowed {
            src,
            dst,
            ports: lost,
            reason: NarrowReason::SharedAddress,
        })
    };
    for (a, a_ids) in &tenants {
        for (b, b_ids) in &tenants {
            if a.tenant == b.tenant {
                continue;
            }
            let (all, any) = meet(a_ids, b_ids);
            deviations.extend(narrowed(
                tenant_key(&a.tenant),
                tenant_key(&b.tenant),
                &all,
                &any,
            ));
            add(AddrRange::one(a.address), AddrRange::one(b.address), &all);
        }
        for (name, dst, id) in &externals {
            let ids = [*id];
            for (src_ids, dst_ids, src, dst, src_key, dst_key) in [
                (
                    a_ids.as_slice(),
                    &ids[..],
                    AddrRange::one(a.address),
                    *dst,
                    tenant_key(&a.tenant),
                    external_key(name),
                ),
                (
                    &ids[..],
                    a_ids.as_slice(),
                    *dst,
                    AddrRange::one(a.address),
                    external_key(name),
                    tenant_key(&a.tenant),
                ),
            ] {
                let (all, any) = meet(src_ids, dst_ids);
                deviations.extend(narrowed(src_key.clone(), dst_key.clone(), &all, &any));
                let outside = if src.first == a.address { dst } else { src };
                if !network.allow_link_local
                    && link_local.contains(&outside.first)
                    && !all.is_empty()
                {
                    deviations.push(Deviation::Narrowed {
                        src: src_key,
                        dst: dst_key,
                        ports: all,
                        reason: NarrowReason::LinkLocal,
                    });
                    continue;
                }
                // From a tenant to beyond the host (anything but the bridge
                // address, the resolver's home): only through NAT.
                if !network.nat
                    && src.first == a.address
                    && outside != AddrRange::one(bridge_addr)
                    && !all.is_empty()
                {
                    deviations.push(Deviation::Narrowed {
                        src: src_key,
                        dst: dst_key,
                        ports: all,
                        reason: NarrowReason::NoNat,
                    });
                    continue;
                }
                add(src, dst, &all);
            }
        }
    }
    // Inside one tenant: the host sees none of it.
    for (a, a_ids) in &tenants {
        let (all, _) = meet(a_ids, a_ids);
        if a_ids.len() > 1 && all != PortSet::everything() {
            deviations.push(Deviation::NotEnforced {
                tenant: a.tenant.clone(),
            });
        }
    }

    let host_ports = network
        .host_ports
        .iter()
        .filter_map(|p| match &p.ports {
            spec::PortMatch::Range { first, last } => {
                Some((protocol_of(p.protocol), *first, *last))
            }
            spec::PortMatch::Named(_) => None,
        })
        .collect();

    let mut bridges: BTreeSet<String> = [instance.bridge()].into();
    bridges.extend(
        ports
            .iter()
            .map(|p| instance.bridge_shard(super::link::shard_of(range, p.address))),
    );
    Ok(Ruleset {
        table: instance.nft_table(),
        bridge: instance.bridge(),
        bridges,
        range,
        bridge_address: bridge_addr,
        resolver,
        ports,
        allow,
        host_ports,
        nat: network.nat,
        allow_link_local: network.allow_link_local,
        connections_per_tenant: network.connections_per_tenant,
        deviations,
    })
}

/// Builds the engine [`compile`] consults (for callers that want to compare).
pub fn engine(
    desired: &spec::Desired,
    addresses: &BTreeMap<String, Ipv4Addr>,
) -> Result<Engine, FirewallError> {
    let mut options = TenancyOptions::new().tenant_endpoints(true);
    for (tenant, address) in addresses {
        options = options.address(tenant.clone(), IpAddr::V4(*address));
    }
    let translation = tenancy::translate(desired, &options)
        .map_err(|e| FirewallError::Policy(tenancy::TenancyError::Translate(e)))?;
    Engine::new(&translation.cluster, EngineOptions::default())
        .map_err(|e| FirewallError::Policy(tenancy::TenancyError::Engine(e)))
}

/// Where a new connection goes through the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// From a tenant to a host address (`input` hook).
    TenantToHost,
    /// From a tenant, bridged to another tenant or routed off the host.
    FromTenant,
    /// From off the host to a tenant.
    ToTenant,
    /// None of ours: the tables let it pass.
    Other,
}

impl Ruleset {
    /// The tenant at `address`.
    pub fn tenant_at(&self, address: Ipv4Addr) -> Option<&PortBinding> {
        self.ports.iter().find(|p| p.address == address)
    }

    /// Which chain a new connection from `src` to `dst` meets; `local` says
    /// whether `dst` is an address of the host.
    pub fn path(&self, src: Ipv4Addr, dst: Ipv4Addr, local: bool) -> Path {
        let from_tenant = self.tenant_at(src).is_some();
        if from_tenant && local {
            Path::TenantToHost
        } else if from_tenant {
            Path::FromTenant
        } else if self.range.contains(&dst) && !local {
            Path::ToTenant
        } else {
            Path::Other
        }
    }

    fn in_allow(&self, src: Ipv4Addr, dst: Ipv4Addr, protocol: Protocol, port: u16) -> bool {
        self.allow.iter().any(|a| {
            a.src.contains(src)
                && a.dst.contains(dst)
                && a.protocol == protocol
                && a.ports.0 <= port
                && port <= a.ports.1
        })
    }

    /// Whether the rendered tables accept a new connection from `src` to
    /// `dst` on `port` (after anti-spoofing): the same data and the same
    /// order as the chains. `local`: `dst` is a host address.
    pub fn allows(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        local: bool,
        protocol: Protocol,
        port: u16,
    ) -> bool {
        let link_local = LINK_LOCAL
            .parse::<Ipv4Net>()
            .is_ok_and(|n| n.contains(&dst));
        match self.path(src, dst, local) {
            Path::TenantToHost => {
                if link_local && !self.allow_link_local {
                    return false;
                }
                (dst == self.resolver && self.in_allow(src, dst, protocol, port))
                    || self
                        .host_ports
                        .iter()
                        .any(|(p, a, b)| *p == protocol && *a <= port && port <= *b)
            }
            Path::FromTenant => {
                if link_local && !self.allow_link_local {
                    return false;
                }
                if !self.nat && !self.range.contains(&dst) {
                    return false;
                }
                self.in_allow(src, dst, protocol, port)
            }
            Path::ToTenant => self.in_allow(src, dst, protocol, port),
            Path::Other => true,
        }
    }

    /// The `nft -f -` script that replaces both tables in one transaction.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let t = &self.table;
        let _ = writeln!(out, "add table inet {t}\ndelete table inet {t}");
        let _ = writeln!(out, "add table bridge {t}\ndelete table bridge {t}");
        out.push_str(&self.render_inet());
        out.push_str(&self.render_bridge());
        out
    }

    fn addr_elements(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.address.to_string()).collect()
    }

    fn render_inet(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "table inet {} {{", self.table);
        let bridges: Vec<String> = self.bridges.iter().map(|b| format!("\"{b}\"")).collect();
        set(&mut o, "bridges", "ifname", &[], false, &bridges);
        set(
            &mut o,
            "allow",
            "ipv4_addr . ipv4_addr . inet_proto . inet_service",
            &["interval"],
            false,
            &self
                .allow
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        );
        set(
            &mut o,
            "host_ports",
            "inet_proto . inet_service",
            &["interval"],
            false,
            &self
                .host_ports
                .iter()
                .map(|(p, a, b)| {
                    if a == b {
                        format!("{} . {a}", nft_protocol(*p))
                    } else {
                        format!("{} . {a}-{b}", nft_protocol(*p))
                    }
                })
                .collect::<Vec<_>>(),
        );
        set(
            &mut o,
            "egress_drops",
            "ipv4_addr",
            &[],
            true,
            &self.addr_elements(),
        );
        set(
            &mut o,
            "ingress_drops",
            "ipv4_addr",
            &[],
            true,
            &self.addr_elements(),
        );
        // One connection count per tenant address, kept by the kernel in the
        // dynamic set's elements (nft_connlimit): the rule is the same for every
        // tenant, only the elements grow.
        let tenants = 1u64 << (32 - u32::from(self.range.prefix_len()));
        let _ = writeln!(
            o,
            "\tset tenant_conns {{\n\t\ttype ipv4_addr\n\t\tsize {}\n\t\tflags dynamic\n\t}}",
            tenants.clamp(1, 1 << 24)
        );
        let link_local = if self.allow_link_local {
            String::new()
        } else {
            format!("\t\tip daddr {LINK_LOCAL} drop\n")
        };
        // Without NAT nothing routed off the bridge leaves: the bridge routes
        // (tenants reach each other through the host), so this is the switch.
        let stay = if self.nat {
            String::new()
        } else {
            "\t\toifname != @bridges drop\n".to_owned()
        };
        // The instance resolver listens on the gateway address for every bridge
        // shard; nothing but the tenants (and the host itself) reaches it.
        let resolver_guard = if self.resolver == self.bridge_address {
            format!(
                "\t\tip daddr {} meta l4proto {{ tcp, udp }} th dport 53 iifname != \"lo\" drop\n",
                self.resolver
            )
        } else {
            String::new()
        };
        let cap = format!(
            "\t\tct state new add @tenant_conns {{ ip saddr ct count over {} }} jump over_share\n",
            self.connections_per_tenant
        );
        let _ = write!(
            o,
            "\tchain forward {{\n\
             \t\ttype filter hook forward priority filter - 10; policy accept;\n\
             \t\tiifname @bridges jump from_tenant\n\
             \t\toifname @bridges jump to_tenant\n\
             \t}}\n\
             \tchain from_tenant {{\n\
             \t\tct state established,related accept\n\
             \t\tmeta nfproto != ipv4 drop\n\
             {stay}\
             {link_local}\
             {cap}\
             \t\tip saddr . ip daddr . meta l4proto . th dport @allow accept\n\
             \t\tip saddr @egress_drops drop\n\
             \t\tdrop\n\
             \t}}\n\
             \tchain to_tenant {{\n\
             \t\tct state established,related accept\n\
             \t\tmeta nfproto != ipv4 drop\n\
             \t\tip saddr . ip daddr . meta l4proto . th dport @allow accept\n\
             \t\tip daddr @ingress_drops drop\n\
             \t\tdrop\n\
             \t}}\n\
             \tchain input {{\n\
             \t\ttype filter hook input priority filter - 10; policy accept;\n\
             \t\tiifname @bridges jump tenant_to_host\n\
             {resolver_guard}\
             \t}}\n\
             \tchain tenant_to_host {{\n\
             \t\tct state established,related accept\n\
             \t\tmeta nfproto != ipv4 drop\n\
             {link_local}\
             {cap}\
             \t\tip daddr {resolver} ip saddr . ip daddr . meta l4proto . th dport @allow accept\n\
             \t\tmeta l4proto . th dport @host_ports accept\n\
             \t\tip saddr @egress_drops drop\n\
             \t\tdrop\n\
             \t}}\n\
             \tchain output {{\n\
             \t\ttype filter hook output priority filter - 10; policy accept;\n\
             \t\toifname @bridges icmp type redirect drop\n\
             \t}}\n\
             \tchain over_share {{\n\
             \t\tmeta l4proto tcp reject with tcp reset\n\
             \t\treject\n\
             \t}}\n",
            resolver = self.resolver,
        );
        if self.nat {
            let _ = write!(
                o,
                "\tchain postrouting {{\n\
                 \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                 \t\tip saddr {range} oifname != @bridges masquerade\n\
                 \t}}\n",
                range = self.range,
            );
        }
        o.push_str("}\n");
        o
    }

    fn port_elements(&self) -> (Vec<String>, Vec<String>) {
        let names = self
            .ports
            .iter()
            .map(|p| format!("\"{}\"", p.interface))
            .collect();
        let bindings = self
            .ports
            .iter()
            .map(|p| Element::Binding(p.interface.clone(), format_mac(p.mac), p.address).text())
            .collect();
        (names, bindings)
    }

    fn render_bridge(&self) -> String {
        let mut o = String::new();
        let (names, bindings) = self.port_elements();
        let _ = writeln!(o, "table bridge {} {{", self.table);
        set(&mut o, "ports", "ifname", &[], false, &names);
        set(
            &mut o,
            "port_addrs",
            "ifname . ether_addr . ipv4_addr",
            &[],
            false,
            &bindings,
        );
        set(&mut o, "spoof_drops", "ifname", &[], true, &names);
        o.push_str(
            "\tchain prerouting {\n\
             \t\ttype filter hook prerouting priority filter; policy accept;\n\
             \t\tiifname != @ports accept\n\
             \t\tether type ip iifname . ether saddr . ip saddr @port_addrs accept\n\
             \t\tiifname @spoof_drops drop\n\
             \t\tdrop\n\
             \t}\n\
             }\n",
        );
        o
    }

    /// Whether `self` and `new` differ only in set elements, so that
    /// [`Ruleset::delta`] can move from one to the other.
    fn same_shape(&self, new: &Ruleset) -> bool {
        self.table == new.table
            && self.bridge == new.bridge
            && self.range == new.range
            && self.resolver == new.resolver
            && self.host_ports == new.host_ports
            && self.nat == new.nat
            && self.allow_link_local == new.allow_link_local
            && self.connections_per_tenant == new.connections_per_tenant
    }

    /// The `nft -f -` script that turns `self` (what is loaded) into `new`
    /// by adding and deleting set elements only, in one transaction; `None`
    /// when more than elements changed (then [`Ruleset::render`] it whole).
    /// Adding or removing one tenant touches only its own elements.
    pub fn delta(&self, new: &Ruleset) -> Option<String> {
        if !self.same_shape(new) {
            return None;
        }
        Some(
            Elements::of(self)
                .edits(&Elements::of(new), &self.table)
                .script,
        )
    }

    /// The `nft -f -` script that turns the elements `loaded` holds into
    /// `self`'s, in one transaction, with the number of elements it adds and
    /// deletes. Only for tables whose rules [`how`] verified.
    pub fn delta_from(&self, loaded: &FirewallState) -> (String, usize, usize) {
        let edits = self.edits_from(loaded);
        (edits.script, edits.added, edits.deleted)
    }

    fn edits_from(&self, loaded: &FirewallState) -> Edits {
        Elements::of_state(loaded).edits(&Elements::of(self), &self.table)
    }

    /// Everything of the ruleset except its per-tenant set elements: two
    /// rulesets with the same shape differ only in elements.
    pub fn shape(&self) -> String {
        Ruleset {
            ports: Vec::new(),
            bridges: BTreeSet::new(),
            allow: BTreeSet::new(),
            deviations: Vec::new(),
            ..self.clone()
        }
        .render()
    }

    /// The rules each chain holds once loaded, by (family, chain): read from
    /// [`Ruleset::render`], so it cannot disagree with what is loaded.
    pub fn chain_rules(&self) -> BTreeMap<(String, String), usize> {
        let mut out = BTreeMap::new();
        let mut family = "";
        let mut chain: Option<(String, String)> = None;
        for line in self.render().lines() {
            let trimmed = line.trim();
            if let Some(rest) = line.strip_prefix("table ") {
                family = rest.split_whitespace().next().unwrap_or_default();
            } else if let Some(rest) = line.strip_prefix("\tchain ") {
                let name = rest.trim_end_matches(" {").to_owned();
                let key = (family.to_owned(), name);
                out.insert(key.clone(), 0);
                chain = Some(key);
            } else if line == "\t}" {
                chain = None;
            } else if let Some(key) = &chain
                && line.starts_with("\t\t")
                && !trimmed.starts_with("type ")
                && let Some(count) = out.get_mut(key)
            {
                *count += 1;
            }
        }
        out
    }

    /// Element counts of the sets, for sizing reports.
    pub fn size(&self) -> RulesetSize {
        RulesetSize {
            rules: self.chain_rules().values().sum(),
            allow_elements: self.allow.len(),
            port_elements: self.ports.len() * 3,
            counter_elements: self.ports.len() * 3,
        }
    }
}

/// How big a ruleset is: a constant number of rules, sets that grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RulesetSize {
    /// Rules (including jumps), both tables: independent of the tenants.
    pub rules: usize,
    /// Elements of the `allow` set.
    pub allow_elements: usize,
    /// Elements of the anti-spoofing sets (`ports`, `port_addrs`).
    pub port_elements: usize,
    /// Per-tenant counter elements (`egress_drops`, `ingress_drops`, `spoof_drops`).
    pub counter_elements: usize,
}

/// One per-tenant set element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Element {
    /// Of `allow`.
    Allow(Allow),
    /// Of `egress_drops`, `ingress_drops`.
    Address(Ipv4Addr),
    /// Of `ports`, `spoof_drops`: an interface name.
    Name(String),
    /// Of `port_addrs`: interface, MAC (as `nft` prints it), address.
    Binding(String, String, Ipv4Addr),
}

/// `NFPROTO_INET`, `NFPROTO_BRIDGE`.
const NFPROTO_INET: u8 = 1;
const NFPROTO_BRIDGE: u8 = 7;
/// Netlink batches up to this many elements; `nft` beyond (the kernel takes
/// a batch in one datagram of at most the socket's send buffer).
const NETLINK_ELEMENTS: usize = 2_000;

fn ifname_key(name: &str) -> Option<[u8; 16]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= 16 {
        return None;
    }
    let mut key = [0u8; 16];
    key[..bytes.len()].copy_from_slice(bytes);
    Some(key)
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Element {
    /// As `nft` spells it.
    fn text(&self) -> String {
        match self {
            Element::Allow(a) => a.to_string(),
            Element::Address(a) => a.to_string(),
            Element::Name(n) => format!("\"{n}\""),
            Element::Binding(n, mac, a) => format!("\"{n}\" . {mac} . {a}"),
        }
    }

    /// As the kernel stores it: the key (and the interval's end for
    /// `allow`), each field of a concatenation padded to 4 bytes, integers
    /// in network order. `None` when it cannot be encoded.
    fn key(&self) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        match self {
            Element::Allow(a) => {
                let protocol = match a.protocol {
                    Protocol::Tcp => 6u8,
                    Protocol::Udp => 17,
                    Protocol::Sctp => 132,
                };
                let key = |src: Ipv4Addr, dst: Ipv4Addr, port: u16| {
                    let mut k = Vec::with_capacity(16);
                    k.extend_from_slice(&src.octets());
                    k.extend_from_slice(&dst.octets());
                    k.extend_from_slice(&[protocol, 0, 0, 0]);
                    k.extend_from_slice(&port.to_be_bytes());
                    k.extend_from_slice(&[0, 0]);
                    k
                };
                Some((
                    key(a.src.first, a.dst.first, a.ports.0),
                    Some(key(a.src.last, a.dst.last, a.ports.1)),
                ))
            }
            Element::Address(a) => Some((a.octets().to_vec(), None)),
            Element::Name(n) => Some((ifname_key(n)?.to_vec(), None)),
            Element::Binding(n, mac, a) => {
                let mut k = ifname_key(n)?.to_vec();
                k.extend_from_slice(&parse_mac(mac)?);
                k.extend_from_slice(&[0, 0]);
                k.extend_from_slice(&a.octets());
                Some((k, None))
            }
        }
    }
}

/// The per-tenant elements of every set.
#[derive(Debug, Default)]
struct Elements {
    bridges: BTreeSet<Element>,
    allow: BTreeSet<Element>,
    egress_drops: BTreeSet<Element>,
    ingress_drops: BTreeSet<Element>,
    port_addrs: BTreeSet<Element>,
    ports: BTreeSet<Element>,
    spoof_drops: BTreeSet<Element>,
}

/// What moves the loaded elements to the new ones.
#[derive(Debug, Default)]
struct Edits {
    /// The `nft -f -` script.
    script: String,
    /// The same, for netlink; `None` when an element does not encode.
    sets: Option<Vec<super::netlink::SetEdit>>,
    added: usize,
    deleted: usize,
}

impl Elements {
    fn of(r: &Ruleset) -> Elements {
        let addresses: BTreeSet<Element> = r
            .ports
            .iter()
            .map(|p| Element::Address(p.address))
            .collect();
        let names: BTreeSet<Element> = r
            .ports
            .iter()
            .map(|p| Element::Name(p.interface.clone()))
            .collect();
        Elements {
            bridges: r.bridges.iter().cloned().map(Element::Name).collect(),
            allow: r.allow.iter().copied().map(Element::Allow).collect(),
            egress_drops: addresses.clone(),
            ingress_drops: addresses,
            port_addrs: r
                .ports
                .iter()
                .map(|p| Element::Binding(p.interface.clone(), format_mac(p.mac), p.address))
                .collect(),
            ports: names.clone(),
            spoof_drops: names,
        }
    }

    fn of_state(s: &FirewallState) -> Elements {
        Elements {
            bridges: s.bridges.iter().cloned().map(Element::Name).collect(),
            allow: s.allow.iter().copied().map(Element::Allow).collect(),
            egress_drops: s
                .egress_drops
                .keys()
                .copied()
                .map(Element::Address)
                .collect(),
            ingress_drops: s
                .ingress_drops
                .keys()
                .copied()
                .map(Element::Address)
                .collect(),
            port_addrs: s
                .port_addrs
                .iter()
                .map(|(name, mac, address)| Element::Binding(name.clone(), mac.clone(), *address))
                .collect(),
            ports: s.ports.iter().cloned().map(Element::Name).collect(),
            spoof_drops: s.spoof_drops.keys().cloned().map(Element::Name).collect(),
        }
    }

    /// What moves `self` to `new` in table `t`.
    fn edits(&self, new: &Elements, t: &str) -> Edits {
        let mut out = Edits {
            sets: Some(Vec::new()),
            ..Edits::default()
        };
        let sets = [
            ("inet", "bridges", &self.bridges, &new.bridges),
            ("inet", "allow", &self.allow, &new.allow),
            (
                "inet",
                "egress_drops",
                &self.egress_drops,
                &new.egress_drops,
            ),
            (
                "inet",
                "ingress_drops",
                &self.ingress_drops,
                &new.ingress_drops,
            ),
            ("bridge", "port_addrs", &self.port_addrs, &new.port_addrs),
            ("bridge", "ports", &self.ports, &new.ports),
            ("bridge", "spoof_drops", &self.spoof_drops, &new.spoof_drops),
        ];
        for (family, set, old, new) in sets {
            let gone: Vec<&Element> = old.difference(new).collect();
            let more: Vec<&Element> = new.difference(old).collect();
            let text = |items: &[&Element]| {
                items
                    .iter()
                    .map(|e| e.text())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !gone.is_empty() {
                let _ = writeln!(
                    out.script,
                    "delete element {family} {t} {set} {{ {} }}",
                    text(&gone)
                );
            }
            if !more.is_empty() {
                let _ = writeln!(
                    out.script,
                    "add element {family} {t} {set} {{ {} }}",
                    text(&more)
                );
            }
            out.added += more.len();
            out.deleted += gone.len();
            if gone.is_empty() && more.is_empty() {
                continue;
            }
            let keys =
                |items: &[&Element]| items.iter().map(|e| e.key()).collect::<Option<Vec<_>>>();
            out.sets = match (out.sets.take(), keys(&gone), keys(&more)) {
                (Some(mut sets), Some(delete), Some(add)) => {
                    sets.push(super::netlink::SetEdit {
                        family: if family == "inet" {
                            NFPROTO_INET
                        } else {
                            NFPROTO_BRIDGE
                        },
                        set,
                        delete,
                        add,
                    });
                    Some(sets)
                }
                _ => None,
            };
        }
        out
    }
}

/// Applies `edits` to `table` in one transaction: over nfnetlink (no `nft`
/// exec, no cache fetch) when every element encodes and the batch is small,
/// else with `nft -f -`.
fn push(table: &str, edits: &Edits) -> Result<(), FirewallError> {
    if edits.script.is_empty() {
        return Ok(());
    }
    match &edits.sets {
        Some(sets) if edits.added + edits.deleted <= NETLINK_ELEMENTS => {
            super::netlink::Netlink::open_netfilter()
                .and_then(|mut socket| socket.edit_set_elements(table, sets))
                .map_err(|source| FirewallError::Netlink {
                    table: table.to_owned(),
                    source,
                })
        }
        _ => nft(&edits.script),
    }
}

fn set(
    out: &mut String,
    name: &str,
    kind: &str,
    flags: &[&str],
    counter: bool,
    elements: &[String],
) {
    let _ = writeln!(out, "\tset {name} {{\n\t\ttype {kind}");
    if !flags.is_empty() {
        let _ = writeln!(out, "\t\tflags {}", flags.join(", "));
    }
    if counter {
        out.push_str("\t\tcounter\n");
    }
    if !elements.is_empty() {
        out.push_str("\t\telements = {\n");
        for (i, e) in elements.iter().enumerate() {
            let sep = if i + 1 == elements.len() { "" } else { "," };
            let _ = writeln!(out, "\t\t\t{e}{sep}");
        }
        out.push_str("\t\t}\n");
    }
    out.push_str("\t}\n");
}

fn nft(script: &str) -> Result<(), FirewallError> {
    run(Command::new("nft").args(["-f", "-"]), Some(script))?;
    Ok(())
}

/// Loads `ruleset`, replacing both tables atomically (one `nft`
/// transaction: a packet sees the old tables or the new ones, never none).
pub fn apply(ruleset: &Ruleset) -> Result<(), FirewallError> {
    nft(&ruleset.render())
}

/// Moves the loaded tables from `old` to `new`: set elements only when that
/// is all that changed, else a full atomic replacement. Returns whether it
/// was incremental.
pub fn update(old: &Ruleset, new: &Ruleset) -> Result<bool, FirewallError> {
    if !old.same_shape(new) {
        return apply(new).map(|()| false);
    }
    push(
        &new.table,
        &Elements::of(old).edits(&Elements::of(new), &new.table),
    )
    .map(|()| true)
}

/// How [`load`] brings the tables to a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Load {
    /// Add and delete set elements only, in one transaction: the other
    /// tenants' elements, their counters and the connections they track stay
    /// as they are. The counts are unknown until the addresses are.
    Elements {
        /// Elements added.
        added: Option<usize>,
        /// Elements deleted.
        deleted: Option<usize>,
    },
    /// Replace both tables in one transaction (counters start from zero).
    Full {
        /// Why the elements alone would not do.
        reason: String,
    },
}

impl Default for Load {
    fn default() -> Self {
        Load::Full {
            reason: "nothing loaded yet".to_owned(),
        }
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Load::Elements {
                added: Some(added),
                deleted: Some(deleted),
            } => write!(
                f,
                "incremental, set elements only (+{added} -{deleted}; the loaded rules verified)"
            ),
            Load::Elements { .. } => {
                write!(
                    f,
                    "incremental, set elements only (the loaded rules verified)"
                )
            }
            Load::Full { reason } => write!(f, "full atomic replacement ({reason})"),
        }
    }
}

/// What the last full load left in the kernel: the ruleset's shape as we
/// rendered it and its rules, chains and set declarations as the kernel
/// listed them right after. Kept in [`Instance::firewall_record`]; trusted
/// only while the kernel still lists exactly these rules.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadRecord {
    /// [`Ruleset::shape`] of the loaded ruleset.
    pub shape: String,
    /// [`FirewallState::rules`] right after the load.
    pub rules: Vec<serde_json::Value>,
}

impl LoadRecord {
    /// The record of `instance`; `None` when there is none or it does not
    /// read (then the next load is a full one).
    pub fn read(instance: &Instance) -> Option<LoadRecord> {
        let text = std::fs::read_to_string(instance.firewall_record()).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, instance: &Instance) -> Result<(), FirewallError> {
        let path = instance.firewall_record();
        let record = |source| FirewallError::Record {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string(self).map_err(|e| FirewallError::Json(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(record)?;
        }
        let scratch = path.with_extension("loaded.new");
        std::fs::write(&scratch, text).map_err(record)?;
        std::fs::rename(&scratch, &path).map_err(record)
    }
}

/// Whether the tables `state` shows can be moved to `expected` (when the
/// addresses are known) by editing set elements alone: both tables exist,
/// their rules are exactly those the last full load left (`record`), and
/// `expected` has that load's shape. Anything else is a full replacement,
/// with the reason.
pub fn how(expected: Option<&Ruleset>, state: &FirewallState, record: Option<&LoadRecord>) -> Load {
    let full = |reason: &str| Load::Full {
        reason: reason.to_owned(),
    };
    if !state.inet && !state.bridge {
        return full("nothing loaded yet");
    }
    if !state.inet || !state.bridge {
        return full("a table is missing");
    }
    let Some(record) = record else {
        return full("no record of the last full load");
    };
    if record.rules != state.rules {
        return full("the loaded rules differ from the last full load: drift");
    }
    match expected {
        Some(expected) if expected.shape() != record.shape => {
            full("more than set elements changed")
        }
        Some(expected) => {
            let (_, added, deleted) = expected.delta_from(state);
            Load::Elements {
                added: Some(added),
                deleted: Some(deleted),
            }
        }
        None => Load::Elements {
            added: None,
            deleted: None,
        },
    }
}

/// Brings the kernel's tables to `expected`: set elements only when [`how`]
/// says the loaded rules can be trusted, else (or when the element
/// transaction fails) the atomic replacement, recorded for the next load.
/// Returns what it did.
pub fn load(instance: &Instance, expected: &Ruleset) -> Result<Load, FirewallError> {
    let state = observe(instance)?;
    let record = LoadRecord::read(instance);
    let reason = match how(Some(expected), &state, record.as_ref()) {
        Load::Elements { .. } => {
            let edits = expected.edits_from(&state);
            match push(&expected.table, &edits) {
                Ok(()) => {
                    return Ok(Load::Elements {
                        added: Some(edits.added),
                        deleted: Some(edits.deleted),
                    });
                }
                Err(e) => format!("the element transaction failed: {e}"),
            }
        }
        Load::Full { reason } => reason,
    };
    apply(expected)?;
    let loaded = observe(instance)?;
    LoadRecord {
        shape: expected.shape(),
        rules: loaded.rules,
    }
    .write(instance)?;
    Ok(Load::Full { reason })
}

/// Deletes both tables; `false` if neither existed.
pub fn remove(instance: &Instance) -> Result<bool, FirewallError> {
    let t = instance.nft_table();
    let state = observe(instance)?;
    match std::fs::remove_file(instance.firewall_record()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(FirewallError::Record {
                path: instance.firewall_record(),
                source: e,
            });
        }
        _ => {}
    }
    if !state.inet && !state.bridge {
        return Ok(false);
    }
    nft(&format!(
        "add table inet {t}\ndelete table inet {t}\nadd table bridge {t}\ndelete table bridge {t}\n"
    ))?;
    Ok(true)
}

/// Packets and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Count {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// What the kernel holds of an instance's firewall.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallState {
    /// The `inet` table exists.
    pub inet: bool,
    /// The `bridge` table exists.
    pub bridge: bool,
    /// Elements of `allow`.
    pub allow: BTreeSet<Allow>,
    /// Elements of `port_addrs`: interface, MAC, address.
    pub port_addrs: BTreeSet<(String, String, Ipv4Addr)>,
    /// Elements of the bridge table's `ports`.
    pub ports: BTreeSet<String>,
    /// Elements of the inet table's `bridges`.
    pub bridges: BTreeSet<String>,
    /// Tables, chains, rules and set declarations as `nft -j` lists them,
    /// without handles and without per-tenant elements: what [`LoadRecord`]
    /// compares.
    pub rules: Vec<serde_json::Value>,
    /// Dropped new connections (or packets) from a tenant, by address.
    pub egress_drops: BTreeMap<Ipv4Addr, Count>,
    /// Dropped packets from off the host to a tenant, by address.
    pub ingress_drops: BTreeMap<Ipv4Addr, Count>,
    /// Frames dropped for a spoofed source, by tenant interface.
    pub spoof_drops: BTreeMap<String, Count>,
    /// Rules per chain, by (family, chain): a flushed table keeps its sets
    /// but loses these.
    pub chain_rules: BTreeMap<(String, String), usize>,
}

impl FirewallState {
    /// What differs from `expected`, one line per difference (empty: no
    /// drift).
    pub fn drift(&self, expected: &Ruleset) -> Vec<String> {
        let mut out = Vec::new();
        if !self.inet {
            out.push(format!("table inet {} is missing", expected.table));
        }
        if !self.bridge {
            out.push(format!("table bridge {} is missing", expected.table));
        }
        if self.inet || self.bridge {
            for ((family, chain), want) in expected.chain_rules() {
                let tables = if family == "inet" {
                    self.inet
                } else {
                    self.bridge
                };
                let have = self.chain_rules.get(&(family.clone(), chain.clone()));
                match have {
                    _ if !tables => {}
                    None => out.push(format!("chain {family} {chain} is missing")),
                    Some(have) if *have != want => out.push(format!(
                        "chain {family} {chain} holds {have} rules (expected {want})"
                    )),
                    Some(_) => {}
                }
            }
        }
        if self.inet {
            for b in expected.bridges.difference(&self.bridges) {
                out.push(format!("bridge missing from the bridges set: {b}"));
            }
            for b in self.bridges.difference(&expected.bridges) {
                out.push(format!("bridge not expected in the bridges set: {b}"));
            }
            for a in expected.allow.difference(&self.allow) {
                out.push(format!("allow element missing: {a}"));
            }
            for a in self.allow.difference(&expected.allow) {
                out.push(format!("allow element not expected: {a}"));
            }
        }
        if self.bridge {
            let want: BTreeSet<(String, String, Ipv4Addr)> = expected
                .ports
                .iter()
                .map(|p| (p.interface.clone(), format_mac(p.mac), p.address))
                .collect();
            for p in want.difference(&self.port_addrs) {
                out.push(format!(
                    "anti-spoofing binding missing: {} {} {}",
                    p.0, p.1, p.2
                ));
            }
            for p in self.port_addrs.difference(&want) {
                out.push(format!(
                    "anti-spoofing binding not expected: {} {} {}",
                    p.0, p.1, p.2
                ));
            }
        }
        out
    }
}

/// Reads both tables (`nft -j list table`).
pub fn observe(instance: &Instance) -> Result<FirewallState, FirewallError> {
    let t = instance.nft_table();
    let mut state = FirewallState::default();
    for family in ["inet", "bridge"] {
        let json = match run(
            Command::new("nft").args(["-j", "list", "table", family, &t]),
            None,
        ) {
            Ok(json) => json,
            Err(super::error::CommandError::Failed { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| FirewallError::Json(e.to_string()))?;
        if family == "inet" {
            state.inet = true;
        } else {
            state.bridge = true;
        }
        let items = value["nftables"].as_array().cloned().unwrap_or_default();
        state
            .rules
            .extend(items.iter().filter_map(without_elements));
        for item in items {
            if let Some(chain) = item.get("chain")
                && let Some(name) = chain["name"].as_str()
            {
                state
                    .chain_rules
                    .entry((family.to_owned(), name.to_owned()))
                    .or_insert(0);
            }
            if let Some(rule) = item.get("rule")
                && let Some(name) = rule["chain"].as_str()
            {
                *state
                    .chain_rules
                    .entry((family.to_owned(), name.to_owned()))
                    .or_insert(0) += 1;
            }
            let Some(set) = item.get("set") else { continue };
            let name = set["name"].as_str().unwrap_or_default();
            let elems = set["elem"].as_array().cloned().unwrap_or_default();
            for elem in elems {
                match (family, name) {
                    ("inet", "allow") => {
                        let allow = parse_allow(&elem).ok_or_else(|| {
                            FirewallError::Json(format!("unexpected allow element {elem}"))
                        })?;
                        state.allow.insert(allow);
                    }
                    ("inet", "egress_drops" | "ingress_drops") => {
                        let (key, count) = counted(&elem);
                        if let Some(address) = key.and_then(|k| k.parse().ok()) {
                            let map = if name == "egress_drops" {
                                &mut state.egress_drops
                            } else {
                                &mut state.ingress_drops
                            };
                            map.insert(address, count);
                        }
                    }
                    ("bridge", "spoof_drops") => {
                        let (key, count) = counted(&elem);
                        if let Some(key) = key {
                            state.spoof_drops.insert(key, count);
                        }
                    }
                    ("bridge", "ports") => {
                        if let Some(name) = elem.as_str() {
                            state.ports.insert(name.to_owned());
                        }
                    }
                    ("inet", "bridges") => {
                        if let Some(name) = elem.as_str() {
                            state.bridges.insert(name.to_owned());
                        }
                    }
                    ("bridge", "port_addrs") => {
                        let parts = elem["concat"].as_array().cloned().unwrap_or_default();
                        if let [name, mac, address] = parts.as_slice()
                            && let (Some(name), Some(mac), Some(address)) =
                                (name.as_str(), mac.as_str(), address.as_str())
                            && let Ok(address) = address.parse()
                        {
                            state
                                .port_addrs
                                .insert((name.to_owned(), mac.to_owned(), address));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(state)
}

/// An `nft -j` item without its handle and, for sets, without elements
/// (except `host_ports`, which belongs to the shape); `None` for metadata.
fn without_elements(item: &serde_json::Value) -> Option<serde_json::Value> {
    let object = item.as_object()?;
    let (kind, body) = object.iter().next()?;
    if kind == "metainfo" {
        return None;
    }
    let mut body = body.as_object()?.clone();
    body.remove("handle");
    if kind == "set" && body.get("name").and_then(|n| n.as_str()) != Some("host_ports") {
        body.remove("elem");
    }
    Some(serde_json::json!({ kind: body }))
}

/// Per-tenant drop counters from the sets' element counters.
pub fn counters(instance: &Instance) -> Result<FirewallState, FirewallError> {
    observe(instance)
}

/// An element with a counter: `{"elem": {"val": …, "counter": {…}}}`.
fn counted(elem: &serde_json::Value) -> (Option<String>, Count) {
    let inner = &elem["elem"];
    let key = inner["val"].as_str().map(str::to_owned);
    let count = Count {
        packets: inner["counter"]["packets"].as_u64().unwrap_or(0),
        bytes: inner["counter"]["bytes"].as_u64().unwrap_or(0),
    };
    (key, count)
}

fn parse_addr_range(v: &serde_json::Value) -> Option<AddrRange> {
    if let Some(text) = v.as_str() {
        return Some(AddrRange::one(text.parse().ok()?));
    }
    if let Some(prefix) = v.get("prefix") {
        let net = Ipv4Net::new(
            prefix["addr"].as_str()?.parse().ok()?,
            u8::try_from(prefix["len"].as_u64()?).ok()?,
        )
        .ok()?;
        return Some(AddrRange::of_net(net));
    }
    let range = v.get("range")?.as_array()?;
    Some(AddrRange {
        first: range.first()?.as_str()?.parse().ok()?,
        last: range.get(1)?.as_str()?.parse().ok()?,
    })
}

fn parse_port_range(v: &serde_json::Value) -> Option<(u16, u16)> {
    if let Some(n) = v.as_u64() {
        let n = u16::try_from(n).ok()?;
        return Some((n, n));
    }
    let range = v.get("range")?.as_array()?;
    Some((
        u16::try_from(range.first()?.as_u64()?).ok()?,
        u16::try_from(range.get(1)?.as_u64()?).ok()?,
    ))
}

fn parse_allow(elem: &serde_json::Value) -> Option<Allow> {
    let parts = elem.get("concat")?.as_array()?;
    let [src, dst, proto, port] = parts.as_slice() else {
        return None;
    };
    let protocol = match proto {
        serde_json::Value::String(s) if s == "tcp" => Protocol::Tcp,
        serde_json::Value::String(s) if s == "udp" => Protocol::Udp,
        serde_json::Value::String(s) if s == "sctp" => Protocol::Sctp,
        serde_json::Value::Number(n) if n.as_u64() == Some(6) => Protocol::Tcp,
        serde_json::Value::Number(n) if n.as_u64() == Some(17) => Protocol::Udp,
        serde_json::Value::Number(n) if n.as_u64() == Some(132) => Protocol::Sctp,
        _ => return None,
    };
    Some(Allow {
        src: parse_addr_range(src)?,
        dst: parse_addr_range(dst)?,
        protocol,
        ports: parse_port_range(port)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(ranges: &[(Protocol, u16, u16)]) -> PortSet {
        PortSet::from_ranges(ranges.iter().map(|&(protocol, start, end)| PortRange {
            protocol,
            start,
            end,
        }))
    }

    #[test]
    fn port_set_algebra() {
        let a = set_of(&[(Protocol::Tcp, 1, 100), (Protocol::Udp, 53, 53)]);
        let b = set_of(&[(Protocol::Tcp, 50, 200)]);
        assert_eq!(intersect(&a, &b), set_of(&[(Protocol::Tcp, 50, 100)]));
        assert_eq!(
            subtract(&a, &b),
            set_of(&[(Protocol::Tcp, 1, 49), (Protocol::Udp, 53, 53)])
        );
        assert_eq!(
            union(&a, &b),
            set_of(&[(Protocol::Tcp, 1, 200), (Protocol::Udp, 53, 53)])
        );
    }

    #[test]
    fn chain_rule_counts_add_up_to_the_size() {
        let ruleset = Ruleset {
            table: "bulkhead_t".to_owned(),
            bridge: "t-br".to_owned(),
            bridges: ["t-br".to_owned()].into(),
            range: "10.9.0.0/24".parse().expect("net"),
            bridge_address: Ipv4Addr::new(10, 9, 0, 1),
            resolver: Ipv4Addr::new(10, 9, 0, 1),
            ports: Vec::new(),
            allow: BTreeSet::new(),
            host_ports: BTreeSet::new(),
            nat: false,
            allow_link_local: false,
            connections_per_tenant: 100,
            deviations: Vec::new(),
        };
        let counts = ruleset.chain_rules();
        assert_eq!(counts.values().sum::<usize>(), 32);
        assert_eq!(counts[&("bridge".to_owned(), "prerouting".to_owned())], 4);
        assert_eq!(counts[&("inet".to_owned(), "from_tenant".to_owned())], 8);
        // With NAT: the masquerade rule instead of the stay-on-the-host drop.
        let with_nat = Ruleset {
            nat: true,
            ..ruleset
        };
        assert_eq!(with_nat.size().rules, 32);
        assert_eq!(
            with_nat.chain_rules()[&("inet".to_owned(), "from_tenant".to_owned())],
            7
        );
    }

    #[test]
    fn allow_elements_read_back_from_json() {
        let elem: serde_json::Value = serde_json::from_str(
            r#"{"concat": ["10.9.0.2", {"prefix": {"addr": "203.0.113.0", "len": 24}}, "udp", {"range": [1000, 2000]}]}"#,
        )
        .expect("json");
        let allow = parse_allow(&elem).expect("an allow element");
        assert_eq!(
            allow.to_string(),
            "10.9.0.2 . 203.0.113.0-203.0.113.255 . udp . 1000-2000"
        );
    }
}
