//! The isolation attempts, class by class. Each pushes one [`Observation`]
//! per attempt; nothing here decides whether the outcome is right.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::{Path, PathBuf};

use bulkhead_node::attempt::{self, SysvKind};
use bulkhead_node::confine::probe as confine_probe;
use bulkhead_node::mountinfo::parse_mountinfo;

use super::{IsolationRequest, Observation, PROBE_ENV, Request, errno_name};
use crate::class::{ProbeClass, Target};

/// Mount points the sandbox layout has (see `bulkhead_node::sandbox`);
/// anything else in `/proc/self/mountinfo` came from outside.
const LAYOUT: &[&str] = &[
    "/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/proc", "/dev", "/tmp",
    "/etc", "/data",
];
/// Mount points with documented submounts.
const LAYOUT_SUBTREES: &[&str] = &["/proc/", "/dev/", "/etc/"];

/// Device nodes no tenant may open.
const DEVICES: &[&str] = &[
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
    "/dev/kmsg",
    "/dev/sda",
    "/dev/vda",
    "/dev/xvda",
    "/dev/nvme0n1",
    "/dev/loop0",
    "/dev/loop-control",
    "/dev/mapper/control",
    "/dev/fuse",
];

/// Device nodes of the sandbox's `/dev` that read fine but must not open for
/// writing: the host's random pool is one for the whole kernel. Only Landlock
/// stops this (the nodes are the host's, mode 0666, bound without `nodev`):
/// its ruleset makes `/dev` read-only except `null`, `zero` and `full`.
const SHARED_DEVICES: &[&str] = &["/dev/random", "/dev/urandom"];

/// Directories outside the volume and `/tmp` the probe tries to create a file in.
const READ_ONLY_DIRS: &[&str] = &["/", "/usr", "/etc", "/dev", "/proc", "/bin"];

/// Kernel tunables opened for writing (never written).
const TUNABLES: &[&str] = &[
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/vm/drop_caches",
    "/proc/sysrq-trigger",
    "/sys/kernel/uevent_helper",
    "/sys/kernel/mm/transparent_hugepage/enabled",
];

struct Out {
    list: Vec<Observation>,
    own_pids: BTreeSet<u32>,
}

impl Out {
    fn push(
        &mut self,
        class: ProbeClass,
        id: &str,
        what: String,
        target: Target,
        result: Result<String, i32>,
    ) {
        let (worked, detail, errno) = match result {
            Ok(detail) => (true, detail, None),
            Err(errno) => (false, errno_name(errno), Some(errno)),
        };
        self.list.push(Observation {
            class,
            id: id.to_owned(),
            what,
            target,
            worked,
            detail,
            errno,
            found: Vec::new(),
            scan: false,
            skipped: false,
        });
    }

    fn scan(&mut self, class: ProbeClass, id: &str, what: String, found: BTreeSet<String>) {
        self.list.push(Observation {
            class,
            id: id.to_owned(),
            what,
            target: Target::Own,
            worked: !found.is_empty(),
            detail: format!("{} found", found.len()),
            errno: None,
            found: found.into_iter().collect(),
            scan: true,
            skipped: false,
        });
    }

    fn skip(&mut self, class: ProbeClass, id: &str, what: String, target: Target, why: &str) {
        self.list.push(Observation {
            class,
            id: id.to_owned(),
            what,
            target,
            worked: false,
            detail: why.to_owned(),
            errno: None,
            found: Vec::new(),
            scan: false,
            skipped: true,
        });
    }

    /// A host pid number that is also a pid in here cannot be told apart.
    fn collides(&self, pid: u32) -> bool {
        self.own_pids.contains(&pid)
    }
}

fn errno_of(error: &std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(libc::EIO)
}

fn read(path: impl AsRef<Path>) -> Result<Vec<u8>, i32> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map(|_| buf)
        .map_err(|e| errno_of(&e))
}

fn short(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).replace('\0', " ");
    let text = text.trim();
    if text.len() > 60 {
        format!("read {} bytes", bytes.len())
    } else {
        format!("read {text:?}")
    }
}

