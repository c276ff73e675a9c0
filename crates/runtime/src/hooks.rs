//! Lifecycle hooks: each runs with the container's state JSON on stdin, its own env, and an optional timeout.

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use oci_spec::runtime::Hook;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HookError {
    #[error("{phase} hook {path}: {source}")]
    Spawn {
        phase: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{phase} hook {path}: {status}")]
    Failed {
        phase: &'static str,
        path: String,
        status: String,
    },
    #[error("{phase} hook {path}: timed out after {secs}s")]
    Timeout {
        phase: &'static str,
        path: String,
        secs: i64,
    },
}

pub fn run_all(
    phase: &'static str,
    hooks: Option<&Vec<Hook>>,
    state_json: &[u8],
) -> Result<(), HookError> {
    for h in hooks.into_iter().flatten() {
        run(phase, h, state_json)?;
    }
    Ok(())
}

pub fn run(phase: &'static str, h: &Hook, state_json: &[u8]) -> Result<(), HookError> {
    let path = h.path().display().to_string();
    let mut cmd = Command::new(h.path());
    let args = h.args().clone().unwrap_or_default();
    if let Some((first, rest)) = args.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        phase,
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let status = match h.timeout() {
        Some(secs) if secs > 0 => {
            let pid = child.id() as i32;
            let exited =
                crate::syscall::wait_exit(pid, (secs as i32).saturating_mul(1000)).unwrap_or(true);
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { phase, path, secs });
            }
            child.wait()
        }
        _ => child.wait(),
    }
    .map_err(|source| HookError::Spawn {
        phase,
        path: path.clone(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "failed".into(),
        };
        Err(HookError::Failed {
            phase,
            path,
            status,
        })
    }
}
