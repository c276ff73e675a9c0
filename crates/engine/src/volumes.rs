//! `-v` / `--mount` / `--tmpfs` as docker reads them, and named volumes filled from the image on first use.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::names;
use crate::spec::{parse_memory, SpecError};

/// One mount the user asked for, before volumes are created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MountRequest {
    /// `create_source`: `-v /host:/ctr` creates a missing host directory; `--mount type=bind` refuses it.
    Bind {
        src: PathBuf,
        dst: String,
        readonly: bool,
        create_source: bool,
    },
    /// `name` None: an anonymous volume.
    Volume {
        name: Option<String>,
        dst: String,
        readonly: bool,
        nocopy: bool,
    },
    Tmpfs {
        dst: String,
        size: Option<i64>,
        mode: Option<u32>,
    },
}

impl MountRequest {
    pub fn destination(&self) -> &str {
        match self {
            MountRequest::Bind { dst, .. }
            | MountRequest::Volume { dst, .. }
            | MountRequest::Tmpfs { dst, .. } => dst,
        }
    }
}

fn invalid(msg: String) -> SpecError {
    SpecError::Invalid(msg)
}

fn check_dst(dst: &str, flag: &str, arg: &str) -> Result<String, SpecError> {
    if !dst.starts_with('/') {
        return Err(invalid(format!(
            "invalid {flag} {arg:?}: the container path {dst:?} must be absolute"
        )));
    }
    if dst == "/" {
        return Err(invalid(format!(
            "invalid {flag} {arg:?}: the container path may not be \"/\""
        )));
    }
    Ok(dst.to_string())
}

