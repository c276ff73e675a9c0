//! The hand-written router: `/v2/<name>/<kind>/<ref>` matched from the right (names contain slashes and may
//! even contain a component called `blobs`), access control, read-only mode and the request log.

use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::auth::{self, Action, Grant, Need};
use crate::body::Body;
use crate::errors::{ApiError, Code};
use crate::server::State;

pub type Reply = Result<Response<Body>, ApiError>;

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Token,
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
    UploadStart { name: String },
    Upload { name: String, uuid: String },
    Tags { name: String },
    Referrers { name: String, digest: String },
    NotFound,
}

pub fn parse_route(path: &str) -> Route {
    if path == "/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return Route::NotFound;
    };
    if rest.is_empty() || rest == "/" {
        return Route::Base;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Route::NotFound;
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags { name: name.into() };
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Route::UploadStart { name: name.into() };
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Route::NotFound;
    };
    let Some((name, kind)) = head.rsplit_once('/') else {
        return Route::NotFound;
    };
    let (name, last) = (name.to_string(), last.to_string());
    match kind {
        "manifests" => Route::Manifest {
            name,
            reference: last,
        },
        "blobs" => Route::Blob { name, digest: last },
        "referrers" => Route::Referrers { name, digest: last },
        "uploads" => match name.strip_suffix("/blobs") {
            Some(n) => Route::Upload {
                name: n.to_string(),
                uuid: last,
            },
            None => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// Query parameters, percent-decoded, in order (keys may repeat: `scope`).
pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response with the headers every answer carries.
pub fn reply(status: StatusCode) -> hyper::http::response::Builder {
    Response::builder()
        .status(status)
        .header("Docker-Distribution-API-Version", "registry/2.0")
}

pub fn finish(b: hyper::http::response::Builder, body: Body) -> Reply {
    b.body(body).map_err(ApiError::internal)
}

pub fn json(status: StatusCode, v: &serde_json::Value) -> hyper::http::response::Builder {
    let len = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0);
    reply(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, len)
}

pub fn json_body(v: &serde_json::Value) -> Body {
    Body::full(serde_json::to_vec(v).unwrap_or_default())
}

fn error_response(e: ApiError, head: bool) -> Response<Body> {
    let body = e.body();
    let mut b = reply(e.status)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, body.len());
    for (k, v) in &e.headers {
        b = b.header(*k, v.as_str());
    }
    let body = if head { Body::Empty } else { Body::full(body) };
    b.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Body::Empty);
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// Runs a blocking closure on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker: {e}")))?
}

pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    scheme: &'static str,
) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let head = method == Method::HEAD;
    let resp = match dispatch(&state, req, scheme).await {
        Ok(r) => r,
        Err(e) => {
            if e.code == Code::Internal {
                eprintln!("berth-registry: {method} {path}: {}", e.message);
            }
            error_response(e, head)
        }
    };
    if state.config.log_requests {
        let bytes = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("0");
        eprintln!(
            "{method} {path} {} {bytes} {}ms",
            resp.status().as_u16(),
            start.elapsed().as_millis()
        );
    }
    resp
}

fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn unsupported(m: &Method) -> ApiError {
    ApiError::new(Code::Unsupported, format!("method {m} not supported here"))
}

