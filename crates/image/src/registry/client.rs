//! The registry client: transport (scheme choice, retries), auth, and the distribution API calls.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ureq::http::Response;
use ureq::{Agent, Body, BodyReader};

use super::auth::{self, AuthState, Challenge};
use super::credentials::{self, AuthFile};
use super::{
    error_detail, BlobReader, ClientOptions, FetchedManifest, RegistryError, MANIFEST_MAX_BYTES,
};
use crate::reference::api_host;
use crate::{Descriptor, Digest};

const ATTEMPTS: u32 = 3;
const BACKOFF_START: Duration = Duration::from_millis(250);
/// A larger Retry-After is not worth blocking a pull for; such a failure is reported instead.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(10);
/// Error bodies are read only this far: they are for messages, not data.
const ERROR_BODY_MAX: u64 = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per socket read, so a stalled download fails (and resumes) without capping how long a large blob may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Verifies certificates.
    secure: Agent,
    /// For insecure registries: https without verification (then plain http).
    insecure: Agent,
    opts: ClientOptions,
    /// Scheme that worked, per registry host, for registries allowed to fall back to http.
    schemes: Mutex<HashMap<String, &'static str>>,
    auth: Mutex<AuthState>,
    /// Loaded on first need and kept: one pull should not see credentials change halfway.
    auth_file: Mutex<Option<AuthFile>>,
}

/// Where a registry is reached and with which agent.
pub(crate) struct Endpoint {
    pub agent: Agent,
    /// `https://host[:port]`
    pub base: String,
}

/// One logical registry operation: what the error messages say and which auth it needs.
pub(crate) struct Call<'a> {
    pub registry: &'a str,
    pub what: String,
    /// Token scopes (`repository:a/b:pull`); empty for `/v2/` itself.
    pub scopes: Vec<String>,
    /// Credentials to use instead of the auth file's (login); tokens got with them are not cached.
    pub creds: Option<(String, String)>,
    /// The request can be sent again (its body is not a consumed stream).
    pub replayable: bool,
}

impl<'a> Call<'a> {
    fn new(registry: &'a str, what: String, scopes: Vec<String>) -> Call<'a> {
        Call {
            registry,
            what,
            scopes,
            creds: None,
            replayable: true,
        }
    }

    fn scope_key(&self) -> String {
        self.scopes.join(" ")
    }

    fn transport(&self, e: ureq::Error) -> RegistryError {
        RegistryError::Transport {
            registry: self.registry.to_string(),
            what: self.what.clone(),
            source: Box::new(e),
        }
    }

    fn protocol(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.to_string(),
            what: self.what.clone(),
            reason: reason.into(),
        }
    }

    fn unauthorized(&self, reason: impl Into<String>) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.to_string(),
            reason: reason.into(),
        }
    }
}

fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent even if a holder panicked; keep using them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn backoff(attempt: u32) -> Duration {
    BACKOFF_START * 2u32.saturating_pow(attempt)
}

fn retryable(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

fn header<'r>(resp: &'r Response<Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn retry_after(resp: &Response<Body>) -> Option<Duration> {
    let secs: u64 = header(resp, "retry-after")?.trim().parse().ok()?;
    let d = Duration::from_secs(secs);
    (d <= RETRY_AFTER_MAX).then_some(d)
}

/// Reads what is left of a small response so its connection can go back to the pool.
fn drain(resp: Response<Body>) {
    let mut r = resp.into_body().into_reader().take(ERROR_BODY_MAX);
    let _ = std::io::copy(&mut r, &mut std::io::sink());
}

fn read_limited(resp: Response<Body>, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut r = resp.into_body().into_reader().take(max + 1);
    r.read_to_end(&mut out)?;
    let over = out.len() as u64 > max;
    out.truncate(max as usize);
    Ok((out, over))
}

/// The host part of a `host[:port]` registry name (IPv6 in brackets).
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The scheme and authority of an absolute URL, to tell whether a Location stays on the registry.
fn origin(url: &str) -> Option<&str> {
    let after = url.find("://")? + 3;
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    Some(&url[..end])
}

/// Repository names go into URL paths; refuse anything that could step outside `/v2/<name>/`.
fn check_repo(registry: &str, repo: &str) -> Result<(), RegistryError> {
    let ok = !repo.is_empty()
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Config(format!(
            "invalid repository name {repo:?} for registry {registry}"
        )))
    }
}

