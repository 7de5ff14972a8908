//! The host backend end to end, through the `bulkhead` binary, on the real kernel (root;
//! CI is root). Each test runs its own instance — a prefix and tenant range reserved
//! across every process on the host (`netslot`), a state root and master key — and
//! removes everything it created with `gc --all`, also when it fails.
//!
//! Assertions read kernel state (cgroup files, /proc/mounts, loop devices, /run/netns)
//! and what a process sees from inside, never bulkhead's own output alone.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

#[path = "../../bulkhead-node/tests/support/netslot.rs"]
mod netslot;
use netslot::Slot;

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (cgroups, namespaces, loop devices)");
            return;
        }
    };
}

/// One instance of bulkhead for one test, collected on drop.
struct Instance {
    prefix: String,
    state: tempfile::TempDir,
    specs: tempfile::TempDir,
    /// Prefix and tenant range; held until after `gc --all` (fields drop after
    /// `Drop::drop`).
    slot: Slot,
}

impl Instance {
    /// The examples, renamed to a unique instance with its own master key file.
    fn new() -> Instance {
        let slot = Slot::tenant_range('h');
        let prefix = slot.prefix();
        let state = tempfile::tempdir().expect("tempdir");
        let specs = tempfile::tempdir().expect("tempdir");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples"),
            specs.path(),
        );
        let platform = specs.path().join("platform.yaml");
        let key = state.path().join("master.key");
        let text = std::fs::read_to_string(&platform)
            .expect("read")
            .replace("instance: bh ", &format!("instance: {prefix} "))
            .replace(
                "tenantRange: 10.240.0.0/24",
                &format!("tenantRange: {}", slot.range()),
            )
            .replace(
                "file: /etc/bulkhead/master.key",
                &format!("file: {}", key.display()),
            );
        std::fs::write(&platform, text).expect("write");
        Instance {
            prefix,
            state,
            specs,
            slot,
        }
    }

    fn cmd(&self) -> Command {
        let mut command = Command::cargo_bin("bulkhead").expect("binary");
        command
            .env("BULKHEAD_STATE_ROOT", self.state.path())
            .env("BULKHEAD_INSTANCE", &self.prefix)
            .env("BULKHEAD_ACTOR", "host-test");
        command
    }

    fn apply(&self) {
        self.cmd()
            .arg("apply")
            .arg(self.specs.path())
            .assert()
            .success();
    }

    /// Runs a shell command inside a tenant; returns (exit code, stdout).
    fn run(&self, tenant: &str, script: &str) -> (i32, String) {
        let output = self
            .cmd()
            .args(["run", tenant, "--", "/bin/sh", "-c", script])
            .output()
            .expect("run");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    fn cgroup_file(&self, controller: &str, tenant: &str, file: &str) -> String {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{controller}/{}/{tenant}/{file}",
            self.prefix
        ))
        .unwrap_or_default()
        .trim()
        .to_owned()
    }

    fn state_dir(&self) -> PathBuf {
        self.state.path().join(&self.prefix)
    }

    /// Everything of this instance still on the host, as readable lines.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = entry.path().join(&self.prefix);
            if dir.exists() {
                found.push(format!("cgroup {}", dir.display()));
            }
        }
        let state = self.state_dir().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines().filter(|l| l.contains(&state)) {
            found.push(format!("mount {line}"));
        }
        for entry in std::fs::read_dir("/sys/block")
            .into_iter()
            .flatten()
            .flatten()
        {
            let backing = entry.path().join("loop/backing_file");
            if let Ok(file) = std::fs::read_to_string(&backing)
                && file.contains(&state)
            {
                found.push(format!(
                    "loop device {} -> {}",
                    entry.file_name().to_string_lossy(),
                    file.trim()
                ));
            }
        }
        for entry in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{}-", self.prefix))
            {
                found.push(format!("netns {}", entry.path().display()));
            }
        }
        for entry in std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&self.prefix) {
                found.push(format!("link {name}"));
            }
        }
        if let Ok(out) = std::process::Command::new("nft")
            .args(["list", "tables"])
            .output()
        {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if line.ends_with(&format!("bulkhead_{}", self.prefix)) {
                    found.push(format!("nftables {line}"));
                }
            }
        }
        for sub in ["volumes", "mnt", "roots", "sandboxes"] {
            for entry in std::fs::read_dir(self.state_dir().join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                found.push(format!("file {}", entry.path().display()));
            }
        }
        // Holders are named after the tenant in ps: none may survive.
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Ok(cmdline) = std::fs::read_to_string(entry.path().join("cmdline")) {
                let status =
                    std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                let zombie = status
                    .lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z'));
                if !zombie && cmdline.contains("bulkhead-holder") {
                    let cgroup =
                        std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
                    if cgroup.contains(&format!("/{}/", self.prefix)) {
                        found.push(format!(
                            "holder process {}",
                            entry.file_name().to_string_lossy()
                        ));
                    }
                }
            }
        }
        found
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.cmd().args(["gc", "--all"]).output();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else if entry.path().extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

