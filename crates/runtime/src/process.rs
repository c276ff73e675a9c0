//! What runs in the forked children, between fork and exec. The runtime is single-threaded, so these children
//! may allocate; everything they cannot do is reported over the sync channel as one line naming the step.
//!
//! create:  runtime ──fork──▶ A (joins/unshares namespaces, asks for id maps) ──fork──▶ B = container init
//!          B sets up the rootfs, pivots, drops privileges, reports Ready and blocks on the exec fifo.
//! exec:    runtime ──fork──▶ C (setns into the init's namespaces) ──fork──▶ D (drops privileges, execs).

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, PosixRlimitType, Process, Spec};

use crate::capabilities::CapSets;
use crate::namespaces;
use crate::rootfs;
use crate::sync::{Channel, Tag};

/// Everything the init needs, prepared by the runtime before forking.
pub struct InitContext<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub chan: Channel,
    pub fifo: OwnedFd,
    pub console_socket: Option<OwnedFd>,
    /// Foreground terminal without a console socket: send the master back over `chan`.
    pub tty_to_parent: bool,
    pub preserve_fds: u32,
    pub host_mnt_ns: u64,
    pub cgroup: &'a cgroups::Cgroup,
    pub seccomp: Option<&'a seccomp::Filter>,
    pub no_pivot: bool,
    /// Namespaces to join by path, opened by the runtime.
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// Namespaces to create.
    pub new: CloneFlags,
    pub userns: bool,
    pub has_hooks: bool,
    pub idmap_userns: Vec<(PathBuf, OwnedFd)>,
}

fn fail(chan: &Channel, msg: String) -> ! {
    chan.error(&msg);
    // SAFETY: _exit is async-signal-safe and skips destructors that belong to the parent.
    unsafe { libc::_exit(1) }
}

macro_rules! step {
    ($chan:expr, $e:expr, $($fmt:tt)*) => {
        match $e {
            Ok(v) => v,
            Err(e) => fail($chan, format!("{}: {}", format!($($fmt)*), e)),
        }
    };
}

/// Stage A: namespaces. Never returns.
pub fn stage_a(ctx: InitContext) -> ! {
    let chan = &ctx.chan;
    // Wait until the runtime has put us into the container's cgroup (before any cgroup namespace exists).
    if let Err(e) = chan.wait_ack() {
        fail(chan, e)
    }
    let process = ctx.spec.process().as_ref().expect("validated: process");
    if let Some(adj) = process.oom_score_adj() {
        step!(
            chan,
            std::fs::write("/proc/self/oom_score_adj", adj.to_string()),
            "set oom_score_adj"
        );
    }
    for (t, fd) in &ctx.join {
        step!(
            chan,
            setns(fd.as_fd(), namespaces::flag(*t)),
            "join {} namespace",
            namespaces::proc_name(*t)
        );
    }
    if !ctx.new.is_empty() {
        step!(chan, unshare(ctx.new), "create namespaces ({:?})", ctx.new);
    }
    chan.send(Tag::NeedSetup, b"")
        .unwrap_or_else(|e| fail(chan, format!("sync: {e}")));
    if let Err(e) = chan.wait_ack() {
        fail(chan, e)
    }
    if ctx.userns {
        // Become the namespace's root (when mapped) so what we create is owned by it.
        let _ = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0));
        let _ = nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0));
    }
    if let Some(offsets) = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    {
        let mut s = String::new();
        for (clock, off) in offsets {
            s.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        step!(
            chan,
            std::fs::write("/proc/self/timens_offsets", s),
            "write time namespace offsets"
        );
    }
    fork_and_report(chan, "fork container init");
    stage_b(ctx)
}

