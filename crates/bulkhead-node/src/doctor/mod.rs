//! `bulkhead doctor`: is this host ready for bulkhead, and how is it hardened?
//!
//! [`run`] reads the host through [`HostPaths`] (every filesystem root is a
//! parameter) and a [`KernelProbe`] (the Landlock syscall and the effective
//! uid), never writes anything, and returns a [`Report`]:
//!
//! - [`Report::features`]: one [`FeatureCheck`] per isolation [`Feature`] —
//!   cgroup mode and controllers (detailed in [`Report::cgroup`], a
//!   [`CgroupInfo`]), user namespaces, seccomp, Landlock, nftables, loop
//!   devices, ext4 encryption, tc and iproute2 — each with a [`Status`], the
//!   observed value and what bulkhead needs it for. Files that cannot be read
//!   without root give [`Status::Unknown`] with "unknown (needs root)" rather
//!   than a guess.
//! - [`Report::hardening`]: a baseline in the spirit of `systemd-analyze
//!   security` ([`Hardening`]): sysctls, module signing, SMT, CPU
//!   vulnerabilities and lockdown, each a [`HardeningCheck`] with a weight, the
//!   observed and recommended values and the exact change, and an overall
//!   [`Exposure`] score.
//!
//! # Exposure score
//!
//! Each hardening check has a weight `w` (1–10, how much a tenant escaping or
//! spying on another gains from the weakness) and, when its value could be
//! read, an exposure `e` in `[0, 1]` (0 = the recommended value, 1 = the worst;
//! some checks have partial steps, e.g. `fs.suid_dumpable=2` is 0.5).
//! Checks whose value is unknown are left out of both sums:
//!
//! ```text
//! score = 10 × Σ(w·e) / Σ(w)      over checks with a known value
//! ```
//!
//! rounded to one decimal, so 0.0 is a fully hardened host and 10.0 one where
//! every known check is at its worst; with no known check the score is 10.0
//! (nothing could be vouched for). [`Exposure::known_weight`] against
//! [`Exposure::total_weight`] says how much of the baseline the score covers
//! (run as root for full coverage). The labels follow systemd-analyze's
//! thresholds: below 5.0 `OK`, below 7.5 `MEDIUM`, below 9.0 `EXPOSED`,
//! otherwise `UNSAFE`.
//!
//! # Readiness
//!
//! [`Feature::SANDBOX`] and the other lists name what bulkhead's sandboxes
//! need; [`Report::readiness`] says which of them the host lacks, and
//! [`Report::require`] turns that into a [`HostNotReady`] error for `apply`.

mod cgroup;
mod features;
#[cfg(test)]
mod fixture;
mod hardening;
mod host;
mod kconfig;
mod render;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use cgroup::{CgroupInfo, CgroupMode, CgroupMount, CgroupVersion, ControllerState};
pub use hardening::{Exposure, ExposureLabel, Hardening, HardeningCheck, Verdict};
pub use host::{FakeKernel, HostPaths, KernelProbe, LandlockProbe, LiveKernel};

/// How far the host provides a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present and usable as bulkhead needs it.
    Ok,
    /// Present with a gap (older ABI, weaker semantics, missing tool).
    Degraded,
    /// Not there.
    Missing,
    /// Could not be determined (usually: needs root).
    Unknown,
}

impl Status {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Missing => "missing",
            Status::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An isolation feature of the host that bulkhead uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    /// A mounted cgroup hierarchy (v1, v2 or hybrid).
    Cgroups,
    /// The `cpu` controller.
    CpuController,
    /// CPU accounting (`cpuacct` on v1; always on in v2).
    CpuacctController,
    /// The `memory` controller.
    MemoryController,
    /// The `pids` controller.
    PidsController,
    /// Block I/O control (`blkio` on v1, `io` on v2).
    IoController,
    /// The `cpuset` controller.
    CpusetController,
    /// Freezing (`freezer` on v1, `cgroup.freeze` in v2).
    FreezerController,
    /// Swap counted against memory limits.
    SwapAccounting,
    /// User namespaces (`user.max_user_namespaces` > 0).
    UserNamespaces,
    /// Whether unprivileged users may create user namespaces.
    UnprivilegedUserNamespaces,
    /// seccomp filter mode and the actions bulkhead's profiles use.
    Seccomp,
    /// The Landlock LSM.
    Landlock,
    /// `nf_tables` in the kernel.
    NftablesKernel,
    /// The `nft` binary.
    NftablesTool,
    /// `/dev/loop-control`.
    LoopDevices,
    /// ext4 encryption (fscrypt) in the kernel.
    Ext4Encryption,
    /// `mkfs.ext4` able to create encrypted filesystems.
    Ext4Tools,
    /// The `tc` binary.
    TrafficControl,
    /// The qdiscs bulkhead shapes with (htb, tbf, ingress).
    Qdiscs,
    /// The `ip` binary (iproute2).
    Iproute2,
}

