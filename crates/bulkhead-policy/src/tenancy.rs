//! The one translation from bulkhead's tenant model ([`bulkhead_spec::Desired`]) to the
//! engine's Kubernetes-shaped input ([`Cluster`]), and the tenant-level views built on it.
//!
//! Every consumer goes through [`translate`]: `bulkhead plan` ([`diff_desired`]),
//! `describe` ([`tenant_matrix`]), the host firewall compiler, the Kubernetes renderer
//! (the generated [`NetworkPolicy`] objects, [`Translation::policies`]) and the
//! verifier's expected matrix ([`engine_for`]). Nothing else maps our YAML to policy.
//!
//! # Objects
//!
//! | our model | engine input |
//! |---|---|
//! | Tenant `T` | `Namespace { name: T, labels: T's metadata.labels }`; the engine adds `kubernetes.io/metadata.name: T` |
//! | Workload `W` of `T` | `Pod { namespace: T, name: W, labels: W's labels, ports: W's *named* ports, ips: [addr(T)] }` |
//! | (option) every tenant | one synthetic `Pod { namespace: T, name: `[`TENANT_ENDPOINT`]` }`, no labels, no ports, ips `[addr(T)]` |
//! | `platform.spec.network.dns`, else the first usable address of `tenantRange` (the bridge) | `ExternalEndpoint` [`DNS_ENDPOINT`] |
//! | caller's externals ([`TenancyOptions::external`]) | `ExternalEndpoint`s as given |
//!
//! `addr(T)` comes from [`TenancyOptions::address`] (on one host, all workloads of a
//! tenant share the tenant's address); without it, pods carry no address. Addresses do
//! not change reachability: [`engine_for`] uses the default [`EngineOptions`] (ipBlocks
//! never match pods), and validation keeps CIDR peers out of the tenant range anyway.
//!
//! # Policies, per tenant `T` (all in namespace `T`)
//!
//! | our YAML | NetworkPolicy |
//! |---|---|
//! | (always) | [`DEFAULT_DENY`]: `podSelector: {}`, `policyTypes: [Ingress, Egress]`, no rules |
//! | `sameTenant: allow` (the default) | [`SAME_TENANT`]: `podSelector: {}`, both types, `ingress: [{from: [{podSelector: {}}]}]`, `egress: [{to: [{podSelector: {}}]}]` |
//! | `sameTenant: deny` | nothing: only explicit rules apply inside the tenant |
//! | `ingress[i]` | `bulkhead-ingress-{i}`: `podSelector` = `workloads` (absent → `{}`), `policyTypes: [Ingress]`, one rule: `from` = the peers below, `ports` = the rule's `ports` |
//! | `egress[i]`, its `tenant`/`tenantSelector`/`cidr` peers | `bulkhead-egress-{i}`: `podSelector` = `workloads`, `policyTypes: [Egress]`, one rule: those peers, the rule's `ports` |
//! | `egress[i]`, its `dns: true` peer | `bulkhead-egress-{i}-dns`: one rule to the resolver's ipBlock; ports `53/UDP, 53/TCP`, or the rule's `ports` if it lists any (they replace 53, never add to it) |
//! | `egress[i]`, its `service: S` peer | `bulkhead-egress-{i}-service-{S}`: one rule to the service's target; ports = the service's `ports`, intersected with the rule's `ports` if it lists any |
//! | a tenant `C`'s `egress[i]` names `service: S` running in tenant `T` | in `T`: [`service_policy_name`] `bulkhead-service-{S}-from-{C}`: `podSelector` = the service's `workloadSelector`, `policyTypes: [Ingress]`, per such rule of `C`: `from: [{namespaceSelector: name = C, podSelector: the rule's workloads}]`, the same ports as `C`'s egress side |
//! | `state: suspended` | [`DEFAULT_DENY`] only: the tenant's own rules and the service exceptions into or out of it are not generated ("network cut") |
//!
//! Kubernetes rules carry one port list for all their peers, so an egress rule whose
//! peers need different ports is split by peer kind into the policies above. The split
//! depends on the peer kinds only, never on port values, so names stay stable across
//! revisions. Policies are ordered by tenant, then as listed above; exception policies
//! come last in the service tenant's list, by service then consumer.
//!
//! # Peers
//!
//! | our peer | NetworkPolicy peer |
//! |---|---|
//! | `tenant: X` (+ `workloadSelector`) | `namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: X}}` AND `podSelector` (the selector, else `{}`) |
//! | `tenantSelector: S` (+ `workloadSelector`) | `namespaceSelector: S` AND `podSelector` (the selector, else `{}`). `tenantSelector: {}` is **every tenant, the rule's own tenant included** |
//! | `cidr: {cidr, except}` | `ipBlock: {cidr, except}` |
//! | `dns: true` | `ipBlock: {cidr: <resolver>/32}` (or `/128`); ports as in the egress table |
//! | `service: S`, target `tenant: T` (+ `workloadSelector`) | as `tenant: T` with the service's selector |
//! | `service: S`, target `cidr` | `ipBlock` of the service's CIDR (no exception needed: externals have no policies) |
//!
//! In **ingress** rules, `dns` and `service` peers are only sources: the ports they
//! *serve* (53, the service's ports) say nothing about the ports they may open on us, so
//! the rule's own `ports` apply (empty = every port, as for any ingress rule), the rule
//! is not split, and no exception is generated on the other side (a service that must
//! call a tenant needs its own egress rule).
//!
//! # Service ports
//!
//! A `service:` peer in egress never widens what the service serves:
//!
//! - rule without `ports`: the service's ports;
//! - rule with `ports`: the intersection, port by port (same protocol; ranges overlap;
//!   a name meets the same name). A name against a range keeps the name when every
//!   service workload declaring it maps it inside the range, drops it when none does, and
//!   is an error ([`TranslateProblem::NamedPortSplit`]) when only some do;
//! - an empty intersection is an error ([`TranslateProblem::DisjointServicePorts`]), as
//!   is a service that serves no ports ([`TranslateProblem::ServiceWithoutPorts`]).
//!
//! # The synthetic tenant endpoint
//!
//! [`TenancyOptions::tenant_endpoints`] adds one pod per tenant, [`TENANT_ENDPOINT`]
//! (`_tenant`: workload names are DNS labels, so no workload can be called that), so a
//! tenant without workloads can still be probed from and to. It has no labels and no
//! ports. Selectors see it as an unlabelled pod: a `workloads`/`workloadSelector`
//! selector matches it only if it matches an empty label set — `{}`, or a selector made
//! only of `NotIn`/`DoesNotExist` requirements; `matchLabels`, `In` and `Exists` never
//! match it. Named ports never resolve on it. It is subject to the tenant's policies
//! like any workload: the default deny, `sameTenant`, and every rule with no
//! `workloads` selector.
//!
//! # Tenant-level views
//!
//! [`TenantMatrix`] aggregates the engine's matrix to tenants and external endpoints:
//! `A -> B` on a port when some endpoint of `A` may reach some *other* endpoint of `B`
//! on it (an endpoint reaching itself does not count, so a one-workload tenant shows no
//! `T -> T` line unless the synthetic endpoint is on). External-to-external pairs are
//! left out: none of our policies applies to them. [`diff_desired`] compares two
//! desired states at that level; its lines are what `bulkhead plan` prints under
//! "network": `+ web -> db  TCP 5432`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use bulkhead_spec as spec;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineOptions};
use crate::error::BuildEngineError;
use crate::matrix::{GroupKey, NamespaceMatrix};
use crate::model::{
    Cluster, EgressRule, ExternalEndpoint, IngressRule, IpBlock, NAMESPACE_NAME_LABEL, NamedPort,
    Namespace, NetworkPolicy, Peer, Pod, PolicyType, PortSpec, Protocol,
};
use crate::ports::{PortRange, PortSet};
use crate::selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};

