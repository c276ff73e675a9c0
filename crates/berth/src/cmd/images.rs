//! pull, images, rmi, tag, save, load, image inspect/prune/mount/unmount.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use image::pull::{self, Pulled};
use image::reference::Reference;
use image::store::{short, ImageInfo, Removed};
use serde_json::{json, Value};

use super::{Ctx, TlsArgs};
use crate::output::{format_utc, human_duration, human_size, parse_rfc3339, table};
use crate::progress::{Mode, PullProgress};

#[derive(Args)]
pub struct PullArgs {
    /// Platform os/arch[/variant] to pull from a multi-platform image (default: this machine's)
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Print only the image's name
    #[arg(short, long)]
    quiet: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    reference: String,
}

pub fn pull(ctx: &Ctx, a: PullArgs) -> Result<i32> {
    let reference = Reference::parse(&a.reference)?;
    let platform = match &a.platform {
        Some(p) => pull::parse_platform(p)
            .ok_or_else(|| anyhow!("invalid --platform {p:?}: expected os/arch[/variant]"))?,
        None => pull::host_platform(),
    };
    let store = ctx.store()?;
    let client = ctx.client(a.tls.tls_verify)?;
    let mode = if a.quiet {
        Mode::Quiet
    } else if std::io::stdout().is_terminal() {
        Mode::Bars
    } else {
        Mode::Lines
    };
    let plain = !a.quiet;
    let mut out = std::io::stdout().lock();
    if plain {
        let last = a.reference.rsplit('/').next().unwrap_or("");
        if !last.contains(':') && !a.reference.contains('@') {
            writeln!(out, "Using default tag: latest")?;
        }
        let what = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        };
        let path = reference.repository.clone();
        writeln!(out, "{what}: Pulling from {path}")?;
    }
    drop(out);
    let progress = PullProgress::new(mode);
    let pulled: Pulled = pull::pull(&store, &client, &reference, &platform, &progress)?;
    let mut out = std::io::stdout().lock();
    if plain {
        let shown = familiar_name(&pulled.name);
        writeln!(out, "Digest: {}", pulled.repo_digest)?;
        if pulled.downloaded {
            writeln!(out, "Status: Downloaded newer image for {shown}")?;
        } else {
            writeln!(out, "Status: Image is up to date for {shown}")?;
        }
    }
    writeln!(out, "{}", pulled.name)?;
    Ok(0)
}

/// "docker.io/library/busybox:latest" -> "busybox:latest", as docker shows names.
fn familiar_name(full: &str) -> String {
    match Reference::parse(full) {
        Ok(r) => {
            let mut s = r.familiar();
            if let Some(t) = &r.tag {
                s = format!("{s}:{t}");
            }
            if let Some(d) = &r.digest {
                s = format!("{s}@{d}");
            }
            s
        }
        Err(_) => full.to_string(),
    }
}

#[derive(Args)]
pub struct PushArgs {
    #[command(flatten)]
    tls: TlsArgs,
    /// Print only the pushed manifest's digest
    #[arg(short, long)]
    quiet: bool,
    /// The image in the store (name, id or name@digest)
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to push it (default: the image's own name)
    #[arg(value_name = "DESTINATION")]
    destination: Option<String>,
}

pub fn push(ctx: &Ctx, a: PushArgs) -> Result<i32> {
    let store = ctx.store()?;
    let dest = Reference::parse(a.destination.as_deref().unwrap_or(&a.image))?;
    let client = ctx.client(a.tls.tls_verify)?;
    if !a.quiet {
        println!(
            "The push refers to repository [{}/{}]",
            dest.registry, dest.repository
        );
    }
    let mode = if a.quiet {
        Mode::Quiet
    } else if std::io::stdout().is_terminal() {
        Mode::Bars
    } else {
        Mode::Lines
    };
    let progress = PullProgress::new(mode);
    let events = |d: &image::Descriptor, e: image::push::BlobEvent| progress.push_event(d, e);
    let pushed = image::push::push(&store, &client, &a.image, &dest, &events)?;
    if a.quiet {
        println!("{}", pushed.digest);
    } else {
        println!(
            "{}: digest: {} size: {}",
            pushed.reference, pushed.digest, pushed.size
        );
    }
    Ok(0)
}

#[derive(Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images of builds)
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Output format: table (default) or json (one object per line)
    #[arg(long, value_parser = ["table", "json"])]
    format: Option<String>,
    /// Only images of this repository (NAME or NAME:TAG)
    repository: Option<String>,
}

struct Row {
    repository: String,
    tag: String,
    digest: String,
    id: String,
    created: i64,
    size: u64,
}

fn created_secs(img: &ImageInfo) -> i64 {
    img.config
        .created
        .as_deref()
        .and_then(parse_rfc3339)
        .unwrap_or(img.stored)
}

