//! Where doctor looks: filesystem roots, binary lookup, and the one seam that is
//! not a path (syscalls), so tests can run against a fake host in a temp dir.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::kconfig::{KernelConfig, Tristate};

/// The filesystem roots doctor reads. [`HostPaths::system`] is the real host;
/// tests point every root into a temp dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// procfs root, normally `/proc`.
    pub proc: PathBuf,
    /// sysfs root, normally `/sys` (cgroup mounts under `/sys/...` in
    /// mountinfo are resolved against it).
    pub sys: PathBuf,
    /// devtmpfs root, normally `/dev`.
    pub dev: PathBuf,
    /// Directories searched for binaries (`nft`, `tc`, `ip`, `mkfs.ext4`), in order.
    pub path: Vec<PathBuf>,
}

/// Used when `$PATH` is unset: the usual root search path.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl HostPaths {
    /// The running host: `/proc`, `/sys`, `/dev` and `$PATH`, with the sbin
    /// directories appended when missing (`nft` and `tc` live there and
    /// non-root `$PATH`s often lack them).
    pub fn system() -> Self {
        let from_env = std::env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH));
        let mut path: Vec<PathBuf> = std::env::split_paths(&from_env).collect();
        for extra in std::env::split_paths(DEFAULT_PATH) {
            if !path.contains(&extra) {
                path.push(extra);
            }
        }
        Self::rooted_at(Path::new("/"), path)
    }

    /// `proc`, `sys` and `dev` under `root` (a fake host tree), searching `path`.
    pub fn rooted_at(root: &Path, path: Vec<PathBuf>) -> Self {
        Self {
            proc: root.join("proc"),
            sys: root.join("sys"),
            dev: root.join("dev"),
            path,
        }
    }

    /// Maps an absolute host path (as mountinfo prints it) into these roots:
    /// `/sys/...`, `/proc/...` and `/dev/...` move under the matching root,
    /// anything else is returned unchanged.
    pub fn resolve(&self, host_path: &Path) -> PathBuf {
        for (prefix, root) in [
            ("/sys", &self.sys),
            ("/proc", &self.proc),
            ("/dev", &self.dev),
        ] {
            if let Ok(rest) = host_path.strip_prefix(prefix) {
                return root.join(rest);
            }
        }
        host_path.to_path_buf()
    }

    /// The first executable file called `name` in [`HostPaths::path`].
    pub fn find_binary(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        self.path
            .iter()
            .map(|dir| dir.join(name))
            .find(|candidate| {
                std::fs::metadata(candidate)
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
    }
}

/// The syscalls doctor makes that no path can stand in for. [`LiveKernel`]
/// asks the running kernel; tests pass a [`FakeKernel`].
pub trait KernelProbe {
    /// What `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)` says.
    fn landlock(&self) -> LandlockProbe;
    /// Whether doctor runs with effective uid 0 (decides between "absent" and
    /// "unknown (needs root)" for unreadable files).
    fn is_root(&self) -> bool;
}

/// The answer of the Landlock version query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockProbe {
    /// Landlock is enabled; the highest ABI version the kernel supports.
    Abi(u32),
    /// `ENOSYS`: the kernel was built without Landlock.
    NotBuilt,
    /// `EOPNOTSUPP`: built in, but not enabled at boot (not in `lsm=`).
    Disabled,
    /// Any other errno (e.g. `EPERM` from a seccomp filter around doctor).
    Error(i32),
}

/// The running kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveKernel;

impl KernelProbe for LiveKernel {
    fn landlock(&self) -> LandlockProbe {
        match crate::sys::landlock::abi_version() {
            Ok(abi) => LandlockProbe::Abi(abi),
            Err(libc::ENOSYS) => LandlockProbe::NotBuilt,
            Err(libc::EOPNOTSUPP) => LandlockProbe::Disabled,
            Err(errno) => LandlockProbe::Error(errno),
        }
    }

    fn is_root(&self) -> bool {
        rustix::process::geteuid().is_root()
    }
}

