//! Containers: create, start (through a monitor), stop, kill, pause, remove, and the repair of records whose
//! monitor died while nobody watched.
//!
//! A container's files live in `<root>/containers/<id>/`: config.json (the OCI bundle; the rootfs is the image
//! store's active overlay for the id), the lock (see [`crate::lock`]), the monitor's attach socket, the
//! json-file log, the exit file and the /etc files berth provides.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::snapshot::Driver;
use image::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attach;
use crate::lock::{self, Lock};
use crate::oci::{self, Oci, OciError};
use crate::records::{self, Container, NewContainer, Records, RecordsError, StateChange, Status};
use crate::spec::{self, MountSpec, NetworkMode, RunOptions, SpecError};
use crate::volumes::{self, MountRequest};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Records(#[from] RecordsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// The container's process could not be started; `code` is docker's exit code for it (125/126/127).
    #[error("{message}")]
    StartFailed { code: i32, message: String },
}

impl EngineError {
    /// The exit code `berth run` uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::StartFailed { code, .. } => *code,
            _ => 125,
        }
    }
}

pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> EngineError + 'a {
    move |source| EngineError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure(u32),
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy, EngineError> {
        let bad = || {
            EngineError::Invalid(format!(
                "invalid restart policy {s:?}: use no, always, unless-stopped or on-failure[:max-retries]"
            ))
        };
        Ok(match s.split_once(':') {
            None => match s {
                "" | "no" => RestartPolicy::No,
                "always" => RestartPolicy::Always,
                "unless-stopped" => RestartPolicy::UnlessStopped,
                "on-failure" => RestartPolicy::OnFailure(0),
                _ => return Err(bad()),
            },
            Some(("on-failure", n)) => RestartPolicy::OnFailure(n.parse().map_err(|_| bad())?),
            Some(("always" | "unless-stopped" | "no", _)) => {
                return Err(EngineError::Invalid(format!(
                    "invalid restart policy {s:?}: maximum retry count can only be used with 'on-failure'"
                )))
            }
            _ => return Err(bad()),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::OnFailure(_) => "on-failure",
        }
    }

    /// Whether an exit with `code`, after `restarts` restarts, brings the container back.
    pub fn restarts(&self, code: i64, restarts: i64) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure(max) => code != 0 && (*max == 0 || restarts < i64::from(*max)),
        }
    }
}

/// Everything `create` was asked for, kept in the container's record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Settings {
    pub run: RunOptions,
    pub mounts: Vec<MountRequest>,
    pub restart: RestartPolicy,
    pub auto_remove: bool,
    pub interactive: bool,
    /// `--stop-timeout`; docker's default is 10 s.
    pub stop_timeout: Option<i64>,
    pub log_max_size: Option<u64>,
    pub log_max_file: u32,
    /// Volumes this container created without a name (`rm -v` removes them).
    pub anonymous_volumes: Vec<String>,
    /// A build step's container: no anonymous volumes for the image's VOLUMEs.
    #[serde(default)]
    pub no_image_volumes: bool,
    /// Named and anonymous volumes, as (name, destination).
    pub volumes: Vec<(String, String)>,
    pub stop_signal: String,
}

/// What `berth create` / `berth run` asks for.
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    pub name: Option<String>,
    /// As typed (shown by `ps`).
    pub image: String,
    pub run: RunOptions,
    pub mounts: Vec<MountRequest>,
    pub restart: RestartPolicy,
    pub auto_remove: bool,
    pub runtime: String,
    pub stop_timeout: Option<i64>,
    pub log_max_size: Option<u64>,
    pub log_max_file: u32,
    /// The caller starts the container right away (`run`): leave its rootfs mounted for the monitor rather
    /// than unmount it (an overlay unmount syncs the filesystem) and mount it again.
    pub start_next: bool,
    /// A build step's container: the image's VOLUMEs are not mounted (buildkit's RUN sees the image's own
    /// content there and its changes land in the layer).
    pub no_image_volumes: bool,
}

pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// Where a container's files are.
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    pub fn attach(&self) -> PathBuf {
        self.dir.join("attach")
    }
    pub fn console(&self) -> PathBuf {
        self.dir.join("console")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}-json.log"))
    }
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("pid")
    }
    pub fn runtime_log(&self) -> PathBuf {
        self.dir.join("runtime.log")
    }
    /// Present while the user wants the container down (`stop`, `kill`): the restart policy yields to it.
    pub fn stopped(&self) -> PathBuf {
        self.dir.join("stopped")
    }
}

pub struct Engine {
    root: PathBuf,
    driver: Driver,
    /// The berth binary, re-executed as each container's monitor.
    exe: PathBuf,
    records: Records,
    store: Option<Store>,
}

/// A started container, with the attach client the caller asked for.
pub struct Started {
    pub client: Option<attach::Client>,
}

pub fn settings_of(c: &Container) -> Settings {
    serde_json::from_value(c.config.clone()).unwrap_or_default()
}

