//! Feature checks other than cgroups: namespaces, seccomp, Landlock,
//! nftables, loop + ext4 encryption, tc and iproute2.

use super::host::{Fact, Host, KernelProbe, LandlockProbe, Presence, binary_version};
use super::{Feature, FeatureCheck, Status};

pub(crate) fn checks(host: &Host<'_>, kernel: &dyn KernelProbe) -> Vec<FeatureCheck> {
    let mut out = vec![
        user_namespaces(host),
        unprivileged_user_namespaces(host),
        seccomp(host),
        landlock(host, kernel.landlock()),
        nftables_kernel(host),
    ];
    out.push(tool(
        host,
        Feature::NftablesTool,
        "nft",
        "--version",
        "install nftables (apt-get install nftables)",
    ));
    out.push(loop_devices(host));
    out.push(ext4_encryption(host));
    out.push(ext4_tools(host));
    out.push(tool(
        host,
        Feature::TrafficControl,
        "tc",
        "-V",
        "install iproute2 (apt-get install iproute2)",
    ));
    out.push(qdiscs(host));
    out.push(tool(
        host,
        Feature::Iproute2,
        "ip",
        "-V",
        "install iproute2 (apt-get install iproute2)",
    ));
    out
}

/// Whether unprivileged users may create user namespaces, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnprivilegedUserns {
    /// `Some(true)` allowed, `Some(false)` restricted, `None` unknown.
    pub(crate) allowed: Option<bool>,
    /// What decided it, e.g. "kernel.unprivileged_userns_clone=0".
    pub(crate) observed: String,
    /// The sysctl that restricts them on this kernel, if any.
    pub(crate) knob: Option<&'static str>,
}

pub(crate) fn unprivileged_userns(host: &Host<'_>) -> UnprivilegedUserns {
    let max = host.sysctl("user.max_user_namespaces");
    if max.int() == Some(0) {
        return UnprivilegedUserns {
            allowed: Some(false),
            observed: "user.max_user_namespaces=0 (none at all)".to_owned(),
            knob: None,
        };
    }
    let debian = host.sysctl("kernel.unprivileged_userns_clone");
    let apparmor = host.sysctl("kernel.apparmor_restrict_unprivileged_userns");
    let knob = match (&debian, &apparmor) {
        (Fact::Absent, Fact::Absent) => None,
        (Fact::Absent, _) => Some("kernel.apparmor_restrict_unprivileged_userns"),
        _ => Some("kernel.unprivileged_userns_clone"),
    };
    if debian.int() == Some(0) {
        return UnprivilegedUserns {
            allowed: Some(false),
            observed: "restricted (kernel.unprivileged_userns_clone=0)".to_owned(),
            knob,
        };
    }
    if apparmor.int() == Some(1) {
        return UnprivilegedUserns {
            allowed: Some(false),
            observed: "restricted by AppArmor (kernel.apparmor_restrict_unprivileged_userns=1)"
                .to_owned(),
            knob,
        };
    }
    let unreadable = [&max, &debian, &apparmor]
        .into_iter()
        .find(|f| matches!(f, Fact::Denied | Fact::Failed(_)));
    if let Some(fact) = unreadable {
        return UnprivilegedUserns {
            allowed: None,
            observed: host.unreadable(fact),
            knob,
        };
    }
    if matches!(max, Fact::Absent) {
        return UnprivilegedUserns {
            allowed: None,
            observed: "no user.max_user_namespaces".to_owned(),
            knob,
        };
    }
    let why = match knob {
        Some(k) => format!("allowed ({k} permits)"),
        None => "allowed (no restricting sysctl on this kernel)".to_owned(),
    };
    UnprivilegedUserns {
        allowed: Some(true),
        observed: why,
        knob,
    }
}

