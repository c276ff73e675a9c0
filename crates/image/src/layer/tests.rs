//! These tests create device nodes, chown and set trusted.* xattrs: they expect to run as root.

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::{apply, merge, Applied, LayerError};
use crate::{Compression, Digest};

/// A tar stream under construction, with helpers for each entry type.
struct Tar(tar::Builder<Vec<u8>>);

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn append(&mut self, mut h: Header, path: &str, data: &[u8]) -> &mut Self {
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.append(header(EntryType::Directory, mode, 0), path, b"")
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.append(
            header(EntryType::Regular, mode, data.len() as u64),
            path,
            data,
        )
    }

    fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Self {
        let mut h = header(kind, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    /// Writes the name bytes straight into the header, past tar::Builder's own checks.
    fn raw(&mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> &mut Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn pax(&mut self, exts: &[(&str, &[u8])]) -> &mut Self {
        self.0.append_pax_extensions(exts.iter().copied()).unwrap();
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

fn apply_tar(tar: &[u8], dest: &Path) -> Result<Applied, LayerError> {
    apply(Cursor::new(tar), Compression::None, dest)
}

fn lmeta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    rustix::fs::lgetxattr(p, name, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

fn is_whiteout(p: &Path) -> bool {
    let m = lmeta(p);
    m.file_type().is_char_device() && m.rdev() == 0 && m.mode() & 0o7777 == 0
}

fn refused(r: Result<Applied, LayerError>, entry: &str, reason: &str) {
    match r {
        Err(e @ LayerError::Refused { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("{entry:?}")), "{msg}");
            assert!(msg.contains(reason), "{msg}");
        }
        other => panic!("expected a refusal of {entry:?} ({reason}), got {other:?}"),
    }
}

/// A valid VFS_CAP_REVISION_2 blob granting CAP_NET_BIND_SERVICE, effective.
const CAP_NET_BIND: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

#[test]
fn entry_types_and_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut t = Tar::new();
    // "./" stands for the layer root itself.
    let mut h = header(EntryType::Directory, 0o751, 0);
    h.as_gnu_mut().unwrap().name[..2].copy_from_slice(b"./");
    h.set_mtime(1_234_567_890);
    h.set_cksum();
    t.0.append(&h, &b""[..]).unwrap();
    let mut h = header(EntryType::Directory, 0o2750, 0);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1_500_000_000);
    t.append(h, "./srv/", b"");
    t.pax(&[
        ("SCHILY.xattr.security.capability", &CAP_NET_BIND),
        ("SCHILY.xattr.user.note", b"hello"),
        ("mtime", b"1700000000.25"),
    ]);
    let mut h = header(EntryType::Regular, 0o4755, 5);
    h.set_uid(1002);
    h.set_gid(1003);
    t.append(h, "./srv/bin/tool", b"#!abc");
    let mut h = header(EntryType::Symlink, 0o777, 0);
    h.set_uid(7);
    h.set_gid(8);
    h.set_mtime(1_400_000_000);
    t.0.append_link(&mut h, "srv/link", "/nowhere/at/all")
        .unwrap();
    let mut h = header(EntryType::Char, 0o620, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    t.append(h, "dev/null", b"");
    let mut h = header(EntryType::Block, 0o660, 0);
    h.set_device_major(7).unwrap();
    h.set_device_minor(2).unwrap();
    t.append(h, "dev/loop2", b"");
    t.append(header(EntryType::Fifo, 0o1640, 0), "dev/fifo", b"");
    t.link(EntryType::Link, "srv/hard", "srv/bin/tool");
    let long = format!("deep/{}/file", "x".repeat(150));
    t.file(&long, 0o600, b"long name");
    let tar = t.finish();

    let applied = apply_tar(&tar, d).unwrap();
    assert_eq!(applied.diff_id, Digest::sha256_of(&tar));
    assert_eq!(applied.size, tar.len() as u64);

    let m = lmeta(d);
    assert_eq!((m.mode() & 0o7777, m.mtime()), (0o751, 1_234_567_890));
    let m = lmeta(&d.join("srv"));
    assert!(m.is_dir());
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o2750, 1000, 1001));
    // Set last, after children were created in it.
    assert_eq!(m.mtime(), 1_500_000_000);

    let m = lmeta(&d.join("srv/bin/tool"));
    assert!(m.is_file());
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4755, 1002, 1003));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
    assert_eq!(fs::read(d.join("srv/bin/tool")).unwrap(), b"#!abc");
    assert_eq!(
        xattr(&d.join("srv/bin/tool"), "security.capability").unwrap(),
        CAP_NET_BIND
    );
    assert_eq!(
        xattr(&d.join("srv/bin/tool"), "user.note").unwrap(),
        b"hello"
    );
    // A missing parent is made 0755 root.
    let m = lmeta(&d.join("srv/bin"));
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0));

    let m = lmeta(&d.join("srv/link"));
    assert!(m.file_type().is_symlink());
    assert_eq!((m.uid(), m.gid(), m.mtime()), (7, 8, 1_400_000_000));
    assert_eq!(
        fs::read_link(d.join("srv/link")).unwrap(),
        Path::new("/nowhere/at/all")
    );

    let m = lmeta(&d.join("dev/null"));
    assert!(m.file_type().is_char_device());
    assert_eq!(
        (m.rdev(), m.mode() & 0o7777),
        (rustix::fs::makedev(1, 3), 0o620)
    );
    let m = lmeta(&d.join("dev/loop2"));
    assert!(m.file_type().is_block_device());
    assert_eq!(
        (m.rdev(), m.mode() & 0o7777),
        (rustix::fs::makedev(7, 2), 0o660)
    );
    let m = lmeta(&d.join("dev/fifo"));
    assert!(m.file_type().is_fifo());
    assert_eq!(m.mode() & 0o7777, 0o1640);

    let a = lmeta(&d.join("srv/bin/tool"));
    let b = lmeta(&d.join("srv/hard"));
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(fs::read(d.join(&long)).unwrap(), b"long name");
}

