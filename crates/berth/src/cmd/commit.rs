//! `berth commit`: a container's changes as a new image.

use anyhow::Result;
use clap::Args;
use engine::container::CommitRequest;

use super::run::engine;
use super::Ctx;

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g. "Jane Doe <jane@example.com>")
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE,
    /// VOLUME, STOPSIGNAL)
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pause: bool,
    container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    repository: Option<String>,
}

pub fn commit(ctx: &Ctx, a: CommitArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    let req = CommitRequest {
        message: a.message,
        author: a.author,
        changes: a.change,
        pause: a.pause,
        tag: a.repository,
    };
    let done = e.commit(&a.container, &req)?;
    println!("{}", done.id);
    Ok(0)
}
