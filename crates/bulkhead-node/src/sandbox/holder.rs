//! The holder side: what runs when the launcher re-executes the current
//! binary with [`HOLDER_ENV`] set.
//!
//! Protocol on the holder's stdout (one line each), answered on its stdin:
//!
//! ```text
//! holder → launcher   userns                 user namespace created
//! launcher → holder   go                     uid/gid map written, cgroups joined
//! holder → launcher   holder <pid>           the holder's host pid (from the first process)
//! holder → launcher   ready                  root built, pivoted, lo up
//! holder → launcher   error <step>\t<text>   a step failed; the process exits 1
//! ```

use std::io::{BufRead, Write};
use std::path::PathBuf;

use rustix::thread::UnshareFlags;

use super::rootfs::{self, RootSpec, StepError};
use crate::sys::process::{self as sys, Forked, SingleThreaded};

/// Environment variable that marks a holder invocation (its value is the
/// protocol version, `1`).
pub const HOLDER_ENV: &str = "BULKHEAD_SANDBOX_HOLDER";
pub(crate) const TENANT_ENV: &str = "BULKHEAD_SANDBOX_TENANT";
pub(crate) const ROOT_ENV: &str = "BULKHEAD_SANDBOX_ROOT";
pub(crate) const TMP_SIZE_ENV: &str = "BULKHEAD_SANDBOX_TMP_SIZE";
pub(crate) const VOLUME_ENV: &str = "BULKHEAD_SANDBOX_VOLUME";
pub(crate) const NAMESERVER_ENV: &str = "BULKHEAD_SANDBOX_NAMESERVER";
pub(crate) const PROTOCOL: &str = "1";

/// Signals the holder waits for: children to reap, and the request to exit.
const SIGNALS: [i32; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Whether this process was started as a sandbox holder. A binary that
/// starts sandboxes checks this first thing in `main` and then calls
/// [`holder_main`].
pub fn is_holder_invocation() -> bool {
    std::env::var_os(HOLDER_ENV).is_some()
}

/// Runs the holder and never returns. Call it from `main` before any other
/// thread exists (entering a user namespace needs a single-threaded process),
/// when [`is_holder_invocation`] is true.
pub fn holder_main() -> ! {
    let failure = match first_stage() {
        Ok(never) => match never {},
        Err(error) => error,
    };
    say(&format!(
        "error {}\t{}",
        failure.step,
        failure.to_string().replace('\n', " ")
    ));
    std::process::exit(1)
}

enum Never {}

fn failed(step: &'static str, source: std::io::Error) -> StepError {
    StepError {
        step,
        path: PathBuf::new(),
        source,
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn spec_from_env() -> Result<RootSpec, StepError> {
    let var = |name: &'static str| {
        std::env::var_os(name).ok_or_else(|| {
            failed(
                "read configuration",
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{name} is not set")),
            )
        })
    };
    if std::env::var_os(HOLDER_ENV).as_deref() != Some(PROTOCOL.as_ref()) {
        return Err(failed(
            "read configuration",
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{HOLDER_ENV} must be {PROTOCOL} (launcher and holder binaries differ)"),
            ),
        ));
    }
    let tenant = var(TENANT_ENV)?.to_string_lossy().into_owned();
    let root = PathBuf::from(var(ROOT_ENV)?);
    let tmp_size = var(TMP_SIZE_ENV)?.to_string_lossy().parse().map_err(|_| {
        failed(
            "read configuration",
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{TMP_SIZE_ENV} is not a number of bytes"),
            ),
        )
    })?;
    let volume = std::env::var_os(VOLUME_ENV).map(PathBuf::from);
    let nameserver = match std::env::var_os(NAMESERVER_ENV) {
        None => None,
        Some(text) => Some(text.to_string_lossy().parse().map_err(|_| {
            failed(
                "read configuration",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{NAMESERVER_ENV} is not an IP address"),
                ),
            )
        })?),
    };
    Ok(RootSpec {
        tenant,
        root,
        tmp_size,
        volume,
        nameserver,
    })
}

/// The process the launcher spawned: enter a user namespace, wait for the
/// map, enter the other namespaces, fork the holder, report its pid, exit.
fn first_stage() -> Result<Never, StepError> {
    let spec = spec_from_env()?;
    let proof = SingleThreaded::check()
        .map_err(|e| failed("count threads", e))?
        .ok_or_else(|| {
            failed(
                "count threads",
                std::io::Error::other(
                    "more than one thread: call holder_main before starting any thread",
                ),
            )
        })?;
    sys::unshare_namespaces(&proof, UnshareFlags::NEWUSER)
        .map_err(|e| failed("create user namespace", e))?;
    say("userns");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| failed("wait for the id map", e))?;
    if line.trim() != "go" {
        return Err(failed(
            "wait for the id map",
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the launcher went away before writing the id map",
            ),
        ));
    }
    // Become root of the new namespace (host id `base`), with no host groups.
    let zero_gid = rustix::process::Gid::ROOT;
    let zero_uid = rustix::process::Uid::ROOT;
    rustix::thread::set_thread_groups(&[]).map_err(|e| failed("drop host groups", e.into()))?;
    rustix::thread::set_thread_res_gid(zero_gid, zero_gid, zero_gid)
        .map_err(|e| failed("become gid 0 inside", e.into()))?;
    rustix::thread::set_thread_res_uid(zero_uid, zero_uid, zero_uid)
        .map_err(|e| failed("become uid 0 inside", e.into()))?;
    sys::unshare_namespaces(
        &proof,
        UnshareFlags::NEWNS
            | UnshareFlags::NEWPID
            | UnshareFlags::NEWIPC
            | UnshareFlags::NEWUTS
            | UnshareFlags::NEWNET
            | UnshareFlags::NEWCGROUP,
    )
    .map_err(|e| failed("create namespaces", e))?;
    match sys::fork(&proof).map_err(|e| failed("fork the holder", e))? {
        Forked::Parent(pid) => {
            say(&format!("holder {}", pid.as_raw_nonzero()));
            std::process::exit(0)
        }
        Forked::Child => holder(&spec, &proof),
    }
}

/// pid 1 of the tenant: build the root, report, reap until told to exit.
fn holder(spec: &RootSpec, _proof: &SingleThreaded) -> Result<Never, StepError> {
    sys::holder_block_signals(&SIGNALS).map_err(|e| failed("block signals", e))?;
    rustix::process::setsid().map_err(|e| failed("start a session", e.into()))?;
    rootfs::build(spec)?;
    rustix::system::sethostname(spec.tenant.as_bytes())
        .map_err(|e| failed("set hostname", e.into()))?;
    sys::set_link_up("lo").map_err(|e| failed("bring lo up", e))?;
    rootfs::pivot(&spec.root)?;
    say("ready");
    // Nobody listens any more: let go of the launcher's pipes.
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| failed("open /dev/null", e))?;
    for dup in [
        rustix::stdio::dup2_stdin,
        rustix::stdio::dup2_stdout,
        rustix::stdio::dup2_stderr,
    ] {
        dup(&null).map_err(|e| failed("redirect stdio", e.into()))?;
    }
    drop(null);
    loop {
        let signal = sys::wait_signal(&SIGNALS).map_err(|e| failed("wait for signals", e))?;
        reap();
        if signal == libc::SIGTERM || signal == libc::SIGINT {
            std::process::exit(0);
        }
    }
}

/// Reaps every child that has ended (orphans of the tenant end up here).
fn reap() {
    while let Ok(Some(_)) = rustix::process::waitpid(None, rustix::process::WaitOptions::NOHANG) {}
}
