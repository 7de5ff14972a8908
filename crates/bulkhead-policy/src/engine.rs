//! The validated, compiled cluster and the per-connection question
//! `allowed(src, dst, protocol, port)`, with its explanation.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{BuildEngineError, InvalidKind, ValidationError};
use crate::model::{
    Cluster, NAMESPACE_NAME_LABEL, NamedPort, Peer, PolicyType, PortRef, PortSpec, Protocol,
};
use crate::selector::{LabelSelector, Labels};
use crate::validate;

/// Choices Kubernetes leaves to the network plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineOptions {
    /// Whether `ipBlock` peers also match cluster pods whose address falls in the block.
    ///
    /// Kubernetes leaves this implementation-defined (pod IPs are ephemeral; ipBlock is
    /// meant for cluster-external addresses). `false` (the default): ipBlocks match
    /// external endpoints only, so pods are reachable through selectors alone. `true`:
    /// an ipBlock also matches a pod when any of the pod's addresses is in the block.
    pub ip_block_matches_pods: bool,
}

impl EngineOptions {
    /// Sets [`Self::ip_block_matches_pods`].
    #[must_use]
    pub fn ip_block_matches_pods(mut self, yes: bool) -> Self {
        self.ip_block_matches_pods = yes;
        self
    }
}

/// An endpoint's number in an [`Engine`] and its matrices: pods first (grouped by
/// namespace, in declaration order), then external endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EndpointId(pub u32);

impl EndpointId {
    /// The index into [`Engine::endpoints`].
    pub fn index(self) -> usize {
        self.0 as usize
    }

    pub(crate) fn from_index(index: usize) -> Self {
        Self(u32::try_from(index).unwrap_or(u32::MAX))
    }
}

/// What an endpoint is, stable across engines (matrices are diffed by key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum EndpointKey {
    /// A pod.
    Pod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// An external endpoint.
    External {
        /// Its name.
        name: String,
    },
}

impl EndpointKey {
    /// The key of pod `namespace/name`.
    pub fn pod(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self::Pod {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of external endpoint `name`.
    pub fn external(name: impl Into<String>) -> Self {
        Self::External { name: name.into() }
    }
}

impl std::fmt::Display for EndpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
            Self::External { name } => write!(f, "external:{name}"),
        }
    }
}

/// A policy, named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One rule of a policy: `spec.ingress[index]` or `spec.egress[index]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRef {
    /// The policy holding the rule.
    pub policy: PolicyRef,
    /// Which list it is in.
    pub direction: PolicyType,
    /// Its position in that list.
    pub index: usize,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = match self.direction {
            PolicyType::Ingress => "ingress",
            PolicyType::Egress => "egress",
        };
        write!(f, "{} {list}[{}]", self.policy, self.index)
    }
}

/// Why one side (source egress or destination ingress) lets a connection through or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum SideVerdict {
    /// Source and destination are the same endpoint: a pod cannot block itself.
    SameEndpoint,
    /// This side is an external endpoint; no policy applies to it.
    External,
    /// No policy of this direction selects the pod: it is not isolated.
    NotIsolated,
    /// Isolated, and these rules allow the connection.
    Allowed {
        /// Every rule that allows it.
        rules: Vec<RuleRef>,
    },
    /// Isolated by these policies, and none of their rules allows the connection.
    Denied {
        /// The policies selecting the pod for this direction.
        isolated_by: Vec<PolicyRef>,
    },
}

impl SideVerdict {
    /// Whether this side lets the connection through.
    pub fn allows(&self) -> bool {
        !matches!(self, Self::Denied { .. })
    }
}

/// The answer to `explain(src, dst, protocol, port)`: both sides and the conclusion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Whether the connection is allowed (both sides allow it).
    pub allowed: bool,
    /// The source's egress side.
    pub egress: SideVerdict,
    /// The destination's ingress side.
    pub ingress: SideVerdict,
}

#[derive(Debug)]
pub(crate) struct NamespaceInfo {
    pub(crate) name: String,
    /// Declared labels plus the implied name label.
    pub(crate) labels: Labels,
    /// The endpoint indices of its pods (contiguous).
    pub(crate) pods: Range<usize>,
}

