//! The append-only, hash-chained audit log.
//!
//! Each [`AuditRecord`] carries `prev_hash` (the previous record's `hash`,
//! or [`GENESIS_HASH`] for the first) and `hash`, the SHA-256 of all its
//! other fields in a fixed, length-prefixed encoding (see
//! [`AuditRecord::compute_hash`]). Triggers make the database itself refuse
//! `UPDATE` and `DELETE` on the table. After each append the head
//! `(seq, hash)` is written atomically to `<db>.audit-head` (the *anchor*),
//! so cutting records off the end is detected too. [`Store::verify_audit`]
//! checks all of it; see [`verify`] for how it classifies tampering.
//!
//! Records are immutable, so a change is logged as an *intent* (result
//! [`RESULT_PENDING`]) written before the change, then an *outcome* that
//! refers to it by `refers_to`. [`Store::audited`] does both around a
//! closure, each durable on its own: for host changes, whose intent must be
//! on disk before the kernel is touched. Store-only changes commit intent,
//! change and outcome in one transaction, many of them per fsync
//! ([`Store::audited_batch`], see [`batch`]).

mod anchor;
pub mod batch;
pub mod verify;

use std::fmt;
use std::io;
use std::path::PathBuf;

use rusqlite::{OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::Store;
use crate::digest::Canonical;
use crate::time::now_rfc3339;

pub use anchor::AuditHead;

/// `prev_hash` of the first record: 64 hex zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `result` of an intent record, written before the change it describes.
pub const RESULT_PENDING: &str = "pending";

/// Domain separator hashed ahead of every record's fields.
const HASH_DOMAIN: &str = "bulkhead-audit-v1";

/// One stored audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    pub actor: String,
    /// What was done, e.g. `apply`, `suspend`, `delete`.
    pub action: String,
    /// What it was done to, e.g. `tenant/web`.
    pub object: String,
    /// Digest of the object before the change, if it existed.
    pub before_digest: Option<String>,
    /// Digest of the object after the change, if it still exists.
    pub after_digest: Option<String>,
    /// [`RESULT_PENDING`] for an intent; an outcome otherwise.
    pub result: String,
    pub detail: Option<String>,
    /// The intent this record reports the outcome of.
    pub refers_to: Option<u64>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// SHA-256 (lowercase hex) over the domain tag `bulkhead-audit-v1` and
    /// every field except `hash`, in declaration order, each tagged and
    /// length-prefixed (see the `digest` module): `seq`, `time`, `actor`,
    /// `action`, `object`, `before_digest`, `after_digest`, `result`,
    /// `detail`, `refers_to`, `prev_hash`.
    pub fn compute_hash(&self) -> String {
        let mut c = Canonical::new(HASH_DOMAIN);
        c.int(to_i64(self.seq))
            .str(&self.time)
            .str(&self.actor)
            .str(&self.action)
            .str(&self.object)
            .opt_str(self.before_digest.as_deref())
            .opt_str(self.after_digest.as_deref())
            .str(&self.result)
            .opt_str(self.detail.as_deref())
            .opt_int(self.refers_to.map(to_i64))
            .str(&self.prev_hash);
        c.finish()
    }

    /// True for an intent record (result [`RESULT_PENDING`]).
    pub fn is_intent(&self) -> bool {
        self.result == RESULT_PENDING
    }
}

/// Sequence numbers are stored as SQLite integers (i64); values beyond
/// i64::MAX cannot occur in a real log and saturate.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A record to append; the store fills in `seq`, `time`, `prev_hash` and
/// `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub object: String,
    pub before_digest: Option<String>,
    pub after_digest: Option<String>,
    pub result: String,
    pub detail: Option<String>,
    pub refers_to: Option<u64>,
}

impl AuditEntry {
    /// An entry with the given result and no digests, detail or reference.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        object: impl Into<String>,
        result: impl Into<String>,
    ) -> Self {
        AuditEntry {
            actor: actor.into(),
            action: action.into(),
            object: object.into(),
            before_digest: None,
            after_digest: None,
            result: result.into(),
            detail: None,
            refers_to: None,
        }
    }

    /// An intent: result [`RESULT_PENDING`].
    pub fn intent(
        actor: impl Into<String>,
        action: impl Into<String>,
        object: impl Into<String>,
    ) -> Self {
        AuditEntry::new(actor, action, object, RESULT_PENDING)
    }

    pub fn with_before(mut self, digest: impl Into<String>) -> Self {
        self.before_digest = Some(digest.into());
        self
    }

    pub fn with_after(mut self, digest: impl Into<String>) -> Self {
        self.after_digest = Some(digest.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_refers_to(mut self, seq: u64) -> Self {
        self.refers_to = Some(seq);
        self
    }
}

/// How a change described by an intent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Succeeded,
    Failed,
}

