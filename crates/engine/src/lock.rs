//! The container lock: `<container dir>/lock`, held (flock, exclusive) by whoever owns the container's
//! process side: the monitor for as long as it lives, or a command that starts, repairs or removes the
//! container. A lock that can be taken means no monitor is alive, whatever the records say: flock dies with
//! its holder, so a SIGKILLed monitor never leaves a stale lock (and no pid can be reused into it).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

pub struct Lock {
    file: File,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

impl Lock {
    /// The lock if nobody holds it, else None.
    pub fn try_take(path: &Path) -> io::Result<Option<Lock>> {
        let file = open(path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(Lock { file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits up to `timeout` for the lock.
    pub fn take_within(path: &Path, timeout: Duration) -> io::Result<Option<Lock>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = Lock::try_take(path)? {
                return Ok(Some(l));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A second descriptor of the same open file (it shares the lock), for a child to inherit.
    pub fn share(&self) -> io::Result<OwnedFd> {
        self.file.as_fd().try_clone_to_owned()
    }

    /// Adopts an inherited descriptor that already holds the lock.
    pub fn from_inherited(fd: OwnedFd) -> Lock {
        Lock {
            file: File::from(fd),
        }
    }
}

/// True when a monitor (or a command working on the container) holds its lock.
pub fn held(path: &Path) -> bool {
    match Lock::try_take(path) {
        Ok(Some(_)) => false,
        Ok(None) => true,
        // No directory (removed container) or no permission: nobody we can see.
        Err(_) => false,
    }
}
