//! htpasswd: Basic credentials and the bearer-token flow.

mod common;

use base64::Engine as _;
use common::*;

fn htpasswd(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("htpasswd");
    std::fs::write(
        &p,
        format!("alice:{}\n", bcrypt::hash("s3cret", 4).unwrap()),
    )
    .unwrap();
    p
}

fn auth_file(dir: &std::path::Path, host: &str, user: &str, pass: &str) -> std::path::PathBuf {
    let p = dir.join(format!("config-{user}-{pass}.json"));
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::write(
        &p,
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    p
}

#[test]
fn basic_and_bearer() {
    let tmp = tempfile::tempdir().unwrap();
    let hp = htpasswd(tmp.path());
    let reg = start_with(|c| c.htpasswd = Some(hp.clone()));

    // No credentials: the bearer challenge (and Basic as a fallback).
    let r = curl(&[&reg.url("/v2/x/tags/list")]);
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    let challenges = r.headers_named("WWW-Authenticate");
    assert_eq!(
        challenges[0],
        format!("Bearer realm=\"http://{}/token\",service=\"berth-registry\",scope=\"repository:x:pull\"", reg.host)
    );
    assert!(challenges.contains(&"Basic realm=\"berth-registry\""));
    let r = curl(&["-X", "POST", &reg.url("/v2/x/blobs/uploads/")]);
    assert!(r
        .header("WWW-Authenticate")
        .unwrap()
        .contains("scope=\"repository:x:pull,push\""));

    // Basic.
    assert_eq!(curl(&["-u", "alice:s3cret", &reg.url("/v2/")]).status, 200);
    let r = curl(&["-u", "alice:wrong", &reg.url("/v2/")]);
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(curl(&["-u", "bob:s3cret", &reg.url("/v2/")]).status, 401);
    let r = curl(&[
        "-u",
        "alice:s3cret",
        "-X",
        "POST",
        &reg.url("/v2/x/blobs/uploads/"),
    ]);
    assert_eq!(r.status, 202);

    // Tokens by hand: scoped to what was asked for.
    let r = curl(&[
        "-u",
        "alice:s3cret",
        &reg.url("/token?service=berth-registry&scope=repository:x:pull"),
    ]);
    assert_eq!(r.status, 200);
    let t = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(r.json()["access_token"], t.as_str());
    assert_eq!(r.json()["expires_in"], 300);
    let bearer = format!("Authorization: Bearer {t}");
    assert_eq!(curl(&["-H", &bearer, &reg.url("/v2/")]).status, 200);
    assert_eq!(
        curl(&["-H", &bearer, &reg.url("/v2/x/tags/list")]).status,
        404
    );
    assert_eq!(
        curl(&["-H", &bearer, &reg.url("/v2/y/tags/list")]).status,
        401
    );
    assert_eq!(
        curl(&[
            "-H",
            &bearer,
            "-X",
            "POST",
            &reg.url("/v2/x/blobs/uploads/")
        ])
        .status,
        401
    );
    let forged = format!("Authorization: Bearer {}x", t);
    assert_eq!(curl(&["-H", &forged, &reg.url("/v2/")]).status, 401);
    assert_eq!(
        curl(&[
            "-u",
            "alice:nope",
            &reg.url("/token?scope=repository:x:pull")
        ])
        .status,
        401
    );
    assert_eq!(
        curl(&[&reg.url("/token?scope=repository:x:pull")]).status,
        401
    );

    // The berth client follows the bearer flow with credentials from its auth file.
    let good = auth_file(tmp.path(), &reg.host, "alice", "s3cret");
    let c = client_with_auth(&good);
    let p = push_image(&c, &reg.host, "team/app", "v1", 21, 2);
    verify_pull(&c, &reg.host, "team/app", "v1", &p);
    assert!(c
        .mount_blob(&reg.host, "team/copy", "team/app", &p.layers[0].0)
        .unwrap());
    c.check_login(&reg.host, "alice", "s3cret").unwrap();
    assert!(c.check_login(&reg.host, "alice", "bad").is_err());

    let bad = auth_file(tmp.path(), &reg.host, "alice", "wrong");
    let c = client_with_auth(&bad);
    let err = c.fetch_manifest(&reg.host, "team/app", "v1").unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
    let anon = client(tmp.path());
    assert!(anon.fetch_manifest(&reg.host, "team/app", "v1").is_err());
}
