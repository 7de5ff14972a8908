//! Reachability of a manifest directory: which workload may open a connection to which,
//! on which ports, by the policy engine ([`bulkhead_policy::Engine`]) — and every
//! cross-tenant path the spec does not allow, as a [`Finding`] `BH-K8S-019`.
//!
//! # What is read
//!
//! - **Namespaces**: `Namespace` objects with their labels. A namespace that objects
//!   live in but that has no `Namespace` object is implied, with no labels (besides
//!   `kubernetes.io/metadata.name`, which every namespace has).
//! - **Workloads**: Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
//!   ReplicationControllers, Jobs and CronJobs. A workload with replicas is **one
//!   endpoint**: its pods share the template's labels, so policies cannot tell them apart.
//!   Its named ports are the containers' named `ports`. A Pod or ReplicaSet whose
//!   controlling owner (`ownerReferences[controller=true]`) is itself in the input is
//!   skipped, so a cluster dump does not count a Deployment three times. Objects without
//!   `metadata.namespace` are in `default`, as `kubectl apply` would put them.
//! - **NetworkPolicies**: as Kubernetes evaluates them (see the engine's semantics);
//!   invalid ones are an error, not silently evaluated.
//!
//! # ipBlocks and pod addresses
//!
//! Whether an `ipBlock` matches traffic to or from a *pod* whose address is in the
//! block is left to the network plugin by Kubernetes. By default it does **not** here
//! (pod traffic is matched by selectors only; ipBlocks are for addresses outside the
//! cluster), which is what most plugins do for pod-to-pod traffic.
//! [`ReachOptions::ip_block_matches_pods`] takes the other convention: a Pod's
//! `status.podIPs` (only bare Pods carry addresses in manifests) then match ipBlocks.
//!
//! # Cross-tenant paths
//!
//! A **tenant namespace** is any namespace but `default`, `kube-*` and the platform's
//! ([`crate::audit::SYSTEM_NAMESPACES`]). When some workload of tenant `A` may reach some
//! workload of tenant `B ≠ A` on ports the spec does not allow between `A` and `B`,
//! that is one finding per `(A, B)` naming the extra ports and one example pair. The
//! allowed ports come from [`ReachOptions::allowed`]: the spec's
//! [`TenantMatrix`] ([`bulkhead_policy::tenancy::tenant_matrix`]), or nothing (every
//! cross-tenant path is a finding) without a spec.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use bulkhead_policy::tenancy::{TenantMatrix, diff_tenants};
use bulkhead_policy::{
    Cluster, EndpointId, Engine, EngineOptions, GroupKey, NamedPort, Namespace, NetworkPolicy, Pod,
    PortSet, Protocol,
};
use serde::Serialize;
use serde_json::Value;

use crate::audit::{Finding, Manifest, ObjectRef, Severity, is_tenant_namespace};

/// The finding ID of a cross-tenant path.
pub const CROSS_TENANT: &str = "BH-K8S-019";

/// The kinds read as workloads, with the pointer to their pod template.
const WORKLOAD_KINDS: [(&str, &str); 8] = [
    ("Pod", ""),
    ("Deployment", "/spec/template"),
    ("StatefulSet", "/spec/template"),
    ("DaemonSet", "/spec/template"),
    ("ReplicaSet", "/spec/template"),
    ("ReplicationController", "/spec/template"),
    ("Job", "/spec/template"),
    ("CronJob", "/spec/jobTemplate/spec/template"),
];

/// What the caller decides about a reachability analysis.
#[derive(Clone, Debug, Default)]
pub struct ReachOptions {
    /// Whether ipBlocks match pod addresses (default: no; see the module docs).
    pub ip_block_matches_pods: bool,
    /// The tenant-level connections the spec allows; `None`: none.
    pub allowed: Option<TenantMatrix>,
}

/// One endpoint: a workload (all its replicas) in its namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct WorkloadRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its kind, e.g. `Deployment`.
    pub kind: String,
}

