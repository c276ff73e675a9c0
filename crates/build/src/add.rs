//! What ADD does beyond COPY, as docker does it: a local source that is a tar archive (plain, gzip or zstd,
//! told by its content, not its name) is extracted into the destination directory, keeping the archive's
//! owners unless `--chown` is given; an http(s) URL is fetched (at every build: its content digest is part of
//! the step's cache key), verified against `--checksum`, and lands at DEST (or DEST/<last URL path
//! component>) with mode 0600 and the server's Last-Modified as its mtime. Git sources are refused.
//!
//! Extraction never writes outside the staging directory: an entry with `..` is an error, a leading `/` is
//! dropped, and tar's `unpack_in` refuses to follow a symlink (from the archive) out of the destination.

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use image::Digest;
use sha2::{Digest as _, Sha256};

use crate::ignore::{EntryKind, Selection};
use crate::stage::{self, Ownership, StageError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("fetch {url}: HTTP status {status}")]
    Status { url: String, status: String },
    #[error("{url}: checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("extract {}: entry {entry:?} leaves the destination", archive.display())]
    Escapes { archive: PathBuf, entry: String },
    #[error("extract {}: {reason}", archive.display())]
    Unpack { archive: PathBuf, reason: String },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Stage(#[from] StageError),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AddError + 'a {
    move |source| AddError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// ADD's extras on top of a COPY from the context.
#[derive(Clone, Debug, Default)]
pub struct AddSpec {
    /// http(s) sources, fetched at every build.
    pub urls: Vec<String>,
    /// `--checksum=sha256:<hex>` for the URL source.
    pub checksum: Option<String>,
    /// Local archives are extracted (docker's default; `--unpack=false` turns it off).
    pub unpack_local: bool,
    /// Fetched archives are extracted too (only with an explicit `--unpack=true`).
    pub unpack_remote: bool,
}

/// docker's git source forms: refused (a RUN with git does the same, visibly).
pub fn is_git(s: &str) -> bool {
    s.starts_with("git@")
        || s.starts_with("git://")
        || s.starts_with("github.com/")
        || (is_url(s) && {
            let no_frag = s.split('#').next().unwrap_or(s);
            no_frag.ends_with(".git")
        })
}

pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The name a fetched file gets in a destination directory: the URL path's last component.
pub fn url_file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// `--checksum`'s form: `sha256:` and 64 hex digits.
pub fn checksum_is_valid(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A fetched URL: in `dir/<index>/<name>`, with its content digest.
#[derive(Debug)]
pub struct Fetched {
    pub url: String,
    pub dir: PathBuf,
    pub name: String,
    pub digest: Digest,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .max_redirects(10)
        .build()
        .new_agent()
}

/// Fetches `urls` into `dir` (one subdirectory each), checking `checksum`.
pub fn fetch(
    urls: &[String],
    checksum: Option<&str>,
    dir: &Path,
) -> Result<Vec<Fetched>, AddError> {
    let agent = agent();
    let mut out = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let fail = |reason: String| AddError::Fetch {
            url: url.clone(),
            reason,
        };
        let resp = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(AddError::Status {
                url: url.clone(),
                status: status.to_string(),
            });
        }
        let mtime = resp
            .headers()
            .get("last-modified")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let name = url_file_name(url).unwrap_or_else(|| "download".to_string());
        let sub = dir.join(i.to_string());
        fs::create_dir(&sub).map_err(io_err("create directory", &sub))?;
        let path = sub.join(&name);
        let mut file = fs::File::create(&path).map_err(io_err("create", &path))?;
        let mut reader = resp.into_body().into_with_config().reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| fail(format!("reading the body: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io_err("write", &path))?;
        }
        let digest = Digest::from_sha256(hasher.finalize().into());
        if let Some(expected) = checksum {
            if !expected.eq_ignore_ascii_case(&digest.to_string()) {
                return Err(AddError::Checksum {
                    url: url.clone(),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        // docker: a downloaded file is 0600 (unless --chmod), its mtime the server's Last-Modified.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err("chmod", &path))?;
        if let Some(t) = mtime {
            file.set_modified(t)
                .map_err(io_err("set the mtime of", &path))?;
        }
        out.push(Fetched {
            url: url.clone(),
            dir: sub,
            name,
            digest,
        });
    }
    Ok(out)
}

/// How an archive is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

fn decoder<'a>(
    file: fs::File,
    kind: Compression,
    path: &Path,
) -> Result<Box<dyn Read + 'a>, AddError> {
    let r = BufReader::new(file);
    Ok(match kind {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(io_err("zstd decoder for", path))?,
        ),
    })
}

/// A tar header block: its checksum (the sum of its bytes, the checksum field counted as spaces) matches.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block[..100].iter().all(|&b| b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                b as u32
            }
        })
        .sum();
    sum == stored
}

