//! What the API can be asked, free of HTTP: handlers turn requests into a [`Command`],
//! the [`crate::Daemon`] answers with a [`Reply`] or an [`ApiError`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::authz::Role;
use crate::backend::Applied;
use crate::elevate::{ElevationChange, ElevationRequest, ElevationView};
use crate::supervisor::WorkloadStatus;

/// One request to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Tenants the caller may read.
    ListTenants,
    /// One tenant.
    GetTenant {
        /// The tenant.
        tenant: String,
    },
    /// Create or change objects (YAML, one or more documents), merged into the last
    /// revision by kind, tenant and name.
    Apply {
        /// The documents.
        yaml: String,
        /// Why.
        message: String,
    },
    /// Freeze a tenant.
    Suspend {
        /// The tenant.
        tenant: String,
        /// Also remove its volume key from the kernel.
        evict_key: bool,
    },
    /// Thaw a tenant.
    Resume {
        /// The tenant.
        tenant: String,
    },
    /// Offboard a tenant.
    Delete {
        /// The tenant.
        tenant: String,
    },
    /// A tenant's workloads and their state.
    ListWorkloads {
        /// The tenant.
        tenant: String,
    },
    /// The last lines of a workload's log.
    Logs {
        /// The tenant.
        tenant: String,
        /// The workload.
        workload: String,
        /// How many lines.
        tail: usize,
    },
    /// Run a command in a workload's cgroup and tenant sandbox, to completion.
    Exec {
        /// The tenant.
        tenant: String,
        /// The workload.
        workload: String,
        /// Program and arguments.
        command: Vec<String>,
        /// Seconds before it is killed.
        timeout_seconds: u64,
    },
    /// Every token (without secrets).
    ListTokens,
    /// A new token.
    CreateToken(TokenRequest),
    /// Revoke a token.
    RevokeToken {
        /// Its id.
        id: String,
    },
    /// Audit records.
    AuditLog {
        /// Only after this sequence number.
        after: u64,
        /// At most this many.
        limit: u64,
    },
    /// OpenMetrics text.
    Metrics,
    /// Every elevation.
    ListElevations,
    /// Ask for an elevation.
    RequestElevation(ElevationRequest),
    /// Approve (`approve`) or deny a pending elevation.
    DecideElevation {
        /// Its id.
        id: String,
        /// Approve, else deny.
        approve: bool,
        /// The decider's note.
        note: Option<String>,
    },
    /// End an active elevation now.
    RevokeElevation {
        /// Its id.
        id: String,
    },
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Tenants.
    Tenants(Vec<TenantSummary>),
    /// One tenant.
    Tenant(TenantDetail),
    /// The outcome of a change.
    Applied(Applied),
    /// Workloads.
    Workloads(Vec<WorkloadStatus>),
    /// Log lines.
    Logs(Vec<String>),
    /// A finished exec.
    Exec(ExecResult),
    /// Tokens.
    Tokens(Vec<TokenView>),
    /// A new token, with its secret.
    Token(CreatedTokenView),
    /// A revoked token.
    Revoked(TokenView),
    /// Audit records.
    Audit(Vec<AuditRecordView>),
    /// OpenMetrics text.
    Metrics(String),
    /// Elevations.
    Elevations(Vec<ElevationView>),
    /// One elevation.
    Elevation(ElevationView),
    /// A decided or revoked elevation and what the host did.
    ElevationChanged(ElevationChange),
}

/// Why a request failed; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No valid token (401).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The policies deny it (403); audited.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such object (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The object is not in a state that allows it (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input does not validate (422).
    #[error("invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The request is malformed (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The caller was denied too often and is blocked for a while (429).
    #[error("too many requests: {message}")]
    TooManyRequests {
        /// Why, for a person.
        message: String,
        /// Seconds until the block ends.
        retry_after: u64,
    },
    /// Something failed on the host or in the store (500).
    #[error("failed: {0}")]
    Failed(String),
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// unauthenticated, forbidden, not-found, conflict, invalid, bad-request,
    /// too-many-requests or failed.
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// For invalid input: one entry per problem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl ApiError {
    /// The body sent for this error.
    pub fn body(&self) -> ErrorBody {
        let (error, problems) = match self {
            ApiError::Unauthenticated(_) => ("unauthenticated", vec![]),
            ApiError::Forbidden(_) => ("forbidden", vec![]),
            ApiError::NotFound(_) => ("not-found", vec![]),
            ApiError::Conflict(_) => ("conflict", vec![]),
            ApiError::TooManyRequests { .. } => ("too-many-requests", vec![]),
            ApiError::Invalid(p) => ("invalid", p.clone()),
            ApiError::BadRequest(_) => ("bad-request", vec![]),
            ApiError::Failed(_) => ("failed", vec![]),
        };
        ErrorBody {
            error: error.to_owned(),
            message: self.to_string(),
            problems,
        }
    }
}