/// A kernel with fixed answers, for tests and for rendering examples.
#[derive(Debug, Clone, Copy)]
pub struct FakeKernel {
    /// Answer to the Landlock query.
    pub landlock: LandlockProbe,
    /// Whether to act as root.
    pub root: bool,
}

impl KernelProbe for FakeKernel {
    fn landlock(&self) -> LandlockProbe {
        self.landlock
    }

    fn is_root(&self) -> bool {
        self.root
    }
}

/// What reading one small file told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fact {
    /// The trimmed contents.
    Value(String),
    /// The file does not exist.
    Absent,
    /// Permission denied.
    Denied,
    /// Another I/O error, as text.
    Failed(String),
}

impl Fact {
    pub(crate) fn read(path: &Path) -> Fact {
        match std::fs::read_to_string(path) {
            Ok(text) => Fact::Value(text.trim().to_owned()),
            Err(e) => Fact::from_error(&e),
        }
    }

    pub(crate) fn from_error(e: &io::Error) -> Fact {
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Fact::Absent,
            io::ErrorKind::PermissionDenied => Fact::Denied,
            _ => Fact::Failed(e.to_string()),
        }
    }

    pub(crate) fn value(&self) -> Option<&str> {
        match self {
            Fact::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value parsed as an integer.
    pub(crate) fn int(&self) -> Option<i64> {
        self.value().and_then(|v| v.parse().ok())
    }
}

/// Everything read from the host that several checks share.
#[derive(Debug)]
pub(crate) struct Host<'a> {
    pub(crate) paths: &'a HostPaths,
    pub(crate) root: bool,
    pub(crate) kconfig: Option<KernelConfig>,
    /// Names in `/proc/modules`; `None` when the file is absent (no loadable
    /// module support) or unreadable.
    pub(crate) proc_modules: Option<BTreeSet<String>>,
    /// Whether `/proc/modules` exists at all.
    pub(crate) modules_supported: Option<bool>,
}

/// How a kernel component (something that can be a module) is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// A loaded module.
    Loaded,
    /// Built into the kernel.
    BuiltIn,
    /// A module that is not loaded; the kernel loads it on first use.
    Loadable,
    /// The kernel config says it is not built.
    Absent,
    /// Nothing visible tells either way.
    Unknown,
}

impl Presence {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Presence::Loaded => "loaded module",
            Presence::BuiltIn => "built in",
            Presence::Loadable => "module, loaded on first use",
            Presence::Absent => "not built",
            Presence::Unknown => "not visible",
        }
    }

    pub(crate) fn available(self) -> Option<bool> {
        match self {
            Presence::Loaded | Presence::BuiltIn | Presence::Loadable => Some(true),
            Presence::Absent => Some(false),
            Presence::Unknown => None,
        }
    }
}

impl<'a> Host<'a> {
    pub(crate) fn load(paths: &'a HostPaths, probe: &dyn KernelProbe) -> Self {
        let modules = Fact::read(&paths.proc.join("modules"));
        let (proc_modules, modules_supported) = match &modules {
            Fact::Value(text) => (
                Some(
                    text.lines()
                        .filter_map(|l| l.split_whitespace().next())
                        .map(str::to_owned)
                        .collect(),
                ),
                Some(true),
            ),
            Fact::Absent => (None, Some(false)),
            _ => (None, None),
        };
        Self {
            paths,
            root: probe.is_root(),
            kconfig: KernelConfig::load(&paths.proc.join("config.gz")),
            proc_modules,
            modules_supported,
        }
    }

    pub(crate) fn proc(&self, rel: &str) -> Fact {
        Fact::read(&self.paths.proc.join(rel))
    }

    pub(crate) fn sys(&self, rel: &str) -> Fact {
        Fact::read(&self.paths.sys.join(rel))
    }

    /// The value of a sysctl by its dotted name (`kernel.dmesg_restrict`).
    pub(crate) fn sysctl(&self, name: &str) -> Fact {
        self.proc(&format!("sys/{}", name.replace('.', "/")))
    }

