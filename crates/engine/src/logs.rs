//! docker's `json-file` log driver: the writer used by a container's monitor process and the reader
//! behind `logs` (with `--tail`, `--since`, `--until`, `--timestamps` and `--follow`).
//!
//! One JSON object per line: `{"log":"hello\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
//! A line longer than 16 KiB is split into 16 KiB entries without a trailing newline (docker's copier
//! reads with a 16K buffer); the last piece carries the "\n". A partial line is held until its newline
//! arrives or the stream closes ([`LogWriter::flush_partial`], written without "\n").
//!
//! Rotation follows docker: when the current file would exceed `max_size`, `path.(n-1)` becomes
//! `path.n` ... `path` becomes `path.1` (keeping `max_file - 1` rotated files) and a new file is
//! started; with `max_file` 1 the file is replaced by an empty one. Readers go oldest first.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// docker's copier buffer: longer lines are split into entries of this many bytes.
pub const MAX_ENTRY: usize = 16 * 1024;

/// How often `follow` looks for new entries.
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A bad `--since`/`--until` value; the message names the value.
    #[error("{0}")]
    Invalid(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One entry as logged: `line` keeps its trailing "\n" (absent for split or partial pieces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub time: SystemTime,
    pub line: Vec<u8>,
}

impl LogEntry {
    /// The bytes `docker logs` prints for this entry: the line, prefixed by its RFC3339Nano time and a
    /// space with `timestamps`.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.line.len() + 32);
        if timestamps {
            out.extend_from_slice(format_rfc3339_nano(self.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.line);
        out
    }
}

#[derive(serde::Serialize)]
struct RawOut<'a> {
    log: &'a str,
    stream: &'a str,
    time: &'a str,
}

#[derive(serde::Deserialize)]
struct RawIn {
    log: String,
    stream: String,
    time: String,
}

/// The json-file writer of one container.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: Option<u64>,
    max_file: u32,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (appending to) `path`. `max_size` is docker's `max-size` in bytes (`None` or 0: no
    /// rotation), `max_file` docker's `max-file` (0 is taken as 1).
    pub fn open(path: &Path, max_size: Option<u64>, max_file: u32) -> Result<LogWriter, LogError> {
        let file = open_append(path)?;
        let size = file
            .metadata()
            .map_err(io_err("reading metadata of log file", path))?
            .len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.filter(|&m| m > 0),
            max_file: max_file.max(1),
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Logs `data` read from `stream`: complete lines become entries, a partial line is held until its
    /// newline arrives, a line longer than 16 KiB is written in 16 KiB pieces.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), LogError> {
        let i = stream.index();
        self.partial[i].extend_from_slice(data);
        let mut buf = std::mem::take(&mut self.partial[i]);
        let mut start = 0;
        let result = loop {
            let rest = &buf[start..];
            let window = &rest[..rest.len().min(MAX_ENTRY)];
            let end = match window.iter().position(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None if rest.len() >= MAX_ENTRY => MAX_ENTRY,
                None => break Ok(()),
            };
            if let Err(e) = self.write_entry(stream, &rest[..end]) {
                break Err(e);
            }
            start += end;
        };
        buf.drain(..start);
        self.partial[i] = buf;
        result
    }

    /// Writes the held partial lines (without "\n"), as at the close of the streams.
    pub fn flush_partial(&mut self) -> Result<(), LogError> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let buf = std::mem::take(&mut self.partial[stream.index()]);
            if !buf.is_empty() {
                self.write_entry(stream, &buf)?;
            }
        }
        Ok(())
    }

    fn write_entry(&mut self, stream: Stream, line: &[u8]) -> Result<(), LogError> {
        let text = String::from_utf8_lossy(line);
        let time = format_rfc3339_nano(SystemTime::now());
        let raw = RawOut {
            log: &text,
            stream: stream.as_str(),
            time: &time,
        };
        let mut json = serde_json::to_vec(&raw)
            .map_err(|e| LogError::Invalid(format!("encoding log entry: {e}")))?;
        json.push(b'\n');
        if let Some(max) = self.max_size {
            if self.size > 0 && self.size + json.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file
            .write_all(&json)
            .map_err(io_err("writing log file", &self.path))?;
        self.size += json.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let path = self.path.clone();
        if self.max_file > 1 {
            for n in (1..self.max_file - 1).rev() {
                let from = rotated(&path, n);
                if from.exists() {
                    fs::rename(&from, rotated(&path, n + 1))
                        .map_err(io_err("rotating log file", &from))?;
                }
            }
            fs::rename(&path, rotated(&path, 1)).map_err(io_err("rotating log file", &path))?;
        } else {
            // A new file rather than truncating in place: followers notice the replacement.
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing log file", &path)(e)),
            }
        }
        self.file = open_append(&path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("opening log file", path))
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// What `logs` shows.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The last N entries (after filtering); `None`: all.
    pub tail: Option<usize>,
    /// Entries at or after this time.
    pub since: Option<SystemTime>,
    /// Entries at or before this time (`follow` also stops once it has passed).
    pub until: Option<SystemTime>,
    /// For the caller's rendering ([`LogEntry::render`]); reading ignores it.
    pub timestamps: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            tail: None,
            since: None,
            until: None,
            timestamps: false,
            stdout: true,
            stderr: true,
        }
    }
}