fn is_up(s: Status) -> bool {
    matches!(s, Status::Running | Status::Paused | Status::Restarting)
}

impl Engine {
    /// Opens the records under `root` and repairs those whose monitor is gone.
    pub fn open(root: &Path, driver: Driver, exe: &Path) -> Result<Engine, EngineError> {
        let mut e = Engine::open_plain(root, driver, exe)?;
        e.reconcile()?;
        Ok(e)
    }

    /// Opens without repairing (the monitor uses this: it is the one doing the repairs for its container).
    pub fn open_plain(root: &Path, driver: Driver, exe: &Path) -> Result<Engine, EngineError> {
        let records = Records::open(root)?;
        Ok(Engine {
            root: root.to_path_buf(),
            driver,
            exe: exe.to_path_buf(),
            records,
            store: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    pub fn records(&mut self) -> &mut Records {
        &mut self.records
    }

    pub fn store(&mut self) -> Result<&Store, EngineError> {
        if self.store.is_none() {
            self.store = Some(Store::open(&self.root, self.driver)?);
        }
        Ok(self.store.as_ref().expect("store just opened"))
    }

    pub fn paths(&self, id: &str) -> Paths {
        Paths {
            dir: self.root.join("containers").join(id),
        }
    }

    pub fn oci(&self, c: &Container) -> Result<Oci, EngineError> {
        Ok(oci::resolve(&c.runtime, &self.root)?)
    }

    pub fn get(&self, id_or_name: &str) -> Result<Container, EngineError> {
        Ok(self.records.get(id_or_name)?)
    }

    /// Records a container and prepares its bundle; nothing runs yet.
    pub fn create(&mut self, req: CreateRequest) -> Result<Container, EngineError> {
        if req.auto_remove && req.restart != RestartPolicy::No {
            return Err(EngineError::Invalid(
                "Conflicting options: --restart and --rm".into(),
            ));
        }
        let runtime = if req.runtime.is_empty() {
            "berth-runtime".to_string()
        } else {
            req.runtime.clone()
        };
        // Fail on a missing runtime now rather than at start.
        oci::resolve(&runtime, &self.root)?;
        let info = self.store()?.resolve(&req.image)?;
        let stop_signal = spec::stop_signal(&info.config, &req.run);
        let mut settings = Settings {
            run: req.run.clone(),
            mounts: req.mounts.clone(),
            restart: req.restart.clone(),
            auto_remove: req.auto_remove,
            interactive: req.run.interactive,
            stop_timeout: req.stop_timeout,
            log_max_size: req.log_max_size,
            log_max_file: req.log_max_file.max(1),
            anonymous_volumes: Vec::new(),
            no_image_volumes: req.no_image_volumes,
            volumes: Vec::new(),
            stop_signal,
        };
        let mut labels = info
            .config
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        labels.extend(req.run.labels.clone());
        let c = self.records.create(&NewContainer {
            name: req.name.clone(),
            image: req.image.clone(),
            image_id: info.id.to_string(),
            config: serde_json::to_value(&settings)
                .map_err(|e| EngineError::Invalid(format!("settings: {e}")))?,
            labels: labels.clone(),
            runtime,
            restart_policy: req.restart.name().to_string(),
        })?;
        match self.prepare(&c, &info, &mut settings, req.start_next) {
            Ok(()) => {
                self.records.set_config(
                    &c.id,
                    &serde_json::to_value(&settings)
                        .map_err(|e| EngineError::Invalid(format!("settings: {e}")))?,
                )?;
                Ok(self.records.get(&c.id)?)
            }
            Err(e) => {
                let _ = self.destroy(&c, &settings, true);
                Err(e)
            }
        }
    }

    /// The bundle: rootfs, volumes (filled from the image when new), /etc files and config.json.
    fn prepare(
        &mut self,
        c: &Container,
        info: &image::store::ImageInfo,
        settings: &mut Settings,
        keep_mounted: bool,
    ) -> Result<(), EngineError> {
        let paths = self.paths(&c.id);
        fs::create_dir_all(&paths.dir).map_err(io_err("create container directory", &paths.dir))?;
        let rootfs = self.store()?.activate(&c.id, &info.id, false)?;
        let result = self.prepare_mounted(c, info, settings, &rootfs, &paths);
        if result.is_ok() && keep_mounted {
            return Ok(());
        }
        let unmounted = self.store()?.unmount_active(&c.id);
        result?;
        unmounted?;
        Ok(())
    }

    fn prepare_mounted(
        &mut self,
        c: &Container,
        info: &image::store::ImageInfo,
        settings: &mut Settings,
        rootfs: &Path,
        paths: &Paths,
    ) -> Result<(), EngineError> {
        let mut mounts = Vec::new();
        let mut used = Vec::new();
        let mut requests = settings.mounts.clone();
        // The image's VOLUMEs that no user mount covers become anonymous volumes.
        let image_volumes: Vec<String> = if settings.no_image_volumes {
            Vec::new()
        } else {
            info.config
                .config
                .as_ref()
                .and_then(|c| c.volumes.as_ref())
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default()
        };
        for dst in image_volumes {
            let d = dst.trim_end_matches('/').to_string();
            if !requests
                .iter()
                .any(|r| r.destination().trim_end_matches('/') == d)
            {
                requests.push(MountRequest::Volume {
                    name: None,
                    dst: if d.is_empty() { "/".into() } else { d },
                    readonly: false,
                    nocopy: false,
                });
            }
        }
        for r in &requests {
            match r {
                MountRequest::Bind {
                    src,
                    dst,
                    readonly,
                    create_source,
                } => {
                    if !src.exists() {
                        if *create_source {
                            fs::create_dir_all(src).map_err(io_err("create bind source", src))?;
                        } else {
                            return Err(EngineError::Invalid(format!(
                                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                                src.display()
                            )));
                        }
                    }
                    mounts.push(MountSpec::Bind {
                        src: src.clone(),
                        dst: dst.clone(),
                        readonly: *readonly,
                    });
                }
                MountRequest::Volume {
                    name,
                    dst,
                    readonly,
                    nocopy,
                } => {
                    let mut labels = BTreeMap::new();
                    let anonymous = name.is_none();
                    if anonymous {
                        labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                    }
                    let v = self
                        .records
                        .create_volume(name.as_deref(), "local", &labels)?;
                    if anonymous {
                        settings.anonymous_volumes.push(v.name.clone());
                    }
                    used.push(v.name.clone());
                    // Recorded before the copy, so a failure here still lets `rm -v` find it.
                    self.records.set_volume_users(&c.id, &used)?;
                    settings.volumes.push((v.name.clone(), dst.clone()));
                    if !nocopy && volumes::is_empty_dir(&v.mountpoint) {
                        if let Some(src) = volumes::image_dir(rootfs, dst) {
                            image::layer::merge(&src, &v.mountpoint).map_err(|e| {
                                EngineError::Invalid(format!(
                                    "fill volume {} from the image's {dst}: {e}",
                                    v.name
                                ))
                            })?;
                        }
                    }
                    mounts.push(MountSpec::Volume {
                        host_dir: v.mountpoint.clone(),
                        dst: dst.clone(),
                        readonly: *readonly,
                    });
                }
                MountRequest::Tmpfs { dst, size, mode } => mounts.push(MountSpec::Tmpfs {
                    dst: dst.clone(),
                    size: *size,
                    mode: *mode,
                }),
            }
        }
        let mut run = settings.run.clone();
        run.mounts = mounts;
        if run.init && run.init_path.is_none() {
            run.init_path = find_init();
        }
        let net = self.attach_network(c, info, &mut run)?;
        let mut config = spec::build(&c.id, rootfs, &info.config, &run)?;
        self.write_etc_files(&mut config, paths, &run, net.as_ref())?;
        let bytes = serde_json::to_vec_pretty(&config)
            .map_err(|e| EngineError::Invalid(format!("config.json: {e}")))?;
        let path = paths.config();
        fs::write(&path, bytes).map_err(io_err("write", &path))?;
        Ok(())
    }

    /// `--network bridge|NAME`: an address and the host ports, leased now (so /etc/hosts and inspect know
    /// them); `container:ID`: that container's namespace, which must exist now.
    fn attach_network(
        &mut self,
        c: &Container,
        info: &image::store::ImageInfo,
        run: &mut RunOptions,
    ) -> Result<Option<crate::network::Attached>, EngineError> {
        match run.network {
            NetworkMode::Bridge => {
                let mut ports = run.publish.clone();
                if run.publish_all {
                    let exposed: Vec<String> = info
                        .config
                        .config
                        .as_ref()
                        .and_then(|c| c.exposed_ports.as_ref())
                        .map(|e| e.keys().cloned().collect())
                        .unwrap_or_default();
                    for p in crate::network::publish_all(&exposed) {
                        if !ports
                            .iter()
                            .any(|q| q.container_port == p.container_port && q.proto == p.proto)
                        {
                            ports.push(p);
                        }
                    }
                }
                let mut names = vec![c.name.clone()];
                names.extend(run.aliases.iter().cloned());
                names.push(c.id[..12].to_string());
                let store = crate::network::open_store(&self.root)?;
                let a = crate::network::attach_at_create(
                    &store,
                    run.network_ref.as_deref().unwrap_or("bridge"),
                    &c.id,
                    run.ip.as_deref(),
                    &names,
                    &ports,
                )?;
                Ok(Some(a))
            }
            NetworkMode::Container => {
                let target = run.network_ref.clone().unwrap_or_default();
                let t = self.records.get(&target)?;
                let pid = t.pid.filter(|_| is_up(t.status)).ok_or_else(|| {
                    EngineError::Conflict(format!(
                        "cannot join network of a non running container: {target}"
                    ))
                })?;
                run.network_ref = Some(t.id.clone());
                run.netns_path = Some(format!("/proc/{pid}/ns/net"));
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn write_etc_files(
        &self,
        config: &mut Value,
        paths: &Paths,
        run: &RunOptions,
        net: Option<&crate::network::Attached>,
    ) -> Result<(), EngineError> {
        let hostname = config["hostname"]
            .as_str()
            .unwrap_or("localhost")
            .to_string();
        if run.network == NetworkMode::Container {
            // docker: the joined container's own files (same hostname, hosts and resolver).
            let target = self.paths(run.network_ref.as_deref().unwrap_or_default());
            config["hostname"] = Value::Null;
            if let Some(ns) = config["linux"]["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "uts");
            }
            spec::add_etc_files(
                config,
                Some(&target.dir.join("hosts")),
                Some(&target.dir.join("hostname")),
                Some(&target.dir.join("resolv.conf")),
            )?;
            return Ok(());
        }
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let (mut hosts, mut resolv) = if run.network == NetworkMode::Host {
            (
                fs::read_to_string("/etc/hosts").unwrap_or_default(),
                host_resolv,
            )
        } else {
            (
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
                 ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
                    .to_string(),
                // With no network the host's resolver config is what docker copies too (it cannot reach it).
                host_resolv,
            )
        };
        if let Some(a) = net {
            hosts.push_str(&format!("{}\t{hostname}\n", a.lease.ip));
            if crate::network::uses_embedded_dns(run) {
                // The monitor's embedded server answers for the network's names and forwards the rest
                // (to --dns servers, if given).
                resolv = net::dns::container_resolv_conf(&resolv);
            }
        }
        for h in &run.add_hosts {
            let (name, ip) = h.split_once(':').unwrap_or((h.as_str(), ""));
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        if !run.dns.is_empty() && !crate::network::uses_embedded_dns(run) {
            let kept: Vec<&str> = resolv
                .lines()
                .filter(|l| !l.trim_start().starts_with("nameserver"))
                .collect();
            resolv = kept.join("\n");
            if !resolv.is_empty() {
                resolv.push('\n');
            }
            for d in &run.dns {
                resolv.push_str(&format!("nameserver {d}\n"));
            }
        }
        let files = [
            ("hosts", hosts),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv),
        ];
        for (name, content) in &files {
            let p = paths.dir.join(name);
            fs::write(&p, content).map_err(io_err("write", &p))?;
        }
        spec::add_etc_files(
            config,
            Some(&paths.dir.join("hosts")),
            Some(&paths.dir.join("hostname")),
            Some(&paths.dir.join("resolv.conf")),
        )?;
        Ok(())
    }

    /// Starts a container through a new monitor. With `attach` the monitor waits for the returned client
    /// before the container's process runs, so no output is missed. Starting a running container is a no-op.
    pub fn start(&mut self, id_or_name: &str, attach: Option<u8>) -> Result<Started, EngineError> {
        let c = self.records.get(id_or_name)?;
        let paths = self.paths(&c.id);
        if c.status == Status::Dead {
            return Err(EngineError::Conflict(format!(
                "container {} is marked for removal and cannot be started",
                c.id
            )));
        }
        let lock = match Lock::try_take(&paths.lock()).map_err(io_err("lock", &paths.lock()))? {
            Some(l) => l,
            None if is_up(c.status) => {
                // Already running: attach to it if asked, like `docker start -a` does.
                let client = match attach {
                    Some(h) => Some(
                        attach::Client::connect(&paths.attach(), h)
                            .map_err(io_err("attach", &paths.attach()))?,
                    ),
                    None => None,
                };
                return Ok(Started { client });
            }
            None => {
                return Err(EngineError::Conflict(format!(
                    "container {} is busy (being started or removed by another command)",
                    c.id
                )))
            }
        };
        let c = if is_up(c.status) {
            // Its monitor is gone: repair first.
            self.repair(&c, &lock)?;
            self.records.get(&c.id)?
        } else {
            c
        };
        for p in [paths.stopped(), paths.exit()] {
            let _ = fs::remove_file(p);
        }
        self.spawn_monitor(&c, &paths, lock, attach)
    }

    fn spawn_monitor(
        &mut self,
        c: &Container,
        paths: &Paths,
        lock: Lock,
        attach: Option<u8>,
    ) -> Result<Started, EngineError> {
        let (sync_r, sync_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| io_err("pipe", &paths.dir)(e.into()))?;
        let lock_fd = lock.share().map_err(io_err("lock", &paths.lock()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--storage-driver")
            .arg(self.driver.name())
            .arg("container-monitor")
            .arg(&c.id);
        if attach.is_some() {
            cmd.arg("--wait-attach");
        }
        // The monitor's own complaints (it has no terminal) go to a file beside the log.
        let mlog = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(paths.dir.join("monitor.log"))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(mlog);
        let (sw, lf) = (sync_w.as_raw_fd(), lock_fd.as_raw_fd());
        // SAFETY: between fork and exec only dup2/fcntl/setsid, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in [(sw, crate::monitor::SYNC_FD), (lf, crate::monitor::LOCK_FD)] {
                    if from == to {
                        if libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                    } else if libc::dup2(from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        if sw == crate::monitor::LOCK_FD || lf == crate::monitor::SYNC_FD {
            return Err(EngineError::Invalid(
                "descriptor numbering clash while starting the monitor".into(),
            ));
        }
        let mut child = cmd.spawn().map_err(io_err("start monitor", &self.exe))?;
        drop(sync_w);
        drop(lock_fd);
        // The monitor forks and its first process exits at once: the monitor is nobody's child but init's.
        let _ = child.wait();
        // The monitor holds the lock from here (or nobody does, if it died).
        drop(lock);
        let mut reader = BufReader::new(fs::File::from(sync_r));
        let mut client = None;
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .map_err(io_err("read from monitor", &paths.dir))?;
            if n == 0 {
                return Err(EngineError::StartFailed {
                    code: 125,
                    message: format!(
                        "container {}: the monitor exited before the container started",
                        c.id
                    ),
                });
            }
            let line = line.trim_end();
            if line == "ready" {
                if let Some(h) = attach {
                    client = Some(
                        attach::Client::connect(&paths.attach(), h)
                            .map_err(io_err("attach", &paths.attach()))?,
                    );
                }
            } else if line == "ok" {
                return Ok(Started { client });
            } else if let Some(rest) = line.strip_prefix("error ") {
                let (code, msg) = rest.split_once(' ').unwrap_or(("125", rest));
                return Err(EngineError::StartFailed {
                    code: code.parse().unwrap_or(125),
                    message: msg.to_string(),
                });
            }
        }
    }

    /// Marks a user stop (the restart policy yields) and signals the container's process.
    fn signal(&mut self, c: &Container, sig: &str, manual: bool) -> Result<(), EngineError> {
        let paths = self.paths(&c.id);
        if manual {
            fs::write(paths.stopped(), b"").map_err(io_err("write", &paths.stopped()))?;
        }
        let oci = self.oci(c)?;
        match oci.kill(&c.id, sig, false) {
            Ok(()) => Ok(()),
            // Between runs of a restart policy there is nothing to signal.
            Err(_) if c.status == Status::Restarting => Ok(()),
            Err(e) => {
                // It may have exited meanwhile.
                match oci.state(&c.id) {
                    Ok(Some(s)) if s["status"] == "running" || s["status"] == "paused" => {
                        Err(e.into())
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// `docker stop`: the stop signal, then SIGKILL after `timeout` seconds; returns once the monitor has
    /// recorded the exit. A container that is not running is left as it is.
    pub fn stop(&mut self, id_or_name: &str, timeout: Option<i64>) -> Result<(), EngineError> {
        let c = self.records.get(id_or_name)?;
        if !is_up(c.status) {
            return Ok(());
        }
        let settings = settings_of(&c);
        let paths = self.paths(&c.id);
        let t = timeout.or(settings.stop_timeout).unwrap_or(10);
        if c.status == Status::Paused {
            let _ = self.oci(&c)?.resume(&c.id);
        }
        let sig = if t == 0 {
            "KILL".to_string()
        } else {
            settings.stop_signal.clone()
        };
        self.signal(&c, &sig, true)?;
        let wait = Duration::from_secs(u64::try_from(t).unwrap_or(0));
        let lock =
            match Lock::take_within(&paths.lock(), wait).map_err(io_err("lock", &paths.lock()))? {
                Some(l) => l,
                None => {
                    self.signal(&c, "KILL", true)?;
                    Lock::take_within(&paths.lock(), Duration::from_secs(30))
                        .map_err(io_err("lock", &paths.lock()))?
                        .ok_or_else(|| {
                            EngineError::Conflict(format!(
                                "container {}: still running 30 s after SIGKILL",
                                c.id
                            ))
                        })?
                }
            };
        let now = self.records.get(&c.id)?;
        if is_up(now.status) {
            self.repair(&now, &lock)?;
        }
        Ok(())
    }

    /// `docker kill`.
    pub fn kill(&mut self, id_or_name: &str, signal: &str) -> Result<(), EngineError> {
        let c = self.records.get(id_or_name)?;
        if !is_up(c.status) {
            return Err(EngineError::Conflict(format!(
                "cannot kill container: {}: container {} is not running",
                id_or_name, c.id
            )));
        }
        let sig = normalize_signal(signal)?;
        let settings = settings_of(&c);
        let manual = sig == "KILL" || sig == normalize_signal(&settings.stop_signal)?;
        self.signal(&c, &sig, manual)
    }

    pub fn pause(&mut self, id_or_name: &str) -> Result<(), EngineError> {
        let c = self.records.get(id_or_name)?;
        match c.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is already paused",
                    c.id
                )))
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    c.id
                )))
            }
        }
        self.oci(&c)?.pause(&c.id)?;
        self.records.set_state(&c.id, &StateChange::Paused)?;
        Ok(())
    }

    pub fn unpause(&mut self, id_or_name: &str) -> Result<(), EngineError> {
        let c = self.records.get(id_or_name)?;
        if c.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is not paused",
                c.id
            )));
        }
        self.oci(&c)?.resume(&c.id)?;
        self.records.set_state(&c.id, &StateChange::Unpaused)?;
        Ok(())
    }

    /// `docker wait`: blocks until the container is not running and returns its exit code.
    pub fn wait(&mut self, id_or_name: &str) -> Result<i64, EngineError> {
        let c = self.records.get(id_or_name)?;
        let paths = self.paths(&c.id);
        if is_up(c.status) || lock::held(&paths.lock()) {
            if let Ok(mut client) = attach::Client::connect(&paths.attach(), 0) {
                if let Ok(Some(code)) = client.wait_exit() {
                    return Ok(i64::from(code));
                }
            }
            // The monitor went away without telling: wait for its lock, then repair what it left.
            if let Some(lock) = Lock::take_within(&paths.lock(), Duration::from_secs(60))
                .map_err(io_err("lock", &paths.lock()))?
            {
                let now = self.records.get(&c.id)?;
                if is_up(now.status) {
                    self.repair(&now, &lock)?;
                }
            }
        }
        match self.records.get(&c.id) {
            Ok(c) => Ok(c.exit_code.unwrap_or(0)),
            // Removed meanwhile (--rm): the exit file went with it.
            Err(RecordsError::NoSuchContainer(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// `docker rm`: a running container only with `force` (killed first); `volumes` also removes its
    /// anonymous volumes.
    pub fn remove(
        &mut self,
        id_or_name: &str,
        force: bool,
        volumes: bool,
    ) -> Result<Container, EngineError> {
        let c = self.records.get(id_or_name)?;
        let paths = self.paths(&c.id);
        if is_up(c.status) && lock::held(&paths.lock()) {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a {} container {}. Stop the container before attempting removal or force remove",
                    c.status, c.id
                )));
            }
            if c.status == Status::Paused {
                let _ = self.oci(&c)?.resume(&c.id);
            }
            self.signal(&c, "KILL", true)?;
        }
        // A create cut short may have left the record without its directory.
        fs::create_dir_all(&paths.dir).map_err(io_err("create", &paths.dir))?;
        let wait = if force { 10 } else { 30 };
        let lock = match Lock::take_within(&paths.lock(), Duration::from_secs(wait))
            .map_err(io_err("lock", &paths.lock()))?
        {
            Some(l) => l,
            None if force => self.unstick(&c, &paths)?,
            None => {
                return Err(EngineError::Conflict(format!(
                    "container {} is busy (being started or stopped by another command)",
                    c.id
                )))
            }
        };
        let c = self.records.get(&c.id)?;
        if is_up(c.status) {
            self.repair(&c, &lock)?;
        }
        let settings = settings_of(&c);
        self.destroy(&c, &settings, volumes)?;
        drop(lock);
        Ok(c)
    }

    /// `rm -f` when the container's lock stays held after SIGKILL: a monitor of this very container that does
    /// not let go is killed (the repair below takes over its duties); anything else holding the lock is named.
    fn unstick(&mut self, c: &Container, paths: &Paths) -> Result<Lock, EngineError> {
        // /proc/locks names the process that took the flock; a monitor holds it through the descriptor its
        // CLI handed down, so when that CLI is gone (killed mid `run`) the monitor is found in the record.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut holders;
        loop {
            holders = lock::holders(&paths.lock());
            let mut candidates = holders.clone();
            if let Some(m) = self.records.get(&c.id).ok().and_then(|r| r.monitor_pid) {
                candidates.push(m as i32);
            }
            let mut others = false;
            for pid in &candidates {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let is_monitor = args.iter().any(|a| *a == b"container-monitor")
                    && args.contains(&c.id.as_bytes());
                if is_monitor {
                    // SAFETY: kill of the monitor process of this container, identified by its command line.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                } else if !cmdline.is_empty() {
                    others = true;
                }
            }
            if let Some(l) = Lock::take_within(&paths.lock(), Duration::from_millis(500))
                .map_err(io_err("lock", &paths.lock()))?
            {
                return Ok(l);
            }
            if others || Instant::now() >= deadline {
                break;
            }
        }
        Err(EngineError::Conflict(format!(
            "container {}: its lock {} is still held by pid(s) [{}] after SIGKILL",
            c.id,
            paths.lock().display(),
            holders
                .iter()
                .map(|p| {
                    let cmd = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    format!("{p} ({})", cmd.trim())
                })
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Removes everything of a container that is not running: runtime state, rootfs, volumes it created (if
    /// asked), its directory, its record. Each step may be repeated: a removal cut short is marked dead and
    /// finished by the next `rm`.
    pub fn destroy(
        &mut self,
        c: &Container,
        settings: &Settings,
        volumes: bool,
    ) -> Result<(), EngineError> {
        let _ = self.records.set_state(&c.id, &StateChange::Dead);
        if let Ok(oci) = self.oci(c) {
            // runc, crun and berth-runtime keep a directory per container under their --root: no directory,
            // nothing to delete (and no runtime to run for it).
            if oci.state_root.join(&c.id).exists() {
                let _ = oci.delete(&c.id, true);
            }
        }
        self.store()?.deactivate(&c.id)?;
        if settings.run.network == NetworkMode::Bridge {
            crate::network::release(&self.root, &c.id)?;
        }
        // The directory before the record: while the record exists, a removal cut short can be finished.
        let paths = self.paths(&c.id);
        match fs::remove_dir_all(&paths.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("remove", &paths.dir)(e))
            }
            _ => {}
        }
        self.records.remove(&c.id)?;
        if volumes {
            for v in &settings.anonymous_volumes {
                match self.records.remove_volume(v) {
                    Ok(()) | Err(RecordsError::NoSuchVolume(_)) => {}
                    // Also used by another container (a user may name an anonymous volume in -v).
                    Err(RecordsError::VolumeInUse { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Repairs every container whose records say it runs but whose monitor is gone.
    pub fn reconcile(&mut self) -> Result<(), EngineError> {
        for c in self.records.list(false)? {
            let paths = self.paths(&c.id);
            if let Ok(Some(lock)) = Lock::try_take(&paths.lock()) {
                // Re-read under the lock: the monitor may have finished properly just now.
                let now = match self.records.get(&c.id) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                if is_up(now.status) {
                    self.repair(&now, &lock)?;
                }
            }
        }
        Ok(())
    }

    /// A container whose monitor died: its exit code from the exit file if the monitor got that far, else
    /// whatever still runs is killed (nobody holds its output any more) and the code is 137, or 255 if the
    /// process was already gone.
    fn repair(&mut self, c: &Container, _lock: &Lock) -> Result<(), EngineError> {
        let paths = self.paths(&c.id);
        let recorded = fs::read_to_string(paths.exit())
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok());
        let oci = self.oci(c)?;
        let mut code = recorded.unwrap_or(255);
        if let Ok(Some(state)) = oci.state(&c.id) {
            let status = state["status"].as_str().unwrap_or("");
            if status == "paused" {
                let _ = oci.resume(&c.id);
            }
            if status != "stopped" {
                let _ = oci.kill(&c.id, "KILL", true);
                for _ in 0..200 {
                    match oci.state(&c.id) {
                        Ok(Some(s)) if s["status"] != "stopped" => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        _ => break,
                    }
                }
                if recorded.is_none() {
                    code = 137;
                }
            }
            let _ = oci.delete(&c.id, true);
        }
        let _ = self.store()?.unmount_active(&c.id);
        if settings_of(c).run.network == NetworkMode::Bridge {
            crate::network::disconnect_stopped(&self.root, &c.id);
        }
        self.records.set_state(
            &c.id,
            &StateChange::Exited {
                exit_code: code,
                finished_at: records::now_nanos(),
                oom_killed: false,
            },
        )?;
        let settings = settings_of(c);
        if settings.auto_remove {
            self.destroy(c, &settings, true)?;
        }
        Ok(())
    }
}

/// What `berth commit` asks for.
#[derive(Clone, Debug, Default)]
pub struct CommitRequest {
    pub message: Option<String>,
    pub author: Option<String>,
    /// Dockerfile instructions applied to the new image's config (`-c 'CMD ["sh"]'`).
    pub changes: Vec<String>,
    /// Pause a running container while its changes are read (docker's default).
    pub pause: bool,
    pub tag: Option<String>,
}

/// The JSON exec form if the text is one, else the shell form (`/bin/sh -c TEXT`).
fn exec_or_shell(text: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(text.trim()) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), text.trim().to_string()],
    }
}

/// `--change` instructions as `docker commit` takes them (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE,
/// VOLUME, STOPSIGNAL).
pub fn apply_change(
    cfg: &mut image::media::ContainerConfig,
    change: &str,
) -> Result<(), EngineError> {
    let bad = |why: &str| EngineError::Invalid(format!("invalid --change {change:?}: {why}"));
    let (word, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("expected INSTRUCTION ARGUMENTS"))?;
    let rest = rest.trim();
    let pairs = |text: &str| -> Result<Vec<(String, String)>, EngineError> {
        let mut out = Vec::new();
        if !text.contains('=') {
            let (k, v) = text
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected KEY=VALUE"))?;
            out.push((k.to_string(), v.trim().to_string()));
            return Ok(out);
        }
        for kv in text.split_whitespace() {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad("expected KEY=VALUE"))?;
            out.push((k.to_string(), v.trim_matches('"').to_string()));
        }
        Ok(out)
    };
    match word.to_ascii_uppercase().as_str() {
        "CMD" => cfg.cmd = Some(exec_or_shell(rest)),
        "ENTRYPOINT" => cfg.entrypoint = Some(exec_or_shell(rest)),
        "WORKDIR" => cfg.working_dir = Some(rest.to_string()),
        "USER" => cfg.user = Some(rest.to_string()),
        "STOPSIGNAL" => cfg.stop_signal = Some(rest.to_string()),
        "ENV" => {
            let env = cfg.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs(rest)? {
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = cfg.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs(rest)? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = cfg.exposed_ports.get_or_insert_with(Default::default);
            for p in rest.split_whitespace() {
                let p = if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(p, serde_json::json!({}));
            }
        }
        "VOLUME" => {
            let vols = cfg.volumes.get_or_insert_with(Default::default);
            let list = serde_json::from_str::<Vec<String>>(rest)
                .unwrap_or_else(|_| rest.split_whitespace().map(str::to_string).collect());
            for v in list {
                vols.insert(v, serde_json::json!({}));
            }
        }
        other => {
            return Err(bad(&format!(
                "{other} is not an instruction commit can apply"
            )))
        }
    }
    Ok(())
}

impl Engine {
    /// `docker commit`: the container's changes as a new layer on its image, with the container's config.
    pub fn commit(
        &mut self,
        id_or_name: &str,
        req: &CommitRequest,
    ) -> Result<image::commit::Committed, EngineError> {
        let c = self.records.get(id_or_name)?;
        let settings = settings_of(&c);
        let image_id = image::Digest::parse(&c.image_id)
            .map_err(|e| EngineError::Invalid(format!("container {}: image id: {e}", c.id)))?;
        let info = self.store()?.resolve(image_id.as_str())?;
        let mut cfg = info.config.config.clone().unwrap_or_default();
        let spec: Value = fs::read(self.paths(&c.id).config())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        if let Some(env) = spec["process"]["env"].as_array() {
            cfg.env = Some(
                env.iter()
                    .filter_map(Value::as_str)
                    .filter(|e| !e.starts_with("HOSTNAME=") && !e.starts_with("HOME="))
                    .map(str::to_string)
                    .collect(),
            );
        }
        if let Some(e) = &settings.run.entrypoint {
            cfg.entrypoint = Some(e.clone());
            cfg.cmd = None;
        }
        if !settings.run.cmd.is_empty() {
            cfg.cmd = Some(settings.run.cmd.clone());
        }
        if let Some(w) = settings.run.workdir.clone().filter(|w| !w.is_empty()) {
            cfg.working_dir = Some(w);
        }
        if let Some(u) = settings.run.user.clone().filter(|u| !u.is_empty()) {
            cfg.user = Some(u);
        }
        if !c.labels.is_empty() {
            cfg.labels = Some(c.labels.clone());
        }
        for ch in &req.changes {
            apply_change(&mut cfg, ch)?;
        }
        let created_by = command_line(&spec);
        let opts = image::commit::CommitOptions {
            parent: Some(image_id.clone()),
            config: Some(cfg),
            history: image::media::History {
                created_by: Some(created_by),
                comment: req.message.clone(),
                author: req.author.clone(),
                ..Default::default()
            },
            author: req.author.clone(),
            tags: req.tag.iter().cloned().collect(),
            ..Default::default()
        };
        let running = matches!(c.status, Status::Running);
        let oci = self.oci(&c)?;
        if running && req.pause {
            oci.pause(&c.id)?;
        }
        let upper = self.store()?.active_upper(&c.id);
        let result = self.store()?.commit_changes(&upper, &opts);
        if running && req.pause {
            let _ = oci.resume(&c.id);
        }
        Ok(result?)
    }
}

/// A container's command as docker shows it (`ps`, a commit's history): config.json's process args joined by
/// spaces.
pub fn command_line(spec: &Value) -> String {
    spec["process"]["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// "SIGTERM", "TERM", "15" -> "TERM" (what runtimes take); an unknown name is an error.
pub fn normalize_signal(s: &str) -> Result<String, EngineError> {
    let bad = || EngineError::Invalid(format!("invalid signal: {s}"));
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n.to_string())
        } else {
            Err(bad())
        };
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if signal_number(name).is_some() {
        Ok(name.to_string())
    } else {
        Err(bad())
    }
}

pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = name.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    Some(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" | "CLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => {
            if let Some(r) = name.strip_prefix("RTMIN+") {
                return r
                    .parse::<i32>()
                    .ok()
                    .map(|n| libc::SIGRTMIN() + n)
                    .filter(|n| *n <= libc::SIGRTMAX());
            }
            return None;
        }
    })
}

/// docker-init (tini) for `--init`: Debian's tini-static, or docker's own if installed.
fn find_init() -> Option<PathBuf> {
    [
        "/usr/bin/tini-static",
        "/usr/libexec/docker/docker-init",
        "/usr/bin/docker-init",
        "/usr/local/bin/docker-init",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}
