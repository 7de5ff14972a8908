//! The sandbox launcher against the real kernel (root; CI is root). This test
//! binary has its own `main` because the launcher re-executes it as each
//! tenant's holder (`sandbox::holder_main`). Tests run one after another;
//! each uses its own instance prefix and state directory, and a guard stops
//! every tenant it started (killing holders, unmounting `/run/netns` entries,
//! removing directories) even when the test fails.
//!
//! ```text
//! cargo test -p bulkhead-node --test sandbox [-- filter…]
//! ```

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

#[path = "support/netslot.rs"]
mod netslot;
use netslot::Slot;

use bulkhead_node::mountinfo::parse_mountinfo;
use bulkhead_node::naming::Instance;
use bulkhead_node::sandbox::{
    self, Command, HolderState, ID_RANGE, NetnsEntry, Sandbox, SandboxConfig, SandboxError,
};

type TestResult = Result<(), String>;
type Test = (&'static str, fn() -> TestResult);

const TESTS: &[Test] = &[
    (
        "tenant_sees_only_its_own_pids",
        tenant_sees_only_its_own_pids,
    ),
    (
        "tenants_do_not_see_each_other",
        tenants_do_not_see_each_other,
    ),
    (
        "identity_is_unprivileged_and_mapped",
        identity_is_unprivileged_and_mapped,
    ),
    ("hostname_is_the_tenant", hostname_is_the_tenant),
    (
        "root_usr_etc_are_read_only_tmp_is_sized",
        root_usr_etc_are_read_only_tmp_is_sized,
    ),
    (
        "dev_has_only_the_listed_nodes",
        dev_has_only_the_listed_nodes,
    ),
    (
        "every_mount_is_nosuid_and_nodev",
        every_mount_is_nosuid_and_nodev,
    ),
    ("etc_holds_only_the_subset", etc_holds_only_the_subset),
    (
        "netns_is_named_and_has_only_lo",
        netns_is_named_and_has_only_lo,
    ),
    ("environment_starts_empty", environment_starts_empty),
    ("exit_codes_are_like_a_shell", exit_codes_are_like_a_shell),
    (
        "hooks_join_cgroup_then_pre_exec",
        hooks_join_cgroup_then_pre_exec,
    ),
    ("confinement_applies_inside", confinement_applies_inside),
    ("holder_joins_its_cgroups", holder_joins_its_cgroups),
    ("volume_appears_at_data", volume_appears_at_data),
    ("exec_finds_a_tenant_by_name", exec_finds_a_tenant_by_name),
    ("start_is_idempotent", start_is_idempotent),
    ("stop_leaves_nothing", stop_leaves_nothing),
    (
        "crashed_holder_is_observed_and_collected",
        crashed_holder_is_observed_and_collected,
    ),
    ("caller_threads_do_not_matter", caller_threads_do_not_matter),
    (
        "network_wires_into_the_sandbox",
        network_wires_into_the_sandbox,
    ),
];

fn main() {
    if sandbox::is_holder_invocation() {
        sandbox::holder_main();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return;
    }
    if !rustix::process::geteuid().is_root() {
        println!("skipped: the sandbox tests need root (CI runs as root)");
        return;
    }
    if std::fs::read_to_string("/proc/sys/user/max_user_namespaces").is_ok_and(|m| m.trim() == "0")
    {
        println!("skipped: user namespaces are disabled (user.max_user_namespaces = 0)");
        return;
    }
    // Holders outlive the process that forked them; as subreaper we inherit
    // them, and `stop` reaps them instead of leaving zombies.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));

    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in TESTS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        ran += 1;
        let outcome = catch_unwind(AssertUnwindSafe(test));
        match outcome {
            Ok(Ok(())) => println!("test {name} ... ok"),
            Ok(Err(message)) => {
                println!("test {name} ... FAILED\n    {message}");
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
        println!("failures: {failed:?}");
        std::process::exit(101);
    }
}

// ---------------------------------------------------------------- helpers

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One instance per test: a prefix and tenant range reserved across every process on
/// the host (`support/netslot.rs`), a temporary state directory, and a guard that
/// stops every tenant started through it.
struct Env {
    instance: Instance,
    tenants: Vec<String>,
    _state: tempfile::TempDir,
    /// Held until after `Drop::drop` stopped the tenants.
    slot: Slot,
}

impl Env {
    fn new() -> Env {
        let slot = Slot::tenant_range('s');
        let prefix = slot.prefix();
        let state = tempfile::Builder::new()
            .prefix("bulkhead-sandbox-test")
            .tempdir()
            .unwrap_or_else(|e| panic!("temporary state directory: {e}"));
        Env {
            instance: Instance::new(&prefix, state.path()),
            tenants: Vec::new(),
            _state: state,
            slot,
        }
    }

    fn config(&self, tenant: &str) -> SandboxConfig {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 1_000_000 + ((std::process::id() % 64) * 256 + n % 256) * ID_RANGE;
        let mut config = SandboxConfig::new(tenant, base);
        config.tmp_size = 8 * 1024 * 1024;
        config
    }

    fn start(&mut self, config: &SandboxConfig) -> Result<Sandbox, String> {
        self.tenants.push(config.tenant.clone());
        sandbox::start(&self.instance, config).map_err(|e| format!("start {}: {e}", config.tenant))
    }

    fn start_default(&mut self, tenant: &str) -> Result<Sandbox, String> {
        let config = self.config(tenant);
        self.start(&config)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for tenant in &self.tenants {
            if let Err(e) = sandbox::stop(&self.instance, tenant) {
                eprintln!("cleanup of tenant {tenant} failed: {e}");
            }
        }
    }
}

/// Runs `sh -c script` inside, returns (code, stdout, stderr).
fn sh(sandbox: &Sandbox, script: &str) -> Result<(i32, String, String), String> {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    output(sandbox, command)
}

fn output(sandbox: &Sandbox, command: Command) -> Result<(i32, String, String), String> {
    let process = sandbox.spawn(command).map_err(|e| format!("spawn: {e}"))?;
    let (code, out, err) = process
        .wait_with_output()
        .map_err(|e| format!("wait: {e}"))?;
    Ok((
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    ))
}

/// Runs a script that must succeed; its stdout.
fn ok(sandbox: &Sandbox, script: &str) -> Result<String, String> {
    let (code, out, err) = sh(sandbox, script)?;
    if code == 0 {
        Ok(out)
    } else {
        Err(format!("`{script}` exited {code}: {err}"))
    }
}

fn ensure(condition: bool, message: impl FnOnce() -> String) -> TestResult {
    if condition { Ok(()) } else { Err(message()) }
}

fn pids_inside(sandbox: &Sandbox) -> Result<Vec<u32>, String> {
    let out = ok(sandbox, "ls /proc")?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Host pid of the workload under an intermediate process.
fn workload_of(intermediate: u32) -> Result<u32, String> {
    for _ in 0..200 {
        let children =
            std::fs::read_to_string(format!("/proc/{intermediate}/task/{intermediate}/children"))
                .unwrap_or_default();
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return Ok(pid);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(format!("intermediate {intermediate} has no child"))
}

// ---------------------------------------------------------------- tests

fn tenant_sees_only_its_own_pids() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let pids = pids_inside(&a)?;
    // The holder (1), the shell, maybe `ls` as a separate pid.
    ensure(pids.contains(&1), || format!("pid 1 missing: {pids:?}"))?;
    ensure(pids.iter().all(|&p| p < 10) && pids.len() <= 4, || {
        format!("more than the tenant's pids: {pids:?}")
    })?;
    let host_init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let inside_init = ok(&a, "cat /proc/1/comm")?;
    let holder =
        std::fs::read_to_string(format!("/proc/{}/comm", a.holder_pid())).unwrap_or_default();
    ensure(inside_init == holder, || {
        format!("pid 1 inside is {inside_init:?}, expected the holder {holder:?}")
    })?;
    ensure(inside_init != host_init || host_init == holder, || {
        format!("host pid 1 ({host_init:?}) is visible")
    })
}

fn tenants_do_not_see_each_other() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let b = env.start_default("beta")?;
    let mut sleeper = Command::new("/bin/sleep");
    sleeper.arg("30");
    let mut long = a.spawn(sleeper).map_err(|e| e.to_string())?;
    let _ = long.workload_id().ok_or("no workload")?;
    let comms = "for p in /proc/[0-9]*; do cat $p/comm; done";
    let in_a = ok(&a, comms)?;
    let in_b = ok(&b, comms)?;
    let _ = long.kill();
    let _ = long.wait();
    ensure(in_a.lines().any(|c| c == "sleep"), || {
        format!("tenant a does not see its own sleep: {in_a}")
    })?;
    ensure(!in_b.lines().any(|c| c == "sleep"), || {
        format!("tenant b sees tenant a's sleep: {in_b}")
    })?;
    let pids = pids_inside(&b)?;
    ensure(pids.len() <= 4, || format!("tenant b sees {pids:?}"))
}

fn identity_is_unprivileged_and_mapped() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let base = a.id_base();
    let ids = ok(&a, "id -u; id -g")?;
    ensure(ids == "1000\n1000\n", || format!("id inside: {ids:?}"))?;
    for map in ["uid_map", "gid_map"] {
        let text = ok(&a, &format!("cat /proc/self/{map}"))?;
        let fields: Vec<&str> = text.split_whitespace().collect();
        ensure(fields == ["0", &base.to_string(), "65536"], || {
            format!("{map} inside: {text:?}, expected 0 {base} 65536")
        })?;
    }
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    let mut long = a.spawn(sleeper).map_err(|e| e.to_string())?;
    let workload = workload_of(long.id());
    let status = workload
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default());
    let _ = long.kill();
    let _ = long.wait();
    let status = status?;
    for key in ["Uid:", "Gid:"] {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or("");
        let ids: Vec<u32> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|i| i.parse().ok())
            .collect();
        ensure(
            ids.len() == 4 && ids.iter().all(|&id| id == base + 1000),
            || format!("host {key} {ids:?}, expected all {}", base + 1000),
        )?;
        ensure(
            ids.iter().all(|&id| (base..base + ID_RANGE).contains(&id)),
            || format!("host {key} {ids:?} outside the tenant's range"),
        )?;
    }
    Ok(())
}