async fn dispatch(state: &Arc<State>, req: Request<Incoming>, scheme: &'static str) -> Reply {
    let route = parse_route(req.uri().path());
    let method = req.method().clone();
    let query = query_pairs(req.uri().query());
    if route == Route::Token {
        if method != Method::GET {
            return Err(unsupported(&method));
        }
        return token(state, &req, &query).await;
    }
    if route == Route::NotFound {
        return Err(
            ApiError::new(Code::NameUnknown, "no such endpoint").status(StatusCode::NOT_FOUND)
        );
    }
    // The repository name comes first: a bad one is NAME_INVALID whatever the method or credentials.
    let name = match &route {
        Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::UploadStart { name }
        | Route::Upload { name, .. }
        | Route::Tags { name }
        | Route::Referrers { name, .. } => {
            crate::names::check_name(name)?;
            Some(name.clone())
        }
        _ => None,
    };
    let action = match method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    let need = match (&route, &name) {
        (Route::Catalog, _) => Some(Need::Catalog),
        (_, Some(n)) => Some(Need::Repo(n.clone(), action)),
        _ => None,
    };
    let grant = authorize(state, &req, need.as_ref(), scheme).await?;
    if state.config.read_only && is_write(&method) {
        return Err(ApiError::new(
            Code::Unsupported,
            "the registry is read-only",
        ));
    }
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => finish(
            json(StatusCode::OK, &serde_json::json!({})),
            json_body(&serde_json::json!({})),
        ),
        (Route::Catalog, Method::GET) => crate::listing::catalog(state, &query).await,
        (Route::Tags { name }, Method::GET) => crate::listing::tags(state, name, &query).await,
        (Route::Referrers { name, digest }, Method::GET) => {
            crate::listing::referrers(state, name, &digest, &query).await
        }
        (Route::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            crate::manifests::get(state, name, &reference, req.method() == Method::HEAD).await
        }
        (Route::Manifest { name, reference }, Method::PUT) => {
            crate::manifests::put(state, name, &reference, req).await
        }
        (Route::Manifest { name, reference }, Method::DELETE) => {
            crate::manifests::delete(state, name, &reference).await
        }
        (Route::Blob { name, digest }, Method::GET | Method::HEAD) => {
            crate::blobs::get(state, name, &digest, req).await
        }
        (Route::Blob { name, digest }, Method::DELETE) => {
            crate::blobs::delete(state, name, &digest).await
        }
        (Route::UploadStart { name }, Method::POST) => {
            crate::uploads::start(state, name, &query, &grant, req).await
        }
        (Route::Upload { name, uuid }, Method::GET) => {
            crate::uploads::status(state, name, &uuid).await
        }
        (Route::Upload { name, uuid }, Method::PATCH) => {
            crate::uploads::patch(state, name, &uuid, req).await
        }
        (Route::Upload { name, uuid }, Method::PUT) => {
            crate::uploads::put(state, name, &uuid, &query, req).await
        }
        (Route::Upload { name, uuid }, Method::DELETE) => {
            crate::uploads::cancel(state, name, &uuid).await
        }
        (_, m) => Err(unsupported(&m)),
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Checks credentials against what the request needs; `Grant::All` when the registry is open.
async fn authorize(
    state: &Arc<State>,
    req: &Request<Incoming>,
    need: Option<&Need>,
    scheme: &'static str,
) -> Result<Grant, ApiError> {
    if state.auth.is_none() {
        return Ok(Grant::All);
    }
    let challenge = |msg: &str| {
        let host = header(req, "host").unwrap_or("localhost");
        let mut bearer =
            format!("Bearer realm=\"{scheme}://{host}/token\",service=\"berth-registry\"");
        if let Some(n) = need {
            bearer.push_str(&format!(",scope=\"{}\"", n.scope()));
        }
        ApiError::new(Code::Unauthorized, msg.to_string())
            .header("WWW-Authenticate", bearer)
            .header(
                "WWW-Authenticate",
                "Basic realm=\"berth-registry\"".to_string(),
            )
    };
    let Some(value) = header(req, "authorization") else {
        return Err(challenge("authentication required"));
    };
    if let Some((user, password)) = auth::parse_basic(value) {
        let st = state.clone();
        let ok = blocking(move || {
            Ok(st
                .auth
                .as_ref()
                .is_some_and(|a| a.check_password(&user, &password)))
        })
        .await?;
        return if ok {
            Ok(Grant::All)
        } else {
            Err(challenge("wrong username or password"))
        };
    }
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "));
    let scopes = token.and_then(|t| state.auth.as_ref().and_then(|a| a.verify(t.trim())));
    let Some(scopes) = scopes else {
        return Err(challenge("invalid or expired token"));
    };
    let grant = Grant::Scopes(scopes);
    match need {
        Some(n) if !grant.allows(n) => Err(challenge("the token does not grant this access")),
        _ => Ok(grant),
    }
}

/// `GET /token?service=&scope=`: Basic credentials in, a signed token for the requested scopes out.
async fn token(state: &Arc<State>, req: &Request<Incoming>, query: &[(String, String)]) -> Reply {
    let Some(a) = &state.auth else {
        // An open registry hands out tokens that the API does not even look at.
        return token_reply("anonymous".to_string(), Vec::new(), None);
    };
    let creds = header(req, "authorization").and_then(auth::parse_basic);
    let Some((user, password)) = creds else {
        return Err(
            ApiError::new(Code::Unauthorized, "credentials required").header(
                "WWW-Authenticate",
                "Basic realm=\"berth-registry\"".to_string(),
            ),
        );
    };
    let st = state.clone();
    let u = user.clone();
    let ok = blocking(move || {
        Ok(st
            .auth
            .as_ref()
            .is_some_and(|a| a.check_password(&u, &password)))
    })
    .await?;
    if !ok {
        return Err(
            ApiError::new(Code::Unauthorized, "wrong username or password").header(
                "WWW-Authenticate",
                "Basic realm=\"berth-registry\"".to_string(),
            ),
        );
    }
    let scopes: Vec<auth::Scope> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|s| auth::Scope::parse(&s))
        .filter(|s| {
            (s.kind == "repository" && crate::names::valid_name(&s.name))
                || (s.kind == "registry" && s.name == "catalog")
        })
        .collect();
    token_reply(user, scopes, Some(a))
}

