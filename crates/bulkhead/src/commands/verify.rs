//! `bulkhead verify`: the isolation verifier on the tenants this instance runs.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::Context as _;
use bulkhead_node::host::RUN_CGROUP;
use bulkhead_node::net::firewall;
use bulkhead_policy::tenancy::{self, TenancyOptions};
use bulkhead_spec::{Desired, PortMatch};
use bulkhead_verify::network::{METADATA_ADDRESS, METADATA_ENDPOINT};
use bulkhead_verify::render;
use bulkhead_verify::{
    DeclaredLimits, NetworkUnderTest, ProbeClass, TenantUnderTest, VerifyOptions,
};

use crate::cli::{Global, Output};
use crate::context::{self, EXIT_OK, Failure, Outcome};

/// Progress bars on stderr, one per phase of the run, each made when its phase
/// first reports: the isolation classes and resources count tenants probed,
/// the network class counts flows (then each tenant's attacks).
struct Bars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<BTreeMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            bars: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    fn bar(&self, phase: &str) -> Option<indicatif::ProgressBar> {
        let mut bars = self.bars.lock().ok()?;
        let bar = bars.entry(phase.to_owned()).or_insert_with(|| {
            let bar = self.multi.add(indicatif::ProgressBar::new(0));
            let style = indicatif::ProgressStyle::with_template(
                "{prefix:>36} [{bar:30}] {pos}/{len} {msg} {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(phase.to_owned());
            bar.set_message(if phase == "network" {
                "flows, then attacks per tenant"
            } else {
                "tenants"
            });
            bar
        });
        Some(bar.clone())
    }
}

impl bulkhead_verify::Progress for Bars {
    fn total(&self, phase: &str, total: u64) {
        if let Some(bar) = self.bar(phase) {
            bar.set_length(total);
        }
    }

    fn advance(&self, phase: &str, steps: u64) {
        if let Some(bar) = self.bar(phase) {
            bar.inc(steps);
            if bar.length().is_some_and(|len| bar.position() >= len) {
                bar.finish();
            }
        }
    }
}

/// Exit code when a probe found a leak or an outage.
pub const EXIT_VIOLATION: u8 = 7;

/// Where the last report is kept (shown by `describe`).
pub fn last_report_path(instance: &bulkhead_node::naming::Instance) -> std::path::PathBuf {
    instance.state_dir().join("verify-last.json")
}

/// The tenant network as the verifier judges it: the policy engine's matrix of the
/// applied desired state with the stored addresses (and the metadata address as an
/// external endpoint, so that a policy allowing it is expected to work), and the
/// platform's network settings. `Err`: why the network class cannot run.
fn network_under_test(
    instance: &bulkhead_node::naming::Instance,
    desired: &Desired,
    addresses: &BTreeMap<String, Ipv4Addr>,
) -> Result<NetworkUnderTest, String> {
    let network = &desired.platform.spec.network;
    let ipnet::IpNet::V4(range) = network.tenant_range else {
        return Err(format!(
            "the tenant range {} is not IPv4",
            network.tenant_range
        ));
    };
    let bridge = bulkhead_node::net::bridge_address(range)
        .ok_or_else(|| format!("the tenant range {range} has no bridge address"))?;
    let resolver = match tenancy::resolver_address(&desired.platform) {
        Some(IpAddr::V4(address)) => address,
        other => return Err(format!("the resolver {other:?} is not an IPv4 address")),
    };
    let mut options = TenancyOptions::new()
        .tenant_endpoints(true)
        .external(METADATA_ENDPOINT, IpAddr::V4(METADATA_ADDRESS));
    for (tenant, address) in addresses {
        if desired.tenants.keys().any(|n| n.as_str() == tenant) {
            options = options.address(tenant.clone(), IpAddr::V4(*address));
        }
    }
    let matrix = tenancy::tenant_matrix(desired, &options).map_err(|e| e.to_string())?;
    let mut under_test = NetworkUnderTest::new(matrix, bridge, range.broadcast());
    under_test.resolver = resolver;
    under_test.allow_link_local = network.allow_link_local;
    // Where the firewall narrows the engine on purpose (what `plan` reports),
    // those flows are expected dropped: narrowed, not outages.
    let placed: BTreeMap<String, Ipv4Addr> = addresses
        .iter()
        .filter(|(tenant, _)| {
            desired
                .tenants
                .keys()
                .any(|n| n.as_str() == tenant.as_str())
        })
        .map(|(tenant, address)| (tenant.clone(), *address))
        .collect();
    // Without the compiled firewall (a tenant not applied yet) nothing is
    // expected narrowed: such flows show as outages, never as passes.
    match firewall::compile(instance, desired, &placed) {
        Ok(ruleset) => {
            under_test.narrowed = ruleset
                .deviations
                .into_iter()
                .filter_map(|d| match d {
                    firewall::Deviation::Narrowed {
                        src, dst, ports, ..
                    } => Some((src, dst, ports)),
                    firewall::Deviation::NotEnforced { .. } => None,
                })
                .collect();
        }
        Err(e) => eprintln!(
            "warning: cannot compile the firewall to see what it narrows ({e}); narrowed flows will show as outages"
        ),
    }
    under_test.host_ports = network
        .host_ports
        .iter()
        .filter_map(|p| match &p.ports {
            PortMatch::Range { first, last } => Some((
                match p.protocol {
                    bulkhead_spec::Protocol::Tcp => bulkhead_policy::Protocol::Tcp,
                    bulkhead_spec::Protocol::Udp => bulkhead_policy::Protocol::Udp,
                    bulkhead_spec::Protocol::Sctp => bulkhead_policy::Protocol::Sctp,
                },
                *first,
                *last,
            )),
            PortMatch::Named(_) => None,
        })
        .collect();
    Ok(under_test)
}

