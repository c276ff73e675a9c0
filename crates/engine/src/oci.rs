//! Driving an OCI runtime binary (berth-runtime by default; runc and crun speak the same command line).
//! Each container's runtime state lives under `<root>/runtime/<runtime name>`, so several berth roots and the
//! user's own runc containers never see each other.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("runtime {name:?} not found: {hint}")]
    NotFound { name: String, hint: String },
    #[error("run {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runtime said no; `message` is its own error line.
    #[error("OCI runtime {op} failed: {message}")]
    Failed { op: &'static str, message: String },
}

impl OciError {
    /// docker's exit code for a container that could not be started: 127 when the command does not exist,
    /// 126 when it cannot be run, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            OciError::Failed { message, .. } => command_error_code(message),
            _ => 125,
        }
    }
}

pub fn command_error_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        125
    }
}

#[derive(Clone, Debug)]
pub struct Oci {
    pub bin: PathBuf,
    /// The runtime's --root.
    pub state_root: PathBuf,
}

/// The runtime a container asks for: "berth-runtime" (next to the berth binary, else on PATH), another name
/// on PATH ("runc", "crun"), or a path.
pub fn resolve(name: &str, berth_root: &Path) -> Result<Oci, OciError> {
    let name = if name.is_empty() {
        "berth-runtime"
    } else {
        name
    };
    let bin = if name.contains('/') {
        let p = PathBuf::from(name);
        if !p.is_file() {
            return Err(OciError::NotFound {
                name: name.into(),
                hint: "no such file".into(),
            });
        }
        p
    } else {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join(name)))
            .filter(|p| p.is_file());
        match beside.or_else(|| search_path(name)) {
            Some(p) => p,
            None => return Err(OciError::NotFound {
                name: name.into(),
                hint:
                    "not next to berth and not on PATH (--runtime takes a name on PATH or a path)"
                        .into(),
            }),
        }
    };
    let tag = bin
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or("runtime")
        .to_string();
    Ok(Oci {
        bin,
        state_root: berth_root.join("runtime").join(tag),
    })
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The runtime's last meaningful stderr line, without its "name: " prefix or log-format noise.
pub fn error_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("exited without saying why");
    // runc logs JSON lines ({"level":"error","msg":...}) on stderr in some paths.
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        if let Some(m) = v.get("msg").and_then(Value::as_str) {
            return m.to_string();
        }
    }
    for p in ["berth-runtime: ", "runc: ", "crun: ", "Error: ", "error: "] {
        if let Some(rest) = line.strip_prefix(p) {
            return rest.to_string();
        }
    }
    line.to_string()
}

/// The runtime's last error line in its `--log` file (JSON or text), if it wrote one.
pub fn log_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rfind(|l| !l.trim().is_empty())?;
    Some(error_message(line.as_bytes()))
}

impl Oci {
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.state_root);
        c
    }

    fn run(&self, op: &'static str, args: &[&OsStr]) -> Result<Output, OciError> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| OciError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(OciError::Failed {
                op,
                message: error_message(&out.stderr),
            })
        }
    }

    pub fn start(&self, id: &str) -> Result<(), OciError> {
        self.run("start", &["start".as_ref(), id.as_ref()])
            .map(drop)
    }

    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), OciError> {
        let mut a: Vec<&OsStr> = vec!["kill".as_ref()];
        if all {
            a.push("--all".as_ref());
        }
        a.push(id.as_ref());
        a.push(signal.as_ref());
        self.run("kill", &a).map(drop)
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        let mut a: Vec<&OsStr> = vec!["delete".as_ref()];
        if force {
            a.push("--force".as_ref());
        }
        a.push(id.as_ref());
        self.run("delete", &a).map(drop)
    }

    /// The runtime's state JSON, or None when it does not know the container.
    pub fn state(&self, id: &str) -> Result<Option<Value>, OciError> {
        match self.run("state", &["state".as_ref(), id.as_ref()]) {
            Ok(out) => Ok(serde_json::from_slice(&out.stdout).ok()),
            Err(OciError::Failed { message, .. })
                if message.contains("does not exist") || message.contains("not exist") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub fn pause(&self, id: &str) -> Result<(), OciError> {
        self.run("pause", &["pause".as_ref(), id.as_ref()])
            .map(drop)
    }

    pub fn resume(&self, id: &str) -> Result<(), OciError> {
        self.run("resume", &["resume".as_ref(), id.as_ref()])
            .map(drop)
    }

    /// The pids in the container's cgroup (`ps --format json`).
    pub fn pids(&self, id: &str) -> Result<Vec<i64>, OciError> {
        let out = self.run(
            "ps",
            &[
                "ps".as_ref(),
                "--format".as_ref(),
                "json".as_ref(),
                id.as_ref(),
            ],
        )?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok(v.as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default())
    }

    /// One `events --stats` sample: runc's stats JSON ({"type":"stats","data":{...}}).
    pub fn stats(&self, id: &str) -> Result<Value, OciError> {
        let out = self.run(
            "events",
            &["events".as_ref(), "--stats".as_ref(), id.as_ref()],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("{}");
        serde_json::from_str(line).map_err(|e| OciError::Failed {
            op: "events --stats",
            message: format!("unreadable stats JSON: {e}"),
        })
    }
}
