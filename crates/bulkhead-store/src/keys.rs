//! Wrapped tenant keys.
//!
//! Each tenant has one random 256-bit key: the fscrypt key of its volume.
//! The store never holds it in the clear. [`Store::create_tenant_key`] draws
//! it from the kernel, **wraps** it with AES-256-GCM under a key-encryption
//! key (KEK) derived from the platform [`MasterKey`] with HKDF-SHA256
//! (`info` = a fixed label, the tenant name and the key version), and stores
//! only the wrapped form, its 96-bit nonce, the version and the master key's
//! public [`MasterKey::id`]. [`Store::unwrap_tenant_key`] reverses that and
//! hands back the key in [`Zeroizing`] memory, for the volume code to give
//! to the kernel and drop.
//!
//! Because the KEK depends on tenant and version and the same bytes are the
//! GCM associated data, a row copied to another tenant, or a version number
//! edited, fails authentication like any other tampering.
//!
//! # Crypto-shredding
//!
//! [`Store::destroy_tenant_key`] deletes the row: once no copy of the
//! wrapped key remains, the volume's contents cannot be decrypted by anyone,
//! including the holder of the master key. The audit log is separate and
//! append-only; it records *that* a key was destroyed (the caller audits the
//! call) and never holds key material.
//!
//! Where copies could linger, and what is done about each:
//!
//! - **Freed database pages.** Every connection runs with
//!   `PRAGMA secure_delete = ON`, so SQLite overwrites deleted cells and freed
//!   pages with zeros instead of leaving them in the free list. `VACUUM` is
//!   therefore not needed (and in WAL mode it would copy the whole database
//!   through the WAL, making things worse, not better).
//! - **The WAL file.** A commit appends whole page images to `<db>-wal`;
//!   older images of the page that held the row can sit there until the WAL
//!   is reset and overwritten. After the delete, destroy runs
//!   `PRAGMA wal_checkpoint(TRUNCATE)`, which copies the zeroed page into the
//!   database file and truncates the WAL to zero bytes. A reader holding an
//!   old snapshot (another connection mid-transaction) blocks that;
//!   [`DestroyedKey::wal_truncated`] says whether it happened, and the
//!   caller should retry ([`Store::checkpoint_truncate`]) until it has.
//! - **Below SQLite.** Truncating or overwriting a file does not promise the
//!   old blocks are erased on the device (journaling filesystems, SSD wear
//!   levelling, snapshots), and **backups** of the state file hold the
//!   wrapped key for as long as they are kept. Against those the only
//!   complete answer is to rotate the master key (re-wrap the remaining
//!   tenants) and destroy the old one; then old copies wrap a key nobody can
//!   unwrap.

mod master;

use std::fmt;

use aes_gcm::aead::array::Array;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use rusqlite::{OptionalExtension, TransactionBehavior};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use master::{MASTER_KEY_LEN, MasterKey, MasterKeyError};

use crate::Store;
use crate::time::now_rfc3339;

/// Length of a tenant key in bytes (AES-256-XTS for fscrypt takes 64 bytes
/// of derived key material, which the kernel derives from this with HKDF).
pub const TENANT_KEY_LEN: usize = 32;

/// Length of a GCM nonce.
pub const NONCE_LEN: usize = 12;

/// Length of the GCM tag appended to the wrapped key.
pub const TAG_LEN: usize = 16;

/// The version [`Store::create_tenant_key`] writes.
pub const CURRENT_KEY_VERSION: u32 = 1;

/// The wrapping scheme recorded with each key.
pub const WRAP_ALGORITHM: &str = "aes-256-gcm+hkdf-sha256";

/// Fixed HKDF salt: domain separation for everything derived from the
/// master key (the master key itself is uniformly random).
const HKDF_SALT: &[u8] = b"bulkhead master key";

/// Label in front of the tenant name and version in the KEK's HKDF info.
const WRAP_INFO_LABEL: &[u8] = b"bulkhead/tenant-key-wrap/v1";

/// A tenant's key in the clear, zeroed when dropped.
pub type TenantKey = Zeroizing<[u8; TENANT_KEY_LEN]>;

/// Public facts about a stored tenant key (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeyInfo {
    /// The tenant.
    pub tenant: String,
    /// Version of the wrapping (part of the KEK derivation).
    pub version: u32,
    /// [`WRAP_ALGORITHM`] at the time of wrapping.
    pub algorithm: String,
    /// [`MasterKey::id`] of the master key that wrapped it.
    pub master_key_id: String,
    /// When it was created (RFC 3339, UTC).
    pub created_at: String,
}

