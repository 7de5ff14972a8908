//! The render, end to end: golden files for the examples, every object back through its
//! typed form (`k8s-openapi` with the `v1_34` feature: Kubernetes 1.34), and the
//! isolation invariants checked on the output rather than trusted.

use std::path::{Path, PathBuf};

use bulkhead_k8s::{K8sOptions, RenderError, RenderedObject, render, write_dir};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn examples() -> bulkhead_spec::Desired {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    bulkhead_spec::load(&[root]).unwrap_or_else(|e| panic!("examples must validate:\n{e}"))
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares the rendered files with `tests/golden/`; `BULKHEAD_UPDATE_GOLDEN=1`
/// rewrites them instead.
#[test]
fn examples_match_golden_files() {
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let out = tempfile::tempdir().expect("temp dir");
    let files = write_dir(&objects, out.path()).expect("write");
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            f.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "tenant-db.yaml",
            "tenant-ingress.yaml",
            "tenant-web.yaml",
            "platform.yaml",
            "flux-lockdown.yaml"
        ]
    );
    let update = std::env::var_os("BULKHEAD_UPDATE_GOLDEN").is_some();
    for (file, name) in files.iter().zip(&names) {
        let got = std::fs::read_to_string(file).expect("read rendered");
        let golden = golden_dir().join(name);
        if update {
            std::fs::write(&golden, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with BULKHEAD_UPDATE_GOLDEN=1)",
                golden.display()
            )
        });
        assert!(
            got == want,
            "{name} differs from its golden file; run with BULKHEAD_UPDATE_GOLDEN=1 and review the diff"
        );
    }
}

#[test]
fn render_is_deterministic() {
    let desired = examples();
    let a = render(&desired, &K8sOptions::default()).expect("render");
    let b = render(&desired, &K8sOptions::default()).expect("render");
    assert_eq!(a, b);
}

/// Parses `yaml` as `T` and serializes it again: same text, so the object has
/// exactly the shape of the type (no field lost or misnamed).
fn round_trip<T: DeserializeOwned + Serialize>(object: &RenderedObject) {
    let typed: T = serde_saphyr::from_str(&object.yaml)
        .unwrap_or_else(|e| panic!("{} {}: {e}\n{}", object.kind, object.name, object.yaml));
    let again = serde_saphyr::to_string(&typed).expect("serialize");
    assert_eq!(
        again, object.yaml,
        "{} {} changed on a round trip",
        object.kind, object.name
    );
}

fn objects_with_mesh() -> Vec<RenderedObject> {
    let mut desired = examples();
    desired.platform.spec.kubernetes.mesh = true;
    render(&desired, &K8sOptions::default()).expect("render")
}

#[test]
fn every_object_deserializes_into_its_type() {
    for object in objects_with_mesh() {
        match (object.api_version.as_str(), object.kind.as_str()) {
            ("v1", "Namespace") => round_trip::<Namespace>(&object),
            ("v1", "ResourceQuota") => round_trip::<ResourceQuota>(&object),
            ("v1", "LimitRange") => round_trip::<LimitRange>(&object),
            ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(&object),
            ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<NetworkPolicy>(&object),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(&object),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(&object),
            ("apps/v1", "Deployment") => round_trip::<Deployment>(&object),
            ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
                round_trip::<ValidatingAdmissionPolicy>(&object);
            }
            ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
                round_trip::<ValidatingAdmissionPolicyBinding>(&object);
            }
            ("source.toolkit.fluxcd.io/v1", "GitRepository") => {
                round_trip::<bulkhead_k8s::flux::GitRepository>(&object);
            }
            ("kustomize.toolkit.fluxcd.io/v1", "Kustomization") => {
                round_trip::<bulkhead_k8s::flux::Kustomization>(&object);
            }
            ("kustomize.config.k8s.io/v1beta1", "Kustomization") => {
                round_trip::<bulkhead_k8s::flux::LockdownKustomization>(&object);
            }
            ("security.istio.io/v1", "PeerAuthentication") => {
                round_trip::<bulkhead_k8s::mesh::PeerAuthentication>(&object);
            }
            ("security.istio.io/v1", "AuthorizationPolicy") => {
                round_trip::<bulkhead_k8s::mesh::AuthorizationPolicy>(&object);
            }
            (api, kind) => panic!("no round-trip check for {api} {kind}"),
        }
    }
}

fn typed<T: DeserializeOwned>(objects: &[RenderedObject], kind: &str) -> Vec<T> {
    objects
        .iter()
        .filter(|o| o.kind == kind)
        .map(|o| serde_saphyr::from_str(&o.yaml).expect("typed"))
        .collect()
}

