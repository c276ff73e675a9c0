//! `berth build`'s ADD: local tar archives extracted (safely), URLs fetched with docker's mode, mtime,
//! checksum and cache rules.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;

fn write(dir: &Path, rel: &str, content: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn build(env: &Env, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    env.run(&args)
}

/// A tar with `sub/` (0750, 1000:1000), `sub/f.txt` ("hello\n", 0644, 1000:1000) and `link -> sub/f.txt`.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_mtime(1_600_000_000);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_size(0);
    b.append_data(&mut h, "sub/", &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(1_600_000_000);
    h.set_size(6);
    b.append_data(&mut h, "sub/f.txt", &b"hello\n"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(0);
    b.append_link(&mut h, "link", "sub/f.txt").unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar whose only entry is named `../../escape` (written raw: the tar crate refuses to make one).
fn evil_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(4);
    let name = b"../../escape";
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    b.into_inner().unwrap()
}

fn files_named(dir: &Path, name: &str, out: &mut Vec<String>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name() == name {
                out.push(p.display().to_string());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                files_named(&p, name, out);
            }
        }
    }
}

#[test]
fn add_extracts_local_archives() {
    let env = Env::new();
    env.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    let tar = sample_tar();
    write(c, "plain.tar", &tar);
    // Told by content, not by name.
    write(c, "packed.bin", &gzip(&tar));
    write(
        c,
        "Dockerfile",
        b"FROM busybox\n\
          ADD plain.tar /a/\n\
          ADD packed.bin /b\n\
          ADD --unpack=false plain.tar /c/\n\
          ADD --chown=7:8 plain.tar /d/\n",
    );
    let o = build(&env, c, &["-t", "added:1"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let sh = |script: &str| env.ok(&["run", "--rm", "added:1", "sh", "-c", script]);
    assert_eq!(sh("cat /a/sub/f.txt /b/sub/f.txt"), "hello\nhello\n");
    assert_eq!(
        sh("readlink /a/link; readlink /b/link"),
        "sub/f.txt\nsub/f.txt\n"
    );
    assert_eq!(
        sh("stat -c '%a %u:%g' /a/sub /a/sub/f.txt; stat -c %Y /a/sub/f.txt"),
        "750 1000:1000\n644 1000:1000\n1600000000\n"
    );
    // --unpack=false: the archive as a file.
    assert_eq!(
        sh("test -f /c/plain.tar && ! test -e /c/sub && echo kept"),
        "kept\n"
    );
    // --chown wins over the archive's owners.
    assert_eq!(sh("stat -c '%u:%g' /d/sub /d/sub/f.txt"), "7:8\n7:8\n");
}

#[test]
fn add_refuses_an_archive_that_escapes() {
    let env = Env::new();
    env.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path().join("ctx");
    write(&c, "evil.tar", &evil_tar());
    write(&c, "Dockerfile", b"FROM busybox\nADD evil.tar /x/y/\n");
    let o = build(&env, &c, &["-t", "evil:1"]);
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("../../escape") && err.contains("leaves the destination"),
        "{err}"
    );
    let mut found = Vec::new();
    files_named(env.root(), "escape", &mut found);
    files_named(ctx.path(), "escape", &mut found);
    assert!(found.is_empty(), "{found:?}");
    assert!(env.run(&["image", "inspect", "evil:1"]).status.code() != Some(0));
}

/// Serves `/files/hello.txt` with the shared content (and a Last-Modified); 404 for anything else.
fn serve(content: Arc<Mutex<Vec<u8>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" || line == "\n" => break,
                    Ok(_) => {}
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let resp = if path == "/files/hello.txt" {
                let body = content.lock().unwrap().clone();
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&resp);
        }
    });
    addr
}

fn sha256_hex(data: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), data).unwrap();
    let o = std::process::Command::new("sha256sum")
        .arg(f.path())
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap()[..64].to_string()
}

#[test]
fn add_fetches_urls() {
    let env = Env::host_network();
    env.load_busybox();
    let content = Arc::new(Mutex::new(b"downloaded\n".to_vec()));
    let addr = serve(content.clone());
    let url = format!("http://{addr}/files/hello.txt");
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    let good = sha256_hex(b"downloaded\n");
    write(
        c,
        "Dockerfile",
        format!("FROM busybox\nADD {url} /dl/\nADD --checksum=sha256:{good} {url} /named.txt\n")
            .as_bytes(),
    );
    let o = build(&env, c, &["-t", "fetched:1"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let sh = |img: &str, script: &str| {
        env.ok(&["run", "--rm", "--network", "none", img, "sh", "-c", script])
    };
    assert_eq!(
        sh(
            "fetched:1",
            "cat /dl/hello.txt; stat -c '%a %u:%g %Y' /dl/hello.txt /named.txt"
        ),
        "downloaded\n600 0:0 1445412480\n600 0:0 1445412480\n"
    );
    // Fetched again at every build: the same content keeps the cache...
    let o = build(&env, c, &["-t", "fetched:1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).matches("Using cache").count(),
        2,
        "{}",
        stdout(&o)
    );
    // ...a change at the URL invalidates the step (and the checksum no longer matches).
    *content.lock().unwrap() = b"changed\n".to_vec();
    write(
        c,
        "Dockerfile",
        format!("FROM busybox\nADD {url} /dl/\n").as_bytes(),
    );
    let o = build(&env, c, &["-t", "fetched:2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("Using cache"), "{}", stdout(&o));
    assert_eq!(sh("fetched:2", "cat /dl/hello.txt"), "changed\n");

    // A checksum mismatch names both digests.
    let zeros = "0".repeat(64);
    write(
        c,
        "Dockerfile",
        format!("FROM busybox\nADD --checksum=sha256:{zeros} {url} /x\n").as_bytes(),
    );
    let o = build(&env, c, &[]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    let actual = sha256_hex(b"changed\n");
    assert!(
        err.contains("checksum mismatch")
            && err.contains(&format!("sha256:{zeros}"))
            && err.contains(&format!("sha256:{actual}")),
        "{err}"
    );
    // A failing fetch: one line with the URL and the status.
    let missing = format!("http://{addr}/files/missing.txt");
    write(
        c,
        "Dockerfile",
        format!("FROM busybox\nADD {missing} /x\n").as_bytes(),
    );
    let o = build(&env, c, &[]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains(&missing) && err.contains("404"), "{err}");
    // Remote git sources stay refused.
    write(
        c,
        "Dockerfile",
        b"FROM busybox\nADD git@github.com:example/repo.git /src\n",
    );
    let o = build(&env, c, &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("git sources are not supported"),
        "{}",
        stderr(&o)
    );
}
