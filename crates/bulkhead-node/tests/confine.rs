//! Confinement on the real kernel. Each test spawns this test binary again as
//! a probe (the `probe` test, which does nothing unless `BULKHEAD_CONFINE_PROBE`
//! is set), confined by a profile, and checks the probe's report of what it
//! saw and could do from inside. Needs root (CI is root); skips, saying why,
//! without it or without Landlock.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bulkhead_node::confine::landlock::{self, LandlockMode, LandlockPaths};
use bulkhead_node::confine::probe::{self, ProbeReport};
use bulkhead_node::confine::rlimit::Rlimits;
use bulkhead_node::confine::seccomp::{Arch, DenyErrno, SeccompProfile};
use bulkhead_node::confine::{ConfineOptions, Confinement};
use bulkhead_spec::Profile;
use serde::{Deserialize, Serialize};

const PROBE_ENV: &str = "BULKHEAD_CONFINE_PROBE";
const REPORT_PREFIX: &str = "BULKHEAD-PROBE-REPORT ";
const NOFILE: u64 = 256;

#[derive(Serialize, Deserialize)]
struct ProbeRequest {
    /// Directories to try writing in.
    writes: Vec<PathBuf>,
    /// Load this profile's seccomp filter (by name) in the probe itself (full
    /// root otherwise), to tell the filter's EPERM from a capability check's.
    seccomp_only: Option<String>,
}

/// The probe's entry point; an ordinary test run skips it.
#[test]
fn probe() {
    let Ok(request) = std::env::var(PROBE_ENV) else {
        return;
    };
    let request: ProbeRequest = serde_json::from_str(&request).expect("probe request");
    if let Some(name) = request.seccomp_only {
        let profile = Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .expect("a profile name");
        let arch = Arch::host().expect("an architecture with filters");
        let program = SeccompProfile::builtin(profile)
            .and_then(|p| p.compile(arch))
            .expect("compile");
        program.apply().expect("load seccomp in the probe");
    }
    let report = probe::run(&request.writes);
    println!(
        "{REPORT_PREFIX}{}",
        serde_json::to_string(&report).expect("report")
    );
}

fn run_probe(confinement: Option<&Arc<Confinement>>, request: &ProbeRequest) -> ProbeReport {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args(["--exact", "probe", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, serde_json::to_string(request).expect("request"));
    if let Some(confinement) = confinement {
        confinement.attach(&mut command);
    }
    let output = command.output().expect("spawn the probe");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // libtest prints "test probe ... " on the same line before the report.
    let report = stdout
        .lines()
        .find_map(|l| l.split_once(REPORT_PREFIX).map(|(_, report)| report));
    let Some(line) = report else {
        panic!(
            "probe gave no report ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    serde_json::from_str(line).expect("probe report")
}

fn skip(reason: &str) {
    println!("skipped: {reason}");
}

/// Root and Landlock, or the reason to skip.
fn host_ready() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root: confinement tests need to drop real capabilities".into());
    }
    if Arch::host().is_none() {
        return Err(format!("no seccomp filters for {}", std::env::consts::ARCH));
    }
    match landlock::prepare(&LandlockPaths::default(), LandlockMode::Required) {
        Err(landlock::LandlockError::Unavailable { errno }) => {
            Err(format!("landlock unavailable (errno {errno})"))
        }
        _ => Ok(()),
    }
}

/// Temp dirs: the tenant's volume and /tmp (writable) and one it must not touch.
struct Dirs {
    volume: tempfile::TempDir,
    tmp: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        Dirs {
            volume: tempfile::tempdir().expect("volume dir"),
            tmp: tempfile::tempdir().expect("tmp dir"),
            outside: tempfile::tempdir().expect("outside dir"),
        }
    }

    fn options(&self) -> ConfineOptions {
        let mut paths = LandlockPaths::system_defaults([
            self.volume.path().to_owned(),
            self.tmp.path().to_owned(),
        ]);
        // The probe is this test binary: it must be readable and executable.
        let exe = std::env::current_exe().expect("test binary path");
        paths.read_only.push(exe);
        ConfineOptions {
            paths,
            landlock_mode: LandlockMode::Required,
            rlimits: Rlimits {
                nofile: Some(NOFILE),
            },
        }
    }

    fn request(&self, seccomp_only: Option<Profile>) -> ProbeRequest {
        ProbeRequest {
            writes: vec![
                self.volume.path().to_owned(),
                self.tmp.path().to_owned(),
                self.outside.path().to_owned(),
            ],
            seccomp_only: seccomp_only.map(|p| p.as_str().to_owned()),
        }
    }
}

