//! The lifecycle: create, start, state, kill, delete, pause, resume, update, exec. Each call is one short-lived
//! process that reads and writes the state directory; the container's init is left behind by `create`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::ForkResult;
use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespaceType,
    LinuxResources, Process, Spec,
};
use thiserror::Error;

use crate::namespaces::{self, JOIN_ORDER};
use crate::process::{self, ExecContext, InitContext};
use crate::state::{self, ContainerState, Root, StateError, Status};
use crate::sync::{self, Tag};

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("{0}")]
    Config(String),
    #[error("container init: {0}")]
    Setup(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id} is {status}: {what}")]
    WrongState {
        id: String,
        status: Status,
        what: &'static str,
    },
}

fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

pub struct Runtime {
    pub root: Root,
}

#[derive(Default, Clone)]
pub struct CreateOpts {
    pub id: String,
    /// The bundle's config and its text, when the caller has loaded it already.
    pub preloaded: Option<(Spec, String)>,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    /// `run` in the foreground with a terminal and no console socket: hand the pty master back to us.
    pub tty_to_caller: bool,
}

pub struct Created {
    pub state: ContainerState,
    pub console: Option<OwnedFd>,
}

pub struct ExecOpts {
    pub id: String,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub tty_to_caller: bool,
}

pub struct ExecStarted {
    pub pid: i32,
    pub console: Option<OwnedFd>,
}

/// Undoes a half-done create: kills the init, removes the cgroup and the state directory.
struct CreateGuard<'a> {
    root: &'a Root,
    id: String,
    cgroup: Option<cgroups::Cgroup>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            let _ = crate::signals::send(pid, libc::SIGKILL);
            let _ = crate::syscall::wait_exit(pid, 2000);
        }
        if let Some(cg) = &self.cgroup {
            kill_cgroup(cg);
            let _ = cg.destroy();
        }
        let _ = self.root.remove(&self.id);
    }
}

fn kill_cgroup(cg: &cgroups::Cgroup) {
    let pids = cg.pids().unwrap_or_default();
    for p in &pids {
        let _ = crate::signals::send(*p, libc::SIGKILL);
    }
    // Frozen tasks only die once thawed (cgroup v1).
    if cg.is_frozen() {
        let _ = cg.thaw();
    }
    for p in pids {
        let _ = crate::syscall::wait_exit(p, 2000);
    }
}

/// The devices every container may use, added to the config's rules as runc does.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |t: LinuxDeviceType, ma: Option<i64>, mi: Option<i64>| {
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(t)
            .major(ma.unwrap_or(-1))
            .minor(mi.unwrap_or(-1))
            .access("rwm")
            .build()
            .expect("static device rule")
    };
    let c = LinuxDeviceType::C;
    let mut v = vec![
        rule(c, Some(1), Some(3)),
        rule(c, Some(1), Some(5)),
        rule(c, Some(1), Some(7)),
        rule(c, Some(1), Some(8)),
        rule(c, Some(1), Some(9)),
        rule(c, Some(5), Some(0)),
        rule(c, Some(5), Some(1)),
        rule(c, Some(5), Some(2)),
        rule(c, Some(136), None),
    ];
    v.shrink_to_fit();
    v
}