/// What [`Store::destroy_tenant_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestroyedKey {
    /// The key that was destroyed.
    pub info: TenantKeyInfo,
    /// Whether the WAL was checkpointed and truncated to zero bytes after
    /// the delete (false while another connection holds an old snapshot;
    /// retry with [`Store::checkpoint_truncate`]).
    pub wal_truncated: bool,
}

/// Why [`Store::create_tenant_key`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateTenantKeyError {
    #[error(
        "tenant {tenant:?} already has a key (version {version}); destroy it first to replace it"
    )]
    AlreadyExists { tenant: String, version: u32 },
    #[error("tenant name is empty or contains a NUL byte (expected a DNS-1123 label)")]
    BadTenantName { tenant: String },
    #[error("could not draw a random key for tenant {tenant:?}")]
    Random {
        tenant: String,
        #[source]
        source: getrandom::Error,
    },
    #[error("could not wrap the key of tenant {tenant:?}")]
    Wrap { tenant: String },
    #[error("{path}: could not store the key of tenant {tenant:?}")]
    Database {
        path: std::path::PathBuf,
        tenant: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Why [`Store::unwrap_tenant_key`] failed.
#[derive(Debug, thiserror::Error)]
pub enum UnwrapTenantKeyError {
    #[error("tenant {tenant:?} has no key (never created, or destroyed)")]
    NotFound { tenant: String },
    #[error(
        "tenant {tenant:?}: key was wrapped by master key {stored} but master key {given} was given (expected the platform's key source to hold the original master key)"
    )]
    WrongMasterKey {
        tenant: String,
        stored: String,
        given: String,
    },
    #[error(
        "tenant {tenant:?}: wrapped key failed authentication (the row was altered, or the master key id was forged)"
    )]
    Tampered { tenant: String },
    #[error("tenant {tenant:?}: stored key row is malformed: {reason}")]
    Malformed {
        tenant: String,
        reason: &'static str,
    },
    #[error(
        "tenant {tenant:?}: unknown wrapping algorithm {algorithm:?} (expected {WRAP_ALGORITHM:?})"
    )]
    UnknownAlgorithm { tenant: String, algorithm: String },
    #[error("{path}: could not read the key of tenant {tenant:?}")]
    Database {
        path: std::path::PathBuf,
        tenant: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Why [`Store::destroy_tenant_key`] or [`Store::checkpoint_truncate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DestroyTenantKeyError {
    #[error("tenant {tenant:?} has no key to destroy")]
    NotFound { tenant: String },
    #[error("{path}: could not delete the key of tenant {tenant:?}")]
    Database {
        path: std::path::PathBuf,
        tenant: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: could not checkpoint and truncate the WAL")]
    Checkpoint {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// Everything read from a `tenant_keys` row.
struct Row {
    info: TenantKeyInfo,
    nonce: Vec<u8>,
    wrapped: Vec<u8>,
}

impl Store {
    /// Creates, wraps and stores a new random key for `tenant`. Fails with
    /// [`CreateTenantKeyError::AlreadyExists`] if the tenant has one: a key
    /// is never silently replaced, since that would orphan the data it
    /// encrypts.
    pub fn create_tenant_key(
        &mut self,
        master: &MasterKey,
        tenant: &str,
    ) -> Result<TenantKeyInfo, CreateTenantKeyError> {
        if tenant.is_empty() || tenant.contains('\0') {
            return Err(CreateTenantKeyError::BadTenantName {
                tenant: tenant.to_owned(),
            });
        }
        let version = CURRENT_KEY_VERSION;
        let mut key: TenantKey = Zeroizing::new([0u8; TENANT_KEY_LEN]);
        getrandom::fill(&mut key[..]).map_err(|source| CreateTenantKeyError::Random {
            tenant: tenant.to_owned(),
            source,
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|source| CreateTenantKeyError::Random {
            tenant: tenant.to_owned(),
            source,
        })?;
        let wrapped = wrap(master, tenant, version, &nonce, &key).ok_or_else(|| {
            CreateTenantKeyError::Wrap {
                tenant: tenant.to_owned(),
            }
        })?;
        let info = TenantKeyInfo {
            tenant: tenant.to_owned(),
            version,
            algorithm: WRAP_ALGORITHM.to_owned(),
            master_key_id: master.id(),
            created_at: now_rfc3339(),
        };
        let path = self.display_path();
        let db = |source| CreateTenantKeyError::Database {
            path: path.clone(),
            tenant: tenant.to_owned(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let existing: Option<u32> = tx
            .query_row(
                "SELECT key_version FROM tenant_keys WHERE tenant = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        if let Some(version) = existing {
            return Err(CreateTenantKeyError::AlreadyExists {
                tenant: tenant.to_owned(),
                version,
            });
        }
        tx.execute(
            "INSERT INTO tenant_keys
                 (tenant, key_version, algorithm, master_key_id, nonce, wrapped_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                info.tenant,
                info.version,
                info.algorithm,
                info.master_key_id,
                &nonce[..],
                &wrapped[..],
                info.created_at,
            ],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(info)
    }

    /// The public facts about `tenant`'s key, or `None` if it has none.
    pub fn tenant_key_info(
        &self,
        tenant: &str,
    ) -> Result<Option<TenantKeyInfo>, UnwrapTenantKeyError> {
        Ok(self.read_key_row(tenant)?.map(|row| row.info))
    }

    /// Unwraps `tenant`'s key with `master`. The result lives in zeroed-on-drop
    /// memory; keep it no longer than it takes to hand it to the kernel.
    pub fn unwrap_tenant_key(
        &self,
        master: &MasterKey,
        tenant: &str,
    ) -> Result<TenantKey, UnwrapTenantKeyError> {
        let row = self
            .read_key_row(tenant)?
            .ok_or_else(|| UnwrapTenantKeyError::NotFound {
                tenant: tenant.to_owned(),
            })?;
        if row.info.algorithm != WRAP_ALGORITHM {
            return Err(UnwrapTenantKeyError::UnknownAlgorithm {
                tenant: tenant.to_owned(),
                algorithm: row.info.algorithm,
            });
        }
        let given = master.id();
        if row.info.master_key_id != given {
            return Err(UnwrapTenantKeyError::WrongMasterKey {
                tenant: tenant.to_owned(),
                stored: row.info.master_key_id,
                given,
            });
        }
        let malformed = |reason| UnwrapTenantKeyError::Malformed {
            tenant: tenant.to_owned(),
            reason,
        };
        let nonce: [u8; NONCE_LEN] = row
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| malformed("nonce is not 12 bytes"))?;
        let wrapped: [u8; TENANT_KEY_LEN + TAG_LEN] = row
            .wrapped
            .as_slice()
            .try_into()
            .map_err(|_| malformed("wrapped key is not 48 bytes"))?;
        unwrap(master, tenant, row.info.version, &nonce, &wrapped).ok_or_else(|| {
            UnwrapTenantKeyError::Tampered {
                tenant: tenant.to_owned(),
            }
        })
    }

    /// Crypto-shreds `tenant`'s key: deletes its row (zeroed in place by
    /// `secure_delete`) and checkpoints the WAL with truncation. See the
    /// module docs for what this does and does not reach.
    pub fn destroy_tenant_key(
        &mut self,
        tenant: &str,
    ) -> Result<DestroyedKey, DestroyTenantKeyError> {
        let path = self.display_path();
        let db = |source| DestroyTenantKeyError::Database {
            path: path.clone(),
            tenant: tenant.to_owned(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let info = tx
            .query_row(
                "SELECT tenant, key_version, algorithm, master_key_id, created_at
                 FROM tenant_keys WHERE tenant = ?1",
                [tenant],
                |r| {
                    Ok(TenantKeyInfo {
                        tenant: r.get(0)?,
                        version: r.get(1)?,
                        algorithm: r.get(2)?,
                        master_key_id: r.get(3)?,
                        created_at: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(db)?
            .ok_or_else(|| DestroyTenantKeyError::NotFound {
                tenant: tenant.to_owned(),
            })?;
        tx.execute("DELETE FROM tenant_keys WHERE tenant = ?1", [tenant])
            .map_err(db)?;
        tx.commit().map_err(db)?;
        let wal_truncated = self.checkpoint_truncate()?;
        Ok(DestroyedKey {
            info,
            wal_truncated,
        })
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`: copies every committed page into
    /// the database file and truncates the WAL to zero bytes. Returns false
    /// when a reader on another connection prevented completion (try again
    /// later); true for an in-memory store, which has no WAL.
    pub fn checkpoint_truncate(&mut self) -> Result<bool, DestroyTenantKeyError> {
        if self.path.is_none() {
            return Ok(true);
        }
        let (busy, log, checkpointed): (i64, i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|source| DestroyTenantKeyError::Checkpoint {
                path: self.display_path(),
                source,
            })?;
        Ok(busy == 0 && log == checkpointed)
    }

    fn read_key_row(&self, tenant: &str) -> Result<Option<Row>, UnwrapTenantKeyError> {
        self.conn
            .query_row(
                "SELECT tenant, key_version, algorithm, master_key_id, created_at, nonce, wrapped_key
                 FROM tenant_keys WHERE tenant = ?1",
                [tenant],
                |r| {
                    Ok(Row {
                        info: TenantKeyInfo {
                            tenant: r.get(0)?,
                            version: r.get(1)?,
                            algorithm: r.get(2)?,
                            master_key_id: r.get(3)?,
                            created_at: r.get(4)?,
                        },
                        nonce: r.get(5)?,
                        wrapped: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|source| UnwrapTenantKeyError::Database {
                path: self.display_path(),
                tenant: tenant.to_owned(),
                source,
            })
    }
}

impl fmt::Display for TenantKeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant {} key v{} ({}, master key {})",
            self.tenant, self.version, self.algorithm, self.master_key_id
        )
    }
}

/// HKDF-SHA256 with bulkhead's salt, from the master key, into `out`.
pub(crate) fn derive(master: &MasterKey, info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &master.bytes()[..]);
    // Outputs here are at most 32 bytes, far below HKDF-SHA256's limit of
    // 255 * 32 bytes, the only way `expand` can fail.
    let expanded = hk.expand(info, out);
    debug_assert!(expanded.is_ok());
}

