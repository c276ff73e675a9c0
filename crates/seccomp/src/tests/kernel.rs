//! Tests against the real kernel. Each filter is installed in a forked child: the test harness is
//! multi-threaded, so the child only makes raw syscalls (prctl, seccomp, the syscalls under test, _exit).

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use serde_json::json;

use super::{compile, docker};
use crate::Filter;

#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot; reading it is always valid.
    unsafe { *libc::__errno_location() }
}

/// Forks; the child installs `filter` (after setting no_new_privs) and exits with `body`'s result.
/// Exit codes 100/101 mean prctl/install failed.
fn in_child(filter: &Filter, body: fn(Option<OwnedFd>) -> i32) -> Exit {
    // SAFETY: the child only calls async-signal-safe raw syscalls (install does not allocate) and then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            // SAFETY: _exit never returns and runs no destructors.
            unsafe { libc::_exit(100) };
        }
        let code = match filter.install() {
            Ok(fd) => body(fd),
            Err(_) => 101,
        };
        // SAFETY: as above.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    }
}

/// -1 and the errno of a raw syscall, or its result.
fn sys(nr: libc::c_long, a: [u64; 3]) -> (i64, i32) {
    // SAFETY: the syscalls used below take integers or pointers the kernel validates (bad ones give EFAULT).
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2]) };
    (r, if r < 0 { errno() } else { 0 })
}

#[test]
fn errno_actions_and_64bit_args_in_the_kernel() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
             "args": [{"index": 1, "value": 0x1_0000_0005u64, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    let exit = in_child(&f, |_| {
        let mut buf = [0u8; 64];
        if sys(libc::SYS_getcwd, [buf.as_mut_ptr() as u64, 64, 0]) != (-1, libc::ENOSYS) {
            return 1;
        }
        if sys(libc::SYS_lseek, [u64::MAX, 0x1_0000_0005, 0]) != (-1, 77) {
            return 2;
        }
        // Same low half, different high half: reaches the kernel, which rejects fd -1.
        if sys(libc::SYS_lseek, [u64::MAX, 5, 0]) != (-1, libc::EBADF) {
            return 3;
        }
        if sys(libc::SYS_getpid, [0; 3]).0 <= 0 {
            return 4;
        }
        0
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn kill_process_action_in_the_kernel() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]
    }));
    let exit = in_child(&f, |_| {
        sys(
            libc::SYS_mkdirat,
            [
                libc::AT_FDCWD as u64,
                c"/nonexistent/berth".as_ptr() as u64,
                0o700,
            ],
        );
        0
    });
    assert_eq!(exit, Exit::Signal(libc::SIGSYS));
}

#[test]
fn docker_profile_in_the_kernel() {
    let f = Filter::prepare(&docker(), None).expect("compile");
    let exit = in_child(&f, |_| {
        if sys(libc::SYS_getpid, [0; 3]).0 <= 0 {
            return 1;
        }
        if sys(libc::SYS_mount, [0; 3]) != (-1, libc::EPERM) {
            return 2;
        }
        if sys(libc::SYS_unshare, [libc::CLONE_NEWNS as u64, 0, 0]) != (-1, libc::EPERM) {
            return 3;
        }
        if sys(libc::SYS_clone3, [0, 0, 0]) != (-1, libc::ENOSYS) {
            return 4;
        }
        if sys(
            libc::SYS_socket,
            [libc::AF_VSOCK as u64, libc::SOCK_STREAM as u64, 0],
        ) != (-1, libc::EPERM)
        {
            return 5;
        }
        let (fd, _) = sys(
            libc::SYS_socket,
            [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0],
        );
        if fd < 0 {
            return 6;
        }
        0
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn notify_returns_a_listener_fd() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let exit = in_child(&f, |fd| match fd {
        Some(fd) if fd.as_raw_fd() > 2 => 0,
        _ => 1,
    });
    assert_eq!(exit, Exit::Code(0));
}

#[test]
fn send_to_listener_passes_fd_and_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("agent.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are fresh and owned by nothing else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let state = br#"{"ociVersion":"1.2.0","fds":["seccompFd"],"pid":1}"#;
    crate::send_to_listener(&path, &w, state).expect("send");
    let (conn, _) = listener.accept().expect("accept");

    let mut data = [0u8; 256];
    let mut cbuf = [0u64; 8];
    let mut iov = [IoSliceMut::new(&mut data)];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    // SAFETY: msg points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert_eq!(usize::try_from(n).ok(), Some(state.len()));
    assert_eq!(&data[..state.len()], state);
    // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR/CMSG_DATA stay within it.
    let got = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null());
        assert_eq!(
            ((*c).cmsg_level, (*c).cmsg_type),
            (libc::SOL_SOCKET, libc::SCM_RIGHTS)
        );
        OwnedFd::from_raw_fd(std::ptr::read_unaligned(
            libc::CMSG_DATA(c).cast::<libc::c_int>(),
        ))
    };
    // The received fd is the pipe's write end: writing to it is readable from `r`.
    // SAFETY: writing a byte from a live buffer to a valid fd.
    let wrote = unsafe { libc::write(got.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    assert_eq!(wrote, 1);
    let mut b = [0u8; 1];
    // SAFETY: reading into a live one-byte buffer.
    let read = unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
    assert_eq!(read, 1);
    assert_eq!(&b, b"x");

    let missing = crate::send_to_listener(&tmp.path().join("nope.sock"), &w, state);
    let msg = missing.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("nope.sock"), "{msg}");
}