fn resources_with_defaults(spec: &Spec) -> Option<LinuxResources> {
    let linux = spec.linux().as_ref()?;
    let mut r = linux.resources().clone().unwrap_or_default();
    let mut rules = r.devices().clone().unwrap_or_default();
    rules.extend(default_device_rules());
    for d in linux.devices().iter().flatten() {
        let t = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            _ => LinuxDeviceType::C,
        };
        if let Ok(rule) = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(t)
            .major(d.major())
            .minor(d.minor())
            .access("rwm")
            .build()
        {
            rules.push(rule);
        }
    }
    r.set_devices(Some(rules));
    Some(r)
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).map_err(io_err("write pid file", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("write pid file", path))
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: Root::new(root),
        }
    }

    fn seccomp_cache(&self) -> PathBuf {
        self.root.path.join(".seccomp-cache")
    }

    pub fn create(&self, mut o: CreateOpts) -> Result<Created, Error> {
        let bundle = std::fs::canonicalize(&o.bundle).map_err(io_err("open bundle", &o.bundle))?;
        let (spec, config_text) = match o.preloaded.take() {
            Some(loaded) => loaded,
            None => crate::spec::load_with_text(&bundle)?,
        };
        let o = &o;
        crate::rootfs::validate_propagation(&spec).map_err(Error::Config)?;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::Config("linux: field is required".into()))?;
        let nss = linux.namespaces().clone().unwrap_or_default();
        if !nss.iter().any(|n| n.typ() == LinuxNamespaceType::Mount) {
            return Err(Error::Config(
                "linux.namespaces: a mount namespace is required (berth-runtime never mounts in the host's)".into(),
            ));
        }
        let root_path = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        let rootfs_in = if root_path.is_absolute() {
            root_path
        } else {
            bundle.join(root_path)
        };
        let rootfs = std::fs::canonicalize(&rootfs_in).map_err(io_err("root.path", &rootfs_in))?;
        let process_spec = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::Config("process: field is required".into()))?;
        if process_spec.terminal() == Some(true) && o.console_socket.is_none() && !o.tty_to_caller {
            return Err(Error::Config(
                "process.terminal is true: --console-socket is required (or run in the foreground)"
                    .into(),
            ));
        }
        if process_spec.terminal() != Some(true) && o.console_socket.is_some() {
            return Err(Error::Config(
                "--console-socket given but process.terminal is false".into(),
            ));
        }
        check_unsupported(&spec)?;

        let dir = self.root.claim(&o.id)?;
        let mut guard = CreateGuard {
            root: &self.root,
            id: o.id.clone(),
            cgroup: None,
            pid: None,
            armed: true,
        };
        let cgroups_path = linux.cgroups_path().clone();
        let cgroup = cgroups::Cgroup::create(
            cgroups_path.as_deref(),
            &o.id,
            resources_with_defaults(&spec).as_ref(),
        )?;
        guard.cgroup = Some(cgroups::Cgroup::from_state(&cgroup.state()));
        let filter = match linux.seccomp() {
            Some(s) => Some(seccomp::Filter::prepare(s, Some(&self.seccomp_cache()))?),
            None => None,
        };
        let fifo_path = dir.join(state::EXEC_FIFO);
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(|e| io_err("create exec fifo", &fifo_path)(e.into()))?;
        let fifo: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo_path)
            .map_err(io_err("open exec fifo", &fifo_path))?
            .into();
        let console_socket = match &o.console_socket {
            Some(p) => {
                Some(crate::console::connect(p).map_err(io_err("connect to console socket", p))?)
            }
            None => None,
        };
        let mut join = Vec::new();
        let mut new = CloneFlags::empty();
        for t in JOIN_ORDER {
            let Some(ns) = nss.iter().find(|n| n.typ() == t) else {
                continue;
            };
            match ns.path() {
                Some(p) => {
                    let f = std::fs::File::open(p).map_err(io_err("open namespace", p))?;
                    join.push((t, OwnedFd::from(f)));
                }
                None => new |= namespaces::flag(t),
            }
        }
        let userns = nss.iter().any(|n| n.typ() == LinuxNamespaceType::User);
        let mut idmap_userns = Vec::new();
        for m in spec.mounts().iter().flatten() {
            let o = crate::rootfs::options::parse(m.options().as_deref().unwrap_or(&[]));
            if o.idmap.is_some() || m.uid_mappings().is_some() {
                let uid = m.uid_mappings().clone().unwrap_or_default();
                let gid = m.gid_mappings().clone().unwrap_or_default();
                if uid.is_empty() || gid.is_empty() {
                    return Err(Error::Config(format!(
                        "mounts: {}: idmapped mounts need uidMappings and gidMappings",
                        m.destination().display()
                    )));
                }
                let fd = process::userns_with_maps(&uid, &gid).map_err(io_err(
                    "create user namespace for idmapped mount",
                    m.destination(),
                ))?;
                idmap_userns.push((m.destination().clone(), fd));
            }
        }
        let has_hooks = spec.hooks().as_ref().is_some_and(|h| {
            h.prestart().is_some() || h.create_runtime().is_some() || h.create_container().is_some()
        });
        let host_mnt_ns =
            namespaces::ns_inode("self", "mnt").map_err(io_err("stat", "/proc/self/ns/mnt"))?;
        let (parent_ch, child_ch) = sync::pair().map_err(io_err("socketpair", "sync"))?;
        // The init is A's child; as subreaper we inherit it when A exits, so a death during setup can be
        // reaped and explained. (After create returns it belongs to our caller's reaper, as with runc.)
        crate::foreground::become_subreaper()
            .map_err(io_err("prctl(PR_SET_CHILD_SUBREAPER)", "create"))?;
        // The hooks that run inside the container read the id from here.
        std::env::set_var("BERTH_CONTAINER_ID", &o.id);

        // SAFETY: berth-runtime is single-threaded; the child runs process::stage_a and never returns.
        let a = match unsafe { nix::unistd::fork() }
            .map_err(|e| io_err("fork", "container")(e.into()))?
        {
            ForkResult::Child => {
                drop(parent_ch);
                process::stage_a(InitContext {
                    spec: &spec,
                    bundle: &bundle,
                    rootfs: &rootfs,
                    chan: child_ch,
                    fifo,
                    console_socket,
                    tty_to_parent: o.tty_to_caller,
                    preserve_fds: o.preserve_fds,
                    host_mnt_ns,
                    cgroup: &cgroup,
                    seccomp: filter.as_ref(),
                    no_pivot: o.no_pivot,
                    join,
                    new,
                    userns,
                    has_hooks,
                    idmap_userns,
                })
            }
            ForkResult::Parent { child } => child,
        };
        drop(child_ch);
        drop(fifo);
        drop(console_socket);
        drop(idmap_userns);
        let reap_a = || {
            let _ = nix::sys::wait::waitpid(a, None);
        };
        if let Err(e) = cgroup.add_process(a.as_raw()) {
            let _ = crate::signals::send(a.as_raw(), libc::SIGKILL);
            reap_a();
            return Err(e.into());
        }
        parent_ch
            .send(Tag::Ack, b"")
            .map_err(io_err("sync", "container init"))?;
        let mut init_pid = 0;
        let mut console = None;
        let created = state::now_rfc3339();
        let annotations = spec.annotations().clone().unwrap_or_default();
        let hook_state = |pid: i32, status: &str| {
            serde_json::to_vec(&serde_json::json!({
                "ociVersion": spec.version(), "id": o.id, "status": status, "pid": pid,
                "bundle": bundle, "annotations": annotations,
            }))
            .unwrap_or_default()
        };
        loop {
            let msg = parent_ch.recv().map_err(io_err("sync", "container init"))?;
            let Some(msg) = msg else {
                // Both children are gone without a word: say how they died.
                let how = match nix::sys::wait::waitpid(a, None) {
                    Ok(ws) if init_pid == 0 => describe_exit(ws),
                    _ if init_pid > 0 => {
                        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(init_pid), None)
                            .map(describe_exit)
                            .unwrap_or_else(|e| format!("status unknown: {e}"))
                    }
                    _ => "status unknown".into(),
                };
                return Err(Error::Setup(format!(
                    "the init process exited during setup ({how})"
                )));
            };
            match msg.tag {
                Tag::NeedSetup => {
                    let res = (|| -> Result<(), String> {
                        if userns {
                            let uid = linux.uid_mappings().clone().unwrap_or_default();
                            let gid = linux.gid_mappings().clone().unwrap_or_default();
                            process::write_id_maps(a.as_raw(), &uid, &gid)
                                .map_err(|e| format!("write uid/gid maps: {e}"))?;
                        }
                        if let Some(devs) = linux.net_devices() {
                            let ns = std::fs::File::open(format!("/proc/{}/ns/net", a.as_raw()))
                                .map_err(|e| format!("open network namespace: {e}"))?;
                            for (host, d) in devs {
                                let name = d.name().clone().unwrap_or_else(|| host.clone());
                                crate::netdev::move_into(
                                    host,
                                    &name,
                                    std::os::fd::AsFd::as_fd(&ns),
                                )
                                .map_err(|e| {
                                    format!("linux.netDevices: move {host} as {name}: {e}")
                                })?;
                            }
                        }
                        Ok(())
                    })();
                    match res {
                        Ok(()) => parent_ch
                            .send(Tag::Ack, b"")
                            .map_err(io_err("sync", "container init"))?,
                        Err(m) => {
                            parent_ch.error(&m);
                            reap_a();
                            return Err(Error::Setup(m));
                        }
                    }
                }
                Tag::Pid => {
                    init_pid = msg.pid();
                    guard.pid = Some(init_pid);
                    reap_a();
                }
                Tag::Hooks => {
                    let st = hook_state(init_pid, "creating");
                    let hooks = spec.hooks().as_ref();
                    let r = crate::hooks::run_all(
                        "prestart",
                        hooks.and_then(|h| h.prestart().as_ref()),
                        &st,
                    )
                    .and_then(|_| {
                        crate::hooks::run_all(
                            "createRuntime",
                            hooks.and_then(|h| h.create_runtime().as_ref()),
                            &st,
                        )
                    });
                    match r {
                        Ok(()) => parent_ch
                            .send(Tag::Ack, b"")
                            .map_err(io_err("sync", "container init"))?,
                        Err(e) => {
                            parent_ch.error(&e.to_string());
                            return Err(e.into());
                        }
                    }
                }
                Tag::Fd if msg.payload == b"console" => console = msg.fd,
                Tag::Fd => {
                    if let (Some(fd), Some(f)) = (msg.fd, filter.as_ref()) {
                        if let Some(path) = f.listener_path() {
                            seccomp::send_to_listener(
                                path,
                                &fd,
                                &hook_state(init_pid, "creating"),
                            )?;
                        }
                    }
                }
                Tag::Ready => break,
                Tag::Error => {
                    return Err(Error::Setup(
                        String::from_utf8_lossy(&msg.payload).into_owned(),
                    ))
                }
                Tag::Ack => {}
            }
        }
        let init_start_time = state::process_start_time(init_pid)
            .ok_or_else(|| Error::Setup("the init process exited during setup".into()))?;
        let st = ContainerState {
            oci_version: spec.version().clone(),
            id: o.id.clone(),
            pid: init_pid,
            bundle: bundle.clone(),
            rootfs,
            created,
            owner: String::new(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            init_start_time,
            cgroup: cgroup.state(),
            hooks: spec.hooks().clone(),
            config: serde_json::value::RawValue::from_string(config_text)
                .map_err(|e| Error::Config(e.to_string()))?,
        };
        self.root.save(&st)?;
        if let Some(p) = &o.pid_file {
            write_pid_file(p, init_pid)?;
        }
        guard.armed = false;
        Ok(Created { state: st, console })
    }

    pub fn load(&self, id: &str) -> Result<(ContainerState, Status), Error> {
        let st = self.root.load(id)?;
        let status = self.status(&st);
        Ok((st, status))
    }

    pub fn status(&self, st: &ContainerState) -> Status {
        if !st.init_alive() {
            return Status::Stopped;
        }
        if self.root.dir(&st.id).join(state::EXEC_FIFO).exists() {
            return Status::Created;
        }
        if cgroups::Cgroup::from_state(&st.cgroup).is_frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn start(&self, id: &str) -> Result<(), Error> {
        let (st, status) = self.load(id)?;
        if status != Status::Created {
            return Err(Error::WrongState {
                id: id.into(),
                status,
                what: "only a created container can be started",
            });
        }
        let fifo = self.root.dir(id).join(state::EXEC_FIFO);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .map_err(io_err("open exec fifo (is the init still waiting?)", &fifo))?;
        use std::io::Write;
        (&f).write_all(&[0])
            .map_err(io_err("write exec fifo", &fifo))?;
        drop(f);
        let _ = std::fs::remove_file(&fifo);
        if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststart().as_ref()) {
            let s = serde_json::to_vec(&st.output(Status::Running)).unwrap_or_default();
            if let Err(e) = crate::hooks::run_all("poststart", Some(h), &s) {
                eprintln!("berth-runtime: warning: {e}");
            }
        }
        Ok(())
    }

    pub fn kill(&self, id: &str, sig: i32, all: bool) -> Result<(), Error> {
        let (st, status) = self.load(id)?;
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: id.into(),
                status,
                what: "container not running",
            });
        }
        if all {
            let cg = cgroups::Cgroup::from_state(&st.cgroup);
            let mut pids = cg.pids()?;
            if !pids.contains(&st.pid) {
                pids.push(st.pid);
            }
            for p in pids {
                let _ = crate::signals::send(p, sig);
            }
            // A frozen container only acts on SIGKILL once thawed (v1); runc thaws too.
            if sig == libc::SIGKILL && status == Status::Paused {
                let _ = cg.thaw();
            }
            return Ok(());
        }
        crate::signals::send(st.pid, sig).map_err(io_err("kill", format!("pid {}", st.pid)))
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let (st, status) = match self.load(id) {
            Ok(x) => x,
            Err(Error::State(StateError::NotExist(_))) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        match status {
            Status::Stopped | Status::Created => {}
            _ if force => {}
            _ => {
                return Err(Error::WrongState {
                    id: id.into(),
                    status,
                    what: "cannot delete a container that is not stopped (use --force)",
                })
            }
        }
        self.destroy(&st)
    }

    /// Kills whatever is left, removes the cgroup, runs poststop hooks, removes the state.
    pub fn destroy(&self, st: &ContainerState) -> Result<(), Error> {
        let cg = cgroups::Cgroup::from_state(&st.cgroup);
        if st.init_alive() {
            let _ = crate::signals::send(st.pid, libc::SIGKILL);
        }
        kill_cgroup(&cg);
        if st.pid > 0 {
            let _ = crate::syscall::wait_exit(st.pid, 2000);
        }
        let cg_res = cg.destroy();
        {
            if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststop().as_ref()) {
                let s = serde_json::to_vec(&st.output(Status::Stopped)).unwrap_or_default();
                if let Err(e) = crate::hooks::run_all("poststop", Some(h), &s) {
                    eprintln!("berth-runtime: warning: {e}");
                }
            }
        }
        // The state goes even if the cgroup could not: report the cgroup error after.
        self.root.remove(&st.id)?;
        cg_res.map_err(Error::from)
    }

    pub fn pause(&self, id: &str) -> Result<(), Error> {
        let (st, status) = self.load(id)?;
        if status != Status::Running && status != Status::Created {
            return Err(Error::WrongState {
                id: id.into(),
                status,
                what: "only a running container can be paused",
            });
        }
        cgroups::Cgroup::from_state(&st.cgroup).freeze()?;
        Ok(())
    }

    pub fn resume(&self, id: &str) -> Result<(), Error> {
        let (st, status) = self.load(id)?;
        if status != Status::Paused {
            return Err(Error::WrongState {
                id: id.into(),
                status,
                what: "only a paused container can be resumed",
            });
        }
        cgroups::Cgroup::from_state(&st.cgroup).thaw()?;
        Ok(())
    }

    pub fn pids(&self, id: &str) -> Result<Vec<i32>, Error> {
        let (st, status) = self.load(id)?;
        if status == Status::Stopped {
            return Ok(Vec::new());
        }
        let mut p = cgroups::Cgroup::from_state(&st.cgroup).pids()?;
        if p.is_empty() {
            p.push(st.pid);
        }
        p.sort();
        Ok(p)
    }

    pub fn update(&self, id: &str, r: &LinuxResources) -> Result<(), Error> {
        let (mut st, status) = self.load(id)?;
        if status == Status::Stopped {
            return Err(Error::WrongState {
                id: id.into(),
                status,
                what: "cannot update a stopped container",
            });
        }
        cgroups::Cgroup::from_state(&st.cgroup).update(r)?;
        let mut spec = spec_of(&st)?;
        if let Some(linux) = spec.linux_mut() {
            linux.set_resources(Some(merge_resources(
                linux.resources().clone().unwrap_or_default(),
                r,
            )));
        }
        st.config =
            serde_json::value::to_raw_value(&spec).map_err(|e| Error::Config(e.to_string()))?;
        self.root.save(&st)?;
        Ok(())
    }

    pub fn exec(&self, o: &ExecOpts) -> Result<ExecStarted, Error> {
        let (st, status) = self.load(&o.id)?;
        if status != Status::Running && status != Status::Created {
            return Err(Error::WrongState {
                id: o.id.clone(),
                status,
                what: "cannot exec in a container that is not running",
            });
        }
        let spec = spec_of(&st)?;
        if o.process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Config("exec: process.args must not be empty".into()));
        }
        if o.process.terminal() == Some(true) && o.console_socket.is_none() && !o.tty_to_caller {
            return Err(Error::Config(
                "exec --tty needs --console-socket when detached".into(),
            ));
        }
        let pid = st.pid;
        let mut join = Vec::new();
        let mut userns = false;
        for t in JOIN_ORDER {
            let name = namespaces::proc_name(t);
            let theirs = match namespaces::ns_inode(&pid.to_string(), name) {
                Ok(i) => i,
                Err(_) => continue,
            };
            let ours = namespaces::ns_inode("self", name).unwrap_or(0);
            if theirs != ours {
                let p = format!("/proc/{pid}/ns/{name}");
                let f = std::fs::File::open(&p).map_err(io_err("open namespace", &p))?;
                join.push((t, OwnedFd::from(f)));
                if t == LinuxNamespaceType::User {
                    userns = true;
                }
            }
        }
        let rootp = format!("/proc/{pid}/root");
        let root: OwnedFd = std::fs::File::open(&rootp)
            .map_err(io_err("open container root", &rootp))?
            .into();
        let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(seccomp::Filter::prepare(s, Some(&self.seccomp_cache()))?),
            None => None,
        };
        let console_socket = match &o.console_socket {
            Some(p) => {
                Some(crate::console::connect(p).map_err(io_err("connect to console socket", p))?)
            }
            None => None,
        };
        let cg = cgroups::Cgroup::from_state(&st.cgroup);
        let (parent_ch, child_ch) = sync::pair().map_err(io_err("socketpair", "sync"))?;
        // SAFETY: single-threaded; the child never returns.
        let c =
            match unsafe { nix::unistd::fork() }.map_err(|e| io_err("fork", "exec")(e.into()))? {
                ForkResult::Child => {
                    drop(parent_ch);
                    process::exec_stage_c(ExecContext {
                        process: &o.process,
                        spec: &spec,
                        chan: child_ch,
                        join,
                        root,
                        console_socket,
                        tty_to_parent: o.tty_to_caller,
                        preserve_fds: o.preserve_fds,
                        seccomp: filter.as_ref(),
                        userns,
                    })
                }
                ForkResult::Parent { child } => child,
            };
        drop(child_ch);
        drop(console_socket);
        if let Err(e) = cg.add_process(c.as_raw()) {
            let _ = crate::signals::send(c.as_raw(), libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(c, None);
            return Err(e.into());
        }
        parent_ch
            .send(Tag::Ack, b"")
            .map_err(io_err("sync", "exec"))?;
        let mut exec_pid = 0;
        let mut console = None;
        let mut ready = false;
        loop {
            let msg = parent_ch.recv().map_err(io_err("sync", "exec"))?;
            match msg {
                None if ready => break,
                None => return Err(Error::Setup("the exec process exited during setup".into())),
                Some(m) => match m.tag {
                    Tag::Pid => {
                        exec_pid = m.pid();
                        let _ = nix::sys::wait::waitpid(c, None);
                    }
                    Tag::Fd if m.payload == b"console" => console = m.fd,
                    Tag::Ready => ready = true,
                    Tag::Error => {
                        if exec_pid > 0 {
                            let _ = crate::syscall::wait_exit(exec_pid, 1000);
                        }
                        return Err(Error::Setup(
                            String::from_utf8_lossy(&m.payload).into_owned(),
                        ));
                    }
                    _ => {}
                },
            }
        }
        if let Some(p) = &o.pid_file {
            write_pid_file(p, exec_pid)?;
        }
        Ok(ExecStarted {
            pid: exec_pid,
            console,
        })
    }
}