/// `-v [SRC:]DST[:OPTS]`: SRC an absolute host path (a bind) or a volume name; no SRC: an anonymous volume.
pub fn parse_volume_flag(arg: &str) -> Result<MountRequest, SpecError> {
    let parts: Vec<&str> = arg.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => (None, *d, ""),
        [s, d] if d.starts_with('/') => (Some(*s), *d, ""),
        [d, o] if d.starts_with('/') => (None, *d, *o),
        [s, d, o] => (Some(*s), *d, *o),
        _ => {
            return Err(invalid(format!(
                "invalid -v {arg:?}: expected [SOURCE:]DESTINATION[:OPTIONS]"
            )))
        }
    };
    if src == Some("") || dst.is_empty() {
        return Err(invalid(format!(
            "invalid -v {arg:?}: empty source or destination"
        )));
    }
    let dst = check_dst(dst, "-v", arg)?;
    let mut readonly = false;
    let mut nocopy = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "readonly" => readonly = true,
            "rw" => readonly = false,
            "nocopy" => nocopy = true,
            "z" | "Z" | "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate"
            | "delegated" | "cached" | "consistent" => {}
            _ => {
                return Err(invalid(format!(
                    "invalid -v {arg:?}: unknown option {o:?} (ro, rw, nocopy)"
                )))
            }
        }
    }
    Ok(match src {
        Some(s) if s.starts_with('/') => MountRequest::Bind {
            src: PathBuf::from(s),
            dst,
            readonly,
            create_source: true,
        },
        Some(s) if s.starts_with('.') || s.contains('/') => {
            return Err(invalid(format!(
                "invalid -v {arg:?}: {s:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )))
        }
        Some(s) => {
            if !names::is_valid(s) {
                return Err(invalid(format!(
                    "invalid -v {arg:?}: {s:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
                )));
            }
            MountRequest::Volume {
                name: Some(s.to_string()),
                dst,
                readonly,
                nocopy,
            }
        }
        None => MountRequest::Volume {
            name: None,
            dst,
            readonly,
            nocopy,
        },
    })
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...,readonly,...`
pub fn parse_mount_flag(arg: &str) -> Result<MountRequest, SpecError> {
    let mut kind = "volume".to_string();
    let mut src: Option<String> = None;
    let mut dst: Option<String> = None;
    let mut readonly = false;
    let mut nocopy = false;
    let mut size = None;
    let mut mode = None;
    for field in arg.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let flag = |v: Option<&str>| -> Result<bool, SpecError> {
            match v {
                None | Some("1") | Some("true") => Ok(true),
                Some("0") | Some("false") => Ok(false),
                Some(x) => Err(invalid(format!(
                    "invalid --mount {arg:?}: {k}={x:?} is not a boolean"
                ))),
            }
        };
        let need = |v: Option<&str>| -> Result<String, SpecError> {
            v.map(str::to_string)
                .ok_or_else(|| invalid(format!("invalid --mount {arg:?}: {k} needs a value")))
        };
        match k.as_str() {
            "type" => kind = need(v)?,
            "source" | "src" => src = Some(need(v)?),
            "target" | "destination" | "dst" => dst = Some(need(v)?),
            "readonly" | "ro" => readonly = flag(v)?,
            "volume-nocopy" => nocopy = flag(v)?,
            "tmpfs-size" => size = Some(parse_memory(&need(v)?)?),
            "tmpfs-mode" => {
                let m = need(v)?;
                mode = Some(u32::from_str_radix(&m, 8).map_err(|_| {
                    invalid(format!(
                        "invalid --mount {arg:?}: tmpfs-mode {m:?} is not an octal mode"
                    ))
                })?)
            }
            "bind-propagation" | "consistency" | "volume-driver" | "volume-label"
            | "volume-opt" => {}
            _ => {
                return Err(invalid(format!(
                    "invalid --mount {arg:?}: unexpected key {k:?}"
                )))
            }
        }
    }
    let dst = dst.ok_or_else(|| invalid(format!("invalid --mount {arg:?}: target is required")))?;
    let dst = check_dst(&dst, "--mount", arg)?;
    match kind.as_str() {
        "bind" => {
            let src =
                src.ok_or_else(|| invalid(format!("invalid --mount {arg:?}: source is required")))?;
            if !src.starts_with('/') {
                return Err(invalid(format!(
                    "invalid --mount {arg:?}: bind source {src:?} must be an absolute path"
                )));
            }
            Ok(MountRequest::Bind {
                src: PathBuf::from(src),
                dst,
                readonly,
                create_source: false,
            })
        }
        "volume" => {
            if let Some(s) = &src {
                if !names::is_valid(s) {
                    return Err(invalid(format!(
                        "invalid --mount {arg:?}: {s:?} is not a valid volume name"
                    )));
                }
            }
            Ok(MountRequest::Volume {
                name: src,
                dst,
                readonly,
                nocopy,
            })
        }
        "tmpfs" => {
            if src.is_some() {
                return Err(invalid(format!(
                    "invalid --mount {arg:?}: a tmpfs mount takes no source"
                )));
            }
            Ok(MountRequest::Tmpfs { dst, size, mode })
        }
        other => Err(invalid(format!(
            "invalid --mount {arg:?}: unknown type {other:?} (bind, volume, tmpfs)"
        ))),
    }
}

/// `--tmpfs DST[:OPTS]` (size=, mode=).
pub fn parse_tmpfs_flag(arg: &str) -> Result<MountRequest, SpecError> {
    let (dst, opts) = arg.split_once(':').unwrap_or((arg, ""));
    let dst = check_dst(dst, "--tmpfs", arg)?;
    let mut size = None;
    let mut mode = None;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => size = Some(parse_memory(v)?),
            Some(("mode", v)) => {
                mode = Some(u32::from_str_radix(v, 8).map_err(|_| {
                    invalid(format!("invalid --tmpfs {arg:?}: mode {v:?} is not octal"))
                })?)
            }
            _ => {}
        }
    }
    Ok(MountRequest::Tmpfs { dst, size, mode })
}

/// The directory `dst` names inside `rootfs`, if it exists there and does not lead out of it.
pub fn image_dir(rootfs: &Path, dst: &str) -> Option<PathBuf> {
    let p = rootfs.join(dst.trim_start_matches('/'));
    let real = std::fs::canonicalize(&p).ok()?;
    let root = std::fs::canonicalize(rootfs).ok()?;
    (real.starts_with(&root) && real.is_dir()).then_some(real)
}

pub fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_flags() {
        assert_eq!(
            parse_volume_flag("/data").unwrap(),
            MountRequest::Volume {
                name: None,
                dst: "/data".into(),
                readonly: false,
                nocopy: false
            }
        );
        assert_eq!(
            parse_volume_flag("vol:/data:ro").unwrap(),
            MountRequest::Volume {
                name: Some("vol".into()),
                dst: "/data".into(),
                readonly: true,
                nocopy: false
            }
        );
        assert_eq!(
            parse_volume_flag("/host:/data").unwrap(),
            MountRequest::Bind {
                src: "/host".into(),
                dst: "/data".into(),
                readonly: false,
                create_source: true
            }
        );
        for bad in [
            "rel/dir:/data",
            "./x:/data",
            "vol:data",
            "vol:/data:bogus",
            ":/data",
            "a:b:c:d",
            "vol:/",
        ] {
            assert!(parse_volume_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_flags() {
        assert_eq!(
            parse_mount_flag("type=bind,source=/h,target=/c,readonly").unwrap(),
            MountRequest::Bind {
                src: "/h".into(),
                dst: "/c".into(),
                readonly: true,
                create_source: false
            }
        );
        assert_eq!(
            parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777").unwrap(),
            MountRequest::Tmpfs {
                dst: "/t".into(),
                size: Some(1 << 20),
                mode: Some(0o1777)
            }
        );
        assert_eq!(
            parse_mount_flag("src=v1,dst=/v").unwrap(),
            MountRequest::Volume {
                name: Some("v1".into()),
                dst: "/v".into(),
                readonly: false,
                nocopy: false
            }
        );
        for bad in [
            "type=bind,target=/c",
            "type=bind,source=rel,target=/c",
            "type=nfs,target=/c",
            "type=volume,source=/abs,target=/c",
            "source=v",
            "type=bind,source=/h,target=/c,readonly=maybe",
            "type=bind,source=/h,target=/c,bogus=1",
            "type=tmpfs,target=/t,tmpfs-mode=9z",
        ] {
            assert!(parse_mount_flag(bad).is_err(), "{bad}");
        }
    }
}
