//! Starting processes inside a running sandbox.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus, Stdio};

use rustix::thread::LinkNameSpaceType;

use super::SandboxError;
use super::etc::{TENANT_GID, TENANT_UID};
use super::record::ProcStat;
use super::start::{ID_RANGE, Sandbox};
use crate::naming::Instance;
use crate::sys::process::{self as sys, JoinPlan, PreExec};

/// `PATH` of every workload unless the caller sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The namespaces a workload joins, in order: user first (it grants the
/// capabilities the others check), mount last (it changes the root).
const JOIN_ORDER: [(&str, LinkNameSpaceType, &str); 7] = [
    ("user", LinkNameSpaceType::User, "join user namespace"),
    (
        "cgroup",
        LinkNameSpaceType::ControlGroup,
        "join cgroup namespace",
    ),
    (
        "ipc",
        LinkNameSpaceType::InterProcessCommunication,
        "join ipc namespace",
    ),
    (
        "uts",
        LinkNameSpaceType::HostNameAndNISDomainName,
        "join uts namespace",
    ),
    ("net", LinkNameSpaceType::Network, "join net namespace"),
    ("pid", LinkNameSpaceType::ProcessID, "join pid namespace"),
    ("mnt", LinkNameSpaceType::Mount, "join mount namespace"),
];

/// A process to start in a tenant's sandbox. Like [`std::process::Command`],
/// but the environment starts empty (plus [`DEFAULT_PATH`]), the identity is
/// an id inside the tenant's range (default 1000:1000), paths resolve inside
/// the sandbox, and stdio is inherited unless set.
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    uid: u32,
    gid: u32,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
    cgroup_procs: Vec<PathBuf>,
    pre_exec: Option<PreExec>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("cgroup_procs", &self.cgroup_procs)
            .field("pre_exec", &self.pre_exec.is_some())
            .finish_non_exhaustive()
    }
}

impl Command {
    /// Runs `program` (a path inside the sandbox, or a name looked up in
    /// `PATH`) as uid/gid 1000 in `/`.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            uid: TENANT_UID,
            gid: TENANT_GID,
            stdin: None,
            stdout: None,
            stderr: None,
            cgroup_procs: Vec::new(),
            pre_exec: None,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (on top of `PATH=`[`DEFAULT_PATH`]).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Working directory inside the sandbox (default `/`).
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = dir.as_ref().to_owned();
        self
    }

    /// uid and gid inside the tenant's user namespace (default 1000:1000).
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Standard input (inherited by default).
    pub fn stdin(&mut self, stdio: impl Into<Stdio>) -> &mut Self {
        self.stdin = Some(stdio.into());
        self
    }

    /// Standard output (inherited by default).
    pub fn stdout(&mut self, stdio: impl Into<Stdio>) -> &mut Self {
        self.stdout = Some(stdio.into());
        self
    }

    /// Standard error (inherited by default).
    pub fn stderr(&mut self, stdio: impl Into<Stdio>) -> &mut Self {
        self.stderr = Some(stdio.into());
        self
    }

    /// A host `cgroup.procs` file the workload writes itself into after
    /// joining the namespaces (opened by the caller's process, with its
    /// permissions). Repeat for each v1 hierarchy.
    pub fn join_cgroup(&mut self, cgroup_procs: impl AsRef<Path>) -> &mut Self {
        self.cgroup_procs.push(cgroup_procs.as_ref().to_owned());
        self
    }

    /// A callback run in the workload right before `execve`, after the
    /// namespaces, the cgroups, the working directory and the uid/gid are
    /// set; the tenant namespace's capabilities are still effective (so it
    /// can drop the bounding set), and `execve` clears them for a non-zero
    /// uid. Confinement goes here:
    /// `command.pre_exec(move || confinement.apply().map_err(Into::into))`
    /// with an `Arc<`[`Confinement`](crate::confine::Confinement)`>`
    /// prepared before; prepare its Landlock paths through
    /// [`Sandbox::host_path`] so they name the sandbox's files (its `/tmp`
    /// is not the host's).
    ///
    /// It runs in a child forked from the caller, which may have had other
    /// threads: like [`std::os::unix::process::CommandExt::pre_exec`]'s, it
    /// should only make system calls on data prepared beforehand (allocating
    /// is survivable with glibc, whose `fork` resets the allocator's locks;
    /// other locks may be held by threads that do not exist in the child).
    /// An error fails the spawn with step `pre_exec hook` and its errno.
    pub fn pre_exec(
        &mut self,
        hook: impl FnMut() -> io::Result<()> + Send + Sync + 'static,
    ) -> &mut Self {
        self.pre_exec = Some(Box::new(hook));
        self
    }
}

/// A process started in a sandbox. Its pid is the host pid of the
/// intermediate that waits for the workload and ends the way it ends.
#[derive(Debug)]
pub struct Process {
    child: std::process::Child,
}