#[test]
fn apply_builds_the_sandboxes_the_spec_says() {
    require_root!();
    let instance = Instance::new();
    instance.apply();

    // Limits, read back from the kernel's own files.
    assert_eq!(
        instance.cgroup_file("memory", "web", "memory.limit_in_bytes"),
        (2u64 << 30).to_string()
    );
    assert_eq!(
        instance.cgroup_file("memory", "web", "memory.memsw.limit_in_bytes"),
        (2u64 << 30).to_string(),
        "swap disabled"
    );
    assert_eq!(instance.cgroup_file("pids", "web", "pids.max"), "512");
    assert_eq!(
        instance.cgroup_file("cpu", "web", "cpu.shares"),
        "2048",
        "weight 200"
    );
    assert_eq!(
        instance.cgroup_file("cpu", "web", "cpu.cfs_quota_us"),
        "200000"
    );
    assert_eq!(
        instance.cgroup_file("memory", "web/app", "memory.limit_in_bytes"),
        (512u64 << 20).to_string()
    );
    assert!(
        instance
            .cgroup_file("blkio", "web", "blkio.throttle.read_bps_device")
            .ends_with(&(100u64 << 20).to_string())
    );

    // Each volume: ext4, mounted nosuid,nodev.
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    for tenant in ["web", "db", "ingress"] {
        let point = instance.state_dir().join("mnt").join(tenant);
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(point.to_str().expect("utf8")))
            .unwrap_or_else(|| panic!("{tenant}'s volume is not mounted:\n{mounts}"));
        assert!(
            line.contains(" ext4 ") && line.contains("nosuid") && line.contains("nodev"),
            "{line}"
        );
    }

    // From inside: an unprivileged user, no capabilities, no_new_privs, seccomp, own pids.
    let (code, out) = instance.run(
        "web",
        "id -u; hostname; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; ls /proc | grep -c '^[0-9]'",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(code, 0, "{out}");
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "web");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("CapEff:") && l.ends_with("0000000000000000")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("CapBnd:") && l.ends_with("0000000000000000")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Seccomp:") && l.ends_with('2')),
        "{out}"
    );
    let pids: usize = lines
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid count");
    assert!(pids <= 6, "web sees {pids} processes: not only its own");

    // Denied as designed: the host's /usr, new user namespaces, mounts.
    let (code, _) = instance.run("web", "touch /usr/bulkhead-test");
    assert_ne!(code, 0, "wrote to /usr");
    let (code, _) = instance.run("web", "unshare -U true");
    assert_ne!(code, 0, "created a user namespace");
    // The volume is writable, and the host's uid for the tenant's files is in its range.
    let (code, out) = instance.run("web", "echo canary > /data/canary && cat /data/canary");
    assert_eq!((code, out.trim()), (0, "canary"));
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(instance.state_dir().join("mnt/web/data/canary"))
            .expect("canary on the host"),
    );
    assert!(
        owner >= 1_000_000_000,
        "tenant file owned by host uid {owner}"
    );

    // Tenants' host ids never overlap.
    let (_, db_out) = instance.run("db", "echo x > /data/x");
    let _ = db_out;
    let db_owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(instance.state_dir().join("mnt/db/data/x")).expect("db file"),
    );
    assert!(
        owner.abs_diff(db_owner) >= 65_536,
        "web {owner} and db {db_owner} share an id range"
    );

    // Converged: a second plan has nothing to do.
    instance
        .cmd()
        .args(["plan", "--detailed-exitcode"])
        .arg(instance.specs.path())
        .assert()
        .code(0);
}

