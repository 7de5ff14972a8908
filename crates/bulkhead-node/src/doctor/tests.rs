//! Whole reports from fake host trees.

use std::path::PathBuf;

use super::fixture::{FakeHost, HARDENED_SYSCTLS};
use super::*;

fn status(report: &Report, feature: Feature) -> Status {
    report
        .feature(feature)
        .unwrap_or_else(|| panic!("no check for {feature}"))
        .status
}

fn observed(report: &Report, feature: Feature) -> &str {
    &report.feature(feature).expect("check").observed
}

fn hardening<'r>(report: &'r Report, id: &str) -> &'r HardeningCheck {
    report
        .hardening
        .checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no hardening check {id}"))
}

#[test]
fn every_feature_is_checked_once_in_order() {
    let report = FakeHost::hybrid().report();
    let order: Vec<Feature> = report.features.iter().map(|c| c.feature).collect();
    assert_eq!(order, Feature::ALL);
}

#[test]
fn hybrid_host_uses_v1_controllers() {
    let report = FakeHost::hybrid().report();
    assert_eq!(report.kernel_release.as_deref(), Some("6.18.0-test"));
    assert_eq!(report.cgroup.mode, CgroupMode::Hybrid);
    let unified = report.cgroup.unified().expect("cgroup2 mount");
    assert_eq!(unified.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
    assert_eq!(unified.controllers, ["hugetlb"]);
    let memory = report.cgroup.controller("memory").expect("memory");
    assert_eq!(memory.version, Some(CgroupVersion::V1));
    assert_eq!(
        memory.mount_point,
        Some(PathBuf::from("/sys/fs/cgroup/memory"))
    );
    // cpu and cpuacct are separate mounts here.
    assert_eq!(
        report
            .cgroup
            .controller("cpuacct")
            .and_then(|c| c.mount_point.clone()),
        Some(PathBuf::from("/sys/fs/cgroup/cpuacct"))
    );
    // The named systemd hierarchy is recorded but carries no controller.
    assert!(
        report
            .cgroup
            .mounts
            .iter()
            .any(|m| m.name.as_deref() == Some("systemd"))
    );
    for f in [
        Feature::Cgroups,
        Feature::CpuController,
        Feature::CpuacctController,
        Feature::MemoryController,
        Feature::PidsController,
        Feature::CpusetController,
        Feature::FreezerController,
        Feature::SwapAccounting,
    ] {
        assert_eq!(status(&report, f), Status::Ok, "{f}");
    }
    assert!(observed(&report, Feature::Cgroups).starts_with("hybrid: 8 v1 hierarchies"));
    assert_eq!(status(&report, Feature::IoController), Status::Degraded);
    assert_eq!(
        observed(&report, Feature::SwapAccounting),
        "on (memory.memsw.*) (no swap configured)"
    );
}

#[test]
fn hybrid_host_kernel_components_come_from_sysfs_and_config() {
    let report = FakeHost::hybrid().report();
    assert_eq!(status(&report, Feature::NftablesKernel), Status::Ok);
    assert_eq!(
        observed(&report, Feature::NftablesKernel),
        "nf_tables built in"
    );
    assert_eq!(status(&report, Feature::Qdiscs), Status::Ok);
    assert_eq!(
        observed(&report, Feature::Qdiscs),
        "htb: built in, tbf: built in, ingress: built in"
    );
    // No /proc/modules: sig_enforce and modules_disabled do not apply.
    assert_eq!(
        hardening(&report, "module.sig_enforce").verdict,
        Verdict::Pass
    );
    assert_eq!(
        hardening(&report, "kernel.modules_disabled").verdict,
        Verdict::Pass
    );
    assert_eq!(
        hardening(&report, "kernel.kexec_load_disabled").verdict,
        Verdict::Pass
    );
    // Yama absent is a real gap.
    let yama = hardening(&report, "kernel.yama.ptrace_scope");
    assert_eq!(yama.verdict, Verdict::Fail);
    assert!(
        yama.remedy
            .as_deref()
            .is_some_and(|r| r.contains("CONFIG_SECURITY_YAMA"))
    );
    // securityfs is not mounted: lockdown unknown, not guessed.
    let lockdown = hardening(&report, "kernel.lockdown");
    assert_eq!(lockdown.verdict, Verdict::Unknown);
    assert!(lockdown.observed.contains("securityfs not mounted"));
}

#[test]
fn v2_host_reads_controllers_and_delegation() {
    let report = FakeHost::v2().report();
    assert_eq!(report.cgroup.mode, CgroupMode::V2);
    assert_eq!(
        report.cgroup.subtree_control.as_deref(),
        Some(&["cpu", "io", "memory", "pids"].map(String::from)[..])
    );
    let cpuset = report.cgroup.controller("cpuset").expect("cpuset");
    assert_eq!(cpuset.version, Some(CgroupVersion::V2));
    assert_eq!(cpuset.in_subtree_control, Some(false));
    assert!(
        report
            .feature(Feature::CpusetController)
            .and_then(|c| c.hint.as_ref())
            .is_some()
    );
    assert_eq!(
        report
            .cgroup
            .controller("io")
            .and_then(|c| c.in_subtree_control),
        Some(true)
    );
    // Core v2 features: no controller file, still available.
    assert_eq!(
        observed(&report, Feature::CpuacctController),
        "v2 core (cpu.stat) at /sys/fs/cgroup"
    );
    assert_eq!(status(&report, Feature::FreezerController), Status::Ok);
    assert_eq!(status(&report, Feature::IoController), Status::Ok);
    assert_eq!(status(&report, Feature::SwapAccounting), Status::Ok);
    assert!(observed(&report, Feature::Landlock).contains("lsm: lockdown,capability,landlock"));
    assert_eq!(
        observed(&report, Feature::NftablesKernel),
        "nf_tables loaded module"
    );
    // tbf and ingress are modules not yet loaded.
    assert!(observed(&report, Feature::Qdiscs).contains("tbf: module, loaded on first use"));
    assert!(report.is_ready_for(Feature::SANDBOX));
    assert!(report.is_ready_for(Feature::CONFINEMENT));
    assert!(report.is_ready_for(Feature::ENCRYPTED_STORAGE));
}

#[test]
fn v2_host_with_hardened_settings_scores_zero() {
    let report = FakeHost::v2().report();
    let e = report.hardening.exposure;
    let failing: Vec<_> = report
        .hardening
        .checks
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| (c.id, c.observed.clone()))
        .collect();
    assert!(failing.is_empty(), "{failing:?}");
    assert_eq!(e.score, 0.0);
    assert_eq!(e.label, ExposureLabel::Ok);
    assert_eq!(e.known_weight, e.total_weight);
    assert_eq!(
        observed(&report, Feature::UnprivilegedUserNamespaces),
        "restricted by AppArmor (kernel.apparmor_restrict_unprivileged_userns=1)"
    );
}