impl AuditOutcome {
    /// The `result` text stored for this outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Failed => "failed",
        }
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why appending an audit record failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendAuditError {
    #[error("audit entry {field} is empty (expected a non-empty string)")]
    EmptyField { field: &'static str },
    #[error(
        "audit record {refers_to} does not exist (expected `refers_to` to name an earlier record)"
    )]
    ReferenceNotFound { refers_to: u64 },
    #[error(
        "audit record {refers_to} has result {result:?} (expected an intent with result \"pending\")"
    )]
    NotAnIntent { refers_to: u64, result: String },
    #[error(
        "audit intent {refers_to} already has an outcome in record {outcome} (expected one outcome per intent)"
    )]
    OutcomeExists { refers_to: u64, outcome: u64 },
    #[error("outcome result is \"pending\" (expected a final result)")]
    PendingOutcome,
    #[error("could not append to the audit log")]
    Database(#[source] rusqlite::Error),
    #[error(
        "audit record {seq} was committed but the anchor {path} could not be updated; `verify` will report the log ahead of its anchor"
    )]
    Anchor {
        seq: u64,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why reading audit records failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadAuditError {
    #[error("could not read the audit log")]
    Database(#[source] rusqlite::Error),
    #[error("audit record at row {rowid} is malformed: {reason}")]
    Malformed { rowid: i64, reason: String },
}

/// What [`Store::audited`] did: the intent, the change's own result, and
/// the outcome record (or why it could not be written — the change ran
/// regardless, so its result is never lost).
#[derive(Debug)]
pub struct Audited<T, E> {
    pub intent: AuditRecord,
    pub result: Result<T, E>,
    pub outcome: Result<AuditRecord, AppendAuditError>,
}

pub(crate) const RECORD_COLUMNS: &str = "rowid, seq, time, actor, action, object, before_digest, \
     after_digest, result, detail, refers_to, prev_hash, hash";

/// Parse a row selected with [`RECORD_COLUMNS`]; a wrong type or a negative
/// number is reported as text, not as an error, because the verifier treats
/// it as evidence of tampering.
pub(crate) fn record_from_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, Result<AuditRecord, String>)> {
    let rowid: i64 = row.get(0)?;
    let parse = || -> Result<AuditRecord, String> {
        fn col<T: rusqlite::types::FromSql>(
            row: &rusqlite::Row<'_>,
            i: usize,
            name: &str,
        ) -> Result<T, String> {
            row.get(i).map_err(|e| format!("column {name}: {e}"))
        }
        fn num(v: i64, name: &str) -> Result<u64, String> {
            u64::try_from(v).map_err(|_| format!("column {name}: {v} is negative"))
        }
        Ok(AuditRecord {
            seq: num(col(row, 1, "seq")?, "seq")?,
            time: col(row, 2, "time")?,
            actor: col(row, 3, "actor")?,
            action: col(row, 4, "action")?,
            object: col(row, 5, "object")?,
            before_digest: col(row, 6, "before_digest")?,
            after_digest: col(row, 7, "after_digest")?,
            result: col(row, 8, "result")?,
            detail: col(row, 9, "detail")?,
            refers_to: col::<Option<i64>>(row, 10, "refers_to")?
                .map(|v| num(v, "refers_to"))
                .transpose()?,
            prev_hash: col(row, 11, "prev_hash")?,
            hash: col(row, 12, "hash")?,
        })
    };
    Ok((rowid, parse()))
}

impl Store {
    /// Append a record and return it once it is durable: the transaction is
    /// committed with `synchronous=FULL` (fsync'ed) before this returns, so
    /// a caller may write an intent and then act on it. The anchor file is
    /// updated afterwards; if that fails the record is still committed and
    /// [`AppendAuditError::Anchor`] says so.
    pub fn append_audit(&mut self, entry: &AuditEntry) -> Result<AuditRecord, AppendAuditError> {
        self.append_inner(entry, false)
    }

    /// Append an intent record (result [`RESULT_PENDING`]) for a change
    /// about to be made.
    pub fn audit_intent(&mut self, mut entry: AuditEntry) -> Result<AuditRecord, AppendAuditError> {
        entry.result = RESULT_PENDING.to_owned();
        entry.refers_to = None;
        self.append_inner(&entry, false)
    }

    /// Append the outcome of `intent`: same actor, action, object and
    /// digests, `result` from `outcome`, `refers_to = intent.seq`. Refused
    /// unless `intent` is a stored intent without an outcome yet.
    pub fn audit_outcome(
        &mut self,
        intent: &AuditRecord,
        outcome: AuditOutcome,
        detail: Option<&str>,
    ) -> Result<AuditRecord, AppendAuditError> {
        let entry = AuditEntry {
            actor: intent.actor.clone(),
            action: intent.action.clone(),
            object: intent.object.clone(),
            before_digest: intent.before_digest.clone(),
            after_digest: intent.after_digest.clone(),
            result: outcome.as_str().to_owned(),
            detail: detail.map(str::to_owned),
            refers_to: Some(intent.seq),
        };
        self.append_inner(&entry, true)
    }

    /// Write an intent for `entry`, run `change`, then write its outcome
    /// (`failed` with the error text as detail if `change` fails). Returns
    /// an error, without running `change`, only if the intent could not be
    /// written.
    pub fn audited<T, E: fmt::Display>(
        &mut self,
        entry: AuditEntry,
        change: impl FnOnce() -> Result<T, E>,
    ) -> Result<Audited<T, E>, AppendAuditError> {
        let intent = self.audit_intent(entry)?;
        let result = change();
        let outcome = match &result {
            Ok(_) => self.audit_outcome(&intent, AuditOutcome::Succeeded, None),
            Err(e) => self.audit_outcome(&intent, AuditOutcome::Failed, Some(&e.to_string())),
        };
        Ok(Audited {
            intent,
            result,
            outcome,
        })
    }

    /// Records with `seq > after`, in seq order, at most `limit` of them.
    pub fn audit_records(
        &self,
        after: u64,
        limit: u64,
    ) -> Result<Vec<AuditRecord>, ReadAuditError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"
            ))
            .map_err(ReadAuditError::Database)?;
        let rows = stmt
            .query_map((to_i64(after), to_i64(limit)), record_from_row)
            .map_err(ReadAuditError::Database)?;
        let mut out = Vec::new();
        for row in rows {
            let (rowid, record) = row.map_err(ReadAuditError::Database)?;
            out.push(record.map_err(|reason| ReadAuditError::Malformed { rowid, reason })?);
        }
        Ok(out)
    }

    /// The last record's `(seq, hash)`, or `None` for an empty log.
    pub fn audit_head(&self) -> Result<Option<AuditHead>, ReadAuditError> {
        self.conn
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(ReadAuditError::Database)?
            .map(|(seq, hash)| {
                Ok(AuditHead {
                    seq: u64::try_from(seq).map_err(|_| ReadAuditError::Malformed {
                        rowid: 0,
                        reason: format!("head seq {seq} is negative"),
                    })?,
                    hash,
                })
            })
            .transpose()
    }

    fn append_inner(
        &mut self,
        entry: &AuditEntry,
        outcome: bool,
    ) -> Result<AuditRecord, AppendAuditError> {
        let db = AppendAuditError::Database;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let record = insert_record(&tx, entry, outcome)?;
        tx.commit().map_err(db)?;
        if let Some(path) = &self.audit_head {
            let head = AuditHead {
                seq: record.seq,
                hash: record.hash.clone(),
            };
            anchor::advance(path, &head).map_err(|source| AppendAuditError::Anchor {
                seq: record.seq,
                path: path.clone(),
                source,
            })?;
        }
        Ok(record)
    }
}

