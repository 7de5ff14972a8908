//! The raw objects the engine evaluates, shaped like the Kubernetes API
//! (`networking.k8s.io/v1` NetworkPolicy, core/v1 Namespace and Pod), camelCase in serde.
//!
//! These types hold what the user (or a cluster) said, unvalidated; [`crate::Engine::new`]
//! validates them and reports every problem as a [`crate::ValidationError`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::selector::{LabelSelector, Labels};

/// The label every namespace carries, immutable, set to the namespace name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace: a name and labels that `namespaceSelector`s match.
///
/// The engine behaves as if [`NAMESPACE_NAME_LABEL`] were always set to `name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    /// The namespace name.
    pub name: String,
    /// Its labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl Namespace {
    /// A namespace with no labels (other than the implied name label).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: Labels::new(),
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// A transport protocol NetworkPolicy ports talk about.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Protocol {
    /// TCP, the default when a port spec names no protocol.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// Every protocol, in a fixed order.
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Tcp => 0,
            Self::Udp => 1,
            Self::Sctp => 2,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        })
    }
}

/// A port a pod declares with a name (a container port), so policies can say `port: http`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedPort {
    /// The IANA-style service name, e.g. `http`.
    pub name: String,
    /// The port number.
    pub port: u16,
    /// The protocol; TCP when absent.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A pod (a workload endpoint): the unit NetworkPolicies select.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    /// The namespace it runs in; must be declared.
    pub namespace: String,
    /// The pod name, unique within its namespace.
    pub name: String,
    /// Its labels.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Its named ports, against which policies' named ports resolve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NamedPort>,
    /// Its addresses (ipBlocks match them only when
    /// [`EngineOptions::ip_block_matches_pods`](crate::EngineOptions::ip_block_matches_pods) is set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
}

impl Pod {
    /// A pod with no labels, ports or addresses.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds a named port.
    #[must_use]
    pub fn port(mut self, name: impl Into<String>, port: u16, protocol: Protocol) -> Self {
        self.ports.push(NamedPort {
            name: name.into(),
            port,
            protocol,
        });
        self
    }

    /// Adds an address.
    #[must_use]
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ips.push(ip);
        self
    }
}

/// An address outside the cluster (a DNS resolver, "the internet"). It has no labels and
/// no policies: only ipBlocks match it, and only the pod side of a connection applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEndpoint {
    /// A name for reports, unique among external endpoints.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
}

impl ExternalEndpoint {
    /// An external endpoint.
    pub fn new(name: impl Into<String>, ip: IpAddr) -> Self {
        Self {
            name: name.into(),
            ip,
        }
    }
}

/// The direction(s) a policy restricts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    /// Traffic into the selected pods.
    Ingress,
    /// Traffic out of the selected pods.
    Egress,
}

/// A Kubernetes NetworkPolicy, flattened (`metadata.namespace`, `metadata.name`, then `spec`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// The namespace; the policy selects pods of this namespace only.
    pub namespace: String,
    /// The policy name, unique within its namespace.
    pub name: String,
    /// Which pods of the namespace the policy applies to; `{}` selects all of them.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Which directions the policy restricts. Absent or empty: Ingress, plus Egress if
    /// `egress` has rules (see [`NetworkPolicy::effective_policy_types`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<PolicyType>>,
    /// Allowed incoming traffic; empty with Ingress in force = deny all ingress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRule>,
    /// Allowed outgoing traffic; empty with Egress in force = deny all egress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
}

impl NetworkPolicy {
    /// A policy selecting every pod of `namespace`, with no rules and defaulted types
    /// (so, as it stands, it denies all ingress to them).
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    /// Sets the pod selector.
    #[must_use]
    pub fn select(mut self, selector: LabelSelector) -> Self {
        self.pod_selector = selector;
        self
    }

    /// Sets `policyTypes` explicitly.
    #[must_use]
    pub fn types(mut self, types: impl IntoIterator<Item = PolicyType>) -> Self {
        self.policy_types = Some(types.into_iter().collect());
        self
    }

    /// Adds an ingress rule.
    #[must_use]
    pub fn ingress_rule(mut self, rule: IngressRule) -> Self {
        self.ingress.push(rule);
        self
    }

    /// Adds an egress rule.
    #[must_use]
    pub fn egress_rule(mut self, rule: EgressRule) -> Self {
        self.egress.push(rule);
        self
    }

    /// The directions this policy restricts, after Kubernetes defaulting: the given
    /// `policyTypes` if non-empty, else Ingress, plus Egress iff there are egress rules.
    pub fn effective_policy_types(&self) -> Vec<PolicyType> {
        match &self.policy_types {
            Some(types) if !types.is_empty() => types.clone(),
            _ if self.egress.is_empty() => vec![PolicyType::Ingress],
            _ => vec![PolicyType::Ingress, PolicyType::Egress],
        }
    }

    /// Whether the policy, once defaulted, restricts `direction`.
    pub fn restricts(&self, direction: PolicyType) -> bool {
        self.effective_policy_types().contains(&direction)
    }
}

/// An ingress rule: traffic from any of `from` to any of `ports` is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// The allowed sources; empty = every source (pods and external addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Peer>,
    /// The allowed destination ports; empty = every port of every protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

impl IngressRule {
    /// A rule allowing everything (`- {}`); narrow it with [`Self::from`] and [`Self::port`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source peer.
    #[must_use]
    pub fn from(mut self, peer: Peer) -> Self {
        self.from.push(peer);
        self
    }

