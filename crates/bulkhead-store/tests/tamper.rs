//! Tampering with a real database file behind the store's back: drop the
//! append-only triggers through a raw connection, edit, delete, reorder and
//! insert rows, and check that verification names the first bad seq.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a panic is a test failure"
)]

use std::path::{Path, PathBuf};

use bulkhead_store::{
    AnchorCheck, AuditEntry, AuditRecord, AuditVerification, Store, Tamper, TamperKind,
};
use rusqlite::Connection;
use tempfile::TempDir;

const RECORDS: u64 = 6;

struct Fixture {
    _tmp: TempDir,
    db: PathBuf,
    records: Vec<AuditRecord>,
}

/// A database with six chained records: intents and outcomes.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    let mut store = Store::open(&db).unwrap();
    for tenant in ["web", "db", "cache"] {
        let intent = store
            .audit_intent(
                AuditEntry::intent("alice", "apply", format!("tenant/{tenant}"))
                    .with_after("ef".repeat(32)),
            )
            .unwrap();
        store
            .audit_outcome(&intent, bulkhead_store::AuditOutcome::Succeeded, None)
            .unwrap();
    }
    let records = store.audit_records(0, 100).unwrap();
    assert_eq!(records.len() as u64, RECORDS);
    assert!(store.verify_audit().unwrap().is_intact());
    Fixture {
        _tmp: tmp,
        db,
        records,
    }
}

/// A raw connection with the guards removed, as an attacker would have.
fn unguarded(db: &Path) -> Connection {
    let conn = Connection::open(db).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update;
         DROP TRIGGER audit_log_no_delete;
         DROP INDEX audit_log_seq;",
    )
    .unwrap();
    conn
}

fn insert(conn: &Connection, r: &AuditRecord) {
    conn.execute(
        "INSERT INTO audit_log (seq, time, actor, action, object, before_digest, after_digest,
                                result, detail, refers_to, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        rusqlite::params![
            r.seq as i64,
            r.time,
            r.actor,
            r.action,
            r.object,
            r.before_digest,
            r.after_digest,
            r.result,
            r.detail,
            r.refers_to.map(|s| s as i64),
            r.prev_hash,
            r.hash,
        ],
    )
    .unwrap();
}

/// Replace the table's contents with `records`, stored in this order.
fn rewrite(db: &Path, records: &[AuditRecord]) {
    let conn = unguarded(db);
    conn.execute("DELETE FROM audit_log", []).unwrap();
    for r in records {
        insert(&conn, r);
    }
}

/// A record as an attacker who knows the format would forge it: valid hash.
fn forged(seq: u64, prev_hash: &str, actor: &str) -> AuditRecord {
    let mut r = AuditRecord {
        seq,
        time: "2026-11-23T12:00:00.000000Z".to_owned(),
        actor: actor.to_owned(),
        action: "apply".to_owned(),
        object: "tenant/web".to_owned(),
        before_digest: None,
        after_digest: None,
        result: "succeeded".to_owned(),
        detail: None,
        refers_to: None,
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    };
    r.hash = r.compute_hash();
    r
}

/// Renumber and re-hash `records` into a consistent chain from `from`.
fn rechain(records: &mut [AuditRecord], from: usize) {
    for i in from..records.len() {
        records[i].seq = i as u64 + 1;
        records[i].prev_hash = if i == 0 {
            bulkhead_store::GENESIS_HASH.to_owned()
        } else {
            records[i - 1].hash.clone()
        };
        records[i].hash = records[i].compute_hash();
    }
}

fn verify(db: &Path) -> AuditVerification {
    Store::open(db).unwrap().verify_audit().unwrap()
}

fn first_bad(db: &Path) -> Tamper {
    let v = verify(db);
    assert!(!v.is_intact(), "{v:?}");
    match v.first_bad {
        Some(t) => t,
        None => panic!("expected a finding: {v:?}"),
    }
}