#[test]
fn later_entries_replace_earlier_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let tar = Tar::new()
        .file("a", 0o644, b"first")
        .file("a", 0o600, b"second")
        .dir("d", 0o755)
        .file("d/child", 0o644, b"x")
        .file("d", 0o644, b"now a file")
        .file("f", 0o644, b"soon a dir")
        .dir("f", 0o700)
        .dir("keep", 0o755)
        .file("keep/inside", 0o644, b"stays")
        .dir("keep", 0o711)
        .link(EntryType::Symlink, "s", "a")
        .file("s", 0o644, b"not a link")
        .finish();
    apply_tar(&tar, d).unwrap();
    assert_eq!(fs::read(d.join("a")).unwrap(), b"second");
    assert_eq!(lmeta(&d.join("a")).mode() & 0o7777, 0o600);
    assert_eq!(fs::read(d.join("d")).unwrap(), b"now a file");
    assert!(lmeta(&d.join("f")).is_dir());
    assert_eq!(lmeta(&d.join("f")).mode() & 0o7777, 0o700);
    assert_eq!(lmeta(&d.join("keep")).mode() & 0o7777, 0o711);
    assert_eq!(fs::read(d.join("keep/inside")).unwrap(), b"stays");
    assert!(lmeta(&d.join("s")).is_file());
    assert_eq!(fs::read(d.join("a")).unwrap(), b"second");
}

