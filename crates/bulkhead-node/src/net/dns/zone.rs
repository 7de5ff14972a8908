//! The resolver's data: the platform's names, and for each tenant address
//! the subset of them that tenant may resolve, compiled from the policy
//! engine ([`compile`]) and written as one JSON file the resolver reads at
//! start ([`Zone::render`], [`Zone::parse`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use bulkhead_policy::tenancy::{self, TENANT_ENDPOINT, TenancyOptions};
use bulkhead_policy::{EndpointId, Engine};
use bulkhead_spec as spec;
use serde::{Deserialize, Serialize};

use super::super::addr::bridge_address;
use super::super::error::FirewallError;

/// TTL of every answer: short, tenants come and go.
pub const TTL: u32 = 5;

/// What the resolver serves, for whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// Where it listens (UDP and TCP port 53): the bridge address.
    pub listen: Ipv4Addr,
    /// Where names outside the platform go (`platform.spec.network.upstreamDns`);
    /// empty: answered `NXDOMAIN`.
    pub upstreams: Vec<IpAddr>,
    /// Every tenant name: a name whose last label is one of these is the
    /// platform's, answered here and never forwarded.
    pub tenants: BTreeSet<String>,
    /// The platform's names (`<tenant>` and `<workload>.<tenant>`), each with
    /// its address; the views index into it.
    pub names: Vec<(String, Ipv4Addr)>,
    /// Per source address (a tenant's), the indices in `names` it may
    /// resolve. A source not listed is refused.
    pub views: BTreeMap<Ipv4Addr, Vec<u32>>,
}

/// How a name is answered for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// One of the platform's names, visible to the source.
    Address(Ipv4Addr),
    /// A platform name the source may not see, or none at all.
    NxDomain,
    /// Not a platform name: ask the upstreams.
    Forward,
    /// The source is no tenant of this instance.
    Refused,
}

/// The view of one source, ready for lookups.
#[derive(Debug, Clone)]
pub struct Index {
    zone: Zone,
    visible: BTreeMap<Ipv4Addr, BTreeMap<String, Ipv4Addr>>,
}

impl Index {
    /// Builds the per-source maps.
    pub fn new(zone: Zone) -> Self {
        let visible = zone
            .views
            .iter()
            .map(|(source, ids)| {
                let names = ids
                    .iter()
                    .filter_map(|i| zone.names.get(*i as usize).cloned())
                    .collect();
                (*source, names)
            })
            .collect();
        Index { zone, visible }
    }

    /// The zone it was built from.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// How to answer `name` (lower case, no final dot) asked by `source`.
    pub fn answer(&self, source: Ipv4Addr, name: &str) -> Answer {
        let Some(view) = self.visible.get(&source) else {
            return Answer::Refused;
        };
        if let Some(address) = view.get(name) {
            return Answer::Address(*address);
        }
        let last = name.rsplit('.').next().unwrap_or(name);
        // Single labels are never sent upstream (no search-list leaks), and
        // nothing under a tenant name is: the platform answers for those.
        if self.zone.tenants.contains(last) || !name.contains('.') || self.zone.upstreams.is_empty()
        {
            Answer::NxDomain
        } else {
            Answer::Forward
        }
    }
}

