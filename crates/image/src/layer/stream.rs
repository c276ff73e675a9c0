//! The decompressed, hashed view of a layer blob that the tar parser reads.

use std::io::{self, BufRead, BufReader, Read};

use crate::digest::Hasher;
use crate::Compression;

use super::LayerError;

pub(super) enum Decoder<R: Read> {
    None(R),
    Gzip(Box<flate2::read::MultiGzDecoder<R>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    pub(super) fn new(input: R, compression: Compression) -> Result<Self, LayerError> {
        Ok(match compression {
            Compression::None => Decoder::None(input),
            // Multi-member: `gzip` of concatenated files and some pigz outputs are several members, and
            // a plain GzDecoder would stop after the first one and leave the rest unread.
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(input))),
            // The default decoder concatenates frames until EOF and reports an incomplete last frame
            // as an error, which is what a layer needs.
            Compression::Zstd => Decoder::Zstd(
                zstd::stream::read::Decoder::new(input)
                    .map_err(|source| LayerError::Stream { source })?,
            ),
        })
    }

    /// Checks that the decoders left nothing of the blob unread, once the decompressed stream hit EOF.
    pub(super) fn finish(self) -> Result<(), LayerError> {
        let stream = |source| LayerError::Stream { source };
        let mut probe = [0u8; 1];
        let rest = match self {
            // EOF of the plain stream is EOF of the input.
            Decoder::None(_) => 0,
            Decoder::Gzip(d) => read_retrying(&mut d.into_inner(), &mut probe).map_err(stream)?,
            Decoder::Zstd(d) => d.finish().fill_buf().map_err(stream)?.len(),
        };
        if rest != 0 {
            return Err(LayerError::TrailingData);
        }
        Ok(())
    }
}

fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::None(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// Hashes and counts every decompressed byte, so the diff_id covers exactly what the tar parser consumed
/// plus whatever `apply` drains after the end-of-archive marker.
pub(super) struct Hashing<R> {
    pub(super) inner: R,
    pub(super) hasher: Hasher,
    pub(super) size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}
