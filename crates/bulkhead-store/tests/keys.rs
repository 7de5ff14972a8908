//! Wrapped tenant keys on a real database file: round trip, wrong master
//! key, tampering, and crypto-shredding down to the bytes on disk.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a panic is a test failure"
)]

use std::path::Path;

use bulkhead_store::{
    CreateTenantKeyError, DestroyTenantKeyError, MasterKey, Store, UnwrapTenantKeyError,
};
use rusqlite::Connection;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state.db")).unwrap();
    (dir, store)
}

fn wrapped_bytes(db: &Path, tenant: &str) -> Vec<u8> {
    Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT wrapped_key FROM tenant_keys WHERE tenant = ?1",
            [tenant],
            |r| r.get(0),
        )
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn round_trip_gives_the_same_key_and_keys_differ_per_tenant() {
    let (_dir, mut store) = store();
    let master = MasterKey::generate().unwrap();
    let info = store.create_tenant_key(&master, "web").unwrap();
    assert_eq!(info.tenant, "web");
    assert_eq!(info.version, 1);
    assert_eq!(info.master_key_id, master.id());
    store.create_tenant_key(&master, "db").unwrap();

    let a = store.unwrap_tenant_key(&master, "web").unwrap();
    let b = store.unwrap_tenant_key(&master, "web").unwrap();
    let other = store.unwrap_tenant_key(&master, "db").unwrap();
    assert_eq!(*a, *b);
    assert_ne!(*a, *other);
    assert_ne!(*a, [0u8; 32]);
    assert_eq!(store.tenant_key_info("web").unwrap(), Some(info));

    // Only the wrapped form is stored: the plaintext key is nowhere in the row.
    let stored = wrapped_bytes(store.path().unwrap(), "web");
    assert_eq!(stored.len(), 48);
    assert!(!contains(&stored, &a[..]));
}

#[test]
fn create_refuses_to_replace_an_existing_key() {
    let (_dir, mut store) = store();
    let master = MasterKey::generate().unwrap();
    store.create_tenant_key(&master, "web").unwrap();
    let before = store.unwrap_tenant_key(&master, "web").unwrap();
    let err = store.create_tenant_key(&master, "web").unwrap_err();
    assert!(
        matches!(err, CreateTenantKeyError::AlreadyExists { ref tenant, version: 1 } if tenant == "web"),
        "{err}"
    );
    assert_eq!(*store.unwrap_tenant_key(&master, "web").unwrap(), *before);
}

#[test]
fn wrong_master_key_fails_cleanly() {
    let (_dir, mut store) = store();
    let master = MasterKey::generate().unwrap();
    let other = MasterKey::generate().unwrap();
    store.create_tenant_key(&master, "web").unwrap();
    let err = store.unwrap_tenant_key(&other, "web").unwrap_err();
    match &err {
        UnwrapTenantKeyError::WrongMasterKey {
            tenant,
            stored,
            given,
        } => {
            assert_eq!(tenant, "web");
            assert_eq!(stored, &master.id());
            assert_eq!(given, &other.id());
        }
        e => panic!("expected WrongMasterKey, got {e:?}"),
    }
    assert!(err.to_string().contains("master key"), "{err}");
}

#[test]
fn a_forged_master_key_id_still_fails_authentication() {
    let (_dir, mut store) = store();
    let master = MasterKey::generate().unwrap();
    let other = MasterKey::generate().unwrap();
    store.create_tenant_key(&master, "web").unwrap();
    Connection::open(store.path().unwrap())
        .unwrap()
        .execute(
            "UPDATE tenant_keys SET master_key_id = ?1 WHERE tenant = 'web'",
            [other.id()],
        )
        .unwrap();
    let err = store.unwrap_tenant_key(&other, "web").unwrap_err();
    assert!(
        matches!(err, UnwrapTenantKeyError::Tampered { .. }),
        "{err}"
    );
}

/// Rewrites one blob column of `tenant`'s row through `change`.
fn alter_blob(db: &Path, tenant: &str, column: &str, change: impl FnOnce(&mut Vec<u8>)) {
    let conn = Connection::open(db).unwrap();
    let mut blob: Vec<u8> = conn
        .query_row(
            &format!("SELECT {column} FROM tenant_keys WHERE tenant = ?1"),
            [tenant],
            |r| r.get(0),
        )
        .unwrap();
    change(&mut blob);
    conn.execute(
        &format!("UPDATE tenant_keys SET {column} = ?1 WHERE tenant = ?2"),
        rusqlite::params![blob, tenant],
    )
    .unwrap();
}