pub fn verify(
    global: &Global,
    names: &[String],
    only: Option<&str>,
    sample: Option<usize>,
    format: Option<&str>,
    all_rows: bool,
) -> Outcome {
    let (desired, _) = context::desired_from(global, &[])?;
    let instance = context::instance(global, Some(&desired))?;
    let store = context::required_store(global)?;
    let host = bulkhead_node::host::Host::new(instance.clone())
        .context("cannot read the host's cgroups")?;
    let only = match only {
        Some(name) => Some(ProbeClass::parse(name).ok_or_else(|| {
            Failure::Other(anyhow::anyhow!(
                "unknown probe class {name:?} (expected network, processes, filesystem, ipc, privilege or resources)"
            ))
        })?),
        None => None,
    };
    let addresses = store
        .tenant_addresses()
        .context("cannot read tenant addresses")?;
    let mut tenants = Vec::new();
    for (name, tenant) in &desired.tenants {
        if !names.is_empty() && !names.iter().any(|n| n == name.as_str()) {
            continue;
        }
        let range = store
            .id_range(name.as_str())
            .context("cannot read id ranges")?
            .ok_or_else(|| {
                anyhow::anyhow!("tenant {name:?} has no id range (expected `bulkhead apply` first)")
            })?;
        host.ensure_leaf(name.as_str(), RUN_CGROUP)
            .context("cannot create the probe cgroup")?;
        let mut under_test = TenantUnderTest::new(name.as_str(), tenant.spec.profile, range.first);
        let data = host.volume(name.as_str()).data_dir().to_path_buf();
        under_test.volume_data_dir = data.is_dir().then_some(data);
        under_test.cgroup_procs = host.procs_files(name.as_str(), RUN_CGROUP);
        under_test.limits = DeclaredLimits {
            memory_max: Some(tenant.spec.quota.memory.get()),
            pids_max: Some(u64::from(tenant.spec.quota.pids)),
            storage: Some(tenant.spec.quota.storage.get()),
        };
        under_test.address = addresses.get(name.as_str()).copied();
        tenants.push(under_test);
    }
    if tenants.is_empty() {
        return Err(Failure::Other(anyhow::anyhow!("no tenant to verify")));
    }
    // The network class needs it, and so do the resources class's probes of
    // the host's shared network tables (conntrack, neighbours).
    let network = if only.is_none_or(|c| c == ProbeClass::Network || c == ProbeClass::Resources) {
        match network_under_test(&instance, &desired, &addresses) {
            Ok(network) => Some(network),
            Err(why) => {
                eprintln!(
                    "warning: the network class and the resources class's conntrack and neighbour probes cannot run: {why}"
                );
                None
            }
        }
    } else {
        None
    };
    let format = format
        .map(str::to_owned)
        .unwrap_or_else(|| match global.output {
            Output::Json => "json".to_owned(),
            _ => "table".to_owned(),
        });
    // A progress bar only for a person watching: stderr is a terminal and the
    // report is not JSON.
    let progress = (std::io::stderr().is_terminal() && format != "json")
        .then(|| bulkhead_verify::ProgressSink(std::sync::Arc::new(Bars::new())));
    let options = VerifyOptions {
        only,
        sample,
        network,
        progress,
        ..VerifyOptions::default()
    };
    eprintln!(
        "verifying {} tenant{} ({})…",
        tenants.len(),
        if tenants.len() == 1 { "" } else { "s" },
        only.map_or_else(
            || "every probe class".to_owned(),
            |c| format!("{c:?}").to_lowercase()
        )
    );
    let report = bulkhead_verify::verify(&instance, &tenants, &options)
        .context("verify could not run its probes")?;
    let json = render::json(&report);
    std::fs::write(last_report_path(&instance), &json).context("cannot keep the report")?;
    match format.as_str() {
        "json" => println!("{json}"),
        "junit" => print!("{}", render::junit(&report)),
        "table" => print!("{}", render::table(&report, !all_rows)),
        other => {
            return Err(Failure::Other(anyhow::anyhow!(
                "unknown format {other:?} (expected table, json or junit)"
            )));
        }
    }
    Ok(if report.is_clean() {
        EXIT_OK
    } else {
        EXIT_VIOLATION
    })
}