/// Forks; the parent reports the child's pid (host view) to the runtime and exits, the child returns. This
/// second fork is what enters a new (or joined) pid and time namespace.
fn fork_and_report(chan: &Channel, what: &str) {
    // SAFETY: the runtime is single-threaded, so the child may run ordinary code.
    match step!(chan, unsafe { nix::unistd::fork() }, "{what}") {
        ForkResult::Child => {}
        ForkResult::Parent { child } => {
            let _ = chan.send(Tag::Pid, &child.as_raw().to_le_bytes());
            // SAFETY: _exit skips the destructors that belong to the runtime, not to this copy.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Stage B: the container's init. Never returns: execs the user's process or exits.
fn stage_b(ctx: InitContext) -> ! {
    let chan = &ctx.chan;
    let spec = ctx.spec;
    let process = spec.process().as_ref().expect("validated: process");
    // SAFETY: umask only changes our own file-creation mask.
    unsafe { libc::umask(0o022) };
    let plan = rootfs::Plan {
        spec,
        rootfs: ctx.rootfs,
        bundle: ctx.bundle,
        cgroup: ctx.cgroup,
        cgroupns: ctx.new.contains(CloneFlags::CLONE_NEWCGROUP)
            || ctx
                .join
                .iter()
                .any(|(t, _)| *t == LinuxNamespaceType::Cgroup),
        userns: ctx.userns,
        no_pivot: ctx.no_pivot,
        host_mnt_ns: ctx.host_mnt_ns,
        idmap_userns: &ctx.idmap_userns,
    };
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        step!(chan, nix::unistd::sethostname(h), "set hostname {h:?}");
    }
    if let Some(d) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        let c = step!(chan, CString::new(d.as_bytes()), "set domainname");
        // SAFETY: a valid buffer of the given length.
        if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
            fail(
                chan,
                format!("set domainname {d:?}: {}", std::io::Error::last_os_error()),
            );
        }
    }
    let rootfd = step!(chan, rootfs::prepare(&plan), "rootfs");
    if ctx.has_hooks {
        chan.send(Tag::Hooks, b"")
            .unwrap_or_else(|e| fail(chan, format!("sync: {e}")));
        if let Err(e) = chan.wait_ack() {
            fail(chan, e)
        }
        if let Some(h) = spec.hooks().as_ref() {
            let state = container_state_json(spec, ctx.bundle, "creating");
            step!(
                chan,
                crate::hooks::run_all("createContainer", h.create_container().as_ref(), &state),
                "hook"
            );
        }
    }
    step!(chan, rootfs::pivot(&plan, rootfd), "rootfs");
    if process.terminal() == Some(true) {
        setup_terminal(
            chan,
            process,
            ctx.console_socket.as_ref(),
            ctx.tty_to_parent,
            true,
        );
    }
    step!(chan, rootfs::finalize(&plan), "rootfs");
    let prepared = prepare_exec(chan, process, spec);
    drop_privileges(chan, process, ctx.seccomp);
    step!(
        chan,
        crate::syscall::cloexec_from(3 + ctx.preserve_fds),
        "close descriptors"
    );
    chan.send(Tag::Ready, b"")
        .unwrap_or_else(|e| fail(chan, format!("sync: {e}")));
    // Block until `start` writes to the exec fifo.
    let mut fifo = std::fs::File::from(ctx.fifo);
    let mut b = [0u8; 1];
    loop {
        match fifo.read(&mut b) {
            Ok(1) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => late_fail(&format!("read exec fifo: {e}")),
        }
    }
    drop(fifo);
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
    {
        let state = container_state_json(spec, ctx.bundle, "running");
        if let Err(e) = crate::hooks::run_all("startContainer", Some(h), &state) {
            late_fail(&e.to_string())
        }
    }
    exec(prepared)
}

/// After create has returned nobody listens on the channel: the error goes to the container's stderr.
fn late_fail(msg: &str) -> ! {
    late_fail_with(msg, 127)
}

fn late_fail_with(msg: &str, code: i32) -> ! {
    eprintln!("berth-runtime: {msg}");
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

/// The state JSON a createContainer/startContainer hook sees (pid is our own, status as given).
fn container_state_json(spec: &Spec, bundle: &Path, status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": spec.version(),
        "id": std::env::var("BERTH_CONTAINER_ID").unwrap_or_default(),
        "status": status,
        "pid": std::process::id(),
        "bundle": bundle,
        "annotations": spec.annotations().clone().unwrap_or_default(),
    }))
    .unwrap_or_default()
}