impl fmt::Display for WorkloadRef {
    /// `ns/name[Kind]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}[{}]", self.namespace, self.name, self.kind)
    }
}

/// `workloads[src]` may open connections to `workloads[dst]` on `ports` (indices into
/// [`ReachReport::workloads`]; [`ReachReport::lines`] resolves them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConnection {
    /// The client.
    pub src: usize,
    /// The server.
    pub dst: usize,
    /// The ports, never empty.
    pub ports: PortSet,
}

/// A [`WorkloadConnection`] with its workloads resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionView<'a> {
    /// The client.
    pub src: &'a WorkloadRef,
    /// The server.
    pub dst: &'a WorkloadRef,
    /// The ports, never empty.
    pub ports: &'a PortSet,
}

impl fmt::Display for ConnectionView<'_> {
    /// `ns/web[Deployment] => ns/db[StatefulSet] : TCP 5432`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} => {} : {}",
            self.src,
            self.dst,
            compact_ports(self.ports)
        )
    }
}

/// Some workload of namespace `src` may reach some other workload of `dst` on `ports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NamespaceConnection {
    /// The client namespace.
    pub src: String,
    /// The server namespace.
    pub dst: String,
    /// The ports, never empty.
    pub ports: PortSet,
}

/// The result of [`reach`]. Serializes with connections resolved to workloads.
#[derive(Clone, Debug)]
pub struct ReachReport {
    /// Whether ipBlocks matched pod addresses in this analysis.
    pub ip_block_matches_pods: bool,
    /// Every endpoint, sorted.
    pub workloads: Vec<WorkloadRef>,
    /// Every allowed connection between two different endpoints, sorted.
    pub connections: Vec<WorkloadConnection>,
    /// The namespace matrix: every namespace pair with a connection, sorted.
    pub namespaces: Vec<NamespaceConnection>,
    /// Cross-tenant paths the spec does not allow ([`CROSS_TENANT`]).
    pub findings: Vec<Finding>,
}

impl ReachReport {
    /// Resolves one connection.
    pub fn view<'a>(&'a self, c: &'a WorkloadConnection) -> ConnectionView<'a> {
        ConnectionView {
            src: &self.workloads[c.src],
            dst: &self.workloads[c.dst],
            ports: &c.ports,
        }
    }

    /// Every connection, resolved, in order.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = ConnectionView<'_>> {
        self.connections.iter().map(|c| self.view(c))
    }
}

impl Serialize for ReachReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct View<'a> {
            ip_block_matches_pods: bool,
            workloads: &'a [WorkloadRef],
            connections: Vec<ConnectionView<'a>>,
            namespaces: &'a [NamespaceConnection],
            findings: &'a [Finding],
        }
        View {
            ip_block_matches_pods: self.ip_block_matches_pods,
            workloads: &self.workloads,
            connections: self.lines().collect(),
            namespaces: &self.namespaces,
            findings: &self.findings,
        }
        .serialize(serializer)
    }
}

/// Why a directory could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// A NetworkPolicy does not have the shape of one.
    #[error("{file}: NetworkPolicy {namespace}/{name}: {message}")]
    Policy {
        /// The file.
        file: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What the decoder said.
        message: String,
    },
    /// The objects are not a valid cluster (an invalid policy, a duplicate object…).
    #[error("the manifests are not a valid cluster: {0}")]
    Engine(#[from] bulkhead_policy::BuildEngineError),
}

/// The engine's input read from manifests, with the workload behind each pod.
#[derive(Clone, Debug, Default)]
pub struct ClusterInput {
    /// Namespaces, pods (one per workload) and policies.
    pub cluster: Cluster,
    /// Per pod of `cluster.pods` (same index), the workload it stands for.
    pub workloads: Vec<WorkloadRef>,
    /// Per namespace, the file its `Namespace` object came from (implied: none).
    pub namespace_files: BTreeMap<String, String>,
}

