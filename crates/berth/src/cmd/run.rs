//! run, create, start, attach: docker's flags turned into an engine request, and the foreground relay between
//! the terminal and the container's monitor.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use engine::attach::{self, Client, Event};
use engine::container::{CreateRequest, Engine, EngineError, RestartPolicy};
use engine::spec::{NetworkMode, RunOptions, SeccompChoice};
use engine::volumes;

use super::Ctx;

#[derive(Args, Clone)]
pub struct CreateFlags {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume", value_name = "[SRC:]DST[:OPTS]")]
    volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long = "mount", value_name = "type=...,target=...")]
    mount: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]")]
    tmpfs: Vec<String>,
    /// Memory limit
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    cpu_shares: Option<u64>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Security options (seccomp=FILE|unconfined, no-new-privileges)
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Container host name
    #[arg(long)]
    hostname: Option<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    restart: String,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Connect a container to a network (bridge, none, host, NAME, container:NAME|ID)
    #[arg(long, alias = "net", default_value = "bridge")]
    network: String,
    /// Publish a container's port(s) to the host ([IP:][HOST_PORT:]CONTAINER_PORT[/PROTO])
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long)]
    ulimit: Vec<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<i64>,
    /// Runtime to use for this container (a name on PATH or a path)
    #[arg(long, default_value = "berth-runtime")]
    runtime: String,
    /// Log driver options (max-size, max-file)
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Log driver (only json-file)
    #[arg(long = "log-driver", default_value = "json-file")]
    log_driver: String,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing", value_parser = ["always", "missing", "never"])]
    pull: String,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    flags: CreateFlags,
}

#[derive(Args)]
pub struct CreateArgs {
    #[command(flatten)]
    flags: CreateFlags,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    container: String,
}

pub fn engine(ctx: &Ctx) -> Result<Engine> {
    let exe = std::env::current_exe().context("find the berth binary")?;
    Engine::open(&ctx.root, ctx.driver, &exe)
        .with_context(|| format!("open container records in {}", ctx.root.display()))
}

/// docker's --env-file: `K=V` lines, `K` alone takes the caller's value (or is dropped), `#` comments.
pub(super) fn parse_env_file(path: &PathBuf) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--env-file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l.starts_with('=') {
            bail!(
                "--env-file {} line {}: variable name is empty: {line:?}",
                path.display(),
                n + 1
            );
        }
        out.push(l.to_string());
    }
    Ok(out)
}

