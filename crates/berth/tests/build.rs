//! `berth build`: Dockerfiles into images in a test store, run with `berth run`.

mod common;

use std::path::Path;

use common::*;

fn write(dir: &Path, rel: &str, content: &str) {
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

#[test]
fn build_run_cache_and_multistage() {
    let env = Env::new();
    env.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        r#"# a comment
ARG BASE=busybox
FROM $BASE AS builder
ARG WHO=world
ENV GREETING=hello \
    PLACE=/work
WORKDIR $PLACE
COPY src/ ./src/
RUN echo "$GREETING $WHO" > out.txt && cat src/data.txt >> out.txt
FROM busybox
COPY --from=builder /work/out.txt /result.txt
COPY app.sh /usr/local/bin/app
CMD ["sh", "/usr/local/bin/app"]
"#,
    );
    write(c, "src/data.txt", "data\n");
    write(c, "app.sh", "cat /result.txt\n");
    write(c, "ignored.log", "noise\n");
    write(c, ".dockerignore", "*.log\n");
    let o = build(&env, c, &["-t", "built:1", "--build-arg", "WHO=berth"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("Step 1/"), "{text}");
    assert!(text.contains("Successfully tagged built:1"), "{text}");
    assert_eq!(env.ok(&["run", "--rm", "built:1"]), "hello berth\ndata\n");
    // A second build: every step from the cache, the same image.
    let o2 = build(&env, c, &["-t", "built:1", "--build-arg", "WHO=berth"]);
    assert!(o2.status.success(), "{}", stderr(&o2));
    let text2 = stdout(&o2);
    let last = |t: &str| {
        t.lines()
            .rev()
            .find(|l| l.starts_with("Successfully built"))
            .unwrap()
            .to_string()
    };
    assert_eq!(last(&text), last(&text2));
    assert!(
        !text2.contains("hello berth") || text2.matches("Using cache").count() >= 5,
        "{text2}"
    );
    assert!(text2.matches("Using cache").count() >= 5, "{text2}");
    // Changing a copied file invalidates the steps from that COPY on.
    write(c, "src/data.txt", "other\n");
    let o3 = build(&env, c, &["-t", "built:2", "--build-arg", "WHO=berth"]);
    assert!(o3.status.success(), "{}", stderr(&o3));
    assert_eq!(env.ok(&["run", "--rm", "built:2"]), "hello berth\nother\n");
    // Exactly the steps before that COPY came from the cache (ENV, WORKDIR), none after it.
    assert_eq!(
        stdout(&o3).matches("Using cache").count(),
        2,
        "{}",
        stdout(&o3)
    );
    // The ignored file never reached the context; an ignored-only change keeps the cache.
    write(c, "ignored.log", "more noise\n");
    let o4 = build(
        &env,
        c,
        &["-q", "-t", "built:2", "--build-arg", "WHO=berth"],
    );
    assert!(o4.status.success(), "{}", stderr(&o4));
    assert!(stdout(&o4).trim().starts_with("sha256:"), "{}", stdout(&o4));
    // `images` shows the built images, not every step's intermediate image; -a shows those too.
    let images = env.ok(&["images"]);
    assert!(!images.contains("<none>"), "{images}");
    assert!(env.ok(&["images", "-a"]).contains("<none>"));
}

#[test]
fn failing_run_and_bad_dockerfiles() {
    let env = Env::new();
    env.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox\nRUN echo before; exit 3\nRUN echo never\n",
    );
    let o = build(&env, c, &["-t", "broken:1"]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(stdout(&o).contains("before"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("never"));
    assert!(env.run(&["image", "inspect", "broken:1"]).status.code() != Some(0));
    assert!(
        env.containers().is_empty(),
        "a failed RUN left {:?}",
        env.containers()
    );
    write(c, "Dockerfile", "FROM busybox\nFORM x\n");
    let o = build(&env, c, &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains('2') && stderr(&o).to_lowercase().contains("form"),
        "{}",
        stderr(&o)
    );
    write(c, "Dockerfile", "FROM busybox\nCOPY missing.txt /x\n");
    let o = build(&env, c, &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("missing.txt"), "{}", stderr(&o));
}

#[test]
fn from_scratch_and_reproducible_digests() {
    let env = Env::new();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    std::fs::copy(berth_testsupport::busybox(), c.join("busybox")).unwrap();
    write(
        c,
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY <<EOF /etc/motd\nbuilt from scratch\nEOF\n\
         ENTRYPOINT [\"/bin/busybox\"]\nCMD [\"cat\", \"/etc/motd\"]\nLABEL org.example=1\n",
    );
    let o = env.run(&["build", "-t", "scratchy:1", c.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        env.ok(&["run", "--rm", "scratchy:1"]),
        "built from scratch\n"
    );
    // With SOURCE_DATE_EPOCH, two builds without the cache give the same image digest.
    let digest = |env: &Env| {
        let mut cmd = env.cmd();
        cmd.env("SOURCE_DATE_EPOCH", "1700000000").args([
            "build",
            "-q",
            "--no-cache",
            c.to_str().unwrap(),
        ]);
        let o = output_via_files(&mut cmd);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    let a = digest(&env);
    let other = Env::new();
    let b = digest(&other);
    assert_eq!(a, b);
    assert!(a.starts_with("sha256:"), "{a}");
}

#[test]
fn config_instructions_and_onbuild_triggers() {
    let env = Env::new();
    env.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        r#"FROM busybox
SHELL ["/bin/sh", "-e", "-c"]
RUN echo shell-form-works > /shell.txt
LABEL a=1 b="two words"
EXPOSE 80 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD true
USER 65534:65534
WORKDIR /srv
ENTRYPOINT ["sh", "-c"]
CMD ["id -u; pwd"]
ONBUILD RUN echo triggered > /tmp/onbuild.txt
"#,
    );
    let o = env.run(&["build", "-t", "parent:1", c.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(env.ok(&["run", "--rm", "parent:1"]), "65534\n/srv\n");
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", "parent:1"])).unwrap();
    let cfg = &v[0]["Config"];
    assert_eq!(cfg["Labels"]["b"], "two words", "{cfg}");
    assert!(
        cfg["ExposedPorts"].get("80/tcp").is_some() && cfg["ExposedPorts"].get("53/udp").is_some(),
        "{cfg}"
    );
    assert!(cfg["Volumes"].get("/data").is_some(), "{cfg}");
    assert_eq!(cfg["StopSignal"], "SIGUSR1");
    assert_eq!(cfg["User"], "65534:65534");
    assert_eq!(cfg["Shell"], serde_json::json!(["/bin/sh", "-e", "-c"]));
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
    assert_eq!(
        cfg["OnBuild"],
        serde_json::json!(["RUN echo triggered > /tmp/onbuild.txt"])
    );
    // Only RUN made a layer on top of busybox's; the config instructions made none.
    assert_eq!(
        v[0]["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(2),
        "{}",
        v[0]["RootFS"]
    );
    // A child image runs the trigger first and does not pass it on.
    let child = tempfile::tempdir().unwrap();
    write(
        child.path(),
        "Dockerfile",
        "FROM parent:1\nUSER 0\nCMD [\"cat /tmp/onbuild.txt /shell.txt\"]\n",
    );
    let o = env.run(&["build", "-t", "child:1", child.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        env.ok(&["run", "--rm", "child:1"]),
        "triggered\nshell-form-works\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", "child:1"])).unwrap();
    assert!(
        v[0]["Config"]["OnBuild"].is_null() || v[0]["Config"]["OnBuild"] == serde_json::json!([]),
        "{}",
        v[0]["Config"]
    );
}

#[test]
fn target_stage_and_dockerfile_on_stdin() {
    let env = Env::new();
    env.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox AS first\nRUN echo first > /which\nFROM busybox AS second\nRUN echo second > /which\n\
         FROM busybox\nRUN false\n",
    );
    // --target builds the named stage and only what it needs (the failing last stage never runs).
    let o = env.run(&[
        "build",
        "--target",
        "first",
        "-t",
        "t:first",
        c.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("second"), "{}", stdout(&o));
    assert_eq!(
        env.ok(&["run", "--rm", "t:first", "cat", "/which"]),
        "first\n"
    );
    let o = env.run(&["build", "--target", "nosuch", c.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));
    // A Dockerfile on stdin, no context.
    let mut cmd = env.cmd();
    cmd.args(["build", "-t", "t:stdin", "-"]);
    let o = output_with_input(&mut cmd, Some(b"FROM busybox\nRUN echo from-stdin > /f\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        env.ok(&["run", "--rm", "t:stdin", "cat", "/f"]),
        "from-stdin\n"
    );
}

#[test]
fn copy_chown_by_name_and_number() {
    let env = Env::new();
    env.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(c, "f", "x\n");
    write(
        c,
        "Dockerfile",
        "FROM busybox\nRUN echo 'app:x:1234:4321::/home/app:/bin/sh' > /etc/passwd && echo 'app:x:4321:' > /etc/group\n\
         COPY --chown=app:app f /by-name\nCOPY --chown=7:8 --chmod=600 f /by-number\n",
    );
    let o = env.run(&["build", "-t", "owned:1", c.to_str().unwrap()]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = env.ok(&[
        "run",
        "--rm",
        "owned:1",
        "stat",
        "-c",
        "%u:%g %a %n",
        "/by-name",
        "/by-number",
    ]);
    assert_eq!(out, "1234:4321 644 /by-name\n7:8 600 /by-number\n");
    write(
        c,
        "Dockerfile",
        "FROM busybox\nCOPY --chown=nosuchuser f /x\n",
    );
    let o = env.run(&["build", c.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("nosuchuser"), "{}", stderr(&o));
}

#[test]
fn run_heredocs_and_zstd_layers() {
    let env = Env::new();
    env.load_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    write(
        c,
        "Dockerfile",
        "FROM busybox\nRUN <<EOF\necho plain heredoc > /h1\nEOF\nRUN <<EOF\n#!/bin/sh\necho script heredoc > /h2\nEOF\n",
    );
    let o = env.run(&[
        "build",
        "--compression",
        "zstd",
        "-t",
        "hd:1",
        c.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        env.ok(&["run", "--rm", "hd:1", "cat", "/h1", "/h2"]),
        "plain heredoc\nscript heredoc\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", "hd:1"])).unwrap();
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().map(Vec::len), Some(3));
    // The new layers are zstd: the image saves as an OCI layout with zstd layer media types.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hd.tar");
    env.ok(&["save", "-o", file.to_str().unwrap(), "hd:1"]);
    let other = Env::new();
    other.ok(&["load", "-i", file.to_str().unwrap()]);
    assert_eq!(
        other.ok(&["run", "--rm", "hd:1", "cat", "/h2"]),
        "script heredoc\n"
    );
}
