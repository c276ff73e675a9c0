//! exec: a new process in a running container, through the runtime's `exec --process`. In the foreground the
//! runtime stays, relays the terminal with `-t` and exits with the process's code, which becomes ours.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::exec::ExecRequest;

use super::run::engine;
use super::Ctx;

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Override the key sequence for detaching a container (accepted; the runtime's relay has no detach)
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Blocks the signals a terminal or a caller sends, so they reach the runtime (which forwards them to the
/// process and reports its exit) without ending us first. Children start with an empty mask (std resets it).
fn block_signals() {
    // SAFETY: sigset manipulation on a set we own, and the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

pub fn exec(ctx: &Ctx, a: ExecArgs) -> Result<i32> {
    // Accepted as docker's flag; the runtime's terminal relay has no detach sequence to change.
    let _ = &a.detach_keys;
    if a.tty && a.interactive && !a.detach && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(super::run::parse_env_file(f)?);
    }
    env.extend(a.env.iter().cloned());
    let req = ExecRequest {
        args: a.command.clone(),
        env,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        // A detached exec has nobody to hold its terminal's other end (docker's shim would): it runs
        // without one.
        tty: a.tty && !a.detach,
        privileged: a.privileged,
    };
    let mut e = engine(ctx)?;
    let prepared = match engine::exec::prepare(&mut e, &a.container, &req) {
        Ok(p) => p,
        Err(err) => {
            let line = super::error_line(&anyhow::Error::new(err));
            eprintln!("Error response from daemon: {line}");
            return Ok(1);
        }
    };
    let dir = e.paths(&prepared.container.id).dir;
    // Both files live in the container's directory (removed with it) and go when this exec ends.
    let mut process = tempfile::Builder::new()
        .prefix("exec-")
        .suffix(".json")
        .tempfile_in(&dir)
        .with_context(|| format!("write the exec process in {}", dir.display()))?;
    serde_json::to_writer(&mut process, &prepared.process)?;
    std::io::Write::flush(&mut process)?;
    let log = tempfile::Builder::new()
        .prefix("exec-")
        .suffix(".log")
        .tempfile_in(&dir)
        .with_context(|| format!("create the exec log in {}", dir.display()))?;

    let mut cmd = prepared.oci.command();
    cmd.arg("--log")
        .arg(log.path())
        .arg("--log-format")
        .arg("json")
        .arg("exec")
        .arg("--process")
        .arg(process.path());
    if req.tty {
        cmd.arg("--tty");
    }
    if a.detach {
        cmd.arg("--detach");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    } else if !a.interactive {
        cmd.stdin(Stdio::null());
    }
    cmd.arg(&prepared.container.id);
    if !a.detach {
        block_signals();
    }
    let status = cmd
        .status()
        .with_context(|| format!("run {}", prepared.oci.bin.display()))?;
    if !status.success() {
        if let Some(msg) = engine::oci::log_error(log.path()) {
            // The runtime said why on stderr already (unless detached). docker's codes for an exec that did
            // not start: 127 when the command is not there, else 126 (it could not be run).
            if a.detach {
                eprintln!("Error response from daemon: OCI runtime exec failed: {msg}");
            }
            return Ok(match engine::oci::command_error_code(&msg) {
                125 => 126,
                c => c,
            });
        }
    }
    if a.detach {
        return Ok(0);
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}
