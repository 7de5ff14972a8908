//! From spanned YAML nodes to model objects, one document at a time.
//!
//! Decoding collects every error it finds instead of stopping at the first: a field that
//! fails is reported and skipped, its siblings are still checked. Each field's position is
//! recorded in the object's [`Spans`], so later cross-object checks (`validate`) can point
//! at the right line too.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::defaults;
use crate::diag::{Diagnostic, Diagnostics, Pos, did_you_mean};
use crate::model::*;
use crate::names::{check_label_key, check_label_value, check_name, check_tenant_name};
use crate::net::{CidrBlock, PortSpec, Protocol, is_port_name, parse_cidr};
use crate::quantity::{Bandwidth, Bytes, Cpu, QuantityError};
use crate::source::{Node, NodeKind};

/// Where each field of one object was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spans {
    /// Start of the document.
    pub document: Option<Pos>,
    /// Field path → position of its value.
    pub fields: BTreeMap<String, Pos>,
}

impl Spans {
    /// The position of a field, else of its nearest written parent, else of the document.
    pub fn at(&self, path: &str) -> Pos {
        let mut probe = path;
        loop {
            if let Some(pos) = self.fields.get(probe) {
                return pos.clone();
            }
            match probe.rfind(['.', '[']) {
                Some(index) => probe = &probe[..index],
                None => break,
            }
        }
        self.document
            .clone()
            .unwrap_or_else(|| Pos::file(&std::sync::Arc::from("<unknown>")))
    }
}

/// A workload as written: resources may be partly missing until its tenant is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialWorkload {
    /// Name, tenant, labels.
    pub metadata: WorkloadMetadata,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Container image on Kubernetes.
    pub image: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Listening ports.
    pub ports: Vec<WorkloadPort>,
    /// Resources as written.
    pub resources: PartialResources,
    /// Restart policy as written.
    pub restart: Option<RestartPolicy>,
}

/// Resources as written, before defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartialResources {
    /// CPU cap.
    pub cpu: Option<Cpu>,
    /// Memory limit.
    pub memory: Option<Bytes>,
    /// Process ceiling.
    pub pids: Option<u32>,
}

/// One decoded document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// A tenant.
    Tenant(Tenant),
    /// A workload, before defaults.
    Workload(PartialWorkload),
    /// The platform.
    Platform(Platform),
}

/// A decoded document with the positions of its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The object.
    pub object: Object,
    /// Where its fields were written.
    pub spans: Spans,
}

struct Cx<'d> {
    diagnostics: &'d mut Diagnostics,
    spans: Spans,
    errors: usize,
}

impl Cx<'_> {
    fn error(&mut self, pos: &Pos, path: &str, message: impl Into<String>) {
        self.errors += 1;
        self.diagnostics
            .push(Diagnostic::new(pos.clone(), path, message));
    }

    fn record(&mut self, path: &str, pos: &Pos) {
        self.spans.fields.insert(path.to_owned(), pos.clone());
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The entries of a mapping, with unknown-key detection.
struct Fields<'n> {
    path: String,
    pos: Pos,
    entries: Vec<(String, &'n Node, &'n Node)>,
    used: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    fn new(cx: &mut Cx<'_>, node: &'n Node, path: &str) -> Option<Fields<'n>> {
        let entries = match &node.kind {
            NodeKind::Null => Vec::new(),
            NodeKind::Map(entries) => {
                let mut out = Vec::new();
                for (key, value) in entries {
                    match &key.kind {
                        NodeKind::Str(text) => out.push((text.clone(), key, value)),
                        other => cx.error(
                            &key.pos,
                            path,
                            format!("mapping key is {} (expected a string)", other.describe()),
                        ),
                    }
                }
                out
            }
            other => {
                cx.error(
                    &node.pos,
                    path,
                    format!("found {} (expected a mapping)", other.describe()),
                );
                return None;
            }
        };
        cx.record(path, &node.pos);
        Some(Fields {
            path: path.to_owned(),
            pos: node.pos.clone(),
            used: vec![false; entries.len()],
            entries,
            known: Vec::new(),
        })
    }

    /// The value of `key` and its path, if present and not null.
    fn get(&mut self, cx: &mut Cx<'_>, key: &'static str) -> Option<(&'n Node, String)> {
        self.known.push(key);
        let index = self.entries.iter().position(|(k, _, _)| k == key)?;
        self.used[index] = true;
        let (_, _, value) = self.entries[index];
        if matches!(value.kind, NodeKind::Null) {
            return None;
        }
        let path = join(&self.path, key);
        cx.record(&path, &value.pos);
        Some((value, path))
    }

    /// Like [`Fields::get`], but reports a missing field.
    fn require(
        &mut self,
        cx: &mut Cx<'_>,
        key: &'static str,
        expected: &str,
    ) -> Option<(&'n Node, String)> {
        let found = self.get(cx, key);
        if found.is_none() {
            let pos = self.pos.clone();
            cx.error(
                &pos,
                &join(&self.path, key),
                format!("missing required field (expected {expected})"),
            );
        }
        found
    }

    fn finish(self, cx: &mut Cx<'_>) {
        for ((key, key_node, _), used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let hint = match did_you_mean(key, &self.known) {
                Some(suggestion) => format!("; did you mean {suggestion:?}?"),
                None => String::new(),
            };
            let known = if self.known.is_empty() {
                "no fields here".to_owned()
            } else {
                self.known.join(", ")
            };
            cx.error(
                &key_node.pos,
                &join(&self.path, key),
                format!("unknown field {key:?} (expected one of: {known}){hint}"),
            );
        }
    }
}

