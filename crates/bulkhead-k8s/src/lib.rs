//! bulkhead on Kubernetes: the same tenants, rendered as the layered namespace stack.
//!
//! # Main types and how they fit
//!
//! - [`render()`] turns a validated [`bulkhead_spec::Desired`] and [`K8sOptions`] into
//!   [`RenderedObject`]s (API version, kind, namespace, name and YAML text), in a stable
//!   order; [`write_dir`] writes them as one multi-document file per tenant plus one for
//!   the platform. Errors are [`RenderError`]s.
//! - One module per object family builds typed `k8s-openapi` objects (Kubernetes
//!   **1.34**, the `v1_34` feature): [`namespace`] (Pod Security Admission and tenant
//!   labels), [`quota`] (ResourceQuota, LimitRange), [`network`] (NetworkPolicies from the
//!   one tenant translation, [`bulkhead_policy::tenancy`]), [`rbac`] (the tenant's
//!   reconciler: ServiceAccount and RoleBinding, per tenant, to the one platform
//!   ClusterRole `bulkhead-tenant-reconciler`), [`flux`] (typed GitRepository,
//!   Kustomization and the controller lockdown patch, which `k8s-openapi` lacks),
//!   [`admission`] (ValidatingAdmissionPolicies and bindings), [`workload`]
//!   (Deployments) and [`mesh`] (Istio, when the platform turns it on).
//! - [`audit`] checks foreign manifests for the same properties statically and
//!   reports [`audit::Finding`]s with stable IDs; our own output audits clean.
//! - [`reach`] evaluates the NetworkPolicies of manifests with the policy engine: every
//!   allowed workload-to-workload connection, the namespace matrix, and cross-tenant
//!   paths the spec does not allow as findings.
//! - `apply` (feature `client`, on by default) applies the render to a cluster with
//!   server-side apply and prunes what bulkhead applied earlier and no longer renders.
//! - `controller` (feature `client`) reconciles `Tenant` custom resources with kube's
//!   controller runtime: validate, finalizer, render, apply, prune, status conditions
//!   and events; cleanup through the finalizer on deletion.
//! - `deploy` (feature `client`) renders what runs the controller on a cluster:
//!   Namespace, ServiceAccount, the tenant reconciler ClusterRole, a ClusterRole
//!   derived from the requests the controller makes plus `bind` on that one by name,
//!   its binding and a restricted Deployment.
//! - `live` (feature `client`) reads the objects [`audit`] and [`reach`] check from a
//!   cluster instead of files.
//! - [`crd`] generates the `Tenant` CustomResourceDefinition from the spec crate's JSON
//!   Schema, made structural.
//! - [`labels`] holds every label key and object name we own, each derived in exactly
//!   one function.
//!
//! Namespaces are selected only by the immutable `kubernetes.io/metadata.name` label,
//! never by a label a tenant could change, and no rendered NetworkPolicy has an empty
//! `namespaceSelector`.

#![forbid(unsafe_code)]

pub mod admission;
#[cfg(feature = "client")]
pub mod apply;
pub mod audit;
#[cfg(feature = "client")]
pub mod controller;
pub mod crd;
#[cfg(feature = "client")]
pub mod deploy;
pub mod flux;
pub mod labels;
#[cfg(feature = "client")]
pub mod live;
pub mod mesh;
pub mod namespace;
pub mod network;
mod options;
pub mod quota;
pub mod rbac;
pub mod reach;
mod render;
pub mod workload;

pub use options::K8sOptions;
pub use render::{RenderError, RenderedObject, render, write_dir};
