//! ValidatingAdmissionPolicies (`admissionregistration.k8s.io/v1`) that hold the stack in
//! place against anyone who is not bulkhead, and their bindings:
//!
//! | policy | what it denies |
//! |---|---|
//! | [`NAMESPACES`] | a tenant namespace (by name) without its tenant label or with Pod Security labels other than the rendered ones; the tenant label on any other namespace |
//! | [`NETWORK_POLICIES`] | in tenant namespaces, a NetworkPolicy peer with an empty `namespaceSelector` (every namespace) |
//! | [`SERVICES`] | in tenant namespaces, NodePort and LoadBalancer Services and `externalIPs` |
//! | [`FLUX_SOURCES`] | in tenant namespaces, a Flux source whose URL is not on the platform's allow-list (Buckets, which have no URL, always) |
//!
//! The expressions are CEL over `object`; expected values (tenant names, profiles, the
//! allow-list) are written into `variables` as literals, so the policies need no
//! parameter objects and change exactly when the desired state does. Tenant namespaces
//! are matched by the immutable `kubernetes.io/metadata.name` label.

use bulkhead_spec::Desired;
use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::labels;
use crate::network::name_selector;

/// Pins tenant namespaces' labels.
pub const NAMESPACES: &str = "bulkhead-tenant-namespaces";
/// Forbids empty namespaceSelectors in tenant NetworkPolicies.
pub const NETWORK_POLICIES: &str = "bulkhead-tenant-network-policies";
/// Forbids node ports, load balancers and external IPs in tenant namespaces.
pub const SERVICES: &str = "bulkhead-tenant-services";
/// Restricts tenant Flux sources to the allow-list.
pub const FLUX_SOURCES: &str = "bulkhead-flux-sources";

/// A CEL string literal: single-quoted, with `\` and `'` escaped.
pub fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn cel_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(cel_string).collect();
    format!("[{}]", items.join(", "))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels::platform_owned()),
        ..ObjectMeta::default()
    }
}

fn rule(group: &str, resources: &[&str]) -> NamedRuleWithOperations {
    NamedRuleWithOperations {
        api_groups: Some(vec![group.to_owned()]),
        api_versions: Some(vec!["*".to_owned()]),
        operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        ..NamedRuleWithOperations::default()
    }
}

fn variable(name: &str, expression: String) -> Variable {
    Variable {
        name: name.to_owned(),
        expression,
    }
}

fn validation(expression: String, message: &str) -> Validation {
    Validation {
        expression,
        message: Some(message.to_owned()),
        reason: Some("Forbidden".to_owned()),
        ..Validation::default()
    }
}

fn policy(
    name: &str,
    rules: Vec<NamedRuleWithOperations>,
    variables: Vec<Variable>,
    validations: Vec<Validation>,
) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: meta(name),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(rules),
                ..MatchResources::default()
            }),
            variables: (!variables.is_empty()).then_some(variables),
            validations: Some(validations),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        ..ValidatingAdmissionPolicy::default()
    }
}

/// Binds `policy` with `Deny`, to tenant namespaces only when `tenants` is given.
fn binding(policy: &str, tenants: Option<&[String]>) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta(policy),
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(policy.to_owned()),
            validation_actions: Some(vec!["Deny".to_owned()]),
            match_resources: tenants.map(|tenants| MatchResources {
                namespace_selector: Some(name_selector(tenants.iter().cloned())),
                ..MatchResources::default()
            }),
            ..ValidatingAdmissionPolicyBindingSpec::default()
        }),
    }
}

/// `has(x.f) && size(x.f) > 0`
fn non_empty(field: &str) -> String {
    format!("(has({field}) && size({field}) > 0)")
}

/// Every peer list `rules[].peers[]` has no empty namespaceSelector.
fn no_empty_namespace_selector(rules: &str, peers: &str) -> String {
    format!(
        "!has(object.spec.{rules}) || object.spec.{rules}.all(r, !has(r.{peers}) || r.{peers}.all(p, !has(p.namespaceSelector) || {} || {}))",
        non_empty("p.namespaceSelector.matchLabels"),
        non_empty("p.namespaceSelector.matchExpressions"),
    )
}