fn user_namespaces(host: &Host<'_>) -> FeatureCheck {
    let f = Feature::UserNamespaces;
    match host.sysctl("user.max_user_namespaces") {
        Fact::Value(v) => match v.parse::<u64>() {
            Ok(0) => FeatureCheck::new(f, Status::Missing, "user.max_user_namespaces=0")
                .hint("sysctl -w user.max_user_namespaces=15000"),
            Ok(n) => FeatureCheck::new(f, Status::Ok, format!("user.max_user_namespaces={n}")),
            Err(_) => FeatureCheck::new(f, Status::Unknown, format!("unparsable: {v}")),
        },
        Fact::Absent => FeatureCheck::new(f, Status::Missing, "no user.max_user_namespaces")
            .hint("boot a kernel with CONFIG_USER_NS"),
        other => FeatureCheck::new(f, Status::Unknown, host.unreadable(&other)),
    }
}

fn unprivileged_user_namespaces(host: &Host<'_>) -> FeatureCheck {
    let u = unprivileged_userns(host);
    // Informational: bulkhead (root) does not need them; hardening scores them.
    let status = match u.allowed {
        Some(_) => Status::Ok,
        None => Status::Unknown,
    };
    FeatureCheck::new(Feature::UnprivilegedUserNamespaces, status, u.observed)
}

/// Seccomp actions the sandbox profiles use.
const SECCOMP_ACTIONS_NEEDED: &[&str] = &["kill_process", "errno", "allow"];
/// Seccomp actions that are nice to have (supervisor, audit mode).
const SECCOMP_ACTIONS_WANTED: &[&str] = &["user_notif", "log"];

