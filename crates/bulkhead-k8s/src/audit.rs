//! Static checks of Kubernetes manifests for tenant isolation: load YAML files, get
//! [`Finding`]s with stable IDs (`BH-K8S-001`…), a [`Severity`], the object and a
//! remediation. No cluster is contacted.
//!
//! A **tenant namespace** is every Namespace object in the input except Kubernetes' and
//! the platform's own (`default`, `kube-*`, [`SYSTEM_NAMESPACES`]). Objects are read as
//! plain YAML, so kinds the checks do not know are skipped, never rejected.
//!
//! | ID | severity | finding |
//! |---|---|---|
//! | BH-K8S-001 | high | tenant namespace without a default-deny ingress policy |
//! | BH-K8S-002 | high | tenant namespace without a default-deny egress policy |
//! | BH-K8S-003 | high | NetworkPolicy peer with an empty `namespaceSelector` (every namespace) |
//! | BH-K8S-004 | low | tenant namespace that denies egress but allows no DNS (port 53) |
//! | BH-K8S-005 | critical | RoleBinding in a tenant namespace to `admin` or `cluster-admin` |
//! | BH-K8S-006 | critical | ClusterRoleBinding granting `cluster-admin`/`admin` to a tenant's service account |
//! | BH-K8S-007 | high | Role/ClusterRole with `escalate`, `bind`, `impersonate`, `*` verbs or `nodes/proxy` (a bounded `bind`, below, excepted) |
//! | BH-K8S-008 | high | tenant namespace without Pod Security `enforce` label, or enforcing `privileged` |
//! | BH-K8S-009 | critical | privileged container |
//! | BH-K8S-010 | critical | hostPath volume |
//! | BH-K8S-011 | critical | hostNetwork, hostPID or hostIPC |
//! | BH-K8S-012 | high | container hostPort |
//! | BH-K8S-013 | high | added Linux capabilities |
//! | BH-K8S-014 | medium | container not setting `allowPrivilegeEscalation: false` |
//! | BH-K8S-015 | medium | tenant namespace without a ResourceQuota, or one missing required keys |
//! | BH-K8S-016 | high | NodePort or LoadBalancer Service in a tenant namespace |
//! | BH-K8S-017 | high | Flux Kustomization/HelmRelease without `serviceAccountName` |
//! | BH-K8S-018 | high | Flux object referring to a source in another namespace |
//! | BH-K8S-019 | high | cross-tenant network path the spec does not allow (from [`crate::reach`]) |

//!
//! A **bounded `bind`** is not a BH-K8S-007 finding: a rule whose only verb is `bind`,
//! on `clusterroles` of `rbac.authorization.k8s.io` only, restricted by
//! `resourceNames` to ClusterRoles that are all in the input and that grant nothing
//! beyond what a tenant reconciler may have ([`crate::rbac::within_reconciler_rights`]:
//! the listed kinds and verbs, no `*`, no `nonResourceURLs`, no aggregation rule). That is how the Tenant controller binds the
//! shared reconciler ClusterRole without holding its rights; every other `bind` is
//! flagged, as is one naming a ClusterRole the input does not hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::quota::REQUIRED_KEYS;

/// Namespaces that are never tenants, besides `default` and `kube-*`.
pub const SYSTEM_NAMESPACES: [&str; 4] = [
    "flux-system",
    "istio-system",
    "cert-manager",
    "bulkhead-system",
];

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Hygiene.
    Low,
    /// Weakens isolation.
    Medium,
    /// Breaks isolation in a common setup.
    High,
    /// Hands a tenant the cluster or the node.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// The object a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    /// The file it was read from.
    pub file: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace (for a Namespace, its own name).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) if self.kind != "Namespace" => write!(f, "{} {ns}/{}", self.kind, self.name),
            _ => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// Stable ID, `BH-K8S-NNN`.
    pub id: &'static str,
    /// How bad.
    pub severity: Severity,
    /// Where.
    pub object: ObjectRef,
    /// What, specifically.
    pub message: String,
    /// What to do.
    pub remediation: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] {} ({}): {}; {}",
            self.id, self.severity, self.object, self.object.file, self.message, self.remediation
        )
    }
}

/// Why manifests could not be audited.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not YAML.
    #[error("{file}: invalid YAML: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// What the parser said.
        message: String,
    },
}

/// One manifest as read.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The file it came from.
    pub file: String,
    /// The object.
    pub value: Value,
}

impl Manifest {
    pub(crate) fn str(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }

