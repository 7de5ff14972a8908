//! Bearer tokens of the control plane.
//!
//! A token is `bht_<id>_<secret>`: `id` is 64 random bits (16 hex digits), public,
//! the token's name in the audit log and for revocation; `secret` is
//! 256 random bits (64 hex digits) that only the holder ever sees. The store keeps the
//! SHA-256 of the secret, never the secret, so a copy of the database lets nobody act
//! as a token holder. [`Store::authenticate_token`] looks the token up by id and
//! compares digests in constant time; it refuses expired and revoked tokens, each with
//! its own error so the daemon can audit why.
//!
//! The store does not know roles: `role` and `tenant` are text the daemon interprets.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Store;
use crate::time::now_rfc3339;

/// Prefix of every token, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "bht_";

/// A token as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Public id (16 hex digits).
    pub id: String,
    /// Who holds it (a person or a service), as recorded in the audit log.
    pub subject: String,
    /// The role it grants (the daemon's vocabulary).
    pub role: String,
    /// The tenant a tenant role is bound to.
    pub tenant: Option<String>,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
    /// Unix seconds when it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// What a new token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Who holds it.
    pub subject: String,
    /// The role.
    pub role: String,
    /// For tenant roles: the tenant.
    pub tenant: Option<String>,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

/// A freshly created token: the only time its secret exists outside its holder.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    /// What was stored.
    pub info: TokenInfo,
    /// The bearer token to hand to the holder, `bht_<id>_<secret>`.
    pub token: String,
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The text is not shaped like a token.
    #[error("not a bulkhead token (expected bht_<16 hex>_<64 hex>)")]
    Malformed,
    /// No token with this id (or the secret does not match it).
    #[error("token {id} is unknown or its secret does not match")]
    Unknown {
        /// The id the text named.
        id: String,
    },
    /// The token expired.
    #[error("token {id} expired at unix time {expires_at}")]
    Expired {
        /// The token's id.
        id: String,
        /// When it expired.
        expires_at: i64,
    },
    /// The token was revoked.
    #[error("token {id} was revoked at unix time {revoked_at}")]
    Revoked {
        /// The token's id.
        id: String,
        /// When.
        revoked_at: i64,
    },
    /// The random source failed.
    #[error("cannot draw random bytes for a token")]
    Random(#[source] getrandom::Error),
    /// The database failed.
    #[error("api token table")]
    Database(#[source] rusqlite::Error),
}

impl TokenError {
    /// The token id this error is about, when the text named one.
    pub fn token_id(&self) -> Option<&str> {
        match self {
            TokenError::Unknown { id }
            | TokenError::Expired { id, .. }
            | TokenError::Revoked { id, .. } => Some(id),
            _ => None,
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Equal without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits `bht_<id>_<secret>` into its hex parts.
fn parse(token: &str) -> Result<(&str, &str), TokenError> {
    let rest = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
    let hex_of = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex_of(id, 16) && hex_of(secret, 64) {
        Ok((id, secret))
    } else {
        Err(TokenError::Malformed)
    }
}

fn row_to_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: row.get(0)?,
        subject: row.get(1)?,
        role: row.get(2)?,
        tenant: row.get(3)?,
        created_at: row.get(4)?,
        expires_at: row.get(5)?,
        revoked_at: row.get(6)?,
    })
}

const COLUMNS: &str = "id, subject, role, tenant, created_at, expires_at, revoked_at";

impl Store {
    /// Creates a token; returns it with its secret, which is not stored.
    pub fn create_token(&mut self, new: &NewToken) -> Result<CreatedToken, TokenError> {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id).map_err(TokenError::Random)?;
        getrandom::fill(&mut secret).map_err(TokenError::Random)?;
        let id = hex::encode(id);
        let secret_hex = hex::encode(secret);
        let info = TokenInfo {
            id: id.clone(),
            subject: new.subject.clone(),
            role: new.role.clone(),
            tenant: new.tenant.clone(),
            created_at: now_rfc3339(),
            expires_at: new.expires_at,
            revoked_at: None,
        };
        self.conn
            .execute(
                "INSERT INTO api_tokens (id, secret_sha256, subject, role, tenant, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    info.id,
                    sha256_hex(secret_hex.as_bytes()),
                    info.subject,
                    info.role,
                    info.tenant,
                    info.created_at,
                    info.expires_at
                ],
            )
            .map_err(TokenError::Database)?;
        Ok(CreatedToken {
            info,
            token: format!("{TOKEN_PREFIX}{id}_{secret_hex}"),
        })
    }

    /// The token's grant if `token` is genuine, unexpired at `now` (unix seconds) and
    /// not revoked.
    pub fn authenticate_token(&self, token: &str, now: i64) -> Result<TokenInfo, TokenError> {
        let (id, secret) = parse(token)?;
        let found: Option<(TokenInfo, String)> = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS}, secret_sha256 FROM api_tokens WHERE id = ?1"),
                params![id],
                |row| Ok((row_to_info(row)?, row.get(7)?)),
            )
            .optional()
            .map_err(TokenError::Database)?;
        let unknown = || TokenError::Unknown { id: id.to_owned() };
        let (info, digest) = found.ok_or_else(unknown)?;
        if !constant_time_eq(
            sha256_hex(secret.to_ascii_lowercase().as_bytes()).as_bytes(),
            digest.as_bytes(),
        ) {
            return Err(unknown());
        }
        if let Some(revoked_at) = info.revoked_at {
            return Err(TokenError::Revoked {
                id: info.id,
                revoked_at,
            });
        }
        if now >= info.expires_at {
            return Err(TokenError::Expired {
                id: info.id,
                expires_at: info.expires_at,
            });
        }
        Ok(info)
    }

    /// Revokes a token at `now`; returns whether a live token was revoked.
    pub fn revoke_token(&mut self, id: &str, now: i64) -> Result<bool, TokenError> {
        self.conn
            .execute(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map(|n| n > 0)
            .map_err(TokenError::Database)
    }

    /// One token, if it exists.
    pub fn token(&self, id: &str) -> Result<Option<TokenInfo>, TokenError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1"),
                params![id],
                row_to_info,
            )
            .optional()
            .map_err(TokenError::Database)
    }

    /// Every token, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, TokenError> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id"
            ))
            .map_err(TokenError::Database)?;
        statement
            .query_map([], row_to_info)
            .and_then(|rows| rows.collect())
            .map_err(TokenError::Database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_at: i64) -> NewToken {
        NewToken {
            subject: "carol".to_owned(),
            role: "tenant-admin".to_owned(),
            tenant: Some("web".to_owned()),
            expires_at,
        }
    }

    #[test]
    fn only_the_digest_is_stored_and_the_token_authenticates() {
        let mut store = Store::open_in_memory().unwrap();
        let created = store.create_token(&grant(2_000)).unwrap();
        let secret = created.token.rsplit('_').next().unwrap().to_owned();
        let stored: String = store
            .conn
            .query_row("SELECT secret_sha256 FROM api_tokens", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, secret);
        assert_eq!(stored, sha256_hex(secret.as_bytes()));
        let info = store.authenticate_token(&created.token, 1_000).unwrap();
        assert_eq!(info, created.info);
    }

    #[test]
    fn wrong_secret_expired_and_revoked_are_refused() {
        let mut store = Store::open_in_memory().unwrap();
        let created = store.create_token(&grant(2_000)).unwrap();
        let id = created.info.id.clone();
        let forged = format!("{TOKEN_PREFIX}{id}_{}", "0".repeat(64));
        assert!(matches!(
            store.authenticate_token(&forged, 1_000),
            Err(TokenError::Unknown { .. })
        ));
        assert!(matches!(
            store.authenticate_token("Bearer nonsense", 1_000),
            Err(TokenError::Malformed)
        ));
        assert!(matches!(
            store.authenticate_token(&created.token, 2_000),
            Err(TokenError::Expired {
                expires_at: 2_000,
                ..
            })
        ));
        assert!(store.revoke_token(&id, 1_500).unwrap());
        assert!(!store.revoke_token(&id, 1_600).unwrap(), "revoking twice");
        assert!(matches!(
            store.authenticate_token(&created.token, 1_000),
            Err(TokenError::Revoked {
                revoked_at: 1_500,
                ..
            })
        ));
        assert_eq!(store.tokens().unwrap().len(), 1);
    }
}
