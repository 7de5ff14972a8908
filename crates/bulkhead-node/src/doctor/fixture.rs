//! Fake host trees for tests: a pure cgroup v2 host, a hybrid host like our
//! CI machines, a v1 host, and a bare host that lacks nearly everything.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::{FakeKernel, HostPaths, LandlockProbe, Report, run};

pub(crate) struct FakeHost {
    dir: tempfile::TempDir,
    pub(crate) landlock: LandlockProbe,
    pub(crate) root: bool,
}

/// Recommended values of every scored sysctl.
pub(crate) const HARDENED_SYSCTLS: &[(&str, &str)] = &[
    ("kernel.unprivileged_bpf_disabled", "2"),
    ("kernel.kptr_restrict", "1"),
    ("kernel.dmesg_restrict", "1"),
    ("kernel.yama.ptrace_scope", "1"),
    ("kernel.modules_disabled", "1"),
    ("kernel.kexec_load_disabled", "1"),
    ("kernel.perf_event_paranoid", "2"),
    ("fs.protected_symlinks", "1"),
    ("fs.protected_hardlinks", "1"),
    ("fs.protected_fifos", "2"),
    ("fs.protected_regular", "2"),
    ("fs.suid_dumpable", "0"),
];

/// Worst values of every scored sysctl.
pub(crate) const PERMISSIVE_SYSCTLS: &[(&str, &str)] = &[
    ("kernel.unprivileged_bpf_disabled", "0"),
    ("kernel.kptr_restrict", "0"),
    ("kernel.dmesg_restrict", "0"),
    ("kernel.yama.ptrace_scope", "0"),
    ("kernel.modules_disabled", "0"),
    ("kernel.kexec_load_disabled", "0"),
    ("kernel.perf_event_paranoid", "-1"),
    ("fs.protected_symlinks", "0"),
    ("fs.protected_hardlinks", "0"),
    ("fs.protected_fifos", "0"),
    ("fs.protected_regular", "0"),
    ("fs.suid_dumpable", "1"),
];

const PROC_CGROUPS_ALL_V1: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t2\t1\t1
blkio\t7\t1\t1
memory\t4\t17\t1
devices\t5\t1\t1
freezer\t6\t1\t1
net_cls\t0\t1\t1
hugetlb\t0\t1\t1
pids\t8\t1\t1
";

impl FakeHost {
    pub(crate) fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            landlock: LandlockProbe::Abi(7),
            root: true,
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn file(&self, rel: &str, content: &str) -> &Self {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        self
    }

    pub(crate) fn dir(&self, rel: &str) -> &Self {
        std::fs::create_dir_all(self.path(rel)).expect("mkdir");
        self
    }

    pub(crate) fn remove(&self, rel: &str) -> &Self {
        let path = self.path(rel);
        if path.is_dir() {
            std::fs::remove_dir_all(path).expect("rm -r");
        } else {
            std::fs::remove_file(path).expect("rm");
        }
        self
    }

    pub(crate) fn sysctl(&self, name: &str, value: &str) -> &Self {
        self.file(&format!("proc/sys/{}", name.replace('.', "/")), value)
    }

    pub(crate) fn sysctls(&self, values: &[(&str, &str)]) -> &Self {
        for (k, v) in values {
            self.sysctl(k, v);
        }
        self
    }

    /// An executable in `bin/` that prints `line` (to stderr when `stderr`).
    pub(crate) fn binary(&self, name: &str, line: &str, stderr: bool) -> &Self {
        let path = self.path(&format!("bin/{name}"));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let redirect = if stderr { " >&2" } else { "" };
        let mut f = std::fs::File::create(&path).expect("create");
        writeln!(f, "#!/bin/sh\necho '{line}'{redirect}").expect("write");
        f.sync_all().expect("sync");
        drop(f);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self
    }

