//! `verify` against real sandboxes (root; CI is root). This binary has its
//! own `main`: the launcher re-executes it as each tenant's holder, and
//! `verify` re-executes it as the probe inside tenants. Each test gets its
//! own instance prefix, state directory, cgroups and volumes, and a guard
//! that stops and removes all of them even when the test fails.
//!
//! First every probe must pass on correctly isolated tenants; then each test
//! breaks isolation on purpose, one way at a time, and checks that `verify`
//! reports exactly that leak and nothing else.
//!
//! ```text
//! cargo test -p bulkhead-verify --test isolation [-- filter…]
//! ```

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use bulkhead_node::cgroup::{Cgroups, Limits};
use bulkhead_node::naming::Instance;
use bulkhead_node::sandbox::{self, ID_RANGE, SandboxConfig, TENANT_UID};
use bulkhead_node::volume::{MountOptions, Volume, VolumeSpec};
use bulkhead_spec::{Bytes, Profile};
use bulkhead_verify::{
    Confine, DeclaredLimits, ProbeClass, Report, TenantUnderTest, VerifyOptions, render, verify,
};

type TestResult = Result<(), String>;
type Test = (&'static str, fn() -> TestResult);

const TESTS: &[Test] = &[
    (
        "isolated_tenants_pass_every_probe",
        isolated_tenants_pass_every_probe,
    ),
    (
        "raised_pids_max_is_a_resources_leak",
        raised_pids_max_is_a_resources_leak,
    ),
    (
        "missing_confinement_is_a_privilege_leak",
        missing_confinement_is_a_privilege_leak,
    ),
    (
        "shared_mount_is_a_filesystem_leak",
        shared_mount_is_a_filesystem_leak,
    ),
    (
        "bounding_capabilities_are_a_privilege_leak",
        bounding_capabilities_are_a_privilege_leak,
    ),
    (
        "relaxed_landlock_rule_is_a_filesystem_leak",
        relaxed_landlock_rule_is_a_filesystem_leak,
    ),
    (
        "timings_for_two_and_ten_tenants",
        timings_for_two_and_ten_tenants,
    ),
    (
        "shared_id_range_is_a_processes_and_filesystem_leak",
        shared_id_range_is_a_processes_and_filesystem_leak,
    ),
];

const MOVE_MOUNT_ENV: &str = "BULKHEAD_TEST_MOVE_MOUNT";
const MIB: u64 = 1024 * 1024;
const PIDS: u64 = 48;
const MEMORY: u64 = 96 * MIB;
const STORAGE: u64 = 16 * MIB;

fn main() {
    if sandbox::is_holder_invocation() {
        sandbox::holder_main();
    }
    if bulkhead_verify::is_probe_invocation() {
        bulkhead_verify::probe_main();
    }
    if let Some(target) = std::env::var_os(MOVE_MOUNT_ENV) {
        std::process::exit(move_mount_helper(Path::new(&target)));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !rustix::process::geteuid().is_root() {
        println!("skipped: the isolation tests need root (CI runs as root)");
        return;
    }
    if let Err(reason) = Cgroups::detect() {
        println!("skipped: no usable cgroups ({reason})");
        return;
    }
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in TESTS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let start = Instant::now();
        match catch_unwind(AssertUnwindSafe(test)) {
            Ok(Ok(())) => println!("test {name} ... ok ({} ms)", start.elapsed().as_millis()),
            Ok(Err(message)) => {
                println!("test {name} ... FAILED\n{message}");
                failed.push(*name);
            }
            Err(_) => {
                println!("test {name} ... FAILED (panicked)");
                failed.push(*name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

/// Inside a tenant (uid 0 of its namespace, unconfined): attach the
/// detached mount on stdout at `target`. What a careless operator's "share
/// this directory with that tenant" would do.
fn move_mount_helper(target: &Path) -> i32 {
    if let Err(e) = std::fs::create_dir_all(target) {
        eprintln!("mkdir {}: {e}", target.display());
        return 1;
    }
    let stdout = std::io::stdout();
    let fd = std::os::fd::AsFd::as_fd(&stdout);
    match rustix::mount::move_mount(
        fd,
        "",
        rustix::fs::CWD,
        target,
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("move_mount: {e}");
            1
        }
    }
}

// ---------------------------------------------------------------- fixture

static NEXT: AtomicU32 = AtomicU32::new(0);

struct Env {
    instance: Instance,
    cgroups: Cgroups,
    started: Vec<String>,
    volumes: Vec<Volume>,
    cgroup_dirs: Vec<PathBuf>,
    _state: tempfile::TempDir,
}

struct Spec {
    name: &'static str,
    profile: Profile,
    id_base: Option<u32>,
}

impl Env {
    fn new() -> Result<Env, String> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("bhv{}n{n}", std::process::id() % 100_000);
        let state = tempfile::Builder::new()
            .prefix("bulkhead-verify-test")
            .tempdir()
            .map_err(|e| format!("state dir: {e}"))?;
        // Holders (a tenant's root, unprivileged on the host) must traverse it.
        std::fs::set_permissions(
            state.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| format!("state dir: {e}"))?;
        Ok(Env {
            instance: Instance::new(&prefix, state.path()),
            cgroups: Cgroups::detect().map_err(|e| e.to_string())?,
            started: Vec::new(),
            volumes: Vec::new(),
            cgroup_dirs: Vec::new(),
            _state: state,
        })
    }

    fn base(&self, index: u32) -> u32 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        2_000_000 + ((std::process::id() % 64) * 64 + (n * 4 + index) % 64) * ID_RANGE
    }

    /// Cgroups with limits, a real volume, a sandbox: one tenant.
    fn tenant(&mut self, spec: &Spec) -> Result<TenantUnderTest, String> {
        let name = spec.name;
        let base = spec.id_base.unwrap_or_else(|| self.base(0));
        let rel = self.instance.tenant_cgroup(name);
        self.cgroup_dirs.push(rel.clone());
        let limits = Limits {
            memory_max: Some(MEMORY),
            swap_max: Some(0),
            pids_max: Some(PIDS),
            ..Limits::unlimited()
        };
        self.cgroups
            .create(&rel)
            .map_err(|e| format!("cgroup {name}: {e}"))?;
        self.cgroups
            .apply(&rel, &limits)
            .map_err(|e| format!("limits {name}: {e}"))?;
        let procs: Vec<PathBuf> = self
            .cgroups
            .layout()
            .roots()
            .into_iter()
            .map(|root| root.join(&rel).join("cgroup.procs"))
            .filter(|p| p.exists())
            .collect();

        let volume = Volume::new(&self.instance, name);
        self.volumes.push(volume.clone());
        let vspec = VolumeSpec {
            size: Bytes::new(STORAGE),
            encrypted: false,
            mount: MountOptions { noexec: false },
        };
        volume
            .ensure(&vspec)
            .map_err(|e| format!("volume {name}: {e}"))?;
        volume
            .mount(MountOptions { noexec: false })
            .map_err(|e| format!("mount {name}: {e}"))?;
        volume
            .ensure_plain_data_dir()
            .map_err(|e| format!("data dir {name}: {e}"))?;
        let data = volume.data_dir().to_owned();
        // The volume module makes the state and mount directories 0700, which
        // an unprivileged holder cannot traverse to bind `data`; give them
        // search permission only (reported upstream; the data directory
        // itself stays 0700 and owned by the tenant).
        for dir in [
            self.instance.state_dir(),
            &self.instance.state_dir().join("mnt"),
            volume.mount_point(),
        ] {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
                .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
        }
        std::os::unix::fs::chown(&data, Some(base + TENANT_UID), Some(base + TENANT_UID))
            .map_err(|e| format!("chown {}: {e}", data.display()))?;

        let mut config = SandboxConfig::new(name, base);
        config.tmp_size = 8 * MIB;
        config.volume = Some(data.clone());
        config.holder_cgroups = procs.clone();
        self.started.push(name.to_owned());
        sandbox::start(&self.instance, &config).map_err(|e| format!("start {name}: {e}"))?;

        let mut tenant = TenantUnderTest::new(name, spec.profile, base);
        tenant.volume_data_dir = Some(data);
        tenant.cgroup_procs = procs;
        tenant.limits = DeclaredLimits {
            memory_max: Some(MEMORY),
            pids_max: Some(PIDS),
            storage: Some(STORAGE),
        };
        Ok(tenant)
    }

    fn tenants(&mut self, specs: &[Spec]) -> Result<Vec<TenantUnderTest>, String> {
        specs.iter().map(|s| self.tenant(s)).collect()
    }

    fn verify(&self, tenants: &[TenantUnderTest]) -> Result<Report, String> {
        let start = Instant::now();
        let report = verify(&self.instance, tenants, &VerifyOptions::default())
            .map_err(|e| format!("verify: {e}"))?;
        println!(
            "    verify of {} tenants: {} rows in {} ms",
            tenants.len(),
            report.rows.len(),
            start.elapsed().as_millis()
        );
        Ok(report)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for tenant in &self.started {
            if let Err(e) = sandbox::stop(&self.instance, tenant) {
                eprintln!("cleanup of sandbox {tenant}: {e}");
            }
        }
        for rel in self.cgroup_dirs.iter().rev() {
            let _ = self.cgroups.kill_all(rel);
            if let Err(e) = self.cgroups.remove(rel) {
                eprintln!("cleanup of cgroup {}: {e}", rel.display());
            }
        }
        let _ = self.cgroups.remove(&self.instance.cgroup_root());
        for volume in &self.volumes {
            if volume.unmount().is_err() {
                let _ = rustix::mount::unmount(
                    volume.mount_point(),
                    rustix::mount::UnmountFlags::DETACH,
                );
            }
            if let Err(e) = volume.destroy() {
                eprintln!("cleanup of volume {}: {e}", volume.image().display());
            }
        }
    }
}

fn three() -> [Spec; 3] {
    [
        Spec {
            name: "alpha",
            profile: Profile::Restricted,
            id_base: None,
        },
        Spec {
            name: "bravo",
            profile: Profile::Baseline,
            id_base: None,
        },
        Spec {
            name: "charlie",
            profile: Profile::Restricted,
            id_base: None,
        },
    ]
}

fn two() -> [Spec; 2] {
    [
        Spec {
            name: "alpha",
            profile: Profile::Restricted,
            id_base: None,
        },
        Spec {
            name: "bravo",
            profile: Profile::Restricted,
            id_base: None,
        },
    ]
}

/// The violations as `(verdict, class, tenant, target, id)`.
fn violations(report: &Report) -> BTreeSet<(String, String, String, String, String)> {
    report
        .violations()
        .map(|r| {
            (
                r.verdict.to_string(),
                r.class.to_string(),
                r.tenant.clone(),
                r.target.to_string(),
                r.id.clone(),
            )
        })
        .collect()
}

fn expect_exactly(report: &Report, want: &[(&str, &str, &str, &str, &str)]) -> TestResult {
    let got = violations(report);
    let want: BTreeSet<_> = want
        .iter()
        .map(|(v, c, t, g, i)| {
            (
                v.to_string(),
                c.to_string(),
                t.to_string(),
                g.to_string(),
                i.to_string(),
            )
        })
        .collect();
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "expected exactly {want:#?}\ngot {got:#?}\n{}",
            render::table(report, true)
        ))
    }
}

