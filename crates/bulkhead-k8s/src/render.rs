//! The whole render: every object family for every tenant, then the platform's
//! objects, serialized to YAML in a stable order.

use std::path::{Path, PathBuf};

use bulkhead_policy::tenancy::{TenancyOptions, TranslateError, translate};
use bulkhead_spec::Desired;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::options::K8sOptions;
use crate::{admission, flux, mesh, namespace, network, quota, rbac, workload};

/// One rendered Kubernetes object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedObject {
    /// `apiVersion`, e.g. `networking.k8s.io/v1`.
    pub api_version: String,
    /// `kind`, e.g. `NetworkPolicy`.
    pub kind: String,
    /// `metadata.namespace`; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// The tenant it belongs to; `None` for platform-level objects.
    pub tenant: Option<String>,
    /// The object as one YAML document (no `---` line).
    pub yaml: String,
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The tenants' network rules cannot be translated exactly.
    #[error(transparent)]
    Translate(#[from] TranslateError),
    /// A tenant or workload label uses a key bulkhead pins (Pod Security, tenant, owner).
    #[error(
        "{object}: label {key:?} is reserved (expected no label under bulkhead.dev/, kubernetes.io/, pod-security.kubernetes.io/ or app.kubernetes.io/managed-by)"
    )]
    ReservedLabel {
        /// `tenant web` or `workload web/app`.
        object: String,
        /// The label key.
        key: String,
    },
    /// An object could not be serialized (a bug, not an input problem).
    #[error("cannot render {kind} {name:?} as YAML: {message}")]
    Serialize {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// What the serializer said.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Collects rendered objects.
pub(crate) struct Out {
    objects: Vec<RenderedObject>,
}

impl Out {
    /// A typed `k8s-openapi` object.
    pub(crate) fn k8s<T>(&mut self, tenant: Option<&str>, object: &T) -> Result<(), RenderError>
    where
        T: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize,
    {
        let meta = object.metadata();
        self.custom(
            T::API_VERSION,
            T::KIND,
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default(),
            tenant,
            object,
        )
    }

    /// Any object that serializes with its own `apiVersion` and `kind`.
    pub(crate) fn custom<T: Serialize>(
        &mut self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        tenant: Option<&str>,
        object: &T,
    ) -> Result<(), RenderError> {
        let yaml = serde_saphyr::to_string(object).map_err(|error| RenderError::Serialize {
            kind: kind.to_owned(),
            name: name.to_owned(),
            message: error.to_string(),
        })?;
        self.objects.push(RenderedObject {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            tenant: tenant.map(str::to_owned),
            yaml,
        });
        Ok(())
    }
}

fn check_labels(desired: &Desired) -> Result<(), RenderError> {
    for (name, tenant) in &desired.tenants {
        if let Some(key) = tenant
            .metadata
            .labels
            .keys()
            .find(|k| crate::labels::is_reserved(k))
        {
            return Err(RenderError::ReservedLabel {
                object: format!("tenant {name}"),
                key: key.clone(),
            });
        }
    }
    for ((tenant, name), workload) in &desired.workloads {
        if let Some(key) = workload
            .metadata
            .labels
            .keys()
            .find(|k| crate::labels::is_reserved(k))
        {
            return Err(RenderError::ReservedLabel {
                object: format!("workload {tenant}/{name}"),
                key: key.clone(),
            });
        }
    }
    Ok(())
}

/// Renders every tenant of `desired`: per tenant, in this order, its Namespace,
/// ResourceQuota, LimitRange, NetworkPolicies (translation order), reconciler
/// ServiceAccount and RoleBinding (to the platform ClusterRole), Flux GitRepository and Kustomization (if it has
/// a GitOps source), Deployments by workload name and mesh objects (if the platform
/// turns the mesh on: PeerAuthentication, the allow-nothing AuthorizationPolicy, then
/// one per NetworkPolicy with ingress rules, in the same order); then the platform's
/// objects: the tenant reconciler ClusterRole (always, even with no tenant, so an apply
/// never prunes it), the admission policies and the Flux lockdown patch. The same input
/// always gives the same output, byte for byte.
pub fn render(desired: &Desired, options: &K8sOptions) -> Result<Vec<RenderedObject>, RenderError> {
    check_labels(desired)?;
    let translation = translate(desired, &TenancyOptions::new())?;
    let platform = &desired.platform.spec.kubernetes;
    let mut out = Out {
        objects: Vec::new(),
    };
    for (name, tenant) in &desired.tenants {
        let t = Some(name.as_str());
        out.k8s(t, &namespace::namespace(tenant, platform))?;
        out.k8s(t, &quota::resource_quota(tenant, options))?;
        out.k8s(t, &quota::limit_range(tenant))?;
        let policies = network::network_policies(desired, &translation, name.as_str());
        for policy in &policies {
            out.k8s(t, policy)?;
        }
        out.k8s(t, &rbac::service_account(name.as_str()))?;
        out.k8s(t, &rbac::role_binding(name.as_str()))?;
        if let Some(gitops) = &tenant.spec.gitops {
            let source = flux::git_repository(name.as_str(), gitops);
            out.custom(
                flux::SOURCE_API_VERSION,
                flux::GitRepository::KIND,
                Some(name.as_str()),
                &source.metadata.name,
                t,
                &source,
            )?;
            let kustomization = flux::kustomization(name.as_str(), gitops);
            out.custom(
                flux::KUSTOMIZE_API_VERSION,
                flux::Kustomization::KIND,
                Some(name.as_str()),
                &kustomization.metadata.name,
                t,
                &kustomization,
            )?;
        }
        for workload in desired.workloads_of(name) {
            out.k8s(t, &workload::deployment(tenant, workload, options))?;
        }
        if platform.mesh {
            let peer = mesh::peer_authentication(name.as_str());
            out.custom(
                mesh::SECURITY_API_VERSION,
                mesh::PeerAuthentication::KIND,
                Some(name.as_str()),
                &peer.metadata.name,
                t,
                &peer,
            )?;
            let mut authorization = vec![mesh::allow_nothing(name.as_str())];
            authorization.extend(mesh::authorization_policies(
                desired,
                name.as_str(),
                &policies,
                &options.mesh_trust_domain,
            ));
            for authz in &authorization {
                out.custom(
                    mesh::SECURITY_API_VERSION,
                    mesh::AuthorizationPolicy::KIND,
                    Some(name.as_str()),
                    &authz.metadata.name,
                    t,
                    authz,
                )?;
            }
        }
    }
    out.k8s(None, &rbac::cluster_role())?;
    for (policy, binding) in admission::policies(desired) {
        out.k8s(None, &policy)?;
        if let Some(binding) = binding {
            out.k8s(None, &binding)?;
        }
    }
    let patch = flux::lockdown_patch(&options.flux_namespace);
    out.custom(
        flux::KUSTOMIZE_CONFIG_API_VERSION,
        "Kustomization",
        Some(options.flux_namespace.as_str()),
        flux::LOCKDOWN_NAME,
        None,
        &patch,
    )?;
    Ok(out.objects)
}

/// The file an object goes to inside [`write_dir`]'s directory: `tenant-<name>.yaml`
/// for a tenant's objects, `flux-lockdown.yaml` for the Flux controllers' kustomization,
/// `platform.yaml` for the rest.
pub fn file_name(object: &RenderedObject) -> String {
    match &object.tenant {
        Some(tenant) => format!("tenant-{tenant}.yaml"),
        // Not a cluster object: it belongs in the Flux bootstrap directory, as its
        // kustomization.yaml (or merged into the one there).
        None if object.api_version == crate::flux::KUSTOMIZE_CONFIG_API_VERSION => {
            "flux-lockdown.yaml".to_owned()
        }
        None => "platform.yaml".to_owned(),
    }
}

/// Writes `objects` into `dir` (created if missing): one multi-document file per tenant
/// and one for the platform, objects in the order given. Returns the files written, in
/// order.
pub fn write_dir(objects: &[RenderedObject], dir: &Path) -> Result<Vec<PathBuf>, RenderError> {
    std::fs::create_dir_all(dir).map_err(|source| RenderError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<(String, String)> = Vec::new();
    for object in objects {
        let file = file_name(object);
        let text = format!("---\n{}", object.yaml);
        match files.iter_mut().find(|(name, _)| *name == file) {
            Some((_, body)) => body.push_str(&text),
            None => files.push((file, text)),
        }
    }
    let mut written = Vec::with_capacity(files.len());
    for (file, body) in files {
        let path = dir.join(file);
        std::fs::write(&path, body).map_err(|source| RenderError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}
