//! Opening a real file: permissions, pragmas, migrations, newer schemas.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a panic is a test failure"
)]

use std::os::unix::fs::PermissionsExt;

use bulkhead_store::{OpenStoreError, Store, migrate};
use rusqlite::Connection;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn creates_private_dir_and_file_with_wal_and_full_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state/nested/state.db");
    let store = Store::open(&db).unwrap();
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&tmp.path().join("state")), 0o700);
    assert_eq!(store.schema_version().unwrap(), migrate::LATEST_VERSION);
    assert_eq!(
        store.audit_head_path().unwrap(),
        tmp.path().join("state/nested/state.db.audit-head")
    );
    drop(store);

    let conn = Connection::open(&db).unwrap();
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    let applied: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(applied, (1..=migrate::LATEST_VERSION).collect::<Vec<_>>());
}

#[test]
fn reopening_applies_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    drop(Store::open(&db).unwrap());
    let store = Store::open(&db).unwrap();
    assert_eq!(store.schema_version().unwrap(), migrate::LATEST_VERSION);
    drop(store);
    let conn = Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, migrate::LATEST_VERSION);
}

#[test]
fn settings_are_per_connection_and_applied() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.path(), None);
    assert_eq!(store.audit_head_path(), None);
    assert_eq!(store.schema_version().unwrap(), migrate::LATEST_VERSION);
}

#[test]
fn newer_schema_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    drop(Store::open(&db).unwrap());
    let conn = Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", migrate::LATEST_VERSION + 5)
        .unwrap();
    drop(conn);
    let err = Store::open(&db).unwrap_err();
    match &err {
        OpenStoreError::NewerSchema {
            path,
            found,
            supported,
        } => {
            assert_eq!(path, &db);
            assert_eq!(*found, migrate::LATEST_VERSION + 5);
            assert_eq!(*supported, migrate::LATEST_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("is newer than this build supports"), "{msg}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("state.db");
    std::fs::write(
        &db,
        b"this is not sqlite, just some bytes that are long enough",
    )
    .unwrap();
    let err = Store::open(&db).unwrap_err();
    assert!(
        matches!(
            err,
            OpenStoreError::Pragma { .. } | OpenStoreError::Open { .. }
        ),
        "{err:?}"
    );
}
