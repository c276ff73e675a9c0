//! `berth build`: a Dockerfile and a context directory into an image in the store.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use clap::Args;

use super::run::engine;
use super::Ctx;

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format (repeatable)
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Set build-time variables
    #[arg(long = "build-arg", value_name = "K=V")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pull: bool,
    /// Set metadata for an image
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Type of progress output (auto, plain)
    #[arg(long, default_value = "auto", value_parser = ["auto", "plain", "tty"])]
    progress: String,
    /// Write the image ID to the file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Compression of new layers: gzip (docker's default) or zstd
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    compression: String,
    /// The build context: a directory, or "-" for a Dockerfile on stdin (no context)
    context: String,
}

fn kv(list: &[String], flag: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in list {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            // docker: a bare --build-arg NAME takes the caller's environment value.
            None => match std::env::var(item) {
                Ok(v) => (item.clone(), v),
                Err(_) => continue,
            },
        };
        if k.is_empty() {
            bail!("invalid {flag} {item:?}: empty name");
        }
        out.insert(k, v);
    }
    Ok(out)
}

pub fn build(ctx: &Ctx, a: BuildArgs) -> Result<i32> {
    let build_args = kv(&a.build_args, "--build-arg")?;
    let labels = kv(&a.labels, "--label")?;
    // "-": the Dockerfile comes on stdin and the context is empty.
    let empty;
    let (context, dockerfile_text, dockerfile_path) = if a.context == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read the Dockerfile from stdin")?;
        empty = tempfile::tempdir().context("empty build context")?;
        (empty.path().to_path_buf(), text, None)
    } else {
        let dir = PathBuf::from(&a.context);
        if !dir.is_dir() {
            bail!(
                "unable to prepare context: path {:?} not found or not a directory",
                a.context
            );
        }
        let path = match &a.file {
            Some(f) if f.as_os_str() == "-" => None,
            Some(f) if f.is_absolute() => Some(f.clone()),
            Some(f) => Some(if f.exists() { f.clone() } else { dir.join(f) }),
            None => Some(dir.join("Dockerfile")),
        };
        let text = match &path {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("read Dockerfile {}", p.display()))?,
            None => {
                let mut t = String::new();
                std::io::stdin().read_to_string(&mut t)?;
                t
            }
        };
        (dir, text, path)
    };
    let mut e = engine(ctx)?;
    let req = build::plan::Request {
        dockerfile: &dockerfile_text,
        dockerfile_path: dockerfile_path.as_deref(),
        context: &context,
        build_args: &build_args,
        target: a.target.as_deref(),
    };
    // Every error in the Dockerfile is found before anything runs.
    let prepared = build::plan::prepare(&req).map_err(|e| anyhow!("{e}"))?;
    // Base images not in the store are pulled first (always, with --pull).
    for image in &prepared.base_images {
        let have = e.store()?.resolve(image).is_ok();
        if !have || a.pull {
            super::images::pull_for_run(ctx, image)?;
        }
    }
    let store = e.store()?;
    let base_config = |r: &str| store.resolve(r).ok().and_then(|i| i.config.config);
    let stages = build::plan::stages(&prepared, &req, &base_config).map_err(|e| anyhow!("{e}"))?;
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| anyhow!("SOURCE_DATE_EPOCH {v:?}: not a number of seconds"))
        })
        .transpose()?;
    let opts = build::exec::ExecOptions {
        context: &context,
        no_cache: a.no_cache,
        epoch,
        compression: if a.compression == "zstd" {
            image::Compression::Zstd
        } else {
            image::Compression::Gzip
        },
        tags: a.tags.clone(),
        quiet: a.quiet,
        labels,
    };
    let mut out = std::io::stdout();
    let id = match build::exec::build(&mut e, &stages, &opts, &mut out) {
        Ok(id) => id,
        Err(err) => {
            eprintln!("Error: {err}");
            return Ok(1);
        }
    };
    if a.quiet {
        println!("{id}");
    }
    if let Some(f) = &a.iidfile {
        std::fs::write(f, id.as_str()).with_context(|| format!("--iidfile {}", f.display()))?;
    }
    let _ = a.progress;
    Ok(0)
}
