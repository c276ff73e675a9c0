//! berth's OCI distribution registry server (distribution spec 1.1): manifests, blobs, chunked and
//! monolithic uploads, cross-repository mounts, tag and catalog listing, the referrers API, htpasswd/bearer
//! auth, and online garbage collection, over a plain filesystem layout (see `storage`).
//!
//! Stack: tokio + hyper 1 (http1 server connections driven by hand) with a hand-written router, because
//! repository names contain slashes, which path-pattern routers handle badly, and because bodies must be
//! streamed to and from files frame by frame (hashing while receiving) with no framework buffering them;
//! tokio-rustls serves TLS with the ring provider the workspace already builds for berth's client.

mod auth;
mod blobs;
mod body;
mod errors;
mod gc;
mod listing;
mod manifests;
mod names;
mod routes;
mod server;
mod storage;
mod uploads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use errors::{Code, RegistryServerError};
pub use gc::GcStats;
pub use names::{valid_name, valid_tag};
pub use server::Server;
pub use storage::StorageError;

/// Manifests larger than this are refused unless configured otherwise (the spec's suggested 4 MiB).
pub const DEFAULT_MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Blobs no manifest references survive GC for this long after their last write, mount or check.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(10 * 60);
/// Upload sessions untouched for this long are removed at startup and by GC.
pub const UPLOAD_EXPIRY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub root: PathBuf,
    /// `(certificate chain PEM, private key PEM)`: serve https.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// bcrypt htpasswd file: require credentials (Basic, or bearer tokens from `/token`).
    pub htpasswd: Option<PathBuf>,
    /// Refuse every write with 405 UNSUPPORTED.
    pub read_only: bool,
    pub max_manifest_bytes: u64,
    pub max_upload_bytes: Option<u64>,
    /// Run garbage collection this often while serving.
    pub gc_interval: Option<Duration>,
    /// Unreferenced blobs younger than this are kept by GC (pushes in flight own them).
    pub gc_grace: Duration,
    /// One line per request on stderr.
    pub log_requests: bool,
}

impl Config {
    pub fn new(addr: SocketAddr, root: impl Into<PathBuf>) -> Config {
        Config {
            addr,
            root: root.into(),
            tls: None,
            htpasswd: None,
            read_only: false,
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            max_upload_bytes: None,
            gc_interval: None,
            gc_grace: DEFAULT_GC_GRACE,
            log_requests: true,
        }
    }
}

/// Serves until SIGTERM or SIGINT, then stops accepting and lets requests in flight finish (up to ~10 s).
/// `ready` gets the bound address (useful when `config.addr` has port 0).
pub fn serve(config: Config, ready: impl FnOnce(SocketAddr)) -> Result<(), RegistryServerError> {
    server::run_blocking(config, ready, server::signals())
}

/// Offline garbage collection of a registry root (safe next to a running server too: recent blobs are
/// protected by the grace period).
pub fn gc(root: &Path) -> Result<GcStats, RegistryServerError> {
    gc_with_grace(root, DEFAULT_GC_GRACE)
}

pub fn gc_with_grace(root: &Path, grace: Duration) -> Result<GcStats, RegistryServerError> {
    let storage = storage::Storage::open(root).map_err(|e| RegistryServerError::Io {
        what: "opening registry root",
        path: root.to_path_buf(),
        source: e.source,
    })?;
    let guard = gc::GcGuard::default();
    gc::collect(&storage, grace, &guard).map_err(|e| RegistryServerError::Io {
        what: e.what,
        path: e.path,
        source: e.source,
    })
}