#[test]
fn v1_host_with_cpu_and_cpuacct_co_mounted() {
    let report = FakeHost::v1().report();
    assert_eq!(report.cgroup.mode, CgroupMode::V1);
    let cpu = report.cgroup.controller("cpu").expect("cpu");
    let cpuacct = report.cgroup.controller("cpuacct").expect("cpuacct");
    assert_eq!(
        cpu.mount_point,
        Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
    );
    assert_eq!(cpu.mount_point, cpuacct.mount_point);
    // The second mount of the memory hierarchy is not a new hierarchy.
    let memory_mounts = report
        .cgroup
        .mounts
        .iter()
        .filter(|m| m.controllers == ["memory"])
        .count();
    assert_eq!(memory_mounts, 1);
    assert_eq!(status(&report, Feature::SwapAccounting), Status::Degraded);
    assert!(observed(&report, Feature::Cgroups).starts_with("v1: 6 hierarchies"));
    // No kernel config, nothing in /proc/modules or /sys/module: unknown, not missing.
    assert_eq!(status(&report, Feature::NftablesKernel), Status::Unknown);
    assert_eq!(status(&report, Feature::Qdiscs), Status::Unknown);
    // Unknown is not missing: the host is not refused for it.
    let readiness = report.readiness(Feature::SANDBOX);
    assert!(readiness.is_ready());
    assert_eq!(readiness.unknown, [Feature::NftablesKernel]);
    // Modules exist but there is no signing.
    let sig = hardening(&report, "module.sig_enforce");
    assert_eq!(sig.verdict, Verdict::Fail);
    assert_eq!(sig.observed, "absent (kernel without module signing)");
}