fn hostname_is_the_tenant() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let name = ok(&a, "cat /proc/sys/kernel/hostname; hostname")?;
    ensure(name == "alpha\nalpha\n", || {
        format!("hostname inside: {name:?}")
    })?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    ensure(host.trim() != "alpha", || {
        "the host's hostname changed".to_owned()
    })
}

fn root_usr_etc_are_read_only_tmp_is_sized() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    for path in [
        "/usr/bulkhead-probe",
        "/etc/bulkhead-probe",
        "/bulkhead-probe",
        "/dev/probe",
    ] {
        // As root inside too: a read-only mount stops even the namespace's root.
        let mut touch = Command::new("/bin/sh");
        touch
            .args(["-c", &format!(": > {path}")])
            .user(0, 0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (code, _, err) = output(&a, touch)?;
        ensure(code != 0 && err.contains("Read-only file system"), || {
            format!("writing {path}: exit {code}, {err:?} (expected EROFS)")
        })?;
    }
    let written = ok(
        &a,
        "echo hello > /tmp/x && cat /tmp/x && stat -f -c '%T %b %S' /tmp && stat -c '%a' /tmp",
    )?;
    let lines: Vec<&str> = written.lines().collect();
    ensure(lines.first() == Some(&"hello"), || {
        format!("/tmp: {written:?}")
    })?;
    let fs: Vec<&str> = lines.get(1).unwrap_or(&"").split_whitespace().collect();
    let size = match fs.as_slice() {
        [kind, blocks, block_size] if *kind == "tmpfs" => {
            blocks.parse::<u64>().unwrap_or(0) * block_size.parse::<u64>().unwrap_or(0)
        }
        _ => return Err(format!("/tmp is not tmpfs: {written:?}")),
    };
    ensure(size == 8 * 1024 * 1024, || {
        format!("/tmp size {size}, expected 8 MiB")
    })?;
    ensure(lines.get(2) == Some(&"1777"), || {
        format!("/tmp mode: {written:?}")
    })?;
    // Filling it past the limit fails.
    let (code, _, err) = sh(&a, "head -c 9000000 /dev/zero > /tmp/big")?;
    ensure(code != 0 && err.contains("No space left"), || {
        format!("writing 9 MB to an 8 MiB /tmp: exit {code}, {err:?}")
    })
}

