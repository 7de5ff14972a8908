//! Verifying the audit chain and naming the first bad record.
//!
//! [`Store::verify_audit`] reads the records in storage order (SQLite
//! `rowid`, i.e. the order they were appended) and walks the chain, keeping
//! the last accepted record. Record 1 must chain to [`GENESIS_HASH`]; each
//! next record must have `seq` one higher and `prev_hash` equal to the
//! accepted record's `hash`, and its own `hash` must equal
//! [`AuditRecord::compute_hash`]. The walk stops at the first departure.
//!
//! # What is reported
//!
//! [`Tamper::seq`] is *the first sequence number at which the stored log
//! departs from the log as written*; [`Tamper::rowid`] is where the walk
//! noticed it. With `e` the expected next seq and `r` the row being read,
//! the rules are applied in this order:
//!
//! 1. `r.seq > e` (a gap):
//!    - `r`'s hash fails but would match with `seq = e` → **edited** at `e`
//!      (its seq was changed);
//!    - `r` chains to the accepted record although a record `e` exists
//!      elsewhere → **inserted** at `e` (a forged record with a made-up seq);
//!    - a record `e` exists later in storage → **reordered** at `e`;
//!    - otherwise → **deleted** at `e` (records `e..r.seq` are missing).
//! 2. `r`'s stored hash ≠ its recomputed hash (`r.seq ≤ e`):
//!    - the hash would match with `seq = e` → **edited** at `e`;
//!    - `r.seq < e`, or another row also claims `r.seq` → **inserted**
//!      (a record with a duplicate seq that does not match its hash);
//!    - otherwise → **edited** at `e`.
//! 3. `r.seq < e` with a valid hash → **inserted** at `r.seq`: the seq was
//!    already used (a copied or forged duplicate). When a forged record took
//!    seq `e` first, this fires at the genuine one, naming the same seq.
//! 4. `r.seq = e`, valid hash, but `prev_hash` ≠ the accepted record's hash:
//!    - `prev_hash` equals the accepted record's own `prev_hash` (both chain
//!      to the same predecessor) → **inserted** at the accepted record's seq
//!      (it was slipped in and later records renumbered and re-hashed);
//!    - `prev_hash` is the hash of some other stored record → **reordered**
//!      at `e`;
//!    - otherwise → **edited** at the accepted record's seq (or 1): one of the
//!      two was rewritten with a recomputed hash and the chain cannot say
//!      which; the earlier is named.
//!
//! A row whose columns have the wrong type (text where a number belongs, a
//! `NULL`, a negative seq) is **edited** at `e`.
//!
//! If the chain is intact, the anchor file (`<db>.audit-head`) is compared
//! with it:
//! - anchor ahead of the last record → **truncated** at `last + 1`;
//! - the record at the anchor's seq has another hash → **rewritten** at the
//!   anchor's seq: the chain was rebuilt with recomputed hashes somewhere at
//!   or before it (the chain alone cannot say where);
//! - anchor behind the last record, hashes agree → [`AnchorCheck::DbAhead`],
//!   not a finding: a crash between commit and anchor update leaves one
//!   record unanchored per writer. Records past the anchor are as good as
//!   their hashes, which anyone with write access can compute.
//!
//! # Limits
//!
//! The chain is unkeyed. Someone who can write the database *and* the anchor
//! file can rebuild a consistent history; the anchor catches a rebuild only
//! if it is left alone. Copy [`AuditVerification::head`] somewhere the host
//! cannot rewrite (a remote log, a ticket) to pin history further.

use std::io;

use rusqlite::OptionalExtension;
use serde::Serialize;

use super::{
    AuditHead, AuditRecord, GENESIS_HASH, RECORD_COLUMNS, anchor, record_from_row, to_i64,
};
use crate::Store;

