//! The audit log's API: appending, chaining, intents and outcomes, and the
//! database refusing UPDATE and DELETE.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a panic is a test failure"
)]

use bulkhead_store::{
    AnchorCheck, AppendAuditError, AuditEntry, AuditOutcome, GENESIS_HASH, RESULT_PENDING, Store,
};
use rusqlite::Connection;

#[test]
fn records_chain_from_genesis_and_are_visible_to_other_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let mut store = Store::open(&db).unwrap();
    let a = store
        .append_audit(
            &AuditEntry::new("alice", "apply", "tenant/web", "succeeded")
                .with_after("ab".repeat(32))
                .with_detail("revision 1"),
        )
        .unwrap();
    let b = store
        .append_audit(&AuditEntry::new(
            "bob",
            "suspend",
            "tenant/web",
            "succeeded",
        ))
        .unwrap();
    assert_eq!((a.seq, b.seq), (1, 2));
    assert_eq!(a.prev_hash, GENESIS_HASH);
    assert_eq!(b.prev_hash, a.hash);
    assert_eq!(a.hash, a.compute_hash());
    assert!(a.time.ends_with('Z') && a.time.contains('T'), "{}", a.time);

    // Committed before append returned: another connection sees it.
    let other = Connection::open(&db).unwrap();
    let n: i64 = other
        .query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);

    assert_eq!(
        store.audit_records(0, 10).unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(store.audit_records(1, 10).unwrap(), vec![b.clone()]);
    assert_eq!(store.audit_head().unwrap().unwrap().hash, b.hash);

    let v = store.verify_audit().unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.anchor, AnchorCheck::Matches);
    assert_eq!(v.verified, 2);

    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["object"], "tenant/web");
    assert_eq!(json["before_digest"], serde_json::Value::Null);
    assert_eq!(json["seq"], 1);
}

#[test]
fn the_database_refuses_update_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let mut store = Store::open(&db).unwrap();
    store
        .append_audit(&AuditEntry::new(
            "alice",
            "apply",
            "tenant/web",
            "succeeded",
        ))
        .unwrap();
    drop(store);
    let conn = Connection::open(&db).unwrap();
    let err = conn
        .execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1", [])
        .unwrap_err();
    assert!(
        err.to_string().contains("append-only: update refused"),
        "{err}"
    );
    let err = conn
        .execute("DELETE FROM audit_log WHERE seq = 1", [])
        .unwrap_err();
    assert!(
        err.to_string().contains("append-only: delete refused"),
        "{err}"
    );
    let actor: String = conn
        .query_row("SELECT actor FROM audit_log WHERE seq = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(actor, "alice");
}

#[test]
fn intent_then_outcome() {
    let mut store = Store::open_in_memory().unwrap();
    let intent = store
        .audit_intent(
            AuditEntry::intent("alice", "delete", "tenant/web").with_before("cd".repeat(32)),
        )
        .unwrap();
    assert_eq!(intent.result, RESULT_PENDING);
    assert!(intent.is_intent());
    let outcome = store
        .audit_outcome(&intent, AuditOutcome::Succeeded, Some("crypto-shredded"))
        .unwrap();
    assert_eq!(outcome.refers_to, Some(intent.seq));
    assert_eq!(outcome.result, "succeeded");
    assert_eq!(outcome.object, "tenant/web");
    assert_eq!(outcome.before_digest, intent.before_digest);

    // One outcome per intent.
    let err = store
        .audit_outcome(&intent, AuditOutcome::Failed, None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendAuditError::OutcomeExists {
                refers_to: 1,
                outcome: 2
            }
        ),
        "{err}"
    );
    // An outcome must refer to an intent.
    let err = store
        .audit_outcome(&outcome, AuditOutcome::Failed, None)
        .unwrap_err();
    assert!(
        matches!(err, AppendAuditError::NotAnIntent { refers_to: 2, .. }),
        "{err}"
    );
    // References must exist.
    let err = store
        .append_audit(&AuditEntry::new("a", "b", "c", "d").with_refers_to(99))
        .unwrap_err();
    assert!(
        matches!(err, AppendAuditError::ReferenceNotFound { refers_to: 99 }),
        "{err}"
    );
    let err = store
        .append_audit(&AuditEntry::new("", "b", "c", "d"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit entry actor is empty (expected a non-empty string)"
    );
    assert!(store.verify_audit().unwrap().is_intact());
}

#[test]
fn audited_wraps_a_change_in_intent_and_outcome() {
    let mut store = Store::open_in_memory().unwrap();
    let ok = store
        .audited(AuditEntry::intent("alice", "apply", "tenant/web"), || {
            Ok::<_, String>(42)
        })
        .unwrap();
    assert_eq!(ok.result, Ok(42));
    assert_eq!(ok.outcome.as_ref().unwrap().result, "succeeded");

    let failed = store
        .audited(AuditEntry::intent("alice", "apply", "tenant/db"), || {
            Err::<(), _>("cgroup write refused".to_owned())
        })
        .unwrap();
    assert!(failed.result.is_err());
    let outcome = failed.outcome.unwrap();
    assert_eq!(outcome.result, "failed");
    assert_eq!(outcome.detail.as_deref(), Some("cgroup write refused"));
    assert_eq!(outcome.refers_to, Some(failed.intent.seq));

    let all = store.audit_records(0, 100).unwrap();
    let results: Vec<&str> = all.iter().map(|r| r.result.as_str()).collect();
    assert_eq!(results, ["pending", "succeeded", "pending", "failed"]);
}

#[test]
fn concurrent_writers_keep_one_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    drop(Store::open(&db).unwrap());
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut store = Store::open(&db).unwrap();
                for i in 0..15 {
                    store
                        .append_audit(&AuditEntry::new(
                            format!("writer-{w}"),
                            "apply",
                            format!("tenant/t{i}"),
                            "succeeded",
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let v = Store::open(&db).unwrap().verify_audit().unwrap();
    assert!(v.first_bad.is_none(), "{v:?}");
    assert_eq!(v.verified, 45);
    // The anchor only moves forward; a writer that lost the race to update
    // it may leave it just behind the head, never ahead.
    assert!(
        matches!(v.anchor, AnchorCheck::Matches | AnchorCheck::DbAhead { .. }),
        "{v:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
