//! Response bodies (nothing, a small buffer, or a file streamed in large reads) and reading request bodies
//! frame by frame, so no blob is ever held in memory whole.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};

/// Reads of a served blob: large enough for few syscalls and blocking-pool hops, small per connection.
const FILE_CHUNK: usize = 256 << 10;

pub enum Body {
    Empty,
    Full(Option<Bytes>),
    File {
        file: tokio::fs::File,
        remaining: u64,
        buf: BytesMut,
    },
}

impl Body {
    pub fn full(b: impl Into<Bytes>) -> Body {
        Body::Full(Some(b.into()))
    }

    pub fn file(file: tokio::fs::File, len: u64) -> Body {
        Body::File {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::File {
                file,
                remaining,
                buf,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                if buf.capacity() == 0 {
                    buf.reserve((*remaining).min(FILE_CHUNK as u64) as usize);
                }
                match tokio_util::io::poll_read_buf(Pin::new(file), cx, buf) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(0)) => Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob file shorter than its size",
                    )))),
                    Poll::Ready(Ok(_)) => {
                        let take = (buf.len() as u64).min(*remaining) as usize;
                        let chunk = buf.split_to(take).freeze();
                        buf.clear();
                        *remaining -= take as u64;
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

/// The next data chunk of a request body (trailers skipped), `None` at its end.
pub async fn next_chunk(body: &mut Incoming) -> Option<Result<Bytes, hyper::Error>> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Err(e) => return Some(Err(e)),
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    return Some(Ok(data));
                }
            }
        }
    }
}

/// Reads a whole small body, refusing more than `max` bytes (returns `Ok(None)` when over).
pub async fn read_limited(body: &mut Incoming, max: u64) -> Result<Option<Vec<u8>>, hyper::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = next_chunk(body).await {
        let chunk = chunk?;
        if out.len() as u64 + chunk.len() as u64 > max {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}