#[test]
fn suspend_freezes_and_evicts_then_resume_restores() {
    require_root!();
    let instance = Instance::new();
    instance.apply();
    instance.run("web", "echo kept > /data/kept");
    instance
        .cmd()
        .args(["suspend", "web", "--evict-key"])
        .assert()
        .success();
    assert_eq!(
        instance.cgroup_file("freezer", "web", "freezer.state"),
        "FROZEN"
    );
    // With the key out of the kernel, contents cannot be read and nothing can be
    // created, even by root on the host. (The frozen sandbox pins the directory, so
    // its names stay cached until the sandbox stops: documented in THREAT-MODEL.)
    let data = instance.state_dir().join("mnt/web/data");
    let read = std::fs::read_to_string(data.join("kept"));
    assert_eq!(
        read.map_err(|e| e.raw_os_error()),
        Err(Some(126)),
        "ENOKEY expected"
    );
    let create = std::fs::File::create(data.join("new"));
    assert_eq!(
        create.map_err(|e| e.raw_os_error()).map(|_| ()),
        Err(Some(126))
    );
    instance.cmd().args(["resume", "web"]).assert().success();
    assert_eq!(
        instance.cgroup_file("freezer", "web", "freezer.state"),
        "THAWED"
    );
    let (code, out) = instance.run("web", "cat /data/kept");
    assert_eq!((code, out.trim()), (0, "kept"));
}

#[test]
fn a_suspended_tenant_can_be_offboarded() {
    require_root!();
    let instance = Instance::new();
    instance.apply();
    instance
        .cmd()
        .args(["suspend", "web", "--evict-key"])
        .assert()
        .success();
    instance.cmd().args(["gc", "--all"]).assert().success();
    assert_eq!(instance.leftovers(), Vec::<String>::new());
}

#[test]
fn gc_all_leaves_nothing_named_after_the_instance() {
    require_root!();
    let instance = Instance::new();
    instance.apply();
    assert!(!instance.leftovers().is_empty(), "apply created nothing?");
    instance.cmd().args(["gc", "--all"]).assert().success();
    assert_eq!(instance.leftovers(), Vec::<String>::new());
    let db = rusqlite::Connection::open(instance.state_dir().join("state.db")).expect("store");
    let keys: i64 = db
        .query_row("SELECT count(*) FROM tenant_keys", [], |r| r.get(0))
        .expect("count");
    assert_eq!(keys, 0, "wrapped keys survived offboarding");
    instance.cmd().args(["audit", "verify"]).assert().success();
}

#[test]
fn a_crash_after_any_action_is_repaired_by_the_next_apply() {
    require_root!();
    // How many host actions a clean apply takes.
    let probe = Instance::new();
    let plan = probe
        .cmd()
        .args(["plan", "-o", "json"])
        .arg(probe.specs.path())
        .output()
        .expect("plan");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("json");
    let steps = plan["host_actions"].as_array().map_or(0, Vec::len);
    assert!(steps >= 10, "{plan}");
    drop(probe);
    for crash_after in 1..=steps {
        let instance = Instance::new();
        instance
            .cmd()
            .args(["apply", "--fail-after", &crash_after.to_string()])
            .arg(instance.specs.path())
            .assert()
            .code(1);
        instance.apply();
        instance
            .cmd()
            .args(["plan", "--detailed-exitcode"])
            .arg(instance.specs.path())
            .assert()
            .code(0);
        let (code, out) = instance.run("db", "echo ok");
        assert_eq!(
            (code, out.trim()),
            (0, "ok"),
            "after a crash at action {crash_after}"
        );
        instance.cmd().args(["gc", "--all"]).assert().success();
        assert_eq!(
            instance.leftovers(),
            Vec::<String>::new(),
            "after a crash at action {crash_after}"
        );
    }
}