/// The HKDF info (and GCM associated data) for a tenant and version:
/// label, NUL, tenant, NUL, version as 4 big-endian bytes. Tenant names
/// contain no NUL, so distinct inputs give distinct strings.
fn wrap_context(tenant: &str, version: u32) -> Vec<u8> {
    let mut info = Vec::with_capacity(WRAP_INFO_LABEL.len() + tenant.len() + 6);
    info.extend_from_slice(WRAP_INFO_LABEL);
    info.push(0);
    info.extend_from_slice(tenant.as_bytes());
    info.push(0);
    info.extend_from_slice(&version.to_be_bytes());
    info
}

fn kek_cipher(master: &MasterKey, context: &[u8]) -> Option<Aes256Gcm> {
    let mut kek = Zeroizing::new([0u8; 32]);
    derive(master, context, &mut kek[..]);
    Aes256Gcm::new_from_slice(&kek[..]).ok()
}

fn wrap(
    master: &MasterKey,
    tenant: &str,
    version: u32,
    nonce: &[u8; NONCE_LEN],
    key: &TenantKey,
) -> Option<[u8; TENANT_KEY_LEN + TAG_LEN]> {
    let context = wrap_context(tenant, version);
    let cipher = kek_cipher(master, &context)?;
    let mut out = [0u8; TENANT_KEY_LEN + TAG_LEN];
    let (body, tag_out) = out.split_at_mut(TENANT_KEY_LEN);
    body.copy_from_slice(&key[..]);
    let tag = cipher
        .encrypt_inout_detached(&Array::from(*nonce), &context, body.into())
        .ok()?;
    tag_out.copy_from_slice(&tag);
    Some(out)
}