fn setup_terminal(
    chan: &Channel,
    process: &Process,
    sock: Option<&OwnedFd>,
    to_parent: bool,
    console: bool,
) {
    let pty = step!(chan, crate::console::open_pty(), "create pty");
    if let Some(size) = process.console_size() {
        let _ = crate::console::set_size(
            pty.master.as_raw_fd(),
            size.height() as u16,
            size.width() as u16,
        );
    }
    if console {
        // /dev/console becomes the pty, as on a real system.
        let target = Path::new("/dev/console");
        if !target.exists() {
            let _ = std::fs::File::create(target);
        }
        step!(
            chan,
            nix::mount::mount(
                Some(&pty.slave_path),
                target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>
            ),
            "bind mount {} on /dev/console",
            pty.slave_path.display()
        );
    }
    if let Some(s) = sock {
        step!(
            chan,
            crate::console::send_master(s.as_raw_fd(), pty.master.as_raw_fd(), &pty.slave_path),
            "send pty master to console socket"
        );
    } else if to_parent {
        step!(
            chan,
            chan.send_fd(Tag::Fd, b"console", Some(pty.master.as_raw_fd())),
            "send pty master"
        );
    }
    step!(
        chan,
        crate::console::become_session_leader(&pty.slave_path),
        "make {} the controlling terminal",
        pty.slave_path.display()
    );
    drop(pty.master);
}

pub struct Prepared {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

/// cwd, rlimits, scheduling, and the executable's path: everything that can still fail before Ready.
fn prepare_exec(chan: &Channel, process: &Process, spec: &Spec) -> Prepared {
    // A foreground run blocks signals before forking; the user's process starts with none blocked.
    crate::container::unblock_all_signals();
    let cwd = process.cwd();
    // runc creates a missing cwd. Failures here are not final: drop_privileges changes into it again as the
    // container's user and reports that error.
    let _ = std::fs::create_dir_all(cwd);
    let _ = nix::unistd::chdir(cwd);
    for rl in process.rlimits().iter().flatten() {
        let res = rlimit_resource(rl.typ());
        let lim = libc::rlimit {
            rlim_cur: rl.soft(),
            rlim_max: rl.hard(),
        };
        // SAFETY: a valid rlimit struct.
        if unsafe { libc::setrlimit(res as _, &lim) } != 0 {
            fail(
                chan,
                format!("set {:?}: {}", rl.typ(), std::io::Error::last_os_error()),
            );
        }
    }
    apply_scheduling(chan, process, spec);
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        step!(
            chan,
            apparmor_on_exec(profile),
            "apply AppArmor profile {profile:?}"
        );
    }
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let path = step!(chan, lookup(&args[0], &env), "exec {:?}", args[0]);
    Prepared {
        path: step!(
            chan,
            CString::new(path.into_os_string().into_encoded_bytes()),
            "exec"
        ),
        args: args
            .iter()
            .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
            .collect(),
        env: env
            .iter()
            .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
            .collect(),
    }
}

fn apply_scheduling(chan: &Channel, process: &Process, spec: &Spec) {
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        let persona = match p.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
            _ => 0x0000,
        };
        // SAFETY: personality takes an integer.
        if unsafe { libc::personality(persona) } == -1 {
            fail(
                chan,
                format!("set personality: {}", std::io::Error::last_os_error()),
            );
        }
    }
    if let Some(s) = process.scheduler() {
        use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
        let mut a = crate::syscall::SchedAttr {
            sched_policy: match s.policy() {
                P::SchedOther => 0,
                P::SchedFifo => 1,
                P::SchedRr => 2,
                P::SchedBatch => 3,
                P::SchedIso => 4,
                P::SchedIdle => 5,
                P::SchedDeadline => 6,
            },
            sched_nice: s.nice().unwrap_or(0),
            sched_priority: s.priority().unwrap_or(0) as u32,
            sched_runtime: s.runtime().unwrap_or(0),
            sched_deadline: s.deadline().unwrap_or(0),
            sched_period: s.period().unwrap_or(0),
            ..Default::default()
        };
        for f in s.flags().iter().flatten() {
            a.sched_flags |= match f {
                F::SchedResetOnFork => 0x01,
                F::SchedFlagReclaim => 0x02,
                F::SchedFlagDLOverrun => 0x04,
                F::SchedFlagKeepPolicy => 0x08,
                F::SchedFlagKeepParams => 0x10,
                F::SchedFlagUtilClampMin => 0x20,
                F::SchedFlagUtilClampMax => 0x40,
            };
        }
        step!(chan, crate::syscall::sched_setattr(&mut a), "set scheduler");
    }
    if let Some(io) = process.io_priority() {
        use oci_spec::runtime::IOPriorityClass as C;
        let class = match io.class() {
            C::IoprioClassRt => 1,
            C::IoprioClassBe => 2,
            C::IoprioClassIdle => 3,
        };
        step!(
            chan,
            crate::syscall::ioprio_set(class, io.priority() as i32),
            "set I/O priority"
        );
    }
}

