//! Docker's registry auth: `WWW-Authenticate` challenges, basic credentials and bearer tokens from a token
//! realm, cached per registry and scope so parallel layer downloads share one token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `WWW-Authenticate` values; a registry may offer several schemes, Bearer is preferred.
pub(crate) fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    let mut basic = false;
    for v in values {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let params = parse_params(rest);
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            if let Some(realm) = get("realm").filter(|r| !r.is_empty()) {
                return Some(Challenge::Bearer {
                    realm,
                    service: get("service"),
                    scope: get("scope"),
                });
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

/// `k="v", k2=token` with backslash escapes in quoted strings.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.push((name, value));
    }
    out
}

pub(crate) fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The token endpoint's answer (docker uses `token`, OAuth2-style realms `access_token`).
#[derive(serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub(crate) fn into_token(self) -> Option<(String, Duration)> {
        let t = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        // The token spec's default lifetime is 60 s when the realm does not say.
        Some((t, Duration::from_secs(self.expires_in.unwrap_or(60).max(1))))
    }
}

struct Token {
    value: String,
    expires: Instant,
}

/// What the client has learnt about each registry's auth, shared by all clones.
#[derive(Default)]
pub(crate) struct AuthState {
    challenges: HashMap<String, Challenge>,
    tokens: HashMap<(String, String), Token>,
}

/// Tokens are dropped a little before they expire, so a request never starts with one about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

impl AuthState {
    pub(crate) fn challenge(&self, registry: &str) -> Option<&Challenge> {
        self.challenges.get(registry)
    }

    pub(crate) fn set_challenge(&mut self, registry: &str, c: Challenge) {
        self.challenges.insert(registry.to_string(), c);
    }

    pub(crate) fn token(&self, registry: &str, scope: &str) -> Option<String> {
        let now = Instant::now();
        let valid = |key: (String, String)| {
            self.tokens
                .get(&key)
                .filter(|t| t.expires > now)
                .map(|t| t.value.clone())
        };
        valid((registry.to_string(), scope.to_string())).or_else(|| {
            // A push token covers pulls of the same repository.
            let push = scope.strip_suffix(":pull")?;
            valid((registry.to_string(), format!("{push}:pull,push")))
        })
    }

    pub(crate) fn set_token(&mut self, registry: &str, scope: &str, value: String, ttl: Duration) {
        let expires = Instant::now()
            + ttl
                .saturating_sub(EXPIRY_MARGIN)
                .max(Duration::from_secs(1));
        self.tokens.retain(|_, t| t.expires > Instant::now());
        self.tokens.insert(
            (registry.to_string(), scope.to_string()),
            Token { value, expires },
        );
    }

    pub(crate) fn forget_token(&mut self, registry: &str, scope: &str) {
        self.tokens
            .remove(&(registry.to_string(), scope.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenges([
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        ]);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            parse_challenges([r#"Basic realm="berth-test""#]),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenges([
                r#"basic realm="x""#,
                r#"bearer realm=http://t/tok, service = "a\"b""#
            ]),
            Some(Challenge::Bearer {
                realm: "http://t/tok".into(),
                service: Some("a\"b".into()),
                scope: None
            })
        );
        assert_eq!(parse_challenges([r#"Bearer service="x""#]), None);
        assert_eq!(parse_challenges(["Negotiate"]), None);
    }

    #[test]
    fn token_cache() {
        let mut s = AuthState::default();
        s.set_token(
            "r",
            "repository:a:pull,push",
            "T".into(),
            Duration::from_secs(300),
        );
        assert_eq!(s.token("r", "repository:a:pull").as_deref(), Some("T"));
        assert_eq!(s.token("r", "repository:b:pull"), None);
        assert_eq!(s.token("other", "repository:a:pull"), None);
        s.set_token("r", "repository:b:pull", "U".into(), Duration::from_secs(5));
        // Shorter than the margin: still usable for a moment, not zero.
        assert_eq!(s.token("r", "repository:b:pull").as_deref(), Some("U"));
        s.forget_token("r", "repository:b:pull");
        assert_eq!(s.token("r", "repository:b:pull"), None);
    }
}