    pub(crate) fn kind(&self) -> &str {
        self.str("/kind").unwrap_or_default()
    }

    pub(crate) fn namespace(&self) -> Option<&str> {
        self.str("/metadata/namespace")
    }

    fn object(&self) -> ObjectRef {
        let name = self.str("/metadata/name").unwrap_or_default().to_owned();
        let namespace = if self.kind() == "Namespace" {
            Some(name.clone())
        } else {
            self.namespace().map(str::to_owned)
        };
        ObjectRef {
            file: self.file.clone(),
            kind: self.kind().to_owned(),
            namespace,
            name,
        }
    }
}

/// Parses multi-document YAML text; empty documents are skipped.
pub fn parse(file: &str, text: &str) -> Result<Vec<Manifest>, AuditError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|error| AuditError::Yaml {
            file: file.to_owned(),
            message: error.to_string(),
        })?;
    Ok(documents
        .into_iter()
        .filter(Value::is_object)
        .map(|value| Manifest {
            file: file.to_owned(),
            value,
        })
        .collect())
}

/// Reads every `*.yaml`/`*.yml` file under `dir` (recursively, in path order).
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>, AuditError> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| AuditError::Read {
            path: path.clone(),
            source,
        })?;
        let shown = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        out.extend(parse(&shown, &text)?);
    }
    Ok(out)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), AuditError> {
    let read_error = |source| AuditError::Read {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    Ok(())
}

/// Audits the manifests under `dir`.
pub fn audit_dir(dir: &Path) -> Result<Vec<Finding>, AuditError> {
    Ok(audit(&load_dir(dir)?))
}

/// Whether `name` is a tenant's namespace: not `default`, `kube-*` or [`SYSTEM_NAMESPACES`].
pub fn is_tenant_namespace(name: &str) -> bool {
    name != "default" && !name.starts_with("kube-") && !SYSTEM_NAMESPACES.contains(&name)
}

struct Out(Vec<Finding>);

impl Out {
    fn push(
        &mut self,
        id: &'static str,
        severity: Severity,
        m: &Manifest,
        message: String,
        remediation: &'static str,
    ) {
        self.0.push(Finding {
            id,
            severity,
            object: m.object(),
            message,
            remediation,
        });
    }
}

/// Audits manifests; findings sorted by ID, then object.
pub fn audit(manifests: &[Manifest]) -> Vec<Finding> {
    let mut out = Out(Vec::new());
    let tenants: BTreeSet<&str> = manifests
        .iter()
        .filter(|m| m.kind() == "Namespace")
        .filter_map(|m| m.str("/metadata/name"))
        .filter(|n| is_tenant_namespace(n))
        .collect();
    let in_tenant = |m: &Manifest| m.namespace().is_some_and(|ns| tenants.contains(ns));
    let bindable: BTreeSet<&str> = manifests
        .iter()
        .filter(|m| m.kind() == "ClusterRole" && within_reconciler(m))
        .filter_map(|m| m.str("/metadata/name"))
        .collect();

    let mut deny_ingress = BTreeSet::new();
    let mut deny_egress = BTreeSet::new();
    let mut dns = BTreeSet::new();
    let mut quotas: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();

    for m in manifests {
        match m.kind() {
            "Namespace" => namespace(m, &tenants, &mut out),
            "NetworkPolicy" => {
                network_policy(m, &mut out);
                if let Some(ns) = m.namespace() {
                    let (ingress, egress) = default_denies(&m.value);
                    if ingress {
                        deny_ingress.insert(ns);
                    }
                    if egress {
                        deny_egress.insert(ns);
                    }
                    if allows_dns(&m.value) {
                        dns.insert(ns);
                    }
                }
            }
            "ResourceQuota" => {
                if let Some(ns) = m.namespace() {
                    let keys = quotas.entry(ns).or_default();
                    if let Some(hard) = m.value.pointer("/spec/hard").and_then(Value::as_object) {
                        keys.extend(hard.keys().cloned());
                    }
                }
            }
            "RoleBinding" if in_tenant(m) => role_binding(m, &mut out),
            "ClusterRoleBinding" => cluster_role_binding(m, &tenants, &mut out),
            "Role" | "ClusterRole" => role(m, &bindable, &mut out),
            "Service" if in_tenant(m) => service(m, &mut out),
            "Kustomization" | "HelmRelease"
                if m.str("/apiVersion")
                    .is_some_and(|v| v.contains("toolkit.fluxcd.io")) =>
            {
                flux(m, &mut out);
            }
            _ => {}
        }
        if let Some(pod) = pod_spec(m) {
            pod_checks(m, pod, &mut out);
        }
    }

    for m in manifests.iter().filter(|m| m.kind() == "Namespace") {
        let Some(ns) = m.str("/metadata/name") else {
            continue;
        };
        if !tenants.contains(ns) {
            continue;
        }
        if !deny_ingress.contains(ns) {
            out.push("BH-K8S-001", Severity::High, m, "no NetworkPolicy denies all ingress (podSelector {}, policyTypes [Ingress], no rules)".to_owned(), "add a default-deny policy selecting every pod for Ingress, then allow what is needed");
        }
        if !deny_egress.contains(ns) {
            out.push("BH-K8S-002", Severity::High, m, "no NetworkPolicy denies all egress (podSelector {}, policyTypes [Egress], no rules)".to_owned(), "add a default-deny policy selecting every pod for Egress, then allow what is needed");
        } else if !dns.contains(ns) {
            out.push("BH-K8S-004", Severity::Low, m, "egress is denied and no rule allows DNS (port 53)".to_owned(), "allow UDP and TCP 53 to the cluster resolver's pods, selected by namespace name and pod labels");
        }
        match quotas.get(ns) {
            None => out.push(
                "BH-K8S-015",
                Severity::Medium,
                m,
                "no ResourceQuota".to_owned(),
                "add a ResourceQuota with compute, storage and object-count limits",
            ),
            Some(keys) => {
                let missing: Vec<&str> = REQUIRED_KEYS
                    .iter()
                    .copied()
                    .filter(|k| !keys.contains(*k))
                    .collect();
                if !missing.is_empty() {
                    out.push(
                        "BH-K8S-015",
                        Severity::Medium,
                        m,
                        format!("ResourceQuota lacks {}", missing.join(", ")),
                        "add the missing keys to the namespace's ResourceQuota",
                    );
                }
            }
        }
    }
    let mut findings = out.0;
    findings.sort_by(|a, b| (a.id, &a.object, &a.message).cmp(&(b.id, &b.object, &b.message)));
    findings
}

fn namespace(m: &Manifest, tenants: &BTreeSet<&str>, out: &mut Out) {
    let Some(name) = m.str("/metadata/name") else {
        return;
    };
    if !tenants.contains(name) {
        return;
    }
    match m
        .value
        .pointer("/metadata/labels/pod-security.kubernetes.io~1enforce")
        .and_then(Value::as_str)
    {
        None => out.push(
            "BH-K8S-008",
            Severity::High,
            m,
            "no pod-security.kubernetes.io/enforce label".to_owned(),
            "label the namespace pod-security.kubernetes.io/enforce=restricted (or baseline)",
        ),
        Some("privileged") => out.push(
            "BH-K8S-008",
            Severity::High,
            m,
            "Pod Security enforces privileged (nothing)".to_owned(),
            "enforce restricted or baseline",
        ),
        Some(_) => {}
    }
}

fn array<'a>(value: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn is_empty_selector(selector: &Value) -> bool {
    let empty = |key: &str| {
        selector.get(key).is_none_or(|v| {
            v.is_null()
                || v.as_object().is_some_and(|o| o.is_empty())
                || v.as_array().is_some_and(|a| a.is_empty())
        })
    };
    empty("matchLabels") && empty("matchExpressions")
}