/// A TCP connect from inside `from` to `address:port`, with a short timeout.
/// A TCP connect from inside `from`; a probe that did not run is a test failure,
/// never a "closed".
fn connects(instance: &Instance, from: &str, address: &str, port: u16) -> bool {
    let script = format!(
        "import socket\ns = socket.socket()\ns.settimeout(2.0)\ntry:\n    s.connect(('{address}', {port}))\n    print('open')\nexcept Exception:\n    print('closed')\n"
    );
    let output = instance
        .cmd()
        .args(["run", from, "--", "/usr/bin/python3", "-c", &script])
        .output()
        .expect("probe");
    match String::from_utf8_lossy(&output.stdout).trim() {
        "open" => true,
        "closed" => false,
        other => panic!(
            "the probe from {from} to {address}:{port} did not run (stdout {other:?}): {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn address_of(instance: &Instance, tenant: &str) -> String {
    let db = rusqlite::Connection::open(instance.state_dir().join("state.db")).expect("store");
    db.query_row(
        "SELECT address FROM tenant_addresses WHERE tenant = ?1",
        [tenant],
        |r| r.get(0),
    )
    .expect("address")
}

#[test]
fn tenant_traffic_follows_the_policy_engine() {
    require_root!();
    let instance = Instance::new();
    instance.apply();
    // Every workload listens on its port (web 8080, db 5432, ingress 8443).
    let mut servers = Vec::new();
    for (tenant, workload) in [("web", "app"), ("db", "postgres"), ("ingress", "proxy")] {
        servers.push(
            std::process::Command::new(assert_cmd::cargo::cargo_bin("bulkhead"))
                .env("BULKHEAD_STATE_ROOT", instance.state.path())
                .env("BULKHEAD_INSTANCE", &instance.prefix)
                .args(["run", tenant, "--workload", workload])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("server"),
        );
    }
    let (web, db, ingress) = (
        address_of(&instance, "web"),
        address_of(&instance, "db"),
        address_of(&instance, "ingress"),
    );
    // Each ordered pair on each listening port, against what the engine says
    // (examples: ingress -> web 8080, web -> db 5432, nothing else between tenants).
    let cases = [
        ("web", &db, 5432, true),
        ("web", &ingress, 8443, false),
        ("db", &web, 8080, false),
        ("db", &ingress, 8443, false),
        ("ingress", &web, 8080, true),
        ("ingress", &db, 5432, false),
        ("web", &db, 8080, false),
    ];
    let mut wrong = Vec::new();
    for (from, to, port, expected) in cases {
        // An allowed pair is tried until its server listens (10 s at most); a denied
        // one once: any success is a leak.
        let tries = if expected { 20 } else { 1 };
        let observed = (0..tries).any(|_| {
            connects(&instance, from, to, port) || {
                std::thread::sleep(std::time::Duration::from_millis(500));
                false
            }
        });
        if observed != expected {
            wrong.push(format!(
                "{from} -> {to}:{port}: expected {expected}, observed {observed}"
            ));
        }
    }
    // The bridge address (the host) exposes no port: the platform lists no hostPorts.
    let bridge = &instance.slot.bridge_address().to_string();
    if connects(&instance, "web", bridge, 22) {
        wrong.push("web reached the host on port 22".to_owned());
    }
    for mut server in servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn verify_finds_no_leak_between_the_examples() {
    require_root!();
    let instance = Instance::new();
    instance.apply();
    for class in ["processes", "filesystem", "ipc", "privilege"] {
        let output = instance
            .cmd()
            .args(["verify", "--only", class, "--format", "json"])
            .output()
            .expect("verify");
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!("{class}: {e}: {}", String::from_utf8_lossy(&output.stderr))
            });
        let leaks: Vec<&serde_json::Value> = report["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["verdict"] != "pass" && r["verdict"] != "skipped")
            .collect();
        assert!(leaks.is_empty(), "{class}: {leaks:#?}");
        assert_eq!(output.status.code(), Some(0), "{class}");
    }
    instance
        .cmd()
        .args(["describe", "tenant", "web"])
        .assert()
        .success()
        .stdout(predicates::str::contains("Last verify: exposure 0"));
}

#[test]
fn apply_repairs_a_raised_limit_and_a_killed_holder() {
    require_root!();
    let instance = Instance::new();
    instance.apply();
    let pids_max = format!("/sys/fs/cgroup/pids/{}/web/pids.max", instance.prefix);
    std::fs::write(&pids_max, "max").expect("tamper with pids.max");
    // Kill db's holder: everything in its pid namespace dies with it.
    let record = std::fs::read_to_string(instance.state_dir().join("sandboxes/db.holder"))
        .expect("holder record");
    let pid: i32 = record
        .lines()
        .find_map(|l| l.strip_prefix("pid=")?.parse().ok())
        .expect("holder pid");
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    let plan = instance
        .cmd()
        .args(["plan", "--detailed-exitcode"])
        .arg(instance.specs.path())
        .output()
        .expect("plan");
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(4), "{text}");
    assert!(text.contains("set web's cgroup limits"), "{text}");
    assert!(text.contains("start db's sandbox"), "{text}");
    instance.apply();
    assert_eq!(
        std::fs::read_to_string(&pids_max).expect("read").trim(),
        "512"
    );
    let (code, out) = instance.run("db", "hostname");
    assert_eq!((code, out.trim()), (0, "db"));
    instance
        .cmd()
        .args(["plan", "--detailed-exitcode"])
        .arg(instance.specs.path())
        .assert()
        .code(0);
}

/// Gives `instance` the given `hostPorts`; returns its bridge address (the tenant range
/// is the instance's own, see [`Slot`]).
fn own_network(instance: &Instance, host_ports: &str) -> String {
    let platform = instance.specs.path().join("platform.yaml");
    let text = std::fs::read_to_string(&platform)
        .expect("read")
        .replace("hostPorts: []", &format!("hostPorts: {host_ports}"));
    std::fs::write(&platform, text).expect("write");
    instance.slot.bridge_address().to_string()
}

/// `verify --only network` as JSON: (exit code, report).
fn verify_network(instance: &Instance) -> (Option<i32>, serde_json::Value) {
    let output = instance
        .cmd()
        .args(["verify", "--only", "network", "--format", "json"])
        .output()
        .expect("verify");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code(), report)
}

