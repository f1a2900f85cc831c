//! The HTTP server: one listener for iPXE scripts, UEFI HTTP boot, images, the nodes' private
//! install URLs, the JSON API, `/metrics` and the status page.
//!
//! Handlers translate: they parse what the client sent, ask [`Nodes`](crate::provision::Nodes) (which decides, from the
//! config and the store) and turn the answer into a response. Store calls are blocking SQLite
//! work and run on a blocking pool, never on the threads that drive connections. Connections
//! are served by one single-threaded runtime per core ([`serve`]).
//!
//! The caller binds the listener and passes a shutdown signal; on shutdown the server stops
//! accepting and lets requests in flight finish.

mod api;
mod app;
pub mod apt;
mod boot;
mod connection;
pub mod files;
mod node;
mod registry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tower_service::Service as _;

use crate::metrics::{Metrics, Route};

pub use app::App;
use app::HEADER_TIMEOUT;

/// [`crate::fuzzing::http`]: a request head as the connection loop reads it.
#[doc(hidden)]
pub fn fuzz_head(data: &[u8]) {
    connection::fuzz_head(data);
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .merge(boot::routes())
        .merge(node::routes())
        .merge(api::routes())
        .merge(apt::routes())
        .merge(registry::routes())
        .with_state(app)
}

/// hyper's per-connection write buffer limit. hyper keeps polling a body while its buffer is
/// below this (default about 400 KiB), so a slow client would pin several file chunks; at the
/// minimum one chunk is in flight per connection (measured: 200 rate-limited clients of a
/// 256 MiB image took 140 MiB resident with the default, see tests/tests/http.rs).
const MAX_WRITE_BUFFER: usize = 8192;
/// Blocking threads per worker (file chunk reads, store calls). Each job is one `pread` or one
/// short transaction; tokio's default of 512 let 200 slow clients grow a pool to about 95
/// threads (tests/tests/http.rs measures the memory).
const BLOCKING_THREADS: usize = 8;
/// How long requests in flight may take to finish after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);
/// Connections one client address may hold at once. A booting node holds a few (iPXE, then the
/// installer's downloads and apt); 1,100 idle connections from one host once took every file
/// descriptor and stopped HTTP for everyone.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 128;
/// File descriptors kept out of HTTP's share: the store, the TFTP transfers
/// ([`crate::tftp::MAX_TRANSFERS`]), the DHCP sockets, the mirror's upstream connections.
const FDS_RESERVED: u64 = crate::tftp::MAX_TRANSFERS as u64 + 128;

/// How many connections HTTP takes at once under an open-file limit of `nofile`: each may hold
/// a second descriptor (the image file it is sending), and [`FDS_RESERVED`] stay for the rest.
pub fn max_connections(nofile: u64) -> usize {
    (nofile.saturating_sub(FDS_RESERVED) / 2).clamp(16, 65_536) as usize
}

/// Open connections, in all and per client address. A connection's [`Slot`] gives its place
/// back when it ends.
#[derive(Debug)]
struct Connections {
    limit: usize,
    per_client: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
}

/// One connection's place in [`Connections`].
struct Slot {
    connections: Arc<Connections>,
    ip: std::net::IpAddr,
}

impl Connections {
    fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            per_client: std::sync::Mutex::default(),
            total: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A place for a connection from `ip`, or why not.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Result<Slot, &'static str> {
        use std::sync::atomic::Ordering;
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= self.limit {
            return Err("seed's connection limit is reached");
        }
        let mine = per_client.entry(ip).or_default();
        if *mine >= MAX_CONNECTIONS_PER_CLIENT {
            return Err("this client's connection limit is reached");
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            connections: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_client = self
            .connections
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.ip);
            }
        }
        self.connections
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A TLS server config from PEM files: the certificate chain (leaf first) and its private key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map(Arc::new)
        .map_err(|e| format!("{} and its key: {e}", cert.display()))
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every route: seed's HTTP port.
    All,
    /// The container registry's `/v2/` only: its port of its own (`registry.port`).
    Registry,
}

/// Serve every route on `listener` (bound by the caller) until `shutdown` resolves, then let
/// requests in flight finish (for at most [`DRAIN`]). At most `max_connections` at once (see
/// [`max_connections`]), [`MAX_CONNECTIONS_PER_CLIENT`] of them from one address; a connection
/// beyond is closed at once.
pub async fn serve(
    listener: std::net::TcpListener,
    app: Arc<App>,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_scope(listener, app, Scope::All, None, max_connections, shutdown).await
}

/// [`serve`] for what `scope` names, over TLS when `tls` is given.
pub async fn serve_scope(
    listener: std::net::TcpListener,
    app: Arc<App>,
    scope: Scope,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    match scope {
        Scope::All => {
            tracing::info!(local = %listener.local_addr()?, max_connections, "HTTP server running");
        }
        Scope::Registry => {
            tracing::info!(local = %listener.local_addr()?, max_connections, tls = tls.is_some(), "registry port running");
        }
    }
    let open = Connections::new(max_connections);
    let mut refused_log = crate::loglimit::LogLimit::new(5, Duration::from_secs(10));
    let metrics = Arc::clone(&app.metrics);
    let router = match scope {
        Scope::All => router(Arc::clone(&app)),
        Scope::Registry => registry::routes().with_state(Arc::clone(&app)),
    };
    let connections = GracefulShutdown::new();
    // Tells connections still on the zero-copy path (hyper's are told by `connections`).
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = Workers::start(
        &router,
        &app,
        scope,
        tls.map(tokio_rustls::TlsAcceptor::from),
        &metrics,
        &stopped,
    )?;
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or the like: log, give the process a moment to
                    // recover, and keep serving the connections it has.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match open.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                crate::limited!(refused_log, warn, %peer, "HTTP connection closed: {why}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Round robin: keep-alive clients stay on the worker that took them.
        next = next.wrapping_add(1);
        workers.hand(next, stream, peer, slot, connections.watcher());
    }
    drop(listener);
    let _ = stop.send(true);
    drop(workers);
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("HTTP requests still running after {} s; stopping anyway", DRAIN.as_secs());
        }
    }
    Ok(())
}