fn network_policy(m: &Manifest, out: &mut Out) {
    let peers = array(&m.value, "/spec/ingress")
        .flat_map(|r| array(r, "/from"))
        .chain(array(&m.value, "/spec/egress").flat_map(|r| array(r, "/to")));
    for peer in peers {
        if peer.get("namespaceSelector").is_some_and(is_empty_selector) {
            out.push(
                "BH-K8S-003",
                Severity::High,
                m,
                "a peer has an empty namespaceSelector, which selects every namespace".to_owned(),
                "select namespaces by kubernetes.io/metadata.name",
            );
        }
    }
}

fn policy_types(policy: &Value) -> Vec<&str> {
    let listed: Vec<&str> = array(policy, "/spec/policyTypes")
        .filter_map(Value::as_str)
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    let has_egress = policy.pointer("/spec/egress").is_some_and(|v| !v.is_null());
    if has_egress {
        vec!["Ingress", "Egress"]
    } else {
        vec!["Ingress"]
    }
}

/// Whether the policy selects every pod and denies all (ingress, egress).
fn default_denies(policy: &Value) -> (bool, bool) {
    let all_pods = policy
        .pointer("/spec/podSelector")
        .is_none_or(is_empty_selector);
    if !all_pods {
        return (false, false);
    }
    let types = policy_types(policy);
    let no_rules = |key: &str| array(policy, &format!("/spec/{key}")).next().is_none();
    (
        types.contains(&"Ingress") && no_rules("ingress"),
        types.contains(&"Egress") && no_rules("egress"),
    )
}

