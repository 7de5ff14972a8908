//! cgroup v2 against [`FakeCgroupFs`]: what is written where, in which syntax,
//! idempotency, observe round trips, and freeze/kill as far as a fake allows.
//! (v1 is tested for real, as root, in `tests/cgroup_v1.rs`.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_spec::{Bytes, Cpu, IoLimits, Quota, Resources};

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    cgroups: Cgroups<FakeCgroupFs>,
    instance: Instance,
}

impl Fixture {
    fn with(controllers: &[&str], swap: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let fake = FakeCgroupFs::new(dir.path(), controllers, swap).expect("fake root");
        let cgroups =
            Cgroups::new(Layout::v2(dir.path()), fake).with_wait(Duration::from_millis(200));
        Fixture {
            _dir: dir,
            cgroups,
            instance: Instance::new("bh", Path::new("/var/lib/bulkhead")),
        }
    }

    fn new() -> Self {
        Self::with(FAKE_CONTROLLERS, true)
    }

    fn root(&self) -> &Path {
        self.cgroups.fs().root()
    }

    fn file(&self, rel: &Path, name: &str) -> String {
        std::fs::read_to_string(self.root().join(rel).join(name))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", rel.display()))
            .trim()
            .to_owned()
    }

    fn tenant(&self) -> PathBuf {
        self.instance.tenant_cgroup("web")
    }

    fn workload(&self) -> PathBuf {
        self.instance.workload_cgroup("web", "app")
    }
}

fn quota() -> Quota {
    Quota {
        cpu: Some(Cpu::from_millis(1500)),
        cpu_weight: 250,
        memory: Bytes::new(2 << 30),
        pids: 512,
        storage: Bytes::new(1 << 30),
        io: IoLimits {
            read_bps: Some(Bytes::new(1 << 20)),
            write_bps: None,
            read_iops: None,
            write_iops: Some(100),
        },
        egress: None,
        ingress: None,
        workloads: 16,
        cpuset: Some("1-2".to_owned()),
    }
}

fn tenant_limits() -> Limits {
    Limits::for_tenant(&quota(), Some(Device::new(254, 0))).expect("valid quota")
}

fn workload_limits() -> Limits {
    Limits::for_workload(&Resources {
        cpu: Some(Cpu::from_millis(500)),
        memory: Bytes::new(256 << 20),
        pids: 64,
    })
}

#[test]
fn create_enables_controllers_down_the_path() {
    let f = Fixture::new();
    let changes = f.cgroups.create(&f.workload()).expect("create");
    let all = "cpu cpuset io memory pids";
    assert_eq!(f.file(Path::new(""), "cgroup.subtree_control"), all);
    assert_eq!(f.file(Path::new("bh"), "cgroup.subtree_control"), all);
    assert_eq!(f.file(&f.tenant(), "cgroup.subtree_control"), all);
    // The leaf delegates nothing: it is where processes go.
    assert_eq!(f.file(&f.workload(), "cgroup.subtree_control"), "");
    assert_eq!(f.file(&f.workload(), "cgroup.controllers"), all);
    // One write per level, controllers in the order bulkhead needs them.
    let values: Vec<&str> = changes.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(values, ["+cpu +memory +pids +io +cpuset"; 3]);
    // Again: nothing to do.
    assert!(f.cgroups.create(&f.workload()).expect("again").is_empty());
}

#[test]
fn create_names_a_missing_controller() {
    let f = Fixture::with(&["cpu", "memory"], true);
    match f.cgroups.create(&f.tenant()) {
        Err(CgroupError::MissingController { controller }) => {
            assert_eq!(controller, Controller::Pids);
        }
        other => panic!("expected a missing pids controller, got {other:?}"),
    }
    let err = f
        .cgroups
        .check_controllers(&[Controller::Io])
        .expect_err("no io");
    assert!(err.to_string().contains("io controller"), "{err}");
}