fn dev_has_only_the_listed_nodes() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let listing = ok(&a, "ls -A /dev")?;
    let got: BTreeSet<&str> = listing.split_whitespace().collect();
    let want: BTreeSet<&str> = [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "fd", "stdin", "stdout",
        "stderr",
    ]
    .into_iter()
    .collect();
    ensure(got == want, || {
        format!("/dev holds {got:?}, expected {want:?}")
    })?;
    let nodes = ok(
        &a,
        "for n in /dev/*; do [ -c $n ] && [ ! -L $n ] && echo ${n#/dev/}; done; true",
    )?;
    let nodes: BTreeSet<&str> = nodes.split_whitespace().collect();
    let expected: BTreeSet<&str> = sandbox::DEV_NODES.iter().copied().collect();
    ensure(nodes == expected, || format!("device nodes {nodes:?}"))?;
    let used = ok(
        &a,
        "echo x > /dev/null && head -c 16 /dev/urandom | wc -c && head -c 4 /dev/zero | wc -c",
    )?;
    ensure(used == "16\n4\n", || {
        format!("device nodes do not work: {used:?}")
    })?;
    let pts = ok(&a, "ls -l /dev/pts/ptmx && stat -f -c %T /dev/pts")?;
    ensure(pts.contains("devpts"), || format!("/dev/pts: {pts}"))
}

