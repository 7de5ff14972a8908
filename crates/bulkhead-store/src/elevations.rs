//! Elevated access and automatic tightenings: temporary overlays on the desired state.
//!
//! An [`Elevation`] is a request for more than the desired state grants (a raised
//! quota, an operator's exec into a tenant, an egress exception), with a reason and a
//! lifetime. It starts `pending`; a *different* person approves it (`active`, with
//! `expires_at = approval + ttl`) or denies it. An active elevation ends `expired`
//! (the reconciler, once `expires_at` has passed) or `revoked`. The table refuses an
//! approval by the requester itself (a CHECK), whatever the caller checked before.
//!
//! A [`Tightening`] is the daemon's own temporary restriction of a noisy tenant (a
//! lower cpu weight until a time); it is kept here so that a restarted daemon restores
//! the tenant when the cool-down ends.
//!
//! The store does not interpret kinds or parameters: they are text the daemon checks.
//! Only rows with `status = 'active'` and `expires_at > now` count as in force
//! ([`Store::active_elevations`]), so a grant stops counting at its expiry even
//! before the reconciler marks it.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::Store;

/// One elevation as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Elevation {
    /// Public id (16 hex digits).
    pub id: String,
    /// `quota-raise`, `operator-exec` or `egress-exception`.
    pub kind: String,
    /// The tenant it is about.
    pub tenant: String,
    /// Kind-specific parameters, JSON text.
    pub parameters: String,
    /// Why it is needed.
    pub reason: String,
    /// How long it lasts once approved, seconds.
    pub ttl_seconds: i64,
    /// Who asked (a token's subject).
    pub requester: String,
    /// The token they asked with.
    pub requester_token: String,
    /// When, unix seconds.
    pub requested_at: i64,
    /// `pending`, `active`, `denied`, `expired` or `revoked`.
    pub status: String,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    /// When, unix seconds.
    pub decided_at: Option<i64>,
    /// The decider's note.
    pub note: Option<String>,
    /// When an approved elevation stops, unix seconds.
    pub expires_at: Option<i64>,
    /// When it ended (expired or revoked), unix seconds.
    pub ended_at: Option<i64>,
    /// Who ended it.
    pub ended_by: Option<String>,
}

/// What a new elevation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewElevation {
    /// The kind.
    pub kind: String,
    /// The tenant.
    pub tenant: String,
    /// Parameters, JSON text.
    pub parameters: String,
    /// Why.
    pub reason: String,
    /// Lifetime once approved, seconds.
    pub ttl_seconds: i64,
    /// Who asks.
    pub requester: String,
    /// With which token.
    pub requester_token: String,
}

/// A tenant's temporary cpu weight, set by the noisy-neighbour handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tightening {
    /// The tenant.
    pub tenant: String,
    /// The weight in force while it lasts.
    pub cpu_weight: u32,
    /// What was detected.
    pub reason: String,
    /// When it started, unix seconds.
    pub started_at: i64,
    /// When it ends, unix seconds.
    pub until: i64,
}

