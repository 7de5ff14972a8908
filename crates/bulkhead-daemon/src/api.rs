//! The HTTP edge: each handler turns a request into a [`Command`], runs it on the
//! blocking pool through [`Daemon::authenticate`] and [`Daemon::handle`], and turns
//! the [`Reply`] or [`ApiError`] into a response. No axum type goes further in.
//! The OpenAPI document is generated from these handlers ([`openapi`]) and checked in
//! as `docs/openapi.json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::backend::Applied;
use crate::command::{
    ApiError, AuditRecordView, Command, CreatedTokenView, ErrorBody, ExecRequest, ExecResult,
    Health, Reply, TenantDetail, TenantSummary, TokenRequest, TokenView,
};
use crate::daemon::Daemon;
use crate::elevate::{Decision, ElevationChange, ElevationRequest, ElevationView};
use crate::supervisor::WorkloadStatus;

/// Largest request body (an apply of many tenants fits easily).
pub const MAX_BODY: usize = 4 << 20;
/// The content type of `/metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Shared = State<Arc<Daemon>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let status = match &self {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, Json(self.body())).into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = header::HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
}

/// Authenticates and runs `command` off the async runtime.
async fn call(
    daemon: Arc<Daemon>,
    headers: &HeaderMap,
    command: Command,
) -> Result<Reply, ApiError> {
    let token = bearer(headers);
    tokio::task::spawn_blocking(move || {
        let who = daemon.authenticate(token.as_deref())?;
        daemon.handle(&who, command)
    })
    .await
    .map_err(|e| ApiError::Failed(format!("the request's task failed: {e}")))?
}

fn unexpected(reply: &Reply) -> ApiError {
    ApiError::Failed(format!("internal: unexpected reply {reply:?}"))
}

/// `GET /health`: no authentication; the reconciler's last pass.
#[utoipa::path(get, path = "/health", tag = "daemon",
    responses((status = 200, description = "The daemon runs", body = Health)))]
async fn health(State(daemon): Shared) -> Json<Health> {
    Json(daemon.health())
}

