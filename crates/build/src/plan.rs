//! From a parsed Dockerfile to the executor's stages: each instruction substituted in its stage's scope
//! (build args, ARG, ENV, SHELL, WORKDIR in order, on top of the base image's config), COPY sources resolved
//! against the context and the .dockerignore (with their content digest for the cache), and the image config
//! each config-only instruction leads to.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use image::media::ContainerConfig;

use crate::add;
use crate::dockerfile::{
    self, BaseConfig, BuildPlan, Command, CopyFrom, Dockerfile, Healthcheck, Instruction,
    ResolveOptions, StageScope,
};
use crate::exec::{self, Op, Source, Step};
use crate::ignore::{Context, HashOptions, Ignore};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Dockerfile(#[from] dockerfile::Error),
    #[error("{0}")]
    Ignore(#[from] crate::ignore::IgnoreError),
    #[error("{0}")]
    Context(#[from] crate::ignore::ContextError),
    #[error("Dockerfile:{line}: {message}")]
    At { line: usize, message: String },
}

pub struct Request<'a> {
    pub dockerfile: &'a str,
    pub dockerfile_path: Option<&'a Path>,
    pub context: &'a Path,
    pub build_args: &'a BTreeMap<String, String>,
    pub target: Option<&'a str>,
}

/// The parsed file and the stages the target needs; base images to have in the store before [`stages`].
pub struct Prepared {
    pub dockerfile: Dockerfile,
    pub plan: BuildPlan,
    pub base_images: Vec<String>,
}

/// Parses and resolves: every error in the Dockerfile is found here, before anything runs.
pub fn prepare(req: &Request<'_>) -> Result<Prepared, PlanError> {
    let dockerfile = Dockerfile::parse(req.dockerfile)?;
    let opts = ResolveOptions {
        build_args: req
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        target: req.target.map(str::to_string),
        builtin_args: Default::default(),
    };
    let plan = dockerfile.resolve(&opts)?;
    let mut base_images = Vec::new();
    for s in &plan.stages {
        if let dockerfile::Base::Image(i) = &s.base {
            base_images.push(i.clone());
        }
        base_images.extend(s.image_deps.iter().cloned());
    }
    base_images.dedup();
    Ok(Prepared {
        dockerfile,
        plan,
        base_images,
    })
}

fn chmod(s: &str, line: usize) -> Result<u32, PlanError> {
    u32::from_str_radix(s, 8).map_err(|_| PlanError::At {
        line,
        message: format!("--chmod={s}: only octal modes are supported"),
    })
}

/// COPY's destination made absolute against WORKDIR; `.` and a trailing `/.` mean "into this directory", as
/// a trailing `/` does.
fn absolute(dest: &str, workdir: &str) -> String {
    let (d, into_dir) = if dest == "." {
        ("", true)
    } else if let Some(p) = dest.strip_suffix("/.") {
        (p, true)
    } else {
        (dest, dest.ends_with('/'))
    };
    let joined = if d.starts_with('/') {
        d.to_string()
    } else {
        let base = if workdir.is_empty() { "/" } else { workdir };
        format!("{}/{}", base.trim_end_matches('/'), d)
    };
    let trimmed = joined.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else if into_dir {
        format!("{trimmed}/")
    } else {
        trimmed.to_string()
    }
}

/// The executor's stages, given each base image's config (`base_config(reference)`).
pub fn stages(
    prepared: &Prepared,
    req: &Request<'_>,
    base_config: &dyn Fn(&str) -> Option<ContainerConfig>,
) -> Result<Vec<exec::Stage>, PlanError> {
    let ignore = Ignore::load(req.context, req.dockerfile_path)?;
    let context = Context::scan(req.context, &ignore)?;
    let mut out = Vec::new();
    // Dockerfile stage index -> (position in `out`, final scope, final config).
    let mut done: HashMap<usize, (usize, StageScope, ContainerConfig)> = HashMap::new();
    for ps in &prepared.plan.stages {
        let stage = &prepared.dockerfile.stages[ps.index];
        let (base, mut scope, mut cfg) = match &ps.base {
            dockerfile::Base::Scratch => (
                exec::Base::Scratch,
                prepared.plan.scope(&BaseConfig::default()),
                ContainerConfig::default(),
            ),
            dockerfile::Base::Image(r) => {
                let cfg = base_config(r).unwrap_or_default();
                let bc = BaseConfig {
                    env: cfg.env.clone().unwrap_or_default(),
                    shell: cfg.shell.clone().unwrap_or_default(),
                    workdir: cfg.working_dir.clone().unwrap_or_default(),
                };
                (exec::Base::Image(r.clone()), prepared.plan.scope(&bc), cfg)
            }
            dockerfile::Base::Stage(i) => {
                let (pos, scope, cfg) = done.get(i).cloned().ok_or_else(|| PlanError::At {
                    line: stage.line,
                    message: format!("stage {i} is not built before this one"),
                })?;
                (exec::Base::Stage(pos), scope, cfg)
            }
        };
        let mut steps = Vec::new();
        // A base image's ONBUILD triggers run first, as docker runs them right after FROM; the new image
        // does not carry them on.
        let mut instructions = Vec::new();
        if let (dockerfile::Base::Image(_), Some(triggers)) = (&ps.base, cfg.on_build.take()) {
            for t in &triggers {
                instructions.push(prepared.dockerfile.parse_trigger(ps.index, t)?);
            }
            steps.push(Step {
                line: stage.line,
                text: format!("# (the base image's {} ONBUILD trigger(s))", triggers.len()),
                created_by: "ONBUILD triggers of the base image".into(),
                op: Op::Config(Box::new(cfg.clone())),
            });
        }
        instructions.extend(stage.instructions.iter().cloned());
        for located in &instructions {
            let line = located.line;
            let ins = scope.step(located)?;
            let text = located.original.trim().to_string();
            let created_by = scope.created_by(&ins).unwrap_or_else(|| text.clone());
            let shell: Vec<String> = if scope.shell().is_empty() {
                vec!["/bin/sh".into(), "-c".into()]
            } else {
                scope.shell().to_vec()
            };
            let op = match &ins {
                Instruction::Arg(_) => continue,
                Instruction::Run(run) => {
                    let program = run.program(&shell);
                    Op::Run {
                        args: program.argv,
                        script: program.script,
                        env: scope.run_env(),
                    }
                }
                Instruction::Copy(c) => {
                    let dest = absolute(&c.files.dest, scope.workdir());
                    let chown = c.chown.clone();
                    let chmod = c.chmod.as_deref().map(|s| chmod(s, line)).transpose()?;
                    let inline: Vec<(String, Vec<u8>)> = c
                        .files
                        .heredocs
                        .iter()
                        .map(|h| (h.name.clone(), h.content.clone().into_bytes()))
                        .collect();
                    match &c.from {
                        None => copy_from_context(
                            &context,
                            &c.files.sources,
                            dest,
                            chown,
                            chmod,
                            inline,
                            line,
                        )?,
                        Some(f) => {
                            let from =
                                match f {
                                    CopyFrom::Stage(i) => Source::Stage(
                                        done.get(i).map(|d| d.0).ok_or_else(|| PlanError::At {
                                            line,
                                            message: format!(
                                            "COPY --from: stage {i} is not built before this one"
                                        ),
                                        })?,
                                    ),
                                    CopyFrom::Image(r) => Source::Image(r.clone()),
                                };
                            let sources: Vec<PathBuf> = c
                                .files
                                .sources
                                .iter()
                                .map(|s| PathBuf::from(s.trim_start_matches('/')))
                                .collect();
                            Op::Copy {
                                from,
                                selection: None,
                                digest: format!("{:?}", c.files.sources),
                                sources,
                                inline,
                                dest,
                                chown,
                                chmod,
                                add: None,
                            }
                        }
                    }
                }
                Instruction::Add(a) => {
                    let at = |message: String| PlanError::At { line, message };
                    let mut local = Vec::new();
                    let mut urls = Vec::new();
                    for src in &a.files.sources {
                        if add::is_git(src) {
                            return Err(at(format!(
                                "ADD {src}: git sources are not supported (clone in a RUN step instead)"
                            )));
                        } else if add::is_url(src) {
                            urls.push(src.clone());
                        } else if src.contains("://") {
                            return Err(at(format!(
                                "ADD {src}: only http:// and https:// URLs are supported"
                            )));
                        } else {
                            local.push(src.clone());
                        }
                    }
                    if let Some(c) = &a.checksum {
                        if urls.is_empty() || !local.is_empty() {
                            return Err(at(format!(
                                "ADD --checksum={c}: only supported when every source is an http(s) URL"
                            )));
                        }
                        if !add::checksum_is_valid(c) {
                            return Err(at(format!(
                                "ADD --checksum={c}: expected sha256:<64 hex digits>"
                            )));
                        }
                    }
                    let mut dest = absolute(&a.files.dest, scope.workdir());
                    if a.files.sources.len() + a.files.heredocs.len() > 1 && !dest.ends_with('/') {
                        dest.push('/');
                    }
                    if dest.ends_with('/') {
                        if let Some(u) = urls.iter().find(|u| add::url_file_name(u).is_none()) {
                            return Err(at(format!(
                                "ADD {u}: no file name in the URL's path; give a destination file name"
                            )));
                        }
                    }
                    let chown = a.chown.clone();
                    let chmod = a.chmod.as_deref().map(|s| chmod(s, line)).transpose()?;
                    let inline = a
                        .files
                        .heredocs
                        .iter()
                        .map(|h| (h.name.clone(), h.content.clone().into_bytes()))
                        .collect();
                    let spec = add::AddSpec {
                        urls,
                        checksum: a.checksum.clone(),
                        unpack_local: a.unpack.unwrap_or(true),
                        unpack_remote: a.unpack == Some(true),
                    };
                    let mut op =
                        copy_from_context(&context, &local, dest, chown, chmod, inline, line)?;
                    if let Op::Copy {
                        digest, add: slot, ..
                    } = &mut op
                    {
                        digest.push_str(&format!(
                            "|add:{}:{}:{:?}:{:?}",
                            spec.unpack_local, spec.unpack_remote, spec.checksum, spec.urls
                        ));
                        *slot = Some(spec);
                    }
                    op
                }
                config_ins => {
                    apply_config(&mut cfg, config_ins, &scope, &shell);
                    Op::Config(Box::new(cfg.clone()))
                }
            };
            steps.push(Step {
                line,
                text,
                created_by,
                op,
            });
        }
        out.push(exec::Stage {
            name: ps.name.clone(),
            base,
            steps,
        });
        done.insert(ps.index, (out.len() - 1, scope, cfg));
    }
    Ok(out)
}

fn copy_from_context(
    context: &Context,
    sources: &[String],
    dest: String,
    chown: Option<String>,
    chmod: Option<u32>,
    inline: Vec<(String, Vec<u8>)>,
    line: usize,
) -> Result<Op, PlanError> {
    let selection = if sources.is_empty() {
        None
    } else {
        Some(
            context
                .select(sources, HashOptions::default())
                .map_err(|e| PlanError::At {
                    line,
                    message: format!("COPY failed: {e}"),
                })?,
        )
    };
    let digest = selection
        .as_ref()
        .map(|s| s.digest.clone())
        .unwrap_or_default();
    let inline_digest: Vec<String> = inline
        .iter()
        .map(|(n, c)| format!("{n}:{}", image::Digest::sha256_of(c)))
        .collect();
    Ok(Op::Copy {
        from: Source::Context,
        selection: selection.or_else(|| {
            Some(crate::ignore::Selection {
                entries: Vec::new(),
                digest: String::new(),
            })
        }),
        sources: Vec::new(),
        digest: format!("{digest}|{inline_digest:?}"),
        inline,
        dest,
        chown,
        chmod,
        add: None,
    })
}

fn apply_config(
    cfg: &mut ContainerConfig,
    ins: &Instruction<String>,
    scope: &StageScope,
    shell: &[String],
) {
    match ins {
        Instruction::Env(_) => cfg.env = Some(scope.image_env()),
        Instruction::Label(pairs) => {
            let l = cfg.labels.get_or_insert_with(Default::default);
            for p in pairs {
                l.insert(p.key.clone(), p.value.clone());
            }
        }
        Instruction::Cmd(c) => cfg.cmd = Some(argv(c, shell)),
        Instruction::Entrypoint(c) => {
            cfg.entrypoint = Some(argv(c, shell));
            // docker: an ENTRYPOINT resets a CMD inherited from the base image.
            cfg.cmd = None;
        }
        Instruction::Shell(s) => cfg.shell = Some(s.clone()),
        Instruction::Workdir(_) => cfg.working_dir = Some(scope.workdir().to_string()),
        Instruction::User(u) => cfg.user = Some(u.clone()),
        Instruction::Expose(ports) => {
            let e = cfg.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                e.insert(p.clone(), serde_json::json!({}));
            }
        }
        Instruction::Volume(vols) => {
            let v = cfg.volumes.get_or_insert_with(Default::default);
            for p in vols {
                v.insert(p.clone(), serde_json::json!({}));
            }
        }
        Instruction::StopSignal(s) => cfg.stop_signal = Some(s.clone()),
        Instruction::Healthcheck(h) => {
            cfg.healthcheck = Some(match h {
                Healthcheck::Disable => serde_json::json!({"Test": ["NONE"]}),
                Healthcheck::Check(c) => {
                    let mut test = match &c.test {
                        Command::Exec(_) => vec!["CMD".to_string()],
                        Command::Shell(_) => vec!["CMD-SHELL".to_string()],
                    };
                    if let Command::Exec(a) = &c.test {
                        test.extend(a.iter().cloned());
                    }
                    if let Command::Shell(t) = &c.test {
                        test.push(t.clone());
                    }
                    let ns = |d: Option<std::time::Duration>| {
                        d.map(|d| d.as_nanos() as u64).unwrap_or(0)
                    };
                    serde_json::json!({
                        "Test": test,
                        "Interval": ns(c.interval),
                        "Timeout": ns(c.timeout),
                        "StartPeriod": ns(c.start_period),
                        "StartInterval": ns(c.start_interval),
                        "Retries": c.retries.unwrap_or(0),
                    })
                }
            })
        }
        Instruction::Onbuild(o) => cfg
            .on_build
            .get_or_insert_with(Vec::new)
            .push(o.expression.clone()),
        Instruction::Maintainer(_) => {}
        _ => {}
    }
}

fn argv(c: &Command, shell: &[String]) -> Vec<String> {
    c.argv(shell)
}

#[cfg(test)]
mod tests {
    use super::absolute;

    #[test]
    fn destinations() {
        assert_eq!(absolute(".", "/app"), "/app/");
        assert_eq!(absolute("./", "/app"), "/app/./");
        assert_eq!(absolute("/", "/app"), "/");
        assert_eq!(absolute("sub/.", "/app"), "/app/sub/");
        assert_eq!(absolute("f", "/app"), "/app/f");
        assert_eq!(absolute("d/", ""), "/d/");
        assert_eq!(absolute("/abs", "/app"), "/abs");
        assert_eq!(absolute(".", ""), "/");
    }
}
