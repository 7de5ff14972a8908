//! The network class: what each tenant may reach over its network, judged
//! against the policy engine.
//!
//! Expected outcomes come from the policy engine, never from the verifier's
//! own reading of the rules or from the compiled firewall: a
//! [`TenantMatrix`](bulkhead_policy::tenancy::TenantMatrix) (from
//! `bulkhead_policy::tenancy::tenant_matrix` of the applied desired state,
//! with the tenants' real addresses) says whether each ordered pair may
//! connect on each probed port; the platform's `hostPorts` and
//! `allowLinkLocal` say what a tenant reaches on the host and at
//! 169.254.169.254. This module is the plan (which flows, what is
//! expected); `run.rs` carries it out, `raw.rs` holds the attempts that need
//! root in the tenant's network namespace, `arp.rs` the forged ARP frames
//! (also root there) and the reading of the kernel's neighbour tables,
//! `metadata.rs` the stand-in metadata service.
//!
//! A flow **reached** its destination when the connection was accepted or
//! refused (a TCP reset or an ICMP port unreachable can only come from the
//! destination's kernel: the firewall drops, it never rejects). A denied
//! flow that reached is a leak; an allowed flow that did not an outage.

pub(crate) mod arp;
mod metadata;
mod raw;
pub(crate) mod run;

use std::net::Ipv4Addr;
use std::time::Duration;

use bulkhead_policy::tenancy::{DNS_ENDPOINT, TenantMatrix};
use bulkhead_policy::{GroupKey, PortSet, Protocol};
use serde::Serialize;

/// The external endpoint name a caller gives 169.254.169.254 in the
/// matrix's [`TenancyOptions`](bulkhead_policy::tenancy::TenancyOptions), so
/// that a policy allowing it (with `allowLinkLocal`) is expected to work.
pub const METADATA_ENDPOINT: &str = "metadata";
/// The cloud metadata address.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The port probed there.
pub const METADATA_PORT: u16 = 80;
/// Ports probed between every sampled pair besides the matrix's own (no
/// example policy opens them; a leak on them is a firewall wider than the
/// engine).
pub const CLOSED_SAMPLE: [u16; 3] = [22, 6379, 31337];
/// Ports probed on the host's bridge address besides `hostPorts`.
pub const HOST_SAMPLE: [u16; 3] = [22, 53, 31337];
/// At most this many ports per pair (matrix ports first, then the sample).
pub const MAX_PORTS: usize = 16;

/// The tenant network as the caller knows it: the matrix and the platform's
/// network settings. Addresses are per tenant
/// ([`TenantUnderTest::address`](crate::TenantUnderTest::address)).
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkUnderTest {
    /// The policy engine's tenant matrix of the applied desired state (with
    /// [`METADATA_ENDPOINT`] as an external endpoint, if the caller wants
    /// allowed metadata access judged).
    pub matrix: TenantMatrix,
    /// The host's address on the instance bridge.
    pub bridge: Ipv4Addr,
    /// The tenant range's broadcast address.
    pub broadcast: Ipv4Addr,
    /// The DNS resolver tenants reach with `dns: true`.
    pub resolver: Ipv4Addr,
    /// `platform.spec.network.hostPorts`: (protocol, first, last).
    pub host_ports: Vec<(Protocol, u16, u16)>,
    /// `platform.spec.network.allowLinkLocal`.
    pub allow_link_local: bool,
    /// How long a connection attempt may take before it counts as dropped.
    pub timeout: Duration,
    /// Where the firewall is narrower than the engine on purpose
    /// (`bulkhead_node::net::firewall::Deviation::Narrowed`, which `plan`
    /// reports): `(source, destination, ports)`. A flow the matrix allows
    /// there is expected dropped and reported as narrowed, not as an outage.
    pub narrowed: Vec<(GroupKey, GroupKey, PortSet)>,
}

impl NetworkUnderTest {
    /// A network with `matrix`, the bridge at `bridge` (also the resolver),
    /// no host ports, link-local dropped, a one-second timeout.
    pub fn new(matrix: TenantMatrix, bridge: Ipv4Addr, broadcast: Ipv4Addr) -> Self {
        NetworkUnderTest {
            matrix,
            bridge,
            broadcast,
            resolver: bridge,
            host_ports: Vec::new(),
            allow_link_local: false,
            timeout: Duration::from_secs(1),
            narrowed: Vec::new(),
        }
    }

