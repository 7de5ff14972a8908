//! Numbered schema migrations.
//!
//! The schema version lives in SQLite's `user_version` header field; the
//! `schema_migrations` table keeps a human-readable history (version, name,
//! time applied). All pending migrations run in one `BEGIN IMMEDIATE`
//! transaction together with the `user_version` bump, so a crash leaves the
//! database at the old version or the new one, never in between.
//!
//! To add a migration, append an entry to [`MIGRATIONS`] with the next
//! version number. Never edit or reorder a migration that has shipped.

use rusqlite::{Connection, TransactionBehavior};

use crate::time::now_rfc3339;

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Schema version after this migration; versions start at 1 and are
    /// consecutive.
    pub version: i64,
    /// Short name recorded in `schema_migrations`.
    pub name: &'static str,
    /// SQL run as a batch inside the migration transaction.
    pub sql: &'static str,
}

/// Every migration, in order. `MIGRATIONS[i].version == i + 1`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "desired-state revisions",
        sql: "
            CREATE TABLE revisions (
                id          INTEGER PRIMARY KEY AUTOINCREMENT,
                created_at  TEXT    NOT NULL,
                actor       TEXT    NOT NULL,
                message     TEXT    NOT NULL,
                digest      TEXT    NOT NULL
            );
            CREATE TABLE revision_objects (
                revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
                kind        TEXT    NOT NULL,
                namespace   TEXT,
                name        TEXT    NOT NULL,
                document    TEXT    NOT NULL,
                digest      TEXT    NOT NULL
            );
            CREATE UNIQUE INDEX revision_objects_key
                ON revision_objects (revision_id, kind, ifnull(namespace, ''), name);
        ",
    },
    Migration {
        version: 2,
        name: "hash-chained audit log",
        sql: "
            CREATE TABLE audit_log (
                seq           INTEGER NOT NULL,
                time          TEXT    NOT NULL,
                actor         TEXT    NOT NULL,
                action        TEXT    NOT NULL,
                object        TEXT    NOT NULL,
                before_digest TEXT,
                after_digest  TEXT,
                result        TEXT    NOT NULL,
                detail        TEXT,
                refers_to     INTEGER, -- checked by append; no FK so the
                                      -- verifier never depends on an index
                prev_hash     TEXT    NOT NULL,
                hash          TEXT    NOT NULL
            );
            CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);
            CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN
                SELECT RAISE(ABORT, 'audit_log is append-only: update refused');
            END;
            CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN
                SELECT RAISE(ABORT, 'audit_log is append-only: delete refused');
            END;
        ",
    },
    Migration {
        // Reserved for upcoming work; nothing reads or writes these yet.
        version: 3,
        name: "reserved tenant allocations",
        sql: "
            CREATE TABLE tenant_id_ranges (
                tenant     TEXT    PRIMARY KEY,
                uid_start  INTEGER NOT NULL CHECK (uid_start >= 0),
                uid_count  INTEGER NOT NULL CHECK (uid_count > 0),
                gid_start  INTEGER NOT NULL CHECK (gid_start >= 0),
                gid_count  INTEGER NOT NULL CHECK (gid_count > 0),
                created_at TEXT    NOT NULL
            );
            CREATE TABLE tenant_keys (
                tenant      TEXT    NOT NULL,
                key_version INTEGER NOT NULL,
                wrapped_key BLOB    NOT NULL,
                created_at  TEXT    NOT NULL,
                PRIMARY KEY (tenant, key_version)
            );
            CREATE TABLE tenant_addresses (
                tenant     TEXT NOT NULL,
                address    TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL
            );
        ",
    },
    Migration {
        version: 4,
        name: "tenant id ranges by slot",
        sql: "
            DROP TABLE tenant_id_ranges;
            CREATE TABLE id_ranges (
                slot         INTEGER PRIMARY KEY CHECK (slot >= 0),
                tenant       TEXT    NOT NULL,
                allocated_at TEXT    NOT NULL,
                released_at  TEXT
            );
            CREATE UNIQUE INDEX id_ranges_held ON id_ranges (tenant) WHERE released_at IS NULL;
        ",
    },
    Migration {
        // The reserved table had no room for the GCM nonce or the wrapping
        // details. Nothing wrote to it, so it is replaced; the guard makes
        // the migration fail rather than drop a row if something did.
        version: 5,
        name: "wrapped tenant keys",
        sql: "
            CREATE TEMP TABLE tenant_keys_guard (
                n INTEGER CONSTRAINT reserved_tenant_keys_must_be_empty CHECK (n = 0)
            );
            INSERT INTO tenant_keys_guard SELECT count(*) FROM tenant_keys;
            DROP TABLE tenant_keys_guard;
            DROP TABLE tenant_keys;
            CREATE TABLE tenant_keys (
                tenant        TEXT    PRIMARY KEY,
                key_version   INTEGER NOT NULL CHECK (key_version >= 1),
                algorithm     TEXT    NOT NULL,
                master_key_id TEXT    NOT NULL,
                nonce         BLOB    NOT NULL CHECK (length(nonce) = 12),
                wrapped_key   BLOB    NOT NULL CHECK (length(wrapped_key) = 48),
                created_at    TEXT    NOT NULL
            );
        ",
    },
    Migration {
        // The control plane's bearer tokens. Only the SHA-256 of each token's secret is
        // kept; `id` is public (it names the token in the audit log and for revocation).
        version: 6,
        name: "api tokens",
        sql: "
            CREATE TABLE api_tokens (
                id            TEXT    PRIMARY KEY,
                secret_sha256 TEXT    NOT NULL CHECK (length(secret_sha256) = 64),
                subject       TEXT    NOT NULL,
                role          TEXT    NOT NULL,
                tenant        TEXT,
                created_at    TEXT    NOT NULL,
                expires_at    INTEGER NOT NULL,
                revoked_at    INTEGER
            );
        ",
    },
    Migration {
        // Elevated access (two-person rule) and the noisy-neighbour tightenings the
        // daemon applies for a cool-down. Both are overlays the converge takes into
        // account while they last; the store keeps them so a restarted daemon (or a
        // CLI `gc`) sees the same effective state.
        version: 7,
        name: "elevations and tightenings",
        sql: "
            CREATE TABLE elevations (
                id              TEXT    PRIMARY KEY,
                kind            TEXT    NOT NULL
                    CHECK (kind IN ('quota-raise', 'operator-exec', 'egress-exception')),
                tenant          TEXT    NOT NULL,
                parameters      TEXT    NOT NULL,
                reason          TEXT    NOT NULL CHECK (length(reason) > 0),
                ttl_seconds     INTEGER NOT NULL CHECK (ttl_seconds > 0),
                requester       TEXT    NOT NULL,
                requester_token TEXT    NOT NULL,
                requested_at    INTEGER NOT NULL,
                status          TEXT    NOT NULL
                    CHECK (status IN ('pending', 'active', 'denied', 'expired', 'revoked')),
                decided_by      TEXT,
                decided_at      INTEGER,
                note            TEXT,
                expires_at      INTEGER,
                ended_at        INTEGER,
                ended_by        TEXT,
                CHECK (status = 'pending' OR decided_by IS NOT NULL),
                CHECK (decided_by IS NULL OR decided_by != requester)
            );
            CREATE INDEX elevations_status ON elevations (status, expires_at);
            CREATE TABLE tightenings (
                tenant       TEXT    PRIMARY KEY,
                cpu_weight   INTEGER NOT NULL CHECK (cpu_weight >= 1),
                reason       TEXT    NOT NULL,
                started_at   INTEGER NOT NULL,
                until        INTEGER NOT NULL
            );
        ",
    },
];