#[track_caller]
fn assert_bad(t: &Tamper, seq: u64, kind: TamperKind) {
    assert_eq!((t.seq, t.kind), (seq, kind), "{t:?}");
}

#[test]
fn untouched_log_is_intact() {
    let f = fixture();
    let v = verify(&f.db);
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.rows, RECORDS);
    assert_eq!(v.verified, RECORDS);
    assert_eq!(v.head.unwrap().seq, RECORDS);
    assert!(v.guards_present);
    assert_eq!(v.anchor, AnchorCheck::Matches);
}

#[test]
fn dropped_guards_alone_are_reported() {
    let f = fixture();
    drop(unguarded(&f.db));
    let v = verify(&f.db);
    assert!(v.first_bad.is_none());
    assert!(!v.guards_present);
    assert!(!v.is_intact());
}

#[test]
fn edited_field() {
    let f = fixture();
    unguarded(&f.db)
        .execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", [])
        .unwrap();
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Edited);
    assert!(t.reason.contains("does not match its hash"), "{}", t.reason);
}

#[test]
fn edited_optional_field_to_null() {
    let f = fixture();
    unguarded(&f.db)
        .execute("UPDATE audit_log SET after_digest = NULL WHERE seq = 5", [])
        .unwrap();
    assert_bad(&first_bad(&f.db), 5, TamperKind::Edited);
}

#[test]
fn edited_seq() {
    let f = fixture();
    unguarded(&f.db)
        .execute("UPDATE audit_log SET seq = 9 WHERE seq = 3", [])
        .unwrap();
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Edited);
    assert!(t.reason.contains("renumbered"), "{}", t.reason);
}

#[test]
fn edited_to_a_malformed_value() {
    let f = fixture();
    unguarded(&f.db)
        .execute("UPDATE audit_log SET seq = 'three' WHERE seq = 3", [])
        .unwrap();
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Edited);
    assert!(t.reason.contains("malformed"), "{}", t.reason);
}

#[test]
fn deleted_middle_record() {
    let f = fixture();
    unguarded(&f.db)
        .execute("DELETE FROM audit_log WHERE seq = 3", [])
        .unwrap();
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Deleted);
    assert_eq!(t.reason, "record 3 is missing: record 4 follows record 2");
}

#[test]
fn deleted_several_records() {
    let f = fixture();
    unguarded(&f.db)
        .execute("DELETE FROM audit_log WHERE seq IN (3, 4)", [])
        .unwrap();
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Deleted);
    assert!(
        t.reason.starts_with("records 3..=4 are missing"),
        "{}",
        t.reason
    );
}

#[test]
fn deleted_first_record() {
    let f = fixture();
    unguarded(&f.db)
        .execute("DELETE FROM audit_log WHERE seq = 1", [])
        .unwrap();
    assert_bad(&first_bad(&f.db), 1, TamperKind::Deleted);
}

#[test]
fn deleted_last_record_is_caught_by_the_anchor() {
    let f = fixture();
    unguarded(&f.db)
        .execute("DELETE FROM audit_log WHERE seq = 6", [])
        .unwrap();
    let v = verify(&f.db);
    assert_eq!(
        v.anchor,
        AnchorCheck::DbBehind {
            anchor_seq: 6,
            last_seq: 5
        }
    );
    assert_bad(v.first_bad.as_ref().unwrap(), 6, TamperKind::Truncated);
}

#[test]
fn emptied_log_is_caught_by_the_anchor() {
    let f = fixture();
    unguarded(&f.db)
        .execute("DELETE FROM audit_log", [])
        .unwrap();
    assert_bad(&first_bad(&f.db), 1, TamperKind::Truncated);
}

#[test]
fn swapped_records() {
    let f = fixture();
    let mut rows = f.records.clone();
    rows.swap(2, 3); // records 3 and 4
    rewrite(&f.db, &rows);
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Reordered);
    assert_eq!(t.reason, "record 4 is stored before record 3");
}