/// Reads namespaces, workloads and NetworkPolicies from `manifests`.
pub fn cluster_input(manifests: &[Manifest]) -> Result<ClusterInput, ReachError> {
    let mut input = ClusterInput::default();
    let mut declared: BTreeMap<String, Namespace> = BTreeMap::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    // (kind, namespace, name) of every workload, to skip what a controller in the input
    // already stands for.
    let present: BTreeSet<(&str, &str, &str)> = manifests
        .iter()
        .filter(|m| WORKLOAD_KINDS.iter().any(|(k, _)| *k == m.kind()))
        .map(|m| {
            (
                m.kind(),
                namespace_of(m),
                m.str("/metadata/name").unwrap_or_default(),
            )
        })
        .collect();

    for m in manifests {
        let kind = m.kind();
        if kind == "Namespace" {
            let Some(name) = m.str("/metadata/name") else {
                continue;
            };
            let mut namespace = Namespace::new(name);
            namespace.labels = string_map(m.value.pointer("/metadata/labels"));
            input
                .namespace_files
                .insert(name.to_owned(), m.file.clone());
            declared.entry(name.to_owned()).or_insert(namespace);
        } else if kind == "NetworkPolicy" {
            let namespace = namespace_of(m);
            used.insert(namespace.to_owned());
            input.cluster.policies.push(network_policy(m, namespace)?);
        } else if let Some((_, template)) = WORKLOAD_KINDS.iter().find(|(k, _)| *k == kind) {
            let namespace = namespace_of(m);
            let name = m.str("/metadata/name").unwrap_or_default();
            if owned_by_present(m, namespace, &present) {
                continue;
            }
            let Some(template) = m.value.pointer(template) else {
                continue;
            };
            used.insert(namespace.to_owned());
            let workload = WorkloadRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                kind: kind.to_owned(),
            };
            input.cluster.pods.push(pod(&workload, template, &m.value));
            input.workloads.push(workload);
        }
    }
    for name in used {
        declared
            .entry(name.clone())
            .or_insert_with(|| Namespace::new(name));
    }
    input.cluster.namespaces = declared.into_values().collect();
    Ok(input)
}

fn namespace_of(m: &Manifest) -> &str {
    m.namespace().unwrap_or("default")
}

fn owned_by_present(m: &Manifest, namespace: &str, present: &BTreeSet<(&str, &str, &str)>) -> bool {
    m.value
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .any(|o| {
            let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
            let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
            present.contains(&(kind, namespace, name))
        })
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Bool(_) | Value::Number(_) => v.to_string(),
                _ => return None,
            };
            Some((k.clone(), text))
        })
        .collect()
}

