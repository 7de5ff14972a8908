//! fscrypt v2 on the volume's data directory: the tenant key in the kernel,
//! the policy on the directory, and what the kernel says about both.
//!
//! - [`add_key`] uses `FS_IOC_ADD_ENCRYPTION_KEY` with a v2 (identifier) key
//!   specifier on any file of the filesystem; the kernel derives and returns
//!   the 16-byte key identifier.
//! - [`set_policy`] uses `FS_IOC_SET_ENCRYPTION_POLICY` with a v2 policy —
//!   AES-256-XTS for contents, AES-256-CTS for file names, names padded to
//!   32 bytes — on an empty directory.
//! - [`get_policy`] uses `FS_IOC_GET_ENCRYPTION_POLICY_EX`.
//! - [`remove_key`] uses `FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS`: the key leaves
//!   the kernel for every user that added it (a platform lock, not one
//!   user's claim); cached plaintext pages and names are evicted.
//! - [`key_status`] uses `FS_IOC_GET_ENCRYPTION_KEY_STATUS`.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::sys::fscrypt as sys;

/// A v2 key identifier: what the kernel derives from a key and what a v2
/// policy names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyIdentifier(pub [u8; 16]);

impl fmt::Display for KeyIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyIdentifier({self})")
    }
}

impl serde::Serialize for KeyIdentifier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An encryption mode by its fscrypt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `FSCRYPT_MODE_AES_256_XTS` (contents).
    Aes256Xts,
    /// `FSCRYPT_MODE_AES_256_CTS` (file names).
    Aes256Cts,
    /// Any other mode bulkhead does not set.
    Other(u8),
}

impl Mode {
    fn from_raw(raw: u8) -> Mode {
        match raw {
            sys::MODE_AES_256_XTS => Mode::Aes256Xts,
            sys::MODE_AES_256_CTS => Mode::Aes256Cts,
            other => Mode::Other(other),
        }
    }
}

/// A v2 encryption policy as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// Contents encryption mode.
    pub contents: Mode,
    /// File name encryption mode.
    pub filenames: Mode,
    /// Raw policy flags (bulkhead sets `FSCRYPT_POLICY_FLAGS_PAD_32`).
    pub flags: u8,
    /// The key it names.
    pub key: KeyIdentifier,
}

impl Policy {
    /// The policy bulkhead sets, for the key `key`.
    pub fn bulkhead(key: KeyIdentifier) -> Policy {
        Policy {
            contents: Mode::Aes256Xts,
            filenames: Mode::Aes256Cts,
            flags: sys::POLICY_FLAGS_PAD_32,
            key,
        }
    }

    fn from_raw(raw: &sys::PolicyV2) -> Policy {
        Policy {
            contents: Mode::from_raw(raw.contents_encryption_mode),
            filenames: Mode::from_raw(raw.filenames_encryption_mode),
            flags: raw.flags,
            key: KeyIdentifier(raw.master_key_identifier),
        }
    }
}

/// Whether a key is in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStatus {
    /// Not added (locked).
    Absent,
    /// Added: files under a policy naming it can be read (unlocked).
    Present {
        /// Users that added it.
        users: u32,
    },
    /// Removed, but some files were still open; they keep their plaintext
    /// until closed, and removing again finishes the job.
    IncompletelyRemoved,
}

/// What removing a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Removal {
    /// Some files were in use: the key is only partly removed
    /// ([`KeyStatus::IncompletelyRemoved`]).
    pub files_busy: bool,
    /// Other users still had the key added (not for the all-users removal
    /// bulkhead uses).
    pub other_users: bool,
}

/// Why an fscrypt operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FscryptError {
    #[error("{path}: could not open for an fscrypt ioctl")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {op} failed{hint}")]
    Ioctl {
        path: PathBuf,
        op: &'static str,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: key status {status} is not one the kernel documents")]
    UnknownStatus { path: PathBuf, status: u32 },
}

fn open_dir(path: &Path) -> Result<File, FscryptError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| FscryptError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn ioctl_error(path: &Path, op: &'static str, errno: i32) -> FscryptError {
    let hint = match errno {
        libc::EOPNOTSUPP => {
            " (expected an ext4 filesystem made with `-O encrypt` and a kernel with CONFIG_FS_ENCRYPTION)"
        }
        libc::ENOTEMPTY => " (a policy can only be set on an empty directory)",
        libc::EEXIST => " (the directory already has a different policy)",
        libc::ENOKEY => " (the key is not in the kernel: unlock first)",
        _ => "",
    };
    FscryptError::Ioctl {
        path: path.to_path_buf(),
        op,
        hint,
        source: io::Error::from_raw_os_error(errno),
    }
}

