//! Blob uploads: sessions (`POST` → 202), chunks (`PATCH` with `Content-Range`), completion (`PUT ?digest=`),
//! status, cancel, monolithic `POST ?digest=`, and cross-repository mounts (`POST ?mount=&from=`).
//!
//! Data is appended to `uploads/<uuid>/data` and hashed as it arrives; the hash state lives in memory with
//! the session (after a restart the data is hashed again at completion). A blob becomes visible only when its
//! digest is verified: fsync, then rename into the blob store.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, LOCATION};
use hyper::{Request, StatusCode};
use image::digest::Hasher;
use image::Digest;
use tokio::io::AsyncWriteExt as _;

use crate::auth::{Action, Grant, Need};
use crate::body::{next_chunk, Body};
use crate::errors::{ApiError, Code};
use crate::names::parse_digest;
use crate::routes::{blocking, finish, location, query_get, reply, Reply};
use crate::server::State;

/// Writes of received data reach the file in chunks this large.
const WRITE_BUFFER: usize = 1 << 20;

/// The in-memory side of an upload session.
pub struct Session {
    hasher: Option<Hasher>,
    /// How many bytes of the data file `hasher` has seen.
    hashed: u64,
}

fn unknown_upload(uuid: &str) -> ApiError {
    ApiError::new(Code::BlobUploadUnknown, "blob upload unknown to registry")
        .detail(serde_json::json!({ "uuid": uuid }))
}

fn session(state: &State, uuid: &str) -> Arc<tokio::sync::Mutex<Session>> {
    let mut map = state.sessions.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(uuid.to_string())
        .or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(Session {
                hasher: None,
                hashed: 0,
            }))
        })
        .clone()
}

fn forget(state: &State, uuid: &str) {
    let mut map = state.sessions.lock().unwrap_or_else(|p| p.into_inner());
    map.remove(uuid);
}

fn range_value(len: u64) -> String {
    format!("0-{}", len.saturating_sub(1))
}

fn upload_url(name: &str, uuid: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{uuid}")
}

fn too_big(limit: u64) -> ApiError {
    ApiError::new(
        Code::SizeInvalid,
        format!("upload larger than {limit} bytes"),
    )
    .status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// The upload's current length, when it exists and belongs to `name`.
async fn check(state: &Arc<State>, name: &str, uuid: &str) -> Result<u64, ApiError> {
    let st = state.clone();
    let (n, u) = (name.to_string(), uuid.to_string());
    blocking(move || match st.storage.upload_repo(&u) {
        Some(r) if r == n => st.storage.upload_len(&u).ok_or_else(|| unknown_upload(&u)),
        _ => Err(unknown_upload(&u)),
    })
    .await
}

fn accepted(name: &str, uuid: &str, len: u64) -> Reply {
    finish(
        reply(StatusCode::ACCEPTED)
            .header(LOCATION, location(&upload_url(name, uuid)))
            .header("Range", range_value(len))
            .header("Docker-Upload-UUID", uuid)
            .header(CONTENT_LENGTH, 0),
        Body::Empty,
    )
}

fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The start offset of a `Content-Range` (`a-b`, `bytes a-b/total`, `bytes=a-b`).
fn content_range_start(req: &Request<Incoming>) -> Result<Option<u64>, ApiError> {
    let Some(v) = req.headers().get("content-range") else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches([' ', '=']))
        .unwrap_or(s);
    s.split('-')
        .next()
        .and_then(|a| a.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                Code::BlobUploadInvalid,
                format!("invalid Content-Range {s:?}"),
            )
        })
}

fn check_offset(req: &Request<Incoming>, name: &str, uuid: &str, len: u64) -> Result<(), ApiError> {
    if let Some(start) = content_range_start(req)? {
        if start != len {
            return Err(ApiError::new(
                Code::BlobUploadInvalid,
                format!("chunk starts at {start}, the upload has {len} bytes"),
            )
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header("Location", upload_url(name, uuid))
            .header("Range", range_value(len))
            .header("Docker-Upload-UUID", uuid.to_string()));
        }
    }
    Ok(())
}

