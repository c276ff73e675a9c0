//! A blob download as a `Read`: verified against its descriptor, resumed with `Range` when the connection
//! drops, so a multi-gigabyte layer survives a flaky link without starting over.

use std::io::{self, Read};
use std::time::Duration;

use ureq::BodyReader;

use super::Client;
use crate::digest::Hasher;
use crate::Descriptor;

/// Consecutive failures (without a byte of progress in between) before giving up.
const MAX_RESUMES: u32 = 5;
const RESUME_BACKOFF_START: Duration = Duration::from_millis(250);

pub struct BlobReader {
    client: Client,
    registry: String,
    repo: String,
    desc: Descriptor,
    body: Option<BodyReader<'static>>,
    /// Bytes at the head of `body` already delivered (the registry answered a Range request with 200).
    skip: u64,
    delivered: u64,
    hasher: Option<Hasher>,
    failures: u32,
    done: bool,
}

impl BlobReader {
    pub(crate) fn new(
        client: Client,
        registry: String,
        repo: String,
        desc: Descriptor,
        body: BodyReader<'static>,
        skip: u64,
    ) -> BlobReader {
        let hasher = Some(desc.digest.hasher());
        BlobReader {
            client,
            registry,
            repo,
            desc,
            body: Some(body),
            skip,
            delivered: 0,
            hasher,
            failures: 0,
            done: false,
        }
    }

    pub fn descriptor(&self) -> &Descriptor {
        &self.desc
    }

    /// Bytes handed out so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    fn invalid(&mut self, msg: String) -> io::Error {
        self.done = true;
        self.body = None;
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// Drops the broken connection and waits before the next attempt, or gives up.
    fn failed(&mut self, e: io::Error) -> io::Result<()> {
        self.body = None;
        self.failures += 1;
        if self.failures > MAX_RESUMES {
            self.done = true;
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "blob {} from {}/{}: {e} (at byte {} of {}, after {} attempts)",
                    self.desc.digest,
                    self.registry,
                    self.repo,
                    self.delivered,
                    self.desc.size,
                    self.failures
                ),
            ));
        }
        std::thread::sleep(RESUME_BACKOFF_START * 2u32.saturating_pow(self.failures - 1));
        Ok(())
    }

    fn finish(&mut self) -> io::Result<usize> {
        self.done = true;
        self.body = None;
        let got = match self.hasher.take() {
            Some(h) => h.finish(),
            None => return Ok(0),
        };
        if got != self.desc.digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {} : digest mismatch, got {got}", self.desc.digest),
            ));
        }
        Ok(0)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        loop {
            let body = match self.body.as_mut() {
                Some(b) => b,
                None => {
                    // open_blob already retries connection failures and 5xx; what it reports is final.
                    let (b, skip) = self
                        .client
                        .open_blob(&self.registry, &self.repo, &self.desc, self.delivered)
                        .map_err(|e| {
                            self.done = true;
                            io::Error::other(e)
                        })?;
                    self.skip = skip;
                    self.body.insert(b)
                }
            };
            if self.skip > 0 {
                let mut scratch = [0u8; 16 << 10];
                let want = scratch.len().min(self.skip as usize);
                match body.read(&mut scratch[..want]) {
                    Ok(0) => self.failed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed while skipping already received bytes",
                    ))?,
                    Ok(n) => self.skip -= n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => self.failed(e)?,
                }
                continue;
            }
            let remaining = self.desc.size - self.delivered;
            // One byte past the expected end is enough to tell the registry sends too much.
            let want = buf
                .len()
                .min(usize::try_from(remaining.saturating_add(1)).unwrap_or(usize::MAX));
            match body.read(&mut buf[..want]) {
                Ok(0) if remaining == 0 => return self.finish(),
                Ok(0) => self.failed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the end of the blob",
                ))?,
                Ok(n) if n as u64 > remaining => {
                    return Err(self.invalid(format!(
                        "blob {}: the registry sent more than the expected {} bytes",
                        self.desc.digest, self.desc.size
                    )));
                }
                Ok(n) => {
                    if let Some(h) = self.hasher.as_mut() {
                        h.update(&buf[..n]);
                    }
                    self.delivered += n as u64;
                    self.failures = 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.failed(e)?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    fn _blob_reader_is_send() {
        fn is<T: Send>() {}
        is::<super::BlobReader>();
    }
}
