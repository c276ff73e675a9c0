//! The per-container monitor (podman's conmon is the model): berth re-executed as `berth container-monitor ID`.
//! It holds the container's lock for its whole life, creates and starts the container through the OCI runtime
//! as its child subreaper (so the container's process is its child to wait for), holds the process's stdio or
//! pty, writes the json-file log, serves the attach socket, records the exit code (first in the exit file,
//! then in the records), applies the restart policy and, with --rm, removes the container.
//!
//! It is single-threaded: one poll loop over the output pipes or pty, a signalfd for SIGCHLD, the attach
//! listener and its clients. The CLI that spawned it reads "ready", "ok" or "error CODE MESSAGE" lines from
//! descriptor 3; descriptor 4 is the container lock, already taken.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use image::snapshot::Driver;
use image::Digest;

use crate::attach::{self, frame};
use crate::container::{io_err, settings_of, Engine, EngineError, Paths, Settings};
use crate::lock::Lock;
use crate::logs::{LogWriter, Stream};
use crate::oci::{self, Oci, OciError};
use crate::records::{now_nanos, Container, StateChange};
use crate::spec::NetworkMode;

pub const SYNC_FD: RawFd = 3;
pub const LOCK_FD: RawFd = 4;

/// How long the monitor keeps reading output after the container's process exited (other holders of the
/// pipes, if any, are cut off after this).
const DRAIN: Duration = Duration::from_secs(2);
/// A client that falls this far behind is dropped rather than stalling the container's output.
const MAX_CLIENT_BACKLOG: usize = 16 << 20;

pub struct MonitorArgs {
    pub root: PathBuf,
    pub driver: Driver,
    pub exe: PathBuf,
    pub id: String,
    pub wait_attach: bool,
}

