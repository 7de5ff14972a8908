//! `verify`: plant canaries, run the probes inside each tenant, judge.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulkhead_node::confine::landlock::{LandlockMode, LandlockPaths, SYSTEM_READ_ONLY};
use bulkhead_node::confine::{ConfineOptions, Confinement};
use bulkhead_node::naming::Instance;
use bulkhead_node::sandbox::{self, Process, Sandbox, TENANT_UID};

use crate::class::{Expected, ProbeClass, Target, Verdict};
use crate::exhaustion::NeighbourScope;
use crate::judge;
use crate::network::NetworkUnderTest;
use crate::network::run as network_run;
use crate::probe::{
    CanarySpec, HostTarget, IpcNames, IsolationRequest, Observation, PROBE_ENV, PeerTarget,
    Request, ResourceOutcome, errno_name,
};
use crate::report::{Report, Row};
use crate::tenant::{Confine, TenantUnderTest};

const MIB: u64 = 1024 * 1024;

/// Receives how far a run got, for a progress bar: per phase, steps done of
/// a total. Phases: the isolation classes together (one step per tenant's
/// probe), `network` (one step per flow, then per tenant's attacks),
/// `resources` (one step per tenant). Called from the verifier's threads.
pub trait Progress: Send + Sync {
    /// `phase` has `total` steps in all (called again if the total grows).
    fn total(&self, phase: &str, total: u64);
    /// `steps` more steps of `phase` are done.
    fn advance(&self, phase: &str, steps: u64);
}

/// A [`Progress`] receiver in [`VerifyOptions`].
#[derive(Clone)]
pub struct ProgressSink(pub Arc<dyn Progress>);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

impl PartialEq for ProgressSink {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl VerifyOptions {
    pub(crate) fn progress_total(&self, phase: &str, total: u64) {
        if let Some(sink) = &self.progress {
            sink.0.total(phase, total);
        }
    }

    pub(crate) fn progress_advance(&self, phase: &str, steps: u64) {
        if let Some(sink) = &self.progress {
            sink.0.advance(phase, steps);
        }
    }
}

/// How to verify.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyOptions {
    /// Probe one class only.
    pub only: Option<ProbeClass>,
    /// Tenants probed at the same time (isolation classes; resource probes
    /// always run one at a time, they would disturb each other).
    pub parallelism: usize,
    /// Aim each tenant's probe at this many other tenants (the next ones in
    /// order, wrapping) instead of all: attempts grow with `n × sample`
    /// instead of `n²`. A canary found from an unsampled tenant is still
    /// reported.
    pub sample: Option<usize>,
    /// The binary re-executed as probe; its `main` must call
    /// [`crate::probe_main`]. Default `/proc/self/exe`.
    pub probe_exe: PathBuf,
    /// Longest a probe process may run before it is killed.
    pub probe_timeout: Duration,
    /// The CPU probe fails when a hog makes the victim's fixed work take
    /// longer than this many times its solo time.
    pub cpu_ratio_bound: f64,
    /// About how long the victim's fixed CPU work takes alone.
    pub cpu_work: Duration,
    /// The tenant network to probe (the network class); `None`: not probed.
    pub network: Option<NetworkUnderTest>,
    /// Where to report progress; `None`: nowhere.
    pub progress: Option<ProgressSink>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            only: None,
            parallelism: 2,
            sample: None,
            probe_exe: PathBuf::from("/proc/self/exe"),
            probe_timeout: Duration::from_secs(60),
            cpu_ratio_bound: 5.0,
            cpu_work: Duration::from_millis(150),
            network: None,
            progress: None,
        }
    }
}

/// Why `verify` could not run at all (a tenant whose probe fails is an
/// outage row instead).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The scratch directory, host canary or sockets could not be made.
    #[error("{path}: cannot {what}: {source}")]
    Setup {
        /// What was being prepared.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Two tenants under test have the same name.
    #[error("tenant {0:?} is listed twice (expected each tenant once)")]
    Duplicate(String),
}

