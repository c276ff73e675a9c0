//! Image references (`[registry/]repository[:tag][@digest]`), normalised the way docker's CLI does it
//! (github.com/distribution/reference `ParseNormalizedNamed`): `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;
use std::str::FromStr;

use crate::Digest;

pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Docker Hub's name as older clients spell it; normalised to [`DEFAULT_REGISTRY`].
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// Where Docker Hub's distribution API actually lives.
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
/// distribution/reference's NameTotalLengthMax, checked on the name as written.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`, `[::1]:5000`
    pub registry: String,
    /// `library/busybox`, `user/app`, `a/b/c`
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: String| ReferenceError {
            input: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(err("empty reference".into()));
        }
        // A bare image id would otherwise parse as docker.io/library/<hex>, which is never what was meant.
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(err(
                "a 64-character hexadecimal string is an image id, not a repository name".into(),
            ));
        }

        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|e| err(e.to_string()))?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to the registry's port.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(&name_tag[at + 1..]))
            }
            None => (name_tag, None),
        };
        if name.is_empty() {
            return Err(err("missing repository name".into()));
        }
        if name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(err(format!(
                "repository name is {} characters long, at most {NAME_TOTAL_LENGTH_MAX} are allowed",
                name.len()
            )));
        }
        if let Some(tag) = tag {
            check_tag(tag).map_err(err)?;
        }

        let (registry, remainder) = split_registry(name);
        check_registry(registry).map_err(err)?;
        if remainder.to_lowercase() != remainder {
            return Err(err(format!(
                "repository name {remainder:?} must be lowercase"
            )));
        }
        for component in remainder.split('/') {
            check_path_component(component).map_err(err)?;
        }
        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !remainder.contains('/') {
            format!("{OFFICIAL_PREFIX}{remainder}")
        } else {
            remainder.to_string()
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The short form `docker images` shows, without tag or digest.
    pub fn familiar(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The host the distribution API is served from.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The digest if there is one, else the tag: what to ask the registry for.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

/// The host serving a registry's distribution API (Docker Hub's differs from its name).
pub fn api_host(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY || registry == LEGACY_DEFAULT_REGISTRY {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

/// distribution's splitDockerDomain: the first component is a registry only if it looks like a host.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

pub fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= TAG_LENGTH_MAX
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else if tag.is_empty() {
        Err("empty tag".into())
    } else {
        Err(format!(
            "invalid tag {tag:?}: a tag is up to {TAG_LENGTH_MAX} of [A-Za-z0-9_.-], not starting with '.' or '-'"
        ))
    }
}

/// A repository path as the distribution spec's grammar allows it (components joined by '/', at most 255
/// bytes); the registry server checks names with it too.
pub fn check_repository(name: &str) -> Result<(), String> {
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "repository name longer than {NAME_TOTAL_LENGTH_MAX} characters"
        ));
    }
    name.split('/').try_for_each(check_path_component)
}

/// `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid repository path component {c:?}: {why}"));
    if c.is_empty() {
        return bad("empty component (doubled, leading or trailing '/')");
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return bad("must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let valid = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !valid {
            return bad(&format!(
                "separator {sep:?} not allowed (use '.', '_', '__' or dashes)"
            ));
        }
    }
    Ok(())
}