/// A tenant in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantSummary {
    /// Its name.
    pub name: String,
    /// active or suspended.
    pub state: String,
    /// restricted, baseline or privileged.
    pub profile: String,
    /// How many workloads it declares.
    pub workloads: usize,
}

/// One tenant in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: TenantSummary,
    /// The canonical Tenant object, defaults filled in.
    #[schema(value_type = Object)]
    pub object: serde_json::Value,
    /// Its supervised workloads.
    pub workload_status: Vec<WorkloadStatus>,
}

/// What `POST /tenants/{tenant}/workloads/{workload}/exec` runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecRequest {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Seconds before it is killed (default 30, at most 600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// A finished exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecResult {
    /// Exit code, or 128 + signal.
    pub exit_code: i32,
    /// Standard output (at most 1 MiB, lossy UTF-8).
    pub stdout: String,
    /// Standard error (at most 1 MiB, lossy UTF-8).
    pub stderr: String,
    /// True when the timeout killed it.
    pub timed_out: bool,
}

/// What a new token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Who will hold it.
    pub subject: String,
    /// The role.
    pub role: Role,
    /// For tenant roles: the tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Lifetime in seconds (at most a year).
    pub ttl_seconds: u64,
}

/// A token without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Public id.
    pub id: String,
    /// Holder.
    pub subject: String,
    /// Role.
    pub role: String,
    /// Tenant of a tenant role.
    pub tenant: Option<String>,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Expires, unix seconds.
    pub expires_at: i64,
    /// Revoked, unix seconds.
    pub revoked_at: Option<i64>,
}

impl From<bulkhead_store::TokenInfo> for TokenView {
    fn from(t: bulkhead_store::TokenInfo) -> Self {
        TokenView {
            id: t.id,
            subject: t.subject,
            role: t.role,
            tenant: t.tenant,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A new token: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedTokenView {
    /// What was stored.
    #[serde(flatten)]
    pub info: TokenView,
    /// The bearer token.
    pub token: String,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecordView {
    /// Position in the chain.
    pub seq: u64,
    /// RFC 3339.
    pub time: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// To what.
    pub object: String,
    /// pending, succeeded, failed, denied, …
    pub result: String,
    /// Detail.
    pub detail: Option<String>,
    /// The intent this outcome reports on.
    pub refers_to: Option<u64>,
    /// This record's hash.
    pub hash: String,
}

impl From<bulkhead_store::AuditRecord> for AuditRecordView {
    fn from(r: bulkhead_store::AuditRecord) -> Self {
        AuditRecordView {
            seq: r.seq,
            time: r.time,
            actor: r.actor,
            action: r.action,
            object: r.object,
            result: r.result,
            detail: r.detail,
            refers_to: r.refers_to,
            hash: r.hash,
        }
    }
}

/// The daemon's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// "ok".
    pub status: String,
    /// The instance.
    pub instance: String,
    /// The reconciler.
    pub reconciler: ReconcileStatus,
}

/// What the reconciler did last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconcileStatus {
    /// Passes run.
    pub passes: u64,
    /// Passes that failed.
    pub failures: u64,
    /// Repairs made since start.
    pub repairs: u64,
    /// Unix ms when the last pass ended.
    pub last_pass_unix_ms: Option<u64>,
    /// How long it took, ms.
    pub last_duration_ms: Option<u64>,
    /// Actions it took.
    pub last_actions: Vec<String>,
    /// Why it failed.
    pub last_error: Option<String>,
    /// True when the last pass found nothing to do or repaired everything.
    pub converged: bool,
}
