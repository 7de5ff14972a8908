//! The host hardening baseline and its exposure score (formula in the
//! [`doctor`](super) module docs).

use serde::Serialize;

use super::features::unprivileged_userns;
use super::host::{Fact, Host};

/// How a hardening check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// At the recommended value (exposure 0).
    Pass,
    /// Better than the worst, short of the recommendation.
    Partial,
    /// At the worst value (exposure 1).
    Fail,
    /// The value could not be read; not scored.
    Unknown,
}

impl Verdict {
    /// Lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Partial => "partial",
            Verdict::Fail => "fail",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One hardening check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HardeningCheck {
    /// Stable id: the sysctl name, or a path-like name (`cpu.smt`).
    pub id: &'static str,
    /// What it guards against, in a few words.
    pub title: &'static str,
    /// Weight in the score, 1–10.
    pub weight: u32,
    /// The value seen, or why it is unknown.
    pub observed: String,
    /// The recommended value.
    pub recommended: &'static str,
    /// How it came out.
    pub verdict: Verdict,
    /// 0.0 (recommended) to 1.0 (worst); `None` when unknown.
    pub exposure: Option<f64>,
    /// The exact change that fixes it, when it does not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

/// The score's label, with systemd-analyze's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ExposureLabel {
    /// Below 5.0.
    Ok,
    /// 5.0 to below 7.5.
    Medium,
    /// 7.5 to below 9.0.
    Exposed,
    /// 9.0 and above.
    Unsafe,
}

impl ExposureLabel {
    /// The label for a score.
    pub fn for_score(score: f64) -> Self {
        if score < 5.0 {
            ExposureLabel::Ok
        } else if score < 7.5 {
            ExposureLabel::Medium
        } else if score < 9.0 {
            ExposureLabel::Exposed
        } else {
            ExposureLabel::Unsafe
        }
    }

    /// Uppercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ExposureLabel::Ok => "OK",
            ExposureLabel::Medium => "MEDIUM",
            ExposureLabel::Exposed => "EXPOSED",
            ExposureLabel::Unsafe => "UNSAFE",
        }
    }
}

/// The overall exposure: 0.0 (best) to 10.0 (worst).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Exposure {
    /// `10 × Σ(w·e) / Σ(w)` over checks with a known value, one decimal.
    pub score: f64,
    /// OK / MEDIUM / EXPOSED / UNSAFE.
    pub label: ExposureLabel,
    /// Σ weight of the checks whose value was known.
    pub known_weight: u32,
    /// Σ weight of all checks.
    pub total_weight: u32,
}

impl Exposure {
    /// Scores a set of checks (see the module docs for the formula).
    pub fn of(checks: &[HardeningCheck]) -> Self {
        let total_weight = checks.iter().map(|c| c.weight).sum();
        let (known_weight, weighted) = checks
            .iter()
            .filter_map(|c| c.exposure.map(|e| (c.weight, e.clamp(0.0, 1.0))))
            .fold((0u32, 0.0f64), |(w, s), (cw, e)| {
                (w + cw, s + f64::from(cw) * e)
            });
        let score = if known_weight == 0 {
            10.0
        } else {
            (100.0 * weighted / f64::from(known_weight)).round() / 10.0
        };
        Self {
            score,
            label: ExposureLabel::for_score(score),
            known_weight,
            total_weight,
        }
    }
}

/// The hardening baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hardening {
    /// Every check, in a fixed order.
    pub checks: Vec<HardeningCheck>,
    /// The score over them.
    pub exposure: Exposure,
}

