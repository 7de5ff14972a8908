//! The platform master key: where it comes from and how it is checked.
//!
//! Two sources, matching the platform file's `keySource`:
//!
//! - a **file** holding 32 random bytes (or 64 hex digits and an optional
//!   newline, for keys made with `openssl rand -hex 32`). It must be a regular
//!   file owned by the user bulkhead runs as (root) with no permission bits
//!   for group or other; anything else is refused, because a key others can
//!   read protects nothing. [`MasterKey::load_or_create`] makes one with mode
//!   0600 on first use, atomically (written to a temporary file, fsync'ed,
//!   then hard-linked into place, so a concurrent reader never sees half a
//!   key and a concurrent creator never overwrites one);
//! - an **environment variable** holding 64 hex digits. The process
//!   environment cannot be scrubbed from safe Rust, so the variable stays
//!   readable in `/proc/<pid>/environ` (to root and the same user) for the
//!   life of the process; prefer the file.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

/// Length of the master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// HKDF info that derives a master key's public identifier.
const KEY_ID_INFO: &[u8] = b"bulkhead/master-key-id/v1";

/// The platform master key: wraps every tenant key, never stored in the
/// database. Its memory is zeroed on drop; `Debug` shows only [`MasterKey::id`].
pub struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_LEN]>,
}