#[test]
fn tenant_limits_go_to_the_documented_files() {
    let f = Fixture::new();
    f.cgroups.create(&f.tenant()).expect("create");
    f.cgroups.fs().clear_writes();
    let changes = f
        .cgroups
        .apply(&f.tenant(), &tenant_limits())
        .expect("apply");
    let t = f.tenant();
    assert_eq!(f.file(&t, "cpu.weight"), "250");
    assert_eq!(f.file(&t, "cpu.max"), "150000 100000");
    assert_eq!(f.file(&t, "memory.max"), (2u64 << 30).to_string());
    assert_eq!(f.file(&t, "memory.swap.max"), "0");
    assert_eq!(f.file(&t, "pids.max"), "512");
    assert_eq!(
        f.file(&t, "io.max"),
        "254:0 rbps=1048576 wbps=max riops=max wiops=100"
    );
    assert_eq!(f.file(&t, "cpuset.cpus"), "1-2");
    assert_eq!(f.file(&t, "cpuset.cpus.partition"), "root");

    let written: Vec<(String, String)> = changes
        .iter()
        .map(|c| {
            let name = c.path.file_name().map(|n| n.to_string_lossy().into_owned());
            (name.unwrap_or_default(), c.value.clone())
        })
        .collect();
    let expect = |name: &str, value: &str| (name.to_owned(), value.to_owned());
    assert_eq!(
        written,
        [
            expect("cpu.weight", "250"),
            expect("cpu.max", "150000 100000"),
            expect("memory.max", "2147483648"),
            expect("memory.swap.max", "0"),
            expect("pids.max", "512"),
            expect("io.max", "254:0 rbps=1048576 wbps=max riops=max wiops=100"),
            expect("cpuset.cpus", "1-2"),
            expect("cpuset.cpus.partition", "root"),
        ]
    );
    assert_eq!(f.cgroups.fs().writes().len(), changes.len());
}

#[test]
fn applying_twice_writes_nothing_and_observe_round_trips() {
    let f = Fixture::new();
    let limits = tenant_limits();
    f.cgroups
        .ensure_tenant(&f.instance, "web", &limits)
        .expect("first apply");
    f.cgroups.fs().clear_writes();
    assert!(
        f.cgroups
            .ensure_tenant(&f.instance, "web", &limits)
            .expect("second apply")
            .is_empty()
    );
    assert!(f.cgroups.fs().writes().is_empty());
    assert_eq!(f.cgroups.observe(&f.tenant()).expect("observe"), limits);

    let w = workload_limits();
    f.cgroups
        .ensure_workload(&f.instance, "web", "app", &w)
        .expect("workload");
    assert_eq!(f.cgroups.observe(&f.workload()).expect("observe"), w);
    assert_eq!(f.file(&f.workload(), "cpu.max"), "50000 100000");
    // The default weight is not written at all.
    assert_eq!(f.file(&f.workload(), "cpu.weight"), "100");
    // The cpuset is inherited: empty cpuset.cpus.
    assert_eq!(f.file(&f.workload(), "cpuset.cpus"), "");
}

#[test]
fn drift_is_observed_and_only_it_is_repaired() {
    let f = Fixture::new();
    let limits = tenant_limits();
    f.cgroups
        .ensure_tenant(&f.instance, "web", &limits)
        .expect("apply");
    let t = f.root().join(f.tenant());
    // Someone raises the memory limit and lifts the cpu cap behind our back.
    f.cgroups
        .fs()
        .set(&t.join("memory.max"), "max\n")
        .expect("set");
    f.cgroups
        .fs()
        .set(&t.join("cpu.max"), "max 100000\n")
        .expect("set");
    let observed = f.cgroups.observe(&f.tenant()).expect("observe");
    assert_eq!(observed.memory_max, None);
    assert_eq!(observed.cpu_max, None);
    assert_ne!(observed, limits);

    let changes = f.cgroups.apply(&f.tenant(), &limits).expect("repair");
    let files: Vec<PathBuf> = changes.into_iter().map(|c| c.path).collect();
    assert_eq!(files, [t.join("cpu.max"), t.join("memory.max")]);
    assert_eq!(f.cgroups.observe(&f.tenant()).expect("observe"), limits);
}

