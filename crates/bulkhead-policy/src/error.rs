//! Validation errors: what is wrong, in which object, at which field.

use crate::model::Protocol;
use crate::selector::SelectorOperator;

/// One invalid field, located by object (`policy tenant-a/allow-web`) and field
/// path (`spec.ingress[0].ports[1].endPort`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {kind}")]
pub struct ValidationError {
    /// The object holding the field, e.g. `policy tenant-a/allow-web` or `pod tenant-a/web-0`.
    pub object: String,
    /// The field path inside the object, Kubernetes style.
    pub field: String,
    /// What is wrong.
    pub kind: InvalidKind,
}

impl ValidationError {
    pub(crate) fn new(object: &str, field: impl Into<String>, kind: InvalidKind) -> Self {
        Self {
            object: object.to_owned(),
            field: field.into(),
            kind,
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKind {
    /// A name is empty.
    #[error("name is empty")]
    EmptyName,
    /// Two objects of one kind share a name (within a namespace for pods and policies).
    #[error("duplicate {what} {name:?}")]
    Duplicate {
        /// `namespace`, `pod`, `external endpoint` or `policy`.
        what: &'static str,
        /// The duplicated name.
        name: String,
    },
    /// A pod lives in a namespace that is not declared.
    #[error("namespace {namespace:?} is not declared")]
    UnknownNamespace {
        /// The undeclared namespace.
        namespace: String,
    },
    /// A namespace sets `kubernetes.io/metadata.name` to something other than its name.
    #[error(
        "label kubernetes.io/metadata.name is {value:?} (expected the namespace name {name:?})"
    )]
    NamespaceNameLabelMismatch {
        /// The namespace name.
        name: String,
        /// The label value given.
        value: String,
    },
    /// Port 0 (expected 1-65535).
    #[error("port 0 is not a port (expected 1-65535)")]
    PortZero,
    /// A named port that is not an IANA service name.
    #[error(
        "{name:?} is not a port name (expected 1-15 lowercase letters, digits and '-', with a letter)"
    )]
    InvalidPortName {
        /// The offending name.
        name: String,
    },
    /// `endPort` is set without `port`.
    #[error("endPort {end_port} is set without port")]
    EndPortWithoutPort {
        /// The given endPort.
        end_port: u16,
    },
    /// `endPort` is set with a named port.
    #[error("endPort {end_port} is set with the named port {name:?} (expected a numeric port)")]
    EndPortWithNamedPort {
        /// The given endPort.
        end_port: u16,
        /// The named port.
        name: String,
    },
    /// `endPort` is below `port`.
    #[error("endPort {end_port} is less than port {port}")]
    EndPortBeforePort {
        /// The given port.
        port: u16,
        /// The given endPort.
        end_port: u16,
    },
    /// `ipBlock.cidr` is empty.
    #[error("ipBlock cidr is empty (expected e.g. 10.0.0.0/8)")]
    EmptyCidr,
    /// A string that is not a CIDR.
    #[error("{value:?} is not a CIDR (expected e.g. 10.0.0.0/8 or fd00::/64)")]
    InvalidCidr {
        /// The offending string.
        value: String,
    },
    /// An `except` entry is not a strict subset of `cidr`.
    #[error("except {except} is not a strict subset of cidr {cidr}")]
    ExceptOutsideCidr {
        /// The block's cidr.
        cidr: String,
        /// The offending except entry.
        except: String,
    },
    /// A peer with no podSelector, namespaceSelector or ipBlock.
    #[error("peer is empty (expected podSelector, namespaceSelector or ipBlock)")]
    EmptyPeer,
    /// A peer combining ipBlock with a selector.
    #[error("ipBlock cannot be combined with podSelector or namespaceSelector")]
    IpBlockWithSelector,
    /// `In`/`NotIn` without values.
    #[error("operator {operator} needs at least one value")]
    SelectorValuesMissing {
        /// The operator.
        operator: SelectorOperator,
    },
    /// `Exists`/`DoesNotExist` with values.
    #[error("operator {operator} takes no values")]
    SelectorValuesUnexpected {
        /// The operator.
        operator: SelectorOperator,
    },
    /// A pod declares the same port name twice for one protocol.
    #[error("port name {name:?} is declared twice for {protocol}")]
    DuplicatePortName {
        /// The port name.
        name: String,
        /// The protocol.
        protocol: Protocol,
    },
}

/// [`Engine::new`](crate::Engine::new) was given invalid objects; every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invalid field(s), first: {}", errors.len(), errors.first().map(ToString::to_string).unwrap_or_default())]
pub struct BuildEngineError {
    /// All the problems, in input order.
    pub errors: Vec<ValidationError>,
}
