//! `push`: an image from the store to a registry. Blobs the registry already has are skipped (HEAD), blobs of
//! an image that came from another repository on the same registry are mounted across repositories, the rest
//! stream from the content store, layers in parallel; the manifest goes last, so the registry only ever holds
//! a manifest whose blobs are all there.

use std::io::BufReader;

use crate::reference::Reference;
use crate::registry::{Client, RegistryError};
use crate::store::{Store, StoreError};
use crate::{Descriptor, Digest};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("push {dest}: {reason}")]
    Invalid { dest: String, reason: String },
}

/// What happened to one blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobEvent {
    Exists,
    Mounted(String),
    Pushing,
    /// Bytes of this blob sent so far.
    Sent(u64),
    Pushed,
}

struct Counting<'a, R> {
    inner: R,
    n: u64,
    desc: &'a Descriptor,
    events: &'a (dyn Fn(&Descriptor, BlobEvent) + Sync),
}

impl<R: std::io::Read> std::io::Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        (self.events)(self.desc, BlobEvent::Sent(self.n));
        Ok(n)
    }
}

#[derive(Debug)]
pub struct Pushed {
    pub digest: Digest,
    pub size: u64,
    /// What the manifest was pushed as: the tag, or the digest.
    pub reference: String,
}

/// Pushes `image` (a name, id or `name@digest` in the store) as `dest`.
pub fn push(
    store: &Store,
    client: &Client,
    image: &str,
    dest: &Reference,
    events: &(dyn Fn(&Descriptor, BlobEvent) + Sync),
) -> Result<Pushed, PushError> {
    let img = store.resolve(image)?;
    let manifest_bytes = store
        .content()
        .read(&img.manifest_digest)
        .map_err(StoreError::from)?;
    let media_type = img
        .manifest
        .media_type
        .clone()
        .unwrap_or_else(|| crate::media::OCI_MANIFEST.to_string());
    let reference = match (&dest.tag, &dest.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => {
            if d != &img.manifest_digest {
                return Err(PushError::Invalid {
                    dest: dest.to_string(),
                    reason: format!("the image's manifest is {}, not {d}", img.manifest_digest),
                });
            }
            d.to_string()
        }
        (None, None) => "latest".to_string(),
    };
    // Repositories on the destination registry this image's blobs may be mounted from.
    let sources: Vec<String> = img
        .tags
        .iter()
        .filter_map(|t| Reference::parse(&t.name).ok())
        .filter(|r| r.registry == dest.registry && r.repository != dest.repository)
        .map(|r| r.repository)
        .collect();

    let mut blobs: Vec<Descriptor> = img.manifest.layers.clone();
    blobs.push(img.manifest.config.clone());
    crate::parallel::run(blobs.len(), 4, |i| {
        push_blob(store, client, dest, &sources, &blobs[i], events)
    })?;
    let digest = client.put_manifest(
        &dest.registry,
        &dest.repository,
        &reference,
        &media_type,
        &manifest_bytes,
    )?;
    Ok(Pushed {
        digest,
        size: manifest_bytes.len() as u64,
        reference,
    })
}

fn push_blob(
    store: &Store,
    client: &Client,
    dest: &Reference,
    sources: &[String],
    desc: &Descriptor,
    events: &(dyn Fn(&Descriptor, BlobEvent) + Sync),
) -> Result<(), PushError> {
    let (registry, repo) = (dest.registry.as_str(), dest.repository.as_str());
    if client.blob_exists(registry, repo, &desc.digest)? {
        events(desc, BlobEvent::Exists);
        return Ok(());
    }
    for from in sources {
        if client.mount_blob(registry, repo, from, &desc.digest)? {
            events(desc, BlobEvent::Mounted(from.clone()));
            return Ok(());
        }
    }
    events(desc, BlobEvent::Pushing);
    let f = store
        .content()
        .open_blob(&desc.digest)
        .map_err(StoreError::from)?;
    client.push_blob(
        registry,
        repo,
        &desc.digest,
        desc.size,
        Counting {
            inner: BufReader::with_capacity(1 << 20, f),
            n: 0,
            desc,
            events,
        },
    )?;
    events(desc, BlobEvent::Pushed);
    Ok(())
}
