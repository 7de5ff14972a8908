//! bulkhead's tenant model.
//!
//! Three kinds of object, YAML, `apiVersion: bulkhead.dev/v1alpha1`:
//! [`Tenant`] (owned by the platform team: profile, quota, defaults, network rules,
//! storage, state), [`Workload`] (owned by a tenant: a process and its resources) and
//! [`Platform`] (host-wide settings).
//!
//! Input flows one way:
//!
//! ```text
//! files ──source──> spanned YAML nodes ──decode──> objects + field positions
//!       ──validate (cross-object)──> Desired (defaults applied)
//! ```
//!
//! Every problem is reported at once as a [`Diagnostic`] with file, line, column and
//! field path. Quantities ([`Cpu`], [`Bytes`], [`Bandwidth`]) are parsed once into exact
//! integers; enforcement never sees text. Defaults live in [`defaults`] only.
//!
//! ```
//! let desired = bulkhead_spec::load_str("inline.yaml", r#"
//! apiVersion: bulkhead.dev/v1alpha1
//! kind: Tenant
//! metadata: { name: web }
//! spec:
//!   quota: { memory: 2Gi, cpu: "1.5" }
//! "#).expect("valid");
//! let web = &desired.tenants.values().next().expect("one tenant");
//! assert_eq!(web.spec.quota.memory.get(), 2 << 30);
//! assert_eq!(web.spec.quota.cpu.map(|c| c.millis()), Some(1500));
//! ```

#![forbid(unsafe_code)]

mod decode;
pub mod defaults;
mod diag;
mod model;
pub mod names;
mod net;
mod quantity;
pub mod schema;
mod source;
mod validate;

pub use decode::{PartialResources, parse_cpuset};
pub use diag::{Diagnostic, Diagnostics, Pos};
pub use model::*;
pub use net::{CidrBlock, PortError, PortMatch, PortSpec, Protocol, is_port_name, parse_cidr};
pub use quantity::{Bandwidth, Bytes, Cpu, QuantityError};
pub use source::{MAX_DEPTH, MAX_FILE_BYTES, Source, read_sources};
pub use validate::{load, load_sources, load_sources_within, load_str};

/// One object of the desired state in canonical form, as revisions store it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalObject {
    /// `Platform`, `Tenant` or `Workload`.
    pub kind: &'static str,
    /// The object's name.
    pub name: String,
    /// For workloads, the owning tenant.
    pub tenant: Option<String>,
    /// Canonical YAML, defaults applied.
    pub yaml: String,
}

/// Why an object could not be rendered as YAML (a bug, not an input problem).
#[derive(Debug, thiserror::Error)]
#[error("cannot render {kind} {name:?} as YAML: {message}")]
pub struct RenderError {
    /// Kind of the object.
    pub kind: &'static str,
    /// Name of the object.
    pub name: String,
    /// What the serializer said.
    pub message: String,
}

fn render<T: serde::Serialize>(
    kind: &'static str,
    name: &str,
    value: &T,
) -> Result<String, RenderError> {
    serde_saphyr::to_string(value).map_err(|error| RenderError {
        kind,
        name: name.to_owned(),
        message: error.to_string(),
    })
}

impl Desired {
    /// Every object in canonical YAML: the platform, then tenants, then workloads, by name.
    pub fn canonical_objects(&self) -> Result<Vec<CanonicalObject>, RenderError> {
        let mut out = Vec::with_capacity(1 + self.tenants.len() + self.workloads.len());
        let platform_name = self.platform.metadata.name.to_string();
        out.push(CanonicalObject {
            kind: "Platform",
            yaml: render("Platform", &platform_name, &self.platform)?,
            name: platform_name,
            tenant: None,
        });
        for (name, tenant) in &self.tenants {
            out.push(CanonicalObject {
                kind: "Tenant",
                name: name.to_string(),
                tenant: None,
                yaml: render("Tenant", name.as_str(), tenant)?,
            });
        }
        for ((tenant, name), workload) in &self.workloads {
            out.push(CanonicalObject {
                kind: "Workload",
                name: name.to_string(),
                tenant: Some(tenant.to_string()),
                yaml: render("Workload", name.as_str(), workload)?,
            });
        }
        Ok(out)
    }

    /// The whole desired state as one multi-document YAML text, canonical and
    /// re-loadable with [`load_str`].
    pub fn to_yaml(&self) -> Result<String, RenderError> {
        let objects = self.canonical_objects()?;
        Ok(objects
            .iter()
            .map(|object| format!("---\n{}", object.yaml))
            .collect::<String>())
    }
}