fn rows(images: &[ImageInfo]) -> Vec<Row> {
    let mut out = Vec::new();
    for img in images {
        let created = created_secs(img);
        let base = |repository: String, tag: String, digest: String| Row {
            repository,
            tag,
            digest,
            id: img.id.to_string(),
            created,
            size: img.size,
        };
        if img.tags.is_empty() {
            out.push(base("<none>".into(), "<none>".into(), "<none>".into()));
        }
        for t in &img.tags {
            let (repo, tag) = match Reference::parse(&t.name) {
                Ok(r) => (
                    r.familiar(),
                    r.tag.clone().unwrap_or_else(|| "<none>".into()),
                ),
                Err(_) => (t.name.clone(), "<none>".into()),
            };
            let digest = t
                .repo_digest
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_else(|| "<none>".into());
            out.push(base(repo, tag, digest));
        }
    }
    out
}

/// Untagged images the build cache holds (a build's intermediate steps and stages): docker shows its
/// builder's intermediate images only with -a. (Pulled images have no parent, so nothing else is hidden.)
fn intermediates(
    images: &[ImageInfo],
    root: &std::path::Path,
) -> std::collections::HashSet<String> {
    let cached: std::collections::HashSet<String> = std::fs::read_dir(root.join("build-cache"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    images
        .iter()
        .filter(|i| i.tags.is_empty() && cached.contains(i.id.as_str()))
        .map(|i| i.id.to_string())
        .collect()
}

pub fn list(ctx: &Ctx, a: ImagesArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut images = store.list()?;
    if !a.all {
        let hidden = intermediates(&images, &ctx.root);
        images.retain(|i| !hidden.contains(&i.id.to_string()));
    }
    let mut rows = rows(&images);
    if let Some(filter) = &a.repository {
        let r = Reference::parse(filter)?;
        rows.retain(|row| {
            row.repository == r.familiar()
                && (!filter.contains(':') || r.tag.as_deref() == Some(row.tag.as_str()))
        });
    }
    let now = image::store::now();
    let id = |row: &Row| {
        if a.no_trunc {
            row.id.clone()
        } else {
            row.id
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect()
        }
    };
    let mut out = std::io::stdout().lock();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            if seen.insert(row.id.clone()) {
                writeln!(out, "{}", id(row))?;
            }
        }
        return Ok(0);
    }
    if a.format.as_deref() == Some("json") {
        for row in &rows {
            let v = json!({
                "Containers": "N/A",
                "CreatedAt": format_utc(row.created),
                "CreatedSince": format!("{} ago", human_duration(now - row.created)),
                "Digest": row.digest,
                "ID": id(row),
                "Repository": row.repository,
                "SharedSize": "N/A",
                "Size": human_size(row.size),
                "Tag": row.tag,
                "UniqueSize": "N/A",
                "VirtualSize": human_size(row.size),
            });
            writeln!(out, "{v}")?;
        }
        return Ok(0);
    }
    let mut t = vec![];
    let mut header = vec!["REPOSITORY".to_string(), "TAG".into()];
    if a.digests {
        header.push("DIGEST".into());
    }
    header.extend(["IMAGE ID".into(), "CREATED".into(), "SIZE".into()]);
    t.push(header);
    for row in &rows {
        let mut r = vec![row.repository.clone(), row.tag.clone()];
        if a.digests {
            r.push(row.digest.clone());
        }
        r.extend([
            id(row),
            format!("{} ago", human_duration(now - row.created)),
            human_size(row.size),
        ]);
        t.push(r);
    }
    write!(out, "{}", table(&t))?;
    Ok(0)
}

#[derive(Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn rmi(ctx: &Ctx, a: RmiArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut code = 0;
    let mut out = std::io::stdout().lock();
    for name in &a.images {
        match store.remove(name, a.force) {
            Ok(events) => {
                for e in events {
                    match e {
                        Removed::Untagged(n) => writeln!(out, "Untagged: {}", familiar_name(&n))?,
                        Removed::Deleted(d) => writeln!(out, "Deleted: {d}")?,
                    }
                }
            }
            Err(e) => {
                eprintln!("Error: {}", super::error_line(&e.into()));
                code = 1;
            }
        }
    }
    Ok(code)
}

#[derive(Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<i32> {
    ctx.store()?.tag(&a.source, &a.target)?;
    Ok(0)
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

