//! docker cp's rules and the containment of container paths, on plain directories standing in for a rootfs
//! and a volume (no container, no root needed).

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::json;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    rootfs: PathBuf,
    volume: PathBuf,
    ro: PathBuf,
    host: PathBuf,
    tree: Tree,
}

/// rootfs/ with etc/passwd and escaping symlinks; a volume at /data, a read-only bind at /ro, a mounted
/// file at /etc/hosts; host/ for the other side.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let volume = dir.path().join("volume");
    let ro = dir.path().join("ro");
    let host = dir.path().join("host");
    for d in [&rootfs, &volume, &ro, &host] {
        fs::create_dir_all(d).unwrap();
    }
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::create_dir_all(rootfs.join("data")).unwrap();
    fs::create_dir_all(rootfs.join("ro")).unwrap();
    fs::create_dir_all(rootfs.join("tmp")).unwrap();
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    symlink("/etc", rootfs.join("etclink")).unwrap();
    symlink("../../../../../../", rootfs.join("up")).unwrap();
    symlink("/data", rootfs.join("datalink")).unwrap();
    fs::write(volume.join("in-volume"), "v").unwrap();
    let hosts = dir.path().join("hosts");
    fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let config = json!({
        "root": {"path": rootfs, "readonly": false},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": volume, "options": ["rbind"]},
            {"destination": "/ro", "type": "bind", "source": ro, "options": ["rbind", "ro"]},
            {"destination": "/etc/hosts", "type": "bind", "source": hosts, "options": ["rbind"]},
        ]
    });
    let tree = Tree::container(&config, &rootfs).unwrap();
    Fixture {
        _dir: dir,
        rootfs,
        volume,
        ro,
        host,
        tree,
    }
}

fn to_container(f: &Fixture, src: &Path, dst: &str) -> Result<u64, CopyError> {
    copy_to_container(
        &f.tree,
        "c",
        Some(src.to_str().unwrap()),
        io::empty(),
        dst,
        Path::new("/"),
        CopyOptions::default(),
    )
}

fn from_container(f: &Fixture, src: &str, dst: &Path) -> Result<u64, CopyError> {
    copy_from_container(
        &f.tree,
        "c",
        src,
        Some(dst.to_str().unwrap()),
        io::sink(),
        Path::new("/"),
        CopyOptions::default(),
    )
}

#[test]
fn paths_parse_as_docker_cleans_them() {
    let p = CPath::parse(OsStr::new("a/b/../c/"), Path::new("/"));
    assert_eq!(p.clean, Path::new("/a/c"));
    assert!(p.trailing_slash && !p.trailing_dot);
    let p = CPath::parse(OsStr::new("/x/."), Path::new("/"));
    assert_eq!(p.clean, Path::new("/x"));
    assert!(p.trailing_dot && p.asserts_dir());
    assert_eq!(p.to_string(), "/x/.");
    let p = CPath::parse(OsStr::new("../../.."), Path::new("/a"));
    assert_eq!(p.clean, Path::new("/"));
    let p = CPath::parse(OsStr::new("f"), Path::new("/work"));
    assert_eq!(p.clean, Path::new("/work/f"));
}

#[test]
fn tar_names_may_not_leave_the_destination() {
    assert_eq!(entry_path(b"./a/b/").unwrap(), Path::new("a/b"));
    assert_eq!(entry_path(b"/abs/x").unwrap(), Path::new("abs/x"));
    assert_eq!(entry_path(b".").unwrap(), Path::new(""));
    assert!(entry_path(b"a/../../x").is_err());
}

#[test]
fn errors_read_like_go() {
    let e = CopyError::Io {
        what: "lstat",
        path: "/x".into(),
        source: Errno::NOENT.into(),
    };
    assert_eq!(e.to_string(), "lstat /x: no such file or directory");
}