#[test]
fn swapped_contents_in_place() {
    // Same rows, same rowids: only the contents of rows 3 and 4 exchanged.
    let f = fixture();
    let conn = unguarded(&f.db);
    conn.execute_batch(
        "CREATE TEMP TABLE r3 AS SELECT * FROM audit_log WHERE seq = 3;
         CREATE TEMP TABLE r4 AS SELECT * FROM audit_log WHERE seq = 4;
         UPDATE audit_log SET (seq, time, actor, action, object, before_digest, after_digest,
                               result, detail, refers_to, prev_hash, hash)
             = (SELECT * FROM r4) WHERE rowid = 3;
         UPDATE audit_log SET (seq, time, actor, action, object, before_digest, after_digest,
                               result, detail, refers_to, prev_hash, hash)
             = (SELECT * FROM r3) WHERE rowid = 4;",
    )
    .unwrap();
    drop(conn);
    assert_bad(&first_bad(&f.db), 3, TamperKind::Reordered);
}

#[test]
fn record_moved_to_the_end() {
    let f = fixture();
    let mut rows = f.records.clone();
    let moved = rows.remove(2);
    rows.push(moved);
    rewrite(&f.db, &rows);
    assert_bad(&first_bad(&f.db), 3, TamperKind::Reordered);
}

#[test]
fn swapped_with_the_moved_record_renumbered_and_rehashed() {
    // Record 4 is moved before record 3, renumbered 3 and re-hashed; its
    // prev_hash still names the genuine record 3, which is stored after it.
    let f = fixture();
    let mut rows = f.records.clone();
    rows.swap(2, 3);
    rows[2].seq = 3;
    rows[2].hash = rows[2].compute_hash();
    rewrite(&f.db, &rows);
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Reordered);
    assert_eq!(t.reason, "record 3 chains to record 3 instead of record 2");
}

#[test]
fn swapped_with_both_records_renumbered_and_rehashed() {
    // Both swapped records are renumbered and re-hashed, so no stored record
    // has the hash the first of them chains to. The chain shows only that
    // record 2 or 3 was rewritten, and names the earlier (documented).
    let f = fixture();
    let mut rows = f.records.clone();
    rows.swap(2, 3);
    rows[2].seq = 3;
    rows[3].seq = 4;
    rows[2].hash = rows[2].compute_hash();
    rows[3].hash = rows[3].compute_hash();
    rewrite(&f.db, &rows);
    let t = first_bad(&f.db);
    assert_bad(&t, 2, TamperKind::Edited);
    assert!(t.reason.contains("one was rewritten"), "{}", t.reason);
}

#[test]
fn edited_and_rehashed_record() {
    // The attacker fixes the edited record's own hash but not the chain.
    let f = fixture();
    let mut rows = f.records.clone();
    rows[2].actor = "mallory".to_owned();
    rows[2].hash = rows[2].compute_hash();
    rewrite(&f.db, &rows);
    assert_bad(&first_bad(&f.db), 3, TamperKind::Edited);
}

#[test]
fn inserted_duplicate_with_valid_hash() {
    let f = fixture();
    let mut rows = f.records.clone();
    let x = forged(3, &rows[1].hash, "mallory");
    rows.insert(2, x);
    rewrite(&f.db, &rows);
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Inserted);
}

#[test]
fn inserted_duplicate_with_bad_hash() {
    let f = fixture();
    let mut rows = f.records.clone();
    let mut x = forged(3, &rows[1].hash, "mallory");
    x.hash = "00".repeat(32);
    rows.insert(2, x);
    rewrite(&f.db, &rows);
    assert_bad(&first_bad(&f.db), 3, TamperKind::Inserted);
}

#[test]
fn inserted_copy_of_an_old_record() {
    let f = fixture();
    let conn = unguarded(&f.db);
    insert(&conn, &f.records[1]);
    drop(conn);
    let t = first_bad(&f.db);
    assert_bad(&t, 2, TamperKind::Inserted);
}