    /// Whether the firewall narrows `src -> dst` on `protocol`/`port`.
    pub fn is_narrowed(
        &self,
        src: &GroupKey,
        dst: &GroupKey,
        protocol: Protocol,
        port: u16,
    ) -> bool {
        self.narrowed
            .iter()
            .any(|(s, d, ports)| s == src && d == dst && ports.contains(protocol, port))
    }

    /// [`Self::is_narrowed`] between two tenants.
    pub fn tenants_narrowed(&self, src: &str, dst: &str, protocol: Protocol, port: u16) -> bool {
        self.is_narrowed(&tenant_key(src), &tenant_key(dst), protocol, port)
    }

    /// [`Self::is_narrowed`] from a tenant to the resolver (`dns: true`).
    pub fn dns_narrowed(&self, tenant: &str, protocol: Protocol, port: u16) -> bool {
        self.is_narrowed(
            &tenant_key(tenant),
            &GroupKey::External {
                name: DNS_ENDPOINT.to_owned(),
            },
            protocol,
            port,
        )
    }
}

/// One connection the network probe tries between two tenants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkExpectation {
    /// The connecting tenant.
    pub src: String,
    /// The listening tenant.
    pub dst: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
    /// What the policy engine says.
    pub allowed: bool,
}

fn tenant_key(name: &str) -> GroupKey {
    GroupKey::Namespace {
        name: name.to_owned(),
    }
}

/// Every ordered pair of distinct `tenants` × `ports`, with the matrix's
/// verdict.
pub fn expectations(
    matrix: &TenantMatrix,
    tenants: &[String],
    ports: &[(Protocol, u16)],
) -> Vec<NetworkExpectation> {
    let mut out = Vec::new();
    for src in tenants {
        for dst in tenants.iter().filter(|dst| *dst != src) {
            out.extend(pair_expectations(matrix, src, dst, ports));
        }
    }
    out
}

/// `src -> dst` on each of `ports`, with the matrix's verdict.
pub fn pair_expectations(
    matrix: &TenantMatrix,
    src: &str,
    dst: &str,
    ports: &[(Protocol, u16)],
) -> Vec<NetworkExpectation> {
    ports
        .iter()
        .map(|(protocol, port)| NetworkExpectation {
            src: src.to_owned(),
            dst: dst.to_owned(),
            protocol: *protocol,
            port: *port,
            allowed: matrix.allowed(&tenant_key(src), &tenant_key(dst), *protocol, *port),
        })
        .collect()
}

/// The ports probed between tenants: the first and last port of every TCP
/// or UDP range the matrix opens between two of `tenants`, then
/// [`CLOSED_SAMPLE`], at most [`MAX_PORTS`]; each is probed over TCP and
/// UDP, so a port open for one protocol is checked closed for the other.
/// SCTP is not probed.
pub fn probe_ports(matrix: &TenantMatrix, tenants: &[String]) -> Vec<u16> {
    let is_tenant = |key: &GroupKey| matches!(key, GroupKey::Namespace { name } if tenants.iter().any(|t| t == name));
    let mut ports: Vec<u16> = Vec::new();
    let mut push = |port: u16| {
        if !ports.contains(&port) && ports.len() < MAX_PORTS {
            ports.push(port);
        }
    };
    for connection in matrix.connections() {
        if connection.src == connection.dst || !is_tenant(&connection.src) {
            continue;
        }
        if !is_tenant(&connection.dst) {
            continue;
        }
        for range in connection.ports.ranges() {
            if range.protocol != Protocol::Sctp {
                push(range.start);
                push(range.end);
            }
        }
    }
    for port in CLOSED_SAMPLE {
        push(port);
    }
    ports.sort_unstable();
    ports
}

/// Both protocols on each port.
pub fn both_protocols(ports: &[u16]) -> Vec<(Protocol, u16)> {
    ports
        .iter()
        .flat_map(|p| [(Protocol::Tcp, *p), (Protocol::Udp, *p)])
        .collect()
}

