//! A workload as a Deployment whose pods satisfy the `restricted` Pod Security Standard.
//!
//! Every profile gets the restricted context (non-root user, `RuntimeDefault` seccomp,
//! no privilege escalation, every capability dropped, read-only root filesystem with a
//! writable `/tmp`): nothing in a Workload asks for more, and the tenant's profile then
//! only governs what the tenant deploys itself. One replica (none while the tenant is
//! suspended), `Recreate` strategy (see [`crate::quota`] for why), the service-account
//! token not mounted, no service links.
//!
//! Pods carry the workload's labels (what NetworkPolicy `workloads` selectors match)
//! plus [`labels::TENANT`], [`labels::WORKLOAD`] and the owner label; the Deployment
//! selects on [`labels::WORKLOAD`] only. `restart: on-failure`/`never` have no
//! Deployment equivalent: pods always restart.

use std::collections::BTreeMap;

use bulkhead_spec::{Protocol, Tenant, TenantState, Workload};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::labels;
use crate::options::K8sOptions;
use crate::quota::ephemeral_share;

/// The container security context every workload gets.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

fn protocol(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
    .to_owned()
}

/// The labels of a workload's pods: its own, the owner and tenant labels, and
/// [`labels::WORKLOAD`].
pub fn pod_labels(tenant: &str, workload: &Workload) -> BTreeMap<String, String> {
    let mut pod_labels = workload.metadata.labels.clone();
    pod_labels.extend(labels::owned(tenant));
    pod_labels.insert(
        labels::WORKLOAD.to_owned(),
        workload.metadata.name.to_string(),
    );
    pod_labels
}

/// The workload's Deployment in its tenant's namespace.
pub fn deployment(tenant: &Tenant, workload: &Workload, options: &K8sOptions) -> Deployment {
    let tenant_name = tenant.metadata.name.as_str();
    let name = workload.metadata.name.as_str();
    let spec = &workload.spec;
    let selector = BTreeMap::from([(labels::WORKLOAD.to_owned(), name.to_owned())]);
    let pod_labels = pod_labels(tenant_name, workload);

    let mut resources = BTreeMap::new();
    resources.insert(
        "memory".to_owned(),
        Quantity(spec.resources.memory.to_string()),
    );
    if let Some(cpu) = spec.resources.cpu {
        resources.insert("cpu".to_owned(), Quantity(cpu.to_string()));
    }
    let env: Vec<EnvVar> = spec
        .env
        .iter()
        .map(|(key, value)| EnvVar {
            name: key.clone(),
            value: Some(value.clone()),
            value_from: None,
        })
        .collect();
    let ports: Vec<ContainerPort> = spec
        .ports
        .iter()
        .map(|p| ContainerPort {
            container_port: i32::from(p.port),
            name: p.name.clone(),
            protocol: Some(protocol(p.protocol)),
            ..ContainerPort::default()
        })
        .collect();
    let container = Container {
        name: labels::deployment(name),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| options.default_image.clone()),
        ),
        command: Some(spec.command.clone()),
        env: (!env.is_empty()).then_some(env),
        working_dir: spec.workdir.clone(),
        ports: (!ports.is_empty()).then_some(ports),
        resources: Some(ResourceRequirements {
            limits: Some(resources.clone()),
            requests: Some(resources),
            ..ResourceRequirements::default()
        }),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let user = options.run_as_user;
    let replicas = match tenant.spec.state {
        TenantState::Active => 1,
        TenantState::Suspended => 0,
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(labels::deployment(name)),
            namespace: Some(labels::namespace(tenant_name)),
            labels: Some(pod_labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(labels::WORKLOAD_SERVICE_ACCOUNT.to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    containers: vec![container],
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(user),
                        run_as_group: Some(user),
                        fs_group: Some(user),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(vec![Volume {
                        name: "tmp".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            size_limit: Some(Quantity(ephemeral_share(tenant).to_string())),
                            ..EmptyDirVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