#[test]
fn lifting_limits_writes_max_and_clears_io() {
    let f = Fixture::new();
    f.cgroups
        .ensure_tenant(&f.instance, "web", &tenant_limits())
        .expect("apply");
    let mut lifted = Limits::unlimited();
    lifted.cpu_weight = 250;
    f.cgroups.apply(&f.tenant(), &lifted).expect("lift");
    let t = f.tenant();
    assert_eq!(f.file(&t, "cpu.max"), "max 100000");
    assert_eq!(f.file(&t, "memory.max"), "max");
    assert_eq!(f.file(&t, "memory.swap.max"), "max");
    assert_eq!(f.file(&t, "pids.max"), "max");
    assert_eq!(f.file(&t, "io.max"), "");
    assert_eq!(f.file(&t, "cpuset.cpus"), "");
    assert_eq!(f.file(&t, "cpuset.cpus.partition"), "member");
    assert_eq!(f.cgroups.observe(&t).expect("observe"), lifted);
}

#[test]
fn io_limits_need_the_io_controller_and_a_device() {
    let f = Fixture::with(&["cpu", "memory", "pids"], true);
    f.cgroups.create(&f.tenant()).expect("create");
    let mut limits = tenant_limits();
    limits.cpuset = None;
    match f.cgroups.apply(&f.tenant(), &limits) {
        Err(CgroupError::MissingController { controller }) => {
            assert_eq!(controller, Controller::Io)
        }
        other => panic!("expected a missing io controller, got {other:?}"),
    }
    assert!(matches!(
        Limits::for_tenant(&quota(), None),
        Err(CgroupError::InvalidLimit {
            what: "io limits",
            ..
        })
    ));
}

#[test]
fn swap_cannot_be_disabled_without_swap_accounting() {
    let f = Fixture::with(FAKE_CONTROLLERS, false);
    f.cgroups.create(&f.tenant()).expect("create");
    let err = f
        .cgroups
        .apply(&f.tenant(), &tenant_limits())
        .expect_err("no memory.swap.max");
    assert!(
        matches!(
            err,
            CgroupError::Unsupported {
                what: "swap accounting",
                ..
            }
        ),
        "{err}"
    );
    // A caller that accepts it says so explicitly.
    let mut limits = tenant_limits();
    limits.swap_max = None;
    f.cgroups.apply(&f.tenant(), &limits).expect("apply");
    assert_eq!(f.cgroups.observe(&f.tenant()).expect("observe"), limits);
}

#[test]
fn an_invalid_partition_is_reverted_and_reported() {
    let f = Fixture::new();
    f.cgroups.create(&f.tenant()).expect("create");
    f.cgroups
        .fs()
        .fail_partitions("Parent is not a partition root");
    let err = f
        .cgroups
        .apply(&f.tenant(), &tenant_limits())
        .expect_err("invalid partition");
    assert!(matches!(err, CgroupError::Partition { .. }), "{err}");
    assert!(
        err.to_string().contains("Parent is not a partition root"),
        "{err}"
    );
    assert_eq!(f.file(&f.tenant(), "cpuset.cpus.partition"), "member");
}

#[test]
fn processes_join_leaves_only() {
    let f = Fixture::new();
    f.cgroups.create(&f.workload()).expect("create");
    f.cgroups.attach(&f.workload(), 4242).expect("attach");
    assert_eq!(f.file(&f.workload(), "cgroup.procs"), "4242");
    assert_eq!(
        f.file(&f.tenant(), "cgroup.events"),
        "populated 1\nfrozen 0"
    );
    assert!(matches!(
        f.cgroups.attach(&f.tenant(), 4243),
        Err(CgroupError::NotLeaf { .. })
    ));
    assert_eq!(f.cgroups.pids(&f.tenant()).expect("pids"), [4242]);
}

