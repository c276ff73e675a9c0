//! Image, tag and snapshot records in SQLite (WAL): safe when several berth commands run at once, and atomic,
//! so a crash at any point leaves either the old record or the new one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("image database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("image database {path}: bad digest {value:?} in table {table}")]
    Corrupt {
        path: PathBuf,
        table: &'static str,
        value: String,
    },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
    id       TEXT PRIMARY KEY,   -- the config digest, docker's image id
    manifest TEXT NOT NULL,      -- the platform manifest's digest
    created  INTEGER NOT NULL,   -- when it entered this store (unix seconds)
    size     INTEGER NOT NULL    -- unpacked size of all layers, bytes
);
CREATE TABLE IF NOT EXISTS tags (
    name        TEXT PRIMARY KEY,  -- normalized reference: docker.io/library/busybox:latest or repo@sha256:...
    image       TEXT NOT NULL REFERENCES images(id),
    repo_digest TEXT               -- what the registry served for it (an index or a manifest)
);
CREATE TABLE IF NOT EXISTS snapshots (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,  -- the directory name: short, so deep overlays fit a mount
    chain_id TEXT NOT NULL UNIQUE,
    diff_id  TEXT NOT NULL,
    size     INTEGER NOT NULL DEFAULT 0,
    ready    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS active (
    key     TEXT PRIMARY KEY,   -- the user of a writable rootfs (a container id, or image-mount:<id>)
    image   TEXT NOT NULL,
    driver  TEXT NOT NULL,      -- overlay | vfs
    created INTEGER NOT NULL
);
";

fn setup(conn: &mut Connection) -> rusqlite::Result<()> {
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    // NORMAL in WAL mode: commits stay atomic and survive a killed process; a power loss may take back the last
    // commits (blobs are fsynced before their records, so what is lost is a record, and GC sweeps its files).
    // FULL cost an fsync per activation and removal of a container's rootfs.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // IMMEDIATE: concurrent first opens queue up on the write lock instead of failing on a stale snapshot.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    tx.commit()
}

pub struct Db {
    conn: Connection,
    path: PathBuf,
}

#[derive(Clone, Debug)]
pub struct ImageRow {
    pub id: Digest,
    pub manifest: Digest,
    pub created: i64,
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct TagRow {
    pub name: String,
    pub image: Digest,
    pub repo_digest: Option<Digest>,
}

#[derive(Clone, Debug)]
pub struct SnapshotRow {
    pub id: i64,
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub ready: bool,
}

#[derive(Clone, Debug)]
pub struct ActiveRow {
    pub key: String,
    pub image: Digest,
    pub driver: String,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let err = |source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        // Several first opens at once (parallel pulls into a new store): switching to WAL can fail with
        // SQLITE_BUSY without going through the busy handler, so that step is retried here.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match setup(&mut conn) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(Db {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        move |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn digest(&self, table: &'static str, s: String) -> Result<Digest, DbError> {
        Digest::parse(&s).map_err(|_| DbError::Corrupt {
            path: self.path.clone(),
            table,
            value: s,
        })
    }

    /// Records an image and points its tags at it, in one transaction.
    pub fn put_image(
        &mut self,
        img: &ImageRow,
        tags: &[(String, Option<Digest>)],
    ) -> Result<(), DbError> {
        let path = self.path.clone();
        let err = move |source| DbError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&err)?;
        tx.execute(
            "INSERT INTO images (id, manifest, created, size) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET manifest = excluded.manifest",
            params![
                img.id.as_str(),
                img.manifest.as_str(),
                img.created,
                img.size as i64
            ],
        )
        .map_err(&err)?;
        for (name, repo_digest) in tags {
            tx.execute(
                "INSERT INTO tags (name, image, repo_digest) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET image = excluded.image, repo_digest = excluded.repo_digest",
                params![name, img.id.as_str(), repo_digest.as_ref().map(|d| d.as_str())],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    pub fn images(&self) -> Result<Vec<ImageRow>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT id, manifest, created, size FROM images ORDER BY created DESC, id")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(id, m, created, size)| {
                Ok(ImageRow {
                    id: self.digest("images", id)?,
                    manifest: self.digest("images", m)?,
                    created,
                    size: size.max(0) as u64,
                })
            })
            .collect()
    }

    pub fn image(&self, id: &Digest) -> Result<Option<ImageRow>, DbError> {
        Ok(self.images()?.into_iter().find(|i| &i.id == id))
    }

    pub fn tags(&self) -> Result<Vec<TagRow>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT name, image, repo_digest FROM tags ORDER BY name")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(name, image, rd)| {
                Ok(TagRow {
                    name,
                    image: self.digest("tags", image)?,
                    repo_digest: rd.map(|d| self.digest("tags", d)).transpose()?,
                })
            })
            .collect()
    }

    pub fn tag(&self, name: &str) -> Result<Option<TagRow>, DbError> {
        Ok(self.tags()?.into_iter().find(|t| t.name == name))
    }

    pub fn set_tag(
        &self,
        name: &str,
        image: &Digest,
        repo_digest: Option<&Digest>,
    ) -> Result<(), DbError> {
        self.conn
            .execute(
                "INSERT INTO tags (name, image, repo_digest) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET image = excluded.image, repo_digest = excluded.repo_digest",
                params![name, image.as_str(), repo_digest.map(|d| d.as_str())],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    pub fn remove_tag(&self, name: &str) -> Result<bool, DbError> {
        self.conn
            .execute("DELETE FROM tags WHERE name = ?1", params![name])
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// Removes an image record unless a tag or an active snapshot still uses it; true if removed.
    pub fn remove_image_if_unused(&self, id: &Digest) -> Result<bool, DbError> {
        self.conn
            .execute(
                "DELETE FROM images WHERE id = ?1
                   AND NOT EXISTS (SELECT 1 FROM tags WHERE image = ?1)
                   AND NOT EXISTS (SELECT 1 FROM active WHERE image = ?1)",
                params![id.as_str()],
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    pub fn snapshot(&self, chain_id: &Digest) -> Result<Option<SnapshotRow>, DbError> {
        Ok(self
            .query_snapshots("WHERE chain_id = ?1", params![chain_id.as_str()])?
            .pop())
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRow>, DbError> {
        self.query_snapshots("", params![])
    }

    fn query_snapshots(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<SnapshotRow>, DbError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT id, chain_id, diff_id, size, ready FROM snapshots {filter}"
            ))
            .map_err(self.err())?;
        let rows = st
            .query_map(args, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(id, c, d, size, ready)| {
                Ok(SnapshotRow {
                    id,
                    chain_id: self.digest("snapshots", c)?,
                    diff_id: self.digest("snapshots", d)?,
                    size: size.max(0) as u64,
                    ready: ready != 0,
                })
            })
            .collect()
    }

    /// The row for a chain, created (not ready) if there is none: its id names the snapshot's directory.
    pub fn claim_snapshot(
        &self,
        chain_id: &Digest,
        diff_id: &Digest,
    ) -> Result<SnapshotRow, DbError> {
        self.conn
            .execute(
                "INSERT INTO snapshots (chain_id, diff_id) VALUES (?1, ?2) ON CONFLICT(chain_id) DO NOTHING",
                params![chain_id.as_str(), diff_id.as_str()],
            )
            .map_err(self.err())?;
        self.snapshot(chain_id)?.ok_or_else(|| DbError::Corrupt {
            path: self.path.clone(),
            table: "snapshots",
            value: chain_id.to_string(),
        })
    }

    pub fn mark_snapshot_ready(&self, id: i64, size: u64) -> Result<(), DbError> {
        self.conn
            .execute(
                "UPDATE snapshots SET ready = 1, size = ?2 WHERE id = ?1",
                params![id, size as i64],
            )
            .map(|_| ())
            .map_err(self.err())
    }

    pub fn remove_snapshot(&self, id: i64) -> Result<(), DbError> {
        self.conn
            .execute("DELETE FROM snapshots WHERE id = ?1", params![id])
            .map(|_| ())
            .map_err(self.err())
    }

    pub fn add_active(
        &self,
        key: &str,
        image: &Digest,
        driver: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        self.conn
            .execute(
                "INSERT INTO active (key, image, driver, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO NOTHING",
                params![key, image.as_str(), driver, now],
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    pub fn active(&self) -> Result<Vec<ActiveRow>, DbError> {
        let mut st = self
            .conn
            .prepare("SELECT key, image, driver FROM active ORDER BY key")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        rows.into_iter()
            .map(|(key, image, driver)| {
                Ok(ActiveRow {
                    key,
                    image: self.digest("active", image)?,
                    driver,
                })
            })
            .collect()
    }

    pub fn remove_active(&self, key: &str) -> Result<bool, DbError> {
        self.conn
            .execute("DELETE FROM active WHERE key = ?1", params![key])
            .map(|n| n > 0)
            .map_err(self.err())
    }
}
