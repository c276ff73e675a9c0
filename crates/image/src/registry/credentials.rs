//! Registry credentials in docker's `config.json` (`{"auths": {"HOST": {"auth": base64("user:pass")}}}`), so
//! `docker login` and `berth login` share them. Everything else in the file is kept as it is.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

/// The key docker uses for Docker Hub, for historical reasons.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no auth file given and neither $DOCKER_CONFIG nor $HOME is set")]
    NoPath,
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker/config.json"))
}

/// The key a registry's entry is stored under.
pub fn key_for(registry: &str) -> String {
    if normalise(registry) == "index.docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

/// Keys are written in several ways over docker's history (`https://host/v1/`, `host`, `http://host`); compare
/// hosts only, with Docker Hub's aliases folded together.
fn normalise(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "index.docker.io",
        h => h,
    }
}

/// A loaded auth file. Missing files load as empty and are created by [`AuthFile::store`].
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
    doc: Map<String, Value>,
}

/// Loads `auth_file`, or the default location when `None`.
pub fn load(auth_file: Option<&Path>) -> Result<AuthFile, CredentialsError> {
    let path = match auth_file {
        Some(p) => p.to_path_buf(),
        None => default_path().ok_or(CredentialsError::NoPath)?,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(CredentialsError::Read { path, source }),
    };
    let doc = if text.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(CredentialsError::Format {
                    path,
                    reason: "not a JSON object".into(),
                })
            }
            Err(source) => return Err(CredentialsError::Parse { path, source }),
        }
    };
    Ok(AuthFile { path, doc })
}

impl AuthFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.doc.get("auths").and_then(Value::as_object)
    }

    /// `(user, password)` for a registry, if the file has them inline (credential helpers are not consulted).
    pub fn get(&self, registry: &str) -> Option<(String, String)> {
        let auths = self.auths()?;
        let exact = key_for(registry);
        let entry = auths.get(&exact).or_else(|| {
            let want = normalise(registry);
            auths
                .iter()
                .find(|(k, _)| normalise(k) == want)
                .map(|(_, v)| v)
        })?;
        decode_entry(entry)
    }

    /// Stores credentials and rewrites the file atomically.
    pub fn store(
        &mut self,
        registry: &str,
        user: &str,
        password: &str,
    ) -> Result<(), CredentialsError> {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(auths) = auths.as_object_mut() else {
            return Err(CredentialsError::Format {
                path: self.path.clone(),
                reason: "\"auths\" is not an object".into(),
            });
        };
        let entry = auths
            .entry(key_for(registry))
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Some(obj) = entry.as_object_mut() {
            // Inline username/password would otherwise win over the new auth in some readers.
            obj.remove("username");
            obj.remove("password");
            obj.insert("auth".into(), Value::String(auth));
        }
        self.save()
    }

    /// Removes every entry for the registry (under any of its key spellings). `Ok(false)`: there was none.
    pub fn erase(&mut self, registry: &str) -> Result<bool, CredentialsError> {
        let want = normalise(registry).to_string();
        let Some(auths) = self.doc.get_mut("auths").and_then(Value::as_object_mut) else {
            return Ok(false);
        };
        let before = auths.len();
        auths.retain(|k, _| normalise(k) != want);
        if auths.len() == before {
            return Ok(false);
        }
        self.save()?;
        Ok(true)
    }

    fn save(&self) -> Result<(), CredentialsError> {
        // Write through a symlinked config.json (dotfile managers) instead of replacing the link.
        let target = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let werr = |source| CredentialsError::Write {
            path: target.clone(),
            source,
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(werr)?;
        }
        let mut text = serde_json::to_vec_pretty(&self.doc).map_err(|e| werr(e.into()))?;
        text.push(b'\n');
        // NamedTempFile is created 0600 in the same directory, so the rename is atomic and never exposes
        // the secrets with wider permissions.
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(&dir)
            .map_err(werr)?;
        tmp.write_all(&text).map_err(werr)?;
        tmp.as_file().sync_all().map_err(werr)?;
        tmp.persist(&target).map_err(|e| werr(e.error))?;
        Ok(())
    }
}

fn decode_entry(entry: &Value) -> Option<(String, String)> {
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        return Some((u.to_string(), p.to_string()));
    }
    let user = entry.get("username").and_then(Value::as_str)?;
    let pass = entry.get("password").and_then(Value::as_str)?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(key_for("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(key_for("registry-1.docker.io"), DOCKER_HUB_KEY);
        assert_eq!(key_for("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalise("https://quay.io/v1/"), "quay.io");
        assert_eq!(normalise(DOCKER_HUB_KEY), "index.docker.io");
    }

    #[test]
    fn reads_legacy_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://quay.io/v1/":{"auth":"dTpwOng="},"h:1":{"username":"a","password":"b"},"https://index.docker.io/v1/":{"auth":"aHViOnB3"}}}"#,
        )
        .unwrap();
        let f = load(Some(&p)).unwrap();
        assert_eq!(f.get("quay.io"), Some(("u".into(), "p:x".into())));
        assert_eq!(f.get("h:1"), Some(("a".into(), "b".into())));
        assert_eq!(f.get("docker.io"), Some(("hub".into(), "pw".into())));
        assert_eq!(f.get("ghcr.io"), None);
    }

    #[test]
    fn missing_file_is_empty_and_bad_json_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/config.json");
        let mut f = load(Some(&p)).unwrap();
        assert_eq!(f.get("x.io"), None);
        f.store("x.io", "u", "p").unwrap();
        assert_eq!(
            load(Some(&p)).unwrap().get("x.io"),
            Some(("u".into(), "p".into()))
        );
        std::fs::write(&p, "{not json").unwrap();
        let e = load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }
}
