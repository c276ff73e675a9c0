//! runc's command line, flag for flag where berth implements it.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use oci_spec::runtime::{Capability, Process, User};

#[derive(Parser, Debug)]
#[command(
    name = "berth-runtime",
    version,
    about = "An OCI runtime with runc's command line",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Root directory for container state (tmpfs recommended)
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    pub root: PathBuf,
    /// Also write errors to this file
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Debug logging (accepted for compatibility)
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd for cgroups (not implemented yet: a clear error)
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for compatibility with runc: "true", "false" or "auto"
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for compatibility with runc (checkpointing is not supported)
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Path to the bundle directory (default: current directory)
    #[arg(short = 'b', long)]
    pub bundle: Option<PathBuf>,
    /// File to write the container's init pid to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (move the rootfs onto / and chroot)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Pass N extra descriptors (3 .. 3+N-1) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for compatibility with runc
    #[arg(long = "no-new-keyring", hide = true)]
    pub no_new_keyring: bool,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// JSON file with a linux.resources object ("-" for stdin)
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    #[arg(long, short = 'm', allow_hyphen_values = true)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    #[arg(long = "kernel-memory", hide = true)]
    pub kernel_memory: Option<String>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Process JSON (runtime-spec process object) instead of ARGS; "-" for stdin
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Do not wait for the process
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Environment variables K=V
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// UID[:GID]
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional gids
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Add a capability
    #[arg(short = 'c', long = "cap")]
    pub cap: Vec<String>,
    /// Set no_new_privs
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for compatibility with runc
    #[arg(long = "process-label", hide = true)]
    pub process_label: Option<String>,
    #[arg(long = "apparmor", hide = true)]
    pub apparmor: Option<String>,
    #[arg(long = "cgroup", hide = true)]
    pub cgroup: Option<String>,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a default config.json
    Spec {
        #[arg(short = 'b', long)]
        bundle: Option<PathBuf>,
    },
    /// Create a container (its process waits for `start`)
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Create and start a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container has started
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container's state after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Print a container's state as JSON
    State { id: String },
    /// List containers
    List {
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Send a signal to a container's init (or every process with --all)
    Kill {
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container
    Delete {
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// List a container's processes
    Ps {
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change a running container's resource limits
    Update(UpdateArgs),
    /// Print resource statistics and OOM events as JSON
    Events {
        #[arg(long)]
        stats: bool,
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Print the runtime-spec features document
    Features,
    /// Run a new process in a running container
    Exec(ExecArgs),
}

/// runc's newProcess: the container's own process settings with the exec flags applied.
pub fn exec_process(e: &ExecArgs, base: Option<&Process>) -> Result<Process> {
    if e.args.is_empty() {
        bail!("exec: a command is required (ARGS or --process)");
    }
    let mut p = base.cloned().unwrap_or_default();
    p.set_args(Some(e.args.clone()));
    p.set_terminal(Some(e.tty));
    p.set_console_size(None);
    if let Some(c) = &e.cwd {
        p.set_cwd(c.clone());
    }
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &e.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(u) = &e.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let uid: u32 = uid
            .parse()
            .map_err(|_| anyhow::anyhow!("--user {u:?}: expected UID[:GID] as numbers"))?;
        let gid: u32 = match gid {
            Some(g) => g
                .parse()
                .map_err(|_| anyhow::anyhow!("--user {u:?}: expected UID[:GID] as numbers"))?,
            None => 0,
        };
        let mut user = User::default();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !e.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(e.additional_gids.clone()));
        p.set_user(user);
    }
    if !e.cap.is_empty() {
        let caps: Vec<Capability> = e
            .cap
            .iter()
            .map(|c| runtime::capabilities::parse(c).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?;
        let mut c = p.capabilities().clone().unwrap_or_default();
        let add = |s: &Option<oci_spec::runtime::Capabilities>| {
            let mut s = s.clone().unwrap_or_default();
            s.extend(caps.iter().copied());
            Some(s)
        };
        c.set_bounding(add(c.bounding()));
        c.set_effective(add(c.effective()));
        c.set_permitted(add(c.permitted()));
        p.set_capabilities(Some(c));
    }
    if e.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}
