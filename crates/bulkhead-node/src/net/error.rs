//! Errors of tenant networking, one enum per concern.

use std::io;
use std::path::PathBuf;
use std::process::Command;

use bulkhead_policy::tenancy::TenancyError;

/// A helper program (`nft`, `tc`) that failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It exited non-zero.
    #[error("{program} {args} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its arguments, space separated.
        args: String,
        /// How it ended.
        status: String,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
}

/// Runs `command` with `stdin` as its standard input; its stdout on success.
pub(crate) fn run(command: &mut Command, stdin: Option<&str>) -> Result<String, CommandError> {
    use std::io::Write as _;
    use std::process::Stdio;
    let program = command.get_program().to_string_lossy().into_owned();
    let args = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn = |source| CommandError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = command.spawn().map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    let output = child.wait_with_output().map_err(spawn)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(CommandError::Failed {
            program,
            args,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Why wiring, observing or removing a tenant's links failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A netlink request failed.
    #[error("{step} {object}: {source}")]
    Netlink {
        /// What was being done.
        step: &'static str,
        /// The interface (or namespace) it was done to.
        object: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The tenant's network namespace could not be opened.
    #[error("open network namespace {}: {source}", path.display())]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The tenant range is already routed through another interface (another
    /// instance's bridge, a host network): tenants are routed, so two owners of
    /// one range would take each other's traffic.
    #[error(
        "tenant range {range} is already routed through {device} (expected a range no other interface of the host routes: pick another platform.spec.network.tenantRange)"
    )]
    RangeInUse {
        /// The range.
        range: String,
        /// The interface that routes it.
        device: String,
    },
    /// The instance bridge does not exist (expected `ensure_bridge` first).
    #[error("bridge {bridge} does not exist (expected ensure_bridge first)")]
    NoBridge {
        /// Its name.
        bridge: String,
    },
    /// An interface with our name exists but is not what we would create.
    #[error("interface {name} exists but is a {found} (expected a {expected}); remove it first")]
    Foreign {
        /// The name.
        name: String,
        /// What it is.
        found: String,
        /// What we expected.
        expected: &'static str,
    },
    /// An address outside the range, the range's network, broadcast or
    /// bridge address.
    #[error(
        "address {address} is not a tenant address of {range} (expected a host address other than the bridge's)"
    )]
    BadAddress {
        /// The address.
        address: String,
        /// The range.
        range: String,
    },
    /// A sysctl write failed.
    #[error("write {}: {source}", path.display())]
    Sysctl {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why compiling, applying or observing the firewall failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The tenant rules do not translate or do not build an engine.
    #[error(transparent)]
    Policy(#[from] TenancyError),
    /// The host backend supports IPv4 tenant ranges only for now.
    #[error("tenant range {range} is not IPv4 (the host backend supports IPv4 tenant ranges only)")]
    NotIpv4 {
        /// The range.
        range: String,
    },
    /// A tenant of the desired state has no address.
    #[error("tenant {tenant} has no address (expected the store to allocate one before compiling)")]
    NoAddress {
        /// The tenant.
        tenant: String,
    },
    /// An address is outside the tenant range or used twice.
    #[error("address {address} of tenant {tenant} is {problem}")]
    BadAddress {
        /// The tenant.
        tenant: String,
        /// The address.
        address: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `nft` failed.
    #[error(transparent)]
    Nft(#[from] CommandError),
    /// `nft -j` printed something we cannot read.
    #[error("cannot read nft's JSON output: {0}")]
    Json(String),
    /// A set element batch over nfnetlink failed (the kernel applied none of it).
    #[error("editing the set elements of table {table} over nfnetlink: {source}")]
    Netlink {
        /// The table.
        table: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The record of the last full load could not be written.
    #[error("write {}: {source}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why setting, observing or removing a bandwidth cap failed.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// The `ifb` device could not be set up.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// `tc` failed.
    #[error(transparent)]
    Tc(#[from] CommandError),
    /// `tc -j` printed something we cannot read.
    #[error("cannot read tc's JSON output for {interface}: {message}")]
    Json {
        /// The interface.
        interface: String,
        /// What was wrong.
        message: String,
    },
}
