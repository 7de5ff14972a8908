//! `bulkhead doctor` against the machine the tests run on. Asserts only facts
//! that must hold on a Linux host with cgroups and seccomp; skips (saying why)
//! when the file a fact rests on is absent.

use std::path::Path;

use bulkhead_node::doctor::{
    self, CgroupMode, Feature, KernelProbe, LandlockProbe, LiveKernel, Status,
};

fn skip(reason: &str) {
    println!("skipped: {reason}");
}

#[test]
fn doctor_on_this_host() {
    let report = doctor::run_system();
    println!("{report}");

    if Path::new("/proc/self/mountinfo").exists() {
        if Path::new("/sys/fs/cgroup/memory").is_dir() {
            // A v1 memory hierarchy exists: v1 or hybrid, never pure v2.
            assert!(
                matches!(report.cgroup.mode, CgroupMode::V1 | CgroupMode::Hybrid),
                "mode {:?} with /sys/fs/cgroup/memory present",
                report.cgroup.mode
            );
            let memory = report
                .feature(Feature::MemoryController)
                .expect("memory check");
            assert_eq!(memory.status, Status::Ok, "{}", memory.observed);
        } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            assert_eq!(report.cgroup.mode, CgroupMode::V2);
        } else {
            skip("neither a v1 memory hierarchy nor cgroup2 at /sys/fs/cgroup");
        }
    } else {
        skip("no /proc/self/mountinfo");
    }

    if Path::new("/proc/sys/kernel/seccomp/actions_avail").exists() {
        let seccomp = report.feature(Feature::Seccomp).expect("seccomp check");
        assert_ne!(seccomp.status, Status::Missing, "{}", seccomp.observed);
        assert_ne!(seccomp.status, Status::Unknown, "{}", seccomp.observed);
    } else {
        skip("no /proc/sys/kernel/seccomp/actions_avail");
    }

    if let Ok(max) = std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        let expected = if max.trim() == "0" {
            Status::Missing
        } else {
            Status::Ok
        };
        assert_eq!(
            report.feature(Feature::UserNamespaces).map(|c| c.status),
            Some(expected)
        );
    } else {
        skip("no /proc/sys/user/max_user_namespaces");
    }

    // Whatever the kernel has, the version query must be well-formed: EINVAL
    // or EFAULT would mean the raw syscall is wrong.
    let probe = LiveKernel.landlock();
    println!("landlock probe: {probe:?}");
    assert!(
        !matches!(probe, LandlockProbe::Error(libc::EINVAL | libc::EFAULT)),
        "{probe:?}"
    );

    // Landlock enabled: only assert when the LSM list says so.
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(lsm) if lsm.split(',').any(|l| l.trim() == "landlock") => {
            let landlock = report.feature(Feature::Landlock).expect("landlock check");
            assert!(
                matches!(landlock.status, Status::Ok | Status::Degraded),
                "{}",
                landlock.observed
            );
        }
        Ok(_) => skip("landlock not in /sys/kernel/security/lsm"),
        Err(e) => skip(&format!("/sys/kernel/security/lsm: {e}")),
    }

    if Path::new("/dev/loop-control").exists() {
        assert_eq!(
            report.feature(Feature::LoopDevices).map(|c| c.status),
            Some(Status::Ok)
        );
    } else {
        skip("no /dev/loop-control");
    }

    let e = report.hardening.exposure;
    assert!((0.0..=10.0).contains(&e.score));
    assert!(e.known_weight <= e.total_weight);
}
