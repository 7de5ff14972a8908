//! Starting, observing and stopping the instance's resolver process.
//!
//! [`start`] writes the zone ([`Instance::resolver_zone`]), stops a running
//! resolver, re-executes the given binary as `bulkhead-resolver` with
//! [`RESOLVER_ENV`](super::server::RESOLVER_ENV), waits for its `ready`
//! line and writes the record ([`Instance::resolver_record`]: pid, start
//! time, zone digest). [`observe`] says whether that process still runs and
//! which zone it serves, so `plan` restarts it only when the zone changed.
//! The process lives in its own process group, so it outlives the command
//! that started it; [`stop`] signals it through a pidfd (a recycled pid is
//! never hit).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};

use super::server::{RESOLVER_ENV, read_ready};
use super::zone::Zone;
use crate::naming::Instance;
use crate::sandbox::record::ProcStat;

/// How long the resolver may take to say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`stop`] waits after `SIGTERM` before `SIGKILL`.
const TERM_TIMEOUT: Duration = Duration::from_secs(2);

/// Why starting or stopping the resolver failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    /// A file or process step failed.
    #[error("{step} {}: {source}", path.display())]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file (or `/proc/<pid>`).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The resolver reported a failure or did not get ready.
    #[error("the resolver did not start: {message} (its log: {})", log.display())]
    NotReady {
        /// What it said.
        message: String,
        /// Its stderr.
        log: PathBuf,
    },
    /// It did not exit after `SIGKILL`.
    #[error("resolver {pid} did not exit")]
    StillRunning {
        /// Its pid.
        pid: u32,
    },
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ResolverError {
    let path = path.to_path_buf();
    move |source| ResolverError::Io { step, path, source }
}

/// The running resolver, as its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    pid: u32,
    start_time: u64,
    digest: String,
}

impl Record {
    fn render(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_time, self.digest)
    }

    fn parse(text: &str) -> Option<Record> {
        let mut fields = text.split_whitespace();
        Some(Record {
            pid: fields.next()?.parse().ok()?,
            start_time: fields.next()?.parse().ok()?,
            digest: fields.next()?.to_owned(),
        })
    }

    fn load(instance: &Instance) -> Option<Record> {
        Record::parse(&std::fs::read_to_string(instance.resolver_record()).ok()?)
    }

    fn is_alive(&self) -> bool {
        matches!(ProcStat::read(self.pid), Some(stat)
            if stat.start_time == self.start_time && stat.state != 'Z' && stat.state != 'X')
    }
}

/// What runs of the resolver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverState {
    /// Its pid, when it runs.
    pub pid: Option<u32>,
    /// The digest of the zone it serves ([`Zone::digest`]), when it runs.
    pub digest: Option<String>,
}

impl ResolverState {
    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.pid.is_some()
    }

    /// Whether it runs and serves `zone`.
    pub fn serves(&self, zone: &Zone) -> bool {
        self.digest.as_deref() == Some(zone.digest().as_str())
    }
}

/// Whether the recorded resolver runs, and which zone it serves.
pub fn observe(instance: &Instance) -> ResolverState {
    match Record::load(instance) {
        Some(record) if record.is_alive() => ResolverState {
            pid: Some(record.pid),
            digest: Some(record.digest),
        },
        _ => ResolverState::default(),
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), ResolverError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(dir)
        .map_err(io("create", dir))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("write", &tmp))?;
    file.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename into", path))
}

/// (Re)starts the resolver on `zone`, running `exe` (a binary whose `main`
/// calls [`resolver_main`](super::resolver_main) when asked); returns its
/// pid. A resolver already serving this zone is left alone.
pub fn start(instance: &Instance, zone: &Zone, exe: &Path) -> Result<u32, ResolverError> {
    let digest = zone.digest();
    if let Some(record) = Record::load(instance)
        && record.is_alive()
        && record.digest == digest
    {
        return Ok(record.pid);
    }
    stop(instance)?;
    let zone_path = instance.resolver_zone();
    write_private(&zone_path, &zone.render())?;
    let log_path = instance.resolver_log();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io("open", &log_path))?;
    let mut child = std::process::Command::new(exe)
        .arg0("bulkhead-resolver")
        .env_clear()
        .env(RESOLVER_ENV, &zone_path)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // Its own group: a Ctrl-C at the terminal that ran apply does not reach it.
        .process_group(0)
        .spawn()
        .map_err(io("start", exe))?;
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = match stdout {
            Some(out) => read_ready(out),
            None => Err("no stdout pipe".to_owned()),
        };
        let _ = tx.send(result);
    });
    let ready = rx
        .recv_timeout(READY_TIMEOUT)
        .unwrap_or_else(|_| Err(format!("no answer within {READY_TIMEOUT:?}")));
    if let Err(message) = ready {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ResolverError::NotReady {
            message,
            log: log_path,
        });
    }
    let pid = child.id();
    let start_time =
        ProcStat::read(pid)
            .map(|s| s.start_time)
            .ok_or_else(|| ResolverError::NotReady {
                message: format!("resolver {pid} vanished after it was ready"),
                log: log_path.clone(),
            })?;
    // The process is left running on purpose; `stop` reaps it if it is
    // still our child then.
    drop(child);
    write_private(
        &instance.resolver_record(),
        &Record {
            pid,
            start_time,
            digest,
        }
        .render(),
    )?;
    Ok(pid)
}

/// Stops the recorded resolver (`SIGTERM`, then `SIGKILL`) and removes its
/// record and zone; `false` when none ran.
pub fn stop(instance: &Instance) -> Result<bool, ResolverError> {
    let record = Record::load(instance);
    let stopped = match record {
        Some(record) if record.is_alive() => terminate(&record)?,
        _ => false,
    };
    for path in [instance.resolver_record(), instance.resolver_zone()] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &path)(e)),
        }
    }
    Ok(stopped)
}

fn terminate(record: &Record) -> Result<bool, ResolverError> {
    let proc_path = PathBuf::from(format!("/proc/{}", record.pid));
    let Some(pid) = i32::try_from(record.pid).ok().and_then(Pid::from_raw) else {
        return Ok(false);
    };
    let pidfd = match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(false),
        Err(e) => return Err(io("open pidfd of", &proc_path)(e.into())),
    };
    // The pidfd pins the process: make sure it is still the resolver.
    if !record.is_alive() {
        return Ok(false);
    }
    for (signal, wait) in [(Signal::TERM, TERM_TIMEOUT), (Signal::KILL, TERM_TIMEOUT)] {
        match rustix::process::pidfd_send_signal(&pidfd, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => return Err(io("signal", &proc_path)(e.into())),
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = rustix::event::Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => break,
                Ok(_) => {
                    // Reap it if it is our child (started by this process).
                    let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
                    return Ok(true);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io("wait for", &proc_path)(e.into())),
            }
        }
    }
    Err(ResolverError::StillRunning { pid: record.pid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = Record {
            pid: 42,
            start_time: 123_456,
            digest: "00ff".to_owned(),
        };
        assert_eq!(Record::parse(&record.render()), Some(record));
        assert_eq!(Record::parse("42 x y"), None);
    }
}