fn allows_dns(policy: &Value) -> bool {
    array(policy, "/spec/egress").any(|rule| {
        let ports: Vec<&Value> = array(rule, "/ports").collect();
        ports.is_empty()
            || ports.iter().any(|p| {
                p.get("port").is_none_or(|port| {
                    port.as_u64() == Some(53)
                        || port.as_str() == Some("dns")
                        || port.as_str() == Some("dns-tcp")
                })
            })
    })
}

fn role_ref_name(m: &Manifest) -> Option<&str> {
    m.str("/roleRef/name")
}

fn role_binding(m: &Manifest, out: &mut Out) {
    if let Some(role) = role_ref_name(m).filter(|r| matches!(*r, "admin" | "cluster-admin")) {
        out.push("BH-K8S-005", Severity::Critical, m, format!("binds the {role} ClusterRole in a tenant namespace (it can edit Roles, RoleBindings and, with admin, much of the namespace's isolation)"), "bind a Role that lists the tenant's resources and verbs explicitly");
    }
}

fn cluster_role_binding(m: &Manifest, tenants: &BTreeSet<&str>, out: &mut Out) {
    let Some(role) = role_ref_name(m).filter(|r| matches!(*r, "admin" | "cluster-admin")) else {
        return;
    };
    for subject in array(&m.value, "/subjects") {
        let is_tenant_sa = subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
            && subject
                .get("namespace")
                .and_then(Value::as_str)
                .is_some_and(|ns| tenants.contains(ns));
        if is_tenant_sa {
            let who = format!(
                "{}/{}",
                subject
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                subject
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            out.push(
                "BH-K8S-006",
                Severity::Critical,
                m,
                format!("grants {role} cluster-wide to tenant service account {who}"),
                "remove the binding; grant the tenant a namespaced Role",
            );
        }
    }
}

fn strs<'a>(value: &'a Value, pointer: &str) -> Vec<&'a str> {
    array(value, pointer).filter_map(Value::as_str).collect()
}

/// Whether a ClusterRole grants nothing beyond a tenant reconciler's rights: every
/// group, resource and verb of every rule within them, no `nonResourceURLs`, no
/// aggregation (which would take in rules from elsewhere), at least one rule.
fn within_reconciler(m: &Manifest) -> bool {
    let rules: Vec<&Value> = array(&m.value, "/rules").collect();
    m.value.get("aggregationRule").is_none_or(Value::is_null)
        && !rules.is_empty()
        && rules.iter().all(|rule| {
            let groups = strs(rule, "/apiGroups");
            let resources = strs(rule, "/resources");
            let verbs = strs(rule, "/verbs");
            array(rule, "/nonResourceURLs").next().is_none()
                && !groups.is_empty()
                && !resources.is_empty()
                && !verbs.is_empty()
                && groups.iter().all(|g| {
                    resources.iter().all(|r| {
                        verbs
                            .iter()
                            .all(|v| crate::rbac::within_reconciler_rights(g, r, v))
                    })
                })
        })
}

/// Whether a rule is a bounded `bind`: only `bind`, only `clusterroles` of the RBAC
/// group, and `resourceNames` naming only ClusterRoles in `bindable`.
fn bounded_bind(rule: &Value, bindable: &BTreeSet<&str>) -> bool {
    let names = strs(rule, "/resourceNames");
    strs(rule, "/verbs") == ["bind"]
        && strs(rule, "/apiGroups") == [crate::rbac::RBAC_GROUP]
        && strs(rule, "/resources") == ["clusterroles"]
        && !names.is_empty()
        && names.iter().all(|n| bindable.contains(n))
}