/// Name of the synthetic per-tenant endpoint ([`TenancyOptions::tenant_endpoints`]); no
/// workload can have it (workload names are DNS labels).
pub const TENANT_ENDPOINT: &str = "_tenant";
/// Name of the external endpoint standing for the platform's DNS resolver.
pub const DNS_ENDPOINT: &str = "dns";
/// Name of every tenant's default-deny policy.
pub const DEFAULT_DENY: &str = "bulkhead-default-deny";
/// Name of the policy that opens a tenant to itself (`sameTenant: allow`).
pub const SAME_TENANT: &str = "bulkhead-same-tenant";

/// Name of the policy for `ingress[index]`.
pub fn ingress_policy_name(index: usize) -> String {
    format!("bulkhead-ingress-{index}")
}

/// Name of the policy for the `tenant`/`tenantSelector`/`cidr` peers of `egress[index]`.
pub fn egress_policy_name(index: usize) -> String {
    format!("bulkhead-egress-{index}")
}

/// Name of the policy for the `dns: true` peer of `egress[index]`.
pub fn egress_dns_policy_name(index: usize) -> String {
    format!("bulkhead-egress-{index}-dns")
}

/// Name of the policy for the `service: service` peer of `egress[index]`.
pub fn egress_service_policy_name(index: usize, service: &str) -> String {
    format!("bulkhead-egress-{index}-service-{service}")
}

/// Name of the exception policy, in the service's tenant, that admits `consumer` to
/// `service`.
pub fn service_policy_name(service: &str, consumer: &str) -> String {
    format!("bulkhead-service-{service}-from-{consumer}")
}

