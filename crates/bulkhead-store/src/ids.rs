//! Host uid/gid ranges, one per tenant, so that files and processes of different
//! tenants never share a host id.
//!
//! Slot `n` maps tenant ids `0..65536` onto host ids `ID_BASE + n * 65536 ..`, the same
//! numbers for uids and gids. [`ID_BASE`] sits far above ordinary users and the usual
//! `/etc/subuid` ranges (which start at 100000). A slot stays held while its tenant
//! exists **and** while data owned by its ids may remain (the tenant's volume): it is
//! released only by [`Store::release_id_range`], which the offboarding path calls after
//! the volume is destroyed. A released slot is reused only after every never-used slot
//! is gone, lowest first, and its history row is kept.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::Store;
use crate::time::now_rfc3339;

/// First host id handed to tenants.
pub const ID_BASE: u32 = 1_000_000_000;
/// Ids per tenant: a full 16-bit range, like a container's.
pub const IDS_PER_TENANT: u32 = 65_536;
/// How many slots fit below `u32::MAX` (minus the overflow id 65534's neighbours).
pub const MAX_SLOTS: u32 = (u32::MAX - ID_BASE) / IDS_PER_TENANT;

/// A tenant's host id range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdRange {
    /// Slot number.
    pub slot: u32,
    /// First host uid (and gid).
    pub first: u32,
    /// Number of ids.
    pub count: u32,
}

impl IdRange {
    fn of_slot(slot: u32) -> IdRange {
        IdRange {
            slot,
            first: ID_BASE + slot * IDS_PER_TENANT,
            count: IDS_PER_TENANT,
        }
    }

    /// True when `host_id` belongs to this range.
    pub fn contains(&self, host_id: u32) -> bool {
        host_id >= self.first && host_id - self.first < self.count
    }
}

/// A slot and who held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdRangeRecord {
    /// The tenant.
    pub tenant: String,
    /// The range.
    pub range: IdRange,
    /// When it was allocated.
    pub allocated_at: String,
    /// When it was released, if it was.
    pub released_at: Option<String>,
}

/// Why an id range operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdRangeError {
    /// Every slot is held.
    #[error(
        "no free id range: all {MAX_SLOTS} slots are held (expected fewer tenants, or released ranges)"
    )]
    Exhausted,
    /// The database failed.
    #[error("id range table for tenant {tenant:?}")]
    Database {
        /// The tenant.
        tenant: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
}

fn slot_of(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

impl Store {
    /// The tenant's held range, allocating the lowest free slot if it has none.
    /// Idempotent: calling it again returns the same range.
    pub fn allocate_id_range(&mut self, tenant: &str) -> Result<IdRange, IdRangeError> {
        let db = |source| IdRangeError::Database {
            tenant: tenant.to_owned(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let held: Option<i64> = tx
            .query_row(
                "SELECT slot FROM id_ranges WHERE tenant = ?1 AND released_at IS NULL",
                params![tenant],
                |row| row.get(0),
            )
            .optional()
            .map_err(db)?;
        if let Some(slot) = held {
            tx.commit().map_err(db)?;
            return Ok(IdRange::of_slot(slot_of(slot)));
        }
        // Never-used slots first (the next after the highest ever allocated), then the
        // lowest released one.
        let next: i64 = tx
            .query_row(
                "SELECT coalesce(max(slot) + 1, 0) FROM id_ranges",
                [],
                |row| row.get(0),
            )
            .map_err(db)?;
        let slot = if next < i64::from(MAX_SLOTS) {
            tx.execute(
                "INSERT INTO id_ranges (slot, tenant, allocated_at) VALUES (?1, ?2, ?3)",
                params![next, tenant, now_rfc3339()],
            )
            .map_err(db)?;
            next
        } else {
            let free: Option<i64> = tx
                .query_row(
                    "SELECT slot FROM id_ranges WHERE released_at IS NOT NULL ORDER BY slot LIMIT 1",
                    [],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db)?;
            let slot = free.ok_or(IdRangeError::Exhausted)?;
            tx.execute(
                "UPDATE id_ranges SET tenant = ?2, allocated_at = ?3, released_at = NULL WHERE slot = ?1",
                params![slot, tenant, now_rfc3339()],
            )
            .map_err(db)?;
            slot
        };
        tx.commit().map_err(db)?;
        Ok(IdRange::of_slot(slot_of(slot)))
    }

    /// The tenant's held range, if any.
    pub fn id_range(&self, tenant: &str) -> Result<Option<IdRange>, IdRangeError> {
        self.conn
            .query_row(
                "SELECT slot FROM id_ranges WHERE tenant = ?1 AND released_at IS NULL",
                params![tenant],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|slot| slot.map(|s| IdRange::of_slot(slot_of(s))))
            .map_err(|source| IdRangeError::Database {
                tenant: tenant.to_owned(),
                source,
            })
    }

    /// Releases the tenant's range. Call only once no data owned by its ids remains.
    /// Returns whether a range was held.
    pub fn release_id_range(&mut self, tenant: &str) -> Result<bool, IdRangeError> {
        self.conn
            .execute(
                "UPDATE id_ranges SET released_at = ?2 WHERE tenant = ?1 AND released_at IS NULL",
                params![tenant, now_rfc3339()],
            )
            .map(|changed| changed > 0)
            .map_err(|source| IdRangeError::Database {
                tenant: tenant.to_owned(),
                source,
            })
    }

    /// Every slot ever allocated, held or released, by slot.
    pub fn id_ranges(&self) -> Result<Vec<IdRangeRecord>, IdRangeError> {
        let db = |source| IdRangeError::Database {
            tenant: String::new(),
            source,
        };
        let mut statement = self
            .conn
            .prepare("SELECT slot, tenant, allocated_at, released_at FROM id_ranges ORDER BY slot")
            .map_err(db)?;
        let rows = statement
            .query_map([], |row| {
                Ok(IdRangeRecord {
                    range: IdRange::of_slot(slot_of(row.get(0)?)),
                    tenant: row.get(1)?,
                    allocated_at: row.get(2)?,
                    released_at: row.get(3)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_disjoint_stable_and_released_last() {
        let mut store = Store::open_in_memory().unwrap();
        let a = store.allocate_id_range("a").unwrap();
        let b = store.allocate_id_range("b").unwrap();
        assert_eq!(a.first, ID_BASE);
        assert_eq!(b.first, ID_BASE + IDS_PER_TENANT);
        assert!(!a.contains(b.first) && !b.contains(a.first + a.count - 1));
        assert_eq!(store.allocate_id_range("a").unwrap(), a, "idempotent");
        assert!(store.release_id_range("a").unwrap());
        assert!(!store.release_id_range("a").unwrap());
        assert_eq!(store.id_range("a").unwrap(), None);
        // A released slot is not handed out while never-used slots remain.
        let c = store.allocate_id_range("c").unwrap();
        assert_eq!(c.slot, 2);
        // The same tenant coming back gets a fresh range, not its old one.
        let a2 = store.allocate_id_range("a").unwrap();
        assert_eq!(a2.slot, 3);
        assert_eq!(store.id_ranges().unwrap().len(), 4);
    }

    #[test]
    fn max_slot_fits_u32() {
        let last = IdRange::of_slot(MAX_SLOTS - 1);
        assert!(u64::from(last.first) + u64::from(last.count) <= u64::from(u32::MAX));
    }
}