#[test]
fn freeze_and_thaw_wait_for_cgroup_events() {
    let f = Fixture::new();
    f.cgroups.create(&f.workload()).expect("create");
    f.cgroups.attach(&f.workload(), 7).expect("attach");
    f.cgroups.freeze(&f.tenant()).expect("freeze");
    assert_eq!(f.file(&f.tenant(), "cgroup.freeze"), "1");
    // Freezing a tenant freezes its workloads.
    assert_eq!(
        f.file(&f.workload(), "cgroup.events"),
        "populated 1\nfrozen 1"
    );
    f.cgroups.thaw(&f.tenant()).expect("thaw");
    assert_eq!(
        f.file(&f.workload(), "cgroup.events"),
        "populated 1\nfrozen 0"
    );
}

#[test]
fn kill_all_uses_cgroup_kill_then_removal_succeeds() {
    let f = Fixture::new();
    f.cgroups
        .ensure_workload(&f.instance, "web", "app", &workload_limits())
        .expect("workload");
    f.cgroups
        .ensure_workload(&f.instance, "web", "db", &workload_limits())
        .expect("workload");
    f.cgroups.attach(&f.workload(), 11).expect("attach");
    f.cgroups
        .attach(&f.instance.workload_cgroup("web", "db"), 12)
        .expect("attach");

    // Populated cgroups cannot be removed; the EBUSY retry gives up after the wait.
    match f.cgroups.remove(&f.tenant()) {
        Err(CgroupError::Remove { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EBUSY));
        }
        other => panic!("expected EBUSY, got {other:?}"),
    }

    f.cgroups.kill_all(&f.tenant()).expect("kill");
    let mut killed = f.cgroups.fs().killed();
    killed.sort_unstable();
    assert_eq!(killed, [11, 12]);
    assert!(f.cgroups.pids(&f.tenant()).expect("pids").is_empty());
    assert_eq!(
        f.file(&f.tenant(), "cgroup.events"),
        "populated 0\nfrozen 0"
    );

    f.cgroups.remove(&f.tenant()).expect("remove");
    assert!(!f.cgroups.exists(&f.tenant()));
    assert!(f.cgroups.exists(&f.instance.cgroup_root()));
    // Removing what is gone is fine.
    f.cgroups.remove(&f.tenant()).expect("remove again");
}

#[test]
fn lists_tenants_and_workloads_of_an_instance() {
    let f = Fixture::new();
    for (t, w) in [("web", "app"), ("web", "db"), ("batch", "job")] {
        f.cgroups
            .create(&f.instance.workload_cgroup(t, w))
            .expect("create");
    }
    f.cgroups
        .create(&f.instance.tenant_cgroup("idle"))
        .expect("create");
    let other = Instance::new("other", Path::new("/tmp"));
    f.cgroups
        .create(&other.workload_cgroup("x", "y"))
        .expect("create");

    let listed = f.cgroups.list(&f.instance).expect("list");
    let flat: Vec<(String, Vec<String>)> = listed
        .into_iter()
        .map(|(t, ws)| (t, ws.into_iter().collect()))
        .collect();
    let own = |t: &str, ws: &[&str]| (t.to_owned(), ws.iter().map(|w| (*w).to_owned()).collect());
    assert_eq!(
        flat,
        [
            own("batch", &["job"]),
            own("idle", &[]),
            own("web", &["app", "db"])
        ]
    );
    let nothing = Instance::new("absent", Path::new("/tmp"));
    assert!(f.cgroups.list(&nothing).expect("list").is_empty());
}

