//! Istio, when `platform.kubernetes.mesh` is on: mutual TLS required for every pod of a
//! tenant (PeerAuthentication `STRICT`) and AuthorizationPolicies generated from the
//! same allow-list as the NetworkPolicies, rule for rule.
//!
//! # From NetworkPolicies to AuthorizationPolicies
//!
//! - **Deny by default**: [`allow_nothing`] (`bulkhead-mesh`, an `ALLOW` policy with no
//!   rules) selects every pod of the tenant, so a pod no other policy selects accepts no
//!   request at all, as the default-deny NetworkPolicy does.
//! - **One AuthorizationPolicy per rendered NetworkPolicy with ingress rules**, same
//!   name, its `podSelector` as the workload `selector` (omitted when it selects every
//!   pod), and **one rule per ingress rule**:
//!   - `from.source.principals`: for each peer's namespace, the mesh identities
//!     (`<trust domain>/ns/<namespace>/sa/<account>`, [`principal`]) of the source
//!     tenant's workloads the peer's pod selector matches, each running as
//!     [`labels::WORKLOAD_SERVICE_ACCOUNT`]; every account of the namespace
//!     (`…/sa/*`) when the spec declares none of its workloads (they come by GitOps)
//!     or the namespace is not a tenant's (the cluster resolver's, say). A rule with
//!     no peers admits any identity (mTLS is still required).
//!   - `to.operation.ports`: the rule's TCP ports as numbers; a named port is looked
//!     up on the destination's declared workloads; a range is expanded up to
//!     [`MAX_RANGE`] ports. The mesh sees TCP only, so UDP and SCTP ports are left to
//!     the NetworkPolicy.
//! - **What cannot be said exactly is left out, never widened**: an `ipBlock` peer (no
//!   mesh identity; `STRICT` refuses such callers anyway), a named port no declared
//!   workload has, a range wider than [`MAX_RANGE`], a `podSelector` with
//!   `matchExpressions` (Istio selectors are labels only). A rule left without sources
//!   or ports is dropped, and a policy left without rules; then the allow-nothing
//!   policy refuses that traffic in the mesh while the NetworkPolicy would let it
//!   through: the mesh fails closed.
//!
//! The NetworkPolicies stay in force underneath.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_spec::{Desired, Protocol, Workload};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use crate::flux::Meta;
use crate::labels;

/// API version of Istio's security objects.
pub const SECURITY_API_VERSION: &str = "security.istio.io/v1";
/// Name of both mesh objects in a tenant's namespace.
pub const NAME: &str = "bulkhead-mesh";

/// `security.istio.io/v1` PeerAuthentication (the fields we set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// Always [`SECURITY_API_VERSION`].
    pub api_version: String,
    /// Always `PeerAuthentication`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: Meta,
    /// The mode.
    pub spec: PeerAuthenticationSpec,
}

impl PeerAuthentication {
    /// The kind.
    pub const KIND: &'static str = "PeerAuthentication";
}

/// Body of a PeerAuthentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    /// mTLS settings.
    pub mtls: Mtls,
}

/// The mTLS mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mtls {
    /// `STRICT`.
    pub mode: String,
}

/// `security.istio.io/v1` AuthorizationPolicy (the fields we set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// Always [`SECURITY_API_VERSION`].
    pub api_version: String,
    /// Always `AuthorizationPolicy`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: Meta,
    /// The rules.
    pub spec: AuthorizationPolicySpec,
}

impl AuthorizationPolicy {
    /// The kind.
    pub const KIND: &'static str = "AuthorizationPolicy";
}

/// Body of an AuthorizationPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// The pods it applies to; absent: every pod of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// `ALLOW`.
    pub action: String,
    /// Requests matching any rule are allowed; none: nothing is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRule>,
}

/// Pods by label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels the pods carry.
    pub match_labels: BTreeMap<String, String>,
}

/// One rule: who may call, on which ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationRule {
    /// Sources (ORed); none: any mesh identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<AuthorizationSource>,
    /// Operations (ORed); none: any port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<AuthorizationOperation>,
}

