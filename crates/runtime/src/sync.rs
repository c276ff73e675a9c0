//! The channel between the runtime and the processes it forks (a SOCK_SEQPACKET socketpair): one message per
//! step, an optional descriptor passed with SCM_RIGHTS. A child that fails sends `Error` with the step and
//! path, so the caller prints one clear line instead of finding a dead child.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tag {
    /// Generic "go on" from either side.
    Ack = 1,
    /// Child: "I have unshared; write my id maps and move net devices" (payload empty).
    NeedSetup = 2,
    /// Child A: the container init's pid (host view), i32 LE.
    Pid = 3,
    /// Init: mounts done, run prestart/createRuntime hooks now.
    Hooks = 4,
    /// A descriptor: a pty master (foreground terminal) or the seccomp notify fd, payload names which.
    Fd = 5,
    /// Setup done; the process waits for start (init) or is about to exec (exec).
    Ready = 6,
    /// Failure; payload is the message.
    Error = 7,
}

pub struct Channel {
    fd: OwnedFd,
}

#[derive(Debug)]
pub struct Message {
    pub tag: Tag,
    pub payload: Vec<u8>,
    pub fd: Option<OwnedFd>,
}

impl Message {
    /// The pid a `Tag::Pid` message carries (0 if the payload is short).
    pub fn pid(&self) -> i32 {
        let b: [u8; 4] = self
            .payload
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0; 4]);
        i32::from_le_bytes(b)
    }
}

pub fn pair() -> std::io::Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, tag: Tag, payload: &[u8]) -> std::io::Result<()> {
        self.send_fd(tag, payload, None)
    }

    pub fn send_fd(&self, tag: Tag, payload: &[u8], fd: Option<RawFd>) -> std::io::Result<()> {
        let t = [tag as u8];
        let iov = [IoSlice::new(&t), IoSlice::new(payload)];
        let fds;
        let cmsgs: &[ControlMessage] = match fd {
            Some(f) => {
                fds = [f];
                &[ControlMessage::ScmRights(&fds)]
            }
            None => &[],
        };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn error(&self, msg: &str) {
        let _ = self.send(Tag::Error, msg.as_bytes());
    }

    /// Receives one message; Ok(None) when the other side closed (exited or exec'd).
    pub fn recv(&self) -> std::io::Result<Option<Message>> {
        let mut buf = vec![0u8; 8 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let r = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let msg = match r {
                Ok(m) => m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let n = msg.bytes;
            let mut fd = None;
            if let Ok(cms) = msg.cmsgs() {
                for c in cms {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for f in fds {
                            // SAFETY: SCM_RIGHTS gave us a new descriptor that nothing else owns.
                            let owned = unsafe { OwnedFd::from_raw_fd(f) };
                            if fd.is_none() {
                                fd = Some(owned);
                            }
                        }
                    }
                }
            }
            if n == 0 {
                return Ok(None);
            }
            let tag = match buf[0] {
                1 => Tag::Ack,
                2 => Tag::NeedSetup,
                3 => Tag::Pid,
                4 => Tag::Hooks,
                5 => Tag::Fd,
                6 => Tag::Ready,
                7 => Tag::Error,
                t => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("sync: unknown message tag {t}"),
                    ))
                }
            };
            buf.truncate(n);
            buf.remove(0);
            return Ok(Some(Message {
                tag,
                payload: buf,
                fd,
            }));
        }
    }

    /// Waits for an Ack; an Error becomes Err(message), a closed channel Err too.
    pub fn wait_ack(&self) -> Result<(), String> {
        match self.recv() {
            Ok(Some(m)) if m.tag == Tag::Ack => Ok(()),
            Ok(Some(m)) if m.tag == Tag::Error => {
                Err(String::from_utf8_lossy(&m.payload).into_owned())
            }
            Ok(Some(m)) => Err(format!("sync: expected ack, got {:?}", m.tag)),
            Ok(None) => Err("sync: the runtime went away".into()),
            Err(e) => Err(format!("sync: {e}")),
        }
    }
}