/// What the caller adds to the translation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenancyOptions {
    /// Per tenant, the address its workloads (and its synthetic endpoint) carry.
    pub tenant_addresses: BTreeMap<String, IpAddr>,
    /// Whether to add the synthetic endpoint [`TENANT_ENDPOINT`] to every tenant.
    pub tenant_endpoints: bool,
    /// External endpoints besides the DNS resolver (e.g. the verifier's "outside world").
    pub externals: Vec<ExternalEndpoint>,
}

impl TenancyOptions {
    /// No addresses, no synthetic endpoints, no extra externals.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `tenant`'s endpoints the address `ip`.
    #[must_use]
    pub fn address(mut self, tenant: impl Into<String>, ip: IpAddr) -> Self {
        self.tenant_addresses.insert(tenant.into(), ip);
        self
    }

    /// Sets [`Self::tenant_endpoints`].
    #[must_use]
    pub fn tenant_endpoints(mut self, yes: bool) -> Self {
        self.tenant_endpoints = yes;
        self
    }

    /// Adds an external endpoint.
    #[must_use]
    pub fn external(mut self, name: impl Into<String>, ip: IpAddr) -> Self {
        self.externals.push(ExternalEndpoint::new(name, ip));
        self
    }
}

/// The result of [`translate`]: the engine's input, the generated policies inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// Namespaces, pods, external endpoints and the generated NetworkPolicies.
    pub cluster: Cluster,
    /// The DNS resolver's address (the [`DNS_ENDPOINT`] external endpoint).
    pub resolver: IpAddr,
}

impl Translation {
    /// The generated NetworkPolicy objects, in their stable order.
    pub fn policies(&self) -> &[NetworkPolicy] {
        &self.cluster.policies
    }

    /// The generated policies of one tenant's namespace.
    pub fn policies_of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a NetworkPolicy> {
        self.cluster
            .policies
            .iter()
            .filter(move |p| p.namespace == tenant)
    }
}

/// Which of a tenant's rules a problem is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleAt {
    /// The tenant.
    pub tenant: String,
    /// `Ingress` or `Egress`.
    pub direction: PolicyType,
    /// The rule's index in that list.
    pub index: usize,
}

impl fmt::Display for RuleAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = match self.direction {
            PolicyType::Ingress => "ingress",
            PolicyType::Egress => "egress",
        };
        write!(
            f,
            "tenant {:?}: spec.network.{list}[{}]",
            self.tenant, self.index
        )
    }
}

/// One reason the desired state cannot be translated exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateProblem {
    /// A `service:` peer names a service the platform does not declare.
    #[error(
        "{at}: unknown shared service {service:?} (expected one of the platform's sharedServices)"
    )]
    UnknownService {
        /// The rule.
        at: RuleAt,
        /// The service named.
        service: String,
    },
    /// The service lists no ports; reading `[]` as "every port" would widen it.
    #[error(
        "{at}: shared service {service:?} serves no ports (expected the platform to list its ports)"
    )]
    ServiceWithoutPorts {
        /// The rule.
        at: RuleAt,
        /// The service.
        service: String,
    },
    /// The rule's ports and the service's ports have nothing in common.
    #[error(
        "{at}: ports {rule_ports} share no port with shared service {service:?} ({service_ports}) (expected ports the service serves, or no ports)"
    )]
    DisjointServicePorts {
        /// The rule.
        at: RuleAt,
        /// The service.
        service: String,
        /// The rule's ports, as written.
        rule_ports: String,
        /// The service's ports, as written.
        service_ports: String,
    },
    /// A named port meets a range and some of the service's workloads map the name inside
    /// it, others outside: no single NetworkPolicy port expresses the intersection.
    #[error(
        "{at}: named port {name}/{protocol} of shared service {service:?} falls inside {range} on some of its workloads only (expected a numeric port, or a range covering the name on every workload)"
    )]
    NamedPortSplit {
        /// The rule.
        at: RuleAt,
        /// The service.
        service: String,
        /// The port name.
        name: String,
        /// Its protocol.
        protocol: Protocol,
        /// The range it was intersected with.
        range: String,
    },
    /// No address for the DNS resolver.
    #[error(
        "platform: spec.network.tenantRange {range} has no usable address for the DNS resolver (expected spec.network.dns, or a range with a bridge address)"
    )]
    NoResolverAddress {
        /// The tenant range.
        range: String,
    },
}

/// Every problem found translating a desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// The problems, in tenant and rule order.
    pub problems: Vec<TranslateProblem>,
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TranslateError {}