/// The violations as `verdict class tenant target id` lines.
fn violations(report: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["verdict"] == "leak" || r["verdict"] == "outage")
        .map(|r| {
            let target = r["target"]["name"]
                .as_str()
                .unwrap_or_else(|| r["target"]["kind"].as_str().unwrap_or("?"));
            format!(
                "{} {} {} {target} {}",
                r["verdict"].as_str().unwrap_or("?"),
                r["class"].as_str().unwrap_or("?"),
                r["tenant"].as_str().unwrap_or("?"),
                r["id"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    found.sort();
    found
}

fn nft(args: &str) {
    let status = std::process::Command::new("nft")
        .args(args.split(' '))
        .status()
        .expect("nft");
    assert!(status.success(), "nft {args}");
}

#[test]
fn verify_network_passes_and_the_host_answers_only_on_host_ports() {
    require_root!();
    let instance = Instance::new();
    let bridge = own_network(&instance, "[7077/tcp]");
    instance.apply();
    // The platform opens 7077/tcp on the host: something listens there.
    let listener = std::net::TcpListener::bind((bridge.as_str(), 7077)).expect("host listener");
    let (code, report) = verify_network(&instance);
    drop(listener);
    assert_eq!(violations(&report), Vec::<String>::new());
    assert_eq!(code, Some(0));
    let rows = report["rows"].as_array().expect("rows");
    for tenant in ["web", "db", "ingress"] {
        let host_port = rows
            .iter()
            .find(|r| r["tenant"] == tenant && r["id"] == "network.host.tcp.7077")
            .unwrap_or_else(|| panic!("{tenant}: no host port row"));
        assert_eq!(
            (&host_port["expected"], &host_port["observed"]),
            (
                &serde_json::json!("allowed"),
                &serde_json::json!("connected")
            ),
            "{tenant}"
        );
    }
    // Every kind of attempt was made and judged.
    for id in [
        "network.tcp.8080",
        "network.udp.5432",
        "network.host.tcp.22",
        "network.metadata.tcp.80",
        "network.icmp-echo",
        "network.spoof",
        "network.broadcast",
        "network.neighbour-spoof",
    ] {
        assert!(
            rows.iter().any(|r| r["id"] == id && r["verdict"] == "pass"),
            "no passing {id} row"
        );
    }
}

#[test]
fn a_firewall_wider_or_narrower_than_the_engine_is_exactly_that_leak_or_outage() {
    require_root!();
    let instance = Instance::new();
    own_network(&instance, "[]");
    instance.apply();
    let table = format!("inet bulkhead_{} allow", instance.prefix);
    let (web, db) = (address_of(&instance, "web"), address_of(&instance, "db"));

    // An extra accept element: db may now open web's 8080, which the engine denies.
    let extra = format!("{{ {db} . {web} . tcp . 8080 }}");
    nft(&format!("add element {table} {extra}"));
    let (code, report) = verify_network(&instance);
    assert_eq!(
        violations(&report),
        vec!["leak network db web network.tcp.8080".to_owned()]
    );
    assert_eq!(code, Some(7));
    nft(&format!("delete element {table} {extra}"));

    // A lost allow element: web can no longer reach db's 5432, which the engine allows.
    nft(&format!(
        "delete element {table} {{ {web} . {db} . tcp . 5432 }}"
    ));
    let (code, report) = verify_network(&instance);
    assert_eq!(
        violations(&report),
        vec!["outage network web db network.tcp.5432".to_owned()]
    );
    assert_eq!(code, Some(7));
}

/// `ip [-n netns] -j ARGS` as JSON (an empty list when it prints nothing).
fn ip_json(netns: Option<&str>, args: &str) -> serde_json::Value {
    let mut command = std::process::Command::new("ip");
    if let Some(ns) = netns {
        command.args(["-n", ns]);
    }
    let output = command
        .arg("-j")
        .args(args.split(' '))
        .output()
        .expect("ip");
    assert!(output.status.success(), "ip {args}: {output:?}");
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return serde_json::json!([]);
    }
    serde_json::from_slice(&output.stdout).expect("ip json")
}

/// One neighbour entry: (address, lladdr, states).
type Entry = (String, String, String);

/// The neighbour entries with a link-layer address of a namespace (`None`: the host's on
/// `dev`).
fn neighbour_entries(netns: Option<&str>, dev: &str) -> Vec<Entry> {
    ip_json(netns, &format!("neigh show dev {dev}"))
        .as_array()
        .expect("neighbours")
        .iter()
        .filter_map(|n| {
            Some((
                n["dst"].as_str()?.to_owned(),
                n["lladdr"].as_str()?.to_owned(),
                n["state"].to_string(),
            ))
        })
        .collect()
}

/// With an `accept` at the top of the bridge table's `prerouting`, forged ARP frames
/// reach the host and the other tenants. Whether one then poisons a table depends on
/// the wiring (the kernel never lets ARP override a permanent entry), so the test reads
/// every neighbour table of the instance itself, from the kernel: each entry that maps
/// an address to another tenant's MAC (or to a MAC no interface has, the forged
/// `02:62:…`) must be named by a `network.neighbour-spoof` leak against that table's
/// owner, and each leak must name entries of the instance's addresses at the
/// attacker's MAC or a forged one. Where the host learnt its tenants' entries by ARP
/// (not permanent), the forged requests must have poisoned one.
#[test]
fn forged_arp_through_an_open_bridge_is_a_neighbour_spoof_leak_naming_the_entry() {
    require_root!();
    let instance = Instance::new();
    own_network(&instance, "[]");
    instance.apply();
    let tenants = ["db", "ingress", "web"];
    let netns = |t: &str| format!("{}-{t}", instance.prefix);
    let bridge = format!("{}-br", instance.prefix);
    let mac_of = |t: &str| -> String {
        ip_json(Some(&netns(t)), "link show eth0")[0]["address"]
            .as_str()
            .expect("eth0 mac")
            .to_owned()
    };
    let macs: Vec<(String, String, String)> = tenants
        .iter()
        .map(|t| (t.to_string(), mac_of(t), address_of(&instance, t)))
        .collect();
    nft(&format!(
        "insert rule bridge bulkhead_{} prerouting accept",
        instance.prefix
    ));
    // The host holds a permanent entry for each tenant, which no ARP packet changes:
    // delete db's, so that the open bridge has something to let poison.
    let db_address = address_of(&instance, "db");
    let deleted = std::process::Command::new("ip")
        .args(["neigh", "del", &db_address, "dev", &bridge])
        .status()
        .expect("ip neigh del");
    assert!(deleted.success(), "the host had a permanent entry for db");
    let (_, report) = verify_network(&instance);
    // The kernel's word: (attacker or "forged", table owner, entry).
    let mut evidence: Vec<(String, String, String)> = Vec::new();
    let mut tables: Vec<(String, Vec<Entry>)> =
        vec![("host".to_owned(), neighbour_entries(None, &bridge))];
    for t in tenants {
        tables.push((t.to_owned(), neighbour_entries(Some(&netns(t)), "eth0")));
    }
    // Whether the host learns its tenants by ARP (after the run, every tenant has
    // talked to it), rather than holding permanent entries for them.
    let learnt = tables[0].1.iter().any(|(ip, _, state)| {
        macs.iter().any(|(_, _, own)| own == ip) && !state.contains("PERMANENT")
    });
    for (owner, entries) in &tables {
        for (ip, lladdr, _) in entries {
            if lladdr.starts_with("02:62:") {
                evidence.push(("forged".into(), owner.clone(), ip.clone()));
            }
            for (attacker, mac, own) in &macs {
                if lladdr == mac && ip != own && attacker != owner {
                    evidence.push((attacker.clone(), owner.clone(), ip.clone()));
                }
            }
        }
    }
    println!("    learnt host entries: {learnt}; poisoned entries: {evidence:?}");
    let rows = report["rows"].as_array().expect("rows");
    let spoof: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["id"] == "network.neighbour-spoof")
        .collect();
    assert!(!spoof.is_empty(), "no neighbour-spoof rows");
    for r in spoof.iter().filter(|r| r["verdict"] == "leak").take(2) {
        println!("    {} -> {}: {}", r["tenant"], r["target"], r["observed"]);
    }
    let target = |r: &serde_json::Value| -> String {
        r["target"]["name"]
            .as_str()
            .unwrap_or_else(|| r["target"]["kind"].as_str().unwrap_or("?"))
            .to_owned()
    };
    for (attacker, owner, ip) in &evidence {
        let named = spoof.iter().any(|r| {
            r["verdict"] == "leak"
                && (attacker == "forged" || r["tenant"] == attacker.as_str())
                && target(r) == *owner
                && r["observed"]
                    .as_str()
                    .is_some_and(|o| o.contains(&format!("{ip} at")))
        });
        assert!(
            named,
            "{attacker} poisoned {owner}'s {ip}: no leak row names it"
        );
    }
    // Each leak names entries of the instance's addresses (the gateway's, the
    // tenants') at the attacker's own MAC, as the kernel gives it, or a forged one
    // (a later attacker may have overwritten the entry since: the verifier reads the
    // tables after each attacker's frames).
    let gateway = instance.slot.bridge_address().to_string();
    for r in spoof.iter().filter(|r| r["verdict"] == "leak") {
        let tenant = r["tenant"].as_str().unwrap_or("?");
        let (_, mac, own) = macs.iter().find(|(t, ..)| t == tenant).expect("attacker");
        let observed = r["observed"].as_str().unwrap_or("");
        let entries: Vec<&str> = observed
            .trim_start_matches("poisoned: ")
            .split(", ")
            .collect();
        assert!(
            !entries.is_empty() && observed.starts_with("poisoned: "),
            "{r}"
        );
        for entry in entries {
            let mut words = entry.split(' ');
            let (ip, at, lladdr) = (words.next(), words.next(), words.next());
            let (Some(ip), Some("at"), Some(lladdr)) = (ip, at, lladdr) else {
                panic!("unreadable entry {entry:?} in {r}");
            };
            let ours = ip == gateway || macs.iter().any(|(_, _, a)| a == ip);
            assert!(
                ours && ip != own,
                "{entry}: not an address of the instance: {r}"
            );
            assert!(
                lladdr == mac || lladdr.starts_with("02:62:"),
                "{entry}: not {tenant}'s MAC {mac} nor a forged one: {r}"
            );
        }
    }
    if learnt {
        assert!(
            !evidence.is_empty(),
            "learnt entries, yet nothing was poisoned"
        );
    }
    // db's entry, the one the host learns by ARP again, was taken by another tenant.
    assert!(
        spoof.iter().any(|r| r["verdict"] == "leak"
            && r["tenant"] != "db"
            && target(r) == "host"
            && r["observed"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("{db_address} at")))),
        "no leak names the host's entry for db"
    );
    // Nothing else than what the open bridge lets through.
    for v in violations(&report) {
        assert!(
            v.starts_with("leak network ")
                && (v.ends_with(" network.neighbour-spoof") || v.ends_with(" network.spoof")),
            "{v}"
        );
    }
}

