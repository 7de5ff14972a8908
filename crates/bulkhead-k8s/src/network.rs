//! NetworkPolicies: the one tenant translation ([`bulkhead_policy::tenancy::translate`]),
//! made exact for a cluster.
//!
//! The translation's policies and names are kept as they are (default deny, same
//! tenant, one policy per rule, DNS and service splits, service exceptions), with two
//! changes that only a cluster needs:
//!
//! - **DNS.** `dns: true` peers become the cluster resolver — pods labelled
//!   `platform.kubernetes.dnsSelector.podLabels` in the namespace
//!   `dnsSelector.namespace` (selected by `kubernetes.io/metadata.name`) — instead of the
//!   host resolver's address.
//! - **Tenant selectors.** A `tenantSelector` peer becomes
//!   `kubernetes.io/metadata.name In [the tenants it matches]`, resolved against the
//!   desired state, so it matches tenants only (never `kube-system` or another
//!   namespace someone labelled alike) and never by a label a namespace's owner could
//!   change. A peer that matches no tenant is dropped; a rule left without peers is
//!   dropped (Kubernetes would read an empty `from`/`to` as everyone), and so is a policy
//!   left without rules (the default deny already isolates its pods).
//!
//! Hence no rendered policy has an empty `namespaceSelector`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_policy as policy;
use bulkhead_policy::tenancy::Translation;
use bulkhead_spec::Desired;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::labels;

/// The translated policies of `tenant`, as Kubernetes objects, in translation order.
pub fn network_policies(
    desired: &Desired,
    translation: &Translation,
    tenant: &str,
) -> Vec<NetworkPolicy> {
    let cx = Cx::new(desired, translation.resolver);
    translation
        .policies_of(tenant)
        .filter_map(|p| cx.policy(p))
        .collect()
}

struct Cx<'a> {
    desired: &'a Desired,
    resolver_cidr: String,
    dns: NetworkPolicyPeer,
}