fn setup(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VerifyError {
    let path = path.to_owned();
    move |source| VerifyError::Setup { what, path, source }
}

/// Random hex from the kernel.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let _ = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Host-side objects of one run; removed on drop.
struct HostSide {
    dir: PathBuf,
    planted: Vec<PathBuf>,
    _listener: Option<UnixListener>,
    _abstract: Option<UnixListener>,
}

impl Drop for HostSide {
    fn drop(&mut self) {
        for path in &self.planted {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A tenant with its sandbox and prepared confinement.
pub(crate) struct Prepared<'a> {
    pub(crate) tenant: &'a TenantUnderTest,
    pub(crate) sandbox: Sandbox,
    confinement: Option<Arc<Confinement>>,
    canary: CanarySpec,
}

fn confinement_for(
    tenant: &TenantUnderTest,
    sandbox: &Sandbox,
    probe_exe: &Path,
) -> Result<Option<Arc<Confinement>>, String> {
    let profile = match tenant.confine {
        Confine::AsDeclared | Confine::ExtraWritable(_) => tenant.profile,
        Confine::Profile(profile) => profile,
        Confine::Nothing => return Ok(None),
    };
    let inside = |list: &[&str]| -> Vec<PathBuf> {
        list.iter()
            .map(|p| sandbox.host_path(p))
            .filter(|p| p.exists())
            .collect()
    };
    let mut read_only = inside(SYSTEM_READ_ONLY);
    read_only.extend(inside(&["/etc", "/proc"]));
    let exe = std::fs::canonicalize(probe_exe).unwrap_or_else(|_| probe_exe.to_owned());
    read_only.push(exe);
    let mut writable = inside(&["/tmp", "/data", "/dev/null", "/dev/zero", "/dev/full"]);
    if let Confine::ExtraWritable(path) = &tenant.confine {
        let path = sandbox.host_path(path);
        if !path.exists() {
            return Err(format!(
                "extra writable path {} does not exist",
                path.display()
            ));
        }
        writable.push(path);
    }
    let options = ConfineOptions {
        paths: LandlockPaths {
            read_only,
            writable,
        },
        landlock_mode: LandlockMode::Required,
        ..ConfineOptions::default()
    };
    Confinement::prepare(profile, &options)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| format!("prepare the {} confinement: {e}", profile.as_str()))
}

/// A probe process in the tenant, confined and in its cgroups.
pub(crate) fn spawn(
    prepared: &Prepared<'_>,
    request: &Request,
    probe_exe: &Path,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> Result<Process, String> {
    spawn_as(prepared, request, probe_exe, extra_env, args, true)
}

/// A helper process in the tenant, in its cgroups but as the tenant's root
/// and unconfined: not an attempt, a service the attempts need (the network
/// listener, which must bind ports below 1024 as a workload's server would).
pub(crate) fn spawn_helper(
    prepared: &Prepared<'_>,
    request: &Request,
    probe_exe: &Path,
) -> Result<Process, String> {
    spawn_as(prepared, request, probe_exe, &[], &[], false)
}

fn spawn_as(
    prepared: &Prepared<'_>,
    request: &Request,
    probe_exe: &Path,
    extra_env: &[(&str, &str)],
    args: &[&str],
    confined: bool,
) -> Result<Process, String> {
    let exe = File::open(probe_exe).map_err(|e| format!("open {}: {e}", probe_exe.display()))?;
    let json = serde_json::to_string(request).map_err(|e| e.to_string())?;
    // The probe binary is our stdin, executed through its descriptor.
    let mut command = sandbox::Command::new("/proc/self/fd/0");
    command
        .args(args)
        .env(PROBE_ENV, json)
        .stdin(exe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    for procs in &prepared.tenant.cgroup_procs {
        command.join_cgroup(procs);
    }
    if !confined {
        command.user(0, 0);
    } else if let Some(confinement) = &prepared.confinement {
        let confinement = Arc::clone(confinement);
        command.pre_exec(move || confinement.apply().map_err(Into::into));
    }
    prepared
        .sandbox
        .spawn(command)
        .map_err(|e| format!("start the probe in {}: {e}", prepared.tenant.name))
}

/// Waits for `process`, killing it after `timeout`; (exit code, stdout, stderr).
pub(crate) fn finish(
    process: Process,
    timeout: Duration,
) -> Result<(i32, Vec<u8>, Vec<u8>), String> {
    let pidfd = i32::try_from(process.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(timeout)
            && let Some(pidfd) = pidfd
        {
            let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
            return true;
        }
        false
    });
    let output = process
        .wait_with_output()
        .map_err(|e| format!("wait for the probe: {e}"));
    drop(done);
    let killed = watchdog.join().unwrap_or(false);
    let output = output?;
    if killed {
        return Err(format!(
            "the probe ran longer than {timeout:?} and was killed"
        ));
    }
    Ok(output)
}

/// The canary process of a tenant, holding its pipe open.
struct CanaryProc {
    process: Process,
    stdout: BufReader<ChildStdout>,
    pid: Option<u32>,
}

fn start_canary(prepared: &Prepared<'_>, probe_exe: &Path) -> Result<CanaryProc, String> {
    let token = prepared.canary.token.clone();
    let mut process = spawn(
        prepared,
        &Request::Canary(prepared.canary.clone()),
        probe_exe,
        &[(crate::probe::CANARY_ENV, &token)],
        &["canary", &token],
    )?;
    let stdout = process.stdout().ok_or("canary without stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    let _ = stdout.read_line(&mut line);
    if line.trim() != "ready" {
        let _ = process.kill();
        let (_, _, err) = process.wait_with_output().unwrap_or_default();
        return Err(format!(
            "canary of {} did not start: {}",
            prepared.tenant.name,
            String::from_utf8_lossy(&err).trim()
        ));
    }
    let pid = process.workload_id();
    Ok(CanaryProc {
        process,
        stdout,
        pid,
    })
}

fn stop_canary(canary: CanaryProc) {
    let CanaryProc {
        process, stdout, ..
    } = canary;
    drop(stdout);
    let _ = finish(process, Duration::from_secs(5));
}

/// The source of the host mount holding `path` (its volume's loop device).
fn mount_source(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    bulkhead_node::mountinfo::parse_mountinfo(&text)
        .ok()?
        .into_iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .filter(|m| m.mount_point != Path::new("/"))
        .map(|m| m.source)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Proves, by trying, that `tenants` (whose sandboxes run under `instance`)
/// are isolated from each other and from the host.
pub fn verify(
    instance: &Instance,
    tenants: &[TenantUnderTest],
    options: &VerifyOptions,
) -> Result<Report, VerifyError> {
    let started = Instant::now();
    for (i, t) in tenants.iter().enumerate() {
        if tenants[..i].iter().any(|o| o.name == t.name) {
            return Err(VerifyError::Duplicate(t.name.clone()));
        }
    }
    let classes: Vec<ProbeClass> = ProbeClass::ALL
        .into_iter()
        .filter(|c| options.only.is_none_or(|only| only == *c))
        .collect();
    let mut report = Report {
        tenants: tenants.iter().map(|t| t.name.clone()).collect(),
        classes: classes.clone(),
        ..Report::default()
    };
    let nonce = random_hex(4);
    let token_prefix = format!("bhc-{nonce}-");
    let canary_file = format!(".bulkhead-canary-{nonce}");

    // Host side: scratch directory, host canary, host sockets.
    let dir = instance.state_dir().join(format!("verify-{nonce}"));
    std::fs::create_dir_all(&dir).map_err(setup("create the scratch directory", &dir))?;
    let mut host = HostSide {
        dir: dir.clone(),
        planted: Vec::new(),
        _listener: None,
        _abstract: None,
    };
    let host_canary = dir.join("host-canary");
    std::fs::write(&host_canary, format!("{token_prefix}{}", random_hex(8)))
        .map_err(setup("write the host canary", &host_canary))?;
    let socket = dir.join("host.sock");
    host._listener = Some(UnixListener::bind(&socket).map_err(setup("listen on", &socket))?);
    let host_abstract = format!("bulkhead-verify-{nonce}-host");
    host._abstract = SocketAddr::from_abstract_name(host_abstract.as_bytes())
        .and_then(|a| UnixListener::bind_addr(&a))
        .ok();
    let host_target = HostTarget {
        pid: std::process::id(),
        canary_file: host_canary.to_string_lossy().into_owned(),
        unix_socket: socket.to_string_lossy().into_owned(),
        abstract_socket: host_abstract,
    };

    // Each tenant: sandbox, confinement, canary names, planted files.
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut prepared: Vec<Result<Prepared<'_>, String>> = Vec::new();
    let mut setuid_files: BTreeMap<String, String> = BTreeMap::new();
    let mut canary_owner_uid: BTreeMap<String, u32> = BTreeMap::new();
    for t in tenants {
        let ipc = IpcNames {
            sysv_key: i32::try_from(fnv(&format!("{nonce}/{}", t.name)) & 0x3fff_ffff).unwrap_or(1)
                | 1,
            mqueue: format!("/bulkhead-{nonce}-{}", t.name),
            abstract_socket: format!("bulkhead-{nonce}-{}", t.name),
        };
        let canary = CanarySpec {
            token: format!("{token_prefix}{}", random_hex(8)),
            ipc,
        };
        owners.insert(canary.token.clone(), t.name.clone());
        owners.insert(format!("sysv:{}", canary.ipc.sysv_key), t.name.clone());
        if let Some(source) = t.volume_data_dir.as_deref().and_then(mount_source) {
            owners.insert(format!("mount:{source}"), t.name.clone());
        }
        if let Some(data) = &t.volume_data_dir {
            let uid = t.id_base + TENANT_UID;
            let file = data.join(&canary_file);
            if std::fs::write(&file, &canary.token).is_ok() {
                let _ = std::os::unix::fs::chown(&file, Some(uid), Some(uid));
                let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
                host.planted.push(file.clone());
                if let Ok(meta) = std::fs::metadata(&file) {
                    canary_owner_uid.insert(t.name.clone(), meta.uid());
                }
            }
            // A set-uid (to the tenant's root) copy of `id`.
            let setuid = data.join(format!(".bulkhead-setuid-{nonce}"));
            if std::fs::copy("/usr/bin/id", &setuid).is_ok() {
                host.planted.push(setuid.clone());
                let _ = std::os::unix::fs::chown(&setuid, Some(t.id_base), Some(t.id_base));
                if std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o6755))
                    .is_ok()
                {
                    setuid_files.insert(t.name.clone(), format!("/data/.bulkhead-setuid-{nonce}"));
                }
            }
        }
        prepared.push(
            Sandbox::open(instance, &t.name)
                .map_err(|e| format!("sandbox of {}: {e}", t.name))
                .and_then(|sandbox| {
                    let confinement = confinement_for(t, &sandbox, &options.probe_exe)?;
                    Ok(Prepared {
                        tenant: t,
                        sandbox,
                        confinement,
                        canary,
                    })
                }),
        );
    }
    for (t, p) in tenants.iter().zip(&prepared) {
        if let Err(message) = p {
            report.rows.push(outage(&t.name, message));
        }
    }

    // Canary processes.
    let phase = Instant::now();
    let mut canaries: BTreeMap<String, CanaryProc> = BTreeMap::new();
    for p in prepared.iter().flatten() {
        match start_canary(p, &options.probe_exe) {
            Ok(canary) => {
                canaries.insert(p.tenant.name.clone(), canary);
            }
            Err(message) => report.rows.push(outage(&p.tenant.name, &message)),
        }
    }
    report.timed("canaries", phase.elapsed());

    // Peers of each tenant (sampled).
    let n = tenants.len();
    let peers_of = |i: usize| -> Vec<usize> {
        let k = options
            .sample
            .unwrap_or(n.saturating_sub(1))
            .min(n.saturating_sub(1));
        (1..=k).map(|d| (i + d) % n).collect()
    };
    let peer_target = |j: usize| -> Option<PeerTarget> {
        let p = prepared[j].as_ref().ok()?;
        Some(PeerTarget {
            tenant: p.tenant.name.clone(),
            holder_pid: p.sandbox.holder_pid(),
            canary_pid: canaries.get(&p.tenant.name).and_then(|c| c.pid),
            data_dir: p
                .tenant
                .volume_data_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()),
            sandbox_root: instance
                .sandbox_root(&p.tenant.name)
                .to_string_lossy()
                .into_owned(),
            ipc: p.canary.ipc.clone(),
        })
    };

    // Isolation probes, `parallelism` at a time.
    let isolation: Vec<ProbeClass> = classes
        .iter()
        .copied()
        .filter(|c| !matches!(c, ProbeClass::Network | ProbeClass::Resources))
        .collect();
    let phase = Instant::now();
    let mut observed: Vec<Option<Result<Vec<Observation>, String>>> =
        (0..n).map(|_| None).collect();
    if !isolation.is_empty() {
        let requests: Vec<Option<IsolationRequest>> = (0..n)
            .map(|i| {
                let p = prepared[i].as_ref().ok()?;
                Some(IsolationRequest {
                    tenant: p.tenant.name.clone(),
                    classes: isolation.clone(),
                    token_prefix: token_prefix.clone(),
                    canary_file: canary_file.clone(),
                    own_ipc: p.canary.ipc.clone(),
                    peers: peers_of(i).into_iter().filter_map(peer_target).collect(),
                    host: host_target.clone(),
                    setuid_file: setuid_files.get(&p.tenant.name).cloned(),
                    nonce: nonce.clone(),
                })
            })
            .collect();
        let next = AtomicUsize::new(0);
        let results = std::sync::Mutex::new(Vec::new());
        let phase_name = isolation
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("+");
        options.progress_total(&phase_name, requests.iter().flatten().count() as u64);
        std::thread::scope(|scope| {
            for _ in 0..options.parallelism.max(1).min(n.max(1)) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let (Ok(p), Some(request)) = (&prepared[i], &requests[i]) else {
                            continue;
                        };
                        let result = run_isolation(p, request, options);
                        options.progress_advance(&phase_name, 1);
                        if let Ok(mut list) = results.lock() {
                            list.push((i, result));
                        }
                    }
                });
            }
        });
        for (i, result) in results.into_inner().unwrap_or_default() {
            observed[i] = Some(result);
        }
    }
    report.timed("isolation probes", phase.elapsed());

    // Judge the isolation observations.
    let mut uid_ranges: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (i, t) in tenants.iter().enumerate() {
        let Some(result) = observed[i].take() else {
            continue;
        };
        let observations = match result {
            Ok(list) => list,
            Err(message) => {
                report.rows.push(outage(&t.name, &message));
                continue;
            }
        };
        let denied = judge::denied_syscalls(t.profile);
        let peers: Vec<String> = peers_of(i)
            .into_iter()
            .map(|j| tenants[j].name.clone())
            .collect();
        for obs in &observations {
            if obs.id == "processes.uid-map"
                && let Some(range) =
                    judge::id_range(&obs.detail.replace("read ", "").replace('"', ""))
            {
                uid_ranges.insert(t.name.clone(), range);
            }
            if obs.id == "filesystem.foreign-mounts" {
                report
                    .rows
                    .extend(judge::scan_rows(&t.name, obs, &owners, &peers, false));
                let unknown: Vec<&String> = obs
                    .found
                    .iter()
                    .filter(|m| !owners.contains_key(*m))
                    .collect();
                report.rows.push(pair_row(
                    ProbeClass::Filesystem,
                    &t.name,
                    Target::Host,
                    &obs.id,
                    "see mounts from outside the sandbox layout".into(),
                    if unknown.is_empty() {
                        obs.detail.clone()
                    } else {
                        format!(
                            "{} ({})",
                            obs.detail,
                            unknown
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                    !unknown.is_empty(),
                ));
            } else if obs.scan {
                let own_expected = match obs.id.as_str() {
                    "filesystem.canary.mounts" => canary_owner_uid.contains_key(&t.name),
                    // Landlock gives every process its own domain, and a
                    // domain may not read another's memory or environment,
                    // even in the same tenant: no positive control there.
                    "processes.canary.environ" => t.confine == Confine::Nothing,
                    id if id.starts_with("processes.canary.") => canaries.contains_key(&t.name),
                    _ => canaries.contains_key(&t.name),
                };
                report.rows.extend(judge::scan_rows(
                    &t.name,
                    obs,
                    &owners,
                    &peers,
                    own_expected,
                ));
            } else if let Some(row) = judge::row(&t.name, t.profile, &denied, obs) {
                report.rows.push(row);
            }
        }
    }
    // Pairwise: id ranges the kernel applies must be disjoint, and not the host's.
    if classes.contains(&ProbeClass::Processes) {
        for (i, t) in tenants.iter().enumerate() {
            let Some(mine) = uid_ranges.get(&t.name) else {
                continue;
            };
            report.rows.push(pair_row(
                ProbeClass::Processes,
                &t.name,
                Target::Host,
                "processes.id-range",
                "share host ids with the host's users (range includes uid 0)".into(),
                format!("host ids {}..{}", mine.0, mine.0 + mine.1),
                judge::overlap(*mine, (0, 1)),
            ));
            for j in peers_of(i) {
                let other = &tenants[j].name;
                let Some(theirs) = uid_ranges.get(other) else {
                    continue;
                };
                report.rows.push(pair_row(
                    ProbeClass::Processes,
                    &t.name,
                    Target::Tenant(other.clone()),
                    "processes.id-range",
                    format!("share host ids with {other}"),
                    format!(
                        "{}..{} vs {}..{}",
                        mine.0,
                        mine.0 + mine.1,
                        theirs.0,
                        theirs.0 + theirs.1
                    ),
                    judge::overlap(*mine, *theirs),
                ));
            }
        }
    }
    if classes.contains(&ProbeClass::Filesystem) {
        for (i, t) in tenants.iter().enumerate() {
            let Some(owner) = canary_owner_uid.get(&t.name) else {
                continue;
            };
            for j in peers_of(i) {
                let other = &tenants[j].name;
                let Some(theirs) = uid_ranges.get(other) else {
                    continue;
                };
                report.rows.push(pair_row(
                    ProbeClass::Filesystem,
                    other,
                    Target::Tenant(t.name.clone()),
                    "filesystem.file-owner",
                    format!(
                        "own {}'s volume files by id (their host owner is in my range)",
                        t.name
                    ),
                    format!("owner {owner}, range {}..{}", theirs.0, theirs.0 + theirs.1),
                    judge::overlap((u64::from(*owner), 1), *theirs),
                ));
            }
        }
    }

    // Network: flows between sampled pairs, the host, attacks.
    if classes.contains(&ProbeClass::Network) {
        let context = network_run::Context {
            instance,
            prepared: &prepared,
            peers: (0..n).map(peers_of).collect(),
            network: options.network.as_ref(),
            options,
            nonce: &nonce,
        };
        network_run::probe(&context, &mut report);
    }

    // Resources, one tenant at a time (victim: the next tenant).
    if classes.contains(&ProbeClass::Resources) {
        let phase = Instant::now();
        options.progress_total("resources", prepared.iter().flatten().count() as u64);
        let neighbour_scope = NeighbourScope {
            instance: instance.clone(),
            holders: prepared
                .iter()
                .flatten()
                .map(|p| p.sandbox.holder_pid())
                .collect(),
            addresses: tenants.iter().filter_map(|t| t.address).collect(),
        };
        for i in 0..n {
            let Ok(p) = &prepared[i] else { continue };
            let victim = (n > 1)
                .then(|| (i + 1) % n)
                .and_then(|j| prepared[j].as_ref().ok());
            resources(
                p,
                victim,
                &canaries,
                options,
                (&nonce, &dir, &neighbour_scope),
                &mut report,
            );
            options.progress_advance("resources", 1);
        }
        report.timed("resource probes", phase.elapsed());
    }

    for (_, canary) in std::mem::take(&mut canaries) {
        stop_canary(canary);
    }
    drop(host);
    report.timed("total", started.elapsed());
    report.finish();
    Ok(report)
}

fn run_isolation(
    p: &Prepared<'_>,
    request: &IsolationRequest,
    options: &VerifyOptions,
) -> Result<Vec<Observation>, String> {
    let process = spawn(
        p,
        &Request::Isolation(Box::new(request.clone())),
        &options.probe_exe,
        &[],
        &[],
    )?;
    let (code, out, err) = finish(process, options.probe_timeout)?;
    serde_json::from_slice(&out).map_err(|e| {
        format!(
            "probe in {} exited {code} without a report ({e}): {}",
            p.tenant.name,
            String::from_utf8_lossy(&err).trim()
        )
    })
}

fn outage(tenant: &str, message: &str) -> Row {
    Row {
        class: ProbeClass::Processes,
        tenant: tenant.to_owned(),
        target: Target::Own,
        id: "probe.run".into(),
        attempt: "run the probe in the tenant".into(),
        expected: Expected::Allowed,
        observed: message.to_owned(),
        verdict: Verdict::Outage,
    }
}

fn pair_row(
    class: ProbeClass,
    tenant: &str,
    target: Target,
    id: &str,
    attempt: String,
    observed: String,
    worked: bool,
) -> Row {
    Row {
        class,
        tenant: tenant.to_owned(),
        target,
        id: id.to_owned(),
        attempt,
        expected: Expected::Denied,
        observed,
        verdict: Verdict::judge(Expected::Denied, worked),
    }
}

fn run_resource(
    p: &Prepared<'_>,
    request: &Request,
    options: &VerifyOptions,
) -> Result<(i32, Option<ResourceOutcome>), String> {
    let process = spawn(p, request, &options.probe_exe, &[], &[])?;
    let (code, out, _) = finish(process, options.probe_timeout)?;
    Ok((code, serde_json::from_slice(&out).ok()))
}

fn resources(
    p: &Prepared<'_>,
    victim: Option<&Prepared<'_>>,
    canaries: &BTreeMap<String, CanaryProc>,
    options: &VerifyOptions,
    (nonce, host_dir, neighbour_scope): (&str, &Path, &NeighbourScope),
    report: &mut Report,
) {
    const C: ProbeClass = ProbeClass::Resources;
    let name = &p.tenant.name;
    let limits = p.tenant.limits;
    let mut push =
        |id: &str, target: Target, attempt: String, result: Result<(bool, String), String>| {
            report.rows.push(match result {
                Ok((worked, observed)) => pair_row(C, name, target, id, attempt, observed, worked),
                Err(message) => Row {
                    verdict: Verdict::Outage,
                    expected: Expected::Allowed,
                    ..pair_row(C, name, target, id, attempt, message, false)
                },
            });
        };

    if let Some(max) = limits.pids_max {
        let result =
            run_resource(p, &Request::ForkBomb { cap: max + 16 }, options).map(|(_, o)| {
                let o = o.unwrap_or_default();
                let how = o
                    .errno
                    .map_or_else(|| "never refused".to_owned(), errno_name);
                (
                    o.amount >= max,
                    format!("started {} processes, then {how}", o.amount),
                )
            });
        push(
            "resources.pids",
            Target::Host,
            format!("start more processes than pids.max ({max})"),
            result,
        );
    }

    if let Some(max) = limits.memory_max {
        let cap = max * 2 + 64 * MIB;
        let result =
            run_resource(p, &Request::MemoryHog { cap }, options).map(|(code, o)| match o {
                Some(o) if o.reached_cap => {
                    (true, format!("allocated {} MiB unharmed", o.amount / MIB))
                }
                Some(o) => (
                    false,
                    format!(
                        "stopped at {} MiB ({})",
                        o.amount / MIB,
                        o.errno.map_or_else(String::new, errno_name)
                    ),
                ),
                None => (false, format!("killed (exit {code})")),
            });
        push(
            "resources.memory",
            Target::Host,
            format!("use more memory than memory.max ({} MiB)", max / MIB),
            result,
        );
        if let Some(v) = victim
            && let Some(pid) = canaries.get(&v.tenant.name).and_then(|c| c.pid)
        {
            let gone = !alive(pid);
            push(
                "resources.memory-victim",
                Target::Tenant(v.tenant.name.clone()),
                format!("take down {}'s process with a memory hog", v.tenant.name),
                Ok((
                    gone,
                    if gone {
                        "victim is gone".into()
                    } else {
                        "victim still runs".into()
                    },
                )),
            );
        }
    }

    if let (Some(storage), Some(_)) = (limits.storage, &p.tenant.volume_data_dir) {
        let request = Request::DiskFill {
            path: format!("/data/.bulkhead-fill-{nonce}"),
            cap: storage + 16 * MIB,
        };
        let result = run_resource(p, &request, options).map(|(_, o)| {
            let o = o.unwrap_or_default();
            let how = o.errno.map_or_else(|| "no error".to_owned(), errno_name);
            (
                o.amount > storage,
                format!("wrote {} MiB, then {how}", o.amount / MIB),
            )
        });
        push(
            "resources.disk",
            Target::Host,
            format!("write more than the storage quota ({} MiB)", storage / MIB),
            result,
        );
    }

    if let Some(v) = victim {
        let result = cpu_interference(p, v, options);
        let bound = options.cpu_ratio_bound;
        push(
            "resources.cpu",
            Target::Tenant(v.tenant.name.clone()),
            format!("slow {}'s fixed CPU work more than {bound}×", v.tenant.name),
            result,
        );
    }

    if let Some(v) = victim {
        report
            .rows
            .extend(crate::exhaustion::probe(p, v, options, nonce, host_dir));
    }
    report
        .rows
        .push(crate::exhaustion::neighbours(p, neighbour_scope, options));
}

/// Times the victim's fixed work alone and while `hog` spins every CPU;
/// `(ratio > bound, "ratio …")`.
fn cpu_interference(
    hog: &Prepared<'_>,
    victim: &Prepared<'_>,
    options: &VerifyOptions,
) -> Result<(bool, String), String> {
    // Calibrate the work to about `cpu_work` on this host.
    let probe = Instant::now();
    std::hint::black_box(crate::probe::work(200));
    let per_round = probe.elapsed().as_secs_f64() / 200.0;
    let rounds = ((options.cpu_work.as_secs_f64() / per_round.max(1e-9)) as u64).max(10);
    let work = |p: &Prepared<'_>| -> Result<u64, String> {
        let (_, o) = run_resource(p, &Request::CpuWork { rounds }, options)?;
        o.map(|o| o.amount)
            .ok_or_else(|| "the CPU work gave no report".to_owned())
    };
    let solo = work(victim)?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let millis = (solo / 1_000_000).min(60_000) * 20 + 2000;
    let mut spinner = spawn(
        hog,
        &Request::CpuHog { threads, millis },
        &options.probe_exe,
        &[],
        &[],
    )?;
    std::thread::sleep(Duration::from_millis(50));
    let contended = work(victim);
    let _ = spinner.kill();
    let _ = finish(spinner, Duration::from_secs(5));
    let contended = contended?;
    let ratio = contended as f64 / solo.max(1) as f64;
    Ok((
        ratio > options.cpu_ratio_bound,
        format!(
            "ratio {ratio:.2} (solo {} ms, with {threads} hog threads {} ms)",
            solo / 1_000_000,
            contended / 1_000_000
        ),
    ))
}
