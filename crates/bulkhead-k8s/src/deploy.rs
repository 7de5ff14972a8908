//! `bulkhead k8s controller --manifests`: what runs the Tenant controller on a cluster.
//!
//! - a **Namespace** (default `bulkhead-system`) with Pod Security `restricted`
//!   enforced, audited and warned;
//! - a **ServiceAccount** `bulkhead-controller` in it;
//! - the platform **ClusterRole** `bulkhead-tenant-reconciler`
//!   ([`crate::rbac::cluster_role`]): the rights of every tenant's reconciler, which
//!   the controller binds in each tenant namespace with a RoleBinding; the same object
//!   `bulkhead k8s render` puts among the platform's objects;
//! - the controller's **ClusterRole** holding exactly what its requests need
//!   ([`controller_rules`]): on `tenants` list, watch and patch (the finalizer), on
//!   `tenants/status` patch; on `events.k8s.io` events create and patch (kube's event
//!   recorder patches a repeated event); on every kind a tenant's apply touches
//!   ([`crate::apply::PRUNABLE`] but [`crate::apply::PLATFORM_ONLY`]) list and delete
//!   (prune and cleanup) and, but for Deployments (the Tenant CRD has no Workload) and
//!   Roles (no longer rendered, only pruned), create and patch (server-side apply: a
//!   patch that creates the object is also authorized as `create`); get on namespaces
//!   (the wait for `Active`); and `get` and `bind` on `clusterroles` restricted by
//!   `resourceNames` to `bulkhead-tenant-reconciler` and nothing else. Kubernetes lets an account create a RoleBinding to a role when it
//!   holds every right of the role *or* `bind` on it; with `bind` the controller holds
//!   none of the tenant rights itself: it cannot read a Secret, exec into a Pod or
//!   write a Deployment in any namespace. It cannot write the ClusterRole either (on
//!   `clusterroles` it has only that `bind` and a `get` of the same one, to check it is
//!   installed and unchanged before binding it), so it cannot widen what it binds.
//!   No `*`, no `escalate`, no `impersonate`;
//! - a **ClusterRoleBinding** of that role to the account;
//! - a **Deployment** of one replica running `bulkhead k8s controller`, with a
//!   security context that satisfies `restricted` (non-root, no privilege escalation,
//!   every capability dropped, read-only root filesystem, `RuntimeDefault` seccomp),
//!   `POD_NAME` from the downward API (the events' reporting instance) and, when a
//!   ConfigMap is named, the Platform file mounted from it and passed as `--platform`.
//!
//! A test in `tests/controller.rs` checks the ClusterRole against every request the
//! controller makes to the fake API server, both ways, so the two cannot drift.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, Namespace, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;

use crate::crd::{GROUP, PLURAL};
use crate::render::{RenderError, RenderedObject};
use crate::{apply, labels, rbac, workload};

/// The name of the account, roles and Deployment.
pub const NAME: &str = crate::controller::CONTROLLER_NAME;
/// Where the Platform file is mounted when a ConfigMap holds it.
pub const PLATFORM_DIR: &str = "/etc/bulkhead";
/// The key of the Platform file in its ConfigMap.
pub const PLATFORM_KEY: &str = "platform.yaml";

/// Kinds the controller prunes but never applies: Deployments come from Workloads,
/// which the Tenant CRD does not carry; Roles are rendered no more (earlier versions
/// gave each reconciler its own), only pruned.
const NOT_APPLIED: [&str; 2] = ["Deployment", "Role"];

/// What the caller decides about the controller's manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerManifestOptions {
    /// The namespace the controller runs in.
    pub namespace: String,
    /// The container image holding the `bulkhead` binary (its entrypoint or on `PATH`).
    pub image: String,
    /// A ConfigMap in that namespace whose `platform.yaml` is the Platform; `None`:
    /// the default platform.
    pub platform_config_map: Option<String>,
    /// User and group id the controller runs as (non-root).
    pub run_as_user: i64,
}