/// The monitor's entry point; returns the process exit code. Called in a fresh, single-threaded process.
pub fn main(args: MonitorArgs) -> i32 {
    // SAFETY: the spawning command put these descriptors there for us and nobody else owns them.
    let (sync, lock_fd) = unsafe { (OwnedFd::from_raw_fd(SYNC_FD), OwnedFd::from_raw_fd(LOCK_FD)) };
    for fd in [sync.as_raw_fd(), lock_fd.as_raw_fd()] {
        // SAFETY: fcntl on descriptors we own. The container must not inherit the lock.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // Leave the caller: the CLI waits for this first process only; the monitor proper is re-parented to init
    // (or the nearest subreaper) and leads its own session, so the CLI's terminal and signals do not reach it.
    // SAFETY: this process is single-threaded here; the child continues normally, the parent only _exits.
    match unsafe { libc::fork() } {
        -1 => return 125,
        0 => {}
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain syscalls.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let mut sync = Some(File::from(sync));
    let lock = Lock::from_inherited(lock_fd);
    let result = run(&args, &mut sync);
    if let Err(e) = &result {
        if let Some(s) = sync.as_mut() {
            let _ = writeln!(s, "error {} {}", e.exit_code(), one_line(&e.to_string()));
        }
    }
    drop(lock);
    i32::from(result.is_err())
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

struct ClientConn {
    stream: UnixStream,
    hello: Option<u8>,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    closed: bool,
}

impl ClientConn {
    fn wants(&self, kind: u8) -> bool {
        match (self.hello, kind) {
            (None, _) => false,
            (Some(h), attach::STDOUT) => h & attach::WANT_STDOUT != 0,
            (Some(h), attach::STDERR) => h & attach::WANT_STDERR != 0,
            _ => true,
        }
    }

    fn queue(&mut self, kind: u8, payload: &[u8]) {
        if self.closed || !self.wants(kind) {
            return;
        }
        self.outbuf.extend_from_slice(&frame(kind, payload));
        if self.outbuf.len() > MAX_CLIENT_BACKLOG {
            self.closed = true;
        }
    }

    fn flush(&mut self) {
        while !self.outbuf.is_empty() && !self.closed {
            match self.stream.write(&self.outbuf) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }
}

/// The running container's end of things.
struct Io {
    pid: i32,
    /// stdout pipe, or the pty master (read side).
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// stdin pipe, or a dup of the pty master.
    stdin: Option<OwnedFd>,
    stdin_pending: Vec<u8>,
    tty: bool,
}

struct Monitor {
    listener: UnixListener,
    clients: Vec<ClientConn>,
    log: LogWriter,
    sigfd: OwnedFd,
    /// The embedded DNS server of a container on a user-defined network, while it runs.
    dns: Option<net::dns::Server>,
}

fn nonblocking(fd: BorrowedFd<'_>) {
    // SAFETY: fcntl on a valid descriptor.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// A unix socket path short enough for sockaddr_un: the real one if it fits, else through /proc/<pid>/fd/<dir>.
fn short_socket_path(path: &Path, dir: &File, pid: &str) -> PathBuf {
    if path.as_os_str().len() < 100 {
        return path.to_path_buf();
    }
    Path::new("/proc")
        .join(pid)
        .join("fd")
        .join(dir.as_raw_fd().to_string())
        .join(path.file_name().unwrap_or_default())
}

fn signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigset manipulation and signalfd on our own mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn exit_code_of(status: i32) -> i64 {
    if libc::WIFEXITED(status) {
        i64::from(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        128 + i64::from(libc::WTERMSIG(status))
    } else {
        255
    }
}

fn run(args: &MonitorArgs, sync: &mut Option<File>) -> Result<(), EngineError> {
    let engine = Engine::open_plain(&args.root, args.driver, &args.exe)?;
    let c = engine.get(&args.id)?;
    let settings = settings_of(&c);
    let paths = engine.paths(&c.id);
    let oci = engine.oci(&c)?;
    let image_id = Digest::parse(&c.image_id)
        .map_err(|e| EngineError::Invalid(format!("container {}: image id: {e}", c.id)))?;
    let dir = File::open(&paths.dir).map_err(|e| EngineError::Io {
        what: "open",
        path: paths.dir.clone(),
        source: e,
    })?;
    let my_pid = std::process::id().to_string();
    let attach_path = paths.attach();
    let _ = fs::remove_file(&attach_path);
    let listener = UnixListener::bind(short_socket_path(&attach_path, &dir, "self"))
        .map_err(io_err("listen on", &attach_path))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("listen on", &attach_path))?;
    let log = LogWriter::open(
        &paths.log(&c.id),
        settings.log_max_size,
        settings.log_max_file,
    )
    .map_err(|e| EngineError::Invalid(e.to_string()))?;
    let sigfd = signalfd().map_err(io_err("signalfd", &paths.dir))?;
    let mut m = Monitor {
        listener,
        clients: Vec::new(),
        log,
        sigfd,
        dns: None,
    };

    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    let mut engine = Some(engine);
    loop {
        let mut engine = match engine.take() {
            Some(e) => e,
            None => Engine::open_plain(&args.root, args.driver, &args.exe)?,
        };
        engine.store()?.remount(&c.id, &image_id)?;
        let launched = launch(&oci, &c, &paths, &settings, &dir, &my_pid).and_then(|io| {
            match settings.run.network {
                NetworkMode::None => {
                    loopback_up(io.pid).map_err(io_err("bring up lo in", &paths.dir))?
                }
                // Between create and start: the process exists, its command has not run yet.
                NetworkMode::Bridge => crate::network::connect_running(&args.root, &c.id, io.pid)?,
                NetworkMode::Host | NetworkMode::Container => {}
            }
            Ok(io)
        });
        let mut io = match launched {
            Ok(io) => io,
            Err(e) => return fail(&mut engine, &mut m, &oci, &c, &settings, first, e),
        };
        if settings.run.network == NetworkMode::Bridge {
            match crate::network::start_dns(&args.root, &c.id, io.pid, &settings.run) {
                Ok(d) => m.dns = d,
                Err(e) => return fail(&mut engine, &mut m, &oci, &c, &settings, first, e),
            }
        }
        if first && args.wait_attach {
            if let Some(s) = sync.as_mut() {
                let _ = writeln!(s, "ready");
            }
            m.wait_for_client(sync.as_ref(), Duration::from_secs(60));
        }
        if let Err(e) = oci.start(&c.id) {
            return fail(&mut engine, &mut m, &oci, &c, &settings, first, e.into());
        }
        let started = Instant::now();
        engine.records().set_state(
            &c.id,
            &StateChange::Running {
                pid: i64::from(io.pid),
                monitor_pid: Some(i64::from(std::process::id() as i32)),
                started_at: now_nanos(),
            },
        )?;
        if first {
            if let Some(mut s) = sync.take() {
                let _ = writeln!(s, "ok");
            }
        }
        first = false;

        // The steady state needs the poll loop only: let go of the databases and the start-up's memory.
        drop(engine);
        shrink();
        let code = m.pump(&mut io);
        let mut engine = Engine::open_plain(&args.root, args.driver, &args.exe)?;
        let _ = fs::write(paths.exit(), code.to_string());
        let _ = oci.delete(&c.id, true);
        if settings.run.network == NetworkMode::Bridge {
            m.dns = None;
            crate::network::disconnect_stopped(&args.root, &c.id);
        }

        let now = engine.get(&c.id)?;
        let manual = paths.stopped().exists();
        if !manual && settings.restart.restarts(code, now.restart_count) {
            m.broadcast(attach::EXIT, &(code as i32).to_be_bytes());
            engine
                .records()
                .set_state(&c.id, &StateChange::Restarting)?;
            if started.elapsed() >= Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            let until = Instant::now() + backoff;
            backoff = (backoff * 2).min(Duration::from_secs(60));
            while Instant::now() < until && !paths.stopped().exists() {
                m.idle(Duration::from_millis(100));
            }
            if !paths.stopped().exists() {
                continue;
            }
        }
        engine.records().set_state(
            &c.id,
            &StateChange::Exited {
                exit_code: code,
                finished_at: now_nanos(),
                oom_killed: false,
            },
        )?;
        let _ = m.log.flush_partial();
        let _ = engine.store()?.unmount_active(&c.id);
        if settings.auto_remove {
            let c = engine.get(&c.id)?;
            engine.destroy(&c, &settings, true)?;
        }
        m.broadcast(attach::EXIT, &(code as i32).to_be_bytes());
        m.flush_all(Duration::from_secs(5));
        return Ok(());
    }
}

/// A start that failed: the container goes back to not running (and away, with --rm); the CLI hears why.
fn fail(
    engine: &mut Engine,
    m: &mut Monitor,
    oci: &Oci,
    c: &Container,
    settings: &Settings,
    first: bool,
    e: EngineError,
) -> Result<(), EngineError> {
    let e = match e {
        EngineError::Oci(o) => EngineError::StartFailed {
            code: o.exit_code(),
            message: o.to_string(),
        },
        other => other,
    };
    let _ = oci.delete(&c.id, true);
    if let Ok(store) = engine.store() {
        let _ = store.unmount_active(&c.id);
    }
    if settings.run.network == NetworkMode::Bridge {
        crate::network::disconnect_stopped(engine.root(), &c.id);
    }
    let code = e.exit_code();
    if !first {
        let _ = engine.records().set_state(
            &c.id,
            &StateChange::Exited {
                exit_code: i64::from(code),
                finished_at: now_nanos(),
                oom_killed: false,
            },
        );
    }
    if settings.auto_remove {
        if let Ok(c) = engine.get(&c.id) {
            let _ = engine.destroy(&c, settings, true);
        }
    }
    m.broadcast(attach::ERROR, e.to_string().as_bytes());
    m.broadcast(attach::EXIT, &code.to_be_bytes());
    m.flush_all(Duration::from_secs(2));
    Err(e)
}

/// Gives the kernel back what start-up used: freed heap (SQLite's caches, serde buffers) and the resident
/// pages of code and read-only data (argument parsing, SQLite, spec handling...) that the poll loop does not
/// use. Only mappings that are not writable and hold no page that differs from the file (no anonymous,
/// copy-on-written page: relocated data stays) are dropped, so a later access faults the same bytes back in
/// from the page cache.
fn shrink() {
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut current: Option<(usize, usize, bool)> = None;
    let drop_range = |r: Option<(usize, usize, bool)>| {
        if let Some((a, b, true)) = r {
            // SAFETY: MADV_DONTNEED on our own read-only file mapping whose pages all equal the file's.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
                // Fault only the page that is touched again, not the 64 KiB around it.
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_RANDOM);
            }
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                drop_range(current.take());
                let perms = f.next().unwrap_or("");
                let _offset = f.next();
                let _dev = f.next();
                let inode = f.next().unwrap_or("0");
                let file_backed = inode != "0";
                current = Some((a, b, file_backed && !perms.contains('w')));
                continue;
            }
        }
        if first == "Anonymous:" && f.next().is_some_and(|v| v != "0") {
            if let Some(c) = current.as_mut() {
                c.2 = false;
            }
        }
    }
    drop_range(current.take());
    // The start-up's deepest calls touched stack pages far below where the loop runs: everything more than
    // 64 KiB below this frame is dead and may go (it comes back as zero pages if ever needed).
    let here = &smaps as *const String as usize;
    for line in smaps.lines() {
        if !line.ends_with("[stack]") {
            continue;
        }
        let range = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = range.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let keep_from = (here.saturating_sub(64 << 10)) & !4095;
                if a < keep_from && here < b {
                    // SAFETY: the range lies below the live part of our own stack.
                    unsafe {
                        libc::madvise(a as *mut libc::c_void, keep_from - a, libc::MADV_DONTNEED)
                    };
                }
            }
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

/// `runtime create`: the container's process exists, waiting for `start`.
fn launch(
    oci: &Oci,
    c: &Container,
    paths: &Paths,
    settings: &Settings,
    dir: &File,
    my_pid: &str,
) -> Result<Io, EngineError> {
    let tty = settings.run.tty;
    let _ = fs::remove_file(paths.runtime_log());
    let _ = fs::remove_file(paths.pid());
    let mut cmd = oci.command();
    cmd.arg("--log")
        .arg(paths.runtime_log())
        .arg("--log-format")
        .arg("json")
        .arg("create")
        .arg("--bundle")
        .arg(&paths.dir)
        .arg("--pid-file")
        .arg(paths.pid());
    let mut console = None;
    let (mut out, mut err, mut stdin) = (None, None, None);
    if tty {
        let cpath = paths.console();
        let _ = fs::remove_file(&cpath);
        let l = UnixListener::bind(short_socket_path(&cpath, dir, "self"))
            .map_err(io_err("listen on", &cpath))?;
        cmd.arg("--console-socket")
            .arg(short_socket_path(&cpath, dir, my_pid));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        console = Some(l);
    } else {
        let (or, ow) = pipe().map_err(io_err("pipe", &paths.dir))?;
        let (er, ew) = pipe().map_err(io_err("pipe", &paths.dir))?;
        cmd.stdout(Stdio::from(ow)).stderr(Stdio::from(ew));
        if settings.interactive {
            let (ir, iw) = pipe().map_err(io_err("pipe", &paths.dir))?;
            cmd.stdin(Stdio::from(ir));
            stdin = Some(iw);
        } else {
            cmd.stdin(Stdio::null());
        }
        out = Some(or);
        err = Some(er);
    }
    cmd.arg(&c.id);
    let status = cmd.status().map_err(|source| OciError::Spawn {
        bin: oci.bin.clone(),
        source,
    })?;
    // The write ends went into the runtime (and the container); ours close with the command.
    drop(cmd);
    if !status.success() {
        let message =
            oci::log_error(&paths.runtime_log()).unwrap_or_else(|| format!("runtime {status}"));
        return Err(OciError::Failed {
            op: "create",
            message,
        }
        .into());
    }
    let pid_text = fs::read_to_string(paths.pid()).map_err(io_err("read", &paths.pid()))?;
    let pid: i32 = pid_text.trim().parse().map_err(|_| {
        EngineError::Invalid(format!(
            "{}: not a pid: {:?}",
            paths.pid().display(),
            pid_text.trim()
        ))
    })?;
    if let Some(l) = console {
        let master =
            receive_master(&l).map_err(io_err("receive the pty from", &paths.console()))?;
        let _ = fs::remove_file(paths.console());
        let w = master
            .try_clone()
            .map_err(io_err("dup pty", &paths.console()))?;
        out = Some(master);
        stdin = Some(w);
    }
    for fd in [&out, &err, &stdin].into_iter().flatten() {
        nonblocking(fd.as_fd());
    }
    Ok(Io {
        pid,
        out,
        err,
        stdin,
        stdin_pending: Vec::new(),
        tty,
    })
}

/// The pty master the runtime sends over the console socket (SCM_RIGHTS).
fn receive_master(l: &UnixListener) -> io::Result<OwnedFd> {
    l.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => return Err(e),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 4096];
    let mut space = [0u8; 64];
    // SAFETY: recvmsg into buffers we own; the control message is parsed with the CMSG macros.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = space.len() as _;
        if libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cm = libc::CMSG_FIRSTHDR(&msg);
        while !cm.is_null() {
            if (*cm).cmsg_level == libc::SOL_SOCKET && (*cm).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast::<libc::c_int>());
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            cm = libc::CMSG_NXTHDR(&msg, cm);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "the runtime sent no pty descriptor",
    ))
}

