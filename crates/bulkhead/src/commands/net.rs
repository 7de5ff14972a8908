//! `bulkhead net show [TENANT]`: each tenant's network objects and counters, from
//! the kernel (links, namespace inode, nft set counters, tc statistics) and the store
//! (addresses).

use anyhow::Context as _;
use bulkhead_node::net::link::BridgeConfig;
use bulkhead_node::net::report::{self, TenantNetwork};
use bulkhead_node::net::shape::Caps;
use bulkhead_node::net::{dns, firewall};
use clap::Subcommand;
use serde::Serialize;

use crate::cli::Global;
use crate::context::{self, EXIT_OK, Failure, Outcome};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum NetAction {
    /// Per tenant: address, MAC, host interface, netns name and inode, bridge, caps,
    /// firewall drop counters, shaper bytes and drops.
    Show {
        /// Only this tenant.
        tenant: Option<String>,
    },
}

/// The whole answer, as `-o json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NetShow {
    instance: String,
    bridge: String,
    bridge_address: Option<std::net::Ipv4Addr>,
    /// The resolver's pid, when it runs.
    resolver_pid: Option<u32>,
    tenants: Vec<TenantNetwork>,
}

pub fn net(global: &Global, action: NetAction) -> Outcome {
    match action {
        NetAction::Show { tenant } => show(global, tenant.as_deref()),
    }
}

fn show(global: &Global, only: Option<&str>) -> Outcome {
    let (desired, _) = context::desired_from(global, &[])?;
    let instance = context::instance(global, Some(&desired))?;
    let store = context::required_store(global)?;
    let ipnet::IpNet::V4(range) = desired.platform.spec.network.tenant_range else {
        return Err(Failure::Other(anyhow::anyhow!(
            "the tenant range is not IPv4 (the host backend wires IPv4 ranges only)"
        )));
    };
    let bridge = BridgeConfig { range };
    if let Some(name) = only
        && !desired.tenants.keys().any(|n| n.as_str() == name)
    {
        return Err(Failure::Other(anyhow::anyhow!(
            "no tenant named {name:?} (expected one of: {})",
            desired
                .tenants
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let addresses = store
        .tenant_addresses()
        .context("cannot read tenant addresses")?;
    let counters = firewall::counters(&instance).context("cannot read the firewall")?;
    let mut tenants = Vec::new();
    for (name, tenant) in &desired.tenants {
        if only.is_some_and(|o| o != name.as_str()) {
            continue;
        }
        let Some(address) = addresses.get(name.as_str()) else {
            continue;
        };
        tenants.push(report::tenant_network(
            &instance,
            &bridge,
            name.as_str(),
            *address,
            &Caps::of(&tenant.spec.quota),
            &counters,
        ));
    }
    let shown = NetShow {
        instance: instance.prefix().to_owned(),
        bridge: instance.bridge(),
        bridge_address: bridge.address(),
        resolver_pid: dns::observe(&instance).pid,
        tenants,
    };
    output::emit(global.output, &shown, || human(&shown))?;
    Ok(EXIT_OK)
}

fn count(c: &firewall::Count) -> String {
    format!("{}p/{}B", c.packets, c.bytes)
}

fn shaper(s: Option<&bulkhead_node::net::shape::ShaperStats>) -> String {
    s.map_or_else(
        || "-".to_owned(),
        |s| format!("{}B {}drop", s.bytes, s.drops),
    )
}

fn human(shown: &NetShow) -> String {
    let mut text = format!(
        "bridge {} {}  resolver {}\n",
        shown.bridge,
        shown
            .bridge_address
            .map_or_else(|| "-".to_owned(), |a| a.to_string()),
        shown
            .resolver_pid
            .map_or_else(|| "not running".to_owned(), |p| format!("pid {p}")),
    );
    let rows = shown
        .tenants
        .iter()
        .map(|t| {
            vec![
                t.tenant.clone(),
                t.address.to_string(),
                t.mac.clone(),
                t.host_interface.clone(),
                format!(
                    "{} ({})",
                    t.netns,
                    t.netns_inode
                        .map_or_else(|| "missing".to_owned(), |i| i.to_string())
                ),
                if t.wired { "yes" } else { "NO" }.to_owned(),
                format!(
                    "{}/{}",
                    t.caps.egress.as_deref().unwrap_or("-"),
                    t.caps.ingress.as_deref().unwrap_or("-")
                ),
                format!(
                    "{} {} {}",
                    count(&t.drops.egress),
                    count(&t.drops.ingress),
                    count(&t.drops.spoof)
                ),
                format!(
                    "{} | {}",
                    shaper(t.shaping.egress.as_ref()),
                    shaper(t.shaping.ingress.as_ref())
                ),
            ]
        })
        .collect();
    text.push_str(&output::table(
        &[
            "tenant",
            "address",
            "mac",
            "host if",
            "netns (inode)",
            "wired",
            "caps out/in",
            "drops out in spoof",
            "shaped out | in",
        ],
        rows,
    ));
    text
}