/// Adds `key` to the filesystem that holds `dir` (usually the mount root).
/// Adding a key that is already present is not an error.
pub fn add_key(dir: &Path, key: &[u8; 32]) -> Result<KeyIdentifier, FscryptError> {
    let file = open_dir(dir)?;
    sys::add_key(file.as_fd(), key)
        .map(KeyIdentifier)
        .map_err(|errno| ioctl_error(dir, "FS_IOC_ADD_ENCRYPTION_KEY", errno))
}

/// Removes the key `key` from the filesystem of `dir`, for all users.
/// `Ok(None)` when it was not there.
pub fn remove_key(dir: &Path, key: &KeyIdentifier) -> Result<Option<Removal>, FscryptError> {
    let file = open_dir(dir)?;
    match sys::remove_key(file.as_fd(), &key.0, true) {
        Ok(flags) => Ok(Some(Removal {
            files_busy: flags & sys::REMOVAL_FILES_BUSY != 0,
            other_users: flags & sys::REMOVAL_OTHER_USERS != 0,
        })),
        Err(libc::ENOKEY) => Ok(None),
        Err(errno) => Err(ioctl_error(
            dir,
            "FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS",
            errno,
        )),
    }
}

/// Whether `key` is in the kernel for the filesystem of `dir`.
pub fn key_status(dir: &Path, key: &KeyIdentifier) -> Result<KeyStatus, FscryptError> {
    let file = open_dir(dir)?;
    let (status, _flags, users) = sys::key_status(file.as_fd(), &key.0)
        .map_err(|errno| ioctl_error(dir, "FS_IOC_GET_ENCRYPTION_KEY_STATUS", errno))?;
    match status {
        sys::KEY_STATUS_ABSENT => Ok(KeyStatus::Absent),
        sys::KEY_STATUS_PRESENT => Ok(KeyStatus::Present { users }),
        sys::KEY_STATUS_INCOMPLETELY_REMOVED => Ok(KeyStatus::IncompletelyRemoved),
        status => Err(FscryptError::UnknownStatus {
            path: dir.to_path_buf(),
            status,
        }),
    }
}

/// Sets bulkhead's v2 policy for `key` on the empty directory `dir`.
/// Setting the same policy again is accepted by the kernel.
pub fn set_policy(dir: &Path, key: &KeyIdentifier) -> Result<(), FscryptError> {
    let file = open_dir(dir)?;
    let policy = sys::PolicyV2 {
        version: sys::POLICY_V2,
        contents_encryption_mode: sys::MODE_AES_256_XTS,
        filenames_encryption_mode: sys::MODE_AES_256_CTS,
        flags: sys::POLICY_FLAGS_PAD_32,
        log2_data_unit_size: 0,
        reserved: [0; 3],
        master_key_identifier: key.0,
    };
    sys::set_policy(file.as_fd(), &policy)
        .map_err(|errno| ioctl_error(dir, "FS_IOC_SET_ENCRYPTION_POLICY", errno))
}

/// The policy of `dir`, `None` if it has none.
pub fn get_policy(dir: &Path) -> Result<Option<Policy>, FscryptError> {
    let file = open_dir(dir)?;
    sys::get_policy(file.as_fd())
        .map(|p| p.as_ref().map(Policy::from_raw))
        .map_err(|errno| ioctl_error(dir, "FS_IOC_GET_ENCRYPTION_POLICY_EX", errno))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn identifiers_show_as_hex() {
        let id = KeyIdentifier([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{}\"", "ab".repeat(16))
        );
    }

    #[test]
    fn a_directory_outside_an_encrypting_filesystem_has_no_policy_or_says_why() {
        let dir = tempfile::tempdir().unwrap();
        // tmpfs, ext4 without `-O encrypt`, or an unencrypted directory: either
        // "no policy" or a clear unsupported error, never a bogus policy.
        match get_policy(dir.path()) {
            Ok(policy) => assert_eq!(policy, None),
            Err(FscryptError::Ioctl { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
