//! Flux, typed here since `k8s-openapi` has no CRDs: a tenant's GitRepository and
//! Kustomization (applied as the tenant's reconciler account, never Flux's own), and
//! the platform's lockdown of the Flux controllers.
//!
//! The lockdown is a kustomize `Kustomization` for the `flux-system` bootstrap
//! directory, with one patch per controller flag. The patches are JSON 6902 `add`
//! operations on the container's `args`, not strategic-merge patches: `args` is a list
//! of strings, which a strategic merge replaces whole, dropping the controllers' own
//! flags; appending is what Flux's multi-tenancy guide does too.

use std::collections::BTreeMap;

use bulkhead_spec::GitOps;
use serde::{Deserialize, Serialize};

use crate::labels;

/// API version of Flux sources.
pub const SOURCE_API_VERSION: &str = "source.toolkit.fluxcd.io/v1";
/// API version of Flux Kustomizations.
pub const KUSTOMIZE_API_VERSION: &str = "kustomize.toolkit.fluxcd.io/v1";
/// API version of a kustomize `kustomization.yaml`.
pub const KUSTOMIZE_CONFIG_API_VERSION: &str = "kustomize.config.k8s.io/v1beta1";
/// Name of the lockdown kustomization.
pub const LOCKDOWN_NAME: &str = "bulkhead-flux-lockdown";

/// Object metadata of the Flux objects we render.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Meta {
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `source.toolkit.fluxcd.io/v1` GitRepository (the fields we set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepository {
    /// Always [`SOURCE_API_VERSION`].
    pub api_version: String,
    /// Always `GitRepository`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: Meta,
    /// The source.
    pub spec: GitRepositorySpec,
}

impl GitRepository {
    /// The kind.
    pub const KIND: &'static str = "GitRepository";
}

/// Body of a GitRepository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepositorySpec {
    /// How often to fetch.
    pub interval: String,
    /// The repository.
    pub url: String,
    /// What to check out.
    #[serde(rename = "ref")]
    pub git_ref: GitRepositoryRef,
}

/// A GitRepository's reference: a branch, or a full Git reference name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepositoryRef {
    /// A branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A full reference, `refs/…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `kustomize.toolkit.fluxcd.io/v1` Kustomization (the fields we set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Kustomization {
    /// Always [`KUSTOMIZE_API_VERSION`].
    pub api_version: String,
    /// Always `Kustomization`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: Meta,
    /// What to apply and as whom.
    pub spec: KustomizationSpec,
}

impl Kustomization {
    /// The kind.
    pub const KIND: &'static str = "Kustomization";
}

/// Body of a Flux Kustomization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KustomizationSpec {
    /// How often to reconcile.
    pub interval: String,
    /// Directory inside the source.
    pub path: String,
    /// Delete what disappears from the source.
    pub prune: bool,
    /// The source, in the same namespace (no `namespace` field: no cross-namespace refs).
    pub source_ref: SourceRef,
    /// The account Flux impersonates; without it Flux would apply as itself.
    pub service_account_name: String,
    /// Every object lands in the tenant's namespace.
    pub target_namespace: String,
}

/// A Kustomization's source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceRef {
    /// `GitRepository`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its namespace; never set by us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

fn meta(tenant: &str) -> Meta {
    Meta {
        name: labels::flux_source(tenant),
        namespace: Some(labels::namespace(tenant)),
        labels: labels::owned(tenant),
    }
}

/// The tenant's GitRepository.
pub fn git_repository(tenant: &str, gitops: &GitOps) -> GitRepository {
    let git_ref = if gitops.git_ref.starts_with("refs/") {
        GitRepositoryRef {
            branch: None,
            name: Some(gitops.git_ref.clone()),
        }
    } else {
        GitRepositoryRef {
            branch: Some(gitops.git_ref.clone()),
            name: None,
        }
    };
    GitRepository {
        api_version: SOURCE_API_VERSION.to_owned(),
        kind: GitRepository::KIND.to_owned(),
        metadata: meta(tenant),
        spec: GitRepositorySpec {
            interval: gitops.interval.clone(),
            url: gitops.url.clone(),
            git_ref,
        },
    }
}

/// The tenant's Kustomization, applied as its reconciler.
pub fn kustomization(tenant: &str, gitops: &GitOps) -> Kustomization {
    Kustomization {
        api_version: KUSTOMIZE_API_VERSION.to_owned(),
        kind: Kustomization::KIND.to_owned(),
        metadata: meta(tenant),
        spec: KustomizationSpec {
            interval: gitops.interval.clone(),
            path: gitops.path.clone(),
            prune: true,
            source_ref: SourceRef {
                kind: GitRepository::KIND.to_owned(),
                name: labels::flux_source(tenant),
                namespace: None,
            },
            service_account_name: labels::RECONCILER.to_owned(),
            target_namespace: labels::namespace(tenant),
        },
    }
}

/// A kustomize `kustomization.yaml` holding the lockdown patches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockdownKustomization {
    /// Always [`KUSTOMIZE_CONFIG_API_VERSION`].
    pub api_version: String,
    /// Always `Kustomization`.
    pub kind: String,
    /// Name and namespace, for our bookkeeping.
    pub metadata: Meta,
    /// The bootstrap files it patches.
    pub resources: Vec<String>,
    /// One patch per flag.
    pub patches: Vec<Patch>,
}

/// One kustomize patch with its target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    /// The JSON 6902 operations, as YAML text.
    pub patch: String,
    /// Which Deployments.
    pub target: PatchTarget,
}

/// The objects a patch applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchTarget {
    /// `Deployment`.
    pub kind: String,
    /// A regular expression over controller names.
    pub name: String,
}

/// `(flag, controllers it applies to)`, as Flux's multi-tenancy lockdown sets them.
pub const LOCKDOWN_FLAGS: [(&str, &[&str]); 3] = [
    (
        "--no-cross-namespace-refs=true",
        &[
            "helm-controller",
            "image-automation-controller",
            "image-reflector-controller",
            "kustomize-controller",
            "notification-controller",
        ],
    ),
    ("--no-remote-bases=true", &["kustomize-controller"]),
    (
        "--default-service-account=default",
        &["helm-controller", "kustomize-controller"],
    ),
];

/// The lockdown of the Flux controllers in `namespace`.
pub fn lockdown_patch(namespace: &str) -> LockdownKustomization {
    LockdownKustomization {
        api_version: KUSTOMIZE_CONFIG_API_VERSION.to_owned(),
        kind: "Kustomization".to_owned(),
        metadata: Meta {
            name: LOCKDOWN_NAME.to_owned(),
            namespace: Some(namespace.to_owned()),
            labels: labels::platform_owned(),
        },
        resources: vec![
            "gotk-components.yaml".to_owned(),
            "gotk-sync.yaml".to_owned(),
        ],
        patches: LOCKDOWN_FLAGS
            .iter()
            .map(|(flag, controllers)| Patch {
                patch: format!(
                    "- op: add\n  path: /spec/template/spec/containers/0/args/-\n  value: {flag}\n"
                ),
                target: PatchTarget {
                    kind: "Deployment".to_owned(),
                    name: format!("({})", controllers.join("|")),
                },
            })
            .collect(),
    }
}
