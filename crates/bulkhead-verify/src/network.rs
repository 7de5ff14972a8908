//! The network class, designed ahead of the tenant networks it will probe.
//!
//! Expected outcomes come from the policy engine, never from the verifier's
//! own reading of the rules: [`expectations`] asks a
//! [`TenantMatrix`](bulkhead_policy::tenancy::TenantMatrix) (from
//! `bulkhead_policy::tenancy::tenant_matrix`) whether each ordered pair of
//! tenants may connect on each probed port. Once tenants have veth, bridge
//! and nftables, the probe will, per expectation, listen in the destination
//! tenant and connect from the source (TCP connect, a UDP echo), and a
//! connection that works where the matrix says no is a leak, one that fails
//! where it says yes an outage — the same rows as every other class.

use bulkhead_policy::tenancy::TenantMatrix;
use bulkhead_policy::{GroupKey, Protocol};
use serde::Serialize;

/// One connection the network probe will try.
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

/// Every ordered pair of distinct `tenants` × `ports`, with the matrix's
/// verdict.
pub fn expectations(
    matrix: &TenantMatrix,
    tenants: &[String],
    ports: &[(Protocol, u16)],
) -> Vec<NetworkExpectation> {
    let key = |name: &String| GroupKey::Namespace { name: name.clone() };
    let mut out = Vec::new();
    for src in tenants {
        for dst in tenants.iter().filter(|dst| *dst != src) {
            for (protocol, port) in ports {
                out.push(NetworkExpectation {
                    src: src.clone(),
                    dst: dst.clone(),
                    protocol: *protocol,
                    port: *port,
                    allowed: matrix.allowed(&key(src), &key(dst), *protocol, *port),
                });
            }
        }
    }
    out
}
