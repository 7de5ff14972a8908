//! Process plumbing for the sandbox launcher that `std` and `rustix` leave
//! unsafe or do not offer: `fork`, `unshare`, the holder's signal mask, closing
//! inherited descriptors, mirroring a child's end, and installing the join
//! sequence as a `pre_exec` hook.
//!
//! Everything that runs between `fork` and `execve` here is limited to raw
//! system calls on memory prepared before the fork (no allocation, no locks),
//! because the forking process may have other threads.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

/// Proof that the calling process has exactly one thread, which `unshare`
/// of a user namespace and a sound `fork` require.
#[derive(Debug)]
pub(crate) struct SingleThreaded(());

impl SingleThreaded {
    /// Counts the entries of `/proc/self/task`; `None` when there is more
    /// than one thread.
    pub(crate) fn check() -> io::Result<Option<Self>> {
        let threads = std::fs::read_dir("/proc/self/task")?.count();
        Ok((threads == 1).then_some(SingleThreaded(())))
    }
}

/// `unshare(2)` of namespaces only (never `CLONE_FILES`, `CLONE_FS` or
/// `CLONE_SYSVSEM`, which the caller's other code could observe).
pub(crate) fn unshare_namespaces(_proof: &SingleThreaded, flags: UnshareFlags) -> io::Result<()> {
    let namespaces = UnshareFlags::NEWUSER
        | UnshareFlags::NEWNS
        | UnshareFlags::NEWPID
        | UnshareFlags::NEWIPC
        | UnshareFlags::NEWUTS
        | UnshareFlags::NEWNET
        | UnshareFlags::NEWCGROUP;
    if !namespaces.contains(flags) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: rustix marks `unshare` unsafe because `CLONE_FILES` can leave
    // other threads holding descriptors from a table they no longer share.
    // Only namespace flags pass the check above, and the process has a single
    // thread (the `SingleThreaded` proof), so nothing can observe a split.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// Which side of a `fork` the caller is on.
#[derive(Debug)]
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The original process, with the child's pid (in the caller's pid
    /// namespace).
    Parent(Pid),
}

/// `fork(2)` of a single-threaded process.
pub(crate) fn fork(_proof: &SingleThreaded) -> io::Result<Forked> {
    // SAFETY: the process has one thread (the `SingleThreaded` proof), so no
    // lock or allocator state can be held by a thread that does not exist in
    // the child; both sides continue with a consistent copy of the memory.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Pid::from_raw(pid)
            .map(Forked::Parent)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH)),
    }
}

/// Ends the process at once with `code`, without running destructors or
/// flushing `std`'s buffers (the state may be a copy made by `fork`).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe, takes no pointers and never
    // returns.
    unsafe { libc::_exit(code) }
}

/// Ends the process the way `status` says a child ended: the same exit code,
/// or the same signal (with core dumps off), so the parent of this process
/// sees what it would have seen from the child. Falls back to exit code
/// 128 + signal if the signal does not end the process.
fn mirror_exit(status: WaitStatus) -> ! {
    if let Some(code) = status.exit_status() {
        exit_now(code);
    }
    let signal = status.terminating_signal().unwrap_or(libc::SIGKILL);
    // Lower only the soft limit: the hard one may not be raised again.
    let mut no_core = rustix::process::getrlimit(rustix::process::Resource::Core);
    no_core.current = Some(0);
    let _ = rustix::process::setrlimit(rustix::process::Resource::Core, no_core);
    // SAFETY: resetting a signal to its default action and unblocking it
    // touch only this process's signal state; the sigset is a local,
    // initialized by `sigemptyset` before use.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
    exit_now(128 + signal)
}

/// The workload the intermediate forwards signals to (0: none yet).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