/// One tenant sends a datagram (TTL 1) to every unused address of the tenant range and
/// to documentation addresses; it may add at most 8 entries to the host's neighbour
/// table (`resources.neighbours`). The expectation comes from the wiring, read from the
/// kernel: a tenant whose `eth0` has an on-link route wider than one address ARPs for
/// every address of it (the known gap: a leak); one with only its gateway on the link
/// (a /32 and a route to the gateway) adds nothing.
#[test]
fn one_tenants_neighbour_entries_are_bounded_where_the_wiring_bounds_them() {
    require_root!();
    let instance = Instance::new();
    own_network(&instance, "[]");
    instance.apply();
    let output = instance
        .cmd()
        .args(["verify", "--only", "resources", "--format", "json"])
        .output()
        .expect("verify");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let rows = report["rows"].as_array().expect("rows");
    for tenant in ["db", "ingress", "web"] {
        let routes = ip_json(
            Some(&format!("{}-{tenant}", instance.prefix)),
            "route show dev eth0",
        );
        let wide: Vec<&str> = routes
            .as_array()
            .expect("routes")
            .iter()
            .filter(|r| r["gateway"].is_null())
            .filter_map(|r| r["dst"].as_str())
            .filter(|dst| dst.contains('/') && !dst.ends_with("/32"))
            .collect();
        let row = rows
            .iter()
            .find(|r| r["tenant"] == tenant && r["id"] == "resources.neighbours")
            .unwrap_or_else(|| panic!("{tenant}: no resources.neighbours row"));
        println!(
            "    {tenant} (on-link {wide:?}): {} — {}",
            row["verdict"], row["observed"]
        );
        // Today's wiring gives each tenant the range's prefix on eth0: that leak is
        // the known gap. With a /32 and a route to the gateway only, it must pass.
        let expected = if wide.is_empty() { "pass" } else { "leak" };
        assert_eq!(row["verdict"], expected, "{tenant}: {row}");
    }
}

