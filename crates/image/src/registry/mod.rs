//! The client side of the OCI distribution spec (1.1): manifests and blobs, pull and push, with docker's
//! token/basic auth, https-with-http-fallback for insecure registries, retries and resumable blob downloads.
//!
//! Built on ureq's blocking API rather than an async OCI crate: berth pulls layers on plain threads, and a
//! blob download must be a `Read` whose reconnects and `Range` resumption this module controls.

mod auth;
mod blob;
mod client;
pub mod credentials;

use std::path::PathBuf;

pub use blob::BlobReader;
pub use client::Client;

use crate::Digest;

/// Manifests bigger than this are refused (the distribution spec suggests registries cap them at 4 MiB too).
pub const MANIFEST_MAX_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `false`: every registry may be reached over plain http or https without certificate checks.
    pub tls_verify: bool,
    /// Registries (`host[:port]`) allowed to use plain http and unverified https, as docker's
    /// `insecure-registries`. Loopback registries always are.
    pub insecure_registries: Vec<String>,
    /// A docker `config.json`; `None`: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    pub auth_file: Option<PathBuf>,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls_verify: true,
            insecure_registries: Vec::new(),
            auth_file: None,
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub media_type: String,
    /// Of the bytes as served (verified against the requested digest when one was asked for).
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry}: unauthorized: {reason}")]
    Unauthorized { registry: String, reason: String },
    #[error("registry {registry}: access denied to {repository}: {reason}")]
    Denied {
        registry: String,
        repository: String,
        reason: String,
    },
    #[error("manifest unknown: {registry}/{repository}:{reference}{detail}")]
    ManifestUnknown {
        registry: String,
        repository: String,
        reference: String,
        /// The registry's own error, `" (CODE: message)"`, or empty.
        detail: String,
    },
    #[error("blob unknown: {registry}/{repository}@{digest}{detail}")]
    BlobUnknown {
        registry: String,
        repository: String,
        digest: Digest,
        detail: String,
    },
    #[error("registry {registry}: {what}: HTTP {status}{detail}")]
    Status {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("registry {registry}: {what}: {source}")]
    Transport {
        registry: String,
        what: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("registry {registry}: {what}: {reason}")]
    Protocol {
        registry: String,
        what: String,
        reason: String,
    },
    #[error("registry {registry}: {what}: digest mismatch, expected {expected}, got {got}")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        got: Digest,
    },
    #[error("registry {registry}: {what}: credentials: {source}")]
    Credentials {
        registry: String,
        what: String,
        #[source]
        source: credentials::CredentialsError,
    },
    #[error("registry client: {0}")]
    Config(String),
}

impl RegistryError {
    /// The HTTP status the registry answered, for errors that carry one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            RegistryError::Unauthorized { .. } => Some(401),
            RegistryError::Denied { .. } => Some(403),
            RegistryError::ManifestUnknown { .. } | RegistryError::BlobUnknown { .. } => Some(404),
            _ => None,
        }
    }
}

/// `{"errors":[{"code","message","detail"}]}` as the distribution spec has registries report failures.
#[derive(serde::Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(serde::Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// The registry's error document rendered as `" (CODE: message; detail)"`, or empty when there is none.
fn error_detail(body: &[u8]) -> String {
    let Ok(doc) = serde_json::from_slice::<ErrorBody>(body) else {
        return String::new();
    };
    let parts: Vec<String> = doc
        .errors
        .iter()
        .map(|e| {
            let mut s = match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                (true, _) => e.message.clone(),
            };
            match &e.detail {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::String(d)) if d.is_empty() => {}
                Some(serde_json::Value::String(d)) => s.push_str(&format!("; {d}")),
                Some(d) => {
                    let d = d.to_string();
                    // Details can be whole documents (docker-registry puts the manifest's blob list there).
                    if d.len() <= 200 {
                        s.push_str(&format!("; {d}"));
                    }
                }
            }
            s
        })
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            error_detail(body),
            r#" (MANIFEST_UNKNOWN: manifest unknown; {"Tag":"x"})"#
        );
        assert_eq!(error_detail(b"<html>"), "");
        assert_eq!(error_detail(br#"{"errors":[]}"#), "");
        assert_eq!(
            error_detail(br#"{"errors":[{"code":"DENIED","message":"no"},{"code":"X"}]}"#),
            " (DENIED: no, X)"
        );
    }
}