/// The admission policies, each with its binding (`None` when there is no tenant
/// namespace to bind a namespaced policy to: a selector with an empty `In` list is
/// invalid, and the policy has nothing to guard).
pub fn policies(
    desired: &Desired,
) -> Vec<(
    ValidatingAdmissionPolicy,
    Option<ValidatingAdmissionPolicyBinding>,
)> {
    let tenants: Vec<String> = desired.tenants.keys().map(ToString::to_string).collect();
    let in_tenants = |name: &str| (!tenants.is_empty()).then(|| binding(name, Some(&tenants)));
    let k8s = &desired.platform.spec.kubernetes;
    let profiles: Vec<String> = desired
        .tenants
        .iter()
        .map(|(name, t)| {
            format!(
                "{}: {}",
                cel_string(name.as_str()),
                cel_string(t.spec.profile.as_str())
            )
        })
        .collect();
    let psa = labels::POD_SECURITY;
    let modes = cel_list(labels::POD_SECURITY_MODES);

    let namespaces = policy(
        NAMESPACES,
        vec![rule("", &["namespaces"])],
        vec![
            variable("profiles", format!("{{{}}}", profiles.join(", "))),
            variable("psaVersion", cel_string(&k8s.pod_security_version)),
            variable(
                "isTenant",
                "object.metadata.name in variables.profiles".to_owned(),
            ),
            variable("hasLabels", "has(object.metadata.labels)".to_owned()),
        ],
        vec![
            validation(
                format!(
                    "!variables.isTenant || (variables.hasLabels && {tenant} in object.metadata.labels && object.metadata.labels[{tenant}] == object.metadata.name)",
                    tenant = cel_string(labels::TENANT),
                ),
                "a tenant namespace must carry bulkhead.dev/tenant set to its own name",
            ),
            validation(
                format!(
                    "!variables.isTenant || (variables.hasLabels && {modes}.all(m, ('{psa}' + m) in object.metadata.labels && object.metadata.labels['{psa}' + m] == variables.profiles[object.metadata.name] && ('{psa}' + m + '-version') in object.metadata.labels && object.metadata.labels['{psa}' + m + '-version'] == variables.psaVersion))"
                ),
                "a tenant namespace's Pod Security labels are pinned to its profile by bulkhead",
            ),
            validation(
                format!(
                    "variables.isTenant || !variables.hasLabels || !({} in object.metadata.labels)",
                    cel_string(labels::TENANT)
                ),
                "only bulkhead tenant namespaces may carry the bulkhead.dev/tenant label",
            ),
        ],
    );
    let network_policies = policy(
        NETWORK_POLICIES,
        vec![rule("networking.k8s.io", &["networkpolicies"])],
        Vec::new(),
        vec![
            validation(
                no_empty_namespace_selector("ingress", "from"),
                "an empty namespaceSelector selects every namespace; name the namespaces (kubernetes.io/metadata.name)",
            ),
            validation(
                no_empty_namespace_selector("egress", "to"),
                "an empty namespaceSelector selects every namespace; name the namespaces (kubernetes.io/metadata.name)",
            ),
        ],
    );
    let services = policy(
        SERVICES,
        vec![rule("", &["services"])],
        Vec::new(),
        vec![
            validation(
                "!has(object.spec.type) || !(object.spec.type in ['NodePort', 'LoadBalancer'])"
                    .to_owned(),
                "tenant Services may not be NodePort or LoadBalancer; expose them through the platform's ingress",
            ),
            validation(
                format!("!{}", non_empty("object.spec.externalIPs")),
                "tenant Services may not set externalIPs",
            ),
        ],
    );
    let flux_sources = policy(
        FLUX_SOURCES,
        vec![rule(
            "source.toolkit.fluxcd.io",
            &["buckets", "gitrepositories", "helmrepositories", "ocirepositories"],
        )],
        vec![variable(
            "allowed",
            cel_list(k8s.flux_source_allow_list.iter().map(String::as_str)),
        )],
        vec![validation(
            "has(object.spec.url) && variables.allowed.exists(prefix, object.spec.url.startsWith(prefix))".to_owned(),
            "this source is not on the platform's Flux source allow-list",
        )],
    );
    vec![
        (namespaces, Some(binding(NAMESPACES, None))),
        (network_policies, in_tenants(NETWORK_POLICIES)),
        (services, in_tenants(SERVICES)),
        (flux_sources, in_tenants(FLUX_SOURCES)),
    ]
}
