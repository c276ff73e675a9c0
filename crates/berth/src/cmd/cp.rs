//! cp: files between a container (running or not) and the host, or a tar stream on stdin/stdout (`-`).

use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use clap::Args;
use engine::copy::{self, ContainerFiles, CopyOptions};

use super::run::engine;
use super::Ctx;
use crate::output::human_size;

#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a host path, or - (a tar stream on stdin)
    #[arg(allow_hyphen_values = true)]
    src: String,
    /// CONTAINER:DEST_PATH, a host path, or - (a tar stream on stdout)
    #[arg(allow_hyphen_values = true)]
    dst: String,
}

/// docker's splitCpArg: `CONTAINER:PATH`, unless the argument is an absolute path or starts with `.` before
/// its first colon (`./file:name` is a local file).
fn split(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') => (Some(c), p),
        _ => (None, arg),
    }
}

pub fn cp(ctx: &Ctx, a: CpArgs) -> Result<i32> {
    if a.src.is_empty() {
        bail!("source can not be empty");
    }
    if a.dst.is_empty() {
        bail!("destination can not be empty");
    }
    let (src_c, src_p) = split(&a.src);
    let (dst_c, dst_p) = split(&a.dst);
    let opts = CopyOptions {
        follow_link: a.follow_link,
        archive: a.archive,
    };
    let cwd = std::env::current_dir().context("find the working directory")?;
    let (name, result) = match (src_c, dst_c) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some(c), None) => {
            if c.is_empty() {
                bail!("must specify at least one container source");
            }
            let mut e = engine(ctx)?;
            let result = ContainerFiles::open(&mut e, c).and_then(|files| {
                let dst = (a.dst != "-").then_some(a.dst.as_str());
                let out = std::io::stdout().lock();
                let n = copy::copy_from_container(files.tree(), c, src_p, dst, out, &cwd, opts)?;
                files.close()?;
                Ok(n)
            });
            (c, result)
        }
        (None, Some(c)) => {
            if c.is_empty() {
                bail!("must specify at least one container source");
            }
            let mut e = engine(ctx)?;
            let result = ContainerFiles::open(&mut e, c).and_then(|files| {
                let src = (a.src != "-").then_some(a.src.as_str());
                let input = std::io::stdin().lock();
                let n = copy::copy_to_container(files.tree(), c, src, input, dst_p, &cwd, opts)?;
                files.close()?;
                Ok(n)
            });
            (c, result)
        }
    };
    match result {
        Ok(bytes) => {
            // docker reports what it copied when someone watches stderr.
            if !a.quiet && a.dst != "-" && std::io::stderr().is_terminal() {
                let to = if dst_c.is_some() {
                    format!("{name}:{dst_p}")
                } else {
                    a.dst.clone()
                };
                eprintln!("Successfully copied {} to {to}", human_size(bytes));
            }
            Ok(0)
        }
        Err(err) => {
            // The message already holds its cause (in docker's words).
            let line = err.to_string();
            if err.from_container() {
                eprintln!("Error response from daemon: {line}");
            } else {
                eprintln!("Error: {line}");
            }
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn container_paths_are_told_from_host_paths() {
        assert_eq!(split("c:/etc"), (Some("c"), "/etc"));
        assert_eq!(split("c:"), (Some("c"), ""));
        assert_eq!(split("/tmp/a:b"), (None, "/tmp/a:b"));
        assert_eq!(split("./a:b"), (None, "./a:b"));
        assert_eq!(split("file"), (None, "file"));
        assert_eq!(split("-"), (None, "-"));
    }
}