// ------------------------------------------------------------------ tests

fn isolated_tenants_pass_every_probe() -> TestResult {
    let mut env = Env::new()?;
    let tenants = env.tenants(&three())?;
    let report = env.verify(&tenants)?;
    println!("{}", render::table(&report, false));
    // The exhaustion figures in full (the table clips them).
    for row in report
        .rows
        .iter()
        .filter(|r| r.id.starts_with("resources."))
    {
        println!(
            "    {} {} -> {}: {}",
            row.id, row.tenant, row.target, row.observed
        );
    }
    expect_exactly(&report, &[])?;
    for class in [
        ProbeClass::Processes,
        ProbeClass::Filesystem,
        ProbeClass::Ipc,
        ProbeClass::Privilege,
        ProbeClass::Resources,
    ] {
        if !report.rows.iter().any(|r| r.class == class) {
            return Err(format!("no rows for class {class}"));
        }
    }
    for e in &report.exposure {
        if e.score != 0.0 {
            return Err(format!("exposure of {} is {}", e.tenant, e.score));
        }
    }
    let xml = render::junit(&report);
    if !xml.contains("failures=\"0\"") {
        return Err("junit reports failures".into());
    }
    Ok(())
}

fn raised_pids_max_is_a_resources_leak() -> TestResult {
    let mut env = Env::new()?;
    let tenants = env.tenants(&two())?;
    // The operator raised alpha's pids.max by hand; the quota still says 48.
    let rel = env.instance.tenant_cgroup("alpha");
    let raised = Limits {
        pids_max: None,
        memory_max: Some(MEMORY),
        swap_max: Some(0),
        ..Limits::unlimited()
    };
    env.cgroups
        .apply(&rel, &raised)
        .map_err(|e| e.to_string())?;
    let report = env.verify(&tenants)?;
    expect_exactly(
        &report,
        &[("leak", "resources", "alpha", "host", "resources.pids")],
    )
}

