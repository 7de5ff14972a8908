//! The probe program: what runs **inside** a tenant's sandbox, under the
//! tenant's confinement and in its cgroups, and reports what it could do.
//!
//! The binary that calls [`crate::verify`] is re-executed inside the sandbox
//! (its file is opened on the host and handed over as the workload's stdin,
//! then executed as `/proc/self/fd/0`: the tenant never sees its host path
//! and cannot replace it, and Landlock allows exactly that file). The hidden
//! environment variable [`PROBE_ENV`] carries a JSON [`Request`]; that
//! binary's `main` must call [`probe_main`] first thing when
//! [`is_probe_invocation`] says so (after the sandbox's own
//! `is_holder_invocation` check).
//!
//! Modes ([`Request`]):
//! - `isolation`: the attempts of the processes, filesystem, IPC and
//!   privilege classes; prints one JSON array of [`Observation`]s;
//! - `canary`: a long-running process holding the tenant's secret in its
//!   memory, environment and command line, and owning its SysV objects,
//!   POSIX queue and abstract socket; prints `ready`, exits (removing them)
//!   when the verifier closes its stdout pipe;
//! - `memory-hog`, `fork-bomb`, `disk-fill`, `cpu-hog`, `cpu-work`: the
//!   resource attempts, each printing one JSON [`ResourceOutcome`];
//! - `port-hold`, `local-connect`, `inode-fill`, `touch`,
//!   `conntrack-flood`, `neighbour-flood`: exhaustion of shared kernel
//!   tables ([`exhaust`]);
//! - `listen`, `connect`, `broadcast`: the network class ([`net`]): a
//!   listener in the destination tenant, the flows from the source tenant,
//!   UDP broadcasts;
//! - `sleeper`, `userns`: helpers the others start.
//!
//! The probe does not judge: it reports what worked and with which errno;
//! [`crate::verify`] holds the expectations.

mod attempts;
pub mod exhaust;
mod modes;
pub mod net;

pub(crate) use modes::CANARY_ENV;
pub use modes::work;

use serde::{Deserialize, Serialize};

use crate::class::{ProbeClass, Target};

/// Environment variable marking a probe invocation; its value is the JSON
/// request.
pub const PROBE_ENV: &str = "BULKHEAD_VERIFY_PROBE";

/// Whether this process was started as a probe. A binary that runs
/// [`crate::verify`] checks this first thing in `main` and then calls
/// [`probe_main`].
pub fn is_probe_invocation() -> bool {
    std::env::var_os(PROBE_ENV).is_some()
}

/// Runs the probe named by [`PROBE_ENV`] and exits; never returns.
pub fn probe_main() -> ! {
    let request = std::env::var(PROBE_ENV)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str::<Request>(&text).map_err(|e| e.to_string()));
    let request = match request {
        Ok(request) => request,
        Err(error) => {
            eprintln!("bulkhead probe: bad request in {PROBE_ENV}: {error}");
            std::process::exit(2)
        }
    };
    let code = match request {
        Request::Isolation(request) => {
            let observations = attempts::run(&request);
            print_json(&observations);
            0
        }
        Request::Canary(canary) => modes::canary(&canary),
        Request::Sleeper => modes::sleeper(),
        Request::Userns => modes::userns(),
        Request::MemoryHog { cap } => print_json(&modes::memory_hog(cap)),
        Request::ForkBomb { cap } => print_json(&modes::fork_bomb(cap)),
        Request::DiskFill { path, cap } => print_json(&modes::disk_fill(&path, cap)),
        Request::CpuHog { threads, millis } => modes::cpu_hog(threads, millis),
        Request::CpuWork { rounds } => print_json(&modes::cpu_work(rounds)),
        Request::PortHold { first, cap, millis } => exhaust::port_hold(first, cap, millis),
        Request::LocalConnect => print_json(&exhaust::local_connect()),
        Request::InodeFill {
            dirs,
            cap,
            millis,
            nonce,
        } => exhaust::inode_fill(&dirs, cap, millis, &nonce),
        Request::Touch { paths } => print_json(&exhaust::touch(&paths)),
        Request::ConntrackFlood {
            address,
            port,
            cap,
            millis,
        } => print_json(&exhaust::conntrack_flood(
            address,
            port,
            &net::dns_query(0x6263),
            cap,
            millis,
        )),
        Request::NeighbourFlood {
            ranges,
            port,
            millis,
        } => print_json(&exhaust::neighbour_flood(&ranges, port, millis)),
        Request::Listen(request) => net::listen(&request),
        Request::Connect(request) => print_json(&net::connect(&request)),
        Request::Broadcast(request) => print_json(&net::broadcast(&request)),
    };
    std::process::exit(code)
}

fn print_json<T: Serialize>(value: &T) -> i32 {
    match serde_json::to_string(value) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(error) => {
            eprintln!("bulkhead probe: cannot encode the report: {error}");
            3
        }
    }
}