fn rlimit_resource(t: PosixRlimitType) -> u32 {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// runc's test: the module parameter, not securityfs (which may not be mounted).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// The profile takes effect at the next execve, as runc applies it (the container's /proc is mounted by now).
fn apparmor_on_exec(profile: &str) -> std::io::Result<()> {
    let data = format!("exec {profile}");
    std::fs::write("/proc/self/attr/apparmor/exec", &data)
        .or_else(|_| std::fs::write("/proc/self/attr/exec", &data))
}

/// $PATH lookup in the container's view, as execvp would do, but before Ready so a typo fails `create`.
fn lookup(name: &str, env: &[String]) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        return match std::fs::metadata(name) {
            Ok(_) => Ok(PathBuf::from(name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err("no such file or directory".into())
            }
            Err(e) => Err(e.to_string()),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let p = Path::new(if dir.is_empty() { "." } else { dir }).join(name);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err("executable file not found in $PATH".into())
}

/// Capabilities, user, no_new_privs and seccomp, in runc's order.
fn drop_privileges(chan: &Channel, process: &Process, filter: Option<&seccomp::Filter>) {
    let caps = CapSets::from_spec(process.capabilities().as_ref());
    let nnp = process.no_new_privileges() == Some(true);
    step!(chan, caps.drop_bounding(), "drop bounding capabilities");
    if let (Some(f), false) = (filter, nnp) {
        install_seccomp(chan, f);
    }
    // Keep the permitted set across the uid switch; capset below sets the final sets.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let user = process.user();
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&gids) {
        Ok(()) => {}
        // In a user namespace with setgroups denied, an empty list is all there is to set.
        Err(nix::errno::Errno::EPERM) if gids.is_empty() => {}
        Err(e) => fail(chan, format!("setgroups {gids:?}: {e}")),
    }
    let g = Gid::from_raw(user.gid());
    step!(
        chan,
        nix::unistd::setresgid(g, g, g),
        "setgid {}",
        user.gid()
    );
    let u = Uid::from_raw(user.uid());
    step!(
        chan,
        nix::unistd::setresuid(u, u, u),
        "setuid {}",
        user.uid()
    );
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    step!(chan, caps.apply(), "set capabilities");
    if let Some(m) = user.umask() {
        // SAFETY: umask only changes our own mask.
        unsafe { libc::umask(m as libc::mode_t) };
    }
    let cwd = process.cwd();
    step!(
        chan,
        nix::unistd::chdir(cwd),
        "chdir to cwd {}",
        cwd.display()
    );
    if nnp {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            fail(
                chan,
                format!("set no_new_privs: {}", std::io::Error::last_os_error()),
            );
        }
        if let Some(f) = filter {
            install_seccomp(chan, f);
        }
    }
}

fn install_seccomp(chan: &Channel, f: &seccomp::Filter) {
    if let Some(fd) = step!(chan, f.install(), "seccomp") {
        step!(
            chan,
            chan.send_fd(Tag::Fd, b"seccomp", Some(fd.as_raw_fd())),
            "send seccomp notify fd"
        );
    }
}

fn exec(p: Prepared) -> ! {
    let e = nix::unistd::execve(&p.path, &p.args, &p.env).unwrap_err();
    // A shell's codes, which docker passes on: 127 not found, 126 found but not runnable.
    let code = if e == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    late_fail_with(&format!("exec {:?}: {e}", p.path), code)
}