/// Why a desired state could not be turned into an engine (or a view built on one).
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    /// The translation failed.
    #[error("cannot translate the tenants' network rules:\n{0}")]
    Translate(#[from] TranslateError),
    /// The engine rejected the translated objects (e.g. a caller's external endpoint
    /// named like [`DNS_ENDPOINT`], or a tenant label that fights the name label).
    #[error("the translated network policies are invalid: {0}")]
    Engine(#[from] BuildEngineError),
}

/// The DNS resolver tenants reach with `dns: true`: `platform.spec.network.dns`, else
/// the first usable address of the tenant range (the bridge).
pub fn resolver_address(platform: &spec::Platform) -> Option<IpAddr> {
    let network = &platform.spec.network;
    network.dns.or(match network.tenant_range {
        IpNet::V4(range) => range.hosts().next().map(IpAddr::V4),
        IpNet::V6(range) => range.hosts().nth(1).map(IpAddr::V6),
    })
}

/// Translates `desired` into the engine's input: see the module docs for the mapping.
pub fn translate(
    desired: &spec::Desired,
    options: &TenancyOptions,
) -> Result<Translation, TranslateError> {
    let mut problems = Vec::new();
    let resolver = resolver_address(&desired.platform);
    if resolver.is_none() {
        problems.push(TranslateProblem::NoResolverAddress {
            range: desired.platform.spec.network.tenant_range.to_string(),
        });
    }
    let resolver_block = resolver.map(host_block);

    let mut cluster = Cluster::new();
    for (name, tenant) in &desired.tenants {
        cluster.namespaces.push(Namespace {
            name: name.to_string(),
            labels: tenant.metadata.labels.clone(),
        });
        let ips: Vec<IpAddr> = options
            .tenant_addresses
            .get(name.as_str())
            .copied()
            .into_iter()
            .collect();
        for workload in desired.workloads_of(name) {
            cluster.pods.push(Pod {
                namespace: name.to_string(),
                name: workload.metadata.name.to_string(),
                labels: workload.metadata.labels.clone(),
                ports: workload
                    .spec
                    .ports
                    .iter()
                    .filter_map(|p| {
                        p.name.as_ref().map(|n| NamedPort {
                            name: n.clone(),
                            port: p.port,
                            protocol: protocol(p.protocol),
                        })
                    })
                    .collect(),
                ips: ips.clone(),
            });
        }
        if options.tenant_endpoints {
            cluster.pods.push(Pod {
                namespace: name.to_string(),
                name: TENANT_ENDPOINT.to_owned(),
                ips,
                ..Pod::default()
            });
        }
    }
    if let Some(ip) = resolver {
        cluster
            .externals
            .push(ExternalEndpoint::new(DNS_ENDPOINT, ip));
    }
    cluster.externals.extend(options.externals.iter().cloned());

    // Exception policies, by service tenant, then (service, consumer).
    let mut exceptions: BTreeMap<String, BTreeMap<(String, String), NetworkPolicy>> =
        BTreeMap::new();
    let mut own: BTreeMap<String, Vec<NetworkPolicy>> = BTreeMap::new();
    for (name, tenant) in &desired.tenants {
        let tenant_name = name.as_str();
        let policies = own.entry(tenant_name.to_owned()).or_default();
        policies.push(
            NetworkPolicy::new(tenant_name, DEFAULT_DENY)
                .types([PolicyType::Ingress, PolicyType::Egress]),
        );
        if tenant.spec.state == spec::TenantState::Suspended {
            continue;
        }
        let network = &tenant.spec.network;
        if network.same_tenant == spec::SameTenant::Allow {
            policies.push(
                NetworkPolicy::new(tenant_name, SAME_TENANT)
                    .types([PolicyType::Ingress, PolicyType::Egress])
                    .ingress_rule(IngressRule::new().from(Peer::pods(LabelSelector::everything())))
                    .egress_rule(EgressRule::new().to(Peer::pods(LabelSelector::everything()))),
            );
        }
        for (index, rule) in network.ingress.iter().enumerate() {
            let at = RuleAt {
                tenant: tenant_name.to_owned(),
                direction: PolicyType::Ingress,
                index,
            };
            let mut from = Vec::new();
            for peer in &rule.from {
                match peer {
                    spec::Peer::Dns { .. } => {
                        if let Some(block) = &resolver_block {
                            from.push(Peer::ip_block(block.clone()));
                        }
                    }
                    spec::Peer::Service { service } => {
                        match desired
                            .platform
                            .spec
                            .shared_services
                            .iter()
                            .find(|s| s.name == *service)
                        {
                            Some(found) => from.push(service_peer(&found.target)),
                            None => problems.push(TranslateProblem::UnknownService {
                                at: at.clone(),
                                service: service.to_string(),
                            }),
                        }
                    }
                    other => from.extend(plain_peer(other)),
                }
            }
            dedup(&mut from);
            if from.is_empty() {
                // Kubernetes reads an empty `from` as every source: never emit one.
                continue;
            }
            policies.push(
                NetworkPolicy::new(tenant_name, ingress_policy_name(index))
                    .select(opt_selector(rule.workloads.as_ref()))
                    .types([PolicyType::Ingress])
                    .ingress_rule(IngressRule {
                        from,
                        ports: rule.ports.iter().map(port).collect(),
                    }),
            );
        }
        for (index, rule) in network.egress.iter().enumerate() {
            let at = RuleAt {
                tenant: tenant_name.to_owned(),
                direction: PolicyType::Egress,
                index,
            };
            let workloads = opt_selector(rule.workloads.as_ref());
            let egress_policy = |name: String, to: Vec<Peer>, ports: Vec<PortSpec>| {
                NetworkPolicy::new(tenant_name, name)
                    .select(workloads.clone())
                    .types([PolicyType::Egress])
                    .egress_rule(EgressRule { to, ports })
            };
            let rule_ports: Vec<PortSpec> = rule.ports.iter().map(port).collect();
            let mut plain = Vec::new();
            let mut dns = false;
            let mut services: Vec<&spec::Name> = Vec::new();
            for peer in &rule.to {
                match peer {
                    spec::Peer::Dns { .. } => dns = true,
                    spec::Peer::Service { service } => {
                        if !services.contains(&service) {
                            services.push(service);
                        }
                    }
                    other => plain.extend(plain_peer(other)),
                }
            }
            dedup(&mut plain);
            if !plain.is_empty() {
                policies.push(egress_policy(
                    egress_policy_name(index),
                    plain,
                    rule_ports.clone(),
                ));
            }
            if dns && let Some(block) = &resolver_block {
                let ports = if rule_ports.is_empty() {
                    vec![PortSpec::udp(53), PortSpec::tcp(53)]
                } else {
                    rule_ports.clone()
                };
                policies.push(egress_policy(
                    egress_dns_policy_name(index),
                    vec![Peer::ip_block(block.clone())],
                    ports,
                ));
            }
            for service in services {
                let Some(found) = desired
                    .platform
                    .spec
                    .shared_services
                    .iter()
                    .find(|s| s.name == *service)
                else {
                    problems.push(TranslateProblem::UnknownService {
                        at: at.clone(),
                        service: service.to_string(),
                    });
                    continue;
                };
                let ports = match service_ports(desired, found, &rule.ports, &at) {
                    Ok(ports) => ports,
                    Err(problem) => {
                        problems.push(problem);
                        continue;
                    }
                };
                policies.push(egress_policy(
                    egress_service_policy_name(index, service.as_str()),
                    vec![service_peer(&found.target)],
                    ports.clone(),
                ));
                if let spec::ServiceTarget::Tenant {
                    tenant: target,
                    workload_selector,
                } = &found.target
                {
                    let target_active = desired
                        .tenants
                        .get(target)
                        .is_some_and(|t| t.spec.state == spec::TenantState::Active);
                    if !target_active {
                        continue;
                    }
                    let exception = exceptions
                        .entry(target.to_string())
                        .or_default()
                        .entry((service.to_string(), tenant_name.to_owned()))
                        .or_insert_with(|| {
                            NetworkPolicy::new(
                                target.as_str(),
                                service_policy_name(service.as_str(), tenant_name),
                            )
                            .select(opt_selector(workload_selector.as_ref()))
                            .types([PolicyType::Ingress])
                        });
                    let rule = IngressRule {
                        from: vec![Peer::pods_in_namespaces(
                            workloads.clone(),
                            name_selector(tenant_name),
                        )],
                        ports,
                    };
                    if !exception.ingress.contains(&rule) {
                        exception.ingress.push(rule);
                    }
                }
            }
        }
    }
    // Exceptions exist only for active, declared tenants, so each finds its namespace.
    for (tenant, mut policies) in own {
        if let Some(extra) = exceptions.remove(&tenant) {
            policies.extend(extra.into_values());
        }
        cluster.policies.extend(policies);
    }

    match resolver {
        Some(resolver) if problems.is_empty() => Ok(Translation { cluster, resolver }),
        _ => Err(TranslateError { problems }),
    }
}

/// Translates `desired` and builds the engine on it (default [`EngineOptions`]).
pub fn engine_for(
    desired: &spec::Desired,
    options: &TenancyOptions,
) -> Result<Engine, TenancyError> {
    let translation = translate(desired, options)?;
    Ok(Engine::new(&translation.cluster, EngineOptions::default())?)
}

/// The tenant-level reachability of `desired` (see [`TenantMatrix`]).
pub fn tenant_matrix(
    desired: &spec::Desired,
    options: &TenancyOptions,
) -> Result<TenantMatrix, TenancyError> {
    Ok(TenantMatrix::from_engine(&engine_for(desired, options)?))
}

/// What changes at tenant level from `before` to `after`, both translated with `options`:
/// the lines `bulkhead plan` prints under "network".
pub fn diff_desired(
    before: &spec::Desired,
    after: &spec::Desired,
    options: &TenancyOptions,
) -> Result<TenantDiff, TenancyError> {
    Ok(diff_tenants(
        &tenant_matrix(before, options)?,
        &tenant_matrix(after, options)?,
    ))
}

/// `src` may reach `dst` on `ports` (tenants are [`GroupKey::Namespace`]s, the resolver
/// and the caller's endpoints [`GroupKey::External`]s).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantConnection {
    /// The source tenant or external endpoint.
    pub src: GroupKey,
    /// The destination tenant or external endpoint.
    pub dst: GroupKey,
    /// The ports, never empty.
    pub ports: PortSet,
}

