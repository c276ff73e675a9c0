//! Running the kernel's reference tools (`ip`, `nft`, `sh`) in a chosen network namespace.
//!
//! Decision: berth talks to the kernel through iproute2's `ip` (batch mode, `ip -batch -`, several
//! operations per exec) and nftables' `nft -f -` (one atomic transaction per change), run inside the target
//! network namespace when it is not the current one (entered with setns(2) in the child before it execs
//! the tool: what `nsenter --net=PATH` would do, one exec fewer). Why: nft transactions are atomic, there
//! is no netlink code to maintain, and the tools are what operators debug with. The cost (a few ms per
//! exec) is measured in bench/.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::link::Netns;
use crate::NetError;

/// Runs `argv` in `ns` with `stdin` fed to it; returns its stdout, or an error naming the command, the
/// namespace, the script (one line) and the tool's own message.
pub(crate) fn run(ns: &Netns, argv: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    // Kept open until the child has been spawned (and has entered the namespace).
    let mut _ns_file = None;
    if let Some(path) = &ns.path {
        // Entered in the child between fork and exec (what `nsenter --net` does, without its exec). The
        // file is opened here, close-on-exec, so the tool does not inherit it.
        let file = File::open(path).map_err(|source| NetError::Io {
            what: format!("opening network namespace {}", path.display()),
            source,
        })?;
        let fd = file.as_raw_fd();
        // SAFETY: the closure only makes the setns(2) system call (async-signal-safe) on a descriptor that
        // stays open until the child is spawned (`_ns_file` lives to the end of this function).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        _ns_file = Some(file);
    }
    // The script goes into the error message as one line, so a failure says what was being done.
    let describe = || {
        let mut d = format!("{} (in {})", argv.join(" "), ns);
        if let Some(script) = stdin {
            let one_line: Vec<&str> = script
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            d.push_str(&format!(" [{}]", one_line.join("; ")));
        }
        d
    };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| NetError::Io {
        what: format!("starting {}", describe()),
        source,
    })?;
    if let (Some(script), Some(mut input)) = (stdin, child.stdin.take()) {
        // A tool that dies early closes its stdin: its exit status and message say why, so a write error
        // here is not the interesting one.
        let _ = input.write_all(script.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| NetError::Io {
        what: format!("waiting for {}", describe()),
        source,
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let message = if message.is_empty() {
        format!("exited with {}", out.status)
    } else {
        message.join("; ")
    };
    Err(NetError::Command {
        command: describe(),
        message,
    })
}

/// An interface name the kernel accepts (at most 15 bytes) and that is safe to put in an `ip` batch line,
/// an nft script or a `/proc/sys` path.
pub(crate) fn check_ifname(name: &str) -> Result<(), NetError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "invalid interface name {name:?}: 1 to 15 characters of [A-Za-z0-9_.-]"
        )))
    }
}

/// A network or container id, used to name nft chains: letters, digits, '_' and '-' only.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(), NetError> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "invalid {what} id {id:?}: letters, digits, '_' and '-' only"
        )))
    }
}