fn unwrap(
    master: &MasterKey,
    tenant: &str,
    version: u32,
    nonce: &[u8; NONCE_LEN],
    wrapped: &[u8; TENANT_KEY_LEN + TAG_LEN],
) -> Option<TenantKey> {
    let context = wrap_context(tenant, version);
    let cipher = kek_cipher(master, &context)?;
    let (body, tag) = wrapped.split_at(TENANT_KEY_LEN);
    let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
    let mut key: TenantKey = Zeroizing::new([0u8; TENANT_KEY_LEN]);
    key.copy_from_slice(body);
    // On a tag mismatch the buffer is left holding ciphertext, not a guess
    // at the key; it is zeroed on drop either way.
    cipher
        .decrypt_inout_detached(
            &Array::from(*nonce),
            &context,
            (&mut key[..]).into(),
            &Array::from(tag),
        )
        .ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn wrap_context_separates_tenants_and_versions() {
        assert_ne!(wrap_context("ab", 1), wrap_context("a", 1));
        assert_ne!(wrap_context("a", 1), wrap_context("a", 2));
    }

    #[test]
    fn unwrap_reverses_wrap_only_for_the_same_context() {
        let master = MasterKey::from_bytes([3; 32]);
        let key: TenantKey = Zeroizing::new([9; 32]);
        let nonce = [1; NONCE_LEN];
        let wrapped = wrap(&master, "web", 1, &nonce, &key).unwrap();
        assert_ne!(&wrapped[..32], &key[..]);
        assert_eq!(*unwrap(&master, "web", 1, &nonce, &wrapped).unwrap(), *key);
        assert!(unwrap(&master, "db", 1, &nonce, &wrapped).is_none());
        assert!(unwrap(&master, "web", 2, &nonce, &wrapped).is_none());
        assert!(unwrap(&master, "web", 1, &[2; NONCE_LEN], &wrapped).is_none());
    }
}