/// Appends the request body to the upload's data, hashing it; returns the new length.
async fn receive(
    state: &Arc<State>,
    body: &mut Incoming,
    uuid: &str,
    sess: &mut Session,
    start: u64,
) -> Result<u64, ApiError> {
    if sess.hasher.is_none() && start == 0 {
        sess.hasher = Some(Hasher::sha256());
        sess.hashed = 0;
    }
    if sess.hashed != start {
        sess.hasher = None;
    }
    let path = state.storage.upload_data(uuid);
    let file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .await
        .map_err(|_| unknown_upload(uuid))?;
    let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let limit = state.config.max_upload_bytes;
    let mut len = start;
    let mut failure = None;
    while let Some(chunk) = next_chunk(body).await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(ApiError::new(
                    Code::BlobUploadInvalid,
                    format!("reading the upload: {e}"),
                ));
                break;
            }
        };
        if let Some(l) = limit {
            if len + chunk.len() as u64 > l {
                failure = Some(too_big(l));
                break;
            }
        }
        if let Err(e) = w.write_all(&chunk).await {
            sess.hasher = None;
            failure = Some(ApiError::internal(format!(
                "writing {}: {e}",
                path.display()
            )));
            break;
        }
        if let Some(h) = sess.hasher.as_mut() {
            h.update(&chunk);
        }
        len += chunk.len() as u64;
    }
    if let Err(e) = w.flush().await {
        sess.hasher = None;
        failure
            .get_or_insert_with(|| ApiError::internal(format!("writing {}: {e}", path.display())));
    }
    sess.hashed = len;
    match failure {
        Some(e) => Err(e),
        None => Ok(len),
    }
}

/// Verifies the upload against `digest` and moves it into the blob store, linked into `name`.
async fn complete(
    state: &Arc<State>,
    name: &str,
    uuid: &str,
    digest: Digest,
    sess: &mut Session,
) -> Reply {
    let st = state.clone();
    let u = uuid.to_string();
    let len = blocking(move || st.storage.upload_len(&u).ok_or_else(|| unknown_upload(&u))).await?;
    if let Some(l) = state.config.max_upload_bytes {
        if len > l {
            let _ = state.storage.remove_upload(uuid);
            forget(state, uuid);
            return Err(too_big(l));
        }
    }
    let same_alg = matches!(
        (&sess.hasher, digest.algorithm()),
        (Some(Hasher::Sha256(_)), "sha256") | (Some(Hasher::Sha512(_)), "sha512")
    );
    let computed = match sess.hasher.take() {
        Some(h) if same_alg && sess.hashed == len => h.finish(),
        _ => {
            let path = state.storage.upload_data(uuid);
            let mut h = digest.hasher();
            blocking(move || {
                use std::io::Read as _;
                let mut f = std::fs::File::open(&path)
                    .map_err(|e| ApiError::internal(format!("opening {}: {e}", path.display())))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).map_err(|e| {
                        ApiError::internal(format!("reading {}: {e}", path.display()))
                    })?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                Ok(h.finish())
            })
            .await?
        }
    };
    if computed != digest {
        let _ = state.storage.remove_upload(uuid);
        forget(state, uuid);
        return Err(ApiError::new(
            Code::DigestInvalid,
            "provided digest did not match uploaded content",
        )
        .detail(serde_json::json!({ "expected": digest, "got": computed })));
    }
    let guard = state.gc.lock.clone().read_owned().await;
    let st = state.clone();
    let (n, u, d) = (name.to_string(), uuid.to_string(), digest.clone());
    blocking(move || {
        let data = st.storage.upload_data(&u);
        std::fs::File::open(&data)
            .and_then(|f| f.sync_all())
            .map_err(|e| ApiError::internal(format!("syncing {}: {e}", data.display())))?;
        st.storage.commit_blob(&data, &d)?;
        st.storage.link_blob(&n, &d)?;
        st.gc.track([d]);
        drop(guard);
        st.storage.remove_upload(&u)?;
        Ok(())
    })
    .await?;
    forget(state, uuid);
    finish(
        reply(StatusCode::CREATED)
            .header(LOCATION, location(&format!("/v2/{name}/blobs/{digest}")))
            .header("Docker-Content-Digest", digest.as_str())
            .header(CONTENT_LENGTH, 0),
        Body::Empty,
    )
}