/// A source of an AuthorizationPolicy rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationSource {
    /// The callers.
    pub source: SourcePrincipals,
}

/// Callers by mTLS identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourcePrincipals {
    /// `<trust domain>/ns/<namespace>/sa/<service account>`, `*` as the last segment
    /// for every account of a namespace.
    pub principals: Vec<String>,
}

/// An operation of an AuthorizationPolicy rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationOperation {
    /// The ports.
    pub operation: Ports,
}

/// Destination ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ports {
    /// Port numbers, as strings.
    pub ports: Vec<String>,
}

/// The widest port range expanded into an AuthorizationPolicy (Istio has no ranges).
pub const MAX_RANGE: u32 = 256;

fn meta(tenant: &str, name: &str) -> Meta {
    Meta {
        name: name.to_owned(),
        namespace: Some(labels::namespace(tenant)),
        labels: labels::owned(tenant),
    }
}

/// Mutual TLS required in the tenant's namespace.
pub fn peer_authentication(tenant: &str) -> PeerAuthentication {
    PeerAuthentication {
        api_version: SECURITY_API_VERSION.to_owned(),
        kind: PeerAuthentication::KIND.to_owned(),
        metadata: meta(tenant, NAME),
        spec: PeerAuthenticationSpec {
            mtls: Mtls {
                mode: "STRICT".to_owned(),
            },
        },
    }
}

/// The mesh identity of `account` in `namespace`.
pub fn principal(trust_domain: &str, namespace: &str, account: &str) -> String {
    format!("{trust_domain}/ns/{namespace}/sa/{account}")
}

/// An `ALLOW` policy without rules for every pod of the tenant: nothing is allowed
/// that another policy does not allow.
pub fn allow_nothing(tenant: &str) -> AuthorizationPolicy {
    AuthorizationPolicy {
        api_version: SECURITY_API_VERSION.to_owned(),
        kind: AuthorizationPolicy::KIND.to_owned(),
        metadata: meta(tenant, NAME),
        spec: AuthorizationPolicySpec {
            selector: None,
            action: "ALLOW".to_owned(),
            rules: Vec::new(),
        },
    }
}

/// Whether pod labels satisfy a Kubernetes label selector (`matchLabels` and
/// `matchExpressions`).
fn selects(selector: &LabelSelector, pod: &BTreeMap<String, String>) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| pod.get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = pod.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// The declared workloads of `namespace` that `selector` (absent: all) selects.
fn workloads_selected<'a>(
    desired: &'a Desired,
    namespace: &str,
    selector: Option<&LabelSelector>,
) -> Vec<&'a Workload> {
    desired
        .workloads
        .iter()
        .filter(|((tenant, _), _)| tenant.as_str() == namespace)
        .map(|(_, w)| w)
        .filter(|w| selector.is_none_or(|s| selects(s, &crate::workload::pod_labels(namespace, w))))
        .collect()
}

/// The namespaces a peer names by [`labels::NAMESPACE_NAME`]; the policy's own for a
/// peer without a namespace selector; `None` when the selector says anything else.
fn peer_namespaces(peer: &NetworkPolicyPeer, own: &str) -> Option<Vec<String>> {
    let Some(selector) = &peer.namespace_selector else {
        return Some(vec![own.to_owned()]);
    };
    let mut names = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        if key != labels::NAMESPACE_NAME {
            return None;
        }
        names.push(value.clone());
    }
    for requirement in selector.match_expressions.iter().flatten() {
        if requirement.key != labels::NAMESPACE_NAME || requirement.operator != "In" {
            return None;
        }
        names.extend(requirement.values.iter().flatten().cloned());
    }
    (!names.is_empty()).then_some(names)
}

/// The principals of one peer (empty: none expressible).
fn peer_principals(
    desired: &Desired,
    trust_domain: &str,
    peer: &NetworkPolicyPeer,
    own: &str,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if peer.ip_block.is_some() {
        return out;
    }
    let Some(namespaces) = peer_namespaces(peer, own) else {
        return out;
    };
    for namespace in namespaces {
        let declared = desired
            .workloads
            .keys()
            .any(|(tenant, _)| tenant.as_str() == namespace);
        if !declared {
            out.insert(principal(trust_domain, &namespace, "*"));
            continue;
        }
        for _workload in workloads_selected(desired, &namespace, peer.pod_selector.as_ref()) {
            out.insert(principal(
                trust_domain,
                &namespace,
                labels::WORKLOAD_SERVICE_ACCOUNT,
            ));
        }
    }
    out
}

