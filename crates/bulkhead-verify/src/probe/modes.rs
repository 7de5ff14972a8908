//! The probe's long-running and resource modes.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_node::attempt::{self, SysvKind};

use super::{CanarySpec, PROBE_ENV, Request, ResourceOutcome};

const MIB: u64 = 1024 * 1024;

/// The environment variable holding the secret in the canary process.
pub(crate) const CANARY_ENV: &str = "BULKHEAD_CANARY";

/// Holds the canaries until the verifier closes our stdout, then removes
/// the IPC objects. The token is in the environment and the command line
/// (set by the verifier) and in this heap buffer.
pub(super) fn canary(spec: &CanarySpec) -> i32 {
    let in_memory = std::hint::black_box(spec.token.clone().into_bytes());
    let mut sysv = Vec::new();
    for kind in SysvKind::ALL {
        match attempt::sysv_create(kind, spec.ipc.sysv_key) {
            Ok(id) => sysv.push((kind, id)),
            Err(errno) => eprintln!("canary: {kind:?} key {}: errno {errno}", spec.ipc.sysv_key),
        }
    }
    let mqueue = CString::new(spec.ipc.mqueue.clone()).ok();
    if let Some(name) = &mqueue
        && let Err(errno) = attempt::mq_create(name)
    {
        eprintln!("canary: mqueue {}: errno {errno}", spec.ipc.mqueue);
    }
    let listener = SocketAddr::from_abstract_name(spec.ipc.abstract_socket.as_bytes())
        .and_then(|addr| UnixListener::bind_addr(&addr));
    if let Err(error) = &listener {
        eprintln!("canary: abstract socket: {error}");
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    // With no events requested, poll still reports POLLERR/POLLHUP: the
    // verifier closed its end of the pipe.
    let stdout = std::io::stdout();
    let fd = stdout.as_fd();
    loop {
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::empty(),
        )];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) if !fds[0].revents().is_empty() => break,
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    for (kind, id) in sysv {
        let _ = attempt::sysv_remove(kind, id);
    }
    if let Some(name) = &mqueue {
        let _ = attempt::mq_unlink(name);
    }
    drop(listener);
    drop(std::hint::black_box(in_memory));
    0
}

/// Blocks until stdin ends (the fork bomb's children).
pub(super) fn sleeper() -> i32 {
    let mut sink = [0u8; 1];
    let _ = std::io::stdin().read(&mut sink);
    0
}

/// Tries to create a user namespace.
pub(super) fn userns() -> i32 {
    match attempt::unshare_user_namespace() {
        Ok(()) => 0,
        Err(errno) => errno.clamp(1, 255),
    }
}

/// Allocates and touches memory in 4 MiB steps up to `cap`. Being
/// OOM-killed is the expected end; reaching `cap` means no limit applied.
pub(super) fn memory_hog(cap: u64) -> ResourceOutcome {
    let step = 4 * MIB;
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    while total < cap {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(step as usize).is_err() {
            return ResourceOutcome {
                amount: total,
                reached_cap: false,
                errno: Some(libc::ENOMEM),
            };
        }
        // Touch every page so it is really charged.
        chunk.resize(step as usize, 0xa5);
        held.push(std::hint::black_box(chunk));
        total += step;
    }
    ResourceOutcome {
        amount: total,
        reached_cap: true,
        errno: None,
    }
}

fn self_command(request: &Request) -> Command {
    let mut command = Command::new("/proc/self/exe");
    command.env_clear().env(
        PROBE_ENV,
        serde_json::to_string(request).unwrap_or_default(),
    );
    command
}

/// Starts sleeping children until the kernel refuses (`EAGAIN` from the
/// pids controller) or `cap` run; they end when we do (their stdin closes).
pub(super) fn fork_bomb(cap: u64) -> ResourceOutcome {
    let mut children: Vec<Child> = Vec::new();
    let mut errno = None;
    while (children.len() as u64) < cap {
        match self_command(&Request::Sleeper)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => children.push(child),
            Err(error) => {
                errno = error.raw_os_error().or(Some(libc::EIO));
                break;
            }
        }
    }
    let outcome = ResourceOutcome {
        amount: children.len() as u64,
        reached_cap: children.len() as u64 >= cap,
        errno,
    };
    for child in &mut children {
        drop(child.stdin.take());
    }
    for mut child in children {
        let _ = child.wait();
    }
    outcome
}

/// Writes `path` in 1 MiB steps until `ENOSPC` (the volume is full) or
/// `cap` bytes; removes it again.
pub(super) fn disk_fill(path: &str, cap: u64) -> ResourceOutcome {
    let chunk = vec![0x5au8; MIB as usize];
    let mut written = 0u64;
    let mut errno = None;
    match std::fs::File::create(path) {
        Ok(mut file) => {
            while written < cap {
                match file.write(&chunk) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(error) => {
                        errno = error.raw_os_error();
                        break;
                    }
                }
            }
            if errno.is_none()
                && let Err(error) = file.sync_all()
            {
                errno = error.raw_os_error();
            }
        }
        Err(error) => errno = error.raw_os_error(),
    }
    let _ = std::fs::remove_file(path);
    ResourceOutcome {
        amount: written,
        reached_cap: written >= cap,
        errno,
    }
}

/// Busy threads for `millis`.
pub(super) fn cpu_hog(threads: usize, millis: u64) -> i32 {
    let until = Instant::now() + Duration::from_millis(millis);
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let mut x = 1u64;
                while Instant::now() < until {
                    for _ in 0..10_000 {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                }
                x
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    0
}

/// The fixed work unit of the CPU probe (also timed by the verifier to
/// calibrate).
pub fn work(rounds: u64) -> u64 {
    let mut x = 1u64;
    for _ in 0..rounds {
        for _ in 0..1_000 {
            x = std::hint::black_box(
                x.wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407),
            );
        }
    }
    x
}

/// Runs [`work`] and reports the nanoseconds it took.
pub(super) fn cpu_work(rounds: u64) -> ResourceOutcome {
    let start = Instant::now();
    std::hint::black_box(work(rounds));
    ResourceOutcome {
        amount: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
        reached_cap: false,
        errno: None,
    }
}
