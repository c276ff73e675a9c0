//! On-disk cache of compiled programs, keyed by the SHA-256 of the profile.
//!
//! File `<dir>/<key>.bpf`:
//!
//! ```text
//! magic "BERTHBPF" | format u32 | flags u32 | count u32 | count x (code u16, jt u8, jf u8, k u32) | sha256
//! ```
//!
//! all little-endian, the trailing SHA-256 covering everything before it. A file that is short, has the wrong
//! magic/format/checksum or an ill-formed program is treated as a miss and rewritten. Files are written to a
//! temporary name and renamed into place, so a concurrent reader sees either nothing or a whole file. The cache
//! directory belongs to the runtime (mode 0700) and is trusted: the checksum catches corruption, not forgery.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use libc::sock_filter;
use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use crate::bpf;
use crate::compile::Compiled;
use crate::SeccompError;

/// Bump whenever the generated code or the file format changes: it is part of every key, so old entries are
/// simply never looked up again.
pub(crate) const COMPILER_VERSION: &str = "berth-seccomp/1";

const MAGIC: &[u8; 8] = b"BERTHBPF";
const FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 4;
const DIGEST: usize = 32;

/// Hex SHA-256 of the compiler version, the host architecture (which decides the native ABI) and the profile's
/// canonical JSON.
pub(crate) fn key(profile: &LinuxSeccomp) -> Result<String, SeccompError> {
    let json = serde_json::to_vec(profile)
        .map_err(|e| SeccompError::Invalid(format!("serialize profile for the cache key: {e}")))?;
    let mut h = Sha256::new();
    h.update(COMPILER_VERSION.as_bytes());
    h.update([0]);
    h.update(std::env::consts::ARCH.as_bytes());
    h.update([0]);
    h.update(&json);
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| {
            [
                DIGITS[usize::from(b >> 4)] as char,
                DIGITS[usize::from(b & 15)] as char,
            ]
        })
        .collect()
}

pub(crate) fn path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.bpf"))
}

fn encode(c: &Compiled) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER + 8 * c.insns.len() + DIGEST);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&FORMAT.to_le_bytes());
    buf.extend_from_slice(&c.flags.to_le_bytes());
    buf.extend_from_slice(&(c.insns.len() as u32).to_le_bytes());
    for i in &c.insns {
        buf.extend_from_slice(&i.code.to_le_bytes());
        buf.extend_from_slice(&[i.jt, i.jf]);
        buf.extend_from_slice(&i.k.to_le_bytes());
    }
    let digest = Sha256::digest(&buf);
    buf.extend_from_slice(&digest);
    buf
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn decode(b: &[u8]) -> Option<Compiled> {
    let body_len = b.len().checked_sub(DIGEST)?;
    let (body, digest) = b.split_at(body_len);
    if body.get(..8)? != MAGIC
        || u32_at(body, 8)? != FORMAT
        || Sha256::digest(body).as_slice() != digest
    {
        return None;
    }
    let flags = u32_at(body, 12)?;
    let count = u32_at(body, 16)? as usize;
    let code = body.get(HEADER..)?;
    if code.len() != count.checked_mul(8)? {
        return None;
    }
    let insns: Vec<sock_filter> = code
        .chunks_exact(8)
        .map(|c| sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    bpf::well_formed(&insns).then_some(Compiled { insns, flags })
}

/// The cached program for `key`, or None on a miss or an unusable file.
pub(crate) fn load(dir: &Path, key: &str) -> Option<Compiled> {
    decode(&fs::read(path(dir, key)).ok()?)
}

/// Writes the entry atomically: a private temporary file in the same directory, then rename.
pub(crate) fn store(dir: &Path, key: &str, c: &Compiled) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&encode(c))?;
        // No fsync: losing an entry in a crash only costs a recompile, and a torn file fails the checksum.
        fs::rename(&tmp, path(dir, key))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Compiled {
        Compiled {
            insns: vec![
                sock_filter {
                    code: 0x15,
                    jt: 0,
                    jf: 1,
                    k: 7,
                },
                sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0x7fff_0000,
                },
                sock_filter {
                    code: 0x06,
                    jt: 0,
                    jf: 0,
                    k: 0,
                },
            ],
            flags: 3,
        }
    }

    #[test]
    fn roundtrip_and_corruption() {
        let bytes = encode(&sample());
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.flags, 3);
        assert_eq!(back.insns.len(), 3);
        assert_eq!(
            (back.insns[0].code, back.insns[0].jf, back.insns[0].k),
            (0x15, 1, 7)
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "truncated at {cut}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(decode(&bad).is_none(), "flipped byte {at}");
        }
    }

    #[test]
    fn rejects_jump_out_of_program() {
        let mut c = sample();
        c.insns[0].jf = 5;
        assert!(decode(&encode(&c)).is_none());
    }
}