/// What `tenant` may reach on the host's bridge address: `(protocol, port,
/// allowed)` for each `hostPorts` range's ends and [`HOST_SAMPLE`] over TCP
/// and UDP. Allowed: listed in `hostPorts`, or the resolver is the bridge
/// and the matrix lets `tenant` reach [`DNS_ENDPOINT`] there.
pub fn host_expectations(network: &NetworkUnderTest, tenant: &str) -> Vec<(Protocol, u16, bool)> {
    let mut ports: Vec<(Protocol, u16)> = Vec::new();
    for (protocol, first, last) in &network.host_ports {
        for port in [*first, *last] {
            if !ports.contains(&(*protocol, port)) {
                ports.push((*protocol, port));
            }
        }
    }
    for (protocol, port) in both_protocols(&HOST_SAMPLE) {
        if !ports.contains(&(protocol, port)) {
            ports.push((protocol, port));
        }
    }
    let dns = GroupKey::External {
        name: DNS_ENDPOINT.to_owned(),
    };
    ports
        .into_iter()
        .filter(|(protocol, _)| *protocol != Protocol::Sctp)
        .map(|(protocol, port)| {
            let listed = network
                .host_ports
                .iter()
                .any(|(p, a, b)| *p == protocol && *a <= port && port <= *b);
            let resolver = network.resolver == network.bridge
                && network
                    .matrix
                    .allowed(&tenant_key(tenant), &dns, protocol, port);
            (protocol, port, listed || resolver)
        })
        .collect()
}

/// Whether `tenant` may reach the metadata address on [`METADATA_PORT`]:
/// only with `allowLinkLocal` and a policy the matrix shows as
/// [`METADATA_ENDPOINT`].
pub fn metadata_expected(network: &NetworkUnderTest, tenant: &str) -> bool {
    network.allow_link_local
        && network.matrix.allowed(
            &tenant_key(tenant),
            &GroupKey::External {
                name: METADATA_ENDPOINT.to_owned(),
            },
            Protocol::Tcp,
            METADATA_PORT,
        )
}

/// `tcp` or `udp`.
pub(crate) fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_policy::tenancy::{TenancyOptions, tenant_matrix};

    use super::*;

    const SPEC: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: Platform
metadata: { name: p }
spec:
  network:
    tenantRange: 10.9.0.0/24
    hostPorts: [7000-7002/tcp]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: a }
spec:
  quota: { memory: 1Gi }
  network:
    egress:
      - to: [{ tenant: b }]
        ports: [8080/tcp, 9000-9100/udp]
      - to: [{ dns: true }]
---
apiVersion: bulkhead.dev/v1alpha1
kind: Tenant
metadata: { name: b }
spec:
  quota: { memory: 1Gi }
  network:
    ingress:
      - from: [{ tenant: a }]
        ports: [8080/tcp, 9000-9100/udp]
"#;

    fn network() -> NetworkUnderTest {
        let desired = bulkhead_spec::load_str("spec.yaml", SPEC).expect("valid spec");
        let matrix =
            tenant_matrix(&desired, &TenancyOptions::new().tenant_endpoints(true)).expect("matrix");
        let mut network = NetworkUnderTest::new(
            matrix,
            Ipv4Addr::new(10, 9, 0, 1),
            Ipv4Addr::new(10, 9, 0, 255),
        );
        network.host_ports = vec![(Protocol::Tcp, 7000, 7002)];
        network
    }

    #[test]
    fn probed_ports_are_the_matrix_range_ends_and_the_closed_sample() {
        let n = network();
        let ports = probe_ports(&n.matrix, &["a".into(), "b".into()]);
        assert_eq!(ports, vec![22, 6379, 8080, 9000, 9100, 31337]);
    }

    #[test]
    fn pairs_follow_the_matrix_per_protocol_and_direction() {
        let n = network();
        let ports = both_protocols(&[8080, 9000, 22]);
        let allowed = |src: &str, dst: &str| -> Vec<(Protocol, u16)> {
            pair_expectations(&n.matrix, src, dst, &ports)
                .into_iter()
                .filter(|e| e.allowed)
                .map(|e| (e.protocol, e.port))
                .collect()
        };
        assert_eq!(
            allowed("a", "b"),
            vec![(Protocol::Tcp, 8080), (Protocol::Udp, 9000)]
        );
        assert_eq!(allowed("b", "a"), vec![]);
    }

    #[test]
    fn the_host_answers_on_host_ports_and_the_resolver_where_dns_is_allowed() {
        let n = network();
        let open = |tenant: &str| -> Vec<(Protocol, u16)> {
            host_expectations(&n, tenant)
                .into_iter()
                .filter(|(_, _, allowed)| *allowed)
                .map(|(p, port, _)| (p, port))
                .collect()
        };
        assert_eq!(
            open("a"),
            vec![
                (Protocol::Tcp, 7000),
                (Protocol::Tcp, 7002),
                (Protocol::Tcp, 53),
                (Protocol::Udp, 53)
            ]
        );
        assert_eq!(
            open("b"),
            vec![(Protocol::Tcp, 7000), (Protocol::Tcp, 7002)]
        );
        assert!(!metadata_expected(&n, "a"), "link-local is dropped");
    }
}
