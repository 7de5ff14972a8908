//! bulkhead-node: Linux enforcement for bulkhead.
//!
//! For now it holds what `bulkhead doctor` reports: [`doctor::run`] reads the
//! host through [`doctor::HostPaths`] (every filesystem root a parameter) and a
//! [`doctor::KernelProbe`] (the syscalls no path can stand in for) and returns
//! a [`doctor::Report`]: one [`doctor::FeatureCheck`] per isolation
//! [`doctor::Feature`] (cgroups as [`doctor::CgroupInfo`], user namespaces,
//! seccomp, Landlock, nftables, loop + ext4 encryption, tc) and the
//! [`doctor::Hardening`] baseline with its [`doctor::Exposure`] score.
//! [`doctor::Report::require`] gives `apply` a [`doctor::HostNotReady`] error.
//! [`mountinfo`] parses `/proc/<pid>/mountinfo`. [`sandbox`] starts a
//! tenant's long-lived namespaces (a holder process per tenant), builds its
//! root file system and runs processes inside ([`sandbox::start`],
//! [`sandbox::Sandbox::run`], [`sandbox::observe`], [`sandbox::stop`]).
//!
//! [`confine`] is what a workload process gets before `execve` per security
//! profile: a [`confine::Confinement`] prepared in the parent (seccomp filters
//! compiled from `profiles/seccomp/*.json`, a Landlock ruleset, capability and
//! rlimit policies) and applied in the child.
//!
//! [`cgroup::Cgroups`] places tenants and workloads in cgroups (v1, hybrid or
//! v2 through one API) and sets, observes and reports their limits.
//!
//! [`volume`] is a tenant's storage: a [`volume::Volume`] (names from
//! [`naming::Instance`]) is a sparse image of exactly the storage quota,
//! formatted ext4, attached to a loop device, mounted `nosuid,nodev`, with
//! its `data` directory under an fscrypt v2 policy; each lifecycle step is
//! idempotent and [`volume::Volume::observe`] returns a
//! [`volume::VolumeState`].
//!
//! [`attempt`] holds the raw attempts the isolation verifier's probe makes
//! from inside a tenant (ptrace, SysV and POSIX IPC, syslog, keys).
//!
//! [`net`] is a tenant's network: [`net::link`] wires the instance bridge
//! and a veth per tenant over netlink, [`net::firewall`] compiles the
//! policy engine into one `inet` and one `bridge` nftables table of sets,
//! [`net::shape`] caps bandwidth with `tc`. Raw
//! syscalls live only in the private `sys` module, the one place `unsafe` is
//! allowed.

pub mod attempt;
pub mod cgroup;
pub mod confine;
pub mod doctor;
pub mod host;
pub mod mountinfo;
pub mod naming;
pub mod net;
pub mod sandbox;
#[allow(unsafe_code)]
mod sys;
pub mod volume;
