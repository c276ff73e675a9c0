//! `berth registry serve`: berth's own OCI distribution registry (crates/registry), and `registry gc`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::Ctx;

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Serve an OCI distribution registry (storage under --root; default /var/lib/berth/registry)
    Serve(ServeArgs),
    /// Remove blobs no manifest references (the server also does this online)
    GarbageCollect,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the first line of output names it)
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
    /// TLS certificate (PEM); with --tls-key, serve HTTPS
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// htpasswd file (bcrypt entries): require authentication (basic, and docker's bearer-token flow)
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// Refuse every write
    #[arg(long)]
    read_only: bool,
    /// Largest manifest accepted, bytes
    #[arg(long, default_value_t = 4 << 20)]
    max_manifest_size: u64,
    /// Largest blob upload accepted, bytes (default: no limit)
    #[arg(long)]
    max_upload_size: Option<u64>,
    /// Online garbage collection interval in seconds (0: off)
    #[arg(long, default_value_t = 3600)]
    gc_interval: u64,
}

/// The registry keeps its data in --root itself when one is given, else below the default store.
fn registry_root(ctx: &Ctx) -> PathBuf {
    if ctx.root_given {
        ctx.root.clone()
    } else {
        ctx.root.join("registry")
    }
}

pub fn run(ctx: &Ctx, cmd: RegistryCommand) -> Result<i32> {
    let root = registry_root(ctx);
    match cmd {
        RegistryCommand::Serve(a) => {
            if a.max_manifest_size == 0 {
                bail!("--max-manifest-size must be more than 0");
            }
            let mut config = registry::Config::new(a.addr, root.clone());
            config.tls = a.tls_cert.zip(a.tls_key);
            config.htpasswd = a.htpasswd;
            config.read_only = a.read_only;
            config.max_manifest_bytes = a.max_manifest_size;
            config.max_upload_bytes = a.max_upload_size;
            config.gc_interval = (a.gc_interval > 0).then(|| Duration::from_secs(a.gc_interval));
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            registry::serve(config, |bound| {
                println!("berth registry listening on {scheme}://{bound}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            })
            .with_context(|| format!("registry at {}", root.display()))?;
            Ok(0)
        }
        RegistryCommand::GarbageCollect => {
            let stats = registry::gc(&root)
                .with_context(|| format!("garbage-collect {}", root.display()))?;
            println!(
                "{} manifests, {} blobs kept, {} blobs removed ({} bytes), {} stale links and {} stale uploads removed",
                stats.manifests,
                stats.blobs_kept,
                stats.blobs_removed,
                stats.bytes_removed,
                stats.links_removed,
                stats.uploads_removed
            );
            Ok(0)
        }
    }
}