#[test]
fn file_and_directory_rules() {
    let f = fixture();
    let src = f.host.join("hello.txt");
    fs::write(&src, "hi").unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
    // A file into an existing directory keeps its name and mode.
    to_container(&f, &src, "/etc").unwrap();
    let m = fs::metadata(f.rootfs.join("etc/hello.txt")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    // To a new name; over an existing file.
    to_container(&f, &src, "/renamed").unwrap();
    assert_eq!(fs::read_to_string(f.rootfs.join("renamed")).unwrap(), "hi");
    fs::write(&src, "again").unwrap();
    to_container(&f, &src, "/renamed").unwrap();
    assert_eq!(
        fs::read_to_string(f.rootfs.join("renamed")).unwrap(),
        "again"
    );
    // A new name that says "directory" for a file.
    let e = to_container(&f, &src, "/newdir/").unwrap_err();
    assert!(e.to_string().contains("no such directory"), "{e}");
    // Parent missing.
    let e = to_container(&f, &src, "/no/such/file").unwrap_err();
    assert!(e.to_string().contains("no such file or directory"), "{e}");

    // Directories: into an existing one, as a new one, contents only with "/.".
    let d = f.host.join("tree");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("sub/a"), "a").unwrap();
    symlink("sub/a", d.join("link")).unwrap();
    fs::hard_link(d.join("sub/a"), d.join("hard")).unwrap();
    fs::set_permissions(d.join("sub"), fs::Permissions::from_mode(0o711)).unwrap();
    to_container(&f, &d, "/etc").unwrap();
    assert_eq!(
        fs::read_to_string(f.rootfs.join("etc/tree/sub/a")).unwrap(),
        "a"
    );
    assert_eq!(
        fs::read_link(f.rootfs.join("etc/tree/link")).unwrap(),
        Path::new("sub/a")
    );
    assert_eq!(
        fs::metadata(f.rootfs.join("etc/tree/hard")).unwrap().ino(),
        fs::metadata(f.rootfs.join("etc/tree/sub/a")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(f.rootfs.join("etc/tree/sub")).unwrap().mode() & 0o7777,
        0o711
    );
    to_container(&f, &d, "/fresh").unwrap();
    assert!(f.rootfs.join("fresh/sub/a").is_file());
    let mut contents = d.clone().into_os_string();
    contents.push("/.");
    to_container(&f, Path::new(&contents), "/etc").unwrap();
    assert!(f.rootfs.join("etc/sub/a").is_file());
    // A directory over a file.
    let e = to_container(&f, &d, "/renamed").unwrap_err();
    assert!(e.to_string().contains("cannot copy a directory"), "{e}");
}

#[test]
fn container_symlinks_resolve_inside_the_container() {
    let f = fixture();
    let src = f.host.join("passwd");
    fs::write(&src, "evil:x:0:0::/:/bin/sh\n").unwrap();
    // /etclink -> /etc: the container's /etc, not the host's.
    to_container(&f, &src, "/etclink/").unwrap();
    assert_eq!(
        fs::read_to_string(f.rootfs.join("etc/passwd")).unwrap(),
        "evil:x:0:0::/:/bin/sh\n"
    );
    // /up -> ../../../../../../: the container's root.
    to_container(&f, &src, "/up/escaped").unwrap();
    assert!(f.rootfs.join("escaped").is_file());
    to_container(&f, &src, "/up/etc/x").unwrap();
    assert!(f.rootfs.join("etc/x").is_file());
    // A destination that is itself a symlink to an absolute host-looking path.
    symlink("/etc/shadow-like", f.rootfs.join("target-link")).unwrap();
    to_container(&f, &src, "/target-link").unwrap();
    assert!(f.rootfs.join("etc/shadow-like").is_file());
    // Reading through them stays inside as well.
    let out = f.host.join("out");
    from_container(&f, "/up/etc/passwd", &out).unwrap();
    assert_eq!(fs::read_to_string(&out).unwrap(), "evil:x:0:0::/:/bin/sh\n");
    // A tar whose entries use a symlink to get out lands inside too.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "out", "../../../../tmp").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "out/planted", &b"x"[..]).unwrap();
    let data = b.into_inner().unwrap();
    copy_to_container(
        &f.tree,
        "c",
        None,
        &data[..],
        "/",
        Path::new("/"),
        CopyOptions::default(),
    )
    .unwrap();
    assert!(f.rootfs.join("tmp/planted").is_file());
    assert!(!Path::new("/tmp/planted").exists());
}

#[test]
fn mounts_map_to_their_sources() {
    let f = fixture();
    let src = f.host.join("v.txt");
    fs::write(&src, "vol").unwrap();
    to_container(&f, &src, "/data/").unwrap();
    assert!(f.volume.join("v.txt").is_file());
    assert!(!f.rootfs.join("data/v.txt").exists());
    // Through a symlink to the mount's destination.
    to_container(&f, &src, "/datalink/w.txt").unwrap();
    assert!(f.volume.join("w.txt").is_file());
    // Reading the directory that holds the mount point reads the mount.
    let out = f.host.join("root-copy");
    from_container(&f, "/data", &out).unwrap();
    assert!(out.join("in-volume").is_file());
    // A mounted file.
    let out = f.host.join("hosts");
    from_container(&f, "/etc/hosts", &out).unwrap();
    assert_eq!(fs::read_to_string(&out).unwrap(), "127.0.0.1 localhost\n");
    // Read-only mounts refuse writes.
    let e = to_container(&f, &src, "/ro/").unwrap_err();
    assert_eq!(e.to_string(), "mounted volume is marked read-only");
    assert!(fs::read_dir(&f.ro).unwrap().next().is_none());
}

#[test]
fn missing_sources_and_streams() {
    let f = fixture();
    let e = from_container(&f, "/nope", &f.host.join("x")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Could not find the file /nope in container c"
    );
    assert!(e.from_container());
    let e = from_container(&f, "/etc/passwd/", &f.host.join("x")).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
    let e = to_container(&f, Path::new("/nonexistent-host-file"), "/").unwrap_err();
    assert_eq!(
        e.to_string(),
        "lstat /nonexistent-host-file: no such file or directory"
    );
    assert!(!e.from_container());
    // A tar of a directory on "stdout", named after it.
    let mut out = Vec::new();
    copy_from_container(
        &f.tree,
        "c",
        "/etc",
        None,
        &mut out,
        Path::new("/"),
        CopyOptions::default(),
    )
    .unwrap();
    let mut names: Vec<String> = tar::Archive::new(&out[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert!(names.contains(&"etc".to_string()) || names.contains(&"etc/".to_string()));
    assert!(names.contains(&"etc/passwd".to_string()), "{names:?}");
    assert!(names.contains(&"etc/hosts".to_string()), "{names:?}");
    // A stream may only go into a directory.
    let e = copy_to_container(
        &f.tree,
        "c",
        None,
        &out[..],
        "/etc/passwd",
        Path::new("/"),
        CopyOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("must be a directory"), "{e}");
    // -L copies the target under the link's name.
    let opts = CopyOptions {
        follow_link: true,
        archive: false,
    };
    let dst = f.host.join("followed");
    fs::create_dir(&dst).unwrap();
    copy_from_container(
        &f.tree,
        "c",
        "/etclink",
        Some(dst.to_str().unwrap()),
        io::sink(),
        Path::new("/"),
        opts,
    )
    .unwrap();
    assert!(dst.join("etclink/passwd").is_file());
    // Without -L the link itself.
    from_container(&f, "/etclink", &dst.join("plain")).unwrap();
    assert_eq!(fs::read_link(dst.join("plain")).unwrap(), Path::new("/etc"));
}