#[test]
fn namespaces_carry_pod_security_and_owner_labels() {
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let namespaces: Vec<Namespace> = typed(&objects, "Namespace");
    assert_eq!(namespaces.len(), 3);
    for ns in namespaces {
        let labels = ns.metadata.labels.expect("labels");
        let name = ns.metadata.name.expect("name");
        let profile = if name == "ingress" {
            "baseline"
        } else {
            "restricted"
        };
        for mode in ["enforce", "audit", "warn"] {
            assert_eq!(
                labels[&format!("pod-security.kubernetes.io/{mode}")],
                profile
            );
            assert_eq!(
                labels[&format!("pod-security.kubernetes.io/{mode}-version")],
                "latest"
            );
        }
        assert_eq!(labels["bulkhead.dev/tenant"], name);
        assert_eq!(labels["app.kubernetes.io/managed-by"], "bulkhead");
    }
}

#[test]
fn network_policies_select_namespaces_by_name_only_and_never_all() {
    let objects = objects_with_mesh();
    let policies: Vec<NetworkPolicy> = typed(&objects, "NetworkPolicy");
    assert!(!policies.is_empty());
    for policy in &policies {
        let spec = policy.spec.as_ref().expect("spec");
        let peers = spec
            .ingress
            .iter()
            .flatten()
            .flat_map(|r| r.from.iter().flatten())
            .chain(
                spec.egress
                    .iter()
                    .flatten()
                    .flat_map(|r| r.to.iter().flatten()),
            );
        for peer in peers {
            if let Some(ns) = &peer.namespace_selector {
                let keys: Vec<&String> = ns
                    .match_labels
                    .iter()
                    .flat_map(|l| l.keys())
                    .chain(ns.match_expressions.iter().flatten().map(|e| &e.key))
                    .collect();
                assert!(
                    !keys.is_empty(),
                    "{:?}: empty namespaceSelector",
                    policy.metadata.name
                );
                assert!(
                    keys.iter().all(|k| *k == "kubernetes.io/metadata.name"),
                    "{:?}: namespaceSelector on a mutable label: {keys:?}",
                    policy.metadata.name
                );
            }
        }
    }
    // Every tenant is default-deny in both directions.
    for tenant in ["db", "ingress", "web"] {
        let deny = policies
            .iter()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(tenant)
                    && p.metadata.name.as_deref() == Some("bulkhead-default-deny")
            })
            .expect("default deny");
        let spec = deny.spec.as_ref().expect("spec");
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
        );
        assert!(spec.ingress.is_none() && spec.egress.is_none());
    }
}

#[test]
fn dns_goes_to_the_configured_cluster_resolver() {
    let mut desired = examples();
    let dns = &mut desired.platform.spec.kubernetes.dns_selector;
    dns.namespace = bulkhead_spec::load_str(
        "x.yaml",
        "apiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata: { name: openshift-dns }\n",
    )
    .expect("name")
    .tenants
    .into_keys()
    .next()
    .expect("one");
    dns.pod_labels = [(
        "dns.operator.openshift.io/daemonset-dns".to_owned(),
        "default".to_owned(),
    )]
    .into();
    let objects = render(&desired, &K8sOptions::default()).expect("render");
    let web_dns = objects
        .iter()
        .find(|o| o.namespace.as_deref() == Some("web") && o.name == "bulkhead-egress-0-dns")
        .expect("web's DNS policy");
    assert!(
        web_dns
            .yaml
            .contains("kubernetes.io/metadata.name: openshift-dns"),
        "{}",
        web_dns.yaml
    );
    assert!(
        web_dns
            .yaml
            .contains("dns.operator.openshift.io/daemonset-dns: default"),
        "{}",
        web_dns.yaml
    );
    assert!(!web_dns.yaml.contains("ipBlock"), "{}", web_dns.yaml);
}

const PLATFORM: &str =
    "apiVersion: bulkhead.dev/v1alpha1\nkind: Platform\nmetadata: { name: p }\nspec: {}\n";

fn tenant(name: &str, labels: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  labels: {labels}\nspec:\n{spec}"
    )
}

