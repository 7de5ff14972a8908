//! Builds the tenant's root file system inside its mount namespace and
//! pivots into it. Runs in the holder (pid 1 of the tenant, root of its user
//! namespace); the table of what is mounted where is in the module docs of
//! [`sandbox`](super).

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::StatVfsMountFlags;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use super::etc::{self, ETC_BOUND, ETC_COPIED, ETC_SYNTHESIZED};

/// Host directories bound read-only into every sandbox (those that exist).
pub const HOST_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib64", "lib32"];

/// The only device nodes in a sandbox's `/dev`.
pub const DEV_NODES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks in a sandbox's `/dev`: name and target.
const DEV_LINKS: &[(&str, &str)] = &[
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// `/proc` entries made read-only.
const PROC_READONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];
/// `/proc` files masked by a `nodev` bind of `/dev/null`.
const PROC_MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
];
/// `/proc` directories masked by an empty read-only tmpfs.
const PROC_MASKED_DIRS: &[&str] = &["acpi", "scsi"];

/// Where the tenant's volume appears inside.
pub const VOLUME_PATH: &str = "/data";

const ROOT_TMPFS: &CStr = c"mode=0755,size=1m";
const DEV_TMPFS: &CStr = c"mode=0755,size=64k";
const ETC_TMPFS: &CStr = c"mode=0755,size=8m";
const DEVPTS: &CStr = c"newinstance,ptmxmode=0666,mode=0620,gid=5";

/// What the holder needs to build the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootSpec {
    pub(crate) tenant: String,
    pub(crate) root: PathBuf,
    pub(crate) tmp_size: u64,
    pub(crate) volume: Option<PathBuf>,
    pub(crate) nameserver: Option<std::net::IpAddr>,
}

/// A failed step of the holder, with the path it was applied to.
#[derive(Debug)]
pub(crate) struct StepError {
    pub(crate) step: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.as_os_str().is_empty() {
            write!(f, "{}", self.source)
        } else {
            write!(f, "{}: {}", self.path.display(), self.source)
        }
    }
}

trait IoResult<T> {
    fn at(self, what: &'static str, path: &Path) -> Result<T, StepError>;
}

impl<T, E: Into<io::Error>> IoResult<T> for Result<T, E> {
    fn at(self, what: &'static str, path: &Path) -> Result<T, StepError> {
        self.map_err(|source| StepError {
            step: what,
            path: path.to_owned(),
            source: source.into(),
        })
    }
}

const HIDE: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// Builds the root at `spec.root` (in the current, private mount namespace),
/// sets nothing else. Call [`pivot`] afterwards.
pub(crate) fn build(spec: &RootSpec) -> Result<(), StepError> {
    let root = spec.root.as_path();
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .at("make mounts private", Path::new("/"))?;
    rustix::mount::mount("bulkhead-root", root, "tmpfs", HIDE, ROOT_TMPFS)
        .at("mount root tmpfs", root)?;

    for name in HOST_DIRS {
        bind_host_dir(&Path::new("/").join(name), &root.join(name))?;
    }
    build_dev(&root.join("dev"))?;
    build_proc(&root.join("proc"), &root.join("dev/null"))?;

    let tmp = root.join("tmp");
    mkdir(&tmp)?;
    let options = CString::new(format!("mode=1777,size={}", spec.tmp_size))
        .map_err(io::Error::from)
        .at("mount /tmp", &tmp)?;
    rustix::mount::mount(
        "tmpfs",
        &tmp,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        options.as_c_str(),
    )
    .at("mount /tmp", &tmp)?;

    build_etc(&root.join("etc"), &spec.tenant, spec.nameserver)?;

    if let Some(volume) = &spec.volume {
        let target = root.join(VOLUME_PATH.trim_start_matches('/'));
        mkdir(&target)?;
        rustix::mount::mount_bind(volume, &target).at("bind volume", &target)?;
        remount_bind(&target, MountFlags::NOSUID | MountFlags::NODEV)
            .at("remount volume", &target)?;
    }

    rustix::mount::mount_remount(root, MountFlags::RDONLY | HIDE, "")
        .at("remount root read-only", root)?;
    Ok(())
}

/// Makes `root` the root of the mount namespace and lets go of the old one.
pub(crate) fn pivot(root: &Path) -> Result<(), StepError> {
    rustix::process::chdir(root).at("change to the new root", root)?;
    // pivot_root(".", "."): the old root ends up on top of the new one, and
    // a lazy unmount of "." removes it; no directory for it is needed.
    rustix::process::pivot_root(".", ".").at("pivot_root", root)?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).at("detach the old root", root)?;
    rustix::process::chdir("/").at("change to /", Path::new("/"))?;
    Ok(())
}