fn every_mount_is_nosuid_and_nodev() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let text = ok(&a, "cat /proc/self/mountinfo")?;
    if std::env::var_os("BULKHEAD_TEST_VERBOSE").is_some() {
        println!("{text}");
    }
    let mounts = parse_mountinfo(&text).map_err(|e| e.to_string())?;
    ensure(mounts.len() >= 8, || format!("too few mounts: {text}"))?;
    let device_mounts: BTreeSet<PathBuf> = sandbox::DEV_NODES
        .iter()
        .map(|n| Path::new("/dev").join(n))
        .chain([PathBuf::from("/dev/pts")])
        .collect();
    for mount in &mounts {
        let options: Vec<&str> = mount.mount_options.split(',').collect();
        ensure(options.contains(&"nosuid"), || {
            format!(
                "{} lacks nosuid: {}",
                mount.mount_point.display(),
                mount.mount_options
            )
        })?;
        if !device_mounts.contains(&mount.mount_point) {
            ensure(options.contains(&"nodev"), || {
                format!(
                    "{} lacks nodev: {}",
                    mount.mount_point.display(),
                    mount.mount_options
                )
            })?;
        }
    }
    let points: BTreeSet<&Path> = mounts.iter().map(|m| m.mount_point.as_path()).collect();
    for needed in ["/", "/usr", "/proc", "/dev", "/dev/pts", "/tmp", "/etc"] {
        ensure(points.contains(Path::new(needed)), || {
            format!("{needed} is not a mount: {points:?}")
        })?;
    }
    for mount in &mounts {
        let read_only = mount.mount_options.split(',').any(|o| o == "ro");
        let must_be_ro =
            ["/", "/usr", "/etc", "/dev"].contains(&mount.mount_point.to_str().unwrap_or(""));
        ensure(!must_be_ro || read_only, || {
            format!(
                "{} is not read-only: {}",
                mount.mount_point.display(),
                mount.mount_options
            )
        })?;
    }
    // Nothing of the host's mount table (e.g. /var, /run, /sys) shows.
    ensure(
        !points
            .iter()
            .any(|p| p.starts_with("/var") || p.starts_with("/run") || p.starts_with("/sys")),
        || format!("host mounts visible: {points:?}"),
    )
}

fn etc_holds_only_the_subset() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let listing = ok(&a, "ls -A /etc")?;
    let allowed: BTreeSet<&str> = sandbox::ETC_SYNTHESIZED
        .iter()
        .chain(sandbox::ETC_COPIED)
        .chain(sandbox::ETC_BOUND)
        .map(|e| e.split('/').next().unwrap_or(e))
        .collect();
    for entry in listing.split_whitespace() {
        ensure(allowed.contains(entry), || {
            format!("/etc/{entry} is not in the subset")
        })?;
    }
    let passwd = ok(&a, "cat /etc/passwd; id -un")?;
    ensure(
        passwd.contains("tenant:x:1000:1000:alpha:") && passwd.ends_with("tenant\n"),
        || format!("passwd: {passwd}"),
    )?;
    let (code, _, _) = sh(&a, "cat /etc/shadow")?;
    ensure(code != 0, || "/etc/shadow is readable".to_owned())
}

