//! berth's images: a verified content store, OCI/Docker manifests, a registry client, layer extraction and
//! overlay snapshots. Knows nothing of containers: a container's rootfs is an "active snapshot" here.

pub mod archive;
pub mod commit;
pub mod content;
pub mod db;
pub mod digest;
pub mod layer;
pub mod media;
mod parallel;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;

pub use digest::{Digest, DigestError};
pub use media::{Compression, Descriptor, Index, Manifest, Platform};
pub use reference::{Reference, ReferenceError};
pub use store::{Store, StoreError};
