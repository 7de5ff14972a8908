//! cgroup v1 for real, as root, on this kernel: limits read back from the kernel's
//! own files, a real process attached, frozen, thawed and killed, a bounded fork
//! bomb stopped at pids.max and a memory hog OOM-killed inside its cgroup.
//!
//! Every test uses its own instance prefix, and a guard removes everything named
//! after it (in every hierarchy) even when the test fails. Skips, saying why, when
//! not root or when the host has no v1 hierarchies (pure v2 hosts are covered by
//! the fake-tree tests in `src/cgroup/tests.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bulkhead_node::cgroup::{
    CgroupError, Cgroups, Controller, Cpuset, Device, Limits, Mode, weight_to_shares,
};
use bulkhead_node::naming::Instance;
use bulkhead_spec::{Bytes, Cpu, IoLimits, Quota, Resources};

const CGROUP_BASE: &str = "/sys/fs/cgroup";

fn skip(reason: &str) {
    println!("skipped: {reason}");
}

/// The host's v1 cgroups, or why this test cannot run.
fn host() -> Result<Cgroups, String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root: cgroup v1 tests need to create cgroups".to_owned());
    }
    let cgroups = Cgroups::detect().map_err(|e| format!("no cgroups: {e}"))?;
    if cgroups.layout().mode() == Mode::V2 {
        return Err("this host is pure cgroup v2; v1 needs a v1 or hybrid host".to_owned());
    }
    cgroups
        .check_controllers(&Controller::REQUIRED)
        .map_err(|e| e.to_string())?;
    Ok(cgroups)
}

/// A unique instance per test; dropping it kills and removes everything under it.
struct Guard {
    cgroups: Cgroups,
    instance: Instance,
}

impl Guard {
    fn new(cgroups: Cgroups) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "t{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let instance = Instance::new(&prefix, Path::new("/nonexistent"));
        Guard { cgroups, instance }
    }

    /// Every directory named after the instance, in any mounted hierarchy (not
    /// only those bulkhead uses).
    fn leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(CGROUP_BASE) {
            for entry in entries.flatten() {
                let candidate = entry.path().join(self.instance.prefix());
                if candidate.exists() {
                    out.push(candidate);
                }
            }
        }
        out
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let root = self.instance.cgroup_root();
        if self.cgroups.exists(&root) {
            if let Err(e) = self.cgroups.kill_all(&root) {
                eprintln!("cleanup: kill {}: {e}", root.display());
            }
            if let Err(e) = self.cgroups.remove(&root) {
                eprintln!("cleanup: remove {}: {e}", root.display());
            }
        }
    }
}

fn kernel_file(controller: &str, rel: &Path, name: &str) -> String {
    let path = Path::new(CGROUP_BASE).join(controller).join(rel).join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// A whole disk for io limits (throttling refuses partitions): the first
/// `/sys/block` entry that is not a loop, ram or zram device.
fn a_disk() -> Option<Device> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram")))
        .collect();
    names.sort();
    let dev = std::fs::read_to_string(format!("/sys/block/{}/dev", names.first()?)).ok()?;
    Device::parse(dev.trim())
}