impl fmt::Display for TenantConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}  {}", self.src, self.dst, self.ports)
    }
}

/// Reachability between tenants and external endpoints: `A -> B` on a port when some
/// endpoint of `A` may reach some other endpoint of `B` on it. External-to-external
/// pairs are left out. Agrees with [`Engine::allowed`] on every pair and port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantMatrix {
    /// Sorted by source, then destination.
    connections: Vec<TenantConnection>,
}

impl TenantMatrix {
    /// Aggregates the engine's full matrix.
    pub fn from_engine(engine: &Engine) -> Self {
        Self::from_namespace_matrix(&engine.matrix().namespace_matrix())
    }

    /// Aggregates an already computed namespace matrix (namespaces are tenants).
    pub fn from_namespace_matrix(matrix: &NamespaceMatrix) -> Self {
        let mut connections: Vec<TenantConnection> = matrix
            .connections()
            .into_iter()
            .filter(|(src, dst, _)| {
                !(matches!(src, GroupKey::External { .. })
                    && matches!(dst, GroupKey::External { .. }))
            })
            .map(|(src, dst, ports)| TenantConnection { src, dst, ports })
            .collect();
        connections.sort_by(|a, b| (&a.src, &a.dst).cmp(&(&b.src, &b.dst)));
        Self { connections }
    }

