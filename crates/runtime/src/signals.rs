//! Signal names and numbers as runc's `kill` accepts them: `KILL`, `SIGKILL`, `9`, `SIGRTMIN+3`.

use std::str::FromStr;

use nix::sys::signal::Signal;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("invalid signal {0:?}: expected a name such as TERM or SIGKILL, or a number from 1 to 64")]
pub struct SignalError(pub String);

/// Parses a signal into its number. Real-time signals are numbers only to nix, so they are kept as i32.
pub fn parse(s: &str) -> Result<i32, SignalError> {
    let err = || SignalError(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(err())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = parse_offset(rest).ok_or_else(err)?;
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(err())
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off = parse_offset(rest).ok_or_else(err)?;
        let n = libc::SIGRTMAX() + off;
        return if n >= libc::SIGRTMIN() {
            Ok(n)
        } else {
            Err(err())
        };
    }
    Signal::from_str(&format!("SIG{name}"))
        .map(|s| s as i32)
        .map_err(|_| err())
}

fn parse_offset(rest: &str) -> Option<i32> {
    if rest.is_empty() {
        return Some(0);
    }
    rest.parse::<i32>().ok()
}

/// Sends a raw signal number (nix's `Signal` cannot hold real-time signals).
pub fn send(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let r = unsafe { libc::kill(pid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("term").unwrap(), 15);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("SIGRTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert_eq!(parse("RTMAX-1").unwrap(), libc::SIGRTMAX() - 1);
        assert!(parse("0").is_err());
        assert!(parse("65").is_err());
        assert!(parse("BOGUS").is_err());
    }
}
