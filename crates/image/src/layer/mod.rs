//! Layers: extracting a layer tar into a directory (`apply`) and, where overlayfs is not available, copying
//! extracted layers on top of each other (`merge`).
//!
//! Everything is created with `*at` syscalls relative to directory fds, and every directory on the way is
//! resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: a layer is untrusted input, and a symlink it
//! planted earlier must never redirect a later write outside the destination.

use std::io;
use std::path::PathBuf;

use crate::Digest;

mod apply;
mod merge;
mod meta;
mod remove;
mod resolve;
mod stream;

#[cfg(test)]
mod tests;

pub use apply::apply;
pub use merge::merge;

/// What `apply` learnt about the layer while extracting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// sha256 of the uncompressed tar stream, as an image config's `rootfs.diff_ids` lists it.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar stream.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("opening {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading, decompressing or parsing the stream failed outside of any one entry.
    #[error("reading the layer stream: {source}")]
    Stream {
        #[source]
        source: io::Error,
    },
    #[error("reading the layer stream: data after the end of the compressed stream")]
    TrailingData,
    /// A syscall failed while extracting one entry.
    #[error("layer entry {path:?}: {what}: {source}")]
    Entry {
        path: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The entry is refused: unsafe, malformed or of an unsupported type.
    #[error("layer entry {path:?}: {reason}")]
    Refused { path: String, reason: String },
    /// A syscall failed while merging one path of an extracted layer.
    #[error("merging layer path {path:?}: {what}: {source}")]
    Merge {
        path: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl LayerError {
    pub(crate) fn entry(path: &[u8], what: &'static str, source: impl Into<io::Error>) -> Self {
        LayerError::Entry {
            path: String::from_utf8_lossy(path).into_owned(),
            what,
            source: source.into(),
        }
    }

    pub(crate) fn refused(path: &[u8], reason: impl Into<String>) -> Self {
        LayerError::Refused {
            path: String::from_utf8_lossy(path).into_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn merge(path: &[u8], what: &'static str, source: impl Into<io::Error>) -> Self {
        LayerError::Merge {
            path: String::from_utf8_lossy(path).into_owned(),
            what,
            source: source.into(),
        }
    }
}
