//! Manifests: GET/HEAD/PUT/DELETE by tag or digest. A PUT is validated (media type, JSON, schema), its
//! blobs must be in the repository, and it is stored as a blob linked into the repository.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use hyper::{Request, StatusCode};
use image::media;
use image::Digest;

use crate::body::{read_limited, Body};
use crate::errors::{ApiError, Code};
use crate::names::{parse_reference, Reference};
use crate::routes::{blocking, finish, location, reply, Reply};
use crate::server::State;

const ACCEPTED: &[&str] = &[
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_MANIFEST_LIST,
];

fn unknown(name: &str, reference: &str) -> ApiError {
    ApiError::new(Code::ManifestUnknown, "manifest unknown")
        .detail(serde_json::json!({ "name": name, "reference": reference }))
}

/// What a manifest PUT needs checked and recorded.
#[derive(Debug)]
pub struct Parsed {
    /// Config and layers (without foreign layers that live at `urls`).
    pub blobs: Vec<Digest>,
    /// Index children: manifests of the same repository.
    pub children: Vec<Digest>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Value>,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(Code::ManifestInvalid, msg)
}

pub fn parse(content_type: &str, bytes: &[u8]) -> Result<Parsed, ApiError> {
    if !ACCEPTED.contains(&content_type) {
        return Err(invalid(format!(
            "unsupported manifest media type {content_type:?}"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    if let Some(mt) = value.get("mediaType") {
        if mt.as_str() != Some(content_type) {
            return Err(invalid(format!(
                "the manifest's mediaType {mt} does not match Content-Type {content_type:?}"
            )));
        }
    }
    if value.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let annotations = value.get("annotations").cloned();
    if content_type == media::OCI_INDEX || content_type == media::DOCKER_MANIFEST_LIST {
        let ix: image::Index =
            serde_json::from_value(value).map_err(|e| invalid(format!("invalid index: {e}")))?;
        Ok(Parsed {
            blobs: Vec::new(),
            children: ix.manifests.into_iter().map(|d| d.digest).collect(),
            subject: ix.subject.map(|s| s.digest),
            artifact_type: ix.artifact_type,
            annotations,
        })
    } else {
        let m: image::Manifest =
            serde_json::from_value(value).map_err(|e| invalid(format!("invalid manifest: {e}")))?;
        let artifact_type = m
            .artifact_type
            .clone()
            .or_else(|| Some(m.config.media_type.clone()));
        let mut blobs = vec![m.config.digest.clone()];
        blobs.extend(
            m.layers
                .iter()
                .filter(|l| l.urls.as_ref().is_none_or(|u| u.is_empty()))
                .map(|l| l.digest.clone()),
        );
        Ok(Parsed {
            blobs,
            children: Vec::new(),
            subject: m.subject.map(|s| s.digest),
            artifact_type,
            annotations,
        })
    }
}

/// Resolves a reference to a digest of this repository and its media type.
fn resolve(state: &State, name: &str, reference: &str) -> Result<(Digest, String), ApiError> {
    let d = match parse_reference(reference)? {
        Reference::Digest(d) => d,
        Reference::Tag(t) => state
            .storage
            .resolve_tag(name, &t)
            .ok_or_else(|| unknown(name, reference))?,
    };
    let mt = state
        .storage
        .manifest_media_type(name, &d)
        .ok_or_else(|| unknown(name, reference))?;
    Ok((d, mt))
}

pub async fn get(state: &Arc<State>, name: String, reference: &str, head: bool) -> Reply {
    let st = state.clone();
    let r = reference.to_string();
    let (d, mt, bytes) = blocking(move || {
        if !st.storage.repo_exists(&name) {
            return Err(
                ApiError::new(Code::NameUnknown, "repository name not known to registry")
                    .detail(serde_json::json!({ "name": name })),
            );
        }
        let (d, mt) = resolve(&st, &name, &r)?;
        let bytes = st
            .storage
            .read_blob(&d, 64 << 20)
            .map_err(|_| unknown(&name, &r))?;
        Ok((d, mt, bytes))
    })
    .await?;
    let b = reply(StatusCode::OK)
        .header(CONTENT_TYPE, mt.trim())
        .header(CONTENT_LENGTH, bytes.len())
        .header("Docker-Content-Digest", d.as_str())
        .header("ETag", format!("\"{d}\""));
    finish(b, if head { Body::Empty } else { Body::full(bytes) })
}

pub async fn put(
    state: &Arc<State>,
    name: String,
    reference: &str,
    mut req: Request<Incoming>,
) -> Reply {
    let reference = parse_reference(reference)?;
    let max = state.config.max_manifest_bytes;
    let too_big = || {
        ApiError::new(
            Code::SizeInvalid,
            format!("manifest larger than {max} bytes"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|l| l > max) {
        return Err(too_big());
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let bytes = read_limited(req.body_mut(), max)
        .await
        .map_err(|e| ApiError::new(Code::ManifestInvalid, format!("reading the manifest: {e}")))?
        .ok_or_else(too_big)?;
    let parsed = parse(&content_type, &bytes)?;
    let digest = match &reference {
        Reference::Digest(want) => {
            let mut h = want.hasher();
            h.update(&bytes);
            let got = h.finish();
            if &got != want {
                return Err(ApiError::new(
                    Code::DigestInvalid,
                    "manifest digest does not match its content",
                )
                .detail(serde_json::json!({ "expected": want, "got": got })));
            }
            got
        }
        Reference::Tag(_) => Digest::sha256_of(&bytes),
    };
    let tag = match &reference {
        Reference::Tag(t) => Some(t.clone()),
        Reference::Digest(_) => None,
    };
    let referrer = parsed.subject.as_ref().map(|_| {
        let mut desc = serde_json::json!({
            "mediaType": content_type,
            "digest": digest,
            "size": bytes.len(),
        });
        if let Some(at) = &parsed.artifact_type {
            desc["artifactType"] = serde_json::Value::String(at.clone());
        }
        if let Some(a) = &parsed.annotations {
            desc["annotations"] = a.clone();
        }
        desc
    });
    // Between the blob check and the commit, no GC sweep may run.
    let guard = state.gc.lock.clone().read_owned().await;
    let st = state.clone();
    let d = digest.clone();
    let n = name.clone();
    let subject = parsed.subject.clone();
    blocking(move || {
        for b in &parsed.blobs {
            if st.storage.repo_blob_size(&n, b).is_none() {
                return Err(ApiError::new(
                    Code::ManifestBlobUnknown,
                    "manifest references a blob unknown to the repository",
                )
                .detail(serde_json::json!({ "digest": b })));
            }
        }
        for c in &parsed.children {
            if st.storage.manifest_media_type(&n, c).is_none() {
                return Err(ApiError::new(
                    Code::ManifestBlobUnknown,
                    "index references a manifest unknown to the repository",
                )
                .detail(serde_json::json!({ "digest": c })));
            }
        }
        st.storage.put_manifest(
            &n,
            &d,
            &content_type,
            &bytes,
            tag.as_deref(),
            subject.as_ref().zip(referrer.as_ref()),
        )?;
        st.gc.track(
            std::iter::once(d.clone())
                .chain(parsed.blobs.iter().cloned())
                .chain(parsed.children.iter().cloned()),
        );
        drop(guard);
        Ok(())
    })
    .await?;
    let mut b = reply(StatusCode::CREATED)
        .header(
            LOCATION,
            location(&format!("/v2/{name}/manifests/{digest}")),
        )
        .header("Docker-Content-Digest", digest.as_str())
        .header(CONTENT_LENGTH, 0);
    if let Some(s) = &parsed.subject {
        b = b.header("OCI-Subject", s.as_str());
    }
    finish(b, Body::Empty)
}

pub async fn delete(state: &Arc<State>, name: String, reference: &str) -> Reply {
    let reference = parse_reference(reference)?;
    let st = state.clone();
    blocking(move || {
        if !st.storage.repo_exists(&name) {
            return Err(
                ApiError::new(Code::NameUnknown, "repository name not known to registry")
                    .detail(serde_json::json!({ "name": name })),
            );
        }
        let found = match &reference {
            Reference::Digest(d) => st.storage.delete_manifest(&name, d)?,
            Reference::Tag(t) => st.storage.delete_tag(&name, t)?,
        };
        if found {
            Ok(())
        } else {
            let r = match &reference {
                Reference::Digest(d) => d.to_string(),
                Reference::Tag(t) => t.clone(),
            };
            Err(unknown(&name, &r))
        }
    })
    .await?;
    finish(
        reply(StatusCode::ACCEPTED).header(CONTENT_LENGTH, 0),
        Body::Empty,
    )
}
