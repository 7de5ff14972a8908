//! Landlock: which files a workload may write, read and execute.
//!
//! [`LandlockPaths`] names the writable directories (the tenant's volume, its
//! `/tmp`) and the read-only system paths (`/usr`, `/bin`, `/lib*`, a subset of
//! `/etc`, `/proc`, `/dev`); everything else is out of reach. [`prepare`] runs
//! in the parent: it asks the kernel for its Landlock ABI, opens every path,
//! creates the ruleset and adds the rules. The child only calls
//! `landlock_restrict_self` on the ready file descriptor ([`PreparedLandlock::apply`]).
//!
//! The ruleset handles every filesystem right up to [`TARGET_ABI`]. By default
//! ([`LandlockMode::Required`]) a kernel that cannot enforce one of them is an
//! error naming the missing rights; with [`LandlockMode::BestEffort`] (the
//! platform opted in) the ruleset handles what the kernel knows and
//! [`PreparedLandlock::not_enforced`] lists exactly what was left out.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr,
};

use crate::sys;

/// The Landlock ABI whose filesystem rights bulkhead handles: V5 (Linux 6.10)
/// adds `ioctl_dev` to V3's `truncate` and V2's `refer`. V6 and V7 add no
/// filesystem rights; V9's `resolve_unix` is newer than the hosts we run on.
pub const TARGET_ABI: ABI = ABI::V5;

/// System paths a workload usually needs to read and execute, as
/// [`LandlockPaths::system_read_only`] offers them (those that exist).
pub const SYSTEM_READ_ONLY: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/proc",
    "/dev",
];

/// Device files a workload may also write (writes to them go nowhere or come
/// back as zeros).
pub const DEVICE_WRITABLE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// Whether a kernel that cannot enforce the whole ruleset is an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LandlockMode {
    /// Every right up to [`TARGET_ABI`] must be enforced, or preparing fails.
    #[default]
    Required,
    /// Enforce what the kernel can and report the rest; only when the platform
    /// explicitly opted in.
    BestEffort,
}

/// The paths a workload may use; every other path is denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LandlockPaths {
    /// Read, list and execute beneath these.
    pub read_only: Vec<PathBuf>,
    /// Read, write, create, remove and execute beneath these.
    pub writable: Vec<PathBuf>,
}

impl LandlockPaths {
    /// The tenant's writable directories plus the system paths of
    /// [`SYSTEM_READ_ONLY`] and the devices of [`DEVICE_WRITABLE`] that exist
    /// on this host.
    pub fn system_defaults(writable: impl IntoIterator<Item = PathBuf>) -> Self {
        let existing = |list: &[&str]| {
            list.iter()
                .map(PathBuf::from)
                .filter(|path| path.exists())
                .collect::<Vec<_>>()
        };
        let mut writable: Vec<PathBuf> = writable.into_iter().collect();
        writable.extend(existing(DEVICE_WRITABLE));
        LandlockPaths {
            read_only: existing(SYSTEM_READ_ONLY),
            writable,
        }
    }
}

/// One Landlock access right that was requested but is not enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LandlockGap {
    /// The right, as the kernel names it (`LANDLOCK_ACCESS_FS_<RIGHT>` in lower case).
    pub right: &'static str,
    /// The first Landlock ABI that has it.
    pub since_abi: u8,
}

impl fmt::Display for LandlockGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (Landlock ABI {})", self.right, self.since_abi)
    }
}

fn gaps_list(gaps: &[LandlockGap]) -> String {
    gaps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a Landlock ruleset could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// The kernel has no Landlock at all and best effort was not allowed.
    #[error(
        "landlock is not available (errno {errno}: built without it, or missing from lsm= at boot) and best effort was not allowed"
    )]
    Unavailable {
        /// `ENOSYS` or `EOPNOTSUPP`.
        errno: i32,
    },
    /// The kernel's Landlock ABI lacks rights the ruleset needs.
    #[error(
        "landlock ABI {kernel_abi} cannot enforce {} (needs ABI {}) and best effort was not allowed",
        gaps_list(missing),
        TARGET_ABI as u8
    )]
    MissingRights {
        /// The kernel's ABI version.
        kernel_abi: u32,
        /// The rights it cannot enforce.
        missing: Vec<LandlockGap>,
    },
    /// A path could not be opened.
    #[error("landlock path {}: {source}", path.display())]
    Path {
        /// The path.
        path: PathBuf,
        /// Why opening it failed.
        #[source]
        source: std::io::Error,
    },
    /// The landlock crate refused the ruleset or a rule.
    #[error("landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
}

/// A ruleset ready to enforce, built in the parent.
#[derive(Debug)]
pub struct PreparedLandlock {
    ruleset: Option<OwnedFd>,
    kernel_abi: u32,
    not_enforced: Vec<LandlockGap>,
}

impl PreparedLandlock {
    /// The kernel's Landlock ABI (0 when Landlock is unavailable).
    pub fn kernel_abi(&self) -> u32 {
        self.kernel_abi
    }

    /// Rights that were requested but will not be enforced (only ever
    /// non-empty in [`LandlockMode::BestEffort`]).
    pub fn not_enforced(&self) -> &[LandlockGap] {
        &self.not_enforced
    }

    /// Whether [`apply`](Self::apply) enforces anything.
    pub fn enforces(&self) -> bool {
        self.ruleset.is_some()
    }

    /// Enforces the ruleset on the calling thread. Needs no_new_privs first.
    /// Allocates nothing. Returns the errno on failure.
    pub fn apply(&self) -> Result<(), i32> {
        match &self.ruleset {
            Some(fd) => sys::landlock::restrict_self(fd.as_fd()),
            None => Ok(()),
        }
    }
}