    /// Adds a port.
    #[must_use]
    pub fn port(mut self, port: PortSpec) -> Self {
        self.ports.push(port);
        self
    }
}

/// An egress rule: traffic to any of `to` on any of `ports` is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// The allowed destinations; empty = every destination (pods and external addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Peer>,
    /// The allowed destination ports; empty = every port of every protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

impl EgressRule {
    /// A rule allowing everything (`- {}`); narrow it with [`Self::to`] and [`Self::port`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a destination peer.
    #[must_use]
    pub fn to(mut self, peer: Peer) -> Self {
        self.to.push(peer);
        self
    }

    /// Adds a port.
    #[must_use]
    pub fn port(mut self, port: PortSpec) -> Self {
        self.ports.push(port);
        self
    }
}

/// One entry of `from`/`to`. Selectors inside one peer are ANDed; peers of a rule are ORed.
///
/// - `podSelector` alone: matching pods in the policy's namespace;
/// - `namespaceSelector` alone: every pod of the matching namespaces (`{}` = all namespaces);
/// - both: matching pods in matching namespaces;
/// - `ipBlock` alone: addresses in `cidr` but not in `except`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// Pods selected by label; absent = all pods of the namespaces in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces selected by label; absent = the policy's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// An address range; never combined with the selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

impl Peer {
    /// Pods matching `selector` in the policy's namespace.
    pub fn pods(selector: LabelSelector) -> Self {
        Self {
            pod_selector: Some(selector),
            ..Self::default()
        }
    }

    /// Every pod of the namespaces matching `selector`.
    pub fn namespaces(selector: LabelSelector) -> Self {
        Self {
            namespace_selector: Some(selector),
            ..Self::default()
        }
    }

    /// Pods matching `pods` in namespaces matching `namespaces` (the two ANDed).
    pub fn pods_in_namespaces(pods: LabelSelector, namespaces: LabelSelector) -> Self {
        Self {
            pod_selector: Some(pods),
            namespace_selector: Some(namespaces),
            ip_block: None,
        }
    }

    /// Addresses in `block`.
    pub fn ip_block(block: IpBlock) -> Self {
        Self {
            ip_block: Some(block),
            ..Self::default()
        }
    }
}

/// An address range with holes: `cidr` minus every `except` (each a strict subset of `cidr`).
/// Strings as in the Kubernetes API; [`crate::Engine::new`] parses and checks them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    /// The range, e.g. `10.0.0.0/8`.
    pub cidr: String,
    /// Sub-ranges excluded from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

impl IpBlock {
    /// The block `cidr` with no exceptions.
    pub fn new(cidr: impl Into<String>) -> Self {
        Self {
            cidr: cidr.into(),
            except: Vec::new(),
        }
    }

    /// Adds an exception.
    #[must_use]
    pub fn except(mut self, cidr: impl Into<String>) -> Self {
        self.except.push(cidr.into());
        self
    }
}

/// A `port` value: a number or the name of a port declared by the destination pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortRef {
    /// A port number.
    Number(u16),
    /// A named port, resolved on the destination pod (for ingress and egress alike).
    Name(String),
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    /// The protocol; TCP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The port or its name; absent = every port of `protocol`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortRef>,
    /// With a numeric `port`, the last port of the range `port..=endPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

impl PortSpec {
    /// One numeric port.
    pub fn number(protocol: Protocol, port: u16) -> Self {
        Self {
            protocol: Some(protocol),
            port: Some(PortRef::Number(port)),
            end_port: None,
        }
    }

    /// One TCP port.
    pub fn tcp(port: u16) -> Self {
        Self::number(Protocol::Tcp, port)
    }

    /// One UDP port.
    pub fn udp(port: u16) -> Self {
        Self::number(Protocol::Udp, port)
    }

    /// The range `start..=end`.
    pub fn range(protocol: Protocol, start: u16, end: u16) -> Self {
        Self {
            protocol: Some(protocol),
            port: Some(PortRef::Number(start)),
            end_port: Some(end),
        }
    }

    /// A named port, resolved on the destination pod.
    pub fn named(protocol: Protocol, name: impl Into<String>) -> Self {
        Self {
            protocol: Some(protocol),
            port: Some(PortRef::Name(name.into())),
            end_port: None,
        }
    }

    /// Every port of `protocol`.
    pub fn all(protocol: Protocol) -> Self {
        Self {
            protocol: Some(protocol),
            port: None,
            end_port: None,
        }
    }
}

/// Everything the engine evaluates: namespaces, pods, external endpoints and policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// Declared namespaces.
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// Pods; each in a declared namespace.
    #[serde(default)]
    pub pods: Vec<Pod>,
    /// Addresses outside the cluster worth a row in the matrix.
    #[serde(default)]
    pub externals: Vec<ExternalEndpoint>,
    /// NetworkPolicies.
    #[serde(default)]
    pub policies: Vec<NetworkPolicy>,
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespaces.push(namespace);
        self
    }

    /// Adds a pod.
    #[must_use]
    pub fn pod(mut self, pod: Pod) -> Self {
        self.pods.push(pod);
        self
    }

    /// Adds an external endpoint.
    #[must_use]
    pub fn external(mut self, external: ExternalEndpoint) -> Self {
        self.externals.push(external);
        self
    }

    /// Adds a policy.
    #[must_use]
    pub fn policy(mut self, policy: NetworkPolicy) -> Self {
        self.policies.push(policy);
        self
    }
}