/// `GET /metrics`: OpenMetrics text (platform-admin).
#[utoipa::path(get, path = "/metrics", tag = "daemon", security(("bearer" = [])),
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn metrics(State(daemon): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    match call(daemon, &headers, Command::Metrics).await? {
        Reply::Metrics(text) => Ok(([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()),
        other => Err(unexpected(&other)),
    }
}

/// `GET /tenants`: the tenants the caller may read.
#[utoipa::path(get, path = "/tenants", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = Vec<TenantSummary>), (status = 401, body = ErrorBody)))]
async fn list_tenants(
    State(daemon): Shared,
    headers: HeaderMap,
) -> Result<Json<Vec<TenantSummary>>, ApiError> {
    match call(daemon, &headers, Command::ListTenants).await? {
        Reply::Tenants(t) => Ok(Json(t)),
        other => Err(unexpected(&other)),
    }
}

/// `GET /tenants/{tenant}`.
#[utoipa::path(get, path = "/tenants/{tenant}", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant")),
    responses((status = 200, body = TenantDetail), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_tenant(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Json<TenantDetail>, ApiError> {
    match call(daemon, &headers, Command::GetTenant { tenant }).await? {
        Reply::Tenant(t) => Ok(Json(t)),
        other => Err(unexpected(&other)),
    }
}

/// Query of `POST /apply`.
#[derive(Debug, Deserialize, IntoParams)]
struct ApplyQuery {
    /// Why: stored with the revision and in the audit log.
    message: Option<String>,
}

/// `POST /apply`: YAML documents (Platform, Tenant, Workload) merged into the last
/// revision by kind, tenant and name; a new audited revision; the host converges.
#[utoipa::path(post, path = "/apply", tag = "tenants", security(("bearer" = [])),
    params(ApplyQuery),
    request_body(content = String, content_type = "application/yaml", description = "One or more YAML documents"),
    responses((status = 200, body = Applied), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "The documents do not validate", body = ErrorBody)))]
async fn apply(
    State(daemon): Shared,
    headers: HeaderMap,
    Query(query): Query<ApplyQuery>,
    body: String,
) -> Result<Json<Applied>, ApiError> {
    let command = Command::Apply {
        yaml: body,
        message: query.message.unwrap_or_default(),
    };
    match call(daemon, &headers, command).await? {
        Reply::Applied(a) => Ok(Json(a)),
        other => Err(unexpected(&other)),
    }
}

/// Query of `POST /tenants/{tenant}/suspend`.
#[derive(Debug, Deserialize, IntoParams)]
struct SuspendQuery {
    /// Also remove the tenant's volume key from the kernel.
    #[serde(default)]
    evict_key: bool,
}

/// `POST /tenants/{tenant}/suspend`.
#[utoipa::path(post, path = "/tenants/{tenant}/suspend", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant"), SuspendQuery),
    responses((status = 200, body = Applied), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn suspend(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Query(query): Query<SuspendQuery>,
) -> Result<Json<Applied>, ApiError> {
    let command = Command::Suspend {
        tenant,
        evict_key: query.evict_key,
    };
    match call(daemon, &headers, command).await? {
        Reply::Applied(a) => Ok(Json(a)),
        other => Err(unexpected(&other)),
    }
}

/// `POST /tenants/{tenant}/resume`.
#[utoipa::path(post, path = "/tenants/{tenant}/resume", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant")),
    responses((status = 200, body = Applied), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn resume(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Json<Applied>, ApiError> {
    match call(daemon, &headers, Command::Resume { tenant }).await? {
        Reply::Applied(a) => Ok(Json(a)),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /tenants/{tenant}`: offboard (stop, destroy the volume, crypto-shred).
#[utoipa::path(delete, path = "/tenants/{tenant}", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant")),
    responses((status = 200, body = Applied), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_tenant(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Json<Applied>, ApiError> {
    match call(daemon, &headers, Command::Delete { tenant }).await? {
        Reply::Applied(a) => Ok(Json(a)),
        other => Err(unexpected(&other)),
    }
}

/// `GET /tenants/{tenant}/workloads`: supervised workloads and their state.
#[utoipa::path(get, path = "/tenants/{tenant}/workloads", tag = "workloads", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant")),
    responses((status = 200, body = Vec<WorkloadStatus>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_workloads(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<WorkloadStatus>>, ApiError> {
    match call(daemon, &headers, Command::ListWorkloads { tenant }).await? {
        Reply::Workloads(w) => Ok(Json(w)),
        other => Err(unexpected(&other)),
    }
}

/// Query of the logs route.
#[derive(Debug, Deserialize, IntoParams)]
struct LogsQuery {
    /// How many of the last lines (default 100, at most 10000).
    tail: Option<usize>,
}

/// `GET /tenants/{tenant}/workloads/{workload}/logs`: the last lines, oldest first.
#[utoipa::path(get, path = "/tenants/{tenant}/workloads/{workload}/logs", tag = "workloads",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant"),
        ("workload" = String, Path, description = "The workload"), LogsQuery),
    responses((status = 200, body = Vec<String>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn logs(
    State(daemon): Shared,
    headers: HeaderMap,
    Path((tenant, workload)): Path<(String, String)>,
    Query(query): Query<LogsQuery>,
) -> Result<Json<Vec<String>>, ApiError> {
    let command = Command::Logs {
        tenant,
        workload,
        tail: query.tail.unwrap_or(100),
    };
    match call(daemon, &headers, command).await? {
        Reply::Logs(lines) => Ok(Json(lines)),
        other => Err(unexpected(&other)),
    }
}

/// `POST /tenants/{tenant}/workloads/{workload}/exec`: run a command in the workload's
/// cgroup and the tenant's sandbox to completion (audited).
#[utoipa::path(post, path = "/tenants/{tenant}/workloads/{workload}/exec", tag = "workloads",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "The tenant"),
        ("workload" = String, Path, description = "The workload")),
    request_body = ExecRequest,
    responses((status = 200, body = ExecResult), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn exec(
    State(daemon): Shared,
    headers: HeaderMap,
    Path((tenant, workload)): Path<(String, String)>,
    Json(request): Json<ExecRequest>,
) -> Result<Json<ExecResult>, ApiError> {
    let command = Command::Exec {
        tenant,
        workload,
        command: request.command,
        timeout_seconds: request.timeout_seconds.unwrap_or(30),
    };
    match call(daemon, &headers, command).await? {
        Reply::Exec(result) => Ok(Json(result)),
        other => Err(unexpected(&other)),
    }
}

/// `GET /tokens` (platform-admin).
#[utoipa::path(get, path = "/tokens", tag = "tokens", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_tokens(
    State(daemon): Shared,
    headers: HeaderMap,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    match call(daemon, &headers, Command::ListTokens).await? {
        Reply::Tokens(t) => Ok(Json(t)),
        other => Err(unexpected(&other)),
    }
}

/// `POST /tokens` (platform-admin): the secret is in this response only.
#[utoipa::path(post, path = "/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = TokenRequest,
    responses((status = 200, body = CreatedTokenView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_token(
    State(daemon): Shared,
    headers: HeaderMap,
    Json(request): Json<TokenRequest>,
) -> Result<Json<CreatedTokenView>, ApiError> {
    match call(daemon, &headers, Command::CreateToken(request)).await? {
        Reply::Token(t) => Ok(Json(t)),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /tokens/{id}` (platform-admin): revoke.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = String, Path, description = "The token's public id")),
    responses((status = 200, body = TokenView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    match call(daemon, &headers, Command::RevokeToken { id }).await? {
        Reply::Revoked(t) => Ok(Json(t)),
        other => Err(unexpected(&other)),
    }
}

/// Query of `GET /audit`.
#[derive(Debug, Deserialize, IntoParams)]
struct AuditQuery {
    /// Only records after this sequence number.
    #[serde(default)]
    after: u64,
    /// At most this many (default 1000).
    limit: Option<u64>,
}

/// `GET /audit` (platform-admin): the hash-chained audit log.
#[utoipa::path(get, path = "/audit", tag = "daemon", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecordView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn audit(
    State(daemon): Shared,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecordView>>, ApiError> {
    let command = Command::AuditLog {
        after: query.after,
        limit: query.limit.unwrap_or(1000),
    };
    match call(daemon, &headers, command).await? {
        Reply::Audit(records) => Ok(Json(records)),
        other => Err(unexpected(&other)),
    }
}

/// `GET /elevations` (platform-admin): every elevation, oldest first.
#[utoipa::path(get, path = "/elevations", tag = "elevations", security(("bearer" = [])),
    responses((status = 200, body = Vec<ElevationView>), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
async fn list_elevations(
    State(daemon): Shared,
    headers: HeaderMap,
) -> Result<Json<Vec<ElevationView>>, ApiError> {
    match call(daemon, &headers, Command::ListElevations).await? {
        Reply::Elevations(e) => Ok(Json(e)),
        other => Err(unexpected(&other)),
    }
}

/// `POST /elevations` (platform-admin): ask for a temporary elevation; another
/// platform admin must approve it (audited).
#[utoipa::path(post, path = "/elevations", tag = "elevations", security(("bearer" = [])),
    request_body = ElevationRequest,
    responses((status = 200, description = "Pending", body = ElevationView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "The parameters do not apply to the tenant", body = ErrorBody)))]
async fn request_elevation(
    State(daemon): Shared,
    headers: HeaderMap,
    Json(request): Json<ElevationRequest>,
) -> Result<Json<ElevationView>, ApiError> {
    match call(daemon, &headers, Command::RequestElevation(request)).await? {
        Reply::Elevation(e) => Ok(Json(e)),
        other => Err(unexpected(&other)),
    }
}

/// An optional JSON [`Decision`]: an empty body is none.
fn decision(body: &[u8]) -> Result<Option<Decision>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"note\": \"…\"}} or nothing: {e}")))
}