/// Under load the resolver's flows get a second, longer try before they count as an
/// outage; a resolver that is really gone must still be one: stop it (this test's own
/// apply started it) and every tenant allowed DNS reports both protocols on 53 down.
#[test]
fn a_stopped_resolver_is_an_outage_for_every_tenant_allowed_dns() {
    require_root!();
    let instance = Instance::new();
    own_network(&instance, "[]");
    instance.apply();
    let record = instance.state_dir().join("resolver/resolver.record");
    let text = std::fs::read_to_string(&record).expect("resolver record");
    let pid: u32 = text
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("resolver pid");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {pid}");
    // Gone (or a zombie of the apply that started it, which has exited).
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    };
    for _ in 0..100 {
        if gone() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(gone(), "the resolver {pid} did not stop");
    let (code, report) = verify_network(&instance);
    let mut want: Vec<String> = ["db", "ingress", "web"]
        .iter()
        .flat_map(|t| {
            ["tcp", "udp"].map(|p| format!("outage network {t} host network.host.{p}.53"))
        })
        .collect();
    want.sort();
    assert_eq!(violations(&report), want);
    assert_eq!(code, Some(7));
    // The refusal came from the host's kernel: nothing listens on 53 any more.
    let rows = report["rows"].as_array().expect("rows");
    let row = rows
        .iter()
        .find(|r| r["tenant"] == "web" && r["id"] == "network.host.udp.53")
        .expect("web's resolver row");
    assert!(
        row["observed"]
            .as_str()
            .is_some_and(|o| o.starts_with("refused")),
        "{row}"
    );
}