    /// Every connection, sorted by source then destination.
    pub fn connections(&self) -> &[TenantConnection] {
        &self.connections
    }

    /// The ports on which `src` reaches `dst` (empty if none).
    pub fn ports(&self, src: &GroupKey, dst: &GroupKey) -> PortSet {
        self.find(src, dst)
            .map(|c| c.ports.clone())
            .unwrap_or_default()
    }

    /// Whether `src` reaches `dst` on `port` of `protocol`.
    pub fn allowed(&self, src: &GroupKey, dst: &GroupKey, protocol: Protocol, port: u16) -> bool {
        self.find(src, dst)
            .is_some_and(|c| c.ports.contains(protocol, port))
    }

    fn find(&self, src: &GroupKey, dst: &GroupKey) -> Option<&TenantConnection> {
        self.connections
            .binary_search_by(|c| (&c.src, &c.dst).cmp(&(src, dst)))
            .ok()
            .map(|i| &self.connections[i])
    }
}

impl fmt::Display for TenantMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for connection in &self.connections {
            writeln!(f, "{connection}")?;
        }
        Ok(())
    }
}

/// Tenant-level changes: connections (or ports of them) gained and lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantDiff {
    /// Ports `after` allows and `before` does not, per pair.
    pub added: Vec<TenantConnection>,
    /// Ports `before` allows and `after` does not, per pair.
    pub removed: Vec<TenantConnection>,
}

impl TenantDiff {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

impl fmt::Display for TenantDiff {
    /// `+ web -> db  TCP 5432` per gained connection, then `- …` per lost one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.added {
            writeln!(f, "+ {c}")?;
        }
        for c in &self.removed {
            writeln!(f, "- {c}")?;
        }
        Ok(())
    }
}

/// The per-pair, per-port difference of two tenant matrices.
pub fn diff_tenants(before: &TenantMatrix, after: &TenantMatrix) -> TenantDiff {
    let mut pairs: Vec<(&GroupKey, &GroupKey)> = before
        .connections
        .iter()
        .chain(&after.connections)
        .map(|c| (&c.src, &c.dst))
        .collect();
    pairs.sort();
    pairs.dedup();
    let mut diff = TenantDiff::default();
    for (src, dst) in pairs {
        let old = before.ports(src, dst);
        let new = after.ports(src, dst);
        for (ports, out) in [
            (subtract(&new, &old), &mut diff.added),
            (subtract(&old, &new), &mut diff.removed),
        ] {
            if !ports.is_empty() {
                out.push(TenantConnection {
                    src: src.clone(),
                    dst: dst.clone(),
                    ports,
                });
            }
        }
    }
    diff
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
                    if hi < start || lo > end {
                        vec![(start, end)]
                    } else {
                        let mut left = Vec::with_capacity(2);
                        if lo > start {
                            left.push((start, lo - 1));
                        }
                        if hi < end {
                            left.push((hi + 1, end));
                        }
                        left
                    }
                })
                .collect();
        }
        out.extend(pieces.into_iter().map(|(start, end)| PortRange {
            protocol: range.protocol,
            start: u16::try_from(start).unwrap_or(u16::MAX),
            end: u16::try_from(end).unwrap_or(u16::MAX),
        }));
    }
    PortSet::from_ranges(out)
}

