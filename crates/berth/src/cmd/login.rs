//! login and logout: credentials in docker's config.json, checked against the registry first.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{Ctx, TlsArgs};

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: a flag ends up in shell history)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Registry (default docker.io)
    server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    server: Option<String>,
}

/// docker.io's credentials live under its v1 index URL; other registries under their host[:port].
fn registry_host(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io");
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let s = s
        .strip_suffix("/v1")
        .or_else(|| s.strip_suffix("/v2"))
        .unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

fn prompt(label: &str, echo: bool) -> Result<String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask for credentials on: use -u and --password-stdin")?;
    write!(tty, "{label}")?;
    tty.flush()?;
    use std::os::fd::AsRawFd;
    let fd = tty.as_raw_fd();
    // SAFETY: termios calls on a terminal fd this function owns; the struct is fully written by tcgetattr.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            None
        } else {
            let old = t;
            if !echo {
                t.c_lflag &= !libc::ECHO;
                libc::tcsetattr(fd, libc::TCSANOW, &t);
            }
            Some(old)
        }
    };
    let mut line = String::new();
    let r = std::io::BufReader::new(&tty).read_line(&mut line);
    if let Some(old) = saved {
        // SAFETY: restores the attributes read above on the same fd.
        unsafe {
            libc::tcsetattr(fd, libc::TCSANOW, &old);
        }
    }
    if !echo {
        writeln!(tty)?;
    }
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn login(ctx: &Ctx, a: LoginArgs) -> Result<i32> {
    let host = registry_host(a.server.as_deref());
    if a.password.is_some() && a.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username: ", true)?,
    };
    if username.is_empty() {
        bail!("Username: a username is required");
    }
    let password = if a.password_stdin {
        if std::io::stdin().is_terminal() {
            bail!("--password-stdin: stdin is a terminal, pipe the password in");
        }
        let mut s = String::new();
        std::io::stdin().read_line(&mut s)?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else {
        match a.password {
            Some(p) => {
                eprintln!(
                    "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
                );
                p
            }
            None => prompt("Password: ", false)?,
        }
    };
    if password.is_empty() {
        bail!("Password: a password is required");
    }
    let client = ctx.client(a.tls.tls_verify)?;
    client.check_login(&host, &username, &password)?;
    let mut creds = image::registry::credentials::load(None)?;
    creds.store(&host, &username, &password)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(_ctx: &Ctx, a: LogoutArgs) -> Result<i32> {
    let host = registry_host(a.server.as_deref());
    let mut creds = image::registry::credentials::load(None)?;
    if creds.erase(&host)? {
        println!("Removing login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(0)
}