/// What an `exec` process needs.
pub struct ExecContext<'a> {
    pub process: &'a Process,
    pub spec: &'a Spec,
    pub chan: Channel,
    /// The init's namespaces that differ from ours, in join order.
    pub join: Vec<(LinuxNamespaceType, OwnedFd)>,
    /// /proc/INIT/root, to chroot into after joining the mount namespace.
    pub root: OwnedFd,
    pub console_socket: Option<OwnedFd>,
    pub tty_to_parent: bool,
    pub preserve_fds: u32,
    pub seccomp: Option<&'a seccomp::Filter>,
    pub userns: bool,
}

/// Stage C: join the container's namespaces, fork the process. Never returns.
pub fn exec_stage_c(ctx: ExecContext) -> ! {
    let chan = &ctx.chan;
    if let Some(a) = ctx
        .process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.initial().clone())
    {
        step!(chan, set_affinity(&a), "set initial CPU affinity {a:?}");
    }
    if let Err(e) = chan.wait_ack() {
        fail(chan, e)
    }
    for (t, fd) in &ctx.join {
        step!(
            chan,
            setns(fd.as_fd(), namespaces::flag(*t)),
            "join {} namespace",
            namespaces::proc_name(*t)
        );
    }
    step!(chan, nix::unistd::fchdir(&ctx.root), "enter container root");
    step!(chan, nix::unistd::chroot("."), "enter container root");
    if ctx.userns {
        let _ = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0));
        let _ = nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0));
    }
    fork_and_report(chan, "fork exec process");
    exec_stage_d(ctx)
}

fn exec_stage_d(ctx: ExecContext) -> ! {
    let chan = &ctx.chan;
    let process = ctx.process;
    if process.terminal() == Some(true) {
        setup_terminal(
            chan,
            process,
            ctx.console_socket.as_ref(),
            ctx.tty_to_parent,
            false,
        );
    }
    let prepared = prepare_exec(chan, process, ctx.spec);
    drop_privileges(chan, process, ctx.seccomp);
    if let Some(a) = process
        .exec_cpu_affinity()
        .as_ref()
        .and_then(|a| a.cpu_affinity_final().clone())
    {
        step!(chan, set_affinity(&a), "set final CPU affinity {a:?}");
    }
    step!(
        chan,
        crate::syscall::cloexec_from(3 + ctx.preserve_fds),
        "close descriptors"
    );
    chan.send(Tag::Ready, b"")
        .unwrap_or_else(|e| fail(chan, format!("sync: {e}")));
    let e = nix::unistd::execve(&prepared.path, &prepared.args, &prepared.env).unwrap_err();
    fail(chan, format!("exec {:?}: {e}", prepared.path))
}

/// "0-3,7" -> sched_setaffinity.
pub fn set_affinity(list: &str) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a
            .trim()
            .parse()
            .map_err(|_| format!("bad CPU list {list:?}"))?;
        let b: usize = b
            .trim()
            .parse()
            .map_err(|_| format!("bad CPU list {list:?}"))?;
        for c in a..=b {
            set.set(c).map_err(|e| format!("CPU {c}: {e}"))?;
        }
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| e.to_string())
}

/// Writes id maps for `pid` (the runtime is in the parent user namespace).
pub fn write_id_maps(
    pid: i32,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> std::io::Result<()> {
    let fmt = |m: &[LinuxIdMapping]| {
        m.iter()
            .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
            .collect::<String>()
    };
    if !uid.is_empty() {
        std::fs::write(format!("/proc/{pid}/uid_map"), fmt(uid))?;
    }
    if !gid.is_empty() {
        std::fs::write(format!("/proc/{pid}/gid_map"), fmt(gid))?;
    }
    Ok(())
}

/// A user namespace holding the given maps, as a descriptor (for idmapped mounts). Runs in the runtime.
pub fn userns_with_maps(
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> std::io::Result<OwnedFd> {
    let (a, b) = crate::sync::pair()?;
    // SAFETY: single-threaded runtime; the child only unshares and waits.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            drop(a);
            let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = b.send(if ok { Tag::Ack } else { Tag::Error }, b"");
            let _ = b.recv();
            // SAFETY: see stage_a.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(b);
            let pid = child.as_raw();
            let res = (|| {
                a.wait_ack().map_err(std::io::Error::other)?;
                write_id_maps(pid, uid, gid)?;
                let f = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
                Ok(OwnedFd::from(f))
            })();
            drop(a);
            let _ = nix::sys::wait::waitpid(child, None);
            res
        }
    }
}