/// The `tenant`, `tenantSelector` and `cidr` peers; `None` for `dns` and `service`.
fn plain_peer(peer: &spec::Peer) -> Option<Peer> {
    match peer {
        spec::Peer::Tenant {
            tenant,
            workload_selector,
        } => Some(Peer::pods_in_namespaces(
            opt_selector(workload_selector.as_ref()),
            name_selector(tenant.as_str()),
        )),
        spec::Peer::TenantSelector {
            tenant_selector,
            workload_selector,
        } => Some(Peer::pods_in_namespaces(
            opt_selector(workload_selector.as_ref()),
            selector(tenant_selector),
        )),
        spec::Peer::Cidr(block) => Some(Peer::ip_block(cidr_block(block))),
        spec::Peer::Dns { .. } | spec::Peer::Service { .. } => None,
    }
}

/// The peer standing for a shared service's target.
fn service_peer(target: &spec::ServiceTarget) -> Peer {
    match target {
        spec::ServiceTarget::Tenant {
            tenant,
            workload_selector,
        } => Peer::pods_in_namespaces(
            opt_selector(workload_selector.as_ref()),
            name_selector(tenant.as_str()),
        ),
        spec::ServiceTarget::Cidr(block) => Peer::ip_block(cidr_block(block)),
    }
}