#[test]
fn bare_host_lacks_features_and_says_what_to_do() {
    let mut host = FakeHost::bare();
    host.landlock = LandlockProbe::NotBuilt;
    let report = host.report();
    assert_eq!(report.cgroup.mode, CgroupMode::None);
    assert!(report.kernel_release.is_none());
    for f in [
        Feature::Cgroups,
        Feature::MemoryController,
        Feature::UserNamespaces,
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
    ] {
        let check = report.feature(f).expect("check");
        assert_eq!(check.status, Status::Missing, "{f}: {}", check.observed);
        assert!(
            check.hint.is_some() || f == Feature::MemoryController,
            "{f} has no hint"
        );
    }
    assert_eq!(
        observed(&report, Feature::MemoryController),
        "not in this kernel"
    );
    assert_eq!(
        observed(&report, Feature::UnprivilegedUserNamespaces),
        "user.max_user_namespaces=0 (none at all)"
    );
    let err = report
        .require(&[
            Feature::MemoryController,
            Feature::Landlock,
            Feature::Seccomp,
        ])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "host lacks cgroup memory controller, landlock, seccomp, see `bulkhead doctor`"
    );
}

#[test]
fn bare_host_is_unsafe() {
    let report = FakeHost::bare().report();
    let e = report.hardening.exposure;
    assert!(e.score >= 9.0, "score {}", e.score);
    assert_eq!(e.label, ExposureLabel::Unsafe);
    let smt = hardening(&report, "cpu.smt");
    assert_eq!(smt.verdict, Verdict::Fail);
    let vuln = hardening(&report, "cpu.vulnerabilities");
    assert_eq!(
        vuln.observed,
        "2 of 2 vulnerable: mds, spectre_v2 (mitigations=off)"
    );
    assert_eq!(
        vuln.remedy.as_deref(),
        Some("remove mitigations=off from the kernel command line")
    );
    let dmesg = hardening(&report, "kernel.dmesg_restrict");
    assert_eq!(
        dmesg.remedy.as_deref(),
        Some("sysctl -w kernel.dmesg_restrict=1")
    );
    // securityfs is mounted (lsm is there) but has no lockdown file.
    assert_eq!(
        hardening(&report, "kernel.lockdown").observed,
        "absent (no lockdown LSM)"
    );
}

#[test]
fn partial_values_score_between() {
    let host = FakeHost::v2();
    host.sysctl("fs.suid_dumpable", "2")
        .sysctl("kernel.perf_event_paranoid", "1");
    let report = host.report();
    assert_eq!(
        hardening(&report, "fs.suid_dumpable").verdict,
        Verdict::Partial
    );
    let perf = hardening(&report, "kernel.perf_event_paranoid");
    assert_eq!(perf.exposure, Some(0.5));
    assert_eq!(
        perf.remedy.as_deref(),
        Some("sysctl -w kernel.perf_event_paranoid=2")
    );
    let e = report.hardening.exposure;
    // (3·0.5 + 4·0.5) / total weight · 10
    let expected = (10.0 * 3.5 / f64::from(e.total_weight) * 10.0).round() / 10.0;
    assert_eq!(e.score, expected);
}

#[test]
fn unreadable_values_are_unknown_and_not_scored() {
    let host = FakeHost::v2();
    host.remove("proc/sys/kernel/dmesg_restrict")
        .dir("proc/sys/kernel/dmesg_restrict");
    let report = host.report();
    let dmesg = hardening(&report, "kernel.dmesg_restrict");
    assert_eq!(dmesg.verdict, Verdict::Unknown);
    assert!(
        dmesg.observed.starts_with("unknown ("),
        "{}",
        dmesg.observed
    );
    assert!(report.hardening.exposure.known_weight < report.hardening.exposure.total_weight);
    assert_eq!(report.hardening.exposure.score, 0.0);
}