/// What kind of tampering a [`Tamper`] is (see the module docs for the
/// rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TamperKind {
    /// A record's fields no longer match its hash.
    Edited,
    /// Records are missing from the middle or the start of the chain.
    Deleted,
    /// A record is stored out of order.
    Reordered,
    /// A record was added that was never appended.
    Inserted,
    /// Records are missing from the end (the anchor names a later head).
    Truncated,
    /// The chain is self-consistent but does not end at the anchored hash.
    Rewritten,
}

/// The first bad record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tamper {
    /// The first seq at which the stored log departs from the log as
    /// written.
    pub seq: u64,
    /// The SQLite rowid at which the walk noticed it, if at a row.
    pub rowid: Option<i64>,
    pub kind: TamperKind,
    /// Why, in words, naming the seqs involved.
    pub reason: String,
}

/// How the chain compares with the anchor file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AnchorCheck {
    /// In-memory store: no anchor is kept.
    NotKept,
    /// Not compared because the chain itself is broken.
    NotChecked,
    /// The anchor file does not exist. Fine for an empty log; otherwise
    /// truncation cannot be ruled out.
    Missing,
    /// The anchor file cannot be read or parsed.
    Unreadable { reason: String },
    /// The last record is the anchored head.
    Matches,
    /// The log has records past the anchor, which matches an earlier
    /// record (see the module docs).
    DbAhead { anchor_seq: u64, last_seq: u64 },
    /// The log ends before the anchored head.
    DbBehind { anchor_seq: u64, last_seq: u64 },
    /// The record at the anchor's seq has a different hash.
    Mismatch {
        anchor_seq: u64,
        anchor_hash: String,
        stored_hash: String,
    },
}

/// The result of [`Store::verify_audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Rows in the audit table.
    pub rows: u64,
    /// Records verified before the first bad one (all of them if none).
    pub verified: u64,
    /// The last verified record.
    pub head: Option<AuditHead>,
    pub anchor: AnchorCheck,
    /// Whether the triggers that refuse UPDATE and DELETE are in place.
    pub guards_present: bool,
    /// The first bad record, if any.
    pub first_bad: Option<Tamper>,
}

impl AuditVerification {
    /// True when no tampering was found, the append-only triggers are in
    /// place, and the anchor rules out truncation.
    pub fn is_intact(&self) -> bool {
        self.first_bad.is_none()
            && self.guards_present
            && match self.anchor {
                AnchorCheck::NotKept | AnchorCheck::Matches | AnchorCheck::DbAhead { .. } => true,
                AnchorCheck::Missing => self.rows == 0,
                _ => false,
            }
    }
}

/// Why [`Store::verify_audit`] could not run (tampering is a result, not an
/// error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyAuditError {
    #[error("could not read the audit log")]
    Database(#[source] rusqlite::Error),
}

/// The last accepted record's chain fields.
struct Accepted {
    seq: u64,
    hash: String,
    prev_hash: String,
}