/// What the verifier asks a probe process to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Request {
    /// The attempts of the non-resource classes.
    Isolation(Box<IsolationRequest>),
    /// Hold the canaries until the stdout pipe closes.
    Canary(CanarySpec),
    /// Block until stdin reaches end of file.
    Sleeper,
    /// Try to create a user namespace; exit 0 if it worked, else the errno.
    Userns,
    /// Allocate and touch memory up to `cap` bytes.
    MemoryHog {
        /// Stop here: the quota was not enforced.
        cap: u64,
    },
    /// Start processes until the kernel refuses or `cap` run.
    ForkBomb {
        /// Stop here: the quota was not enforced.
        cap: u64,
    },
    /// Write a file until the disk is full or `cap` bytes were written.
    DiskFill {
        /// The file to write (removed afterwards).
        path: String,
        /// Stop here: the quota was not enforced.
        cap: u64,
    },
    /// Spin `threads` threads for `millis` milliseconds.
    CpuHog {
        /// Busy threads.
        threads: usize,
        /// How long.
        millis: u64,
    },
    /// A fixed amount of CPU work; reports how long it took.
    CpuWork {
        /// Rounds of the work function.
        rounds: u64,
    },
    /// Bind the ephemeral TCP ports from `first` until the range ends, the
    /// open-file limit, `cap` or `millis`; hold them.
    PortHold {
        /// Where to start (0: the range's start).
        first: u32,
        /// Most ports.
        cap: u64,
        /// Time budget.
        millis: u64,
    },
    /// Connect to a listener of our own on loopback.
    LocalConnect,
    /// Fill inodes under each directory; hold, then remove them.
    InodeFill {
        /// Where.
        dirs: Vec<String>,
        /// Most files in each directory.
        cap: u64,
        /// Time budget.
        millis: u64,
        /// Names the directory it makes.
        nonce: String,
    },
    /// Create and remove one file at each path.
    Touch {
        /// The files.
        paths: Vec<String>,
    },
    /// Open tracked UDP flows (a DNS query from a new port each) to
    /// `address:port` until `cap` or `millis`.
    ConntrackFlood {
        /// Where to (an allowed destination: dropped flows leave no entry).
        address: std::net::Ipv4Addr,
        /// Its port.
        port: u16,
        /// Most flows.
        cap: u64,
        /// Time budget.
        millis: u64,
    },
    /// Send one UDP datagram (TTL 1: never forwarded beyond the first hop)
    /// to each address of `ranges` until `millis` (neighbour-table
    /// exhaustion).
    NeighbourFlood {
        /// `(first address, count)` runs of consecutive addresses.
        ranges: Vec<(std::net::Ipv4Addr, u32)>,
        /// The destination port.
        port: u16,
        /// Time budget.
        millis: u64,
    },
    /// Listen on ports of the tenant (network class).
    Listen(net::ListenRequest),
    /// Try flows to other tenants and the host (network class).
    Connect(net::ConnectRequest),
    /// Send UDP broadcasts (network class).
    Broadcast(net::BroadcastRequest),
}

/// Names of a tenant's IPC canaries (not secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcNames {
    /// Key of its SysV shm, msg and sem objects.
    pub sysv_key: i32,
    /// Its POSIX message queue (`/name`).
    pub mqueue: String,
    /// Its abstract unix socket (without the leading NUL).
    pub abstract_socket: String,
}

/// A tenant's canaries: the secret and the names of its IPC objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanarySpec {
    /// The secret token (`bhc-<nonce>-<hex>`).
    pub token: String,
    /// The IPC objects the canary process creates.
    pub ipc: IpcNames,
}

/// Another tenant, as the probe may aim at it. Holds no secret of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTarget {
    /// The tenant.
    pub tenant: String,
    /// Host pid of its holder.
    pub holder_pid: u32,
    /// Host pid of its canary process.
    pub canary_pid: Option<u32>,
    /// Host path of its volume's data directory.
    pub data_dir: Option<String>,
    /// Host path of its sandbox root directory.
    pub sandbox_root: String,
    /// Its IPC canaries.
    pub ipc: IpcNames,
}

/// Host objects the probe aims at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTarget {
    /// A host process (the verifier's own pid).
    pub pid: u32,
    /// A file holding the host canary.
    pub canary_file: String,
    /// A listening unix socket on the host file system.
    pub unix_socket: String,
    /// A listening abstract unix socket in the host's network namespace.
    pub abstract_socket: String,
}

/// The isolation attempts to make.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IsolationRequest {
    /// The probing tenant (its hostname inside).
    pub tenant: String,
    /// Classes to attempt.
    pub classes: Vec<ProbeClass>,
    /// Prefix every canary token of this run starts with.
    pub token_prefix: String,
    /// File name of the canary planted in each volume's data directory.
    pub canary_file: String,
    /// The tenant's own IPC canaries (positive controls).
    pub own_ipc: IpcNames,
    /// Other tenants.
    pub peers: Vec<PeerTarget>,
    /// The host.
    pub host: HostTarget,
    /// Path inside of a set-uid copy of `id` planted on the volume.
    pub setuid_file: Option<String>,
    /// Scratch name unique to this run.
    pub nonce: String,
}

/// One attempt as the probe saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Its class.
    pub class: ProbeClass,
    /// Stable id (`processes.kill.holder`).
    pub id: String,
    /// What was tried, for a person.
    pub what: String,
    /// At whom.
    pub target: Target,
    /// Whether it worked (for scans: whether anything was found).
    pub worked: bool,
    /// Result as text (`ESRCH`, `ok`, what was read).
    pub detail: String,
    /// The errno, if it failed with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// For scans: every canary token or IPC name found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<String>,
    /// Whether this is a scan (its `found` is judged per tenant).
    #[serde(default)]
    pub scan: bool,
    /// Could not be attempted meaningfully (e.g. a host pid number that is
    /// also a pid inside).
    #[serde(default)]
    pub skipped: bool,
}

/// What a resource attempt reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceOutcome {
    /// Bytes allocated or written, processes started, or nanoseconds taken.
    pub amount: u64,
    /// Reached the cap without being stopped.
    pub reached_cap: bool,
    /// The errno that stopped it, if any.
    pub errno: Option<i32>,
}

/// The name of an errno (`ESRCH`), or its number.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EDQUOT => "EDQUOT",
        libc::ENOKEY => "ENOKEY",
        libc::EKEYREVOKED => "EKEYREVOKED",
        _ => return format!("errno {errno}"),
    };
    name.to_owned()
}