#[test]
fn whiteouts_and_opaque_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut t = Tar::new();
    t.dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root")
        .file("etc/.wh.passwd", 0o644, b"")
        .file("etc/.wh.shadow", 0o644, b"")
        .dir("var", 0o755)
        .file("var/.wh..wh..opq", 0o644, b"")
        .file("var/new", 0o644, b"n")
        .file("lib/.wh..wh..opq", 0o644, b"")
        .file(".wh..wh.plnk", 0o644, b"")
        .file(".wh.gone", 0o644, b"");
    let mut h = header(EntryType::Regular, 0o644, 0);
    h.set_uid(5);
    h.set_gid(6);
    t.append(h, "etc/.wh.group", b"");
    let tar = t.finish();
    apply_tar(&tar, d).unwrap();
    assert!(is_whiteout(&d.join("etc/passwd")));
    assert!(is_whiteout(&d.join("etc/shadow")));
    assert!(is_whiteout(&d.join("gone")));
    let g = lmeta(&d.join("etc/group"));
    assert_eq!((g.uid(), g.gid()), (5, 6));
    assert!(is_whiteout(&d.join("etc/group")));
    assert!(!d.join("etc/.wh.passwd").exists());
    assert_eq!(
        xattr(&d.join("var"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert_eq!(
        xattr(&d.join("lib"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert!(xattr(&d.join("etc"), "trusted.overlay.opaque").is_none());
    assert_eq!(fs::read(d.join("var/new")).unwrap(), b"n");
    assert!(fs::symlink_metadata(d.join(".wh..wh.plnk")).is_err());
    assert!(fs::symlink_metadata(d.join("plnk")).is_err());
}

fn sample_tar() -> Vec<u8> {
    Tar::new()
        .dir("a", 0o755)
        .file("a/b", 0o644, &vec![7u8; 300_000])
        .file("a/c", 0o644, b"c")
        .finish()
}

#[test]
fn gzip_and_zstd_diff_ids() {
    let tar = sample_tar();
    let want = Digest::sha256_of(&tar);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let got = apply(Cursor::new(&gz), Compression::Gzip, tmp.path()).unwrap();
    assert_eq!((got.diff_id, got.size), (want.clone(), tar.len() as u64));
    assert_eq!(fs::read(tmp.path().join("a/c")).unwrap(), b"c");

    // Two gzip members, split mid-stream: still one layer.
    let (x, y) = tar.split_at(1000);
    let mut two = Vec::new();
    for part in [x, y] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(part).unwrap();
        two.extend(e.finish().unwrap());
    }
    let tmp = tempfile::tempdir().unwrap();
    let got = apply(Cursor::new(&two), Compression::Gzip, tmp.path()).unwrap();
    assert_eq!(got.diff_id, want);

    let zs = zstd::encode_all(Cursor::new(&tar), 3).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let got = apply(Cursor::new(&zs), Compression::Zstd, tmp.path()).unwrap();
    assert_eq!((got.diff_id, got.size), (want, tar.len() as u64));
    assert_eq!(fs::read(tmp.path().join("a/b")).unwrap().len(), 300_000);
}

#[test]
fn trailing_zero_blocks_count_in_the_diff_id() {
    let mut tar = sample_tar();
    tar.extend(vec![0u8; 10 * 512]);
    let tmp = tempfile::tempdir().unwrap();
    let got = apply_tar(&tar, tmp.path()).unwrap();
    assert_eq!(
        (got.diff_id, got.size),
        (Digest::sha256_of(&tar), tar.len() as u64)
    );
}

#[test]
fn a_stream_ending_right_after_the_last_data_is_accepted_a_cut_elsewhere_is_not() {
    let full = Tar::new()
        .dir("a", 0o755)
        .file("a/c", 0o644, b"abc")
        .finish();
    // dir header (512) + file header (512) + 3 data bytes: what umoci 0.4 writes, no padding, no trailer.
    let cut = &full[..1024 + 3];
    let tmp = tempfile::tempdir().unwrap();
    let got = apply_tar(cut, tmp.path()).unwrap();
    assert_eq!(got.diff_id, Digest::sha256_of(cut));
    assert_eq!(fs::read(tmp.path().join("a/c")).unwrap(), b"abc");
    // Cut inside the file's data: an error, not a short file.
    let tmp = tempfile::tempdir().unwrap();
    assert!(apply_tar(&full[..1024 + 2], tmp.path()).is_err());
    // Cut inside the padding: an error too.
    let tmp = tempfile::tempdir().unwrap();
    assert!(apply_tar(&full[..1024 + 100], tmp.path()).is_err());
}

#[test]
fn truncated_gzip_is_an_error() {
    let tar = sample_tar();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    for cut in [gz.len() - 4, gz.len() - 9, gz.len() / 2, 20] {
        let tmp = tempfile::tempdir().unwrap();
        let r = apply(Cursor::new(&gz[..cut]), Compression::Gzip, tmp.path());
        assert!(r.is_err(), "cut at {cut} of {}: {r:?}", gz.len());
    }
    // Garbage after the last member is not silently ignored either.
    let mut extra = gz.clone();
    extra.extend_from_slice(b"garbage");
    let tmp = tempfile::tempdir().unwrap();
    assert!(apply(Cursor::new(&extra), Compression::Gzip, tmp.path()).is_err());
}

#[test]
fn corrupt_zstd_is_an_error() {
    let tar = sample_tar();
    let zs = zstd::encode_all(Cursor::new(&tar), 3).unwrap();
    let mut bad = zs.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 8] {
        *b ^= 0x5a;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = apply(Cursor::new(&bad), Compression::Zstd, tmp.path());
    assert!(r.is_err(), "{r:?}");
    let tmp = tempfile::tempdir().unwrap();
    let r = apply(
        Cursor::new(&zs[..zs.len() - 3]),
        Compression::Zstd,
        tmp.path(),
    );
    let msg = r.expect_err("truncated zstd").to_string();
    assert!(msg.contains("incomplete frame"), "{msg}");
}

#[test]
fn refuses_escaping_names() {
    for name in ["../../etc/x", "/etc/x", "a/../../x", "./../x"] {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let tar = Tar::new()
            .raw(EntryType::Regular, name.as_bytes(), b"", b"pwned")
            .finish();
        refused(apply_tar(&tar, &dest), name, "path escapes the layer root");
        assert_eq!(fs::read_dir(&dest).unwrap().count(), 0, "{name}");
        assert!(!tmp.path().join("x").exists());
    }
}

#[test]
fn refuses_writing_through_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let dest = tmp.path().join("dest");
    fs::create_dir(&outside).unwrap();
    fs::create_dir(&dest).unwrap();
    let target = outside.to_str().unwrap();

    // Absolute and relative symlinks out, then a file, a directory and a hardlink through them.
    let cases: Vec<(Vec<u8>, EntryType, &str)> = vec![
        (
            Tar::new()
                .link(EntryType::Symlink, "evil", target)
                .file("evil/x", 0o644, b"pwned")
                .finish(),
            EntryType::Regular,
            "evil/x",
        ),
        (
            Tar::new()
                .link(EntryType::Symlink, "evil", "../outside")
                .dir("evil/sub", 0o755)
                .finish(),
            EntryType::Directory,
            "evil/sub",
        ),
        (
            Tar::new()
                .dir("a", 0o755)
                .link(EntryType::Symlink, "a/up", "../..")
                .file("a/up/outside/x", 0o644, b"pwned")
                .finish(),
            EntryType::Regular,
            "a/up/outside/x",
        ),
        (
            Tar::new()
                .file("f", 0o644, b"data")
                .link(EntryType::Symlink, "evil", target)
                .link(EntryType::Link, "evil/x", "f")
                .finish(),
            EntryType::Link,
            "evil/x",
        ),
    ];
    for (tar, _, entry) in cases {
        fs::remove_dir_all(&dest).unwrap();
        fs::create_dir(&dest).unwrap();
        refused(apply_tar(&tar, &dest), entry, "is a symlink");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{entry}");
    }
}

#[test]
fn refuses_bad_hardlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::write(&outside, b"secret").unwrap();
    let dest = tmp.path().join("dest");

    fs::create_dir(&dest).unwrap();
    let tar = Tar::new()
        .raw(EntryType::Link, b"steal", b"../outside", b"")
        .finish();
    refused(
        apply_tar(&tar, &dest),
        "steal",
        "path escapes the layer root",
    );

    fs::remove_dir_all(&dest).unwrap();
    fs::create_dir(&dest).unwrap();
    let tar = Tar::new()
        .raw(EntryType::Link, b"steal", b"/etc/passwd", b"")
        .finish();
    refused(
        apply_tar(&tar, &dest),
        "steal",
        "path escapes the layer root",
    );

    fs::remove_dir_all(&dest).unwrap();
    fs::create_dir(&dest).unwrap();
    let tar = Tar::new().link(EntryType::Link, "l", "missing").finish();
    refused(apply_tar(&tar, &dest), "l", "does not exist in this layer");

    fs::remove_dir_all(&dest).unwrap();
    fs::create_dir(&dest).unwrap();
    let tar = Tar::new()
        .link(EntryType::Link, "l", "no/such/dir")
        .finish();
    refused(apply_tar(&tar, &dest), "l", "does not exist in this layer");

    // A hardlink whose target path goes through a symlink planted by the layer.
    fs::remove_dir_all(&dest).unwrap();
    fs::create_dir(&dest).unwrap();
    let tar = Tar::new()
        .link(EntryType::Symlink, "up", tmp.path().to_str().unwrap())
        .link(EntryType::Link, "l", "up/outside")
        .finish();
    refused(apply_tar(&tar, &dest), "l", "is a symlink");
    assert_eq!(lmeta(&outside).nlink(), 1);
}

#[test]
fn refuses_unsupported_entry_types() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = Tar::new()
        .raw(EntryType::new(b'V'), b"volume-label", b"", b"")
        .finish();
    refused(
        apply_tar(&tar, tmp.path()),
        "volume-label",
        "unsupported entry type",
    );
}

#[test]
fn merge_two_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let (l1, l2, root) = (
        tmp.path().join("l1"),
        tmp.path().join("l2"),
        tmp.path().join("root"),
    );
    for d in [&l1, &l2, &root] {
        fs::create_dir(d).unwrap();
    }
    let mut t = Tar::new();
    t.dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0")
        .file("etc/hosts", 0o644, b"localhost")
        .dir("var", 0o755)
        .dir("var/cache", 0o755)
        .file("var/cache/old", 0o644, b"old")
        .file("var/keep", 0o644, b"keep")
        .link(EntryType::Symlink, "bin", "usr/bin")
        .file("usr/bin/sh", 0o755, b"sh")
        .link(EntryType::Link, "usr/bin/bash", "usr/bin/sh")
        .file("gone", 0o644, b"gone");
    let mut h = header(EntryType::Char, 0o666, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    t.append(h, "dev/null", b"");
    let tar1 = t.finish();

    let mut t = Tar::new();
    t.dir("etc", 0o750)
        .file("etc/.wh.hosts", 0o644, b"")
        .file("etc/passwd", 0o600, b"root:x:0:0\nu:x:1:1")
        .dir("var/cache", 0o700)
        .file("var/cache/.wh..wh..opq", 0o644, b"")
        .file("var/cache/new", 0o644, b"new")
        .file(".wh.gone", 0o644, b"")
        .file(".wh.bin", 0o644, b"")
        .dir("bin", 0o755)
        .file("bin/ls", 0o755, b"ls")
        .file("usr/bin/tool", 0o755, b"t")
        .link(EntryType::Link, "usr/bin/tool2", "usr/bin/tool");
    t.pax(&[("SCHILY.xattr.security.capability", &CAP_NET_BIND)]);
    let mut h = header(EntryType::Regular, 0o4711, 4);
    h.set_uid(3);
    h.set_gid(4);
    t.append(h, "usr/bin/ping", b"ping");
    let tar2 = t.finish();

    apply_tar(&tar1, &l1).unwrap();
    apply_tar(&tar2, &l2).unwrap();
    merge(&l1, &root).unwrap();
    merge(&l2, &root).unwrap();

    let mut found = Vec::new();
    walk(&root, &root, &mut found);
    found.sort();
    let want = [
        "bin/",
        "bin/ls",
        "dev/",
        "dev/null",
        "etc/",
        "etc/passwd",
        "usr/",
        "usr/bin/",
        "usr/bin/bash",
        "usr/bin/ping",
        "usr/bin/sh",
        "usr/bin/tool",
        "usr/bin/tool2",
        "var/",
        "var/cache/",
        "var/cache/new",
        "var/keep",
    ];
    assert_eq!(found, want);
    assert_eq!(
        fs::read(root.join("etc/passwd")).unwrap(),
        b"root:x:0:0\nu:x:1:1"
    );
    assert_eq!(lmeta(&root.join("etc/passwd")).mode() & 0o7777, 0o600);
    assert_eq!(lmeta(&root.join("etc")).mode() & 0o7777, 0o750);
    assert_eq!(lmeta(&root.join("var/cache")).mode() & 0o7777, 0o700);
    assert!(xattr(&root.join("var/cache"), "trusted.overlay.opaque").is_none());
    let (sh, bash) = (
        lmeta(&root.join("usr/bin/sh")),
        lmeta(&root.join("usr/bin/bash")),
    );
    assert_eq!((sh.ino(), sh.nlink()), (bash.ino(), 2));
    let (t1, t2) = (
        lmeta(&root.join("usr/bin/tool")),
        lmeta(&root.join("usr/bin/tool2")),
    );
    assert_eq!(t1.ino(), t2.ino());
    let ping = lmeta(&root.join("usr/bin/ping"));
    assert_eq!(
        (ping.mode() & 0o7777, ping.uid(), ping.gid()),
        (0o4711, 3, 4)
    );
    assert_eq!(ping.mtime(), 1_600_000_000);
    assert_eq!(
        xattr(&root.join("usr/bin/ping"), "security.capability").unwrap(),
        CAP_NET_BIND
    );
    let null = lmeta(&root.join("dev/null"));
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert!(lmeta(&root.join("bin")).is_dir());
    assert_eq!(lmeta(&root.join("var/cache")).mtime(), 1_600_000_000);
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
        if lmeta(&p).is_dir() {
            out.push(format!("{rel}/"));
            walk(root, &p, out);
        } else {
            out.push(rel);
        }
    }
}

