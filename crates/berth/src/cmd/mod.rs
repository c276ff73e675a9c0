//! The `berth` command line: docker's commands, flags, output and exit codes.

mod images;
mod login;
mod registry;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use image::snapshot::Driver;
use image::Store;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A daemonless container engine with docker's command line"
)]
pub struct Cli {
    /// Where images (and later containers) live; several stores can coexist.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/berth",
        env = "BERTH_ROOT"
    )]
    root: PathBuf,
    /// Root filesystem driver: overlay (falls back to vfs where overlayfs cannot work) or vfs (copies).
    #[arg(long, global = true, default_value = "overlay", value_parser = parse_driver)]
    storage_driver: Driver,
    /// A registry that may be reached over plain HTTP or unverified TLS (repeatable).
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

fn parse_driver(s: &str) -> Result<Driver, String> {
    Driver::parse(s).ok_or_else(|| format!("unknown storage driver {s:?} (overlay, vfs)"))
}

#[derive(Subcommand)]
enum Command {
    /// Download an image from a registry
    Pull(images::PullArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Upload an image to a registry
    Push(images::PushArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Save one or more images to a tar archive
    Save(images::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// berth's OCI distribution registry
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Download an image from a registry
    Pull(images::PullArgs),
    /// Upload an image to a registry
    Push(images::PushArgs),
    /// List images
    #[command(alias = "list")]
    Ls(images::ImagesArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(images::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Display detailed information on one or more images
    Inspect(images::InspectArgs),
    /// Remove unused images
    Prune(images::PruneArgs),
    /// Save one or more images to a tar archive
    Save(images::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(images::LoadArgs),
    /// Mount an image's root filesystem read-only and print where
    Mount(images::MountArgs),
    /// Unmount what `image mount` mounted
    #[command(alias = "umount")]
    Unmount(images::MountArgs),
}

/// Options shared by commands that talk to registries.
#[derive(Args, Clone)]
pub struct TlsArgs {
    /// Require HTTPS and verify certificates (false: plain HTTP or unverified TLS may be used)
    #[arg(long = "tls-verify", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = clap::ArgAction::Set)]
    pub tls_verify: bool,
}

pub struct Ctx {
    root: PathBuf,
    /// --root (or BERTH_ROOT) was given rather than defaulted.
    root_given: bool,
    driver: Driver,
    insecure: Vec<String>,
}

impl Ctx {
    fn store(&self) -> Result<Store> {
        Store::open(&self.root, self.driver)
            .with_context(|| format!("open image store {}", self.root.display()))
    }

    fn client(&self, tls_verify: bool) -> Result<image::registry::Client> {
        let opts = image::registry::ClientOptions {
            tls_verify,
            insecure_registries: self.insecure.clone(),
            auth_file: None,
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        };
        Ok(image::registry::Client::new(opts)?)
    }
}

pub fn main() -> i32 {
    let matches = match <Cli as clap::CommandFactory>::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    let root_given = !matches!(
        matches.value_source("root"),
        Some(clap::parser::ValueSource::DefaultValue) | None
    );
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // docker exits 125 when its own flags are wrong, 0 for --help/--version.
            return if e.use_stderr() { 125 } else { 0 };
        }
    };
    let ctx = Ctx {
        root_given,
        root: cli.root,
        driver: cli.storage_driver,
        insecure: cli.insecure_registries,
    };
    let result = match cli.command {
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => images::pull(&ctx, a),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => images::push(&ctx, a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::list(&ctx, a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::rmi(&ctx, a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => images::tag(&ctx, a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => images::save(&ctx, a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => images::load(&ctx, a),
        Command::Image(ImageCommand::Inspect(a)) => images::inspect(&ctx, a),
        Command::Image(ImageCommand::Prune(a)) => images::prune(&ctx, a),
        Command::Image(ImageCommand::Mount(a)) => images::mount(&ctx, a),
        Command::Image(ImageCommand::Unmount(a)) => images::unmount(&ctx, a),
        Command::Login(a) => login::login(&ctx, a),
        Command::Logout(a) => login::logout(&ctx, a),
        Command::Registry(c) => registry::run(&ctx, c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {}", error_line(&e));
            1
        }
    }
}

/// One line from an error chain. Library errors already name their cause in their own message, so a cause
/// whose text the line already holds is not repeated.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
