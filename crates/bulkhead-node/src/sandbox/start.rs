//! Starting a tenant's holder (the launcher side of the protocol in
//! `holder.rs`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};

use super::holder::{
    HOLDER_ENV, NAMESERVER_ENV, PROTOCOL, ROOT_ENV, TENANT_ENV, TMP_SIZE_ENV, VOLUME_ENV,
};
use super::lifecycle::{self, HolderState};
use super::record::{HolderRecord, ProcStat};
use super::{SandboxError, netns};
use crate::naming::Instance;

/// Number of uids (and gids) each tenant owns: host ids
/// `id_base..id_base + ID_RANGE` are `0..ID_RANGE` inside.
pub const ID_RANGE: u32 = 65536;

/// Default size of a sandbox's `/tmp`.
const DEFAULT_TMP_SIZE: u64 = 64 * 1024 * 1024;

/// What a tenant's sandbox is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The tenant (a DNS-1123 label): names host objects and is the hostname.
    pub tenant: String,
    /// First host uid/gid of the tenant's range (0 inside).
    pub id_base: u32,
    /// Size limit of `/tmp` in bytes.
    pub tmp_size: u64,
    /// Host directory bound at [`VOLUME_PATH`](super::VOLUME_PATH), if any.
    pub volume: Option<PathBuf>,
    /// `cgroup.procs` files the holder joins before it creates the other
    /// namespaces (its cgroup namespace is rooted there).
    pub holder_cgroups: Vec<PathBuf>,
    /// The binary re-executed as holder; its `main` must call
    /// [`holder_main`](super::holder_main). Default `/proc/self/exe`.
    pub holder_exe: PathBuf,
    /// The resolver `/etc/resolv.conf` names (the instance's, on the tenant's
    /// network); `None`: the host's `resolv.conf` is copied.
    pub nameserver: Option<std::net::IpAddr>,
}

impl SandboxConfig {
    /// A sandbox with a 64 MiB `/tmp`, no volume, no cgroups, holder =
    /// the current binary.
    pub fn new(tenant: &str, id_base: u32) -> Self {
        SandboxConfig {
            tenant: tenant.to_owned(),
            id_base,
            tmp_size: DEFAULT_TMP_SIZE,
            volume: None,
            holder_cgroups: Vec::new(),
            holder_exe: PathBuf::from("/proc/self/exe"),
            nameserver: None,
        }
    }

    fn validate(&self) -> Result<(), SandboxError> {
        validate_tenant(&self.tenant)?;
        let max = u32::MAX - ID_RANGE + 1;
        if self.id_base == 0 || self.id_base > max {
            return Err(SandboxError::InvalidIdBase {
                base: self.id_base,
                max,
            });
        }
        Ok(())
    }
}

/// A DNS-1123 label: it becomes part of paths, a netns name and the hostname.
pub(crate) fn validate_tenant(name: &str) -> Result<(), SandboxError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SandboxError::InvalidTenant {
            name: name.to_owned(),
        })
    }
}

/// A running tenant sandbox: the holder whose namespaces workloads join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub(crate) tenant: String,
    pub(crate) record: HolderRecord,
}

impl Sandbox {
    /// The sandbox of a tenant whose holder runs.
    pub fn open(instance: &Instance, tenant: &str) -> Result<Sandbox, SandboxError> {
        validate_tenant(tenant)?;
        match HolderRecord::load(&instance.holder_record(tenant))? {
            Some(record) if record.is_alive() => Ok(Sandbox {
                tenant: tenant.to_owned(),
                record,
            }),
            _ => Err(SandboxError::NotRunning {
                tenant: tenant.to_owned(),
            }),
        }
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Host pid of the holder (pid 1 inside).
    pub fn holder_pid(&self) -> u32 {
        self.record.pid
    }

    /// First host uid/gid of the tenant's range.
    pub fn id_base(&self) -> u32 {
        self.record.id_base
    }

    /// Whether the holder still runs.
    pub fn is_alive(&self) -> bool {
        self.record.is_alive()
    }
}

/// Starts the tenant's holder, or returns the running one (a running
/// sandbox is not changed; stop it first to apply a new config). Leftovers
/// of a crashed holder are cleaned first.
pub fn start(instance: &Instance, config: &SandboxConfig) -> Result<Sandbox, SandboxError> {
    config.validate()?;
    let tenant = config.tenant.as_str();
    let observed = lifecycle::observe(instance, tenant)?;
    if observed.is_running() {
        return Sandbox::open(instance, tenant);
    }
    if let HolderState::Running { .. } = observed.holder {
        // The holder runs but its /run/netns entry is missing or wrong.
        let sandbox = Sandbox::open(instance, tenant)?;
        netns::register(&instance.netns_path(tenant), sandbox.holder_pid())?;
        return Ok(sandbox);
    }
    if observed.has_leftovers() {
        lifecycle::stop(instance, tenant)?;
    }

    let record_path = instance.holder_record(tenant);
    let root = instance.sandbox_root(tenant);
    for dir in [
        record_path.parent().unwrap_or(Path::new("/")),
        root.as_path(),
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| SandboxError::io("create sandbox directory", dir, e))?;
    }

