//! Where the API listens: a unix socket (the default, `<state>/<instance>/api.sock`,
//! mode 0660) and optionally TCP with TLS (rustls on ring). TLS handshakes run on
//! their own tasks with a deadline, so a client that stalls mid-handshake holds up
//! nobody else's connection.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another daemon answers on the socket.
    #[error("{0}: another daemon is already listening (expected one daemon per instance)")]
    InUse(PathBuf),
    /// Binding or setting permissions failed.
    #[error("{path}: cannot listen")]
    Socket {
        /// The socket or address.
        path: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The certificate or key does not load.
    #[error("{path}: cannot load TLS material: {message}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Binds the unix socket at `path` with mode 0660, replacing a stale socket file (one
/// nobody answers on).
pub fn unix(path: &Path) -> Result<UnixListener, ListenError> {
    let socket_error = |source| ListenError::Socket {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ListenError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(socket_error)?;
    }
    let listener = UnixListener::bind(path).map_err(socket_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(socket_error)?;
    Ok(listener)
}

/// The TLS server configuration from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ListenError> {
    let tls_error = |path: &Path, message: String| ListenError::Tls {
        path: path.to_owned(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(tls_error(cert, "no certificate in the file".to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| tls_error(cert, e.to_string()))?;
    Ok(Arc::new(config))
}

/// A TCP listener that hands out connections once their TLS handshake is done.
#[derive(Debug)]
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Listens on `address` with `config`.
    pub async fn bind(
        address: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<TlsListener, ListenError> {
        let tcp = TcpListener::bind(address)
            .await
            .map_err(|source| ListenError::Socket {
                path: address.to_string(),
                source,
            })?;
        let local = tcp.local_addr().map_err(|source| ListenError::Socket {
            path: address.to_string(),
            source,
        })?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, accepted) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!("tls accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "tls handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { accepted, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(pair) => pair,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
