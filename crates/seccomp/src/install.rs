//! Loading a program into the kernel, probing flag support, and handing the notify fd to a seccomp agent.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use libc::{c_long, c_uint, c_ulong, sock_filter, sock_fprog};

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog). Runs in the forked child just before exec, where the parent
/// may have had other threads: no allocation, no locks, only the syscall itself (and prctl on kernels that
/// predate seccomp(2), when no flags are needed).
pub(crate) fn install(insns: &[sock_filter], flags: u32) -> io::Result<Option<OwnedFd>> {
    let len = u16::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let prog = sock_fprog {
        len,
        filter: insns.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `insns`, which outlives the call; the kernel only reads and copies the program.
    let ret: c_long = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as c_uint,
            c_ulong::from(flags),
            &prog as *const sock_fprog,
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOSYS) && flags == 0 {
            // SAFETY: as above; PR_SET_SECCOMP reads the sock_fprog and the program it points at.
            let r = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as c_ulong,
                    &prog as *const sock_fprog,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            return Ok(None);
        }
        return Err(err);
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 != 0 {
        let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: with NEW_LISTENER the return value is a fresh listener fd that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ret > 0 {
        // TSYNC without TSYNC_ESRCH reports the id of a thread that could not be synchronized; ESRCH says the same
        // without allocating a message.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(None)
}

/// Whether the kernel accepts `flags` for SECCOMP_SET_MODE_FILTER. The probe passes a NULL program: the kernel
/// validates the flags (EINVAL) before it copies the program (EFAULT), so nothing is ever installed.
pub(crate) fn kernel_accepts(flags: c_ulong) -> bool {
    // SAFETY: a NULL program pointer makes the kernel fail with EFAULT before installing anything.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as c_uint,
            flags,
            std::ptr::null::<sock_fprog>(),
        )
    };
    ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// runc's seccomp agent protocol: one message on a SOCK_STREAM unix socket carrying the container process state
/// JSON as data and the listener fd as SCM_RIGHTS.
pub(crate) fn send_fd(path: &Path, fd: &OwnedFd, payload: &[u8]) -> io::Result<()> {
    let mut sock = UnixStream::connect(path)?;
    let raw_fd = fd.as_raw_fd();
    // Aligned room for one cmsghdr plus one int: CMSG_SPACE(4) is 24 on 64-bit Linux.
    let mut cbuf = [0u64; 4];
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as c_uint) } as usize;
    if space > std::mem::size_of_val(&cbuf) {
        return Err(io::Error::other("control message buffer too small"));
    }
    // Stream sockets need at least one byte of data to carry ancillary data.
    let data: &[u8] = if payload.is_empty() { b"\0" } else { payload };
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `cbuf`, large enough for one header (checked above), so CMSG_FIRSTHDR is
    // non-null and CMSG_DATA has room for one int; the writes stay inside `cbuf`.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the control message"));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as c_uint) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), raw_fd);
        libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    let sent = usize::try_from(sent).map_err(|_| io::Error::last_os_error())?;
    // A stream socket may take the message in pieces; the fd went with the first one.
    if sent < data.len() {
        sock.write_all(&data[sent..])?;
    }
    Ok(())
}