impl ReadOptions {
    fn wants(&self, e: &LogEntry) -> bool {
        let stream = match e.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        stream && self.since.is_none_or(|s| e.time >= s) && self.until.is_none_or(|u| e.time <= u)
    }
}

fn apply_tail(entries: &mut Vec<LogEntry>, tail: Option<usize>) {
    if let Some(n) = tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
}

/// Reads the log at `path` and its rotated files, oldest first. Corrupt lines are skipped.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Vec<LogEntry>, LogError> {
    let set = open_set(path)?;
    let mut entries = Vec::new();
    let mut push = |e: LogEntry| {
        if opts.wants(&e) {
            entries.push(e);
        }
        true
    };
    for f in set.rotated {
        let mut c = Cursor::new(f);
        c.drain(true, &mut push)?;
    }
    if let Some(f) = set.current {
        let mut c = Cursor::new(f);
        c.drain(true, &mut push)?;
    }
    apply_tail(&mut entries, opts.tail);
    Ok(entries)
}

/// Delivers the existing entries (honouring `tail`/`since`) and then new ones as they are appended,
/// across rotations, until `out` returns false, `stop()` is true and everything written before has
/// been delivered, or `until` has passed.
pub fn follow(
    path: &Path,
    opts: &ReadOptions,
    out: &mut dyn FnMut(&LogEntry) -> bool,
    stop: &dyn Fn() -> bool,
) -> Result<(), LogError> {
    // The existing entries.
    let set = open_set(path)?;
    let mut last_id = set.current.as_ref().or(set.rotated.last()).map(|f| f.id);
    let mut existing = Vec::new();
    let mut collect = |e: LogEntry| {
        if opts.wants(&e) {
            existing.push(e);
        }
        true
    };
    for f in set.rotated {
        Cursor::new(f).drain(true, &mut collect)?;
    }
    let mut cur = match set.current {
        Some(f) => {
            let mut c = Cursor::new(f);
            c.drain(false, &mut collect)?;
            Some(c)
        }
        None => None,
    };
    apply_tail(&mut existing, opts.tail);
    for e in &existing {
        if !out(e) {
            return Ok(());
        }
    }
    drop(existing);

    let mut emit = |e: LogEntry| !opts.wants(&e) || out(&e);
    loop {
        let stopping = stop() || opts.until.is_some_and(|u| SystemTime::now() > u);
        loop {
            if let Some(c) = cur.as_mut() {
                if !c.drain(false, &mut emit)? {
                    return Ok(());
                }
            }
            let now_id = match fs::metadata(path) {
                Ok(m) => Some(file_id(&m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err("reading metadata of log file", path)(e)),
            };
            if now_id.is_some() && now_id == cur.as_ref().map(|c| c.id) {
                break;
            }
            // The file was rotated, replaced or is being replaced.
            let set = open_set(path)?;
            let pos = last_id.and_then(|id| set.rotated.iter().position(|f| f.id == id));
            let newer: Vec<Opened> = match pos {
                Some(p) => set.rotated.into_iter().skip(p + 1).collect(),
                // Ours was dropped: every rotated file is newer, provided a new one has started.
                None if set.current.is_some() => set.rotated,
                None => Vec::new(),
            };
            if pos.is_none() && set.current.is_none() {
                // Deleted, not rotated: nothing newer to read.
                break;
            }
            if let Some(mut c) = cur.take() {
                if !c.drain(true, &mut emit)? {
                    return Ok(());
                }
            }
            for f in newer {
                last_id = Some(f.id);
                if !Cursor::new(f).drain(true, &mut emit)? {
                    return Ok(());
                }
            }
            match set.current {
                Some(f) => {
                    last_id = Some(f.id);
                    cur = Some(Cursor::new(f));
                }
                // Mid-rotation: the new file appears on a later poll.
                None => break,
            }
        }
        if stopping {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

type FileId = (u64, u64);

fn file_id(m: &fs::Metadata) -> FileId {
    (m.dev(), m.ino())
}

struct Opened {
    file: File,
    id: FileId,
    path: PathBuf,
}

/// The rotated files (oldest first) and the current file, opened together so that a rotation while
/// opening is noticed (and retried).
struct FileSet {
    rotated: Vec<Opened>,
    current: Option<Opened>,
}

fn open_id(path: &Path) -> Result<Option<Opened>, LogError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("opening log file", path)(e)),
    };
    let m = file
        .metadata()
        .map_err(io_err("reading metadata of log file", path))?;
    Ok(Some(Opened {
        file,
        id: file_id(&m),
        path: path.to_path_buf(),
    }))
}

fn stat_id(path: &Path) -> Option<FileId> {
    fs::metadata(path).ok().map(|m| file_id(&m))
}

fn open_set(path: &Path) -> Result<FileSet, LogError> {
    let mut attempt = 0;
    loop {
        let mut names = Vec::new();
        let mut n = 1;
        while fs::symlink_metadata(rotated(path, n)).is_ok() {
            names.push(rotated(path, n));
            n += 1;
        }
        let mut rotated_files = Vec::new();
        for name in names.iter().rev() {
            if let Some(o) = open_id(name)? {
                rotated_files.push(o);
            }
        }
        let current = open_id(path)?;
        let stable = rotated_files.len() == names.len()
            && rotated_files.iter().all(|o| stat_id(&o.path) == Some(o.id))
            && current.as_ref().is_none_or(|o| stat_id(path) == Some(o.id))
            && fs::symlink_metadata(rotated(path, n)).is_err();
        attempt += 1;
        if stable || attempt >= 20 {
            return Ok(FileSet {
                rotated: rotated_files,
                current,
            });
        }
    }
}

/// A read position in one open log file, holding an incomplete last line.
struct Cursor {
    file: File,
    id: FileId,
    path: PathBuf,
    pos: u64,
    buf: Vec<u8>,
}

impl Cursor {
    fn new(o: Opened) -> Cursor {
        Cursor {
            file: o.file,
            id: o.id,
            path: o.path,
            pos: 0,
            buf: Vec::new(),
        }
    }

    /// Reads to the end of the file and hands each parsed entry to `emit` (false: stop, and this
    /// returns false). With `last`, an unterminated final line is parsed too (else held).
    fn drain(
        &mut self,
        last: bool,
        emit: &mut dyn FnMut(LogEntry) -> bool,
    ) -> Result<bool, LogError> {
        let len = self
            .file
            .metadata()
            .map_err(io_err("reading metadata of log file", &self.path))?
            .len();
        if len < self.pos {
            // Truncated in place: start over.
            use std::io::Seek;
            self.file
                .seek(io::SeekFrom::Start(0))
                .map_err(io_err("reading log file", &self.path))?;
            self.pos = 0;
            self.buf.clear();
        }
        let before = self.buf.len();
        let n = (&self.file)
            .read_to_end(&mut self.buf)
            .map_err(io_err("reading log file", &self.path))?;
        self.pos += n as u64;
        let mut start = 0;
        let mut search = before;
        while let Some(nl) = self.buf[search..].iter().position(|&b| b == b'\n') {
            let end = search + nl;
            if let Some(e) = parse_line(&self.buf[start..end]) {
                if !emit(e) {
                    self.buf.drain(..end + 1);
                    return Ok(false);
                }
            }
            start = end + 1;
            search = start;
        }
        self.buf.drain(..start);
        if last && !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            if let Some(e) = parse_line(&rest) {
                return Ok(emit(e));
            }
        }
        Ok(true)
    }
}