/// Signals the intermediate passes on to the workload instead of dying of
/// them first (which would orphan the workload outside its pid namespace).
const FORWARDED: [i32; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

extern "C" fn forward(signal: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: `kill` is async-signal-safe and takes no pointers.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Makes the intermediate forward [`FORWARDED`] signals to `pid`.
fn forward_signals_to(pid: i32) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    for signal in FORWARDED {
        // SAFETY: the struct is zeroed and then fully set (handler, empty
        // mask, SA_RESTART); the handler only loads an atomic and calls
        // `kill`, both async-signal-safe.
        unsafe {
            let mut action = std::mem::zeroed::<libc::sigaction>();
            action.sa_sigaction = forward as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Closes every descriptor from 3 upwards (`close_range(2)`).
fn close_from_3() {
    // SAFETY: `close_range` takes no pointers; closing descriptors this
    // process owns is sound here because the caller (a forked intermediate
    // that only waits and exits) uses none of them afterwards.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}

/// Blocks the signals the holder waits for and installs a no-op handler for
/// each (pid 1 of a namespace drops signals whose action is the default).
pub(crate) fn holder_block_signals(signals: &[i32]) -> io::Result<()> {
    extern "C" fn ignore(_: libc::c_int) {}
    // SAFETY: `sigaction` gets a fully initialized struct (zeroed, then the
    // handler and an empty mask set); the handler does nothing, so it is
    // async-signal-safe. `sigprocmask` gets a set initialized by
    // `sigemptyset`. The process is single-threaded (the holder).
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            let mut action = std::mem::zeroed::<libc::sigaction>();
            action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            libc::sigaddset(&mut set, signal);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits for one of `signals` (which [`holder_block_signals`] blocked) and
/// returns its number.
pub(crate) fn wait_signal(signals: &[i32]) -> io::Result<i32> {
    // SAFETY: the set is a local initialized by `sigemptyset`; a null info
    // pointer is allowed by `sigwaitinfo`.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        loop {
            let got = libc::sigwaitinfo(&set, std::ptr::null_mut());
            if got >= 0 {
                return Ok(got);
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINTR) {
                return Err(error);
            }
        }
    }
}

/// Brings a network interface up (`SIOCGIFFLAGS`, then `SIOCSIFFLAGS` with
/// `IFF_UP`) in the caller's network namespace.
pub(crate) fn set_link_up(name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // Any socket will do for interface ioctls; UDP on the wildcard address
    // binds even when no interface is up.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: `ifreq` is plain old data, valid when zeroed; the name is
    // copied within bounds (checked above, NUL-terminated by the zeroing);
    // both ioctls read and write only that struct, which outlives them, and
    // the union member used is the one these requests define (`ifru_flags`).
    unsafe {
        let mut request = std::mem::zeroed::<libc::ifreq>();
        for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
            *slot = *byte as libc::c_char;
        }
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Callback run in the workload right before `execve`.
pub(crate) type PreExec = Box<dyn FnMut() -> io::Result<()> + Send + Sync>;

/// Everything the child side of a join needs, prepared before `fork`.
pub(crate) struct JoinPlan {
    /// Namespace files of the holder, in the order they are joined (user
    /// first).
    pub(crate) namespaces: Vec<(OwnedFd, LinkNameSpaceType, &'static str)>,
    /// Open `cgroup.procs` files the workload writes itself (`0`) into.
    pub(crate) cgroup_procs: Vec<OwnedFd>,
    /// Working directory inside the sandbox.
    pub(crate) cwd: CString,
    /// uid and gid inside the tenant's user namespace.
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// The caller's hook (confinement).
    pub(crate) pre_exec: Option<PreExec>,
    /// Write end of a pipe the child names a failed step on.
    pub(crate) report: OwnedFd,
}

impl std::fmt::Debug for JoinPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinPlan")
            .field("namespaces", &self.namespaces.len())
            .field("cgroup_procs", &self.cgroup_procs.len())
            .field("cwd", &self.cwd)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("pre_exec", &self.pre_exec.is_some())
            .finish()
    }
}

/// Installs the join sequence on `command`:
///
/// 1. (forked child of the caller) `setns` into each namespace, user first;
/// 2. `fork` again, so the new process is inside the pid namespace; the
///    intermediate forwards catchable signals to it, closes its
///    descriptors, waits, and ends as the workload ended (were it to die
///    first, the workload would be orphaned to a reaper outside the tenant,
///    and the holder could not finish exiting until that reaper reaps it);
/// 3. (workload) write `0` to each `cgroup.procs`, `chdir`, drop
///    supplementary groups, set gid and uid (keeping the namespace's
///    capabilities, effective, until `execve`, for the hook), ask for
///    `SIGKILL` when the intermediate dies, run the caller's hook; `std` then
///    sets the environment and calls `execve`, which clears the capabilities
///    of a non-zero uid.
///
/// A failing step writes its name to `plan.report` and fails the spawn with
/// its errno.
pub(crate) fn install_join(command: &mut Command, mut plan: JoinPlan) {
    let hook = move || -> io::Result<()> {
        let report = |step: &'static str, error: rustix::io::Errno| -> io::Error {
            let _ = rustix::io::write(plan.report.as_fd(), step.as_bytes());
            io::Error::from(error)
        };
        for (fd, kind, step) in &plan.namespaces {
            rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind))
                .map_err(|e| report(step, e))?;
        }
        // SAFETY: this closure runs in the child `std` forked for `spawn`,
        // which has a single thread; it only makes raw system calls on memory
        // prepared before that fork.
        let forked = unsafe { libc::fork() };
        if forked < 0 {
            return Err(report(
                "fork into the pid namespace",
                rustix::io::Errno::from_io_error(&io::Error::last_os_error())
                    .unwrap_or(rustix::io::Errno::AGAIN),
            ));
        }
        if forked > 0 {
            // Intermediate: stay outside the pid namespace, pass signals
            // on, wait, mirror.
            forward_signals_to(forked);
            close_from_3();
            let child = Pid::from_raw(forked);
            loop {
                match rustix::process::waitpid(child, WaitOptions::empty()) {
                    Ok(Some((_, status))) if status.exited() || status.signaled() => {
                        mirror_exit(status)
                    }
                    Ok(_) => continue,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => exit_now(127),
                }
            }
        }
        for fd in &plan.cgroup_procs {
            rustix::io::write(fd.as_fd(), b"0").map_err(|e| report("join cgroup", e))?;
        }
        rustix::process::chdir(plan.cwd.as_c_str())
            .map_err(|e| report("change to the working directory", e))?;
        rustix::thread::set_thread_groups(&[])
            .map_err(|e| report("drop supplementary groups", e))?;
        let gid = rustix::process::Gid::from_raw(plan.gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| report("set gid", e))?;
        rustix::thread::set_keep_capabilities(true).map_err(|e| report("keep capabilities", e))?;
        let uid = rustix::process::Uid::from_raw(plan.uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| report("set uid", e))?;
        // Changing uid emptied the effective set; raise it again from the
        // kept permitted set so the hook can, e.g., drop the bounding set.
        let caps =
            rustix::thread::capabilities(None).map_err(|e| report("read capabilities", e))?;
        rustix::thread::set_capabilities(
            None,
            rustix::thread::CapabilitySets {
                effective: caps.permitted,
                ..caps
            },
        )
        .map_err(|e| report("raise effective capabilities", e))?;
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
            .map_err(|e| report("set the parent-death signal", e))?;
        if let Some(pre_exec) = plan.pre_exec.as_mut() {
            pre_exec().map_err(|e| {
                let errno = rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::PERM);
                report("pre_exec hook", errno)
            })?;
        }
        Ok(())
    };
    // SAFETY: `pre_exec` is unsafe because the closure runs between `fork`
    // and `execve` in a copy of a possibly multi-threaded process. The hook
    // above only makes raw system calls (rustix's raw backend, libc `fork`,
    // `_exit`, `close_range`, `raise`, `sigaction`) on memory allocated before
    // the fork (`plan`), takes no locks and does not allocate. The caller's
    // callback is documented (on `sandbox::Command::pre_exec`) to do the same,
    // as `Confinement::apply` does; one that allocates anyway still works with
    // glibc, whose `fork` leaves the allocator usable in the child, and one
    // that takes another lock can at worst deadlock that child, not corrupt
    // the parent, whose memory the child only has a copy of.
    unsafe {
        command.pre_exec(hook);
    }
}