#[derive(Debug)]
pub(crate) struct EndpointInfo {
    pub(crate) key: EndpointKey,
    /// Index into `namespaces` for pods; `None` for externals.
    pub(crate) namespace: Option<usize>,
    pub(crate) labels: Labels,
    pub(crate) ports: Vec<NamedPort>,
    pub(crate) ips: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum NamespaceScope {
    /// The policy's own namespace (`None` when it is not declared: no pods).
    Own(Option<usize>),
    Matching(LabelSelector),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CompiledPeer {
    Select {
        namespaces: NamespaceScope,
        pods: Option<LabelSelector>,
    },
    Block {
        cidr: IpNet,
        except: Vec<IpNet>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CompiledPort {
    Range {
        protocol: Protocol,
        start: u16,
        end: u16,
    },
    Named {
        protocol: Protocol,
        name: String,
    },
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    /// Empty = every peer.
    pub(crate) peers: Vec<CompiledPeer>,
    /// Empty = every port.
    pub(crate) ports: Vec<CompiledPort>,
}

#[derive(Debug)]
pub(crate) struct CompiledPolicy {
    pub(crate) reference: PolicyRef,
    /// Rules per direction; `None` when the policy does not restrict it.
    pub(crate) ingress: Option<Vec<CompiledRule>>,
    pub(crate) egress: Option<Vec<CompiledRule>>,
}

/// A validated cluster, compiled for evaluation. Answers single connections
/// ([`Engine::allowed`], [`Engine::explain`]) and builds whole matrices
/// ([`Engine::matrix`]).
#[derive(Debug)]
pub struct Engine {
    pub(crate) options: EngineOptions,
    pub(crate) namespaces: Vec<NamespaceInfo>,
    pub(crate) endpoints: Vec<EndpointInfo>,
    pub(crate) pod_count: usize,
    keys: HashMap<EndpointKey, EndpointId>,
    pub(crate) policies: Vec<CompiledPolicy>,
    /// Per endpoint, the policies selecting it that restrict its ingress.
    pub(crate) ingress_of: Vec<Vec<usize>>,
    /// Per endpoint, the policies selecting it that restrict its egress.
    pub(crate) egress_of: Vec<Vec<usize>>,
}

impl Engine {
    /// Validates `cluster` (every problem is reported) and compiles it.
    pub fn new(cluster: &Cluster, options: EngineOptions) -> Result<Self, BuildEngineError> {
        let mut errors = Vec::new();

        let mut namespaces = Vec::with_capacity(cluster.namespaces.len());
        let mut namespace_index: HashMap<&str, usize> = HashMap::new();
        for ns in &cluster.namespaces {
            let object = format!("namespace {}", ns.name);
            if ns.name.is_empty() {
                errors.push(ValidationError::new(
                    &object,
                    "metadata.name",
                    InvalidKind::EmptyName,
                ));
            }
            if namespace_index.contains_key(ns.name.as_str()) {
                errors.push(ValidationError::new(
                    &object,
                    "metadata.name",
                    InvalidKind::Duplicate {
                        what: "namespace",
                        name: ns.name.clone(),
                    },
                ));
                continue;
            }
            if let Some(value) = ns.labels.get(NAMESPACE_NAME_LABEL)
                && *value != ns.name
            {
                errors.push(ValidationError::new(
                    &object,
                    format!("metadata.labels[{NAMESPACE_NAME_LABEL}]"),
                    InvalidKind::NamespaceNameLabelMismatch {
                        name: ns.name.clone(),
                        value: value.clone(),
                    },
                ));
            }
            let mut labels = ns.labels.clone();
            labels.insert(NAMESPACE_NAME_LABEL.to_owned(), ns.name.clone());
            namespace_index.insert(&ns.name, namespaces.len());
            namespaces.push(NamespaceInfo {
                name: ns.name.clone(),
                labels,
                pods: 0..0,
            });
        }

        // Pods, grouped by namespace so each namespace is a contiguous id range.
        let mut by_namespace: Vec<Vec<&crate::model::Pod>> = vec![Vec::new(); namespaces.len()];
        let mut seen_pods: HashSet<(&str, &str)> = HashSet::new();
        for pod in &cluster.pods {
            let object = format!("pod {}/{}", pod.namespace, pod.name);
            if pod.name.is_empty() {
                errors.push(ValidationError::new(
                    &object,
                    "metadata.name",
                    InvalidKind::EmptyName,
                ));
            }
            if !seen_pods.insert((&pod.namespace, &pod.name)) {
                errors.push(ValidationError::new(
                    &object,
                    "metadata.name",
                    InvalidKind::Duplicate {
                        what: "pod",
                        name: pod.name.clone(),
                    },
                ));
                continue;
            }
            let mut port_names = HashSet::new();
            for (i, named) in pod.ports.iter().enumerate() {
                let field = format!("spec.ports[{i}]");
                if named.port == 0 {
                    errors.push(ValidationError::new(&object, &field, InvalidKind::PortZero));
                }
                if !validate::is_port_name(&named.name) {
                    errors.push(ValidationError::new(
                        &object,
                        &field,
                        InvalidKind::InvalidPortName {
                            name: named.name.clone(),
                        },
                    ));
                }
                if !port_names.insert((&named.name, named.protocol)) {
                    errors.push(ValidationError::new(
                        &object,
                        &field,
                        InvalidKind::DuplicatePortName {
                            name: named.name.clone(),
                            protocol: named.protocol,
                        },
                    ));
                }
            }
            match namespace_index.get(pod.namespace.as_str()) {
                Some(&ns) => by_namespace[ns].push(pod),
                None => errors.push(ValidationError::new(
                    &object,
                    "metadata.namespace",
                    InvalidKind::UnknownNamespace {
                        namespace: pod.namespace.clone(),
                    },
                )),
            }
        }

        let mut endpoints = Vec::with_capacity(cluster.pods.len() + cluster.externals.len());
        for (ns, pods) in by_namespace.iter().enumerate() {
            let start = endpoints.len();
            for pod in pods {
                endpoints.push(EndpointInfo {
                    key: EndpointKey::pod(&pod.namespace, &pod.name),
                    namespace: Some(ns),
                    labels: pod.labels.clone(),
                    ports: pod.ports.clone(),
                    ips: pod.ips.clone(),
                });
            }
            namespaces[ns].pods = start..endpoints.len();
        }
        let pod_count = endpoints.len();
        let mut seen_externals = HashSet::new();
        for external in &cluster.externals {
            let object = format!("external endpoint {}", external.name);
            if external.name.is_empty() {
                errors.push(ValidationError::new(
                    &object,
                    "name",
                    InvalidKind::EmptyName,
                ));
            }
            if !seen_externals.insert(&external.name) {
                errors.push(ValidationError::new(
                    &object,
                    "name",
                    InvalidKind::Duplicate {
                        what: "external endpoint",
                        name: external.name.clone(),
                    },
                ));
                continue;
            }
            endpoints.push(EndpointInfo {
                key: EndpointKey::external(&external.name),
                namespace: None,
                labels: Labels::new(),
                ports: Vec::new(),
                ips: vec![external.ip],
            });
        }

        let mut policies = Vec::with_capacity(cluster.policies.len());
        let mut ingress_of = vec![Vec::new(); endpoints.len()];
        let mut egress_of = vec![Vec::new(); endpoints.len()];
        let mut seen_policies = HashSet::new();
        for policy in &cluster.policies {
            let before = errors.len();
            validate::policy(policy, &mut errors);
            if !seen_policies.insert((&policy.namespace, &policy.name)) {
                errors.push(ValidationError::new(
                    &format!("policy {}/{}", policy.namespace, policy.name),
                    "metadata.name",
                    InvalidKind::Duplicate {
                        what: "policy",
                        name: policy.name.clone(),
                    },
                ));
            }
            if errors.len() > before {
                continue;
            }
            let own = namespace_index.get(policy.namespace.as_str()).copied();
            let compile = |peers: &[Peer], ports: &[PortSpec]| CompiledRule {
                peers: peers.iter().filter_map(|p| compile_peer(p, own)).collect(),
                ports: ports.iter().map(compile_port).collect(),
            };
            let types = policy.effective_policy_types();
            let ingress = types.contains(&PolicyType::Ingress).then(|| {
                policy
                    .ingress
                    .iter()
                    .map(|r| compile(&r.from, &r.ports))
                    .collect()
            });
            let egress = types.contains(&PolicyType::Egress).then(|| {
                policy
                    .egress
                    .iter()
                    .map(|r| compile(&r.to, &r.ports))
                    .collect()
            });
            let index = policies.len();
            if let Some(ns) = own {
                for pod in namespaces[ns].pods.clone() {
                    if policy.pod_selector.matches(&endpoints[pod].labels) {
                        if ingress.is_some() {
                            ingress_of[pod].push(index);
                        }
                        if egress.is_some() {
                            egress_of[pod].push(index);
                        }
                    }
                }
            }
            policies.push(CompiledPolicy {
                reference: PolicyRef {
                    namespace: policy.namespace.clone(),
                    name: policy.name.clone(),
                },
                ingress,
                egress,
            });
        }

        if !errors.is_empty() {
            return Err(BuildEngineError { errors });
        }
        let keys = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), EndpointId::from_index(i)))
            .collect();
        Ok(Self {
            options,
            namespaces,
            endpoints,
            pod_count,
            keys,
            policies,
            ingress_of,
            egress_of,
        })
    }

    /// The options the engine was built with.
    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// Every endpoint, indexed by [`EndpointId::index`].
    pub fn endpoints(&self) -> impl ExactSizeIterator<Item = &EndpointKey> {
        self.endpoints.iter().map(|e| &e.key)
    }

    /// The number of endpoints (pods and external endpoints).
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// The number of pods; pods have the ids `0..pod_count()`.
    pub fn pod_count(&self) -> usize {
        self.pod_count
    }

    /// The id of an endpoint.
    pub fn id(&self, key: &EndpointKey) -> Option<EndpointId> {
        self.keys.get(key).copied()
    }

    /// The id of pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<EndpointId> {
        self.id(&EndpointKey::pod(namespace, name))
    }