/// One json-file line; `None` for a corrupt one (half-written after a crash, unknown stream, bad time).
fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let raw: RawIn = serde_json::from_slice(line).ok()?;
    let stream = match raw.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let time = parse_rfc3339(&raw.time)?;
    Some(LogEntry {
        stream,
        time,
        line: raw.log.into_bytes(),
    })
}

// ---- time ----

fn to_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn from_nanos(n: i128) -> Option<SystemTime> {
    let secs = n.unsigned_abs() / 1_000_000_000;
    let d = Duration::new(
        u64::try_from(secs).ok()?,
        (n.unsigned_abs() % 1_000_000_000) as u32,
    );
    if n >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC3339 with 9 fraction digits in UTC, as docker's json-file writes: `2024-01-02T03:04:05.123456789Z`.
pub fn format_rfc3339_nano(t: SystemTime) -> String {
    let n = to_nanos(t);
    let secs = n.div_euclid(1_000_000_000) as i64;
    let nanos = n.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

fn lit<'a>(s: &'a str, c: &[u8]) -> Option<&'a str> {
    let b = *s.as_bytes().first()?;
    c.contains(&b).then(|| &s[1..])
}

/// Nanoseconds of a fraction's digits (at most 9 are significant).
fn fraction_nanos(f: &str) -> Option<i128> {
    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: i128 = 0;
    for (i, b) in f.bytes().enumerate() {
        if i < 9 {
            n = n * 10 + i128::from(b - b'0');
        }
    }
    for _ in f.len()..9 {
        n *= 10;
    }
    Some(n)
}