impl Zone {
    /// The file's text (JSON, one line per name would not make it shorter).
    pub fn render(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a rendered zone.
    pub fn parse(text: &str) -> Result<Zone, String> {
        serde_json::from_str(text).map_err(|e| format!("cannot read the resolver's zone: {e}"))
    }

    /// A digest of the rendered zone, so observe can tell whether the
    /// running resolver serves the current one (FNV-1a; no secret here).
    pub fn digest(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.render().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }

    /// How many (source, name) pairs the views hold.
    pub fn visible_pairs(&self) -> usize {
        self.views.values().map(Vec::len).sum()
    }
}

/// Whether this instance serves DNS itself: the platform names no other
/// resolver than the bridge address.
pub fn served_on_bridge(platform: &spec::Platform) -> Option<Ipv4Addr> {
    let ipnet::IpNet::V4(range) = platform.spec.network.tenant_range else {
        return None;
    };
    let bridge = bridge_address(range)?;
    (tenancy::resolver_address(platform) == Some(IpAddr::V4(bridge))).then_some(bridge)
}

/// Compiles the zone of `desired` with each tenant at `addresses[tenant]`.
///
/// Tenant `A` may resolve `<tenant B>` when some endpoint of `A` may reach
/// some endpoint of `B` on some port, and `<workload w>.<B>` when it may
/// reach `w` (the engine's matrix, with the synthetic endpoint for tenants
/// without workloads, as the firewall). A tenant always resolves its own
/// names: it knows them, and traffic inside its namespace never meets the
/// host's firewall. `None` when the platform names another resolver than
/// the bridge.
pub fn compile(
    desired: &spec::Desired,
    addresses: &BTreeMap<String, Ipv4Addr>,
) -> Result<Option<Zone>, FirewallError> {
    let Some(listen) = served_on_bridge(&desired.platform) else {
        return Ok(None);
    };
    let mut options = TenancyOptions::new().tenant_endpoints(true);
    for name in desired.tenants.keys() {
        let address = *addresses
            .get(name.as_str())
            .ok_or_else(|| FirewallError::NoAddress {
                tenant: name.to_string(),
            })?;
        options = options.address(name.as_str(), IpAddr::V4(address));
    }
    let engine = tenancy::engine_for(desired, &options)?;
    let matrix = engine.matrix();

    struct Target {
        name_index: u32,
        endpoint: EndpointId,
    }
    let mut names = Vec::new();
    // Per tenant: its endpoints as a source, and its names as targets (the
    // tenant name is reachable through any of its endpoints).
    let mut tenants: Vec<(Ipv4Addr, Vec<EndpointId>, Vec<Target>, u32)> = Vec::new();
    for name in desired.tenants.keys() {
        let tenant = name.as_str();
        let address = addresses[tenant];
        let endpoints = endpoints_of(&engine, desired, name);
        let tenant_index = u32::try_from(names.len()).unwrap_or(u32::MAX);
        names.push((tenant.to_owned(), address));
        let mut targets = Vec::new();
        for workload in desired.workloads_of(name) {
            let w = workload.metadata.name.as_str();
            if let Some(endpoint) = engine.pod(tenant, w) {
                targets.push(Target {
                    name_index: u32::try_from(names.len()).unwrap_or(u32::MAX),
                    endpoint,
                });
                names.push((format!("{w}.{tenant}"), address));
            }
        }
        tenants.push((address, endpoints, targets, tenant_index));
    }

    let reaches = |sources: &[EndpointId], dst: EndpointId| {
        sources
            .iter()
            .any(|s| *s != dst && !matrix.ports(*s, dst).is_empty())
    };
    let mut views = BTreeMap::new();
    for (source, sources, _, _) in &tenants {
        let mut visible = Vec::new();
        for (dst, dst_endpoints, targets, tenant_index) in &tenants {
            let own = dst == source;
            if own || dst_endpoints.iter().any(|d| reaches(sources, *d)) {
                visible.push(*tenant_index);
            }
            for target in targets {
                if own || reaches(sources, target.endpoint) {
                    visible.push(target.name_index);
                }
            }
        }
        views.insert(*source, visible);
    }
    Ok(Some(Zone {
        listen,
        upstreams: desired.platform.spec.network.upstream_dns.clone(),
        tenants: desired.tenants.keys().map(ToString::to_string).collect(),
        names,
        views,
    }))
}

/// A tenant's endpoints: its workloads, or the synthetic one.
fn endpoints_of(engine: &Engine, desired: &spec::Desired, tenant: &spec::Name) -> Vec<EndpointId> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let a = Ipv4Addr::new(10, 9, 0, 2);
        let b = Ipv4Addr::new(10, 9, 0, 3);
        Zone {
            listen: Ipv4Addr::new(10, 9, 0, 1),
            upstreams: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53))],
            tenants: ["a", "b"].iter().map(ToString::to_string).collect(),
            names: vec![
                ("a".to_owned(), a),
                ("app.a".to_owned(), a),
                ("b".to_owned(), b),
            ],
            views: BTreeMap::from([(a, vec![0, 1]), (b, vec![0, 1, 2])]),
        }
    }

    #[test]
    fn each_source_sees_its_view_and_nothing_of_the_platform_leaves() {
        let index = Index::new(zone());
        let (a, b) = (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3));
        assert_eq!(index.answer(b, "app.a"), Answer::Address(a));
        assert_eq!(index.answer(a, "b"), Answer::NxDomain);
        assert_eq!(index.answer(a, "db.b"), Answer::NxDomain);
        assert_eq!(index.answer(a, "x.y.b"), Answer::NxDomain);
        assert_eq!(index.answer(a, "nosuchtenant"), Answer::NxDomain);
        assert_eq!(index.answer(a, "example.com"), Answer::Forward);
        assert_eq!(
            index.answer(Ipv4Addr::new(10, 9, 0, 99), "a"),
            Answer::Refused
        );
    }

    #[test]
    fn without_upstreams_nothing_is_forwarded() {
        let mut z = zone();
        z.upstreams.clear();
        let index = Index::new(z);
        assert_eq!(
            index.answer(Ipv4Addr::new(10, 9, 0, 2), "example.com"),
            Answer::NxDomain
        );
    }

    #[test]
    fn zones_round_trip_and_digests_follow_content() {
        let z = zone();
        assert_eq!(Zone::parse(&z.render()), Ok(z.clone()));
        let mut other = z.clone();
        other.views.clear();
        assert_ne!(z.digest(), other.digest());
        assert_eq!(z.digest(), zone().digest());
    }
}
