//! `berth-runtime`: runc's command line over the runtime library.

mod args;
mod log;
mod sizes;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use runtime::container::{CreateOpts, ExecOpts, Runtime};
use runtime::state::Status;

use args::{Cli, Command};

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let logger = log::Logger::new(cli.log.as_deref(), &cli.log_format);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            logger.error(&chain_message(&e));
            1
        }
    }
}

/// The error and its causes on one line, like `{:#}`, but without repeating a cause that an error's own
/// message already spells out (the library errors name their source; callers read the last line).
fn chain_message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

fn run(cli: &Cli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup: the systemd cgroup driver is not implemented yet; use cgroupfs (omit the flag)");
    }
    let rt = Runtime::new(&cli.root);
    match &cli.command {
        Command::Spec { bundle } => {
            let rootless = cli.rootless.as_deref().is_some_and(|v| v != "false");
            let dir = bundle.clone().unwrap_or_else(|| PathBuf::from("."));
            let path = dir.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let v = runtime::spec::default_spec_json(rootless);
            let s = serde_json::to_string_pretty(&v)?;
            std::fs::write(&path, s + "\n").with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
        Command::Create(c) => {
            let loaded = seal_for_bundle(c)?;
            rt.create(create_opts(c, &c.id, false, loaded))?;
            Ok(0)
        }
        Command::Start { id } => {
            rt.start(id)?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => {
            let loaded = seal_for_bundle(create)?;
            let id = &create.id;
            if *detach {
                rt.create(create_opts(create, id, false, loaded))?;
                if let Err(e) = rt.start(id) {
                    let _ = rt.delete(id, true);
                    return Err(e.into());
                }
                return Ok(0);
            }
            runtime::foreground::become_subreaper()?;
            let blocked = runtime::container::block_signals();
            let created = rt.create(create_opts(create, id, true, loaded))?;
            if let Err(e) = rt.start(id) {
                let _ = rt.delete(id, true);
                return Err(e.into());
            }
            let code = runtime::foreground::wait(created.state.pid, created.console, &blocked)?;
            if !*keep {
                rt.destroy(&created.state)?;
            }
            Ok(code)
        }
        Command::State { id } => {
            let (st, status) = rt.load(id)?;
            println!("{}", serde_json::to_string_pretty(&st.output(status))?);
            Ok(0)
        }
        Command::List { format, quiet } => {
            let ids = rt.root.list()?;
            let mut rows = Vec::new();
            for id in ids {
                if let Ok((st, status)) = rt.load(&id) {
                    rows.push((st, status));
                }
            }
            if *quiet {
                for (st, _) in &rows {
                    println!("{}", st.id);
                }
            } else if format == "json" {
                let v: Vec<_> = rows.iter().map(|(st, s)| st.output(*s)).collect();
                println!("{}", serde_json::to_string(&v)?);
            } else {
                let mut table = vec![vec![
                    "ID".to_string(),
                    "PID".into(),
                    "STATUS".into(),
                    "BUNDLE".into(),
                    "CREATED".into(),
                    "OWNER".into(),
                ]];
                for (st, s) in &rows {
                    let pid = if *s == Status::Stopped { 0 } else { st.pid };
                    table.push(vec![
                        st.id.clone(),
                        pid.to_string(),
                        s.to_string(),
                        st.bundle.display().to_string(),
                        st.created.clone(),
                        if st.owner.is_empty() {
                            "root".into()
                        } else {
                            st.owner.clone()
                        },
                    ]);
                }
                print_table(&table);
            }
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = runtime::signals::parse(signal.as_deref().unwrap_or("SIGTERM"))?;
            rt.kill(id, sig, *all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            rt.delete(id, *force)?;
            Ok(0)
        }
        Command::Pause { id } => {
            rt.pause(id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            rt.resume(id)?;
            Ok(0)
        }
        Command::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = rt.pids(id)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
                return Ok(0);
            }
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.clone()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            println!("{header}");
            for l in lines {
                if let Some(p) = l
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if pids.contains(&p) {
                        println!("{l}");
                    }
                }
            }
            Ok(0)
        }
        Command::Update(u) => {
            let r = sizes::resources(u)?;
            rt.update(&u.id, &r)?;
            Ok(0)
        }
        Command::Events {
            stats,
            interval,
            id,
        } => events(&rt, id, *stats, interval),
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&runtime::features::document())?
            );
            Ok(0)
        }
        Command::Exec(e) => exec(&rt, e),
    }
}

/// CVE-2019-5736 protection before anything joins a container (see runtime::exe_protect). `caps` is the
/// capability set the container's processes get: with CAP_LINUX_IMMUTABLE they could unlock an immutable
/// binary.
fn seal(immutable: bool, caps: Option<&oci_spec::runtime::LinuxCapabilities>) -> Result<()> {
    if std::env::var_os("BERTH_RUNTIME_NO_SEAL").is_some() {
        return Ok(());
    }
    let may_clear = caps
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&oci_spec::runtime::Capability::LinuxImmutable));
    if runtime::exe_protect::needs_seal(immutable, may_clear) {
        runtime::exe_protect::seal()?;
    }
    Ok(())
}