/// The schema version this build writes and understands.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why migrating failed; wrapped by [`crate::OpenStoreError`], which adds
/// the database path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateFailure {
    #[error(
        "database schema version {found} is newer than this build supports (expected at most {supported}); upgrade bulkhead"
    )]
    Newer { found: i64, supported: i64 },
    #[error("could not read or begin the schema transaction")]
    Begin(#[source] rusqlite::Error),
    #[error("migration {version} ({name}) failed")]
    Step {
        version: i64,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("could not commit schema migrations")]
    Commit(#[source] rusqlite::Error),
}

/// Bring `conn` to [`LATEST_VERSION`]; returns the version found before.
pub(crate) fn migrate(conn: &mut Connection) -> Result<i64, MigrateFailure> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(MigrateFailure::Begin)?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(MigrateFailure::Begin)?;
    if found > LATEST_VERSION {
        return Err(MigrateFailure::Newer {
            found,
            supported: LATEST_VERSION,
        });
    }
    if found == LATEST_VERSION {
        return Ok(found);
    }
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TEXT NOT NULL
         );",
    )
    .map_err(|source| MigrateFailure::Step {
        version: 0,
        name: "schema_migrations table",
        source,
    })?;
    let applied_at = now_rfc3339();
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let step = |source| MigrateFailure::Step {
            version: m.version,
            name: m.name,
            source,
        };
        tx.execute_batch(m.sql).map_err(step)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            (m.version, m.name, &applied_at),
        )
        .map_err(step)?;
        tx.pragma_update(None, "user_version", m.version)
            .map_err(step)?;
    }
    tx.commit().map_err(MigrateFailure::Commit)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {}", m.name);
        }
    }

    #[test]
    fn migrating_twice_applies_each_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        assert_eq!(migrate(&mut conn).unwrap(), LATEST_VERSION);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, LATEST_VERSION);
    }

    /// A database left at version 1 by an older build.
    fn at_version_one() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0].sql).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn
    }

    #[test]
    fn older_schema_gets_only_the_missing_migrations() {
        let mut conn = at_version_one();
        assert_eq!(migrate(&mut conn).unwrap(), 1);
        let applied: Vec<i64> = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(applied, (2..=LATEST_VERSION).collect::<Vec<_>>());
    }

    #[test]
    fn a_failing_migration_leaves_the_old_version_intact() {
        let mut conn = at_version_one();
        // Something already occupies a name migration 2 creates.
        conn.execute_batch("CREATE TABLE audit_log (x)").unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, MigrateFailure::Step { version: 2, .. }),
            "{err:?}"
        );
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('schema_migrations', 'tenant_keys')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "nothing from the failed transaction remains");
    }

    #[test]
    fn reserved_tenant_keys_with_rows_are_not_dropped() {
        let mut conn = Connection::open_in_memory().unwrap();
        // Everything before the migration that replaces the reserved table.
        for m in &MIGRATIONS[..4] {
            conn.execute_batch(m.sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute(
            "INSERT INTO tenant_keys VALUES ('web', 1, x'00', 'now')",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            err.to_string().contains("migration 5")
                && format!("{:?}", err).contains("reserved_tenant_keys_must_be_empty"),
            "{err:?}"
        );
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM tenant_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, MigrateFailure::Newer { found, supported }
                if found == LATEST_VERSION + 1 && supported == LATEST_VERSION),
            "{err:?}"
        );
    }
}