async fn decide(
    daemon: Arc<Daemon>,
    headers: &HeaderMap,
    id: String,
    approve: bool,
    decision: Option<Decision>,
) -> Result<Json<ElevationChange>, ApiError> {
    let command = Command::DecideElevation {
        id,
        approve,
        note: decision.and_then(|d| d.note),
    };
    match call(daemon, headers, command).await? {
        Reply::ElevationChanged(c) => Ok(Json(c)),
        other => Err(unexpected(&other)),
    }
}

/// `POST /elevations/{id}/approve` (platform-admin, not the requester): the grant
/// takes effect at once and the host converges to it.
#[utoipa::path(post, path = "/elevations/{id}/approve", tag = "elevations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The elevation")),
    request_body(content = Option<Decision>, description = "An optional note"),
    responses((status = 200, body = ElevationChange), (status = 401, body = ErrorBody),
        (status = 403, description = "Not allowed, or the caller requested it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody)))]
async fn approve_elevation(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ElevationChange>, ApiError> {
    decide(daemon, &headers, id, true, decision(&body)?).await
}

/// `POST /elevations/{id}/deny` (platform-admin, not the requester).
#[utoipa::path(post, path = "/elevations/{id}/deny", tag = "elevations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The elevation")),
    request_body(content = Option<Decision>, description = "An optional note"),
    responses((status = 200, body = ElevationChange), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody)))]
