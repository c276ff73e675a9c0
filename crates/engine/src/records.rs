//! Container and volume records in SQLite (`<root>/containers.db`, WAL). Several berth commands may run at once:
//! every read-modify-write is one `BEGIN IMMEDIATE` transaction, status updates are single statements, and the
//! UNIQUE constraint on the container name is what decides a name conflict (no check-then-insert race).
//!
//! Times (`created_at`, `started_at`, `finished_at`) are unix nanoseconds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::names;

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("container database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("container database {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("multiple IDs found with provided prefix: {0}")]
    AmbiguousPrefix(String),
    #[error("Renaming a container with the same name as its current name")]
    SameName,
    #[error("Container {0} is not running")]
    NotRunning(String),
    #[error("Container {0} is not paused")]
    NotPaused(String),
    #[error("could not generate a container name that is not in use")]
    NamesExhausted,
    #[error("{0:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path")]
    InvalidVolumeName(String),
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    /// moby's OpErr text: the users' ids joined by ", ".
    #[error("remove {name}: volume is in use - [{}]", ids.join(", "))]
    VolumeInUse { name: String, ids: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Exited,
    Dead,
}

impl Status {
    /// Docker's word for it (`State.Status` in `docker inspect`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "restarting" => Status::Restarting,
            "exited" => Status::Exited,
            "dead" => Status::Dead,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default)]
pub struct NewContainer {
    /// Given by the user (with or without a leading '/'), or None for a generated one.
    pub name: Option<String>,
    /// The image reference as the user typed it.
    pub image: String,
    pub image_id: String,
    /// The create options as JSON, stored verbatim.
    pub config: Value,
    pub labels: BTreeMap<String, String>,
    pub runtime: String,
    pub restart_policy: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// 64 lowercase hex digits.
    pub id: String,
    /// Without the leading '/'.
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub status: Status,
    pub pid: Option<i64>,
    pub monitor_pid: Option<i64>,
    /// None until the container has exited once (and again while it runs).
    pub exit_code: Option<i64>,
    /// Unix nanoseconds; None if never started.
    pub started_at: Option<i64>,
    /// Unix nanoseconds; None if never finished.
    pub finished_at: Option<i64>,
    pub oom_killed: bool,
    pub restart_count: i64,
    pub config: Value,
    pub labels: BTreeMap<String, String>,
    pub runtime: String,
    pub restart_policy: String,
}

/// A status change for [`Records::set_state`]. Times are unix nanoseconds ([`now_nanos`]).
#[derive(Clone, Debug, PartialEq)]
pub enum StateChange {
    /// created/exited/restarting -> running: clears exit_code and oom_killed.
    Running {
        pid: i64,
        monitor_pid: Option<i64>,
        started_at: i64,
    },
    /// -> exited: clears pid and monitor_pid.
    Exited {
        exit_code: i64,
        finished_at: i64,
        oom_killed: bool,
    },
    /// running -> paused (else [`RecordsError::NotRunning`]).
    Paused,
    /// paused -> running (else [`RecordsError::NotPaused`]).
    Unpaused,
    /// -> restarting, restart_count += 1 (the restart policy is bringing it back).
    Restarting,
    /// -> dead (removal failed half-way): clears pid and monitor_pid.
    Dead,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    /// `<root>/volumes/<name>/_data`, created by [`Records::create_volume`].
    pub mountpoint: PathBuf,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS containers (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order: list() is newest first
    id             TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL UNIQUE,               -- without the leading '/'
    image          TEXT NOT NULL,
    image_id       TEXT NOT NULL,
    created_at     INTEGER NOT NULL,                   -- unix nanoseconds, like the other times
    status         TEXT NOT NULL,
    pid            INTEGER,
    monitor_pid    INTEGER,
    exit_code      INTEGER,
    started_at     INTEGER,
    finished_at    INTEGER,
    oom_killed     INTEGER NOT NULL DEFAULT 0,
    restart_count  INTEGER NOT NULL DEFAULT 0,
    config         TEXT NOT NULL,                      -- JSON, verbatim
    labels         TEXT NOT NULL,                      -- JSON object
    runtime        TEXT NOT NULL,
    restart_policy TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volumes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    driver     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    labels     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS volume_users (
    container_id TEXT NOT NULL,
    volume       TEXT NOT NULL,
    PRIMARY KEY (container_id, volume)
);
CREATE INDEX IF NOT EXISTS volume_users_volume ON volume_users(volume);
";

const COLS: &str = "id, name, image, image_id, created_at, status, pid, monitor_pid, exit_code, started_at, \
                    finished_at, oom_killed, restart_count, config, labels, runtime, restart_policy";

/// A container row as stored, before its JSON columns and status are parsed.
type RawRow = (
    (String, String, String, String, i64, String),
    (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    ),
    (bool, i64, String, String, String, String),
);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        (
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ),
        (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
        (
            r.get(11)?,
            r.get(12)?,
            r.get(13)?,
            r.get(14)?,
            r.get(15)?,
            r.get(16)?,
        ),
    ))
}