fn denied(profile: Profile) -> Vec<(String, DenyErrno)> {
    let arch = Arch::host().expect("arch");
    SeccompProfile::builtin(profile)
        .expect("profile")
        .denied(arch)
        .map(|(name, rule)| (name.to_owned(), rule.errno))
        .collect()
}

fn errno_of(report: &ProbeReport, name: &str) -> Result<i64, i32> {
    *report
        .syscalls
        .get(name)
        .unwrap_or_else(|| panic!("the probe has no attempt for {name}"))
}

fn status<'a>(report: &'a ProbeReport, field: &str) -> &'a str {
    report.status.get(field).map_or("<missing>", String::as_str)
}

fn prepare(profile: Profile, dirs: &Dirs) -> Arc<Confinement> {
    Arc::new(Confinement::prepare(profile, &dirs.options()).expect("prepare confinement"))
}

#[test]
fn the_probe_attempts_every_syscall_any_profile_denies() {
    let attempted: BTreeSet<&str> = probe::attempted_syscalls().collect();
    for profile in Profile::ALL {
        for (name, _) in denied(profile) {
            assert!(
                attempted.contains(name.as_str()),
                "{} denies {name} but the probe never tries it",
                profile.as_str()
            );
        }
    }
}

/// Without confinement, full root gets no EPERM from any attempt: so an EPERM
/// under a filter is the filter's.
#[test]
fn unconfined_probe_sees_no_eperm() {
    if let Err(reason) = host_ready() {
        return skip(&reason);
    }
    let dirs = Dirs::new();
    let report = run_probe(None, &dirs.request(None));
    assert_eq!(status(&report, "Seccomp"), "0");
    let eperm: Vec<&String> = report
        .syscalls
        .iter()
        .filter(|(_, result)| **result == Err(libc::EPERM))
        .map(|(name, _)| name)
        .collect();
    assert!(
        eperm.is_empty(),
        "the kernel itself denies {eperm:?}: probe attempts are inconclusive"
    );
    if let Some(x32) = report.x32_getpid {
        assert_ne!(x32, Err(libc::EPERM));
    }
}

fn assert_denied_as_designed(report: &ProbeReport, profile: Profile) {
    for (name, errno) in denied(profile) {
        assert_eq!(
            errno_of(report, &name),
            Err(errno.errno()),
            "{} should deny {name} with {}",
            profile.as_str(),
            errno.as_str()
        );
    }
    if cfg!(target_arch = "x86_64") {
        assert_eq!(report.x32_getpid, Some(Err(libc::EPERM)), "x32 getpid");
    }
}

fn assert_dropped_everything(report: &ProbeReport) {
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status(report, field), "0000000000000000", "{field}");
    }
    assert_eq!(status(report, "NoNewPrivs"), "1");
    assert_eq!(status(report, "Seccomp"), "2");
}

fn assert_landlocked(report: &ProbeReport, dirs: &Dirs) {
    assert_eq!(
        report.writes.get(dirs.volume.path()),
        Some(&Ok(())),
        "volume"
    );
    assert_eq!(report.writes.get(dirs.tmp.path()), Some(&Ok(())), "tmp");
    assert_eq!(
        report.writes.get(dirs.outside.path()),
        Some(&Err(libc::EACCES)),
        "a directory outside the allowed paths"
    );
}

fn assert_limits_and_liveness(report: &ProbeReport) {
    assert_eq!(report.core_limit, (Some(0), Some(0)), "RLIMIT_CORE");
    assert_eq!(
        report.nofile_limit,
        (Some(NOFILE), Some(NOFILE)),
        "RLIMIT_NOFILE"
    );
    // clone3 answers ENOSYS, so the C library falls back to clone: threads and
    // programs still start.
    assert_eq!(report.thread, Some(Ok(())), "thread");
    if let Some(spawn) = &report.spawn {
        assert_eq!(spawn, &Ok(()), "/bin/true");
    }
}