fn missing_confinement_is_a_privilege_leak() -> TestResult {
    let mut env = Env::new()?;
    let mut tenants = env.tenants(&two())?;
    tenants[0].confine = Confine::Nothing;
    let report = env.verify(&tenants)?;
    expect_privilege_leaks_only(&report, "alpha", "privilege.seccomp-mode")
}

fn bounding_capabilities_are_a_privilege_leak() -> TestResult {
    let mut env = Env::new()?;
    let mut tenants = env.tenants(&two())?;
    tenants[0].confine = Confine::Profile(Profile::Privileged);
    let report = env.verify(&tenants)?;
    expect_privilege_leaks_only(&report, "alpha", "privilege.caps.CapBnd")
}

/// Every violation is a privilege leak of `tenant` against itself or the
/// host (nothing reaches another tenant), or the one filesystem leak that
/// only Landlock stops (`filesystem.device-write` on the host: both breaks
/// below take Landlock away with the rest), and `required` is among them.
fn expect_privilege_leaks_only(report: &Report, tenant: &str, required: &str) -> TestResult {
    let got = violations(report);
    let stray: Vec<_> = got
        .iter()
        .filter(|(v, c, t, g, id)| {
            let privilege =
                v == "leak" && c == "privilege" && t == tenant && (g == "self" || g == "host");
            let landlock = v == "leak"
                && c == "filesystem"
                && t == tenant
                && g == "host"
                && id == "filesystem.device-write";
            !(privilege || landlock)
        })
        .collect();
    if !stray.is_empty() || !got.iter().any(|(.., id)| id == required) {
        return Err(format!(
            "unexpected violations {stray:#?} in {got:#?}\n{}",
            render::table(report, true)
        ));
    }
    println!(
        "    {} privilege leaks: {:?}",
        got.len(),
        got.iter().map(|g| g.4.as_str()).collect::<Vec<_>>()
    );
    Ok(())
}

