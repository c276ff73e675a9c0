//! Listings: `tags/list` and `_catalog` (with `n`/`last` pagination and a `Link` to the next page) and the
//! referrers API.

use std::sync::Arc;

use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::StatusCode;
use image::media;

use crate::errors::{ApiError, Code};
use crate::names::parse_digest;
use crate::routes::{blocking, finish, json, json_body, query_get, reply, Reply};
use crate::server::State;

/// Entries after `last`, at most `n` of them; whether more follow.
fn page(
    all: Vec<String>,
    query: &[(String, String)],
) -> Result<(Vec<String>, Option<usize>), ApiError> {
    let n = match query_get(query, "n") {
        Some(s) if !s.is_empty() => Some(s.parse::<usize>().map_err(|_| {
            ApiError::new(Code::Unsupported, format!("invalid n {s:?}"))
                .status(StatusCode::BAD_REQUEST)
        })?),
        _ => None,
    };
    let rest: Vec<String> = match query_get(query, "last") {
        Some(l) if !l.is_empty() => all.into_iter().filter(|t| t.as_str() > l).collect(),
        _ => all,
    };
    match n {
        Some(n) if rest.len() > n => Ok((rest.into_iter().take(n).collect(), Some(n))),
        _ => Ok((rest, None)),
    }
}

fn with_link(
    b: hyper::http::response::Builder,
    base: &str,
    list: &[String],
    more: Option<usize>,
) -> hyper::http::response::Builder {
    match (more, list.last()) {
        (Some(n), Some(last)) => {
            b.header("Link", format!("<{base}?n={n}&last={last}>; rel=\"next\""))
        }
        _ => b,
    }
}

pub async fn tags(state: &Arc<State>, name: String, query: &[(String, String)]) -> Reply {
    let st = state.clone();
    let n = name.clone();
    let all = blocking(move || {
        if !st.storage.repo_exists(&n) {
            return Err(
                ApiError::new(Code::NameUnknown, "repository name not known to registry")
                    .detail(serde_json::json!({ "name": n })),
            );
        }
        Ok(st.storage.tags(&n)?)
    })
    .await?;
    let (list, more) = page(all, query)?;
    let doc = serde_json::json!({ "name": name, "tags": list });
    let b = with_link(
        json(StatusCode::OK, &doc),
        &format!("/v2/{name}/tags/list"),
        &list,
        more,
    );
    finish(b, json_body(&doc))
}

pub async fn catalog(state: &Arc<State>, query: &[(String, String)]) -> Reply {
    let st = state.clone();
    let all = blocking(move || Ok(st.storage.repositories()?)).await?;
    let (list, more) = page(all, query)?;
    let doc = serde_json::json!({ "repositories": list });
    let b = with_link(json(StatusCode::OK, &doc), "/v2/_catalog", &list, more);
    finish(b, json_body(&doc))
}

pub async fn referrers(
    state: &Arc<State>,
    name: String,
    digest: &str,
    query: &[(String, String)],
) -> Reply {
    let subject = parse_digest(digest)?;
    let st = state.clone();
    let mut list = blocking(move || Ok(st.storage.referrers(&name, &subject)?)).await?;
    let filter = query_get(query, "artifactType").filter(|a| !a.is_empty());
    if let Some(at) = filter {
        list.retain(|d| d["artifactType"].as_str() == Some(at));
    }
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": list,
    });
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    let mut b = reply(StatusCode::OK)
        .header(CONTENT_TYPE, media::OCI_INDEX)
        .header(CONTENT_LENGTH, bytes.len());
    if filter.is_some() {
        b = b.header("OCI-Filters-Applied", "artifactType");
    }
    finish(b, crate::body::Body::full(bytes))
}
