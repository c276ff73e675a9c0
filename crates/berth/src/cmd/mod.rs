//! The `berth` command line: docker's commands, flags, output and exit codes.

mod build;
mod commit;
mod containers;
mod cp;
mod exec;
mod images;
mod login;
mod network;
mod registry;
mod run;
mod stats;
mod system;
mod top;
mod volume;

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
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(run::CreateArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Remove one or more containers
    Rm(containers::RmArgs),
    /// List containers
    Ps(containers::PsArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::ContainersArgs),
    /// Pause all processes within one or more containers
    Pause(containers::ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::ContainersArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Return low-level information on containers (or images)
    Inspect(containers::InspectArgs),
    /// List port mappings of a container
    Port(containers::ContainersArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Display the running processes of a container
    Top(top::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Show the berth version information
    Version(system::VersionArgs),
    /// Manage berth
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// The per-container monitor (started by berth itself)
    #[command(name = "container-monitor", hide = true)]
    ContainerMonitor(containers::MonitorArgs),
}

#[derive(Subcommand)]
enum ContainerCommand {
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(run::CreateArgs),
    /// Start one or more stopped containers
    Start(run::StartArgs),
    /// Stop one or more running containers
    Stop(containers::StopArgs),
    /// Kill one or more running containers
    Kill(containers::KillArgs),
    /// Restart one or more containers
    Restart(containers::StopArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(containers::RmArgs),
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(containers::PsArgs),
    /// Fetch the logs of a container
    Logs(containers::LogsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(containers::ContainersArgs),
    /// Pause all processes within one or more containers
    Pause(containers::ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(containers::ContainersArgs),
    /// Rename a container
    Rename(containers::RenameArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(run::AttachArgs),
    /// Display detailed information on one or more containers
    Inspect(containers::InspectArgs),
    /// List port mappings of a container
    Port(containers::ContainersArgs),
    /// Remove all stopped containers
    Prune(containers::PruneArgs),
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Display the running processes of a container
    Top(top::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
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
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
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
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => run::run(&ctx, a),
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            run::create(&ctx, a)
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => run::start(&ctx, a),
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            containers::stop(&ctx, a)
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            containers::kill(&ctx, a)
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            containers::restart(&ctx, a)
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => containers::rm(&ctx, a),
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => containers::ps(&ctx, a),
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            containers::logs(&ctx, a)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            containers::wait(&ctx, a)
        }
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => {
            containers::pause(&ctx, a)
        }
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => {
            containers::unpause(&ctx, a)
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            containers::rename(&ctx, a)
        }
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            run::attach_cmd(&ctx, a)
        }
        Command::Inspect(a) | Command::Container(ContainerCommand::Inspect(a)) => {
            containers::inspect(&ctx, a)
        }
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => {
            containers::port(&ctx, a)
        }
        Command::Container(ContainerCommand::Prune(a)) => containers::prune(&ctx, a),
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => exec::exec(&ctx, a),
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => top::top(&ctx, a),
        Command::Stats(a) | Command::Container(ContainerCommand::Stats(a)) => stats::stats(&ctx, a),
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => cp::cp(&ctx, a),
        Command::Volume(c) => volume::run(&ctx, c),
        Command::Network(c) => network::run(&ctx, c),
        Command::Info(a) => system::info(&ctx, a),
        Command::Version(a) => system::version(&ctx, a),
        Command::System(c) => system::run(&ctx, c),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => {
            commit::commit(&ctx, a)
        }
        Command::Build(a) | Command::Image(ImageCommand::Build(a)) => build::build(&ctx, a),
        Command::ContainerMonitor(a) => containers::monitor(&ctx, a),
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