impl<'a> Cx<'a> {
    fn new(desired: &'a Desired, resolver: IpAddr) -> Self {
        let prefix = if resolver.is_ipv4() { 32 } else { 128 };
        let dns = &desired.platform.spec.kubernetes.dns_selector;
        Cx {
            desired,
            resolver_cidr: format!("{resolver}/{prefix}"),
            dns: NetworkPolicyPeer {
                namespace_selector: Some(name_selector([dns.namespace.to_string()])),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(dns.pod_labels.clone()),
                    match_expressions: None,
                }),
                ip_block: None,
            },
        }
    }

    fn policy(&self, p: &policy::NetworkPolicy) -> Option<NetworkPolicy> {
        let types = p.effective_policy_types();
        let ingress: Vec<NetworkPolicyIngressRule> = p
            .ingress
            .iter()
            .filter_map(|rule| {
                let from = self.peers(&rule.from)?;
                Some(NetworkPolicyIngressRule {
                    from,
                    ports: ports(&rule.ports),
                })
            })
            .collect();
        let egress: Vec<NetworkPolicyEgressRule> = p
            .egress
            .iter()
            .filter_map(|rule| {
                let to = self.peers(&rule.to)?;
                Some(NetworkPolicyEgressRule {
                    to,
                    ports: ports(&rule.ports),
                })
            })
            .collect();
        let had_rules = !p.ingress.is_empty() || !p.egress.is_empty();
        if had_rules && ingress.is_empty() && egress.is_empty() {
            return None;
        }
        Some(NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(p.name.clone()),
                namespace: Some(p.namespace.clone()),
                labels: Some(labels::owned(&p.namespace)),
                ..ObjectMeta::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(selector(&p.pod_selector)),
                policy_types: Some(
                    types
                        .iter()
                        .map(|t| match t {
                            policy::PolicyType::Ingress => "Ingress".to_owned(),
                            policy::PolicyType::Egress => "Egress".to_owned(),
                        })
                        .collect(),
                ),
                ingress: (!ingress.is_empty()).then_some(ingress),
                egress: (!egress.is_empty()).then_some(egress),
            }),
        })
    }

    /// `Some(peers)` for a rule to keep: `Some(None)` for a rule that had no peers
    /// (every peer, as the translation meant it), `Some(Some(list))` for a non-empty
    /// list; `None` when every peer was dropped.
    fn peers(&self, peers: &[policy::Peer]) -> Option<Option<Vec<NetworkPolicyPeer>>> {
        if peers.is_empty() {
            return Some(None);
        }
        let mut out: Vec<NetworkPolicyPeer> = Vec::new();
        for peer in peers {
            if let Some(converted) = self.peer(peer)
                && !out.contains(&converted)
            {
                out.push(converted);
            }
        }
        (!out.is_empty()).then_some(Some(out))
    }

    fn peer(&self, peer: &policy::Peer) -> Option<NetworkPolicyPeer> {
        if let Some(block) = &peer.ip_block {
            if block.cidr == self.resolver_cidr && block.except.is_empty() {
                return Some(self.dns.clone());
            }
            return Some(NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: block.cidr.clone(),
                    except: (!block.except.is_empty()).then(|| block.except.clone()),
                }),
                ..NetworkPolicyPeer::default()
            });
        }
        let namespace_selector = match &peer.namespace_selector {
            None => None,
            Some(s) if is_name_selector(s) => Some(selector(s)),
            Some(s) => {
                let tenants = self.tenants_matching(s);
                if tenants.is_empty() {
                    return None;
                }
                Some(name_selector(tenants))
            }
        };
        Some(NetworkPolicyPeer {
            namespace_selector,
            pod_selector: peer.pod_selector.as_ref().map(selector),
            ip_block: None,
        })
    }

    fn tenants_matching(&self, s: &policy::LabelSelector) -> Vec<String> {
        self.desired
            .tenants
            .iter()
            .filter(|(name, tenant)| {
                let mut namespace_labels: BTreeMap<String, String> = tenant.metadata.labels.clone();
                namespace_labels.insert(labels::NAMESPACE_NAME.to_owned(), name.to_string());
                s.matches(&namespace_labels)
            })
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

fn is_name_selector(s: &policy::LabelSelector) -> bool {
    s.match_expressions.is_empty()
        && s.match_labels.len() == 1
        && s.match_labels.contains_key(labels::NAMESPACE_NAME)
}

/// Selects the namespaces named `names` by their immutable name label: `matchLabels`
/// for one, an `In` expression for several.
pub fn name_selector(names: impl IntoIterator<Item = String>) -> LabelSelector {
    let mut names: Vec<String> = names.into_iter().collect();
    names.sort();
    names.dedup();
    if names.len() == 1 {
        LabelSelector {
            match_labels: Some(BTreeMap::from([(
                labels::NAMESPACE_NAME.to_owned(),
                names.remove(0),
            )])),
            match_expressions: None,
        }
    } else {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: labels::NAMESPACE_NAME.to_owned(),
                operator: "In".to_owned(),
                values: Some(names),
            }]),
        }
    }
}

/// A label selector in `k8s-openapi` form; `{}` stays `{}`.
pub fn selector(s: &policy::LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: (!s.match_labels.is_empty()).then(|| s.match_labels.clone()),
        match_expressions: (!s.match_expressions.is_empty()).then(|| {
            s.match_expressions
                .iter()
                .map(|r| LabelSelectorRequirement {
                    key: r.key.clone(),
                    operator: r.operator.to_string(),
                    values: (!r.values.is_empty()).then(|| r.values.clone()),
                })
                .collect()
        }),
    }
}

fn ports(ports: &[policy::PortSpec]) -> Option<Vec<NetworkPolicyPort>> {
    if ports.is_empty() {
        return None;
    }
    Some(
        ports
            .iter()
            .map(|p| NetworkPolicyPort {
                protocol: Some(p.protocol.unwrap_or_default().to_string()),
                port: p.port.as_ref().map(|port| match port {
                    policy::PortRef::Number(n) => IntOrString::Int(i32::from(*n)),
                    policy::PortRef::Name(name) => IntOrString::String(name.clone()),
                }),
                end_port: p.end_port.map(i32::from),
            })
            .collect(),
    )
}
