//! Expectations: what each observation should have been, for the tenant's
//! declared profile. The probe reports; only this module judges.

use std::collections::BTreeMap;

use bulkhead_node::confine::seccomp::{Arch, SeccompProfile};
use bulkhead_spec::Profile;

use crate::class::{Expected, Target, Verdict};
use crate::probe::{Observation, errno_name};
use crate::report::Row;

/// Syscalls the declared profile denies, with the errno they must return.
pub(crate) fn denied_syscalls(profile: Profile) -> BTreeMap<String, i32> {
    let Some(arch) = Arch::host() else {
        return BTreeMap::new();
    };
    SeccompProfile::builtin(profile)
        .map(|p| {
            p.denied(arch)
                .map(|(name, rule)| (name.to_owned(), rule.errno.errno()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the attempt `id` is denied for `profile`, allowed, or only observed.
fn expectation(id: &str, target: &Target, profile: Profile) -> Expected {
    let hardened = profile != Profile::Privileged;
    let by_profile = if hardened {
        Expected::Denied
    } else {
        Expected::Observed
    };
    match id {
        "processes.proc-is-own" | "filesystem.write-own" => Expected::Allowed,
        // Landlock checks every file open, including the kernel's internal
        // mqueue file system, which no rule names: under restricted and
        // baseline a tenant cannot open even its own POSIX queues.
        "ipc.mqueue" if *target == Target::Own && hardened => Expected::Observed,
        "processes.uid-map" => Expected::Observed,
        _ if id.starts_with("ipc.") && *target == Target::Own => Expected::Allowed,
        _ if id.starts_with("privilege.caps.") => by_profile,
        // Seccomp, capabilities or Landlock keep these shut, and privileged
        // has none of them (`device-write`: Landlock alone).
        "privilege.userns"
        | "privilege.keyring"
        | "filesystem.mount"
        | "filesystem.device-write" => by_profile,
        _ => Expected::Denied,
    }
}

/// One observation (not a scan) as a row; `None` for a syscall the declared
/// profile does not deny.
pub(crate) fn row(
    tenant: &str,
    profile: Profile,
    denied: &BTreeMap<String, i32>,
    obs: &Observation,
) -> Option<Row> {
    let (expected, worked, observed) = if let Some(name) = obs.id.strip_prefix("privilege.syscall.")
    {
        let designed = *denied.get(name)?;
        let as_designed = obs.errno == Some(designed);
        (
            Expected::Denied,
            !as_designed,
            if as_designed {
                obs.detail.clone()
            } else {
                format!("{} (designed: {})", obs.detail, errno_name(designed))
            },
        )
    } else {
        (
            expectation(&obs.id, &obs.target, profile),
            obs.worked,
            obs.detail.clone(),
        )
    };
    let verdict = if obs.skipped {
        Verdict::Skipped
    } else {
        Verdict::judge(expected, worked)
    };
    Some(Row {
        class: obs.class,
        tenant: tenant.to_owned(),
        target: obs.target.clone(),
        id: obs.id.clone(),
        attempt: obs.what.clone(),
        expected,
        observed,
        verdict,
    })
}

/// A scan's rows: one per tenant whose marker could show up. `owners` maps
/// each marker (canary token, SysV key) to its tenant; `own_expected` says
/// whether the tenant's own marker must show (a positive control).
pub(crate) fn scan_rows(
    tenant: &str,
    obs: &Observation,
    owners: &BTreeMap<String, String>,
    peers: &[String],
    own_expected: bool,
) -> Vec<Row> {
    let found_of = |who: &str| {
        obs.found
            .iter()
            .filter(|m| owners.get(*m).is_some_and(|o| o == who))
            .count()
    };
    let mut rows = Vec::new();
    if own_expected {
        let n = found_of(tenant);
        rows.push(Row {
            class: obs.class,
            tenant: tenant.to_owned(),
            target: Target::Own,
            id: obs.id.clone(),
            attempt: format!("find own marker: {}", obs.what),
            expected: Expected::Allowed,
            observed: format!("{n} found"),
            verdict: Verdict::judge(Expected::Allowed, n > 0),
        });
    }
    let mut others: Vec<String> = peers.to_vec();
    for owner in obs.found.iter().filter_map(|m| owners.get(m)) {
        if owner != tenant && !others.contains(owner) {
            others.push(owner.clone());
        }
    }
    for other in others {
        let n = found_of(&other);
        rows.push(Row {
            class: obs.class,
            tenant: tenant.to_owned(),
            target: Target::Tenant(other.clone()),
            id: obs.id.clone(),
            attempt: format!("find {other}'s marker: {}", obs.what),
            expected: Expected::Denied,
            observed: format!("{n} found"),
            verdict: Verdict::judge(Expected::Denied, n > 0),
        });
    }
    rows
}

/// `(first, count)` of the host ids from a `uid_map` text.
pub(crate) fn id_range(uid_map: &str) -> Option<(u64, u64)> {
    let mut ranges = uid_map.lines().filter_map(|line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (f.len() == 3).then(|| (f[1], f[2]))
    });
    let first = ranges.next()?;
    Some(first)
}

/// Whether two `(first, count)` ranges share an id.
pub(crate) fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges_overlap_only_when_they_share_an_id() {
        let a = id_range("         0    1000000      65536\n").expect("range");
        assert_eq!(a, (1_000_000, 65536));
        assert!(overlap(a, a));
        assert!(!overlap(a, (1_065_536, 65536)));
        assert!(overlap(a, (1_065_535, 10)));
        assert!(!overlap(a, (0, 1_000_000)));
    }

    #[test]
    fn privileged_capabilities_are_observed_not_judged() {
        let t = Target::Own;
        assert_eq!(
            expectation("privilege.caps.CapBnd", &t, Profile::Privileged),
            Expected::Observed
        );
        assert_eq!(
            expectation("privilege.caps.CapBnd", &t, Profile::Restricted),
            Expected::Denied
        );
        assert_eq!(
            expectation("ipc.abstract-socket", &t, Profile::Restricted),
            Expected::Allowed
        );
        assert_eq!(
            expectation(
                "ipc.mqueue",
                &Target::Tenant("b".into()),
                Profile::Restricted
            ),
            Expected::Denied
        );
    }
}