pub struct Records {
    conn: Connection,
    path: PathBuf,
    root: PathBuf,
}

/// Now, in unix nanoseconds.
pub fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn random_bytes(buf: &mut [u8]) -> Result<(), RecordsError> {
    let path = Path::new("/dev/urandom");
    File::open(path)
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|source| RecordsError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(D[usize::from(b >> 4)]));
        s.push(char::from(D[usize::from(b & 15)]));
    }
    s
}

/// 64 random hex digits whose 12-digit short form is not all decimal (docker's rule: a short id must not read
/// as a number).
fn random_id() -> Result<String, RecordsError> {
    loop {
        let mut b = [0u8; 32];
        random_bytes(&mut b)?;
        let id = hex(&b);
        if !id[..12].bytes().all(|c| c.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// Which UNIQUE column a constraint failure is about ("containers.name", ...), if it is one.
fn unique_violation(e: &rusqlite::Error) -> Option<&str> {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.code == ErrorCode::ConstraintViolation =>
        {
            msg.strip_prefix("UNIQUE constraint failed: ")
        }
        _ => None,
    }
}

fn container_name(name: &str) -> Result<String, RecordsError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if names::is_valid(bare) {
        Ok(bare.to_string())
    } else {
        Err(RecordsError::InvalidName(name.to_string()))
    }
}

impl Records {
    /// Opens (creating if needed) `<root>/containers.db`.
    pub fn open(root: &Path) -> Result<Records, RecordsError> {
        let path = root.join("containers.db");
        std::fs::create_dir_all(root).map_err(|source| RecordsError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let err = |source| RecordsError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        // Several first opens at once: switching to WAL can fail with SQLITE_BUSY without going through the busy
        // handler, so that part is retried here (for as long as the busy timeout).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Self::setup(&mut conn) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(Records {
            conn,
            path: path.clone(),
            root: root.to_path_buf(),
        })
    }

    fn setup(conn: &mut Connection) -> rusqlite::Result<()> {
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        // NORMAL in WAL mode: a commit is atomic and survives any process being killed (it is in the page
        // cache); only a power loss can take back the last commits before a checkpoint, and what that can
        // lose (a container's latest state) is what the next command's repair re-derives anyway. FULL cost
        // an fsync per state change: about half of `berth run --rm`'s time on this machine.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // IMMEDIATE: concurrent first opens queue up instead of failing on a stale snapshot.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()
    }

    /// A write transaction that takes the write lock up front (two processes that read first and then upgrade
    /// would deadlock), with the error mapper for its statements.
    fn begin(
        &mut self,
    ) -> Result<
        (
            rusqlite::Transaction<'_>,
            impl Fn(rusqlite::Error) -> RecordsError,
        ),
        RecordsError,
    > {
        let path = self.path.clone();
        let err = move |source| RecordsError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        Ok((tx, err))
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> RecordsError + '_ {
        move |source| RecordsError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: String) -> RecordsError {
        RecordsError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn container_from(&self, raw: RawRow) -> Result<Container, RecordsError> {
        let (
            (id, name, image, image_id, created_at, status),
            (pid, monitor_pid, exit_code, started_at, finished_at),
            (oom_killed, restart_count, config, labels, runtime, restart_policy),
        ) = raw;
        let status = Status::parse(&status)
            .ok_or_else(|| self.corrupt(format!("container {id}: bad status {status:?}")))?;
        let config = serde_json::from_str(&config)
            .map_err(|e| self.corrupt(format!("container {id}: config: {e}")))?;
        let labels = serde_json::from_str(&labels)
            .map_err(|e| self.corrupt(format!("container {id}: labels: {e}")))?;
        Ok(Container {
            id,
            name,
            image,
            image_id,
            created_at,
            status,
            pid,
            monitor_pid,
            exit_code,
            started_at,
            finished_at,
            oom_killed,
            restart_count,
            config,
            labels,
            runtime,
            restart_policy,
        })
    }

    fn query_containers(
        &self,
        where_: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Container>, RecordsError> {
        // `where_` may end in "LIMIT n": it goes after the ORDER BY.
        let (cond, limit) = match where_.find(" LIMIT ") {
            Some(i) => where_.split_at(i),
            None => (where_, ""),
        };
        let sql = format!("SELECT {COLS} FROM containers {cond} ORDER BY seq DESC{limit}");
        let mut st = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = st
            .query_map(args, raw_row)
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter().map(|r| self.container_from(r)).collect()
    }

    /// Records a new container in state `created`. A given name that is taken fails with
    /// [`RecordsError::NameInUse`]; a generated one is retried.
    pub fn create(&mut self, c: &NewContainer) -> Result<Container, RecordsError> {
        let given = c.name.as_deref().map(container_name).transpose()?;
        let config =
            serde_json::to_string(&c.config).map_err(|e| self.corrupt(format!("config: {e}")))?;
        let labels =
            serde_json::to_string(&c.labels).map_err(|e| self.corrupt(format!("labels: {e}")))?;
        let created_at = now_nanos();
        let (tx, err) = self.begin()?;
        let mut retry = 0u32;
        let mut id = random_id()?;
        let name = loop {
            let name = match &given {
                Some(n) => n.clone(),
                None => {
                    let mut seed = [0u8; 8];
                    random_bytes(&mut seed)?;
                    names::generate(u64::from_le_bytes(seed), retry)
                }
            };
            let res = tx.execute(
                "INSERT INTO containers (id, name, image, image_id, created_at, status, config, labels, runtime,
                                         restart_policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'created', ?6, ?7, ?8, ?9)",
                params![
                    id,
                    name,
                    c.image,
                    c.image_id,
                    created_at,
                    config,
                    labels,
                    c.runtime,
                    c.restart_policy
                ],
            );
            match res {
                Ok(_) => break name,
                Err(e) => match unique_violation(&e) {
                    Some("containers.id") => id = random_id()?,
                    Some("containers.name") if given.is_some() => {
                        let existing: String = tx
                            .query_row("SELECT id FROM containers WHERE name = ?1", [&name], |r| {
                                r.get(0)
                            })
                            .map_err(&err)?;
                        return Err(RecordsError::NameInUse { name, id: existing });
                    }
                    Some("containers.name") => {
                        retry += 1;
                        if retry > 100 {
                            return Err(RecordsError::NamesExhausted);
                        }
                    }
                    _ => return Err(err(e)),
                },
            }
        };
        tx.commit().map_err(&err)?;
        Ok(Container {
            id,
            name,
            image: c.image.clone(),
            image_id: c.image_id.clone(),
            created_at,
            status: Status::Created,
            pid: None,
            monitor_pid: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            oom_killed: false,
            restart_count: 0,
            config: c.config.clone(),
            labels: c.labels.clone(),
            runtime: c.runtime.clone(),
            restart_policy: c.restart_policy.clone(),
        })
    }

    /// Finds a container like docker does: full id, then name (with or without '/'), then a unique id prefix.
    pub fn get(&self, id_or_name: &str) -> Result<Container, RecordsError> {
        let missing = || RecordsError::NoSuchContainer(id_or_name.to_string());
        if id_or_name.is_empty() {
            return Err(missing());
        }
        if let Some(c) = self
            .query_containers("WHERE id = ?1", &[&id_or_name])?
            .pop()
        {
            return Ok(c);
        }
        let bare = id_or_name.strip_prefix('/').unwrap_or(id_or_name);
        if let Some(c) = self.query_containers("WHERE name = ?1", &[&bare])?.pop() {
            return Ok(c);
        }
        if !id_or_name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(missing());
        }
        let prefix = id_or_name.to_ascii_lowercase();
        let len = prefix.len() as i64;
        let mut found =
            self.query_containers("WHERE substr(id, 1, ?1) = ?2 LIMIT 2", &[&len, &prefix])?;
        match found.len() {
            0 => Err(missing()),
            1 => Ok(found.remove(0)),
            _ => Err(RecordsError::AmbiguousPrefix(id_or_name.to_string())),
        }
    }

    /// Newest first. `all == false`: only running, paused and restarting containers (`docker ps`).
    pub fn list(&self, all: bool) -> Result<Vec<Container>, RecordsError> {
        if all {
            self.query_containers("", &[])
        } else {
            self.query_containers("WHERE status IN ('running', 'paused', 'restarting')", &[])
        }
    }

    /// Applies a status change to the container with this full id, in one statement.
    pub fn set_state(&mut self, id: &str, s: &StateChange) -> Result<(), RecordsError> {
        let n = match s {
            StateChange::Running {
                pid,
                monitor_pid,
                started_at,
            } => self.conn.execute(
                "UPDATE containers SET status = 'running', pid = ?2, monitor_pid = ?3, started_at = ?4,
                        exit_code = NULL, oom_killed = 0
                 WHERE id = ?1",
                params![id, pid, monitor_pid, started_at],
            ),
            StateChange::Exited {
                exit_code,
                finished_at,
                oom_killed,
            } => self.conn.execute(
                "UPDATE containers SET status = 'exited', pid = NULL, monitor_pid = NULL, exit_code = ?2,
                        finished_at = ?3, oom_killed = ?4
                 WHERE id = ?1",
                params![id, exit_code, finished_at, oom_killed],
            ),
            StateChange::Paused => self.conn.execute(
                "UPDATE containers SET status = 'paused' WHERE id = ?1 AND status = 'running'",
                [id],
            ),
            StateChange::Unpaused => self.conn.execute(
                "UPDATE containers SET status = 'running' WHERE id = ?1 AND status = 'paused'",
                [id],
            ),
            StateChange::Restarting => self.conn.execute(
                "UPDATE containers SET status = 'restarting', restart_count = restart_count + 1
                 WHERE id = ?1",
                [id],
            ),
            StateChange::Dead => self.conn.execute(
                "UPDATE containers SET status = 'dead', pid = NULL, monitor_pid = NULL WHERE id = ?1",
                [id],
            ),
        }
        .map_err(self.err())?;
        if n == 1 {
            return Ok(());
        }
        let exists = self
            .conn
            .query_row("SELECT 1 FROM containers WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map_err(self.err())?
            .is_some();
        Err(match s {
            _ if !exists => RecordsError::NoSuchContainer(id.to_string()),
            StateChange::Paused => RecordsError::NotRunning(id.to_string()),
            _ => RecordsError::NotPaused(id.to_string()),
        })
    }

    /// Replaces the stored create options of the container with this full id.
    pub fn set_config(&mut self, id: &str, config: &Value) -> Result<(), RecordsError> {
        let text =
            serde_json::to_string(config).map_err(|e| self.corrupt(format!("config: {e}")))?;
        let n = self
            .conn
            .execute(
                "UPDATE containers SET config = ?2 WHERE id = ?1",
                params![id, text],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(RecordsError::NoSuchContainer(id.to_string()));
        }
        Ok(())
    }

    /// Renames the container with this full id; a taken name fails with [`RecordsError::NameInUse`].
    pub fn rename(&mut self, id: &str, new_name: &str) -> Result<(), RecordsError> {
        let name = container_name(new_name)?;
        let (tx, err) = self.begin()?;
        let old: Option<String> = tx
            .query_row("SELECT name FROM containers WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&err)?;
        match old {
            None => return Err(RecordsError::NoSuchContainer(id.to_string())),
            Some(old) if old == name => return Err(RecordsError::SameName),
            Some(_) => {}
        }
        match tx.execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, name],
        ) {
            Ok(_) => {}
            Err(e) if unique_violation(&e) == Some("containers.name") => {
                let existing: String = tx
                    .query_row("SELECT id FROM containers WHERE name = ?1", [&name], |r| {
                        r.get(0)
                    })
                    .map_err(&err)?;
                return Err(RecordsError::NameInUse { name, id: existing });
            }
            Err(e) => return Err(err(e)),
        }
        tx.commit().map_err(&err)
    }

    /// Forgets the container with this full id, and which volumes it used. Whether it may go (not running) is
    /// the caller's decision.
    pub fn remove(&mut self, id: &str) -> Result<(), RecordsError> {
        let (tx, err) = self.begin()?;
        tx.execute("DELETE FROM volume_users WHERE container_id = ?1", [id])
            .map_err(&err)?;
        let n = tx
            .execute("DELETE FROM containers WHERE id = ?1", [id])
            .map_err(&err)?;
        if n == 0 {
            return Err(RecordsError::NoSuchContainer(id.to_string()));
        }
        tx.commit().map_err(&err)
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    /// Creates a volume and its `_data` directory; a name already recorded returns that volume (as docker does).
    /// No name: 64 random hex digits (an anonymous volume).
    pub fn create_volume(
        &mut self,
        name: Option<&str>,
        driver: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Volume, RecordsError> {
        let name = match name {
            Some(n) if names::is_valid(n) => n.to_string(),
            Some(n) => return Err(RecordsError::InvalidVolumeName(n.to_string())),
            None => random_id()?,
        };
        let labels_json =
            serde_json::to_string(labels).map_err(|e| self.corrupt(format!("labels: {e}")))?;
        let data = self.volume_dir(&name).join("_data");
        let (tx, err) = self.begin()?;
        tx.execute(
            "INSERT INTO volumes (name, driver, created_at, labels) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO NOTHING",
            params![name, driver, now_nanos(), labels_json],
        )
        .map_err(&err)?;
        std::fs::create_dir_all(&data).map_err(|source| RecordsError::Io {
            path: data.clone(),
            source,
        })?;
        tx.commit().map_err(&err)?;
        self.volume(&name)
    }

    pub fn volume(&self, name: &str) -> Result<Volume, RecordsError> {
        self.query_volumes("WHERE name = ?1", &[&name])?
            .pop()
            .ok_or_else(|| RecordsError::NoSuchVolume(name.to_string()))
    }

    /// All volumes, by name.
    pub fn volumes(&self) -> Result<Vec<Volume>, RecordsError> {
        self.query_volumes("", &[])
    }

    fn query_volumes(
        &self,
        where_: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Volume>, RecordsError> {
        let sql =
            format!("SELECT name, driver, created_at, labels FROM volumes {where_} ORDER BY name");
        let mut st = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = st
            .query_map(args, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(name, driver, created_at, labels)| {
                let labels = serde_json::from_str(&labels)
                    .map_err(|e| self.corrupt(format!("volume {name}: labels: {e}")))?;
                Ok(Volume {
                    mountpoint: self.volume_dir(&name).join("_data"),
                    name,
                    driver,
                    created_at,
                    labels,
                })
            })
            .collect()
    }

    /// Removes a volume and its directory, unless a container uses it ([`RecordsError::VolumeInUse`]).
    pub fn remove_volume(&mut self, name: &str) -> Result<(), RecordsError> {
        let (tx, err) = self.begin()?;
        let users = users_of(&tx, name).map_err(&err)?;
        if !users.is_empty() {
            return Err(RecordsError::VolumeInUse {
                name: name.to_string(),
                ids: users,
            });
        }
        let n = tx
            .execute("DELETE FROM volumes WHERE name = ?1", [name])
            .map_err(&err)?;
        if n == 0 {
            return Err(RecordsError::NoSuchVolume(name.to_string()));
        }
        tx.commit().map_err(&err)?;
        let dir = self.volume_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(RecordsError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// The ids of the containers that use this volume (whatever their state), sorted; empty for an unused one.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>, RecordsError> {
        // One read transaction, so a volume removed in between cannot look like an unused one.
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        let known = tx
            .query_row("SELECT 1 FROM volumes WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map_err(self.err())?
            .is_some();
        if !known {
            return Err(RecordsError::NoSuchVolume(name.to_string()));
        }
        users_of(&tx, name).map_err(self.err())
    }

    /// Records which volumes the container with this full id uses (replacing what was recorded). Every volume
    /// must exist; the record goes away with the container.
    pub fn set_volume_users(
        &mut self,
        container_id: &str,
        volume_names: &[String],
    ) -> Result<(), RecordsError> {
        let (tx, err) = self.begin()?;
        let exists = tx
            .query_row(
                "SELECT 1 FROM containers WHERE id = ?1",
                [container_id],
                |_| Ok(()),
            )
            .optional()
            .map_err(&err)?
            .is_some();
        if !exists {
            return Err(RecordsError::NoSuchContainer(container_id.to_string()));
        }
        tx.execute(
            "DELETE FROM volume_users WHERE container_id = ?1",
            [container_id],
        )
        .map_err(&err)?;
        for v in volume_names {
            let known = tx
                .query_row("SELECT 1 FROM volumes WHERE name = ?1", [v], |_| Ok(()))
                .optional()
                .map_err(&err)?
                .is_some();
            if !known {
                return Err(RecordsError::NoSuchVolume(v.clone()));
            }
            tx.execute(
                "INSERT OR IGNORE INTO volume_users (container_id, volume) VALUES (?1, ?2)",
                params![container_id, v],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }
}

/// The containers recorded as users of a volume, sorted (a plain connection or a transaction).
fn users_of(conn: &Connection, volume: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn
        .prepare("SELECT container_id FROM volume_users WHERE volume = ?1 ORDER BY container_id")?;
    // Bound before returning: the rows borrow `st`, which must outlive them.
    let users = st
        .query_map([volume], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>();
    users
}

#[cfg(test)]
mod tests;