fn request(f: &CreateFlags) -> Result<CreateRequest> {
    let mut env = Vec::new();
    for p in &f.env_file {
        env.extend(parse_env_file(p)?);
    }
    env.extend(f.env.iter().cloned());
    let mut run = RunOptions {
        entrypoint: f.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            }
        }),
        cmd: f.command.clone(),
        env,
        workdir: f.workdir.clone(),
        user: f.user.clone(),
        hostname: f.hostname.clone(),
        tty: f.tty,
        interactive: f.interactive,
        read_only: f.read_only,
        privileged: f.privileged,
        cap_add: f.cap_add.clone(),
        cap_drop: f.cap_drop.clone(),
        init: f.init,
        stop_signal: f.stop_signal.clone(),
        ..Default::default()
    };
    if let Some(m) = &f.memory {
        run.memory = Some(engine::parse_memory(m).context("--memory")?);
    }
    if let Some(m) = &f.memory_swap {
        run.memory_swap = Some(if m == "-1" {
            -1
        } else {
            engine::parse_memory(m).context("--memory-swap")?
        });
    }
    if let Some(c) = &f.cpus {
        let v: f64 = c
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                anyhow!("invalid argument {c:?} for \"--cpus\" flag: expected a positive number")
            })?;
        run.cpus = Some(v);
    }
    run.cpu_shares = f.cpu_shares;
    run.pids_limit = f.pids_limit;
    for u in &f.ulimit {
        run.ulimits.push(engine::parse_ulimit(u)?);
    }
    for l in &f.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            bail!("invalid --label {l:?}: empty key");
        }
        run.labels.insert(k.to_string(), v.to_string());
    }
    for s in &f.security_opt {
        let (k, v) = match s.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (s.as_str(), None),
        };
        match (k, v) {
            ("seccomp", Some("unconfined")) => run.seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some(path)) if !path.is_empty() => {
                run.seccomp = SeccompChoice::File(PathBuf::from(path))
            }
            ("no-new-privileges", None | Some("true")) => run.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => run.no_new_privileges = false,
            ("apparmor", Some(_)) | ("label", Some(_)) => {}
            _ => bail!(
                "invalid --security-opt {s:?}: expected seccomp=FILE|unconfined or no-new-privileges[=true|false]"
            ),
        }
    }
    (run.network, run.network_ref) = match f.network.as_str() {
        "none" => (NetworkMode::None, None),
        "host" => (NetworkMode::Host, None),
        "" => bail!("invalid --network \"\": a network name, bridge, none, host or container:NAME"),
        "bridge" | "default" => (NetworkMode::Bridge, Some("bridge".to_string())),
        other => match other.strip_prefix("container:") {
            Some("") => bail!("invalid --network {other}: container:NAME|ID"),
            Some(c) => (NetworkMode::Container, Some(c.to_string())),
            None => (NetworkMode::Bridge, Some(other.to_string())),
        },
    };
    let bridged = run.network == NetworkMode::Bridge;
    for p in &f.publish {
        run.publish
            .extend(engine::network::parse_publish(p).map_err(anyhow::Error::msg)?);
    }
    run.publish_all = f.publish_all;
    let publishes = !run.publish.is_empty() || run.publish_all;
    match run.network {
        NetworkMode::Container if publishes => {
            bail!("conflicting options: port publishing and the container type network mode")
        }
        NetworkMode::Host if publishes => {
            eprintln!("WARNING: Published ports are discarded when using host network mode")
        }
        _ => {}
    }
    if !bridged {
        // Nothing to publish them on (docker drops them too).
        run.publish.clear();
        run.publish_all = false;
    }
    if let Some(ip) = &f.ip {
        if !bridged {
            bail!("--ip needs a bridge network (--network NAME)");
        }
        run.ip = Some(ip.clone());
    }
    if !f.network_alias.is_empty() && !bridged {
        bail!("network-scoped aliases are only supported for user-defined networks");
    }
    run.aliases = f.network_alias.clone();
    if run.network == NetworkMode::Container && (!f.dns.is_empty() || !f.add_host.is_empty()) {
        bail!("conflicting options: dns and the network mode container");
    }
    for d in &f.dns {
        if d.parse::<std::net::IpAddr>().is_err() {
            bail!("invalid --dns {d:?}: an IP address");
        }
    }
    run.dns = f.dns.clone();
    for h in &f.add_host {
        match h.split_once(':') {
            Some((name, ip))
                if !name.is_empty()
                    && (ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok()) =>
            {
                if ip == "host-gateway" {
                    bail!("--add-host {h}: host-gateway is not supported yet");
                }
            }
            _ => bail!("invalid --add-host {h:?}: HOST:IP"),
        }
    }
    run.add_hosts = f.add_host.clone();
    let mut mounts = Vec::new();
    for v in &f.volume {
        mounts.push(volumes::parse_volume_flag(v)?);
    }
    for m in &f.mount {
        mounts.push(volumes::parse_mount_flag(m)?);
    }
    for t in &f.tmpfs {
        mounts.push(volumes::parse_tmpfs_flag(t)?);
    }
    if f.log_driver != "json-file" {
        bail!(
            "--log-driver {:?}: only json-file is available",
            f.log_driver
        );
    }
    let (mut max_size, mut max_file) = (None, 1);
    for o in &f.log_opt {
        match o.split_once('=') {
            Some(("max-size", v)) => {
                max_size = Some(
                    u64::try_from(engine::parse_memory(v).context("--log-opt max-size")?)
                        .unwrap_or(0),
                )
            }
            Some(("max-file", v)) => {
                max_file = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    anyhow!("invalid --log-opt {o:?}: max-file must be a positive number")
                })?
            }
            _ => bail!("invalid --log-opt {o:?}: use max-size=SIZE or max-file=N"),
        }
    }
    Ok(CreateRequest {
        name: f.name.clone(),
        image: f.image.clone(),
        run,
        mounts,
        restart: RestartPolicy::parse(&f.restart)?,
        auto_remove: f.rm,
        runtime: f.runtime.clone(),
        stop_timeout: f.stop_timeout,
        log_max_size: max_size,
        log_max_file: max_file,
        start_next: false,
        no_image_volumes: false,
    })
}

/// docker run pulls an image it does not have ("missing"), or always, or never.
fn ensure_image(ctx: &Ctx, e: &mut Engine, f: &CreateFlags) -> Result<()> {
    let have = match e.store()?.resolve(&f.image) {
        Ok(_) => true,
        Err(image::StoreError::NoSuchImage(_)) => false,
        Err(err) => return Err(err.into()),
    };
    if (have && f.pull != "always") || (!have && f.pull == "never") {
        return Ok(());
    }
    if !have {
        eprintln!("Unable to find image '{}' locally", f.image);
    }
    super::images::pull_for_run(ctx, &f.image)
}

fn create_container(
    ctx: &Ctx,
    e: &mut Engine,
    f: &CreateFlags,
    start_next: bool,
) -> Result<engine::records::Container> {
    let mut req = request(f)?;
    req.start_next = start_next;
    ensure_image(ctx, e, f)?;
    Ok(e.create(req)?)
}

/// Exit codes as docker's CLI: 125 for berth's own failures, 126/127 when the command cannot run.
fn fail(e: anyhow::Error) -> i32 {
    eprintln!("berth: {}", super::error_line(&e));
    match e.downcast_ref::<EngineError>() {
        Some(ee) => ee.exit_code(),
        None => 125,
    }
}