/// The ports an egress rule with a `service:` peer opens: see "Service ports" above.
fn service_ports(
    desired: &spec::Desired,
    service: &spec::SharedService,
    rule_ports: &[spec::PortSpec],
    at: &RuleAt,
) -> Result<Vec<PortSpec>, TranslateProblem> {
    if service.ports.is_empty() {
        return Err(TranslateProblem::ServiceWithoutPorts {
            at: at.clone(),
            service: service.name.to_string(),
        });
    }
    if rule_ports.is_empty() {
        return Ok(unique(service.ports.iter().map(port)));
    }
    // What a name resolves to on the service's workloads (named ports never match an
    // external endpoint, so a CIDR target resolves nothing).
    let resolve = |name: &str, proto: spec::Protocol| -> Vec<u16> {
        let spec::ServiceTarget::Tenant {
            tenant,
            workload_selector,
        } = &service.target
        else {
            return Vec::new();
        };
        let chosen = opt_selector(workload_selector.as_ref());
        desired
            .workloads_of(tenant)
            .filter(|w| chosen.matches(&w.metadata.labels))
            .flat_map(|w| &w.spec.ports)
            .filter(|p| p.name.as_deref() == Some(name) && p.protocol == proto)
            .map(|p| p.port)
            .collect()
    };
    let mut out = Vec::new();
    for ours in rule_ports {
        for theirs in &service.ports {
            if ours.protocol != theirs.protocol {
                continue;
            }
            let meet = match (&ours.ports, &theirs.ports) {
                (
                    spec::PortMatch::Range { first, last },
                    spec::PortMatch::Range {
                        first: first2,
                        last: last2,
                    },
                ) => {
                    let (start, end) = ((*first).max(*first2), (*last).min(*last2));
                    (start <= end).then_some(spec::PortMatch::Range {
                        first: start,
                        last: end,
                    })
                }
                (spec::PortMatch::Named(a), spec::PortMatch::Named(b)) => {
                    (a == b).then(|| spec::PortMatch::Named(a.clone()))
                }
                (spec::PortMatch::Named(name), spec::PortMatch::Range { first, last })
                | (spec::PortMatch::Range { first, last }, spec::PortMatch::Named(name)) => {
                    let numbers = resolve(name, ours.protocol);
                    let inside = numbers
                        .iter()
                        .filter(|n| (*first..=*last).contains(n))
                        .count();
                    if inside == 0 {
                        None
                    } else if inside == numbers.len() {
                        Some(spec::PortMatch::Named(name.clone()))
                    } else {
                        return Err(TranslateProblem::NamedPortSplit {
                            at: at.clone(),
                            service: service.name.to_string(),
                            name: name.clone(),
                            protocol: protocol(ours.protocol),
                            range: if first == last {
                                format!("{first}/{}", ours.protocol)
                            } else {
                                format!("{first}-{last}/{}", ours.protocol)
                            },
                        });
                    }
                }
            };
            if let Some(ports) = meet {
                out.push(spec::PortSpec {
                    ports,
                    protocol: ours.protocol,
                });
            }
        }
    }
    if out.is_empty() {
        let list = |ports: &[spec::PortSpec]| {
            ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(TranslateProblem::DisjointServicePorts {
            at: at.clone(),
            service: service.name.to_string(),
            rule_ports: list(rule_ports),
            service_ports: list(&service.ports),
        });
    }
    out.sort();
    Ok(unique(out.iter().map(port)))
}

fn unique(ports: impl Iterator<Item = PortSpec>) -> Vec<PortSpec> {
    let mut out: Vec<PortSpec> = Vec::new();
    for p in ports {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

fn dedup(peers: &mut Vec<Peer>) {
    let mut seen = Vec::with_capacity(peers.len());
    peers.retain(|p| {
        if seen.contains(p) {
            false
        } else {
            seen.push(p.clone());
            true
        }
    });
}

fn host_block(ip: IpAddr) -> IpBlock {
    IpBlock::new(IpNet::from(ip).to_string())
}

fn cidr_block(block: &spec::CidrBlock) -> IpBlock {
    IpBlock {
        cidr: block.cidr.to_string(),
        except: block.except.iter().map(ToString::to_string).collect(),
    }
}

fn name_selector(tenant: &str) -> LabelSelector {
    LabelSelector::with_label(NAMESPACE_NAME_LABEL, tenant)
}

fn opt_selector(selector_: Option<&spec::LabelSelector>) -> LabelSelector {
    selector_.map(selector).unwrap_or_default()
}

fn selector(s: &spec::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: s.match_labels.clone(),
        match_expressions: s
            .match_expressions
            .iter()
            .map(|r| LabelSelectorRequirement {
                key: r.key.clone(),
                operator: match r.operator {
                    spec::SelectorOperator::In => SelectorOperator::In,
                    spec::SelectorOperator::NotIn => SelectorOperator::NotIn,
                    spec::SelectorOperator::Exists => SelectorOperator::Exists,
                    spec::SelectorOperator::DoesNotExist => SelectorOperator::DoesNotExist,
                },
                values: r.values.clone(),
            })
            .collect(),
    }
}

fn protocol(p: spec::Protocol) -> Protocol {
    match p {
        spec::Protocol::Tcp => Protocol::Tcp,
        spec::Protocol::Udp => Protocol::Udp,
        spec::Protocol::Sctp => Protocol::Sctp,
    }
}

fn port(p: &spec::PortSpec) -> PortSpec {
    let proto = protocol(p.protocol);
    match &p.ports {
        spec::PortMatch::Range { first, last } if first == last => PortSpec::number(proto, *first),
        spec::PortMatch::Range { first, last } => PortSpec::range(proto, *first, *last),
        spec::PortMatch::Named(name) => PortSpec::named(proto, name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(Protocol, u16, u16)]) -> PortSet {
        PortSet::from_ranges(ranges.iter().map(|&(protocol, start, end)| PortRange {
            protocol,
            start,
            end,
        }))
    }

    #[test]
    fn subtract_cuts_holes_and_keeps_other_protocols() {
        let a = set(&[(Protocol::Tcp, 1, 100), (Protocol::Udp, 53, 53)]);
        let b = set(&[(Protocol::Tcp, 10, 20), (Protocol::Tcp, 100, 200)]);
        assert_eq!(
            subtract(&a, &b),
            set(&[
                (Protocol::Tcp, 1, 9),
                (Protocol::Tcp, 21, 99),
                (Protocol::Udp, 53, 53)
            ])
        );
        assert!(subtract(&b, &PortSet::everything()).is_empty());
        let full = set(&[(Protocol::Tcp, 1, u16::MAX)]);
        assert_eq!(
            subtract(&full, &set(&[(Protocol::Tcp, u16::MAX, u16::MAX)])),
            set(&[(Protocol::Tcp, 1, u16::MAX - 1)])
        );
    }

    #[test]
    fn resolver_is_the_bridge_unless_the_platform_names_one() {
        let mut desired = spec::load_str("p.yaml", "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata: {name: p}\nspec:\n  network: {tenantRange: 10.9.0.0/24}\n")
            .expect("valid platform");
        assert_eq!(
            resolver_address(&desired.platform),
            Some(IpAddr::from([10, 9, 0, 1]))
        );
        desired.platform.spec.network.dns = Some(IpAddr::from([10, 9, 0, 53]));
        assert_eq!(
            resolver_address(&desired.platform),
            Some(IpAddr::from([10, 9, 0, 53]))
        );
    }
}
