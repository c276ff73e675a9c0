//! `berth cp` against real containers, running and stopped: docker's file/directory rules, tar streams,
//! volumes and binds, and symlinks in the container that must not lead out of it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::*;

fn sleeper(env: &Env, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sleep", "300"]);
    env.ok(&args).trim().to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The active rootfs mounts of this store (a stopped container's must be gone after a copy).
fn rootfs_mounts(env: &Env) -> Vec<String> {
    mounts_under(&env.root().join("active"))
}

#[test]
fn cp_host_to_running_container_files_and_directories() {
    let env = Env::new();
    env.load_busybox();
    let id = sleeper(&env, &["--name", "cp1"]);
    let host = tempfile::tempdir().unwrap();
    let f = host.path().join("hello.txt");
    std::fs::write(&f, "hello\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    // Into a directory: its name, its mode, owned by root without -a.
    env.ok(&["cp", p(&f), "cp1:/tmp"]);
    let out = env.ok(&["exec", "cp1", "stat", "-c", "%a %u %g", "/tmp/hello.txt"]);
    assert_eq!(out, "640 0 0\n");
    assert_eq!(env.ok(&["exec", "cp1", "cat", "/tmp/hello.txt"]), "hello\n");
    // -a keeps uid and gid; a new name; `container cp`.
    env.ok(&[
        "container",
        "cp",
        "-a",
        p(&f),
        &format!("{id}:/tmp/renamed"),
    ]);
    let out = env.ok(&["exec", "cp1", "stat", "-c", "%a %u %g", "/tmp/renamed"]);
    assert_eq!(out, "640 1234 5678\n");
    // A directory: into an existing one, as a new one, and its contents with "/.".
    let d = host.path().join("tree");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/a"), "a\n").unwrap();
    std::fs::set_permissions(d.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    env.ok(&["cp", p(&d), "cp1:/tmp"]);
    assert_eq!(env.ok(&["exec", "cp1", "cat", "/tmp/tree/sub/a"]), "a\n");
    assert_eq!(
        env.ok(&["exec", "cp1", "stat", "-c", "%a", "/tmp/tree/sub"]),
        "750\n"
    );
    env.ok(&["cp", p(&d), "cp1:/newdir"]);
    assert_eq!(env.ok(&["exec", "cp1", "cat", "/newdir/sub/a"]), "a\n");
    env.ok(&["cp", &format!("{}/.", p(&d)), "cp1:/root"]);
    assert_eq!(env.ok(&["exec", "cp1", "cat", "/root/sub/a"]), "a\n");
    // docker's errors: a directory over a file, a file into a directory that is not there.
    let e = env.fails(&["cp", p(&d), "cp1:/tmp/hello.txt"]);
    assert!(e.contains("cannot copy a directory"), "{e}");
    let e = env.fails(&["cp", p(&f), "cp1:/no/such/dir/"]);
    assert!(e.starts_with("Error response from daemon: "), "{e}");
}

#[test]
fn cp_container_to_host_and_tar_streams() {
    let env = Env::new();
    env.load_busybox();
    sleeper(&env, &["--name", "cp2"]);
    env.ok(&[
        "exec",
        "cp2",
        "sh",
        "-c",
        "mkdir -p /data/d && echo one > /data/d/one && echo top > /data/f && chmod 600 /data/f",
    ]);
    let host = tempfile::tempdir().unwrap();
    // A file to a new name, into a directory, over a file.
    let to = host.path().join("copy");
    env.ok(&["cp", "cp2:/data/f", p(&to)]);
    assert_eq!(std::fs::read_to_string(&to).unwrap(), "top\n");
    assert_eq!(std::fs::metadata(&to).unwrap().mode() & 0o7777, 0o600);
    env.ok(&["cp", "cp2:/data/f", p(host.path())]);
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).unwrap(),
        "top\n"
    );
    // A directory: as a new one, into an existing one, its contents with "/.".
    env.ok(&["cp", "cp2:/data", p(&host.path().join("new"))]);
    assert_eq!(
        std::fs::read_to_string(host.path().join("new/d/one")).unwrap(),
        "one\n"
    );
    env.ok(&["cp", "cp2:/data", p(&host.path().join("new"))]);
    assert!(host.path().join("new/data/d/one").is_file());
    let contents = host.path().join("contents");
    std::fs::create_dir(&contents).unwrap();
    env.ok(&["cp", "cp2:/data/.", p(&contents)]);
    assert!(contents.join("d/one").is_file() && contents.join("f").is_file());
    // A relative host destination is relative to the working directory.
    let o = output_via_files(
        env.cmd()
            .current_dir(host.path())
            .args(["cp", "cp2:/data/f", "rel"]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(host.path().join("rel").is_file());
    // A directory over a file, a destination whose parent is missing.
    let e = env.fails(&["cp", "cp2:/data", p(&to)]);
    assert!(e.contains("cannot copy a directory"), "{e}");
    let e = env.fails(&["cp", "cp2:/data/f", p(&host.path().join("missing/x"))]);
    assert!(e.contains("no such file or directory"), "{e}");

    // stdout: a tar named after the source.
    let o = env.run(&["cp", "cp2:/data", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let tarball = host.path().join("out.tar");
    std::fs::write(&tarball, &o.stdout).unwrap();
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&tarball)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout).into_owned();
    for want in ["data/", "data/d/", "data/d/one", "data/f"] {
        assert!(names.lines().any(|l| l == want), "{want} in {names}");
    }
    // stdin: a tar unpacked into a directory of the container.
    let src = host.path().join("in");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("from-stdin"), "streamed\n").unwrap();
    let tar_in = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .args(["-cf", "-", "from-stdin"])
        .output()
        .unwrap();
    assert!(tar_in.status.success());
    let o = output_with_input(
        env.cmd().args(["cp", "-", "cp2:/tmp"]),
        Some(&tar_in.stdout),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        env.ok(&["exec", "cp2", "cat", "/tmp/from-stdin"]),
        "streamed\n"
    );
    let o = output_with_input(
        env.cmd().args(["cp", "-", "cp2:/data/f"]),
        Some(&tar_in.stdout),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("must be a directory"), "{}", stderr(&o));
}

#[test]
fn cp_symlinks_in_the_container_stay_inside() {
    let env = Env::new();
    env.load_busybox();
    let id = sleeper(&env, &["--name", "cp3"]);
    env.ok(&[
        "exec",
        "cp3",
        "sh",
        "-c",
        "busybox ln -s /etc /etclink && busybox ln -s ../../../../../../../ /up && echo inside > /etc/secret",
    ]);
    let host = tempfile::tempdir().unwrap();
    let unique = format!("berth-cp-escape-{}", std::process::id());
    let f = host.path().join(&unique);
    std::fs::write(&f, "payload\n").unwrap();
    // Both links resolve in the container: its /etc, its root.
    env.ok(&["cp", p(&f), "cp3:/etclink/"]);
    env.ok(&["cp", p(&f), "cp3:/up/tmp/"]);
    let host_tmp = std::env::temp_dir().join(&unique);
    assert!(
        !Path::new("/etc").join(&unique).exists(),
        "wrote to the host's /etc"
    );
    assert!(!host_tmp.exists(), "wrote to the host's /tmp");
    assert_eq!(
        env.ok(&["exec", "cp3", "cat", &format!("/etc/{unique}")]),
        "payload\n"
    );
    assert_eq!(
        env.ok(&["exec", "cp3", "cat", &format!("/tmp/{unique}")]),
        "payload\n"
    );
    // Reading through them reads the container's files.
    let out = host.path().join("secret");
    env.ok(&["cp", "cp3:/up/etc/secret", p(&out)]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "inside\n");
    // Without -L a link is copied as a link; with -L its target, under the link's name.
    env.ok(&["cp", "cp3:/etclink", p(&host.path().join("link"))]);
    assert_eq!(
        std::fs::read_link(host.path().join("link")).unwrap(),
        Path::new("/etc")
    );
    env.ok(&["cp", "-L", "cp3:/etclink", p(&host.path().join("followed"))]);
    assert!(host.path().join("followed/secret").is_file());
    // The same on the stopped container (its rootfs mounted for the copy only).
    env.ok(&["stop", "-t", "0", &id]);
    env.ok(&["cp", p(&f), "cp3:/up/root/"]);
    assert!(
        !Path::new("/root").join(&unique).exists(),
        "wrote to the host's /root"
    );
    assert!(rootfs_mounts(&env).is_empty(), "{:?}", rootfs_mounts(&env));
}

#[test]
fn cp_works_on_a_stopped_container_and_unmounts_after() {
    let env = Env::new();
    env.load_busybox();
    let id = env.ok(&["create", "--name", "cp4", "busybox", "cat", "/from-host"]);
    let id = id.trim();
    assert!(rootfs_mounts(&env).is_empty());
    let host = tempfile::tempdir().unwrap();
    let f = host.path().join("from-host");
    std::fs::write(&f, "before start\n").unwrap();
    env.ok(&["cp", p(&f), "cp4:/"]);
    assert!(rootfs_mounts(&env).is_empty(), "{:?}", rootfs_mounts(&env));
    // The container sees the file when it runs.
    let o = env.run(&["start", "-a", "cp4"]);
    assert_eq!(stdout(&o), "before start\n", "{}", stderr(&o));
    // And after it exited, its files can still be read.
    let back = host.path().join("back");
    env.ok(&["cp", &format!("{id}:/from-host"), p(&back)]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "before start\n");
    assert!(rootfs_mounts(&env).is_empty(), "{:?}", rootfs_mounts(&env));
}

#[test]
fn cp_goes_through_volumes_and_binds() {
    let env = Env::new();
    env.load_busybox();
    let bind = tempfile::tempdir().unwrap();
    sleeper(
        &env,
        &[
            "--name",
            "cp5",
            "-v",
            "cpvol:/vol",
            "-v",
            &format!("{}:/bind", p(bind.path())),
        ],
    );
    let host = tempfile::tempdir().unwrap();
    let f = host.path().join("file");
    std::fs::write(&f, "x\n").unwrap();
    env.ok(&["cp", p(&f), "cp5:/bind/"]);
    assert!(bind.path().join("file").is_file());
    env.ok(&["cp", p(&f), "cp5:/vol/"]);
    assert_eq!(env.ok(&["exec", "cp5", "cat", "/vol/file"]), "x\n");
    let vol_dir = env.root().join("volumes/cpvol/_data/file");
    assert!(vol_dir.is_file(), "{}", vol_dir.display());
    // Stopped: the volume and the bind are still where the paths go.
    env.ok(&["stop", "-t", "0", "cp5"]);
    let out = host.path().join("out");
    env.ok(&["cp", "cp5:/vol/file", p(&out)]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "x\n");
    std::fs::write(bind.path().join("second"), "2\n").unwrap();
    env.ok(&["cp", "cp5:/bind/second", p(&host.path().join("second"))]);
    assert!(host.path().join("second").is_file());
    assert!(rootfs_mounts(&env).is_empty(), "{:?}", rootfs_mounts(&env));
}

#[test]
fn cp_errors() {
    let env = Env::new();
    env.load_busybox();
    sleeper(&env, &["--name", "cp6"]);
    let ro = sleeper(&env, &["--read-only"]);
    let host = tempfile::tempdir().unwrap();
    let e = env.fails(&["cp", "cp6:/x", p(host.path())]);
    assert_eq!(
        e,
        "Error response from daemon: Could not find the file /x in container cp6\n"
    );
    let e = env.fails(&["cp", "nope:/x", p(host.path())]);
    assert_eq!(e, "Error response from daemon: No such container: nope\n");
    let e = env.fails(&["cp", "/nonexistent-berth-src", "cp6:/tmp"]);
    assert_eq!(
        e,
        "Error: lstat /nonexistent-berth-src: no such file or directory\n"
    );
    let e = env.fails(&["cp", "cp6:/a", "cp6:/b"]);
    assert_eq!(e, "Error: copying between containers is not supported\n");
    let e = env.fails(&["cp", p(host.path()), "/tmp/x"]);
    assert_eq!(e, "Error: must specify at least one container source\n");
    let f = host.path().join("f");
    std::fs::write(&f, "f").unwrap();
    let e = env.fails(&["cp", p(&f), &format!("{ro}:/tmp/")]);
    assert_eq!(
        e,
        "Error response from daemon: container rootfs is marked read-only\n"
    );
    let o = env.run(&["cp", "cp6:/x"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
}