/// The TCP port numbers of one NetworkPolicy port; `None` for every TCP port.
fn tcp_ports(port: &NetworkPolicyPort, destinations: &[&Workload]) -> Option<BTreeSet<u16>> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    if protocol != "TCP" {
        return Some(BTreeSet::new());
    }
    let mut out = BTreeSet::new();
    match &port.port {
        None => return None,
        Some(IntOrString::Int(first)) => {
            let Ok(first) = u16::try_from(*first) else {
                return Some(out);
            };
            let last = port
                .end_port
                .and_then(|e| u16::try_from(e).ok())
                .unwrap_or(first);
            if u32::from(last).saturating_sub(u32::from(first)) < MAX_RANGE {
                out.extend(first..=last);
            }
        }
        Some(IntOrString::String(name)) => {
            for workload in destinations {
                out.extend(
                    workload
                        .spec
                        .ports
                        .iter()
                        .filter(|p| p.protocol == Protocol::Tcp && p.name.as_deref() == Some(name))
                        .map(|p| p.port),
                );
            }
        }
    }
    Some(out)
}

/// One AuthorizationPolicy per rendered NetworkPolicy of `tenant` that has ingress
/// rules, one rule per ingress rule (see the module documentation).
pub fn authorization_policies(
    desired: &Desired,
    tenant: &str,
    policies: &[NetworkPolicy],
    trust_domain: &str,
) -> Vec<AuthorizationPolicy> {
    let mut out = Vec::new();
    for policy in policies {
        let Some(spec) = &policy.spec else { continue };
        let Some(ingress) = spec.ingress.as_ref().filter(|i| !i.is_empty()) else {
            continue;
        };
        let pod_selector = spec.pod_selector.clone().unwrap_or_default();
        if pod_selector
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            continue;
        }
        let match_labels = pod_selector.match_labels.clone().unwrap_or_default();
        let destinations = workloads_selected(desired, tenant, Some(&pod_selector));
        let mut rules = Vec::new();
        for rule in ingress {
            let from = match &rule.from {
                None => Vec::new(),
                Some(peers) => {
                    let principals: BTreeSet<String> = peers
                        .iter()
                        .flat_map(|p| peer_principals(desired, trust_domain, p, tenant))
                        .collect();
                    if principals.is_empty() {
                        continue;
                    }
                    vec![AuthorizationSource {
                        source: SourcePrincipals {
                            principals: principals.into_iter().collect(),
                        },
                    }]
                }
            };
            let to = match &rule.ports {
                None => Vec::new(),
                Some(ports) => {
                    let mut numbers = BTreeSet::new();
                    let mut any = false;
                    for port in ports {
                        match tcp_ports(port, &destinations) {
                            Some(found) => numbers.extend(found),
                            None => any = true,
                        }
                    }
                    if any {
                        Vec::new()
                    } else if numbers.is_empty() {
                        continue;
                    } else {
                        vec![AuthorizationOperation {
                            operation: Ports {
                                ports: numbers.iter().map(u16::to_string).collect(),
                            },
                        }]
                    }
                }
            };
            rules.push(AuthorizationRule { from, to });
        }
        if rules.is_empty() {
            continue;
        }
        let name = policy.metadata.name.clone().unwrap_or_default();
        out.push(AuthorizationPolicy {
            api_version: SECURITY_API_VERSION.to_owned(),
            kind: AuthorizationPolicy::KIND.to_owned(),
            metadata: meta(tenant, &name),
            spec: AuthorizationPolicySpec {
                selector: (!match_labels.is_empty()).then_some(WorkloadSelector { match_labels }),
                action: "ALLOW".to_owned(),
                rules,
            },
        });
    }
    out
}
