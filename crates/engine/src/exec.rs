//! `docker exec`: the process an exec runs, built from the container's own config.json process the way dockerd
//! builds it (daemon/exec.go, daemon/exec_linux.go): the container's environment with the exec's `-e` applied
//! by key, its user unless `-u`, its working directory unless `-w`, and its rlimits, no_new_privs and AppArmor
//! profile as they are; every capability with `--privileged`. The runtime joins the container with it
//! (`<runtime> exec --process FILE ID`).

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::container::{settings_of, Engine, EngineError};
use crate::oci::Oci;
use crate::records::{Container, Status};
use crate::spec::SpecError;
use crate::{caps, user};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// docker's wording: "container <id> is not running" (also paused and restarting, each its own text).
    #[error("{0}")]
    NotRunning(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    User(#[from] SpecError),
    #[error("read {}: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    BadConfig { path: PathBuf, what: String },
}

/// What `docker exec` asks for.
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// `-e` in order (`--env-file` already expanded). `K=V` sets K; a bare `K` takes the caller's value, or
    /// unsets K when the caller has none (docker's ReplaceOrAppendEnvValues).
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub privileged: bool,
}

/// An exec ready to run: the container, its runtime and the process object to hand the runtime.
pub struct Prepared {
    pub container: Container,
    pub oci: Oci,
    pub process: Value,
}

fn env_key(kv: &str) -> &str {
    kv.split_once('=').map(|(k, _)| k).unwrap_or(kv)
}

/// docker's errors for an exec into a container that is not up, by its state.
pub fn check_running(c: &Container) -> Result<(), ExecError> {
    match c.status {
        Status::Running => Ok(()),
        Status::Paused => Err(ExecError::NotRunning(format!(
            "container {} is paused, unpause the container before exec",
            c.id
        ))),
        Status::Restarting => Err(ExecError::NotRunning(format!(
            "container {} is restarting, wait until the container is running",
            c.id
        ))),
        _ => Err(ExecError::NotRunning(format!(
            "container {} is not running",
            c.id
        ))),
    }
}

/// Looks the container up, checks it runs and builds its exec process.
pub fn prepare(
    engine: &mut Engine,
    id_or_name: &str,
    req: &ExecRequest,
) -> Result<Prepared, ExecError> {
    let c = engine.get(id_or_name)?;
    check_running(&c)?;
    let path = engine.paths(&c.id).config();
    let bytes = std::fs::read(&path).map_err(|source| ExecError::Config {
        path: path.clone(),
        source,
    })?;
    let config: Value = serde_json::from_slice(&bytes).map_err(|e| ExecError::BadConfig {
        path: path.clone(),
        what: e.to_string(),
    })?;
    let rootfs = config["root"]["path"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| ExecError::BadConfig {
            path: path.clone(),
            what: "no root.path".into(),
        })?;
    let home_fixed = home_was_given(engine, &c);
    let process = build_process(&config, &rootfs, req, home_fixed, &|k| {
        std::env::var(k).ok()
    })?;
    let oci = engine.oci(&c)?;
    Ok(Prepared {
        container: c,
        oci,
        process,
    })
}

/// Whether HOME was set on purpose (`run -e`, the image's ENV) rather than derived from the container's user:
/// only a derived HOME follows `exec -u` to the new user's home, as runc derives it at exec time.
fn home_was_given(engine: &mut Engine, c: &Container) -> bool {
    let settings = settings_of(c);
    if settings.run.env.iter().any(|e| env_key(e) == "HOME") {
        return true;
    }
    let image_env = engine
        .store()
        .ok()
        .and_then(|s| s.resolve(&c.image_id).ok())
        .and_then(|info| info.config.config.and_then(|cfg| cfg.env))
        .unwrap_or_default();
    image_env.iter().any(|e| env_key(e) == "HOME")
}

