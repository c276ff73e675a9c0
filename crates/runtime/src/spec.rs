//! Loading, validating and generating config.json.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use thiserror::Error;

/// The runtime-spec major version berth implements; any 1.x is accepted.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, Error)]
pub enum SpecError {
    #[error("open {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid config at `{field}`: {message}")]
    Parse {
        path: String,
        field: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Reads and validates `<bundle>/config.json`. Parse errors name the JSON field (`process.rlimits[0].type`).
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    load_with_text(bundle).map(|(spec, _)| spec)
}

/// [`load`], also returning the file's text (kept verbatim in the container's state: no re-serialising).
pub fn load_with_text(bundle: &Path) -> Result<(Spec, String), SpecError> {
    let path = bundle.join("config.json");
    let shown = path.display().to_string();
    let data = std::fs::read(&path).map_err(|source| SpecError::Open {
        path: shown.clone(),
        source,
    })?;
    let spec = parse(&data).map_err(|(field, message)| SpecError::Parse {
        path: shown.clone(),
        field,
        message,
    })?;
    validate(&spec).map_err(|message| SpecError::Invalid {
        path: shown.clone(),
        message,
    })?;
    // parse() accepted it, so it is UTF-8 JSON.
    let text = String::from_utf8(data).map_err(|e| SpecError::Invalid {
        path: shown,
        message: e.to_string(),
    })?;
    Ok((spec, text))
}

/// Parses JSON into a spec, returning (field path, message) on error.
pub fn parse(data: &[u8]) -> Result<Spec, (String, String)> {
    // The plain parse is the fast path: the path-tracking deserializer doubles the work and, being a
    // separate instantiation of every Deserialize impl, the code a start touches. It runs only to explain
    // an error.
    if let Ok(spec) = serde_json::from_slice(data) {
        return Ok(spec);
    }
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; keep it, it points into the file.
        (
            if field == "." {
                "(top level)".into()
            } else {
                field
            },
            inner.to_string(),
        )
    })
}

/// Checks what serde cannot: version, required fields, namespace sanity, sysctl/namespace agreement.
pub fn validate(spec: &Spec) -> Result<(), String> {
    let v = spec.version();
    if !(v.starts_with("1.") || v == "1") {
        return Err(format!(
            "ociVersion: unsupported version {v:?} (berth-runtime implements 1.x, up to {OCI_VERSION})"
        ));
    }
    let root = spec.root().as_ref().ok_or("root: field is required")?;
    if root.path().as_os_str().is_empty() {
        return Err("root.path: must not be empty".into());
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or("process: field is required")?;
    match process.args() {
        Some(a) if !a.is_empty() => {}
        _ => return Err("process.args: must contain at least one element".into()),
    }
    if !process.cwd().is_absolute() {
        return Err(format!(
            "process.cwd: {:?} must be an absolute path",
            process.cwd()
        ));
    }
    let linux = spec.linux().as_ref().ok_or("linux: field is required")?;
    let mut seen = Vec::new();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    for (i, ns) in namespaces.iter().enumerate() {
        if seen.contains(&ns.typ()) {
            return Err(format!(
                "linux.namespaces[{i}]: duplicate namespace type {}",
                ns.typ()
            ));
        }
        seen.push(ns.typ());
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(format!(
                    "linux.namespaces[{i}].path: {p:?} must be an absolute path"
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    if (spec.hostname().as_deref().is_some_and(|h| !h.is_empty())
        || spec.domainname().as_deref().is_some_and(|h| !h.is_empty()))
        && !has(LinuxNamespaceType::Uts)
    {
        return Err("hostname/domainname: setting them requires a new uts namespace".into());
    }
    if (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
        && !has(LinuxNamespaceType::User)
    {
        return Err("linux.uidMappings: mappings require a user namespace".into());
    }
    if linux.time_offsets().is_some() && !has(LinuxNamespaceType::Time) {
        return Err("linux.timeOffsets: requires a time namespace".into());
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            check_sysctl(key, &has)?;
        }
    }
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if !m.destination().is_absolute() {
                return Err(format!(
                    "mounts[{i}].destination: {:?} must be an absolute path",
                    m.destination()
                ));
            }
        }
    }
    Ok(())
}

/// runc's rules: a sysctl may only be set where its namespace is the container's own.
fn check_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<(), String> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        if has(LinuxNamespaceType::Ipc) {
            return Ok(());
        }
        return Err(format!(
            "linux.sysctl: {key:?} requires a new ipc namespace"
        ));
    }
    if key.starts_with("net.") {
        if has(LinuxNamespaceType::Network) {
            return Ok(());
        }
        return Err(format!(
            "linux.sysctl: {key:?} requires a new network namespace"
        ));
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        if has(LinuxNamespaceType::Uts) {
            return Ok(());
        }
        return Err(format!(
            "linux.sysctl: {key:?} requires a new uts namespace"
        ));
    }
    Err(format!(
        "linux.sysctl: {key:?} is not namespaced and cannot be set for a container"
    ))
}