fn mkdir(path: &Path) -> Result<(), StepError> {
    match std::fs::DirBuilder::new().mode(0o755).create(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(StepError {
            step: "create mount point",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn touch(path: &Path, mode: u32) -> Result<(), StepError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)
        .map(drop)
        .at("create mount point", path)
}

fn symlink(target: &Path, link: &Path) -> Result<(), StepError> {
    std::os::unix::fs::symlink(target, link).at("create symlink", link)
}

/// The flags a bind remount must keep because the kernel locks them on
/// mounts inherited into a user namespace (`noexec`, the atime mode, …).
fn locked_flags(path: &Path) -> io::Result<MountFlags> {
    let have = rustix::fs::statvfs(path)?.f_flag;
    let mut flags = MountFlags::empty();
    for (stat, mount) in [
        (StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
        (StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ] {
        if have.contains(stat) {
            flags |= mount;
        }
    }
    if !have.intersects(StatVfsMountFlags::NOATIME | StatVfsMountFlags::RELATIME) {
        flags |= MountFlags::STRICTATIME;
    }
    Ok(flags)
}

/// Remounts the bind mount at `path` with `flags` added to those it has.
fn remount_bind(path: &Path, flags: MountFlags) -> io::Result<()> {
    let keep = locked_flags(path)?;
    rustix::mount::mount_remount(path, MountFlags::BIND | keep | flags, "")?;
    Ok(())
}

/// Binds a host directory read-only, or copies it as a symlink if it is one.
fn bind_host_dir(source: &Path, target: &Path) -> Result<(), StepError> {
    let meta = match std::fs::symlink_metadata(source) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at("inspect host directory", source),
    };
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(source).at("read host symlink", source)?;
        return symlink(&link, target);
    }
    if !meta.is_dir() {
        return Ok(());
    }
    mkdir(target)?;
    rustix::mount::mount_bind(source, target).at("bind host directory", target)?;
    remount_bind(
        target,
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
    )
    .at("remount host directory read-only", target)
}

fn build_dev(dev: &Path) -> Result<(), StepError> {
    mkdir(dev)?;
    rustix::mount::mount("tmpfs", dev, "tmpfs", HIDE, DEV_TMPFS).at("mount /dev tmpfs", dev)?;
    for name in DEV_NODES {
        let target = dev.join(name);
        touch(&target, 0o666)?;
        let source = Path::new("/dev").join(name);
        rustix::mount::mount_bind(&source, &target).at("bind device node", &target)?;
        // Device nodes must stay usable: nosuid and noexec, not nodev.
        remount_bind(&target, MountFlags::NOSUID | MountFlags::NOEXEC)
            .at("remount device node", &target)?;
    }
    let pts = dev.join("pts");
    mkdir(&pts)?;
    rustix::mount::mount(
        "devpts",
        &pts,
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        DEVPTS,
    )
    .at("mount /dev/pts", &pts)?;
    for (name, target) in DEV_LINKS {
        symlink(Path::new(target), &dev.join(name))?;
    }
    rustix::mount::mount_remount(dev, MountFlags::RDONLY | HIDE, "")
        .at("remount /dev read-only", dev)
}

fn build_proc(proc: &Path, dev_null: &Path) -> Result<(), StepError> {
    mkdir(proc)?;
    rustix::mount::mount("proc", proc, "proc", HIDE, None::<&CStr>).at("mount /proc", proc)?;
    for name in PROC_READONLY {
        let path = proc.join(name);
        if !path.exists() {
            continue;
        }
        rustix::mount::mount_bind(&path, &path).at("bind /proc entry", &path)?;
        remount_bind(&path, MountFlags::RDONLY | HIDE).at("make /proc entry read-only", &path)?;
    }
    for name in PROC_MASKED_FILES {
        let path = proc.join(name);
        if !path.exists() {
            continue;
        }
        rustix::mount::mount_bind(dev_null, &path).at("mask /proc file", &path)?;
        remount_bind(&path, MountFlags::RDONLY | HIDE).at("mask /proc file", &path)?;
    }
    for name in PROC_MASKED_DIRS {
        let path = proc.join(name);
        if !path.is_dir() {
            continue;
        }
        rustix::mount::mount(
            "tmpfs",
            &path,
            "tmpfs",
            MountFlags::RDONLY | HIDE,
            c"size=0",
        )
        .at("mask /proc directory", &path)?;
    }
    Ok(())
}

fn build_etc(
    etc_dir: &Path,
    tenant: &str,
    nameserver: Option<std::net::IpAddr>,
) -> Result<(), StepError> {
    mkdir(etc_dir)?;
    rustix::mount::mount("tmpfs", etc_dir, "tmpfs", HIDE, ETC_TMPFS)
        .at("mount /etc tmpfs", etc_dir)?;
    for name in ETC_SYNTHESIZED {
        let path = etc_dir.join(name);
        let text = etc::synthesize(name, tenant).unwrap_or_default();
        std::fs::write(&path, text).at("write /etc file", &path)?;
    }
    for name in ETC_COPIED {
        let target = etc_dir.join(name);
        match (nameserver, *name) {
            (Some(address), "resolv.conf") => {
                std::fs::write(&target, etc::resolv_conf(address))
                    .at("write /etc file", &target)?;
            }
            _ => copy_etc_entry(&Path::new("/etc").join(name), &target)?,
        }
    }
    for name in ETC_BOUND {
        let source = Path::new("/etc").join(name);
        if !source.is_dir() {
            continue;
        }
        let target = etc_dir.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).at("create /etc directory", parent)?;
        }
        mkdir(&target)?;
        rustix::mount::mount_bind(&source, &target).at("bind /etc directory", &target)?;
        remount_bind(&target, MountFlags::RDONLY | HIDE)
            .at("remount /etc directory read-only", &target)?;
    }
    rustix::mount::mount_remount(etc_dir, MountFlags::RDONLY | HIDE, "")
        .at("remount /etc read-only", etc_dir)
}

/// Copies one host `/etc` entry: a symlink into `/usr` stays a symlink (it
/// resolves inside too); anything else is copied by content, following
/// symlinks. Missing entries are skipped.
fn copy_etc_entry(source: &Path, target: &Path) -> Result<(), StepError> {
    let Ok(meta) = std::fs::symlink_metadata(source) else {
        return Ok(());
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).at("create /etc directory", parent)?;
    }
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(source).at("read host symlink", source)?;
        let resolved = std::fs::canonicalize(source).unwrap_or_default();
        if resolved.starts_with("/usr") {
            return symlink(&link, target);
        }
    }
    let Ok(bytes) = std::fs::read(source) else {
        return Ok(());
    };
    std::fs::write(target, bytes).at("copy /etc file", target)?;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o644))
        .at("copy /etc file", target)
}