pub async fn start(
    state: &Arc<State>,
    name: String,
    query: &[(String, String)],
    grant: &Grant,
    mut req: Request<Incoming>,
) -> Reply {
    if let (Some(m), Some(from)) = (query_get(query, "mount"), query_get(query, "from")) {
        let d = parse_digest(m)?;
        let readable = crate::names::valid_name(from)
            && grant.allows(&Need::Repo(from.to_string(), Action::Pull));
        if readable {
            let guard = state.gc.lock.clone().read_owned().await;
            let st = state.clone();
            let (n, f, dd) = (name.clone(), from.to_string(), d.clone());
            let mounted = blocking(move || {
                if st.storage.repo_blob_size(&f, &dd).is_none() {
                    return Ok(false);
                }
                st.storage.touch_blob(&dd);
                st.storage.link_blob(&n, &dd)?;
                st.gc.track([dd]);
                drop(guard);
                Ok(true)
            })
            .await?;
            if mounted {
                return finish(
                    reply(StatusCode::CREATED)
                        .header(LOCATION, location(&format!("/v2/{name}/blobs/{d}")))
                        .header("Docker-Content-Digest", d.as_str())
                        .header(CONTENT_LENGTH, 0),
                    Body::Empty,
                );
            }
        }
    }
    let monolithic = match query_get(query, "digest") {
        Some(d) => Some(parse_digest(d)?),
        None => None,
    };
    if let (Some(l), Some(len)) = (state.config.max_upload_bytes, declared_length(&req)) {
        if monolithic.is_some() && len > l {
            return Err(too_big(l));
        }
    }
    let st = state.clone();
    let n = name.clone();
    let uuid = blocking(move || Ok(st.storage.create_upload(&n)?)).await?;
    let sess = session(state, &uuid);
    let mut sess = sess.lock().await;
    sess.hasher = Some(Hasher::sha256());
    sess.hashed = 0;
    let Some(digest) = monolithic else {
        drop(sess);
        return accepted(&name, &uuid, 0);
    };
    // Monolithic: nobody knows this session, so it goes whenever it does not complete.
    let r = match receive(state, req.body_mut(), &uuid, &mut sess, 0).await {
        Ok(_) => complete(state, &name, &uuid, digest, &mut sess).await,
        Err(e) => Err(e),
    };
    if r.is_err() {
        let _ = state.storage.remove_upload(&uuid);
        forget(state, &uuid);
    }
    r
}

pub async fn status(state: &Arc<State>, name: String, uuid: &str) -> Reply {
    let len = check(state, &name, uuid).await?;
    finish(
        reply(StatusCode::NO_CONTENT)
            .header(LOCATION, location(&upload_url(&name, uuid)))
            .header("Range", range_value(len))
            .header("Docker-Upload-UUID", uuid)
            .header(CONTENT_LENGTH, 0),
        Body::Empty,
    )
}

pub async fn patch(
    state: &Arc<State>,
    name: String,
    uuid: &str,
    mut req: Request<Incoming>,
) -> Reply {
    check(state, &name, uuid).await?;
    let sess = session(state, uuid);
    let mut sess = sess.lock().await;
    // The length again, under the session lock: another chunk may just have landed.
    let len = check(state, &name, uuid).await?;
    check_offset(&req, &name, uuid, len)?;
    if let (Some(l), Some(more)) = (state.config.max_upload_bytes, declared_length(&req)) {
        if len + more > l {
            let _ = state.storage.remove_upload(uuid);
            forget(state, uuid);
            return Err(too_big(l));
        }
    }
    match receive(state, req.body_mut(), uuid, &mut sess, len).await {
        Ok(new_len) => accepted(&name, uuid, new_len),
        Err(e) => {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                let _ = state.storage.remove_upload(uuid);
                forget(state, uuid);
            }
            Err(e)
        }
    }
}

pub async fn put(
    state: &Arc<State>,
    name: String,
    uuid: &str,
    query: &[(String, String)],
    mut req: Request<Incoming>,
) -> Reply {
    check(state, &name, uuid).await?;
    let digest = match query_get(query, "digest") {
        Some(d) => parse_digest(d)?,
        None => {
            return Err(ApiError::new(
                Code::DigestInvalid,
                "the digest query parameter is required",
            ))
        }
    };
    let sess = session(state, uuid);
    let mut sess = sess.lock().await;
    let len = check(state, &name, uuid).await?;
    let has_body = declared_length(&req).is_some_and(|l| l > 0)
        || req.headers().contains_key("transfer-encoding");
    if has_body {
        check_offset(&req, &name, uuid, len)?;
        if let Err(e) = receive(state, req.body_mut(), uuid, &mut sess, len).await {
            if e.status == StatusCode::PAYLOAD_TOO_LARGE {
                let _ = state.storage.remove_upload(uuid);
                forget(state, uuid);
            }
            return Err(e);
        }
    }
    complete(state, &name, uuid, digest, &mut sess).await
}

pub async fn cancel(state: &Arc<State>, name: String, uuid: &str) -> Reply {
    check(state, &name, uuid).await?;
    let sess = session(state, uuid);
    let _held = sess.lock().await;
    let st = state.clone();
    let u = uuid.to_string();
    blocking(move || Ok(st.storage.remove_upload(&u)?)).await?;
    forget(state, uuid);
    finish(
        reply(StatusCode::NO_CONTENT).header(CONTENT_LENGTH, 0),
        Body::Empty,
    )
}
