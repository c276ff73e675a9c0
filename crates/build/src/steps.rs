//! The build's primitive steps, each turning an image into the next one: RUN (a container of the current
//! image runs the command through the engine and berth-runtime; its changes become a layer), COPY (files
//! staged in a directory become a layer directly, without a container) and config-only steps (ENV, CMD, ...:
//! a new config with an empty-layer history entry).

use std::io::Write;
use std::path::Path;

use engine::attach::{self, Event};
use engine::container::{CreateRequest, Engine, EngineError};
use engine::spec::{NetworkMode, RunOptions};
use image::commit::{commit, CommitOptions};
use image::media::{ContainerConfig, History};
use image::{Compression, Digest, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A RUN whose command failed: docker's wording.
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    RunFailed { command: String, code: i32 },
}

/// What every step needs to know about the build.
pub struct StepContext<'a> {
    pub engine: &'a mut Engine,
    /// SOURCE_DATE_EPOCH, for reproducible layers and creation times.
    pub epoch: Option<i64>,
    pub compression: Compression,
}

fn history(created_by: &str) -> History {
    History {
        created_by: Some(created_by.to_string()),
        comment: Some("berth build".into()),
        ..Default::default()
    }
}

/// RUN: `args` (already in exec form: `/bin/sh -c ...` for the shell form) in a container of `parent`, with
/// `env` added (build args), its output copied to `out`; the changes become the next image.
pub fn run(
    cx: &mut StepContext<'_>,
    parent: &Digest,
    args: Vec<String>,
    env: Vec<String>,
    script: Option<&(String, String)>,
    created_by: &str,
    out: &mut dyn Write,
) -> Result<Digest, StepError> {
    let command = args.join(" ");
    // A `#!` heredoc: the body in a file mounted read-only where the command expects it (buildkit's way).
    let script_dir = match script {
        Some(_) => Some(
            tempfile::Builder::new()
                .prefix("build-script-")
                .tempdir_in(cx.engine.store()?.root().join("tmp"))
                .map_err(|source| StepError::Io {
                    what: "script directory".into(),
                    source,
                })?,
        ),
        None => None,
    };
    let mut mounts = Vec::new();
    if let (Some((path, body)), Some(dir)) = (script, &script_dir) {
        let file = dir.path().join("script");
        std::fs::write(&file, body).map_err(|source| StepError::Io {
            what: format!("write {}", file.display()),
            source,
        })?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| StepError::Io {
                what: format!("chmod {}", file.display()),
                source,
            },
        )?;
        mounts.push(engine::volumes::MountRequest::Bind {
            src: file,
            dst: path.clone(),
            readonly: true,
            create_source: false,
        });
    }
    let req = CreateRequest {
        mounts,
        image: parent.to_string(),
        run: RunOptions {
            entrypoint: Some(Vec::new()),
            cmd: args,
            env,
            // Until bridge networking exists, RUN steps share the host's network (as `--network host`).
            network: NetworkMode::Host,
            ..Default::default()
        },
        runtime: String::new(),
        log_max_file: 1,
        start_next: true,
        no_image_volumes: true,
        ..Default::default()
    };
    let c = cx.engine.create(req)?;
    let result = run_container(cx, &c.id, out);
    let outcome = match result {
        Ok(0) => {
            let upper = cx.engine.store()?.active_upper(&c.id);
            let opts = CommitOptions {
                parent: Some(parent.clone()),
                history: history(created_by),
                epoch: cx.epoch,
                compression: cx.compression,
                ..Default::default()
            };
            commit(cx.engine.store()?, Some(&upper), &opts)
                .map(|c| c.id)
                .map_err(StepError::from)
        }
        Ok(code) => Err(StepError::RunFailed { command, code }),
        Err(e) => Err(e),
    };
    let _ = cx.engine.remove(&c.id, true, true);
    outcome
}

fn run_container(
    cx: &mut StepContext<'_>,
    id: &str,
    out: &mut dyn Write,
) -> Result<i32, StepError> {
    let started = cx
        .engine
        .start(id, Some(attach::WANT_STDOUT | attach::WANT_STDERR))?;
    let Some(mut client) = started.client else {
        return Ok(cx.engine.wait(id)? as i32);
    };
    loop {
        let ev = client.next_event().map_err(|source| StepError::Io {
            what: format!("output of build container {id}"),
            source,
        })?;
        match ev {
            Event::Stdout(d) | Event::Stderr(d) => {
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            Event::Exit(code) => return Ok(code),
            Event::Error(m) => {
                return Err(StepError::Engine(EngineError::StartFailed {
                    code: 125,
                    message: m,
                }))
            }
            Event::Closed => return Ok(cx.engine.wait(id)? as i32),
        }
    }
}

/// COPY/ADD: `staged` holds the files laid out as they land in the image (already owned and moded); it
/// becomes the next layer.
pub fn add_layer(
    cx: &mut StepContext<'_>,
    parent: Option<&Digest>,
    staged: &Path,
    created_by: &str,
) -> Result<Digest, StepError> {
    let opts = CommitOptions {
        parent: parent.cloned(),
        history: history(created_by),
        epoch: cx.epoch,
        compression: cx.compression,
        ..Default::default()
    };
    Ok(commit(cx.engine.store()?, Some(staged), &opts)?.id)
}

/// ENV, CMD, WORKDIR, ...: a new config, no layer.
pub fn config(
    cx: &mut StepContext<'_>,
    parent: Option<&Digest>,
    cfg: ContainerConfig,
    created_by: &str,
) -> Result<Digest, StepError> {
    let opts = CommitOptions {
        parent: parent.cloned(),
        config: Some(cfg),
        history: history(created_by),
        epoch: cx.epoch,
        compression: cx.compression,
        ..Default::default()
    };
    Ok(commit(cx.engine.store()?, None, &opts)?.id)
}
