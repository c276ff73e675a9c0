//! A foreground `run` or `exec`: the runtime stays, relays the terminal if there is one, forwards signals to the
//! container's process, reaps it (as child subreaper) and reports its exit status as a shell would (128+N).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Makes this process the reaper of orphaned descendants, so the container's process (a grandchild) is ours
/// to wait for. Call before forking.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Reaps children; returns the exit code of `pid` once it has exited.
fn reap(pid: i32) -> Option<i32> {
    let mut result = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(ws) => {
                if ws.pid().map(|p| p.as_raw()) == Some(pid) {
                    if let Some(c) = code(ws) {
                        result = Some(c);
                    }
                }
            }
        }
    }
}

/// Waits for `pid` with the given signals blocked (see `container::block_signals`).
pub fn wait(pid: i32, console: Option<OwnedFd>, blocked: &SigSet) -> std::io::Result<i32> {
    let sfd = SignalFd::with_flags(blocked, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    // A child that exited before the signalfd existed left SIGCHLD pending; the first poll sees it.
    if let Some(c) = reap(pid) {
        if let Some(m) = &console {
            drain(m);
        }
        return Ok(c);
    }
    let _raw = console
        .as_ref()
        .filter(|_| nix::unistd::isatty(std::io::stdin()).unwrap_or(false))
        .map(|_| crate::console::RawMode::enter(0));
    if let (Some(m), Some((r, c))) = (&console, crate::console::own_size()) {
        let _ = crate::console::set_size(m.as_raw_fd(), r, c);
    }
    let mut stdin_open = console.is_some();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &console {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready.len() > 2 && ready[2] {
            // SAFETY: reading into our own buffer from stdin.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                stdin_open = false;
            } else if let Some(m) = &console {
                write_all(m.as_raw_fd(), &buf[..n as usize]);
            }
        }
        if ready.len() > 1 && ready[1] {
            if let Some(m) = &console {
                // SAFETY: reading into our own buffer from the pty master.
                let n = unsafe { libc::read(m.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    write_all(1, &buf[..n as usize]);
                }
            }
        }
        if ready[0] {
            while let Ok(Some(si)) = sfd.read_signal() {
                let sig = si.ssi_signo as i32;
                match sig {
                    libc::SIGCHLD => {
                        if let Some(c) = reap(pid) {
                            if let Some(m) = &console {
                                drain(m);
                            }
                            return Ok(c);
                        }
                    }
                    libc::SIGWINCH => {
                        if let (Some(m), Some((r, c))) = (&console, crate::console::own_size()) {
                            let _ = crate::console::set_size(m.as_raw_fd(), r, c);
                        }
                    }
                    s => {
                        let _ = crate::signals::send(pid, s);
                    }
                }
            }
        }
    }
}

fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: writing from our own buffer.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// Output the process wrote just before exiting is still in the pty.
fn drain(m: &OwnedFd) {
    let _ = nix::fcntl::fcntl(
        m,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut buf = [0u8; 16 * 1024];
    loop {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::read(m.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
        write_all(1, &buf[..n as usize]);
    }
}