fn netns_is_named_and_has_only_lo() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let name = env.instance.netns("alpha");
    let observed = sandbox::observe(&env.instance, "alpha").map_err(|e| e.to_string())?;
    ensure(observed.netns == NetnsEntry::Holder, || {
        format!("{observed:?}")
    })?;
    // Inside: only lo, and it is up.
    let dev = ok(&a, "cat /proc/net/dev")?;
    let links: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    ensure(links == ["lo"], || format!("interfaces inside: {links:?}"))?;
    let flags = ok(&a, "ip -o link show lo 2>/dev/null || echo no-ip")?;
    ensure(flags.contains("no-ip") || flags.contains("UP"), || {
        format!("lo: {flags}")
    })?;
    if Path::new("/usr/sbin/ip").exists() || Path::new("/sbin/ip").exists() {
        let list = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map_err(|e| format!("ip netns list: {e}"))?;
        let list = String::from_utf8_lossy(&list.stdout);
        ensure(
            list.lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str())),
            || format!("ip netns list lacks {name}: {list}"),
        )?;
        let links = std::process::Command::new("ip")
            .args(["netns", "exec", &name, "ip", "-o", "link"])
            .output()
            .map_err(|e| format!("ip netns exec: {e}"))?;
        let links = String::from_utf8_lossy(&links.stdout);
        ensure(
            links.lines().count() == 1 && links.contains(": lo:") && links.contains("UP"),
            || format!("ip netns exec {name} ip link: {links}"),
        )?;
    } else {
        println!("    (no `ip` on this host: checked /proc/net/dev only)");
    }
    Ok(())
}

fn environment_starts_empty() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let mut command = Command::new("env");
    command.env("GREETING", "hi").stdout(Stdio::piped());
    let (code, out, _) = output(&a, command)?;
    let vars: BTreeSet<&str> = out.lines().collect();
    let want: BTreeSet<&str> = [
        format!("PATH={}", sandbox::DEFAULT_PATH).as_str(),
        "GREETING=hi",
    ]
    .into_iter()
    .map(|s| -> &str { Box::leak(s.to_owned().into_boxed_str()) })
    .collect();
    ensure(code == 0 && vars == want, || {
        format!("environment inside: {vars:?}")
    })?;
    let mut cwd = Command::new("pwd");
    cwd.current_dir("/tmp").stdout(Stdio::piped());
    let (_, out, _) = output(&a, cwd)?;
    ensure(out == "/tmp\n", || format!("cwd: {out:?}"))
}

fn exit_codes_are_like_a_shell() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    for (script, want) in [
        ("exit 0", 0),
        ("exit 7", 7),
        ("kill -9 $$", 137),
        ("kill -TERM $$", 143),
    ] {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        let code = a.run(command).map_err(|e| e.to_string())?;
        ensure(code == want, || {
            format!("`{script}` gave {code}, expected {want}")
        })?;
    }
    let missing = a.run(Command::new("/no/such/program"));
    ensure(
        matches!(&missing, Err(SandboxError::Join { step, source, .. }) if step == "exec" && source.kind() == std::io::ErrorKind::NotFound),
        || format!("missing program: {missing:?}"),
    )?;
    let mut root = Command::new("true");
    root.user(70_000, 0);
    ensure(
        matches!(a.run(root), Err(SandboxError::InvalidId { id: 70_000, .. })),
        || "uid outside the range accepted".to_owned(),
    )
}

fn hooks_join_cgroup_then_pre_exec() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    // pre_exec: lower a soft limit; visible to the workload.
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", "ulimit -n"])
        .stdout(Stdio::piped())
        .pre_exec(|| {
            let mut limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            limit.current = Some(64);
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)?;
            Ok(())
        });
    let (code, out, _) = output(&a, command)?;
    ensure(code == 0 && out == "64\n", || {
        format!("pre_exec hook: {code} {out:?}")
    })?;
    // A failing hook names its step.
    let mut failing = Command::new("true");
    failing.pre_exec(|| Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied)));
    let result = a.run(failing);
    ensure(
        matches!(&result, Err(SandboxError::Join { step, .. }) if step == "pre_exec hook"),
        || format!("failing hook: {result:?}"),
    )?;
    // join_cgroup: a v1 pids hierarchy (or the unified one) on this host.
    let hierarchy = [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.join("cgroup.procs").exists());
    let Some(hierarchy) = hierarchy else {
        println!("    (no cgroup hierarchy: join_cgroup not checked)");
        return Ok(());
    };
    let cgroup = hierarchy.join(env.instance.prefix());
    std::fs::create_dir_all(&cgroup).map_err(|e| format!("{}: {e}", cgroup.display()))?;
    let result = (|| {
        let mut sleeper = Command::new("sleep");
        sleeper.arg("30").join_cgroup(cgroup.join("cgroup.procs"));
        let mut long = a.spawn(sleeper).map_err(|e| e.to_string())?;
        let workload = workload_of(long.id());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        let _ = long.kill();
        let _ = long.wait();
        let workload = workload?;
        ensure(procs.lines().any(|p| p == workload.to_string()), || {
            format!("workload {workload} not in {}: {procs:?}", cgroup.display())
        })
    })();
    for _ in 0..100 {
        if std::fs::remove_dir(&cgroup).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    result
}