impl Feature {
    /// Every feature, in report order.
    pub const ALL: &'static [Feature] = &[
        Feature::Cgroups,
        Feature::CpuController,
        Feature::CpuacctController,
        Feature::MemoryController,
        Feature::PidsController,
        Feature::IoController,
        Feature::CpusetController,
        Feature::FreezerController,
        Feature::SwapAccounting,
        Feature::UserNamespaces,
        Feature::UnprivilegedUserNamespaces,
        Feature::Seccomp,
        Feature::Landlock,
        Feature::NftablesKernel,
        Feature::NftablesTool,
        Feature::LoopDevices,
        Feature::Ext4Encryption,
        Feature::Ext4Tools,
        Feature::TrafficControl,
        Feature::Qdiscs,
        Feature::Iproute2,
    ];

    /// What every tenant sandbox needs, whatever its profile: resource
    /// limits, user namespaces and the tenant firewall.
    pub const SANDBOX: &'static [Feature] = &[
        Feature::Cgroups,
        Feature::CpuController,
        Feature::MemoryController,
        Feature::PidsController,
        Feature::UserNamespaces,
        Feature::NftablesKernel,
        Feature::NftablesTool,
    ];

    /// Added by the confining profiles (`restricted`, `baseline`).
    pub const CONFINEMENT: &'static [Feature] = &[Feature::Seccomp, Feature::Landlock];

    /// Added by tenants with `storage.encrypted`.
    pub const ENCRYPTED_STORAGE: &'static [Feature] = &[
        Feature::LoopDevices,
        Feature::Ext4Encryption,
        Feature::Ext4Tools,
    ];

    /// Added by tenants with an egress bandwidth quota.
    pub const EGRESS_SHAPING: &'static [Feature] = &[Feature::TrafficControl, Feature::Qdiscs];

    /// Added by tenants with an io bps/iops quota.
    pub const IO_LIMITS: &'static [Feature] = &[Feature::IoController];

    /// Short human name, e.g. "cgroup memory controller".
    pub fn title(self) -> &'static str {
        match self {
            Feature::Cgroups => "cgroups",
            Feature::CpuController => "cgroup cpu controller",
            Feature::CpuacctController => "cgroup cpu accounting",
            Feature::MemoryController => "cgroup memory controller",
            Feature::PidsController => "cgroup pids controller",
            Feature::IoController => "cgroup io controller",
            Feature::CpusetController => "cgroup cpuset controller",
            Feature::FreezerController => "cgroup freezer",
            Feature::SwapAccounting => "memory swap accounting",
            Feature::UserNamespaces => "user namespaces",
            Feature::UnprivilegedUserNamespaces => "unprivileged user namespaces",
            Feature::Seccomp => "seccomp",
            Feature::Landlock => "landlock",
            Feature::NftablesKernel => "nftables (kernel)",
            Feature::NftablesTool => "nftables (nft)",
            Feature::LoopDevices => "loop devices",
            Feature::Ext4Encryption => "ext4 encryption",
            Feature::Ext4Tools => "mkfs.ext4",
            Feature::TrafficControl => "tc",
            Feature::Qdiscs => "tc qdiscs",
            Feature::Iproute2 => "ip (iproute2)",
        }
    }

    /// What bulkhead uses the feature for.
    pub fn needed_for(self) -> &'static str {
        match self {
            Feature::Cgroups => "per-tenant resource limits and accounting",
            Feature::CpuController => "cpu weight (primary knob) and cpu quota",
            Feature::CpuacctController => "per-tenant cpu usage",
            Feature::MemoryController => "memory limits that contain a runaway tenant",
            Feature::PidsController => "process count limits (fork bombs)",
            Feature::IoController => "io bps/iops quotas",
            Feature::CpusetController => "pinning tenants to cpus",
            Feature::FreezerController => "suspending tenants and killing them atomically",
            Feature::SwapAccounting => "memory limits that swap cannot bypass",
            Feature::UserNamespaces => {
                "per-tenant uid/gid ranges (root in the sandbox is nobody outside)"
            }
            Feature::UnprivilegedUserNamespaces => {
                "nothing when bulkhead runs as root (an attack surface, see hardening)"
            }
            Feature::Seccomp => "syscall filters of the sandbox profiles",
            Feature::Landlock => "filesystem and network confinement without root",
            Feature::NftablesKernel => "the tenant firewall (one table, sets and verdict maps)",
            Feature::NftablesTool => "loading the tenant firewall (nft -j / nft -f)",
            Feature::LoopDevices => "size-limited per-tenant volumes",
            Feature::Ext4Encryption => "fscrypt-encrypted tenant volumes (crypto-shred on delete)",
            Feature::Ext4Tools => "creating tenant volumes with -O encrypt",
            Feature::TrafficControl => "egress bandwidth quotas",
            Feature::Qdiscs => "egress shaping (htb/tbf) and ingress policing",
            Feature::Iproute2 => {
                "inspecting tenant networks (ip netns); bulkhead itself speaks netlink"
            }
        }
    }
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.title())
    }
}

