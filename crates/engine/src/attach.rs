//! The monitor's attach socket (`<container dir>/attach`): how `run` (in the foreground), `attach`, `start -a`,
//! `wait` and `stop` reach a running container's monitor.
//!
//! A client connects and sends one hello byte (which streams it wants, whether it sends stdin). After that both
//! sides send frames like docker's stdcopy stream: `[kind u8][0 0 0][length u32 big-endian][payload]`.
//! Client -> monitor: STDIN, STDIN_EOF, RESIZE (rows u16, cols u16), SIGNAL (i32).
//! Monitor -> client: STDOUT, STDERR, EXIT (code i32, sent when the container's process has exited and its
//! output is drained; the monitor may go on to restart it), ERROR (text).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 4;
pub const STDIN_EOF: u8 = 5;
pub const SIGNAL: u8 = 6;
pub const ERROR: u8 = 7;

/// Hello bits.
pub const WANT_STDOUT: u8 = 1;
pub const WANT_STDERR: u8 = 2;
pub const SENDS_STDIN: u8 = 4;

pub const HEADER: usize = 8;
/// Frames larger than this are a protocol error.
pub const MAX_FRAME: usize = 1 << 20;

pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    f.push(kind);
    f.extend_from_slice(&[0, 0, 0]);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Splits complete frames off the front of `buf`.
pub fn take_frame(buf: &mut Vec<u8>) -> io::Result<Option<(u8, Vec<u8>)>> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes"),
        ));
    }
    if buf.len() < HEADER + len {
        return Ok(None);
    }
    let kind = buf[0];
    let payload = buf[HEADER..HEADER + len].to_vec();
    buf.drain(..HEADER + len);
    Ok(Some((kind, payload)))
}

/// `path` may be longer than a sockaddr_un allows: connect through the directory's /proc/self/fd entry.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default();
    let d = std::fs::File::open(dir)?;
    use std::os::fd::AsRawFd;
    let short = Path::new("/proc/self/fd")
        .join(d.as_raw_fd().to_string())
        .join(name);
    UnixStream::connect(short)
}

/// What a client reads from the monitor.
#[derive(Debug, PartialEq)]
pub enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
    Error(String),
    /// The monitor went away without an exit frame.
    Closed,
}

pub struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(socket: &Path, hello: u8) -> io::Result<Client> {
        let mut stream = connect(socket)?;
        stream.write_all(&[hello])?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    /// A writer half for another thread (stdin, resizes, signals).
    pub fn sender(&self) -> io::Result<Sender> {
        Ok(Sender {
            stream: self.stream.try_clone()?,
        })
    }

    pub fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    /// The next event; a read timeout surfaces as an io error of kind WouldBlock/TimedOut.
    pub fn next_event(&mut self) -> io::Result<Event> {
        loop {
            if let Some((kind, payload)) = take_frame(&mut self.buf)? {
                return Ok(match kind {
                    STDOUT => Event::Stdout(payload),
                    STDERR => Event::Stderr(payload),
                    EXIT => {
                        let mut b = [0u8; 4];
                        let n = payload.len().min(4);
                        b[..n].copy_from_slice(&payload[..n]);
                        Event::Exit(i32::from_be_bytes(b))
                    }
                    ERROR => Event::Error(String::from_utf8_lossy(&payload).into_owned()),
                    _ => continue,
                });
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(Event::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the exit frame (output is dropped).
    pub fn wait_exit(&mut self) -> io::Result<Option<i32>> {
        loop {
            match self.next_event()? {
                Event::Exit(c) => return Ok(Some(c)),
                Event::Closed => return Ok(None),
                _ => {}
            }
        }
    }
}

pub struct Sender {
    stream: UnixStream,
}

impl Sender {
    pub fn stdin(&mut self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(64 * 1024) {
            self.stream.write_all(&frame(STDIN, chunk))?;
        }
        Ok(())
    }

    pub fn stdin_eof(&mut self) -> io::Result<()> {
        self.stream.write_all(&frame(STDIN_EOF, &[]))
    }

    pub fn resize(&mut self, rows: u16, cols: u16) -> io::Result<()> {
        let mut p = rows.to_be_bytes().to_vec();
        p.extend_from_slice(&cols.to_be_bytes());
        self.stream.write_all(&frame(RESIZE, &p))
    }

    pub fn signal(&mut self, sig: i32) -> io::Result<()> {
        self.stream.write_all(&frame(SIGNAL, &sig.to_be_bytes()))
    }
}
