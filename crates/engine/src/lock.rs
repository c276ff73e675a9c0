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

/// The pids holding a flock on `path`, from /proc/locks (matched by device and inode).
pub fn holders(path: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let (dev, ino) = (meta.dev(), meta.ino());
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let want = (u64::from(maj), u64::from(min), ino);
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for line in locks.lines() {
        // "1: FLOCK  ADVISORY  WRITE 1234 00:2e:56789 0 EOF" (blocked waiters have "->" before FLOCK).
        let f: Vec<&str> = line.split_whitespace().filter(|w| *w != "->").collect();
        if f.len() < 6 || f[1] != "FLOCK" {
            continue;
        }
        let mut id = f[5].split(':');
        let parsed = (
            id.next().and_then(|x| u64::from_str_radix(x, 16).ok()),
            id.next().and_then(|x| u64::from_str_radix(x, 16).ok()),
            id.next().and_then(|x| x.parse::<u64>().ok()),
        );
        if let (Some(a), Some(b), Some(i)) = parsed {
            if (a, b, i) == want {
                if let Ok(pid) = f[4].parse::<i32>() {
                    if !pids.contains(&pid) {
                        pids.push(pid);
                    }
                }
            }
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_with_its_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let l = Lock::try_take(&p).unwrap().expect("free");
        assert!(held(&p));
        assert!(Lock::try_take(&p).unwrap().is_none());
        assert_eq!(holders(&p), vec![std::process::id() as i32]);
        drop(l);
        assert!(!held(&p));
        assert!(holders(&p).is_empty());
    }
}