fn shared_mount_is_a_filesystem_leak() -> TestResult {
    let mut env = Env::new()?;
    let tenants = env.tenants(&two())?;
    // Attach a copy of bravo's data mount inside alpha, at /tmp/shared.
    let bravo = tenants[1]
        .volume_data_dir
        .clone()
        .ok_or("bravo has no volume")?;
    let tree: OwnedFd = rustix::mount::open_tree(
        rustix::fs::CWD,
        &bravo,
        rustix::mount::OpenTreeFlags::OPEN_TREE_CLONE
            | rustix::mount::OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| format!("open_tree {}: {e}", bravo.display()))?;
    let exe = std::fs::File::open("/proc/self/exe").map_err(|e| e.to_string())?;
    let alpha = sandbox::Sandbox::open(&env.instance, "alpha").map_err(|e| e.to_string())?;
    let mut command = sandbox::Command::new("/proc/self/fd/0");
    command
        .user(0, 0)
        .env(MOVE_MOUNT_ENV, "/tmp/shared")
        .stdin(exe)
        .stdout(tree);
    let code = alpha.run(command).map_err(|e| e.to_string())?;
    if code != 0 {
        return Err(format!("could not inject the mount (exit {code})"));
    }
    let report = env.verify(&tenants)?;
    expect_exactly(
        &report,
        &[(
            "leak",
            "filesystem",
            "alpha",
            "bravo",
            "filesystem.foreign-mounts",
        )],
    )
}

