//! berth's images: a verified content store, OCI/Docker manifests, a registry client, layer extraction and
//! overlay snapshots. Knows nothing of containers: a container's rootfs is an "active snapshot" here.

pub mod digest;
pub mod media;

pub use media::{Compression, Descriptor, Index, Manifest, Platform};

pub use digest::{Digest, DigestError};