/// Validate `entry` and insert it as the next record of the chain on `conn`,
/// which must be inside a write transaction (the caller commits and advances
/// the anchor).
pub(crate) fn insert_record(
    conn: &rusqlite::Connection,
    entry: &AuditEntry,
    outcome: bool,
) -> Result<AuditRecord, AppendAuditError> {
    for (field, value) in [
        ("actor", &entry.actor),
        ("action", &entry.action),
        ("object", &entry.object),
        ("result", &entry.result),
    ] {
        if value.is_empty() {
            return Err(AppendAuditError::EmptyField { field });
        }
    }
    if outcome && entry.result == RESULT_PENDING {
        return Err(AppendAuditError::PendingOutcome);
    }
    let db = AppendAuditError::Database;
    let head: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    let (last_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
    if let Some(refers_to) = entry.refers_to {
        let referenced: Option<String> = conn
            .query_row(
                "SELECT result FROM audit_log WHERE seq = ?1",
                [to_i64(refers_to)],
                |row| row.get(0),
            )
            .optional()
            .map_err(db)?;
        let Some(result) = referenced else {
            return Err(AppendAuditError::ReferenceNotFound { refers_to });
        };
        if outcome {
            if result != RESULT_PENDING {
                return Err(AppendAuditError::NotAnIntent { refers_to, result });
            }
            let existing: Option<i64> = conn
                .query_row(
                    "SELECT seq FROM audit_log WHERE refers_to = ?1 LIMIT 1",
                    [to_i64(refers_to)],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db)?;
            if let Some(outcome) = existing {
                return Err(AppendAuditError::OutcomeExists {
                    refers_to,
                    outcome: outcome.try_into().unwrap_or(0),
                });
            }
        }
    }
    let mut record = AuditRecord {
        seq: u64::try_from(last_seq).unwrap_or(0) + 1,
        time: now_rfc3339(),
        actor: entry.actor.clone(),
        action: entry.action.clone(),
        object: entry.object.clone(),
        before_digest: entry.before_digest.clone(),
        after_digest: entry.after_digest.clone(),
        result: entry.result.clone(),
        detail: entry.detail.clone(),
        refers_to: entry.refers_to,
        prev_hash,
        hash: String::new(),
    };
    record.hash = record.compute_hash();
    conn.execute(
        "INSERT INTO audit_log (seq, time, actor, action, object, before_digest, after_digest,
                                result, detail, refers_to, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        rusqlite::params![
            to_i64(record.seq),
            record.time,
            record.actor,
            record.action,
            record.object,
            record.before_digest,
            record.after_digest,
            record.result,
            record.detail,
            record.refers_to.map(to_i64),
            record.prev_hash,
            record.hash,
        ],
    )
    .map_err(db)?;
    Ok(record)
}
