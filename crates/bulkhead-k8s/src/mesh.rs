//! Istio, when `platform.kubernetes.mesh` is on: mutual TLS required for every pod of a
//! tenant (PeerAuthentication `STRICT`) and an AuthorizationPolicy that admits callers
//! whose mesh identity lives in the tenant's own namespace or in a tenant namespace its
//! rendered ingress NetworkPolicies name. This is per namespace, coarser than the
//! NetworkPolicies (which stay in force underneath); callers outside the mesh (the
//! `cidr` sources of ingress rules) carry no identity and are refused by `STRICT`.

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
    /// `ALLOW`.
    pub action: String,
    /// Requests matching any rule are allowed.
    pub rules: Vec<AuthorizationRule>,
}

/// One rule: who may call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationRule {
    /// Sources (ORed).
    pub from: Vec<AuthorizationSource>,
}

/// A source of an AuthorizationPolicy rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationSource {
    /// The caller's workload.
    pub source: SourceNamespaces,
}

/// Callers by namespace (their mTLS identity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceNamespaces {
    /// Namespaces.
    pub namespaces: Vec<String>,
}

fn meta(tenant: &str) -> Meta {
    Meta {
        name: NAME.to_owned(),
        namespace: Some(labels::namespace(tenant)),
        labels: labels::owned(tenant),
    }
}

/// Mutual TLS required in the tenant's namespace.
pub fn peer_authentication(tenant: &str) -> PeerAuthentication {
    PeerAuthentication {
        api_version: SECURITY_API_VERSION.to_owned(),
        kind: PeerAuthentication::KIND.to_owned(),
        metadata: meta(tenant),
        spec: PeerAuthenticationSpec {
            mtls: Mtls {
                mode: "STRICT".to_owned(),
            },
        },
    }
}

/// Only `namespaces` (the tenant's own among them) may call its pods.
pub fn authorization_policy(tenant: &str, namespaces: Vec<String>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        api_version: SECURITY_API_VERSION.to_owned(),
        kind: AuthorizationPolicy::KIND.to_owned(),
        metadata: meta(tenant),
        spec: AuthorizationPolicySpec {
            action: "ALLOW".to_owned(),
            rules: vec![AuthorizationRule {
                from: vec![AuthorizationSource {
                    source: SourceNamespaces { namespaces },
                }],
            }],
        },
    }
}