#[test]
fn merge_never_follows_symlinks_in_dest() {
    let tmp = tempfile::tempdir().unwrap();
    let (layer, root, outside) = (
        tmp.path().join("layer"),
        tmp.path().join("root"),
        tmp.path().join("outside"),
    );
    for d in [&layer, &root, &outside] {
        fs::create_dir(d).unwrap();
    }
    std::os::unix::fs::symlink(&outside, root.join("etc")).unwrap();
    let tar = Tar::new()
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"x")
        .finish();
    apply_tar(&tar, &layer).unwrap();
    merge(&layer, &root).unwrap();
    assert!(lmeta(&root.join("etc")).is_dir());
    assert_eq!(fs::read(root.join("etc/passwd")).unwrap(), b"x");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(
        fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

/// Throughput check against `tar -x`: BERTH_LAYER_BENCH_TAR=/tmp/usr.tar BERTH_LAYER_BENCH_DEST=/tmp/x
/// cargo test --release -p berth-image --lib layer::tests::bench -- --ignored --nocapture
#[test]
#[ignore]
fn bench_apply() {
    let tar = std::env::var("BERTH_LAYER_BENCH_TAR").unwrap();
    let dest = std::env::var("BERTH_LAYER_BENCH_DEST").unwrap();
    let start = std::time::Instant::now();
    let f = fs::File::open(&tar).unwrap();
    let got = apply(f, Compression::None, Path::new(&dest)).unwrap();
    eprintln!(
        "apply: {} bytes in {:?} ({})",
        got.size,
        start.elapsed(),
        got.diff_id
    );
}
