//! bulkhead's control plane, `bulkhead serve`.
//!
//! ```text
//!  HTTP (unix socket / TLS) ──api──> Command ──Daemon::handle──> Backend ──> host
//!          bearer token ──Store──> Principal ──authz (Cedar)──┘      ^
//!  reconciler (timer) ──Daemon::reconcile_once──> Backend::converge ─┘
//!  supervisor: a task per workload ──Backend::spawn──> process ──> logs
//! ```
//!
//! - [`backend::Backend`] is what the daemon asks of the host (apply, suspend,
//!   resume, delete, converge, spawn, usage). The CLI implements it over the same
//!   functions its verbs use, so the daemon depends on nothing above it.
//! - [`api`] is the HTTP edge (axum): handlers build a [`command::Command`] and the
//!   OpenAPI document is generated from them ([`api::openapi`]).
//! - [`daemon::Daemon`] authenticates bearer tokens (kept hashed by the store),
//!   authorizes with the checked-in Cedar policies ([`authz`]), audits every denial,
//!   and acts.
//! - [`supervisor::Supervisor`] runs each workload with its restart policy and
//!   exponential [`supervisor::Backoff`]; [`logs`] keeps their output, rotated.
//! - [`elevate`] is elevated access: requests, the two-person rule, and the overlay
//!   of active grants (and noisy-neighbour tightenings) on the desired state.
//! - [`noisy`] detects sustained pressure per tenant; [`Daemon::noisy_pass`] audits it
//!   and, when the platform enables it, tightens the tenant's cpu weight for a
//!   cool-down (kept in the store, so a restarted daemon restores it on time).
//! - [`metrics`] renders OpenMetrics per tenant.
//! - [`throttle`] refuses a token that keeps being denied with 429 for a while.
//! - [`listen`] binds the unix socket (mode 0660) and the optional TLS listener.
#![forbid(unsafe_code)]

pub mod api;
pub mod authz;
pub mod backend;
pub mod command;
pub mod daemon;
pub mod elevate;
pub mod listen;
pub mod logs;
pub mod metrics;
pub mod noisy;
pub mod supervisor;
pub mod throttle;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use backend::{
    Applied, Backend, BackendError, PressureSeries, Repair, TenantUsage, WorkloadProcess,
};
pub use daemon::Daemon;

/// The TLS listener's settings.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The instance's store.
    pub store: PathBuf,
    /// The unix socket.
    pub socket: PathBuf,
    /// The optional TLS listener.
    pub tls: Option<TlsConfig>,
    /// Where workload logs go.
    pub log_dir: PathBuf,
    /// Log rotation.
    pub log_limits: logs::LogLimits,
    /// Time between reconciler passes (one runs at start).
    pub reconcile_interval: Duration,
    /// Restart delays.
    pub backoff: supervisor::Backoff,
    /// When a denied caller is refused with 429.
    pub denial_limit: throttle::DenialLimit,
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store does not open.
    #[error("cannot open the store")]
    Store(#[from] bulkhead_store::OpenStoreError),
    /// The policies do not load (a build defect).
    #[error("cannot load the authorization policies")]
    Policies(#[from] authz::LoadPoliciesError),
    /// A listener could not be set up.
    #[error("cannot listen")]
    Listen(#[from] listen::ListenError),
    /// Serving failed.
    #[error("serving failed")]
    Io(#[from] std::io::Error),
}

/// Runs the daemon until `shutdown` resolves: the reconciler (a pass at start, then
/// every interval), the supervisor, and the API on the socket (and TLS, if set).
/// Workloads are stopped on the way out.
pub async fn serve(
    config: Config,
    backend: Arc<dyn Backend>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = bulkhead_store::Store::open(&config.store)?;
    let authz = authz::Authorizer::new()?;
    let supervisor = supervisor::Supervisor::new(
        Arc::clone(&backend),
        tokio::runtime::Handle::current(),
        config.log_dir.clone(),
        config.log_limits,
        config.backoff,
    );
    let reader = bulkhead_store::Store::open(&config.store)?;
    let daemon = Arc::new(
        Daemon::new(backend, store, authz, supervisor)
            .with_denial_limit(config.denial_limit)
            .with_reader(reader),
    );
    let unix = listen::unix(&config.socket)?;
    let tls = match &config.tls {
        Some(tls) => Some(
            listen::TlsListener::bind(tls.listen, listen::tls_config(&tls.cert, &tls.key)?).await?,
        ),
        None => None,
    };
    tracing::info!(socket = %config.socket.display(), "listening");

    let reconciler = {
        let daemon = Arc::clone(&daemon);
        let interval = config.reconcile_interval;
        tokio::spawn(async move {
            loop {
                let pass = Arc::clone(&daemon);
                match tokio::task::spawn_blocking(move || pass.reconcile_once()).await {
                    Ok(Ok(repairs)) if !repairs.is_empty() => {
                        tracing::info!(count = repairs.len(), "reconciler repaired drift");
                    }
                    Ok(Err(e)) => tracing::warn!("reconciler pass failed: {e}"),
                    _ => {}
                }
                tokio::time::sleep(interval).await;
            }
        })
    };

    let noisy = {
        let daemon = Arc::clone(&daemon);
        tokio::spawn(async move {
            loop {
                let pass = Arc::clone(&daemon);
                let interval = match tokio::task::spawn_blocking(move || {
                    let settings = pass.noisy_settings();
                    (pass.noisy_pass(), settings.sample_seconds)
                })
                .await
                {
                    Ok((Err(e), seconds)) => {
                        tracing::warn!("noisy-neighbour pass failed: {e}");
                        seconds
                    }
                    Ok((Ok(_), seconds)) => seconds,
                    Err(_) => bulkhead_spec::defaults::NOISY_NEIGHBOURS.sample_seconds,
                };
                tokio::time::sleep(Duration::from_secs(u64::from(interval.max(1)))).await;
            }
        })
    };

    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop.send_replace(true);
    });
    let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let app = api::router(Arc::clone(&daemon));
    let unix_server = axum::serve(unix, app.clone()).with_graceful_shutdown(wait(stopped.clone()));
    let result = match tls {
        Some(tls) => {
            let tls_server = axum::serve(tls, app).with_graceful_shutdown(wait(stopped.clone()));
            let (a, b) = tokio::join!(unix_server, tls_server);
            a.and(b)
        }
        None => unix_server.await,
    };
    reconciler.abort();
    noisy.abort();
    let daemon_for_stop = Arc::clone(&daemon);
    let _ = tokio::task::spawn_blocking(move || {
        daemon_for_stop.supervisor().sync(None);
    })
    .await;
    // Give the workload tasks a moment to kill and reap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = std::fs::remove_file(&config.socket);
    result.map_err(ServeError::Io)
}