fn inspect_json(store: &image::Store, img: &ImageInfo) -> Result<Value> {
    let raw: Value = serde_json::from_slice(&img.config_bytes).context("image config")?;
    let repo_tags: Vec<String> = img
        .tags
        .iter()
        .filter(|t| !t.name.contains('@'))
        .map(|t| familiar_name(&t.name))
        .collect();
    let mut repo_digests: Vec<String> = Vec::new();
    for t in &img.tags {
        if let (Ok(r), Some(d)) = (Reference::parse(&t.name), &t.repo_digest) {
            let s = format!("{}@{}", r.familiar(), d);
            if !repo_digests.contains(&s) {
                repo_digests.push(s);
            }
        }
    }
    let lowers: Vec<String> = store
        .layer_dirs(&img.id)
        .unwrap_or_default()
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    Ok(json!({
        "Id": img.id.to_string(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": img.config.history.last().and_then(|h| h.comment.clone()).unwrap_or_default(),
        "Created": img.config.created.clone().unwrap_or_default(),
        "Author": img.config.author.clone().unwrap_or_default(),
        "Config": raw.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": img.config.architecture,
        "Variant": img.config.variant,
        "Os": img.config.os,
        "Size": img.size,
        "GraphDriver": {
            "Name": store.driver().name(),
            "Data": { "LowerDir": lowers.join(":") },
        },
        "RootFS": {
            "Type": img.config.rootfs.kind,
            "Layers": img.config.rootfs.diff_ids,
        },
        "Metadata": { "LastTagTime": format_utc(img.stored) },
        "Descriptor": {
            "mediaType": img.manifest.media_type,
            "digest": img.manifest_digest.to_string(),
        },
    }))
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut all = Vec::new();
    let mut code = 0;
    for name in &a.images {
        match store.resolve(name) {
            Ok(img) => all.push(inspect_json(&store, &img)?),
            Err(e) => {
                eprintln!("Error: {}", super::error_line(&e.into()));
                code = 1;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&Value::Array(all))?);
    Ok(code)
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all images not used by a container, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation (berth never prompts)
    #[arg(short, long)]
    force: bool,
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<i32> {
    let _ = a.force;
    let store = ctx.store()?;
    let (removed, stats) = store.prune(a.all)?;
    let mut out = std::io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for r in removed {
            match r {
                Removed::Untagged(n) => writeln!(out, "untagged: {}", familiar_name(&n))?,
                Removed::Deleted(d) => writeln!(out, "deleted: {d}")?,
            }
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(stats.bytes))?;
    Ok(0)
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn save(ctx: &Ctx, a: SaveArgs) -> Result<i32> {
    let store = ctx.store()?;
    match &a.output {
        Some(path) => {
            // Written next to the destination and renamed, so a failed save leaves no half archive.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("create a file in {}", dir.display()))?;
            let w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
            image::archive::save(&store, &a.images, w)?;
            tmp.as_file()
                .sync_all()
                .with_context(|| format!("write {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("write {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let out = std::io::stdout().lock();
            image::archive::save(
                &store,
                &a.images,
                std::io::BufWriter::with_capacity(1 << 20, out),
            )?;
        }
    }
    Ok(0)
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn load(ctx: &Ctx, a: LoadArgs) -> Result<i32> {
    let store = ctx.store()?;
    let loaded = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
            image::archive::load(&store, f).with_context(|| format!("load {}", p.display()))?
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            image::archive::load(&store, std::io::stdin().lock())?
        }
    };
    let mut out = std::io::stdout().lock();
    for l in loaded {
        match l {
            image::archive::Loaded::Tagged(n) => {
                writeln!(out, "Loaded image: {}", familiar_name(&n))?
            }
            image::archive::Loaded::Untagged(d) => writeln!(out, "Loaded image ID: {d}")?,
        }
    }
    Ok(0)
}

#[derive(Args)]
pub struct MountArgs {
    #[arg(value_name = "IMAGE")]
    image: String,
}

fn mount_key(img: &ImageInfo) -> String {
    format!("image-mount-{}", short(&img.id))
}

pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<i32> {
    let store = ctx.store()?;
    let img = store.resolve(&a.image)?;
    let key = mount_key(&img);
    let path = match store.activate(&key, &img.id, true) {
        Ok(p) => p,
        Err(image::StoreError::AlreadyActive(_)) => store.active_path(&key),
        Err(e) => return Err(e.into()),
    };
    println!("{}", path.display());
    Ok(0)
}

pub fn unmount(ctx: &Ctx, a: MountArgs) -> Result<i32> {
    let store = ctx.store()?;
    let img = store.resolve(&a.image)?;
    if !store.deactivate(&mount_key(&img))? {
        bail!("image {} is not mounted", a.image);
    }
    println!("{}", short(&img.id));
    Ok(0)
}

/// The pull `berth run` does for an image it does not have: docker's summary lines on stderr, so the
/// container's own output stays alone on stdout.
pub fn pull_for_run(ctx: &Ctx, image: &str) -> Result<()> {
    let reference = Reference::parse(image)?;
    let store = ctx.store()?;
    let client = ctx.client(true)?;
    let progress = PullProgress::new(Mode::Quiet);
    let pulled = pull::pull(
        &store,
        &client,
        &reference,
        &pull::host_platform(),
        &progress,
    )?;
    eprintln!("Digest: {}", pulled.repo_digest);
    eprintln!(
        "Status: Downloaded newer image for {}",
        familiar_name(&pulled.name)
    );
    Ok(())
}