/// The exec process from config.json's `process`. `home_fixed`: HOME stays as it is even with `-u`.
pub fn build_process(
    config: &Value,
    rootfs: &Path,
    req: &ExecRequest,
    home_fixed: bool,
    caller_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, ExecError> {
    if req.args.is_empty() {
        return Err(ExecError::Invalid("no command specified".into()));
    }
    let mut p: Map<String, Value> = match &config["process"] {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    p.insert("args".into(), json!(req.args));
    p.insert("terminal".into(), json!(req.tty));
    // The container's console size is not the exec's terminal: the runtime sizes the new one from ours.
    p.remove("consoleSize");

    let mut env: Vec<String> = p
        .get("env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if req.tty && !env.iter().any(|e| env_key(e) == "TERM") {
        env.push("TERM=xterm".into());
    }
    let mut home_given = home_fixed;
    for kv in &req.env {
        if kv.contains('\0') {
            return Err(ExecError::Invalid(format!(
                "invalid -e {kv:?}: contains a NUL byte"
            )));
        }
        let kv = match kv.split_once('=') {
            Some(_) => kv.clone(),
            None => match caller_env(kv) {
                Some(v) => format!("{kv}={v}"),
                None => {
                    env.retain(|e| env_key(e) != kv);
                    continue;
                }
            },
        };
        let key = env_key(&kv).to_string();
        if key.is_empty() {
            return Err(ExecError::Invalid(format!(
                "invalid -e {kv:?}: variable name is empty"
            )));
        }
        if key == "HOME" {
            home_given = true;
        }
        match env.iter_mut().find(|e| env_key(e) == key) {
            Some(e) => *e = kv,
            None => env.push(kv),
        }
    }

    if let Some(u) = req.user.as_deref().filter(|u| !u.is_empty()) {
        let resolved = user::resolve(rootfs, u, "--user")?;
        let mut user_obj = json!({"uid": resolved.uid, "gid": resolved.gid});
        if !resolved.additional_gids.is_empty() {
            user_obj["additionalGids"] = json!(resolved.additional_gids);
        }
        // A umask the container was given still applies.
        if let Some(m) = p.get("user").and_then(|u| u.get("umask")) {
            user_obj["umask"] = m.clone();
        }
        p.insert("user".into(), user_obj);
        if !home_given {
            let home = format!("HOME={}", resolved.home);
            match env.iter_mut().find(|e| env_key(e) == "HOME") {
                Some(e) => *e = home,
                None => env.push(home),
            }
        }
    }
    p.insert("env".into(), json!(env));

    if let Some(w) = req.workdir.as_deref().filter(|w| !w.is_empty()) {
        if !w.starts_with('/') {
            return Err(ExecError::Invalid(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )));
        }
        p.insert("cwd".into(), json!(w));
    }
    if !p.contains_key("cwd") {
        p.insert("cwd".into(), json!("/"));
    }

    if req.privileged {
        // Every capability the kernel knows that berth itself holds (its bounding set), as for a privileged run.
        let all = caps::all_supported();
        p.insert(
            "capabilities".into(),
            json!({"bounding": all, "effective": all, "permitted": all}),
        );
        // dockerd: a privileged exec runs unconfined and unlabelled.
        if p.contains_key("apparmorProfile") {
            p.insert("apparmorProfile".into(), json!("unconfined"));
        }
        p.remove("selinuxLabel");
    }
    Ok(Value::Object(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({
            "root": {"path": "/nonexistent"},
            "process": {
                "terminal": true,
                "consoleSize": {"height": 24, "width": 80},
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": ["PATH=/bin", "HOME=/root", "A=1", "B=2"],
                "cwd": "/srv",
                "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 10, "soft": 10}],
                "noNewPrivileges": true,
                "apparmorProfile": "docker-default"
            }
        })
    }

    fn req(args: &[&str]) -> ExecRequest {
        ExecRequest {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn keeps_the_containers_settings() {
        let d = tempfile::tempdir().unwrap();
        let p = build_process(&config(), d.path(), &req(&["ls", "-l"]), false, &no_env).unwrap();
        assert_eq!(p["args"], json!(["ls", "-l"]));
        assert_eq!(p["terminal"], json!(false));
        assert!(p.get("consoleSize").is_none());
        assert_eq!(p["cwd"], "/srv");
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(p["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(p["capabilities"]["bounding"], json!(["CAP_KILL"]));
        assert_eq!(p["apparmorProfile"], "docker-default");
        assert_eq!(p["env"], json!(["PATH=/bin", "HOME=/root", "A=1", "B=2"]));
    }

    #[test]
    fn env_replaces_by_key_appends_and_unsets() {
        let d = tempfile::tempdir().unwrap();
        let mut r = req(&["env"]);
        r.env = vec!["A=9".into(), "C=3".into(), "B".into(), "D".into()];
        r.tty = true;
        let caller = |k: &str| (k == "D").then(|| "from-caller".to_string());
        let p = build_process(&config(), d.path(), &r, false, &caller).unwrap();
        assert_eq!(
            p["env"],
            json!([
                "PATH=/bin",
                "HOME=/root",
                "A=9",
                "TERM=xterm",
                "C=3",
                "D=from-caller"
            ])
        );
        assert_eq!(p["terminal"], true);
    }

    #[test]
    fn bad_env_and_workdir_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let mut r = req(&["true"]);
        r.env = vec!["=x".into()];
        let e = build_process(&config(), d.path(), &r, false, &no_env).unwrap_err();
        assert!(e.to_string().contains("variable name is empty"), "{e}");
        let mut r = req(&["true"]);
        r.workdir = Some("rel/dir".into());
        let e = build_process(&config(), d.path(), &r, false, &no_env).unwrap_err();
        assert!(e.to_string().contains("absolute path"), "{e}");
        let e = build_process(&config(), d.path(), &req(&[]), false, &no_env).unwrap_err();
        assert!(e.to_string().contains("no command"), "{e}");
    }

    #[test]
    fn user_resolves_in_the_rootfs_and_moves_home() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nbob:x:1000:1001::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "wheel:x:10:bob\n").unwrap();
        let mut r = req(&["id"]);
        r.user = Some("bob".into());
        r.workdir = Some("/tmp".into());
        let p = build_process(&config(), d.path(), &r, false, &no_env).unwrap();
        assert_eq!(
            p["user"],
            json!({"uid": 1000, "gid": 1001, "additionalGids": [10]})
        );
        assert_eq!(p["cwd"], "/tmp");
        assert!(p["env"]
            .as_array()
            .unwrap()
            .contains(&json!("HOME=/home/bob")));
        // A HOME the user set stays.
        let p = build_process(&config(), d.path(), &r, true, &no_env).unwrap();
        assert!(p["env"].as_array().unwrap().contains(&json!("HOME=/root")));
        r.user = Some("nobody-here".into());
        let e = build_process(&config(), d.path(), &r, false, &no_env).unwrap_err();
        assert!(e.to_string().contains("nobody-here"), "{e}");
    }

    #[test]
    fn privileged_gets_every_capability_unconfined() {
        let d = tempfile::tempdir().unwrap();
        let mut r = req(&["sh"]);
        r.privileged = true;
        let p = build_process(&config(), d.path(), &r, false, &no_env).unwrap();
        let bounding = p["capabilities"]["bounding"].as_array().unwrap();
        assert!(bounding.contains(&json!("CAP_SYS_ADMIN")));
        assert_eq!(p["capabilities"]["effective"].as_array().unwrap(), bounding);
        assert_eq!(p["apparmorProfile"], "unconfined");
    }
}