fn string(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<String> {
    match &node.kind {
        NodeKind::Str(text) => Some(text.clone()),
        other => {
            cx.error(
                &node.pos,
                path,
                format!("found {} (expected a string)", other.describe()),
            );
            None
        }
    }
}

/// A scalar as text: strings as they are, numbers and booleans spelled out (env values).
fn scalar_text(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<String> {
    match &node.kind {
        NodeKind::Str(text) => Some(text.clone()),
        NodeKind::Int(v) => Some(v.to_string()),
        NodeKind::Float(v) => Some(v.to_string()),
        NodeKind::Bool(v) => Some(v.to_string()),
        other => {
            cx.error(
                &node.pos,
                path,
                format!("found {} (expected a string)", other.describe()),
            );
            None
        }
    }
}

fn boolean(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<bool> {
    match &node.kind {
        NodeKind::Bool(v) => Some(*v),
        other => {
            cx.error(
                &node.pos,
                path,
                format!("found {} (expected true or false)", other.describe()),
            );
            None
        }
    }
}

fn integer(cx: &mut Cx<'_>, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
    let value = match &node.kind {
        NodeKind::Int(v) => Some(*v),
        NodeKind::Str(text) => text.trim().parse::<i128>().ok(),
        _ => None,
    };
    match value {
        Some(v) if v >= i128::from(min) && v <= i128::from(max) => u64::try_from(v).ok(),
        Some(v) => {
            cx.error(
                &node.pos,
                path,
                format!("{v} is out of range (expected {min}-{max})"),
            );
            None
        }
        None => {
            cx.error(
                &node.pos,
                path,
                format!(
                    "found {} (expected an integer {min}-{max})",
                    node.kind.describe()
                ),
            );
            None
        }
    }
}

fn u32_in(cx: &mut Cx<'_>, node: &Node, path: &str, min: u32, max: u32) -> Option<u32> {
    integer(cx, node, path, min.into(), max.into()).and_then(|v| u32::try_from(v).ok())
}

fn quantity<T>(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
    parse: fn(&str) -> Result<T, QuantityError>,
) -> Option<T> {
    let text = match &node.kind {
        NodeKind::Str(text) => text.clone(),
        NodeKind::Int(v) => v.to_string(),
        NodeKind::Float(v) if v.is_finite() => v.to_string(),
        other => {
            cx.error(
                &node.pos,
                path,
                format!("found {} (expected a quantity string)", other.describe()),
            );
            return None;
        }
    };
    match parse(&text) {
        Ok(value) => Some(value),
        Err(error) => {
            cx.error(&node.pos, path, error.to_string());
            None
        }
    }
}

fn list<'n, T>(
    cx: &mut Cx<'_>,
    node: &'n Node,
    path: &str,
    mut item: impl FnMut(&mut Cx<'_>, &'n Node, &str) -> Option<T>,
) -> Vec<T> {
    match &node.kind {
        NodeKind::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(index, element)| {
                let item_path = format!("{path}[{index}]");
                cx.record(&item_path, &element.pos);
                item(cx, element, &item_path)
            })
            .collect(),
        other => {
            cx.error(
                &node.pos,
                path,
                format!("found {} (expected a list)", other.describe()),
            );
            Vec::new()
        }
    }
}

fn dns_name(cx: &mut Cx<'_>, node: &Node, path: &str, tenant: bool) -> Option<Name> {
    let text = string(cx, node, path)?;
    let check = if tenant {
        check_tenant_name(&text)
    } else {
        check_name(&text)
    };
    match check {
        Ok(()) => Some(Name::new_unchecked(text)),
        Err(message) => {
            cx.error(&node.pos, path, message);
            None
        }
    }
}

fn enumeration<T: Copy>(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
    choices: &[(&'static str, T)],
) -> Option<T> {
    let text = string(cx, node, path)?;
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
        return Some(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let hint = did_you_mean(&text, &names)
        .map(|s| format!("; did you mean {s:?}?"))
        .unwrap_or_default();
    cx.error(
        &node.pos,
        path,
        format!(
            "unknown value {text:?} (expected one of: {}){hint}",
            names.join(", ")
        ),
    );
    None
}

fn labels(cx: &mut Cx<'_>, node: &Node, path: &str) -> Labels {
    let mut out = Labels::new();
    let Some(mut fields) = Fields::new(cx, node, path) else {
        return out;
    };
    for (key, key_node, value) in std::mem::take(&mut fields.entries) {
        let entry_path = join(path, &key);
        cx.record(&entry_path, &value.pos);
        if let Err(message) = check_label_key(&key) {
            cx.error(&key_node.pos, &entry_path, message);
            continue;
        }
        let Some(text) = scalar_text(cx, value, &entry_path) else {
            continue;
        };
        if let Err(message) = check_label_value(&text) {
            cx.error(&value.pos, &entry_path, message);
            continue;
        }
        out.insert(key, text);
    }
    out
}

fn string_map(cx: &mut Cx<'_>, node: &Node, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(mut fields) = Fields::new(cx, node, path) else {
        return out;
    };
    for (key, _, value) in std::mem::take(&mut fields.entries) {
        let entry_path = join(path, &key);
        cx.record(&entry_path, &value.pos);
        if let Some(text) = scalar_text(cx, value, &entry_path) {
            out.insert(key, text);
        }
    }
    out
}

fn metadata(cx: &mut Cx<'_>, node: &Node, tenant_name: bool) -> Option<Metadata> {
    let mut fields = Fields::new(cx, node, "metadata")?;
    let name_node = fields.require(cx, "name", "a DNS-1123 label");
    let name = name_node.and_then(|(n, p)| dns_name(cx, n, &p, tenant_name));
    let labels = fields
        .get(cx, "labels")
        .map(|(n, p)| labels(cx, n, &p))
        .unwrap_or_default();
    let annotations = fields
        .get(cx, "annotations")
        .map(|(n, p)| string_map(cx, n, &p))
        .unwrap_or_default();
    fields.finish(cx);
    Some(Metadata {
        name: name?,
        labels,
        annotations,
    })
}

fn workload_metadata(cx: &mut Cx<'_>, node: &Node) -> Option<WorkloadMetadata> {
    let mut fields = Fields::new(cx, node, "metadata")?;
    let name = fields
        .require(cx, "name", "a DNS-1123 label")
        .and_then(|(n, p)| dns_name(cx, n, &p, false));
    let tenant = fields
        .require(
            cx,
            "tenant",
            "the name of the tenant this workload belongs to",
        )
        .and_then(|(n, p)| dns_name(cx, n, &p, false));
    let labels = fields
        .get(cx, "labels")
        .map(|(n, p)| labels(cx, n, &p))
        .unwrap_or_default();
    let annotations = fields
        .get(cx, "annotations")
        .map(|(n, p)| string_map(cx, n, &p))
        .unwrap_or_default();
    fields.finish(cx);
    Some(WorkloadMetadata {
        name: name?,
        tenant: tenant?,
        labels,
        annotations,
    })
}

fn selector(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<LabelSelector> {
    let mut fields = Fields::new(cx, node, path)?;
    let match_labels = fields
        .get(cx, "matchLabels")
        .map(|(n, p)| labels(cx, n, &p))
        .unwrap_or_default();
    let match_expressions = fields
        .get(cx, "matchExpressions")
        .map(|(n, p)| list(cx, n, &p, requirement))
        .unwrap_or_default();
    fields.finish(cx);
    Some(LabelSelector {
        match_labels,
        match_expressions,
    })
}

fn requirement(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<LabelRequirement> {
    let mut fields = Fields::new(cx, node, path)?;
    let key = fields.require(cx, "key", "a label key").and_then(|(n, p)| {
        let key = string(cx, n, &p)?;
        match check_label_key(&key) {
            Ok(()) => Some(key),
            Err(message) => {
                cx.error(&n.pos, &p, message);
                None
            }
        }
    });
    let operator = fields
        .require(cx, "operator", "In, NotIn, Exists or DoesNotExist")
        .and_then(|(n, p)| {
            enumeration(
                cx,
                n,
                &p,
                &[
                    ("In", SelectorOperator::In),
                    ("NotIn", SelectorOperator::NotIn),
                    ("Exists", SelectorOperator::Exists),
                    ("DoesNotExist", SelectorOperator::DoesNotExist),
                ],
            )
        });
    let values_node = fields.get(cx, "values");
    let values = values_node
        .as_ref()
        .map(|(n, p)| list(cx, n, p, scalar_text))
        .unwrap_or_default();
    fields.finish(cx);
    let operator = operator?;
    let needs_values = matches!(operator, SelectorOperator::In | SelectorOperator::NotIn);
    if needs_values && values.is_empty() {
        cx.error(
            &node.pos,
            &join(path, "values"),
            "In and NotIn need at least one value (expected a non-empty list)",
        );
    } else if !needs_values && !values.is_empty() {
        let pos = values_node.map_or_else(|| node.pos.clone(), |(n, _)| n.pos.clone());
        cx.error(
            &pos,
            &join(path, "values"),
            "Exists and DoesNotExist take no values (expected no values field)",
        );
    }
    Some(LabelRequirement {
        key: key?,
        operator,
        values,
    })
}

fn port_spec(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<PortSpec> {
    let text = match &node.kind {
        NodeKind::Str(text) => text.clone(),
        NodeKind::Int(v) => v.to_string(),
        other => {
            cx.error(
                &node.pos,
                path,
                format!(
                    "found {} (expected a port spec like 443/tcp)",
                    other.describe()
                ),
            );
            return None;
        }
    };
    match PortSpec::parse(&text) {
        Ok(spec) => Some(spec),
        Err(error) => {
            cx.error(&node.pos, path, error.to_string());
            None
        }
    }
}

fn cidr(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<ipnet::IpNet> {
    let text = string(cx, node, path)?;
    match parse_cidr(&text) {
        Ok(net) => Some(net),
        Err(message) => {
            cx.error(&node.pos, path, message);
            None
        }
    }
}

fn ip_address(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<IpAddr> {
    let text = string(cx, node, path)?;
    match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            cx.error(
                &node.pos,
                path,
                format!("{text:?} is not an IP address (expected e.g. 10.240.0.1)"),
            );
            None
        }
    }
}

fn cidr_block(cx: &mut Cx<'_>, fields: &mut Fields<'_>, path: &str) -> Option<CidrBlock> {
    let net = fields.get(cx, "cidr").and_then(|(n, p)| cidr(cx, n, &p));
    let except = fields
        .get(cx, "except")
        .map(|(n, p)| {
            list(cx, n, &p, |cx, item, item_path| {
                let inner = cidr(cx, item, item_path)?;
                if let Some(outer) = net
                    && (!outer.contains(&inner) || outer == inner) {
                        cx.error(
                            &item.pos,
                            item_path,
                            format!("{inner} is not strictly inside {outer} (expected an exception within the block)"),
                        );
                        return None;
                    }
                Some(inner)
            })
        })
        .unwrap_or_default();
    for (i, a) in except.iter().enumerate() {
        for b in &except[i + 1..] {
            if a.contains(b) || b.contains(a) {
                let pos = cx
                    .spans
                    .fields
                    .get(&join(path, "except"))
                    .cloned()
                    .unwrap_or_else(|| fields.pos.clone());
                cx.error(
                    &pos,
                    &join(path, "except"),
                    format!("{a} and {b} overlap (expected distinct exceptions)"),
                );
            }
        }
    }
    Some(CidrBlock { cidr: net?, except })
}

const PEER_KEYS: &str = "tenant, tenantSelector, cidr, dns or service";

fn peer(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<Peer> {
    let mut fields = Fields::new(cx, node, path)?;
    let present: Vec<&str> = ["tenant", "tenantSelector", "cidr", "dns", "service"]
        .into_iter()
        .filter(|key| fields.entries.iter().any(|(k, _, _)| k == key))
        .collect();
    let peer = match present.as_slice() {
        ["tenant"] => {
            let tenant = fields
                .get(cx, "tenant")
                .and_then(|(n, p)| dns_name(cx, n, &p, false));
            let workload_selector = fields
                .get(cx, "workloadSelector")
                .and_then(|(n, p)| selector(cx, n, &p));
            tenant.map(|tenant| Peer::Tenant {
                tenant,
                workload_selector,
            })
        }
        ["tenantSelector"] => {
            let tenant_selector = fields
                .get(cx, "tenantSelector")
                .and_then(|(n, p)| selector(cx, n, &p));
            let workload_selector = fields
                .get(cx, "workloadSelector")
                .and_then(|(n, p)| selector(cx, n, &p));
            tenant_selector.map(|tenant_selector| Peer::TenantSelector {
                tenant_selector,
                workload_selector,
            })
        }
        ["cidr"] => cidr_block(cx, &mut fields, path).map(Peer::Cidr),
        ["dns"] => {
            let on = fields.get(cx, "dns").and_then(|(n, p)| {
                let v = boolean(cx, n, &p)?;
                if !v {
                    cx.error(
                        &n.pos,
                        &p,
                        "dns: false allows nothing (expected dns: true, or remove the peer)",
                    );
                }
                v.then_some(())
            });
            on.map(|()| Peer::Dns { dns: true })
        }
        ["service"] => fields
            .get(cx, "service")
            .and_then(|(n, p)| dns_name(cx, n, &p, false))
            .map(|service| Peer::Service { service }),
        [] => {
            let keys: Vec<&str> = fields.entries.iter().map(|(k, _, _)| k.as_str()).collect();
            let hint = keys
                .iter()
                .find_map(|k| {
                    did_you_mean(k, &["tenant", "tenantSelector", "cidr", "dns", "service"])
                        .map(|s| format!("; did you mean {s:?} for {k:?}?"))
                })
                .unwrap_or_default();
            cx.error(
                &node.pos,
                path,
                format!("peer names nothing (expected one of {PEER_KEYS}){hint}"),
            );
            return None;
        }
        many => {
            cx.error(
                &node.pos,
                path,
                format!("peer mixes {} (expected exactly one of {PEER_KEYS}; write separate peers to allow several)", many.join(" and ")),
            );
            return None;
        }
    };
    fields.finish(cx);
    peer
}

fn rule_parts(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
    peers_key: &'static str,
) -> Option<(Option<LabelSelector>, Vec<Peer>, Vec<PortSpec>)> {
    let mut fields = Fields::new(cx, node, path)?;
    let workloads = fields
        .get(cx, "workloads")
        .and_then(|(n, p)| selector(cx, n, &p));
    let peers = fields
        .require(cx, peers_key, "a list of peers")
        .map(|(n, p)| {
            let peers = list(cx, n, &p, peer);
            if matches!(&n.kind, NodeKind::Seq(items) if items.is_empty()) {
                cx.error(
                    &n.pos,
                    &p,
                    format!("empty {peers_key} list (expected at least one peer; bulkhead never reads an empty list as \"everyone\")"),
                );
            }
            peers
        })
        .unwrap_or_default();
    let ports = fields
        .get(cx, "ports")
        .map(|(n, p)| list(cx, n, &p, port_spec))
        .unwrap_or_default();
    fields.finish(cx);
    Some((workloads, peers, ports))
}

fn network(cx: &mut Cx<'_>, node: &Node, path: &str) -> TenantNetwork {
    let Some(mut fields) = Fields::new(cx, node, path) else {
        return TenantNetwork::default();
    };
    let same_tenant = fields
        .get(cx, "sameTenant")
        .and_then(|(n, p)| {
            enumeration(
                cx,
                n,
                &p,
                &[("allow", SameTenant::Allow), ("deny", SameTenant::Deny)],
            )
        })
        .unwrap_or_default();
    let ingress = fields
        .get(cx, "ingress")
        .map(|(n, p)| {
            list(cx, n, &p, |cx, item, item_path| {
                let (workloads, from, ports) = rule_parts(cx, item, item_path, "from")?;
                Some(IngressRule {
                    workloads,
                    from,
                    ports,
                })
            })
        })
        .unwrap_or_default();
    let egress = fields
        .get(cx, "egress")
        .map(|(n, p)| {
            list(cx, n, &p, |cx, item, item_path| {
                let (workloads, to, ports) = rule_parts(cx, item, item_path, "to")?;
                Some(EgressRule {
                    workloads,
                    to,
                    ports,
                })
            })
        })
        .unwrap_or_default();
    fields.finish(cx);
    TenantNetwork {
        same_tenant,
        ingress,
        egress,
    }
}

fn partial_resources(cx: &mut Cx<'_>, node: &Node, path: &str) -> PartialResources {
    let Some(mut fields) = Fields::new(cx, node, path) else {
        return PartialResources::default();
    };
    let cpu = fields
        .get(cx, "cpu")
        .and_then(|(n, p)| quantity(cx, n, &p, Cpu::parse));
    let memory = fields
        .get(cx, "memory")
        .and_then(|(n, p)| quantity(cx, n, &p, Bytes::parse));
    let pids = fields
        .get(cx, "pids")
        .and_then(|(n, p)| u32_in(cx, n, &p, 1, 4_194_304));
    fields.finish(cx);
    PartialResources { cpu, memory, pids }
}

fn restart(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<RestartPolicy> {
    enumeration(
        cx,
        node,
        path,
        &[
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure),
            ("never", RestartPolicy::Never),
        ],
    )
}

fn quota(cx: &mut Cx<'_>, node: Option<(&Node, String)>) -> Quota {
    let mut quota = Quota {
        cpu: None,
        cpu_weight: defaults::CPU_WEIGHT,
        memory: defaults::TENANT_MEMORY,
        pids: defaults::TENANT_PIDS,
        storage: defaults::TENANT_STORAGE,
        io: IoLimits::default(),
        egress: None,
        ingress: None,
        workloads: defaults::TENANT_WORKLOADS,
        cpuset: None,
    };
    let Some((node, path)) = node else {
        return quota;
    };
    let Some(mut fields) = Fields::new(cx, node, &path) else {
        return quota;
    };
    quota.cpu = fields
        .get(cx, "cpu")
        .and_then(|(n, p)| quantity(cx, n, &p, Cpu::parse));
    if let Some(v) = fields
        .get(cx, "cpuWeight")
        .and_then(|(n, p)| u32_in(cx, n, &p, 1, 10_000))
    {
        quota.cpu_weight = v;
    }
    if let Some(v) = fields
        .get(cx, "memory")
        .and_then(|(n, p)| quantity(cx, n, &p, Bytes::parse))
    {
        quota.memory = v;
    }
    if let Some(v) = fields
        .get(cx, "pids")
        .and_then(|(n, p)| u32_in(cx, n, &p, 1, 4_194_304))
    {
        quota.pids = v;
    }
    if let Some(v) = fields
        .get(cx, "storage")
        .and_then(|(n, p)| quantity(cx, n, &p, Bytes::parse))
    {
        quota.storage = v;
    }
    if let Some((n, p)) = fields.get(cx, "io")
        && let Some(mut io) = Fields::new(cx, n, &p)
    {
        quota.io.read_bps = io
            .get(cx, "readBps")
            .and_then(|(n, p)| quantity(cx, n, &p, Bytes::parse));
        quota.io.write_bps = io
            .get(cx, "writeBps")
            .and_then(|(n, p)| quantity(cx, n, &p, Bytes::parse));
        quota.io.read_iops = io
            .get(cx, "readIops")
            .and_then(|(n, p)| u32_in(cx, n, &p, 1, 10_000_000));
        quota.io.write_iops = io
            .get(cx, "writeIops")
            .and_then(|(n, p)| u32_in(cx, n, &p, 1, 10_000_000));
        io.finish(cx);
    }
    quota.egress = fields
        .get(cx, "egress")
        .and_then(|(n, p)| quantity(cx, n, &p, Bandwidth::parse));
    quota.ingress = fields
        .get(cx, "ingress")
        .and_then(|(n, p)| quantity(cx, n, &p, Bandwidth::parse));
    if let Some(v) = fields
        .get(cx, "workloads")
        .and_then(|(n, p)| u32_in(cx, n, &p, 0, 10_000))
    {
        quota.workloads = v;
    }
    quota.cpuset = fields.get(cx, "cpuset").and_then(|(n, p)| {
        let text = scalar_text(cx, n, &p)?;
        if parse_cpuset(&text).is_some() {
            Some(text)
        } else {
            cx.error(
                &n.pos,
                &p,
                format!("{text:?} is not a cpu list (expected e.g. 0-1 or 2,4-5)"),
            );
            None
        }
    });
    fields.finish(cx);
    quota
}

/// Parses a cpuset list like `0-1,4`; `None` when malformed.
pub fn parse_cpuset(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let n = part.trim().parse::<u32>().ok()?;
                (n, n)
            }
        };
        if last < first || last > 4095 {
            return None;
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

fn tenant_spec(cx: &mut Cx<'_>, node: Option<(&Node, String)>) -> TenantSpec {
    let mut spec = TenantSpec {
        owners: Vec::new(),
        profile: Profile::default(),
        state: TenantState::default(),
        quota: quota(cx, None),
        defaults: WorkloadDefaults {
            resources: defaults::WORKLOAD_RESOURCES,
            restart: defaults::RESTART,
        },
        network: TenantNetwork::default(),
        storage: Storage {
            encrypted: defaults::ENCRYPTED,
        },
        gitops: None,
    };
    let Some((node, path)) = node else {
        return spec;
    };
    let Some(mut fields) = Fields::new(cx, node, &path) else {
        return spec;
    };
    spec.owners = fields
        .get(cx, "owners")
        .map(|(n, p)| list(cx, n, &p, string))
        .unwrap_or_default();
    if let Some(v) = fields.get(cx, "profile").and_then(|(n, p)| {
        enumeration(
            cx,
            n,
            &p,
            &[
                ("restricted", Profile::Restricted),
                ("baseline", Profile::Baseline),
                ("privileged", Profile::Privileged),
            ],
        )
    }) {
        spec.profile = v;
    }
    if let Some(v) = fields.get(cx, "state").and_then(|(n, p)| {
        enumeration(
            cx,
            n,
            &p,
            &[
                ("active", TenantState::Active),
                ("suspended", TenantState::Suspended),
            ],
        )
    }) {
        spec.state = v;
    }
    let quota_node = fields.get(cx, "quota");
    spec.quota = quota(cx, quota_node);
    if let Some((n, p)) = fields.get(cx, "defaults")
        && let Some(mut d) = Fields::new(cx, n, &p)
    {
        if let Some((rn, rp)) = d.get(cx, "resources") {
            let given = partial_resources(cx, rn, &rp);
            spec.defaults.resources =
                defaults::workload_resources(&given, &defaults::WORKLOAD_RESOURCES);
        }
        if let Some(v) = d.get(cx, "restart").and_then(|(n, p)| restart(cx, n, &p)) {
            spec.defaults.restart = v;
        }
        d.finish(cx);
    }
    if let Some((n, p)) = fields.get(cx, "network") {
        spec.network = network(cx, n, &p);
    }
    if let Some((n, p)) = fields.get(cx, "storage")
        && let Some(mut s) = Fields::new(cx, n, &p)
    {
        if let Some(v) = s.get(cx, "encrypted").and_then(|(n, p)| boolean(cx, n, &p)) {
            spec.storage.encrypted = v;
        }
        s.finish(cx);
    }
    spec.gitops = fields
        .get(cx, "gitops")
        .and_then(|(n, p)| gitops(cx, n, &p));
    fields.finish(cx);
    spec
}

/// A Go duration as Flux takes it: one or more `<digits><unit>`, units ms, s, m, h.
fn is_go_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ms", "s", "m", "h"]
            .into_iter()
            .find(|unit| rest.starts_with(unit));
        match unit {
            Some(unit) => rest = &rest[unit.len()..],
            None => return false,
        }
    }
    true
}

fn gitops(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<GitOps> {
    let mut fields = Fields::new(cx, node, path)?;
    let url = fields
        .require(cx, "url", "an https:// or ssh:// Git URL")
        .and_then(|(n, p)| {
            let text = string(cx, n, &p)?;
            let scheme_ok = text.starts_with("https://") || text.starts_with("ssh://");
            let host_ok = text
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
            // No dot segments: an allow-listed prefix must not be escaped by `/../`.
            let no_dots = !text.split('/').any(|c| c == ".." || c == ".");
            if scheme_ok && host_ok && no_dots && !text.chars().any(char::is_whitespace) {
                Some(text)
            } else {
                cx.error(
                    &n.pos,
                    &p,
                    format!("{text:?} is not a Git URL Flux may pull (expected https://host/repo or ssh://git@host/repo)"),
                );
                None
            }
        });
    let git_ref = fields
        .get(cx, "ref")
        .and_then(|(n, p)| {
            let text = scalar_text(cx, n, &p)?;
            let valid = !text.is_empty()
                && text.len() <= 255
                && !text.starts_with(['-', '/'])
                && !text.contains("..")
                && !text.chars().any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
            if valid {
                Some(text)
            } else {
                cx.error(&n.pos, &p, format!("{text:?} is not a Git branch or reference (expected e.g. main or refs/tags/v1.2.0)"));
                None
            }
        })
        .unwrap_or_else(|| defaults::GITOPS_REF.to_owned());
    let repo_path = fields
        .get(cx, "path")
        .and_then(|(n, p)| {
            let text = string(cx, n, &p)?;
            if !text.is_empty() && !text.starts_with('/') && !text.split('/').any(|c| c == "..") {
                Some(text)
            } else {
                cx.error(
                    &n.pos,
                    &p,
                    format!(
                        "{text:?} is not a relative path without '..' (expected e.g. ./deploy)"
                    ),
                );
                None
            }
        })
        .unwrap_or_else(|| defaults::GITOPS_PATH.to_owned());
    let interval = fields
        .get(cx, "interval")
        .and_then(|(n, p)| {
            let text = scalar_text(cx, n, &p)?;
            if is_go_duration(&text) {
                Some(text)
            } else {
                cx.error(
                    &n.pos,
                    &p,
                    format!("{text:?} is not a duration (expected e.g. 5m, 1h or 1h30m)"),
                );
                None
            }
        })
        .unwrap_or_else(|| defaults::GITOPS_INTERVAL.to_owned());
    fields.finish(cx);
    Some(GitOps {
        url: url?,
        git_ref,
        path: repo_path,
        interval,
    })
}

fn kubernetes(cx: &mut Cx<'_>, node: &Node, path: &str, into: &mut PlatformKubernetes) {
    let Some(mut fields) = Fields::new(cx, node, path) else {
        return;
    };
    if let Some((n, p)) = fields.get(cx, "dnsSelector")
        && let Some(mut dns) = Fields::new(cx, n, &p)
    {
        let namespace = dns
            .require(cx, "namespace", "the DNS resolver's namespace")
            .and_then(|(n, p)| dns_name(cx, n, &p, false));
        let pod_labels = dns
            .require(cx, "podLabels", "the DNS resolver's pod labels")
            .map(|(n, p)| {
                let found = labels(cx, n, &p);
                if found.is_empty() && matches!(&n.kind, NodeKind::Map(entries) if entries.is_empty()) {
                    cx.error(&n.pos, &p, "empty podLabels would select every pod of the namespace (expected at least one label, e.g. k8s-app: kube-dns)");
                }
                found
            });
        dns.finish(cx);
        if let (Some(namespace), Some(pod_labels)) = (namespace, pod_labels)
            && !pod_labels.is_empty()
        {
            into.dns_selector = DnsSelector {
                namespace,
                pod_labels,
            };
        }
    }
    into.flux_source_allow_list = fields
        .get(cx, "fluxSourceAllowList")
        .map(|(n, p)| {
            list(cx, n, &p, |cx, item, item_path| {
                let text = string(cx, item, item_path)?;
                let (scheme, rest) = text.split_once("://").unwrap_or(("", ""));
                // A prefix must name at least a host and end the host, so that
                // `https://github.com/acme` cannot be extended into `…/acme-evil`.
                let host_done = rest.find('/').is_some_and(|slash| slash > 0);
                if matches!(scheme, "https" | "ssh") && host_done && text.ends_with('/') {
                    Some(text)
                } else {
                    cx.error(&item.pos, item_path, format!("{text:?} is not a source prefix (expected an https:// or ssh:// URL ending in '/', e.g. https://github.com/acme/)"));
                    None
                }
            })
        })
        .unwrap_or_default();
    if let Some((n, p)) = fields.get(cx, "podSecurityVersion")
        && let Some(text) = scalar_text(cx, n, &p)
    {
        let pinned = text.strip_prefix("v1.").is_some_and(|minor| {
            !minor.is_empty() && minor.len() <= 3 && minor.bytes().all(|b| b.is_ascii_digit())
        });
        if text == "latest" || pinned {
            into.pod_security_version = text;
        } else {
            cx.error(
                &n.pos,
                &p,
                format!(
                    "{text:?} is not a Pod Security version (expected latest or v1.N, e.g. v1.34)"
                ),
            );
        }
    }
    if let Some(v) = fields.get(cx, "mesh").and_then(|(n, p)| boolean(cx, n, &p)) {
        into.mesh = v;
    }
    fields.finish(cx);
}

/// The Kubernetes settings used when the platform file says nothing about them.
pub fn default_kubernetes() -> PlatformKubernetes {
    PlatformKubernetes {
        dns_selector: DnsSelector {
            namespace: Name::new_unchecked(defaults::DNS_NAMESPACE.to_owned()),
            pod_labels: defaults::DNS_POD_LABELS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        },
        flux_source_allow_list: Vec::new(),
        pod_security_version: defaults::POD_SECURITY_VERSION.to_owned(),
        mesh: false,
    }
}

fn workload_port(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<WorkloadPort> {
    let mut fields = Fields::new(cx, node, path)?;
    let name = fields.get(cx, "name").and_then(|(n, p)| {
        let text = string(cx, n, &p)?;
        if is_port_name(&text) {
            Some(text)
        } else {
            cx.error(&n.pos, &p, format!("{text:?} is not a port name (expected up to 15 lowercase letters, digits and '-', with a letter)"));
            None
        }
    });
    let port = fields
        .require(cx, "port", "a port number 1-65535")
        .and_then(|(n, p)| integer(cx, n, &p, 1, 65535))
        .and_then(|v| u16::try_from(v).ok());
    let protocol = fields
        .get(cx, "protocol")
        .and_then(|(n, p)| {
            let text = string(cx, n, &p)?;
            let protocol = Protocol::parse(&text);
            if protocol.is_none() {
                cx.error(
                    &n.pos,
                    &p,
                    format!("unknown protocol {text:?} (expected tcp, udp or sctp)"),
                );
            }
            protocol
        })
        .unwrap_or(Protocol::Tcp);
    fields.finish(cx);
    Some(WorkloadPort {
        name,
        port: port?,
        protocol,
    })
}

fn workload(
    cx: &mut Cx<'_>,
    metadata: Option<WorkloadMetadata>,
    node: Option<(&Node, String)>,
) -> Option<PartialWorkload> {
    let mut command = Vec::new();
    let mut env = BTreeMap::new();
    let mut workdir = None;
    let mut image = None;
    let mut ports = Vec::new();
    let mut resources = PartialResources::default();
    let mut restart_policy = None;
    if let Some((node, path)) = &node {
        if let Some(mut fields) = Fields::new(cx, node, path) {
            if let Some((n, p)) =
                fields.require(cx, "command", "a list: program path, then arguments")
            {
                command = list(cx, n, &p, scalar_text);
                match command.first() {
                    None => cx.error(
                        &n.pos,
                        &p,
                        "empty command (expected a program path, then arguments)",
                    ),
                    Some(program) if !program.starts_with('/') => cx.error(
                        &n.pos,
                        &format!("{p}[0]"),
                        format!(
                            "{program:?} is not an absolute path (expected e.g. /usr/bin/python3)"
                        ),
                    ),
                    Some(_) => {}
                }
            }
            if let Some((n, p)) = fields.get(cx, "env") {
                env = string_map(cx, n, &p);
                for key in env.keys() {
                    let valid = !key.is_empty()
                        && !key.as_bytes()[0].is_ascii_digit()
                        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        let pos = cx.spans.at(&join(&p, key));
                        cx.error(&pos, &join(&p, key), format!("{key:?} is not an environment variable name (expected letters, digits and '_', not starting with a digit)"));
                    }
                }
            }
            workdir = fields.get(cx, "workdir").and_then(|(n, p)| {
                let text = string(cx, n, &p)?;
                if text.starts_with('/') && !text.split('/').any(|c| c == "..") {
                    Some(text)
                } else {
                    cx.error(
                        &n.pos,
                        &p,
                        format!(
                            "{text:?} is not an absolute path without '..' (expected e.g. /data)"
                        ),
                    );
                    None
                }
            });
            image = fields.get(cx, "image").and_then(|(n, p)| {
                let text = string(cx, n, &p)?;
                if !text.is_empty()
                    && text.len() <= 512
                    && !text.starts_with(['-', '/'])
                    && !text.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    Some(text)
                } else {
                    cx.error(
                        &n.pos,
                        &p,
                        format!("{text:?} is not an image reference (expected e.g. registry.example/app:1.2 or app@sha256:...)"),
                    );
                    None
                }
            });
            if let Some((n, p)) = fields.get(cx, "ports") {
                ports = list(cx, n, &p, workload_port);
            }
            if let Some((n, p)) = fields.get(cx, "resources") {
                resources = partial_resources(cx, n, &p);
            }
            restart_policy = fields
                .get(cx, "restart")
                .and_then(|(n, p)| restart(cx, n, &p));
            fields.finish(cx);
        }
    } else {
        let pos = cx
            .spans
            .document
            .clone()
            .unwrap_or_else(|| Pos::file(&std::sync::Arc::from("<unknown>")));
        cx.error(
            &pos,
            "spec",
            "missing required field (expected the workload's command and resources)",
        );
    }
    Some(PartialWorkload {
        metadata: metadata?,
        command,
        env,
        image,
        workdir,
        ports,
        resources,
        restart: restart_policy,
    })
}

fn platform_spec(cx: &mut Cx<'_>, node: Option<(&Node, String)>) -> PlatformSpec {
    let mut spec = default_platform_spec();
    let Some((node, path)) = node else {
        return spec;
    };
    let Some(mut fields) = Fields::new(cx, node, &path) else {
        return spec;
    };
    if let Some((n, p)) = fields.get(cx, "instance")
        && let Some(text) = string(cx, n, &p)
    {
        let valid = !text.is_empty()
            && text.len() <= 8
            && text.as_bytes()[0].is_ascii_lowercase()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            spec.instance = text;
        } else {
            cx.error(&n.pos, &p, format!("{text:?} is not an instance prefix (expected 1-8 lowercase letters and digits, starting with a letter)"));
        }
    }
    if let Some((n, p)) = fields.get(cx, "network")
        && let Some(mut net) = Fields::new(cx, n, &p)
    {
        if let Some(v) = net
            .get(cx, "tenantRange")
            .and_then(|(n, p)| cidr(cx, n, &p))
        {
            spec.network.tenant_range = v;
        }
        spec.network.dns = net.get(cx, "dns").and_then(|(n, p)| ip_address(cx, n, &p));
        spec.network.upstream_dns = net
            .get(cx, "upstreamDns")
            .map(|(n, p)| list(cx, n, &p, ip_address))
            .unwrap_or_default();
        spec.network.host_ports = net
            .get(cx, "hostPorts")
            .map(|(n, p)| list(cx, n, &p, port_spec))
            .unwrap_or_default();
        if let Some(v) = net
            .get(cx, "allowLinkLocal")
            .and_then(|(n, p)| boolean(cx, n, &p))
        {
            spec.network.allow_link_local = v;
        }
        if let Some(v) = net.get(cx, "nat").and_then(|(n, p)| boolean(cx, n, &p)) {
            spec.network.nat = v;
        }
        if let Some(v) = net
            .get(cx, "connectionsPerTenant")
            .and_then(|(n, p)| u32_in(cx, n, &p, 1, 100_000_000))
        {
            spec.network.connections_per_tenant = v;
        }
        net.finish(cx);
    }
    spec.shared_services = fields
        .get(cx, "sharedServices")
        .map(|(n, p)| list(cx, n, &p, shared_service))
        .unwrap_or_default();
    spec.admins = fields
        .get(cx, "admins")
        .map(|(n, p)| list(cx, n, &p, admin))
        .unwrap_or_default();
    if let Some((n, p)) = fields.get(cx, "keySource")
        && let Some(source) = key_source(cx, n, &p)
    {
        spec.key_source = source;
    }
    spec.allow_degraded = fields
        .get(cx, "allowDegraded")
        .map(|(n, p)| {
            list(cx, n, &p, |cx, n, p| {
                enumeration(
                    cx,
                    n,
                    p,
                    &[
                        ("landlock", DegradableFeature::Landlock),
                        ("encryption", DegradableFeature::Encryption),
                        ("io-limits", DegradableFeature::IoLimits),
                        ("cpuset", DegradableFeature::Cpuset),
                    ],
                )
            })
        })
        .unwrap_or_default();
    if let Some((n, p)) = fields.get(cx, "kubernetes") {
        kubernetes(cx, n, &p, &mut spec.kubernetes);
    }
    if let Some((n, p)) = fields.get(cx, "noisyNeighbours") {
        noisy_neighbours(cx, n, &p, &mut spec.noisy_neighbours);
    }
    fields.finish(cx);
    spec
}

fn noisy_neighbours(cx: &mut Cx<'_>, node: &Node, path: &str, into: &mut NoisyNeighbours) {
    let Some(mut fields) = Fields::new(cx, node, path) else {
        return;
    };
    if let Some(v) = fields
        .get(cx, "tighten")
        .and_then(|(n, p)| boolean(cx, n, &p))
    {
        into.tighten = v;
    }
    fn number(
        cx: &mut Cx<'_>,
        fields: &mut Fields<'_>,
        key: &'static str,
        (min, max): (u64, u64),
        slot: &mut u32,
    ) {
        if let Some(v) = fields
            .get(cx, key)
            .and_then(|(n, p)| integer(cx, n, &p, min, max))
            .and_then(|v| u32::try_from(v).ok())
        {
            *slot = v;
        }
    }
    number(
        cx,
        &mut fields,
        "sampleSeconds",
        (1, 600),
        &mut into.sample_seconds,
    );
    number(
        cx,
        &mut fields,
        "windowSeconds",
        (1, 3600),
        &mut into.window_seconds,
    );
    number(
        cx,
        &mut fields,
        "coolDownSeconds",
        (10, 86_400),
        &mut into.cool_down_seconds,
    );
    number(
        cx,
        &mut fields,
        "tightenCpuWeight",
        (1, 10_000),
        &mut into.tighten_cpu_weight,
    );
    number(
        cx,
        &mut fields,
        "cpuBusyMillicores",
        (0, 1_000_000),
        &mut into.cpu_busy_millicores,
    );
    number(
        cx,
        &mut fields,
        "cpuThrottledPercent",
        (0, 100),
        &mut into.cpu_throttled_percent,
    );
    number(
        cx,
        &mut fields,
        "memoryPercent",
        (1, 100),
        &mut into.memory_percent,
    );
    number(
        cx,
        &mut fields,
        "ioMibPerSecond",
        (0, 1_000_000),
        &mut into.io_mib_per_second,
    );
    if into.window_seconds < into.sample_seconds {
        cx.error(
            &node.pos,
            &join(path, "windowSeconds"),
            format!(
                "{} is shorter than sampleSeconds {} (expected a window of at least one sample)",
                into.window_seconds, into.sample_seconds
            ),
        );
    }
    fields.finish(cx);
}

/// The platform used when no file declares one.
pub fn default_platform_spec() -> PlatformSpec {
    PlatformSpec {
        instance: defaults::INSTANCE.to_owned(),
        network: PlatformNetwork {
            tenant_range: defaults::tenant_range(),
            dns: defaults::DNS,
            upstream_dns: Vec::new(),
            host_ports: Vec::new(),
            allow_link_local: false,
            nat: false,
            connections_per_tenant: defaults::CONNECTIONS_PER_TENANT,
        },
        shared_services: Vec::new(),
        admins: Vec::new(),
        key_source: defaults::key_source(),
        allow_degraded: Vec::new(),
        kubernetes: default_kubernetes(),
        noisy_neighbours: defaults::NOISY_NEIGHBOURS,
    }
}

fn shared_service(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<SharedService> {
    let mut fields = Fields::new(cx, node, path)?;
    let name = fields
        .require(cx, "name", "a DNS-1123 label")
        .and_then(|(n, p)| dns_name(cx, n, &p, false));
    let has_tenant = fields.entries.iter().any(|(k, _, _)| k == "tenant");
    let has_cidr = fields.entries.iter().any(|(k, _, _)| k == "cidr");
    let target = match (has_tenant, has_cidr) {
        (true, false) => {
            let tenant = fields
                .get(cx, "tenant")
                .and_then(|(n, p)| dns_name(cx, n, &p, false));
            let workload_selector = fields
                .get(cx, "workloadSelector")
                .and_then(|(n, p)| selector(cx, n, &p));
            tenant.map(|tenant| ServiceTarget::Tenant {
                tenant,
                workload_selector,
            })
        }
        (false, true) => cidr_block(cx, &mut fields, path).map(ServiceTarget::Cidr),
        _ => {
            cx.error(&node.pos, path, "a shared service needs exactly one of tenant or cidr (expected where the service runs)");
            None
        }
    };
    let ports = fields
        .require(cx, "ports", "the ports the service serves")
        .map(|(n, p)| list(cx, n, &p, port_spec))
        .unwrap_or_default();
    fields.finish(cx);
    Some(SharedService {
        name: name?,
        target: target?,
        ports,
    })
}

fn admin(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<Admin> {
    let mut fields = Fields::new(cx, node, path)?;
    let name = fields
        .require(cx, "name", "an identity")
        .and_then(|(n, p)| string(cx, n, &p));
    let role = fields
        .require(cx, "role", "platform-admin, tenant-admin or tenant-viewer")
        .and_then(|(n, p)| {
            enumeration(
                cx,
                n,
                &p,
                &[
                    ("platform-admin", Role::PlatformAdmin),
                    ("tenant-admin", Role::TenantAdmin),
                    ("tenant-viewer", Role::TenantViewer),
                ],
            )
        });
    let tenant = fields
        .get(cx, "tenant")
        .and_then(|(n, p)| dns_name(cx, n, &p, false));
    fields.finish(cx);
    let role = role?;
    match (role, &tenant) {
        (Role::PlatformAdmin, Some(_)) => {
            cx.error(
                &node.pos,
                &join(path, "tenant"),
                "a platform-admin is not scoped to a tenant (expected no tenant field)",
            );
        }
        (Role::TenantAdmin | Role::TenantViewer, None) => {
            cx.error(
                &node.pos,
                &join(path, "tenant"),
                "missing required field (expected the tenant this role applies to)",
            );
        }
        _ => {}
    }
    Some(Admin {
        name: name?,
        role,
        tenant,
    })
}

fn key_source(cx: &mut Cx<'_>, node: &Node, path: &str) -> Option<KeySource> {
    let mut fields = Fields::new(cx, node, path)?;
    let file = fields.get(cx, "file").and_then(|(n, p)| string(cx, n, &p));
    let env = fields.get(cx, "env").and_then(|(n, p)| string(cx, n, &p));
    fields.finish(cx);
    match (file, env) {
        (Some(file), None) if file.starts_with('/') => Some(KeySource::File { file }),
        (Some(file), None) => {
            cx.error(
                &node.pos,
                &join(path, "file"),
                format!(
                    "{file:?} is not an absolute path (expected e.g. /etc/bulkhead/master.key)"
                ),
            );
            None
        }
        (None, Some(env)) => Some(KeySource::Env { env }),
        _ => {
            cx.error(&node.pos, path, "expected exactly one of file or env");
            None
        }
    }
}

const KINDS: [&str; 3] = ["Tenant", "Workload", "Platform"];

/// Decodes one document. Errors go to `diagnostics`; `None` when the document is unusable.
pub(crate) fn decode_document(node: &Node, diagnostics: &mut Diagnostics) -> Option<Located> {
    let mut cx = Cx {
        diagnostics,
        spans: Spans {
            document: Some(node.pos.clone()),
            fields: BTreeMap::new(),
        },
        errors: 0,
    };
    let mut fields = Fields::new(&mut cx, node, "")?;
    let api_version = fields
        .require(&mut cx, "apiVersion", API_VERSION)
        .and_then(|(n, p)| string(&mut cx, n, &p).map(|v| (v, n.pos.clone(), p)));
    if let Some((version, pos, path)) = &api_version
        && version != API_VERSION
    {
        cx.error(
            pos,
            path,
            format!("unsupported apiVersion {version:?} (expected {API_VERSION})"),
        );
    }
    let kind = fields
        .require(&mut cx, "kind", "Tenant, Workload or Platform")
        .and_then(|(n, p)| {
            let kind = string(&mut cx, n, &p)?;
            if KINDS.contains(&kind.as_str()) {
                Some(kind)
            } else {
                let hint = did_you_mean(&kind, &KINDS)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                cx.error(
                    &n.pos,
                    &p,
                    format!("unknown kind {kind:?} (expected Tenant, Workload or Platform){hint}"),
                );
                None
            }
        });
    let metadata_node = fields.require(&mut cx, "metadata", "a mapping with at least a name");
    let spec_node = fields.get(&mut cx, "spec");
    let _status = fields.get(&mut cx, "status");
    fields.finish(&mut cx);
    let kind = kind?;
    let object = match kind.as_str() {
        "Tenant" => {
            let metadata = metadata_node.and_then(|(n, _)| metadata(&mut cx, n, true));
            let spec = tenant_spec(&mut cx, spec_node);
            Object::Tenant(Tenant {
                api_version: API_VERSION.to_owned(),
                kind,
                metadata: metadata?,
                spec,
            })
        }
        "Workload" => {
            let metadata = metadata_node.and_then(|(n, _)| workload_metadata(&mut cx, n));
            Object::Workload(workload(&mut cx, metadata, spec_node)?)
        }
        _ => {
            let metadata = metadata_node.and_then(|(n, _)| metadata(&mut cx, n, false));
            let spec = platform_spec(&mut cx, spec_node);
            Object::Platform(Platform {
                api_version: API_VERSION.to_owned(),
                kind,
                metadata: metadata?,
                spec,
            })
        }
    };
    if cx.errors > 0 {
        return None;
    }
    Some(Located {
        object,
        spans: cx.spans,
    })
}
