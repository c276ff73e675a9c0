//! Blobs: GET (streamed from the file, `Range: bytes=a-b` / `a-` / `-n` answered with 206), HEAD, DELETE
//! (removes the repository's link; the bytes go at the next GC).

use std::io::SeekFrom;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use tokio::io::AsyncSeekExt as _;

use crate::body::Body;
use crate::errors::{ApiError, Code};
use crate::names::parse_digest;
use crate::routes::{blocking, finish, reply, Reply};
use crate::server::State;

fn unknown(name: &str, digest: &str) -> ApiError {
    ApiError::new(Code::BlobUnknown, "blob unknown to registry")
        .detail(serde_json::json!({ "name": name, "digest": digest }))
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against a size: the inclusive range, `Err` when unsatisfiable,
/// `Ok(None)` when the header is not a single byte range (then the whole blob is served).
pub fn parse_range(h: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

pub async fn get(state: &Arc<State>, name: String, digest: &str, req: Request<Incoming>) -> Reply {
    let d = parse_digest(digest)?;
    let head = req.method() == Method::HEAD;
    let st = state.clone();
    let (n, dd) = (name.clone(), d.clone());
    let grace = state.config.gc_grace;
    let size = blocking(move || {
        let size = st.storage.repo_blob_size(&n, &dd);
        if size.is_some() {
            // A client that finds the blob may skip its upload and reference it: keep it young for GC.
            st.storage.freshen_blob(&dd, grace / 2);
        }
        Ok(size)
    })
    .await?
    .ok_or_else(|| unknown(&name, digest))?;
    let base = reply(StatusCode::OK)
        .header("Docker-Content-Digest", d.as_str())
        .header(ACCEPT_RANGES, "bytes")
        .header("ETag", format!("\"{d}\""))
        .header(CONTENT_TYPE, "application/octet-stream");
    let range = match req.headers().get("range").and_then(|v| v.to_str().ok()) {
        Some(h) => parse_range(h, size).map_err(|_| {
            ApiError::new(Code::BlobUnknown, "requested range not satisfiable")
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header("Content-Range", format!("bytes */{size}"))
        })?,
        None => None,
    };
    let (status, start, len) = match range {
        Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        None => (StatusCode::OK, 0, size),
    };
    let mut b = base.status(status).header(CONTENT_LENGTH, len);
    if let Some((a, e)) = range {
        b = b.header(CONTENT_RANGE, format!("bytes {a}-{e}/{size}"));
    }
    if head {
        return finish(b, Body::Empty);
    }
    let path = state.storage.blob_path(&d);
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|_| unknown(&name, digest))?;
    if start > 0 {
        f.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::internal(format!("seeking {}: {e}", path.display())))?;
    }
    finish(b, Body::file(f, len))
}

pub async fn delete(state: &Arc<State>, name: String, digest: &str) -> Reply {
    let d = parse_digest(digest)?;
    let st = state.clone();
    let n = name.clone();
    let found = blocking(move || Ok(st.storage.unlink_blob(&n, &d)?)).await?;
    if !found {
        return Err(unknown(&name, digest));
    }
    finish(
        reply(StatusCode::ACCEPTED).header(CONTENT_LENGTH, 0),
        Body::Empty,
    )
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=10-", 100), Ok(Some((10, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=90-200", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-1", 100), Err(()));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }
}