/// One feature's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureCheck {
    /// Which feature.
    pub feature: Feature,
    /// How far the host provides it.
    pub status: Status,
    /// What was seen, e.g. "v1 at /sys/fs/cgroup/memory" or "ABI 7".
    pub observed: String,
    /// What bulkhead needs it for (same as [`Feature::needed_for`]).
    pub needed_for: &'static str,
    /// What to do about a status other than ok, or a caveat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl FeatureCheck {
    pub(crate) fn new(feature: Feature, status: Status, observed: impl Into<String>) -> Self {
        Self {
            feature,
            status,
            observed: observed.into(),
            needed_for: feature.needed_for(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Everything `bulkhead doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `kernel.osrelease`, when readable.
    pub kernel_release: Option<String>,
    /// Cgroup layout: mode, mounts and controllers.
    pub cgroup: CgroupInfo,
    /// One check per [`Feature`], in [`Feature::ALL`] order.
    pub features: Vec<FeatureCheck>,
    /// The hardening baseline and its exposure score.
    pub hardening: Hardening,
}

/// Which of a list of required features the host lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Known to be absent.
    pub missing: Vec<Feature>,
    /// Present with a gap; usable.
    pub degraded: Vec<Feature>,
    /// Could not be determined (not counted as missing).
    pub unknown: Vec<Feature>,
}

impl Readiness {
    /// True when nothing required is known to be missing.
    pub fn is_ready(&self) -> bool {
        self.missing.is_empty()
    }
}

/// The host lacks features a command requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host lacks {}, see `bulkhead doctor`", join_titles(.missing))]
pub struct HostNotReady {
    /// The missing features.
    pub missing: Vec<Feature>,
}

fn join_titles(features: &[Feature]) -> String {
    features
        .iter()
        .map(|f| f.title())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    /// The check for `feature`.
    pub fn feature(&self, feature: Feature) -> Option<&FeatureCheck> {
        self.features.iter().find(|c| c.feature == feature)
    }

    /// Sorts `required` by status. A feature without a check counts as unknown.
    pub fn readiness(&self, required: &[Feature]) -> Readiness {
        let mut readiness = Readiness::default();
        for &feature in required {
            let bucket = match self.feature(feature).map(|c| c.status) {
                Some(Status::Ok) => continue,
                Some(Status::Degraded) => &mut readiness.degraded,
                Some(Status::Missing) => &mut readiness.missing,
                Some(Status::Unknown) | None => &mut readiness.unknown,
            };
            if !bucket.contains(&feature) {
                bucket.push(feature);
            }
        }
        readiness
    }

    /// Whether nothing in `required` is missing.
    pub fn is_ready_for(&self, required: &[Feature]) -> bool {
        self.readiness(required).is_ready()
    }

    /// `Ok` when nothing in `required` is missing, else the missing ones.
    pub fn require(&self, required: &[Feature]) -> Result<(), HostNotReady> {
        let readiness = self.readiness(required);
        if readiness.is_ready() {
            Ok(())
        } else {
            Err(HostNotReady {
                missing: readiness.missing,
            })
        }
    }

    /// Count of feature checks per status, in [`Status`] order.
    pub fn status_counts(&self) -> [(Status, usize); 4] {
        [
            Status::Ok,
            Status::Degraded,
            Status::Missing,
            Status::Unknown,
        ]
        .map(|s| (s, self.features.iter().filter(|c| c.status == s).count()))
    }
}

/// Inspects the host. Read-only; never fails: what cannot be read is reported
/// as unknown.
pub fn run(paths: &HostPaths, kernel: &dyn KernelProbe) -> Report {
    let host = host::Host::load(paths, kernel);
    let cgroup = cgroup::inspect(&host);
    let mut features = cgroup::checks(&host, &cgroup);
    features.extend(features::checks(&host, kernel));
    features.sort_by_key(|c| Feature::ALL.iter().position(|f| *f == c.feature));
    Report {
        kernel_release: host.sysctl("kernel.osrelease").value().map(str::to_owned),
        hardening: hardening::inspect(&host),
        cgroup,
        features,
    }
}

/// [`run`] on the running host.
pub fn run_system() -> Report {
    run(&HostPaths::system(), &LiveKernel)
}
