//! Small file helpers that turn I/O errors into CgroupError with the path.

use std::path::Path;

use crate::CgroupError;

pub fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> CgroupError {
    CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to `dir/file` in one write(2), as cgroup files expect.
pub fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(|e| io_err("write", &p, e))
}

pub fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let p = dir.join(file);
    std::fs::read_to_string(&p).map_err(|e| io_err("read", &p, e))
}

/// A single number; "max" (v2's unlimited) reads as u64::MAX. None if missing or unparsable,
/// which is what statistics want (a missing file just means that counter is not available).
pub fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    let s = std::fs::read_to_string(dir.join(file)).ok()?;
    parse_u64(s.trim())
}

pub fn parse_u64(s: &str) -> Option<u64> {
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse::<u64>()
        .ok()
        // v1 reports "-1" style unlimited values as huge or negative numbers in a few files.
        .or_else(|| s.parse::<i64>().ok().map(|v| v as u64))
}

/// "key value" lines (memory.stat, cpu.stat, memory.events...).
pub fn read_kv(dir: &Path, file: &str) -> Vec<(String, u64)> {
    let Ok(s) = std::fs::read_to_string(dir.join(file)) else {
        return Vec::new();
    };
    parse_kv(&s)
}

pub fn parse_kv(s: &str) -> Vec<(String, u64)> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), parse_u64(v.trim())?))
        })
        .collect()
}

pub fn kv_get(kv: &[(String, u64)], key: &str) -> Option<u64> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// i64 resource value with -1 (or any negative) meaning unlimited, in v1 or v2 notation.
pub fn limit_str(v: i64, v2: bool) -> String {
    if v < 0 {
        if v2 {
            "max".to_string()
        } else {
            "-1".to_string()
        }
    } else {
        v.to_string()
    }
}