fn proc_status_state(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Whether the process reaches `state` within a second.
fn reaches_state(pid: u32, state: char) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if proc_status_state(pid).starts_with(state) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A shell that waits for a line on stdin before running `script`, so it can be
/// attached first.
fn held_shell(script: &str) -> Child {
    Command::new("/bin/sh")
        .args(["-c", &format!("read go; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn /bin/sh")
}

fn release(child: &mut Child) {
    let stdin = child.stdin.as_mut().expect("stdin");
    stdin.write_all(b"go\n").expect("release");
}

fn quota(io: bool) -> Quota {
    Quota {
        cpu: Some(Cpu::from_millis(1500)),
        cpu_weight: 250,
        memory: Bytes::new(256 << 20),
        pids: 100,
        storage: Bytes::new(1 << 30),
        io: if io {
            IoLimits {
                read_bps: Some(Bytes::new(1 << 20)),
                write_bps: None,
                read_iops: None,
                write_iops: Some(100),
            }
        } else {
            IoLimits::default()
        },
        egress: None,
        ingress: None,
        workloads: 16,
        cpuset: None,
    }
}

#[test]
fn v1_tenant_and_workload_lifecycle() {
    let cgroups = match host() {
        Ok(c) => c,
        Err(reason) => return skip(&reason),
    };
    let guard = Guard::new(cgroups);
    let (cg, inst) = (&guard.cgroups, &guard.instance);
    let tenant = inst.tenant_cgroup("web");
    let workload = inst.workload_cgroup("web", "app");

    let disk = a_disk();
    if disk.is_none() {
        skip("io limits: no whole disk in /sys/block");
    }
    let mut limits = Limits::for_tenant(&quota(disk.is_some()), disk).expect("limits");
    // A non-exclusive cpuset: an exclusive one would mark the instance cgroup
    // exclusive at the hierarchy root and could fence off cgroups of other tests
    // running on this host.
    let cpus = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.cpus").unwrap_or_default();
    let last_cpu = bulkhead_spec::parse_cpuset(cpus.trim())
        .and_then(|c| c.last().copied())
        .filter(|c| *c > 0);
    let cpuset_root = cg.layout().v1_root(Controller::Cpuset).is_some();
    if let (Some(cpu), true) = (last_cpu, cpuset_root) {
        limits.cpuset = Some(Cpuset {
            cpus: vec![cpu],
            exclusive: false,
        });
    } else {
        skip("cpuset: fewer than two cpus or no cpuset hierarchy");
    }

    let changes = cg.ensure_tenant(inst, "web", &limits).expect("tenant");
    assert!(!changes.is_empty());

    // Read back from the kernel's own files.
    assert_eq!(
        kernel_file("cpu", &tenant, "cpu.shares"),
        weight_to_shares(250).to_string()
    );
    assert_eq!(kernel_file("cpu", &tenant, "cpu.shares"), "2560");
    assert_eq!(kernel_file("cpu", &tenant, "cpu.cfs_quota_us"), "150000");
    assert_eq!(kernel_file("cpu", &tenant, "cpu.cfs_period_us"), "100000");
    assert_eq!(
        kernel_file("memory", &tenant, "memory.limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    let memsw = cg
        .layout()
        .v1_root(Controller::Memory)
        .map(|r| r.join(&tenant).join("memory.memsw.limit_in_bytes").exists());
    if memsw == Some(true) {
        // No swap: memory + swap == memory.
        assert_eq!(
            kernel_file("memory", &tenant, "memory.memsw.limit_in_bytes"),
            (256u64 << 20).to_string()
        );
    } else {
        skip("swap accounting: no memory.memsw.* on this kernel");
    }
    assert_eq!(kernel_file("pids", &tenant, "pids.max"), "100");
    if let Some(disk) = disk {
        assert_eq!(
            kernel_file("blkio", &tenant, "blkio.throttle.read_bps_device"),
            format!("{disk} 1048576")
        );
        assert_eq!(
            kernel_file("blkio", &tenant, "blkio.throttle.write_iops_device"),
            format!("{disk} 100")
        );
        assert_eq!(
            kernel_file("blkio", &tenant, "blkio.throttle.write_bps_device"),
            ""
        );
    }
    if let Some(Cpuset { cpus, .. }) = &limits.cpuset {
        assert_eq!(
            kernel_file("cpuset", &tenant, "cpuset.cpus"),
            cpus[0].to_string()
        );
        assert_eq!(kernel_file("cpuset", &tenant, "cpuset.cpu_exclusive"), "0");
        assert!(!kernel_file("cpuset", &tenant, "cpuset.mems").is_empty());
    }

    // Idempotent, and observe reads back exactly what was asked for.
    assert_eq!(
        cg.apply(&tenant, &limits).expect("again"),
        [],
        "second apply wrote"
    );
    assert_eq!(cg.observe(&tenant).expect("observe"), limits);

    // memsw ordering: growing and shrinking both succeed (the kernel refuses
    // memory above memsw with EINVAL).
    for mib in [512u64, 128, 256] {
        let mut resized = limits.clone();
        resized.memory_max = Some(mib << 20);
        let changes = cg.apply(&tenant, &resized).expect("resize");
        assert_eq!(cg.observe(&tenant).expect("observe"), resized, "{mib} MiB");
        if memsw == Some(true) {
            let order: Vec<String> = changes
                .iter()
                .filter_map(|c| c.path.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            // 512 and 256 grow (memsw first), 128 shrinks (memory first).
            let expected = if mib == 128 {
                ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            } else {
                ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
            };
            assert_eq!(order, expected, "{mib} MiB");
        }
    }

    // A workload under it inherits the tenant's cpuset.
    let wl = Limits::for_workload(&Resources {
        cpu: Some(Cpu::from_millis(500)),
        memory: Bytes::new(64 << 20),
        pids: 20,
    });
    cg.ensure_workload(inst, "web", "app", &wl)
        .expect("workload");
    assert_eq!(cg.observe(&workload).expect("observe"), wl);
    assert_eq!(kernel_file("cpu", &workload, "cpu.cfs_quota_us"), "50000");
    assert_eq!(kernel_file("cpu", &workload, "cpu.shares"), "1024");
    if let Some(Cpuset { cpus, .. }) = &limits.cpuset {
        assert_eq!(
            kernel_file("cpuset", &workload, "cpuset.cpus"),
            cpus[0].to_string()
        );
    }

    // A real process.
    let mut child = Command::new("/bin/sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    cg.attach(&workload, pid).expect("attach");
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let want = format!("/{}", workload.display());
    for controller in Controller::ALL {
        if cg.layout().v1_root(controller).is_none() {
            continue;
        }
        let name = controller.v1_name();
        let line = proc_cgroup
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == name))
            })
            .unwrap_or_else(|| panic!("no {name} line in {proc_cgroup}"));
        assert!(line.ends_with(&want), "{name}: {line} (expected {want})");
    }
    if let Some(Cpuset { cpus, .. }) = &limits.cpuset {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim);
        assert_eq!(allowed, Some(cpus[0].to_string().as_str()));
    }
    assert_eq!(cg.pids(&tenant).expect("pids"), [pid]);
    assert!(matches!(
        cg.attach(&tenant, pid),
        Err(CgroupError::NotLeaf { .. })
    ));

    let usage = cg.usage(&workload).expect("usage");
    assert_eq!(usage.pids_current, 1);
    assert_eq!(usage.memory.max, Some(64 << 20));
    assert!(usage.memory.failcnt.is_some());

    // Freeze the tenant: its workload's process stops.
    // (Just spawned or moved, it may still be running on its way to sleep.)
    assert!(reaches_state(pid, 'S'), "{}", proc_status_state(pid));
    cg.freeze(&tenant).expect("freeze");
    assert_eq!(kernel_file("freezer", &workload, "freezer.state"), "FROZEN");
    let frozen = proc_status_state(pid);
    println!("state of a frozen task: {frozen}");
    assert!(frozen.starts_with('D'), "frozen task state {frozen}");
    cg.thaw(&tenant).expect("thaw");
    assert_eq!(kernel_file("freezer", &workload, "freezer.state"), "THAWED");
    assert!(reaches_state(pid, 'S'), "{}", proc_status_state(pid));

    // Kill everything, then remove.
    cg.kill_all(&tenant).expect("kill");
    let status = wait_exit(&mut child, Duration::from_secs(5)).expect("sleep exited");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(cg.pids(&tenant).expect("pids").is_empty());

    let listed = cg.list(inst).expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed["web"].contains("app"));

    cg.remove(&inst.cgroup_root()).expect("remove");
    assert!(!cg.exists(&inst.cgroup_root()));
    assert_eq!(guard.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn v1_fork_bomb_stops_at_pids_max() {
    let cgroups = match host() {
        Ok(c) => c,
        Err(reason) => return skip(&reason),
    };
    let guard = Guard::new(cgroups);
    let (cg, inst) = (&guard.cgroups, &guard.instance);
    let mut tenant_limits = Limits::for_tenant(&quota(false), None).expect("limits");
    tenant_limits.pids_max = Some(16);
    cg.ensure_tenant(inst, "bomb", &tenant_limits)
        .expect("tenant");
    let wl = Limits::for_workload(&Resources {
        cpu: None,
        memory: Bytes::new(64 << 20),
        pids: 10,
    });
    cg.ensure_workload(inst, "bomb", "w", &wl)
        .expect("workload");
    let workload = inst.workload_cgroup("bomb", "w");
    // Safety first: the limit is in place before anything forks.
    assert_eq!(kernel_file("pids", &workload, "pids.max"), "10");

    // At most 100 forks even if the limit failed; 10 with it.
    let mut child = held_shell("i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; wait");
    cg.attach(&workload, child.id()).expect("attach");
    release(&mut child);

    let events = Path::new(CGROUP_BASE)
        .join("pids")
        .join(&workload)
        .join("pids.events");
    let start = Instant::now();
    let mut refused = 0;
    while start.elapsed() < Duration::from_secs(10) {
        refused = std::fs::read_to_string(&events)
            .ok()
            .and_then(|t| {
                t.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .unwrap_or(0);
        if refused > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused > 0, "pids.events never counted a refused fork");
    let current: u64 = kernel_file("pids", &workload, "pids.current")
        .parse()
        .expect("pids.current");
    assert!(current <= 10, "pids.current {current} above pids.max 10");
    let in_cgroup = cg.pids(&workload).expect("pids").len();
    assert!(in_cgroup <= 10, "{in_cgroup} processes");
    println!("fork bomb: {refused} forks refused, {current} pids in the cgroup");

    cg.kill_all(&inst.tenant_cgroup("bomb")).expect("kill");
    wait_exit(&mut child, Duration::from_secs(5)).expect("shell exited");
    assert!(cg.pids(&workload).expect("pids").is_empty());
    cg.remove(&inst.cgroup_root()).expect("remove");
    assert_eq!(guard.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn v1_memory_hog_is_oom_killed_inside_its_cgroup() {
    let cgroups = match host() {
        Ok(c) => c,
        Err(reason) => return skip(&reason),
    };
    if !Path::new("/usr/bin/python3").exists() {
        return skip("no /usr/bin/python3 for the memory hog");
    }
    let guard = Guard::new(cgroups);
    let (cg, inst) = (&guard.cgroups, &guard.instance);
    let tenant_limits = Limits::for_tenant(&quota(false), None).expect("limits");
    cg.ensure_tenant(inst, "hog", &tenant_limits)
        .expect("tenant");
    let wl = Limits::for_workload(&Resources {
        cpu: None,
        memory: Bytes::new(32 << 20),
        pids: 10,
    });
    cg.ensure_workload(inst, "hog", "w", &wl).expect("workload");
    let workload = inst.workload_cgroup("hog", "w");
    assert_eq!(
        kernel_file("memory", &workload, "memory.limit_in_bytes"),
        (32u64 << 20).to_string()
    );

    // 256 MiB, touched: far above the 32 MiB limit, far below the host's memory.
    let mut child = held_shell("exec /usr/bin/python3 -c 'b = b\"x\" * (256 << 20)'");
    cg.attach(&workload, child.id()).expect("attach");
    release(&mut child);
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("hog exited");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

    let usage = cg.usage(&workload).expect("usage");
    println!("memory hog: {:?}", usage.memory);
    // The kill is the cgroup's own OOM kill, counted in its memory.oom_control
    // (with memsw equal to memory the memsw counter, not failcnt, records the hits).
    assert!(
        usage.memory.oom_kill.unwrap_or(0) >= 1,
        "{:?}",
        usage.memory
    );
    assert!(usage.memory.current <= 32 << 20);

    cg.remove(&inst.cgroup_root()).expect("remove");
    assert_eq!(guard.leftovers(), Vec::<PathBuf>::new());
}