/// runc's default config.json (`runc spec`), with `--rootless` adjustments.
pub fn default_spec_json(rootless: bool) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(DEFAULT_SPEC).expect("built-in default spec is valid JSON");
    if rootless {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let linux = &mut v["linux"];
        linux["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        if let Some(ns) = linux["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
            ns.push(serde_json::json!({"type": "user"}));
        }
        if let Some(obj) = linux.as_object_mut() {
            obj.remove("resources");
        }
        if let Some(mounts) = v["mounts"].as_array_mut() {
            mounts.retain(|m| m["destination"] != "/sys");
            for m in mounts.iter_mut() {
                if m["destination"] == "/dev/pts" {
                    if let Some(opts) = m["options"].as_array_mut() {
                        opts.retain(|o| o != "gid=5");
                    }
                }
            }
            mounts.push(serde_json::json!({
                "destination": "/sys", "type": "none", "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]
            }));
        }
    }
    v
}

const DEFAULT_SPEC: &str = r#"{
	"ociVersion": "1.2.0",
	"process": {
		"terminal": true,
		"user": {"uid": 0, "gid": 0},
		"args": ["sh"],
		"env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
		"cwd": "/",
		"capabilities": {
			"bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
			"effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
			"permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
		},
		"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
		"noNewPrivileges": true
	},
	"root": {"path": "rootfs", "readonly": true},
	"hostname": "runc",
	"mounts": [
		{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
		{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
		{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
		{"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
		{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
		{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
	],
	"linux": {
		"resources": {"devices": [{"allow": false, "access": "rwm"}]},
		"namespaces": [
			{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
		],
		"maskedPaths": [
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
			"/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
		],
		"readonlyPaths": [
			"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
		]
	}
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_parses_and_validates() {
        let v = default_spec_json(false);
        let spec = parse(v.to_string().as_bytes()).unwrap();
        validate(&spec).unwrap();
        let v = default_spec_json(true);
        let spec = parse(v.to_string().as_bytes()).unwrap();
        validate(&spec).unwrap();
    }

    #[test]
    fn parse_error_names_field() {
        let mut v = default_spec_json(false);
        v["process"]["rlimits"][0]["type"] = "RLIMIT_BOGUS".into();
        let (field, _msg) = parse(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(field, "process.rlimits[0].type");
        let (field, msg) = parse(b"{\"ociVersion\": 1").unwrap_err();
        assert!(field.contains("ociVersion"), "{field} {msg}");
    }

    #[test]
    fn validation_rules() {
        let mut v = default_spec_json(false);
        v["ociVersion"] = "2.0.0".into();
        let spec = parse(v.to_string().as_bytes()).unwrap();
        assert!(validate(&spec).unwrap_err().contains("ociVersion"));

        let mut v = default_spec_json(false);
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "pid"}));
        let spec = parse(v.to_string().as_bytes()).unwrap();
        assert!(validate(&spec).unwrap_err().contains("duplicate"));

        let mut v = default_spec_json(false);
        v["linux"]["sysctl"] = serde_json::json!({"vm.swappiness": "1"});
        let spec = parse(v.to_string().as_bytes()).unwrap();
        assert!(validate(&spec).unwrap_err().contains("not namespaced"));

        let mut v = default_spec_json(false);
        v["process"]["args"] = serde_json::json!([]);
        let spec = parse(v.to_string().as_bytes()).unwrap();
        assert!(validate(&spec).unwrap_err().contains("process.args"));
    }
}