#[test]
fn restricted_confines_from_inside() {
    if let Err(reason) = host_ready() {
        return skip(&reason);
    }
    let dirs = Dirs::new();
    let confinement = prepare(Profile::Restricted, &dirs);
    assert!(confinement.not_enforced().is_empty());
    let report = run_probe(Some(&confinement), &dirs.request(None));
    assert_dropped_everything(&report);
    assert_denied_as_designed(&report, Profile::Restricted);
    assert_landlocked(&report, &dirs);
    assert_limits_and_liveness(&report);
}

#[test]
fn baseline_confines_from_inside() {
    if let Err(reason) = host_ready() {
        return skip(&reason);
    }
    let dirs = Dirs::new();
    let confinement = prepare(Profile::Baseline, &dirs);
    let report = run_probe(Some(&confinement), &dirs.request(None));
    assert_dropped_everything(&report);
    assert_denied_as_designed(&report, Profile::Baseline);
    assert_landlocked(&report, &dirs);
    assert_limits_and_liveness(&report);
}

/// The filters alone, loaded by a probe that keeps all of root's
/// capabilities: every EPERM comes from the filter, and what a profile does
/// not deny gets through to the kernel.
#[test]
fn seccomp_filters_alone_deny_exactly_their_lists() {
    if let Err(reason) = host_ready() {
        return skip(&reason);
    }
    let dirs = Dirs::new();
    for profile in Profile::ALL {
        let report = run_probe(None, &dirs.request(Some(profile)));
        assert_ne!(status(&report, "CapEff"), "0000000000000000");
        assert_eq!(status(&report, "Seccomp"), "2");
        assert_denied_as_designed(&report, profile);
        let names: BTreeSet<String> = denied(profile).into_iter().map(|(n, _)| n).collect();
        for (name, result) in &report.syscalls {
            if !names.contains(name) {
                assert_ne!(
                    *result,
                    Err(libc::EPERM),
                    "{} does not deny {name}, yet it failed with EPERM",
                    profile.as_str()
                );
            }
        }
    }
}

#[test]
fn privileged_keeps_user_namespace_capabilities() {
    if let Err(reason) = host_ready() {
        return skip(&reason);
    }
    let dirs = Dirs::new();
    let confinement = prepare(Profile::Privileged, &dirs);
    let bare = run_probe(None, &dirs.request(None));
    let report = run_probe(Some(&confinement), &dirs.request(None));
    for field in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(status(&report, field), status(&bare, field), "{field}");
    }
    assert_ne!(status(&report, "CapEff"), "0000000000000000");
    assert_eq!(status(&report, "NoNewPrivs"), "1");
    assert_eq!(status(&report, "Seccomp"), "2");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(report.x32_getpid, Some(Err(libc::EPERM)), "x32 getpid");
    }
    // No denylist and no Landlock.
    for (name, result) in &report.syscalls {
        assert_ne!(
            *result,
            Err(libc::EPERM),
            "privileged got EPERM from {name}"
        );
    }
    assert_eq!(report.writes.get(dirs.outside.path()), Some(&Ok(())));
    assert_limits_and_liveness(&report);
}

/// The probe's syscall numbers are libc's for this architecture; seccompiler
/// resolved the filter's names on its own, so a mismatch would show as a
/// denied call that gets through.
#[test]
fn probe_numbers_match_libc() {
    assert_eq!(probe::syscall_number("mount"), Some(libc::SYS_mount));
    assert_eq!(probe::syscall_number("clone3"), Some(libc::SYS_clone3));
    assert_eq!(probe::syscall_number("no_such_call"), None);
}

#[test]
fn a_missing_writable_path_fails_before_fork() {
    let options = ConfineOptions {
        paths: LandlockPaths {
            read_only: vec![],
            writable: vec![Path::new("/nonexistent/bulkhead-volume").to_owned()],
        },
        ..ConfineOptions::default()
    };
    let error = Confinement::prepare(Profile::Restricted, &options).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/bulkhead-volume"),
        "{error}"
    );
}