fn visible_pids() -> BTreeSet<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every canary token (`<prefix><hex>`) in `bytes`.
fn tokens_in(bytes: &[u8], prefix: &str, into: &mut BTreeSet<String>) {
    let text = String::from_utf8_lossy(bytes);
    let mut rest = text.as_ref();
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at + prefix.len()..];
        let hex: String = tail.chars().take_while(char::is_ascii_hexdigit).collect();
        if !hex.is_empty() {
            into.insert(format!("{prefix}{hex}"));
        }
        rest = &tail[hex.len()..];
    }
}

/// Runs the requested classes.
pub(super) fn run(request: &IsolationRequest) -> Vec<Observation> {
    let mut out = Out {
        list: Vec::new(),
        own_pids: visible_pids(),
    };
    for class in &request.classes {
        match class {
            ProbeClass::Processes => processes(request, &mut out),
            ProbeClass::Filesystem => filesystem(request, &mut out),
            ProbeClass::Ipc => ipc(request, &mut out),
            ProbeClass::Privilege => privilege(&mut out),
            ProbeClass::Network | ProbeClass::Resources => {}
        }
    }
    out.list
}

// ------------------------------------------------------------- processes

fn processes(request: &IsolationRequest, out: &mut Out) {
    const C: ProbeClass = ProbeClass::Processes;
    // Only own pids: pid 1 must be our own holder.
    let pid1 = read("/proc/1/cmdline").map(|b| {
        String::from_utf8_lossy(&b)
            .replace('\0', " ")
            .trim()
            .to_owned()
    });
    let own_holder = format!("bulkhead-holder {}", request.tenant);
    out.push(
        C,
        "processes.proc-is-own",
        "/proc shows the tenant's own pid namespace (pid 1 is its holder)".into(),
        Target::Own,
        match pid1 {
            Ok(cmd) if cmd == own_holder => Ok(format!("pid 1 is {cmd:?}")),
            Ok(cmd) => Err(libc::EINVAL).inspect(|_| eprintln!("pid 1 is {cmd:?}")),
            Err(errno) => Err(errno),
        },
    );

    let mut targets: Vec<(u32, Target, &str, String)> = Vec::new();
    for peer in &request.peers {
        let target = Target::Tenant(peer.tenant.clone());
        targets.push((
            peer.holder_pid,
            target.clone(),
            "holder",
            format!("{}'s holder", peer.tenant),
        ));
        if let Some(pid) = peer.canary_pid {
            targets.push((
                pid,
                target,
                "canary",
                format!("{}'s canary process", peer.tenant),
            ));
        }
    }
    targets.push((
        request.host.pid,
        Target::Host,
        "host",
        "a host process".into(),
    ));
    for (pid, target, role, name) in &targets {
        let label = |verb: &str| format!("{verb} {name} by its host pid {pid}");
        if out.collides(*pid) {
            for verb in ["kill", "ptrace", "environ", "mem"] {
                out.skip(
                    C,
                    &format!("processes.{verb}.{role}"),
                    label(verb),
                    target.clone(),
                    "the number is also a pid inside",
                );
            }
            continue;
        }
        let raw = i32::try_from(*pid).unwrap_or(i32::MAX);
        let kill = rustix::process::Pid::from_raw(raw)
            .ok_or(libc::ESRCH)
            .and_then(|p| rustix::process::test_kill_process(p).map_err(|e| e.raw_os_error()))
            .map(|()| "signal 0 delivered".to_owned());
        out.push(
            C,
            &format!("processes.kill.{role}"),
            label("kill(pid, 0)"),
            target.clone(),
            kill,
        );
        let trace = attempt::ptrace_attach(raw).map(|()| "attached".to_owned());
        out.push(
            C,
            &format!("processes.ptrace.{role}"),
            label("ptrace attach"),
            target.clone(),
            trace,
        );
        let environ = read(format!("/proc/{pid}/environ")).map(|b| short(&b));
        out.push(
            C,
            &format!("processes.environ.{role}"),
            label("read /proc/<pid>/environ of"),
            target.clone(),
            environ,
        );
        let mem = read(format!("/proc/{pid}/cmdline")).map(|b| short(&b));
        out.push(
            C,
            &format!("processes.cmdline.{role}"),
            label("read /proc/<pid>/cmdline of"),
            target.clone(),
            mem,
        );
    }

    // Canary tokens anywhere in /proc: own must show (positive control).
    for (file, id) in [
        ("environ", "processes.canary.environ"),
        ("cmdline", "processes.canary.cmdline"),
    ] {
        let mut found = BTreeSet::new();
        for pid in visible_pids() {
            if let Ok(bytes) = read(format!("/proc/{pid}/{file}")) {
                tokens_in(&bytes, &request.token_prefix, &mut found);
            }
        }
        out.scan(C, id, format!("canary tokens in /proc/*/{file}"), found);
    }

    // Cgroups: our view must stay inside the tenant's cgroup. The cgroup namespace is
    // rooted at the holder's leaf (`<tenant>/.holder`, processes live only in leaves),
    // so a sibling leaf of the same tenant reads `/../<leaf>`; two levels up would be
    // outside the tenant.
    let cgroup = read("/proc/self/cgroup").map(|b| String::from_utf8_lossy(&b).into_owned());
    let escaped = cgroup.map(|text| {
        text.lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .filter(|path| {
                let inside_tenant = path
                    .strip_prefix("/..")
                    .map_or(!path.contains(".."), |rest| {
                        rest.is_empty() || (rest.starts_with('/') && !rest.contains(".."))
                    });
                !inside_tenant || request.peers.iter().any(|p| path.contains(&p.tenant))
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    out.push(
        C,
        "processes.cgroup-view",
        "see cgroup paths outside the tenant's cgroup in /proc/self/cgroup".into(),
        Target::Host,
        match escaped {
            Ok(paths) if !paths.is_empty() => Ok(paths.join(", ")),
            Ok(_) => Err(libc::ENOENT),
            Err(errno) => Err(errno),
        },
    );
    out.push(
        C,
        "processes.sys-cgroup",
        "list the host's cgroups under /sys/fs/cgroup".into(),
        Target::Host,
        std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| format!("{} entries", d.count()))
            .map_err(|e| errno_of(&e)),
    );

    // The id range as the kernel applies it (judged pairwise by the verifier).
    let map = read("/proc/self/uid_map").map(|b| String::from_utf8_lossy(&b).trim().to_owned());
    out.push(
        C,
        "processes.uid-map",
        "read own /proc/self/uid_map".into(),
        Target::Own,
        map,
    );
}

// ------------------------------------------------------------ filesystem

fn filesystem(request: &IsolationRequest, out: &mut Out) {
    const C: ProbeClass = ProbeClass::Filesystem;
    let scratch = format!("/tmp/.bulkhead-probe-{}", request.nonce);
    let _ = std::fs::create_dir_all(&scratch);
    let canary = &request.canary_file;
    for peer in &request.peers {
        let target = Target::Tenant(peer.tenant.clone());
        if let Some(dir) = &peer.data_dir {
            let path = format!("{dir}/{canary}");
            out.push(
                C,
                "filesystem.host-path",
                format!("read {}'s canary by its volume's host path", peer.tenant),
                target.clone(),
                read(&path).map(|b| short(&b)),
            );
            let link = format!("{scratch}/link-{}", peer.tenant);
            let via_link = std::os::unix::fs::symlink(&path, &link)
                .map_err(|e| errno_of(&e))
                .and_then(|()| read(&link).map(|b| short(&b)));
            out.push(
                C,
                "filesystem.symlink",
                format!(
                    "read {}'s canary through a symlink to its host path",
                    peer.tenant
                ),
                target.clone(),
                via_link,
            );
            let hard = format!("/data/.bulkhead-probe-hl-{}", request.nonce);
            let linked = std::fs::hard_link(&path, &hard)
                .map(|()| "linked".to_owned())
                .map_err(|e| errno_of(&e));
            let _ = std::fs::remove_file(&hard);
            out.push(
                C,
                "filesystem.hardlink",
                format!("hard-link {}'s canary onto the own volume", peer.tenant),
                target.clone(),
                linked,
            );
        }
        let root = format!("{}/data/{canary}", peer.sandbox_root);
        out.push(
            C,
            "filesystem.sandbox-root",
            format!(
                "read {}'s canary under its sandbox root's host path",
                peer.tenant
            ),
            target.clone(),
            read(&root).map(|b| short(&b)),
        );
        if out.collides(peer.holder_pid) {
            out.skip(
                C,
                "filesystem.proc-root",
                format!(
                    "read {}'s canary through /proc/<its holder>/root",
                    peer.tenant
                ),
                target,
                "the number is also a pid inside",
            );
        } else {
            let path = format!("/proc/{}/root/data/{canary}", peer.holder_pid);
            out.push(
                C,
                "filesystem.proc-root",
                format!(
                    "read {}'s canary through /proc/<its holder>/root",
                    peer.tenant
                ),
                target,
                read(&path).map(|b| short(&b)),
            );
        }
    }
    out.push(
        C,
        "filesystem.host-file",
        "read a host file by its path".into(),
        Target::Host,
        read(&request.host.canary_file).map(|b| short(&b)),
    );
    let hard = format!("/data/.bulkhead-probe-hl-{}", request.nonce);
    let linked = std::fs::hard_link("/etc/passwd", &hard)
        .map(|()| "linked".to_owned())
        .map_err(|e| errno_of(&e));
    let _ = std::fs::remove_file(&hard);
    out.push(
        C,
        "filesystem.hardlink-out",
        "hard-link a file from outside the volume onto it".into(),
        Target::Host,
        linked,
    );

    for dir in READ_ONLY_DIRS {
        out.push(
            C,
            "filesystem.write-outside",
            format!("create a file in {dir}"),
            Target::Host,
            try_create(dir, &request.nonce),
        );
    }
    for dir in ["/data", "/tmp"] {
        if dir == "/data" && !Path::new("/data").exists() {
            continue;
        }
        out.push(
            C,
            "filesystem.write-own",
            format!("create a file in {dir}"),
            Target::Own,
            try_create(dir, &request.nonce),
        );
    }
    for device in DEVICES {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .open(device)
            .map(|_| "opened".to_owned())
            .map_err(|e| errno_of(&e));
        out.push(
            C,
            "filesystem.device",
            format!("open {device}"),
            Target::Host,
            opened,
        );
    }
    for device in SHARED_DEVICES {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .open(device)
            .map(|_| "opened for writing".to_owned())
            .map_err(|e| errno_of(&e));
        out.push(
            C,
            "filesystem.device-write",
            format!("open {device} for writing (never written)"),
            Target::Host,
            opened,
        );
    }
    let node = format!("{scratch}/blk");
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        node.as_str(),
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(7, 0),
    )
    .map_err(|e| e.raw_os_error())
    .and_then(|()| {
        std::fs::File::open(&node)
            .map(|_| "opened".to_owned())
            .map_err(|e| errno_of(&e))
    });
    let _ = std::fs::remove_file(&node);
    out.push(
        C,
        "filesystem.mknod",
        "create and open a block device node (loop0)".into(),
        Target::Host,
        made,
    );

    let point = format!("{scratch}/mnt");
    let _ = std::fs::create_dir_all(&point);
    let tmpfs = rustix::mount::mount(
        "none",
        point.as_str(),
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        c"size=1m",
    )
    .map(|()| "mounted".to_owned())
    .map_err(|e| e.raw_os_error());
    if tmpfs.is_ok() {
        let _ = rustix::mount::unmount(point.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
    out.push(
        C,
        "filesystem.mount",
        "mount a tmpfs".into(),
        Target::Own,
        tmpfs,
    );
    let bind = rustix::mount::mount_bind("/usr", point.as_str())
        .map(|()| "mounted".to_owned())
        .map_err(|e| e.raw_os_error());
    if bind.is_ok() {
        let _ = rustix::mount::unmount(point.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
    out.push(
        C,
        "filesystem.mount",
        "bind-mount /usr".into(),
        Target::Own,
        bind,
    );
    let remount = rustix::mount::mount_remount("/usr", rustix::mount::MountFlags::BIND, c"")
        .map(|()| "remounted read-write".to_owned())
        .map_err(|e| e.raw_os_error());
    out.push(
        C,
        "filesystem.remount",
        "remount /usr read-write".into(),
        Target::Host,
        remount,
    );

    if let Some(path) = &request.setuid_file {
        let own = rustix::process::geteuid().as_raw();
        let ran = std::process::Command::new(path)
            .arg("-u")
            .env_remove(PROBE_ENV)
            .output()
            .map_err(|e| errno_of(&e))
            .and_then(|o| {
                let uid = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                if uid == own.to_string() {
                    Err(libc::EPERM)
                } else {
                    Ok(format!("euid became {uid}"))
                }
            });
        out.push(
            C,
            "filesystem.setuid",
            "gain the owner's uid through a set-uid file on the volume".into(),
            Target::Own,
            ran,
        );
    }

    // Mounts that are not the sandbox layout came from outside; their
    // sources let the verifier tell whose they are.
    let mut foreign = BTreeSet::new();
    let mut points = Vec::new();
    if let Ok(bytes) = read("/proc/self/mountinfo") {
        for m in parse_mountinfo(&String::from_utf8_lossy(&bytes)).unwrap_or_default() {
            let p = m.mount_point.to_string_lossy().into_owned();
            if !LAYOUT.contains(&p.as_str()) && !LAYOUT_SUBTREES.iter().any(|s| p.starts_with(s)) {
                foreign.insert(format!("mount:{}", m.source));
                points.push(p);
            }
        }
    }
    out.scan(
        C,
        "filesystem.foreign-mounts",
        "mounts outside the sandbox layout in /proc/self/mountinfo".into(),
        foreign,
    );
    if let Some(last) = out.list.last_mut() {
        last.detail = if points.is_empty() {
            "none".into()
        } else {
            points.join(", ")
        };
    }

    // Canary files wherever a mount shows them (a foreign bind shows here).
    let mut found = BTreeSet::new();
    if let Ok(bytes) = read("/proc/self/mountinfo") {
        for mount in parse_mountinfo(&String::from_utf8_lossy(&bytes)).unwrap_or_default() {
            let point = mount.mount_point;
            if point.starts_with("/proc") || point.starts_with("/dev") || point.starts_with("/sys")
            {
                continue;
            }
            find_canaries(&point, canary, 2, &request.token_prefix, &mut found);
        }
    }
    out.scan(
        C,
        "filesystem.canary.mounts",
        "canary files under every mount point".into(),
        found,
    );
    let _ = std::fs::remove_dir_all(&scratch);
}

fn find_canaries(dir: &Path, name: &str, depth: u32, prefix: &str, found: &mut BTreeSet<String>) {
    if let Ok(bytes) = read(dir.join(name)) {
        tokens_in(&bytes, prefix, found);
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok).take(256) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_canaries(&entry.path(), name, depth - 1, prefix, found);
        }
    }
}

fn try_create(dir: &str, nonce: &str) -> Result<String, i32> {
    let path = PathBuf::from(dir).join(format!(".bulkhead-probe-file-{nonce}"));
    let created = std::fs::write(&path, b"probe")
        .map(|()| "created".to_owned())
        .map_err(|e| errno_of(&e));
    let _ = std::fs::remove_file(&path);
    created
}

// ------------------------------------------------------------------- ipc

fn ipc(request: &IsolationRequest, out: &mut Out) {
    const C: ProbeClass = ProbeClass::Ipc;
    for kind in SysvKind::ALL {
        let name = format!("{kind:?}").to_lowercase();
        let mut found = BTreeSet::new();
        if let Ok(bytes) = read(kind.proc_file()) {
            for line in String::from_utf8_lossy(&bytes).lines().skip(1) {
                if let Some(key) = line.split_whitespace().next() {
                    found.insert(format!("sysv:{key}"));
                }
            }
        }
        out.scan(
            C,
            &format!("ipc.sysv-list.{name}"),
            format!("SysV {name} keys in {}", kind.proc_file()),
            found,
        );
        let own = attempt::sysv_lookup(kind, request.own_ipc.sysv_key).map(|id| format!("id {id}"));
        out.push(
            C,
            &format!("ipc.sysv-get.{name}"),
            format!("open own SysV {name} by key"),
            Target::Own,
            own,
        );
        for peer in &request.peers {
            let got = attempt::sysv_lookup(kind, peer.ipc.sysv_key).map(|id| format!("id {id}"));
            out.push(
                C,
                &format!("ipc.sysv-get.{name}"),
                format!("open {}'s SysV {name} by key", peer.tenant),
                Target::Tenant(peer.tenant.clone()),
                got,
            );
        }
    }
    let mq = |name: &str| {
        CString::new(name)
            .map_err(|_| libc::EINVAL)
            .and_then(|n| attempt::mq_open_existing(&n))
            .map(|()| "opened".to_owned())
    };
    out.push(
        C,
        "ipc.mqueue",
        "open own POSIX message queue".into(),
        Target::Own,
        mq(&request.own_ipc.mqueue),
    );
    for peer in &request.peers {
        out.push(
            C,
            "ipc.mqueue",
            format!("open {}'s POSIX message queue", peer.tenant),
            Target::Tenant(peer.tenant.clone()),
            mq(&peer.ipc.mqueue),
        );
    }
    let connect_abstract = |name: &str| {
        SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| UnixStream::connect_addr(&addr))
            .map(|_| "connected".to_owned())
            .map_err(|e| errno_of(&e))
    };
    out.push(
        C,
        "ipc.abstract-socket",
        "connect to own abstract unix socket".into(),
        Target::Own,
        connect_abstract(&request.own_ipc.abstract_socket),
    );
    for peer in &request.peers {
        out.push(
            C,
            "ipc.abstract-socket",
            format!("connect to {}'s abstract unix socket", peer.tenant),
            Target::Tenant(peer.tenant.clone()),
            connect_abstract(&peer.ipc.abstract_socket),
        );
    }
    out.push(
        C,
        "ipc.abstract-socket",
        "connect to a host abstract unix socket".into(),
        Target::Host,
        connect_abstract(&request.host.abstract_socket),
    );
    let host_socket = UnixStream::connect(&request.host.unix_socket)
        .map(|_| "connected".to_owned())
        .map_err(|e| errno_of(&e));
    out.push(
        C,
        "ipc.host-socket",
        "connect to a host unix socket by its path".into(),
        Target::Host,
        host_socket,
    );
}

// ------------------------------------------------------------- privilege

fn privilege(out: &mut Out) {
    const C: ProbeClass = ProbeClass::Privilege;
    let report = confine_probe::run(&[]);
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let value = report.status.get(field).cloned().unwrap_or_default();
        let none = u64::from_str_radix(value.trim(), 16).is_ok_and(|v| v == 0);
        out.push(
            C,
            &format!("privilege.caps.{field}"),
            format!("hold a capability ({field})"),
            Target::Own,
            if none { Err(0) } else { Ok(value) },
        );
    }
    let nnp = report.status.get("NoNewPrivs").map(String::as_str) == Some("1");
    out.push(
        C,
        "privilege.no-new-privs",
        "run without no_new_privs".into(),
        Target::Own,
        if nnp {
            Err(0)
        } else {
            Ok("NoNewPrivs: 0".into())
        },
    );
    let mode = report.status.get("Seccomp").cloned().unwrap_or_default();
    out.push(
        C,
        "privilege.seccomp-mode",
        "run without a seccomp filter".into(),
        Target::Own,
        if mode == "2" {
            Err(0)
        } else {
            Ok(format!("Seccomp: {mode}"))
        },
    );
    for (name, result) in &report.syscalls {
        out.push(
            C,
            &format!("privilege.syscall.{name}"),
            format!("call {name}"),
            Target::Own,
            result.map(|v| format!("returned {v}")),
        );
    }
    let userns = std::process::Command::new("/proc/self/exe")
        .env_clear()
        .env(
            PROBE_ENV,
            serde_json::to_string(&Request::Userns).unwrap_or_default(),
        )
        .status()
        .map_err(|e| errno_of(&e))
        .and_then(|s| match s.code() {
            Some(0) => Ok("created".to_owned()),
            Some(code) => Err(code),
            None => Err(libc::EINTR),
        });
    out.push(
        C,
        "privilege.userns",
        "create a user namespace".into(),
        Target::Own,
        userns,
    );
    let key =
        attempt::add_user_key(c"bulkhead-probe", b"probe").map(|serial| format!("key {serial}"));
    out.push(
        C,
        "privilege.keyring",
        "add a key to a kernel keyring".into(),
        Target::Host,
        key,
    );
    out.push(
        C,
        "privilege.proc-keys",
        "read /proc/keys".into(),
        Target::Host,
        read("/proc/keys").map(|b| short(&b)),
    );
    for path in TUNABLES {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(|_| "opened for writing".to_owned())
            .map_err(|e| errno_of(&e));
        out.push(
            C,
            "privilege.tunable",
            format!("open {path} for writing"),
            Target::Host,
            opened,
        );
    }
    out.push(
        C,
        "privilege.dmesg",
        "read the kernel log (syslog)".into(),
        Target::Host,
        attempt::syslog_read_all().map(|n| format!("{n} bytes")),
    );
}