/// What an absent sysctl file means.
#[derive(Clone, Copy)]
enum IfAbsent {
    /// The feature it restricts does not exist: as good as recommended.
    Safe(&'static str),
    /// The protection it would give does not exist: worst, with this remedy.
    Exposed(&'static str, &'static str),
    /// Safe only when the kernel has no loadable modules.
    SafeWithoutModules,
    /// Nothing can be said.
    Unknown,
}

struct SysctlRule {
    name: &'static str,
    title: &'static str,
    weight: u32,
    recommended: &'static str,
    fix: &'static str,
    exposure: fn(i64) -> f64,
    absent: IfAbsent,
}

fn zero_is_bad(v: i64) -> f64 {
    if v == 0 { 1.0 } else { 0.0 }
}

/// 0 worst, 1 half, 2 recommended (protected_fifos, protected_regular).
fn two_is_best(v: i64) -> f64 {
    match v {
        i64::MIN..=0 => 1.0,
        1 => 0.5,
        _ => 0.0,
    }
}

fn perf_paranoid(v: i64) -> f64 {
    match v {
        i64::MIN..=-1 => 1.0,
        0 => 0.75,
        1 => 0.5,
        _ => 0.0,
    }
}

fn suid_dumpable(v: i64) -> f64 {
    match v {
        0 => 0.0,
        2 => 0.5,
        _ => 1.0,
    }
}

const SYSCTLS: &[SysctlRule] = &[
    SysctlRule {
        name: "kernel.unprivileged_bpf_disabled",
        title: "unprivileged eBPF (kernel attack surface)",
        weight: 8,
        recommended: "1 or 2",
        fix: "2",
        exposure: zero_is_bad,
        absent: IfAbsent::Safe("absent (no bpf syscall)"),
    },
    SysctlRule {
        name: "kernel.kptr_restrict",
        title: "kernel pointer leaks (KASLR bypass)",
        weight: 4,
        recommended: "1 or 2",
        fix: "1",
        exposure: zero_is_bad,
        absent: IfAbsent::Unknown,
    },
    SysctlRule {
        name: "kernel.dmesg_restrict",
        title: "kernel log readable by tenants",
        weight: 3,
        recommended: "1",
        fix: "1",
        exposure: zero_is_bad,
        absent: IfAbsent::Unknown,
    },
    SysctlRule {
        name: "kernel.yama.ptrace_scope",
        title: "ptrace of other processes",
        weight: 4,
        recommended: "1 or more",
        fix: "1",
        exposure: zero_is_bad,
        absent: IfAbsent::Exposed(
            "absent (Yama not enabled)",
            "boot a kernel with CONFIG_SECURITY_YAMA and yama in lsm=",
        ),
    },
    SysctlRule {
        name: "kernel.modules_disabled",
        title: "module loading after boot",
        weight: 3,
        recommended: "1",
        fix: "1",
        exposure: zero_is_bad,
        absent: IfAbsent::SafeWithoutModules,
    },
    SysctlRule {
        name: "kernel.kexec_load_disabled",
        title: "replacing the running kernel (kexec)",
        weight: 3,
        recommended: "1",
        fix: "1",
        exposure: zero_is_bad,
        absent: IfAbsent::Safe("absent (no kexec in this kernel)"),
    },
    SysctlRule {
        name: "kernel.perf_event_paranoid",
        title: "perf events for unprivileged users (side channels)",
        weight: 4,
        recommended: "2 or more",
        fix: "2",
        exposure: perf_paranoid,
        absent: IfAbsent::Safe("absent (no perf events)"),
    },
    SysctlRule {
        name: "fs.protected_symlinks",
        title: "symlink races in shared sticky directories",
        weight: 3,
        recommended: "1",
        fix: "1",
        exposure: zero_is_bad,
        absent: IfAbsent::Unknown,
    },
    SysctlRule {
        name: "fs.protected_hardlinks",
        title: "hardlinks to files one cannot read or write",
        weight: 3,
        recommended: "1",
        fix: "1",
        exposure: zero_is_bad,
        absent: IfAbsent::Unknown,
    },
    SysctlRule {
        name: "fs.protected_fifos",
        title: "FIFO spoofing in shared sticky directories",
        weight: 2,
        recommended: "2",
        fix: "2",
        exposure: two_is_best,
        absent: IfAbsent::Unknown,
    },
    SysctlRule {
        name: "fs.protected_regular",
        title: "regular-file spoofing in shared sticky directories",
        weight: 2,
        recommended: "2",
        fix: "2",
        exposure: two_is_best,
        absent: IfAbsent::Unknown,
    },
    SysctlRule {
        name: "fs.suid_dumpable",
        title: "core dumps of privileged processes",
        weight: 3,
        recommended: "0",
        fix: "0",
        exposure: suid_dumpable,
        absent: IfAbsent::Unknown,
    },
];

fn scored(
    id: &'static str,
    title: &'static str,
    weight: u32,
    recommended: &'static str,
    observed: String,
    exposure: Option<f64>,
    remedy: impl FnOnce() -> Option<String>,
) -> HardeningCheck {
    let verdict = match exposure {
        None => Verdict::Unknown,
        Some(e) if e <= 0.0 => Verdict::Pass,
        Some(e) if e >= 1.0 => Verdict::Fail,
        Some(_) => Verdict::Partial,
    };
    HardeningCheck {
        id,
        title,
        weight,
        observed,
        recommended,
        verdict,
        exposure,
        remedy: if matches!(verdict, Verdict::Partial | Verdict::Fail) {
            remedy()
        } else {
            None
        },
    }
}

fn sysctl_check(host: &Host<'_>, rule: &SysctlRule) -> HardeningCheck {
    let fact = host.sysctl(rule.name);
    let fix = || Some(format!("sysctl -w {}={}", rule.name, rule.fix));
    let (observed, exposure, remedy): (String, Option<f64>, Option<String>) = match &fact {
        Fact::Value(v) => match v.parse::<i64>() {
            Ok(n) => (v.clone(), Some((rule.exposure)(n)), fix()),
            Err(_) => (format!("unparsable: {v}"), None, None),
        },
        Fact::Absent => match rule.absent {
            IfAbsent::Safe(why) => (why.to_owned(), Some(0.0), None),
            IfAbsent::Exposed(why, remedy) => (why.to_owned(), Some(1.0), Some(remedy.to_owned())),
            IfAbsent::SafeWithoutModules => match host.modules_supported {
                Some(false) => (
                    "absent (no loadable module support)".to_owned(),
                    Some(0.0),
                    None,
                ),
                _ => ("absent".to_owned(), None, None),
            },
            IfAbsent::Unknown => ("absent".to_owned(), None, None),
        },
        other => (host.unreadable(other), None, None),
    };
    scored(
        rule.name,
        rule.title,
        rule.weight,
        rule.recommended,
        observed,
        exposure,
        || remedy,
    )
}

fn userns_check(host: &Host<'_>) -> HardeningCheck {
    let u = unprivileged_userns(host);
    let remedy = || {
        Some(match u.knob {
            Some(k @ "kernel.unprivileged_userns_clone") => format!("sysctl -w {k}=0"),
            Some(k) => format!("sysctl -w {k}=1"),
            None => "no sysctl restricts them on this kernel (user.max_user_namespaces=0 would \
                     also stop bulkhead); bulkhead's seccomp profiles deny unshare/clone of user \
                     namespaces inside sandboxes"
                .to_owned(),
        })
    };
    scored(
        "unprivileged-user-namespaces",
        "unprivileged user namespaces (kernel attack surface)",
        5,
        "restricted",
        u.observed.clone(),
        u.allowed.map(|a| if a { 1.0 } else { 0.0 }),
        remedy,
    )
}

fn sig_enforce_check(host: &Host<'_>) -> HardeningCheck {
    let fact = host.sys("module/module/parameters/sig_enforce");
    let (observed, exposure, remedy) = match &fact {
        Fact::Value(v) if v == "Y" || v == "1" => (v.clone(), Some(0.0), None),
        Fact::Value(v) => (
            v.clone(),
            Some(1.0),
            Some("boot with module.sig_enforce=1 on the kernel command line".to_owned()),
        ),
        Fact::Absent => match host.modules_supported {
            Some(false) => (
                "absent (no loadable module support)".to_owned(),
                Some(0.0),
                None,
            ),
            Some(true) => (
                "absent (kernel without module signing)".to_owned(),
                Some(1.0),
                Some("boot a kernel with CONFIG_MODULE_SIG_FORCE".to_owned()),
            ),
            None => ("absent".to_owned(), None, None),
        },
        other => (host.unreadable(other), None, None),
    };
    scored(
        "module.sig_enforce",
        "unsigned kernel modules",
        5,
        "Y",
        observed,
        exposure,
        || remedy,
    )
}

fn smt_check(host: &Host<'_>) -> HardeningCheck {
    let fact = host.sys("devices/system/cpu/smt/control");
    let exposure = match fact.value() {
        Some("on") => Some(1.0),
        Some("off" | "forceoff" | "notsupported" | "notimplemented") => Some(0.0),
        _ => None,
    };
    scored(
        "cpu.smt",
        "sibling hyperthreads shared across tenants (side channels)",
        4,
        "off or notsupported",
        host.unreadable(&fact),
        exposure,
        || Some("echo off > /sys/devices/system/cpu/smt/control (or boot with nosmt)".to_owned()),
    )
}

fn vulnerabilities_check(host: &Host<'_>) -> HardeningCheck {
    let dir = host.paths.sys.join("devices/system/cpu/vulnerabilities");
    let id = "cpu.vulnerabilities";
    let title = "unmitigated CPU vulnerabilities (cross-tenant leaks)";
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => {
            let observed = host.unreadable(&Fact::from_error(&e));
            return scored(id, title, 6, "0 vulnerable", observed, None, || None);
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let total = names.len();
    let vulnerable: Vec<&String> = names
        .iter()
        .filter(|n| {
            Fact::read(&dir.join(n.as_str()))
                .value()
                .is_some_and(|v| v.starts_with("Vulnerable"))
        })
        .collect();
    let exposure = match vulnerable.len() {
        0 => 0.0,
        1 => 0.5,
        _ => 1.0,
    };
    let mitigations_off = host
        .proc("cmdline")
        .value()
        .is_some_and(|c| c.split_whitespace().any(|a| a == "mitigations=off"));
    let mut observed = format!("{} of {total} vulnerable", vulnerable.len());
    if !vulnerable.is_empty() {
        let list: Vec<&str> = vulnerable.iter().map(|s| s.as_str()).collect();
        observed.push_str(&format!(": {}", list.join(", ")));
    }
    if mitigations_off {
        observed.push_str(" (mitigations=off)");
    }
    scored(
        id,
        title,
        6,
        "0 vulnerable",
        observed,
        Some(exposure),
        || {
            Some(if mitigations_off {
                "remove mitigations=off from the kernel command line".to_owned()
            } else {
                "update the kernel and CPU microcode; see /sys/devices/system/cpu/vulnerabilities"
                    .to_owned()
            })
        },
    )
}

fn lockdown_check(host: &Host<'_>) -> HardeningCheck {
    let fact = host.sys("kernel/security/lockdown");
    let (observed, exposure, remedy) = match &fact {
        Fact::Value(v) => {
            let selected = v
                .split_whitespace()
                .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')));
            match selected {
                Some("integrity" | "confidentiality") => (v.clone(), Some(0.0), None),
                Some(_) => (
                    v.clone(),
                    Some(1.0),
                    Some("echo integrity > /sys/kernel/security/lockdown (or boot with lockdown=integrity)".to_owned()),
                ),
                None => (format!("unparsable: {v}"), None, None),
            }
        }
        Fact::Absent => {
            let securityfs_mounted = std::fs::read_dir(host.paths.sys.join("kernel/security"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if securityfs_mounted {
                (
                    "absent (no lockdown LSM)".to_owned(),
                    Some(1.0),
                    Some(
                        "boot a kernel with CONFIG_SECURITY_LOCKDOWN_LSM and lockdown=integrity"
                            .to_owned(),
                    ),
                )
            } else {
                (
                    "unknown (securityfs not mounted: mount -t securityfs securityfs /sys/kernel/security)"
                        .to_owned(),
                    None,
                    None,
                )
            }
        }
        other => (host.unreadable(other), None, None),
    };
    scored(
        "kernel.lockdown",
        "root modifying the running kernel",
        3,
        "integrity",
        observed,
        exposure,
        || remedy,
    )
}

pub(crate) fn inspect(host: &Host<'_>) -> Hardening {
    let mut checks: Vec<HardeningCheck> = SYSCTLS.iter().map(|r| sysctl_check(host, r)).collect();
    checks.insert(4, userns_check(host));
    checks.insert(5, sig_enforce_check(host));
    checks.push(smt_check(host));
    checks.push(vulnerabilities_check(host));
    checks.push(lockdown_check(host));
    let exposure = Exposure::of(&checks);
    Hardening { checks, exposure }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(weight: u32, exposure: Option<f64>) -> HardeningCheck {
        scored("x", "x", weight, "x", String::new(), exposure, || None)
    }

    #[test]
    fn score_is_weighted_mean_of_known_checks() {
        let checks = [check(8, Some(1.0)), check(2, Some(0.0)), check(5, None)];
        let e = Exposure::of(&checks);
        assert_eq!(e.score, 8.0);
        assert_eq!(e.label, ExposureLabel::Exposed);
        assert_eq!((e.known_weight, e.total_weight), (10, 15));
    }

    #[test]
    fn score_bounds_and_labels() {
        assert_eq!(Exposure::of(&[check(3, Some(0.0))]).score, 0.0);
        assert_eq!(
            Exposure::of(&[check(3, Some(1.0))]).label,
            ExposureLabel::Unsafe
        );
        assert_eq!(Exposure::of(&[check(3, None)]).score, 10.0);
        assert_eq!(Exposure::of(&[]).score, 10.0);
        assert_eq!(ExposureLabel::for_score(4.9), ExposureLabel::Ok);
        assert_eq!(ExposureLabel::for_score(5.0), ExposureLabel::Medium);
        assert_eq!(ExposureLabel::for_score(7.5), ExposureLabel::Exposed);
        assert_eq!(ExposureLabel::for_score(9.0), ExposureLabel::Unsafe);
    }

    #[test]
    fn verdicts_follow_exposure() {
        assert_eq!(check(1, Some(0.0)).verdict, Verdict::Pass);
        assert_eq!(check(1, Some(0.5)).verdict, Verdict::Partial);
        assert_eq!(check(1, Some(1.0)).verdict, Verdict::Fail);
        assert_eq!(check(1, None).verdict, Verdict::Unknown);
    }

    #[test]
    fn step_functions() {
        assert_eq!(perf_paranoid(-1), 1.0);
        assert_eq!(perf_paranoid(1), 0.5);
        assert_eq!(perf_paranoid(3), 0.0);
        assert_eq!(two_is_best(1), 0.5);
        assert_eq!(suid_dumpable(2), 0.5);
        assert_eq!(suid_dumpable(1), 1.0);
    }
}