/// Seals unless the binary is immutable and the bundle's processes cannot clear that (their bounding set lacks
/// CAP_LINUX_IMMUTABLE); only then is config.json read here, and handed on so `create` does not read it again.
/// A malformed config is left for `create` to report.
fn seal_for_bundle(c: &args::CreateArgs) -> Result<Option<(oci_spec::runtime::Spec, String)>> {
    if !runtime::exe_protect::is_immutable() {
        seal(false, None)?;
        return Ok(None);
    }
    let bundle = c.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    match runtime::spec::load_with_text(&bundle) {
        Ok(loaded) => {
            seal(
                true,
                loaded
                    .0
                    .process()
                    .as_ref()
                    .and_then(|p| p.capabilities().as_ref()),
            )?;
            Ok(Some(loaded))
        }
        Err(_) => {
            seal(true, None)?;
            Ok(None)
        }
    }
}

fn create_opts(
    c: &args::CreateArgs,
    id: &str,
    tty_to_caller: bool,
    preloaded: Option<(oci_spec::runtime::Spec, String)>,
) -> CreateOpts {
    CreateOpts {
        preloaded,
        id: id.to_string(),
        bundle: c.bundle.clone().unwrap_or_else(|| PathBuf::from(".")),
        pid_file: c.pid_file.clone().map(abs),
        console_socket: c.console_socket.clone(),
        no_pivot: c.no_pivot,
        preserve_fds: c.preserve_fds,
        tty_to_caller,
    }
}

fn abs(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

fn print_table(rows: &[Vec<String>]) {
    let n = rows.first().map(|r| r.len()).unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == n {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{:<w$}   ", cell, w = widths[i]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn exec(rt: &Runtime, e: &args::ExecArgs) -> Result<i32> {
    let (st, status) = rt.load(&e.id)?;
    if status == Status::Stopped {
        bail!("cannot exec in a stopped container {}", e.id);
    }
    let spec = runtime::container::spec_of(&st)?;
    let process = match &e.process {
        Some(p) => {
            let data = if p == Path::new("-") {
                let mut s = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read(p).with_context(|| format!("read process file {}", p.display()))?
            };
            let de = &mut serde_json::Deserializer::from_slice(&data);
            serde_path_to_error_compat(de, p)?
        }
        None => args::exec_process(e, spec.process().as_ref())?,
    };
    seal(
        runtime::exe_protect::is_immutable(),
        process.capabilities().as_ref(),
    )?;
    let tty = process.terminal() == Some(true);
    let fg_tty = tty && e.console_socket.is_none() && !e.detach;
    let blocked = if e.detach {
        None
    } else {
        runtime::foreground::become_subreaper()?;
        Some(runtime::container::block_signals())
    };
    let started = rt.exec(&ExecOpts {
        id: e.id.clone(),
        process,
        console_socket: e.console_socket.clone(),
        pid_file: e.pid_file.clone().map(abs),
        preserve_fds: e.preserve_fds,
        tty_to_caller: fg_tty,
    })?;
    match blocked {
        None => Ok(0),
        Some(b) => Ok(runtime::foreground::wait(started.pid, started.console, &b)?),
    }
}

fn serde_path_to_error_compat(
    de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
    p: &Path,
) -> Result<oci_spec::runtime::Process> {
    let v: serde_json::Value = serde::Deserialize::deserialize(&mut *de)
        .with_context(|| format!("{}: invalid JSON", p.display()))?;
    serde_json::from_value(v).with_context(|| format!("{}: invalid process", p.display()))
}

fn events(rt: &Runtime, id: &str, once: bool, interval: &str) -> Result<i32> {
    let every =
        humantime::parse_duration(interval).with_context(|| format!("--interval {interval:?}"))?;
    let mut last_oom = None;
    loop {
        let (st, status) = rt.load(id)?;
        if status == Status::Stopped {
            if once {
                bail!("container {id} is not running");
            }
            return Ok(0);
        }
        let cg = cgroups::Cgroup::from_state(&st.cgroup);
        let ooms = cg.oom_kills();
        if let Some(prev) = last_oom {
            if ooms > prev {
                println!("{}", serde_json::json!({"type": "oom", "id": id}));
            }
        }
        last_oom = Some(ooms);
        let data = cg.stats()?;
        println!(
            "{}",
            serde_json::json!({"type": "stats", "id": id, "data": data})
        );
        let _ = std::io::stdout().flush();
        if once {
            return Ok(0);
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::chain_message;

    #[test]
    fn chain_message_skips_causes_already_said() {
        let io = std::io::Error::from_raw_os_error(34);
        let text = format!("cgroup write /x/blkio.weight: {io}");
        let e = anyhow::Error::new(io).context(text.clone());
        assert_eq!(chain_message(&e), text);
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_message(&e), "outer: inner");
    }
}