fn describe_exit(ws: nix::sys::wait::WaitStatus) -> String {
    match ws {
        nix::sys::wait::WaitStatus::Exited(_, c) => format!("exit status {c}"),
        nix::sys::wait::WaitStatus::Signaled(_, s, _) => format!("killed by {s}"),
        other => format!("{other:?}"),
    }
}

pub fn spec_of(st: &ContainerState) -> Result<Spec, Error> {
    serde_json::from_str(st.config.get()).map_err(|e| Error::Config(format!("stored config: {e}")))
}

/// What the kernel or this build cannot do is refused by name, never ignored.
fn check_unsupported(spec: &Spec) -> Result<(), Error> {
    let p = spec.process().as_ref();
    if p.and_then(|p| p.apparmor_profile().as_ref())
        .is_some_and(|s| !s.is_empty())
        && !crate::process::apparmor_enabled()
    {
        return Err(Error::Config(
            "process.apparmorProfile: AppArmor is not enabled on this host".into(),
        ));
    }
    if p.and_then(|p| p.selinux_label().as_ref())
        .is_some_and(|s| !s.is_empty())
    {
        return Err(Error::Config(
            "process.selinuxLabel: SELinux is not supported by berth-runtime".into(),
        ));
    }
    if let Some(l) = spec.linux() {
        if l.intel_rdt().is_some() {
            return Err(Error::Config(
                "linux.intelRdt: Intel RDT is not supported by berth-runtime".into(),
            ));
        }
        if l.memory_policy().is_some() {
            return Err(Error::Config(
                "linux.memoryPolicy: not supported by berth-runtime".into(),
            ));
        }
        if l.mount_label().as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(Error::Config(
                "linux.mountLabel: SELinux is not supported by berth-runtime".into(),
            ));
        }
        if l.time_offsets().is_some() && !Path::new("/proc/self/ns/time").exists() {
            return Err(Error::Config(
                "linux.timeOffsets: this kernel has no time namespaces".into(),
            ));
        }
    }
    Ok(())
}

/// `update` merges: fields set in `new` replace the stored ones.
fn merge_resources(mut old: LinuxResources, new: &LinuxResources) -> LinuxResources {
    if new.memory().is_some() {
        old.set_memory(*new.memory());
    }
    if new.cpu().is_some() {
        old.set_cpu(new.cpu().clone());
    }
    if new.pids().is_some() {
        old.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        old.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        old.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.unified().is_some() {
        old.set_unified(new.unified().clone());
    }
    old
}

/// Blocks the signals a foreground `run`/`exec` forwards or handles; they are read from a signalfd.
pub fn block_signals() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::all();
    for s in [
        nix::sys::signal::SIGSEGV,
        nix::sys::signal::SIGBUS,
        nix::sys::signal::SIGILL,
        nix::sys::signal::SIGFPE,
        nix::sys::signal::SIGKILL,
        nix::sys::signal::SIGSTOP,
    ] {
        set.remove(s);
    }
    let _ = set.thread_block();
    set
}

pub fn unblock_all_signals() {
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
}

use std::os::unix::fs::OpenOptionsExt;