/// The `confine` module's restricted profile through the `pre_exec` hook,
/// with Landlock paths named through the holder's root.
fn confinement_applies_inside() -> TestResult {
    use bulkhead_node::confine::landlock::{LandlockPaths, SYSTEM_READ_ONLY};
    use bulkhead_node::confine::{ConfineOptions, Confinement};

    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let inside = |list: &[&str]| -> Vec<PathBuf> {
        list.iter()
            .map(|p| a.host_path(p))
            .filter(|p| p.exists())
            .collect()
    };
    let mut read_only = inside(SYSTEM_READ_ONLY);
    read_only.extend(inside(&["/etc", "/proc"]));
    let options = ConfineOptions {
        paths: LandlockPaths {
            read_only,
            writable: inside(&["/tmp", "/dev/null", "/dev/zero", "/dev/full"]),
        },
        ..ConfineOptions::default()
    };
    let confinement = std::sync::Arc::new(
        Confinement::prepare(bulkhead_spec::Profile::Restricted, &options)
            .map_err(|e| format!("prepare confinement: {e}"))?,
    );
    let mut command = Command::new("/bin/sh");
    command
        .args([
            "-c",
            "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
             echo ok > /tmp/x && cat /tmp/x; ls / >/dev/null 2>&1 || echo root-denied",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .pre_exec(move || confinement.apply().map_err(Into::into));
    let (code, out, err) = output(&a, command)?;
    let fields: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let want: Vec<Vec<&str>> = vec![
        vec!["CapEff:", "0000000000000000"],
        vec!["CapBnd:", "0000000000000000"],
        vec!["NoNewPrivs:", "1"],
        vec!["Seccomp:", "2"],
        vec!["ok"],
        vec!["root-denied"],
    ];
    ensure(code == 0 && fields == want, || {
        format!("confined workload: exit {code}, {out:?}, {err:?}")
    })
}

/// The holder joins `holder_cgroups` before creating the cgroup namespace,
/// so the tenant's cgroup is `/` inside.
fn holder_joins_its_cgroups() -> TestResult {
    let Some(hierarchy) = [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.join("cgroup.procs").exists()) else {
        println!("    (no cgroup hierarchy: holder_cgroups not checked)");
        return Ok(());
    };
    let mut env = Env::new();
    let cgroup = hierarchy.join(env.instance.prefix());
    std::fs::create_dir_all(&cgroup).map_err(|e| format!("{}: {e}", cgroup.display()))?;
    let result = (|| {
        let mut config = env.config("alpha");
        config.holder_cgroups = vec![cgroup.join("cgroup.procs")];
        let a = env.start(&config)?;
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
        ensure(
            procs.lines().any(|p| p == a.holder_pid().to_string()),
            || {
                format!(
                    "holder {} not in {}: {procs:?}",
                    a.holder_pid(),
                    cgroup.display()
                )
            },
        )?;
        let mut command = Command::new("cat");
        command
            .arg("/proc/self/cgroup")
            .join_cgroup(cgroup.join("cgroup.procs"))
            .stdout(Stdio::piped());
        let (_, out, _) = output(&a, command)?;
        let controller = hierarchy
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n != "cgroup")
            .unwrap_or("");
        let line = out
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == controller))
            })
            .unwrap_or("");
        ensure(line.ends_with(":/"), || {
            format!("inside, the tenant's cgroup is not the root: {out:?}")
        })?;
        sandbox::stop(&env.instance, "alpha").map_err(|e| e.to_string())?;
        Ok(())
    })();
    for _ in 0..100 {
        if std::fs::remove_dir(&cgroup).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    result
}

