//! Tenant-level reachability for `plan` and `describe`, from the policy engine through
//! the one tenant translation (`bulkhead_policy::tenancy`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Context as _;
use bulkhead_policy::tenancy::{self, TenancyOptions, TenantDiff, TenantMatrix};
use bulkhead_spec::{Desired, Peer};

/// Options that make CIDR rules visible: one probe endpoint inside each CIDR block that
/// some rule names (its first address not excluded), named after the block.
pub fn options_for(states: &[&Desired]) -> TenancyOptions {
    let mut blocks = BTreeMap::new();
    for desired in states {
        for tenant in desired.tenants.values() {
            let peers = tenant
                .spec
                .network
                .ingress
                .iter()
                .flat_map(|r| &r.from)
                .chain(tenant.spec.network.egress.iter().flat_map(|r| &r.to));
            for peer in peers {
                if let Peer::Cidr(block) = peer
                    && let Some(address) = probe_address(block)
                {
                    blocks.insert(block.cidr.to_string(), address);
                }
            }
        }
    }
    blocks
        .into_iter()
        .fold(TenancyOptions::new(), |options, (name, address)| {
            options.external(name, address)
        })
}

fn probe_address(block: &bulkhead_spec::CidrBlock) -> Option<IpAddr> {
    block
        .cidr
        .hosts()
        .take(256)
        .find(|address| !block.except.iter().any(|except| except.contains(address)))
}

/// The tenant matrix of one desired state.
pub fn matrix(desired: &Desired) -> anyhow::Result<TenantMatrix> {
    tenancy::tenant_matrix(desired, &options_for(&[desired]))
        .context("cannot evaluate the network rules")
}

/// What changes at tenant level; `before` of `None` means nothing was applied yet.
pub fn diff(before: Option<&Desired>, after: &Desired) -> anyhow::Result<TenantDiff> {
    let empty = Desired {
        platform: after.platform.clone(),
        tenants: BTreeMap::new(),
        workloads: BTreeMap::new(),
    };
    let before = before.unwrap_or(&empty);
    tenancy::diff_desired(before, after, &options_for(&[before, after]))
        .context("cannot evaluate the network rules")
}