/// A second workload in db that web's rule does not select: web -> db 5432/tcp holds for
/// some of db's workloads only, and they share one address, so the firewall narrows it
/// (what `plan` reports). verify expects it dropped and says "narrowed": neither a
/// pass nor an outage, and the run is clean.
#[test]
fn a_flow_the_firewall_narrows_is_reported_as_narrowed() {
    require_root!();
    let instance = Instance::new();
    own_network(&instance, "[]");
    let db = instance.specs.path().join("tenants/db.yaml");
    let mut text = std::fs::read_to_string(&db).expect("read db.yaml");
    text.push_str(
        "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Workload\nmetadata:\n  name: metrics\n  tenant: db\n  labels: { app: metrics }\nspec:\n  command: [/bin/sleep, \"3600\"]\n  resources: { cpu: 100m, memory: 64Mi, pids: 8 }\n",
    );
    std::fs::write(&db, text).expect("write db.yaml");
    // apply says what the firewall narrows when it loads it.
    let applied = instance
        .cmd()
        .arg("apply")
        .arg(instance.specs.path())
        .output()
        .expect("apply");
    assert!(applied.status.success(), "apply failed");
    let notes = String::from_utf8_lossy(&applied.stderr);
    assert!(
        notes.lines().any(|l| l.starts_with("note: narrowed")
            && l.contains("web")
            && l.contains("db")
            && l.contains("5432")),
        "apply does not report the narrowing: {notes}"
    );
    let (code, report) = verify_network(&instance);
    assert_eq!(violations(&report), Vec::<String>::new());
    assert_eq!(code, Some(0));
    let rows = report["rows"].as_array().expect("rows");
    let narrowed: Vec<String> = rows
        .iter()
        .filter(|r| r["verdict"] == "narrowed")
        .map(|r| {
            format!(
                "{} {} {}",
                r["tenant"].as_str().unwrap_or("?"),
                r["target"]["name"].as_str().unwrap_or("?"),
                r["id"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert_eq!(narrowed, vec!["web db network.tcp.5432".to_owned()]);
    let row = rows
        .iter()
        .find(|r| r["verdict"] == "narrowed")
        .expect("narrowed row");
    assert_eq!(row["expected"], "narrowed");
}

/// Progress bars are for a person at a terminal: under a pseudo-terminal (`script`)
/// stderr shows each phase's bar counting tenants; piped, and with JSON, nothing.
#[test]
fn verify_draws_progress_bars_only_on_a_terminal() {
    require_root!();
    let instance = Instance::new();
    own_network(&instance, "[]");
    instance.apply();
    let binary = assert_cmd::cargo::cargo_bin("bulkhead");
    let output = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!("{} verify --only processes", binary.display()))
        .arg("/dev/null")
        .env("BULKHEAD_STATE_ROOT", instance.state.path())
        .env("BULKHEAD_INSTANCE", &instance.prefix)
        .env("BULKHEAD_ACTOR", "host-test")
        .output()
        .expect("script");
    let terminal = String::from_utf8_lossy(&output.stdout);
    assert!(
        terminal.contains("processes [") && terminal.contains("3/3 tenants"),
        "no progress bar on a terminal: {terminal}"
    );
    let piped = instance
        .cmd()
        .args(["verify", "--only", "processes"])
        .output()
        .expect("verify");
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains("3/3"),
        "a progress bar without a terminal: {stderr}"
    );
}