    /// The id of external endpoint `name`.
    pub fn external(&self, name: &str) -> Option<EndpointId> {
        self.id(&EndpointKey::external(name))
    }

    /// The key of an endpoint.
    pub fn key(&self, id: EndpointId) -> Option<&EndpointKey> {
        self.endpoints.get(id.index()).map(|e| &e.key)
    }

    /// Whether `src` may open a connection to `dst` on `port` of `protocol`: the source's
    /// egress and the destination's ingress must both allow it. Evaluates the policies
    /// directly (no precomputation); unknown ids and port 0 are never allowed.
    pub fn allowed(&self, src: EndpointId, dst: EndpointId, protocol: Protocol, port: u16) -> bool {
        if port == 0 || src.index() >= self.endpoints.len() || dst.index() >= self.endpoints.len() {
            return false;
        }
        if src == dst {
            return true;
        }
        let egress = self.egress_of[src.index()].iter().map(|&p| {
            self.policies[p]
                .egress
                .as_deref()
                .unwrap_or_default()
                .iter()
        });
        let ingress = self.ingress_of[dst.index()].iter().map(|&p| {
            self.policies[p]
                .ingress
                .as_deref()
                .unwrap_or_default()
                .iter()
        });
        let egress_ok = self.egress_of[src.index()].is_empty()
            || egress
                .flatten()
                .any(|rule| self.rule_allows(rule, dst.index(), dst.index(), protocol, port));
        egress_ok
            && (self.ingress_of[dst.index()].is_empty()
                || ingress
                    .flatten()
                    .any(|rule| self.rule_allows(rule, src.index(), dst.index(), protocol, port)))
    }