/// Whether `path` is a tar archive (plain, gzip or zstd), told by content as docker does; None for any
/// other file, which ADD copies as it is. bzip2 and xz archives are an error rather than copied unextracted.
pub fn archive_kind(path: &Path) -> Result<Option<Compression>, AddError> {
    let mut magic = [0u8; 6];
    let mut f = fs::File::open(path).map_err(io_err("open", path))?;
    let n = read_full(&mut f, &mut magic).map_err(io_err("read", path))?;
    let magic = &magic[..n];
    let kind = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else if magic.starts_with(b"BZh") || magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(AddError::Unpack {
            archive: path.to_path_buf(),
            reason: "bzip2 and xz archives are not supported (recompress with gzip or zstd, or use --unpack=false)".into(),
        });
    } else {
        Compression::None
    };
    let f = fs::File::open(path).map_err(io_err("open", path))?;
    let mut r = decoder(f, kind, path)?;
    let mut block = [0u8; 512];
    // A compressed file that does not decompress is not an archive: ADD copies it.
    let n = read_full(&mut r, &mut block).unwrap_or(0);
    Ok(is_tar_header(&block[..n]).then_some(kind))
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The entry's path below the destination: a leading `/` and `.` dropped, `..` refused.
fn entry_path(archive: &Path, raw: &Path) -> Result<PathBuf, AddError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(AddError::Escapes {
                    archive: archive.to_path_buf(),
                    entry: raw.display().to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// An error with its causes (tar's errors keep the OS error in `source`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}

/// Extracts the archive at `archive` into `dest` (a directory, absolute in the image) inside `staged`.
pub fn unpack(
    archive: &Path,
    kind: Compression,
    dest: &str,
    own: &Ownership,
    staged: &Path,
) -> Result<(), AddError> {
    let dest_dir = stage::inside(staged, dest)?;
    stage::mkdirs(staged, &dest_dir)?;
    let f = fs::File::open(archive).map_err(io_err("open", archive))?;
    let mut ar = tar::Archive::new(decoder(f, kind, archive)?);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(own.chown.is_none());
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let unpack_err = |reason: String| AddError::Unpack {
        archive: archive.to_path_buf(),
        reason,
    };
    let entries = ar.entries().map_err(|e| unpack_err(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_err(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| unpack_err(e.to_string()))?
            .into_owned();
        let rel = entry_path(archive, &raw)?;
        // Hard links name their target inside the archive too: the same rule.
        if let Ok(Some(link)) = entry.link_name() {
            if entry.header().entry_type().is_hard_link() {
                entry_path(archive, &link)?;
            }
        }
        let done = entry
            .unpack_in(&dest_dir)
            .map_err(|e| unpack_err(format!("{}: {}", raw.display(), chain(&e))))?;
        if !done {
            return Err(AddError::Escapes {
                archive: archive.to_path_buf(),
                entry: raw.display().to_string(),
            });
        }
        if let (Some((uid, gid)), false) = (own.chown, rel.as_os_str().is_empty()) {
            let p = dest_dir.join(&rel);
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(io_err("chown", &p))?;
        }
    }
    Ok(())
}

/// Places a context selection at `dest` like COPY, except that a source that is itself a tar archive is
/// extracted into `dest` (a directory) instead.
pub fn stage_selection_unpacking(
    ctx_root: &Path,
    selection: &Selection,
    dest: &str,
    own: &Ownership,
    staged: &Path,
) -> Result<(), AddError> {
    let mut tops: Vec<&Path> = selection
        .entries
        .iter()
        .filter(|s| s.rel.as_os_str().is_empty())
        .map(|s| s.matched.as_path())
        .collect();
    tops.dedup();
    // Several sources (a glob's matches) land in DEST as a directory, archives taken out or not.
    let dest = if tops.len() > 1 && !dest.ends_with('/') {
        format!("{dest}/")
    } else {
        dest.to_string()
    };
    let mut rest = Selection {
        entries: Vec::new(),
        digest: selection.digest.clone(),
    };
    let mut archives = Vec::new();
    for s in &selection.entries {
        if s.rel.as_os_str().is_empty() && matches!(s.entry.kind, EntryKind::File) {
            let p = ctx_root.join(&s.entry.path);
            if let Some(kind) = archive_kind(&p)? {
                archives.push((p, kind));
                continue;
            }
        }
        rest.entries.push(s.clone());
    }
    stage::stage_selection(ctx_root, &rest, &dest, own, staged)?;
    for (p, kind) in archives {
        unpack(&p, kind, &dest, own, staged)?;
    }
    Ok(())
}

/// Places fetched files at `dest` (DEST/<name> when `dest` ends with `/`), or extracts them when `unpack`
/// and they are archives.
pub fn stage_fetched(
    files: &[Fetched],
    dest: &str,
    own: &Ownership,
    unpack_archives: bool,
    staged: &Path,
) -> Result<(), AddError> {
    for f in files {
        let path = f.dir.join(&f.name);
        if unpack_archives {
            if let Some(kind) = archive_kind(&path)? {
                unpack(&path, kind, dest, own, staged)?;
                continue;
            }
        }
        stage::stage_copy(&f.dir, &[PathBuf::from(&f.name)], dest, own, staged)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names_and_git() {
        assert_eq!(
            url_file_name("https://example.com/a/b.tar.gz?x=1#f").as_deref(),
            Some("b.tar.gz")
        );
        assert_eq!(url_file_name("http://example.com/"), None);
        assert_eq!(url_file_name("http://example.com"), None);
        assert!(is_git("git@github.com:a/b.git"));
        assert!(is_git("https://github.com/a/b.git#main"));
        assert!(!is_git("https://example.com/x.tar"));
        assert!(checksum_is_valid(&format!("sha256:{}", "a".repeat(64))));
        assert!(!checksum_is_valid("sha256:abc"));
    }

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_uid(1234);
            h.set_gid(5678);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`: write the name bytes directly, as an evil archive would.
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn detects_and_extracts_safely() {
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("a");
        fs::write(&plain, tar_with(&[("dir/f.txt", b"hi")])).unwrap();
        assert_eq!(archive_kind(&plain).unwrap(), Some(Compression::None));
        let gz = d.path().join("b");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&fs::read(&plain).unwrap()).unwrap();
        fs::write(&gz, e.finish().unwrap()).unwrap();
        assert_eq!(archive_kind(&gz).unwrap(), Some(Compression::Gzip));
        let zs = d.path().join("c");
        fs::write(
            &zs,
            zstd::encode_all(&fs::read(&plain).unwrap()[..], 0).unwrap(),
        )
        .unwrap();
        assert_eq!(archive_kind(&zs).unwrap(), Some(Compression::Zstd));
        let text = d.path().join("t");
        fs::write(&text, "just text").unwrap();
        assert_eq!(archive_kind(&text).unwrap(), None);

        let staged = d.path().join("staged");
        fs::create_dir(&staged).unwrap();
        unpack(
            &zs,
            Compression::Zstd,
            "/opt",
            &Ownership::default(),
            &staged,
        )
        .unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(staged.join("opt/dir/f.txt")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640);
        if fs::metadata(&staged).unwrap().uid() == 0 {
            assert_eq!((m.uid(), m.gid()), (1234, 5678));
        }

        let evil = d.path().join("evil");
        fs::write(&evil, tar_with(&[("../../escape", b"x")])).unwrap();
        let err = unpack(
            &evil,
            Compression::None,
            "/x",
            &Ownership::default(),
            &staged,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("../../escape") && err.contains("leaves"),
            "{err}"
        );
        assert!(!d.path().join("escape").exists());
    }
}