/// Why a master key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{path}: could not open the master key file")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not read the master key file")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: master key is not a regular file (expected a file holding 32 random bytes)")]
    NotRegularFile { path: PathBuf },
    #[error(
        "{path}: master key file has mode {mode:04o}, readable or writable beyond its owner (expected 0600 or 0400: run `chmod 600 {path}`)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "{path}: master key file is owned by uid {owner} (expected uid {expected}, the user bulkhead runs as)"
    )]
    Owner {
        path: PathBuf,
        owner: u32,
        expected: u32,
    },
    #[error("{path}: master key file holds {len} bytes (expected 32 raw bytes or 64 hex digits)")]
    Malformed { path: PathBuf, len: usize },
    #[error("environment variable {var} is not set (expected the master key as 64 hex digits)")]
    EnvMissing { var: String },
    #[error("environment variable {var}: {reason} (expected the master key as 64 hex digits)")]
    EnvMalformed { var: String, reason: &'static str },
    #[error("{path}: could not create the master key file")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not draw random bytes from the kernel")]
    Random(#[source] getrandom::Error),
}

impl MasterKey {
    /// A master key from its raw bytes (tests, and callers with their own
    /// key management).
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> MasterKey {
        MasterKey {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A fresh random master key (not saved anywhere).
    pub fn generate() -> Result<MasterKey, MasterKeyError> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        getrandom::fill(&mut bytes[..]).map_err(MasterKeyError::Random)?;
        Ok(MasterKey { bytes })
    }

    /// Reads the key from `path`, refusing a file that is not a regular file
    /// owned by the current user with no group or other permission bits.
    /// The checks run on the opened descriptor, so the file checked is the
    /// file read.
    pub fn from_file(path: impl AsRef<Path>) -> Result<MasterKey, MasterKeyError> {
        let path = path.as_ref();
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nofollow())
            .open(path)
            .map_err(|source| MasterKeyError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        check_file(&file, path)?;
        // Read one byte more than the longest accepted form to detect excess.
        let mut buf = Zeroizing::new(Vec::with_capacity(2 * MASTER_KEY_LEN + 2));
        (&mut file)
            .take(2 * MASTER_KEY_LEN as u64 + 2)
            .read_to_end(&mut buf)
            .map_err(|source| MasterKeyError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let malformed = || MasterKeyError::Malformed {
            path: path.to_path_buf(),
            len: buf.len(),
        };
        if buf.len() == MASTER_KEY_LEN {
            let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
            bytes.copy_from_slice(&buf);
            return Ok(MasterKey { bytes });
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        parse_hex(text).ok_or_else(malformed)
    }

    /// Reads the key from `path`, creating it (32 random bytes, mode 0600,
    /// parent directory 0700 if missing) when there is no such file.
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<MasterKey, MasterKeyError> {
        let path = path.as_ref();
        match std::fs::symlink_metadata(path) {
            Ok(_) => return MasterKey::from_file(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(MasterKeyError::Open {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let key = MasterKey::generate()?;
        match key.write_new(path) {
            Ok(()) => Ok(key),
            // Someone else created it first: theirs wins.
            Err(MasterKeyError::Create { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                MasterKey::from_file(path)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the key from the environment variable `var` (64 hex digits).
    pub fn from_env(var: &str) -> Result<MasterKey, MasterKeyError> {
        let value = std::env::var_os(var).ok_or_else(|| MasterKeyError::EnvMissing {
            var: var.to_owned(),
        })?;
        let value = Zeroizing::new(value.into_encoded_bytes());
        from_env_value(var, &value)
    }

    /// A public identifier of this key: 16 hex digits derived one-way
    /// (HKDF-SHA256), stored beside each wrapped key so that unwrapping
    /// with another master key is reported as such, not as tampering.
    pub fn id(&self) -> String {
        let mut id = Zeroizing::new([0u8; 8]);
        super::derive(self, KEY_ID_INFO, &mut id[..]);
        hex::encode(&id[..])
    }

    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.bytes
    }

    /// Writes the key to a new file at `path`: temporary file, fsync, hard
    /// link (fails with `AlreadyExists` rather than replace), fsync of the
    /// directory.
    fn write_new(&self, path: &Path) -> Result<(), MasterKeyError> {
        let create = |source| MasterKeyError::Create {
            path: path.to_path_buf(),
            source,
        };
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(create)?;
        }
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(MasterKeyError::Random)?;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp-{}", hex::encode(suffix)));
        let tmp = PathBuf::from(tmp_name);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&self.bytes[..])?;
            file.sync_all()?;
            std::fs::hard_link(&tmp, path)?;
            File::open(parent)?.sync_all()
        })();
        let removed = std::fs::remove_file(&tmp);
        result.map_err(create)?;
        removed.map_err(create)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

fn check_file(file: &File, path: &Path) -> Result<(), MasterKeyError> {
    let meta = file.metadata().map_err(|source| MasterKeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(MasterKeyError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(MasterKeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let expected = rustix::process::geteuid().as_raw();
    if meta.uid() != expected {
        return Err(MasterKeyError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            expected,
        });
    }
    Ok(())
}

/// `O_NOFOLLOW`: a symlink in place of the key file is refused, not followed.
fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// The part of [`MasterKey::from_env`] after the lookup (the environment
/// cannot be changed from safe Rust, so tests call this).
fn from_env_value(var: &str, value: &[u8]) -> Result<MasterKey, MasterKeyError> {
    let text = value.trim_ascii();
    if text.len() != 2 * MASTER_KEY_LEN {
        return Err(MasterKeyError::EnvMalformed {
            var: var.to_owned(),
            reason: "wrong length",
        });
    }
    parse_hex(text).ok_or_else(|| MasterKeyError::EnvMalformed {
        var: var.to_owned(),
        reason: "not hexadecimal",
    })
}

fn parse_hex(text: &[u8]) -> Option<MasterKey> {
    if text.len() != 2 * MASTER_KEY_LEN {
        return None;
    }
    let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    match hex::decode_to_slice(text, &mut bytes[..]) {
        Ok(()) => Some(MasterKey { bytes }),
        Err(_) => {
            bytes.zeroize();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, content: &[u8], mode: u32) {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn reads_raw_and_hex_files_alike() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        let hexed = dir.path().join("hex");
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
        write(&raw, &bytes, 0o600);
        write(
            &hexed,
            format!("{}\n", hex::encode(bytes)).as_bytes(),
            0o400,
        );
        let a = MasterKey::from_file(&raw).unwrap();
        let b = MasterKey::from_file(&hexed).unwrap();
        assert_eq!(a.bytes(), &bytes);
        assert_eq!(b.bytes(), &bytes);
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 16);
    }

    #[test]
    fn refuses_group_or_other_access() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        for mode in [0o640, 0o604, 0o620, 0o644, 0o660] {
            write(&path, &[7u8; 32], mode);
            let err = MasterKey::from_file(&path).unwrap_err();
            assert!(
                matches!(err, MasterKeyError::Permissions { mode: m, .. } if m == mode),
                "{mode:o}: {err}"
            );
        }
    }

    #[test]
    fn refuses_wrong_length_symlinks_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        write(&short, &[1u8; 31], 0o600);
        assert!(matches!(
            MasterKey::from_file(&short).unwrap_err(),
            MasterKeyError::Malformed { len: 31, .. }
        ));
        let bad_hex = dir.path().join("badhex");
        write(&bad_hex, &[b'z'; 64], 0o600);
        assert!(matches!(
            MasterKey::from_file(&bad_hex).unwrap_err(),
            MasterKeyError::Malformed { len: 64, .. }
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&short, &link).unwrap();
        assert!(matches!(
            MasterKey::from_file(&link).unwrap_err(),
            MasterKeyError::Open { .. }
        ));
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(
            MasterKey::from_file(&sub).unwrap_err(),
            MasterKeyError::NotRegularFile { .. }
        ));
    }

    #[test]
    fn creates_once_with_mode_0600_then_reads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let first = MasterKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        assert_eq!(
            std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let second = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(first.bytes(), second.bytes());
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn env_value_is_64_hex_digits() {
        let bytes = [0x5a; 32];
        let key = from_env_value("K", hex::encode(bytes).as_bytes()).unwrap();
        assert_eq!(key.bytes(), &bytes);
        assert!(matches!(
            from_env_value("K", b"abc").unwrap_err(),
            MasterKeyError::EnvMalformed {
                reason: "wrong length",
                ..
            }
        ));
        assert!(matches!(
            from_env_value("K", &[b'g'; 64]).unwrap_err(),
            MasterKeyError::EnvMalformed {
                reason: "not hexadecimal",
                ..
            }
        ));
        assert!(matches!(
            MasterKey::from_env("BULKHEAD_TEST_SURELY_UNSET_VARIABLE").unwrap_err(),
            MasterKeyError::EnvMissing { .. }
        ));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = MasterKey::from_bytes([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains(&key.id()));
    }
}