impl Default for ControllerManifestOptions {
    fn default() -> Self {
        Self {
            namespace: "bulkhead-system".to_owned(),
            image: format!("bulkhead:{}", env!("CARGO_PKG_VERSION")),
            platform_config_map: None,
            run_as_user: 65532,
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// The rules of the controller's ClusterRole: one rule per API group and verb set, in a
/// stable order, then the `bind` on the tenant reconciler ClusterRole.
pub fn controller_rules() -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(GROUP, &[PLURAL], &["list", "watch", "patch"]),
        rule(GROUP, &[&format!("{PLURAL}/status")], &["patch"]),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ];
    // Every rendered kind: prune and cleanup (list, delete); apply (patch) for the kinds
    // a Tenant renders to (not Deployments: the Tenant CRD has no Workload). By group.
    let mut by_group: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for (api_version, kind, plural, _) in &apply::PRUNABLE {
        if apply::PLATFORM_ONLY.contains(kind) {
            continue;
        }
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let entry = by_group.entry(group).or_default();
        entry.0.push(plural);
        if !NOT_APPLIED.contains(kind) {
            entry.1.push(plural);
        }
    }
    for (group, (all, applied)) in by_group {
        if all == applied {
            rules.push(rule(group, &all, &["create", "patch", "list", "delete"]));
        } else {
            rules.push(rule(group, &all, &["list", "delete"]));
            if !applied.is_empty() {
                rules.push(rule(group, &applied, &["create", "patch"]));
            }
        }
    }
    // The wait for a Namespace to become Active reads it.
    rules.push(rule("", &["namespaces"], &["get"]));
    // Reading the tenant reconciler ClusterRole (the check that it is installed and not
    // widened) and binding it in a tenant namespace: it alone, by name.
    for verb in ["get", "bind"] {
        rules.push(PolicyRule {
            resource_names: Some(vec![rbac::CLUSTER_ROLE.to_owned()]),
            ..rule(rbac::RBAC_GROUP, &["clusterroles"], &[verb])
        });
    }
    rules
}

/// The controller's ClusterRole: [`controller_rules`].
pub fn cluster_role() -> ClusterRole {
    let rules = controller_rules();
    ClusterRole {
        metadata: meta(NAME, None),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
            (
                "app.kubernetes.io/part-of".to_owned(),
                labels::MANAGER.to_owned(),
            ),
        ])),
        ..ObjectMeta::default()
    }
}

fn object<T>(object: &T) -> Result<RenderedObject, RenderError>
where
    T: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize,
{
    let meta = object.metadata();
    let name = meta.name.clone().unwrap_or_default();
    let yaml = serde_saphyr::to_string(object).map_err(|error| RenderError::Serialize {
        kind: T::KIND.to_owned(),
        name: name.clone(),
        message: error.to_string(),
    })?;
    Ok(RenderedObject {
        api_version: T::API_VERSION.to_owned(),
        kind: T::KIND.to_owned(),
        namespace: meta.namespace.clone(),
        name,
        tenant: None,
        yaml,
    })
}

fn deployment(options: &ControllerManifestOptions) -> Deployment {
    let ns = options.namespace.as_str();
    let selector = BTreeMap::from([("app.kubernetes.io/name".to_owned(), NAME.to_owned())]);
    let mut args = strings(&["k8s", "controller"]);
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(config_map) = &options.platform_config_map {
        args.push("--platform".to_owned());
        args.push(format!("{PLATFORM_DIR}/{PLATFORM_KEY}"));
        volumes.push(Volume {
            name: "platform".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "platform".to_owned(),
            mount_path: PLATFORM_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let quantity = |s: &str| Quantity(s.to_owned());
    let container = Container {
        name: "controller".to_owned(),
        image: Some(options.image.clone()),
        image_pull_policy: Some("Always".to_owned()),
        command: Some(vec!["bulkhead".to_owned()]),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: "POD_NAME".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_owned(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity("50m")),
                ("memory".to_owned(), quantity("64Mi")),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity("1")),
                ("memory".to_owned(), quantity("512Mi")),
            ])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(workload::container_security_context()),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Container::default()
    };
    Deployment {
        metadata: meta(NAME, Some(ns)),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // One controller at a time: no overlap of two during a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.to_owned()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(options.run_as_user),
                        run_as_group: Some(options.run_as_user),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The Namespace, ServiceAccount, tenant reconciler ClusterRole, the controller's
/// ClusterRole, its ClusterRoleBinding and the Deployment that run the controller, in
/// apply order.
pub fn controller_manifests(
    options: &ControllerManifestOptions,
) -> Result<Vec<RenderedObject>, RenderError> {
    let ns = options.namespace.as_str();
    let mut namespace = Namespace {
        metadata: meta(ns, None),
        ..Namespace::default()
    };
    if let Some(l) = namespace.metadata.labels.as_mut() {
        for mode in labels::POD_SECURITY_MODES {
            l.insert(
                format!("{}{mode}", labels::POD_SECURITY),
                "restricted".to_owned(),
            );
        }
    }
    let account = ServiceAccount {
        metadata: meta(NAME, Some(ns)),
        ..ServiceAccount::default()
    };
    let binding = ClusterRoleBinding {
        metadata: meta(NAME, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: NAME.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: NAME.to_owned(),
            namespace: Some(ns.to_owned()),
            api_group: None,
        }]),
    };
    Ok(vec![
        object(&namespace)?,
        object(&account)?,
        object(&rbac::cluster_role())?,
        object(&cluster_role())?,
        object(&binding)?,
        object(&deployment(options))?,
    ])
}