fn volume_appears_at_data() -> TestResult {
    let mut env = Env::new();
    let volume = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(volume.path().join("hello"), "from the host\n").map_err(|e| e.to_string())?;
    let mut config = env.config("alpha");
    config.volume = Some(volume.path().to_owned());
    let a = env.start(&config)?;
    let text = ok(&a, "cat /data/hello")?;
    ensure(text == "from the host\n", || {
        format!("/data/hello: {text:?}")
    })
}

fn exec_finds_a_tenant_by_name() -> TestResult {
    let mut env = Env::new();
    let _a = env.start_default("alpha")?;
    let mut command = Command::new("true");
    command.stdout(Stdio::null());
    let code = sandbox::exec(&env.instance, "alpha", command).map_err(|e| e.to_string())?;
    ensure(code == 0, || format!("exec gave {code}"))?;
    let missing = sandbox::exec(&env.instance, "nobody-here", Command::new("true"));
    ensure(
        matches!(missing, Err(SandboxError::NotRunning { .. })),
        || format!("exec in a missing tenant: {missing:?}"),
    )
}

fn start_is_idempotent() -> TestResult {
    let mut env = Env::new();
    let config = env.config("alpha");
    let first = env.start(&config)?;
    let second = env.start(&config)?;
    ensure(first.holder_pid() == second.holder_pid(), || {
        format!(
            "second start made holder {} (first {})",
            second.holder_pid(),
            first.holder_pid()
        )
    })
}

fn stop_leaves_nothing() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let pid = a.holder_pid();
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    let mut long = a.spawn(sleeper).map_err(|e| e.to_string())?;
    let workload = workload_of(long.id())?;
    let report = sandbox::stop(&env.instance, "alpha").map_err(|e| e.to_string())?;
    ensure(
        report.killed == Some(pid) && report.netns_removed && report.root_removed,
        || format!("stop report: {report:?}"),
    )?;
    let code = long.wait().map_err(|e| e.to_string())?;
    ensure(code == 137, || {
        format!("workload ended with {code}, expected SIGKILL (137)")
    })?;
    ensure(!Path::new(&format!("/proc/{pid}")).exists(), || {
        format!("holder {pid} remains")
    })?;
    ensure(!Path::new(&format!("/proc/{workload}")).exists(), || {
        format!("workload {workload} remains")
    })?;
    ensure(!env.instance.netns_path("alpha").exists(), || {
        "netns entry remains".to_owned()
    })?;
    ensure(!env.instance.sandbox_root("alpha").exists(), || {
        "root dir remains".to_owned()
    })?;
    let observed = sandbox::observe(&env.instance, "alpha").map_err(|e| e.to_string())?;
    ensure(observed.is_absent(), || format!("after stop: {observed:?}"))?;
    let again = sandbox::stop(&env.instance, "alpha").map_err(|e| e.to_string())?;
    ensure(again == sandbox::StopReport::default(), || {
        format!("second stop: {again:?}")
    })
}

fn crashed_holder_is_observed_and_collected() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let pid = a.holder_pid();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).ok_or("pid 0")?,
        rustix::process::Signal::KILL,
    )
    .map_err(|e| e.to_string())?;
    // Reap it (we are its subreaper) so it is gone, not a zombie.
    let _ = rustix::process::waitpid(
        rustix::process::Pid::from_raw(pid as i32),
        rustix::process::WaitOptions::empty(),
    );
    let observed = sandbox::observe(&env.instance, "alpha").map_err(|e| e.to_string())?;
    ensure(
        observed.holder == HolderState::Gone { pid }
            && observed.netns == NetnsEntry::Other
            && observed.has_leftovers(),
        || format!("after a crash: {observed:?}"),
    )?;
    ensure(
        matches!(
            a.run(Command::new("true")),
            Err(SandboxError::NotRunning { .. })
        ),
        || "run in a crashed sandbox did not say NotRunning".to_owned(),
    )?;
    // start collects the leftovers and starts afresh.
    let again = env.start_default("alpha")?;
    ensure(again.holder_pid() != pid, || {
        "the dead holder was reused".to_owned()
    })?;
    ok(&again, "true")?;
    let report = sandbox::stop(&env.instance, "alpha").map_err(|e| e.to_string())?;
    ensure(report.killed.is_some() && report.netns_removed, || {
        format!("{report:?}")
    })?;
    let observed = sandbox::observe(&env.instance, "alpha").map_err(|e| e.to_string())?;
    ensure(observed.is_absent(), || format!("after stop: {observed:?}"))
}

