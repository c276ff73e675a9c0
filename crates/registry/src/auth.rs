//! Access control: an htpasswd file of bcrypt entries, checked as Basic credentials, and the bearer-token
//! flow docker clients follow (`GET /token` with Basic credentials returns an HMAC-signed token for the
//! requested scopes). Without an htpasswd file the registry is open.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::errors::RegistryServerError;

/// How long an issued token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An action on a repository, as token scopes name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// One access a request needs: `repository:<name>:<action>` or the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    Repo(String, Action),
    Catalog,
}

impl Need {
    /// The scope a client should ask a token for to be allowed this (pushers also pull).
    pub fn scope(&self) -> String {
        match self {
            Need::Repo(name, Action::Pull) => format!("repository:{name}:pull"),
            Need::Repo(name, Action::Push) => format!("repository:{name}:pull,push"),
            Need::Repo(name, Action::Delete) => format!("repository:{name}:delete"),
            Need::Catalog => "registry:catalog:*".to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Scope {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    /// `type:name:action,action` (names contain no ':'; a `host:port/` prefix is not part of a repo name).
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        Some(Scope {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .map(str::trim)
                .filter(|a| ["pull", "push", "delete", "*"].contains(a))
                .map(str::to_string)
                .collect(),
        })
    }
}

/// Who a request is and what it may do.
#[derive(Clone, Debug)]
pub enum Grant {
    /// Basic credentials (or an open registry): everything.
    All,
    Scopes(Vec<Scope>),
}

impl Grant {
    pub fn allows(&self, need: &Need) -> bool {
        match self {
            Grant::All => true,
            Grant::Scopes(scopes) => scopes.iter().any(|s| match need {
                Need::Repo(name, action) => {
                    s.kind == "repository"
                        && &s.name == name
                        && s.actions.iter().any(|a| {
                            a == "*"
                                || a == action.as_str()
                                || (*action == Action::Delete && a == "push")
                        })
                }
                Need::Catalog => s.kind == "registry" && s.name == "catalog",
            }),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    access: Vec<Scope>,
    exp: u64,
}

pub struct Auth {
    users: HashMap<String, String>,
    key: ring::hmac::Key,
    /// Credentials already verified: bcrypt costs tens of milliseconds, `curl -u` sends them every request.
    verified: Mutex<HashSet<(String, [u8; 32])>>,
}

impl Auth {
    pub fn load(path: &Path) -> Result<Auth, RegistryServerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RegistryServerError::io("reading", path, e))?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(RegistryServerError::Htpasswd {
                    path: path.to_path_buf(),
                    reason: format!("line {}: expected user:hash", i + 1),
                });
            };
            if !hash.starts_with("$2") {
                return Err(RegistryServerError::Htpasswd {
                    path: path.to_path_buf(),
                    reason: format!("line {}: only bcrypt entries are supported", i + 1),
                });
            }
            users.insert(user.to_string(), hash.to_string());
        }
        use ring::rand::SecureRandom as _;
        let mut key = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| RegistryServerError::Htpasswd {
                path: path.to_path_buf(),
                reason: "no randomness for the token key".to_string(),
            })?;
        Ok(Auth {
            users,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Checks a user's password (blocking: bcrypt).
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let fp: [u8; 32] = {
            let d = ring::digest::digest(&ring::digest::SHA256, password.as_bytes());
            let mut a = [0u8; 32];
            a.copy_from_slice(d.as_ref());
            a
        };
        let key = (user.to_string(), fp);
        if let Ok(v) = self.verified.lock() {
            if v.contains(&key) {
                return true;
            }
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                v.insert(key);
            }
        }
        ok
    }

    pub fn issue(&self, user: &str, scopes: Vec<Scope>) -> String {
        let claims = Claims {
            sub: user.to_string(),
            access: scopes,
            exp: now_secs() + TOKEN_TTL.as_secs(),
        };
        let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let sig = ring::hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", B64.encode(sig.as_ref()))
    }

    /// The scopes of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Option<Vec<Scope>> {
        let (payload, sig) = token.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        ring::hmac::verify(&self.key, payload.as_bytes(), &sig).ok()?;
        let claims: Claims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        (claims.exp > now_secs()).then_some(claims.access)
    }
}

/// `user:password` from a `Basic` Authorization value.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let b = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 in UTC for a Unix time.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn scopes_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("htpasswd");
        let h = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(&p, format!("u:{h}\n")).unwrap();
        let a = Auth::load(&p).unwrap();
        assert!(a.check_password("u", "pw"));
        assert!(a.check_password("u", "pw"));
        assert!(!a.check_password("u", "no"));
        assert!(!a.check_password("x", "pw"));
        let s = Scope::parse("repository:a/b:pull,push").unwrap();
        let t = a.issue("u", vec![s]);
        let g = Grant::Scopes(a.verify(&t).unwrap());
        assert!(g.allows(&Need::Repo("a/b".into(), Action::Push)));
        assert!(g.allows(&Need::Repo("a/b".into(), Action::Delete)));
        assert!(!g.allows(&Need::Repo("a/c".into(), Action::Pull)));
        assert!(!g.allows(&Need::Catalog));
        let mut bad = t.clone();
        bad.insert(3, 'x');
        assert!(a.verify(&bad).is_none());
    }
}
