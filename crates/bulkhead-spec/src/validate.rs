//! Cross-object checks: duplicates, references, quotas, address space. Runs after every
//! document decoded, reports every problem at once, and only then builds a [`Desired`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ipnet::IpNet;

use crate::decode::{Located, Object, PartialWorkload, Spans, decode_document, parse_cpuset};
use crate::defaults;
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::model::*;
use crate::net::PortMatch;
use crate::quantity::{Bytes, Cpu};
use crate::source::{Source, parse_documents, read_sources};

/// Reads, decodes and validates files and directories into one desired state.
pub fn load(paths: &[PathBuf]) -> Result<Desired, Diagnostics> {
    let (sources, mut diagnostics) = read_sources(paths);
    let located = decode_sources(&sources, &mut diagnostics);
    if sources.is_empty() && diagnostics.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        diagnostics.push(Diagnostic::new(
            Pos::file(&std::sync::Arc::from(shown.join(", "))),
            "",
            "no YAML files found (expected *.yaml or *.yml files)",
        ));
    }
    finish(located, diagnostics, &BTreeSet::new())
}

/// Decodes and validates in-memory sources (tests, stdin, the store's revisions).
pub fn load_sources(sources: &[Source]) -> Result<Desired, Diagnostics> {
    load_sources_within(sources, &BTreeSet::new())
}

/// Decodes and validates part of a desired state that was validated as a whole before
/// (a stored revision): `sources` hold the objects the caller needs, `elsewhere` names
/// the revision's other tenants, which references may name. Every check that needs
/// only these objects runs; those across tenants outside them (exclusive cpusets)
/// were made when the whole was. It costs what the part costs, not the whole.
pub fn load_sources_within(
    sources: &[Source],
    elsewhere: &BTreeSet<String>,
) -> Result<Desired, Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    let located = decode_sources(sources, &mut diagnostics);
    finish(located, diagnostics, elsewhere)
}

/// Parses one text, as if it were a file named `name`.
pub fn load_str(name: &str, text: &str) -> Result<Desired, Diagnostics> {
    load_sources(&[Source {
        name: std::sync::Arc::from(name),
        text: text.to_owned(),
    }])
}

fn decode_sources(sources: &[Source], diagnostics: &mut Diagnostics) -> Vec<Located> {
    let mut located = Vec::new();
    for source in sources {
        match parse_documents(source) {
            Ok(documents) => {
                for document in documents {
                    if matches!(document.kind, crate::source::NodeKind::Null) {
                        continue; // an empty document between `---` separators
                    }
                    if let Some(object) = decode_document(&document, diagnostics) {
                        located.push(object);
                    }
                }
            }
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    located
}

fn finish(
    located: Vec<Located>,
    mut diagnostics: Diagnostics,
    elsewhere: &BTreeSet<String>,
) -> Result<Desired, Diagnostics> {
    let desired = validate(located, &mut diagnostics, elsewhere);
    if diagnostics.is_empty() {
        Ok(desired)
    } else {
        Err(diagnostics.sorted())
    }
}

struct Checker<'a> {
    diagnostics: &'a mut Diagnostics,
}

impl Checker<'_> {
    fn error(&mut self, spans: &Spans, path: &str, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(spans.at(path), path, message));
    }
}