    /// How a file that could not be read should be shown.
    pub(crate) fn unreadable(&self, fact: &Fact) -> String {
        match fact {
            Fact::Value(v) => v.clone(),
            Fact::Absent => "absent".to_owned(),
            Fact::Denied if !self.root => "unknown (needs root)".to_owned(),
            Fact::Denied => "unknown (permission denied)".to_owned(),
            Fact::Failed(e) => format!("unknown ({e})"),
        }
    }

    /// Looks for `module` in `/proc/modules` and `/sys/module`, then for
    /// `config` in the kernel config.
    pub(crate) fn component(&self, module: &str, config: &str) -> Presence {
        if self
            .proc_modules
            .as_ref()
            .is_some_and(|m| m.contains(module))
        {
            return Presence::Loaded;
        }
        let sys_module = self.paths.sys.join("module").join(module);
        if sys_module.is_dir() {
            // Loadable modules have `initstate`; built-in ones with
            // parameters show up without it.
            return if sys_module.join("initstate").exists() {
                Presence::Loaded
            } else {
                Presence::BuiltIn
            };
        }
        match self.kconfig.as_ref().map(|k| k.get(config)) {
            Some(Tristate::Yes) => Presence::BuiltIn,
            Some(Tristate::Module) if self.modules_supported == Some(false) => Presence::Absent,
            Some(Tristate::Module) => Presence::Loadable,
            Some(Tristate::No) => Presence::Absent,
            None => Presence::Unknown,
        }
    }
}

/// The first line a binary prints for its version flag (stdout, else stderr),
/// or `None` if it could not be run or printed nothing within two seconds.
pub(crate) fn binary_version(binary: &Path, flag: &str) -> Option<String> {
    let mut child = spawn_retrying(binary, flag).ok()?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                // Best effort: the child is ours and we give up on it.
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn Read>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn Read>),
    ]
    .into_iter()
    .flatten()
    {
        out.clear();
        let _ = stream.take(64 * 1024).read_to_string(&mut out);
        if let Some(line) = out.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Some(line.to_owned());
        }
    }
    None
}

/// Spawns `binary flag`, retrying briefly on `ETXTBSY` (a file just written
/// by another thread of this process can still be open for writing in a
/// forked child).
fn spawn_retrying(binary: &Path, flag: &str) -> io::Result<std::process::Child> {
    let mut attempts = 0;
    loop {
        let result = Command::new(binary)
            .arg(flag)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match result {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_moves_kernel_filesystems_under_their_roots() {
        let paths = HostPaths::rooted_at(Path::new("/tmp/fake"), vec![]);
        assert_eq!(
            paths.resolve(Path::new("/sys/fs/cgroup/memory")),
            PathBuf::from("/tmp/fake/sys/fs/cgroup/memory")
        );
        assert_eq!(
            paths.resolve(Path::new("/proc/1")),
            PathBuf::from("/tmp/fake/proc/1")
        );
        assert_eq!(
            paths.resolve(Path::new("/mnt/cg")),
            PathBuf::from("/mnt/cg")
        );
        // A prefix match must be a whole component.
        assert_eq!(
            paths.resolve(Path::new("/sysroot")),
            PathBuf::from("/sysroot")
        );
    }

    #[test]
    fn system_paths_include_sbin() {
        let paths = HostPaths::system();
        assert_eq!(paths.proc, PathBuf::from("/proc"));
        assert!(paths.path.contains(&PathBuf::from("/usr/sbin")));
    }

    #[test]
    fn unreadable_says_needs_root_only_when_not_root() {
        let paths = HostPaths::rooted_at(Path::new("/nonexistent"), vec![]);
        let mut host = Host::load(
            &paths,
            &FakeKernel {
                landlock: LandlockProbe::NotBuilt,
                root: false,
            },
        );
        assert_eq!(host.unreadable(&Fact::Denied), "unknown (needs root)");
        host.root = true;
        assert_eq!(
            host.unreadable(&Fact::Denied),
            "unknown (permission denied)"
        );
        assert_eq!(host.unreadable(&Fact::Absent), "absent");
    }
}