fn caller_threads_do_not_matter() -> TestResult {
    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    // Start and run from several threads at once.
    let results: Vec<Result<i32, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let a = &a;
                scope.spawn(move || {
                    let mut command = Command::new("/bin/sh");
                    command.args(["-c", &format!("exit {i}")]);
                    a.run(command).map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("thread panicked".to_owned()))
            })
            .collect()
    });
    for (i, result) in results.into_iter().enumerate() {
        let code = result?;
        ensure(code == i as i32, || format!("thread {i} got {code}"))?;
    }
    Ok(())
}

/// Removes the bridge and the tenant's veth even when the test fails.
struct NetGuard<'a>(&'a Instance, &'a str);

impl Drop for NetGuard<'_> {
    fn drop(&mut self) {
        let _ = bulkhead_node::net::link::remove_tenant(self.0, self.1);
        let _ = bulkhead_node::net::link::remove_bridge(self.0);
    }
}

/// `net::link` wires a tenant through the real launcher's registered
/// namespace: `eth0` appears inside, and the tenant reaches the bridge.
fn network_wires_into_the_sandbox() -> TestResult {
    use bulkhead_node::net::link::{self, BridgeConfig, NetnsRef, TenantLink};
    use std::io::Read as _;
    use std::os::fd::AsFd as _;

    let mut env = Env::new();
    let a = env.start_default("alpha")?;
    let range: ipnet::Ipv4Net = env.slot.range().parse().map_err(|e| format!("{e}"))?;
    let bridge = BridgeConfig { range };
    let _guard = NetGuard(&env.instance, "alpha");
    link::ensure_bridge(&env.instance, &bridge).map_err(|e| e.to_string())?;
    let address = bulkhead_node::net::allocate(range, &BTreeSet::new()).ok_or("no address")?;
    let tenant = TenantLink {
        tenant: "alpha".to_owned(),
        netns: NetnsRef::of_tenant(&env.instance, "alpha"),
        address,
    };
    link::ensure_tenant(&env.instance, &bridge, &tenant).map_err(|e| e.to_string())?;
    let state = link::observe_tenant(&env.instance, &bridge, &tenant).map_err(|e| e.to_string())?;
    ensure(state.is_wired(), || format!("{state:?}"))?;
    // The holder's pid names the same namespace.
    let by_pid = TenantLink {
        netns: NetnsRef::Pid(a.holder_pid()),
        ..tenant.clone()
    };
    let state = link::observe_tenant(&env.instance, &bridge, &by_pid).map_err(|e| e.to_string())?;
    ensure(state.is_wired(), || format!("by pid: {state:?}"))?;
    let dev = ok(&a, "cat /proc/net/dev")?;
    ensure(dev.contains("eth0:"), || format!("inside: {dev}"))?;

    let gateway = bridge.address().ok_or("no bridge address")?;
    let listener = std::net::TcpListener::bind((gateway, 0)).map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = std::thread::spawn(move || {
        listener
            .accept()
            .map(|(mut s, peer)| {
                let _ = std::io::Write::write_all(&mut s, b"k");
                peer.ip()
            })
            .map_err(|e| e.to_string())
    });
    let netns = std::fs::File::open(env.instance.netns_path("alpha")).map_err(|e| e.to_string())?;
    let got = std::thread::scope(|s| {
        s.spawn(|| -> Result<u8, String> {
            rustix::thread::move_into_link_name_space(
                netns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| e.to_string())?;
            let mut stream = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from((gateway, port)),
                // Generous: a positive check, and the machine may be loaded.
                std::time::Duration::from_secs(10),
            )
            .map_err(|e| e.to_string())?;
            let mut b = [0u8; 1];
            stream.read_exact(&mut b).map_err(|e| e.to_string())?;
            Ok(b[0])
        })
        .join()
        .map_err(|_| "probe thread panicked".to_owned())?
    })?;
    let peer = server.join().map_err(|_| "server panicked")??;
    ensure(got == b'k' && peer == std::net::IpAddr::V4(address), || {
        format!("reply {got}, peer {peer}")
    })
}