fn validate(
    located: Vec<Located>,
    diagnostics: &mut Diagnostics,
    elsewhere: &BTreeSet<String>,
) -> Desired {
    let mut check = Checker { diagnostics };
    let mut platform: Option<(Platform, Spans)> = None;
    let mut tenants: BTreeMap<Name, (Tenant, Spans)> = BTreeMap::new();
    let mut partial_workloads: BTreeMap<(Name, Name), (PartialWorkload, Spans)> = BTreeMap::new();

    for Located { object, spans } in located {
        match object {
            Object::Platform(p) => {
                if let Some((_, first)) = &platform {
                    let first = first.at("");
                    check.error(&spans, "", format!("a second Platform object (expected exactly one; the first is at {first})"));
                } else {
                    platform = Some((p, spans));
                }
            }
            Object::Tenant(t) => {
                let name = t.metadata.name.clone();
                if let Some((_, first)) = tenants.get(&name) {
                    let first = first.at("");
                    check.error(&spans, "metadata.name", format!("duplicate tenant {:?} (expected unique names; first defined at {first})", name.as_str()));
                } else {
                    tenants.insert(name, (t, spans));
                }
            }
            Object::Workload(w) => {
                let key = (w.metadata.tenant.clone(), w.metadata.name.clone());
                if let Some((_, first)) = partial_workloads.get(&key) {
                    let first = first.at("");
                    check.error(&spans, "metadata.name", format!("duplicate workload {:?} in tenant {:?} (expected unique names per tenant; first defined at {first})", key.1.as_str(), key.0.as_str()));
                } else {
                    partial_workloads.insert(key, (w, spans));
                }
            }
        }
    }

    let (platform, platform_spans) = platform.unwrap_or_else(|| {
        (
            Platform {
                api_version: API_VERSION.to_owned(),
                kind: "Platform".to_owned(),
                metadata: Metadata {
                    name: Name::new_unchecked("default".to_owned()),
                    labels: Labels::new(),
                    annotations: BTreeMap::new(),
                },
                spec: crate::decode::default_platform_spec(),
            },
            Spans::default(),
        )
    });
    let mut tenant_names: Vec<&str> = tenants.keys().map(Name::as_str).collect();
    tenant_names.extend(
        elsewhere
            .iter()
            .map(String::as_str)
            .filter(|n| !tenants.keys().any(|t| t.as_str() == *n)),
    );
    tenant_names.sort_unstable();
    let is_tenant = |name: &Name| tenants.contains_key(name) || elsewhere.contains(name.as_str());

    // Workloads: owner exists, resources defaulted and within the tenant's quota.
    let mut workloads: BTreeMap<(Name, Name), Workload> = BTreeMap::new();
    for ((tenant_name, workload_name), (partial, spans)) in &partial_workloads {
        let Some((tenant, _)) = tenants.get(tenant_name) else {
            let hint = did_you_mean(tenant_name.as_str(), &tenant_names)
                .map(|s| format!("; did you mean {s:?}?"))
                .unwrap_or_default();
            check.error(
                spans,
                "metadata.tenant",
                format!(
                    "unknown tenant {:?} (expected one of: {}){hint}",
                    tenant_name.as_str(),
                    list_or_none(&tenant_names)
                ),
            );
            continue;
        };
        let resources =
            defaults::workload_resources(&partial.resources, &tenant.spec.defaults.resources);
        let quota = &tenant.spec.quota;
        if resources.memory > quota.memory {
            check.error(
                spans,
                "spec.resources.memory",
                format!(
                    "{} is more than tenant {:?}'s memory quota (expected at most {})",
                    resources.memory,
                    tenant_name.as_str(),
                    quota.memory
                ),
            );
        }
        if resources.pids > quota.pids {
            check.error(
                spans,
                "spec.resources.pids",
                format!(
                    "{} is more than tenant {:?}'s pids quota (expected at most {})",
                    resources.pids,
                    tenant_name.as_str(),
                    quota.pids
                ),
            );
        }
        if let (Some(cpu), Some(cap)) = (resources.cpu, quota.cpu)
            && cpu > cap
        {
            check.error(
                spans,
                "spec.resources.cpu",
                format!(
                    "{cpu} is more than tenant {:?}'s cpu quota (expected at most {cap})",
                    tenant_name.as_str()
                ),
            );
        }
        let mut seen_ports = BTreeSet::new();
        let mut seen_names = BTreeSet::new();
        for (index, port) in partial.ports.iter().enumerate() {
            if !seen_ports.insert((port.port, port.protocol)) {
                check.error(
                    spans,
                    &format!("spec.ports[{index}]"),
                    format!(
                        "port {}/{} is listed twice (expected each port once)",
                        port.port, port.protocol
                    ),
                );
            }
            if let Some(name) = &port.name
                && !seen_names.insert(name.clone())
            {
                check.error(
                    spans,
                    &format!("spec.ports[{index}].name"),
                    format!("port name {name:?} is used twice (expected unique port names)"),
                );
            }
        }
        workloads.insert(
            (tenant_name.clone(), workload_name.clone()),
            Workload {
                api_version: API_VERSION.to_owned(),
                kind: "Workload".to_owned(),
                metadata: partial.metadata.clone(),
                spec: WorkloadSpec {
                    command: partial.command.clone(),
                    env: partial.env.clone(),
                    image: partial.image.clone(),
                    workdir: partial.workdir.clone(),
                    ports: partial.ports.clone(),
                    resources,
                    restart: partial.restart.unwrap_or(tenant.spec.defaults.restart),
                },
            },
        );
    }

    let service_names: Vec<&str> = platform
        .spec
        .shared_services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let tenant_range = platform.spec.network.tenant_range;

    // Per tenant: quota sums, defaults within quota, peers that resolve.
    for (name, (tenant, spans)) in &tenants {
        if let Some(gitops) = &tenant.spec.gitops {
            let allowed = &platform.spec.kubernetes.flux_source_allow_list;
            if !allowed
                .iter()
                .any(|prefix| gitops.url.starts_with(prefix.as_str()))
            {
                let expected = if allowed.is_empty() {
                    "the platform's spec.kubernetes.fluxSourceAllowList lists no source; add a prefix there first".to_owned()
                } else {
                    format!("a URL starting with one of: {}", allowed.join(", "))
                };
                check.error(
                    spans,
                    "spec.gitops.url",
                    format!("{:?} is not on the platform's Flux source allow-list (expected {expected})", gitops.url),
                );
            }
        }
        let quota = &tenant.spec.quota;
        let own: Vec<&Workload> = workloads
            .values()
            .filter(|w| &w.metadata.tenant == name)
            .collect();
        let memory: u128 = own
            .iter()
            .map(|w| u128::from(w.spec.resources.memory.get()))
            .sum();
        if memory > u128::from(quota.memory.get()) {
            check.error(spans, "spec.quota.memory", format!("workloads ask for {} of memory in total, more than the quota (expected the sum of workload memory within {})", Bytes::new(u64::try_from(memory).unwrap_or(u64::MAX)), quota.memory));
        }
        let pids: u64 = own.iter().map(|w| u64::from(w.spec.resources.pids)).sum();
        if pids > u64::from(quota.pids) {
            check.error(spans, "spec.quota.pids", format!("workloads ask for {pids} pids in total, more than the quota (expected the sum within {})", quota.pids));
        }
        if let Some(cap) = quota.cpu {
            let cpu: u64 = own
                .iter()
                .filter_map(|w| w.spec.resources.cpu)
                .map(Cpu::millis)
                .sum();
            if cpu > cap.millis() {
                check.error(spans, "spec.quota.cpu", format!("workloads ask for {} of cpu in total, more than the quota (expected the sum within {cap})", Cpu::from_millis(cpu)));
            }
        }
        if own.len() > quota.workloads as usize {
            check.error(
                spans,
                "spec.quota.workloads",
                format!(
                    "{} workloads are declared (expected at most {})",
                    own.len(),
                    quota.workloads
                ),
            );
        }
        let defaults_resources = &tenant.spec.defaults.resources;
        if defaults_resources.memory > quota.memory {
            check.error(
                spans,
                "spec.defaults.resources.memory",
                format!(
                    "default {} is more than the memory quota (expected at most {})",
                    defaults_resources.memory, quota.memory
                ),
            );
        }
        if defaults_resources.pids > quota.pids {
            check.error(
                spans,
                "spec.defaults.resources.pids",
                format!(
                    "default {} is more than the pids quota (expected at most {})",
                    defaults_resources.pids, quota.pids
                ),
            );
        }

        let check_peer = |check: &mut Checker<'_>, peer: &Peer, path: &str| match peer {
            Peer::Tenant { tenant, .. } => {
                if !is_tenant(tenant) {
                    let hint = did_you_mean(tenant.as_str(), &tenant_names)
                        .map(|s| format!("; did you mean {s:?}?"))
                        .unwrap_or_default();
                    check.error(
                        spans,
                        &format!("{path}.tenant"),
                        format!(
                            "unknown tenant {:?} (expected one of: {}){hint}",
                            tenant.as_str(),
                            list_or_none(&tenant_names)
                        ),
                    );
                }
            }
            Peer::Service { service } => {
                if !service_names.contains(&service.as_str()) {
                    check.error(spans, &format!("{path}.service"), format!("unknown shared service {:?} (expected one declared in the platform's sharedServices: {})", service.as_str(), list_or_none(&service_names)));
                }
            }
            Peer::Cidr(block) => {
                if overlaps(block.cidr, tenant_range) {
                    check.error(spans, &format!("{path}.cidr"), format!("{} overlaps the platform's tenant range {tenant_range} (expected a tenant peer to reach tenants; CIDR peers are for addresses outside the platform)", block.cidr));
                }
            }
            Peer::TenantSelector { .. } | Peer::Dns { .. } => {}
        };
        for (index, rule) in tenant.spec.network.ingress.iter().enumerate() {
            for (peer_index, peer) in rule.from.iter().enumerate() {
                check_peer(
                    &mut check,
                    peer,
                    &format!("spec.network.ingress[{index}].from[{peer_index}]"),
                );
            }
            for (port_index, port) in rule.ports.iter().enumerate() {
                if let PortMatch::Named(port_name) = &port.ports {
                    let declared = own.iter().any(|w| {
                        w.spec.ports.iter().any(|p| {
                            p.name.as_deref() == Some(port_name) && p.protocol == port.protocol
                        })
                    });
                    if !declared {
                        check.error(spans, &format!("spec.network.ingress[{index}].ports[{port_index}]"), format!("no workload of tenant {:?} declares a {} port named {port_name:?} (expected a name from the workloads' ports)", name.as_str(), port.protocol));
                    }
                }
            }
        }
        for (index, rule) in tenant.spec.network.egress.iter().enumerate() {
            for (peer_index, peer) in rule.to.iter().enumerate() {
                check_peer(
                    &mut check,
                    peer,
                    &format!("spec.network.egress[{index}].to[{peer_index}]"),
                );
            }
            check_cidr_overlaps(
                &mut check,
                spans,
                &rule.to,
                &format!("spec.network.egress[{index}].to"),
            );
        }
        for (index, rule) in tenant.spec.network.ingress.iter().enumerate() {
            check_cidr_overlaps(
                &mut check,
                spans,
                &rule.from,
                &format!("spec.network.ingress[{index}].from"),
            );
        }
    }

    // Exclusive cpusets do not overlap.
    let mut cpus_taken: BTreeMap<u32, &Name> = BTreeMap::new();
    for (name, (tenant, spans)) in &tenants {
        if let Some(cpus) = tenant.spec.quota.cpuset.as_deref().and_then(parse_cpuset) {
            for cpu in cpus {
                if let Some(other) = cpus_taken.insert(cpu, name)
                    && other != name
                {
                    check.error(spans, "spec.quota.cpuset", format!("cpu {cpu} is already given to tenant {:?} (expected exclusive cpusets)", other.as_str()));
                    break;
                }
            }
        }
    }

    // Platform: the address range fits every tenant, references resolve.
    match tenant_range {
        IpNet::V4(range) => {
            let size: u64 = 1u64 << (32 - u32::from(range.prefix_len()));
            // network address, broadcast address and the bridge are not for tenants
            let usable = size.saturating_sub(3);
            if (tenant_names.len() as u64) > usable {
                check.error(&platform_spans, "spec.network.tenantRange", format!("{range} has room for {usable} tenants but {} are declared (expected a larger range, e.g. a /16)", tenant_names.len()));
            }
        }
        IpNet::V6(_) => {
            check.error(&platform_spans, "spec.network.tenantRange", format!("{tenant_range} is IPv6 (expected an IPv4 range; IPv6 tenant networks are not supported yet)"));
        }
    }
    for (index, service) in platform.spec.shared_services.iter().enumerate() {
        match &service.target {
            ServiceTarget::Tenant { tenant, .. } if !is_tenant(tenant) => {
                check.error(
                    &platform_spans,
                    &format!("spec.sharedServices[{index}].tenant"),
                    format!(
                        "unknown tenant {:?} (expected one of: {})",
                        tenant.as_str(),
                        list_or_none(&tenant_names)
                    ),
                );
            }
            ServiceTarget::Cidr(block) if overlaps(block.cidr, tenant_range) => {
                check.error(&platform_spans, &format!("spec.sharedServices[{index}].cidr"), format!("{} overlaps the tenant range {tenant_range} (expected a tenant target for services inside the platform)", block.cidr));
            }
            _ => {}
        }
        if service_names
            .iter()
            .filter(|n| **n == service.name.as_str())
            .count()
            > 1
        {
            check.error(
                &platform_spans,
                &format!("spec.sharedServices[{index}].name"),
                format!(
                    "duplicate shared service {:?} (expected unique names)",
                    service.name.as_str()
                ),
            );
        }
    }
    for (index, admin) in platform.spec.admins.iter().enumerate() {
        if let Some(tenant) = &admin.tenant
            && !is_tenant(tenant)
        {
            check.error(
                &platform_spans,
                &format!("spec.admins[{index}].tenant"),
                format!(
                    "unknown tenant {:?} (expected one of: {})",
                    tenant.as_str(),
                    list_or_none(&tenant_names)
                ),
            );
        }
    }

    Desired {
        platform,
        tenants: tenants
            .into_iter()
            .map(|(name, (tenant, _))| (name, tenant))
            .collect(),
        workloads,
    }
}

fn check_cidr_overlaps(check: &mut Checker<'_>, spans: &Spans, peers: &[Peer], path: &str) {
    let blocks: Vec<(usize, &IpNet)> = peers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Peer::Cidr(block) => Some((i, &block.cidr)),
            _ => None,
        })
        .collect();
    for (n, (i, a)) in blocks.iter().enumerate() {
        for (j, b) in &blocks[n + 1..] {
            if overlaps(**a, **b) {
                check.error(spans, &format!("{path}[{j}].cidr"), format!("{b} overlaps {a} in peer {i} of the same rule (expected distinct blocks; merge them or use except)"));
            }
        }
    }
}

fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b) || b.contains(&a)
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none declared".to_owned()
    } else {
        names.join(", ")
    }
}
