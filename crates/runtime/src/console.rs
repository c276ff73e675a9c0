//! Terminals: the container's pty is made inside it (its own devpts), the master goes to the caller over
//! --console-socket with SCM_RIGHTS (what containerd's shim expects), the slave becomes stdio.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

pub struct Pty {
    pub master: OwnedFd,
    pub slave_path: PathBuf,
}

pub fn open_pty() -> std::io::Result<Pty> {
    let master = nix::pty::posix_openpt(
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
    )?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    // SAFETY: into_raw_fd hands us sole ownership of the master descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    Ok(Pty {
        master: fd,
        slave_path: PathBuf::from(name),
    })
}

pub fn set_size(fd: RawFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// New session, the slave as controlling terminal and as fds 0-2.
pub fn become_session_leader(slave: &Path) -> std::io::Result<()> {
    nix::unistd::setsid()?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(slave)?;
    let fd = f.as_raw_fd();
    // SAFETY: TIOCSCTTY with an integer argument on a terminal fd.
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    let s = UnixStream::connect(path)?;
    Ok(OwnedFd::from(s))
}

/// Sends the master over the console socket; the payload is the pty's name, as runc sends it.
pub fn send_master(sock: RawFd, master: RawFd, name: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let payload = name.as_os_str().as_bytes();
    let iov = [std::io::IoSlice::new(payload)];
    let fds = [master];
    sendmsg::<()>(
        sock,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// The caller's terminal in raw mode for a foreground `run -t`/`exec -t`, restored on drop.
pub struct RawMode {
    fd: RawFd,
    saved: Option<nix::sys::termios::Termios>,
}

impl RawMode {
    pub fn enter(fd: RawFd) -> RawMode {
        // SAFETY: a borrowed standard descriptor that outlives this call.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let saved = nix::sys::termios::tcgetattr(b).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            nix::sys::termios::cfmakeraw(&mut raw);
            let _ = nix::sys::termios::tcsetattr(b, nix::sys::termios::SetArg::TCSANOW, &raw);
        }
        RawMode { fd, saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: the standard descriptor is still open.
            let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd) };
            let _ = nix::sys::termios::tcsetattr(b, nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}

/// Size of the caller's terminal, if stdin is one.
pub fn own_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize struct.
    let r = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}
