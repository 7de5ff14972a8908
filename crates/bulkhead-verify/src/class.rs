//! What a probe row is about: its class, who it targets, what was expected
//! and how it came out.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A probe class: a family of attempts to cross one kind of boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeClass {
    /// Reaching other tenants, the host and the metadata address over the
    /// network, judged against the policy engine's tenant matrix (see
    /// [`crate::network`]).
    Network,
    /// Seeing, signalling or tracing other tenants' and the host's processes;
    /// leaks through `/proc` and `/sys`.
    Processes,
    /// Reaching other tenants' volumes and the host's files and devices.
    Filesystem,
    /// SysV IPC, POSIX message queues, abstract and host unix sockets.
    Ipc,
    /// Capabilities, set-id, new namespaces, seccomp, keys, sysctl, dmesg.
    Privilege,
    /// Memory, pids, disk and CPU stay within a tenant's quota and do not hurt
    /// other tenants.
    Resources,
}

impl ProbeClass {
    /// Every class, in report order.
    pub const ALL: [ProbeClass; 6] = [
        ProbeClass::Network,
        ProbeClass::Processes,
        ProbeClass::Filesystem,
        ProbeClass::Ipc,
        ProbeClass::Privilege,
        ProbeClass::Resources,
    ];

    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeClass::Network => "network",
            ProbeClass::Processes => "processes",
            ProbeClass::Filesystem => "filesystem",
            ProbeClass::Ipc => "ipc",
            ProbeClass::Privilege => "privilege",
            ProbeClass::Resources => "resources",
        }
    }

    /// Parses [`ProbeClass::as_str`].
    pub fn parse(name: &str) -> Option<ProbeClass> {
        ProbeClass::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ProbeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whom an attempt is aimed at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Target {
    /// The probing tenant itself (positive controls, own hardening).
    Own,
    /// The host (its processes, files, devices, kernel).
    Host,
    /// Another tenant.
    Tenant(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Own => f.write_str("self"),
            Target::Host => f.write_str("host"),
            Target::Tenant(name) => f.write_str(name),
        }
    }
}

/// What the isolation model says should happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// The attempt must fail; if it works, that is a leak.
    Denied,
    /// The attempt must work; if it fails, that is an outage.
    Allowed,
    /// Recorded, not judged (e.g. capabilities of a privileged tenant).
    Observed,
    /// A flow the policy engine allows for some workloads of a tenant only,
    /// which the firewall drops on purpose (it cannot tell workloads of one
    /// tenant apart; `plan` reports it as narrowed): it must not get
    /// through; if it does, the firewall is wider than its plan (a leak).
    Narrowed,
}

/// How a row came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// As expected.
    Pass,
    /// Something denied worked.
    Leak,
    /// Something allowed failed (or the probe could not run).
    Outage,
    /// Not judged (observed only, or could not be attempted meaningfully).
    Skipped,
    /// Dropped as the firewall's plan narrows it ([`Expected::Narrowed`]):
    /// neither a pass nor an outage.
    Narrowed,
}

impl Verdict {
    /// Judges an attempt: whether it `worked` against what was `expected`.
    pub fn judge(expected: Expected, worked: bool) -> Verdict {
        match (expected, worked) {
            (Expected::Denied, false) | (Expected::Allowed, true) => Verdict::Pass,
            (Expected::Denied | Expected::Narrowed, true) => Verdict::Leak,
            (Expected::Narrowed, false) => Verdict::Narrowed,
            (Expected::Allowed, false) => Verdict::Outage,
            (Expected::Observed, _) => Verdict::Skipped,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Leak => "leak",
            Verdict::Outage => "outage",
            Verdict::Skipped => "skipped",
            Verdict::Narrowed => "narrowed",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrowed_flow_is_neither_a_pass_nor_an_outage_and_leaks_if_it_gets_through() {
        assert_eq!(Verdict::judge(Expected::Narrowed, false), Verdict::Narrowed);
        assert_eq!(Verdict::judge(Expected::Narrowed, true), Verdict::Leak);
        assert_eq!(Verdict::judge(Expected::Allowed, false), Verdict::Outage);
        assert_eq!(Verdict::judge(Expected::Denied, true), Verdict::Leak);
    }
}