impl Process {
    /// Host pid of the intermediate process (outside the pid namespace).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The workload's stdin, if piped.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// The workload's stdout, if piped.
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The workload's stderr, if piped.
    pub fn stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Host pid of the workload itself (inside the tenant's pid namespace),
    /// while it runs.
    pub fn workload_id(&self) -> Option<u32> {
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Kills the workload with `SIGKILL` (the intermediate then ends the
    /// same way and reaps it). Killing the intermediate first would orphan
    /// the workload to a reaper outside the tenant.
    pub fn kill(&mut self) -> io::Result<()> {
        if let Some(pid) = self.workload_id()
            && let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            && let Ok(pidfd) =
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            && self.workload_id() == Some(pid.as_raw_nonzero().get().unsigned_abs())
        {
            // The pidfd pins the process and it is still our workload.
            return rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL)
                .map_err(io::Error::from);
        }
        self.child.kill()
    }

    /// Waits for the workload; its exit code, or 128 + the signal that
    /// killed it.
    pub fn wait(&mut self) -> io::Result<i32> {
        self.child.wait().map(exit_code)
    }

    /// The exit code (or 128 + signal) if the workload has ended, without blocking:
    /// for supervisors that must stay able to kill it meanwhile.
    pub fn try_wait(&mut self) -> io::Result<Option<i32>> {
        self.child.try_wait().map(|status| status.map(exit_code))
    }

    /// Waits, collecting piped stdout and stderr.
    pub fn wait_with_output(self) -> io::Result<(i32, Vec<u8>, Vec<u8>)> {
        let output = self.child.wait_with_output()?;
        Ok((exit_code(output.status), output.stdout, output.stderr))
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 255,
    }
}

/// Runs `command` in the running sandbox of `tenant` and waits for it, like
/// `nsenter` into the tenant's namespaces.
pub fn exec(instance: &Instance, tenant: &str, command: Command) -> Result<i32, SandboxError> {
    Sandbox::open(instance, tenant)?.run(command)
}

fn cstring(step: &'static str, path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| SandboxError::io(step, path, e.into()))
}

impl Sandbox {
    /// A path inside the sandbox as the host reaches it:
    /// `/proc/<holder>/root/<inside>`. Valid while the holder runs; for
    /// preparing things that must name the sandbox's files from outside
    /// (Landlock rules, probes).
    pub fn host_path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let relative = inside
            .as_ref()
            .strip_prefix("/")
            .unwrap_or(inside.as_ref())
            .to_owned();
        PathBuf::from(format!("/proc/{}/root", self.record.pid)).join(relative)
    }

    /// Starts `command` inside the sandbox and waits for it: its exit code,
    /// or 128 + the signal that killed it.
    pub fn run(&self, command: Command) -> Result<i32, SandboxError> {
        let mut process = self.spawn(command)?;
        process.wait().map_err(|e| {
            SandboxError::io("wait for workload", format!("/proc/{}", process.id()), e)
        })
    }

    /// Starts `command` inside the sandbox.
    pub fn spawn(&self, command: Command) -> Result<Process, SandboxError> {
        let Command {
            program,
            args,
            env,
            cwd,
            uid,
            gid,
            stdin,
            stdout,
            stderr,
            cgroup_procs,
            pre_exec,
        } = command;
        let program_text = program.to_string_lossy().into_owned();
        for id in [uid, gid] {
            if id >= ID_RANGE {
                return Err(SandboxError::InvalidId {
                    id,
                    range: ID_RANGE,
                });
            }
        }
        let cwd = cstring("working directory", &cwd)?;

        // Open the holder's namespaces, checking before and after that the
        // pid still belongs to the holder (a pid cannot come back with the
        // same start time), so the files are the tenant's.
        let namespaces = self.open_namespaces()?;

        let mut procs = Vec::with_capacity(cgroup_procs.len());
        for path in &cgroup_procs {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| SandboxError::io("open cgroup.procs", path, e))?;
            procs.push(OwnedFd::from(file));
        }
        let (mut report_read, report_write) =
            io::pipe().map_err(|e| SandboxError::io("create report pipe", "pipe", e))?;

        let mut std_command = std::process::Command::new(&program);
        std_command
            .args(&args)
            .env_clear()
            .env("PATH", DEFAULT_PATH);
        for (key, value) in &env {
            std_command.env(key, value);
        }
        std_command
            .stdin(stdin.unwrap_or_else(Stdio::inherit))
            .stdout(stdout.unwrap_or_else(Stdio::inherit))
            .stderr(stderr.unwrap_or_else(Stdio::inherit));
        sys::install_join(
            &mut std_command,
            JoinPlan {
                namespaces,
                cgroup_procs: procs,
                cwd,
                uid,
                gid,
                pre_exec,
                report: OwnedFd::from(report_write),
            },
        );
        let spawned = std_command.spawn();
        // Drop our copy of the report pipe's write end (held by the hook).
        drop(std_command);
        match spawned {
            Ok(child) => Ok(Process { child }),
            Err(source) => {
                let mut step = String::new();
                let _ = (&mut report_read).take(256).read_to_string(&mut step);
                if step.is_empty() {
                    step = "exec".to_owned();
                }
                Err(SandboxError::Join {
                    tenant: self.tenant.clone(),
                    program: program_text,
                    step,
                    source,
                })
            }
        }
    }

    fn open_namespaces(
        &self,
    ) -> Result<Vec<(OwnedFd, LinkNameSpaceType, &'static str)>, SandboxError> {
        let not_running = || SandboxError::NotRunning {
            tenant: self.tenant.clone(),
        };
        let check = || match ProcStat::read(self.record.pid) {
            Some(stat) if stat.start_time == self.record.start_time && stat.state != 'Z' => Ok(()),
            _ => Err(not_running()),
        };
        check()?;
        let mut namespaces = Vec::with_capacity(JOIN_ORDER.len());
        for (name, kind, step) in JOIN_ORDER {
            let path = PathBuf::from(format!("/proc/{}/ns/{name}", self.record.pid));
            let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => not_running(),
                _ => SandboxError::io("open namespace", &path, e),
            })?;
            namespaces.push((OwnedFd::from(file), kind, step));
        }
        check()?;
        Ok(namespaces)
    }
}