/// The engine pod for a workload: template labels, containers' named ports, and (bare
/// Pods only) the addresses in `status`.
fn pod(workload: &WorkloadRef, template: &Value, object: &Value) -> Pod {
    let mut pod = Pod::new(
        &workload.namespace,
        format!("{}/{}", workload.kind, workload.name),
    );
    pod.labels = string_map(template.pointer("/metadata/labels"));
    let containers = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let mut seen = BTreeSet::new();
    for port in containers
        .flat_map(|c| c.get("ports").and_then(Value::as_array))
        .flatten()
    {
        let (Some(name), Some(number)) = (
            port.get("name").and_then(Value::as_str),
            port.get("containerPort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok()),
        ) else {
            continue;
        };
        let protocol = match port.get("protocol").and_then(Value::as_str) {
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        if seen.insert((name.to_owned(), protocol)) {
            pod.ports.push(NamedPort {
                name: name.to_owned(),
                port: number,
                protocol,
            });
        }
    }
    if workload.kind == "Pod" {
        let mut ips: Vec<IpAddr> = object
            .pointer("/status/podIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("ip").and_then(Value::as_str))
            .chain(object.pointer("/status/podIP").and_then(Value::as_str))
            .filter_map(|ip| ip.parse().ok())
            .collect();
        ips.sort();
        ips.dedup();
        pod.ips = ips;
    }
    pod
}

/// Drops `null`s from objects (YAML `from:` with nothing after it), so serde defaults
/// apply as Kubernetes' own decoder would.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn network_policy(m: &Manifest, namespace: &str) -> Result<NetworkPolicy, ReachError> {
    let name = m.str("/metadata/name").unwrap_or_default();
    let mut flat = serde_json::Map::new();
    flat.insert("namespace".to_owned(), Value::from(namespace));
    flat.insert("name".to_owned(), Value::from(name));
    if let Some(spec) = m.value.get("spec").and_then(Value::as_object) {
        for key in ["podSelector", "policyTypes", "ingress", "egress"] {
            if let Some(v) = spec.get(key) {
                flat.insert(key.to_owned(), v.clone());
            }
        }
    }
    let mut flat = Value::Object(flat);
    strip_nulls(&mut flat);
    serde_json::from_value(flat).map_err(|error| ReachError::Policy {
        file: m.file.clone(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        message: error.to_string(),
    })
}

/// Evaluates the manifests: every allowed connection, the namespace matrix and the
/// cross-tenant findings.
pub fn reach(manifests: &[Manifest], options: &ReachOptions) -> Result<ReachReport, ReachError> {
    let input = cluster_input(manifests)?;
    reach_input(&input, options)
}

/// [`reach`] on an already read [`ClusterInput`].
pub fn reach_input(
    input: &ClusterInput,
    options: &ReachOptions,
) -> Result<ReachReport, ReachError> {
    let engine = Engine::new(
        &input.cluster,
        EngineOptions::default().ip_block_matches_pods(options.ip_block_matches_pods),
    )?;
    // Workloads sorted once; per endpoint, its workload's rank in that order. The
    // engine keeps pods of a namespace in input order, so match them up by key once.
    let mut order: Vec<usize> = (0..input.workloads.len()).collect();
    order.sort_by(|&a, &b| input.workloads[a].cmp(&input.workloads[b]));
    let mut rank = vec![0; input.workloads.len()];
    for (position, &index) in order.iter().enumerate() {
        rank[index] = position;
    }
    let workloads: Vec<WorkloadRef> = order.iter().map(|&i| input.workloads[i].clone()).collect();
    let by_pod: HashMap<(&str, &str), usize> = input
        .cluster
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.namespace.as_str(), p.name.as_str()), rank[i]))
        .collect();
    let rank_of: Vec<Option<usize>> = engine
        .endpoints()
        .map(|key| match key {
            bulkhead_policy::EndpointKey::Pod { namespace, name } => {
                by_pod.get(&(namespace.as_str(), name.as_str())).copied()
            }
            bulkhead_policy::EndpointKey::External { .. } => None,
        })
        .collect();
    let matrix = engine.matrix();

    let mut connections = Vec::new();
    for src in (0..engine.pod_count()).map(|i| EndpointId(i as u32)) {
        let Some(from) = rank_of[src.index()] else {
            continue;
        };
        for (dst, ports) in matrix.connections_from(src) {
            if let Some(to) = rank_of[dst.index()] {
                connections.push(WorkloadConnection {
                    src: from,
                    dst: to,
                    ports,
                });
            }
        }
    }
    connections.sort_unstable_by_key(|c| (c.src, c.dst));

    let namespace_matrix = matrix.namespace_matrix();
    let observed = TenantMatrix::from_namespace_matrix(&namespace_matrix);
    let namespaces: Vec<NamespaceConnection> = observed
        .connections()
        .iter()
        .filter_map(|c| match (&c.src, &c.dst) {
            (GroupKey::Namespace { name: src }, GroupKey::Namespace { name: dst }) => {
                Some(NamespaceConnection {
                    src: src.clone(),
                    dst: dst.clone(),
                    ports: c.ports.clone(),
                })
            }
            _ => None,
        })
        .collect();

    let allowed = options.allowed.clone().unwrap_or_default();
    let extra: Vec<(String, String, PortSet)> = diff_tenants(&allowed, &observed)
        .added
        .into_iter()
        .filter_map(|c| match (c.src, c.dst) {
            (GroupKey::Namespace { name: src }, GroupKey::Namespace { name: dst })
                if src != dst && is_tenant_namespace(&src) && is_tenant_namespace(&dst) =>
            {
                Some((src, dst, c.ports))
            }
            _ => None,
        })
        .collect();
    // One example workload pair per finding, found in one pass.
    let mut examples: HashMap<(&str, &str), Option<&WorkloadConnection>> = extra
        .iter()
        .map(|(src, dst, _)| ((src.as_str(), dst.as_str()), None))
        .collect();
    let wanted: HashMap<(&str, &str), &PortSet> = extra
        .iter()
        .map(|(src, dst, ports)| ((src.as_str(), dst.as_str()), ports))
        .collect();
    for w in &connections {
        let pair = (
            workloads[w.src].namespace.as_str(),
            workloads[w.dst].namespace.as_str(),
        );
        if let Some(slot @ None) = examples.get_mut(&pair)
            && wanted
                .get(&pair)
                .is_some_and(|ports| w.ports.ranges().iter().any(|r| overlaps(ports, r)))
        {
            *slot = Some(w);
        }
    }
    let spec = if options.allowed.is_some() {
        "the spec does not allow it"
    } else {
        "no spec given allows it"
    };
    let mut findings = Vec::new();
    for (src, dst, ports) in &extra {
        let example = examples
            .get(&(src.as_str(), dst.as_str()))
            .copied()
            .flatten()
            .map(|w| format!(", e.g. {} => {}", workloads[w.src], workloads[w.dst]))
            .unwrap_or_default();
        findings.push(Finding {
            id: CROSS_TENANT,
            severity: Severity::High,
            object: ObjectRef {
                file: input.namespace_files.get(src).cloned().unwrap_or_default(),
                kind: "Namespace".to_owned(),
                namespace: Some(src.clone()),
                name: src.clone(),
            },
            message: format!(
                "tenant {src} reaches tenant {dst} on {} ({spec}){example}",
                compact_ports(ports)
            ),
            remediation: "narrow the NetworkPolicies (ingress of the destination or egress of the source) to the ports and peers the spec allows, or allow the path in the spec",
        });
    }
    findings.sort_by(|a, b| (&a.object, &a.message).cmp(&(&b.object, &b.message)));

    Ok(ReachReport {
        ip_block_matches_pods: options.ip_block_matches_pods,
        workloads,
        connections,
        namespaces,
        findings,
    })
}

fn overlaps(set: &PortSet, range: &bulkhead_policy::PortRange) -> bool {
    set.ranges()
        .iter()
        .any(|r| r.protocol == range.protocol && r.start <= range.end && range.start <= r.end)
}

/// Ports grouped by protocol: `TCP 80,443,8000-8080; UDP 53`; `TCP any` for all of one.
pub fn compact_ports(ports: &PortSet) -> String {
    let mut by_protocol: Vec<(Protocol, Vec<String>)> = Vec::new();
    for range in ports.ranges() {
        let text = if range.start == 1 && range.end == u16::MAX {
            "any".to_owned()
        } else if range.start == range.end {
            range.start.to_string()
        } else {
            format!("{}-{}", range.start, range.end)
        };
        match by_protocol.last_mut() {
            Some((p, list)) if *p == range.protocol => list.push(text),
            _ => by_protocol.push((range.protocol, vec![text])),
        }
    }
    if by_protocol.is_empty() {
        return "none".to_owned();
    }
    by_protocol
        .into_iter()
        .map(|(p, list)| format!("{p} {}", list.join(",")))
        .collect::<Vec<_>>()
        .join("; ")
}
