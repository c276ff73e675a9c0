//! The build executor: stages of planned steps (what the Dockerfile says after substitution) into images,
//! with the cache, one output line per step as docker's classic builder prints them, and the final image
//! tagged.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use engine::container::Engine;
use image::media::ContainerConfig;
use image::{Compression, Digest};

use crate::cache::{self, Cache};
use crate::stage::{self, Ownership};
use crate::steps::{self, StepContext, StepError};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Step(#[from] StepError),
    #[error(transparent)]
    Stage(#[from] stage::StageError),
    #[error(transparent)]
    Add(#[from] crate::add::AddError),
    #[error(transparent)]
    Store(#[from] image::StoreError),
    #[error(transparent)]
    Engine(#[from] engine::container::EngineError),
    #[error("line {line}: {message}")]
    At { line: usize, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn ioe(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExecError {
    let what = what.into();
    move |source| ExecError::Io { what, source }
}

/// Where a stage starts.
#[derive(Clone, Debug)]
pub enum Base {
    Scratch,
    /// An image reference (resolved in the store; the caller pulls what is missing first).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// Where COPY takes its sources from.
#[derive(Clone, Debug)]
pub enum Source {
    Context,
    Stage(usize),
    Image(String),
}

// One value per Dockerfile step, built once: the size of the COPY variant does not matter here.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Op {
    Run {
        /// Exec form, shell already applied.
        args: Vec<String>,
        /// Build args in scope, as KEY=VALUE (they are in the RUN's environment and its cache key).
        env: Vec<String>,
        /// `RUN <<EOF` whose body starts with `#!`: (path in the container, body), mounted read-only there.
        script: Option<(String, String)>,
    },
    Copy {
        from: Source,
        /// From the context: what the sources selected (the .dockerignore applied).
        selection: Option<crate::ignore::Selection>,
        /// From a stage or an image: paths relative to its root.
        sources: Vec<PathBuf>,
        /// Heredoc files: (name, content), placed in `dest`.
        inline: Vec<(String, Vec<u8>)>,
        /// Absolute in the image (WORKDIR already applied).
        dest: String,
        /// `--chown` as written: numeric, or names looked up in the image's /etc/passwd and /etc/group.
        chown: Option<String>,
        chmod: Option<u32>,
        /// The content digest of the sources (the cache key's part for them).
        digest: String,
        /// ADD: archives extracted, URLs fetched.
        add: Option<crate::add::AddSpec>,
    },
    /// ENV, WORKDIR, USER, CMD, ...: the new config.
    Config(Box<ContainerConfig>),
}

#[derive(Clone, Debug)]
pub struct Step {
    pub line: usize,
    /// The instruction as docker prints it ("RUN echo hi").
    pub text: String,
    /// History's created_by.
    pub created_by: String,
    pub op: Op,
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub name: Option<String>,
    pub base: Base,
    pub steps: Vec<Step>,
}

pub struct ExecOptions<'a> {
    pub context: &'a Path,
    pub no_cache: bool,
    pub epoch: Option<i64>,
    pub compression: Compression,
    pub tags: Vec<String>,
    /// `-q`: only the final id.
    pub quiet: bool,
    /// LABELs from `--label`, set on the final image.
    pub labels: BTreeMap<String, String>,
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

/// Builds `stages` (those the target needs, in order); the last is the target. Returns the final image id.
pub fn build(
    engine: &mut Engine,
    stages: &[Stage],
    opts: &ExecOptions<'_>,
    out: &mut dyn Write,
) -> Result<Digest, ExecError> {
    let cache = Cache::open(engine.root()).map_err(ioe("open the build cache"))?;
    let total: usize = stages.iter().map(|s| s.steps.len() + 1).sum();
    let mut n = 0usize;
    let mut results: Vec<Option<Digest>> = vec![None; stages.len()];
    let mut quiet_sink = std::io::sink();
    let out: &mut dyn Write = if opts.quiet { &mut quiet_sink } else { out };
    for (si, st) in stages.iter().enumerate() {
        n += 1;
        let from_text = match &st.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(r) => r.clone(),
            Base::Stage(i) => stages[*i].name.clone().unwrap_or_else(|| i.to_string()),
        };
        let named = st
            .name
            .as_ref()
            .map(|n| format!(" AS {n}"))
            .unwrap_or_default();
        let _ = writeln!(out, "Step {n}/{total} : FROM {from_text}{named}");
        let mut cur: Option<Digest> = match &st.base {
            Base::Scratch => None,
            Base::Image(r) => Some(engine.store()?.resolve(r)?.id),
            Base::Stage(i) => results[*i].clone(),
        };
        match &cur {
            Some(d) => {
                let _ = writeln!(out, " ---> {}", short(d));
            }
            None => {
                let _ = writeln!(out, " ---> (scratch)");
            }
        }
        for step in &st.steps {
            n += 1;
            let _ = writeln!(out, "Step {n}/{total} : {}", step.text);
            // ADD's URLs are fetched at every build, as docker does: their content is part of the cache key.
            let mut fetched: Option<(tempfile::TempDir, Vec<crate::add::Fetched>)> = None;
            if let Op::Copy { add: Some(a), .. } = &step.op {
                if !a.urls.is_empty() {
                    let dir = tempfile::Builder::new()
                        .prefix("build-fetch-")
                        .tempdir_in(engine.store()?.root().join("tmp"))
                        .map_err(ioe("download directory"))?;
                    let files = crate::add::fetch(&a.urls, a.checksum.as_deref(), dir.path())
                        .map_err(|e| ExecError::At {
                            line: step.line,
                            message: format!("{}: {e}", step.text),
                        })?;
                    fetched = Some((dir, files));
                }
            }
            let fetched_digests: Vec<String> = fetched
                .iter()
                .flat_map(|(_, f)| f.iter().map(|f| format!("{}={}", f.url, f.digest)))
                .collect();
            let extra: Vec<u8> = match &step.op {
                Op::Run { args, env, script } => {
                    format!("{args:?}|{env:?}|{script:?}").into_bytes()
                }
                Op::Copy {
                    digest,
                    dest,
                    chown,
                    chmod,
                    from,
                    ..
                } => {
                    let from_id = match from {
                        Source::Stage(i) => results[*i].as_ref().map(|d| d.to_string()),
                        Source::Image(r) => Some(engine.store()?.resolve(r)?.id.to_string()),
                        Source::Context => None,
                    };
                    format!("{digest}|{dest}|{chown:?}|{chmod:?}|{from_id:?}|{fetched_digests:?}")
                        .into_bytes()
                }
                Op::Config(c) => serde_json::to_vec(c).unwrap_or_default(),
            };
            let key = cache::key(cur.as_ref(), &[step.created_by.as_bytes(), &extra]);
            if !opts.no_cache {
                if let Some(hit) = cache.get(&key, engine.store()?) {
                    let _ = writeln!(out, " ---> Using cache\n ---> {}", short(&hit));
                    cur = Some(hit);
                    continue;
                }
            }
            let mut cx = StepContext {
                engine,
                epoch: opts.epoch,
                compression: opts.compression,
            };
            let id = match &step.op {
                Op::Run { args, env, script } => {
                    let parent = cur.clone().ok_or_else(|| ExecError::At {
                        line: step.line,
                        message:
                            "RUN needs a base image with a shell (the stage starts FROM scratch)"
                                .into(),
                    })?;
                    steps::run(
                        &mut cx,
                        &parent,
                        args.clone(),
                        env.clone(),
                        script.as_ref(),
                        &step.created_by,
                        out,
                    )
                    .map_err(|e| ExecError::At {
                        line: step.line,
                        message: format!("{}: {e}", step.text),
                    })?
                }
                Op::Copy {
                    from,
                    selection,
                    sources,
                    inline,
                    dest,
                    chown,
                    chmod,
                    add,
                    ..
                } => {
                    let staged = tempfile::Builder::new()
                        .prefix("build-copy-")
                        .tempdir_in(cx.engine.store()?.root().join("tmp"))
                        .map_err(ioe("staging directory"))?;
                    let ids = match chown {
                        Some(spec) => Some(resolve_chown(cx.engine, cur.as_ref(), spec).map_err(
                            |message| ExecError::At {
                                line: step.line,
                                message: format!("{}: {message}", step.text),
                            },
                        )?),
                        None => None,
                    };
                    let own = Ownership {
                        chown: ids,
                        chmod: *chmod,
                        keep_owner: !matches!(from, Source::Context),
                    };
                    let mut mount_key = None;
                    let root: PathBuf = match from {
                        Source::Context => opts.context.to_path_buf(),
                        Source::Stage(_) | Source::Image(_) => {
                            let img = match from {
                                Source::Stage(i) => results[*i].clone().ok_or_else(|| ExecError::At {
                                    line: step.line,
                                    message: "COPY --from a stage that has no image (FROM scratch and nothing in it)".into(),
                                })?,
                                Source::Image(r) => cx.engine.store()?.resolve(r)?.id,
                                Source::Context => unreachable!(),
                            };
                            // The other stage's root, mounted read-only for the copy.
                            let k = format!("build-{}-{}", std::process::id(), short(&img));
                            let _ = cx.engine.store()?.deactivate(&k);
                            let r = cx.engine.store()?.activate(&k, &img, true)?;
                            mount_key = Some(k);
                            r
                        }
                    };
                    let result = (|| -> Result<Digest, ExecError> {
                        match (selection, add) {
                            (Some(sel), Some(a)) if a.unpack_local => {
                                crate::add::stage_selection_unpacking(
                                    &root,
                                    sel,
                                    dest,
                                    &own,
                                    staged.path(),
                                )?
                            }
                            (Some(sel), _) => {
                                stage::stage_selection(&root, sel, dest, &own, staged.path())?
                            }
                            (None, _) => {
                                stage::stage_copy(&root, sources, dest, &own, staged.path())?
                            }
                        }
                        if let (Some(a), Some((_, files))) = (add, &fetched) {
                            crate::add::stage_fetched(
                                files,
                                dest,
                                &own,
                                a.unpack_remote,
                                staged.path(),
                            )?;
                        }
                        for (name, content) in inline {
                            let d = if dest.ends_with('/') {
                                format!("{dest}{name}")
                            } else {
                                dest.clone()
                            };
                            let tmp = tempfile::tempdir().map_err(ioe("heredoc"))?;
                            let f = tmp.path().join("f");
                            std::fs::write(&f, content).map_err(ioe("heredoc"))?;
                            stage::stage_copy(
                                tmp.path(),
                                &[PathBuf::from("f")],
                                &d,
                                &own,
                                staged.path(),
                            )?;
                        }
                        Ok(steps::add_layer(
                            &mut cx,
                            cur.as_ref(),
                            staged.path(),
                            &step.created_by,
                        )?)
                    })();
                    if let Some(k) = &mount_key {
                        let _ = cx.engine.store()?.deactivate(k);
                    }
                    result.map_err(|e| ExecError::At {
                        line: step.line,
                        message: format!("{}: {e}", step.text),
                    })?
                }
                Op::Config(cfg) => {
                    steps::config(&mut cx, cur.as_ref(), (**cfg).clone(), &step.created_by)?
                }
            };
            cache.put(&key, &id).map_err(ioe("write the build cache"))?;
            let _ = writeln!(out, " ---> {}", short(&id));
            cur = Some(id);
        }
        results[si] = cur;
    }
    let mut fin = results
        .last()
        .cloned()
        .flatten()
        .ok_or_else(|| ExecError::At {
            line: 0,
            message: "the target stage produced no image (FROM scratch with nothing in it)".into(),
        })?;
    if !opts.labels.is_empty() {
        let info = engine.store()?.resolve(fin.as_str())?;
        let mut cfg = info.config.config.clone().unwrap_or_default();
        cfg.labels
            .get_or_insert_with(Default::default)
            .extend(opts.labels.clone());
        let mut cx = StepContext {
            engine,
            epoch: opts.epoch,
            compression: opts.compression,
        };
        fin = steps::config(&mut cx, Some(&fin), cfg, "LABEL (from --label)")?;
    }
    for t in &opts.tags {
        engine.store()?.tag(fin.as_str(), t)?;
    }
    let _ = writeln!(out, "Successfully built {}", short(&fin));
    for t in &opts.tags {
        let _ = writeln!(out, "Successfully tagged {t}");
    }
    Ok(fin)
}

/// `--chown=USER[:GROUP]`: numbers as they are; names from the current image's /etc/passwd and /etc/group
/// (its root mounted read-only for the lookup).
fn resolve_chown(
    engine: &mut Engine,
    image: Option<&Digest>,
    spec: &str,
) -> Result<(u32, u32), String> {
    let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
    if let Ok(uid) = u.parse::<u32>() {
        let gid = if g.is_empty() {
            Ok(uid)
        } else {
            g.parse::<u32>()
        };
        if let Ok(gid) = gid {
            return Ok((uid, gid));
        }
    }
    let image = image.ok_or_else(|| {
        format!("--chown={spec}: names need an image with /etc/passwd (not FROM scratch)")
    })?;
    let store = engine.store().map_err(|e| e.to_string())?;
    let key = format!("build-chown-{}-{}", std::process::id(), short(image));
    let _ = store.deactivate(&key);
    let root = store
        .activate(&key, image, true)
        .map_err(|e| e.to_string())?;
    // docker: USER alone gives the user's primary group; USER:GROUP looks both up.
    let spec_for_lookup = if g.is_empty() {
        u.to_string()
    } else {
        spec.to_string()
    };
    let r = engine::resolve_user(&root, &spec_for_lookup, "--chown").map_err(|e| e.to_string());
    let _ = store.deactivate(&key);
    let r = r?;
    Ok((r.uid, r.gid))
}