#[test]
fn tampered_rows_fail_authentication() {
    let master = MasterKey::generate().unwrap();
    type Tamper = fn(&Path);
    let cases: &[(&str, &str, Tamper)] = &[
        ("flipped ciphertext bit", "web", |db| {
            alter_blob(db, "web", "wrapped_key", |b| b[4] ^= 0x01)
        }),
        ("flipped tag bit", "web", |db| {
            alter_blob(db, "web", "wrapped_key", |b| b[47] ^= 0x80)
        }),
        ("other nonce", "web", |db| {
            alter_blob(db, "web", "nonce", |b| b[0] ^= 0xff)
        }),
        ("version changed", "web", |db| {
            Connection::open(db)
                .unwrap()
                .execute(
                    "UPDATE tenant_keys SET key_version = 2 WHERE tenant = 'web'",
                    [],
                )
                .unwrap();
        }),
        ("row moved to another tenant", "db", |db| {
            Connection::open(db)
                .unwrap()
                .execute_batch(
                    "DELETE FROM tenant_keys WHERE tenant = 'db';
                     UPDATE tenant_keys SET tenant = 'db' WHERE tenant = 'web';",
                )
                .unwrap();
        }),
    ];
    for (what, target, tamper) in cases {
        let (_dir, mut store) = store();
        store.create_tenant_key(&master, "web").unwrap();
        store.create_tenant_key(&master, "db").unwrap();
        tamper(store.path().unwrap());
        let err = store.unwrap_tenant_key(&master, target).unwrap_err();
        assert!(
            matches!(err, UnwrapTenantKeyError::Tampered { .. }),
            "{what}: {err:?}"
        );
    }
}

#[test]
fn destroy_makes_unwrap_impossible_and_leaves_no_wrapped_bytes_on_disk() {
    let (dir, mut store) = store();
    let db = dir.path().join("state.db");
    let master = MasterKey::generate().unwrap();
    store.create_tenant_key(&master, "web").unwrap();
    store.create_tenant_key(&master, "db").unwrap();
    let wrapped = wrapped_bytes(&db, "web");
    let destroyed = store.destroy_tenant_key("web").unwrap();
    assert_eq!(destroyed.info.tenant, "web");
    assert!(destroyed.wal_truncated);

    let err = store.unwrap_tenant_key(&master, "web").unwrap_err();
    assert!(
        matches!(err, UnwrapTenantKeyError::NotFound { .. }),
        "{err}"
    );
    assert!(matches!(
        store.destroy_tenant_key("web").unwrap_err(),
        DestroyTenantKeyError::NotFound { .. }
    ));
    // Another tenant's key is untouched.
    store.unwrap_tenant_key(&master, "db").unwrap();

    // Neither the database file nor the WAL holds the wrapped key any more.
    let wal = dir.path().join("state.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL truncated");
    for file in [&db, &wal] {
        if let Ok(bytes) = std::fs::read(file) {
            assert!(
                !contains(&bytes, &wrapped),
                "{} still holds the wrapped key",
                file.display()
            );
        }
    }

    // A new key for the same tenant is a different key.
    store.create_tenant_key(&master, "web").unwrap();
    assert_ne!(wrapped_bytes(&db, "web"), wrapped);
}

#[test]
fn destroy_reports_when_a_reader_blocks_the_wal_truncation() {
    let (dir, mut store) = store();
    let master = MasterKey::generate().unwrap();
    store.create_tenant_key(&master, "web").unwrap();
    let mut reader = Connection::open(dir.path().join("state.db")).unwrap();
    let tx = reader.transaction().unwrap();
    let _: i64 = tx
        .query_row("SELECT count(*) FROM tenant_keys", [], |r| r.get(0))
        .unwrap();
    let destroyed = store.destroy_tenant_key("web").unwrap();
    assert!(!destroyed.wal_truncated);
    drop(tx);
    assert!(store.checkpoint_truncate().unwrap());
}
