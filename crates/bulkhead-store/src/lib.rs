//! bulkhead's state: one SQLite file.
//!
//! - [`Store`] is the handle. [`Store::open`] creates the file (mode 0600,
//!   parent directory 0700), turns on WAL with `synchronous=FULL`, foreign
//!   keys and a busy timeout, and applies the numbered schema
//!   [`migrate::MIGRATIONS`] it has not seen, each once, in one transaction.
//!   A database from a newer build is refused with
//!   [`OpenStoreError::NewerSchema`].
//! - **Desired-state revisions.** Every apply saves the applied objects —
//!   [`NewObject`]: an [`ObjectKey`] (kind, optional namespace, name) and
//!   canonical document text — as a [`Revision`] with
//!   [`Store::save_revision`]. Each object and each revision carries a
//!   SHA-256 digest; equal revision digests mean equal desired state.
//!   [`Store::diff_revisions`] compares two revisions into a
//!   [`RevisionDiff`] of [`ObjectChange`]s with unified text diffs.
//! - **Audit log.** [`Store::append_audit`] appends an [`AuditRecord`] to a
//!   hash chain that the database refuses to update or delete, durable
//!   before the call returns. A change is logged as an intent
//!   ([`Store::audit_intent`]) before it is made and an outcome
//!   ([`Store::audit_outcome`]) after; [`Store::audited`] wraps both. The
//!   head is mirrored to an anchor file `<db>.audit-head`.
//!   [`Store::verify_audit`] returns an [`AuditVerification`] naming the
//!   first bad record as a [`Tamper`] (see [`audit::verify`] for the rules).
//! - **Wrapped tenant keys.** [`Store::create_tenant_key`] draws a random
//!   256-bit key per tenant and stores it only wrapped (AES-256-GCM under a
//!   key derived with HKDF-SHA256 from the platform [`MasterKey`]);
//!   [`Store::unwrap_tenant_key`] returns it as a zeroed-on-drop
//!   [`TenantKey`]; [`Store::destroy_tenant_key`] crypto-shreds it (see
//!   [`keys`] for what that reaches: `secure_delete`, WAL truncation, and
//!   what only a master key rotation covers).
//!
//! - **API tokens.** [`Store::create_token`] returns a bearer token once and keeps
//!   only the SHA-256 of its secret; [`Store::authenticate_token`] refuses unknown,
//!   expired and revoked tokens (see [`tokens`]).
//! - **Elevations and tightenings.** [`Store::create_elevation`] records a
//!   request for temporary extra rights; [`Store::decide_elevation`] approves or
//!   denies it, never by its requester (checked in code and by the table);
//!   [`Store::active_elevations`] lists what is in force. [`Tightening`]s are the
//!   daemon's temporary cpu-weight cuts of noisy tenants (see [`elevations`]).
//!
//! The store does not know the spec's types: callers hand it kinds, names
//! and document text, so it depends on nothing else in bulkhead.
#![forbid(unsafe_code)]

pub mod addresses;
pub mod audit;
mod diff;
mod digest;
pub mod elevations;
pub mod ids;
pub mod keys;
pub mod migrate;
mod open;
mod revision;
mod time;
pub mod tokens;

pub use audit::batch::{BatchMember, BatchResult, ChangeReport, MemberRecords, StoreChange};
pub use audit::verify::{AnchorCheck, AuditVerification, Tamper, TamperKind, VerifyAuditError};
pub use audit::{
    AppendAuditError, AuditEntry, AuditHead, AuditOutcome, AuditRecord, Audited, GENESIS_HASH,
    RESULT_PENDING, ReadAuditError,
};
pub use diff::{
    DIFF_CONTEXT_LINES, DiffRevisionsError, ObjectChange, RevisionDiff, diff_revisions,
};
pub use elevations::{Elevation, ElevationError, NewElevation, Tightening};
pub use keys::{
    CreateTenantKeyError, DestroyTenantKeyError, DestroyedKey, MasterKey, MasterKeyError,
    TenantKey, TenantKeyInfo, UnwrapTenantKeyError,
};
pub use open::{AUDIT_HEAD_SUFFIX, BUSY_TIMEOUT, MigrateError, OpenStoreError, Store};
pub use revision::{
    GetRevisionError, ListRevisionsError, NewObject, ObjectKey, Revision, RevisionId,
    RevisionSummary, SaveRevisionError, SavedRevision, StoredObject, revision_digest,
};
pub use tokens::{CreatedToken, NewToken, TOKEN_PREFIX, TokenError, TokenInfo};