    pub(crate) fn kconfig(&self, text: &str) -> &Self {
        let path = self.path("proc/config.gz");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(path).expect("create"),
            flate2::Compression::fast(),
        );
        enc.write_all(text.as_bytes()).expect("gzip");
        enc.finish().expect("gzip");
        self
    }

    pub(crate) fn paths(&self) -> HostPaths {
        HostPaths::rooted_at(self.dir.path(), vec![self.path("bin")])
    }

    pub(crate) fn report(&self) -> Report {
        run(
            &self.paths(),
            &FakeKernel {
                landlock: self.landlock,
                root: self.root,
            },
        )
    }

    /// What every non-bare host shares: seccomp, userns, tools, loop,
    /// ext4 encryption, vulnerabilities, SMT.
    fn common(&self) -> &Self {
        self.sysctl("kernel.osrelease", "6.18.0-test")
            .sysctl("user.max_user_namespaces", "96365")
            .sysctl(
                "kernel.seccomp.actions_avail",
                "kill_process kill_thread trap errno user_notif trace log allow",
            )
            .file(
                "proc/self/status",
                "Name:\tdoctor\nSeccomp:\t0\nSeccomp_filters:\t0\n",
            )
            .file("proc/meminfo", "MemTotal: 4000000 kB\nSwapTotal: 0 kB\n")
            .file("proc/cmdline", "console=ttyS0 root=/dev/vda")
            .file("dev/loop-control", "")
            .file("sys/fs/ext4/features/encryption", "supported")
            .file("sys/devices/system/cpu/smt/control", "notsupported")
            .file(
                "sys/devices/system/cpu/vulnerabilities/meltdown",
                "Not affected",
            )
            .file(
                "sys/devices/system/cpu/vulnerabilities/spectre_v2",
                "Mitigation: Retpolines",
            )
            .binary("nft", "nftables v1.0.9 (Old Doc Yago)", false)
            .binary("tc", "tc utility, iproute2-6.1.0, libbpf 1.1.0", false)
            .binary("ip", "ip utility, iproute2-6.1.0, libbpf 1.1.0", false)
            .binary("mkfs.ext4", "mke2fs 1.47.0 (5-Feb-2023)", true)
    }

    /// Like the CI machines: v1 controllers each on their own mount, an
    /// (almost) empty cgroup2 at /sys/fs/cgroup/unified, no loadable modules,
    /// nf_tables and qdiscs built in.
    pub(crate) fn hybrid() -> Self {
        let h = Self::empty();
        h.common()
            .sysctls(PERMISSIVE_SYSCTLS)
            .sysctl("kernel.unprivileged_bpf_disabled", "2")
            .sysctl("kernel.dmesg_restrict", "1")
            .sysctl("kernel.perf_event_paranoid", "2")
            .sysctl("fs.protected_hardlinks", "1")
            .sysctl("fs.suid_dumpable", "0")
            .remove("proc/sys/kernel/yama")
            .remove("proc/sys/kernel/modules_disabled")
            .remove("proc/sys/kernel/kexec_load_disabled")
            .file(
                "proc/self/mountinfo",
                "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
",
            )
            .file("proc/cgroups", PROC_CGROUPS_ALL_V1)
            .file("sys/fs/cgroup/unified/cgroup.controllers", "hugetlb")
            .file("sys/fs/cgroup/unified/cgroup.subtree_control", "")
            .file("sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "9223372036854771712")
            .dir("sys/module/sch_htb")
            .dir("sys/kernel/security")
            .kconfig(
                "CONFIG_NF_TABLES=y\nCONFIG_NET_SCH_HTB=y\nCONFIG_NET_SCH_TBF=y\nCONFIG_NET_SCH_INGRESS=y\n",
            );
        h
    }

    /// A modern distribution: everything on cgroup2 at /sys/fs/cgroup,
    /// modules, hardened sysctls, securityfs with lockdown.
    pub(crate) fn v2() -> Self {
        let h = Self::empty();
        h.common()
            .sysctls(HARDENED_SYSCTLS)
            .sysctl("kernel.apparmor_restrict_unprivileged_userns", "1")
            .file(
                "proc/self/mountinfo",
                "25 20 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
            )
            .file(
                "proc/cgroups",
                "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t0\t80\t1\ncpu\t0\t80\t1\ncpuacct\t0\t80\t1\nblkio\t0\t80\t1\nmemory\t0\t80\t1\nfreezer\t0\t80\t1\npids\t0\t80\t1\n",
            )
            .file("proc/self/cgroup", "0::/user.slice/session-1.scope\n")
            .file(
                "sys/fs/cgroup/cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc",
            )
            .file("sys/fs/cgroup/cgroup.subtree_control", "cpu io memory pids")
            .file("sys/fs/cgroup/user.slice/session-1.scope/memory.current", "1234")
            .file("sys/fs/cgroup/user.slice/session-1.scope/memory.swap.max", "max")
            .file(
                "proc/modules",
                "nf_tables 344064 0 - Live 0x0000000000000000\nsch_htb 32768 0 - Live 0x0\n",
            )
            .file("sys/module/module/parameters/sig_enforce", "Y")
            .file("sys/kernel/security/lsm", "lockdown,capability,landlock,yama,apparmor")
            .file(
                "sys/kernel/security/lockdown",
                "none [integrity] confidentiality",
            )
            .kconfig(
                "CONFIG_NF_TABLES=m\nCONFIG_NET_SCH_HTB=m\nCONFIG_NET_SCH_TBF=m\nCONFIG_NET_SCH_INGRESS=m\n",
            );
        h
    }

    /// An older host with every controller on v1 (cpu and cpuacct co-mounted),
    /// no swap accounting, no kernel config.
    pub(crate) fn v1() -> Self {
        let h = Self::empty();
        h.common()
            .sysctls(HARDENED_SYSCTLS)
            .file(
                "proc/self/mountinfo",
                "\
24 18 0:21 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
25 24 0:22 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
26 24 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
27 24 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
28 24 0:25 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
29 24 0:26 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
30 24 0:27 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset,clone_children
31 24 0:28 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
90 80 0:24 / /var/lib/container/memory rw - cgroup cgroup rw,memory
",
            )
            .file("proc/cgroups", PROC_CGROUPS_ALL_V1)
            .file("proc/modules", "ext4 700000 1 - Live 0x0\n")
            .dir("sys/fs/cgroup/memory");
        h
    }

    /// A host lacking nearly everything: no cgroups mounted, user namespaces
    /// off, no seccomp, no Landlock, no tools, permissive sysctls.
    pub(crate) fn bare() -> Self {
        let h = Self::empty();
        h.sysctls(PERMISSIVE_SYSCTLS)
            .sysctl("user.max_user_namespaces", "0")
            .file("proc/self/status", "Name:\tdoctor\n")
            .file(
                "proc/self/mountinfo",
                "22 1 8:1 / / rw,relatime - ext4 /dev/vda rw\n",
            )
            .file(
                "proc/cgroups",
                "#subsys_name\thierarchy\tnum_cgroups\tenabled\n",
            )
            .file("proc/modules", "")
            .file("proc/cmdline", "mitigations=off")
            .file("sys/devices/system/cpu/smt/control", "on")
            .file(
                "sys/devices/system/cpu/vulnerabilities/mds",
                "Vulnerable: Clear CPU buffers attempted, no microcode",
            )
            .file(
                "sys/devices/system/cpu/vulnerabilities/spectre_v2",
                "Vulnerable",
            )
            .dir("sys/fs/ext4/features")
            .file("sys/kernel/security/lsm", "capability")
            .kconfig("# CONFIG_NF_TABLES is not set\n# CONFIG_NET_SCH_HTB is not set\n")
            .dir("bin");
        h
    }
}