#[test]
fn usage_reads_cpu_memory_pids_and_io() {
    let f = Fixture::new();
    f.cgroups
        .ensure_tenant(&f.instance, "web", &tenant_limits())
        .expect("apply");
    let t = f.root().join(f.tenant());
    let fake = f.cgroups.fs();
    fake.set(
        &t.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 250\nnr_bursts 0\nburst_usec 0\n",
    )
    .expect("set");
    fake.set(&t.join("memory.current"), "1048576\n")
        .expect("set");
    fake.set(
        &t.join("memory.events"),
        "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n",
    )
    .expect("set");
    fake.set(&t.join("pids.current"), "17\n").expect("set");
    fake.set(
        &t.join("io.stat"),
        "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n",
    )
    .expect("set");
    fake.set(
        &t.join("cpu.pressure"),
        "some avg10=1.50 avg60=0.40 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n",
    )
    .expect("set");
    fake.set(
        &t.join("memory.pressure"),
        "some avg10=12.05 avg60=3.00 avg300=1.00 total=42\nfull avg10=7.1 avg60=2.00 avg300=0.50 total=40\n",
    )
    .expect("set");
    // No io.pressure: the kernel does not offer it here.
    let usage = f.cgroups.usage(&f.tenant()).expect("usage");
    let cpu = usage.pressure.cpu.expect("cpu pressure");
    assert_eq!(
        cpu.some,
        PressureLine {
            avg10_centi: 150,
            total_us: 123_456
        }
    );
    assert_eq!(cpu.full.map(|f| f.total_us), Some(789));
    let memory = usage.pressure.memory.expect("memory pressure");
    assert_eq!(memory.some.avg10_centi, 1205);
    assert_eq!(memory.full.map(|f| f.avg10_centi), Some(710));
    assert_eq!(usage.pressure.io, None, "absent, not zero");
    assert_eq!(
        usage.cpu,
        CpuUsage {
            usage_ns: 1_500_000,
            throttled_ns: 250_000,
            nr_throttled: 3
        }
    );
    assert_eq!(usage.memory.current, 1 << 20);
    assert_eq!(usage.memory.max, Some(2 << 30));
    assert_eq!(
        usage.memory.events,
        Some(MemoryEvents {
            max: 9,
            oom: 2,
            oom_kill: 1
        })
    );
    assert_eq!(usage.memory.oom_kill, Some(1));
    assert_eq!(usage.pids_current, 17);
    assert_eq!(
        usage.io,
        [
            IoUsage {
                device: Device::new(8, 16),
                read_bytes: 1,
                write_bytes: 2
            },
            IoUsage {
                device: Device::new(254, 0),
                read_bytes: 4096,
                write_bytes: 8192
            }
        ]
    );
}

#[test]
fn malformed_control_files_are_reported_with_path_and_value() {
    let f = Fixture::new();
    f.cgroups
        .ensure_tenant(&f.instance, "web", &tenant_limits())
        .expect("apply");
    let t = f.root().join(f.tenant());
    f.cgroups
        .fs()
        .set(&t.join("cpu.max"), "lots\n")
        .expect("set");
    let err = f.cgroups.observe(&f.tenant()).expect_err("malformed");
    let text = err.to_string();
    assert!(
        text.contains("cpu.max") && text.contains("\"lots\""),
        "{text}"
    );
    assert!(
        text.contains("expected") || text.contains("is not"),
        "{text}"
    );
}

#[test]
fn write_errors_carry_path_and_value() {
    let f = Fixture::new();
    f.cgroups.create(&f.tenant()).expect("create");
    let mut limits = tenant_limits();
    limits.cpu_weight = 0; // the kernel refuses (ERANGE)
    match f.cgroups.apply(&f.tenant(), &limits) {
        Err(CgroupError::Apply(ApplyCgroupError { path, value, .. })) => {
            assert_eq!(path, f.root().join(f.tenant()).join("cpu.weight"));
            assert_eq!(value, "0");
        }
        other => panic!("expected a refused write, got {other:?}"),
    }
}

#[test]
fn paths_outside_the_hierarchy_are_refused() {
    let f = Fixture::new();
    for bad in ["../etc", "/sys/fs/cgroup", "", "bh/../x"] {
        assert!(
            matches!(
                f.cgroups.create(Path::new(bad)),
                Err(CgroupError::InvalidPath { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn pressure_text_that_is_not_psi_is_refused() {
    assert_eq!(parse_pressure("garbage"), None);
    assert_eq!(parse_pressure("some avg10=x total=1\n"), None);
    assert_eq!(
        parse_pressure("full avg10=0.00 avg60=0 avg300=0 total=1\n"),
        None,
        "no some line"
    );
    assert!(parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").is_some());
}