fn seccomp(host: &Host<'_>) -> FeatureCheck {
    let f = Feature::Seccomp;
    let status = host.proc("self/status");
    let mode = match &status {
        Fact::Value(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(|v| v.trim().to_owned()),
        other => return FeatureCheck::new(f, Status::Unknown, host.unreadable(other)),
    };
    let Some(mode) = mode else {
        return FeatureCheck::new(f, Status::Missing, "no Seccomp field in /proc/self/status")
            .hint("boot a kernel with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER");
    };
    let own = match mode.as_str() {
        "0" => "doctor unfiltered",
        "1" => "doctor in strict mode",
        "2" => "doctor itself filtered",
        _ => "doctor mode unknown",
    };
    match host.sysctl("kernel.seccomp.actions_avail") {
        Fact::Value(actions) => {
            let have: Vec<&str> = actions.split_whitespace().collect();
            let lacking: Vec<&str> = SECCOMP_ACTIONS_NEEDED
                .iter()
                .chain(SECCOMP_ACTIONS_WANTED)
                .copied()
                .filter(|a| !have.contains(a))
                .collect();
            let observed = format!("filter; actions: {} ({own})", have.join(" "));
            if lacking.is_empty() {
                FeatureCheck::new(f, Status::Ok, observed)
            } else {
                let status = if lacking.iter().any(|a| SECCOMP_ACTIONS_NEEDED.contains(a)) {
                    Status::Missing
                } else {
                    Status::Degraded
                };
                FeatureCheck::new(f, status, observed).hint(format!(
                    "kernel lacks seccomp actions: {}",
                    lacking.join(", ")
                ))
            }
        }
        Fact::Absent => FeatureCheck::new(f, Status::Missing, format!("strict mode only ({own})"))
            .hint("boot a kernel with CONFIG_SECCOMP_FILTER"),
        other => FeatureCheck::new(
            f,
            Status::Unknown,
            format!("actions_avail {} ({own})", host.unreadable(&other)),
        ),
    }
}

/// Lowest Landlock ABI with everything bulkhead's profiles use
/// (4 adds TCP bind/connect rules; 6 adds signal and abstract-socket scoping).
const LANDLOCK_ABI_WANTED: u32 = 6;

fn landlock(host: &Host<'_>, probe: LandlockProbe) -> FeatureCheck {
    let f = Feature::Landlock;
    let lsm = host.sys("kernel/security/lsm");
    let lsm_note = match &lsm {
        Fact::Value(list) => format!("; lsm: {list}"),
        _ => String::new(),
    };
    match probe {
        LandlockProbe::Abi(abi) if abi >= LANDLOCK_ABI_WANTED => {
            FeatureCheck::new(f, Status::Ok, format!("ABI {abi}{lsm_note}"))
        }
        LandlockProbe::Abi(abi) => FeatureCheck::new(f, Status::Degraded, format!("ABI {abi}{lsm_note}"))
            .hint(format!(
                "ABI {LANDLOCK_ABI_WANTED} or later (kernel 6.12+) adds network and scope rules; older ABIs confine the filesystem only"
            )),
        LandlockProbe::NotBuilt => FeatureCheck::new(f, Status::Missing, "not in this kernel (ENOSYS)")
            .hint("boot a kernel with CONFIG_SECURITY_LANDLOCK"),
        LandlockProbe::Disabled => FeatureCheck::new(
            f,
            Status::Missing,
            format!("built in, not enabled (EOPNOTSUPP){lsm_note}"),
        )
        .hint("add landlock to lsm= on the kernel command line"),
        LandlockProbe::Error(errno) => FeatureCheck::new(
            f,
            Status::Unknown,
            format!("{}{lsm_note}", std::io::Error::from_raw_os_error(errno)),
        ),
    }
}

fn nftables_kernel(host: &Host<'_>) -> FeatureCheck {
    let f = Feature::NftablesKernel;
    let presence = host.component("nf_tables", "NF_TABLES");
    match presence.available() {
        Some(true) => {
            FeatureCheck::new(f, Status::Ok, format!("nf_tables {}", presence.describe()))
        }
        Some(false) => FeatureCheck::new(f, Status::Missing, "nf_tables not built")
            .hint("boot a kernel with CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET"),
        None => {
            let netfilter = host.paths.proc.join("net/netfilter").exists();
            let observed = if netfilter {
                "netfilter present, nf_tables not visible (no /proc/config.gz)"
            } else {
                "not visible"
            };
            FeatureCheck::new(f, Status::Unknown, observed).hint("as root: nft list tables")
        }
    }
}

/// A binary on PATH and the first line of its version output.
fn tool(host: &Host<'_>, feature: Feature, name: &str, flag: &str, install: &str) -> FeatureCheck {
    match host.paths.find_binary(name) {
        Some(path) => {
            let version =
                binary_version(&path, flag).unwrap_or_else(|| "version unknown".to_owned());
            FeatureCheck::new(
                feature,
                Status::Ok,
                format!("{} ({version})", path.display()),
            )
        }
        None => {
            FeatureCheck::new(feature, Status::Missing, format!("no {name} on PATH")).hint(install)
        }
    }
}

fn loop_devices(host: &Host<'_>) -> FeatureCheck {
    let f = Feature::LoopDevices;
    let control = host.paths.dev.join("loop-control");
    match std::fs::symlink_metadata(&control) {
        Ok(_) => FeatureCheck::new(f, Status::Ok, control.display().to_string()),
        Err(e) => match Fact::from_error(&e) {
            Fact::Absent => {
                let presence = host.component("loop", "BLK_DEV_LOOP");
                let check = FeatureCheck::new(
                    f,
                    Status::Missing,
                    format!("no {} (loop {})", control.display(), presence.describe()),
                );
                match presence {
                    Presence::Loadable => check.hint("modprobe loop"),
                    _ => check.hint("boot a kernel with CONFIG_BLK_DEV_LOOP"),
                }
            }
            other => FeatureCheck::new(f, Status::Unknown, host.unreadable(&other)),
        },
    }
}

fn ext4_encryption(host: &Host<'_>) -> FeatureCheck {
    let f = Feature::Ext4Encryption;
    let features = host.paths.sys.join("fs/ext4/features");
    if features.join("encryption").exists() {
        FeatureCheck::new(f, Status::Ok, "ext4 encryption feature present")
    } else if features.is_dir() {
        FeatureCheck::new(f, Status::Missing, "ext4 without encryption")
            .hint("boot a kernel with CONFIG_FS_ENCRYPTION")
    } else {
        let presence = host.component("ext4", "EXT4_FS");
        match presence {
            Presence::Loadable => FeatureCheck::new(f, Status::Unknown, "ext4 module not loaded")
                .hint("modprobe ext4, then run doctor again"),
            _ => FeatureCheck::new(f, Status::Missing, "no ext4 in this kernel")
                .hint("boot a kernel with CONFIG_EXT4_FS and CONFIG_FS_ENCRYPTION"),
        }
    }
}

/// e2fsprogs learnt `-O encrypt` in 1.43.
fn ext4_tools(host: &Host<'_>) -> FeatureCheck {
    let f = Feature::Ext4Tools;
    let Some(path) = host.paths.find_binary("mkfs.ext4") else {
        return FeatureCheck::new(f, Status::Missing, "no mkfs.ext4 on PATH")
            .hint("install e2fsprogs (apt-get install e2fsprogs)");
    };
    let version = binary_version(&path, "-V");
    let observed = format!(
        "{} ({})",
        path.display(),
        version.as_deref().unwrap_or("version unknown")
    );
    match version.as_deref().and_then(e2fsprogs_version) {
        Some(v) if v >= (1, 43) => FeatureCheck::new(f, Status::Ok, observed),
        Some(_) => FeatureCheck::new(f, Status::Degraded, observed)
            .hint("e2fsprogs 1.43 or later is needed for -O encrypt"),
        None => FeatureCheck::new(f, Status::Ok, observed),
    }
}

/// `mke2fs 1.47.0 (5-Feb-2023)` → (1, 47).
fn e2fsprogs_version(line: &str) -> Option<(u32, u32)> {
    let v = line.split_whitespace().nth(1)?;
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// (module, kernel config, role) of the qdiscs bulkhead shapes with.
const QDISCS: &[(&str, &str, bool)] = &[
    ("sch_htb", "NET_SCH_HTB", true),
    ("sch_tbf", "NET_SCH_TBF", true),
    ("sch_ingress", "NET_SCH_INGRESS", false),
];

fn qdiscs(host: &Host<'_>) -> FeatureCheck {
    let f = Feature::Qdiscs;
    let seen: Vec<(&str, bool, Presence)> = QDISCS
        .iter()
        .map(|&(module, config, shaping)| (module, shaping, host.component(module, config)))
        .collect();
    let observed = seen
        .iter()
        .map(|(m, _, p)| format!("{}: {}", m.trim_start_matches("sch_"), p.describe()))
        .collect::<Vec<_>>()
        .join(", ");
    let shaping_ok = seen
        .iter()
        .any(|(_, s, p)| *s && p.available() == Some(true));
    let shaping_known_absent = seen
        .iter()
        .filter(|(_, s, _)| *s)
        .all(|(_, _, p)| p.available() == Some(false));
    let ingress = seen
        .iter()
        .find(|(m, _, _)| *m == "sch_ingress")
        .map(|(_, _, p)| p.available());
    if shaping_ok && ingress == Some(Some(true)) {
        FeatureCheck::new(f, Status::Ok, observed)
    } else if shaping_ok {
        FeatureCheck::new(f, Status::Degraded, observed)
            .hint("no ingress qdisc: egress shaping works, ingress policing does not")
    } else if shaping_known_absent {
        FeatureCheck::new(f, Status::Missing, observed)
            .hint("boot a kernel with CONFIG_NET_SCH_HTB or CONFIG_NET_SCH_TBF")
    } else {
        FeatureCheck::new(f, Status::Unknown, observed)
            .hint("as root: tc qdisc add dev lo root handle 1: htb && tc qdisc del dev lo root")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_e2fsprogs_version() {
        assert_eq!(
            e2fsprogs_version("mke2fs 1.47.0 (5-Feb-2023)"),
            Some((1, 47))
        );
        assert_eq!(
            e2fsprogs_version("mke2fs 1.42.9 (4-Feb-2014)"),
            Some((1, 42))
        );
        assert_eq!(e2fsprogs_version("garbage"), None);
    }
}
