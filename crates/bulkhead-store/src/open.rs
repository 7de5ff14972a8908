//! Opening the state file: permissions, connection settings, migrations.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use crate::migrate::{self, MigrateFailure};

/// How long a writer waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Suffix of the audit anchor file kept next to the database:
/// `state.db` → `state.db.audit-head`.
pub const AUDIT_HEAD_SUFFIX: &str = ".audit-head";

/// A handle on bulkhead's state: one SQLite connection plus, for a file
/// database, the path of the audit anchor next to it.
///
/// Reads take `&self`; writes take `&mut self` because they run in
/// transactions. Open one `Store` per thread; SQLite (WAL mode, busy
/// timeout) arbitrates between them and between processes.
#[derive(Debug)]
pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) path: Option<PathBuf>,
    pub(crate) audit_head: Option<PathBuf>,
}

/// Why [`Store::open`] or [`Store::open_in_memory`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error("{path}: could not create the state directory (expected a writable parent)")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not create the state file with mode 0600")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: could not open the state file as an SQLite database")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: could not set `PRAGMA {pragma}`")]
    Pragma {
        path: PathBuf,
        pragma: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: journal mode is {found:?} (expected \"wal\")")]
    JournalMode { path: PathBuf, found: String },
    #[error(
        "{path}: database schema version {found} is newer than this build supports (expected at most {supported}); upgrade bulkhead"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path}: could not migrate the schema")]
    Migrate {
        path: PathBuf,
        #[source]
        source: MigrateError,
    },
}

/// Detail of a failed migration inside [`OpenStoreError::Migrate`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MigrateError(MigrateFailure);

impl Store {
    /// Open (creating if needed) the state database at `path` and bring its
    /// schema up to date.
    ///
    /// A missing parent directory is created with mode 0700 and a missing
    /// file with mode 0600 (it will hold wrapped keys); existing ones keep
    /// their modes. The connection uses WAL journaling with
    /// `synchronous=FULL`, so a committed transaction has been fsync'ed when
    /// the call that committed it returns; foreign keys are enforced and
    /// writers wait up to [`BUSY_TIMEOUT`] for a lock; `secure_delete` is on,
    /// so deleted rows are overwritten with zeros.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, OpenStoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| OpenStoreError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        if !path.exists() {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => {}
                // Another process created it between our check and open.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(OpenStoreError::CreateFile { path, source });
                }
            }
        }
        let conn = Connection::open(&path).map_err(|source| OpenStoreError::Open {
            path: path.clone(),
            source,
        })?;
        let mut audit_head = path.clone().into_os_string();
        audit_head.push(AUDIT_HEAD_SUFFIX);
        let mut store = Store {
            conn,
            path: Some(path),
            audit_head: Some(PathBuf::from(audit_head)),
        };
        store.configure(true)?;
        Ok(store)
    }

    /// A private in-memory database with the full schema, for tests. It has
    /// no audit anchor file.
    pub fn open_in_memory() -> Result<Store, OpenStoreError> {
        let conn = Connection::open_in_memory().map_err(|source| OpenStoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        let mut store = Store {
            conn,
            path: None,
            audit_head: None,
        };
        store.configure(false)?;
        Ok(store)
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The audit anchor file (`<db>.audit-head`), or `None` in memory.
    pub fn audit_head_path(&self) -> Option<&Path> {
        self.audit_head.as_deref()
    }

    /// The schema version of the open database (equals
    /// [`migrate::LATEST_VERSION`] after a successful open).
    pub fn schema_version(&self) -> Result<i64, rusqlite::Error> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
    }

    pub(crate) fn display_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(":memory:"))
    }

    fn configure(&mut self, want_wal: bool) -> Result<(), OpenStoreError> {
        let path = self.display_path();
        let pragma = |pragma: &'static str| {
            let path = path.clone();
            move |source| OpenStoreError::Pragma {
                path,
                pragma,
                source,
            }
        };
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(pragma("busy_timeout"))?;
        let mode: String = self
            .conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(pragma("journal_mode"))?;
        if want_wal && !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenStoreError::JournalMode { path, found: mode });
        }
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(pragma("synchronous"))?;
        self.conn
            .pragma_update(None, "foreign_keys", true)
            .map_err(pragma("foreign_keys"))?;
        // Deleted rows (a destroyed tenant key above all) are overwritten
        // with zeros, not left in free pages; see `keys` on crypto-shredding.
        self.conn
            .pragma_update(None, "secure_delete", true)
            .map_err(pragma("secure_delete"))?;
        match migrate::migrate(&mut self.conn) {
            Ok(_) => Ok(()),
            Err(MigrateFailure::Newer { found, supported }) => Err(OpenStoreError::NewerSchema {
                path,
                found,
                supported,
            }),
            Err(other) => Err(OpenStoreError::Migrate {
                path,
                source: MigrateError(other),
            }),
        }
    }
}