    let mut command = std::process::Command::new(&config.holder_exe);
    command
        // What `ps` shows: which tenant this holder is for.
        .arg0("bulkhead-holder")
        .arg(tenant)
        .env_clear()
        .env(HOLDER_ENV, PROTOCOL)
        .env(TENANT_ENV, tenant)
        .env(ROOT_ENV, &root)
        .env(TMP_SIZE_ENV, config.tmp_size.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(volume) = &config.volume {
        command.env(VOLUME_ENV, volume);
    }
    if let Some(nameserver) = config.nameserver {
        command.env(NAMESERVER_ENV, nameserver.to_string());
    }
    let mut child = command
        .spawn()
        .map_err(|e| SandboxError::io("start holder", &config.holder_exe, e))?;

    let result = handshake(instance, config, &mut child);
    // The first stage exits once it has forked the holder; reap it either way.
    if result.is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
    match result {
        Ok(sandbox) => Ok(sandbox),
        Err(first) => match lifecycle::stop(instance, tenant) {
            Ok(_) => Err(first),
            Err(cleanup) => Err(SandboxError::Cleanup {
                first: Box::new(first),
                cleanup: Box::new(cleanup),
            }),
        },
    }
}

/// Drives the protocol with the first stage and the holder.
fn handshake(
    instance: &Instance,
    config: &SandboxConfig,
    child: &mut Child,
) -> Result<Sandbox, SandboxError> {
    let tenant = config.tenant.as_str();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| protocol(tenant, "no stdout pipe"))?;
    let mut lines = BufReader::new(stdout);
    expect(tenant, &mut lines, "userns")?;

    let first_pid = child.id();
    for (file, what) in [("uid_map", "write uid map"), ("gid_map", "write gid map")] {
        let path = PathBuf::from(format!("/proc/{first_pid}/{file}"));
        let map = format!("0 {} {ID_RANGE}\n", config.id_base);
        std::fs::write(&path, map).map_err(|e| SandboxError::io(what, &path, e))?;
    }
    for procs in &config.holder_cgroups {
        std::fs::write(procs, first_pid.to_string())
            .map_err(|e| SandboxError::io("move holder into cgroup", procs, e))?;
    }
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| protocol(tenant, "no stdin pipe"))?;
    stdin
        .write_all(b"go\n")
        .map_err(|e| SandboxError::io("release holder", format!("/proc/{first_pid}/fd/0"), e))?;
    drop(stdin);

    // The first stage reports the holder's pid after forking it while the holder
    // builds the root and reports `ready`: two processes on one pipe, so on a loaded
    // machine `ready` can come first. Either order is the same handshake.
    let first = expect_either(tenant, &mut lines, "holder", "ready")?;
    let ready_first = first.starts_with("ready");
    let line = if ready_first {
        expect(tenant, &mut lines, "holder")?
    } else {
        first
    };
    let pid: u32 = line
        .strip_prefix("holder ")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| protocol(tenant, &format!("expected `holder <pid>`, got {line:?}")))?;
    let stat = ProcStat::read(pid)
        .ok_or_else(|| protocol(tenant, &format!("holder {pid} vanished right after fork")))?;
    let record = HolderRecord {
        pid,
        start_time: stat.start_time,
        id_base: config.id_base,
    };
    record.store(&instance.holder_record(tenant))?;

    if !ready_first {
        expect(tenant, &mut lines, "ready")?;
    }
    netns::register(&instance.netns_path(tenant), pid)?;
    Ok(Sandbox {
        tenant: tenant.to_owned(),
        record,
    })
}

fn protocol(tenant: &str, message: &str) -> SandboxError {
    SandboxError::Holder {
        tenant: tenant.to_owned(),
        step: "protocol".to_owned(),
        message: message.to_owned(),
    }
}

/// Reads the next line; it must start with `want`, or be an `error` report.
fn expect(
    tenant: &str,
    lines: &mut BufReader<ChildStdout>,
    want: &str,
) -> Result<String, SandboxError> {
    expect_either(tenant, lines, want, want)
}

/// Reads the next line; it must start with `one` or `other`, or be an `error` report.
fn expect_either(
    tenant: &str,
    lines: &mut BufReader<ChildStdout>,
    one: &str,
    other: &str,
) -> Result<String, SandboxError> {
    let want = if one == other {
        one.to_owned()
    } else {
        format!("{one}` or `{other}")
    };
    let mut line = String::new();
    let read = lines
        .read_line(&mut line)
        .map_err(|e| protocol(tenant, &format!("reading the holder's report: {e}")))?;
    let line = line.trim_end().to_owned();
    if read == 0 {
        return Err(protocol(
            tenant,
            &format!("the holder exited before reporting `{want}` (see its stderr)"),
        ));
    }
    if let Some(report) = line.strip_prefix("error ") {
        let (step, message) = report.split_once('\t').unwrap_or((report, ""));
        return Err(SandboxError::Holder {
            tenant: tenant.to_owned(),
            step: step.to_owned(),
            message: message.to_owned(),
        });
    }
    if line.starts_with(one) || line.starts_with(other) {
        Ok(line)
    } else {
        Err(protocol(
            tenant,
            &format!("expected `{want}`, got {line:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_labels() {
        for ok in ["a", "acme", "team-7", &"x".repeat(63)] {
            assert!(validate_tenant(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Acme", "a/b", "a.b", "..", &"x".repeat(64)] {
            assert!(validate_tenant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn id_base_leaves_room_and_spares_root() {
        assert!(SandboxConfig::new("a", 100_000).validate().is_ok());
        assert!(SandboxConfig::new("a", 0).validate().is_err());
        assert!(SandboxConfig::new("a", u32::MAX - 10).validate().is_err());
        assert!(
            SandboxConfig::new("a", u32::MAX - ID_RANGE + 1)
                .validate()
                .is_ok()
        );
    }
}