/// docker's `--network none` still has a working loopback: bring `lo` up in the container's new network
/// namespace (the monitor is single-threaded, so it can step in and back out).
fn loopback_up(pid: i32) -> io::Result<()> {
    let own = File::open("/proc/self/ns/net")?;
    let theirs = File::open(format!("/proc/{pid}/ns/net"))?;
    // SAFETY: setns/socket/ioctl with valid descriptors and an ifreq we own.
    unsafe {
        if libc::setns(theirs.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        let result = (|| {
            let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if s < 0 {
                return Err(io::Error::last_os_error());
            }
            let s = OwnedFd::from_raw_fd(s);
            let mut req: libc::ifreq = std::mem::zeroed();
            for (i, b) in b"lo".iter().enumerate() {
                req.ifr_name[i] = *b as libc::c_char;
            }
            if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
                return Err(io::Error::last_os_error());
            }
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })();
        if libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(io::Error::last_os_error());
        }
        result
    }
}

fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: read into a buffer we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n > 0 {
        return Some(n as usize);
    }
    if n == 0 {
        return Some(0);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => None,
        // EIO: the pty's last slave closed.
        _ => Some(0),
    }
}

impl Monitor {
    fn broadcast(&mut self, kind: u8, payload: &[u8]) {
        for c in &mut self.clients {
            c.queue(kind, payload);
            c.flush();
        }
        self.clients.retain(|c| !c.closed);
    }