/// Why an elevation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ElevationError {
    /// No elevation with this id.
    #[error("no elevation {0:?}")]
    Unknown(String),
    /// The elevation is not in the state the operation needs.
    #[error("elevation {id} is {status} (expected {expected})")]
    State {
        /// The elevation.
        id: String,
        /// Its status.
        status: String,
        /// What the operation needs.
        expected: &'static str,
    },
    /// The requester tried to decide their own request.
    #[error(
        "elevation {id} was requested by {requester:?}, who may not decide it (two-person rule)"
    )]
    SelfDecision {
        /// The elevation.
        id: String,
        /// Its requester.
        requester: String,
    },
    /// The random source failed.
    #[error("cannot draw random bytes for an elevation id")]
    Random(#[source] getrandom::Error),
    /// The database failed.
    #[error("elevations table")]
    Database(#[source] rusqlite::Error),
}

const COLUMNS: &str = "id, kind, tenant, parameters, reason, ttl_seconds, requester, \
    requester_token, requested_at, status, decided_by, decided_at, note, expires_at, \
    ended_at, ended_by";

fn row_to_elevation(row: &rusqlite::Row<'_>) -> rusqlite::Result<Elevation> {
    Ok(Elevation {
        id: row.get(0)?,
        kind: row.get(1)?,
        tenant: row.get(2)?,
        parameters: row.get(3)?,
        reason: row.get(4)?,
        ttl_seconds: row.get(5)?,
        requester: row.get(6)?,
        requester_token: row.get(7)?,
        requested_at: row.get(8)?,
        status: row.get(9)?,
        decided_by: row.get(10)?,
        decided_at: row.get(11)?,
        note: row.get(12)?,
        expires_at: row.get(13)?,
        ended_at: row.get(14)?,
        ended_by: row.get(15)?,
    })
}

impl Store {
    /// Records a pending elevation requested at `now`.
    pub fn create_elevation(
        &mut self,
        new: &NewElevation,
        now: i64,
    ) -> Result<Elevation, ElevationError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(ElevationError::Random)?;
        let id = hex::encode(id);
        self.conn
            .execute(
                "INSERT INTO elevations (id, kind, tenant, parameters, reason, ttl_seconds,
                    requester, requester_token, requested_at, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending')",
                params![
                    id,
                    new.kind,
                    new.tenant,
                    new.parameters,
                    new.reason,
                    new.ttl_seconds,
                    new.requester,
                    new.requester_token,
                    now
                ],
            )
            .map_err(ElevationError::Database)?;
        self.elevation(&id)?
            .ok_or_else(|| ElevationError::Unknown(id.clone()))
    }

    /// One elevation, if it exists.
    pub fn elevation(&self, id: &str) -> Result<Option<Elevation>, ElevationError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM elevations WHERE id = ?1"),
                params![id],
                row_to_elevation,
            )
            .optional()
            .map_err(ElevationError::Database)
    }

    fn elevations_where(
        &self,
        condition: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<Elevation>, ElevationError> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM elevations WHERE {condition} ORDER BY requested_at, id"
            ))
            .map_err(ElevationError::Database)?;
        statement
            .query_map(values, row_to_elevation)
            .and_then(|rows| rows.collect())
            .map_err(ElevationError::Database)
    }

    /// Every elevation, oldest first.
    pub fn elevations(&self) -> Result<Vec<Elevation>, ElevationError> {
        self.elevations_where("1", [])
    }

    /// Elevations in force at `now`: approved and not yet expired.
    pub fn active_elevations(&self, now: i64) -> Result<Vec<Elevation>, ElevationError> {
        self.elevations_where("status = 'active' AND expires_at > ?1", params![now])
    }

    /// Approved elevations whose time has run out at `now` but are not marked yet.
    pub fn due_elevations(&self, now: i64) -> Result<Vec<Elevation>, ElevationError> {
        self.elevations_where("status = 'active' AND expires_at <= ?1", params![now])
    }

    /// Approves (`approve`) or denies a pending elevation as `by` at `now`. The
    /// requester may not decide their own request.
    pub fn decide_elevation(
        &mut self,
        id: &str,
        approve: bool,
        by: &str,
        note: Option<&str>,
        now: i64,
    ) -> Result<Elevation, ElevationError> {
        let found = self
            .elevation(id)?
            .ok_or_else(|| ElevationError::Unknown(id.to_owned()))?;
        if found.requester == by {
            return Err(ElevationError::SelfDecision {
                id: id.to_owned(),
                requester: found.requester,
            });
        }
        let (status, expires_at) = if approve {
            ("active", Some(now.saturating_add(found.ttl_seconds)))
        } else {
            ("denied", None)
        };
        let changed = self
            .conn
            .execute(
                "UPDATE elevations SET status = ?2, decided_by = ?3, decided_at = ?4, note = ?5,
                    expires_at = ?6
                 WHERE id = ?1 AND status = 'pending'",
                params![id, status, by, now, note, expires_at],
            )
            .map_err(ElevationError::Database)?;
        if changed == 0 {
            return Err(ElevationError::State {
                id: id.to_owned(),
                status: found.status,
                expected: "pending",
            });
        }
        self.elevation(id)?
            .ok_or_else(|| ElevationError::Unknown(id.to_owned()))
    }

    /// Ends an active elevation (`expired` or `revoked`) as `by` at `now`.
    pub fn end_elevation(
        &mut self,
        id: &str,
        revoked: bool,
        by: &str,
        now: i64,
    ) -> Result<Elevation, ElevationError> {
        let status = if revoked { "revoked" } else { "expired" };
        let changed = self
            .conn
            .execute(
                "UPDATE elevations SET status = ?2, ended_at = ?3, ended_by = ?4
                 WHERE id = ?1 AND status = 'active'",
                params![id, status, now, by],
            )
            .map_err(ElevationError::Database)?;
        let found = self
            .elevation(id)?
            .ok_or_else(|| ElevationError::Unknown(id.to_owned()))?;
        if changed == 0 {
            return Err(ElevationError::State {
                id: id.to_owned(),
                status: found.status,
                expected: "active",
            });
        }
        Ok(found)
    }

    /// Sets (or replaces) a tenant's tightening.
    pub fn set_tightening(&mut self, tightening: &Tightening) -> Result<(), ElevationError> {
        self.conn
            .execute(
                "INSERT INTO tightenings (tenant, cpu_weight, reason, started_at, until)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant) DO UPDATE SET cpu_weight = ?2, reason = ?3,
                    started_at = ?4, until = ?5",
                params![
                    tightening.tenant,
                    tightening.cpu_weight,
                    tightening.reason,
                    tightening.started_at,
                    tightening.until
                ],
            )
            .map(|_| ())
            .map_err(ElevationError::Database)
    }

    /// Every recorded tightening (in force or due to be lifted).
    pub fn tightenings(&self) -> Result<Vec<Tightening>, ElevationError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT tenant, cpu_weight, reason, started_at, until FROM tightenings
                 ORDER BY tenant",
            )
            .map_err(ElevationError::Database)?;
        statement
            .query_map([], |row| {
                Ok(Tightening {
                    tenant: row.get(0)?,
                    cpu_weight: row.get(1)?,
                    reason: row.get(2)?,
                    started_at: row.get(3)?,
                    until: row.get(4)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(ElevationError::Database)
    }

    /// Removes a tenant's tightening; returns whether there was one.
    pub fn remove_tightening(&mut self, tenant: &str) -> Result<bool, ElevationError> {
        self.conn
            .execute("DELETE FROM tightenings WHERE tenant = ?1", params![tenant])
            .map(|n| n > 0)
            .map_err(ElevationError::Database)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(requester: &str) -> NewElevation {
        NewElevation {
            kind: "quota-raise".to_owned(),
            tenant: "web".to_owned(),
            parameters: r#"{"memory":"2Gi"}"#.to_owned(),
            reason: "batch import".to_owned(),
            ttl_seconds: 600,
            requester: requester.to_owned(),
            requester_token: "0011223344556677".to_owned(),
        }
    }

    #[test]
    fn an_approved_elevation_is_in_force_until_its_ttl() {
        let mut store = Store::open_in_memory().unwrap();
        let e = store.create_elevation(&ask("alice"), 1_000).unwrap();
        assert_eq!(e.status, "pending");
        assert!(store.active_elevations(1_000).unwrap().is_empty());
        let approved = store
            .decide_elevation(&e.id, true, "bob", Some("ok"), 1_100)
            .unwrap();
        assert_eq!(approved.status, "active");
        assert_eq!(approved.expires_at, Some(1_700));
        assert_eq!(store.active_elevations(1_699).unwrap().len(), 1);
        assert!(store.active_elevations(1_700).unwrap().is_empty());
        assert_eq!(store.due_elevations(1_700).unwrap().len(), 1);
        let ended = store
            .end_elevation(&e.id, false, "reconciler", 1_701)
            .unwrap();
        assert_eq!(ended.status, "expired");
        assert!(store.due_elevations(2_000).unwrap().is_empty());
        assert!(matches!(
            store.end_elevation(&e.id, true, "bob", 1_702),
            Err(ElevationError::State { .. })
        ));
    }

    #[test]
    fn the_requester_cannot_decide_even_past_the_code_check() {
        let mut store = Store::open_in_memory().unwrap();
        let e = store.create_elevation(&ask("alice"), 1_000).unwrap();
        assert!(matches!(
            store.decide_elevation(&e.id, true, "alice", None, 1_001),
            Err(ElevationError::SelfDecision { .. })
        ));
        // The table itself refuses it too.
        let raw = store.conn.execute(
            "UPDATE elevations SET status = 'active', decided_by = 'alice', expires_at = 9
             WHERE id = ?1",
            params![e.id],
        );
        assert!(raw.is_err());
        assert_eq!(store.elevation(&e.id).unwrap().unwrap().status, "pending");
        let denied = store
            .decide_elevation(&e.id, false, "bob", None, 1_002)
            .unwrap();
        assert_eq!(denied.status, "denied");
        assert!(matches!(
            store.decide_elevation(&e.id, true, "carol", None, 1_003),
            Err(ElevationError::State { .. })
        ));
    }

    #[test]
    fn tightenings_are_replaced_and_removed() {
        let mut store = Store::open_in_memory().unwrap();
        let mut t = Tightening {
            tenant: "hog".to_owned(),
            cpu_weight: 10,
            reason: "cpu".to_owned(),
            started_at: 1,
            until: 61,
        };
        store.set_tightening(&t).unwrap();
        t.until = 120;
        store.set_tightening(&t).unwrap();
        assert_eq!(store.tightenings().unwrap(), vec![t]);
        assert!(store.remove_tightening("hog").unwrap());
        assert!(!store.remove_tightening("hog").unwrap());
    }
}