/// `host[:port]` where host is a domain name, an IPv4 address or a bracketed IPv6 address.
fn check_registry(r: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid registry {r:?}: {why}"));
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return bad("unterminated '[' in IPv6 address");
        };
        if v6.is_empty()
            || !v6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return bad("invalid IPv6 address");
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad("unexpected text after IPv6 address"),
            },
        }
    } else {
        match r.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(r), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad("port must be a number");
        }
    }
    if let Some(host) = host {
        if host.is_empty() {
            return bad("empty host");
        }
        for label in host.split('.') {
            let b = label.as_bytes();
            let ok = !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-');
            if !ok {
                return bad(&format!("invalid host label {label:?}"));
            }
        }
    }
    Ok(())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn full(s: &str) -> String {
        match Reference::parse(s) {
            Ok(r) => r.to_string(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn normalises_like_docker() {
        let cases: &[(&str, &str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest", "busybox"),
            ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox"),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
                "busybox",
            ),
            ("index.docker.io/x", "docker.io/library/x:latest", "x"),
            ("index.docker.io/user/x:1", "docker.io/user/x:1", "user/x"),
            ("user/app", "docker.io/user/app:latest", "user/app"),
            (
                "user/app/sub",
                "docker.io/user/app/sub:latest",
                "user/app/sub",
            ),
            ("host:5000/a/b:tag", "host:5000/a/b:tag", "host:5000/a/b"),
            (
                "127.0.0.1:5000/a/b",
                "127.0.0.1:5000/a/b:latest",
                "127.0.0.1:5000/a/b",
            ),
            ("localhost/x", "localhost/x:latest", "localhost/x"),
            (
                "localhost:5000/x:v1",
                "localhost:5000/x:v1",
                "localhost:5000/x",
            ),
            (
                "ghcr.io/o/r:v1.2.3-rc_1",
                "ghcr.io/o/r:v1.2.3-rc_1",
                "ghcr.io/o/r",
            ),
            ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x"),
            ("Foo/bar", "Foo/bar:latest", "Foo/bar"),
            (
                "a.b/c-d__e--f/g_h",
                "a.b/c-d__e--f/g_h:latest",
                "a.b/c-d__e--f/g_h",
            ),
            (
                "my-app.x__y",
                "docker.io/library/my-app.x__y:latest",
                "my-app.x__y",
            ),
            ("host:5000", "docker.io/library/host:5000", "host"),
        ];
        for (input, want_full, want_familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want_full, "{input}");
            assert_eq!(r.familiar(), *want_familiar, "{input}");
            // The full form parses back to the same reference.
            assert_eq!(Reference::parse(&r.to_string()).as_ref(), Ok(&r), "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("x@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().map(|d| d.as_str()), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/x@{D}"));
        assert_eq!(r.manifest_reference(), D);

        let r = Reference::parse(&format!("x:tag@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(r.to_string(), format!("docker.io/library/x:tag@{D}"));
        assert_eq!(r.manifest_reference(), D);

        assert_eq!(
            full(&format!("host:5000/a@{D}")),
            format!("host:5000/a@{D}")
        );
        assert_eq!(Reference::parse("x:v2").unwrap().manifest_reference(), "v2");
    }

    #[test]
    fn parts_and_hosts() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("quay.io/a/b").unwrap();
        assert_eq!(r.api_host(), "quay.io");
        assert_eq!(r.registry, "quay.io");
        assert_eq!(r.repository, "a/b");
    }

    #[test]
    fn rejects() {
        let long = format!("a/{}", "b".repeat(254));
        let long_tag = format!("x:{}", "t".repeat(129));
        let id = D.trim_start_matches("sha256:");
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("user/App", "lowercase"),
            ("host:5000/A/b", "lowercase"),
            ("a//b", "empty component"),
            ("/a", "empty component"),
            ("a/", "empty component"),
            ("-a", "start and end"),
            ("a-", "start and end"),
            ("a...b", "separator"),
            ("a___b", "separator"),
            ("a._b", "separator"),
            ("a b", "separator"),
            ("x:", "empty tag"),
            ("x:-tag", "invalid tag"),
            ("x:.tag", "invalid tag"),
            ("x:t@g", "invalid digest"),
            ("x:ta/g", "port must be a number"),
            (&long_tag, "invalid tag"),
            ("x@sha256:abc", "invalid digest"),
            ("x@md5:abcd", "invalid digest"),
            (":tag", "missing repository"),
            ("@sha256:x", "invalid digest"),
            ("host:abc/x", "port must be a number"),
            ("host:/x", "port must be a number"),
            ("-host.io/x", "invalid host label"),
            ("ho_st.io/x", "invalid host label"),
            ("[::1/x", "unterminated"),
            (&long, "at most 255"),
            (id, "image id"),
        ];
        for (input, want) in bad {
            match Reference::parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{input:?}: {msg}");
                    assert!(msg.contains(&format!("{input:?}")), "{input:?}: {msg}");
                }
            }
        }
    }

    #[test]
    fn length_limit_is_inclusive() {
        let name = format!("a/{}", "b".repeat(253));
        assert_eq!(name.len(), 255);
        assert!(Reference::parse(&name).is_ok());
        let tag = format!("x:{}", "t".repeat(128));
        assert!(Reference::parse(&tag).is_ok());
    }
}