    /// Like [`Engine::allowed`], saying why: which rules allow the connection on each
    /// side, or which policies isolate the side that denies it. `None` for unknown ids.
    pub fn explain(
        &self,
        src: EndpointId,
        dst: EndpointId,
        protocol: Protocol,
        port: u16,
    ) -> Option<Verdict> {
        let (s, d) = (src.index(), dst.index());
        if s >= self.endpoints.len() || d >= self.endpoints.len() {
            return None;
        }
        if s == d {
            return Some(Verdict {
                allowed: port != 0,
                egress: SideVerdict::SameEndpoint,
                ingress: SideVerdict::SameEndpoint,
            });
        }
        let egress = self.side(PolicyType::Egress, s, d, d, protocol, port);
        let ingress = self.side(PolicyType::Ingress, d, s, d, protocol, port);
        Some(Verdict {
            allowed: port != 0 && egress.allows() && ingress.allows(),
            egress,
            ingress,
        })
    }

    fn side(
        &self,
        direction: PolicyType,
        owner: usize,
        peer: usize,
        dst: usize,
        protocol: Protocol,
        port: u16,
    ) -> SideVerdict {
        if self.endpoints[owner].namespace.is_none() {
            return SideVerdict::External;
        }
        let selecting = match direction {
            PolicyType::Ingress => &self.ingress_of[owner],
            PolicyType::Egress => &self.egress_of[owner],
        };
        if selecting.is_empty() {
            return SideVerdict::NotIsolated;
        }
        let mut rules = Vec::new();
        for &p in selecting {
            let policy = &self.policies[p];
            let list = match direction {
                PolicyType::Ingress => policy.ingress.as_deref(),
                PolicyType::Egress => policy.egress.as_deref(),
            };
            for (index, rule) in list.unwrap_or_default().iter().enumerate() {
                if self.rule_allows(rule, peer, dst, protocol, port) {
                    rules.push(RuleRef {
                        policy: policy.reference.clone(),
                        direction,
                        index,
                    });
                }
            }
        }
        if rules.is_empty() {
            SideVerdict::Denied {
                isolated_by: selecting
                    .iter()
                    .map(|&p| self.policies[p].reference.clone())
                    .collect(),
            }
        } else {
            SideVerdict::Allowed { rules }
        }
    }