/// A manifest reference is a digest or a tag.
fn check_manifest_reference(
    registry: &str,
    repo: &str,
    reference: &str,
) -> Result<Option<Digest>, RegistryError> {
    if reference.contains(':') {
        return Digest::parse(reference)
            .map(Some)
            .map_err(|e| RegistryError::Config(format!("{registry}/{repo}: {e}")));
    }
    let b = reference.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok {
        Ok(None)
    } else {
        Err(RegistryError::Config(format!(
            "{registry}/{repo}: invalid tag {reference:?}"
        )))
    }
}

fn at(repo: &str, reference: &str) -> String {
    if reference.contains(':') {
        format!("{repo}@{reference}")
    } else {
        format!("{repo}:{reference}")
    }
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client, RegistryError> {
        let build = |verify: bool| {
            let tls = ureq::tls::TlsConfig::builder()
                .disable_verification(!verify)
                .build();
            Agent::config_builder()
                .http_status_as_error(false)
                .user_agent(opts.user_agent.as_str())
                .tls_config(tls)
                .timeout_connect(Some(CONNECT_TIMEOUT))
                .timeout_per_read(Some(READ_TIMEOUT))
                .timeout_per_write(Some(READ_TIMEOUT))
                // Blob GETs are redirected to storage hosts that must not see the registry's credentials.
                .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
                .max_redirects(10)
                .max_idle_connections_per_host(8)
                .build()
                .new_agent()
        };
        for r in &opts.insecure_registries {
            if r.is_empty() || r.contains('/') {
                return Err(RegistryError::Config(format!(
                    "insecure registry {r:?}: expected host[:port]"
                )));
            }
        }
        Ok(Client {
            inner: Arc::new(Inner {
                secure: build(true),
                insecure: build(false),
                opts,
                schemes: Mutex::new(HashMap::new()),
                auth: Mutex::new(AuthState::default()),
                auth_file: Mutex::new(None),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    fn is_insecure(&self, registry: &str) -> bool {
        let host = api_host(registry);
        is_loopback(host)
            || self
                .inner
                .opts
                .insecure_registries
                .iter()
                .any(|r| r == registry || r == host)
    }

    /// Resolves how to reach a registry, probing https then http once for registries allowed plain http.
    pub(crate) fn endpoint(&self, call: &Call) -> Result<Endpoint, RegistryError> {
        let host = api_host(call.registry);
        let insecure = self.is_insecure(call.registry);
        let relaxed = insecure || !self.inner.opts.tls_verify;
        if !relaxed {
            return Ok(Endpoint {
                agent: self.inner.secure.clone(),
                base: format!("https://{host}"),
            });
        }
        let agent = self.inner.insecure.clone();
        if let Some(scheme) = lock(&self.inner.schemes).get(host) {
            return Ok(Endpoint {
                agent,
                base: format!("{scheme}://{host}"),
            });
        }
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(backoff(attempt - 1));
            }
            for scheme in ["https", "http"] {
                let url = format!("{scheme}://{host}/v2/");
                // Bounded: an http server fed a TLS hello may wait for a request line that never comes.
                let probe = agent
                    .get(&url)
                    .config()
                    .timeout_global(Some(CONNECT_TIMEOUT))
                    .build()
                    .call();
                match probe {
                    Ok(resp) => {
                        drain(resp);
                        lock(&self.inner.schemes).insert(host.to_string(), scheme);
                        return Ok(Endpoint {
                            agent,
                            base: format!("{scheme}://{host}"),
                        });
                    }
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(match last {
            Some(e) => call.transport(e),
            None => call.protocol("no way to reach the registry"),
        })
    }

    fn file_credentials(&self, call: &Call) -> Result<Option<(String, String)>, RegistryError> {
        let mut slot = lock(&self.inner.auth_file);
        if slot.is_none() {
            let loaded = match credentials::load(self.inner.opts.auth_file.as_deref()) {
                Ok(f) => f,
                // No home and no explicit file: anonymous access only.
                Err(credentials::CredentialsError::NoPath) => return Ok(None),
                Err(source) => {
                    return Err(RegistryError::Credentials {
                        registry: call.registry.to_string(),
                        what: call.what.clone(),
                        source,
                    })
                }
            };
            *slot = Some(loaded);
        }
        Ok(slot.as_ref().and_then(|f| f.get(call.registry)))
    }

    fn credentials(&self, call: &Call) -> Result<Option<(String, String)>, RegistryError> {
        match &call.creds {
            Some(c) => Ok(Some(c.clone())),
            None => self.file_credentials(call),
        }
    }

    /// The Authorization header to send up front, from what earlier challenges taught.
    fn authorization(&self, call: &Call) -> Result<Option<String>, RegistryError> {
        let challenge = lock(&self.inner.auth).challenge(call.registry).cloned();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self
                .credentials(call)?
                .map(|(u, p)| auth::basic_header(&u, &p))),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if call.creds.is_none() {
                    if let Some(t) = lock(&self.inner.auth).token(call.registry, &call.scope_key())
                    {
                        return Ok(Some(format!("Bearer {t}")));
                    }
                }
                let token = self.fetch_token(call, &realm, service.as_deref(), &call.scopes)?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn fetch_token(
        &self,
        call: &Call,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let creds = self.credentials(call)?;
        let what = format!("{}: token from {realm}", call.what);
        let tcall = Call::new(call.registry, what, Vec::new());
        let realm_host = origin(realm)
            .and_then(|o| o.split("://").nth(1))
            .unwrap_or("");
        let agent = if !self.inner.opts.tls_verify
            || (realm_host == api_host(call.registry) && self.is_insecure(call.registry))
        {
            &self.inner.insecure
        } else {
            &self.inner.secure
        };
        let mut attempt = 0;
        let resp = loop {
            let mut req = agent.get(realm);
            if let Some(s) = service {
                req = req.query("service", s);
            }
            for s in scopes {
                req = req.query("scope", s);
            }
            if let Some((u, p)) = &creds {
                req = req.header("Authorization", auth::basic_header(u, p));
            }
            match req.call() {
                Ok(r) => {
                    let s = r.status().as_u16();
                    if (s >= 500 || s == 429) && attempt + 1 < ATTEMPTS {
                        let wait = retry_after(&r).unwrap_or(backoff(attempt));
                        drain(r);
                        std::thread::sleep(wait);
                        attempt += 1;
                        continue;
                    }
                    break r;
                }
                Err(e) if retryable(&e) && attempt + 1 < ATTEMPTS => {
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                Err(e) => return Err(tcall.transport(e)),
            }
        };
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            drain(resp);
            return Err(call.unauthorized(if creds.is_some() {
                "wrong username or password"
            } else {
                "authentication required"
            }));
        }
        if status != 200 {
            return Err(self.status_error(&tcall, resp));
        }
        let (body, over) = read_limited(resp, 1 << 20)
            .map_err(|e| tcall.protocol(format!("reading the token: {e}")))?;
        if over {
            return Err(tcall.protocol("token response larger than 1 MiB"));
        }
        let (token, ttl) = serde_json::from_slice::<auth::TokenResponse>(&body)
            .ok()
            .and_then(auth::TokenResponse::into_token)
            .ok_or_else(|| {
                tcall.protocol("the token response has neither \"token\" nor \"access_token\"")
            })?;
        if call.creds.is_none() {
            lock(&self.inner.auth).set_token(call.registry, &scopes.join(" "), token.clone(), ttl);
        }
        Ok(token)
    }

    /// After a 401: learns the challenge and returns the Authorization for one more try, or says why not.
    fn answer_challenge(
        &self,
        call: &Call,
        resp: Response<Body>,
        sent: Option<&str>,
    ) -> Result<String, RegistryError> {
        let values: Vec<String> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        drain(resp);
        let Some(challenge) = auth::parse_challenges(values.iter().map(String::as_str)) else {
            return Err(call.unauthorized(if values.is_empty() {
                "authentication required (no WWW-Authenticate challenge)".to_string()
            } else {
                format!(
                    "unsupported authentication challenge {:?}",
                    values.join(", ")
                )
            }));
        };
        let creds = self.credentials(call)?;
        match &challenge {
            Challenge::Basic => {
                let Some((user, password)) = creds else {
                    return Err(call.unauthorized("authentication required"));
                };
                if sent.is_some_and(|s| s.starts_with("Basic ")) {
                    return Err(call.unauthorized("wrong username or password"));
                }
                lock(&self.inner.auth).set_challenge(call.registry, challenge);
                Ok(auth::basic_header(&user, &password))
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                if sent.is_some_and(|s| s.starts_with("Bearer ")) {
                    lock(&self.inner.auth).forget_token(call.registry, &call.scope_key());
                }
                let mut scopes = call.scopes.clone();
                if scopes.is_empty() {
                    scopes.extend(scope.clone());
                }
                let fresh = Call {
                    scopes,
                    creds: call.creds.clone(),
                    ..Call::new(call.registry, call.what.clone(), Vec::new())
                };
                let token = self.fetch_token(&fresh, realm, service.as_deref(), &fresh.scopes)?;
                lock(&self.inner.auth).set_challenge(call.registry, challenge.clone());
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// Sends a request (built by `send` from the agent, base URL and Authorization), handling auth
    /// challenges and retrying transport failures, 5xx and 429. The caller judges the final status.
    pub(crate) fn exchange(
        &self,
        call: &Call,
        mut send: impl FnMut(&Agent, &str, Option<&str>) -> Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>, RegistryError> {
        let ep = self.endpoint(call)?;
        let mut attempt = 0;
        let mut challenged = false;
        // Set after a challenge: what to send on the one retry it allows.
        let mut answered: Option<String> = None;
        loop {
            let authz = match answered.take() {
                Some(a) => Some(a),
                None => self.authorization(call)?,
            };
            let resp = match send(&ep.agent, &ep.base, authz.as_deref()) {
                Ok(r) => r,
                Err(e) if call.replayable && retryable(&e) && attempt + 1 < ATTEMPTS => {
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(call.transport(e)),
            };
            let status = resp.status().as_u16();
            if status == 401 {
                if challenged || !call.replayable {
                    drain(resp);
                    let scope = call.scope_key();
                    let reason = match authz.as_deref() {
                        Some(a) if a.starts_with("Basic ") => {
                            "wrong username or password".to_string()
                        }
                        Some(_) if self.credentials(call)?.is_some() => {
                            format!("wrong username or password, or no access to {scope:?}")
                        }
                        Some(_) => format!(
                            "authentication required (anonymous token for {scope:?} refused)"
                        ),
                        None => "authentication required".to_string(),
                    };
                    return Err(call.unauthorized(reason));
                }
                answered = Some(self.answer_challenge(call, resp, authz.as_deref())?);
                challenged = true;
                continue;
            }
            if (status >= 500 || status == 429) && call.replayable && attempt + 1 < ATTEMPTS {
                let wait = retry_after(&resp).unwrap_or(backoff(attempt));
                drain(resp);
                std::thread::sleep(wait);
                attempt += 1;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Turns an unexpected response into an error carrying the registry's own explanation.
    fn status_error(&self, call: &Call, resp: Response<Body>) -> RegistryError {
        let status = resp.status().as_u16();
        let detail = read_limited(resp, ERROR_BODY_MAX)
            .map(|(b, _)| error_detail(&b))
            .unwrap_or_default();
        match status {
            401 => call.unauthorized(format!("authentication required{detail}")),
            403 => RegistryError::Denied {
                registry: call.registry.to_string(),
                repository: call
                    .scopes
                    .first()
                    .and_then(|s| s.split(':').nth(1))
                    .unwrap_or("")
                    .to_string(),
                reason: format!("{}: HTTP 403{detail}", call.what),
            },
            _ => RegistryError::Status {
                registry: call.registry.to_string(),
                what: call.what.clone(),
                status,
                detail,
            },
        }
    }

    pub fn fetch_manifest(
        &self,
        registry: &str,
        repo: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        check_repo(registry, repo)?;
        let expected = check_manifest_reference(registry, repo, reference)?;
        let call = Call::new(
            registry,
            format!("fetch manifest {}", at(repo, reference)),
            vec![pull_scope(repo)],
        );
        let accept = crate::media::MANIFEST_ACCEPT.join(", ");
        let resp = self.exchange(&call, |agent, base, authz| {
            let mut req = agent
                .get(format!("{base}/v2/{repo}/manifests/{reference}"))
                .header("Accept", &accept);
            if let Some(a) = authz {
                req = req.header("Authorization", a);
            }
            req.call()
        })?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                let detail = read_limited(resp, ERROR_BODY_MAX)
                    .map(|(b, _)| error_detail(&b))
                    .unwrap_or_default();
                return Err(RegistryError::ManifestUnknown {
                    registry: registry.to_string(),
                    repository: repo.to_string(),
                    reference: reference.to_string(),
                    detail,
                });
            }
            _ => return Err(self.status_error(&call, resp)),
        }
        if let Some(len) =
            header(&resp, "content-length").and_then(|l| l.trim().parse::<u64>().ok())
        {
            if len > MANIFEST_MAX_BYTES {
                return Err(call.protocol(format!(
                    "manifest of {len} bytes refused (limit {MANIFEST_MAX_BYTES})"
                )));
            }
        }
        let content_type = header(&resp, "content-type")
            .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let (bytes, over) = read_limited(resp, MANIFEST_MAX_BYTES)
            .map_err(|e| call.protocol(format!("reading the manifest: {e}")))?;
        if over {
            return Err(call.protocol(format!(
                "manifest larger than {MANIFEST_MAX_BYTES} bytes refused"
            )));
        }
        let digest = checked_digest(registry, &call.what, expected.as_ref(), &bytes)?;
        // Some registries serve everything as application/json; the document names its own type then.
        let generic = content_type.is_empty()
            || content_type == "application/json"
            || content_type == "text/plain"
            || content_type == "application/octet-stream";
        let media_type = if generic {
            #[derive(serde::Deserialize)]
            struct Typed {
                #[serde(rename = "mediaType", default)]
                media_type: Option<String>,
            }
            serde_json::from_slice::<Typed>(&bytes)
                .ok()
                .and_then(|t| t.media_type)
                .ok_or_else(|| call.protocol(format!(
                    "the manifest's media type is unknown (Content-Type {content_type:?}, no mediaType field)"
                )))?
        } else {
            content_type
        };
        Ok(FetchedManifest {
            media_type,
            digest,
            bytes,
        })
    }

    pub fn fetch_blob(
        &self,
        registry: &str,
        repo: &str,
        desc: &Descriptor,
    ) -> Result<BlobReader, RegistryError> {
        check_repo(registry, repo)?;
        let (body, skip) = self.open_blob(registry, repo, desc, 0)?;
        Ok(BlobReader::new(
            self.clone(),
            registry.to_string(),
            repo.to_string(),
            desc.clone(),
            body,
            skip,
        ))
    }

    /// GETs a blob from `offset` on. Returns the body and how many leading bytes of it to discard (the whole
    /// offset when the registry ignored the Range header).
    pub(crate) fn open_blob(
        &self,
        registry: &str,
        repo: &str,
        desc: &Descriptor,
        offset: u64,
    ) -> Result<(BodyReader<'static>, u64), RegistryError> {
        let digest = &desc.digest;
        let call = Call::new(
            registry,
            format!("fetch blob {repo}@{digest}"),
            vec![pull_scope(repo)],
        );
        let resp = self.exchange(&call, |agent, base, authz| {
            let mut req = agent.get(format!("{base}/v2/{repo}/blobs/{digest}"));
            if offset > 0 {
                req = req.header("Range", format!("bytes={offset}-"));
            }
            if let Some(a) = authz {
                req = req.header("Authorization", a);
            }
            req.call()
        })?;
        let status = resp.status().as_u16();
        let length = header(&resp, "content-length").and_then(|l| l.trim().parse::<u64>().ok());
        match status {
            200 => {
                if let Some(len) = length {
                    if len != desc.size {
                        drain(resp);
                        return Err(call.protocol(format!(
                            "the registry serves {len} bytes, the descriptor says {}",
                            desc.size
                        )));
                    }
                }
                Ok((resp.into_body().into_reader(), offset))
            }
            206 if offset > 0 => {
                // `bytes START-END/TOTAL`: the part must start where the previous body stopped.
                let range = header(&resp, "content-range").unwrap_or("").to_string();
                let start = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(offset) {
                    drain(resp);
                    return Err(call.protocol(format!(
                        "asked for bytes {offset}- and got Content-Range {range:?}"
                    )));
                }
                Ok((resp.into_body().into_reader(), 0))
            }
            404 => {
                let detail = read_limited(resp, ERROR_BODY_MAX)
                    .map(|(b, _)| error_detail(&b))
                    .unwrap_or_default();
                Err(RegistryError::BlobUnknown {
                    registry: registry.to_string(),
                    repository: repo.to_string(),
                    digest: digest.clone(),
                    detail,
                })
            }
            _ => Err(self.status_error(&call, resp)),
        }
    }

    /// `GET /v2/` with these credentials, through the token flow when the registry asks for it.
    pub fn check_login(
        &self,
        registry: &str,
        user: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        let call = Call {
            creds: Some((user.to_string(), password.to_string())),
            ..Call::new(registry, "log in".to_string(), Vec::new())
        };
        let resp = self.exchange(&call, |agent, base, authz| {
            let mut req = agent.get(format!("{base}/v2/"));
            if let Some(a) = authz {
                req = req.header("Authorization", a);
            }
            req.call()
        })?;
        if resp.status().as_u16() == 200 {
            drain(resp);
            Ok(())
        } else {
            Err(self.status_error(&call, resp))
        }
    }

    pub fn blob_exists(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        check_repo(registry, repo)?;
        let call = Call::new(
            registry,
            format!("check blob {repo}@{digest}"),
            vec![pull_scope(repo)],
        );
        let resp = self.exchange(&call, |agent, base, authz| {
            let mut req = agent.head(format!("{base}/v2/{repo}/blobs/{digest}"));
            if let Some(a) = authz {
                req = req.header("Authorization", a);
            }
            req.call()
        })?;
        match resp.status().as_u16() {
            200 => {
                drain(resp);
                Ok(true)
            }
            404 => {
                drain(resp);
                Ok(false)
            }
            _ => Err(self.status_error(&call, resp)),
        }
    }

    /// Starts an upload session (or a cross-repository mount); returns the response for the caller to judge.
    fn start_upload(
        &self,
        call: &Call,
        repo: &str,
        query: &str,
    ) -> Result<Response<Body>, RegistryError> {
        self.exchange(call, |agent, base, authz| {
            let mut req = agent
                .post(format!("{base}/v2/{repo}/blobs/uploads/{query}"))
                .header("Content-Length", "0");
            if let Some(a) = authz {
                req = req.header("Authorization", a);
            }
            req.send_empty()
        })
    }

    /// The upload session's Location, as given (absolute, or relative to the registry; see [`Client::absolute`]).
    fn upload_url(&self, call: &Call, resp: &Response<Body>) -> Result<String, RegistryError> {
        let loc = header(resp, "location")
            .filter(|l| !l.is_empty())
            .ok_or_else(|| call.protocol("upload session without a Location header"))?;
        Ok(loc.to_string())
    }

    /// Locations may be absolute (another host, e.g. a storage front) or relative to the registry.
    fn absolute(base: &str, loc: &str) -> String {
        if loc.contains("://") {
            loc.to_string()
        } else if loc.starts_with('/') {
            format!("{base}{loc}")
        } else {
            format!("{base}/{loc}")
        }
    }

    pub fn push_blob(
        &self,
        registry: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        body: impl Read + Send,
    ) -> Result<(), RegistryError> {
        check_repo(registry, repo)?;
        let call = Call::new(
            registry,
            format!("push blob {repo}@{digest}"),
            vec![push_scope(repo)],
        );
        let resp = self.start_upload(&call, repo, "")?;
        if resp.status().as_u16() != 202 {
            return Err(self.status_error(&call, resp));
        }
        let loc = self.upload_url(&call, &resp)?;
        drain(resp);
        let put_call = Call {
            replayable: false,
            ..Call::new(registry, call.what.clone(), call.scopes.clone())
        };
        let mut body = Some(body.take(size));
        let resp = self.exchange(&put_call, |agent, base, authz| {
            let url = Self::absolute(base, &loc);
            let sep = if url.contains('?') { '&' } else { '?' };
            let mut req = agent
                .put(format!("{url}{sep}digest={digest}"))
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", size.to_string());
            // The upload may live on another host (a storage front); the registry's token is not for it.
            if let Some(a) = authz.filter(|_| origin(&url) == origin(base)) {
                req = req.header("Authorization", a);
            }
            let Some(mut b) = body.take() else {
                return Err(ureq::Error::Other(
                    "the blob stream was already sent".into(),
                ));
            };
            req.send(ureq::SendBody::from_reader(&mut b))
        })?;
        match resp.status().as_u16() {
            201 => {
                drain(resp);
                Ok(())
            }
            _ => Err(self.status_error(&put_call, resp)),
        }
    }

    pub fn mount_blob(
        &self,
        registry: &str,
        repo: &str,
        from_repo: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        check_repo(registry, repo)?;
        check_repo(registry, from_repo)?;
        let call = Call::new(
            registry,
            format!("mount blob {digest} from {from_repo} into {repo}"),
            vec![push_scope(repo), pull_scope(from_repo)],
        );
        let resp = self.start_upload(&call, repo, &format!("?mount={digest}&from={from_repo}"))?;
        match resp.status().as_u16() {
            201 => {
                drain(resp);
                Ok(true)
            }
            202 => {
                // The registry opened an ordinary upload instead; close it rather than leave it to expire.
                let loc = self.upload_url(&call, &resp).ok();
                drain(resp);
                if let Some(loc) = loc {
                    let _ = self
                        .exchange(&call, |agent, base, authz| {
                            let url = Self::absolute(base, &loc);
                            let mut req = agent.delete(&url);
                            if let Some(a) = authz.filter(|_| origin(&url) == origin(base)) {
                                req = req.header("Authorization", a);
                            }
                            req.call()
                        })
                        .map(drain);
                }
                Ok(false)
            }
            _ => Err(self.status_error(&call, resp)),
        }
    }

    pub fn put_manifest(
        &self,
        registry: &str,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        check_repo(registry, repo)?;
        let expected = check_manifest_reference(registry, repo, reference)?;
        let call = Call::new(
            registry,
            format!("push manifest {}", at(repo, reference)),
            vec![push_scope(repo)],
        );
        if bytes.len() as u64 > MANIFEST_MAX_BYTES {
            return Err(call.protocol(format!(
                "manifest of {} bytes is over the {MANIFEST_MAX_BYTES} byte limit",
                bytes.len()
            )));
        }
        let digest = checked_digest(registry, &call.what, expected.as_ref(), bytes)?;
        let resp = self.exchange(&call, |agent, base, authz| {
            let mut req = agent
                .put(format!("{base}/v2/{repo}/manifests/{reference}"))
                .header("Content-Type", media_type);
            if let Some(a) = authz {
                req = req.header("Authorization", a);
            }
            req.send(bytes)
        })?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error(&call, resp));
        }
        let served =
            header(&resp, "docker-content-digest").and_then(|d| Digest::parse(d.trim()).ok());
        drain(resp);
        match served {
            Some(d) if d.algorithm() == digest.algorithm() && d != digest => {
                Err(RegistryError::DigestMismatch {
                    registry: registry.to_string(),
                    what: format!("{} (registry stored a different document)", call.what),
                    expected: digest,
                    got: d,
                })
            }
            _ => Ok(digest),
        }
    }
}

/// The digest of a manifest's bytes: checked against the one asked for (in its algorithm), sha256 otherwise.
fn checked_digest(
    registry: &str,
    what: &str,
    expected: Option<&Digest>,
    bytes: &[u8],
) -> Result<Digest, RegistryError> {
    let Some(want) = expected else {
        return Ok(Digest::sha256_of(bytes));
    };
    let mut h = want.hasher();
    h.update(bytes);
    let got = h.finish();
    if &got != want {
        return Err(RegistryError::DigestMismatch {
            registry: registry.to_string(),
            what: what.to_string(),
            expected: want.clone(),
            got,
        });
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("docker.io"));
        assert_eq!(origin("http://a:1/v2/x?y"), Some("http://a:1"));
        assert_eq!(origin("https://a"), Some("https://a"));
        assert_eq!(origin("/v2/x"), None);
        assert_eq!(Client::absolute("http://h:1", "/v2/u"), "http://h:1/v2/u");
        assert_eq!(Client::absolute("http://h:1", "https://s/u"), "https://s/u");
    }

    #[test]
    fn insecure_list() {
        let c = Client::new(ClientOptions {
            insecure_registries: vec!["reg.lan:5000".into()],
            ..ClientOptions::default()
        })
        .unwrap();
        assert!(c.is_insecure("reg.lan:5000"));
        assert!(c.is_insecure("localhost"));
        assert!(!c.is_insecure("reg.lan"));
        assert!(!c.is_insecure("docker.io"));
        assert!(Client::new(ClientOptions {
            insecure_registries: vec!["http://x/".into()],
            ..ClientOptions::default()
        })
        .is_err());
    }

    #[test]
    fn refuses_odd_names() {
        assert!(check_repo("r", "a/../b").is_err());
        assert!(check_repo("r", "a/b?x").is_err());
        assert!(check_repo("r", "a/b").is_ok());
        assert!(check_manifest_reference("r", "a", "v1.0").is_ok());
        assert!(check_manifest_reference("r", "a", "../x").is_err());
        assert!(check_manifest_reference("r", "a", "sha256:abc").is_err());
    }

    fn _client_is_send_sync() {
        fn is<T: Send + Sync + Clone>() {}
        is::<Client>();
    }
}