async fn deny_elevation(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ElevationChange>, ApiError> {
    decide(daemon, &headers, id, false, decision(&body)?).await
}

/// `POST /elevations/{id}/revoke` (platform-admin): end an active elevation now; the
/// host converges back.
#[utoipa::path(post, path = "/elevations/{id}/revoke", tag = "elevations",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The elevation")),
    responses((status = 200, body = ElevationChange), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Not active", body = ErrorBody)))]
async fn revoke_elevation(
    State(daemon): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ElevationChange>, ApiError> {
    match call(daemon, &headers, Command::RevokeElevation { id }).await? {
        Reply::ElevationChanged(c) => Ok(Json(c)),
        other => Err(unexpected(&other)),
    }
}

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("bht_<id>_<secret>")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bulkhead control plane",
        description = "Tenants, workloads, tokens and the audit log of one bulkhead instance. \
            Served on a unix socket (<state>/<instance>/api.sock) and optionally over TLS. \
            Every route but /health needs a bearer token; Cedar policies decide.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

fn router_parts() -> OpenApiRouter<Arc<Daemon>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(list_tenants))
        .routes(routes!(get_tenant, delete_tenant))
        .routes(routes!(apply))
        .routes(routes!(suspend))
        .routes(routes!(resume))
        .routes(routes!(list_workloads))
        .routes(routes!(logs))
        .routes(routes!(exec))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(audit))
        .routes(routes!(list_elevations, request_elevation))
        .routes(routes!(approve_elevation))
        .routes(routes!(deny_elevation))
        .routes(routes!(revoke_elevation))
}

/// The API's router.
pub fn router(daemon: Arc<Daemon>) -> axum::Router {
    let (router, _) = router_parts().split_for_parts();
    router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(daemon)
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = router_parts().into_openapi();
    // The crate version would churn the checked-in file on every release bump.
    doc.info.version = "v1".to_owned();
    doc
}

/// The OpenAPI document as the checked-in `docs/openapi.json` holds it.
pub fn openapi_json() -> String {
    let mut text = openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