    /// Whether `rule` lets `peer` through on `port`, named ports resolving on `dst`.
    fn rule_allows(
        &self,
        rule: &CompiledRule,
        peer: usize,
        dst: usize,
        protocol: Protocol,
        port: u16,
    ) -> bool {
        (rule.peers.is_empty() || rule.peers.iter().any(|p| self.peer_matches(p, peer)))
            && (rule.ports.is_empty()
                || rule
                    .ports
                    .iter()
                    .any(|p| self.port_matches(p, dst, protocol, port)))
    }

    pub(crate) fn peer_matches(&self, peer: &CompiledPeer, endpoint: usize) -> bool {
        let info = &self.endpoints[endpoint];
        match peer {
            CompiledPeer::Select { namespaces, pods } => {
                let Some(ns) = info.namespace else {
                    return false;
                };
                let ns_ok = match namespaces {
                    NamespaceScope::Own(own) => *own == Some(ns),
                    NamespaceScope::Matching(selector) => {
                        selector.matches(&self.namespaces[ns].labels)
                    }
                };
                ns_ok && pods.as_ref().is_none_or(|s| s.matches(&info.labels))
            }
            CompiledPeer::Block { cidr, except } => {
                (info.namespace.is_none() || self.options.ip_block_matches_pods)
                    && info.ips.iter().any(|ip| block_contains(cidr, except, *ip))
            }
        }
    }

    fn port_matches(&self, spec: &CompiledPort, dst: usize, protocol: Protocol, port: u16) -> bool {
        match spec {
            CompiledPort::Range {
                protocol: p,
                start,
                end,
            } => *p == protocol && *start <= port && port <= *end,
            CompiledPort::Named { protocol: p, name } => {
                *p == protocol
                    && self.endpoints[dst]
                        .ports
                        .iter()
                        .any(|n| n.protocol == protocol && n.name == *name && n.port == port)
            }
        }
    }
}

pub(crate) fn block_contains(cidr: &IpNet, except: &[IpNet], ip: IpAddr) -> bool {
    cidr.contains(&ip) && !except.iter().any(|hole| hole.contains(&ip))
}

/// A validated peer, compiled; `None` only for peers validation rejects.
fn compile_peer(peer: &Peer, own: Option<usize>) -> Option<CompiledPeer> {
    if let Some(block) = &peer.ip_block {
        let (cidr, except) = validate::ip_block(block).ok()?;
        return Some(CompiledPeer::Block { cidr, except });
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return None;
    }
    Some(CompiledPeer::Select {
        namespaces: match &peer.namespace_selector {
            Some(selector) => NamespaceScope::Matching(selector.clone()),
            None => NamespaceScope::Own(own),
        },
        pods: peer.pod_selector.clone().filter(|s| !s.is_empty()),
    })
}

fn compile_port(spec: &PortSpec) -> CompiledPort {
    let protocol = spec.protocol.unwrap_or_default();
    match &spec.port {
        None => CompiledPort::Range {
            protocol,
            start: 1,
            end: u16::MAX,
        },
        Some(PortRef::Number(port)) => CompiledPort::Range {
            protocol,
            start: *port,
            end: spec.end_port.unwrap_or(*port),
        },
        Some(PortRef::Name(name)) => CompiledPort::Named {
            protocol,
            name: name.clone(),
        },
    }
}
