//! Store-only changes committed together with their audit records.
//!
//! A change whose whole effect is rows in this database (a token, an
//! elevation's state) does not need a durable intent of its own before it
//! runs: the intent, the change and the outcome can commit in **one**
//! transaction, so the log can never show a change that did not happen nor
//! miss one that did. [`Store::audited_batch`] goes one step further and
//! commits many such changes (from concurrent requests) in one transaction
//! and one fsync — group commit.
//!
//! Inside the batch every member runs in its own savepoint, in order:
//! intent, change (in a nested savepoint), outcome. Its three parts are
//! adjacent in the chain (`intent.seq + 1 == outcome.seq`) because nothing
//! else appends while the batch holds the write lock.
//!
//! - A change that reports [`AuditOutcome::Failed`] has its own writes rolled
//!   back; its intent and its `failed` outcome stay (the attempt is logged).
//! - A member whose records cannot be written (bad entry, database error)
//!   is rolled back whole — records and change — and gets its error; the
//!   other members are unaffected.
//! - If the commit fails, or the process dies before it, nothing of the
//!   batch exists and no member has been told it succeeded.
//!
//! Host changes (kernel work between intent and outcome) must not use this:
//! they need a durable intent before the kernel is touched
//! ([`Store::audit_intent`]).

use super::{AppendAuditError, AuditEntry, AuditHead, AuditOutcome, AuditRecord, insert_record};
use crate::Store;

/// What a change did: its outcome and an optional detail for the outcome
/// record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeReport {
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
}

impl ChangeReport {
    /// A change that succeeded.
    pub fn succeeded(detail: Option<String>) -> Self {
        ChangeReport {
            outcome: AuditOutcome::Succeeded,
            detail,
        }
    }

    /// A change that failed; its writes are rolled back.
    pub fn failed(detail: impl Into<String>) -> Self {
        ChangeReport {
            outcome: AuditOutcome::Failed,
            detail: Some(detail.into()),
        }
    }
}

/// A store-only change to run inside the batch's transaction. It may call
/// any `Store` method that does not open a transaction of its own.
pub type StoreChange<'a> = Box<dyn FnOnce(&mut Store) -> ChangeReport + Send + 'a>;

/// One member of a batch: the intent to record and the change.
pub struct BatchMember<'a> {
    pub entry: AuditEntry,
    pub change: StoreChange<'a>,
}

impl<'a> BatchMember<'a> {
    pub fn new(
        entry: AuditEntry,
        change: impl FnOnce(&mut Store) -> ChangeReport + Send + 'a,
    ) -> Self {
        BatchMember {
            entry,
            change: Box::new(change),
        }
    }
}

impl std::fmt::Debug for BatchMember<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchMember")
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

/// A member's committed records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecords {
    pub intent: AuditRecord,
    pub outcome: AuditRecord,
}

/// What [`Store::audited_batch`] did.
#[derive(Debug)]
pub struct BatchResult {
    /// Per member, in order: its committed records, or why it was rolled
    /// back (its change is undone and it has no records). When the commit
    /// itself failed every member carries that error.
    pub members: Vec<Result<MemberRecords, AppendAuditError>>,
    /// The anchor update after the commit. On an error the batch is
    /// committed but `verify` will report the log ahead of its anchor.
    pub anchor: Result<(), AppendAuditError>,
}

const MEMBER: &str = "bulkhead_batch_member";
const CHANGE: &str = "bulkhead_batch_change";