fn role(m: &Manifest, bindable: &BTreeSet<&str>, out: &mut Out) {
    for rule in array(&m.value, "/rules") {
        let verbs: Vec<&str> = array(rule, "/verbs").filter_map(Value::as_str).collect();
        let bounded = bounded_bind(rule, bindable);
        let bad: Vec<&str> = verbs
            .iter()
            .copied()
            .filter(|v| matches!(*v, "escalate" | "bind" | "impersonate" | "*"))
            .filter(|v| !(bounded && *v == "bind"))
            .collect();
        if !bad.is_empty() {
            out.push("BH-K8S-007", Severity::High, m, format!("grants {}", bad.join(", ")), "list verbs explicitly; escalate, bind and impersonate let the holder exceed its own rights (bind only clusterroles, by resourceNames, that grant no more than a tenant reconciler's rights)");
        }
        if array(rule, "/resources")
            .filter_map(Value::as_str)
            .any(|r| r == "nodes/proxy" || r == "nodes/*")
        {
            out.push(
                "BH-K8S-007",
                Severity::High,
                m,
                "grants nodes/proxy (the kubelet API: exec into any pod on the node)".to_owned(),
                "remove nodes/proxy",
            );
        }
    }
}

fn service(m: &Manifest, out: &mut Out) {
    if let Some(kind) = m
        .str("/spec/type")
        .filter(|t| matches!(*t, "NodePort" | "LoadBalancer"))
    {
        out.push(
            "BH-K8S-016",
            Severity::High,
            m,
            format!("type {kind} exposes the tenant outside the cluster network and its policies"),
            "use ClusterIP behind the platform's ingress",
        );
    }
}

fn flux(m: &Manifest, out: &mut Out) {
    if m.str("/spec/serviceAccountName").is_none_or(str::is_empty) {
        out.push(
            "BH-K8S-017",
            Severity::High,
            m,
            "no serviceAccountName: Flux applies it with its own cluster-wide rights".to_owned(),
            "set serviceAccountName to the tenant's reconciler account",
        );
    }
    let own = m.namespace().unwrap_or("default");
    let refs = [
        "/spec/sourceRef/namespace",
        "/spec/chart/spec/sourceRef/namespace",
    ];
    for pointer in refs {
        if let Some(ns) = m.str(pointer).filter(|ns| *ns != own) {
            out.push("BH-K8S-018", Severity::High, m, format!("refers to a source in namespace {ns}"), "keep sources in the object's own namespace (and run Flux with --no-cross-namespace-refs=true)");
        }
    }
}

/// The pod spec inside a Pod or a workload kind, if any.
fn pod_spec(m: &Manifest) -> Option<&Value> {
    let pointer = match m.kind() {
        "Pod" => "/spec",
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => "/spec/template/spec",
        "CronJob" => "/spec/jobTemplate/spec/template/spec",
        _ => return None,
    };
    m.value.pointer(pointer)
}

fn pod_checks(m: &Manifest, pod: &Value, out: &mut Out) {
    let host: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|k| pod.get(*k).and_then(Value::as_bool) == Some(true))
        .collect();
    if !host.is_empty() {
        out.push(
            "BH-K8S-011",
            Severity::Critical,
            m,
            format!("shares the node's namespaces: {}", host.join(", ")),
            "remove hostNetwork, hostPID and hostIPC",
        );
    }
    for volume in array(pod, "/volumes") {
        if volume.get("hostPath").is_some() {
            let name = volume
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            out.push(
                "BH-K8S-010",
                Severity::Critical,
                m,
                format!("volume {name:?} mounts a hostPath"),
                "use an emptyDir, a PVC or a projected volume",
            );
        }
    }
    let containers = array(pod, "/containers")
        .chain(array(pod, "/initContainers"))
        .chain(array(pod, "/ephemeralContainers"));
    for c in containers {
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if c.pointer("/securityContext/privileged")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.push(
                "BH-K8S-009",
                Severity::Critical,
                m,
                format!("container {name:?} is privileged"),
                "remove privileged: true",
            );
        }
        if array(c, "/ports").any(|p| {
            p.get("hostPort")
                .and_then(Value::as_u64)
                .is_some_and(|port| port > 0)
        }) {
            out.push(
                "BH-K8S-012",
                Severity::High,
                m,
                format!("container {name:?} binds a hostPort"),
                "expose the port through a Service instead",
            );
        }
        let added: Vec<&str> = array(c, "/securityContext/capabilities/add")
            .filter_map(Value::as_str)
            .collect();
        if !added.is_empty() {
            out.push(
                "BH-K8S-013",
                Severity::High,
                m,
                format!("container {name:?} adds capabilities {}", added.join(", ")),
                "drop ALL capabilities and add none",
            );
        }
        if c.pointer("/securityContext/allowPrivilegeEscalation")
            .and_then(Value::as_bool)
            != Some(false)
        {
            out.push(
                "BH-K8S-014",
                Severity::Medium,
                m,
                format!("container {name:?} does not set allowPrivilegeEscalation: false"),
                "set securityContext.allowPrivilegeEscalation: false",
            );
        }
    }
}