impl Store {
    /// Walk the audit chain and compare its head with the anchor; see the
    /// [module docs](self) for the rules.
    pub fn verify_audit(&self) -> Result<AuditVerification, VerifyAuditError> {
        let db = VerifyAuditError::Database;
        let rows: i64 = self
            .conn
            .query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
            .map_err(db)?;
        let guards: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'
                 AND name IN ('audit_log_no_update', 'audit_log_no_delete')
                 AND tbl_name = 'audit_log'",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM audit_log ORDER BY rowid"
            ))
            .map_err(db)?;
        let mut iter = stmt.query_map([], record_from_row).map_err(db)?;
        let mut accepted: Option<Accepted> = None;
        let mut verified = 0u64;
        let mut first_bad = None;
        for row in &mut iter {
            let (rowid, parsed) = row.map_err(db)?;
            let expected = accepted.as_ref().map_or(1, |a| a.seq + 1);
            let tamper = |seq, kind, reason: String| Tamper {
                seq,
                rowid: Some(rowid),
                kind,
                reason,
            };
            let r = match parsed {
                Ok(r) => r,
                Err(reason) => {
                    first_bad = Some(tamper(
                        expected,
                        TamperKind::Edited,
                        format!(
                            "row {rowid} is malformed ({reason}) where record {expected} was expected"
                        ),
                    ));
                    break;
                }
            };
            if let Some(t) = self.check(&r, accepted.as_ref(), expected).map_err(db)? {
                first_bad = Some(tamper(t.0, t.1, t.2));
                break;
            }
            verified += 1;
            accepted = Some(Accepted {
                seq: r.seq,
                hash: r.hash,
                prev_hash: r.prev_hash,
            });
        }
        drop(iter);
        drop(stmt);
        let head = accepted.map(|a| AuditHead {
            seq: a.seq,
            hash: a.hash,
        });
        let anchor = if first_bad.is_some() {
            AnchorCheck::NotChecked
        } else {
            let (check, finding) = self.check_anchor(head.as_ref()).map_err(db)?;
            first_bad = finding;
            check
        };
        Ok(AuditVerification {
            rows: u64::try_from(rows).unwrap_or(0),
            verified,
            head,
            anchor,
            guards_present: guards == 2,
            first_bad,
        })
    }

    /// Apply the rules to one record; `Some((seq, kind, reason))` if bad.
    fn check(
        &self,
        r: &AuditRecord,
        accepted: Option<&Accepted>,
        e: u64,
    ) -> rusqlite::Result<Option<(u64, TamperKind, String)>> {
        let expected_prev = accepted.map_or(GENESIS_HASH, |a| a.hash.as_str());
        let hash_ok = r.compute_hash() == r.hash;
        let hash_ok_with_seq_e = || {
            let mut fixed = r.clone();
            fixed.seq = e;
            fixed.compute_hash() == r.hash
        };
        let s = r.seq;
        if s > e {
            if !hash_ok && hash_ok_with_seq_e() {
                return Ok(Some((
                    e,
                    TamperKind::Edited,
                    format!("record {e} was renumbered to {s} (its hash matches seq {e})"),
                )));
            }
            let e_exists = self.count_seq(e)? > 0;
            if e_exists && hash_ok && r.prev_hash == expected_prev {
                return Ok(Some((
                    e,
                    TamperKind::Inserted,
                    format!(
                        "a record claiming seq {s} chains to record {} where record {e} belongs, and record {e} is stored elsewhere",
                        e - 1
                    ),
                )));
            }
            if e_exists {
                return Ok(Some((
                    e,
                    TamperKind::Reordered,
                    format!("record {s} is stored before record {e}"),
                )));
            }
            let range = if s - 1 == e {
                format!("record {e} is")
            } else {
                format!("records {e}..={} are", s - 1)
            };
            return Ok(Some((
                e,
                TamperKind::Deleted,
                format!("{range} missing: record {s} follows record {}", e - 1),
            )));
        }
        if !hash_ok {
            if hash_ok_with_seq_e() {
                return Ok(Some((
                    e,
                    TamperKind::Edited,
                    format!("record {e} was renumbered to {s} (its hash matches seq {e})"),
                )));
            }
            if s < e {
                return Ok(Some((
                    s,
                    TamperKind::Inserted,
                    format!(
                        "a second record claims seq {s} after record {}, and does not match its hash",
                        e - 1
                    ),
                )));
            }
            if self.count_seq(s)? > 1 {
                return Ok(Some((
                    s,
                    TamperKind::Inserted,
                    format!(
                        "two records claim seq {s}; the one stored first does not match its hash"
                    ),
                )));
            }
            return Ok(Some((
                e,
                TamperKind::Edited,
                format!(
                    "record {e} does not match its hash: its fields were changed after it was written"
                ),
            )));
        }
        if s < e {
            return Ok(Some((
                s,
                TamperKind::Inserted,
                format!(
                    "seq {s} appears again after record {}: one of the two was inserted",
                    e - 1
                ),
            )));
        }
        if r.prev_hash != expected_prev {
            if let Some(a) = accepted
                && r.prev_hash == a.prev_hash
            {
                return Ok(Some((
                    a.seq,
                    TamperKind::Inserted,
                    format!(
                        "records {} and {e} both chain to the record before {}: record {} was inserted and later records renumbered",
                        a.seq, a.seq, a.seq
                    ),
                )));
            }
            let target: Option<i64> = self
                .conn
                .query_row(
                    "SELECT seq FROM audit_log WHERE hash = ?1 LIMIT 1",
                    [&r.prev_hash],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(q) = target {
                return Ok(Some((
                    e,
                    TamperKind::Reordered,
                    format!(
                        "record {e} chains to record {q} instead of record {}",
                        e - 1
                    ),
                )));
            }
            let earlier = accepted.map_or(e, |a| a.seq);
            return Ok(Some((
                earlier,
                TamperKind::Edited,
                format!(
                    "record {e} does not chain to record {} though both match their own hashes: one was rewritten with a recomputed hash",
                    e - 1
                ),
            )));
        }
        Ok(None)
    }

    fn count_seq(&self, seq: u64) -> rusqlite::Result<i64> {
        self.conn.query_row(
            "SELECT count(*) FROM audit_log WHERE seq = ?1",
            [to_i64(seq)],
            |row| row.get(0),
        )
    }

    fn check_anchor(
        &self,
        head: Option<&AuditHead>,
    ) -> rusqlite::Result<(AnchorCheck, Option<Tamper>)> {
        let Some(path) = &self.audit_head else {
            return Ok((AnchorCheck::NotKept, None));
        };
        let anchored = match anchor::read(path) {
            Ok(Some(a)) => a,
            Ok(None) => return Ok((AnchorCheck::Missing, None)),
            Err(e) => return Ok((unreadable(path, &e), None)),
        };
        let last_seq = head.map_or(0, |h| h.seq);
        if anchored.seq > last_seq {
            let missing = last_seq + 1;
            return Ok((
                AnchorCheck::DbBehind {
                    anchor_seq: anchored.seq,
                    last_seq,
                },
                Some(Tamper {
                    seq: missing,
                    rowid: None,
                    kind: TamperKind::Truncated,
                    reason: format!(
                        "the log ends at record {last_seq} but the anchor names record {} as the head: records {missing}..={} are missing",
                        anchored.seq, anchored.seq
                    ),
                }),
            ));
        }
        let stored_hash: Option<String> = self
            .conn
            .query_row(
                "SELECT hash FROM audit_log WHERE seq = ?1",
                [to_i64(anchored.seq)],
                |row| row.get(0),
            )
            .optional()?;
        let stored_hash = stored_hash.unwrap_or_default();
        if stored_hash != anchored.hash {
            let reason = format!(
                "record {} has hash {stored_hash} but the anchor says {}: the chain was rebuilt at or before record {}",
                anchored.seq, anchored.hash, anchored.seq
            );
            return Ok((
                AnchorCheck::Mismatch {
                    anchor_seq: anchored.seq,
                    anchor_hash: anchored.hash.clone(),
                    stored_hash,
                },
                Some(Tamper {
                    seq: anchored.seq,
                    rowid: None,
                    kind: TamperKind::Rewritten,
                    reason,
                }),
            ));
        }
        if anchored.seq < last_seq {
            return Ok((
                AnchorCheck::DbAhead {
                    anchor_seq: anchored.seq,
                    last_seq,
                },
                None,
            ));
        }
        Ok((AnchorCheck::Matches, None))
    }
}

fn unreadable(path: &std::path::Path, e: &io::Error) -> AnchorCheck {
    AnchorCheck::Unreadable {
        reason: format!("{}: {e}", path.display()),
    }
}