#[test]
fn landlock_answers_map_to_statuses() {
    let cases = [
        (LandlockProbe::Abi(7), Status::Ok),
        (LandlockProbe::Abi(3), Status::Degraded),
        (LandlockProbe::NotBuilt, Status::Missing),
        (LandlockProbe::Disabled, Status::Missing),
        (LandlockProbe::Error(libc::EPERM), Status::Unknown),
    ];
    for (probe, expected) in cases {
        let mut host = FakeHost::v2();
        host.landlock = probe;
        assert_eq!(
            status(&host.report(), Feature::Landlock),
            expected,
            "{probe:?}"
        );
    }
}

#[test]
fn unprivileged_userns_restricted_by_debian_sysctl() {
    let host = FakeHost::v1();
    host.sysctl("kernel.unprivileged_userns_clone", "0");
    let report = host.report();
    let check = hardening(&report, "unprivileged-user-namespaces");
    assert_eq!(check.verdict, Verdict::Pass);

    host.sysctl("kernel.unprivileged_userns_clone", "1");
    let report = host.report();
    let check = hardening(&report, "unprivileged-user-namespaces");
    assert_eq!(check.verdict, Verdict::Fail);
    assert_eq!(
        check.remedy.as_deref(),
        Some("sysctl -w kernel.unprivileged_userns_clone=0")
    );
}

#[test]
fn seccomp_without_user_notif_is_degraded() {
    let host = FakeHost::v2();
    host.sysctl(
        "kernel.seccomp.actions_avail",
        "kill_process kill_thread trap errno trace allow",
    );
    let report = host.report();
    let check = report.feature(Feature::Seccomp).expect("seccomp");
    assert_eq!(check.status, Status::Degraded);
    assert_eq!(
        check.hint.as_deref(),
        Some("kernel lacks seccomp actions: user_notif, log")
    );
}

#[test]
fn cgroup_disabled_at_boot_is_missing_with_hint() {
    let host = FakeHost::v1();
    host.file(
        "proc/cgroups",
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t1\t0\npids\t0\t1\t1\n",
    )
    .file(
        "proc/self/mountinfo",
        "26 24 0:23 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
    );
    let report = host.report();
    let memory = report.feature(Feature::MemoryController).expect("memory");
    assert_eq!(memory.status, Status::Missing);
    assert_eq!(memory.observed, "disabled at boot");
    let pids = report.feature(Feature::PidsController).expect("pids");
    assert_eq!(pids.observed, "in the kernel, not mounted");
}

#[test]
fn report_serializes_with_stable_names() {
    let report = FakeHost::hybrid().report();
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["cgroup"]["mode"], "hybrid");
    assert_eq!(json["features"][0]["feature"], "cgroups");
    assert_eq!(json["features"][0]["status"], "ok");
    assert_eq!(json["hardening"]["exposure"]["label"], "OK");
    let check = &json["hardening"]["checks"][0];
    assert_eq!(check["id"], "kernel.unprivileged_bpf_disabled");
    assert_eq!(check["verdict"], "pass");
}

#[test]
fn display_renders_aligned_tables() {
    let text = FakeHost::hybrid().report().to_string();
    assert!(text.starts_with("kernel 6.18.0-test, cgroups hybrid\n"));
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .find(|l| l.starts_with("FEATURE"))
        .expect("header");
    let status_col = header.find("STATUS").expect("STATUS");
    let row = lines
        .iter()
        .find(|l| l.starts_with("cgroup memory controller"))
        .expect("row");
    assert_eq!(row.find("ok"), Some(status_col));
    assert!(text.contains("\nexposure "));
}

#[test]
fn hardened_fixture_covers_every_sysctl_rule() {
    // Guards the fixtures: a new sysctl rule must get a recommended value here.
    let report = FakeHost::v2().report();
    for (name, _) in HARDENED_SYSCTLS {
        assert_eq!(hardening(&report, name).verdict, Verdict::Pass, "{name}");
    }
}
