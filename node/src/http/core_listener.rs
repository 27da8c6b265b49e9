//! Core's own listener (`[core] listen`): only Core's routes, optionally over TLS.
//!
//! The local admin API stays on loopback (`api_listen`); this listener may face the LAN or
//! the internet, so it serves nothing else: `/auction`, `/jobs`, `/jobs/{id}`, `/status` and
//! `/openapi.json`, every other path 404. Requests are authenticated by Core's signatures
//! (HMAC or Ed25519), not the bearer token, and rate-limited per client like the rest.
//!
//! TLS (rustls) comes from PEM files. Handshakes run in their own tasks with a deadline, so a
//! client that opens a connection and says nothing holds up no one else.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    extract::DefaultBodyLimit,
    routing::{get, post},
    Router,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{core::routes as core, error::ApiError, openapi, status, AppState};

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; beyond, new connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// Core's routes alone, with the same rate limit and body limit as the local API.
pub fn router(state: AppState, max_concurrent: usize) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/auction", post(core::auction))
        .route("/jobs", post(core::submit))
        .route("/jobs/{id}", get(core::job_state))
        .route("/status", get(status))
        .route("/openapi.json", get(openapi::openapi_json))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::guard,
        ))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn(client_addr))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            max_concurrent.max(1),
        ))
        .with_state(state)
}

/// The TLS server settings from a PEM certificate chain and key.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("[core] tls_cert {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("[core] tls_cert {}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "[core] tls_cert {} holds no certificate",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("[core] tls_key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("[core] tls_cert and tls_key do not make a certificate")?;
    Ok(Arc::new(cfg))
}

/// The client's address on the Core listener, plain or TLS.
#[derive(Debug, Clone, Copy)]
struct Client(SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for Client
{
    fn connect_info(s: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Client(*s.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for Client
{
    fn connect_info(s: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Client(*s.remote_addr())
    }
}

/// Gives the rate limiter the client's address in the form the local API's connections
/// carry it.
async fn client_addr(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(axum::extract::ConnectInfo(Client(a))) = req.extensions().get().copied() {
        req.extensions_mut().insert(axum::extract::ConnectInfo(a));
    }
    next.run(req).await
}

/// A listener whose connections have finished their TLS handshake.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor stopped (shutdown): wait for the server's graceful end.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Accepts TCP connections and hands over those whose handshake completes in time.
async fn handshakes(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tcp.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "Core listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Binds `[core] listen` and serves Core's routes there until `cancel`; returns the bound
/// address.
pub async fn serve(
    listen: &str,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    cancel: CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<SocketAddr> {
    let tcp = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind the Core listener on {listen}"))?;
    let addr = tcp.local_addr()?;
    let app = app.into_make_service_with_connect_info::<Client>();
    let shutdown = cancel.clone();
    let secure = tls.is_some();
    match tls {
        Some(cfg) => {
            let (tx, rx) = mpsc::channel(64);
            tasks.spawn(handshakes(tcp, TlsAcceptor::from(cfg), tx, cancel.clone()));
            tasks.spawn(async move {
                let serve = axum::serve(TlsListener { rx, addr }, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await });
                if let Err(e) = serve.await {
                    warn!(error = %e, "Core listener stopped");
                }
            });
        }
        None => {
            tasks.spawn(async move {
                let serve = axum::serve(tcp, app)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await });
                if let Err(e) = serve.await {
                    warn!(error = %e, "Core listener stopped");
                }
            });
        }
    }
    info!(%addr, tls = secure, "Core listener started");
    Ok(addr)
}