#[test]
fn inserted_with_later_records_renumbered_and_rehashed_from_their_own_links() {
    // A forged record 3 chains to record 2; the genuine records 3.. are
    // renumbered 4.. and their hashes recomputed, but the genuine record 3
    // still chains to record 2 — the predecessor's predecessor.
    let f = fixture();
    let mut rows = f.records.clone();
    let x = forged(3, &rows[1].hash, "mallory");
    rows.insert(2, x);
    for (i, r) in rows.iter_mut().enumerate().skip(3) {
        r.seq = i as u64 + 1;
        r.hash = r.compute_hash();
    }
    rewrite(&f.db, &rows);
    let t = first_bad(&f.db);
    assert_bad(&t, 3, TamperKind::Inserted);
    assert!(t.reason.contains("both chain to"), "{}", t.reason);
}

#[test]
fn inserted_with_a_made_up_seq() {
    let f = fixture();
    let mut rows = f.records.clone();
    let x = forged(100, &rows[1].hash, "mallory");
    rows.insert(2, x);
    rewrite(&f.db, &rows);
    assert_bad(&first_bad(&f.db), 3, TamperKind::Inserted);
}

#[test]
fn rebuilt_chain_is_caught_by_the_anchor() {
    // Edit record 3 and recompute every hash from there: the chain is
    // self-consistent, only the anchor disagrees.
    let f = fixture();
    let mut rows = f.records.clone();
    rows[2].actor = "mallory".to_owned();
    rechain(&mut rows, 2);
    rewrite(&f.db, &rows);
    let v = verify(&f.db);
    assert!(
        matches!(v.anchor, AnchorCheck::Mismatch { anchor_seq: 6, .. }),
        "{v:?}"
    );
    let t = v.first_bad.unwrap();
    assert_bad(&t, 6, TamperKind::Rewritten);
}

#[test]
fn missing_anchor_means_not_intact() {
    let f = fixture();
    std::fs::remove_file(f.db.with_extension("db.audit-head")).unwrap();
    let v = verify(&f.db);
    assert_eq!(v.anchor, AnchorCheck::Missing);
    assert!(v.first_bad.is_none());
    assert!(!v.is_intact());
}

#[test]
fn garbled_anchor_is_unreadable() {
    let f = fixture();
    std::fs::write(f.db.with_extension("db.audit-head"), "garbage").unwrap();
    let v = verify(&f.db);
    assert!(matches!(v.anchor, AnchorCheck::Unreadable { .. }), "{v:?}");
    assert!(!v.is_intact());
}

#[test]
fn anchor_behind_the_log_is_reported_but_not_tampering() {
    // What a crash between commit and anchor update leaves behind.
    let f = fixture();
    let anchor = f.db.with_extension("db.audit-head");
    let old = std::fs::read(&anchor).unwrap();
    let mut store = Store::open(&f.db).unwrap();
    store
        .append_audit(&AuditEntry::new(
            "alice",
            "apply",
            "tenant/web",
            "succeeded",
        ))
        .unwrap();
    std::fs::write(&anchor, old).unwrap();
    let v = store.verify_audit().unwrap();
    assert_eq!(
        v.anchor,
        AnchorCheck::DbAhead {
            anchor_seq: 6,
            last_seq: 7
        }
    );
    assert!(v.is_intact(), "{v:?}");
    // The next append moves the anchor forward again.
    store
        .append_audit(&AuditEntry::new(
            "alice",
            "apply",
            "tenant/web",
            "succeeded",
        ))
        .unwrap();
    assert_eq!(store.verify_audit().unwrap().anchor, AnchorCheck::Matches);
}

#[test]
fn tampering_in_a_fresh_store_also_fails_appends_at_the_database() {
    // With the guards in place even the store's own connection cannot
    // rewrite history.
    let f = fixture();
    let store = Store::open(&f.db).unwrap();
    drop(store);
    let conn = Connection::open(&f.db).unwrap();
    assert!(conn.execute("DELETE FROM audit_log", []).is_err());
}