/// The kernel's name and first ABI of every filesystem right.
fn right_info(right: AccessFs) -> (&'static str, u8) {
    match right {
        AccessFs::Execute => ("execute", 1),
        AccessFs::WriteFile => ("write_file", 1),
        AccessFs::ReadFile => ("read_file", 1),
        AccessFs::ReadDir => ("read_dir", 1),
        AccessFs::RemoveDir => ("remove_dir", 1),
        AccessFs::RemoveFile => ("remove_file", 1),
        AccessFs::MakeChar => ("make_char", 1),
        AccessFs::MakeDir => ("make_dir", 1),
        AccessFs::MakeReg => ("make_reg", 1),
        AccessFs::MakeSock => ("make_sock", 1),
        AccessFs::MakeFifo => ("make_fifo", 1),
        AccessFs::MakeBlock => ("make_block", 1),
        AccessFs::MakeSym => ("make_sym", 1),
        AccessFs::Refer => ("refer", 2),
        AccessFs::Truncate => ("truncate", 3),
        AccessFs::IoctlDev => ("ioctl_dev", 5),
        AccessFs::ResolveUnix => ("resolve_unix", 9),
        _ => ("unknown", 0),
    }
}

fn gaps(missing: BitFlags<AccessFs>) -> Vec<LandlockGap> {
    missing
        .iter()
        .map(|right| {
            let (right, since_abi) = right_info(right);
            LandlockGap { right, since_abi }
        })
        .collect()
}

/// Builds the ruleset for `paths` (see the module docs). Opens every path, so
/// each must exist.
pub fn prepare(
    paths: &LandlockPaths,
    mode: LandlockMode,
) -> Result<PreparedLandlock, LandlockError> {
    // Resolve every path first, so a typo is an error on any kernel.
    for path in paths.read_only.iter().chain(&paths.writable) {
        std::fs::metadata(path).map_err(|source| LandlockError::Path {
            path: path.clone(),
            source,
        })?;
    }
    let requested = AccessFs::from_all(TARGET_ABI);
    let kernel_abi = match sys::landlock::abi_version() {
        Ok(version) => version,
        Err(errno) => match mode {
            LandlockMode::Required => return Err(LandlockError::Unavailable { errno }),
            LandlockMode::BestEffort => {
                return Ok(PreparedLandlock {
                    ruleset: None,
                    kernel_abi: 0,
                    not_enforced: gaps(requested),
                });
            }
        },
    };
    // The landlock crate discourages building an ABI from the kernel's number
    // because it hides what is left out; here it is the opposite: the number
    // tells us exactly which requested rights the kernel lacks, so we can
    // refuse or report them instead of letting the crate drop them silently.
    let supported = AccessFs::from_all(ABI::from(i32::try_from(kernel_abi).unwrap_or(i32::MAX)));
    let missing = requested & !supported;
    if !missing.is_empty() && mode == LandlockMode::Required {
        return Err(LandlockError::MissingRights {
            kernel_abi,
            missing: gaps(missing),
        });
    }
    let handled = requested & supported;
    if handled.is_empty() {
        return Ok(PreparedLandlock {
            ruleset: None,
            kernel_abi,
            not_enforced: gaps(missing),
        });
    }
    let read = AccessFs::from_read(TARGET_ABI) & handled;
    // Everything we handle is what the crate checks against the kernel: a
    // hard requirement, since `handled` only holds rights the kernel has.
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(handled)?
        .create()?;
    for (list, access) in [(&paths.read_only, read), (&paths.writable, handled)] {
        for path in list {
            ruleset = ruleset.add_rule(rule(path, access)?)?;
        }
    }
    Ok(PreparedLandlock {
        ruleset: Option::<OwnedFd>::from(ruleset),
        kernel_abi,
        not_enforced: gaps(missing),
    })
}

/// A rule for `path`; rights that only make sense on directories are left out
/// for files (the kernel rejects them there).
fn rule(path: &Path, access: BitFlags<AccessFs>) -> Result<PathBeneath<PathFd>, LandlockError> {
    let path_error = |source| LandlockError::Path {
        path: path.to_owned(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(path_error)?;
    let access = if metadata.is_dir() {
        access
    } else {
        access & AccessFs::from_file(TARGET_ABI)
    };
    let fd = PathFd::new(path).map_err(|error| path_error(std::io::Error::other(error)))?;
    Ok(PathBeneath::new(fd, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_name_the_kernel_rights_and_their_abi() {
        let missing = AccessFs::from_all(TARGET_ABI) & !AccessFs::from_all(ABI::V2);
        let listed = gaps_list(&gaps(missing));
        assert_eq!(
            listed,
            "truncate (Landlock ABI 3), ioctl_dev (Landlock ABI 5)"
        );
    }

    #[test]
    fn missing_rights_error_says_what_to_do() {
        let error = LandlockError::MissingRights {
            kernel_abi: 1,
            missing: gaps(AccessFs::Refer | AccessFs::Truncate),
        };
        assert_eq!(
            error.to_string(),
            "landlock ABI 1 cannot enforce refer (Landlock ABI 2), truncate (Landlock ABI 3) (needs ABI 5) and best effort was not allowed"
        );
    }

    #[test]
    fn a_missing_path_is_named() {
        let paths = LandlockPaths {
            read_only: vec![PathBuf::from("/nonexistent/bulkhead")],
            writable: vec![],
        };
        match prepare(&paths, LandlockMode::BestEffort) {
            Err(LandlockError::Path { path, .. }) => {
                assert_eq!(path, PathBuf::from("/nonexistent/bulkhead"));
            }
            other => panic!("expected a path error, got {other:?}"),
        }
    }
}
