//! Store-only changes committed with their audit records in one transaction,
//! many per commit (group commit): members that fail, concurrent batches, and
//! a process that dies in the middle of a batch.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a panic is a test failure"
)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bulkhead_store::{
    AnchorCheck, AppendAuditError, AuditEntry, AuditOutcome, BatchMember, ChangeReport, NewToken,
    Store,
};

/// Set in the child process of the crash test: the database to crash on.
const CRASH_DB: &str = "BULKHEAD_TEST_BATCH_CRASH_DB";

fn grant(subject: &str) -> NewToken {
    NewToken {
        subject: subject.to_owned(),
        role: "platform-admin".to_owned(),
        tenant: None,
        expires_at: i64::MAX,
    }
}

fn create(subject: &'static str) -> BatchMember<'static> {
    BatchMember::new(
        AuditEntry::intent("alice", "token.create", "platform/tokens"),
        move |s: &mut Store| {
            let created = s.create_token(&grant(subject)).unwrap();
            ChangeReport::succeeded(Some(format!("token {}", created.info.id)))
        },
    )
}

/// Every token row has a `succeeded` outcome naming it, and every such
/// outcome's token exists: no change without its records, no record of a
/// change that did not happen.
fn assert_tokens_match_log(store: &Store) {
    let records = store.audit_records(0, 100_000).unwrap();
    let mut logged: Vec<String> = records
        .iter()
        .filter(|r| r.action == "token.create" && r.result == "succeeded")
        .map(|r| {
            r.detail
                .as_deref()
                .unwrap()
                .trim_start_matches("token ")
                .to_owned()
        })
        .collect();
    let mut rows: Vec<String> = store.tokens().unwrap().into_iter().map(|t| t.id).collect();
    logged.sort();
    rows.sort();
    assert_eq!(logged, rows);
    for outcome in records.iter().filter(|r| r.refers_to.is_some()) {
        let intent = outcome.refers_to.unwrap();
        assert_eq!(intent + 1, outcome.seq, "intent and outcome are adjacent");
        assert!(records[usize::try_from(intent - 1).unwrap()].is_intent());
    }
}

fn reopen_and_verify(db: &Path) -> Store {
    let store = Store::open(db).unwrap();
    let verification = store.verify_audit().unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    assert!(
        matches!(verification.anchor, AnchorCheck::Matches),
        "{:?}",
        verification.anchor
    );
    store
}

#[test]
fn members_commit_together_and_a_failing_one_takes_only_its_own_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let mut store = Store::open(&db).unwrap();
    let invalid_ran = Arc::new(AtomicBool::new(false));
    let ran = Arc::clone(&invalid_ran);
    let result = store.audited_batch(vec![
        create("first"),
        // Writes a row, then fails: the row goes, the attempt is logged.
        BatchMember::new(
            AuditEntry::intent("alice", "token.create", "platform/tokens"),
            |s: &mut Store| {
                s.create_token(&grant("half-done")).unwrap();
                ChangeReport::failed("quota exceeded")
            },
        ),
        // Its intent cannot be written: the change never runs, nothing is logged.
        BatchMember::new(
            AuditEntry::intent("", "token.create", "platform/tokens"),
            move |s: &mut Store| {
                ran.store(true, Ordering::SeqCst);
                s.create_token(&grant("unlogged")).unwrap();
                ChangeReport::succeeded(None)
            },
        ),
        create("last"),
    ]);
    result.anchor.unwrap();
    let first = result.members[0].as_ref().unwrap();
    assert_eq!((first.intent.seq, first.outcome.seq), (1, 2));
    let failed = result.members[1].as_ref().unwrap();
    assert_eq!(failed.outcome.result, AuditOutcome::Failed.as_str());
    assert_eq!(failed.outcome.detail.as_deref(), Some("quota exceeded"));
    assert_eq!(failed.outcome.refers_to, Some(failed.intent.seq));
    assert!(matches!(
        result.members[2],
        Err(AppendAuditError::EmptyField { field: "actor" })
    ));
    assert!(!invalid_ran.load(Ordering::SeqCst));
    let last = result.members[3].as_ref().unwrap();
    assert_eq!((last.intent.seq, last.outcome.seq), (5, 6));
    drop(store);

    // What another connection sees after the commit.
    let store = reopen_and_verify(&db);
    let subjects: Vec<String> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| t.subject)
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects.iter().all(|s| s == "first" || s == "last"));
    assert_eq!(store.audit_records(0, 100).unwrap().len(), 6);
    assert_tokens_match_log(&store);
}

#[test]
fn concurrent_batches_on_separate_connections_keep_one_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    drop(Store::open(&db).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&db).unwrap();
                for _ in 0..10 {
                    let result =
                        store.audited_batch((0..5).map(|_| create("concurrent")).collect());
                    result.anchor.unwrap();
                    for member in result.members {
                        member.unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = reopen_and_verify(&db);
    assert_eq!(store.tokens().unwrap().len(), 200);
    assert_eq!(store.audit_records(0, 100_000).unwrap().len(), 400);
    assert_tokens_match_log(&store);
}

/// Run in a child process by the crash test: one batch whose third member
/// kills the process after two members have written their rows and records.
#[test]
fn crash_child() {
    let Some(db) = std::env::var_os(CRASH_DB) else {
        return; // only meaningful as the crash test's child
    };
    let mut store = Store::open(&db).unwrap();
    store.audited_batch(vec![
        create("before-crash-1"),
        create("before-crash-2"),
        BatchMember::new(
            AuditEntry::intent("alice", "token.create", "platform/tokens"),
            |s: &mut Store| {
                s.create_token(&grant("at-crash")).unwrap();
                std::process::abort();
            },
        ),
        create("after-crash"),
    ]);
    unreachable!("the batch aborts the process");
}

#[test]
fn a_crash_in_the_middle_of_a_batch_leaves_no_change_without_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let mut store = Store::open(&db).unwrap();
    let committed = store.audited_batch(vec![create("committed")]);
    committed.members[0].as_ref().unwrap();
    drop(store);

    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_DB, &db)
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die in its batch");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(6),
        "killed by SIGABRT mid-batch: {status:?}"
    );

    // The members written before the crash were never committed: neither
    // their rows nor their records exist; the earlier batch is intact.
    let mut store = reopen_and_verify(&db);
    let subjects: Vec<String> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| t.subject)
        .collect();
    assert_eq!(subjects, vec!["committed".to_owned()]);
    assert_eq!(store.audit_records(0, 100).unwrap().len(), 2);
    assert_tokens_match_log(&store);

    // And the store takes the next batch on the same chain.
    let next = store.audited_batch(vec![create("next")]);
    next.anchor.unwrap();
    assert_eq!(next.members[0].as_ref().unwrap().intent.seq, 3);
    drop(store);
    assert_tokens_match_log(&reopen_and_verify(&db));
}