pub fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    match create_container(ctx, &mut e, &a.flags, false) {
        Ok(c) => {
            println!("{}", c.id);
            Ok(0)
        }
        Err(err) => Ok(fail(err)),
    }
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    let c = match create_container(ctx, &mut e, &a.flags, true) {
        Ok(c) => c,
        Err(err) => return Ok(fail(err)),
    };
    if a.detach {
        return match e.start(&c.id, None) {
            Ok(_) => {
                println!("{}", c.id);
                Ok(0)
            }
            Err(err) => Ok(fail(err.into())),
        };
    }
    let mut hello = attach::WANT_STDOUT | attach::WANT_STDERR;
    if a.flags.interactive {
        hello |= attach::SENDS_STDIN;
    }
    match e.start(&c.id, Some(hello)) {
        Ok(started) => {
            let client = started
                .client
                .ok_or_else(|| anyhow!("container {}: no attach connection", c.id))?;
            relay(client, a.flags.interactive, a.flags.tty, true)
        }
        Err(err) => Ok(fail(err.into())),
    }
}

pub fn start(ctx: &Ctx, a: StartArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let c = e.get(&a.containers[0])?;
        let settings = engine::container::settings_of(&c);
        let mut hello = attach::WANT_STDOUT | attach::WANT_STDERR;
        if a.interactive {
            hello |= attach::SENDS_STDIN;
        }
        let started = match e.start(&c.id, Some(hello)) {
            Ok(s) => s,
            Err(err) => return Ok(fail(err.into())),
        };
        let client = started
            .client
            .ok_or_else(|| anyhow!("container {}: no attach connection", c.id))?;
        return relay(client, a.interactive, settings.run.tty, true);
    }
    let mut failed = false;
    for name in &a.containers {
        match e.start(name, None) {
            Ok(_) => println!("{name}"),
            Err(err) => {
                eprintln!("Error response from daemon: {err}");
                failed = true;
            }
        }
    }
    if failed {
        eprintln!(
            "Error: failed to start containers: {}",
            a.containers.join(", ")
        );
        return Ok(1);
    }
    Ok(0)
}

pub fn attach_cmd(ctx: &Ctx, a: AttachArgs) -> Result<i32> {
    let e = engine(ctx)?;
    let c = e.get(&a.container)?;
    if !matches!(
        c.status,
        engine::records::Status::Running | engine::records::Status::Paused
    ) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let settings = engine::container::settings_of(&c);
    let stdin = settings.interactive && !a.no_stdin;
    let mut hello = attach::WANT_STDOUT | attach::WANT_STDERR;
    if stdin {
        hello |= attach::SENDS_STDIN;
    }
    let sock = e.paths(&c.id).attach();
    let client =
        Client::connect(&sock, hello).with_context(|| format!("attach to container {}", c.id))?;
    relay(client, stdin, settings.run.tty, a.sig_proxy)
}

/// Restores the terminal's settings when dropped.
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: i32) -> Option<RawMode> {
        // SAFETY: termios calls on a descriptor that is a terminal, with structs we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the settings we read.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

fn window_size(fd: i32) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ into a winsize we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 {
            Some((ws.ws_row, ws.ws_col))
        } else {
            None
        }
    }
}

/// Copies between this process's stdio and the container until its exit frame; returns its exit code.
fn relay(mut client: Client, stdin: bool, tty: bool, sig_proxy: bool) -> Result<i32> {
    let term_fd = std::io::stdin().as_raw_fd();
    let on_terminal = tty && std::io::stdin().is_terminal();
    // Signals are taken by one thread (sigwait), so block them before any thread exists.
    // SAFETY: sigset manipulation and the calling thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGWINCH,
        ] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let mut sender = client.sender()?;
    if tty {
        let fd = if on_terminal {
            term_fd
        } else {
            std::io::stdout().as_raw_fd()
        };
        if let Some((r, c)) = window_size(fd) {
            let _ = sender.resize(r, c);
        }
    }
    {
        let mut s = client.sender()?;
        std::thread::spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: sigwait on the set blocked above.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                return;
            }
            if sig == libc::SIGWINCH {
                if let Some((r, c)) = window_size(term_fd) {
                    let _ = s.resize(r, c);
                }
            } else if sig_proxy && s.signal(sig).is_err() {
                return;
            }
        });
    }
    let mut raw = if on_terminal {
        RawMode::enter(term_fd)
    } else {
        None
    };
    if stdin {
        std::thread::spawn(move || {
            let mut input = std::io::stdin().lock();
            let mut buf = [0u8; 32 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = sender.stdin_eof();
                        return;
                    }
                    Ok(n) => {
                        if sender.stdin(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    loop {
        match client.next_event()? {
            Event::Stdout(d) => {
                let _ = out.write_all(&d);
                let _ = out.flush();
            }
            Event::Stderr(d) => {
                let _ = err.write_all(&d);
                let _ = err.flush();
            }
            Event::Exit(code) => return Ok(code),
            Event::Error(m) => {
                raw = None;
                eprintln!("berth: {m}");
            }
            Event::Closed => {
                drop(raw);
                eprintln!("berth: lost the connection to the container's monitor");
                return Ok(125);
            }
        }
    }
}
