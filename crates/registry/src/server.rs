//! The accept loop, connections (plain or TLS), graceful shutdown, and the `Server` handle for tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::errors::RegistryServerError;
use crate::gc::GcGuard;
use crate::storage::Storage;
use crate::uploads::Session;
use crate::Config;

/// How long requests in flight may run on after a shutdown request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) struct State {
    pub storage: Storage,
    pub config: Config,
    pub auth: Option<Auth>,
    pub gc: GcGuard,
    /// Hash state of upload sessions, so finishing an upload needs no second read of its data.
    pub sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

/// A registry served on its own thread until stopped or dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), RegistryServerError>>>,
}

impl Server {
    pub fn start(config: Config) -> Result<Server, RegistryServerError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("berth-registry".to_string())
            .spawn(move || {
                run_blocking(
                    config,
                    move |addr| {
                        let _ = ready_tx.send(addr);
                    },
                    async move {
                        let _ = stop_rx.await;
                    },
                )
            })
            .map_err(RegistryServerError::Runtime)?;
        match ready_rx.recv() {
            Ok(addr) => Ok(Server {
                addr,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(RegistryServerError::ThreadDied),
            },
        }
    }

    /// Stops the server (gracefully) and returns how its run ended.
    pub fn stop(mut self) -> Result<(), RegistryServerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), RegistryServerError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(RegistryServerError::ThreadDied),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn signals() {
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!(
                    "berth-registry: cannot install signal handlers ({e}); stop with SIGKILL"
                );
                std::future::pending::<()>().await;
            }
        }
    }
}

pub(crate) fn run_blocking(
    config: Config,
    ready: impl FnOnce(SocketAddr),
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryServerError> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(64)
        .thread_name("berth-registry")
        .enable_all()
        .build()
        .map_err(RegistryServerError::Runtime)?;
    let r = rt.block_on(run(config, ready, stop));
    rt.shutdown_timeout(DRAIN_TIMEOUT);
    r
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, RegistryServerError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fail = |reason: String| RegistryServerError::Tls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| RegistryServerError::io("reading", cert, e))?;
    let key_pem = std::fs::read(key).map_err(|e| RegistryServerError::io("reading", key, e))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(fail("no certificate in the certificate file".into()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| fail(format!("private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| fail(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

async fn run(
    config: Config,
    ready: impl FnOnce(SocketAddr),
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RegistryServerError> {
    let root = config.root.clone();
    let storage = Storage::open(&root).map_err(|e| RegistryServerError::Io {
        what: "opening registry root",
        path: e.path,
        source: e.source,
    })?;
    // Leftovers of a previous run: sessions nobody will finish, temporaries of interrupted writes.
    if let Err(e) = storage.remove_stale_uploads(crate::UPLOAD_EXPIRY) {
        eprintln!("berth-registry: cleaning stale uploads: {e}");
    }
    let auth = match &config.htpasswd {
        Some(p) => Some(Auth::load(p)?),
        None => None,
    };
    let tls = match &config.tls {
        Some((c, k)) => Some(tls_acceptor(c, k)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| RegistryServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| RegistryServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let gc_interval = config.gc_interval;
    let state = Arc::new(State {
        storage,
        config,
        auth,
        gc: GcGuard::default(),
        sessions: Mutex::new(HashMap::new()),
    });

    let gc_task = gc_interval.map(|every| {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let st = state.clone();
                let r = tokio::task::spawn_blocking(move || {
                    crate::gc::collect(&st.storage, st.config.gc_grace, &st.gc)
                })
                .await;
                match r {
                    Ok(Ok(s)) if st_logs(&state) => eprintln!(
                        "berth-registry: gc: {} manifests, {} blobs kept, {} removed ({} bytes), {} links, {} uploads",
                        s.manifests, s.blobs_kept, s.blobs_removed, s.bytes_removed, s.links_removed, s.uploads_removed
                    ),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => eprintln!("berth-registry: gc: {e}"),
                    Err(e) => eprintln!("berth-registry: gc task: {e}"),
                }
            }
        })
    });

    ready(addr);

    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            a = listener.accept() => a,
        };
        let (tcp, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("berth-registry: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let state = state.clone();
        let stop_rx = stop_rx.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            match tls {
                None => connection(tcp, state, "http", stop_rx).await,
                Some(acc) => {
                    let hs = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acc.accept(tcp)).await;
                    if let Ok(Ok(s)) = hs {
                        connection(s, state, "https", stop_rx).await;
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        eprintln!(
            "berth-registry: requests still running after {DRAIN_TIMEOUT:?}; stopping anyway"
        );
    }
    if let Some(t) = gc_task {
        t.abort();
    }
    Ok(())
}

fn st_logs(state: &State) -> bool {
    state.config.log_requests
}

async fn connection<I>(
    io: I,
    state: Arc<State>,
    scheme: &'static str,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(crate::routes::handle(state, req, scheme).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