#[test]
fn tenant_selectors_resolve_to_tenant_names() {
    let text = format!(
        "{PLATFORM}{}{}{}",
        tenant(
            "a",
            "{ env: prod }",
            "  network:\n    egress:\n      - to: [{ tenantSelector: {} }]\n      - to: [{ tenantSelector: { matchLabels: { env: prod } } }]\n      - to: [{ tenantSelector: { matchLabels: { env: nowhere } } }]\n"
        ),
        tenant("b", "{ env: prod }", "  profile: restricted\n"),
        tenant("c", "{ env: dev }", "  profile: restricted\n"),
    );
    let desired = bulkhead_spec::load_str("t.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let objects = render(&desired, &K8sOptions::default()).expect("render");
    let find = |name: &str| {
        objects
            .iter()
            .find(|o| o.namespace.as_deref() == Some("a") && o.name == name)
    };
    let every = find("bulkhead-egress-0").expect("egress-0").yaml.clone();
    assert!(
        every.contains("operator: In")
            && every.contains("- a\n")
            && every.contains("- b\n")
            && every.contains("- c\n"),
        "{every}"
    );
    let prod = find("bulkhead-egress-1").expect("egress-1").yaml.clone();
    assert!(
        prod.contains("- a\n") && prod.contains("- b\n") && !prod.contains("- c\n"),
        "{prod}"
    );
    // A selector matching no tenant must not become "everyone": the policy is dropped.
    assert!(find("bulkhead-egress-2").is_none());
}

#[test]
fn reserved_tenant_labels_are_refused() {
    let text = format!(
        "{PLATFORM}{}",
        tenant(
            "a",
            "{ pod-security.kubernetes.io/enforce: privileged }",
            "  profile: restricted\n"
        )
    );
    let desired = bulkhead_spec::load_str("t.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    match render(&desired, &K8sOptions::default()) {
        Err(RenderError::ReservedLabel { object, key }) => {
            assert_eq!(object, "tenant a");
            assert_eq!(key, "pod-security.kubernetes.io/enforce");
        }
        other => panic!("expected a reserved-label error, got {other:?}"),
    }
}

/// The reconciler's rights live in one platform ClusterRole, rendered once with the
/// platform's objects (no tenant label, owned by bulkhead); each tenant namespace binds
/// it with a RoleBinding for its reconciler account only, and renders no Role. The
/// ClusterRole touches nothing that shapes isolation.
#[test]
fn reconciler_role_cannot_touch_isolation() {
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    assert!(objects.iter().all(|o| o.kind != "Role"));
    let roles: Vec<&RenderedObject> = objects.iter().filter(|o| o.kind == "ClusterRole").collect();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].tenant, None);
    assert_eq!(roles[0].namespace, None);
    assert_eq!(roles[0].name, "bulkhead-tenant-reconciler");
    let role: ClusterRole = serde_saphyr::from_str(&roles[0].yaml).expect("typed");
    let role_labels = role.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        role_labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("bulkhead")
    );
    assert!(!role_labels.contains_key("bulkhead.dev/tenant"));
    assert!(role.aggregation_rule.is_none());
    for rule in role.rules.iter().flatten() {
        assert!(rule.non_resource_urls.is_none(), "{rule:?}");
        for verb in &rule.verbs {
            assert!(
                !["escalate", "bind", "impersonate", "*"].contains(&verb.as_str()),
                "{verb}"
            );
        }
        for group in rule.api_groups.iter().flatten() {
            assert_ne!(group, "*");
        }
        for resource in rule.resources.iter().flatten() {
            assert!(
                ![
                    "*",
                    "resourcequotas",
                    "limitranges",
                    "networkpolicies",
                    "roles",
                    "rolebindings",
                    "clusterroles",
                    "clusterrolebindings",
                    "namespaces",
                    "endpoints",
                    "endpointslices",
                    "ingresses",
                    "pods/exec",
                ]
                .contains(&resource.as_str()),
                "{resource}"
            );
        }
    }
    let bindings: Vec<RoleBinding> = typed(&objects, "RoleBinding");
    assert_eq!(bindings.len(), 3);
    for binding in bindings {
        let ns = binding.metadata.namespace.clone().expect("namespaced");
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(binding.role_ref.name, "bulkhead-tenant-reconciler");
        let subjects = binding.subjects.expect("subjects");
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, "bulkhead-reconciler");
        assert_eq!(subjects[0].namespace.as_deref(), Some(ns.as_str()));
    }
}

/// With no tenant at all the platform ClusterRole is still rendered, so an apply of
/// such a render keeps it rather than pruning it.
#[test]
fn the_reconciler_cluster_role_is_rendered_without_tenants() {
    let desired = bulkhead_spec::load_str("p.yaml", "").unwrap_or_else(|e| panic!("{e}"));
    let objects = render(&desired, &K8sOptions::default()).expect("render");
    assert!(
        objects
            .iter()
            .any(|o| o.kind == "ClusterRole" && o.name == "bulkhead-tenant-reconciler"),
        "{objects:?}"
    );
}