impl Store {
    /// Commit `members` — store-only changes with their intent and outcome
    /// records — in one transaction (one fsync). See the [module
    /// documentation](self) for what happens to failing members.
    pub fn audited_batch(&mut self, members: Vec<BatchMember<'_>>) -> BatchResult {
        let db = AppendAuditError::Database;
        let n = members.len();
        let all_failed = |e: &rusqlite::Error| -> Vec<Result<MemberRecords, AppendAuditError>> {
            (0..n).map(|_| Err(db(clone_error(e)))).collect()
        };
        // A transaction left open by a panic in an earlier change is rolled
        // back before anything else happens on this connection.
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            return BatchResult {
                members: all_failed(&e),
                anchor: Ok(()),
            };
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            return BatchResult {
                members: all_failed(&e),
                anchor: Ok(()),
            };
        }
        let mut results = Vec::with_capacity(n);
        let mut last: Option<AuditHead> = None;
        for member in members {
            let result = self.batch_member(member);
            if let Ok(records) = &result {
                last = Some(AuditHead {
                    seq: records.outcome.seq,
                    hash: records.outcome.hash.clone(),
                });
            }
            results.push(result);
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            // Whatever is left of the transaction goes; nobody was answered.
            let _ = self.conn.execute_batch("ROLLBACK");
            return BatchResult {
                members: all_failed(&e),
                anchor: Ok(()),
            };
        }
        let anchor = match (&self.audit_head, last) {
            (Some(path), Some(head)) => {
                super::anchor::advance(path, &head).map_err(|source| AppendAuditError::Anchor {
                    seq: head.seq,
                    path: path.clone(),
                    source,
                })
            }
            _ => Ok(()),
        };
        BatchResult {
            members: results,
            anchor,
        }
    }

    /// One member inside the open transaction; on an error everything it
    /// wrote is rolled back.
    fn batch_member(&mut self, member: BatchMember<'_>) -> Result<MemberRecords, AppendAuditError> {
        let db = AppendAuditError::Database;
        self.conn
            .execute_batch(&format!("SAVEPOINT {MEMBER}"))
            .map_err(db)?;
        let result = self.batch_member_inner(member);
        let end = if result.is_ok() {
            self.conn.execute_batch(&format!("RELEASE {MEMBER}"))
        } else {
            self.conn
                .execute_batch(&format!("ROLLBACK TO {MEMBER}; RELEASE {MEMBER}"))
        };
        match (result, end) {
            (Ok(records), Ok(())) => Ok(records),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(db(e)),
        }
    }

    fn batch_member_inner(
        &mut self,
        member: BatchMember<'_>,
    ) -> Result<MemberRecords, AppendAuditError> {
        let db = AppendAuditError::Database;
        let mut entry = member.entry;
        entry.result = super::RESULT_PENDING.to_owned();
        entry.refers_to = None;
        let intent = insert_record(&self.conn, &entry, false)?;
        self.conn
            .execute_batch(&format!("SAVEPOINT {CHANGE}"))
            .map_err(db)?;
        let report = (member.change)(self);
        if report.outcome == AuditOutcome::Failed {
            self.conn
                .execute_batch(&format!("ROLLBACK TO {CHANGE}"))
                .map_err(db)?;
        }
        self.conn
            .execute_batch(&format!("RELEASE {CHANGE}"))
            .map_err(db)?;
        let outcome = AuditEntry {
            actor: intent.actor.clone(),
            action: intent.action.clone(),
            object: intent.object.clone(),
            before_digest: intent.before_digest.clone(),
            after_digest: intent.after_digest.clone(),
            result: report.outcome.as_str().to_owned(),
            detail: report.detail,
            refers_to: Some(intent.seq),
        };
        let outcome = insert_record(&self.conn, &outcome, true)?;
        Ok(MemberRecords { intent, outcome })
    }
}

/// `rusqlite::Error` is not `Clone`; every member of a failed commit gets
/// the same error, rebuilt from its code and text.
fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::NewToken;

    fn grant(subject: &str) -> NewToken {
        NewToken {
            subject: subject.to_owned(),
            role: "platform-admin".to_owned(),
            tenant: None,
            expires_at: i64::MAX,
        }
    }

    /// A member whose outcome record cannot be written after its change ran
    /// (here: a second outcome for its intent was slipped in by the change)
    /// is rolled back whole, change included; its neighbours commit.
    #[test]
    fn a_member_whose_outcome_fails_rolls_back_with_its_change() {
        let mut store = Store::open_in_memory().unwrap();
        let ok = |subject: &'static str| {
            BatchMember::new(
                AuditEntry::intent("alice", "token.create", "platform/tokens"),
                move |s: &mut Store| {
                    s.create_token(&grant(subject)).unwrap();
                    ChangeReport::succeeded(None)
                },
            )
        };
        let rogue = BatchMember::new(
            AuditEntry::intent("alice", "token.create", "platform/tokens"),
            |s: &mut Store| {
                s.create_token(&grant("rogue")).unwrap();
                let head = s.audit_head().unwrap().unwrap();
                insert_record(
                    &s.conn,
                    &AuditEntry::new("alice", "token.create", "platform/tokens", "succeeded")
                        .with_refers_to(head.seq),
                    true,
                )
                .unwrap();
                ChangeReport::succeeded(None)
            },
        );
        let result = store.audited_batch(vec![ok("first"), rogue, ok("last")]);
        assert!(result.anchor.is_ok());
        assert!(result.members[0].is_ok());
        assert!(matches!(
            result.members[1],
            Err(AppendAuditError::OutcomeExists { .. })
        ));
        assert!(result.members[2].is_ok());
        let subjects: Vec<String> = store
            .tokens()
            .unwrap()
            .into_iter()
            .map(|t| t.subject)
            .collect();
        assert_eq!(subjects.len(), 2);
        assert!(subjects.contains(&"first".to_owned()) && subjects.contains(&"last".to_owned()));
        let records = store.audit_records(0, 100).unwrap();
        assert_eq!(records.len(), 4, "two members, two records each");
        assert_eq!(records[1].refers_to, Some(1));
        assert_eq!(records[3].refers_to, Some(3));
        assert!(store.verify_audit().unwrap().is_intact());
    }
}