    fn flush_all(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for c in &mut self.clients {
            let _ = c.stream.set_nonblocking(false);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = c.stream.set_write_timeout(Some(left));
            let _ = c.stream.write_all(&c.outbuf);
            c.outbuf.clear();
        }
    }

    fn accept(&mut self) {
        while let Ok((s, _)) = self.listener.accept() {
            if s.set_nonblocking(true).is_ok() {
                self.clients.push(ClientConn {
                    stream: s,
                    hello: None,
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    closed: false,
                });
            }
        }
    }

    /// Until the first client has said hello, the caller went away, or the timeout.
    fn wait_for_client(&mut self, sync: Option<&File>, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.clients.iter().any(|c| c.hello.is_some()) {
                return;
            }
            if let Some(s) = sync {
                let mut p = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: 0,
                    revents: 0,
                };
                // SAFETY: poll on one descriptor we own.
                unsafe { libc::poll(&mut p, 1, 0) };
                if p.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                    return;
                }
            }
            self.idle(Duration::from_millis(20));
        }
    }

    /// Serves the attach socket for a while (between restarts, before start).
    fn idle(&mut self, d: Duration) {
        let mut none = None;
        self.poll_once(&mut none, d);
    }

    /// Runs until the container's process has exited and its output is drained; returns its exit code.
    fn pump(&mut self, io: &mut Io) -> i64 {
        let mut io = Some(io);
        let mut code = None;
        let mut drain_until = None;
        loop {
            let timeout = match drain_until {
                Some(t) if Instant::now() >= t => break,
                Some(t) => t.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if let Some(c) = self.poll_once(&mut io, timeout) {
                code = Some(c);
                drain_until = Some(Instant::now() + DRAIN);
            }
            let Some(i) = io.as_deref() else { break };
            if code.is_some() && i.out.is_none() && i.err.is_none() {
                break;
            }
        }
        if let Some(i) = io {
            i.out = None;
            i.err = None;
            i.stdin = None;
        }
        code.unwrap_or(255)
    }

    /// One poll round; returns the container's exit code if it was reaped in it.
    fn poll_once(&mut self, io: &mut Option<&mut Io>, timeout: Duration) -> Option<i64> {
        let mut fds = vec![
            libc::pollfd {
                fd: self.sigfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Slots 2, 3, 4: out, err, stdin (fd -1 is ignored by poll).
        let raw = |f: &Option<OwnedFd>| f.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        match io.as_deref() {
            Some(i) => {
                fds.push(libc::pollfd {
                    fd: raw(&i.out),
                    events: libc::POLLIN,
                    revents: 0,
                });
                fds.push(libc::pollfd {
                    fd: raw(&i.err),
                    events: libc::POLLIN,
                    revents: 0,
                });
                fds.push(libc::pollfd {
                    fd: if i.stdin_pending.is_empty() {
                        -1
                    } else {
                        raw(&i.stdin)
                    },
                    events: libc::POLLOUT,
                    revents: 0,
                });
            }
            None => {
                for _ in 0..3 {
                    fds.push(libc::pollfd {
                        fd: -1,
                        events: 0,
                        revents: 0,
                    });
                }
            }
        }
        let nclients = self.clients.len();
        for c in &self.clients {
            let mut ev = libc::POLLIN;
            if !c.outbuf.is_empty() {
                ev |= libc::POLLOUT;
            }
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: ev,
                revents: 0,
            });
        }
        let dns_fds = self.dns.as_ref().map(|d| d.fds()).unwrap_or([-1, -1]);
        for fd in dns_fds {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: poll over a vector of pollfds we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return None;
        }
        let mut code = None;
        if fds[0].revents != 0 {
            code = self.signals(io.as_deref().map(|i| i.pid));
        }
        if fds[1].revents != 0 {
            self.accept();
        }
        let mut buf = vec![0u8; 64 * 1024];
        if let Some(i) = io.as_deref_mut() {
            for (slot, kind) in [(2usize, attach::STDOUT), (3, attach::STDERR)] {
                if fds[slot].revents == 0 {
                    continue;
                }
                let f = if kind == attach::STDOUT {
                    &mut i.out
                } else {
                    &mut i.err
                };
                let Some(fd) = f.as_ref() else { continue };
                match read_some(fd, &mut buf) {
                    None => {}
                    Some(0) => *f = None,
                    Some(n) => {
                        let stream = if kind == attach::STDOUT {
                            Stream::Stdout
                        } else {
                            Stream::Stderr
                        };
                        let _ = self.log.write(stream, &buf[..n]);
                        for c in &mut self.clients {
                            c.queue(kind, &buf[..n]);
                        }
                    }
                }
            }
            if fds[4].revents != 0 {
                write_stdin(i);
            }
        }
        for (k, fd) in dns_fds.iter().enumerate() {
            if fds[5 + nclients + k].revents != 0 {
                if let Some(d) = self.dns.as_mut() {
                    d.handle(*fd);
                }
            }
        }
        for (k, pfd) in fds[5..5 + nclients].iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let c = &mut self.clients[k];
            if pfd.revents & libc::POLLOUT != 0 {
                c.flush();
            }
            if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match c.stream.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        c.closed = true;
                        // The client that fed stdin left: the container's stdin ends (docker's StdinOnce).
                        if c.hello.unwrap_or(0) & attach::SENDS_STDIN != 0 {
                            if let Some(i) = io.as_deref_mut() {
                                if !i.tty {
                                    close_stdin_after_pending(i);
                                }
                            }
                        }
                    }
                    Ok(n) => {
                        c.inbuf.extend_from_slice(&buf[..n]);
                        if c.hello.is_none() && !c.inbuf.is_empty() {
                            c.hello = Some(c.inbuf.remove(0));
                        }
                        loop {
                            match attach::take_frame(&mut c.inbuf) {
                                Ok(Some((kind, payload))) => {
                                    if let Some(i) = io.as_deref_mut() {
                                        handle_client_frame(i, kind, &payload);
                                    }
                                }
                                Ok(None) => break,
                                Err(_) => {
                                    c.closed = true;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
        for c in &mut self.clients {
            c.flush();
        }
        self.clients.retain(|c| !c.closed);
        if let Some(i) = io.as_deref_mut() {
            if !i.stdin_pending.is_empty() {
                write_stdin(i);
            }
        }
        code
    }

    /// Drains the signalfd; reaps children. Returns the container's exit code if it was among them.
    fn signals(&mut self, pid: Option<i32>) -> Option<i64> {
        let mut info = [0u8; 128];
        // SAFETY: reads from our signalfd into a buffer of its record size.
        while unsafe { libc::read(self.sigfd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) }
            > 0
        {}
        let mut code = None;
        loop {
            let mut status = 0;
            // SAFETY: waitpid for any child, non-blocking.
            let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            if Some(r) == pid {
                code = Some(exit_code_of(status));
            }
        }
        code
    }
}

fn handle_client_frame(i: &mut Io, kind: u8, payload: &[u8]) {
    match kind {
        attach::STDIN if i.stdin.is_some() => i.stdin_pending.extend_from_slice(payload),
        attach::STDIN_EOF if !i.tty => close_stdin_after_pending(i),
        attach::RESIZE if payload.len() == 4 && i.tty => {
            if let Some(m) = &i.out {
                let ws = libc::winsize {
                    ws_row: u16::from_be_bytes([payload[0], payload[1]]),
                    ws_col: u16::from_be_bytes([payload[2], payload[3]]),
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ on the pty master with a winsize we own.
                unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
            }
        }
        attach::SIGNAL if payload.len() == 4 => {
            let sig = i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
            if (1..=64).contains(&sig) {
                // SAFETY: kill with a pid we reaped nothing for yet (the container's init is our child).
                unsafe { libc::kill(i.pid, sig) };
            }
        }
        _ => {}
    }
}

/// Marks stdin to close once what is pending is written.
fn close_stdin_after_pending(i: &mut Io) {
    write_stdin(i);
    if i.stdin_pending.is_empty() {
        i.stdin = None;
    } else {
        // Rare (a full pipe at EOF): write the rest blocking, then close.
        if let Some(fd) = i.stdin.take() {
            let mut f = File::from(fd);
            // SAFETY: clearing O_NONBLOCK on our descriptor.
            unsafe {
                let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
            let _ = f.write_all(&i.stdin_pending);
        }
        i.stdin_pending.clear();
    }
}

fn write_stdin(i: &mut Io) {
    let Some(fd) = i.stdin.as_ref() else {
        i.stdin_pending.clear();
        return;
    };
    while !i.stdin_pending.is_empty() {
        // SAFETY: write from a buffer we own.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                i.stdin_pending.as_ptr().cast(),
                i.stdin_pending.len(),
            )
        };
        if n > 0 {
            i.stdin_pending.drain(..n as usize);
            continue;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => return,
            _ => {
                // The container closed its stdin.
                i.stdin_pending.clear();
                i.stdin = None;
                return;
            }
        }
    }
}