#[test]
fn deployments_satisfy_the_restricted_profile() {
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let deployments: Vec<Deployment> = typed(&objects, "Deployment");
    assert_eq!(deployments.len(), 3);
    for d in deployments {
        let pod = d.spec.expect("spec").template.spec.expect("pod");
        let psc = pod.security_context.expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.expect("seccomp").type_,
            "RuntimeDefault"
        );
        assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
        for c in pod.containers {
            let sc = c.security_context.expect("container security context");
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(
                sc.capabilities.expect("caps").drop,
                Some(vec!["ALL".to_owned()])
            );
            let limits = c.resources.expect("resources").limits.expect("limits");
            assert!(limits.contains_key("memory"));
        }
    }
}

#[test]
fn quota_has_every_required_key() {
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let quotas: Vec<ResourceQuota> = typed(&objects, "ResourceQuota");
    for q in quotas {
        let hard = q.spec.expect("spec").hard.expect("hard");
        for key in bulkhead_k8s::quota::REQUIRED_KEYS {
            assert!(
                hard.contains_key(key),
                "{:?} lacks {key}",
                q.metadata.namespace
            );
        }
        assert_eq!(hard["services.nodeports"].0, "0");
        assert_eq!(hard["services.loadbalancers"].0, "0");
    }
}

#[test]
fn flux_objects_impersonate_the_tenant_and_stay_in_namespace() {
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let kustomizations: Vec<bulkhead_k8s::flux::Kustomization> = objects
        .iter()
        .filter(|o| o.api_version == bulkhead_k8s::flux::KUSTOMIZE_API_VERSION)
        .map(|o| serde_saphyr::from_str(&o.yaml).expect("typed"))
        .collect();
    assert_eq!(kustomizations.len(), 1, "only web has a GitOps source");
    let k = &kustomizations[0];
    assert_eq!(k.spec.service_account_name, "bulkhead-reconciler");
    assert_eq!(k.spec.target_namespace, "web");
    assert_eq!(k.spec.source_ref.namespace, None);
    let lockdown = objects
        .iter()
        .find(|o| o.api_version == bulkhead_k8s::flux::KUSTOMIZE_CONFIG_API_VERSION)
        .expect("lockdown");
    for flag in [
        "--no-cross-namespace-refs=true",
        "--no-remote-bases=true",
        "--default-service-account=default",
    ] {
        assert!(lockdown.yaml.contains(flag), "{flag}");
    }
}

/// The CEL expressions are checked for shape: brackets and quotes balance, and each
/// reads the admitted object. (No CEL compiler runs here; a cluster test would.)
#[test]
fn admission_expressions_are_well_formed() {
    let objects = render(&examples(), &K8sOptions::default()).expect("render");
    let policies: Vec<ValidatingAdmissionPolicy> = typed(&objects, "ValidatingAdmissionPolicy");
    assert_eq!(policies.len(), 4);
    let bindings: Vec<ValidatingAdmissionPolicyBinding> =
        typed(&objects, "ValidatingAdmissionPolicyBinding");
    assert_eq!(bindings.len(), 4);
    for policy in policies {
        let spec = policy.spec.expect("spec");
        assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
        let expressions = spec
            .validations
            .iter()
            .flatten()
            .map(|v| v.expression.clone())
            .chain(
                spec.variables
                    .iter()
                    .flatten()
                    .map(|v| v.expression.clone()),
            );
        for expression in expressions {
            assert_balanced(&expression);
        }
        for v in spec.validations.iter().flatten() {
            assert!(
                v.expression.contains("object.") || v.expression.contains("variables."),
                "{}",
                v.expression
            );
        }
    }
}

fn assert_balanced(expression: &str) {
    let mut stack = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in expression.chars() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '\'') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' => quoted = true,
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = stack.pop();
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                assert_eq!(open, Some(want), "unbalanced {c} in {expression}");
            }
            _ => {}
        }
    }
    assert!(!quoted, "unterminated string in {expression}");
    assert!(stack.is_empty(), "unclosed {stack:?} in {expression}");
}

#[test]
fn cel_strings_are_escaped() {
    assert_eq!(
        bulkhead_k8s::admission::cel_string("a'b\\c"),
        "'a\\'b\\\\c'"
    );
    assert_balanced(&bulkhead_k8s::admission::cel_string("it's"));
}
