//! bulkhead's network-policy engine: Kubernetes NetworkPolicy semantics, exactly.
//!
//! One engine serves every consumer: the host backend compiles it to nftables, the
//! Kubernetes backend renders NetworkPolicy objects, the auditor evaluates a cluster's
//! own policies, and the verifier takes its expected reachability matrix from it.
//!
//! # Main types and how they fit
//!
//! - Input, shaped like the Kubernetes API (camelCase serde), unvalidated: a [`Cluster`]
//!   holds [`Namespace`]s, [`Pod`]s (labels, [`NamedPort`]s, addresses),
//!   [`ExternalEndpoint`]s (addresses outside the cluster) and [`NetworkPolicy`]s
//!   ([`IngressRule`]/[`EgressRule`] → [`Peer`]s with [`LabelSelector`]s or an
//!   [`IpBlock`], and [`PortSpec`]s).
//! - [`Engine::new`] validates everything (every problem as a [`ValidationError`] inside a
//!   [`BuildEngineError`]) and compiles it. [`EngineOptions`] holds what Kubernetes leaves
//!   to the network plugin.
//! - Questions: [`Engine::allowed`] for one connection, [`Engine::explain`] for the
//!   [`Verdict`] with the rules that allow it or the policies that deny it;
//!   [`Engine::matrix`] for the whole [`ReachabilityMatrix`] (endpoint × endpoint × port
//!   class), [`ReachabilityMatrix::namespace_matrix`] for the [`NamespaceMatrix`], and
//!   [`diff`] for the [`MatrixDiff`] between two matrices.
//! - Our tenant model enters through one door, [`tenancy`]: [`tenancy::translate`] turns a
//!   validated `bulkhead_spec::Desired` into a [`Cluster`] (tenants → namespaces,
//!   workloads → pods, rules → the NetworkPolicies the Kubernetes backend renders), and
//!   [`tenancy::engine_for`], [`tenancy::TenantMatrix`] and [`tenancy::diff_desired`]
//!   answer tenant-level questions (`describe`, `plan`, the verifier's expectations).
//!
//! # Semantics
//!
//! - Policies only allow; they add up. A pod no policy selects for a direction is not
//!   isolated in that direction. Once selected, only what some rule of some selecting
//!   policy allows gets through. A connection needs the source's egress **and** the
//!   destination's ingress to allow it. A pod can always reach itself.
//! - `policyTypes` absent or empty defaults to Ingress, plus Egress iff `egress` has
//!   rules. A listed type with no rules denies that whole direction; rules of an unlisted
//!   type are ignored.
//! - Empty `from`/`to`: every peer, pods and external addresses alike. Empty `ports`:
//!   every port of every protocol. A port spec's protocol defaults to TCP; no `port`
//!   means every port of the protocol; `endPort` makes a range.
//! - In one [`Peer`], `podSelector` and `namespaceSelector` are ANDed; peers are ORed.
//!   `podSelector` alone means the policy's namespace; `namespaceSelector: {}` means every
//!   namespace. Every namespace carries [`NAMESPACE_NAME_LABEL`] = its name.
//! - Named ports resolve on the destination pod, in ingress and egress rules alike; they
//!   never match an external endpoint.
//! - External endpoints have no labels and no policies: selectors never match them,
//!   ipBlocks do, and only the pod side of a connection applies. Between two external
//!   endpoints nothing applies: [`Engine::allowed`] says yes.
//! - Whether ipBlocks match pod addresses is implementation-defined in Kubernetes; here it
//!   is [`EngineOptions::ip_block_matches_pods`] (default: they do not).
//! - Invalid objects (endPort below port or with a named port, an empty or malformed
//!   cidr, an `except` outside its cidr, a peer with both ipBlock and selectors, …) are
//!   rejected, never silently evaluated.

#![forbid(unsafe_code)]

mod bitset;
mod diff;
mod engine;
mod error;
mod matrix;
mod model;
mod ports;
mod selector;
pub mod tenancy;
mod validate;

pub use diff::{Connection, MatrixDiff, diff};
pub use engine::{
    EndpointId, EndpointKey, Engine, EngineOptions, PolicyRef, RuleRef, SideVerdict, Verdict,
};
pub use error::{BuildEngineError, InvalidKind, ValidationError};
pub use matrix::{GroupKey, NamespaceMatrix, ReachabilityMatrix};
pub use model::{
    Cluster, EgressRule, ExternalEndpoint, IngressRule, IpBlock, NAMESPACE_NAME_LABEL, NamedPort,
    Namespace, NetworkPolicy, Peer, Pod, PolicyType, PortRef, PortSpec, Protocol,
};
pub use ports::{PortRange, PortSet};
pub use selector::{LabelSelector, LabelSelectorRequirement, Labels, SelectorOperator};