/// A connection on its way to a worker, with its place among the open ones and the watcher that
/// tells it about shutdown.
type Handover = (std::net::TcpStream, SocketAddr, Slot, Watcher);

/// One thread per core, each with a single-threaded runtime that owns the connections handed to
/// it: a connection's reads, handler and writes never wake another thread. The multi-threaded
/// runtime spent a quarter of its time in the scheduler's cross-thread wakeups under small-file
/// load (perf, bench/http).
struct Workers {
    senders: Vec<tokio::sync::mpsc::UnboundedSender<Handover>>,
}

impl Workers {
    fn start(
        router: &Router,
        app: &Arc<App>,
        scope: Scope,
        tls: Option<tokio_rustls::TlsAcceptor>,
        metrics: &Arc<Metrics>,
        stopped: &tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut senders = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Handover>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(BLOCKING_THREADS)
                .build()?;
            let router = router.clone();
            let app = Arc::clone(app);
            let metrics = Arc::clone(metrics);
            let stopped = stopped.clone();
            let tls = tls.clone();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    let mut http1 = hyper::server::conn::http1::Builder::new();
                    http1
                        .max_buf_size(MAX_WRITE_BUFFER)
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT);
                    runtime.block_on(async move {
                        let mut running = tokio::task::JoinSet::new();
                        while let Some((stream, peer, slot, watcher)) = rx.recv().await {
                            let stream = match tokio::net::TcpStream::from_std(stream) {
                                Ok(stream) => stream,
                                Err(e) => {
                                    tracing::warn!(%peer, error = %e, "cannot take an HTTP connection");
                                    continue;
                                }
                            };
                            let service = counted(router.clone(), Arc::clone(&metrics), peer);
                            let (app, router, http1, mut stopped) = (
                                Arc::clone(&app),
                                router.clone(),
                                http1.clone(),
                                stopped.clone(),
                            );
                            let tls = tls.clone();
                            running.spawn(async move {
                                // TLS: hyper's from the start (sendfile cannot encrypt).
                                if let Some(acceptor) = tls {
                                    let handshake =
                                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream));
                                    match handshake.await {
                                        Ok(Ok(stream)) => {
                                            let io = TokioIo::new(stream);
                                            let connection = watcher
                                                .watch(http1.serve_connection(io, service));
                                            if let Err(e) = connection.await {
                                                tracing::debug!(%peer, error = %e, "HTTPS connection ended");
                                            }
                                        }
                                        Ok(Err(e)) => {
                                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                        }
                                        Err(_) => {
                                            tracing::debug!(%peer, "TLS handshake timed out");
                                        }
                                    }
                                    drop(slot);
                                    return;
                                }
                                // Bodiless requests here (files with sendfile); hyper from
                                // the first request that is not one.
                                if let connection::Outcome::Handover(stream, read) =
                                    connection::serve(
                                        stream,
                                        &app,
                                        &router,
                                        scope,
                                        peer,
                                        &mut stopped,
                                    )
                                    .await
                                {
                                    let io =
                                        TokioIo::new(connection::Prefixed::new(stream, read));
                                    let connection =
                                        watcher.watch(http1.serve_connection(io, service));
                                    if let Err(e) = connection.await {
                                        tracing::debug!(%peer, error = %e, "HTTP connection ended");
                                    }
                                }
                                drop(slot);
                            });
                            // Reap finished connections as we go.
                            while running.try_join_next().is_some() {}
                        }
                        // Shutting down: let the connections finish (the caller bounds the wait).
                        while running.join_next().await.is_some() {}
                    });
                })?;
            senders.push(tx);
        }
        Ok(Self { senders })
    }

    /// Give a connection to worker `n` (modulo their number).
    fn hand(
        &self,
        n: usize,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        slot: Slot,
        watcher: Watcher,
    ) {
        let sender = &self.senders[n % self.senders.len()];
        // The stream is registered with the accepting runtime's reactor; move it as a plain
        // socket and register it again on the worker's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand over an HTTP connection");
                return;
            }
        };
        let _ = sender.send((stream, peer, slot, watcher));
    }
}

/// The router as a hyper service that counts every request by route group and status class and
/// tells handlers the peer's address.
/// (A plain wrapper: axum's `from_fn` middleware boxed and cloned per request, 4 % of the
/// small-file throughput.)
fn counted(
    router: Router,
    metrics: Arc<Metrics>,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        // Who asks: the boot script goes only to the node's own address.
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let mut router = router.clone();
        let metrics = Arc::clone(&metrics);
        async move {
            let route = Route::of(request.uri().path());
            let response = router.call(request).await;
            if let Ok(response) = &response {
                metrics.http_request(route, response.status().as_u16());
            }
            response
        }
    })
}
