//! bulkhead-verify: proves, by trying, that tenants sharing a host are
//! isolated.
//!
//! [`verify`] takes the tenants whose sandboxes run ([`TenantUnderTest`]:
//! what the caller knows — name, declared profile, id base, volume data
//! directory, cgroups, quota) and [`VerifyOptions`]. It plants a secret
//! **canary** per tenant (a file on its volume, and a long-running process
//! holding it in memory, environment and command line, which also owns the
//! tenant's SysV objects, POSIX queue and abstract socket), then runs the
//! [`probe`] program **inside** each tenant's sandbox, under the tenant's
//! real confinement and in its cgroups. The probe tries to cross every
//! boundary of its [`ProbeClass`] — other tenants' and the host's processes,
//! files, devices, IPC, privileges, and (one tenant at a time) resources —
//! and reports what worked. The verifier judges each attempt against what
//! the declared profile says ([`Expected`]), giving a [`Report`] of
//! [`Row`]s: a denied thing that worked is a **leak**, an allowed thing that
//! failed an **outage**, plus a summary per class × tenant pair and an
//! exposure score per tenant ([`report`] documents the formula). [`render`]
//! prints it as a table, JSON or JUnit XML.
//!
//! The network class ([`network`]) probes what each tenant reaches over its
//! network — other tenants, the host, the metadata address, broadcasts,
//! forged source addresses, forged ARP — against the policy engine's tenant matrix
//! ([`NetworkUnderTest`], given in [`VerifyOptions::network`] with each
//! tenant's [`TenantUnderTest::address`]).

#![forbid(unsafe_code)]

mod class;
mod exhaustion;
mod judge;
pub mod network;
pub mod probe;
pub mod render;
pub mod report;
mod tenant;
mod verify;

pub use class::{Expected, ProbeClass, Target, Verdict};
pub use network::NetworkUnderTest;
pub use probe::{is_probe_invocation, probe_main};
pub use report::{Exposure, Report, Row, Summary};
pub use tenant::{Confine, DeclaredLimits, TenantUnderTest};
pub use verify::{Progress, ProgressSink, VerifyError, VerifyOptions, verify};