/// An operator let alpha's workloads write all of `/dev` instead of only
/// `null`, `zero` and `full`. Inside the sandbox everything else (read-only
/// mounts, ownership, namespaces) already stops what Landlock stops, except
/// the host's device nodes bound into `/dev` (mode 0666): with the relaxed
/// rule alpha can open the kernel's one random pool for writing.
fn relaxed_landlock_rule_is_a_filesystem_leak() -> TestResult {
    let mut env = Env::new()?;
    let mut tenants = env.tenants(&two())?;
    tenants[0].confine = Confine::ExtraWritable(PathBuf::from("/dev"));
    let report = env.verify(&tenants)?;
    expect_exactly(
        &report,
        &[(
            "leak",
            "filesystem",
            "alpha",
            "host",
            "filesystem.device-write",
        )],
    )?;
    // Both shared nodes, and only in alpha.
    let leaked: Vec<&str> = report.violations().map(|r| r.attempt.as_str()).collect();
    if leaked.len() != 2 {
        return Err(format!(
            "expected /dev/random and /dev/urandom, got {leaked:?}"
        ));
    }
    Ok(())
}

fn shared_id_range_is_a_processes_and_filesystem_leak() -> TestResult {
    let mut env = Env::new()?;
    let a = env.tenant(&Spec {
        name: "alpha",
        profile: Profile::Restricted,
        id_base: None,
    })?;
    let b = env.tenant(&Spec {
        name: "bravo",
        profile: Profile::Restricted,
        id_base: Some(a.id_base),
    })?;
    let report = env.verify(&[a, b])?;
    expect_exactly(
        &report,
        &[
            ("leak", "processes", "alpha", "bravo", "processes.id-range"),
            ("leak", "processes", "bravo", "alpha", "processes.id-range"),
            (
                "leak",
                "filesystem",
                "alpha",
                "bravo",
                "filesystem.file-owner",
            ),
            (
                "leak",
                "filesystem",
                "bravo",
                "alpha",
                "filesystem.file-owner",
            ),
        ],
    )
}

/// Wall time of a full verify for 2 and 10 tenants, all peers and sampled;
/// only with `BULKHEAD_VERIFY_BENCH=1` (prints, asserts nothing on time).
fn timings_for_two_and_ten_tenants() -> TestResult {
    if std::env::var_os("BULKHEAD_VERIFY_BENCH").is_none() {
        println!("    (set BULKHEAD_VERIFY_BENCH=1 to measure)");
        return Ok(());
    }
    const NAMES: [&str; 10] = ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"];
    for n in [2usize, 10] {
        let mut env = Env::new()?;
        let specs: Vec<Spec> = NAMES[..n]
            .iter()
            .map(|name| Spec {
                name,
                profile: Profile::Restricted,
                id_base: None,
            })
            .collect();
        let tenants = env.tenants(&specs)?;
        for (label, options) in [
            ("all classes, all peers", VerifyOptions::default()),
            (
                "all classes, --sample 2",
                VerifyOptions {
                    sample: Some(2),
                    ..VerifyOptions::default()
                },
            ),
            (
                "isolation only (no resources), all peers",
                VerifyOptions {
                    only: Some(ProbeClass::Processes),
                    ..VerifyOptions::default()
                },
            ),
        ] {
            let start = Instant::now();
            let report = verify(&env.instance, &tenants, &options).map_err(|e| e.to_string())?;
            println!(
                "    {n} tenants, {label}: {} rows, {} violations, {} ms {:?}",
                report.rows.len(),
                report.violations().count(),
                start.elapsed().as_millis(),
                report
                    .timings
                    .iter()
                    .map(|t| format!("{} {} ms", t.phase, t.millis))
                    .collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}