fn token_reply(user: String, scopes: Vec<auth::Scope>, a: Option<&auth::Auth>) -> Reply {
    let t = match a {
        Some(a) => a.issue(&user, scopes),
        None => "open".to_string(),
    };
    let doc = serde_json::json!({
        "token": t,
        "access_token": t,
        "expires_in": auth::TOKEN_TTL.as_secs(),
        "issued_at": auth::rfc3339(auth::now_secs()),
    });
    finish(json(StatusCode::OK, &doc), json_body(&doc))
}

pub fn location(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/v2/"), Route::Base);
        assert_eq!(parse_route("/v2"), Route::Base);
        assert_eq!(parse_route("/v2/_catalog"), Route::Catalog);
        assert_eq!(
            parse_route("/v2/a/blobs/b/manifests/latest"),
            Route::Manifest {
                name: "a/blobs/b".into(),
                reference: "latest".into()
            }
        );
        assert_eq!(
            parse_route("/v2/x/y/blobs/uploads/"),
            Route::UploadStart { name: "x/y".into() }
        );
        assert_eq!(
            parse_route("/v2/x/y/blobs/uploads/abc"),
            Route::Upload {
                name: "x/y".into(),
                uuid: "abc".into()
            }
        );
        assert_eq!(
            parse_route("/v2/x/blobs/sha256:00"),
            Route::Blob {
                name: "x".into(),
                digest: "sha256:00".into()
            }
        );
        assert_eq!(
            parse_route("/v2/x/tags/list"),
            Route::Tags { name: "x".into() }
        );
        assert_eq!(parse_route("/v3/x"), Route::NotFound);
        assert_eq!(parse_route("/v2/x"), Route::NotFound);
    }

    #[test]
    fn queries() {
        let q = query_pairs(Some("digest=sha256%3Aab&n=2&scope=a+b&x"));
        assert_eq!(query_get(&q, "digest"), Some("sha256:ab"));
        assert_eq!(query_get(&q, "scope"), Some("a b"));
        assert_eq!(query_get(&q, "x"), Some(""));
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