/// `YYYY-MM-DD`, optionally `THH:MM:SS[.frac]`, optionally `Z` or `±HH:MM` (no zone: UTC).
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let (y, s) = digits(s, 4)?;
    let s = lit(s, b"-")?;
    let (mo, s) = digits(s, 2)?;
    let s = lit(s, b"-")?;
    let (d, s) = digits(s, 2)?;
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(i64::from(y), mo) {
        return None;
    }
    let mut secs = days_from_civil(i64::from(y), mo, d) * 86_400;
    let mut nanos: i128 = 0;
    let mut s = s;
    if !s.is_empty() {
        s = lit(s, b"Tt ")?;
        let (h, r) = digits(s, 2)?;
        let r = lit(r, b":")?;
        let (mi, r) = digits(r, 2)?;
        let r = lit(r, b":")?;
        let (se, r) = digits(r, 2)?;
        if h > 23 || mi > 59 || se > 60 {
            return None;
        }
        secs += i64::from(h * 3600 + mi * 60 + se);
        s = r;
        if let Some(r) = s.strip_prefix('.') {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            nanos = fraction_nanos(&r[..end])?;
            s = &r[end..];
        }
        if let Some(r) = lit(s, b"Zz") {
            s = r;
        } else if let Some(sign) = s
            .as_bytes()
            .first()
            .copied()
            .filter(|b| *b == b'+' || *b == b'-')
        {
            let (oh, r) = digits(&s[1..], 2)?;
            let r = lit(r, b":")?;
            let (om, r) = digits(r, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = i64::from(oh * 3600 + om * 60);
            secs -= if sign == b'+' { off } else { -off };
            s = r;
        }
    }
    if !s.is_empty() {
        return None;
    }
    from_nanos(i128::from(secs) * 1_000_000_000 + nanos)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Go's `time.ParseDuration` for non-negative values: `10m`, `1h30m`, `1.5h`, `300ms`, `42s`.
fn parse_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// docker's `--since`/`--until` value: an RFC3339 time (`2024-01-02T03:04:05Z`, with a fraction or
/// an offset; a date or a time without zone is taken as UTC), unix seconds (`1700000000`,
/// `1700000000.5`) or a duration before `now` (`10m`, `1h30m`, `42s`).
pub fn parse_since(s: &str, now: SystemTime) -> Result<SystemTime, LogError> {
    let bad = || {
        LogError::Invalid(format!(
            "invalid time value {s:?}: want RFC3339, unix seconds or a duration like 10m"
        ))
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') && t.as_bytes()[0].is_ascii_digit() {
        let (secs, frac) = match t.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let secs: i128 = secs.parse().map_err(|_| bad())?;
        let nanos = match frac {
            Some(f) => fraction_nanos(f).ok_or_else(bad)?,
            None => 0,
        };
        return from_nanos(secs * 1_000_000_000 + nanos).ok_or_else(bad);
    }
    if let Some(d) = parse_duration(t) {
        return now.checked_sub(d).ok_or_else(bad);
    }
    parse_rfc3339(t).ok_or_else(bad)
}

#[cfg(test)]
#[path = "logs_tests.rs"]
mod tests;
